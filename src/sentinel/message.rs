//! Sentinel's pub/sub messages, parsed into typed values in one place.
//!
//! Sentinel publishes each event on a channel named after it, with a payload of
//! space-separated words. The formats are those of the Sentinel documentation, for example:
//!
//! ```text
//! +switch-master <master name> <old ip> <old port> <new ip> <new port>
//! +sentinel sentinel <run id> <ip> <port> @ <master name> <master ip> <master port>
//! +reset-master master <master name> <ip> <port>
//! ```

use crate::{NodeAddr, node::AddressMap};

/// The channels the watcher subscribes to: the switch, sentinel discovery, every step of a
/// failover that the fence follows, and changes to the replica set.
pub(crate) const CHANNELS: [&str; 19] = [
    "+slave",
    "+convert-to-slave",
    "+sdown",
    "-sdown",
    "+switch-master",
    "+sentinel",
    "+reset-master",
    "+new-epoch",
    "+try-failover",
    "+elected-leader",
    "+selected-slave",
    "+failover-state-send-slaveof-noone",
    "+failover-state-wait-promotion",
    "+promoted-slave",
    "+failover-state-reconf-slaves",
    "+failover-end",
    "-failover-abort-not-elected",
    "-failover-abort-no-good-slave",
    "-failover-abort-slave-timeout",
];

/// A Sentinel message the pool acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SentinelMessage {
    /// The master of `service` moved from `old` to `new`: the failover is complete from the
    /// publishing sentinel's point of view.
    SwitchMaster {
        service: String,
        old: NodeAddr,
        new: NodeAddr,
    },
    /// A sentinel monitoring `service` was discovered.
    NewSentinel { service: String, addr: NodeAddr },
    /// `SENTINEL RESET` wiped the publishing sentinel's view of `service` (its replicas and
    /// the other sentinels, relearned from then on).
    ResetMaster { service: String },
    /// A replica of `service` was discovered, made a replica (`+convert-to-slave`), or went
    /// down or came back (`+sdown`/`-sdown`): the set of replicas that can serve reads changed.
    ReplicaChanged { service: String, replica: NodeAddr },
    /// The publishing sentinel's current epoch became `epoch`. The message names no service:
    /// a sentinel publishes it right before its `+try-failover` (whose failover runs in this
    /// epoch), and also when it votes or learns a newer epoch.
    NewEpoch { epoch: u64 },
    /// A step of a failover of `service` that the publishing sentinel runs. `replica` is the
    /// replica the step is about (the one selected for promotion), for the steps that name
    /// one.
    Step {
        service: String,
        step: Step,
        replica: Option<NodeAddr>,
    },
}

/// The steps of a failover, in the order the leader publishes them.
///
/// Measured on Redis 7.0 (`SENTINEL FAILOVER`, loopback): `+selected-slave` and
/// `+failover-state-send-slaveof-noone` come together; the leader sends `REPLICAOF NO ONE`
/// on its next timer tick, 53 to 100 ms later (Sentinel draws its timer's rate between 10
/// and 19 Hz at every tick), and publishes
/// `+failover-state-wait-promotion` as it does; the replica is master a millisecond or two
/// after that; `+promoted-slave` follows when the leader next reads the replica's `INFO` (4 ms
/// to 1 s later), and `+switch-master` when the failover ends (other sentinels: about 0.1 to
/// 1 s after the promotion; the leader: a second or more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// `+try-failover`: the sentinel starts a failover attempt in its current epoch.
    TryFailover,
    /// `+elected-leader`: the sentinel won the vote for its attempt.
    ElectedLeader,
    /// `+selected-slave`: the replica to promote is chosen.
    SelectedReplica,
    /// `+failover-state-send-slaveof-noone`: `REPLICAOF NO ONE` goes to it on the next tick.
    SendReplicaofNoOne,
    /// `+failover-state-wait-promotion`: `REPLICAOF NO ONE` was sent.
    WaitPromotion,
    /// `+promoted-slave`: the replica's `INFO` says master.
    PromotedReplica,
    /// `+failover-state-reconf-slaves`: the other replicas are being pointed at it.
    ReconfReplicas,
    /// `+failover-end`: the failover is over (`+switch-master` follows).
    End,
    /// `-failover-abort-*`: the attempt was given up; the master stays where it was.
    Abort(AbortReason),
}

