//! What the sentinels answer: the commands the pool asks them and the parsers of their replies
//! (pure, unit-tested).

use std::{collections::HashMap, time::Duration};

use crate::{NodeAddr, node::AddressMap};

/// What one sentinel said about the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A master it considers up, and the configuration epoch it belongs to: a larger epoch is a
    /// later failover.
    Master { addr: NodeAddr, epoch: u64 },
    /// It flags the master `s_down` or `o_down`, or it is running a failover of it (its
    /// answer names the old master until the failover ends).
    Down,
    /// It does not monitor the service.
    Unknown,
    /// The reply lacks the fields of a `SENTINEL MASTER` reply: a fault of that sentinel.
    Garbled,
}

/// `SENTINEL MASTER <service>`.
pub(crate) fn master_cmd(service: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("SENTINEL");
    cmd.arg("MASTER").arg(service);
    cmd
}

/// `SENTINEL SENTINELS <service>`: the other sentinels this one knows.
pub(crate) fn replicas_cmd(service: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("SENTINEL");
    cmd.arg("REPLICAS").arg(service);
    cmd
}

/// The replicas a `SENTINEL REPLICAS` reply lists as able to serve reads: flagged neither
/// down nor disconnected, with their link to the master up.
pub(crate) fn parse_replicas(reply: &[HashMap<String, String>]) -> Vec<NodeAddr> {
    reply
        .iter()
        .filter(|r| {
            !flagged_down(r) && r.get("master-link-status").map(String::as_str) == Some("ok")
        })
        .filter_map(replica_addr)
        .collect()
}

/// Whether a sentinel flags the instance of one `SENTINEL REPLICAS` entry down or
/// disconnected.
fn flagged_down(entry: &HashMap<String, String>) -> bool {
    let flags = entry.get("flags").map_or("", String::as_str);
    let down = ["s_down", "o_down", "disconnected"];
    flags.split(',').any(|f| down.contains(&f))
}

/// The address of one `SENTINEL REPLICAS` entry, when it has a valid one.
fn replica_addr(entry: &HashMap<String, String>) -> Option<NodeAddr> {
    let ip = entry.get("ip")?;
    let port = entry.get("port")?.parse().ok().filter(|p| *p != 0)?;
    Some(NodeAddr::new(ip.as_str(), port))
}

/// What the sentinels say about promoting the replicas of a service, for durable mode: each
/// answering sentinel's list of replicas, with what its selection of a replica to promote
/// looks at.
#[derive(Debug, Clone, Default)]
pub(crate) struct PromotionView {
    /// One list per sentinel that answered.
    pub(crate) sentinels: Vec<Vec<Candidate>>,
}

/// One replica as one sentinel lists it, by the address its master announces (which is how
/// the master's `ROLE` names it too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) addr: NodeAddr,
    /// Through the address map: how this client reaches it.
    pub(crate) reached_as: NodeAddr,
    /// Sentinel may promote it at all ([`parse_promotion`]).
    pub(crate) promotable: bool,
    /// `replica-priority`: lower is preferred, 0 never.
    pub(crate) priority: u64,
    /// The replication offset the sentinel last read from its `INFO` (0: it never reported
    /// replicating this master's data, like an old master not yet re-pointed).
    pub(crate) offset: u64,
    /// The leader of a failover selected it (`promoted`): it is being made master.
    pub(crate) selected: bool,
}

impl PromotionView {
    /// How many sentinels answered, and how many of them list `node` (an address this client
    /// connects to) as a replica: they take another node for the master.
    pub(crate) fn listing_as_replica(&self, node: &NodeAddr) -> (usize, usize) {
        let listing = self
            .sentinels
            .iter()
            .filter(|list| list.iter().any(|c| c.reached_as == *node && !c.selected))
            .count();
        (self.sentinels.len(), listing)
    }
}

/// Each replica a `SENTINEL REPLICAS` reply lists, as [`Candidate`]s (through `map`). Sentinel
/// would not promote one (`sentinelSelectSlave`) flagged down or disconnected, of
/// `replica-priority` 0, or cut off from the master for more than 10 × `down-after-milliseconds`
/// (when that is known).
pub(crate) fn parse_promotion(
    reply: &[HashMap<String, String>],
    down_after: Option<Duration>,
    map: &AddressMap,
) -> Vec<Candidate> {
    let longest_cut = down_after.map(|d| d.saturating_mul(10));
    reply
        .iter()
        .filter_map(|r| {
            let number = |field: &str| r.get(field).and_then(|v| v.parse::<u64>().ok());
            let priority = number("slave-priority");
            let unpromotable = flagged_down(r)
                || priority == Some(0)
                || longest_cut
                    .zip(number("master-link-down-time"))
                    .is_some_and(|(longest, cut)| Duration::from_millis(cut) > longest);
            let flags = r.get("flags").map_or("", String::as_str);
            replica_addr(r).map(|addr| Candidate {
                reached_as: map.apply(addr.clone()),
                addr,
                promotable: !unpromotable,
                priority: priority.unwrap_or(100),
                offset: number("slave-repl-offset").unwrap_or(0),
                selected: flags.split(',').any(|f| f == "promoted"),
            })
        })
        .collect()
}

