//! Three shard workers count down a distributed latch; a merger waits for all three before
//! it merges (each worker could be a process of its own: they share nothing but the nodes).
//!
//! Run: `cargo run -p quorate-examples --bin latch`

use std::error::Error;
use std::time::Duration;

use quorate_latch::Latch;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let (redlock, _servers) = quorate_examples::example_nodes().await?;
    let name = format!("example-shards-{}", std::process::id());
    let shards = Latch::new(&redlock, &name, 3)?;
    let merger = {
        let shards = shards.clone();
        tokio::spawn(async move {
            shards.wait(Duration::from_secs(30)).await?;
            println!("merger: all shards done, merging");
            Ok::<_, quorate_latch::LatchError>(())
        })
    };
    for shard in 0..3u64 {
        let shards = shards.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100 * (shard + 1))).await;
            shards.count_down().await?;
            println!(
                "shard {shard} done ({} to go)",
                shards.current_count().await?
            );
            Ok::<_, quorate_latch::LatchError>(())
        })
        .await??;
    }
    merger.await??;
    Ok(())
}