impl Step {
    /// True for the steps that mean a promotion is under way or done (the fence goes up): the
    /// steps that name the selected replica.
    pub(crate) fn promotes(self) -> bool {
        matches!(
            self,
            Step::SelectedReplica
                | Step::SendReplicaofNoOne
                | Step::WaitPromotion
                | Step::PromotedReplica
        )
    }
}

/// Why a failover attempt was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AbortReason {
    /// `-failover-abort-not-elected`: the sentinel did not win the vote in time.
    NotElected,
    /// `-failover-abort-no-good-slave`: no replica could be promoted.
    NoGoodReplica,
    /// `-failover-abort-slave-timeout`: the selected replica did not become master within the
    /// failover timeout.
    ReplicaTimeout,
}

impl std::fmt::Display for AbortReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AbortReason::NotElected => "the sentinel was not elected leader",
            AbortReason::NoGoodReplica => "no replica could be promoted",
            AbortReason::ReplicaTimeout => {
                "the selected replica did not become master within the failover timeout"
            }
        })
    }
}

impl SentinelMessage {
    /// Parses a message from `channel`; `None` for channels and payloads it does not know.
    pub(crate) fn parse(channel: &str, payload: &str) -> Option<Self> {
        let words: Vec<&str> = payload.split_ascii_whitespace().collect();
        match channel {
            "+switch-master" => match words[..] {
                [service, old_ip, old_port, new_ip, new_port] => {
                    Some(SentinelMessage::SwitchMaster {
                        service: service.to_owned(),
                        old: NodeAddr::new(old_ip, old_port.parse().ok()?),
                        new: NodeAddr::new(new_ip, new_port.parse().ok()?),
                    })
                }
                _ => None,
            },
            "+reset-master" => match words[..] {
                ["master", service, _ip, _port] => Some(SentinelMessage::ResetMaster {
                    service: service.to_owned(),
                }),
                _ => None,
            },
            "+sentinel" => match words[..] {
                ["sentinel", _run_id, ip, port, "@", service, _, _] => {
                    Some(SentinelMessage::NewSentinel {
                        service: service.to_owned(),
                        addr: NodeAddr::new(ip, port.parse().ok()?),
                    })
                }
                _ => None,
            },
            "+slave" | "+convert-to-slave" | "+sdown" | "-sdown" => match subject(&words)? {
                (service, Some(replica)) => Some(SentinelMessage::ReplicaChanged {
                    service: service.to_owned(),
                    replica,
                }),
                // A master going down is the failover's business.
                (_, None) => None,
            },
            "+new-epoch" => match words[..] {
                [epoch] => Some(SentinelMessage::NewEpoch {
                    epoch: epoch.parse().ok()?,
                }),
                _ => None,
            },
            _ => {
                let step = step_of(channel)?;
                let (service, replica) = subject(&words)?;
                // The promotion steps name the selected replica; the others name the master.
                if step.promotes() != replica.is_some() {
                    return None;
                }
                Some(SentinelMessage::Step {
                    service: service.to_owned(),
                    step,
                    replica,
                })
            }
        }
    }

