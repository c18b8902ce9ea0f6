//! One subscriber thread: holds a subscription to one sentinel's events, reads it the moment a
//! message arrives, and reports to the coordinator.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use redis::{RedisResult, Role};

use super::{fence::Attempts, report::Report};
use crate::{
    NodeAddr,
    backoff::Backoff,
    node::{self, AddressMap, NodeSettings},
    sentinel::message::{self, SentinelMessage},
    sentinel::{self, Answer},
};

/// How often a blocked read wakes up to check for a stop.
const TICK: Duration = Duration::from_millis(200);
/// A subscription silent for this long is checked with `PING`.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// How often at most a subscriber tells the coordinator it heard its sentinel: often enough
/// for [`HEARD_WITHIN`](crate::shared::liveness::HEARD_WITHIN), rarely enough to cost nothing.
const HEARD_REPORTS: Duration = Duration::from_millis(250);
/// How often a subscriber asks its sentinel for the master and the other sentinels.
const REFRESH_INTERVAL: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a subscriber waits before trying again an address that answered but is not a
/// sentinel (a data node in the sentinel list): a configuration mistake, not an outage.
const NOT_A_SENTINEL_BACKOFF: Duration = Duration::from_secs(30);

/// Why a session ended.
enum Ended {
    Stopped,
    Failed(String),
    NotASentinel,
    /// It does not know `ROLE`: a Sentinel-compatible endpoint that answers lookups only.
    LookupOnly,
}

impl From<redis::RedisError> for Ended {
    fn from(err: redis::RedisError) -> Self {
        Ended::Failed(err.to_string())
    }
}

/// One subscriber thread's world.
pub(super) struct SentinelSubscription {
    pub(super) addr: NodeAddr,
    pub(super) service: String,
    pub(super) settings: NodeSettings,
    /// Applied to every address the sentinel announces.
    pub(super) map: AddressMap,
    pub(super) reports: Sender<Report>,
    pub(super) stop: Receiver<()>,
}

