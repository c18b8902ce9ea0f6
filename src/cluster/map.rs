//! The slot map: which primary owns each of the 16384 slots, and its replicas, as a node
//! answered `CLUSTER SHARDS` (Redis 7.0 and later, Valkey) or `CLUSTER SLOTS` (before 7.0).
//! Pure: parsed from a reply, read with no lock, replaced whole when refreshed.

use redis::Value;

use super::slot::SLOTS;
use crate::{
    NodeAddr,
    node::AddressMap,
    reply::{int, items, text},
};

/// Which shard serves each slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotMap {
    /// For each slot, its shard's index in `shards`, plus one; 0 for a slot no node serves.
    owners: Box<[u16]>,
    shards: Vec<Shard>,
}

/// A primary and the replicas that follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shard {
    pub(crate) primary: NodeAddr,
    /// Those the node asked does not report failed.
    pub(crate) replicas: Vec<NodeAddr>,
}

/// How a reply's node addresses become addresses to connect to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading<'a> {
    /// The node that answered: a node that does not know its own address (an empty host)
    /// is that one.
    pub(crate) asked: &'a NodeAddr,
    /// The pool speaks TLS: a node's `tls-port` is the one to use.
    pub(crate) tls: bool,
    pub(crate) addresses: &'a AddressMap,
}

impl SlotMap {
    /// A map with no slot served.
    pub(crate) fn empty() -> Self {
        SlotMap {
            owners: vec![0; usize::from(SLOTS)].into_boxed_slice(),
            shards: Vec::new(),
        }
    }

    /// The primary that serves `slot`, if one does.
    pub(crate) fn primary(&self, slot: u16) -> Option<&NodeAddr> {
        self.shard(slot).map(|shard| &shard.primary)
    }

    /// The shard that serves `slot`, if one does.
    pub(crate) fn shard(&self, slot: u16) -> Option<&Shard> {
        let owner = *self.owners.get(usize::from(slot))?;
        self.shards.get(usize::from(owner).checked_sub(1)?)
    }

    /// Every shard that serves at least one slot.
    pub(crate) fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// How many slots `other` gives another primary (or none, or one where this gives none).
    pub(crate) fn moved_slots(&self, other: &SlotMap) -> usize {
        (0..SLOTS)
            .filter(|&slot| self.primary(slot) != other.primary(slot))
            .count()
    }

    /// How many slots `primary` serves.
    pub(crate) fn slots_of(&self, primary: &NodeAddr) -> usize {
        match self.shards.iter().position(|s| &s.primary == primary) {
            Some(at) => self.owners.iter().filter(|&&o| o == index(at)).count(),
            None => 0,
        }
    }

    /// How many slots some node serves.
    pub(crate) fn covered(&self) -> usize {
        self.owners.iter().filter(|&&o| o != 0).count()
    }

    /// This map with `slot` served by `primary`: what a `MOVED` reply says, before the next
    /// refresh tells the rest.
    pub(crate) fn moved(&self, slot: u16, primary: &NodeAddr) -> SlotMap {
        let mut map = self.clone();
        let at = match map.shards.iter().position(|s| &s.primary == primary) {
            Some(at) => at,
            None => {
                map.shards.push(Shard {
                    primary: primary.clone(),
                    replicas: Vec::new(),
                });
                map.shards.len() - 1
            }
        };
        if let Some(owner) = map.owners.get_mut(usize::from(slot)) {
            *owner = index(at);
        }
        map.drop_idle_shards();
        map
    }

    /// Forgets the shards that serve no slot (a primary whose last slot moved away).
    fn drop_idle_shards(&mut self) {
        let mut serving = vec![false; self.shards.len()];
        for &owner in self.owners.iter().filter(|&&o| o != 0) {
            serving[usize::from(owner) - 1] = true;
        }
        if serving.iter().all(|&s| s) {
            return;
        }
        let mut renumbered = vec![0u16; self.shards.len()];
        let mut kept = 0;
        for (i, &serves) in serving.iter().enumerate() {
            if serves {
                renumbered[i] = index(kept);
                kept += 1;
            }
        }
        for owner in self.owners.iter_mut().filter(|o| **o != 0) {
            *owner = renumbered[usize::from(*owner) - 1];
        }
        let mut i = 0;
        self.shards.retain(|_| {
            i += 1;
            serving[i - 1]
        });
    }

