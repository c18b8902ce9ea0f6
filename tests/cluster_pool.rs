//! `ClusterPool` against a real Redis Cluster built by the kit (3 primaries, 3 replicas):
//! routing and hash tags, cross-slot requests refused unsent, pipelines split by node,
//! transactions kept on one node, `MOVED` and `ASK` followed while a slot migrates under 8
//! writers, and a manual failover followed. Every fact is checked from outside, on plain
//! connections to the node the cluster itself names.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use r2d2_redis_sentinel::{
    ClusterPool, Event, ReplicaOptions,
    redis::{self, Commands, ErrorKind, ServerErrorKind},
    testkit::Cluster,
};
use support::{direct, init_logging};

fn pool_for(cluster: &Cluster) -> ClusterPool {
    let seeds: Vec<String> = cluster.nodes().iter().map(ToString::to_string).collect();
    ClusterPool::builder(seeds).max_size(4).build().unwrap()
}

/// The value `key` holds on the primary the cluster says owns it.
fn at_owner(cluster: &Cluster, key: &str) -> Option<String> {
    let owner = cluster.owner(cluster.slot_of(key).unwrap()).unwrap();
    direct(&owner).get(key).unwrap()
}

#[test]
fn every_key_lands_on_the_primary_the_cluster_names_and_hash_tags_keep_keys_together() {
    init_logging();
    let cluster = Cluster::start().unwrap();
    let pool = pool_for(&cluster);
    assert_eq!(pool.primaries().len(), 3);
    let mut conn = pool.get().unwrap();
    for i in 0..200 {
        let () = conn.set(format!("key:{i}"), i).unwrap();
    }
    // Each key is served by exactly one primary (the others answer MOVED): the one the
    // pool's map names.
    let primaries = cluster.primaries().unwrap();
    let mut direct_to: Vec<_> = primaries.iter().map(direct).collect();
    for i in 0..200 {
        let key = format!("key:{i}");
        let holders: Vec<_> = primaries
            .iter()
            .zip(&mut direct_to)
            .filter_map(|(p, c)| match c.get::<_, Option<i64>>(&key) {
                Ok(value) => Some((p.clone(), value)),
                Err(err) if err.code() == Some("MOVED") => None,
                Err(err) => panic!("{key} on {p}: {err}"),
            })
            .collect();
        assert_eq!(
            holders,
            [(pool.primary_for_key(&key).unwrap(), Some(i))],
            "{key}"
        );
    }
    assert_eq!(conn.nodes().len(), 3, "one connection per primary used");

    // Keys of one hash tag go to one node together, even in one command.
    let () = conn
        .mset(&[
            ("{user:42}:name", "ada"),
            ("{user:42}:email", "ada@example.com"),
        ])
        .unwrap();
    let both: (String, String) = conn.mget(&["{user:42}:name", "{user:42}:email"]).unwrap();
    assert_eq!(both, ("ada".to_owned(), "ada@example.com".to_owned()));
    assert_eq!(
        at_owner(&cluster, "{user:42}:email").as_deref(),
        Some("ada@example.com")
    );

    // A script's keys are its own: KEYS[1] routes it.
    let n: i64 = redis::Script::new("return redis.call('INCR', KEYS[1])")
        .key("{user:42}:visits")
        .invoke(&mut conn)
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(at_owner(&cluster, "{user:42}:visits").as_deref(), Some("1"));

    // A command whose keys move with its arguments is asked of the server.
    let () = conn.sadd("{s}:a", &[1, 2]).unwrap();
    let () = conn.sadd("{s}:b", &[2, 3]).unwrap();
    let stored: i64 = redis::cmd("SINTERSTORE")
        .arg("{s}:both")
        .arg("{s}:a")
        .arg("{s}:b")
        .query(&mut conn)
        .unwrap();
    assert_eq!(stored, 1);
    let card: i64 = redis::cmd("ZUNIONSTORE")
        .arg("{s}:z")
        .arg(2)
        .arg("{s}:a")
        .arg("{s}:b")
        .query(&mut conn)
        .unwrap();
    assert_eq!(card, 3);
}

