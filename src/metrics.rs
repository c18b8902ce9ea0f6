//! What the pool records through the `metrics` facade (feature `metrics`): OpenTelemetry's
//! database-client pool series and Sentinel's own. The guide's "Metrics" section is the table
//! of names, units and labels.
//!
//! - A pool's series (its service and role) are registered once, when the pool or manager is
//!   made, so that the hot path (a checkout, a request) records through handles: no name is
//!   looked up, no label allocated. Install the recorder before building the pool.
//! - What happens rarely (failovers, the fence, the watcher) is recorded from the pool's
//!   events as they are sent, whether anyone reads them or not.
//! - Without the feature every type here is empty and every method does nothing, so the
//!   call sites need no `cfg` and the compiler leaves nothing behind.

#[cfg(feature = "metrics")]
pub(crate) use on::*;

#[cfg(not(feature = "metrics"))]
pub(crate) use off::*;

/// The series' names: OpenTelemetry's where it has one, `redis.sentinel.*` for the rest.
#[cfg(feature = "metrics")]
mod names {
    pub(super) const CONNECTION_COUNT: &str = "db.client.connection.count";
    pub(super) const CONNECTION_MAX: &str = "db.client.connection.max";
    pub(super) const CONNECTION_IDLE_MIN: &str = "db.client.connection.idle.min";
    pub(super) const PENDING_REQUESTS: &str = "db.client.connection.pending_requests";
    pub(super) const TIMEOUTS: &str = "db.client.connection.timeouts";
    pub(super) const CREATE_TIME: &str = "db.client.connection.create_time";
    pub(super) const WAIT_TIME: &str = "db.client.connection.wait_time";
    pub(super) const USE_TIME: &str = "db.client.connection.use_time";
    pub(super) const OPERATION_DURATION: &str = "db.client.operation.duration";
    pub(super) const FAILOVERS: &str = "redis.sentinel.failovers";
    pub(super) const INVALIDATIONS: &str = "redis.sentinel.invalidations";
    pub(super) const FENCE_RAISED: &str = "redis.sentinel.fence.raised";
    pub(super) const FENCE_LOWERED: &str = "redis.sentinel.fence.lowered";
    pub(super) const FENCE_HELD: &str = "redis.sentinel.fence.held";
    pub(super) const FENCE_UP: &str = "redis.sentinel.fence.up";
    pub(super) const SUBSCRIBED: &str = "redis.sentinel.watcher.subscribed";
    pub(super) const SILENCE: &str = "redis.sentinel.watcher.silence";
    pub(super) const RETRIES: &str = "redis.sentinel.retries";
    pub(super) const RETRY_CALLS: &str = "redis.sentinel.retry.calls";
    pub(super) const DURABLE_WRITES: &str = "redis.sentinel.durable.writes";
}

