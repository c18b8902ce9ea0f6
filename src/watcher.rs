//! The watcher: background threads that learn of every failover within milliseconds of its
//! publication and invalidate the pool.
//!
//! # Shape: one subscriber thread per sentinel, one coordinator
//!
//! Each known sentinel gets a *subscriber* thread that holds a subscription to its
//! `+switch-master` and `+sentinel` channels and blocks reading it, so a message is seen the
//! moment it arrives. Listening on every sentinel matters: the failover leader publishes
//! `+switch-master` only when its failover ends, seconds after the other sentinels do, and a
//! single listener is blind while its sentinel is down or partitioned away. One thread
//! multiplexing all subscriptions with read timeouts would add up to a timeout of latency per
//! other sentinel; blocking sockets leave no cheaper way to wait on several at once.
//!
//! The subscribers report to a *coordinator* thread over a channel. The coordinator does no
//! I/O, so a slow sentinel never delays a failover: it deduplicates reports (every sentinel
//! publishes the same switch), applies failovers (a new generation whose master is already
//! known, so rebuilding the pool asks no sentinel), learns and prunes sentinels, and publishes
//! events.
//!
//! # Not missing a failover
//!
//! After each (re)subscription, and every few seconds, a subscriber asks its sentinel for the
//! master (`SENTINEL MASTER`) and the other sentinels (`SENTINEL SENTINELS`). It subscribes
//! first and asks second, so a failover is either in the answer or in a later message. An
//! answer that names another master is applied only if its `config-epoch` is newer than what
//! the coordinator knows: a sentinel that has not yet heard of the last failover cannot move
//! the pool back. Each subscription is health-checked with `PING` when it has been silent for a
//! second; a half-open socket is silent forever otherwise.
//!
//! # Stopping
//!
//! Every thread waits on a `crossbeam-channel` receiver whose sender the pool holds; dropping
//! the pool (or [`SentinelPool::stop_watcher`](crate::SentinelPool::stop_watcher)) drops the
//! sender and joins the threads. Reads wake every 200 ms and sentinel I/O is bounded by
//! 500 ms, so that takes well under a second.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, atomic::Ordering},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, select};
use redis::RedisResult;

use crate::{
    Event, FailoverSource, NodeAddr,
    manager::Shared,
    message::{self, SentinelMessage},
    node::{self, NodeSettings},
    sentinel::{self, Answer},
};

/// How often a blocked read wakes up to check for a stop.
const TICK: Duration = Duration::from_millis(200);
/// A subscription silent for this long is checked with `PING`.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// How often a subscriber asks its sentinel for the master and the other sentinels.
const REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// The longest any watcher I/O may take, so that stopping stays under a second.
const IO_LIMIT: Duration = Duration::from_millis(500);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A discovered (not configured) sentinel unreachable this long is forgotten.
const PRUNE_AFTER: Duration = Duration::from_secs(60);

/// The running watcher; stops and joins its threads when dropped.
#[derive(Debug)]
pub(crate) struct Watcher {
    stop: Option<Sender<()>>,
    coordinator: Option<JoinHandle<()>>,
}

impl Watcher {
    pub(crate) fn start(shared: Arc<Shared>) -> Watcher {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let coordinator = thread::Builder::new()
            .name("r2d2-sentinel-watcher".into())
            .spawn(move || Coordinator::new(shared, stop_rx).run())
            .expect("spawning the watcher thread");
        Watcher {
            stop: Some(stop_tx),
            coordinator: Some(coordinator),
        }
    }

