//! What each error says: short, lowercase, what to fix, each cause once.

use std::fmt;

use super::Error;

/// How much of a string an error message quotes: a 10 KB service name makes an unreadable
/// log line.
const QUOTE_LIMIT: usize = 64;

/// Shows `text` as a quoted string, shortened to [`QUOTE_LIMIT`] characters with its length
/// when it is longer.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(QUOTE_LIMIT) {
            None => write!(f, "{:?}", self.0),
            Some((end, _)) => write!(f, "{:?}... ({} bytes)", &self.0[..end], self.0.len()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoSentinels => f.write_str(
                "no sentinel address given: pass at least one, such as \"redis://127.0.0.1:26379\"",
            ),
            Error::InvalidSentinelAddress { address, reason } => write!(
                f,
                "invalid sentinel address {}: {reason}; \
                 write it as \"redis://host:port\" or \"host:port\"",
                Quoted(address)
            ),
            Error::InvalidConfig { option, reason } => write!(f, "invalid `{option}`: {reason}"),
            Error::SentinelsUnreachable { failures } => {
                f.write_str("no sentinel could be asked (")?;
                for (i, failure) in failures.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{}: {}", failure.address, failure.source)?;
                }
                f.write_str("): check the addresses and that redis-sentinel runs there")
            }
            Error::UnknownService { service, asked } => write!(
                f,
                "no sentinel monitors a master named {} (asked {}): check the name \
                 against `sentinel monitor` in sentinel.conf (from_env names \"mymaster\" \
                 when SERVICE is not set)",
                Quoted(service),
                asked.join(", ")
            ),
            Error::MasterDown { service } => write!(
                f,
                "the sentinels report the master of {} as down; a failover is probably \
                 in progress, try again shortly",
                Quoted(service)
            ),
            Error::NotASentinel { address } => write!(
                f,
                "{address} is not a sentinel (it does not know the SENTINEL command): give the \
                 sentinels' addresses (usually port 26379), not the data nodes'"
            ),
            Error::SentinelAuth { address, source } => write!(
                f,
                "sentinel {address} rejected the sentinel credentials ({source}): set \
                 `sentinel_password` (and `sentinel_username` for an ACL user) to the sentinels' \
                 `requirepass`/ACL, which is separate from the data nodes' password; or, if \
                 {address} is a data node (one with a password answers the same before it is \
                 logged in), give a sentinel's address instead"
            ),
            Error::Auth { address, source } => write!(
                f,
                "redis node {address} rejected the credentials ({source}): set `password` (and \
                 `username` for an ACL user) to the data nodes' `requirepass`/ACL"
            ),
            Error::NoPermission {
                address,
                command,
                source,
            } => write!(
                f,
                "the ACL user on {address} may not run {command} ({source}): grant it with \
                 `ACL SETUSER <user> +{}`",
                command.to_ascii_lowercase()
            ),
            Error::FailoverInProgress {
                service,
                stalled: true,
            } => write!(
                f,
                "a coordinated failover of {} is stalled: the old master holds writes until the \
                 replica it hands over to catches up, which it has not (a full resync, a broken \
                 link); writes wait until it does or Sentinel gives the failover up at its \
                 failover-timeout. Look at that replica; try again later",
                Quoted(service)
            ),
            Error::FailoverInProgress {
                service,
                stalled: false,
            } => write!(
                f,
                "a failover of {} is under way: the old master is fenced off and the promoted \
                 replica did not answer as master before this checkout's checkout_timeout; \
                 try again shortly, or give checkout_timeout more than fence_timeout",
                Quoted(service)
            ),
            Error::NoHealthyReplica { service, tried } => {
                write!(
                    f,
                    "no replica of {} can serve reads (the sentinels list none as healthy",
                    Quoted(service)
                )?;
                if !tried.is_empty() {
                    write!(f, "; tried {}", tried.join("; "))?;
                }
                f.write_str(
                    "): check the replicas, or allow ReplicaOptions::fallback_to_master to read \
                     from the master meanwhile",
                )
            }
            Error::Connect { address, source } => {
                write!(f, "could not connect to redis node {address}: {source}")
            }
            Error::WrongRole {
                address,
                expected,
                actual,
            } => write!(
                f,
                "redis node {address} is a {actual}, not a {expected}: the sentinels' view is \
                 stale, a failover is probably in progress"
            ),
            Error::PoolExhausted { waited, max_size } => write!(
                f,
                "pool exhausted: all {max_size} connections stayed in use for {waited:?}; raise \
                 `max_size` or return connections sooner"
            ),
            Error::ThreadSpawn { name, reason } => write!(
                f,
                "could not start the thread {name}: {reason}; the process is out of threads \
                 or memory (check `ulimit -u` and the container's limits)"
            ),
            Error::CheckoutTimeout { waited, cause } => write!(
                f,
                "no connection could be made within {waited:?}; last failure: {cause}"
            ),
            Error::Redis(source) => write!(f, "redis error: {source}"),
            Error::MaybeApplied { attempts, source } => write!(
                f,
                "the connection failed after the command was sent (attempt {attempts}: {source}); \
                 it may or may not have been applied, so it was not run again. Look at what it \
                 would have changed before you repeat it (a pop or a move may have taken an \
                 element: look in its destination); `with_retry_idempotent` repeats only what \
                 gives the same result run twice (GET, SET of a fixed value, DEL), never a pop, \
                 a move, INCR or a push"
            ),
            Error::NotReplicated { asked, confirmed } => write!(
                f,
                "the master applied the write, but only {confirmed} of the {asked} replicas \
                 asked confirmed it within the durability timeout: it may be lost if the master \
                 fails now. Check the replicas' links and lag, or give the durability a longer \
                 timeout; retry it only if it is safe to repeat"
            ),
            Error::NotPersisted {
                on_master,
                asked,
                confirmed,
            } => write!(
                f,
                "the master applied the write, but within the durability timeout WAITAOF found \
                 it on disk {} and on {confirmed} of the {asked} replicas asked: it may be lost \
                 if the master fails now. Check appendonly and the disks of the master and \
                 replicas, or give the durability a longer timeout; retry it only if it is safe \
                 to repeat",
                if *on_master {
                    "on the master"
                } else {
                    "not on the master"
                }
            ),
            Error::RetriesExhausted {
                attempts,
                elapsed,
                last,
            } => write!(
                f,
                "gave up after {attempts} attempts in {elapsed:?}; last failure: {last}{}",
                if matches!(&**last, Error::Redis(e) if e.code() == Some("NOREPLICAS")) {
                    ". The master had too few replicas to take the write (its \
                     min-replicas-to-write, or durable mode waiting for a replica that may be \
                     promoted): check the replicas' links and lag (INFO replication on the \
                     master), or give the retry policy a longer deadline"
                } else {
                    ""
                }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_quotes_are_shortened_on_a_character_boundary() {
        assert_eq!(Quoted("mymaster").to_string(), "\"mymaster\"");
        let long = "é".repeat(100);
        let shown = Quoted(&long).to_string();
        assert!(shown.ends_with("... (200 bytes)"), "{shown}");
        assert_eq!(shown.matches('é').count(), QUOTE_LIMIT);
    }
}
