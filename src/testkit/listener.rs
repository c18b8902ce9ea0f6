//! [`Listener`]: an independent subscriber on every sentinel, to time what a pool does after
//! an announcement.

use std::{
    sync::atomic::Ordering,
    thread,
    time::{Duration, Instant},
};

use super::Error;
use crate::{NodeAddr, node};

/// One message a [`Listener`] received.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Published {
    /// The sentinel that published it.
    pub sentinel: NodeAddr,
    /// When it was received.
    pub at: Instant,
    /// The message.
    pub payload: String,
}

/// Subscriptions to one channel on every sentinel, from
/// [`Topology::listen`](super::Topology::listen); its threads stop when it is dropped.
#[derive(Debug)]
pub struct Listener {
    messages: crossbeam_channel::Receiver<Published>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Listener {
    pub(super) fn start(
        sentinels: Vec<NodeAddr>,
        channel: &str,
        access: &super::process::Access,
    ) -> Result<Self, Error> {
        let (tx, messages) = crossbeam_channel::unbounded();
        let (ready_tx, ready) = crossbeam_channel::unbounded();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let settings = access.settings(Duration::from_secs(1));
        let threads = sentinels
            .into_iter()
            .map(|sentinel| {
                let (tx, ready, stop) =
                    (tx.clone(), ready_tx.clone(), std::sync::Arc::clone(&stop));
                let (settings, channel) = (settings.clone(), channel.to_owned());
                thread::spawn(move || {
                    // The subscription lives as long as its `PubSub`: both stay in this thread.
                    let mut conn = match node::connect(&sentinel, &settings) {
                        Ok(conn) => conn,
                        Err(err) => return drop(ready.send(Err(err))),
                    };
                    let mut pubsub = conn.as_pubsub();
                    let subscribed = pubsub
                        .subscribe(&channel)
                        .and_then(|()| pubsub.set_read_timeout(Some(Duration::from_millis(100))));
                    let failed = subscribed.is_err();
                    let _ = ready.send(subscribed);
                    while !failed && !stop.load(Ordering::Relaxed) {
                        match pubsub.get_message() {
                            Ok(msg) => {
                                let at = Instant::now();
                                let payload = msg.get_payload().unwrap_or_default();
                                let _ = tx.send(Published {
                                    sentinel: sentinel.clone(),
                                    at,
                                    payload,
                                });
                            }
                            Err(err) if err.is_timeout() => {}
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect::<Vec<_>>();
        let listener = Listener {
            messages,
            stop,
            threads,
        };
        // Every subscription is in place before `listen` returns: nothing published after it
        // is missed.
        for _ in 0..listener.threads.len() {
            match ready.recv() {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Err(Error::Redis(err)),
                Err(_) => break,
            }
        }
        Ok(listener)
    }

    /// The next message, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Published> {
        self.messages.recv_timeout(timeout).ok()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
