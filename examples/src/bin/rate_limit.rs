//! "At most 5 calls per 0.8 s" to a partner API, shared by 4 workers (the seed use case of a
//! rate-limiting lock server, without the single server). Prints each grant's time.
//!
//! Run: `cargo run -p quorate-examples --bin rate_limit`

use std::error::Error;
use std::time::Duration;

use quorate_pool::RateLimit;
use tokio::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let (redlock, _servers) = quorate_examples::example_nodes().await?;
    let limit = RateLimit::new(
        &redlock,
        "example-partner-api",
        5,
        Duration::from_millis(800),
    )?;
    match limit.try_acquire().await {
        Ok(()) => println!("try_acquire: granted at once"),
        Err(e) => println!("try_acquire: wait {:?}", e.retry_after()),
    }
    let start = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..4 {
        let limit = limit.clone();
        workers.push(tokio::spawn(async move {
            for call in 0..4 {
                limit.acquire().await?;
                println!(
                    "[{:>5} ms] worker {worker} makes call {call}",
                    start.elapsed().as_millis()
                );
            }
            Ok::<_, quorate_pool::PoolError>(())
        }));
    }
    for worker in workers {
        worker.await??;
    }
    println!(
        "16 calls in {:.2} s (limit: 5 per 0.8 s)",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
