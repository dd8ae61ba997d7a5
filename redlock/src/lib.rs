//! # quorate-redlock
//!
//! The Redlock quorum mutex over N independent Redis-protocol servers, on a
//! clock-drift-aware [`Lease`]. A lock is granted when a majority of nodes
//! grant it while validity remains; a minority of dead, stalled or
//! partitioned nodes changes nothing for the caller.
//!
//! ```no_run
//! # async fn demo() -> Result<(), quorate_redlock::Error> {
//! use std::time::Duration;
//! use quorate_redlock::Redlock;
//!
//! let redlock = Redlock::connect(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002",
//!                                 "redis://127.0.0.1:7003"]).await?;
//! let guard = redlock.lock("invoice:42", Duration::from_secs(5)).await?;
//! assert!(guard.remaining() > Duration::ZERO);
//! guard.release().await?;
//! # Ok(()) }
//! ```
//!
//! The pieces:
//! - [`Redlock`]: `lock`, `try_lock`, `lock_with` (options, several
//!   resources all-or-nothing), `run` (a future that runs only while the
//!   lock is held); built from URLs, own fred clients or any [`Node`].
//!   Waiters queue on the servers per resource; a release passes the lock
//!   to the queue's head and wakes only its process (first-come-first-
//!   served across processes with [`LockOptions::fair`]).
//! - [`LockGuard`]: `release`, `extend`, `remaining`, `lost`; dropping it
//!   spawns a release. With [`LockOptions::auto_extend`] a watchdog keeps
//!   it alive (one batched request per node per tick for all locks).
//! - Fencing tokens with [`LockOptions::fencing`]: [`Lease::fence`].
//! - [`Lease`]: validity = ttl − elapsed − (ttl × drift_factor + 2 ms).
//! - [`Error`]: `Taken`, `NoQuorum` (with every node's [`NodeOutcome`]),
//!   `InvalidConfig`, `Expired`, `Lost`.
//! - Backends: [`FredNode`] (real servers) and [`MemoryNode`] (in-process).
//! - [`metrics`]: the `quorate_*` metric names.
//! - For primitives built on this crate: [`NodeScript`] and [`Node::eval`],
//!   [`Redlock::eval_round`], [`Redlock::adopt`], [`Redlock::undo`], [`Redlock::watch_releases`] and the
//!   [`quorum`] engine.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod acquire;
mod backend;
mod error;
mod extension;
mod guard;
mod handoff;
mod lease;
mod local_queue;
pub mod metrics;
mod mutex;
mod notify;
mod options;
mod pause;
mod quarantine;
mod queue;
pub mod quorum;
mod watchdog;

pub use backend::{
    fence_key, AcquireReply, ExtendRequest, FredNode, FredSettings, MemoryNode, MemoryScript,
    MemoryStore, Node, NodeError, NodeFuture, NodeScript, Released, ScriptValue,
    RELEASE_CHANNEL_PREFIX,
};
pub use error::{ConfigError, Error, NodeOutcome, NodeReport, Outcomes};
pub use extension::ReleaseWatch;
pub use guard::{LockGuard, ReleaseOutcome};
pub use lease::{drift_for, Lease, Token, DRIFT_FLOOR};
pub use mutex::{Redlock, RedlockBuilder};
pub use options::{LockOptions, MAX_TTL};
pub use pause::{random_pause, SPLIT_SPREAD};
pub use quarantine::{DEFAULT_MAX_TTL, MARKER_KEY, QUARANTINE_KEY};
pub use queue::{queue_keys, QueueEntry, HEAD_CLAIM, WAKE_CHANNEL_PREFIX};

/// fred, re-exported so callers build clients with the same version.
pub use fred;
