//! One request on a pooled connection: read before it is sent (what it does to the session,
//! what its replies will say was applied), sent (with its `WAIT` in durable mode), and its
//! replies and errors observed as they pass.

use redis::{ConnectionLike, ErrorKind, RedisError, RedisResult, ServerErrorKind, Value};

use super::{
    Connection,
    command::{changes_session, commands, is_subscribe},
    command_table::{self, Effect},
};
use crate::{Durability, node::NodeRole, outcome};

/// What the requests sent on a connection left the server's session in: a request refused
/// unsent sets it back to what it was before.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tracked {
    pub(crate) in_transaction: bool,
    pub(crate) watching: bool,
    /// A caller changed what the connection is (db, user, protocol, reply mode, name).
    pub(crate) session_changed: bool,
    pub(crate) subscribed: bool,
    /// Inside `MULTI`: whether a queued command may change data, which its `EXEC` applies.
    pub(crate) queued_write: bool,
}

impl Connection {
    /// redis-rs hands server errors (`READONLY`, `EXECABORT`...) back as values, to be turned
    /// into errors later by the caller's `query`; they are looked at here, as they pass.
    pub(super) fn before(&mut self, packed: &[u8]) {
        self.accounting.effects.clear();
        self.blocking.blocks = false;
        let mut parsed = commands(packed);
        // A pipeline mostly repeats one command: an ordinary one (no transaction, session or
        // subscription command, nothing decided by its subcommand) is looked at once.
        let mut last: Option<(&[u8], command_table::Traits)> = None;
        for (name, arg) in parsed.by_ref() {
            if let Some((previous, traits)) = last
                && previous == name
            {
                let effect = self.ordinary(traits);
                self.accounting.effects.push(effect);
                continue;
            }
            let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
            let mut effect = Effect::Read;
            if is("MULTI") {
                self.hygiene.tracked.in_transaction = true;
                self.hygiene.tracked.queued_write = false;
            } else if is("EXEC") || is("DISCARD") {
                if is("EXEC") && self.hygiene.tracked.queued_write {
                    effect = Effect::Write;
                }
                self.hygiene.tracked.in_transaction = false;
                self.hygiene.tracked.queued_write = false;
                self.hygiene.tracked.watching = false;
            } else if is("WATCH") {
                self.hygiene.tracked.watching = true;
            } else if is("UNWATCH") {
                self.hygiene.tracked.watching = false;
            } else if changes_session(name, arg) {
                // The session, not the data: nothing to apply or confirm.
                if self.hygiene.handed_out {
                    self.hygiene.tracked.session_changed = true;
                }
            } else {
                let subscribes = is_subscribe(name);
                if subscribes {
                    // Subscribed connections only take (un)subscribe commands: never reuse one.
                    self.hygiene.tracked.subscribed = true;
                }
                let table = self.shared.nodes.commands.get().and_then(Option::as_ref);
                let traits = command_table::traits(name, arg, table);
                // `HELLO` changes the session only with an argument.
                last = (!traits.by_subcommand && !subscribes && !is("HELLO"))
                    .then_some((name, traits));
                effect = self.ordinary(traits);
            }
            self.accounting.effects.push(effect);
        }
        if !parsed.rest().is_empty() {
            // Something this crate could not read (inline commands, trailing bytes): it may
            // write.
            self.accounting.effects.push(Effect::Write);
        }
        // Commands queued in `MULTI` count as reads here: a connection that breaks before
        // their `EXEC` applies none of them.
        self.accounting.sent_only_reads = !(self.accounting.effects.is_empty()
            || self.accounting.effects.iter().any(|e| e.may_write()));
    }

    /// What a reply to an ordinary command with `traits` says was applied; inside `MULTI` it
    /// is queued instead, applied by the `EXEC` if it comes (and a blocking command does not
    /// block there).
    fn ordinary(&mut self, traits: command_table::Traits) -> Effect {
        if self.hygiene.tracked.in_transaction {
            self.hygiene.tracked.queued_write |= traits.effect.may_write();
            Effect::Read
        } else {
            self.blocking.blocks |= traits.blocks;
            traits.effect
        }
    }

    /// `effect`: what a reply to the command answered says was applied.
    fn observe_reply(&mut self, reply: &Value, effect: Effect) {
        if let Value::ServerError(err) = reply {
            self.observe(&RedisError::from(err.clone()));
        } else if effect.applied(reply) {
            self.accounting.applied += 1;
        }
    }

