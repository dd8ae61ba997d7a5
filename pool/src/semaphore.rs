//! A counting semaphore of N permits: a pool of N slot keys, never a
//! per-node counter (per-node counting with majority quorums can grant more
//! than N: 5 nodes, N = 2, holders on nodes {1,2,3}, {1,2,4} and {3,4,5}).

use std::time::Duration;

use quorate_redlock::{Error, ForceUnlocked, Inspection, LockOptions, Redlock, ReleaseOutcome};

use crate::error::{PoolError, RequestError};
use crate::pool::{validate_name, Pool, PoolGuard};
use crate::requirement::Requirement;

/// N permits shared by every client of the same name on the same nodes.
///
/// ```no_run
/// # async fn demo(redlock: quorate_redlock::Redlock) -> Result<(), quorate_pool::PoolError> {
/// use std::time::Duration;
/// let semaphore = quorate_pool::Semaphore::new(&redlock, "encoders", 3)?;
/// let permit = semaphore.acquire(1, Duration::from_secs(30)).await?;
/// // at most 3 holders run this at once, across every host
/// permit.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Semaphore {
    pool: Pool,
    permits: usize,
}

impl Semaphore {
    /// The semaphore `name` with `permits` permits. Errors: 0 permits, an
    /// empty name or one with braces. Every client must use the same
    /// number of permits for a name (they are slots `0..permits`).
    pub fn new(redlock: &Redlock, name: &str, permits: usize) -> Result<Self, RequestError> {
        validate_name(name)?;
        if permits == 0 {
            return Err(RequestError::ZeroPermits {
                name: name.to_owned(),
            });
        }
        Ok(Semaphore {
            pool: Pool::labelled(redlock, &format!("semaphore:{name}"), "semaphore")?,
            permits,
        })
    }

    /// The number of permits.
    pub fn permits(&self) -> usize {
        self.permits
    }

    fn slots(&self, k: usize) -> Vec<Requirement<usize>> {
        vec![Requirement::need(k, 0..self.permits, slot_key)]
    }

