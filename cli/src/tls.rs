//! `--tls-ca`, `--tls-cert`, `--tls-key`: rustls settings for `rediss://` nodes.

use std::path::Path;

use quorate_redlock::fred::rustls::pki_types::pem::PemObject;
use quorate_redlock::fred::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use quorate_redlock::fred::rustls::{ClientConfig, RootCertStore};
use quorate_redlock::fred::types::config::TlsConfig;

use crate::Failure;

/// The TLS config for the files given; `None` (fred's default: the
/// system's roots, no client certificate) when none is.
pub(crate) fn config(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<TlsConfig>, Failure> {
    if ca.is_none() && cert.is_none() {
        return Ok(None);
    }
    let bad = |path: &Path, what: &str, e: &dyn std::fmt::Display| Failure {
        message: format!("{}: not a PEM {what}: {e}", path.display()),
        code: 2,
    };
    let Some(ca) = ca else {
        return Err(Failure {
            message: "--tls-cert needs --tls-ca: the CA bundle that signed the servers' \
                      certificates"
                .to_owned(),
            code: 2,
        });
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(ca, "CA bundle", &e))? {
        let cert = cert.map_err(|e| bad(ca, "CA bundle", &e))?;
        roots.add(cert).map_err(|e| bad(ca, "CA certificate", &e))?;
    }
    if roots.is_empty() {
        return Err(bad(ca, "CA bundle", &"no certificate in it"));
    }
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let config = match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| bad(cert, "certificate chain", &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(cert, "certificate chain", &e))?;
            let key_der =
                PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, "private key", &e))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| bad(cert, "certificate for that key", &e))?
        }
        // clap requires both or neither
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(TlsConfig::from(config)))
}
