//! A price table read by 6 readers and rewritten by 2 writers through a distributed
//! read-write lock: readers share it, a writer is alone with it, and a writer waiting for
//! the readers keeps new readers out (writers are not starved).
//!
//! Run: `cargo run -p quorate-examples --bin rwlock`

use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quorate_rwlock::RwLock;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let (redlock, _servers) = quorate_examples::example_nodes().await?;
    let prices = RwLock::new(&redlock, "example-prices")?;
    // readers inside now, the most seen at once, readers a writer found inside
    let (inside, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let beside = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for id in 0..8 {
        let (prices, inside, most) = (prices.clone(), Arc::clone(&inside), Arc::clone(&most));
        let beside = Arc::clone(&beside);
        tasks.push(tokio::spawn(async move {
            for round in 0..3 {
                if id < 2 {
                    let writing = prices.write(Duration::from_secs(10)).await?;
                    let readers = inside.load(Ordering::SeqCst);
                    beside.fetch_add(readers, Ordering::SeqCst);
                    println!(
                        "writer {id} rewrites the table (round {round}, {readers} readers inside)"
                    );
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    writing.release().await?;
                } else {
                    let reading = prices.read(Duration::from_secs(10)).await?;
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    reading.release().await?;
                }
            }
            Ok::<_, quorate_redlock::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    println!(
        "done: up to {} readers at once; readers found beside a writer: {}",
        most.load(Ordering::SeqCst),
        beside.load(Ordering::SeqCst)
    );
    Ok(())
}
