//! 10 jobs share 3 encoder licences through a distributed semaphore; prints how many run at
//! once (never more than 3). Then the semaphore grows to 5 at run time (`set_permits`, for
//! every client), and a permit is released through its id, as another process would.
//!
//! Run: `cargo run -p quorate-examples --bin semaphore`

use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quorate_pool::Semaphore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let (redlock, _servers) = quorate_examples::example_nodes().await?;
    let name = format!("example-encoders-{}", std::process::id());
    let licences = Semaphore::resizable(&redlock, &name, 3)?;
    let running = Arc::new(AtomicUsize::new(0));
    let mut jobs = Vec::new();
    for job in 0..10 {
        let (licences, running) = (licences.clone(), Arc::clone(&running));
        jobs.push(tokio::spawn(async move {
            let permit = licences.acquire(1, Duration::from_secs(10)).await?;
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            println!(
                "job {job} encodes with licence {:?} ({now} running)",
                permit.slots()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            permit.release().await?;
            Ok::<_, quorate_pool::PoolError>(())
        }));
    }
    for job in jobs {
        job.await??;
    }
    // more licences bought: every client sees 5 from now on
    licences.set_permits(5).await?;
    let held = licences.acquire(5, Duration::from_secs(10)).await?;
    println!(
        "grown to {} permits; holding slots {:?}",
        licences.current_permits().await?,
        held.slots()
    );
    // a permit's id, as text, releases it from anywhere (another process, a queue consumer)
    let id: quorate_pool::PermitId = held.permit_ids()[4].to_string().parse()?;
    licences.release_permit(&id).await?;
    println!("released slot {} by its id", id.slot());
    held.release().await?;
    Ok(())
}