#[test]
fn cross_slot_requests_are_refused_unsent_and_pipelines_split_by_node() {
    init_logging();
    let cluster = Cluster::start().unwrap();
    let pool = pool_for(&cluster);
    let mut conn = pool.get().unwrap();

    // "foo" and "bar" hash to different slots, on different primaries.
    let err = conn
        .mset::<_, _, ()>(&[("foo", "1"), ("bar", "2")])
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Server(ServerErrorKind::CrossSlot),
        "{err}"
    );
    let detail = err.detail().unwrap_or_default();
    assert!(
        detail.contains("foo in slot 12182") && detail.contains("bar in slot 5061"),
        "{err}"
    );
    assert_eq!(at_owner(&cluster, "foo"), None, "nothing was sent");
    assert_eq!(at_owner(&cluster, "bar"), None, "nothing was sent");

    // An atomic pipeline across slots: refused whole, unsent.
    let err = redis::pipe()
        .atomic()
        .set("foo", "1")
        .set("bar", "2")
        .query::<()>(&mut conn)
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Server(ServerErrorKind::CrossSlot),
        "{err}"
    );
    assert_eq!(at_owner(&cluster, "foo"), None);
    assert_eq!(at_owner(&cluster, "bar"), None);

    // One in one slot runs, as a transaction.
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .incr("{t}:a", 1)
        .incr("{t}:b", 2)
        .query(&mut conn)
        .unwrap();
    assert_eq!((a, b), (1, 2));

    // A plain pipeline is split by node; its replies come back in order.
    let mut pipe = redis::pipe();
    for i in 0..60 {
        pipe.set(format!("p:{i}"), i).ignore();
    }
    for i in 0..60 {
        pipe.get(format!("p:{i}"));
    }
    let values: Vec<i64> = pipe.query(&mut conn).unwrap();
    assert_eq!(values, (0..60).collect::<Vec<i64>>());
    for i in [0, 17, 59] {
        assert_eq!(at_owner(&cluster, &format!("p:{i}")), Some(i.to_string()));
    }

    // WATCH binds the connection to its key's node until EXEC.
    let (counter,): (i64,) = redis::transaction(&mut conn, &["{w}:n"], |c, pipe| {
        let n: Option<i64> = c.get("{w}:n")?;
        pipe.set("{w}:n", n.unwrap_or(0) + 5)
            .ignore()
            .get("{w}:n")
            .query(c)
    })
    .unwrap();
    assert_eq!(counter, 5);
    // A command whose keys only the server can place, inside a transaction sent command by
    // command: nothing else is queued with it, and it runs on the transaction's node.
    let () = conn.zadd("{w}:a", "m", 1).unwrap();
    let () = redis::cmd("WATCH").arg("{w}:a").query(&mut conn).unwrap();
    let () = redis::cmd("MULTI").query(&mut conn).unwrap();
    let queued: String = redis::cmd("ZUNIONSTORE")
        .arg("{w}:u")
        .arg(1)
        .arg("{w}:a")
        .query(&mut conn)
        .unwrap();
    assert_eq!(queued, "QUEUED");
    let (stored,): (i64,) = redis::cmd("EXEC").query(&mut conn).unwrap();
    assert_eq!(stored, 1);
    // After a WATCH, a key of another slot is refused unsent.
    let () = redis::cmd("WATCH").arg("{w}:n").query(&mut conn).unwrap();
    let err = conn.set::<_, _, ()>("elsewhere", 1).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Server(ServerErrorKind::CrossSlot),
        "{err}"
    );
    let () = redis::cmd("UNWATCH").query(&mut conn).unwrap();
    let () = conn.set("elsewhere", 1).unwrap();
    assert_eq!(at_owner(&cluster, "elsewhere").as_deref(), Some("1"));

    // A blocking command longer than the read timeout needs its own, for that call.
    let seeds: Vec<String> = cluster.nodes().iter().map(ToString::to_string).collect();
    let short = ClusterPool::builder(seeds)
        .read_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let mut conn = short.get().unwrap();
    let cut = conn.blpop::<_, Option<(String, String)>>("{q}:jobs", 1.0);
    assert!(cut.as_ref().is_err_and(|e| e.is_timeout()), "{cut:?}");
    let waited: Option<(String, String)> = conn
        .with_read_timeout(Duration::from_secs(3), |c| c.blpop("{q}:jobs", 1.0))
        .unwrap();
    assert_eq!(waited, None, "BLPOP timed out on its own, after 1 s");
}

