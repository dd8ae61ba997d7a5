//! Shared setup of the example programs: where the nodes come from.

// The repository README's Rust examples, compiled (and those without a server
// run) as doc tests of this crate, so that they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

use std::error::Error;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::storage::Summary;
use std::sync::Arc;

use quorate_redlock::{LockOptions, MemoryNode, Node, Redlock, RedlockConfig};
use quorate_testkit::{redis_server_available, Cluster};

/// The nodes of an example, in order of preference:
/// 1. `QUORATE_NODES=redis://h1:p1,redis://h2:p2,...` (e.g. the docker/ compose file);
/// 2. 5 local `redis-server` processes started through the test kit (returned, so that they
///    live until the caller drops them);
/// 3. 5 in-memory nodes, when redis-server is not installed (said so on screen).
pub async fn example_nodes() -> Result<(Redlock, Option<Cluster>), Box<dyn Error>> {
    // QUORATE_NODES and the other QUORATE_* settings, as a service would read them
    let config = RedlockConfig::from_env()?;
    if !config.nodes.is_empty() {
        println!("using the {} nodes in QUORATE_NODES", config.nodes.len());
        return Ok((Redlock::from_config(&config).await?, None));
    }
    if !redis_server_available() {
        println!(
            "redis-server not found: running on 5 IN-MEMORY nodes instead \
             (install redis-server, or set QUORATE_NODES, for real servers)"
        );
        let nodes = MemoryNode::cluster(5)
            .into_iter()
            .map(|m| Arc::new(m) as Arc<dyn Node>)
            .collect();
        return Ok((Redlock::from_nodes(nodes, LockOptions::new())?, None));
    }
    let cluster = Cluster::start(5).await?;
    println!(
        "started 5 local redis-server nodes: {}",
        cluster.urls().join(" ")
    );
    let redlock = Redlock::connect(cluster.urls()).await?;
    Ok((redlock, Some(cluster)))
}

/// Prints every `quorate_*` metric recorded so far (counters, gauges, histogram p50/p99).
pub fn print_metrics(snapshotter: &Snapshotter) {
    println!("\nmetrics (quorate_*):");
    let mut rows: Vec<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name().starts_with("quorate_"))
        .map(|(key, _, _, value)| {
            let labels: Vec<String> = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = format!("{}{{{}}}", key.key().name(), labels.join(","));
            match value {
                DebugValue::Counter(n) => format!("  {name} = {n}"),
                DebugValue::Gauge(g) => format!("  {name} = {}", g.0),
                DebugValue::Histogram(values) => {
                    // metrics-util's DDSketch summary (about 1% relative error)
                    let mut summary = Summary::with_defaults();
                    values.iter().for_each(|v| summary.add(v.0));
                    let ms = |q: f64| summary.quantile(q).unwrap_or(0.0) * 1000.0;
                    format!(
                        "  {name}: n={} p50={:.2} ms p99={:.2} ms",
                        summary.count(),
                        ms(0.5),
                        ms(0.99)
                    )
                }
            }
        })
        .collect();
    rows.sort();
    for row in rows {
        println!("{row}");
    }
}

/// Installs an in-process metrics recorder, so that the example can print what the
/// library reported ([`print_metrics`]).
pub fn install_recorder() -> Result<Snapshotter, Box<dyn Error>> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install()?;
    Ok(snapshotter)
}
