//! The retry loop around allocation attempts: bounded by the acquire
//! timeout and/or attempt count, with a jittered pause between attempts.

use std::time::Duration;

use quorate_redlock::{random_pause, LockOptions, Redlock, ReleaseWatch, Token};
use tokio::time::Instant;

use crate::allocate::{self, Allocation, Group, Rounds};
use crate::error::PoolError;
use crate::local_queue::LocalQueues;

/// How a waiter spends the pause between attempts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pause {
    /// Until a release of any candidate is announced, or the retry delay
    /// plus jitter passes, or the holders' ttls say the candidates free up
    /// (pools and semaphores: releases can come at any moment).
    Poll,
    /// Until the holders' ttls run out (rate limits: permits are never
    /// released, only expire), plus a little jitter.
    UntilExpiry,
}

fn pause(error: &PoolError, options: &LockOptions, mode: Pause) -> Duration {
    let polled = options.get_retry_delay() + random_pause(options.get_retry_jitter());
    let spread = random_pause(Duration::from_millis(2));
    match (error.retry_after(), mode) {
        (Some(free), Pause::Poll) => polled.min(free + spread),
        (Some(free), Pause::UntilExpiry) => free + spread,
        (None, _) => polled,
    }
}

/// Attempts until granted, the acquire timeout or the attempt limit;
/// returns the last attempt's error when it gives up. `groups` is called
/// for every attempt (a fresh candidate order each time).
///
/// # Cancel safety
/// Dropping the future spawns the undo of the attempt in flight.
pub(crate) async fn acquire(
    redlock: &Redlock,
    queues: &LocalQueues,
    groups: impl Fn() -> Vec<Group>,
    options: &LockOptions,
    rounds: Rounds,
    mode: Pause,
) -> Result<(Allocation, Token), PoolError> {
    options.validate()?;
    redlock.check_ttl(options.get_ttl())?;
    let deadline = options.get_acquire_timeout().map(|t| Instant::now() + t);
    // A single try does not queue; a waiter that runs out of time in the
    // queue still makes one attempt, so that it returns the servers' answer.
    let keys: Vec<String> = groups().into_iter().flat_map(|g| g.keys).collect();
    let _turn = match options.get_max_attempts() {
        Some(1) => None,
        _ => {
            let queue = queues.queue(keys.clone());
            match deadline {
                Some(d) => tokio::time::timeout_at(d, queue.lock_owned()).await.ok(),
                None => Some(queue.lock_owned().await),
            }
        }
    };
    let mut attempts = 0u32;
    let mut watch: Option<ReleaseWatch> = None;
    loop {
        attempts += 1;
        if let Some(watch) = watch.as_mut() {
            watch.mark_seen();
        }
        let error = match allocate::attempt(redlock, &groups(), options, rounds).await {
            Ok(granted) => return Ok(granted),
            Err(e @ (PoolError::InvalidConfig(_) | PoolError::InvalidRequest(_))) => return Err(e),
            Err(e) => e,
        };
        if options
            .get_max_attempts()
            .is_some_and(|max| attempts >= max)
        {
            return Err(error);
        }
        let wake = Instant::now() + pause(&error, options, mode);
        if deadline.is_some_and(|d| wake > d) {
            return Err(error);
        }
        tracing::debug!(%error, attempts, "pool attempt failed; retrying");
        let Pause::Poll = mode else {
            tokio::time::sleep_until(wake).await;
            continue;
        };
        if watch.is_none() {
            // Subscribe, then retry at once: a release may have come
            // between the attempt and the subscription.
            let timeout = options.effective_node_timeout();
            watch = Some(redlock.watch_releases(&keys, timeout).await);
            continue;
        }
        if let Some(watch) = watch.as_mut() {
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                _ = watch.released() => {
                    // Every waiter hears the release: spread their retries.
                    tokio::time::sleep(random_pause(Duration::from_millis(2))).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_redlock::Outcomes;

    fn unavailable(retry_after: Option<Duration>) -> PoolError {
        PoolError::Unavailable {
            requirement: 0,
            need: 1,
            held: 0,
            retry_after,
            outcomes: Outcomes::default(),
        }
    }

    #[test]
    fn pauses_follow_the_holders_ttls() {
        let options = LockOptions::new()
            .retry_delay(Duration::from_millis(50))
            .retry_jitter(Duration::ZERO);
        let soon = unavailable(Some(Duration::from_millis(5)));
        let late = unavailable(Some(Duration::from_millis(500)));
        let never = unavailable(None);
        assert!(pause(&soon, &options, Pause::Poll) <= Duration::from_millis(7));
        assert_eq!(
            pause(&late, &options, Pause::Poll),
            Duration::from_millis(50)
        );
        assert!(pause(&late, &options, Pause::UntilExpiry) >= Duration::from_millis(500));
        assert_eq!(
            pause(&never, &options, Pause::UntilExpiry),
            Duration::from_millis(50)
        );
    }
}
