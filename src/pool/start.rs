//! How a pool is made and torn down: the first connect, the r2d2 pool over the manager with
//! this crate's settings, the evicting thread, and the owner that stops the watcher with the
//! last pool.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use scheduled_thread_pool::{OnPoolDropBehavior, ScheduledThreadPool};

use super::{Guard, Owner, SentinelPool};
use crate::{
    Builder, Connection, Error, config::Config, manager::SentinelManager, metrics::Tally,
    shared::Generation,
};

/// How often an evicting thread whose pool is gone (while the manager's other pools live on)
/// notices it.
const EVICT_TICK: Duration = Duration::from_millis(200);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.shut_down();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.tally.close();
        self.stop_evicting.store(true, Ordering::Relaxed);
        // The last pool closes the generation, which ends the evicting thread at once; any
        // other ends within its tick.
        drop(self.owner.take());
        if let Some(evict) = self.evict.take()
            && evict.join().is_err()
        {
            log::warn!("the evicting thread panicked");
        }
    }
}

/// Closes the idle connections of a generation when it ends. r2d2 hands out the most
/// recently returned connection first and offers no way to drop idle ones, so without this
/// the sockets to an old master stay open until a checkout happens to reach them. Draining
/// the idle list with `try_get` checks each connection with no round trip (a stale one fails
/// on its generation or replica set, and r2d2 closes it and opens a replacement up to
/// `min_idle`); the others go back at once. No I/O: a hung node cannot hold the thread, and
/// dropping the pool, which joins it, takes one tick at most. Runs only when a generation
/// ends, never on the hot path; ends when the generation is closed.
fn start_evicting(
    pool: r2d2::Pool<SentinelManager>,
    generation: Arc<Generation>,
    stop: Arc<AtomicBool>,
    tally: Tally,
) -> Result<thread::JoinHandle<()>, Error> {
    let name = "r2d2-sentinel-evict";
    thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            crate::manager::skip_round_trips_on_this_thread();
            let mut seen = generation.current();
            while !stop.load(Ordering::Relaxed) && !generation.is_closed() {
                if !generation.wait_for_change(seen, EVICT_TICK) {
                    continue;
                }
                seen = generation.current();
                let mut valid = Vec::new();
                while let Some(conn) = pool.try_get() {
                    tally.taken_unseen();
                    valid.push(conn);
                }
                drop(valid);
            }
        })
        .map_err(|err| Error::ThreadSpawn {
            name: name.to_owned(),
            reason: err.to_string(),
        })
}

impl SentinelPool {
    /// Starts a pool: unless `lazy`, one connection to the master first (fail fast, with a
    /// typed error), then the watcher and the r2d2 pool.
    pub(crate) fn start(config: Config, lazy: bool) -> Result<Self, Error> {
        let manager = SentinelManager::new(config);
        if !lazy {
            // Asks the sentinels, connects to the master with the data-node credentials and
            // checks its role.
            drop(manager.connect()?);
        }
        manager.start_watcher()?;
        let owner = Arc::new(Owner(manager.clone()));
        let max_size = manager.shared.config.max_size;
        let pool = Self::pool_of(manager, owner, max_size)?;
        if !lazy {
            pool.until_settled();
        }
        log::info!(
            "pool for {:?} started; master {}",
            pool.shared().config.service,
            pool.shared()
                .cached_master()
                .map_or_else(|| "not known yet".to_owned(), |m| m.to_string())
        );
        Ok(pool)
    }

    /// Waits, at most `checkout_timeout`, until the pool holds its first idle connection
    /// (r2d2 opens them in the background, up to `min_idle`) and the watcher, if on, listens
    /// to a sentinel: so that `stats()` right after `build()` shows what the pool has.
    /// A pool of connections to the node `addr` (a cluster's, or a standalone server), of
    /// the role `role`; with `check`, after one connect that must succeed (no I/O otherwise).
    pub(crate) fn for_node(
        config: Config,
        addr: crate::NodeAddr,
        role: crate::node::NodeRole,
        check: bool,
    ) -> Result<Self, Error> {
        let manager = SentinelManager::for_node(config, addr, role);
        if check {
            drop(manager.connect()?);
        }
        let owner = Arc::new(Owner(manager.clone()));
        let max_size = manager.shared.config.max_size;
        Self::pool_of(manager, owner, max_size)
    }

