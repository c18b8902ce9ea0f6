//! What the pool learned about its data nodes, once for all connections: which commands write,
//! and which nodes refuse `ROLE` to our user.

use std::{
    collections::BTreeSet,
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};

use parking_lot::Mutex;

use crate::{NodeAddr, connection::command_table::CommandTable, node::RoleProbe};

/// What the data nodes told the pool.
#[derive(Debug, Default)]
pub(crate) struct NodeFacts {
    /// Which commands write, as the first data node the pool connected to said (`COMMAND`);
    /// `None` inside when it refused. Set once.
    pub(crate) commands: OnceLock<Option<CommandTable>>,
    /// A connect is asking for `commands` now: the others do not.
    asking_commands: AtomicBool,
    /// Set once a data node refused `ROLE` to our ACL user (`NOPERM`): what fast paths read
    /// before they look in `roles_via_hello`.
    any_role_via_hello: AtomicBool,
    /// The data nodes that refused `ROLE` to our ACL user (`NOPERM`): they are asked their
    /// role with `HELLO` from then on; the others keep `ROLE`. Held for no I/O.
    roles_via_hello: Mutex<BTreeSet<NodeAddr>>,
}

impl NodeFacts {
    /// Takes the turn to ask a data node which commands write; false while another connect
    /// has it.
    pub(crate) fn claim_commands(&self) -> bool {
        !self.asking_commands.swap(true, Ordering::AcqRel)
    }

    /// Gives the turn back: the asking failed, another connect may ask.
    pub(crate) fn unclaim_commands(&self) {
        self.asking_commands.store(false, Ordering::Release);
    }

    /// How the data node at `addr` is asked its role: `ROLE`, or `HELLO` once our user
    /// turned out not to be allowed `ROLE` there. One atomic load while every node allows it.
    pub(crate) fn role_probe(&self, addr: &NodeAddr) -> RoleProbe {
        if self.any_role_via_hello.load(Ordering::Acquire)
            && self.roles_via_hello.lock().contains(addr)
        {
            RoleProbe::Hello
        } else {
            RoleProbe::Role
        }
    }

    /// Asks the data node at `addr` its role with `HELLO` from now on.
    pub(crate) fn use_hello_for_roles(&self, addr: &NodeAddr) {
        self.roles_via_hello.lock().insert(addr.clone());
        self.any_role_via_hello.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_connect_asks_for_the_commands_at_a_time() {
        let facts = NodeFacts::default();
        assert!(facts.claim_commands());
        assert!(!facts.claim_commands());
        facts.unclaim_commands();
        assert!(facts.claim_commands());
    }

    #[test]
    fn only_the_refusing_node_is_asked_with_hello() {
        let facts = NodeFacts::default();
        let (a, b) = (NodeAddr::new("127.0.0.1", 1), NodeAddr::new("127.0.0.1", 2));
        facts.use_hello_for_roles(&a);
        assert_eq!(facts.role_probe(&a), RoleProbe::Hello);
        assert_eq!(facts.role_probe(&b), RoleProbe::Role);
    }
}
