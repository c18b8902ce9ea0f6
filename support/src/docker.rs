//! The `docker/` deployment from the host's side, for tests/docker.rs and the network bench:
//! its addresses, the compose project (brought down on drop), the sentinels' agreement, and a
//! pool that reaches everything on the `client` network.

use std::{
    collections::HashMap,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use r2d2_redis_sentinel::{NodeAddr, RetryPolicy, SentinelPool, redis};

/// The image `docker/build-image.sh` builds.
const LOCAL_IMAGE: &str = "r2d2-redis-sentinel/redis:bookworm";
/// The compose file's data nodes: service, address on the `redis` network (announced), address
/// on the `client` network (reached).
pub const DATA: [(&str, &str, &str); 3] = [
    ("master", "172.30.0.10", "172.31.0.10"),
    ("replica1", "172.30.0.11", "172.31.0.11"),
    ("replica2", "172.30.0.12", "172.31.0.12"),
];
/// The sentinels on the `redis` network (where they announce one another).
pub const SENTINELS: [&str; 3] = ["172.30.0.21", "172.30.0.22", "172.30.0.23"];
/// The same sentinels on the `client` network, which the pool uses: a sentinel cut off the
/// `redis` network stays in its reach.
pub const CLIENT_SENTINELS: [&str; 3] = ["172.31.0.21", "172.31.0.22", "172.31.0.23"];

pub fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The compose project; brought down (containers, networks) when dropped, even on panic.
pub struct Compose {
    /// Letters and digits only: every Compose version keeps such a name as it is.
    project: &'static str,
    image: String,
    down_after: Duration,
}

impl Compose {
    /// The project `project` of `docker/docker-compose.yml` on `image`, its sentinels at
    /// `down_after`; started with `up`.
    pub fn new(project: &'static str, image: String, down_after: Duration) -> Compose {
        let compose = Compose {
            project,
            image,
            down_after,
        };
        compose.run(&["up", "-d"]);
        compose
    }

    pub fn run(&self, args: &[&str]) -> String {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/docker-compose.yml");
        let output = Command::new("docker-compose")
            .args(["-p", self.project, "-f"])
            .arg(&file)
            .args(args)
            .env("REDIS_IMAGE", &self.image)
            .env("DOWN_AFTER_MS", self.down_after.as_millis().to_string())
            .output()
            .expect("docker-compose runs");
        assert!(
            output.status.success(),
            "docker-compose {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// The id of the container running `service`.
    pub fn container(&self, service: &str) -> String {
        self.run(&["ps", "-q", service])
    }

    /// The Docker name of the compose file's network `name`.
    pub fn network(&self, name: &str) -> String {
        format!("{}_{name}", self.project)
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        self.run(&["down", "-v", "--timeout", "1"]);
    }
}

pub fn query<T: redis::FromRedisValue>(host: &str, port: u16, cmd: &redis::Cmd) -> Option<T> {
    let client = redis::Client::open(format!("redis://{host}:{port}")).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    conn.set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    cmd.query(&mut conn).ok()
}

/// Every sentinel names the same master, sees two replicas linked to it and the two other
/// sentinels; returns the master's announced address.
pub fn settled() -> Option<String> {
    settled_among(&SENTINELS)
}

/// [`settled`], as `sentinels` see it (the others may be cut off).
pub fn settled_among(sentinels: &[&str]) -> Option<String> {
    let mut masters = Vec::new();
    for &sentinel in sentinels {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("MASTER").arg("mymaster");
        let master: HashMap<String, String> = query(sentinel, 26379, &cmd)?;
        let field = |k: &str| master.get(k).map(String::as_str);
        if field("flags") != Some("master")
            || field("num-slaves") != Some("2")
            || field("num-other-sentinels") != Some("2")
        {
            return None;
        }
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("REPLICAS").arg("mymaster");
        let replicas: Vec<HashMap<String, String>> = query(sentinel, 26379, &cmd)?;
        if !replicas.iter().all(|r| {
            r.get("flags").map(String::as_str) == Some("slave")
                && r.get("master-link-status").map(String::as_str) == Some("ok")
        }) {
            return None;
        }
        masters.push(field("ip")?.to_owned());
    }
    masters.dedup();
    (masters.len() == 1).then(|| masters.remove(0))
}

/// Waits up to `timeout` for [`settled_among`] `sentinels`; on timeout, panics with what each
/// of them says of the master and its replicas.
pub fn settle(what: &str, timeout: Duration, sentinels: &[&str]) -> String {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(master) = settled_among(sentinels) {
            return master;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let views: Vec<String> = sentinels
        .iter()
        .map(|&s| {
            let mut master = redis::cmd("SENTINEL");
            master.arg("MASTER").arg("mymaster");
            let mut replicas = redis::cmd("SENTINEL");
            replicas.arg("REPLICAS").arg("mymaster");
            let master: Option<HashMap<String, String>> = query(s, 26379, &master);
            let replicas: Option<Vec<HashMap<String, String>>> = query(s, 26379, &replicas);
            let pick = |m: &HashMap<String, String>, keys: &[&str]| {
                keys.iter()
                    .map(|k| format!("{k}={}", m.get(*k).map_or("?", String::as_str)))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            format!(
                "{s}: master {}; replicas {}",
                master.map_or("no answer".into(), |m| pick(
                    &m,
                    &["ip", "flags", "num-slaves", "num-other-sentinels"]
                )),
                replicas.map_or("no answer".into(), |list| list
                    .iter()
                    .map(|r| pick(r, &["ip", "flags", "master-link-status"]))
                    .collect::<Vec<_>>()
                    .join(", "))
            )
        })
        .collect();
    panic!(
        "timed out after {timeout:?} waiting for {what}:\n{}",
        views.join("\n")
    );
}

/// The pool on the `client` network: sentinels and data nodes mapped there.
pub fn pool_builder() -> r2d2_redis_sentinel::Builder {
    let mut map: Vec<(String, String)> = DATA
        .iter()
        .map(|(_, redis, client)| (format!("{redis}:6379"), format!("{client}:6379")))
        .collect();
    map.extend(
        SENTINELS
            .iter()
            .zip(CLIENT_SENTINELS)
            .map(|(redis, client)| (format!("{redis}:26379"), format!("{client}:26379"))),
    );
    SentinelPool::builder(
        CLIENT_SENTINELS.map(|s| format!("redis://{s}:26379")),
        "mymaster",
    )
    .address_map(map)
    .max_size(4)
    .retry_policy(RetryPolicy::default().deadline(Duration::from_secs(60)))
}

/// The compose service of the data node announced at `announced`.
pub fn service_of(announced: &str) -> &'static str {
    DATA.iter()
        .find(|(_, redis, _)| *redis == announced)
        .map(|(service, _, _)| *service)
        .expect("a data node")
}

/// Waits up to `timeout` until every pool of `pools` writes to `node`.
pub fn until_pools_write_to(
    what: &str,
    pools: &[&SentinelPool],
    node: &NodeAddr,
    timeout: Duration,
) {
    crate::eventually(what, timeout, || {
        pools
            .iter()
            .all(|p| p.with_retry(|c| Ok(c.addr().clone())).ok().as_ref() == Some(node))
            .then_some(())
    });
}

/// The `client` network address of a data node announced at `announced`.
pub fn to_client_addr(announced: &str) -> &'static str {
    DATA.iter()
        .find(|(_, redis, _)| *redis == announced)
        .map(|(_, _, client)| *client)
        .expect("a data node")
}

/// The image to run, or `None` (said on standard error) where no Docker engine with
/// docker-compose answers, or where `REDIS_IMAGE` is unset and the local image was never built.
/// An image named by `REDIS_IMAGE` must exist: CI sets it, and a skip there would hide a broken
/// setup.
pub fn image() -> Option<String> {
    if !succeeds("docker", &["info"]) || !succeeds("docker-compose", &["version"]) {
        eprintln!("skipped: no Docker engine with docker-compose answers here");
        return None;
    }
    match std::env::var("REDIS_IMAGE") {
        Ok(image) => {
            assert!(
                succeeds("docker", &["image", "inspect", &image]),
                "REDIS_IMAGE names {image:?}, which the Docker engine does not have: \
                 build it with docker/build-image.sh, or unset REDIS_IMAGE to skip"
            );
            Some(image)
        }
        Err(_) if succeeds("docker", &["image", "inspect", LOCAL_IMAGE]) => {
            Some(LOCAL_IMAGE.to_owned())
        }
        Err(_) => {
            eprintln!(
                "skipped: no image {LOCAL_IMAGE}: run docker/build-image.sh, or set REDIS_IMAGE"
            );
            None
        }
    }
}
