//! `quorate watch KEY`: acquisitions and releases of one lock as they happen.

use std::time::Duration;

use quorate_redlock::{Holder, Redlock};
use serde_json::json;
use tokio::time::Instant;

use crate::Failure;

/// How often the holder is read between release announcements (an
/// acquisition is not announced).
const POLL: Duration = Duration::from_millis(200);

pub(crate) async fn run(
    redlock: &Redlock,
    key: &str,
    for_at_most: Option<Duration>,
    as_json: bool,
) -> Result<u8, Failure> {
    let full_key = redlock.lock_key(key);
    let timeout = redlock.defaults().effective_node_timeout();
    let mut releases = redlock
        .watch_releases(std::slice::from_ref(&full_key), timeout)
        .await;
    let stop = for_at_most.map(|d| Instant::now() + d);
    let mut last: Option<Holder> = None;
    let mut first = true;
    let started = Instant::now();
    let stamp = || format!("{:>8.3} s", started.elapsed().as_secs_f64());
    let event = |what: &str, holder: Option<&Holder>| {
        if as_json {
            let line = json!({
                "at_ms": started.elapsed().as_millis() as u64,
                "key": key,
                "event": what,
                "holder": holder.map(crate::status::holder_json),
            });
            println!("{line}");
            return;
        }
        match holder {
            Some(h) => println!("{} {key}: {what} by {h}", stamp()),
            None if what == "released" => println!("{} {key}: released (announced)", stamp()),
            None => println!("{} {key}: {what}", stamp()),
        }
    };
    loop {
        releases.mark_seen();
        let seen = redlock.inspect(key).await?;
        let holder = seen.holder().cloned();
        if first || holder.as_ref().map(|h| &h.client) != last.as_ref().map(|h| &h.client) {
            first = false;
            match &holder {
                Some(h) => event("acquired", Some(h)),
                None => event("free", None),
            }
            last = holder;
        }
        let wait = async {
            match stop {
                Some(stop) => tokio::time::sleep_until(stop.min(Instant::now() + POLL)).await,
                None => tokio::time::sleep(POLL).await,
            }
        };
        tokio::select! {
            () = wait => {}
            _ = releases.released() => {
                event("released", None);
                last = None;
            }
        }
        if stop.is_some_and(|s| Instant::now() >= s) {
            return Ok(0);
        }
    }
}