/// Whether a `SENTINEL MASTER` reply carries `failover_in_progress`: the sentinel that gave it
/// runs a failover of the master now (only a failover's leader sets the flag).
pub(crate) fn leads_failover(master: &HashMap<String, String>) -> bool {
    master
        .get("flags")
        .is_some_and(|flags| flags.split(',').any(|f| f == "failover_in_progress"))
}

/// The replica a failover led by the sentinel that sent these replies is promoting, if one is
/// under way: its `SENTINEL MASTER` reply carries `failover_in_progress` (only the leader's
/// does) in a state past the selection, and its `SENTINEL REPLICAS` reply flags the selected
/// replica `promoted`. What a subscriber that joined mid-failover reads instead of the steps it
/// missed.
pub(crate) fn promotion_in_progress(
    master: &HashMap<String, String>,
    replicas: &[HashMap<String, String>],
) -> Option<NodeAddr> {
    if !leads_failover(master) {
        return None;
    }
    let state = master.get("failover-state").map(String::as_str);
    if !matches!(
        state,
        Some("send_slaveof_noone" | "wait_promotion" | "reconf_slaves")
    ) {
        return None;
    }
    replicas.iter().find_map(|r| {
        r.get("flags")?
            .split(',')
            .any(|f| f == "promoted")
            .then_some(())?;
        let port = r.get("port")?.parse().ok().filter(|p| *p != 0)?;
        Some(NodeAddr::new(r.get("ip")?.as_str(), port))
    })
}

pub(crate) fn sentinels_cmd(service: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("SENTINEL");
    cmd.arg("SENTINELS").arg(service);
    cmd
}

/// Reads a `SENTINEL SENTINELS` reply into addresses.
pub(crate) fn parse_sentinels(reply: &[HashMap<String, String>]) -> Vec<NodeAddr> {
    reply
        .iter()
        .filter_map(|s| {
            Some(NodeAddr::new(
                s.get("ip")?.clone(),
                s.get("port")?.parse().ok()?,
            ))
        })
        .collect()
}

/// Reads a `SENTINEL MASTER` reply: the address, its epoch, and whether the sentinel thinks it
/// is up.
/// The `down-after-milliseconds` of a `SENTINEL MASTER` reply: how long the master may be
/// silent before a sentinel calls it down, the first part of every crash failover.
pub(crate) fn parse_down_after(reply: &HashMap<String, String>) -> Option<Duration> {
    reply
        .get("down-after-milliseconds")?
        .parse()
        .ok()
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
}

