//! # quorate-latch
//!
//! A countdown latch over a quorum of independent Redis servers: workers in
//! any process count it down; waiters in any process return once it
//! reached zero. The count survives a minority of nodes failing.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use quorate_redlock::Redlock;
//! use quorate_latch::Latch;
//!
//! let redlock = Redlock::connect(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002",
//!                                 "redis://127.0.0.1:7003"]).await?;
//! let shards = Latch::new(&redlock, "nightly-shards", 3)?;
//! // in each of 3 workers, anywhere:
//! shards.count_down().await?;
//! // in the process that merges:
//! shards.wait(Duration::from_secs(600)).await?;
//! # Ok(()) }
//! ```
//!
//! How it works: each count-down adds an id of its own to a set on a
//! majority of nodes (with the count, which every client must agree on);
//! a read unites the sets a majority reports, so it sees every count-down
//! that succeeded. Count-downs announce themselves on the release channel,
//! which wakes waiters at once (they also read every second). Nodes that
//! lost their data refuse to answer until their quarantine ends, as for
//! locks.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
// docs.rs: mark each feature-gated item with the feature it needs
#![cfg_attr(docsrs, feature(doc_cfg))]

// The crate README's example, compiled as a doc test so that it cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod error;
mod latch;
#[cfg(all(test, feature = "memory"))]
mod twins;

pub use error::LatchError;
pub use latch::{Latch, DEFAULT_EXPIRE_AFTER};
