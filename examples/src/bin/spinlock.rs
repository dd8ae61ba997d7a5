//! The spinlock and the distributed single-flight on 5 nodes:
//! 8 callers ask for the same expensive report at once, one computes it,
//! the others get the stored result; then a bounded spin on a held key,
//! fail-if-held, and a sherlock-style lock handle.
//!
//! Nodes, in order of preference:
//! 1. `QUORATE_NODES=redis://h1:p1,redis://h2:p2,...` (e.g. the docker/ compose file);
//! 2. 5 local `redis-server` processes started through the test kit.
//!
//! Nodes: see `quorate_examples::example_nodes` (QUORATE_NODES, local
//! redis-server processes, or in-memory nodes).
//!
//! Run: `cargo run -p quorate-examples --bin spinlock`

use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quorate_spinlock::{Expiry, SpinError, SpinKey, SpinOptions, Spinlock};
use tokio::time::Instant;

const CALLERS: usize = 8;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let snapshotter = quorate_examples::install_recorder()?;

    // Local servers (if started) live until the end of main (killed on drop).
    let (redlock, _servers) = quorate_examples::example_nodes().await?;

    let options = SpinOptions::new()
        .tries(10)
        .sleep(Duration::from_millis(200))
        .jitter(Duration::from_millis(20))
        .max_hold(Expiry::After(Duration::from_secs(5)))
        .result_expiry(Expiry::After(Duration::from_secs(30)));
    let spin = Spinlock::new(&redlock, options)?;
    // A structured key, by its stable hash; unique per run so a rerun
    // against the same servers computes again.
    let run_id = std::process::id();
    let report = SpinKey::hashed(&("monthly-report", 2024u32, 6u8, run_id));

    println!("\n1. single-flight: {CALLERS} callers want `{report}` at once");
    let runs = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|id| {
            let (spin, runs, report) = (spin.clone(), Arc::clone(&runs), report.clone());
            tokio::spawn(async move {
                let value = spin
                    .compute_once(report, || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        println!("  caller {id} computes (slowly)…");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        Ok::<_, std::io::Error>(b"1234 rows, total 99.5".to_vec())
                    })
                    .await?;
                println!(
                    "  [{:>6.1} ms] caller {id} got {:?}",
                    start.elapsed().as_secs_f64() * 1000.0,
                    String::from_utf8_lossy(&value)
                );
                Ok::<_, Box<dyn Error + Send + Sync>>(())
            })
        })
        .collect();
    for caller in callers {
        caller.await?.map_err(|e| e.to_string())?;
    }
    println!(
        "  computed {} time(s) for {CALLERS} callers",
        runs.load(Ordering::SeqCst)
    );

    println!("\n2. a bounded spin on a held key");
    let key = format!("printer:{run_id}");
    let guard = spin.acquire(key.as_str()).await?;
    let contender = spin.clone().with_options(
        SpinOptions::new()
            .tries(4)
            .sleep(Duration::from_millis(100)),
    )?;
    let began = Instant::now();
    match contender.acquire(key.as_str()).await {
        Err(SpinError::TriesExhausted { tries, .. }) => println!(
            "  gave up after {tries} tries in {:.0} ms",
            began.elapsed().as_secs_f64() * 1000.0
        ),
        other => println!("  unexpected: {other:?}"),
    }

    println!("\n3. fail at once if the key is held");
    match spin.try_acquire(key.as_str()).await {
        Err(error @ SpinError::Held { .. }) => println!("  {error}"),
        other => println!("  unexpected: {other:?}"),
    }
    guard.release().await?;

    println!("\n4. a sherlock-style lock handle");
    let mut lock = spin.lock(key.as_str());
    lock.acquire().await?;
    println!("  acquired; locked() = {}", lock.locked().await?);
    lock.renew().await?;
    println!("  renewed: {:?} left", lock.remaining().unwrap_or_default());
    lock.release().await?;
    println!("  released; locked() = {}", lock.locked().await?);

    quorate_examples::print_metrics(&snapshotter);
    Ok(())
}
