//! TLS (the `tls` feature) against a topology that speaks only TLS: every node and sentinel on
//! a `tls-port`, certificates from a throwaway CA, the sentinels announcing the TLS ports.

use r2d2_redis_sentinel::{
    Error, Event, FailoverSource, SentinelPool, TlsOptions,
    redis::Commands,
    testkit::{Topology, throwaway_ca_pem},
};
use support::init_logging;

#[test]
fn a_tls_topology_is_served_through_a_failover() {
    init_logging();
    let topology = Topology::builder().tls(true).start().unwrap();
    let pool = topology.pool_builder().build().unwrap();
    let _: () = pool.with_retry(|c| c.set("k", "over TLS")).unwrap();
    let old = topology.master().unwrap();
    assert_eq!(pool.master(), Some(old.clone()));
    let new = topology.failover().unwrap();
    let reached = pool
        .with_retry(|c| {
            let _: () = c.set("k2", "after the failover")?;
            Ok(c.addr().clone())
        })
        .unwrap();
    assert_eq!(reached, new);
    let value: String = pool.with_retry(|c| c.get("k")).unwrap();
    assert_eq!(value, "over TLS");
    // The watcher and the fence's probe speak TLS too.
    let events: Vec<Event> = pool.events().try_iter().collect();
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Failover {
                via: FailoverSource::Promotion | FailoverSource::SwitchMaster,
                ..
            }
        )),
        "{events:?}"
    );
    // Replicas over TLS.
    let reads = pool
        .replica_pool(r2d2_redis_sentinel::ReplicaOptions::default())
        .unwrap();
    assert_ne!(*reads.get().unwrap().addr(), new);
}

#[test]
fn a_certificate_from_another_ca_is_refused_with_a_clear_error() {
    init_logging();
    let topology = Topology::builder().tls(true).start().unwrap();
    let err = topology
        .pool_builder()
        .tls(
            topology
                .tls_options()
                .unwrap()
                .root_certificates_pem(throwaway_ca_pem().unwrap()),
        )
        .build()
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, Error::SentinelsUnreachable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.to_lowercase().contains("certificate"),
        "the error says the certificate was refused: {message}"
    );
}

#[test]
fn a_plain_client_against_tls_only_sentinels_gets_an_error_not_a_hang() {
    init_logging();
    let topology = Topology::builder().tls(true).start().unwrap();
    let err = SentinelPool::builder(topology.sentinel_urls(), topology.service())
        .build()
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, Error::SentinelsUnreachable { .. }), "{err:?}");
}

#[test]
fn a_rediss_url_speaks_tls_and_the_builder_supplies_the_ca() {
    init_logging();
    let topology = Topology::builder().tls(true).start().unwrap();
    let hosts: Vec<String> = topology
        .sentinel_addrs()
        .iter()
        .map(|a| a.to_string())
        .collect();
    let url = format!(
        "rediss+sentinel://{}/{}",
        hosts.join(","),
        topology.service()
    );
    // The platform's roots do not know the test CA: refused, so TLS was spoken.
    let err = SentinelPool::from_url(&url)
        .unwrap()
        .build()
        .map(|_| ())
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    let pool = SentinelPool::from_url(&url)
        .unwrap()
        .tls(topology.tls_options().unwrap())
        .build()
        .unwrap();
    let _: () = pool.with_retry(|c| c.set("k", "v")).unwrap();
}

#[test]
fn servers_that_require_client_certificates_refuse_a_client_without_one() {
    init_logging();
    let topology = Topology::builder().tls(true).start().unwrap();
    let ca = topology.ca_certificate_pem().unwrap().to_vec();
    let err = topology
        .pool_builder()
        .tls(TlsOptions::default().root_certificates_pem(ca))
        .build()
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, Error::SentinelsUnreachable { .. }), "{err:?}");
}
