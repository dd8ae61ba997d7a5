//! Errors: small and typed, each naming what went wrong.

use std::fmt;
use std::time::Duration;

use quorate_redlock::{Holder, NodeOutcome, Outcomes};

/// Why a spinlock call failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpinError {
    /// The key is held by someone else and the call was asked to fail at
    /// once ([`SpinOptions::fail_if_held`](crate::SpinOptions::fail_if_held),
    /// [`Spinlock::try_acquire`](crate::Spinlock::try_acquire)).
    #[error("`{key}` is held{}{}", held_by(holder.as_ref()), held_for(*remaining))]
    Held {
        /// The lock key on the nodes.
        key: String,
        /// Who holds it: the client most refusing nodes named (its id and
        /// the description it recorded); `None` when none could name one.
        holder: Option<Holder>,
        /// The holder's remaining hold time: the longest any node reported,
        /// by which the key is free unless renewed. `None` when no node
        /// reported an expiry.
        remaining: Option<Duration>,
        /// Every node's answer: which nodes hold it, and for how long.
        outcomes: Outcomes,
    },
    /// Every try failed; the last round's error says why.
    #[error("gave up on `{key}` after {tries} tries in {waited:?}: {last}")]
    TriesExhausted {
        /// The lock key on the nodes.
        key: String,
        /// The tries made: exactly the configured number.
        tries: u32,
        /// The time spent trying.
        waited: Duration,
        /// The last round's error ([`quorate_redlock::Error::Taken`] when
        /// someone held the key throughout).
        last: quorate_redlock::Error,
    },
    /// The hold time ran out while the computation of
    /// [`compute_once`](crate::Spinlock::compute_once) was still running; it
    /// was cancelled (another caller may be computing by now) and nothing
    /// was stored.
    #[error(
        "the computation for `{key}` outlived the hold time of {max_hold:?} and was cancelled"
    )]
    HoldTimeExceeded {
        /// The lock key on the nodes.
        key: String,
        /// The hold time.
        max_hold: Duration,
    },
    /// A [`Lock`](crate::Lock) call that needs the lock held (renew,
    /// release) on a lock that this handle does not hold; or an acquire on
    /// one that it already holds.
    #[error("lock `{key}` {}", if *held { "is already held by this handle" } else { "is not held by this handle" })]
    WrongState {
        /// The lock key on the nodes.
        key: String,
        /// Whether this handle held it.
        held: bool,
    },
    /// A result could not be encoded for storage, or a stored one decoded (by the
    /// [`Scheme`](crate::Scheme), or by serde with the `serde` feature).
    #[error("result under `{key}`: {reason}")]
    Codec {
        /// The result key on the nodes.
        key: String,
        /// What the encoder or decoder said.
        reason: String,
    },
    /// Bad options; nothing was sent.
    #[error("invalid spinlock options: {0}")]
    InvalidOptions(#[from] OptionsError),
    /// The quorum lock or a quorum read failed (no quorum, lost, expired…).
    #[error(transparent)]
    Lock(#[from] quorate_redlock::Error),
}

/// Which spinlock option is wrong, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// `tries(0)`: at least one round is needed.
    #[error("tries must be at least 1")]
    ZeroTries,
    /// `max_hold(Expiry::After(0))`.
    #[error("max_hold must be positive")]
    ZeroMaxHold,
    /// A result expiry below the servers' 1 ms resolution.
    #[error("result_expiry of {0:?} is below the servers' 1 ms resolution")]
    ResultExpiryTooShort(Duration),
    /// `max_hold` is not a valid lock ttl.
    #[error("max_hold: {0}")]
    MaxHold(quorate_redlock::ConfigError),
    /// Another lock option (drift factor, node timeout) is wrong.
    #[error(transparent)]
    Lock(quorate_redlock::ConfigError),
}

fn held_by(holder: Option<&Holder>) -> String {
    holder.map(|h| format!(" by {h}")).unwrap_or_default()
}

fn held_for(remaining: Option<Duration>) -> String {
    match remaining {
        Some(d) => format!(" for {} ms more", d.as_millis()),
        None => " with no expiry".to_owned(),
    }
}

impl SpinError {
    /// `Held` from a round's `Taken` outcomes.
    pub(crate) fn held(key: &str, outcomes: Outcomes) -> Self {
        let remaining = outcomes
            .0
            .iter()
            .filter_map(|r| match r.outcome {
                NodeOutcome::Taken { remaining, .. } => remaining,
                _ => None,
            })
            .max();
        SpinError::Held {
            key: key.to_owned(),
            holder: outcomes.holder().cloned(),
            remaining,
            outcomes,
        }
    }
}

/// Why [`compute_once`](crate::Spinlock::compute_once) failed: the
/// computation's own error (never cached), or the spinlock's.
#[derive(Debug)]
#[non_exhaustive]
pub enum ComputeError<E> {
    /// The computation returned this error. Nothing was stored; the next
    /// call computes again.
    Compute(E),
    /// No result could be had or made.
    Spin(SpinError),
}

impl<E> From<SpinError> for ComputeError<E> {
    fn from(e: SpinError) -> Self {
        ComputeError::Spin(e)
    }
}

impl<E: fmt::Display> fmt::Display for ComputeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComputeError::Compute(e) => write!(f, "the computation failed: {e}"),
            ComputeError::Spin(e) => e.fmt(f),
        }
    }
}

/// An error whatever the computation's error is (a `String` too), so `?`
/// works into `Box<dyn Error>`: the computation's error is in the message,
/// not repeated as a source; a spin failure's source is the spin error.
impl<E: fmt::Debug + fmt::Display> std::error::Error for ComputeError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ComputeError::Compute(_) => None,
            ComputeError::Spin(e) => Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_redlock::NodeReport;

    #[test]
    fn a_compute_error_of_a_string_is_an_error() {
        fn boxed() -> Result<(), Box<dyn std::error::Error>> {
            Err(ComputeError::<String>::Compute("upstream timed out".into()))?
        }
        let error = boxed().expect_err("an error");
        assert_eq!(
            error.to_string(),
            "the computation failed: upstream timed out"
        );
    }

    #[test]
    fn held_names_the_longest_remaining_time_and_the_majority_holder() {
        let holder = |client: &str| Holder {
            client: client.into(),
            owner: Some(format!("worker {client}")),
        };
        let taken = |node: &str, ms, client: Option<&str>| NodeReport {
            node: node.into(),
            outcome: NodeOutcome::Taken {
                resource: "k".into(),
                remaining: Some(Duration::from_millis(ms)),
                holder: client.map(holder),
            },
        };
        let error = SpinError::held(
            "k",
            Outcomes(vec![taken("a", 900, None), taken("b", 950, None)]),
        );
        assert!(matches!(
            error,
            SpinError::Held { remaining: Some(d), holder: None, .. } if d == Duration::from_millis(950)
        ));
        assert_eq!(error.to_string(), "`k` is held for 950 ms more");
        // a straggler of an older holder on one node does not outvote two
        let outcomes = Outcomes(vec![
            taken("a", 900, Some("000000000000000a")),
            taken("b", 950, Some("000000000000000b")),
            taken("c", 940, Some("000000000000000b")),
        ]);
        let error = SpinError::held("k", outcomes);
        assert_eq!(
            error.to_string(),
            "`k` is held by worker 000000000000000b [client 000000000000000b] for 950 ms more"
        );
    }
}
