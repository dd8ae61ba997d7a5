//! `quorate nodes`: each node's reachability, latency, version, and the
//! settings that matter for safety.

use std::time::{Duration, Instant};

use quorate_redlock::fred::prelude::ClientLike;
use quorate_redlock::fred::types::InfoKind;

use crate::direct::{connect, redacted, TIMEOUT};
use crate::{Failure, EXIT_UNAVAILABLE};

pub(crate) async fn run(urls: &[String]) -> Result<u8, Failure> {
    let mut reachable = 0;
    let mut warnings = 0;
    for url in urls {
        match check(url).await {
            Ok(report) => {
                reachable += 1;
                println!(
                    "{}: up, {:.2} ms, redis {}",
                    report.name,
                    report.latency.as_secs_f64() * 1000.0,
                    report.version
                );
                for warning in &report.warnings {
                    warnings += 1;
                    println!("  warning: {warning}");
                }
            }
            Err(why) => println!("{}: DOWN: {why}", redacted(url)),
        }
    }
    let quorum = quorate_redlock::raw::quorum::majority(urls.len());
    println!(
        "{reachable} of {} nodes reachable (a lock needs {quorum}); {warnings} warning(s)",
        urls.len()
    );
    Ok(if reachable < quorum {
        EXIT_UNAVAILABLE
    } else {
        0
    })
}

struct Report {
    name: String,
    latency: Duration,
    version: String,
    warnings: Vec<String>,
}

async fn check(url: &str) -> Result<Report, String> {
    let client = connect(url).await?;
    let result = async {
        let mut latency = Duration::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            let _: String = client.ping(None).await?;
            latency = latency.min(started.elapsed());
        }
        let server: String = client.info(Some(InfoKind::Server)).await?;
        let persistence: String = client.info(Some(InfoKind::Persistence)).await?;
        let memory: String = client.info(Some(InfoKind::Memory)).await?;
        Ok::<_, quorate_redlock::fred::error::Error>((latency, server, persistence, memory))
    };
    let (latency, server, persistence, memory) = tokio::time::timeout(TIMEOUT * 3, result)
        .await
        .map_err(|_| format!("no answer within {:?}", TIMEOUT * 3))?
        .map_err(|e| e.details().to_owned())?;
    let _ = client.quit().await;
    let field = |info: &str, name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_owned())
    };
    let mut warnings = Vec::new();
    if field(&persistence, "aof_enabled").as_deref() != Some("1") {
        warnings.push(
            "appendonly is off: after a restart this node forgets its locks (quorate keeps it \
             out of every vote for max_ttl) and its fence counters (tokens can go back if a \
             majority restarts); for fencing, run with appendonly yes and appendfsync always"
                .to_owned(),
        );
    }
    match field(&memory, "maxmemory_policy").as_deref() {
        Some("noeviction") | None => {}
        Some(policy) if policy.starts_with("allkeys") => warnings.push(format!(
            "maxmemory-policy {policy}: under memory pressure the node may evict lock keys \
             and the quarantine marker; use noeviction"
        )),
        Some(policy) => warnings.push(format!(
            "maxmemory-policy {policy}: under memory pressure the node may evict lock keys \
             (they have a ttl); use noeviction"
        )),
    }
    Ok(Report {
        name: redacted(url),
        latency,
        version: field(&server, "redis_version").unwrap_or_else(|| "unknown".to_owned()),
        warnings,
    })
}
