//! How long a blocked lock call waits before its next round.

use std::time::Duration;

use quorate_redlock::{LockOptions, NodeOutcome};
use rand::Rng;

use crate::error::TreeError;

/// The longest random pause after a split vote: contenders that were each
/// granted some nodes spread out over it, so one usually wins next time.
pub(crate) const SPREAD: Duration = Duration::from_millis(4);

pub(crate) fn random_up_to(max: Duration) -> Duration {
    if max.is_zero() {
        Duration::ZERO
    } else {
        rand::rng().random_range(Duration::ZERO..=max)
    }
}

/// The base delay plus uniform jitter, cut short when the blocking lock
/// expires sooner (the longest reported remaining ttl bounds when a
/// majority is free of it). After a split vote (some nodes granted us,
/// others refused; the grants were undone) only a short random spread.
pub(crate) fn delay(options: &LockOptions, error: &TreeError) -> Duration {
    let outcomes = error.outcomes().map(|o| o.0.as_slice()).unwrap_or_default();
    let granted = outcomes.iter().any(|r| r.outcome == NodeOutcome::Granted);
    let taken = outcomes
        .iter()
        .filter_map(|r| match r.outcome {
            NodeOutcome::Taken { remaining, .. } => Some(remaining),
            _ => None,
        })
        .collect::<Vec<_>>();
    if granted && !taken.is_empty() {
        return random_up_to(options.get_retry_jitter().min(SPREAD));
    }
    let delay = options.get_retry_delay() + random_up_to(options.get_retry_jitter());
    match taken.iter().flatten().max() {
        Some(expires) => delay.min(*expires + Duration::from_millis(1)),
        None => delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Conflict, Relation};
    use crate::TreePath;
    use quorate_redlock::{NodeReport, Outcomes};

    fn blocked(outcomes: Vec<NodeOutcome>) -> TreeError {
        let path = TreePath::new(["A"]).expect("path");
        TreeError::Conflict {
            conflict: Conflict {
                path: path.clone(),
                relation: Relation::Same,
                remaining: None,
                owner: None,
            },
            path,
            outcomes: Outcomes(
                outcomes
                    .into_iter()
                    .map(|outcome| NodeReport {
                        node: "n".into(),
                        outcome,
                    })
                    .collect(),
            ),
        }
    }

    fn taken(ms: u64) -> NodeOutcome {
        NodeOutcome::Taken {
            resource: "self [\"A\"]".into(),
            remaining: Some(Duration::from_millis(ms)),
        }
    }

    #[test]
    fn the_blocking_locks_ttl_cuts_the_delay() {
        let options = LockOptions::new()
            .retry_delay(Duration::from_millis(100))
            .retry_jitter(Duration::ZERO);
        assert_eq!(
            delay(&options, &blocked(vec![taken(3), taken(5)])),
            Duration::from_millis(6)
        );
        assert_eq!(
            delay(&options, &blocked(vec![taken(500)])),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn a_split_vote_waits_only_a_short_spread() {
        let options = LockOptions::new().retry_jitter(Duration::from_millis(50));
        for _ in 0..50 {
            let d = delay(&options, &blocked(vec![taken(5000), NodeOutcome::Granted]));
            assert!(d <= SPREAD);
        }
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let options = LockOptions::new()
            .retry_delay(Duration::from_millis(10))
            .retry_jitter(Duration::from_millis(5));
        for _ in 0..200 {
            let d = delay(&options, &TreeError::Lock(quorate_redlock::Error::Expired));
            assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(15));
        }
    }
}