pub(crate) fn parse_master(reply: &HashMap<String, String>) -> Answer {
    let (Some(flags), Some(ip), Some(port), Some(epoch)) = (
        reply.get("flags"),
        reply.get("ip"),
        reply.get("port").and_then(|p| p.parse().ok()),
        reply.get("config-epoch").and_then(|e| e.parse().ok()),
    ) else {
        return Answer::Garbled;
    };
    let has = |name: &str| flags.split(',').any(|flag| flag == name);
    if !has("master") || ip.is_empty() {
        return Answer::Garbled;
    }
    // A failover leader names the old master, with the new epoch, until its failover ends.
    if has("s_down") || has("o_down") || has("failover_in_progress") {
        return Answer::Down;
    }
    Answer::Master {
        addr: NodeAddr::new(ip.clone(), port),
        epoch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_leader_mid_failover_names_the_replica_it_promotes() {
        let master = |state: &str| {
            reply(&[
                ("ip", "10.0.0.1"),
                ("port", "6379"),
                ("flags", "master,failover_in_progress"),
                ("failover-state", state),
                ("config-epoch", "3"),
            ])
        };
        let replicas = vec![
            reply(&[("ip", "10.0.0.2"), ("port", "6380"), ("flags", "slave")]),
            reply(&[
                ("ip", "10.0.0.3"),
                ("port", "6381"),
                ("flags", "slave,promoted"),
            ]),
        ];
        for state in ["send_slaveof_noone", "wait_promotion", "reconf_slaves"] {
            assert_eq!(
                promotion_in_progress(&master(state), &replicas),
                Some(NodeAddr::new("10.0.0.3", 6381)),
                "{state}"
            );
        }
        // Before a replica is selected, after the end, or on a sentinel that is not leading.
        for state in ["wait_start", "select_slave", "update_config"] {
            assert_eq!(promotion_in_progress(&master(state), &replicas), None);
        }
        let idle = reply(&[("flags", "master"), ("config-epoch", "3")]);
        assert_eq!(promotion_in_progress(&idle, &replicas), None);
        assert_eq!(
            promotion_in_progress(&master("wait_promotion"), &replicas[..1]),
            None
        );
    }

    #[test]
    fn a_healthy_master_is_accepted() {
        let r = reply(&[
            ("ip", "10.0.0.1"),
            ("port", "6380"),
            ("flags", "master"),
            ("config-epoch", "7"),
        ]);
        assert!(matches!(
            parse_master(&r),
            Answer::Master { addr, epoch: 7 } if addr == NodeAddr::new("10.0.0.1", 6380)
        ));
    }

    #[test]
    fn a_master_flagged_down_or_in_failover_is_not_accepted() {
        for flags in [
            "master,s_down",
            "master,s_down,o_down",
            "master,o_down",
            "master,failover_in_progress",
        ] {
            let r = reply(&[
                ("ip", "10.0.0.1"),
                ("port", "6380"),
                ("flags", flags),
                ("config-epoch", "2"),
            ]);
            assert_eq!(parse_master(&r), Answer::Down, "{flags}");
        }
    }

    #[test]
    fn a_disconnected_master_is_still_named() {
        // `disconnected` alone means this sentinel's link is down, not that the master is.
        let r = reply(&[
            ("ip", "h"),
            ("port", "1"),
            ("flags", "master,disconnected"),
            ("config-epoch", "0"),
        ]);
        assert!(matches!(parse_master(&r), Answer::Master { .. }));
    }

    #[test]
    fn only_healthy_linked_replicas_serve_reads() {
        let replica = |port: &str, flags: &str, link: &str| {
            reply(&[
                ("ip", "10.0.0.2"),
                ("port", port),
                ("flags", flags),
                ("master-link-status", link),
            ])
        };
        let list = [
            replica("1", "slave", "ok"),
            replica("2", "s_down,slave", "ok"),
            replica("3", "slave,disconnected", "ok"),
            replica("4", "slave", "err"),
            replica("x", "slave", "ok"),
            replica("6", "slave", "ok"),
        ];
        assert_eq!(
            parse_replicas(&list),
            vec![NodeAddr::new("10.0.0.2", 1), NodeAddr::new("10.0.0.2", 6)]
        );
    }

    #[test]
    fn replicas_sentinel_would_not_promote_are_told_apart() {
        let replica = |port: &str, flags: &str, priority: &str, cut_ms: &str| {
            reply(&[
                ("ip", "10.0.0.2"),
                ("port", port),
                ("flags", flags),
                ("slave-priority", priority),
                ("master-link-down-time", cut_ms),
            ])
        };
        let list = [
            replica("1", "slave", "100", "0"),
            replica("2", "s_down,slave", "100", "0"),
            replica("3", "slave,disconnected", "100", "0"),
            replica("4", "slave", "0", "0"),
            // Cut off from the master for 9 s, then 11 s, with down-after 1 s.
            replica("5", "slave", "100", "9000"),
            replica("6", "slave", "100", "11000"),
        ];
        let map = AddressMap::default();
        let unpromotable = |down_after| {
            parse_promotion(&list, down_after, &map)
                .into_iter()
                .filter(|c| !c.promotable)
                .map(|c| c.addr.port)
                .collect::<Vec<_>>()
        };
        assert_eq!(unpromotable(Some(Duration::from_secs(1))), [2, 3, 4, 6]);
        // Unknown down-after: a cut-off replica may still be promoted.
        assert_eq!(unpromotable(None), [2, 3, 4]);
        let listed = parse_promotion(&list, None, &map);
        assert_eq!(listed.len(), 6, "every replica is listed");
        assert_eq!(
            (listed[0].priority, listed[0].offset, listed[0].selected),
            (100, 0, false),
            "no offset read: 0"
        );
    }

    #[test]
    fn sentinels_replies_give_addresses() {
        let list = vec![
            reply(&[
                ("ip", "127.0.0.1"),
                ("port", "26380"),
                ("flags", "sentinel"),
            ]),
            reply(&[("ip", "127.0.0.1"), ("port", "x")]),
        ];
        assert_eq!(
            parse_sentinels(&list),
            vec![NodeAddr::new("127.0.0.1", 26380)]
        );
    }

    #[test]
    fn a_garbled_reply_is_the_sentinels_fault_not_an_unknown_service() {
        let full = [
            ("ip", "h"),
            ("port", "1"),
            ("flags", "master"),
            ("config-epoch", "3"),
        ];
        for (field, value) in [
            ("port", "not-a-port"),
            ("port", "70000"),
            ("config-epoch", "-1"),
            ("flags", "slave"),
            ("ip", ""),
        ] {
            let mut r = reply(&full);
            r.insert(field.into(), value.into());
            assert_eq!(parse_master(&r), Answer::Garbled, "{field}={value}");
        }
        for missing in ["ip", "port", "flags", "config-epoch"] {
            let mut r = reply(&full);
            r.remove(missing);
            assert_eq!(parse_master(&r), Answer::Garbled, "without {missing}");
        }
    }
}