    /// Reads a `CLUSTER SHARDS` reply: per shard, its slot ranges and its nodes, each with
    /// its role and health. `None` when it is not one.
    pub(crate) fn from_shards(reply: &Value, reading: Reading<'_>) -> Option<SlotMap> {
        let mut map = SlotMap::empty();
        for shard in items(reply)? {
            let ranges = items(field(shard, "slots")?)?;
            let mut primary = None;
            let mut replicas = Vec::new();
            for node in items(field(shard, "nodes")?)? {
                let role = field(node, "role").and_then(text)?;
                // `loading` is also what a replica that has replicated nothing yet (an empty
                // data set) reports; one that is really loading is refused at connect, where
                // its `ROLE` says it is not linked.
                let healthy = matches!(
                    field(node, "health").and_then(text),
                    Some("online" | "loading")
                );
                let Some(addr) = shard_node_addr(node, reading) else {
                    continue;
                };
                if role == "master" || role == "primary" {
                    primary = Some(addr);
                } else if healthy {
                    replicas.push(addr);
                }
            }
            // A shard of replicas alone (its primary gone) serves no slot.
            let (Some(primary), false) = (primary, ranges.is_empty()) else {
                continue;
            };
            let at = map.add(Shard { primary, replicas });
            for pair in ranges.chunks(2) {
                let [start, end] = pair else { return None };
                map.assign(int(start)?, int(end)?, at)?;
            }
        }
        Some(map)
    }

    /// Reads a `CLUSTER SLOTS` reply: per range of slots, its primary then its replicas
    /// (`[start, end, [host, port, id...], [host, port, id...]...]`). `None` when it is not
    /// one.
    pub(crate) fn from_slots(reply: &Value, reading: Reading<'_>) -> Option<SlotMap> {
        let mut map = SlotMap::empty();
        for range in items(reply)? {
            let fields = items(range)?;
            let (start, end) = (int(fields.first()?)?, int(fields.get(1)?)?);
            let mut nodes = fields.get(2..)?.iter().map(|n| slots_node_addr(n, reading));
            let Some(Some(primary)) = nodes.next() else {
                continue;
            };
            let replicas = nodes.flatten().collect();
            let shard = Shard { primary, replicas };
            let at = match map.shards.iter().position(|s| s == &shard) {
                Some(at) => at,
                None => map.add(shard),
            };
            map.assign(start, end, at)?;
        }
        Some(map)
    }

    fn add(&mut self, shard: Shard) -> usize {
        self.shards.push(shard);
        self.shards.len() - 1
    }

    /// Slots `start` to `end` (inclusive) go to shard `at`; `None` for a range out of bounds.
    fn assign(&mut self, start: i64, end: i64, at: usize) -> Option<()> {
        let start = usize::try_from(start).ok()?;
        let end = usize::try_from(end).ok()?;
        if start > end {
            return None;
        }
        self.owners.get_mut(start..=end)?.fill(index(at));
        Some(())
    }
}

/// The owner index of shard `at` (slots are at most 16384, and so are shards).
fn index(at: usize) -> u16 {
    u16::try_from(at + 1).unwrap_or(u16::MAX)
}

/// A `CLUSTER SHARDS` node's address: its endpoint (or IP) and port (its TLS port when the
/// pool speaks TLS).
fn shard_node_addr(node: &Value, reading: Reading<'_>) -> Option<NodeAddr> {
    let port = if reading.tls {
        field(node, "tls-port").and_then(int)
    } else {
        None
    }
    .or_else(|| field(node, "port").and_then(int))?;
    let host = [field(node, "endpoint"), field(node, "ip")]
        .into_iter()
        .flatten()
        .filter_map(text)
        .find(|h| !h.is_empty() && *h != "?")
        .unwrap_or(&reading.asked.host);
    address(host, port, reading)
}

/// A `CLUSTER SLOTS` node's address (`[host, port, id...]`); an empty host is the node
/// asked, and `?` an unknown one.
fn slots_node_addr(node: &Value, reading: Reading<'_>) -> Option<NodeAddr> {
    let fields = items(node)?;
    let host = text(fields.first()?)?;
    let port = int(fields.get(1)?)?;
    match host {
        "?" => None,
        "" => address(&reading.asked.host, port, reading),
        host => address(host, port, reading),
    }
}

fn address(host: &str, port: i64, reading: Reading<'_>) -> Option<NodeAddr> {
    let port = u16::try_from(port).ok().filter(|&p| p != 0)?;
    Some(reading.addresses.apply(NodeAddr::new(host, port)))
}

