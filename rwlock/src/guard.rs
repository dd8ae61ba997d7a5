//! The guard of a read or write lock.

use std::time::Duration;

use quorate_redlock::{Error, Lease, LockGuard, ReleaseOutcome};

use crate::acquire::Access;

/// A read or write lock held. Release it with [`release`](Self::release);
/// dropping it spawns a best-effort release instead (never blocks).
/// Extension, release, auto-extension and the lost signal are
/// quorate-redlock's [`LockGuard`]'s: a reader's key and the writer key hold
/// the token like a mutex key, and a reader's entry in the readers index
/// lives exactly as long as its key.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct RwLockGuard {
    guard: LockGuard,
    access: Access,
}

impl RwLockGuard {
    pub(crate) fn new(guard: LockGuard, access: Access) -> Self {
        RwLockGuard { guard, access }
    }

    /// Read or write.
    pub fn access(&self) -> Access {
        self.access
    }

    /// The current lease (token, ttl, validity).
    pub fn lease(&self) -> Lease {
        self.guard.lease()
    }

    /// The validity left; act under the lock only while this is positive.
    pub fn remaining(&self) -> Duration {
        self.guard.remaining()
    }

    /// Whether validity is left.
    pub fn is_valid(&self) -> bool {
        self.guard.is_valid()
    }

    /// Resets the lock's ttl to `ttl` wherever it is still ours.
    ///
    /// Errors: [`Error::Expired`] when the lease ran out first,
    /// [`Error::Lost`] when a majority no longer holds it,
    /// [`Error::NoQuorum`] when too few nodes answered.
    ///
    /// # Cancel safety
    /// Cancel safe: if dropped mid-flight, the validity is the earlier of the
    /// old one and `ttl` from the call's start (never longer).
    ///
    /// ```no_run
    /// # async fn demo(lock: quorate_rwlock::RwLock) -> Result<(), quorate_redlock::Error> {
    /// use std::time::Duration;
    /// let mut reading = lock.read(Duration::from_secs(5)).await?;
    /// reading.extend(Duration::from_secs(30)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend(&mut self, ttl: Duration) -> Result<(), Error> {
        self.guard.extend(ttl).await
    }

    /// Releases: compare-and-delete of the reader's key (which also ends its
    /// index entry) or of the writer key; waiting writers or readers are
    /// woken by the release announcement.
    ///
    /// Returns [`ReleaseOutcome::NotHeld`] (not an error) when the lock had
    /// already expired or was lost; [`Error::NoQuorum`] only when the lease
    /// was valid and too few nodes answered (the key then expires).
    ///
    /// # Cancel safety
    /// Cancel safe: if dropped mid-flight, the release is spawned again.
    ///
    /// ```no_run
    /// # async fn demo(lock: quorate_rwlock::RwLock) -> Result<(), quorate_redlock::Error> {
    /// let writing = lock.write(std::time::Duration::from_secs(5)).await?;
    /// writing.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn release(self) -> Result<ReleaseOutcome, Error> {
        self.guard.release().await
    }

    /// Resolves when the lock can no longer be relied on: lost
    /// ([`Error::Lost`], with auto-extension) or expired
    /// ([`Error::Expired`]). Never resolves while the lock is safely held.
    ///
    /// # Cancel safety
    /// Cancel safe: it only watches.
    ///
    /// ```no_run
    /// # async fn demo(lock: quorate_rwlock::RwLock) -> Result<(), quorate_redlock::Error> {
    /// use std::time::Duration;
    /// let options = lock.options().ttl(Duration::from_secs(5)).auto_extend(true);
    /// let writing = lock.write_with(&options).await?;
    /// tokio::select! {
    ///     lost = writing.lost() => eprintln!("stopped: {lost}"),
    ///     () = tokio::time::sleep(Duration::from_secs(60)) => {} // the work
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn lost(&self) -> Error {
        self.guard.lost().await
    }
}

impl quorate_redlock::Release for RwLockGuard {
    fn release_now(self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move {
            let _ = self.release().await;
        })
    }
}
