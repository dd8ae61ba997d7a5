//! `quorate watch KEY`: acquisitions and releases of one lock as they happen.

use std::time::Duration;

use quorate_redlock::{Holder, Redlock};
use tokio::time::Instant;

use crate::Failure;

/// How often the holder is read between release announcements (an
/// acquisition is not announced).
const POLL: Duration = Duration::from_millis(200);

pub(crate) async fn run(
    redlock: &Redlock,
    key: &str,
    for_at_most: Option<Duration>,
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
    loop {
        releases.mark_seen();
        let seen = redlock.inspect(key).await?;
        let holder = seen.holder().cloned();
        if first || holder.as_ref().map(|h| &h.client) != last.as_ref().map(|h| &h.client) {
            first = false;
            match &holder {
                Some(h) => println!("{} {key}: acquired by {h}", stamp()),
                None => println!("{} {key}: free", stamp()),
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
                println!("{} {key}: released (announced)", stamp());
                last = None;
            }
        }
        if stop.is_some_and(|s| Instant::now() >= s) {
            return Ok(0);
        }
    }
}
