//! A lab of 8 test devices shared by 6 test runs, each needing 2 devices of any model plus
//! the one oscilloscope (resource_locker's use case), with usage reporting: at the end, how
//! much each model and device was used.
//!
//! Run: `cargo run -p quorate-examples --bin device_pool`

use std::error::Error;
use std::time::Duration;

use quorate_pool::{Pool, Requirement};
use tokio::time::Instant;

#[derive(Clone, Debug)]
struct Device {
    id: String,
    model: &'static str,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let (redlock, _servers) = quorate_examples::example_nodes().await?;
    let lab = Pool::new(&redlock, "example-lab")?.with_usage_reporting(true);
    let devices: Vec<Device> = (0..8)
        .map(|i| Device {
            id: format!("dev-{i}"),
            model: ["T1000", "T800"][i % 2],
        })
        .collect();

    let start = Instant::now();
    let mut runs = Vec::new();
    for run in 0..6 {
        let (lab, devices) = (lab.clone(), devices.clone());
        runs.push(tokio::spawn(async move {
            let request = vec![
                Requirement::need(2, devices, |d| d.id.clone())
                    .tags(|d| vec![("model".into(), d.model.into())]),
                Requirement::named(
                    "scope",
                    Device {
                        id: "scope".into(),
                        model: "DSO",
                    },
                ),
            ];
            let grant = lab.acquire(request, Duration::from_secs(10)).await?;
            println!(
                "[{:>5} ms] run {run} got {} + {} and the {}",
                start.elapsed().as_millis(),
                grant[0][0].id,
                grant[0][1].id,
                grant[1][0].id
            );
            tokio::time::sleep(Duration::from_millis(30)).await; // the test run
            grant.release().await?;
            Ok::<_, quorate_pool::PoolError>(())
        }));
    }
    for run in runs {
        run.await??;
    }

    println!("\nusage recorded on the nodes:");
    let usage = lab.usage();
    for tag in usage.all_tags().await? {
        for value in usage.all_values(&tag).await? {
            let f = usage.figures(&tag, &value).await?;
            println!(
                "  {tag}={value}: requested {}, acquired {}, waited {:.0} ms, held {:.0} ms",
                f.requests,
                f.acquisitions,
                f.acquire_wait.as_secs_f64() * 1000.0,
                f.hold.as_secs_f64() * 1000.0
            );
        }
    }
    Ok(())
}
