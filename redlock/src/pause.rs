//! The pauses between attempts: jittered retry delays cut short by the
//! holder's ttl, short spreads after split votes and release announcements.
//! Shared by the mutex and the primitives built on it.

use std::time::Duration;

use rand::Rng;

use crate::error::{NodeOutcome, Outcomes};
use crate::options::LockOptions;

/// The longest random pause after a split vote or a release announcement.
/// Contenders that woke together spread out over it, so the first one
/// usually takes every node before the others ask (a round trip on a LAN is
/// well under a millisecond).
pub const SPLIT_SPREAD: Duration = Duration::from_millis(4);

/// A uniform random pause in `0..=max`: retry jitter, and spreads that keep
/// contenders woken together from asking at the same instant.
pub fn random_pause(max: Duration) -> Duration {
    if max.is_zero() {
        Duration::ZERO
    } else {
        crate::determinism::with_rng(|rng| rng.random_range(Duration::ZERO..=max))
    }
}

/// How long a queued waiter sleeps unless woken (see `queue.rs`): until
/// its entry needs a refresh (a third of the waiter ttl); the head of a
/// queue also wakes when the holder's lock expires (a holder that died
/// announces nothing). After a split vote, only a short spread.
pub(crate) fn queued_pause(
    options: &LockOptions,
    outcomes: Option<&Outcomes>,
    at_head: bool,
) -> Duration {
    if is_split(outcomes) {
        return random_pause(options.get_retry_jitter().min(SPLIT_SPREAD));
    }
    let refresh = options.get_waiter_ttl() / 3;
    match holder_expires(outcomes) {
        Some(expires) if at_head => refresh.min(expires),
        _ => refresh,
    }
}

/// Some nodes granted us, others refused (the grants were undone).
fn is_split(outcomes: Option<&Outcomes>) -> bool {
    outcomes.is_some_and(|o| {
        !o.nodes_where(|n| *n == NodeOutcome::Granted).is_empty()
            && !o
                .nodes_where(|n| matches!(n, NodeOutcome::Taken { .. }))
                .is_empty()
    })
}

impl LockOptions {
    /// The pause before the next attempt, from the refused attempt's
    /// per-node `outcomes`: the retry delay plus uniform jitter, cut short
    /// when the holder's lock expires sooner. After a split vote (some nodes
    /// granted us, others refused; the grants were undone) nobody will
    /// announce a release, so only a short random spread.
    ///
    /// ```
    /// use std::time::Duration;
    /// use quorate_redlock::LockOptions;
    /// let options = LockOptions::new().retry_jitter(Duration::ZERO);
    /// assert_eq!(options.retry_pause(None), options.get_retry_delay());
    /// ```
    pub fn retry_pause(&self, outcomes: Option<&Outcomes>) -> Duration {
        if is_split(outcomes) {
            return random_pause(self.get_retry_jitter().min(SPLIT_SPREAD));
        }
        let delay = self.get_retry_delay() + random_pause(self.get_retry_jitter());
        match holder_expires(outcomes) {
            Some(expires) => delay.min(expires),
            None => delay,
        }
    }
}

/// When the holder's lock is free: the lock is free once a majority
/// expired, and the longest of the reported ttls (plus 1 ms) is a safe
/// upper bound on that.
fn holder_expires(outcomes: Option<&Outcomes>) -> Option<Duration> {
    outcomes.and_then(|o| {
        o.0.iter()
            .filter_map(|r| match r.outcome {
                NodeOutcome::Taken { remaining, .. } => remaining,
                _ => None,
            })
            .max()
            .map(|expires| expires + Duration::from_millis(1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, NodeReport};

    #[test]
    fn the_retry_pause_is_cut_by_the_holders_ttl() {
        let options = LockOptions::new()
            .retry_delay(Duration::from_millis(100))
            .retry_jitter(Duration::ZERO);
        let taken = |ms| NodeReport {
            node: "n".into(),
            outcome: NodeOutcome::Taken {
                resource: "r".into(),
                remaining: Some(Duration::from_millis(ms)),
                holder: None,
            },
        };
        let error = Error::Taken {
            resource: "r".into(),
            outcomes: Outcomes(vec![taken(3), taken(5)]),
        };
        assert_eq!(
            options.retry_pause(error.outcomes()),
            Duration::from_millis(6)
        );
        // a split vote: short random spread, not the full delay
        let split = Error::Taken {
            resource: "r".into(),
            outcomes: Outcomes(vec![
                taken(5000),
                NodeReport {
                    node: "m".into(),
                    outcome: NodeOutcome::Granted,
                },
            ]),
        };
        let jittery = options.clone().retry_jitter(Duration::from_millis(50));
        for _ in 0..50 {
            assert!(jittery.retry_pause(split.outcomes()) <= SPLIT_SPREAD);
        }
        assert_eq!(options.retry_pause(None), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let options = LockOptions::new()
            .retry_delay(Duration::from_millis(10))
            .retry_jitter(Duration::from_millis(5));
        for _ in 0..200 {
            let d = options.retry_pause(None);
            assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(15));
        }
    }
}
