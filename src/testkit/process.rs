//! The processes a topology runs: finding the binaries, starting, signalling and killing our
//! own children (by their handle, never by name), ports and folders.

use std::{
    collections::BTreeSet,
    env, fs, io,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use redis::RedisConnectionInfo;

use super::{Error, error::io_error};
use crate::{NodeAddr, node};

/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(20);

/// How the test kit reaches one kind of its own nodes: the `default` user with `password`,
/// over TLS when the topology speaks it.
#[derive(Debug, Clone, Default)]
pub(super) struct Access {
    pub(super) password: Option<String>,
    #[cfg(feature = "tls")]
    pub(super) tls: Option<crate::TlsOptions>,
}

impl Access {
    /// A 1 s connect timeout and `io_timeout` for each read and write.
    pub(super) fn settings(&self, io_timeout: Duration) -> node::NodeSettings {
        let mut redis = RedisConnectionInfo::default();
        if let Some(password) = &self.password {
            redis = redis.set_password(password);
        }
        node::NodeSettings {
            redis,
            client_name: None,
            tcp: Default::default(),
            durability: None,
            #[cfg(feature = "tls")]
            tls: self.tls.clone(),
            connect_timeout: Duration::from_secs(1),
            read_timeout: io_timeout,
            write_timeout: io_timeout,
        }
    }
}

/// One short-lived connection, one command, every wait bounded.
pub(super) fn query<T: redis::FromRedisValue>(
    addr: &NodeAddr,
    access: &Access,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    let settings = access.settings(Duration::from_secs(2));
    cmd.query(&mut node::connect(addr, &settings)?)
}

#[derive(Debug, Clone)]
pub(super) struct Binaries {
    server: PathBuf,
    /// `None`: start sentinels as `redis-server <conf> --sentinel`.
    sentinel: Option<PathBuf>,
    /// What the server says it is (`redis-server --version`).
    pub(super) version: ServerVersion,
}

/// A server's name and version, as `--version` prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    /// Valkey rather than Redis.
    pub valkey: bool,
    /// Major, minor and patch.
    pub version: (u32, u32, u32),
}

impl ServerVersion {
    /// Reads `Redis server v=7.0.15 sha=...` or `Valkey server v=8.1.8 ...`.
    fn parse(text: &str) -> Option<Self> {
        let number = text
            .split_whitespace()
            .find_map(|word| word.strip_prefix("v="))?;
        let mut parts = number.split('.').map(|p| p.parse::<u32>().ok());
        let version = (
            parts.next()??,
            parts.next()??,
            parts.next().flatten().unwrap_or(0),
        );
        Some(ServerVersion {
            valkey: text.to_ascii_lowercase().contains("valkey"),
            version,
        })
    }

    /// True for Valkey 9 and later, whose Sentinel runs coordinated failovers
    /// ([`Topology::failover_coordinated`](super::Topology::failover_coordinated)).
    pub fn coordinated_failover(&self) -> bool {
        self.valkey && self.version.0 >= 9
    }

    /// True for a server at least as new as Redis `major.minor` (Valkey 7.2 and later are
    /// Redis 7.2 and later).
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.version.0, self.version.1) >= (major, minor)
    }
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (major, minor, patch) = self.version;
        let name = if self.valkey { "Valkey" } else { "Redis" };
        write!(f, "{name} {major}.{minor}.{patch}")
    }
}

impl Binaries {
    /// `redis-server` (else `valkey-server`) and its sentinel binary, if there is one, and
    /// the server's version.
    pub(super) fn find() -> Result<Self, Error> {
        let (server, sentinel) = match find_binary("redis-server") {
            Some(server) => (server, find_binary("redis-sentinel")),
            None => (
                find_binary("valkey-server").ok_or(Error::MissingBinary {
                    name: "redis-server",
                })?,
                find_binary("valkey-sentinel"),
            ),
        };
        let output = Command::new(&server)
            .arg("--version")
            .output()
            .map_err(io_error(format!("run {} --version", server.display())))?;
        let printed = String::from_utf8_lossy(&output.stdout);
        let version = ServerVersion::parse(&printed).ok_or_else(|| Error::Io {
            context: format!("read the version of {}", server.display()),
            source: io::Error::other(format!("it printed {printed:?}")),
        })?;
        Ok(Binaries {
            server,
            sentinel,
            version,
        })
    }
}