#[cfg(feature = "metrics")]
mod on {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicBool, AtomicI64, Ordering},
        },
        time::{Duration, Instant},
    };

    use metrics::{Counter, Gauge, Histogram, Label, Unit};
    use redis::{RedisError, RedisResult, Value};

    use super::names::*;
    use crate::{
        Error, Event, FailoverSource, FenceRelease, NodeAddr, durable::Shortfall, node::NodeRole,
    };

    /// When something timed began.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Timer(Instant);

    impl Timer {
        pub(crate) fn start() -> Self {
            Timer(Instant::now())
        }

        fn seconds(self) -> f64 {
            self.0.elapsed().as_secs_f64()
        }
    }

    /// One pool's series: its service and role (a master pool and each replica pool apart).
    #[derive(Debug, Clone)]
    pub(crate) struct PoolSeries {
        labels: Arc<[Label]>,
        create_time: Histogram,
        wait_time: Histogram,
        use_time: Histogram,
        pending: Gauge,
        timeouts: Counter,
        operations: Operations,
    }

    impl PoolSeries {
        pub(crate) fn new(service: &str, role: NodeRole) -> Self {
            describe();
            let role = if role == NodeRole::Master {
                "master"
            } else {
                "replica"
            };
            let labels: Arc<[Label]> = Arc::from(vec![
                Label::new("service", service.to_owned()),
                Label::new("role", role),
            ]);
            let mut operation = labels.to_vec();
            operation.push(Label::new("db.system.name", "redis"));
            PoolSeries {
                create_time: metrics::histogram!(CREATE_TIME, labels.iter()),
                wait_time: metrics::histogram!(WAIT_TIME, labels.iter()),
                use_time: metrics::histogram!(USE_TIME, labels.iter()),
                pending: metrics::gauge!(PENDING_REQUESTS, labels.iter()),
                timeouts: metrics::counter!(TIMEOUTS, labels.iter()),
                operations: Operations {
                    ok: metrics::histogram!(OPERATION_DURATION, operation.iter()),
                    labels: Arc::from(operation),
                },
                labels,
            }
        }

        /// A connection was opened (the sentinel lookup and the role check included).
        pub(crate) fn created(&self, timer: Timer) {
            self.create_time.record(timer.seconds());
        }

        /// A checkout starts: it is pending until the returned guard ends it.
        pub(crate) fn checkout(&self) -> Checkout<'_> {
            self.pending.increment(1.0);
            Checkout {
                series: self,
                timer: Timer::start(),
            }
        }

        /// The recorder of requests for a new connection.
        pub(crate) fn operations(&self) -> Operations {
            self.operations.clone()
        }

        /// Counts idle and used connections from r2d2's events for a pool of `max_size`
        /// connections keeping `min_idle`, then hands each event on to `user`'s handler.
        pub(crate) fn pool_events(
            &self,
            max_size: u32,
            min_idle: Option<u32>,
            user: Option<Box<dyn r2d2::HandleEvent>>,
        ) -> (Option<Box<dyn r2d2::HandleEvent>>, Tally) {
            let gauge = |name: &'static str, state: Option<&'static str>| {
                let mut labels = self.labels.to_vec();
                labels.extend(state.map(|s| Label::new("db.client.connection.state", s)));
                metrics::gauge!(name, labels.iter())
            };
            let counts = Arc::new(Counts {
                idle: (gauge(CONNECTION_COUNT, Some("idle")), AtomicI64::new(0)),
                used: (gauge(CONNECTION_COUNT, Some("used")), AtomicI64::new(0)),
                max: (gauge(CONNECTION_MAX, None), f64::from(max_size)),
                idle_min: (
                    gauge(CONNECTION_IDLE_MIN, None),
                    f64::from(min_idle.unwrap_or(max_size)),
                ),
                closed: AtomicBool::new(false),
            });
            counts.max.0.increment(counts.max.1);
            counts.idle_min.0.increment(counts.idle_min.1);
            let handler = PoolEvents {
                counts: Arc::clone(&counts),
                use_time: self.use_time.clone(),
                user,
            };
            (Some(Box::new(handler)), Tally(counts))
        }
    }

    /// A checkout under way; pending until ended (or dropped, by a panic).
    #[derive(Debug)]
    pub(crate) struct Checkout<'a> {
        series: &'a PoolSeries,
        timer: Timer,
    }

    impl Checkout<'_> {
        /// Records how the checkout ended: its wait when it got a connection, a timeout when
        /// none came in time.
        pub(crate) fn end<T>(self, result: &Result<T, Error>) {
            match result {
                Ok(_) => self.series.wait_time.record(self.timer.seconds()),
                Err(Error::CheckoutTimeout { .. } | Error::PoolExhausted { .. }) => {
                    self.series.timeouts.increment(1);
                }
                Err(_) => {}
            }
        }
    }

    impl Drop for Checkout<'_> {
        fn drop(&mut self) {
            self.series.pending.decrement(1.0);
        }
    }

    /// Records each request of one connection.
    #[derive(Debug, Clone)]
    pub(crate) struct Operations {
        ok: Histogram,
        labels: Arc<[Label]>,
    }

    impl Operations {
        /// A command's duration; its error, if it failed, names its series (`error.type`).
        pub(crate) fn command(&self, timer: Timer, result: &RedisResult<Value>) {
            match result {
                Ok(Value::ServerError(err)) => self.failed(timer, err.code().to_owned()),
                Ok(_) => self.ok.record(timer.seconds()),
                Err(err) => self.failed(timer, error_type(err)),
            }
        }

        /// A pipeline's duration: an error in its replies is a command's, not the request's.
        pub(crate) fn pipeline(&self, timer: Timer, result: &RedisResult<Vec<Value>>) {
            match result {
                Ok(_) => self.ok.record(timer.seconds()),
                Err(err) => self.failed(timer, error_type(err)),
            }
        }

        fn failed(&self, timer: Timer, error: String) {
            let mut labels = self.labels.to_vec();
            labels.push(Label::new("error.type", error));
            metrics::histogram!(OPERATION_DURATION, labels.iter()).record(timer.seconds());
        }
    }

    /// The server's error code (`READONLY`, this crate's `STALE`...), or what went wrong on
    /// the wire.
    fn error_type(err: &RedisError) -> String {
        if let Some(code) = err.code() {
            code.to_owned()
        } else if err.is_timeout() {
            "timeout".to_owned()
        } else if err.is_io_error() || err.is_connection_dropped() {
            "io".to_owned()
        } else {
            "other".to_owned()
        }
    }

    /// A pool's idle and used connections as r2d2's events tell them, and its size.
    #[derive(Debug)]
    struct Counts {
        idle: (Gauge, AtomicI64),
        used: (Gauge, AtomicI64),
        max: (Gauge, f64),
        idle_min: (Gauge, f64),
        /// The pool was dropped: what it added was taken back, later events are ignored.
        closed: AtomicBool,
    }

    impl Counts {
        fn add(&self, (gauge, count): &(Gauge, AtomicI64), by: i64) {
            if !self.closed.load(Ordering::Acquire) {
                count.fetch_add(by, Ordering::Relaxed);
                #[allow(clippy::cast_precision_loss)] // by is ±1
                gauge.increment(by as f64);
            }
        }
    }

    /// What a pool added to the shared gauges, taken back when the pool is dropped (several
    /// pools of one service and role add to the same series).
    #[derive(Debug, Clone)]
    pub(crate) struct Tally(Arc<Counts>);

    impl Tally {
        /// The pool's evicting thread took an idle connection with r2d2's `try_get`, which
        /// tells no event (its return does).
        pub(crate) fn taken_unseen(&self) {
            self.0.add(&self.0.idle, -1);
            self.0.add(&self.0.used, 1);
        }

        pub(crate) fn close(&self) {
            let counts = &self.0;
            if counts.closed.swap(true, Ordering::AcqRel) {
                return;
            }
            for (gauge, count) in [&counts.idle, &counts.used] {
                #[allow(clippy::cast_precision_loss)] // a pool holds at most 10,000
                gauge.decrement(count.swap(0, Ordering::Relaxed) as f64);
            }
            counts.max.0.decrement(counts.max.1);
            counts.idle_min.0.decrement(counts.idle_min.1);
        }
    }

    /// r2d2's event handler for a pool with metrics: counts, then hands on to the user's.
    #[derive(Debug)]
    struct PoolEvents {
        counts: Arc<Counts>,
        use_time: Histogram,
        user: Option<Box<dyn r2d2::HandleEvent>>,
    }

    impl r2d2::HandleEvent for PoolEvents {
        fn handle_acquire(&self, event: r2d2::event::AcquireEvent) {
            self.counts.add(&self.counts.idle, 1);
            if let Some(user) = &self.user {
                user.handle_acquire(event);
            }
        }

        fn handle_release(&self, event: r2d2::event::ReleaseEvent) {
            // r2d2 closes idle connections only: a broken one is checked in first.
            self.counts.add(&self.counts.idle, -1);
            if let Some(user) = &self.user {
                user.handle_release(event);
            }
        }

        fn handle_checkout(&self, event: r2d2::event::CheckoutEvent) {
            self.counts.add(&self.counts.idle, -1);
            self.counts.add(&self.counts.used, 1);
            if let Some(user) = &self.user {
                user.handle_checkout(event);
            }
        }

        fn handle_timeout(&self, event: r2d2::event::TimeoutEvent) {
            // The pool waits on r2d2 in slices: its own timeouts are counted by `Checkout`.
            if let Some(user) = &self.user {
                user.handle_timeout(event);
            }
        }

        fn handle_checkin(&self, event: r2d2::event::CheckinEvent) {
            // The evicting thread's look at idle connections is no use.
            if !crate::manager::round_trips_skipped_on_this_thread() {
                self.use_time.record(event.duration().as_secs_f64());
            }
            self.counts.add(&self.counts.used, -1);
            self.counts.add(&self.counts.idle, 1);
            if let Some(user) = &self.user {
                user.handle_checkin(event);
            }
        }
    }

    /// A service's series: what the watcher, the retry loop and durable mode did, shared by
    /// the master pool and its replica pools.
    #[derive(Debug)]
    pub(crate) struct ServiceSeries {
        service: Label,
        confirmed: Counter,
        not_replicated: Counter,
        not_persisted: Counter,
    }

    impl ServiceSeries {
        pub(crate) fn new(service: &str) -> Self {
            describe();
            let service = Label::new("service", service.to_owned());
            let durable = |outcome: &'static str| {
                let labels = [service.clone(), Label::new("outcome", outcome)];
                metrics::counter!(DURABLE_WRITES, labels.iter())
            };
            ServiceSeries {
                confirmed: durable("confirmed"),
                not_replicated: durable("not_replicated"),
                not_persisted: durable("not_persisted"),
                service,
            }
        }

        fn counter(&self, name: &'static str, label: Option<(&'static str, &str)>) -> Counter {
            let mut labels = vec![self.service.clone()];
            labels.extend(label.map(|(k, v)| Label::new(k, v.to_owned())));
            metrics::counter!(name, labels.iter())
        }

        fn gauge(&self, name: &'static str, sentinel: Option<&NodeAddr>) -> Gauge {
            let mut labels = vec![self.service.clone()];
            labels.extend(sentinel.map(|s| Label::new("sentinel", s.to_string())));
            metrics::gauge!(name, labels.iter())
        }

        /// Records what an event tells: failovers, invalidations, the fence, subscriptions.
        pub(crate) fn event(&self, event: &Event) {
            match event {
                Event::Failover { via, .. } => {
                    self.counter(FAILOVERS, Some(("via", source(*via))))
                        .increment(1);
                }
                Event::Invalidated { .. } => self.counter(INVALIDATIONS, None).increment(1),
                Event::FenceUp { .. } => {
                    self.counter(FENCE_RAISED, None).increment(1);
                    self.gauge(FENCE_UP, None).set(1.0);
                }
                Event::FenceResumed { via, held, .. } => self.lowered(source(*via), *held),
                Event::FenceReleased { reason, held } => {
                    let reason = match reason {
                        FenceRelease::Aborted { .. } => "aborted",
                        FenceRelease::TimedOut => "timed_out",
                        FenceRelease::LeaderLost { .. } => "leader_lost",
                        FenceRelease::WatcherStopped => "watcher_stopped",
                    };
                    self.lowered(reason, *held);
                }
                Event::WatcherConnected { sentinel } => self.subscribed(sentinel, true),
                Event::WatcherDisconnected { sentinel, .. } => self.subscribed(sentinel, false),
                Event::SentinelsChanged { removed, .. } => {
                    removed.iter().for_each(|s| self.subscribed(s, false));
                }
                _ => {}
            }
        }

        fn lowered(&self, reason: &str, held: Duration) {
            self.counter(FENCE_LOWERED, Some(("reason", reason)))
                .increment(1);
            let labels = [
                self.service.clone(),
                Label::new("reason", reason.to_owned()),
            ];
            metrics::histogram!(FENCE_HELD, labels.iter()).record(held.as_secs_f64());
            self.gauge(FENCE_UP, None).set(0.0);
        }

        /// Whether the watcher is subscribed to `sentinel` now.
        pub(crate) fn subscribed(&self, sentinel: &NodeAddr, subscribed: bool) {
            self.gauge(SUBSCRIBED, Some(sentinel))
                .set(if subscribed { 1.0 } else { 0.0 });
        }

        /// How long ago the watcher last heard `sentinel`.
        pub(crate) fn silence(&self, sentinel: &NodeAddr, since: Instant) {
            self.gauge(SILENCE, Some(sentinel))
                .set(since.elapsed().as_secs_f64());
        }

        /// A retry after an error that applied nothing, or one that may have.
        pub(crate) fn retried(&self, maybe_applied: bool) {
            let class = if maybe_applied {
                "maybe_applied"
            } else {
                "unapplied"
            };
            self.counter(RETRIES, Some(("class", class))).increment(1);
        }

        /// How a `with_retry` call ended.
        pub(crate) fn call<T>(&self, result: &Result<T, Error>) {
            let outcome = match result {
                Ok(_) => "ok",
                Err(Error::MaybeApplied { .. }) => "maybe_applied",
                Err(Error::NotReplicated { .. }) => "not_replicated",
                Err(Error::NotPersisted { .. }) => "not_persisted",
                Err(Error::RetriesExhausted { .. }) => "exhausted",
                Err(_) => "failed",
            };
            self.counter(RETRY_CALLS, Some(("outcome", outcome)))
                .increment(1);
        }

        /// What a durable write's confirmation said (a reply that was no count says
        /// nothing).
        pub(crate) fn durable(&self, verdict: &Result<(), RedisError>) {
            let counter = match verdict.as_ref().map_err(Shortfall::of) {
                Ok(()) => &self.confirmed,
                Err(Some(Shortfall {
                    on_master: None, ..
                })) => &self.not_replicated,
                Err(Some(_)) => &self.not_persisted,
                Err(None) => return,
            };
            counter.increment(1);
        }
    }

    fn source(via: FailoverSource) -> &'static str {
        match via {
            FailoverSource::SwitchMaster => "switch_master",
            FailoverSource::Reconciliation => "reconciliation",
            FailoverSource::Promotion => "promotion",
            FailoverSource::Handover => "handover",
        }
    }

    /// Describes every series to the recorder (once per pool: recorders keep the first).
    fn describe() {
        use metrics::{describe_counter, describe_gauge, describe_histogram};
        let seconds = Unit::Seconds;
        describe_gauge!(CONNECTION_COUNT, "Connections open, by state (idle, used).");
        describe_gauge!(CONNECTION_MAX, "The most connections the pool opens.");
        describe_gauge!(CONNECTION_IDLE_MIN, "The idle connections the pool keeps.");
        describe_gauge!(PENDING_REQUESTS, "Checkouts waiting for a connection.");
        describe_counter!(TIMEOUTS, "Checkouts that got no connection in time.");
        describe_histogram!(CREATE_TIME, seconds, "Time to open a connection.");
        describe_histogram!(WAIT_TIME, seconds, "Time a checkout waited.");
        describe_histogram!(USE_TIME, seconds, "Time a connection was checked out.");
        describe_histogram!(
            OPERATION_DURATION,
            seconds,
            "Time of a request (command or pipeline)."
        );
        describe_counter!(
            FAILOVERS,
            "Failovers the pool followed, by how it learned of them."
        );
        describe_counter!(
            INVALIDATIONS,
            "Generations ended for another reason than a failover."
        );
        describe_counter!(
            FENCE_RAISED,
            "Fences raised: writes held during a promotion."
        );
        describe_counter!(FENCE_LOWERED, "Fences lowered, by reason.");
        describe_histogram!(FENCE_HELD, seconds, "How long a fence held writes.");
        describe_gauge!(FENCE_UP, "1 while a fence holds writes.");
        describe_gauge!(
            SUBSCRIBED,
            "1 while the watcher is subscribed to the sentinel."
        );
        describe_gauge!(
            SILENCE,
            seconds,
            "Time since the watcher last heard the sentinel."
        );
        describe_counter!(RETRIES, "Retries by with_retry, by class of the error.");
        describe_counter!(RETRY_CALLS, "with_retry calls, by outcome.");
        describe_counter!(DURABLE_WRITES, "Durable writes, by what WAIT confirmed.");
    }
}

