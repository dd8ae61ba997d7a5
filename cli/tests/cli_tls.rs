//! The `quorate` binary over TLS (`rediss://`), built with its `tls`
//! feature, against real redis-servers listening with TLS (certificates
//! made for the test by `openssl`), with and without client certificates.
//! Runs with `cargo test -p quorate-cli --features tls --test cli_tls`.
#![cfg(feature = "tls")]

use std::process::{Command, Output};

use quorate_testkit::{Cluster, ServerOptions, TestCertificates};

const BIN: &str = env!("CARGO_BIN_EXE_quorate");

async fn tls_nodes(certificates: &TestCertificates, client_certs: bool) -> (Cluster, String) {
    let options = ServerOptions {
        tls: Some(certificates.server_files(client_certs)),
        ..ServerOptions::default()
    };
    let cluster = Cluster::start_with(3, options).await.expect("TLS cluster");
    let urls: Vec<String> = cluster
        .servers()
        .iter()
        .map(|s| s.tls_url().expect("TLS port"))
        .collect();
    (cluster, urls.join(","))
}

fn quorate(nodes: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--nodes")
        .arg(nodes)
        .args(args)
        .output()
        .expect("run quorate")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn rediss_nodes_with_the_ca_given_and_a_client_certificate() {
    let certificates = TestCertificates::generate().expect("openssl");
    let ca = certificates.path("ca.crt");
    let ca = ca.to_str().expect("path");
    let (_cluster, nodes) = tls_nodes(&certificates, false).await;
    // the system's roots do not trust the test CA: refused, and said so
    let untrusted = quorate(&nodes, &["status", "job"]);
    assert_ne!(untrusted.status.code(), Some(0));
    assert!(
        text(&untrusted.stderr).contains("TLS"),
        "{}",
        text(&untrusted.stderr)
    );
    let trusted = quorate(&nodes, &["--tls-ca", ca, "run", "job", "--", "true"]);
    assert_eq!(trusted.status.code(), Some(0), "{}", text(&trusted.stderr));
    let checked = quorate(&nodes, &["--tls-ca", ca, "nodes"]);
    let said = text(&checked.stdout);
    assert_eq!(said.matches(": up, ").count(), 3, "{said}");

    // servers that require a client certificate
    let (_strict, nodes) = tls_nodes(&certificates, true).await;
    let without = quorate(&nodes, &["--tls-ca", ca, "status", "job"]);
    assert_ne!(without.status.code(), Some(0));
    assert!(
        text(&without.stderr).contains("client certificate"),
        "{}",
        text(&without.stderr)
    );
    let cert = certificates.path("client.crt");
    let key = certificates.path("client.key");
    let args = [
        "--tls-ca",
        ca,
        "--tls-cert",
        cert.to_str().expect("path"),
        "--tls-key",
        key.to_str().expect("path"),
        "run",
        "job",
        "--",
        "true",
    ];
    let with = quorate(&nodes, &args);
    assert_eq!(with.status.code(), Some(0), "{}", text(&with.stderr));
    // a file that is not PEM is a usage error naming it
    let bad = quorate(
        &nodes,
        &[
            "--tls-ca",
            "/dev/null",
            "--tls-cert",
            "/dev/null",
            "--tls-key",
            "/dev/null",
            "nodes",
        ],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(
        text(&bad.stderr).contains("/dev/null"),
        "{}",
        text(&bad.stderr)
    );
}
