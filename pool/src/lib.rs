//! # quorate-pool
//!
//! "k of these n named resources" across a quorum of independent Redis
//! servers, plus the two primitives built from it: a counting semaphore and
//! a rate limit.
//!
//! - [`Pool`]: a request is several [`Requirement`]s ("2 of these 8
//!   devices", "that printer", a plain key) granted all-or-nothing. The
//!   [`PoolGuard`] hands back the caller's own candidate values, indexable
//!   per requirement and position (`grant[0][1]`).
//! - [`Semaphore`]: N permits, `acquire(k)` / `try_acquire(k)`; a pool of N
//!   slot keys, never a per-node counter.
//! - [`RateLimit`]: at most N grants in any window W (down to tens of
//!   milliseconds); `acquire` waits, `try_acquire` says how long to wait.
//! - [`Usage`]: resource_locker's reporter: per resource and per tag,
//!   requests, acquisitions, wait and hold times, in the `metrics` facade
//!   and queryable from the nodes.
//!
//! How a request is granted: every node runs one atomic script that takes
//! up to k candidates of each requirement in the request's order (a fresh
//! random order per attempt unless [`CandidateOrder::AsGiven`]). A
//! candidate counts as held only when a majority of nodes granted it to
//! this request; extras go back at once and up to two more rounds top up a
//! shortfall. If the request is still short, everything is released and
//! the client backs off with jitter (or sleeps until the holders' ttls run
//! out, whichever is sooner), so two clients never sit on half of what both
//! need. Each granted candidate is then an ordinary quorate-redlock lease:
//! extension, auto-extension and the lost signal are the mutex's.
//!
//! Runs on Redis-protocol servers (Lua scripts in `scripts/`) and on
//! [`MemoryNode`](quorate_redlock::MemoryNode)s, which run each script's
//! native twin (the same test scenarios run on both). Waiters are woken by
//! release announcements of the candidates and otherwise poll (the retry
//! delay, cut short by the holders' ttls); the tasks of one process making
//! the same request take turns.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use quorate_pool::{Pool, Requirement};
//! use quorate_redlock::Redlock;
//!
//! #[derive(Debug)]
//! struct Device { id: String, model: String }
//! let devices: Vec<Device> = vec![/* discovered */];
//! let redlock = Redlock::connect(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002",
//!                                 "redis://127.0.0.1:7003"]).await?;
//! let pool = Pool::new(&redlock, "lab")?;
//! let two = Requirement::need(2, devices, |d| d.id.clone());
//! let grant = pool.acquire(vec![two], Duration::from_secs(60)).await?;
//! println!("{:?} and {:?}", grant[0][0], grant[0][1]);
//! grant.release().await?;
//! # Ok(()) }
//! ```
//!
//! Metrics (`metrics` facade): `quorate_pool_grants_total{pool,outcome}`,
//! `quorate_pool_rate_grants_total{limit}`, and with usage reporting
//! `quorate_pool_requests_total`, `quorate_pool_acquisitions_total`,
//! `quorate_pool_releases_total`, `quorate_pool_wait_seconds`,
//! `quorate_pool_hold_seconds` (labels `pool`, `tag`, `value`); the
//! per-lock `quorate_*` metrics of quorate-redlock with `primitive` =
//! `pool`, `semaphore` or `rate_limit`.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
// docs.rs: mark each feature-gated item with the feature it needs
#![cfg_attr(docsrs, feature(doc_cfg))]

// The crate README's example, compiled as a doc test so that it cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod allocate;
mod error;
mod pool;
mod rate_limit;
mod requirement;
mod retry;
mod semaphore;
mod size;
#[cfg(test)]
mod twins;
mod usage;

pub use error::{PoolError, RequestError};
pub use pool::{Pool, PoolGuard};
pub use rate_limit::RateLimit;
pub use requirement::{CandidateOrder, Requirement, Tags};
pub use semaphore::{PermitId, Semaphore, SemaphoreGuard};
pub use usage::{Usage, UsageError, UsageFigures};