    /// The message with its addresses as this client must use them.
    pub(crate) fn mapped(self, map: &AddressMap) -> Self {
        match self {
            SentinelMessage::SwitchMaster { service, old, new } => SentinelMessage::SwitchMaster {
                service,
                old: map.apply(old),
                new: map.apply(new),
            },
            SentinelMessage::NewSentinel { service, addr } => SentinelMessage::NewSentinel {
                service,
                addr: map.apply(addr),
            },
            SentinelMessage::Step {
                service,
                step,
                replica,
            } => SentinelMessage::Step {
                service,
                step,
                replica: replica.map(|r| map.apply(r)),
            },
            SentinelMessage::ReplicaChanged { service, replica } => {
                SentinelMessage::ReplicaChanged {
                    service,
                    replica: map.apply(replica),
                }
            }
            other @ (SentinelMessage::ResetMaster { .. } | SentinelMessage::NewEpoch { .. }) => {
                other
            }
        }
    }

    /// The service the message is about; `None` for `+new-epoch`, which names none.
    pub(crate) fn service(&self) -> Option<&str> {
        match self {
            SentinelMessage::SwitchMaster { service, .. }
            | SentinelMessage::NewSentinel { service, .. }
            | SentinelMessage::ResetMaster { service }
            | SentinelMessage::ReplicaChanged { service, .. }
            | SentinelMessage::Step { service, .. } => Some(service),
            SentinelMessage::NewEpoch { .. } => None,
        }
    }
}

/// The failover step a channel announces.
fn step_of(channel: &str) -> Option<Step> {
    Some(match channel {
        "+try-failover" => Step::TryFailover,
        "+elected-leader" => Step::ElectedLeader,
        "+selected-slave" => Step::SelectedReplica,
        "+failover-state-send-slaveof-noone" => Step::SendReplicaofNoOne,
        "+failover-state-wait-promotion" => Step::WaitPromotion,
        "+promoted-slave" => Step::PromotedReplica,
        "+failover-state-reconf-slaves" => Step::ReconfReplicas,
        "+failover-end" => Step::End,
        "-failover-abort-not-elected" => Step::Abort(AbortReason::NotElected),
        "-failover-abort-no-good-slave" => Step::Abort(AbortReason::NoGoodReplica),
        "-failover-abort-slave-timeout" => Step::Abort(AbortReason::ReplicaTimeout),
        _ => return None,
    })
}

