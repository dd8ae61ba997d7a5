//! Serves quorate's metrics to Prometheus while a small workload of every
//! primitive runs: contended mutex locks (released and dropped, some
//! auto-extended, some refused), a pool, a semaphore, a rate limit, tree
//! locks with conflicts, spinlock single-flight, and a forced unlock.
//!
//! ```sh
//! cargo run -p quorate-examples --features prometheus --bin metrics_server -- --listen 127.0.0.1:9898 --secs 600
//! curl -s 127.0.0.1:9898/metrics | grep quorate_
//! ```
//!
//! Nodes: `QUORATE_NODES`, else 5 local redis-server processes (the test
//! kit), else in-memory nodes. Bounded: it stops after `--secs` (default 600).
//! `--buckets` exports histograms with buckets instead of the exporter's
//! default summaries (the dashboard's percentile panels read either).

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use quorate_pool::{Pool, RateLimit, Requirement, Semaphore};
use quorate_redlock::{LockOptions, Redlock};
use quorate_rwlock::RwLock;
use quorate_spinlock::{SpinOptions, Spinlock};
use quorate_tree::TreeLock;
use tokio::time::Instant;

fn argument(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let listen: SocketAddr = argument("--listen")
        .unwrap_or_else(|| "127.0.0.1:9898".to_owned())
        .parse()?;
    let secs: u64 = argument("--secs").map_or(Ok(600), |s| s.parse())?;
    let mut exporter = PrometheusBuilder::new().with_http_listener(listen);
    if std::env::args().any(|a| a == "--buckets") {
        exporter = exporter.set_buckets(&[
            0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
        ])?;
    }
    exporter.install()?;
    let (redlock, _servers) = quorate_examples::example_nodes().await?;
    println!("serving metrics on http://{listen}/metrics for {secs} s");
    let stop = Instant::now() + Duration::from_secs(secs);
    let mut round = 0u64;
    while Instant::now() < stop {
        round += 1;
        if let Err(e) = workload(&redlock, round).await {
            eprintln!("round {round}: {e}");
        }
    }
    Ok(())
}

/// One round of every primitive; each call bounded by its own timeout.
async fn workload(redlock: &Redlock, round: u64) -> Result<(), Box<dyn Error>> {
    let ttl = Duration::from_secs(5);
    // mutex: contended by 4 tasks, released, dropped, auto-extended
    let mut tasks = Vec::new();
    for task in 0..4u64 {
        let redlock = redlock.clone();
        tasks.push(tokio::spawn(async move {
            let options = LockOptions::new()
                .ttl(ttl)
                .auto_extend(task == 0)
                .acquire_timeout(Some(Duration::from_secs(2)));
            if let Ok(guard) = redlock.lock_with(["metrics:mutex"], &options).await {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if task % 2 == 0 {
                    let _ = guard.release().await;
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    // a crashed holder (a client of its own, as another process would be:
    // no release, no drop), a refused try_lock, then a forced unlock
    let crashed = redlock.with_metric_label("mutex");
    let held = crashed.lock("metrics:stuck", ttl).await?;
    let _ = redlock.try_lock("metrics:stuck", ttl).await;
    std::mem::forget(held);
    redlock.force_unlock("metrics:stuck").await?;
    // every 10th round, an auto-extended lock forced away: its watchdog finds it lost
    if round % 10 == 1 {
        let options = LockOptions::new()
            .ttl(Duration::from_secs(3))
            .auto_extend(true);
        let guard = redlock.lock_with(["metrics:lost"], &options).await?;
        redlock.force_unlock("metrics:lost").await?;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), guard.lost()).await;
        });
    }
    // pool, semaphore, rate limit
    let pool = Pool::new(redlock, "metrics-devices")?;
    let devices: Vec<String> = (0..4).map(|d| format!("dev-{d}")).collect();
    let grant = pool
        .acquire(vec![Requirement::need(2, devices, Clone::clone)], ttl)
        .await?;
    grant.release().await?;
    let semaphore = Semaphore::new(redlock, "metrics-encoders", 2)?;
    let permit = semaphore.acquire(1, ttl).await?;
    permit.release().await?;
    let limit = RateLimit::new(redlock, "metrics-api", 20, Duration::from_secs(1))?;
    let _ = limit.try_acquire().await;
    // tree: a node, and its refused ancestor
    let tree = TreeLock::new(redlock, "metrics-tree")?;
    let node = tree.lock(["dc1", "rack4"], ttl).await?;
    let _ = tree.try_lock(["dc1"], ttl).await;
    node.release().await?;
    // read-write lock: two readers, a refused writer, then the writer
    let table = RwLock::new(redlock, "metrics-table")?;
    let (a, b) = (table.read(ttl).await?, table.read(ttl).await?);
    let _ = table.try_write(ttl).await;
    a.release().await?;
    b.release().await?;
    table.write(ttl).await?.release().await?;
    // spinlock single-flight: computed every 20th round, stored in between
    let spin = Spinlock::new(redlock, SpinOptions::new())?;
    let key = format!("metrics-report-{}", round / 20);
    spin.compute_once(key.as_str(), || async {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok::<_, std::io::Error>(b"report".to_vec())
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}
