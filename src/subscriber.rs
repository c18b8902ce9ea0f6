//! [`Subscriber`]: pub/sub that follows the master across failovers.

use std::{
    collections::BTreeSet,
    mem::ManuallyDrop,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use redis::{Msg, RedisError};

use crate::{
    Error, Event, NodeAddr, backoff::Backoff, manager::data_node_error, node, shared::Shared,
};

/// How long the subscriber's thread reads at a time before it looks at the pool's generation,
/// its requests and whether it should stop: how late it may notice each of them.
const SLICE: Duration = Duration::from_millis(50);

/// The longest a (re)connect may take before the thread looks at its stop flag again.
const CONNECT_SLICE: Duration = Duration::from_secs(1);

/// How many received messages wait for [`Subscriber::recv_timeout`] before the thread stops
/// reading (and Redis, past its `client-output-buffer-limit pubsub`, closes the
/// subscription, which the thread then makes again).
const BACKLOG: usize = 4096;

/// A pub/sub subscriber on the current master that follows it across failovers, from
/// [`SentinelPool::subscriber`](crate::SentinelPool::subscriber).
///
/// A thread of its own holds the subscription. When the pool moves to a new master (a
/// failover, or [`invalidate`](crate::SentinelPool::invalidate)), or the connection breaks
/// (Sentinel closes the subscribers of every node it reconfigures, `CLIENT KILL TYPE pubsub`),
/// it connects to the master the pool knows, subscribes to every channel and pattern again,
/// and sends [`Event::Resubscribed`] on the pool's events. Pub/sub delivers at most once:
/// messages published while no subscription exists (from the break to the resubscription)
/// are not received. A write that must not be missed belongs in a list or a stream.
///
/// ```no_run
/// use std::time::Duration;
/// use r2d2_redis_sentinel::SentinelPool;
///
/// let pool = SentinelPool::builder(["redis://127.0.0.1:26379"], "mymaster").build()?;
/// let subscriber = pool.subscriber()?;
/// subscriber.subscribe("news")?;
/// while let Some(msg) = subscriber.recv_timeout(Duration::from_secs(5))? {
///     let text: String = msg.get_payload()?;
///     println!("{}: {text}", msg.get_channel_name());
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Every call is bounded: `subscribe` and the others wait at most the pool's
/// `checkout_timeout` for the server's confirmation, `recv_timeout` the time it is given.
/// Dropping it stops its thread and returns within about a second plus the pool's
/// `connect_timeout`, whatever the nodes do. It needs its pool's watcher to hear of
/// failovers, and stops when the pool is dropped.
#[derive(Debug)]
pub struct Subscriber {
    requests: Sender<Request>,
    messages: Receiver<Result<Msg, Error>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
    timeout: Duration,
}

/// A change to the subscriptions, with where to say how it went.
#[derive(Debug)]
struct Request {
    change: Change,
    done: Sender<Result<(), Error>>,
}

#[derive(Debug, Clone)]
enum Change {
    Subscribe(String),
    Unsubscribe(String),
    PSubscribe(String),
    PUnsubscribe(String),
}

impl Change {
    fn command(&self) -> &'static str {
        match self {
            Change::Subscribe(_) => "SUBSCRIBE",
            Change::Unsubscribe(_) => "UNSUBSCRIBE",
            Change::PSubscribe(_) => "PSUBSCRIBE",
            Change::PUnsubscribe(_) => "PUNSUBSCRIBE",
        }
    }
}

impl Subscriber {
    pub(crate) fn start(shared: Arc<Shared>) -> Result<Self, Error> {
        let (requests, requests_rx) = bounded(64);
        let (messages_tx, messages) = bounded(BACKLOG);
        let stop = Arc::new(AtomicBool::new(false));
        let timeout = shared.config.checkout_timeout;
        let name = "r2d2-sentinel-subscriber";
        let worker = Worker {
            shared,
            requests: requests_rx,
            messages: messages_tx,
            stop: Arc::clone(&stop),
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
        };
        let thread = thread::Builder::new()
            .name(name.into())
            .spawn(move || worker.run())
            .map_err(|err| Error::ThreadSpawn {
                name: name.to_owned(),
                reason: err.to_string(),
            })?;
        Ok(Subscriber {
            requests,
            messages,
            stop,
            thread: Some(thread),
            timeout,
        })
    }

    /// Subscribes to `channel`, now and on every master the pool moves to.
    ///
    /// # Errors
    ///
    /// The server's refusal ([`Error::NoPermission`] for an ACL user without the channel), or [`Error::Connect`] when the subscription could not be confirmed within the
    /// pool's `checkout_timeout` (no master reachable): it is kept all the same, and made as
    /// soon as a master answers.
    pub fn subscribe(&self, channel: &str) -> Result<(), Error> {
        self.change(Change::Subscribe(channel.to_owned()))
    }

