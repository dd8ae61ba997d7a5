//! # quorate-tree
//!
//! Locks on the nodes of a tree-shaped resource (datacenter → rack → host,
//! account → project → file), over a quorum of independent Redis servers.
//! A node is named by its path from the root, `["A", "B", "D"]`; locking it
//! conflicts with a lock on the node itself, on any ancestor (`["A"]`) or on
//! any descendant (`["A", "B", "D", "E"]`). Siblings and cousins are
//! independent. The Rust counterpart of Python's mutextree, on Redlock.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use quorate_redlock::Redlock;
//! use quorate_tree::{TreeError, TreeLock};
//!
//! let redlock = Redlock::connect(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002",
//!                                 "redis://127.0.0.1:7003"]).await?;
//! let tree = TreeLock::new(&redlock, "datacenter")?;
//! let rack = tree.lock(["dc1", "rack4"], Duration::from_secs(10)).await?;
//! match tree.try_lock(["dc1"], Duration::from_secs(10)).await {
//!     Err(TreeError::Conflict { conflict, .. }) => println!("{conflict}"), // its descendant ["dc1", "rack4"] is locked ...
//!     other => unreachable!("{other:?}"),
//! }
//! rack.release().await?;
//! # Ok(()) }
//! ```
//!
//! How it works: each server runs one atomic script per acquisition. It
//! refuses if the node's lock key or an ancestor's exists, or if the
//! node's index of locked descendants holds a live entry; otherwise it sets
//! the node's lock key (the token, with the ttl) and adds the node to every
//! ancestor's index. An index entry is live exactly while its lock key
//! exists, so it expires with the lock, ends with the release and lasts
//! through extensions. The guard is a quorate-redlock
//! [`LockGuard`](quorate_redlock::LockGuard) underneath (release, extend,
//! auto-extension, lost signal).
//!
//! The pieces:
//! - [`TreeLock`]: `lock`, `try_lock`, `lock_with`, `run` / `run_with`
//!   (the scoped form), `conflict` (what blocks a path, locking nothing).
//! - [`TreeGuard`]: `release`, `extend`, `refresh`, `remaining`, `lost`,
//!   `owner`.
//! - [`TreePath`]: byte-string segments, escaped in keys; limits
//!   [`MAX_DEPTH`], [`MAX_SEGMENT_LEN`], [`MAX_PATH_LEN`].
//! - [`TreeError`]: [`Conflict`] (path, [`Relation`], remaining ttl, owner),
//!   invalid input, or quorate-redlock's [`Error`](quorate_redlock::Error).
//! - [`metrics`]: the `quorate_tree_*` metric names.
//!
//! Requirements: servers that run Lua with `HRANDFIELD` (Redis ≥ 6.2,
//! Valkey), or [`MemoryNode`](quorate_redlock::MemoryNode)s, which run the
//! script's native twin.
//! All keys of a tree share the hash tag `{<escaped tree name>}`, so on a
//! Redis Cluster node they live in one slot (the script also reads
//! descendants' lock keys found in an index: same slot, not listed in
//! `KEYS`; Redis Cluster is not exercised by this crate's tests). Use a
//! `noeviction` memory policy: an evicted index entry would let an
//! ancestor be locked over a live descendant.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
// docs.rs: mark each feature-gated item with the feature it needs
#![cfg_attr(docsrs, feature(doc_cfg))]

// The crate README's example, compiled as a doc test so that it cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod acquire;
mod error;
mod guard;
mod keys;
pub mod metrics;
mod options;
mod path;
mod tree_lock;
#[cfg(test)]
mod twins;

pub use error::{Conflict, Relation, TreeError};
pub use guard::TreeGuard;
pub use keys::MAX_TREE_NAME_LEN;
pub use options::{TreeLockOptions, MAX_OWNER_LEN};
pub use path::{IntoTreePath, PathError, TreePath, MAX_DEPTH, MAX_PATH_LEN, MAX_SEGMENT_LEN};
pub use tree_lock::TreeLock;
