//! A pool's configuration from the environment, in the convention the examples and
//! `docker/README.md` use: `REDIS_SENTINEL_URL`, or `SENTINELS` and `SERVICE`, and
//! `ADDRESS_MAP`; for a cluster, `REDIS_CLUSTER_URL` or `CLUSTER_NODES`, and `ADDRESS_MAP`.

use super::{Cluster, invalid, url::address_pairs};
use crate::{Builder, Error};

/// The builder the variables `lookup` finds describe, or `None` when neither
/// `REDIS_SENTINEL_URL` nor `SENTINELS` is set.
pub(crate) fn builder(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Builder>, Error> {
    let builder = if let Some(url) = lookup("REDIS_SENTINEL_URL") {
        super::url::parse(&url)?
    } else if let Some(list) = lookup("SENTINELS") {
        let service = lookup("SERVICE").unwrap_or_else(|| {
            log::info!("SENTINELS is set and SERVICE is not: serving \"mymaster\"");
            "mymaster".to_owned()
        });
        if service.trim().is_empty() {
            return Err(invalid(
                "SERVICE",
                "is empty: name the service the sentinels monitor",
            ));
        }
        Builder::of(
            list.split(',').map(str::trim).filter(|s| !s.is_empty()),
            service,
        )
    } else {
        return Ok(None);
    };
    Ok(Some(match lookup("ADDRESS_MAP") {
        Some(map) => builder.address_map(address_pairs("ADDRESS_MAP", &map)?),
        None => builder,
    }))
}

/// The cluster builder the variables `lookup` finds describe, or `None` when neither
/// `REDIS_CLUSTER_URL` nor `CLUSTER_NODES` is set.
pub(crate) fn cluster_builder(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<Builder<Cluster>>, Error> {
    let builder = if let Some(url) = lookup("REDIS_CLUSTER_URL") {
        super::url::parse_cluster(&url)?
    } else if let Some(list) = lookup("CLUSTER_NODES") {
        crate::ClusterPool::builder(list.split(',').map(str::trim).filter(|s| !s.is_empty()))
    } else {
        return Ok(None);
    };
    Ok(Some(match lookup("ADDRESS_MAP") {
        Some(map) => builder.address_map(address_pairs("ADDRESS_MAP", &map)?),
        None => builder,
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Option<Builder>, Error> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        builder(|name| vars.get(name).cloned())
    }

    #[test]
    fn a_cluster_is_read_from_its_url_or_its_nodes() {
        let vars = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let by_url = vars(&[(
            "REDIS_CLUSTER_URL",
            "redis+cluster://n1:7000,n2:7001?max_size=3",
        )]);
        let builder = cluster_builder(|n| by_url.get(n).cloned())
            .unwrap()
            .unwrap();
        assert_eq!((builder.sentinels.len(), builder.max_size), (2, 3));
        let by_list = vars(&[
            ("CLUSTER_NODES", "n1:7000, n2:7001,"),
            ("ADDRESS_MAP", "10.0.0.1:7000=127.0.0.1:7000"),
        ]);
        let builder = cluster_builder(|n| by_list.get(n).cloned())
            .unwrap()
            .unwrap();
        assert_eq!(builder.sentinels.len(), 2);
        assert_eq!(builder.address_pairs.len(), 1);
        let none = vars(&[("SENTINELS", "s:26379")]);
        assert!(cluster_builder(|n| none.get(n).cloned()).unwrap().is_none());
    }

    #[test]
    fn nothing_set_is_no_configuration() {
        assert!(from(&[("SERVICE", "cache")]).unwrap().is_none());
    }

    #[test]
    fn sentinels_and_service_and_the_address_map_are_read() {
        let builder = from(&[
            ("SENTINELS", "redis://10.0.0.1:26379, 10.0.0.2:26379,"),
            ("SERVICE", "cache"),
            (
                "ADDRESS_MAP",
                "172.30.0.10:6379=127.0.0.1:7000 , 172.30.0.11:6379=127.0.0.1:7001",
            ),
        ])
        .unwrap()
        .unwrap();
        let debug = format!("{builder:?}");
        assert!(
            debug.contains("10.0.0.2:26379") && debug.contains("\"cache\""),
            "{debug}"
        );
        assert!(debug.contains("127.0.0.1:7001"), "{debug}");
        let default = from(&[("SENTINELS", "10.0.0.1:26379")]).unwrap().unwrap();
        assert!(format!("{default:?}").contains("\"mymaster\""));
    }

    #[test]
    fn the_connection_string_comes_first() {
        let builder = from(&[
            (
                "REDIS_SENTINEL_URL",
                "redis+sentinel://10.0.0.9:26379/orders",
            ),
            ("SENTINELS", "10.0.0.1:26379"),
        ])
        .unwrap()
        .unwrap();
        let debug = format!("{builder:?}");
        assert!(
            debug.contains("\"orders\"") && !debug.contains("10.0.0.1"),
            "{debug}"
        );
    }

    /// The option an `InvalidConfig` from `vars` names.
    fn rejected(vars: &[(&str, &str)]) -> &'static str {
        match from(vars) {
            Err(Error::InvalidConfig { option, .. }) => option,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_values_are_typed_errors_that_name_the_variable() {
        let sentinels = ("SENTINELS", "10.0.0.1:26379");
        assert_eq!(
            rejected(&[sentinels, ("ADDRESS_MAP", "a:1-b:2")]),
            "ADDRESS_MAP"
        );
        assert_eq!(rejected(&[sentinels, ("SERVICE", " ")]), "SERVICE");
        rejected(&[("REDIS_SENTINEL_URL", "redis://nope")]);
    }
}
