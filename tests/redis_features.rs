//! redis-rs's optional command families, passed through as this crate's features (`streams`,
//! `geospatial`), work on a pooled connection and under `with_retry`.

use r2d2_redis_sentinel::{
    redis::{self, Commands, streams::StreamRangeReply},
    testkit::Topology,
};

#[test]
fn stream_and_geospatial_commands_reach_the_master() {
    let topology = Topology::start().unwrap();
    let pool = topology.pool_builder().max_size(2).build().unwrap();

    // XADD is a write: under `with_retry` it is not re-run once it may have been applied.
    let id: String = pool
        .with_retry(|conn| conn.xadd("orders", "*", &[("item", "tea")]))
        .unwrap();
    let range: StreamRangeReply = pool.get().unwrap().xrange_all("orders").unwrap();
    assert_eq!(range.ids.len(), 1);
    assert_eq!(range.ids[0].id, id);

    let mut conn = pool.get().unwrap();
    let added: usize = conn
        .geo_add(
            "shops",
            &[
                (redis::geo::Coord::lon_lat(13.361389, 38.115556), "palermo"),
                (redis::geo::Coord::lon_lat(15.087269, 37.502669), "catania"),
            ],
        )
        .unwrap();
    assert_eq!(added, 2);
    let km: f64 = conn
        .geo_dist("shops", "palermo", "catania", redis::geo::Unit::Kilometers)
        .unwrap();
    assert!((km - 166.27).abs() < 0.1, "{km}");
}
