//! What the benches share.

use r2d2_redis_sentinel::{
    redis::{
        ConnectionAddr,
        sentinel::{LockedSentinelClient, SentinelClientBuilder, SentinelServerType},
    },
    testkit::Topology,
};

/// redis-rs's own Sentinel-aware r2d2 manager, for the topology's master: the contender this
/// crate is measured against.
pub(crate) fn locked_sentinel_client(topology: &Topology) -> LockedSentinelClient {
    let sentinels = topology
        .sentinel_addrs()
        .into_iter()
        .map(|a| ConnectionAddr::Tcp(a.host, a.port));
    let client = SentinelClientBuilder::new(
        sentinels,
        topology.service_name(),
        SentinelServerType::Master,
    )
    .and_then(|b| b.build())
    .expect("sentinel client");
    LockedSentinelClient::new(client)
}