    /// Signals every thread to stop and waits for them.
    pub(crate) fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(coordinator) = self.coordinator.take()
            && coordinator.join().is_err()
        {
            log::warn!("the watcher thread panicked");
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a subscriber tells the coordinator.
#[derive(Debug)]
enum Report {
    Connected(NodeAddr),
    Disconnected(NodeAddr, String),
    Master {
        from: NodeAddr,
        addr: NodeAddr,
        epoch: u64,
    },
    Sentinels(Vec<NodeAddr>),
    Message(NodeAddr, SentinelMessage),
}

struct Subscriber {
    /// Dropping it stops the subscriber.
    stop: Sender<()>,
    thread: JoinHandle<()>,
    /// Configured by the user: never pruned.
    seed: bool,
    connected: bool,
    down_since: Option<Instant>,
}

struct Coordinator {
    shared: Arc<Shared>,
    stop: Receiver<()>,
    reports_tx: Sender<Report>,
    reports: Receiver<Report>,
    subscribers: HashMap<NodeAddr, Subscriber>,
    /// The master as the watcher knows it, and the newest configuration epoch seen for it.
    master: Option<NodeAddr>,
    epoch: Option<u64>,
}

impl Coordinator {
    fn new(shared: Arc<Shared>, stop: Receiver<()>) -> Self {
        let (reports_tx, reports) = crossbeam_channel::unbounded();
        let master = shared.cached_master();
        Coordinator {
            shared,
            stop,
            reports_tx,
            reports,
            subscribers: HashMap::new(),
            master,
            epoch: None,
        }
    }

    fn run(mut self) {
        for addr in self.shared.sentinels() {
            self.spawn(addr, true);
        }
        loop {
            select! {
                recv(self.stop) -> _ => break,
                recv(self.reports) -> report => match report {
                    Ok(report) => self.handle(report),
                    Err(_) => break,
                },
                default(Duration::from_secs(1)) => self.prune(),
            }
        }
        for (_, subscriber) in self.subscribers.drain() {
            drop(subscriber.stop);
            if subscriber.thread.join().is_err() {
                log::warn!("a watcher subscriber thread panicked");
            }
        }
        self.shared.subscribed.lock().clear();
        self.shared.live_subscriptions.store(0, Ordering::Release);
        log::debug!("watcher for {:?} stopped", self.shared.config.service);
    }

    fn spawn(&mut self, addr: NodeAddr, seed: bool) {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let ctx = SubscriberContext {
            addr: addr.clone(),
            service: self.shared.config.service.clone(),
            settings: clamp(&self.shared.config.sentinel),
            reports: self.reports_tx.clone(),
            stop: stop_rx,
        };
        let thread = thread::Builder::new()
            .name(format!("r2d2-sentinel-sub-{}", addr.port))
            .spawn(move || ctx.run())
            .expect("spawning a watcher subscriber thread");
        self.subscribers.insert(
            addr,
            Subscriber {
                stop: stop_tx,
                thread,
                seed,
                connected: false,
                down_since: Some(Instant::now()),
            },
        );
    }

    fn handle(&mut self, report: Report) {
        match report {
            Report::Connected(addr) => {
                if let Some(s) = self.subscribers.get_mut(&addr) {
                    s.connected = true;
                    s.down_since = None;
                }
                self.set_subscribed(&addr, true);
                log::debug!("watcher subscribed to sentinel {addr}");
                self.shared
                    .events
                    .send(Event::WatcherConnected { sentinel: addr });
            }
            Report::Disconnected(addr, error) => {
                let Some(s) = self.subscribers.get_mut(&addr) else {
                    return;
                };
                s.down_since.get_or_insert_with(Instant::now);
                if std::mem::replace(&mut s.connected, false) || s.seed {
                    log::debug!("watcher lost sentinel {addr}: {error}; reconnecting with backoff");
                }
                self.set_subscribed(&addr, false);
                self.shared.events.send(Event::WatcherDisconnected {
                    sentinel: addr,
                    error,
                });
            }
            Report::Master { from, addr, epoch } => self.reconcile(from, addr, epoch),
            Report::Sentinels(list) => {
                for addr in list {
                    self.learn(addr);
                }
            }
            Report::Message(from, message) if message.service() == self.shared.config.service => {
                match message {
                    SentinelMessage::SwitchMaster { new, .. } => {
                        // Every sentinel announces the same switch: act on the first.
                        if self.master.as_ref() != Some(&new) {
                            let old = self.master.replace(new.clone());
                            self.shared.switch_master(
                                old,
                                &new,
                                &from,
                                FailoverSource::SwitchMaster,
                            );
                            // The new configuration is newer than any epoch seen so far.
                            self.epoch = self.epoch.map(|e| e + 1);
                        }
                    }
                    SentinelMessage::NewSentinel { addr, .. } => self.learn(addr),
                }
            }
            Report::Message(..) => {}
        }
    }

    fn set_subscribed(&self, addr: &NodeAddr, subscribed: bool) {
        let mut set = self.shared.subscribed.lock();
        if subscribed {
            set.insert(addr.clone());
        } else {
            set.remove(addr);
        }
        self.shared
            .live_subscriptions
            .store(set.len(), Ordering::Release);
    }

    /// A sentinel's answer to "where is the master": acted on only when it is newer than what
    /// the watcher knows.
    fn reconcile(&mut self, from: NodeAddr, addr: NodeAddr, epoch: u64) {
        if self.master.as_ref() == Some(&addr) {
            self.epoch = Some(self.epoch.map_or(epoch, |e| e.max(epoch)));
            return;
        }
        if self.epoch.is_some_and(|known| epoch <= known) {
            log::debug!("sentinel {from} names {addr} with an old epoch {epoch}; ignored");
            return;
        }
        let old = self.master.replace(addr.clone());
        self.shared
            .switch_master(old, &addr, &from, FailoverSource::Reconciliation);
        self.epoch = Some(epoch);
    }

    fn learn(&mut self, addr: NodeAddr) {
        if self.subscribers.contains_key(&addr) {
            return;
        }
        log::debug!("watcher learned of sentinel {addr}");
        self.shared.add_sentinel(addr.clone());
        self.spawn(addr.clone(), false);
        self.shared.events.send(Event::SentinelsChanged {
            added: vec![addr],
            removed: Vec::new(),
        });
    }

    /// Forgets discovered sentinels that stayed unreachable (a retired sentinel must not be
    /// asked forever); configured ones are kept.
    fn prune(&mut self) {
        let stale: HashSet<NodeAddr> = self
            .subscribers
            .iter()
            .filter(|(_, s)| !s.seed && s.down_since.is_some_and(|t| t.elapsed() > PRUNE_AFTER))
            .map(|(addr, _)| addr.clone())
            .collect();
        for addr in stale {
            if let Some(subscriber) = self.subscribers.remove(&addr) {
                drop(subscriber.stop);
                let _ = subscriber.thread.join();
            }
            log::debug!("watcher forgot sentinel {addr}: unreachable for {PRUNE_AFTER:?}");
            self.shared.remove_sentinel(&addr);
            self.shared.events.send(Event::SentinelsChanged {
                added: Vec::new(),
                removed: vec![addr],
            });
        }
    }
}

/// The sentinel settings with every wait capped at [`IO_LIMIT`].
fn clamp(settings: &NodeSettings) -> NodeSettings {
    NodeSettings {
        redis: settings.redis.clone(),
        connect_timeout: settings.connect_timeout.min(IO_LIMIT),
        read_timeout: settings.read_timeout.min(IO_LIMIT),
        write_timeout: settings.write_timeout.min(IO_LIMIT),
    }
}

/// One subscriber thread's world.
struct SubscriberContext {
    addr: NodeAddr,
    service: String,
    settings: NodeSettings,
    reports: Sender<Report>,
    stop: Receiver<()>,
}

impl SubscriberContext {
    fn run(self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let error = match self.session(&mut backoff) {
                Ok(()) => return,
                Err(error) => error,
            };
            self.report(Report::Disconnected(self.addr.clone(), error.to_string()));
            match self.stop.recv_timeout(backoff) {
                Err(RecvTimeoutError::Timeout) => backoff = (backoff * 2).min(MAX_BACKOFF),
                _ => return,
            }
        }
    }

    fn stopped(&self) -> bool {
        matches!(self.stop.try_recv(), Err(TryRecvError::Disconnected))
    }

    fn report(&self, report: Report) {
        // The coordinator is gone only when stopping.
        let _ = self.reports.send(report);
    }

    /// Subscribes and listens until an error (returned) or a stop (`Ok`).
    fn session(&self, backoff: &mut Duration) -> RedisResult<()> {
        let mut query = node::connect(&self.addr, &self.settings)?;
        let mut conn = node::connect(&self.addr, &self.settings)?;
        let mut pubsub = conn.as_pubsub();
        pubsub.subscribe(&message::CHANNELS[..])?;
        self.report(Report::Connected(self.addr.clone()));
        *backoff = MIN_BACKOFF;
        // Subscribed first, asked second: a failover is in the answer or in a later message.
        self.refresh(&mut query)?;
        pubsub.set_read_timeout(Some(TICK))?;
        let (mut heard, mut refreshed) = (Instant::now(), Instant::now());
        while !self.stopped() {
            match pubsub.get_message() {
                Ok(msg) => {
                    heard = Instant::now();
                    let payload: String = msg.get_payload()?;
                    if let Some(message) = SentinelMessage::parse(msg.get_channel_name(), &payload)
                    {
                        self.report(Report::Message(self.addr.clone(), message));
                    }
                }
                Err(err) if err.is_timeout() => {}
                Err(err) => return Err(err),
            }
            if heard.elapsed() >= HEALTH_INTERVAL {
                pubsub.set_read_timeout(Some(self.settings.read_timeout))?;
                pubsub.ping::<redis::Value>()?;
                pubsub.set_read_timeout(Some(TICK))?;
                heard = Instant::now();
            }
            if refreshed.elapsed() >= REFRESH_INTERVAL {
                self.refresh(&mut query)?;
                refreshed = Instant::now();
            }
        }
        Ok(())
    }

    /// Asks the sentinel for the master and the other sentinels.
    fn refresh(&self, query: &mut redis::Connection) -> RedisResult<()> {
        let reply = sentinel::master_cmd(&self.service).query(query)?;
        if let Answer::Master { addr, epoch } = sentinel::parse_master(&reply) {
            self.report(Report::Master {
                from: self.addr.clone(),
                addr,
                epoch,
            });
        }
        let list: Vec<HashMap<String, String>> =
            sentinel::sentinels_cmd(&self.service).query(query)?;
        self.report(Report::Sentinels(sentinel::parse_sentinels(&list)));
        Ok(())
    }
}