    /// What the reply at `index` (counted from the request's first command) says was
    /// applied; a request this crate could not read counts as one that writes.
    fn effect(&self, index: usize) -> Effect {
        self.accounting
            .effects
            .get(index)
            .copied()
            .unwrap_or(Effect::Write)
    }

    pub(crate) fn observe(&mut self, err: &RedisError) {
        // On a replica, `READONLY` answers a write sent to the wrong pool: no failover.
        if self.serves == NodeRole::Master
            && outcome::classify(err).is_failover()
            && (!outcome::is_unblocked(err) || self.released_by_fence() || self.demoted())
        {
            self.hygiene.failover_error = Some(err.clone());
        }
        // A server error is a complete reply: the connection is still in step. Anything else
        // (I/O error, timeout, unparsable reply) may leave a reply in flight.
        if !matches!(
            err.kind(),
            ErrorKind::Server(_) | ErrorKind::Extension | ErrorKind::UnexpectedReturnType
        ) {
            self.hygiene.out_of_step = true;
            // A master that crashed or hangs took its other connections with it.
            if self.serves == NodeRole::Master
                && (err.is_io_error() || err.is_timeout() || err.is_connection_dropped())
            {
                self.shared.distrust_recent();
            }
        }
        if err.kind() == ErrorKind::Server(ServerErrorKind::ExecAbort) {
            self.hygiene.tracked.in_transaction = false;
            self.hygiene.tracked.watching = false;
        }
    }

    /// What a durable write's confirmation said, recorded (feature `metrics`).
    fn confirmed(&self, verdict: RedisResult<()>) -> RedisResult<()> {
        self.shared.events.series.durable(&verdict);
        verdict
    }

    /// Sends one command (and its `WAIT`, in durable mode) and reads its reply; `applied`:
    /// [`applied`](Connection::applied) before it.
    pub(super) fn send_one(
        &mut self,
        cmd: &[u8],
        durable: Option<(Durability, u32)>,
        applied: u64,
    ) -> RedisResult<Value> {
        let Some((durability, asked)) = durable else {
            let result = self.inner.req_packed_command(cmd);
            if let Ok(reply) = &result {
                self.observe_reply(reply, self.effect(0));
            }
            return result;
        };
        // The write and its WAIT in one round trip.
        let packed = [cmd, &durability.packed_wait(asked)].concat();
        self.inner
            .req_packed_commands(&packed, 0, 2)
            .and_then(|mut replies| {
                let wait = replies.pop().unwrap_or(Value::Nil);
                let reply = replies.pop().unwrap_or(Value::Nil);
                self.observe_reply(&reply, self.effect(0));
                if self.accounting.applied == applied {
                    // Refused, or it changed nothing: nothing to confirm.
                    return Ok(reply);
                }
                self.confirmed(durability.check(wait, asked))
                    .map(|()| reply)
            })
    }

    /// Sends a pipeline (and its `WAIT`, in durable mode) and reads the `count` replies from
    /// `offset`; `applied`: [`applied`](Connection::applied) before it.
    pub(super) fn send_many(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
        durable: Option<(Durability, u32)>,
        applied: u64,
    ) -> RedisResult<Vec<Value>> {
        let result = match durable {
            None => self.inner.req_packed_commands(cmd, offset, count),
            Some((durability, asked)) => {
                // The WAIT after the last command (after an atomic pipeline's EXEC).
                let packed = [cmd, &durability.packed_wait(asked)].concat();
                self.inner.req_packed_commands(&packed, offset, count + 1)
            }
        };
        result.and_then(|mut replies| {
            let wait = durable.map(|_| replies.pop().unwrap_or(Value::Nil));
            // The replies skipped (`offset`: an atomic pipeline's `MULTI` and `+QUEUED`s) are
            // not returned; those returned line up with the commands from there.
            for (i, reply) in replies.iter().enumerate() {
                self.observe_reply(reply, self.effect(offset + i));
            }
            match (wait, durable) {
                // Every write refused, or none changed anything: its own replies say so.
                (Some(wait), Some((durability, asked))) if self.accounting.applied > applied => {
                    self.confirmed(durability.check(wait, asked))
                        .map(|()| replies)
                }
                _ => Ok(replies),
            }
        })
    }
}
