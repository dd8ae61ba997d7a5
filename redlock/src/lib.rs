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
//! - For primitives built on this crate: the [`raw`] module (scripts, the
//!   quorum engine, the undo guard, release watches), [`Node::eval`],
//!   [`Redlock::eval_round`], [`Redlock::adopt`], [`Redlock::undo`] and
//!   [`Redlock::watch_releases`]. See ARCHITECTURE.md in the repository.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
// docs.rs: mark each feature-gated item with the feature it needs
#![cfg_attr(docsrs, feature(doc_cfg))]

// The crate README's example, compiled as a doc test so that it cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod acquire;
mod announcements;
mod backend;
mod background;
#[cfg(feature = "blocking")]
pub mod blocking;
mod client;
mod client_state;
mod config;
mod config_error;
mod connect_error;
mod determinism;
mod error;
mod guard;
mod handoff;
mod inspect;
mod lease;
mod local_queue;
pub mod metrics;
mod mutex;
mod name_error;
mod notify_cell;
mod options;
mod owner;
mod pause;
mod queue;
mod quorum;
mod reentry;
mod release;
mod seam;
mod server_clock;
#[cfg(feature = "memory")]
mod twin_check;
mod undo;
mod verdict;
mod wait;
mod waiter;
mod watchdog;

pub use backend::holder::{Holder, OWNER_KEY_PREFIX};
pub use backend::quarantine::{DEFAULT_MAX_TTL, MARKER_KEY, QUARANTINE_KEY};
pub use backend::{FredNode, FredSettings, Node, NodeError, NodeFuture};
#[cfg(feature = "memory")]
pub use backend::{MemoryNode, MemorySnapshot};
pub use client::Redlock;
pub use config::RedlockConfig;
pub use connect_error::ConnectError;
pub use error::{ConfigError, Error, NodeOutcome, NodeReport, Outcomes};
pub use guard::{LockGuard, ReleaseOutcome};
pub use inspect::{ForceUnlocked, Inspection, NodeState, NodeView};
pub use lease::{Lease, Token};
pub use mutex::RedlockBuilder;
pub use name_error::NameError;
pub use options::{LockOptions, MAX_TTL};
pub use owner::Owner;
pub use release::Release;

/// The seam for primitive and backend authors: what quorate-pool,
/// quorate-tree and quorate-spinlock build on (see ARCHITECTURE.md, "The
/// seam for primitives"), and what a [`Node`] implementation speaks.
///
/// **Not covered by semver the way the rest of the crate is: items here may
/// change in minor versions.** Applications need none of it; the
/// [`Redlock`] methods that belong to the seam (`eval_round`, `adopt`,
/// `undo`, `watch_releases`) say so in their docs.
pub mod raw {
    pub use crate::backend::hash_slot::{hash_slot, hash_tag, shard_marker_suffix};
    pub use crate::backend::queue_protocol::{
        grant_of, queue_keys, QueueEntry, FAIR_SUFFIX, HEAD_CLAIM, WAKE_CHANNEL_PREFIX,
    };
    pub use crate::backend::{
        extend_in_groups, fence_key, AcquireReply, ExtendRequest, MemoryScript, MemoryStore,
        NodeScript, QueueGrant, Released, ScriptValue, RELEASE_CHANNEL_PREFIX,
    };
    pub use crate::lease::{drift_for, DRIFT_FLOOR};
    pub use crate::pause::{random_pause, SPLIT_SPREAD};
    pub use crate::seam::ReleaseWatch;
    #[cfg(feature = "memory")]
    pub use crate::twin_check::{
        check_keys, check_twin, check_twin_unordered, twin_nodes, TwinMismatch,
    };
    pub use crate::undo::UndoGuard;
    pub use crate::wait::{retry, Retry, WaitPolicy};

    /// Seeded randomness and clock for deterministic simulations (tests
    /// only: seeded tokens are predictable).
    pub mod determinism {
        pub use crate::determinism::{seed_thread, unseed_thread, wall_clock, with_rng};
    }

    /// The quorum engine: one request to every node at once, decided as
    /// soon as the answer is known.
    pub mod quorum {
        pub use crate::quorum::{majority, round, Decide, Reply, Round, MAX_ROUNDS_IN_FLIGHT};
        pub use crate::verdict::{no_quorum, verdict, Answer, Verdict};
    }
}

/// fred, re-exported so callers build clients with the same version.
pub use fred;