#[cfg(not(feature = "metrics"))]
mod off {
    //! The same surface, empty: nothing is recorded, nothing is kept.

    use std::time::Instant;

    use redis::{RedisError, RedisResult, Value};

    use crate::{Error, Event, NodeAddr, node::NodeRole};

    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Timer;

    impl Timer {
        #[inline]
        pub(crate) fn start() -> Self {
            Timer
        }
    }

    #[derive(Debug, Clone)]
    pub(crate) struct PoolSeries;

    impl PoolSeries {
        #[inline]
        pub(crate) fn new(_: &str, _: NodeRole) -> Self {
            PoolSeries
        }

        #[inline]
        pub(crate) fn created(&self, _: Timer) {}

        #[inline]
        pub(crate) fn checkout(&self) -> Checkout {
            Checkout
        }

        #[inline]
        pub(crate) fn operations(&self) -> Operations {
            Operations
        }

        #[inline]
        pub(crate) fn pool_events(
            &self,
            _: u32,
            _: Option<u32>,
            user: Option<Box<dyn r2d2::HandleEvent>>,
        ) -> (Option<Box<dyn r2d2::HandleEvent>>, Tally) {
            (user, Tally)
        }
    }

    #[derive(Debug)]
    pub(crate) struct Checkout;

    impl Checkout {
        #[inline]
        pub(crate) fn end<T>(self, _: &Result<T, Error>) {}
    }