#[test]
fn eight_writers_follow_moved_and_ask_while_a_slot_migrates_and_lose_nothing() {
    init_logging();
    let cluster = Cluster::start().unwrap();
    let pool = pool_for(&cluster);
    let slot = cluster.slot_of("{moving}").unwrap();
    let from = cluster.owner(slot).unwrap();
    let to = cluster
        .primaries()
        .unwrap()
        .into_iter()
        .find(|p| *p != from)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (pool, stop, acks) = (pool.clone(), Arc::clone(&stop), Arc::clone(&acks));
            thread::spawn(move || {
                // Each writer owns 8 keys of the migrating slot and remembers the last value
                // the cluster acknowledged for each.
                let mut acked = vec![0u64; 8];
                let mut errors = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) || n < 50 {
                    n += 1;
                    let k = (n % 8) as usize;
                    let key = format!("{{moving}}:{w}:{k}");
                    let result = pool
                        .get()
                        .map_err(|e| e.to_string())
                        .and_then(|mut c| c.set::<_, _, ()>(&key, n).map_err(|e| e.to_string()));
                    match result {
                        Ok(()) => {
                            acked[k] = n;
                            acks.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(err) => errors.push(err),
                    }
                }
                (w, acked, errors, n)
            })
        })
        .collect();

    // Each step lasts until the writers have written 500 more times through it.
    let step = || {
        let (from, deadline) = (
            acks.load(Ordering::Relaxed),
            Instant::now() + Duration::from_secs(20),
        );
        while acks.load(Ordering::Relaxed) < from + 500 {
            assert!(Instant::now() < deadline, "the writers stalled");
            thread::sleep(Duration::from_millis(1));
        }
    };
    step();
    let migration = cluster.start_migration(slot, &to).unwrap();
    step(); // new keys are asked of the importing node
    migration.move_keys().unwrap();
    step(); // every key is asked of the importing node
    migration.finish().unwrap();
    step(); // and moved there
    stop.store(true, Ordering::Relaxed);

    let mut writes = 0;
    for writer in writers {
        let (w, acked, errors, n) = writer.join().unwrap();
        assert!(errors.is_empty(), "writer {w}: {errors:?}");
        writes += n;
        for (k, value) in acked.iter().enumerate() {
            let key = format!("{{moving}}:{w}:{k}");
            let held: Option<u64> = direct(&to).get(&key).unwrap();
            assert_eq!(
                held,
                Some(*value),
                "{key}: the last acknowledged write is where the cluster says"
            );
        }
    }
    assert_eq!(cluster.owner(slot).unwrap(), to);
    assert_eq!(pool.primary_for_key("{moving}"), Some(to.clone()));
    let keys: u64 = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query(&mut direct(&to))
        .unwrap();
    assert_eq!(keys, 64, "{writes} writes; every writer's 8 keys moved");
    let stats = pool.stats();
    assert!(stats.moved > 0 && stats.asked > 0, "{stats}");
    assert_eq!(stats.uncovered_slots, 0, "{stats}");
    // The refresh after the move tells it: one slot moved.
    let events = pool.events();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        drop(pool.get().unwrap());
        let told = events.try_iter().any(|e| {
            matches!(e, Event::SlotMapChanged { moved_slots: 1, ref primaries, .. }
                if primaries.len() == 3)
        });
        if told {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no SlotMapChanged; {}",
            pool.stats()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_manual_failover_is_followed_on_the_same_connection() {
    init_logging();
    let cluster = Cluster::start().unwrap();
    let pool = pool_for(&cluster);
    let mut conn = pool.get().unwrap();
    let () = conn.set("k", "before").unwrap();
    let old = cluster.owner(cluster.slot_of("k").unwrap()).unwrap();
    let new = cluster.failover(&old).unwrap();
    // The old primary is a replica now: it answers MOVED, which the connection follows.
    let () = conn.set("k", "after").unwrap();
    let value: Option<String> = direct(&new).get("k").unwrap();
    assert_eq!(value.as_deref(), Some("after"));
    assert_eq!(pool.primary_for_key("k"), Some(new));
}

#[test]
fn a_replica_pool_reads_from_each_keys_replicas_and_refuses_writes_unsent() {
    init_logging();
    let cluster = Cluster::start().unwrap();
    let pool = pool_for(&cluster);
    let reads = pool.replica_pool(ReplicaOptions::default()).unwrap();
    let keys: Vec<String> = (0..30).map(|i| format!("r:{i}")).collect();
    let mut conn = pool.get().unwrap();
    for (i, key) in keys.iter().enumerate() {
        let () = conn.set(key, i).unwrap();
    }
    // Replication is asynchronous: wait until every replica has them.
    let primaries = cluster.primaries().unwrap();
    for primary in &primaries {
        let replicas: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(5000)
            .query(&mut direct(primary))
            .unwrap();
        assert_eq!(replicas, 1, "{primary}");
    }
    let replicas: Vec<_> = primaries
        .iter()
        .flat_map(|p| cluster.replicas_of(p).unwrap())
        .collect();

    let mut read = reads.get().unwrap();
    for (i, key) in keys.iter().enumerate() {
        let value: Option<usize> = read.get(key).unwrap();
        assert_eq!(value, Some(i), "{key}");
    }
    // Every read went to a replica, and the connection used one per shard.
    let used = read.nodes();
    assert_eq!(used.len(), 3, "{used:?}");
    assert!(
        used.iter().all(|n| replicas.contains(n)),
        "{used:?} {replicas:?}"
    );
    // A pipeline of reads, split among the replicas.
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.get(key);
    }
    let values: Vec<usize> = pipe.query(&mut read).unwrap();
    assert_eq!(values, (0..30).collect::<Vec<usize>>());

    // A write is refused unsent, and with_retry does not retry it.
    let err = read.set::<_, _, ()>("r:0", "changed").unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Server(ServerErrorKind::ReadOnly),
        "{err}"
    );
    let start = Instant::now();
    let refused = reads.with_retry(|c| c.set::<_, _, ()>("r:0", "changed"));
    assert!(
        matches!(refused, Err(r2d2_redis_sentinel::Error::Redis(_))),
        "{refused:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "retried: {:?}",
        start.elapsed()
    );
    assert_eq!(at_owner(&cluster, "r:0").as_deref(), Some("0"));
    assert_eq!(reads.stats().retries.attempts, 1);

    // A shard failed over: reads go on, from its new replica (the old primary).
    drop(read);
    let old = cluster.owner(cluster.slot_of("r:0").unwrap()).unwrap();
    let new = cluster.failover(&old).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut read = reads.get().unwrap();
        let value: Option<usize> = reads.with_retry(|c| c.get("r:0")).unwrap();
        assert_eq!(value, Some(0));
        let _: Option<usize> = read.get("r:0").unwrap();
        if read.nodes() == [old.clone()] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reads never reached {old}: {:?}",
            read.nodes()
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert_ne!(new, old);
}