impl SentinelSubscription {
    pub(super) fn run(self) {
        let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
        loop {
            let wait = match self.session(&mut backoff) {
                Ended::Stopped => return,
                Ended::Failed(error) => {
                    self.report(Report::Disconnected(self.addr.clone(), error));
                    backoff.next_wait()
                }
                // Nothing to subscribe to there: lookups and ROLE checks follow failovers.
                Ended::LookupOnly => {
                    log::info!(
                        "sentinel {} answers lookups only (no ROLE): the watcher does not \
                         subscribe to it",
                        self.addr
                    );
                    self.report(Report::Disconnected(
                        self.addr.clone(),
                        "a lookup-only endpoint (it does not know ROLE): not watched".to_owned(),
                    ));
                    return;
                }
                Ended::NotASentinel => {
                    self.report(Report::Disconnected(
                        self.addr.clone(),
                        "it answered, but it is not a sentinel".to_owned(),
                    ));
                    backoff.jitter(NOT_A_SENTINEL_BACKOFF)
                }
            };
            if !matches!(self.stop.recv_timeout(wait), Err(RecvTimeoutError::Timeout)) {
                return;
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

    /// Subscribes and listens until an error or a stop.
    fn session(&self, backoff: &mut Backoff) -> Ended {
        let mut query = match node::connect(&self.addr, &self.settings) {
            Ok(conn) => conn,
            Err(err) => return err.into(),
        };
        match redis::cmd("ROLE").query::<Role>(&mut query) {
            Ok(Role::Sentinel { .. }) => {}
            Ok(_) => return Ended::NotASentinel,
            Err(err) if crate::outcome::is_unknown_command(&err) => return Ended::LookupOnly,
            Err(err) => return err.into(),
        }
        let mut conn = match node::connect(&self.addr, &self.settings) {
            Ok(conn) => conn,
            Err(err) => return err.into(),
        };
        let mut pubsub = conn.as_pubsub();
        match self.listen(&mut pubsub, &mut query, backoff) {
            Ok(()) => Ended::Stopped,
            Err(ended) => ended,
        }
    }

    fn listen(
        &self,
        pubsub: &mut redis::PubSub<'_>,
        query: &mut redis::Connection,
        backoff: &mut Backoff,
    ) -> Result<(), Ended> {
        pubsub.subscribe(&message::CHANNELS[..])?;
        // Subscribed first, asked second: a failover is in the answer or in a later message.
        self.refresh(query)?;
        self.report(Report::Connected(self.addr.clone()));
        // Only a session that got this far resets the backoff: an address that accepts the
        // subscription and fails the refresh must not be reconnected to every 100 ms.
        backoff.reset();
        pubsub.set_read_timeout(Some(TICK))?;
        let (mut heard, mut refreshed) = (Instant::now(), Instant::now());
        let mut reported = heard;
        let mut attempts = Attempts::default();
        while !self.stopped() {
            if heard.duration_since(reported) >= HEARD_REPORTS {
                reported = heard;
                self.report(Report::Heard {
                    from: self.addr.clone(),
                    at: heard,
                });
            }
            match pubsub.get_message() {
                Ok(msg) => {
                    heard = Instant::now();
                    let payload: String = msg.get_payload()?;
                    if let Some(message) = SentinelMessage::parse(msg.get_channel_name(), &payload)
                    {
                        // The epoch check compares addresses as announced; the pool gets
                        // them mapped.
                        let epoch = match message {
                            SentinelMessage::SwitchMaster { .. } => self.epoch_of(&message, query),
                            _ => attempts.epoch_of(&message, &self.service),
                        };
                        if matches!(message, SentinelMessage::NewEpoch { .. }) {
                            continue;
                        }
                        self.report(Report::Message {
                            from: self.addr.clone(),
                            message: message.mapped(&self.map),
                            epoch,
                        });
                    }
                }
                Err(err) if err.is_timeout() => {}
                Err(err) => return Err(err.into()),
            }
            if heard.elapsed() >= HEALTH_INTERVAL {
                pubsub.set_read_timeout(Some(self.settings.read_timeout))?;
                pubsub.ping::<redis::Value>()?;
                pubsub.set_read_timeout(Some(TICK))?;
                heard = Instant::now();
            }
            if refreshed.elapsed() >= REFRESH_INTERVAL {
                self.refresh(query)?;
                refreshed = Instant::now();
            }
        }
        Ok(())
    }

    /// The configuration epoch of a `+switch-master`, asked from the sentinel that announced
    /// it (the message carries none); `None` when it cannot be asked or names another master.
    fn epoch_of(&self, message: &SentinelMessage, query: &mut redis::Connection) -> Option<u64> {
        let SentinelMessage::SwitchMaster { new, .. } = message else {
            return None;
        };
        if message.service() != Some(self.service.as_str()) {
            return None;
        }
        let reply = sentinel::master_cmd(&self.service).query(query).ok()?;
        match sentinel::parse_master(&reply) {
            Answer::Master { addr, epoch } if addr == *new => Some(epoch),
            _ => None,
        }
    }

    /// Asks the sentinel for the master, the other sentinels and the healthy replicas, and
    /// whether it leads a promotion now (the steps of a failover that started before this
    /// subscription are not published again).
    fn refresh(&self, query: &mut redis::Connection) -> RedisResult<()> {
        let master: HashMap<String, String> = sentinel::master_cmd(&self.service).query(query)?;
        if let Answer::Master { addr, epoch } = sentinel::parse_master(&master) {
            self.report(Report::Master {
                from: self.addr.clone(),
                addr: self.map.apply(addr),
                epoch,
                down_after: sentinel::parse_down_after(&master),
            });
        }
        let list: Vec<HashMap<String, String>> =
            sentinel::sentinels_cmd(&self.service).query(query)?;
        let sentinels = sentinel::parse_sentinels(&list)
            .into_iter()
            .map(|addr| self.map.apply(addr))
            .collect();
        self.report(Report::Sentinels(sentinels));
        let list: Vec<HashMap<String, String>> =
            sentinel::replicas_cmd(&self.service).query(query)?;
        if let Some(candidate) = sentinel::promotion_in_progress(&master, &list) {
            self.report(Report::InProgress {
                from: self.addr.clone(),
                candidate: self.map.apply(candidate),
            });
        }
        let replicas = sentinel::parse_replicas(&list)
            .into_iter()
            .map(|addr| self.map.apply(addr))
            .collect();
        self.report(Report::Replicas {
            from: self.addr.clone(),
            list: replicas,
        });
        Ok(())
    }
}
