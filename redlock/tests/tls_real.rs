//! TLS against real redis-server processes listening with TLS (certificates
//! made for the test by `openssl`), with and without client certificates.
//! Runs with the `tls` feature: `cargo test -p quorate-redlock --features tls --test tls_real`.
#![cfg(feature = "tls")]

use std::time::Duration;

use quorate_redlock::fred::rustls::pki_types::pem::PemObject;
use quorate_redlock::fred::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use quorate_redlock::fred::rustls::{ClientConfig, RootCertStore};
use quorate_redlock::fred::types::config::TlsConfig;
use quorate_redlock::{ConnectError, FredSettings, Redlock, ReleaseOutcome};
use quorate_testkit::{Cluster, ServerOptions, TestCertificates};

async fn tls_cluster(
    certificates: &TestCertificates,
    client_certs: bool,
) -> (Cluster, Vec<String>) {
    let options = ServerOptions {
        tls: Some(certificates.server_files(client_certs)),
        ..ServerOptions::default()
    };
    let cluster = Cluster::start_with(3, options).await.expect("TLS cluster");
    let urls = cluster
        .servers()
        .iter()
        .map(|s| s.tls_url().expect("TLS port"))
        .collect();
    (cluster, urls)
}

/// rustls trusting the test CA, with the test client certificate or not.
fn client_tls(certificates: &TestCertificates, client_cert: bool) -> TlsConfig {
    let mut roots = RootCertStore::empty();
    let ca = CertificateDer::from_pem_file(certificates.path("ca.crt")).expect("CA");
    roots.add(ca).expect("add CA");
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let config = if client_cert {
        let cert = CertificateDer::from_pem_file(certificates.path("client.crt")).expect("cert");
        let key = PrivateKeyDer::from_pem_file(certificates.path("client.key")).expect("key");
        builder
            .with_client_auth_cert(vec![cert], key)
            .expect("client cert")
    } else {
        builder.with_no_client_auth()
    };
    TlsConfig::from(config)
}

async fn connect(urls: &[String], tls: Option<TlsConfig>) -> Result<Redlock, ConnectError> {
    let settings = FredSettings::default().tls(tls);
    Redlock::builder()
        .urls(urls)
        .fred_settings(settings)
        .build()
        .await
}

async fn lock_and_release(redlock: &Redlock) {
    let guard = redlock
        .lock("over-tls", Duration::from_secs(5))
        .await
        .expect("lock over TLS");
    let released = guard.release().await.expect("release");
    assert_eq!(released, ReleaseOutcome::Released);
}

#[tokio::test]
async fn locks_over_tls_trusting_the_servers_ca_and_refuses_an_unknown_ca() {
    let certificates = TestCertificates::generate().expect("certificates");
    let (_cluster, urls) = tls_cluster(&certificates, false).await;
    let redlock = connect(&urls, Some(client_tls(&certificates, false)))
        .await
        .expect("connect over TLS");
    lock_and_release(&redlock).await;
    // the system's roots do not know the test CA: no connection, named
    let err = connect(&urls, None).await.expect_err("untrusted CA");
    assert!(
        matches!(err, ConnectError::Unreachable { reachable: 0, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert_eq!(
        text.matches("certificate was rejected (UnknownIssuer)")
            .count(),
        3,
        "{text}"
    );
}

#[tokio::test]
async fn a_server_that_requires_client_certificates_takes_only_clients_with_one() {
    let certificates = TestCertificates::generate().expect("certificates");
    let (_cluster, urls) = tls_cluster(&certificates, true).await;
    let err = connect(&urls, Some(client_tls(&certificates, false))).await;
    let err = err.expect_err("no client certificate");
    assert!(
        matches!(err, ConnectError::Unreachable { reachable: 0, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert_eq!(
        text.matches("requires a client certificate").count(),
        3,
        "{text}"
    );
    let redlock = connect(&urls, Some(client_tls(&certificates, true)))
        .await
        .expect("connect with a client certificate");
    lock_and_release(&redlock).await;
}
