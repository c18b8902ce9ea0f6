//! Throwaway certificates for TLS topologies, made in-process (rcgen, ECDSA P-256): a CA, a
//! server certificate it signs for 127.0.0.1 and localhost, and a client certificate it signs.

use std::{fs, path::Path};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use super::{Error, error::io_error};

/// The PEM files a TLS topology's clients need.
#[derive(Debug, Clone)]
pub(super) struct Certs {
    pub(super) ca: Vec<u8>,
    pub(super) client_cert: Vec<u8>,
    pub(super) client_key: Vec<u8>,
}

/// Makes `root/certs/{ca,server,client}.{crt,key}` (the nodes read the CA and the server's)
/// and returns what clients need.
pub(super) fn make(root: &Path) -> Result<Certs, Error> {
    let dir = root.join("certs");
    fs::create_dir_all(&dir).map_err(io_error("create the certificates folder"))?;
    let (ca, ca_key) = authority("r2d2-redis-sentinel test CA")?;
    // The nodes present it as clients too: a replica to its master (`tls-replication`), a
    // sentinel to the nodes it monitors.
    let server = leaf(
        &["127.0.0.1", "localhost"],
        "127.0.0.1",
        &[
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        &ca,
        &ca_key,
    )?;
    let client = leaf(
        &[],
        "r2d2-redis-sentinel test client",
        &[ExtendedKeyUsagePurpose::ClientAuth],
        &ca,
        &ca_key,
    )?;
    let write = |name: &str, pem: &str| {
        fs::write(dir.join(name), pem).map_err(io_error("write a certificate"))
    };
    write("ca.crt", &ca.pem())?;
    write("server.crt", &server.0.pem())?;
    write("server.key", &server.1.serialize_pem())?;
    Ok(Certs {
        ca: ca.pem().into_bytes(),
        client_cert: client.0.pem().into_bytes(),
        client_key: client.1.serialize_pem().into_bytes(),
    })
}

/// A CA no topology uses: a server certificate checked against it must be refused.
///
/// # Errors
///
/// [`Error::Io`] if the certificate cannot be made.
pub fn throwaway_ca_pem() -> Result<Vec<u8>, Error> {
    Ok(authority("another test CA")?.0.pem().into_bytes())
}

/// A self-signed CA certificate and its key.
fn authority(name: &str) -> Result<(Certificate, KeyPair), Error> {
    let key = KeyPair::generate().map_err(failed)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok((params.self_signed(&key).map_err(failed)?, key))
}

/// A certificate for `names` (IP addresses or host names) for `usages`, signed by the CA.
fn leaf(
    names: &[&str],
    common_name: &str,
    usages: &[ExtendedKeyUsagePurpose],
    ca: &Certificate,
    ca_key: &KeyPair,
) -> Result<(Certificate, KeyPair), Error> {
    let key = KeyPair::generate().map_err(failed)?;
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names).map_err(failed)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = usages.to_vec();
    Ok((params.signed_by(&key, ca, ca_key).map_err(failed)?, key))
}

fn failed(err: rcgen::Error) -> Error {
    Error::Io {
        context: "make a test certificate".to_owned(),
        source: std::io::Error::other(err.to_string()),
    }
}
