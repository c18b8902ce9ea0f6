//! [`ScriptedServer`]: a RESP server on loopback whose every reply a test chooses, to feed a
//! pool what real processes cannot produce on demand: replies of the wrong shape, lies,
//! silence.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};

use super::{Error, error::io_error};

/// What a [`ScriptedServer`] does with one command.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Reply {
    /// Sends these bytes, as they are (any RESP, well-formed or not).
    Raw(Vec<u8>),
    /// Sends nothing: a server that hangs on this command.
    Silence,
    /// Closes the connection.
    Close,
}

impl Reply {
    /// A RESP reply from its text, for example `"+OK\r\n"`.
    pub fn raw(resp: impl Into<Vec<u8>>) -> Self {
        Reply::Raw(resp.into())
    }

    /// The reply `ROLE` gets from a sentinel (an empty list of masters).
    pub fn sentinel_role() -> Self {
        Reply::raw("*2\r\n$8\r\nsentinel\r\n*0\r\n")
    }

    /// A RESP map in the flat form of RESP2 (`SENTINEL MASTER`'s shape), from field pairs.
    pub fn fields(pairs: &[(&str, &str)]) -> Self {
        let mut out = format!("*{}\r\n", pairs.len() * 2);
        for (k, v) in pairs {
            for s in [k, v] {
                out.push_str(&format!("${}\r\n{s}\r\n", s.len()));
            }
        }
        Reply::raw(out)
    }
}

type Script = dyn Fn(&[String]) -> Reply + Send + Sync;

/// A RESP server on a free loopback port that answers each command with what its script
/// returns for the command's words (upper-cased name first). Connections are served on their
/// own threads; everything stops when it is dropped.
///
/// ```no_run
/// use r2d2_redis_sentinel::testkit::{Reply, ScriptedServer};
///
/// // A "sentinel" whose SENTINEL MASTER reply lacks the port.
/// let liar = ScriptedServer::start(|cmd: &[String]| match cmd[0].as_str() {
///     "ROLE" => Reply::sentinel_role(),
///     "SENTINEL" => Reply::fields(&[("ip", "127.0.0.1"), ("flags", "master")]),
///     _ => Reply::raw("+OK\r\n"),
/// })?;
/// println!("point the pool at {}", liar.url());
/// # Ok::<(), r2d2_redis_sentinel::testkit::Error>(())
/// ```
#[derive(Debug)]
pub struct ScriptedServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ScriptedServer {
    /// Starts the server with `script`.
    ///
    /// # Errors
    ///
    /// When no loopback port can be bound.
    pub fn start(
        script: impl Fn(&[String]) -> Reply + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(io_error("bind a loopback port"))?;
        listener
            .set_nonblocking(true)
            .map_err(io_error("configure the listener"))?;
        let addr = listener.local_addr().map_err(io_error("read the port"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        let thread = {
            let (stop, accepted) = (Arc::clone(&stop), Arc::clone(&accepted));
            thread::spawn(move || {
                let mut served = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((socket, _)) => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            let (script, stop) = (Arc::clone(&script), Arc::clone(&stop));
                            served.push(thread::spawn(move || serve(socket, &*script, &stop)));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
                for thread in served {
                    let _ = thread.join();
                }
            })
        };
        Ok(ScriptedServer {
            addr,
            stop,
            accepted,
            thread: Some(thread),
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its URL, `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// How many connections it accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads commands (RESP arrays of bulk strings) and answers each by the script, until the
/// client leaves, the script closes, or the server stops.
fn serve(socket: TcpStream, script: &Script, stop: &AtomicBool) {
    let _ = socket.set_read_timeout(Some(Duration::from_millis(100)));
    let Ok(mut writer) = socket.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(socket);
    while !stop.load(Ordering::Relaxed) {
        let words = match read_command(&mut reader) {
            Ok(Some(words)) => words,
            Ok(None) => return,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        };
        match script(&words) {
            Reply::Raw(bytes) => {
                if writer.write_all(&bytes).is_err() {
                    return;
                }
            }
            Reply::Silence => {}
            Reply::Close => return,
        }
    }
}

/// One command's words, the name upper-cased; `None` at end of stream.
fn read_command(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Vec<String>>> {
    let Some(count) = read_header(reader, b'*')? else {
        return Ok(None);
    };
    let mut words = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let Some(len) = read_header(reader, b'$')? else {
            return Ok(None);
        };
        let mut body = vec![0; len.min(1 << 20) + 2];
        reader.read_exact(&mut body)?;
        body.truncate(body.len() - 2);
        words.push(String::from_utf8_lossy(&body).into_owned());
    }
    if let Some(name) = words.first_mut() {
        name.make_ascii_uppercase();
    }
    Ok(Some(words))
}

fn read_header(reader: &mut BufReader<TcpStream>, marker: u8) -> std::io::Result<Option<usize>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let number = line
        .trim_end()
        .strip_prefix(marker as char)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not RESP"))?;
    Ok(Some(number))
}
