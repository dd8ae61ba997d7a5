//! The guard of a locked tree node.

use std::time::Duration;

use quorate_redlock::{Error, Lease, LockGuard, ReleaseOutcome};

use crate::path::TreePath;

/// A locked node. Release it with [`release`](Self::release); dropping it
/// spawns a best-effort release instead (never blocks). Extension, release,
/// auto-extension and the lost signal are quorate-redlock's
/// [`LockGuard`]'s: the node's lock key holds our token like a mutex key,
/// and its entries in the ancestors' indexes live exactly as long as it.
#[must_use = "the node is unlocked as soon as the guard is dropped"]
#[derive(Debug)]
pub struct TreeGuard {
    guard: LockGuard,
    path: TreePath,
    owner: Option<String>,
    ttl: Duration,
}

impl TreeGuard {
    pub(crate) fn new(guard: LockGuard, path: TreePath, owner: Option<String>) -> Self {
        let ttl = guard.lease().ttl();
        TreeGuard {
            guard,
            path,
            owner,
            ttl,
        }
    }

    /// The locked node.
    pub fn path(&self) -> &TreePath {
        &self.path
    }

    /// The owner id given when locking.
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// The current lease (token, ttl, validity).
    pub fn lease(&self) -> Lease {
        self.guard.lease()
    }

    /// The validity left; act on the node only while this is positive.
    pub fn remaining(&self) -> Duration {
        self.guard.remaining()
    }

    /// Whether validity is left.
    pub fn is_valid(&self) -> bool {
        self.guard.is_valid()
    }

    /// Resets the node's ttl to `ttl` wherever it is still ours; the node
    /// then stays blocked for its ancestors and descendants as long.
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
    /// # async fn demo(tree: quorate_tree::TreeLock) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// let mut guard = tree.lock(["dc1", "rack4"], Duration::from_secs(5)).await?;
    /// guard.extend(Duration::from_secs(30)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend(&mut self, ttl: Duration) -> Result<(), Error> {
        self.guard.extend(ttl).await?;
        self.ttl = ttl;
        Ok(())
    }

    /// mutextree's `refresh()`: extends by the ttl last asked for (the one
    /// locked with, or the last [`extend`](Self::extend)'s).
    ///
    /// # Cancel safety
    /// As [`extend`](Self::extend).
    ///
    /// ```no_run
    /// # async fn demo(tree: quorate_tree::TreeLock) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut guard = tree.lock(["dc1"], std::time::Duration::from_secs(5)).await?;
    /// guard.refresh().await?; // 5 s again from now
    /// # Ok(()) }
    /// ```
    pub async fn refresh(&mut self) -> Result<(), Error> {
        let ttl = self.ttl;
        self.extend(ttl).await
    }

    /// Unlocks the node: compare-and-delete of its lock key, which also ends
    /// its entries in the ancestors' indexes, so they can be locked at once.
    ///
    /// Returns [`ReleaseOutcome::NotHeld`] (not an error) when the lock had
    /// already expired or was lost; [`Error::NoQuorum`] only when the lease
    /// was valid and too few nodes answered (the key then expires).
    ///
    /// # Cancel safety
    /// Cancel safe: if dropped mid-flight, the release is spawned again.
    ///
    /// ```no_run
    /// # async fn demo(tree: quorate_tree::TreeLock) -> Result<(), Box<dyn std::error::Error>> {
    /// let guard = tree.lock(["dc1"], std::time::Duration::from_secs(5)).await?;
    /// guard.release().await?;
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
    /// # async fn demo(tree: quorate_tree::TreeLock) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// let options = tree.options().ttl(Duration::from_secs(5)).auto_extend(true);
    /// let guard = tree.lock_with(["dc1", "rack4"], &options).await?;
    /// tokio::select! {
    ///     lost = guard.lost() => eprintln!("stopped: {lost}"),
    ///     () = tokio::time::sleep(Duration::from_secs(60)) => {} // the work
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn lost(&self) -> Error {
        self.guard.lost().await
    }
}

impl quorate_redlock::Release for TreeGuard {
    fn release_now(self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move {
            let _ = self.release().await;
        })
    }
}