    #[derive(Debug, Clone)]
    pub(crate) struct Operations;

    impl Operations {
        #[inline]
        pub(crate) fn command(&self, _: Timer, _: &RedisResult<Value>) {}

        #[inline]
        pub(crate) fn pipeline(&self, _: Timer, _: &RedisResult<Vec<Value>>) {}
    }

    #[derive(Debug, Clone)]
    pub(crate) struct Tally;

    impl Tally {
        #[inline]
        pub(crate) fn taken_unseen(&self) {}

        #[inline]
        pub(crate) fn close(&self) {}
    }

    #[derive(Debug)]
    pub(crate) struct ServiceSeries;

    impl ServiceSeries {
        #[inline]
        pub(crate) fn new(_: &str) -> Self {
            ServiceSeries
        }

        #[inline]
        pub(crate) fn event(&self, _: &Event) {}

        #[inline]
        pub(crate) fn subscribed(&self, _: &NodeAddr, _: bool) {}

        #[inline]
        pub(crate) fn silence(&self, _: &NodeAddr, _: Instant) {}

        #[inline]
        pub(crate) fn retried(&self, _: bool) {}

        #[inline]
        pub(crate) fn call<T>(&self, _: &Result<T, Error>) {}

        #[inline]
        pub(crate) fn durable(&self, _: &Result<(), RedisError>) {}
    }
}
