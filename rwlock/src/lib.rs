//! # quorate-rwlock
//!
//! A read-write lock over a quorum of independent Redis servers: any number
//! of readers or one writer, writers preferred, every holder a lease that
//! ends at its ttl if its holder dies.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use quorate_redlock::Redlock;
//! use quorate_rwlock::RwLock;
//!
//! let redlock = Redlock::connect(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002",
//!                                 "redis://127.0.0.1:7003"]).await?;
//! let prices = RwLock::new(&redlock, "price-table")?;
//! let a = prices.read(Duration::from_secs(10)).await?;
//! let b = prices.read(Duration::from_secs(10)).await?; // readers share
//! if let Err(busy) = prices.try_write(Duration::from_secs(10)).await {
//!     println!("{busy}"); // `price-table` is taken (… reader … taken by client …)
//! }
//! a.release().await?;
//! b.release().await?;
//! let w = prices.write(Duration::from_secs(10)).await?; // alone now
//! w.release().await?;
//! # Ok(()) }
//! ```
//!
//! How it works: each server runs one atomic script per round. A reader is
//! refused while the writer key exists or a writer's intent is live;
//! otherwise it sets its own key (its token, its ttl) and adds itself to
//! the readers index. A writer is refused while the writer key or a live
//! reader exists, and then leaves an intent (which keeps new readers out);
//! otherwise it sets the writer key. An index entry is live exactly while
//! its key exists, so a release, an expiry or an extension needs no index
//! upkeep. A majority of servers must grant, as for the mutex, and the
//! guard is a quorate-redlock [`LockGuard`](quorate_redlock::LockGuard)
//! underneath (release, extend, auto-extension, lost signal). Waiters are
//! woken by the release of what blocked them.
//!
//! Metrics: quorate-redlock's `quorate_*` metrics with
//! `primitive="rwlock"` (calls by outcome, rounds, wait, hold time, locks
//! held, releases, extensions, lost locks, node errors with
//! `op="rw_acquire"`).
#![deny(missing_docs)]
#![forbid(unsafe_code)]
// docs.rs: mark each feature-gated item with the feature it needs
#![cfg_attr(docsrs, feature(doc_cfg))]

// The crate README's example, compiled as a doc test so that it cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod acquire;
mod guard;
mod keys;
mod rwlock;
#[cfg(all(test, feature = "memory"))]
mod twins;

pub use acquire::Access;
pub use guard::RwLockGuard;
pub use quorate_redlock::NameError;
pub use rwlock::RwLock;
