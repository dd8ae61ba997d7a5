//! The retry loop around allocation attempts: bounded by the acquire
//! timeout and/or attempt count, with a jittered pause between attempts.

use std::time::Duration;

use quorate_redlock::{LockOptions, Redlock, Token};

use quorate_redlock::raw::{random_pause, retry, Retry, WaitPolicy};
use tokio::time::Instant;

use crate::allocate::{self, Allocation, Group, Rounds};
use crate::error::PoolError;

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

/// Attempts until granted, the acquire timeout or the attempt limit
/// (quorate-redlock's wait driver); returns the last attempt's error when
/// it gives up. `groups` is called for every attempt (a fresh candidate
/// order each time). Calls with unbounded attempts first wait for their
/// turn among this client's requests for the same candidates.
///
/// # Cancel safety
/// Dropping the future spawns the undo of the attempt in flight.
pub(crate) async fn acquire(
    redlock: &Redlock,
    groups: impl Fn() -> Vec<Group>,
    options: &LockOptions,
    rounds: Rounds,
    mode: Pause,
) -> Result<(Allocation, Token), PoolError> {
    options.validate()?;
    redlock.check_ttl(options.get_ttl())?;
    let policy = WaitPolicy::new(options, Instant::now());
    let keys: Vec<String> = groups().into_iter().flat_map(|g| g.keys).collect();
    let watch = match mode {
        Pause::Poll => Some(keys.clone()),
        Pause::UntilExpiry => None,
    };
    retry(
        redlock,
        &policy,
        Some(&keys),
        |attempts| {
            let groups = groups();
            async move {
                tracing::debug!(attempts, "pool attempt");
                if attempts > 1 {
                    if let Some(limit) = groups.iter().find_map(|g| g.limit.as_ref()) {
                        // repairs nodes whose size record is out of sync
                        limit.read(redlock).await?;
                    }
                }
                allocate::attempt(redlock, &groups, options, rounds).await
            }
        },
        |error| {
            if error.is_final() {
                Retry::GiveUp
            } else {
                Retry::After {
                    pause: pause(error, options, mode),
                    watch: watch.clone(),
                }
            }
        },
    )
    .await
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
