//! Several workers contend for one lock across 5 nodes; prints who held it
//! when, then a metrics summary.
//!
//! Nodes, in order of preference (`quorate_examples::example_nodes`):
//! 1. `QUORATE_NODES=redis://h1:p1,redis://h2:p2,...` (e.g. the docker/ compose file);
//! 2. 5 local `redis-server` processes started through the test kit;
//! 3. 5 in-memory nodes, when redis-server is not installed (said so on screen).
//!
//! Run: `cargo run -p quorate-examples --bin quickstart`

use std::error::Error;
use std::time::Duration;

use quorate_redlock::Redlock;
use tokio::time::Instant;

const WORKERS: usize = 4;
const ROUNDS: usize = 3;
const RESOURCE: &str = "quickstart:nightly-report";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let snapshotter = quorate_examples::install_recorder()?;

    // Local servers (if started) live until the end of main (killed on drop).
    let (redlock, _servers) = quorate_examples::example_nodes().await?;
    println!(
        "{} nodes, quorum {}; {WORKERS} workers × {ROUNDS} turns on `{RESOURCE}`\n",
        redlock.node_names().len(),
        redlock.quorum()
    );

    let start = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|id| {
            let redlock = redlock.clone();
            tokio::spawn(async move { worker(id, redlock, start).await })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }

    quorate_examples::print_metrics(&snapshotter);
    Ok(())
}

async fn worker(id: usize, redlock: Redlock, start: Instant) -> Result<(), quorate_redlock::Error> {
    for turn in 1..=ROUNDS {
        let asked = Instant::now();
        let guard = redlock.lock(RESOURCE, Duration::from_secs(5)).await?;
        let granted = start.elapsed();
        println!(
            "[{:>6.1} ms] worker {id} holds the lock (turn {turn}, waited {:>5.1} ms, valid {:.2} s more)",
            ms(granted),
            ms(asked.elapsed()),
            guard.remaining().as_secs_f64()
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // the "work"
        println!("[{:>6.1} ms] worker {id} releases", ms(start.elapsed()));
        guard.release().await?;
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
