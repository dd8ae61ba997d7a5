//! sherlock's API shape: one lock object with blocking and non-blocking
//! acquire, `locked`, `renew` and `release`.

use std::time::Duration;

use quorate_redlock::{LockGuard, ReleaseOutcome};

use crate::error::SpinError;
use crate::spinlock::Spinlock;

/// A lock on one key, in the shape of sherlock's (and Python's
/// `threading.Lock`): acquire and release on the same object. Made by
/// [`Spinlock::lock`]. Dropping it while acquired releases the lock
/// (spawned, never blocking).
///
/// ```no_run
/// # async fn demo(spin: quorate_spinlock::Spinlock) -> Result<(), quorate_spinlock::SpinError> {
/// let mut lock = spin.lock("my_lock");
/// lock.acquire().await?;          // blocking: spins up to `tries`
/// assert!(lock.locked().await?);  // held by anyone?
/// lock.renew().await?;            // another max_hold from now
/// lock.release().await?;
/// assert!(!lock.try_acquire().await? || lock.release().await.is_ok());
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a lock handle does nothing until acquired"]
pub struct Lock {
    spin: Spinlock,
    key: String,
    guard: Option<LockGuard>,
}

impl Lock {
    pub(crate) fn new(spin: Spinlock, key: String) -> Self {
        Lock {
            spin,
            key,
            guard: None,
        }
    }

    /// The lock key on the nodes.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether this handle holds the lock (and its hold time has not run out).
    pub fn is_acquired(&self) -> bool {
        self.guard.as_ref().is_some_and(LockGuard::is_valid)
    }

    /// The hold time left, when this handle holds the lock.
    pub fn remaining(&self) -> Option<Duration> {
        self.guard.as_ref().map(LockGuard::remaining)
    }

    /// Blocking acquire, as [`Spinlock::acquire`]: at most `tries` rounds
    /// (or one, with `fail_if_held`).
    ///
    /// Errors: as [`Spinlock::acquire`]; [`SpinError::WrongState`] when this
    /// handle already holds it (a hold whose time ran out does not count).
    ///
    /// # Cancel safety
    /// Cancel safe, as [`Spinlock::acquire`].
    ///
    /// ```no_run
    /// # async fn demo(spin: quorate_spinlock::Spinlock) -> Result<(), quorate_spinlock::SpinError> {
    /// let mut lock = spin.lock("my_lock");
    /// lock.acquire().await?;
    /// # Ok(()) }
    /// ```
    pub async fn acquire(&mut self) -> Result<(), SpinError> {
        self.expect_held(false)?;
        self.guard = Some(self.spin.acquire_key(&self.key).await?);
        Ok(())
    }

    /// Non-blocking acquire: one round; `Ok(false)` when someone else holds
    /// the key.
    ///
    /// Errors: [`SpinError::Lock`] when too few nodes answered;
    /// [`SpinError::WrongState`] when this handle already holds it.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`Spinlock::try_acquire`].
    ///
    /// ```no_run
    /// # async fn demo(spin: quorate_spinlock::Spinlock) -> Result<(), quorate_spinlock::SpinError> {
    /// let mut lock = spin.lock("my_lock");
    /// if !lock.try_acquire().await? {
    ///     println!("busy");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn try_acquire(&mut self) -> Result<bool, SpinError> {
        self.expect_held(false)?;
        match self.spin.try_key(&self.key).await {
            Ok(guard) => {
                self.guard = Some(guard);
                Ok(true)
            }
            Err(SpinError::Held { .. }) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// Whether anyone (this handle or another) holds the key: a quorum read,
    /// as [`Spinlock::locked`].
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    ///
    /// ```no_run
    /// # async fn demo(lock: quorate_spinlock::Lock) -> Result<(), quorate_spinlock::SpinError> {
    /// println!("held: {}", lock.locked().await?);
    /// # Ok(()) }
    /// ```
    pub async fn locked(&self) -> Result<bool, SpinError> {
        self.spin.locked_key(&self.key).await
    }

    /// Resets the hold time to the full [`max_hold`](crate::SpinOptions::max_hold)
    /// from now, on the nodes that still hold our token.
    ///
    /// Errors: [`SpinError::WrongState`] when not held;
    /// [`SpinError::Lock`] with `Expired` (the hold time had run out),
    /// `Lost` or `NoQuorum`.
    ///
    /// # Cancel safety
    /// Cancel safe: if dropped mid-flight, the validity is the earlier of the
    /// old one and the new hold counted from the call's start (never longer).
    ///
    /// ```no_run
    /// # async fn demo(mut lock: quorate_spinlock::Lock) -> Result<(), quorate_spinlock::SpinError> {
    /// lock.renew().await?;
    /// # Ok(()) }
    /// ```
    pub async fn renew(&mut self) -> Result<(), SpinError> {
        self.expect_held(true)?;
        let ttl = self.spin.options.hold_ttl();
        match self.guard.as_mut() {
            Some(guard) => Ok(guard.extend(ttl).await?),
            None => Err(self.wrong_state(false)),
        }
    }

    /// Releases the lock (compare-and-delete: another holder's key is never
    /// touched). [`ReleaseOutcome::NotHeld`] when the hold time had run out.
    ///
    /// Errors: [`SpinError::WrongState`] when this handle does not hold it;
    /// [`SpinError::Lock`] with `NoQuorum` (the key then expires with its
    /// hold time).
    ///
    /// # Cancel safety
    /// Cancel safe: if dropped mid-flight the release is spawned again.
    ///
    /// ```no_run
    /// # async fn demo(mut lock: quorate_spinlock::Lock) -> Result<(), quorate_spinlock::SpinError> {
    /// lock.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn release(&mut self) -> Result<ReleaseOutcome, SpinError> {
        match self.guard.take() {
            Some(guard) => Ok(guard.release().await?),
            None => Err(self.wrong_state(false)),
        }
    }

    fn expect_held(&mut self, held: bool) -> Result<(), SpinError> {
        if !held && !self.is_acquired() {
            // A hold that ran out is gone on the servers: acquire anew.
            self.guard = None;
        }
        match self.guard.is_some() == held {
            true => Ok(()),
            false => Err(self.wrong_state(!held)),
        }
    }

    fn wrong_state(&self, held: bool) -> SpinError {
        SpinError::WrongState {
            key: self.key.clone(),
            held,
        }
    }
}
