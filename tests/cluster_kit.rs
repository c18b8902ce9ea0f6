//! The test kit's Redis Cluster: built by the kit itself and healthy, and each helper does
//! what it says (a manual failover, a primary's crash and return, a slot moved in steps),
//! checked from outside with plain connections.

use r2d2_redis_sentinel::{
    redis::{self, Commands},
    testkit::Cluster,
};
use support::{direct, init_logging};

#[test]
fn the_kit_builds_a_cluster_and_fails_a_shard_over_by_hand() {
    init_logging();
    let cluster = Cluster::start().unwrap();
    let primaries = cluster.primaries().unwrap();
    assert_eq!(primaries.len(), 3, "{primaries:?}");
    for primary in &primaries {
        assert_eq!(cluster.replicas_of(primary).unwrap().len(), 1, "{primary}");
    }
    // A hash tag puts both keys in one slot, which one primary owns.
    let slot = cluster.slot_of("{user:42}:name").unwrap();
    assert_eq!(cluster.slot_of("{user:42}:email").unwrap(), slot);
    let owner = cluster.owner(slot).unwrap();
    let () = direct(&owner).set("{user:42}:name", "ada").unwrap();
    let other = primaries.iter().find(|p| **p != owner).unwrap();
    let err = direct(other)
        .get::<_, Option<String>>("{user:42}:name")
        .unwrap_err();
    assert_eq!(err.code(), Some("MOVED"), "{err}");
    assert!(err.to_string().contains(&owner.to_string()), "{err}");

    // The replica takes over with the write; the old primary follows it.
    let new = cluster.failover(&owner).unwrap();
    assert_ne!(new, owner);
    assert_eq!(cluster.owner(slot).unwrap(), new);
    let name: Option<String> = direct(&new).get("{user:42}:name").unwrap();
    assert_eq!(name.as_deref(), Some("ada"));
    assert_eq!(cluster.replicas_of(&new).unwrap(), vec![owner]);
}

#[test]
fn a_killed_primary_is_replaced_by_its_replica_and_rejoins_as_one() {
    init_logging();
    let mut cluster = Cluster::start().unwrap();
    let slot = cluster.slot_of("k").unwrap();
    let old = cluster.owner(slot).unwrap();
    let replica = cluster.replicas_of(&old).unwrap().remove(0);
    cluster.kill(&old).unwrap();
    let new = cluster.wait_for_new_primary(&old).unwrap();
    assert_eq!(new, replica);
    assert_eq!(cluster.owner(slot).unwrap(), new);
    cluster.restart(&old).unwrap();
    assert_eq!(cluster.replicas_of(&new).unwrap(), vec![old]);
}

#[test]
fn a_slot_moved_in_steps_answers_ask_then_moved() {
    init_logging();
    let cluster = Cluster::start().unwrap();
    let slot = cluster.slot_of("{moving}").unwrap();
    let from = cluster.owner(slot).unwrap();
    let to = cluster
        .primaries()
        .unwrap()
        .into_iter()
        .find(|p| *p != from)
        .unwrap();
    let mut source = direct(&from);
    for i in 0..50 {
        let () = source.set(format!("{{moving}}:{i}"), i).unwrap();
    }

    let migration = cluster.start_migration(slot, &to).unwrap();
    // While it migrates, a key its owner does not hold is asked of the importing node.
    let err = source.set::<_, _, ()>("{moving}:new", 1).unwrap_err();
    assert_eq!(err.code(), Some("ASK"), "{err}");
    let existing: Option<u32> = source.get("{moving}:7").unwrap();
    assert_eq!(existing, Some(7), "not moved yet: served by its owner");
    assert_eq!(migration.move_keys().unwrap(), 50);
    let err = source.get::<_, Option<u32>>("{moving}:7").unwrap_err();
    assert_eq!(err.code(), Some("ASK"), "{err}");
    let (moved,): (Option<u32>,) = redis::pipe()
        .cmd("ASKING")
        .ignore()
        .get("{moving}:7")
        .query(&mut direct(&to))
        .unwrap();
    assert_eq!(moved, Some(7), "the importing node serves it after ASKING");
    migration.finish().unwrap();
    assert_eq!(cluster.owner(slot).unwrap(), to);
    let err = source.get::<_, Option<u32>>("{moving}:7").unwrap_err();
    assert_eq!(err.code(), Some("MOVED"), "{err}");

    // And back in one call, every key with it.
    cluster.migrate_slot(slot, &from).unwrap();
    assert_eq!(cluster.owner(slot).unwrap(), from);
    let keys: u32 = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query(&mut source)
        .unwrap();
    assert_eq!(keys, 50);
}
