//! The blocking API (quorate-redlock's `blocking` feature) from plain threads, as code that is
//! not async would use it: 4 worker threads take turns on one lock; guards release on drop.
//!
//! Run: `cargo run -p quorate-examples --bin blocking`

use std::error::Error;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use quorate_redlock::blocking::Redlock;
use quorate_redlock::{LockOptions, MemoryNode, Node};
use quorate_testkit::{redis_server_available, Cluster};

fn main() -> Result<(), Box<dyn Error>> {
    // The test kit is async: a small runtime only to start (and later stop) local servers.
    let setup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (redlock, _servers) = match std::env::var("QUORATE_NODES") {
        Ok(list) if !list.trim().is_empty() => {
            (Redlock::connect(list.split(',').map(str::trim))?, None)
        }
        _ if redis_server_available() => {
            let cluster = setup.block_on(Cluster::start(5))?;
            println!("started 5 local redis-server nodes");
            (Redlock::connect(cluster.urls())?, Some(cluster))
        }
        _ => {
            println!("redis-server not found: running on 5 IN-MEMORY nodes instead");
            let nodes = MemoryNode::cluster(5)
                .into_iter()
                .map(|m| Arc::new(m) as Arc<dyn Node>)
                .collect();
            (Redlock::from_nodes(nodes, LockOptions::new())?, None)
        }
    };
    let redlock = Arc::new(redlock);
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let redlock = Arc::clone(&redlock);
            thread::spawn(move || -> Result<(), quorate_redlock::Error> {
                for turn in 0..3 {
                    let guard = redlock.lock("example-blocking", Duration::from_secs(5))?;
                    println!(
                        "worker {worker} holds the lock (turn {turn}, {:?} left)",
                        guard.remaining()
                    );
                    thread::sleep(Duration::from_millis(10));
                    drop(guard); // releases (blocking until the release round is done)
                }
                Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| "a worker panicked")??;
    }
    println!("done: 12 turns, one worker at a time");
    Ok(())
}
