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

/// The channels the watcher subscribes to.
pub(crate) const CHANNELS: [&str; 3] = ["+switch-master", "+sentinel", "+reset-master"];

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
            _ => None,
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
            reset @ SentinelMessage::ResetMaster { .. } => reset,
        }
    }

    /// The service the message is about.
    pub(crate) fn service(&self) -> &str {
        match self {
            SentinelMessage::SwitchMaster { service, .. }
            | SentinelMessage::NewSentinel { service, .. }
            | SentinelMessage::ResetMaster { service } => service,
        }
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
}
