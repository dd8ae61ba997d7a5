//! The dashboard works: the metrics_server example runs against 5 real
//! redis-server processes, a real `prometheus` scrapes it, and every PromQL
//! expression of `docker/grafana/dashboards/quorate.json` must return data
//! through Prometheus's HTTP API. Needs `prometheus` on PATH (`bash
//! scripts/test.sh` installs Debian's package).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use quorate_testkit::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Kills the child when the test ends, passing or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `GET path` on 127.0.0.1:`port` (HTTP/1.0, loopback only): status and body.
async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

fn url_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned()
}

/// Every `expr` of every panel's targets (with Grafana's variables: `$job`,
/// `$instance`, `$__rate_interval`).
fn dashboard_expressions() -> Vec<(String, String)> {
    let path = workspace().join("docker/grafana/dashboards/quorate.json");
    let text = std::fs::read_to_string(&path).expect("the dashboard");
    let json: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut out = Vec::new();
    for panel in json["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("?").to_owned();
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr").to_owned();
            out.push((title.clone(), expr));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let expressions = dashboard_expressions();
    assert!(expressions.len() >= 15, "{expressions:?}");
    let Some(prometheus) = which("prometheus") else {
        panic!("prometheus is not on PATH: `bash scripts/test.sh` installs it (apt-get install prometheus)");
    };
    let mut cluster = Cluster::start(5).await.expect("cluster");
    // two instances of one job: the exporter's default summaries, and buckets
    let metrics_ports = [free_port(), free_port()];
    let _servers: Vec<Running> = metrics_ports
        .iter()
        .zip([None, Some("--buckets")])
        .map(|(port, buckets)| {
            let listen = format!("127.0.0.1:{port}");
            Running(
                Command::new(env!("CARGO_BIN_EXE_metrics_server"))
                    .args(["--listen", &listen, "--secs", "90"])
                    .args(buckets)
                    .env("QUORATE_NODES", cluster.urls().join(","))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("metrics_server"),
            )
        })
        .collect();
    let metrics_port = metrics_ports[0];
    let dir = std::env::temp_dir().join(format!("quorate-prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: quorate\n    \
             static_configs:\n      - targets: ['127.0.0.1:{}', '127.0.0.1:{}']\n",
            metrics_ports[0], metrics_ports[1]
        ),
    )
    .expect("config");
    let prometheus_port = free_port();
    let _prometheus = Running(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(prometheus_port, "/-/ready").await.map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "prometheus never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // the node error panel needs a node that fails: one of 5 goes down
    // once the workload has run a little (the others keep the quorum)
    let deadline = Instant::now() + Duration::from_secs(30);
    while !get(metrics_port, "/metrics")
        .await
        .is_some_and(|(_, body)| body.contains("quorate_acquire_total"))
    {
        assert!(
            Instant::now() < deadline,
            "metrics_server never served metrics"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.server_mut(4).kill();

    // Grafana's variables as the dashboard would set them, once per instance
    let mut missing: Vec<(String, String)> = metrics_ports
        .iter()
        .flat_map(|port| {
            expressions.iter().map(move |(title, expr)| {
                let expr = expr
                    .replace("$__rate_interval", "5s")
                    .replace("$job", "quorate")
                    .replace("$instance", &format!("127.0.0.1:{port}"));
                (format!("{title} (instance 127.0.0.1:{port})"), expr)
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !missing.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for (title, expr) in missing {
            let path = format!("/api/v1/query?query={}", url_encoded(&expr));
            let has_data = match get(prometheus_port, &path).await {
                Some((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|j| j["data"]["result"].as_array().map(|r| !r.is_empty()))
                    .unwrap_or(false),
                _ => false,
            };
            if !has_data {
                still.push((title, expr));
            }
        }
        missing = still;
        if !missing.is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        missing.is_empty(),
        "panels without data after 60 s: {missing:#?}"
    );
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}