    /// Subscribes to the channels matching `pattern` (`PSUBSCRIBE`).
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe).
    pub fn psubscribe(&self, pattern: &str) -> Result<(), Error> {
        self.change(Change::PSubscribe(pattern.to_owned()))
    }

    /// Ends the subscription to `channel`.
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe); the channel is forgotten all the same.
    pub fn unsubscribe(&self, channel: &str) -> Result<(), Error> {
        self.change(Change::Unsubscribe(channel.to_owned()))
    }

    /// Ends the subscription to `pattern`.
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe); the pattern is forgotten all the same.
    pub fn punsubscribe(&self, pattern: &str) -> Result<(), Error> {
        self.change(Change::PUnsubscribe(pattern.to_owned()))
    }

    /// The next message, waiting at most `timeout`; `None` when none came in that time.
    ///
    /// # Errors
    ///
    /// A configuration error that keeps the subscription from being made again
    /// ([`Error::Auth`]...), once per outage: the thread keeps trying, and the next call may
    /// return messages again. An error that time mends (a failover in progress, a master
    /// down) is not returned: the thread subscribes again as soon as it can. After the pool is
    /// dropped, the subscriber stops with [`Error::Connect`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Msg>, Error> {
        match self
            .messages
            .recv_timeout(timeout.min(crate::config::LONGEST))
        {
            Ok(Ok(msg)) => Ok(Some(msg)),
            Ok(Err(err)) => Err(err),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(gone()),
        }
    }

    fn change(&self, change: Change) -> Result<(), Error> {
        let (done, outcome) = bounded(1);
        self.requests
            .send_timeout(Request { change, done }, self.timeout)
            .map_err(|_| gone())?;
        match outcome.recv_timeout(self.timeout) {
            Ok(result) => result,
            Err(_) => Err(Error::Connect {
                address: "the master".to_owned(),
                source: RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the subscriber is not connected to a master yet; the subscription is \
                     kept and made once one answers",
                )),
            }),
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            log::warn!("the subscriber's thread panicked");
        }
    }
}

/// The error once the subscriber's thread is gone (it panicked).
fn gone() -> Error {
    Error::Connect {
        address: "the master".to_owned(),
        source: RedisError::from(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "the subscriber's thread stopped",
        )),
    }
}

/// The subscriber's thread.
struct Worker {
    shared: Arc<Shared>,
    requests: Receiver<Request>,
    messages: Sender<Result<Msg, Error>>,
    stop: Arc<AtomicBool>,
    channels: BTreeSet<String>,
    patterns: BTreeSet<String>,
}

/// Why a subscription ended.
enum End {
    Stop,
    /// The pool moved to another generation: follow it.
    Moved,
    Broken(RedisError),
}