    /// Every permit's view on every node, in slot order: who holds each
    /// ([`Inspection::holder`]), for how long. One read per permit.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    ///
    /// ```no_run
    /// # async fn demo(semaphore: quorate_pool::Semaphore) -> Result<(), quorate_pool::PoolError> {
    /// for (slot, seen) in semaphore.inspect().await?.iter().enumerate() {
    ///     println!("permit {slot}: {:?}", seen.holder());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn inspect(&self) -> Result<Vec<Inspection>, PoolError> {
        let keys: Vec<String> = (0..self.permits).map(|slot| slot_key(&slot)).collect();
        futures::future::try_join_all(keys.iter().map(|key| self.pool.inspect(key))).await
    }

    /// Frees permit `slot` (`0..permits`, as [`SemaphoreGuard::slots`]
    /// names them) on every node whatever its holder, for a holder known
    /// to be dead ([`Pool::force_unlock`]).
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped midway, some nodes may have deleted the key.
    ///
    /// ```no_run
    /// # async fn demo(semaphore: quorate_pool::Semaphore) -> Result<(), quorate_pool::PoolError> {
    /// semaphore.force_unlock(2).await?;
    /// # Ok(()) }
    /// ```
    pub async fn force_unlock(&self, slot: usize) -> Result<ForceUnlocked, PoolError> {
        if slot >= self.permits {
            return Err(RequestError::NoSuchPermit {
                slot,
                permits: self.permits,
            }
            .into());
        }
        self.pool.force_unlock(&slot_key(&slot)).await
    }

    /// Takes `k` permits for `ttl`, waiting up to the Redlock's default
    /// acquire timeout (10 s unless changed). Errors: `k` = 0 or more than
    /// the permits ([`PoolError::InvalidRequest`]); not enough permits free
    /// in time ([`PoolError::Unavailable`]).
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future undoes the attempt in flight.
    ///
    /// ```no_run
    /// # async fn demo(semaphore: quorate_pool::Semaphore) -> Result<(), quorate_pool::PoolError> {
    /// let permits = semaphore.acquire(2, std::time::Duration::from_secs(10)).await?;
    /// println!("slots {:?}", permits.slots());
    /// # Ok(()) }
    /// ```
    pub async fn acquire(&self, k: usize, ttl: Duration) -> Result<SemaphoreGuard, PoolError> {
        let inner = self.pool.acquire(self.slots(k), ttl).await?;
        Ok(SemaphoreGuard { inner })
    }

    /// One attempt: `k` permits now, or [`PoolError::Unavailable`] with
    /// `retry_after` (when enough permits expire; releases can come sooner).
    ///
    /// # Cancel safety
    /// Cancel safe, as [`acquire`](Self::acquire).
    ///
    /// ```no_run
    /// # async fn demo(semaphore: quorate_pool::Semaphore) {
    /// if let Ok(permit) = semaphore.try_acquire(1, std::time::Duration::from_secs(10)).await {
    ///     drop(permit);
    /// }
    /// # }
    /// ```
    pub async fn try_acquire(&self, k: usize, ttl: Duration) -> Result<SemaphoreGuard, PoolError> {
        let inner = self.pool.try_acquire(self.slots(k), ttl).await?;
        Ok(SemaphoreGuard { inner })
    }

    /// Takes `k` permits with explicit options (ttl, acquire timeout,
    /// attempts, retry delay, node timeout, auto-extension).
    ///
    /// # Cancel safety
    /// Cancel safe, as [`acquire`](Self::acquire).
    ///
    /// ```no_run
    /// # async fn demo(semaphore: quorate_pool::Semaphore) -> Result<(), quorate_pool::PoolError> {
    /// use quorate_redlock::LockOptions;
    /// let options = LockOptions::new().acquire_timeout(Some(std::time::Duration::from_secs(1)));
    /// let permit = semaphore.acquire_with(1, &options).await?;
    /// # drop(permit); Ok(()) }
    /// ```
    pub async fn acquire_with(
        &self,
        k: usize,
        options: &LockOptions,
    ) -> Result<SemaphoreGuard, PoolError> {
        let inner = self.pool.acquire_with(self.slots(k), options).await?;
        Ok(SemaphoreGuard { inner })
    }
}

/// Held permits; released by [`release`](Self::release) or on drop.
#[must_use = "the permits are released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct SemaphoreGuard {
    inner: PoolGuard<usize>,
}

impl SemaphoreGuard {
    /// Which permit slots are held (0-based).
    pub fn slots(&self) -> &[usize] {
        &self.inner[0]
    }

    /// The validity left (the smallest of the permits' leases).
    pub fn remaining(&self) -> Duration {
        self.inner.remaining()
    }

    /// Resolves when any permit can no longer be relied on.
    ///
    /// # Cancel safety
    /// Cancel safe: it only watches.
    ///
    /// ```no_run
    /// # async fn demo(permit: quorate_pool::SemaphoreGuard) {
    /// eprintln!("{}", permit.lost().await);
    /// # }
    /// ```
    pub async fn lost(&self) -> Error {
        self.inner.lost().await
    }

    /// Extends every permit to `ttl` from now.
    ///
    /// # Cancel safety
    /// Cancel safe: leases never claim more than the servers hold.
    ///
    /// ```no_run
    /// # async fn demo(mut permit: quorate_pool::SemaphoreGuard) -> Result<(), quorate_pool::PoolError> {
    /// permit.extend(std::time::Duration::from_secs(10)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend(&mut self, ttl: Duration) -> Result<(), PoolError> {
        self.inner.extend(ttl).await
    }

    /// Releases the permits.
    ///
    /// # Cancel safety
    /// Permits whose release was not sent are released on drop instead.
    ///
    /// ```no_run
    /// # async fn demo(permit: quorate_pool::SemaphoreGuard) -> Result<(), quorate_pool::PoolError> {
    /// permit.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn release(self) -> Result<ReleaseOutcome, PoolError> {
        self.inner.release().await
    }
}

/// Permit `slot`'s candidate key in the semaphore's pool.
fn slot_key(slot: &usize) -> String {
    format!("permit:{slot}")
}