fn find_binary(name: &str) -> Option<PathBuf> {
    let dirs: Vec<PathBuf> = match env::var_os("REDIS_BIN_DIR") {
        Some(dir) => vec![PathBuf::from(dir)],
        None => env::split_paths(&env::var_os("PATH").unwrap_or_default()).collect(),
    };
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

#[derive(Debug)]
pub(super) struct Process {
    pub(super) port: u16,
    dir: PathBuf,
    pub(super) is_sentinel: bool,
    child: Option<Child>,
    /// Stopped by SIGSTOP: alive, but answers nothing until SIGCONT.
    frozen: bool,
}

/// A process that never became part of a topology (it did not come up in time, say) is
/// killed too: no test leaves a node behind.
impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

impl Process {
    pub(super) fn create(
        dir: &Path,
        port: u16,
        is_sentinel: bool,
        conf: &str,
    ) -> Result<Self, Error> {
        let process = Process {
            port,
            dir: dir.to_owned(),
            is_sentinel,
            child: None,
            frozen: false,
        };
        fs::write(process.conf(), conf).map_err(io_error("write a config file"))?;
        Ok(process)
    }

    pub(super) fn addr(&self) -> NodeAddr {
        NodeAddr::new("127.0.0.1", self.port)
    }

    pub(super) fn conf(&self) -> PathBuf {
        self.dir.join(if self.is_sentinel {
            "sentinel.conf"
        } else {
            "redis.conf"
        })
    }

    pub(super) fn log(&self) -> PathBuf {
        self.dir.join(if self.is_sentinel {
            "sentinel.log"
        } else {
            "redis.log"
        })
    }

    /// The file that receives what the process prints.
    fn output(&self) -> PathBuf {
        self.dir.join(if self.is_sentinel {
            "sentinel.out"
        } else {
            "redis.out"
        })
    }

    pub(super) fn spawn(&mut self, binaries: &Binaries) -> Result<(), Error> {
        let mut command = match (&binaries.sentinel, self.is_sentinel) {
            (Some(sentinel), true) => Command::new(sentinel),
            _ => Command::new(&binaries.server),
        };
        command.arg(self.conf());
        if self.is_sentinel && binaries.sentinel.is_none() {
            command.arg("--sentinel");
        }
        // What a server prints before it opens its log file (a configuration it refuses) goes
        // to this file, which `wait_ready` shows when the node exits.
        let output = fs::File::create(self.output()).map_err(io_error("create an output file"))?;
        let errors = output
            .try_clone()
            .map_err(io_error("share an output file"))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .spawn()
            .map_err(io_error(format!(
                "start {}",
                command.get_program().display()
            )))?;
        self.child = Some(child);
        Ok(())
    }

    /// The process id while it runs.
    pub(super) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Running and not frozen: it answers.
    pub(super) fn is_running(&self) -> bool {
        self.child.is_some() && !self.frozen
    }

    /// Sends a signal by name (`STOP`, `CONT`) to our own child, by its pid, and remembers
    /// whether it is frozen.
    pub(super) fn signal(&mut self, name: &str) -> Result<(), Error> {
        let child = self.child.as_ref().ok_or_else(|| Error::Io {
            context: format!("signal {}", self.addr()),
            source: io::Error::new(io::ErrorKind::NotFound, "the node is not running"),
        })?;
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(child.id().to_string())
            .status()
            .map_err(io_error("run kill"))?;
        if status.success() {
            self.frozen = name == "STOP";
            Ok(())
        } else {
            Err(Error::Io {
                context: format!("kill -{name} {}", child.id()),
                source: io::Error::other(format!("kill exited with {status}")),
            })
        }
    }

    /// SIGKILL, then reap; only ever our own child, by its handle.
    pub(super) fn kill(&mut self) -> Result<(), Error> {
        if let Some(mut child) = self.child.take() {
            self.frozen = false;
            child.kill().map_err(io_error("kill a node"))?;
            child.wait().map_err(io_error("reap a node"))?;
        }
        Ok(())
    }

    pub(super) fn wait_ready(&mut self, access: &Access, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = &mut self.child
                && child
                    .try_wait()
                    .map_err(io_error("check a node"))?
                    .is_some()
            {
                self.child = None;
                let log = fs::read_to_string(self.log()).unwrap_or_default();
                let printed = fs::read_to_string(self.output()).unwrap_or_default();
                let tail: Vec<&str> = log.lines().chain(printed.lines()).rev().take(10).collect();
                return Err(Error::Exited {
                    node: format!(
                        "{} {}",
                        if self.is_sentinel {
                            "sentinel"
                        } else {
                            "redis"
                        },
                        self.addr()
                    ),
                    log_tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                });
            }
            if query::<String>(&self.addr(), access, &redis::cmd("PING")).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("{} to answer PING", self.addr()),
                    state: format!("  logs: {}\n", self.dir.display()),
                });
            }
            thread::sleep(POLL);
        }
    }
}

/// A loopback port nothing listens on now, and that this process has not handed out before
/// (tests run in parallel in one process).
pub(super) fn free_port() -> io::Result<u16> {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return Ok(port);
        }
    }
}

/// A new folder under the system temp dir, unique to this process and call.
pub(super) fn unique_dir() -> Result<PathBuf, Error> {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let dir = env::temp_dir().join(format!(
        "r2d2-redis-sentinel-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(io_error(format!("create {}", dir.display())))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions_are_read_from_what_the_servers_print() {
        let redis = ServerVersion::parse(
            "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=1",
        )
        .unwrap();
        assert_eq!((redis.valkey, redis.version), (false, (7, 0, 15)));
        assert!(redis.at_least(7, 0) && !redis.at_least(7, 2));
        let valkey = ServerVersion::parse("Valkey server v=8.1.8 sha=0 malloc=libc").unwrap();
        assert_eq!(valkey.to_string(), "Valkey 8.1.8");
        assert!(valkey.at_least(7, 2));
        let old = ServerVersion::parse("Redis server v=6.0.9 sha=0").unwrap();
        assert!(!old.at_least(6, 2));
        assert!(ServerVersion::parse("nothing here").is_none());
    }
}
