//! Durable mode's hooks on a pooled connection: what it asks the master before a write, why it
//! refuses one unsent, and the per-call setting.

use redis::{ConnectionLike, RedisResult, Value};

use super::{
    Durability, Replicas,
    state::LISTING_FRESH,
    wait::{cannot_confirm, no_replicas, refused, unconfirmable, uncountable},
};
use crate::{Connection, connection::Tracked, node::NodeRole};

impl Connection {
    /// In durable mode, for the request `before` just read (`kept`: the session as it was
    /// before it): the durability and the number of replicas its `WAIT` asks for, or `None`
    /// when it writes nothing (or the mode is off, or the pool is still setting the
    /// connection up). An error, the request unsent and the session set back to what the
    /// server has, when the write cannot be confirmed: see [`durable_refusal`].
    ///
    /// [`durable_refusal`]: Connection::durable_refusal
    pub(crate) fn durable_wait(&mut self, kept: Tracked) -> RedisResult<Option<(Durability, u32)>> {
        let Some(durability) = self.durable.mode else {
            return Ok(None);
        };
        let writes = self.accounting.effects.iter().any(|e| e.may_write());
        let opens_multi = self.hygiene.tracked.in_transaction && !kept.in_transaction;
        if !self.hygiene.handed_out || !(writes || opens_multi) {
            return Ok(None);
        }
        let checked = if writes {
            self.durable_refusal(durability, kept).map(Some)
        } else {
            // It opens a transaction whose writes its EXEC will apply: what cannot be asked
            // inside MULTI (where it would be queued) is asked now.
            self.prepare_durable(durability, false).map(|_| None)
        };
        match checked {
            Ok(asked) => Ok(asked.map(|asked| (durability, asked))),
            Err(err) => {
                self.unsend(kept);
                Err(err)
            }
        }
    }

    /// Why a write in durable mode cannot be sent, if it cannot; else how many replicas its
    /// `WAIT` asks for:
    /// - it writes on a subscribed connection, or writes and then leaves `MULTI` open: no
    ///   `WAIT` can follow it;
    /// - the master cannot confirm writes ([`check_durable`](Connection::check_durable));
    /// - with every replica: the master's replicas cannot be counted (our user may not run
    ///   `ROLE`), none is connected, or one Sentinel may promote is not
    ///   ([`Shared::unconfirmable`](crate::shared::Shared::unconfirmable)).
    fn durable_refusal(&mut self, durability: Durability, kept: Tracked) -> RedisResult<u32> {
        let refuse = |why: &str| Err(refused(format!("durable mode: {why}. It was not sent")));
        if self.hygiene.tracked.subscribed {
            return refuse(
                "this request writes on a subscribed connection, where no WAIT can follow \
                 it; send writes and SUBSCRIBE on separate connections",
            );
        }
        if self.hygiene.tracked.in_transaction {
            return refuse(
                "this request writes and then leaves MULTI open, so no WAIT can confirm its \
                 writes; send MULTI ... EXEC in one request (an atomic pipeline)",
            );
        }
        if !self.prepare_durable(durability, kept.in_transaction)? {
            // The write goes, and the node refuses it itself (`READONLY`).
            return Ok(1);
        }
        let Replicas::All = durability.replicas else {
            return Ok(durability.asked(None));
        };
        let Some(connected) = self.durable.listed.as_deref() else {
            return Err(uncountable(&self.addr));
        };
        if connected.is_empty() {
            return Err(no_replicas(&self.addr));
        }
        if let Some(why) = self.shared.unconfirmable(&self.addr, connected) {
            log::debug!("durable write to {} refused: {why}", self.addr);
            return Err(unconfirmable(&self.addr, &why));
        }
        Ok(u32::try_from(connected.len()).unwrap_or(u32::MAX))
    }

    /// What a durable write needs asked of the master before it is sent, asked where it can
    /// be (`in_multi`: the server is inside `MULTI`, where it would be queued): the master's
    /// check ([`check_durable`](Connection::check_durable)), and with every replica, its
    /// `ROLE` when the one read is [`LISTING_FRESH`] old (inside `MULTI`, the count read
    /// when the transaction opened serves). Returns whether the node is still master.
    fn prepare_durable(&mut self, durability: Durability, in_multi: bool) -> RedisResult<bool> {
        self.check_durable(durability, in_multi)?;
        let stale = self
            .durable
            .listed_at
            .is_none_or(|at| at.elapsed() >= LISTING_FRESH);
        if durability.replicas != Replicas::All || !stale || in_multi {
            return Ok(true);
        }
        let probe = self.shared.nodes.role_probe(&self.addr);
        match self.probe_role(probe, false, self.read_timeout) {
            Ok(role) => Ok(role == NodeRole::Master),
            Err(err) => {
                // Nothing of the request was sent: this error applied nothing.
                self.accounting.sent_only_reads = true;
                Err(err)
            }
        }
    }

