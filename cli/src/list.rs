//! `quorate list [--prefix P]`: the locks held on a majority of nodes.

use std::collections::BTreeSet;

use futures::StreamExt;
use quorate_redlock::fred::types::scan::ScanType;
use quorate_redlock::Redlock;

use crate::direct::{connect, redacted};
use crate::Failure;

/// quorate's own bookkeeping keys, never locks.
const BOOKKEEPING: &str = "quorate:";

pub(crate) async fn run(redlock: &Redlock, urls: &[String], prefix: &str) -> Result<u8, Failure> {
    let namespace = redlock.namespace().to_owned();
    let pattern = format!("{namespace}{prefix}*");
    // Every string key under the prefix on any node (SCAN: no server is blocked)...
    let mut candidates = BTreeSet::new();
    for url in urls {
        let client = match connect(url).await {
            Ok(client) => client,
            Err(why) => {
                eprintln!("{}: skipped: {why}", redacted(url));
                continue;
            }
        };
        let mut keys = client.scan_buffered(pattern.clone(), Some(200), Some(ScanType::String));
        // bounded: a listing stops at 10,000 keys (say --prefix to narrow it)
        let mut seen = 0;
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| Failure {
                message: format!("{}: SCAN: {}", redacted(url), e.details()),
                code: 1,
            })?;
            if let Some(key) = key.as_str() {
                if !key.starts_with(BOOKKEEPING) || !namespace.is_empty() {
                    candidates.insert(key.strip_prefix(&namespace).unwrap_or(key).to_owned());
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
            let left = seen.remaining().map_or("no expiry".to_owned(), |r| {
                format!("{:.1} s left", r.as_secs_f64())
            });
            println!("{resource}\t{left}\t{holder}");
        }
    }
    eprintln!("{held} lock(s) held on a majority");
    Ok(0)
}
