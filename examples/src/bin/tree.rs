//! Tree-node locks: workers lock racks and hosts of a small datacenter
//! tree; a maintenance job locks the whole datacenter. Prints who held what
//! when, what blocked whom, then a metrics summary.
//!
//! Nodes, in order of preference:
//! 1. `QUORATE_NODES=redis://h1:p1,redis://h2:p2,...` (e.g. the docker/ compose file);
//! 2. 5 local `redis-server` processes started through the test kit.
//!
//! Nodes: see `quorate_examples::example_nodes` (QUORATE_NODES, local
//! redis-server processes, or in-memory nodes).
//!
//! Run: `cargo run -p quorate-examples --bin tree`

use std::error::Error;
use std::time::Duration;

use quorate_tree::{TreeError, TreeLock};
use tokio::time::Instant;

/// (worker, node it works on): two hosts of rack 1, rack 2 as a whole.
const WORKERS: [(&str, &[&str]); 3] = [
    ("patcher-1", &["dc1", "rack1", "host1"]),
    ("patcher-2", &["dc1", "rack1", "host2"]),
    ("rewirer", &["dc1", "rack2"]),
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let snapshotter = quorate_examples::install_recorder()?;

    // Local servers (if started) live until the end of main (killed on drop).
    let (redlock, _servers) = quorate_examples::example_nodes().await?;
    let tree = TreeLock::new(&redlock, "datacenter")?;
    println!(
        "{} nodes, quorum {}; tree `{}`\n",
        redlock.node_names().len(),
        redlock.quorum(),
        tree.name()
    );

    let start = Instant::now();
    let mut tasks = Vec::new();
    for (owner, path) in WORKERS {
        let tree = tree.clone();
        tasks.push(tokio::spawn(async move {
            worker(tree, owner, path, start).await
        }));
    }
    // The maintenance job wants all of dc1: it waits until no rack or host
    // below it is locked, and reports what blocks it meanwhile.
    tokio::time::sleep(Duration::from_millis(10)).await;
    if let Some(conflict) = tree.conflict(["dc1"]).await? {
        println!(
            "[{:>6.1} ms] maintenance sees: dc1 is busy, {conflict}",
            ms(start)
        );
    }
    let options = tree
        .options()
        .ttl(Duration::from_secs(5))
        .acquire_timeout(Some(Duration::from_secs(10)))
        .owner("maintenance");
    let done = tree
        .run_with(["dc1"], &options, |lease| async move {
            println!(
                "[{:>6.1} ms] maintenance holds all of dc1 ({:.2} s valid, auto-extended)",
                ms(start),
                lease.remaining().as_secs_f64()
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
            "firmware updated"
        })
        .await?;
    println!("[{:>6.1} ms] maintenance done: {done}", ms(start));
    for task in tasks {
        task.await??;
    }

    // A worker that arrives during maintenance would be told who is in the way:
    let guard = tree.lock_with(["dc1"], &options).await?;
    match tree
        .try_lock(["dc1", "rack1", "host1"], Duration::from_secs(5))
        .await
    {
        Err(error @ TreeError::Conflict { .. }) => {
            println!(
                "\na late try_lock is refused: {}",
                error
                    .conflict()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            )
        }
        Ok(late) => late.release().await.map(drop)?,
        Err(other) => return Err(other.into()),
    }
    guard.release().await?;

    quorate_examples::print_metrics(&snapshotter);
    Ok(())
}

async fn worker(
    tree: TreeLock,
    owner: &'static str,
    path: &'static [&'static str],
    start: Instant,
) -> Result<(), TreeError> {
    let options = tree.options().ttl(Duration::from_secs(5)).owner(owner);
    for turn in 1..=2 {
        let asked = Instant::now();
        let guard = tree.lock_with(path, &options).await?;
        println!(
            "[{:>6.1} ms] {owner} holds {} (turn {turn}, waited {:.1} ms)",
            ms(start),
            guard.path(),
            asked.elapsed().as_secs_f64() * 1000.0
        );
        tokio::time::sleep(Duration::from_millis(25)).await; // the "work"
        guard.release().await?;
    }
    Ok(())
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}
