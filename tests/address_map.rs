//! Announced addresses the client must not use as they are (Docker, NAT): the address map
//! turns them into reachable ones for everything learned from sentinels, lookups and the
//! watcher's announcements alike. Here each data node is reached through its own loopback
//! proxy, and the pool must go through the proxies, before and after a failover.

use std::{collections::HashMap, time::Duration};

use r2d2_redis_sentinel::{Error, NodeAddr, SentinelPool, redis::Commands, testkit::Topology};
use support::{Proxy, direct, eventually, init_logging};

#[test]
fn the_pool_reaches_every_master_through_the_mapped_address() {
    init_logging();
    let topology = Topology::start().unwrap();
    let proxies: Vec<(NodeAddr, Proxy)> = topology
        .data_addrs()
        .into_iter()
        .map(|addr| {
            let proxy = Proxy::start(&addr);
            (addr, proxy)
        })
        .collect();
    let via =
        |node: &NodeAddr| -> &Proxy { &proxies.iter().find(|(addr, _)| addr == node).unwrap().1 };
    let master = topology.master().unwrap();
    let pool = topology
        .pool_builder()
        .max_size(2)
        .address_map(
            proxies
                .iter()
                .map(|(addr, proxy)| (addr.to_string(), proxy.addr.to_string())),
        )
        .build()
        .unwrap();
    let mut conn = pool.get().unwrap();
    assert_eq!(*conn.addr(), via(&master).addr);
    let _: () = conn.set("k", "through the proxy").unwrap();
    drop(conn);
    let on_master: String = direct(&master).get("k").unwrap();
    assert_eq!(on_master, "through the proxy");
    assert!(via(&master).connections() > 0);

    // The watcher's announcement is mapped too: the pool moves to the new master's proxy.
    let new = topology.failover().unwrap();
    eventually(
        "the pool to follow the failover",
        Duration::from_secs(10),
        || (pool.master() == Some(via(&new).addr.clone())).then_some(()),
    );
    let reached = pool
        .with_retry(|c| {
            let _: () = c.set("after", 1)?;
            Ok(c.addr().clone())
        })
        .unwrap();
    assert_eq!(reached, via(&new).addr);
    assert!(via(&new).connections() > 0);

    // The function form, for maps that are not a list.
    let table: HashMap<NodeAddr, NodeAddr> = proxies
        .iter()
        .map(|(addr, proxy)| (addr.clone(), proxy.addr.clone()))
        .collect();
    let pool = topology
        .pool_builder()
        .max_size(1)
        .map_addresses(move |announced| table.get(announced).cloned())
        .build()
        .unwrap();
    assert_eq!(*pool.get().unwrap().addr(), via(&new).addr);
}

#[test]
fn a_malformed_pair_is_a_typed_error() {
    for pair in [
        ("not-an-address", "127.0.0.1:1"),
        ("127.0.0.1:1", "127.0.0.1:0"),
    ] {
        let err = SentinelPool::builder(["127.0.0.1:1"], "mymaster")
            .address_map([pair])
            .build()
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidConfig {
                    option: "address_map",
                    ..
                }
            ),
            "{pair:?}: {err:?}"
        );
    }
}

#[test]
fn discovered_sentinels_are_reached_through_the_mapped_address() {
    init_logging();
    let topology = Topology::start().unwrap();
    let sentinels = topology.sentinel_addrs();
    // Only the first sentinel is given; the others are learned from it, at the addresses
    // they announce, which the map sends through proxies.
    let proxies: Vec<(NodeAddr, Proxy)> = sentinels[1..]
        .iter()
        .map(|addr| (addr.clone(), Proxy::start(addr)))
        .collect();
    let pool = SentinelPool::builder([sentinels[0].to_string()], topology.service())
        .address_map(
            proxies
                .iter()
                .map(|(addr, proxy)| (addr.to_string(), proxy.addr.to_string())),
        )
        .build()
        .unwrap();
    let expected: Vec<NodeAddr> = std::iter::once(sentinels[0].clone())
        .chain(proxies.iter().map(|(_, p)| p.addr.clone()))
        .collect();
    eventually(
        "the pool to learn both sentinels at their mapped addresses",
        Duration::from_secs(15),
        || {
            let mut known = pool.stats().sentinels;
            known.sort();
            let mut want = expected.clone();
            want.sort();
            (known == want).then_some(())
        },
    );
    for (addr, proxy) in &proxies {
        assert!(
            !pool.stats().sentinels.contains(addr),
            "{addr} was used as announced"
        );
        eventually(
            "the watcher to subscribe through the proxy",
            Duration::from_secs(10),
            || (proxy.connections() > 0).then_some(()),
        );
    }
}
