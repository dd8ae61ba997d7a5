//! Errors of pool requests, semaphores and rate limits.

use std::time::Duration;

use quorate_redlock::{ConfigError, Holder, Outcomes};

/// A request that cannot be made, whatever the servers say.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No requirement at all.
    #[error("the request has no requirement")]
    NoRequirements,
    /// A requirement without candidates (an empty pool).
    #[error("requirement #{requirement} has no candidates (empty pool)")]
    NoCandidates {
        /// Index of the requirement.
        requirement: usize,
    },
    /// `need` is 0.
    #[error("requirement #{requirement} needs 0 candidates: ask for at least 1")]
    NeedZero {
        /// Index of the requirement.
        requirement: usize,
    },
    /// More needed than there are candidates.
    #[error("requirement #{requirement} needs {need} but has only {candidates} candidates")]
    NeedTooMany {
        /// Index of the requirement.
        requirement: usize,
        /// What it needs.
        need: usize,
        /// How many candidates it has.
        candidates: usize,
    },
    /// A candidate's key is empty.
    #[error("candidate #{position} of requirement #{requirement} has an empty key")]
    EmptyKey {
        /// Index of the requirement.
        requirement: usize,
        /// Index of the candidate within it.
        position: usize,
    },
    /// The same key twice in one request.
    #[error("key `{key}` appears twice in one request: keys must be unique")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// A semaphore or rate limit of 0 permits.
    #[error("`{name}` has 0 permits: give at least 1")]
    ZeroPermits {
        /// The semaphore's or rate limit's name.
        name: String,
    },
    /// A pool's, semaphore's or rate limit's name that cannot be used.
    #[error(transparent)]
    Name(#[from] quorate_redlock::NameError),
    /// A rate-limit window of zero.
    #[error("the rate-limit window must be positive")]
    ZeroWindow,
    /// `set_permits` or `add_permits` on a semaphore made with
    /// `Semaphore::new` (fixed); make it with `Semaphore::resizable`.
    #[error("semaphore `{name}` has a fixed number of permits: make it with Semaphore::resizable")]
    NotResizable {
        /// The semaphore.
        name: String,
    },
    /// A permit id of another semaphore.
    #[error("the permit id is of semaphore `{theirs}`, not `{ours}`")]
    WrongSemaphore {
        /// This semaphore.
        ours: String,
        /// The id's semaphore.
        theirs: String,
    },
    /// Text that is not a permit id (`semaphore/slot/token`).
    #[error("`{0}` is not a permit id (semaphore/slot/32 hex digits)")]
    BadPermitId(String),
    /// A permit slot outside `0..permits`.
    #[error("permit {slot} does not exist: the semaphore has permits 0..{permits}")]
    NoSuchPermit {
        /// The slot asked for.
        slot: usize,
        /// The semaphore's permits.
        permits: usize,
    },
}

/// Why a pool request, semaphore acquire or rate-limit grant failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The request itself is wrong.
    #[error("invalid request: {0}")]
    InvalidRequest(#[from] RequestError),
    /// The options are wrong (ttl, drift factor, node timeout).
    #[error("invalid configuration: {0}")]
    InvalidConfig(#[from] ConfigError),
    /// Too few candidates of requirement `requirement` could be held by a
    /// majority: the others are taken. Nothing is held.
    #[error(
        "requirement #{requirement} needs {need}, only {held} could be held by a majority{}; nothing is held ({outcomes})",
        retry_hint(*retry_after)
    )]
    Unavailable {
        /// Index of the first requirement that fell short.
        requirement: usize,
        /// What it needs.
        need: usize,
        /// How many of its candidates a majority granted.
        held: usize,
        /// When enough of its taken candidates expire on a majority, from
        /// their holders' remaining ttls (`None`: held without expiry).
        /// Releases can free them sooner.
        retry_after: Option<Duration>,
        /// Every node's answer in the last round.
        outcomes: Outcomes,
    },
    /// A resizable semaphore's number of permits is unknown: too few of
    /// the nodes that answered kept it since their last restart (a node
    /// that restarts may have lost a `set_permits`). Nothing is granted
    /// until a `set_permits` sets it again on a majority.
    #[error(
        "the number of permits of semaphore `{name}` is unknown: {in_sync} of the nodes that answered kept it, {quorum} needed (restarted since it was set: {restarted}); call set_permits to set it again"
    )]
    SizeUnknown {
        /// The semaphore.
        name: String,
        /// How many nodes answered with the number kept in sync.
        in_sync: usize,
        /// How many are needed.
        quorum: usize,
        /// The nodes that answered but restarted since the number was set.
        restarted: String,
    },
    /// A quorum-level failure: too few nodes answered
    /// ([`Error::NoQuorum`](quorate_redlock::Error::NoQuorum), `granted`
    /// counting the nodes that answered), the grant came too late to be
    /// valid ([`Error::Expired`](quorate_redlock::Error::Expired); nothing is
    /// held), or an extend or release of a held grant failed.
    #[error(transparent)]
    Lock(#[from] quorate_redlock::Error),
}

impl PoolError {
    /// Bad input or options: no wait or retry changes the answer.
    pub(crate) fn is_final(&self) -> bool {
        matches!(
            self,
            PoolError::InvalidConfig(_) | PoolError::InvalidRequest(_)
        )
    }

    /// Who holds what was in the way, for [`Unavailable`](Self::Unavailable):
    /// the client most nodes named for the first candidate each found
    /// taken ([`Outcomes::holder`]).
    pub fn holder(&self) -> Option<&Holder> {
        match self {
            PoolError::Unavailable { outcomes, .. } => outcomes.holder(),
            PoolError::Lock(error) => error.holder(),
            _ => None,
        }
    }

    /// How long to wait before a retry can succeed, when known: the
    /// [`Unavailable`](Self::Unavailable) `retry_after`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PoolError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

fn retry_hint(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(wait) => format!(" (enough free in {} ms)", wait.as_millis()),
        None => " (held without expiry)".to_owned(),
    }
}
