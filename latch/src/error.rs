//! What can go wrong with a latch.

use std::time::Duration;

/// Why a latch call failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LatchError {
    /// The name is empty or contains a brace (names become hash tags).
    #[error(transparent)]
    Name(#[from] quorate_redlock::NameError),
    /// A count of 0: the latch would be open from the start.
    #[error("a latch needs a count of at least 1")]
    ZeroCount,
    /// A lifetime of zero or above quorate's maximum ttl.
    #[error("latch lifetime {0:?} must be positive and at most one year")]
    BadExpiry(Duration),
    /// A node has another count for this latch name: every client must use
    /// the same count.
    #[error("latch `{name}` has a count of {theirs} on the nodes, not {ours}: every client must use the same count")]
    CountMismatch {
        /// The latch.
        name: String,
        /// The count this client was given.
        ours: u64,
        /// The count a node has.
        theirs: String,
    },
    /// `wait` ran out of time with count-downs still missing.
    #[error("latch `{name}` is still closed: {remaining} count-downs missing")]
    TimedOut {
        /// The latch.
        name: String,
        /// Count-downs still needed at the last read.
        remaining: u64,
    },
    /// Too few nodes answered (`Error::NoQuorum`, naming each node).
    #[error(transparent)]
    Lock(#[from] quorate_redlock::Error),
}