    /// Sets the session back to `kept` after a request was refused unsent. When the server
    /// was inside `MULTI` (the refused request holds its `EXEC`), the transaction is
    /// discarded there, so that no later command of the caller's is queued into it.
    fn unsend(&mut self, kept: Tracked) {
        self.hygiene.tracked = kept;
        if kept.in_transaction {
            match self
                .inner
                .req_packed_command(&redis::cmd("DISCARD").get_packed_command())
            {
                Ok(Value::Okay) => {
                    self.hygiene.tracked.in_transaction = false;
                    self.hygiene.tracked.queued_write = false;
                    self.hygiene.tracked.watching = false;
                }
                Ok(_) | Err(_) => self.hygiene.out_of_step = true,
            }
        }
    }

    /// In durable mode, once per connection and mode, before the first write of its kind:
    /// asks the master a `WAIT 0 0` (or, on disk, a `WAITAOF 1 0`) that confirms nothing, so
    /// that a master that cannot confirm writes (our user may not run `WAIT`; a server before
    /// 7.2, or no append-only file, on disk) is found before a write is sent to it. Its
    /// refusal comes back as an error with the code `DURABLE` that says what to change.
    /// `in_multi`: the server is inside `MULTI`, where the check would be queued: refused.
    fn check_durable(&mut self, durability: Durability, in_multi: bool) -> RedisResult<()> {
        let checked = if durability.on_disk {
            self.durable.checked.on_disk
        } else {
            self.durable.checked.wait
        };
        if checked {
            return Ok(());
        }
        if in_multi {
            return Err(refused(
                "durable mode: the master was not yet checked for it on this connection, and \
                 that cannot be done inside MULTI; call with_durability around the whole \
                 transaction. It was not sent"
                    .to_owned(),
            ));
        }
        let reply = self
            .inner
            .req_packed_command(&durability.packed_probe())
            .inspect_err(|err| self.observe(err))?;
        if let Value::ServerError(refusal) = reply {
            return Err(refused(cannot_confirm(&self.addr, durability, &refusal)));
        }
        if durability.on_disk {
            self.durable.checked.on_disk = true;
        } else {
            self.durable.checked.wait = true;
        }
        Ok(())
    }

    /// Durable mode, when the pool opens a connection: the master's check
    /// ([`check_durable`](Connection::check_durable)), and, with every replica, that its
    /// replicas can be counted. Nothing is checked on a replica or without durable mode.
    pub(crate) fn check_durable_at_open(&mut self) -> RedisResult<()> {
        let Some(durability) = self.durable.mode else {
            return Ok(());
        };
        self.check_durable(durability, false)?;
        if durability.replicas == Replicas::All && !self.counts_replicas() {
            return Err(uncountable(&self.addr));
        }
        Ok(())
    }

    /// Runs `f` with durable mode set to `durability` on this connection (`None`: off),
    /// whatever the pool's setting, for one call: a write that must be confirmed by replicas
    /// in a pool that does not ask it of every write, or the other way round. The setting
    /// comes back when `f` returns or panics.
    ///
    /// ```no_run
    /// use r2d2_redis_sentinel::{Durability, SentinelPool, redis::Commands};
    ///
    /// let pool = SentinelPool::builder(["127.0.0.1:26379"], "mymaster").build()?;
    /// let _: () = pool.with_retry(|c| {
    ///     c.with_durability(Some(Durability::all_replicas()), |c| c.set("balance:7", 100))
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `f`'s error; without calling `f`, a `DURABLE` error when `durability` is not valid
    /// for this pool (as [`Builder::durability`](crate::Builder::durability) would refuse
    /// it: a timeout not shorter than the read timeout, `at_least(0)`).
    pub fn with_durability<T>(
        &mut self,
        durability: Option<Durability>,
        f: impl FnOnce(&mut Self) -> RedisResult<T>,
    ) -> RedisResult<T> {
        if let Some(why) = durability.and_then(|d| d.invalid_with(self.read_timeout)) {
            return Err(refused(format!("durable mode: {why}")));
        }
        let kept = std::mem::replace(
            &mut self.durable.mode,
            durability.filter(|_| self.serves == NodeRole::Master),
        );
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self)));
        self.durable.mode = kept;
        result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}
