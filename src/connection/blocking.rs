//! Blocking commands on a master (`BLPOP`, `BLMOVE`, `XREAD BLOCK`...): entered among the
//! pool's blocked connections while in flight, so that the fence can release them from a
//! master it closes, and told apart from an operator's `CLIENT UNBLOCK` when released.

use redis::{ConnectionLike, RedisResult, Value};

use super::Connection;
use crate::node::{NodeRole, RoleProbe};

impl Connection {
    /// After `UNBLOCKED`: whether the node is no longer master. Redis releases blocked
    /// clients so when the node turns replica; an operator's `CLIENT UNBLOCK` leaves it
    /// master. `HELLO` (with no argument: every user may run it, it changes nothing) tells,
    /// on the connection itself, within its read timeout; a node that does not answer counts
    /// as demoted.
    pub(super) fn demoted(&mut self) -> bool {
        let role = RoleProbe::Hello.ask(&mut self.inner, false, self.protocol);
        if role.is_err() {
            self.hygiene.out_of_step = true;
        }
        !matches!(role, Ok(NodeRole::Master))
    }

    /// Whether the fence released the blocking request in flight (`CLIENT UNBLOCK` from the
    /// pool): the master it blocked on is being replaced.
    pub(super) fn released_by_fence(&self) -> bool {
        self.blocking
            .entry
            .as_ref()
            .is_some_and(|(_, released)| released.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Before a blocking request goes to a master: enters the connection among the blocked
    /// ones, so that the fence can release it (asking the node its id once per connection).
    /// An error, the request unsent, when the id cannot be had.
    pub(super) fn enter_blocking(&mut self) -> RedisResult<()> {
        if !self.blocking.blocks || self.serves != NodeRole::Master {
            return Ok(());
        }
        let id = match self.blocking.client_id {
            Some(id) => id,
            None => {
                let asked = self
                    .inner
                    .req_packed_command(&redis::cmd("CLIENT").arg("ID").get_packed_command());
                match asked {
                    Ok(Value::Int(id)) => id,
                    // Not allowed, or not known: the request blocks as it would without.
                    Ok(_) => return Ok(()),
                    Err(err) => {
                        // Nothing of the request was sent: this error applied nothing.
                        self.accounting.sent_only_reads = true;
                        self.observe(&err);
                        return Err(err);
                    }
                }
            }
        };
        self.blocking.client_id = Some(id);
        self.blocking.entry = Some(self.shared.blocked.blocking(&self.addr, id));
        Ok(())
    }

    /// After a blocking request's replies: out of the blocked connections.
    pub(super) fn leave_blocking(&mut self) {
        if let Some((token, _)) = self.blocking.entry.take() {
            self.shared.blocked.unblocked(token);
        }
    }
}
