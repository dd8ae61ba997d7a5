//! # quorate-spinlock
//!
//! Bounded-retry locks and a distributed single-flight on the Redlock
//! quorum of [`quorate_redlock`]: the Rust counterpart of py-dspinlock and
//! sherlock, where the loss of a minority of servers changes nothing.
//!
//! - [`Spinlock::acquire`]: at most [`tries`](SpinOptions::tries) rounds,
//!   [`sleep`](SpinOptions::sleep) (+ optional jitter) apart, woken early by
//!   a release; the lock frees itself after [`max_hold`](SpinOptions::max_hold).
//!   [`Spinlock::try_acquire`] and [`fail_if_held`](SpinOptions::fail_if_held)
//!   fail at once with [`SpinError::Held`], naming the holder's remaining time.
//! - [`Spinlock::compute_once`]: the first caller computes, the result is
//!   stored (bytes; serde types with the `serde` feature) with its own
//!   [`result_expiry`](SpinOptions::result_expiry), and every concurrent or
//!   later caller gets the stored result. Errors are not stored; a holder
//!   that dies is taken over after the hold time.
//! - Keys: strings and bytes directly, structured values through
//!   [`StableHash`] (SHA-256 over a documented canonical encoding):
//!   [`SpinKey`]. Key derivation, stored tag and value decoding are the
//!   [`Scheme`] trait's, with defaults.
//! - sherlock's shape: [`Lock`] with `acquire`, `try_acquire`, `locked`,
//!   `renew`, `release`; no-expiry locks only with [`Expiry::Never`].
//! - tracing spans (`quorate.spinlock.*`) and [`metrics`] (`quorate_spinlock_*`).
//!
//! `locked` and `compute_once` run Lua scripts (in `scripts/`) on
//! Redis-protocol servers, and their native twins on redlock's in-memory
//! nodes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use quorate_redlock::Redlock;
//! use quorate_spinlock::{SpinKey, SpinOptions, Spinlock};
//!
//! let redlock = Redlock::connect(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002",
//!                                 "redis://127.0.0.1:7003"]).await?;
//! let spin = Spinlock::new(&redlock, SpinOptions::new())?;
//! let answer = spin
//!     .compute_once(SpinKey::hashed(&("report", 2024u32)), || async { Ok::<_, std::io::Error>(b"42".to_vec()) })
//!     .await?;
//! assert_eq!(answer, b"42");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]
// docs.rs: mark each feature-gated item with the feature it needs
#![cfg_attr(docsrs, feature(doc_cfg))]

// The crate README's example, compiled as a doc test so that it cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod error;
mod key;
mod lock;
pub mod metrics;
mod options;
mod scheme;
#[cfg(feature = "serde")]
mod serde_support;
mod single_flight;
mod spinlock;
pub mod stable_hash;
#[cfg(test)]
mod twins;

pub use error::{ComputeError, OptionsError, SpinError};
pub use key::SpinKey;
pub use lock::Lock;
pub use options::{Expiry, SpinOptions};
pub use scheme::{DefaultScheme, Scheme, DEFAULT_PREFIX, DEFAULT_TAG};
pub use spinlock::Spinlock;
pub use stable_hash::{stable_hash, Bytes, StableHash, StableHasher};