/// The subject of a step's payload: the service, and the replica when the subject is one.
///
/// Sentinel describes a master as `master <name> <ip> <port>` and a replica as
/// `slave <ip>:<port> <ip> <port> @ <master name> <master ip> <master port>`; some steps append
/// more words (older versions add the epoch to an abort), which are ignored.
fn subject<'a>(words: &[&'a str]) -> Option<(&'a str, Option<NodeAddr>)> {
    match words {
        ["master", service, _ip, port, ..] => {
            port.parse::<u16>().ok()?;
            Some((service, None))
        }
        [
            "slave",
            _name,
            ip,
            port,
            "@",
            service,
            _master_ip,
            _master_port,
            ..,
        ] => Some((service, Some(NodeAddr::new(*ip, port.parse().ok()?)))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_master_is_parsed() {
        let message =
            SentinelMessage::parse("+switch-master", "mymaster 127.0.0.1 6379 127.0.0.1 6380");
        assert_eq!(
            message,
            Some(SentinelMessage::SwitchMaster {
                service: "mymaster".into(),
                old: NodeAddr::new("127.0.0.1", 6379),
                new: NodeAddr::new("127.0.0.1", 6380),
            })
        );
    }

    #[test]
    fn new_sentinel_is_parsed() {
        let payload = "sentinel 8f2c0a1b 127.0.0.1 26381 @ mymaster 127.0.0.1 6379";
        assert_eq!(
            SentinelMessage::parse("+sentinel", payload),
            Some(SentinelMessage::NewSentinel {
                service: "mymaster".into(),
                addr: NodeAddr::new("127.0.0.1", 26381),
            })
        );
    }

    #[test]
    fn reset_master_is_parsed() {
        assert_eq!(
            SentinelMessage::parse("+reset-master", "master mymaster 127.0.0.1 6379"),
            Some(SentinelMessage::ResetMaster {
                service: "mymaster".into()
            })
        );
        assert_eq!(SentinelMessage::parse("+reset-master", "mymaster"), None);
    }

    #[test]
    fn malformed_or_unknown_messages_are_ignored() {
        assert_eq!(
            SentinelMessage::parse("+switch-master", "mymaster 127.0.0.1 6379"),
            None
        );
        assert_eq!(
            SentinelMessage::parse("+switch-master", "m a notaport b 1"),
            None
        );
        assert_eq!(
            SentinelMessage::parse("+sdown", "master mymaster 127.0.0.1 6379"),
            None
        );
        assert_eq!(
            SentinelMessage::parse("+sentinel", "slave x 1.2.3.4 1 @ m 1.2.3.4 2"),
            None
        );
    }

    #[test]
    fn failover_steps_are_parsed_with_their_service_and_replica() {
        let replica = "slave 127.0.0.1:41951 127.0.0.1 41951 @ mymaster 127.0.0.1 46399";
        assert_eq!(
            SentinelMessage::parse("+selected-slave", replica),
            Some(SentinelMessage::Step {
                service: "mymaster".into(),
                step: Step::SelectedReplica,
                replica: Some(NodeAddr::new("127.0.0.1", 41951)),
            })
        );
        assert_eq!(
            SentinelMessage::parse("+try-failover", "master mymaster 127.0.0.1 46399"),
            Some(SentinelMessage::Step {
                service: "mymaster".into(),
                step: Step::TryFailover,
                replica: None,
            })
        );
        // Older Sentinels append the epoch to an abort.
        assert_eq!(
            SentinelMessage::parse(
                "-failover-abort-no-good-slave",
                "master other 127.0.0.1 7000 12"
            ),
            Some(SentinelMessage::Step {
                service: "other".into(),
                step: Step::Abort(AbortReason::NoGoodReplica),
                replica: None,
            })
        );
        assert_eq!(
            SentinelMessage::parse("+new-epoch", "17"),
            Some(SentinelMessage::NewEpoch { epoch: 17 })
        );
    }

    #[test]
    fn replica_changes_are_parsed_and_a_masters_sdown_is_not_one() {
        let replica = "slave 127.0.0.1:7001 127.0.0.1 7001 @ mymaster 127.0.0.1 7000";
        for channel in ["+slave", "+convert-to-slave", "+sdown", "-sdown"] {
            assert_eq!(
                SentinelMessage::parse(channel, replica),
                Some(SentinelMessage::ReplicaChanged {
                    service: "mymaster".into(),
                    replica: NodeAddr::new("127.0.0.1", 7001),
                }),
                "{channel}"
            );
        }
        assert_eq!(
            SentinelMessage::parse("+sdown", "master mymaster 127.0.0.1 7000"),
            None
        );
        assert_eq!(
            SentinelMessage::parse(
                "+sdown",
                "sentinel abc 127.0.0.1 26379 @ mymaster 127.0.0.1 7000"
            ),
            None
        );
    }

    #[test]
    fn a_step_without_the_subject_it_needs_is_ignored() {
        // A promotion step must name the replica; a master step must not.
        assert_eq!(
            SentinelMessage::parse("+selected-slave", "master mymaster 127.0.0.1 6379"),
            None
        );
        assert_eq!(
            SentinelMessage::parse(
                "+try-failover",
                "slave a:1 127.0.0.1 1 @ mymaster 127.0.0.1 2"
            ),
            None
        );
        assert_eq!(
            SentinelMessage::parse("+promoted-slave", "slave a:1 127.0.0.1 x @ m 127.0.0.1 2"),
            None
        );
        assert_eq!(SentinelMessage::parse("+new-epoch", "-1"), None);
        assert_eq!(SentinelMessage::parse("+new-epoch", "1 2"), None);
        assert_eq!(SentinelMessage::parse("+failover-end", ""), None);
    }
}
