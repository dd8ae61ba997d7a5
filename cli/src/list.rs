//! `quorate list [--prefix P]`: the locks held on a majority of nodes, of
//! every primitive: mutex locks, pool and semaphore slots, tree nodes,
//! read-write locks' writers, spinlocks (a rwlock's readers live in a
//! sorted set and are not listed: `quorate status` shows a key's holders).

use std::collections::BTreeSet;

use futures::StreamExt;
use quorate_redlock::fred::error::Error as FredError;
use quorate_redlock::fred::prelude::ClientLike;
use quorate_redlock::fred::types::scan::ScanType;
use quorate_redlock::fred::types::Key;
use quorate_redlock::{FredSettings, Redlock};
use serde_json::json;

use crate::direct::{connect, redacted};
use crate::Failure;

/// quorate's own bookkeeping keys and values that are never locks (skipped
/// without asking a majority about them).
const NOT_LOCKS: [&str; 7] = [
    "quorate:owner:",
    "quorate:marker",
    "quorate:quarantine",
    "quorate:fence:",
    "quorate:usage:",
    "quorate:latch:",
    "quorate:spin:result:",
];

/// Which primitive a key (after the namespace) belongs to.
fn kind(key: &str) -> &'static str {
    let kinds = [
        ("quorate:pool:{semaphore:", "semaphore"),
        ("quorate:pool:", "pool"),
        ("quorate:tree:", "tree"),
        ("quorate:rw:", "rwlock"),
        ("quorate:spin:lock:", "spinlock"),
    ];
    kinds
        .iter()
        .find(|(prefix, _)| key.starts_with(prefix))
        .map_or("mutex", |(_, kind)| kind)
}

pub(crate) async fn run(
    redlock: &Redlock,
    urls: &[String],
    settings: &FredSettings,
    prefix: &str,
    as_json: bool,
) -> Result<u8, Failure> {
    let namespace = redlock.namespace().to_owned();
    let pattern = format!("{namespace}{prefix}*");
    // Every string key under the prefix on any node (SCAN: no server is blocked)...
    let mut candidates = BTreeSet::new();
    for url in urls {
        let client = match connect(url, settings).await {
            Ok(client) => client,
            Err(why) => {
                eprintln!("{}: skipped: {why}", redacted(url));
                continue;
            }
        };
        // a Cluster node: every primary's keys
        let mut keys: std::pin::Pin<
            Box<dyn futures::Stream<Item = Result<Key, FredError>> + Send>,
        > = if client.is_clustered() {
            Box::pin(client.scan_cluster_buffered(
                pattern.clone(),
                Some(200),
                Some(ScanType::String),
            ))
        } else {
            Box::pin(client.scan_buffered(pattern.clone(), Some(200), Some(ScanType::String)))
        };
        // bounded: a listing stops at 10,000 keys (say --prefix to narrow it)
        let mut seen = 0;
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| Failure {
                message: format!("{}: SCAN: {}", redacted(url), e.details()),
                code: 1,
            })?;
            if let Some(key) = key.as_str() {
                let resource = key.strip_prefix(&namespace).unwrap_or(key);
                if !NOT_LOCKS.iter().any(|skip| resource.starts_with(skip)) {
                    candidates.insert(resource.to_owned());
                }
            }
            seen += 1;
            if seen >= 10_000 {
                eprintln!(
                    "{}: stopped after 10,000 keys; narrow it with --prefix",
                    redacted(url)
                );
                break;
            }
        }
    }
    // ...of which the locks a client holds on a majority.
    let mut held = 0;
    for resource in candidates {
        let seen = redlock.inspect(&resource).await?;
        if let Some(holder) = seen.holder() {
            held += 1;
            if as_json {
                let line = json!({
                    "key": resource,
                    "kind": kind(&resource),
                    "remaining_ms": seen.remaining().map(|r| r.as_millis() as u64),
                    "holder": crate::status::holder_json(holder),
                });
                println!("{line}");
                continue;
            }
            let left = seen.remaining().map_or("no expiry".to_owned(), |r| {
                format!("{:.1} s left", r.as_secs_f64())
            });
            println!("{resource}\t{}\t{left}\t{holder}", kind(&resource));
        }
    }
    if !as_json {
        eprintln!("{held} lock(s) held on a majority");
    }
    Ok(0)
}