/// A field of a map: a RESP3 map, or RESP2's flat array of names and values.
fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    match value {
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k) == Some(name))
            .map(|(_, v)| v),
        Value::Array(flat) => flat
            .chunks(2)
            .find(|pair| text(&pair[0]) == Some(name))
            .and_then(|pair| pair.get(1)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn node(ip: &str, port: i64, role: &str, health: &str) -> Value {
        Value::Array(vec![
            bulk("id"),
            bulk("abc"),
            bulk("port"),
            Value::Int(port),
            bulk("ip"),
            bulk(ip),
            bulk("endpoint"),
            bulk(ip),
            bulk("role"),
            bulk(role),
            bulk("health"),
            bulk(health),
        ])
    }

    fn reading<'a>(asked: &'a NodeAddr, addresses: &'a AddressMap) -> Reading<'a> {
        Reading {
            asked,
            tls: false,
            addresses,
        }
    }

    #[test]
    fn shards_give_each_slot_its_primary_and_healthy_replicas() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk("slots"),
                Value::Array(vec![
                    Value::Int(0),
                    Value::Int(99),
                    Value::Int(200),
                    Value::Int(16383),
                ]),
                bulk("nodes"),
                Value::Array(vec![
                    node("10.0.0.1", 7000, "master", "online"),
                    node("10.0.0.2", 7001, "replica", "online"),
                    node("10.0.0.3", 7002, "replica", "failed"),
                ]),
            ]),
            Value::Array(vec![
                bulk("slots"),
                Value::Array(vec![Value::Int(100), Value::Int(199)]),
                bulk("nodes"),
                Value::Array(vec![node("10.0.0.4", 7003, "master", "online")]),
            ]),
        ]);
        let asked = NodeAddr::new("10.0.0.1", 7000);
        let none = AddressMap::default();
        let map = SlotMap::from_shards(&reply, reading(&asked, &none)).unwrap();
        assert_eq!(map.covered(), 16384);
        assert_eq!(map.primary(0), Some(&NodeAddr::new("10.0.0.1", 7000)));
        assert_eq!(map.primary(150), Some(&NodeAddr::new("10.0.0.4", 7003)));
        assert_eq!(map.primary(16383), Some(&NodeAddr::new("10.0.0.1", 7000)));
        assert_eq!(
            map.shard(5).unwrap().replicas,
            [NodeAddr::new("10.0.0.2", 7001)]
        );
        assert_eq!(map.shards().len(), 2);
    }

    #[test]
    fn slots_replies_and_unknown_hosts_are_read() {
        let entry = |start, end, host: &str, port| {
            Value::Array(vec![
                Value::Int(start),
                Value::Int(end),
                Value::Array(vec![bulk(host), Value::Int(port), bulk("id")]),
            ])
        };
        let reply = Value::Array(vec![
            entry(0, 8191, "", 7000),
            entry(8192, 16000, "10.0.0.9", 7001),
            entry(16001, 16383, "?", 7002),
        ]);
        let asked = NodeAddr::new("127.0.0.1", 7000);
        let mut addresses = AddressMap::default();
        addresses.exact.insert(
            NodeAddr::new("10.0.0.9", 7001),
            NodeAddr::new("127.0.0.1", 17001),
        );
        let map = SlotMap::from_slots(&reply, reading(&asked, &addresses)).unwrap();
        assert_eq!(map.primary(0), Some(&asked));
        assert_eq!(map.primary(9000), Some(&NodeAddr::new("127.0.0.1", 17001)));
        assert_eq!(
            map.primary(16001),
            None,
            "a node of unknown address serves nothing"
        );
        assert_eq!(map.covered(), 16001);
    }

    #[test]
    fn a_move_patches_one_slot_and_forgets_a_primary_left_without_slots() {
        let (a, b) = (NodeAddr::new("a", 1), NodeAddr::new("b", 2));
        let map = SlotMap::empty().moved(7, &a);
        assert_eq!(map.primary(7), Some(&a));
        assert_eq!(map.covered(), 1);
        let again = map.moved(8, &a);
        assert_eq!(again.shards().len(), 1);
        assert_eq!(again.covered(), 2);
        let both = again.moved(9, &b).moved(7, &b);
        assert_eq!(both.shards().len(), 2);
        assert_eq!(both.moved_slots(&again), 2, "7 moved to b, 9 newly served");
        assert_eq!((both.slots_of(&a), both.slots_of(&b)), (1, 2));
        let all_b = both.moved(8, &b);
        assert_eq!(all_b.shards().len(), 1, "a keeps no slot");
        assert_eq!(all_b.primary(7), Some(&b));
        assert_eq!(all_b.primary(8), Some(&b));
        assert_eq!(all_b.primary(9), Some(&b));
        assert_eq!(all_b.covered(), 3);
    }

    #[test]
    fn garbage_is_not_a_map() {
        let (asked, none) = (NodeAddr::new("h", 1), AddressMap::default());
        let r = reading(&asked, &none);
        assert!(SlotMap::from_shards(&Value::Int(3), r).is_none());
        assert!(SlotMap::from_slots(&bulk("x"), r).is_none());
        let bad_range = Value::Array(vec![Value::Array(vec![
            Value::Int(5),
            Value::Int(99999),
            Value::Array(vec![bulk("h"), Value::Int(1)]),
        ])]);
        assert!(SlotMap::from_slots(&bad_range, r).is_none());
    }
}
