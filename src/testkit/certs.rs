//! Throwaway certificates for TLS topologies, made with the `openssl` command: a CA, a server
//! certificate it signs for 127.0.0.1 and localhost, and a client certificate it signs.

use std::{fs, path::Path, process::Command};

use super::{Error, error::io_error};

/// The PEM files a TLS topology's clients need.
#[derive(Debug, Clone)]
pub(super) struct Certs {
    pub(super) ca: Vec<u8>,
    pub(super) client_cert: Vec<u8>,
    pub(super) client_key: Vec<u8>,
}

/// Makes `root/certs/{ca,server,client}.{crt,key}` and returns what clients need.
pub(super) fn make(root: &Path) -> Result<Certs, Error> {
    let dir = root.join("certs");
    fs::create_dir_all(&dir).map_err(io_error("create the certificates folder"))?;
    let ca = self_signed_ca(&dir, "ca")?;
    signed_by_ca(
        &dir,
        "server",
        "/CN=127.0.0.1",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )?;
    // An extension makes a version 3 certificate: rustls refuses version 1.
    signed_by_ca(
        &dir,
        "client",
        "/CN=r2d2-redis-sentinel test client",
        "extendedKeyUsage=clientAuth\n",
    )?;
    let read = |name: &str| fs::read(dir.join(name)).map_err(io_error("read a certificate"));
    Ok(Certs {
        ca,
        client_cert: read("client.crt")?,
        client_key: read("client.key")?,
    })
}

/// A CA no topology uses: a server certificate checked against it must be refused.
///
/// # Errors
///
/// [`Error::MissingBinary`] without `openssl`; [`Error::Io`] when it fails.
pub fn throwaway_ca_pem() -> Result<Vec<u8>, Error> {
    let dir = super::process::unique_dir()?;
    let ca = self_signed_ca(&dir, "other-ca");
    let _ = fs::remove_dir_all(&dir);
    ca
}

/// Makes `{name}.key` and `{name}.crt` in `dir`: a key, and a certificate for `subject` with
/// `extensions` (an `openssl x509 -extfile`), signed by `ca.crt`.
fn signed_by_ca(dir: &Path, name: &str, subject: &str, extensions: &str) -> Result<(), Error> {
    let (key, csr, ext, cert) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
        format!("{name}.crt"),
    );
    openssl(
        dir,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject,
        ],
    )?;
    fs::write(dir.join(&ext), extensions).map_err(io_error("write the certificate extensions"))?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    )
}

fn self_signed_ca(dir: &Path, name: &str) -> Result<Vec<u8>, Error> {
    let (key, cert) = (format!("{name}.key"), format!("{name}.crt"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "2",
            "-subj",
            "/CN=r2d2-redis-sentinel test CA",
        ],
    )?;
    fs::read(dir.join(&cert)).map_err(io_error("read the CA certificate"))
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), Error> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|_| Error::MissingBinary { name: "openssl" })?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Io {
        context: format!("openssl {}", args.join(" ")),
        source: std::io::Error::other(String::from_utf8_lossy(&output.stderr).into_owned()),
    })
}
