//! TLS to sentinels and data nodes (the `tls` feature): [`TlsOptions`] for
//! [`Builder::tls`](crate::Builder::tls).

use crate::Secret;

/// How the pool speaks TLS, to the sentinels and the data nodes alike (Redis's `tls-port`,
/// with `tls-replication yes` on the nodes and sentinels). Certificates are checked against
/// the given root certificates, or the platform's when none is given, and must name the
/// address the pool connects to (after the [address map](crate::Builder::address_map)).
///
/// ```no_run
/// # use r2d2_redis_sentinel::{SentinelPool, TlsOptions};
/// let ca = std::fs::read("/etc/redis/tls/ca.crt")?;
/// let pool = SentinelPool::builder(["10.0.0.1:26379"], "mymaster")
///     .tls(TlsOptions::default().root_certificates_pem(ca))
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct TlsOptions {
    pub(crate) root_certificates: Option<Vec<u8>>,
    /// A certificate chain and its private key.
    pub(crate) client: Option<(Vec<u8>, Secret<Vec<u8>>)>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field(
                "root_certificates",
                &self.root_certificates.as_ref().map(|_| "<PEM>"),
            )
            .field("client", &self.client.as_ref().map(|(_, key)| key))
            .finish()
    }
}

impl TlsOptions {
    /// The certificates (PEM, one or more) that server certificates must chain to, instead of
    /// the platform's.
    pub fn root_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates = Some(pem.into());
        self
    }

    /// A client certificate chain and its private key (PEM), for servers that check clients
    /// (`tls-auth-clients yes`).
    pub fn client_certificate_pem(
        mut self,
        certificate: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        self.client = Some((certificate.into(), Secret::new(key.into())));
        self
    }

    /// The certificates as redis-rs takes them.
    pub(crate) fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self
                .client
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.expose().clone(),
                }),
            root_cert: self.root_certificates.clone(),
        }
    }

    /// Installs the ring crypto provider for the process, unless one is installed already:
    /// rustls needs one, and redis-rs enables none.
    pub(crate) fn install_crypto_provider() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
