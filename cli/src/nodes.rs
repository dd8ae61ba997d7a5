//! `quorate nodes`: each node's reachability, latency, version, quarantine
//! state, and the settings that matter for safety.

use std::time::{Duration, Instant};

use quorate_redlock::fred::interfaces::ClusterInterface;
use quorate_redlock::fred::prelude::{ClientLike, KeysInterface};
use quorate_redlock::fred::types::InfoKind;
use quorate_redlock::raw::shard_marker_suffix;
use quorate_redlock::{FredSettings, MARKER_KEY, QUARANTINE_KEY};
use serde_json::json;

use crate::direct::{connect, redacted, TIMEOUT};
use crate::{Failure, EXIT_UNAVAILABLE};

pub(crate) async fn run(
    urls: &[String],
    settings: &FredSettings,
    max_ttl: Duration,
    as_json: bool,
) -> Result<u8, Failure> {
    let mut reachable = 0;
    let mut warnings = 0;
    for url in urls {
        match check(url, settings).await {
            Ok(reports) => {
                reachable += 1;
                for report in reports {
                    warnings += report.warnings.len();
                    if as_json {
                        println!("{}", report.to_json());
                        continue;
                    }
                    println!(
                        "{}: up, {:.2} ms, redis {}",
                        report.name,
                        report.latency.as_secs_f64() * 1000.0,
                        report.version
                    );
                    println!("  quorum: {}", report.quarantine.describe(max_ttl));
                    for warning in &report.warnings {
                        println!("  warning: {warning}");
                    }
                }
            }
            Err(why) if as_json => {
                println!(
                    "{}",
                    json!({"node": redacted(url), "up": false, "error": why})
                );
            }
            Err(why) => println!("{}: DOWN: {why}", redacted(url)),
        }
    }
    let quorum = quorate_redlock::raw::quorum::majority(urls.len());
    if !as_json {
        println!(
            "{reachable} of {} nodes reachable (a lock needs {quorum}); {warnings} warning(s)",
            urls.len()
        );
    }
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
    quarantine: Quarantine,
    warnings: Vec<String>,
}

impl Report {
    fn to_json(&self) -> serde_json::Value {
        let (state, left, marker) = match &self.quarantine {
            Quarantine::Quarantined { left, marker } => {
                ("quarantined", Some(left.as_millis() as u64), marker.clone())
            }
            Quarantine::Voting { marker } => ("voting", None, Some(marker.clone())),
            Quarantine::FromEarlierProcess { marker } => {
                ("marker_from_earlier_process", None, Some(marker.clone()))
            }
            Quarantine::NoMarker => ("no_marker", None, None),
        };
        json!({
            "node": self.name,
            "up": true,
            "latency_ms": self.latency.as_secs_f64() * 1000.0,
            "version": self.version,
            "quarantine": state,
            "quarantine_left_ms": left,
            "marker": marker,
            "warnings": self.warnings,
        })
    }
}

/// Whether the node votes, from its marker ([`MARKER_KEY`]: `<why>:<ms>:<run_id>`)
/// and its quarantine key.
enum Quarantine {
    /// In quarantine: refuses every vote for `left` more.
    Quarantined {
        left: Duration,
        marker: Option<String>,
    },
    /// Marked by its running server process: votes.
    Voting { marker: String },
    /// Marked by an earlier server process (it restarted since): the next
    /// granting script starts a quarantine.
    FromEarlierProcess { marker: String },
    /// No marker: a new server, or one that lost its data; the next
    /// granting script starts a quarantine.
    NoMarker,
}

impl Quarantine {
    fn read(marker: Option<String>, quarantine_ms: i64, run_id: &str) -> Quarantine {
        if quarantine_ms > 0 {
            let left = Duration::from_millis(quarantine_ms.unsigned_abs());
            return Quarantine::Quarantined { left, marker };
        }
        match marker {
            None => Quarantine::NoMarker,
            Some(marker) if !run_id.is_empty() && marker.ends_with(&format!(":{run_id}")) => {
                Quarantine::Voting { marker }
            }
            Some(marker) => Quarantine::FromEarlierProcess { marker },
        }
    }

    fn describe(&self, max_ttl: Duration) -> String {
        let since = |marker: &str| {
            let mut parts = marker.splitn(3, ':');
            match (parts.next(), parts.next()) {
                (Some(why), Some(ms)) => format!("marked `{why}` at {ms} ms since the epoch"),
                _ => format!("marker `{marker}`"),
            }
        };
        match self {
            Quarantine::Quarantined { left, marker } => format!(
                "QUARANTINED for {:.1} s more ({}): it lost data or restarted and votes again once \
                 every lease it may have forgotten has expired",
                left.as_secs_f64(),
                marker.as_deref().map_or("no marker".to_owned(), since)
            ),
            Quarantine::Voting { marker } => format!("votes ({})", since(marker)),
            Quarantine::FromEarlierProcess { marker } => format!(
                "restarted since it was marked ({}): its next lock call starts a quarantine \
                 of {max_ttl:?} (if it kept every write, `quorate declare-fresh` spares it)",
                since(marker)
            ),
            Quarantine::NoMarker => format!(
                "no marker (a new server, or one that lost its data): its next lock call \
                 starts a quarantine of {max_ttl:?}; if it is new, `quorate declare-fresh`"
            ),
        }
    }
}

/// The node's report; for a Redis Cluster node, one per shard (each
/// primary, with its own quarantine marker), every shard reachable.
async fn check(url: &str, settings: &FredSettings) -> Result<Vec<Report>, String> {
    let client = connect(url, settings).await?;
    let reports = match client.cached_cluster_state() {
        Some(routing) if client.is_clustered() => {
            let mut reports = Vec::new();
            for primary in routing.unique_primary_nodes() {
                let suffix = shard_marker_suffix(&routing, &primary);
                let name = format!("{} shard {primary}", redacted(url));
                let shard = client.with_cluster_node(&primary);
                let report = check_server(&shard, name, &suffix)
                    .await
                    .map_err(|why| format!("shard {primary}: {why}"))?;
                reports.push(report);
            }
            reports
        }
        _ => vec![check_server(&client, redacted(url), "").await?],
    };
    let _ = client.quit().await;
    Ok(reports)
}

/// One server's report: `suffix` names its quarantine marker
/// ([`shard_marker_suffix`]; empty on a standalone server).
async fn check_server<C>(client: &C, name: String, suffix: &str) -> Result<Report, String>
where
    C: ClientLike + KeysInterface,
{
    let marker_key = format!("{MARKER_KEY}{suffix}");
    let quarantine_key = format!("{QUARANTINE_KEY}{suffix}");
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
        let marker: Option<String> = client.get(&marker_key).await?;
        let quarantine_ms: i64 = client.pttl(&quarantine_key).await?;
        Ok::<_, quorate_redlock::fred::error::Error>((
            latency,
            server,
            persistence,
            memory,
            marker,
            quarantine_ms,
        ))
    };
    let (latency, server, persistence, memory, marker, quarantine_ms) =
        tokio::time::timeout(TIMEOUT * 3, result)
            .await
            .map_err(|_| format!("no answer within {:?}", TIMEOUT * 3))?
            .map_err(|e| e.details().to_owned())?;
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
    let run_id = field(&server, "run_id").unwrap_or_default();
    Ok(Report {
        name,
        latency,
        version: field(&server, "redis_version").unwrap_or_else(|| "unknown".to_owned()),
        quarantine: Quarantine::read(marker, quarantine_ms, &run_id),
        warnings,
    })
}