    fn until_settled(&self) {
        let shared = self.shared();
        let deadline = Instant::now() + shared.config.checkout_timeout;
        let fills = shared.config.min_idle != Some(0);
        while Instant::now() < deadline
            && ((fills && self.pool.state().connections == 0)
                || (shared.config.watcher && !shared.watcher.listens()))
        {
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// The r2d2 pool over `manager`, and its evicting thread.
    pub(super) fn pool_of(
        manager: SentinelManager,
        owner: Arc<Owner>,
        max_size: u32,
    ) -> Result<SentinelPool, Error> {
        let handle = manager.clone();
        let shared = Arc::clone(&manager.shared);
        let config = &shared.config;
        let mut builder = r2d2::Pool::builder()
            .max_size(max_size)
            .min_idle(config.min_idle)
            .connection_timeout(config.checkout_timeout)
            .idle_timeout(config.idle_timeout)
            .max_lifetime(config.max_lifetime)
            // The generation check lives in `is_valid`: it must run on every checkout.
            .test_on_check_out(true)
            // Failures are logged where they happen, at the level they deserve; r2d2's default
            // handler would log each stale connection dropped after a failover as an error.
            .error_handler(Box::new(r2d2::NopErrorHandler))
            // r2d2's default thread pool runs its pending jobs after the pool is dropped: the
            // reaper (every 30 s) and connect retries would keep its threads alive that long.
            .thread_pool(Arc::new(
                ScheduledThreadPool::builder()
                    .num_threads(3)
                    .thread_name_pattern("r2d2-sentinel-{}")
                    .on_drop_behavior(OnPoolDropBehavior::DiscardPendingScheduled)
                    .build(),
            ));
        let hooks = &config.hooks;
        if let Some(customizer) = &hooks.customizer {
            builder = builder.connection_customizer(Box::new(SharedHook(Arc::clone(customizer))));
        }
        let user = hooks
            .event_handler
            .as_ref()
            .map(|handler| Box::new(SharedHook(Arc::clone(handler))) as Box<dyn r2d2::HandleEvent>);
        // With the feature `metrics`, r2d2's events count idle and used connections first.
        let (handler, tally) = manager.series.pool_events(max_size, config.min_idle, user);
        if let Some(handler) = handler {
            builder = builder.event_handler(handler);
        }
        let pool = builder.build_unchecked(manager);
        let stop_evicting = Arc::new(AtomicBool::new(false));
        let evict = start_evicting(
            pool.clone(),
            Arc::clone(&shared.generation),
            Arc::clone(&stop_evicting),
            tally.clone(),
        )?;
        Ok(SentinelPool {
            pool,
            guard: Arc::new(Guard {
                manager: handle,
                owner: Some(owner),
                stop_evicting,
                evict: Some(evict),
                tally,
            }),
        })
    }
}

/// Starting a pool: here rather than with the options, so that the options know nothing of
/// the pool they configure.
impl Builder {
    /// Validates every option, asks the sentinels for the master of the service, opens one
    /// connection to it, and starts the pool. Idle connections are then opened in the
    /// background up to `min_idle`.
    ///
    /// # Errors
    ///
    /// A configuration error ([`Error::NoSentinels`], [`Error::InvalidSentinelAddress`],
    /// [`Error::InvalidConfig`]); [`Error::UnknownService`] when no sentinel monitors the
    /// service; [`Error::NotASentinel`], [`Error::SentinelAuth`] or
    /// [`Error::SentinelsUnreachable`] when no sentinel answers as it should; [`Error::Auth`] or
    /// [`Error::Connect`] when the master cannot be used; [`Error::MasterDown`] or
    /// [`Error::WrongRole`] during a failover.
    pub fn build(self) -> Result<SentinelPool, Error> {
        let replicas = self.replicas;
        let pool = SentinelPool::start(self.check()?, false)?;
        match replicas {
            Some(options) => pool.replica_pool(options),
            None => Ok(pool),
        }
    }

    /// Validates every option and starts the pool without asking anything: for a service that
    /// starts while its sentinels are still coming up (Kubernetes start order). Connections
    /// are made once the sentinels answer; until then [`get`](SentinelPool::get) returns the
    /// same typed errors [`build`](Builder::build) would (a configuration error as it is, the
    /// others in a [`CheckoutTimeout`](Error::CheckoutTimeout)). Like r2d2's
    /// `build_unchecked`.
    ///
    /// # Errors
    ///
    /// A configuration error; [`Error::ThreadSpawn`].
    pub fn build_unchecked(self) -> Result<SentinelPool, Error> {
        let replicas = self.replicas;
        let pool = SentinelPool::start(self.check()?, true)?;
        match replicas {
            Some(options) => pool.replica_pool(options),
            None => Ok(pool),
        }
    }
}

/// A hook given to the builder, shared by the master pool and its replica pools (r2d2 takes
/// each hook in a `Box` of its own).
#[derive(Debug)]
struct SharedHook<T: ?Sized>(Arc<T>);

impl r2d2::CustomizeConnection<Connection, Error>
    for SharedHook<dyn r2d2::CustomizeConnection<Connection, Error>>
{
    fn on_acquire(&self, conn: &mut Connection) -> Result<(), Error> {
        self.0.on_acquire(conn)
    }

    fn on_release(&self, conn: Connection) {
        self.0.on_release(conn);
    }
}

impl r2d2::HandleEvent for SharedHook<dyn r2d2::HandleEvent> {
    fn handle_acquire(&self, event: r2d2::event::AcquireEvent) {
        self.0.handle_acquire(event);
    }

    fn handle_release(&self, event: r2d2::event::ReleaseEvent) {
        self.0.handle_release(event);
    }

    fn handle_checkout(&self, event: r2d2::event::CheckoutEvent) {
        self.0.handle_checkout(event);
    }

    fn handle_timeout(&self, event: r2d2::event::TimeoutEvent) {
        self.0.handle_timeout(event);
    }

    fn handle_checkin(&self, event: r2d2::event::CheckinEvent) {
        self.0.handle_checkin(event);
    }
}