impl Worker {
    fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_millis(50), CONNECT_SLICE);
        let mut subscribed_once = false;
        let mut reported = false;
        while !self.stopped() {
            let (generation, addr, mut conn) = match self.connect() {
                Ok(connected) => connected,
                Err(err) => {
                    self.answer_pending(|| Err(err.clone()));
                    // A failover in progress, a master down: the next attempts fix it. A wrong
                    // password or service name needs the caller, once per outage.
                    if err.is_config() && !reported {
                        log::warn!("the subscriber cannot subscribe on the master: {err}");
                        let _ = self.messages.try_send(Err(err));
                        reported = true;
                    } else {
                        log::debug!("the subscriber cannot reach the master yet: {err}");
                    }
                    thread::sleep(backoff.next_wait());
                    continue;
                }
            };
            backoff.reset();
            reported = false;
            let end = match self.resubscribe(&mut conn) {
                Ok(()) => {
                    if subscribed_once {
                        log::info!(
                            "subscriber moved to {addr}: {} channels, {} patterns",
                            self.channels.len(),
                            self.patterns.len()
                        );
                        self.shared.events.send(Event::Resubscribed {
                            address: addr.clone(),
                            channels: self.channels.len(),
                            patterns: self.patterns.len(),
                        });
                    }
                    subscribed_once = true;
                    self.listen(&mut conn, &addr, generation)
                }
                Err(err) => End::Broken(err),
            };
            match end {
                End::Stop => return,
                End::Moved => log::debug!("subscriber on {addr}: the pool moved on"),
                End::Broken(err) => log::debug!("subscriber on {addr}: {err}"),
            }
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.shared.generation.is_closed()
    }

    /// A connection to the master of the current generation, within [`CONNECT_SLICE`].
    fn connect(&self) -> Result<(u64, NodeAddr, redis::Connection), Error> {
        let deadline = Instant::now() + CONNECT_SLICE;
        let (generation, addr) = self.shared.master(deadline)?;
        let conn = node::connect(&addr, &self.shared.config.data)
            .map_err(|err| data_node_error(&addr, err, "SELECT"))?;
        Ok((generation, addr, conn))
    }

    /// Subscribes to everything on a new connection.
    fn resubscribe(&self, conn: &mut redis::Connection) -> Result<(), RedisError> {
        conn.set_read_timeout(Some(self.shared.config.data.read_timeout))?;
        if !self.channels.is_empty() {
            self.send(conn, "SUBSCRIBE", &self.channels)?;
        }
        if !self.patterns.is_empty() {
            self.send(conn, "PSUBSCRIBE", &self.patterns)?;
        }
        Ok(())
    }

    /// Sends `command` for `names` and reads its confirmations, one per name, handing on the
    /// messages that arrive meanwhile. redis-rs's `PubSub` would take a refusal (`NOPERM`)
    /// for a confirmation; this returns it. Read with the pool's read timeout: a timeout
    /// leaves the connection out of step, and the caller drops it.
    fn send<'n>(
        &self,
        conn: &mut redis::Connection,
        command: &str,
        names: impl IntoIterator<Item = &'n String>,
    ) -> Result<(), RedisError> {
        let mut cmd = redis::cmd(command);
        let mut expected = 0;
        for name in names {
            cmd.arg(name);
            expected += 1;
        }
        conn.send_packed_command(&cmd.get_packed_command())?;
        while expected > 0 {
            match conn.recv_response()? {
                redis::Value::ServerError(err) => return Err(err.into()),
                reply => match Msg::from_owned_value(reply) {
                    Some(msg) => {
                        self.deliver(msg);
                    }
                    None => expected -= 1,
                },
            }
        }
        Ok(())
    }

    /// Reads messages and serves requests until the pool moves on, the connection breaks or
    /// the subscriber stops.
    fn listen(&mut self, conn: &mut redis::Connection, addr: &NodeAddr, generation: u64) -> End {
        loop {
            if self.stopped() {
                return End::Stop;
            }
            if self.shared.generation.current() != generation {
                return End::Moved;
            }
            while let Ok(request) = self.requests.try_recv() {
                let result = self.apply(conn, &request.change);
                let broken = matches!(&result, Err(err) if !crate::outcome::leaves_in_step(err));
                let _ = request.done.send(result.map_err(|err| {
                    if crate::outcome::is_no_permission(&err) {
                        Error::NoPermission {
                            address: addr.to_string(),
                            command: request.change.command(),
                            source: err,
                        }
                    } else {
                        Error::Redis(err)
                    }
                }));
                if broken {
                    return End::Broken(RedisError::from((
                        redis::ErrorKind::Io,
                        "a subscription request failed on the wire",
                    )));
                }
            }
            if let Err(err) = conn.set_read_timeout(Some(SLICE)) {
                return End::Broken(err);
            }
            // redis-rs reads pushed messages through a `PubSub`, whose reads (unlike a
            // request's) may time out without leaving the connection out of step. Not
            // dropped: its drop would unsubscribe from everything.
            let mut pubsub = ManuallyDrop::new(conn.as_pubsub());
            match pubsub.get_message() {
                Ok(msg) => {
                    if !self.deliver(msg) {
                        return End::Stop;
                    }
                }
                Err(err) if err.is_timeout() => {}
                Err(err) => return End::Broken(err),
            }
        }
    }

    /// Records `change` and makes it on the connection.
    fn apply(&mut self, conn: &mut redis::Connection, change: &Change) -> redis::RedisResult<()> {
        conn.set_read_timeout(Some(self.shared.config.data.read_timeout))?;
        match change {
            Change::Subscribe(channel) => {
                self.send(conn, change.command(), [channel])?;
                self.channels.insert(channel.clone());
                Ok(())
            }
            Change::PSubscribe(pattern) => {
                self.send(conn, change.command(), [pattern])?;
                self.patterns.insert(pattern.clone());
                Ok(())
            }
            Change::Unsubscribe(channel) => {
                self.channels.remove(channel);
                self.send(conn, change.command(), [channel])
            }
            Change::PUnsubscribe(pattern) => {
                self.patterns.remove(pattern);
                self.send(conn, change.command(), [pattern])
            }
        }
    }

    /// Changes asked while no connection exists: recorded, to be made on the next one, and
    /// answered with `outcome`.
    fn answer_pending(&mut self, outcome: impl Fn() -> Result<(), Error>) {
        while let Ok(request) = self.requests.try_recv() {
            let _ = match &request.change {
                Change::Subscribe(c) => self.channels.insert(c.clone()),
                Change::PSubscribe(p) => self.patterns.insert(p.clone()),
                Change::Unsubscribe(c) => self.channels.remove(c),
                Change::PUnsubscribe(p) => self.patterns.remove(p),
            };
            let _ = request.done.send(outcome());
        }
    }

    /// Hands `msg` to the subscriber, waiting while its backlog is full; false once it stops.
    fn deliver(&self, msg: Msg) -> bool {
        let mut msg = Ok(msg);
        loop {
            match self.messages.send_timeout(msg, SLICE) {
                Ok(()) => return true,
                Err(crossbeam_channel::SendTimeoutError::Timeout(back)) => {
                    if self.stopped() {
                        return false;
                    }
                    msg = back;
                }
                Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => return false,
            }
        }
    }
}
