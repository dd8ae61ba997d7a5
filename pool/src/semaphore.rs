//! A counting semaphore of N permits: a pool of N slot keys, never a
//! per-node counter (per-node counting with majority quorums can grant more
//! than N: 5 nodes, N = 2, holders on nodes {1,2,3}, {1,2,4} and {3,4,5}).

use std::time::Duration;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use quorate_redlock::raw::{retry, Retry, WaitPolicy};
use quorate_redlock::{
    Error, ForceUnlocked, Inspection, Lease, LockOptions, Redlock, ReleaseOutcome, Token,
};
use tokio::time::Instant;

use crate::error::{PoolError, RequestError};
use crate::pool::{validate_name, Pool, PoolGuard};
use crate::requirement::Requirement;
use crate::size::Size;

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
    name: Arc<str>,
    permits: usize,
    /// Resizable: the number of permits lives on the nodes.
    size: Option<Size>,
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
            name: name.into(),
            permits,
            size: None,
        })
    }

    /// A semaphore whose number of permits can change at run time
    /// ([`set_permits`](Self::set_permits), [`add_permits`](Self::add_permits)),
    /// for every client at once: the number lives on the nodes (the newest
    /// set, plus every add made since, each on a majority), and each
    /// acquire call reads it first (one more round trip than a fixed
    /// semaphore). `initial` is the number until the first set; every
    /// client must give the same.
    ///
    /// Shrinking does not take permits away: holders of slots past the new
    /// number keep them until they release (or their ttl ends); new grants
    /// only use the slots below it. Every node checks its own number before
    /// it lets a slot be taken, so once [`set_permits`](Self::set_permits)
    /// or [`add_permits`](Self::add_permits) returned, no acquire round that
    /// starts afterwards (a waiter's next round included) grants a slot at or
    /// above the new number.
    ///
    /// The number has no ttl, so a node that lost data or restarted may hold
    /// an older one: such a node refuses every slot until a read (every
    /// acquire makes one) or a set writes the number there again, and reads
    /// count only nodes that are in step. Should a majority restart before
    /// any read, the number is unknown ([`PoolError::SizeUnknown`], naming
    /// the restarted nodes) until the next [`set_permits`](Self::set_permits).
    ///
    /// Errors: as [`new`](Self::new).
    pub fn resizable(redlock: &Redlock, name: &str, initial: usize) -> Result<Self, RequestError> {
        let mut semaphore = Self::new(redlock, name, initial)?;
        semaphore.size = Some(Size::new(redlock.namespace(), name, initial));
        Ok(semaphore)
    }

    /// The number of permits now: the fixed number, or for a
    /// [`resizable`](Self::resizable) semaphore what a majority of nodes
    /// agree on.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    ///
    /// ```no_run
    /// # async fn demo(semaphore: quorate_pool::Semaphore) -> Result<(), quorate_pool::PoolError> {
    /// println!("{} permits", semaphore.current_permits().await?);
    /// # Ok(()) }
    /// ```
    pub async fn current_permits(&self) -> Result<usize, PoolError> {
        match &self.size {
            Some(size) => size.read(self.pool.redlock()).await,
            None => Ok(self.permits),
        }
    }

    /// Sets the number of permits of a [`resizable`](Self::resizable)
    /// semaphore, for every client (the newest set wins; adds made before
    /// it no longer count).
    ///
    /// Errors: [`RequestError::NotResizable`], [`RequestError::ZeroPermits`];
    /// [`PoolError::Lock`] with `NoQuorum` when no majority recorded it.
    ///
    /// A set whose epoch lost to a concurrent newer set on a majority is
    /// made again on top of it, so `Ok` means this number was the newest on
    /// a majority when they answered: with no other set running meanwhile,
    /// it is the number from then on. Sets made at the same time take effect
    /// in some order (the one applied last wins), which need not be the
    /// order in which they return. What an error (or a drop midway) may leave:
    /// the new number on a minority of nodes, which the next read that sees
    /// it completes on a majority; until then those nodes refuse slots
    /// beyond it (grants can only be delayed, never added).
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped midway, the set is in the state an error
    /// leaves.
    ///
    /// ```no_run
    /// # async fn demo(semaphore: quorate_pool::Semaphore) -> Result<(), quorate_pool::PoolError> {
    /// semaphore.set_permits(8).await?; // more encoder licences bought
    /// # Ok(()) }
    /// ```
    pub async fn set_permits(&self, permits: usize) -> Result<(), PoolError> {
        let size = self.resizable_size()?;
        if permits == 0 {
            return Err(RequestError::ZeroPermits {
                name: self.name.to_string(),
            }
            .into());
        }
        size.set(self.pool.redlock(), permits).await
    }

    /// Adds `delta` permits (negative: removes) to a
    /// [`resizable`](Self::resizable) semaphore, on top of the newest set;
    /// concurrent adds all count, each once. Returns the number after it,
    /// as this client saw it (0 at least).
    ///
    /// Errors: [`RequestError::NotResizable`]; [`PoolError::Lock`] with
    /// `NoQuorum` when no majority recorded it within the acquire timeout.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped midway, the add may have reached some nodes,
    /// and then counts (once) wherever a read sees it.
    ///
    /// ```no_run
    /// # async fn demo(semaphore: quorate_pool::Semaphore) -> Result<(), quorate_pool::PoolError> {
    /// let now = semaphore.add_permits(-1).await?; // one licence revoked
    /// # let _ = now; Ok(()) }
    /// ```
    pub async fn add_permits(&self, delta: i64) -> Result<usize, PoolError> {
        self.resizable_size()?.add(self.pool.redlock(), delta).await
    }

    fn resizable_size(&self) -> Result<&Size, RequestError> {
        self.size
            .as_ref()
            .ok_or_else(|| RequestError::NotResizable {
                name: self.name.to_string(),
            })
    }

    /// The slots to take `k` of now.
    /// `k` of the permits now, the number read again until `options`'
    /// deadline while it cannot be read (too few nodes answer, nodes in
    /// quarantine, or a majority restarted since it was set and another
    /// client may set it again).
    async fn request(
        &self,
        k: usize,
        options: &LockOptions,
        policy: &WaitPolicy,
    ) -> Result<Vec<Requirement<usize>>, PoolError> {
        let Some(size) = &self.size else {
            return Ok(vec![Requirement::need(k, 0..self.permits, slot_key)]);
        };
        let redlock = self.pool.redlock();
        let permits = retry(
            redlock,
            policy,
            None,
            |_| size.read(redlock),
            |error| {
                if error.is_final() {
                    Retry::GiveUp
                } else {
                    Retry::After {
                        pause: options.get_retry_delay(),
                        watch: None,
                    }
                }
            },
        )
        .await?;
        Ok(vec![Requirement::need(k, 0..permits, slot_key)])
    }

    /// Releases the permit `id` names, from any task or process (the
    /// holder gave it away): compare-and-delete of its slot with its token,
    /// announced to waiters. `NotHeld` when it had already ended.
    ///
    /// Errors: [`RequestError::WrongSemaphore`] for another semaphore's id;
    /// [`PoolError::Lock`] with `NoQuorum` when too few nodes answered.
    ///
    /// # Cancel safety
    /// Cancel safe in effect: the requests are sent at once; a slot not
    /// reached expires with its ttl.
    ///
    /// ```no_run
    /// # async fn demo(semaphore: quorate_pool::Semaphore, id: quorate_pool::PermitId) -> Result<(), quorate_pool::PoolError> {
    /// semaphore.release_permit(&id).await?;
    /// # Ok(()) }
    /// ```
    pub async fn release_permit(&self, id: &PermitId) -> Result<ReleaseOutcome, PoolError> {
        let key = self.permit_key(id)?;
        Ok(self.pool.redlock().release_token(&[key], &id.token).await?)
    }

    /// Extends the permit `id` names to at least `ttl` from now (never
    /// shorter than it has: the holder's own lease stays true), from any task or
    /// process; the lease returned counts from this call.
    ///
    /// Errors: [`RequestError::WrongSemaphore`]; [`PoolError::Lock`] with
    /// `Lost` (the permit ended) or `NoQuorum`.
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped extension leaves each node's ttl as it was or
    /// longer.
    ///
    /// ```no_run
    /// # async fn demo(semaphore: quorate_pool::Semaphore, id: quorate_pool::PermitId) -> Result<(), quorate_pool::PoolError> {
    /// let lease = semaphore.extend_permit(&id, std::time::Duration::from_secs(30)).await?;
    /// # let _ = lease; Ok(()) }
    /// ```
    pub async fn extend_permit(&self, id: &PermitId, ttl: Duration) -> Result<Lease, PoolError> {
        let key = self.permit_key(id)?;
        Ok(self
            .pool
            .redlock()
            .extend_token(&[key], &id.token, ttl)
            .await?)
    }

    fn permit_key(&self, id: &PermitId) -> Result<String, RequestError> {
        if *id.semaphore != *self.name {
            return Err(RequestError::WrongSemaphore {
                ours: self.name.to_string(),
                theirs: id.semaphore.clone(),
            });
        }
        Ok(self.pool.key(&slot_key(&id.slot)))
    }

    /// The number of permits given when it was made: the fixed number, or
    /// a [`resizable`](Self::resizable) semaphore's initial one (its number
    /// now: [`current_permits`](Self::current_permits)).
    pub fn permits(&self) -> usize {
        self.permits
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
        let permits = self.current_permits().await?;
        let keys: Vec<String> = (0..permits).map(|slot| slot_key(&slot)).collect();
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
        let permits = self.current_permits().await?;
        if slot >= permits {
            return Err(RequestError::NoSuchPermit { slot, permits }.into());
        }
        self.pool.force_unlock(&slot_key(&slot)).await
    }

    /// Takes `k` permits for `ttl`, waiting up to the Redlock's default
    /// acquire timeout (10 s unless changed). Errors: `k` = 0 or more than
    /// the permits ([`PoolError::InvalidRequest`]); not enough permits free
    /// in time ([`PoolError::Unavailable`]); for a resizable semaphore, the
    /// number unknown until the deadline ([`PoolError::SizeUnknown`]: a
    /// majority restarted since it was set; the number is read again until
    /// then, as nodes leave their quarantine or another client sets it).
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
        let options = self.pool.redlock().defaults().clone().ttl(ttl);
        self.acquire_with(k, &options).await
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
        let options = self
            .pool
            .redlock()
            .defaults()
            .clone()
            .ttl(ttl)
            .max_attempts(Some(1));
        self.acquire_with(k, &options).await
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
        // one deadline for reading the number and for taking the permits
        let called = Instant::now();
        let policy = WaitPolicy::new(options, called);
        let requirements = self.request(k, options, &policy).await?;
        let left = options.clone().acquire_timeout(
            options
                .get_acquire_timeout()
                .map(|timeout| timeout.saturating_sub(called.elapsed())),
        );
        let inner = self
            .pool
            .acquire_limited(requirements, &left, self.size.as_ref())
            .await?;
        Ok(SemaphoreGuard {
            inner,
            name: Arc::clone(&self.name),
        })
    }
}

/// Held permits; released by [`release`](Self::release) or on drop.
#[must_use = "the permits are released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct SemaphoreGuard {
    inner: PoolGuard<usize>,
    name: Arc<str>,
}

impl SemaphoreGuard {
    /// Which permit slots are held (0-based).
    pub fn slots(&self) -> &[usize] {
        &self.inner[0]
    }

    /// One id per held permit, in the order of [`slots`](Self::slots): each
    /// releases or extends its permit from any task or process
    /// ([`Semaphore::release_permit`], [`Semaphore::extend_permit`]). It
    /// carries the permit's token: whoever has it can release the permit.
    pub fn permit_ids(&self) -> Vec<PermitId> {
        self.slots()
            .iter()
            .zip(self.inner.leases())
            .map(|(&slot, lease)| PermitId {
                semaphore: self.name.to_string(),
                slot,
                token: lease.token().to_hex(),
            })
            .collect()
    }

    /// The validity left (the smallest of the permits' leases).
    pub fn remaining(&self) -> Duration {
        self.inner.remaining()
    }

    /// Each permit's lease, in the order of [`slots`](Self::slots): its
    /// token, ttl, validity, and the start of the round that granted it.
    pub fn leases(&self) -> Vec<Lease> {
        self.inner.leases()
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

    /// Extends every permit to at least `ttl` from now (as
    /// [`LockGuard::extend`](quorate_redlock::LockGuard::extend)).
    ///
    /// # Cancel safety
    /// Cancel safe: a lease in doubt only shrinks, so it never claims more
    /// than a majority holds.
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

/// One held permit of a [`Semaphore`], by name: `semaphore/slot/token`. Hand
/// it to another task or process to release or extend the permit there
/// ([`Semaphore::release_permit`], [`Semaphore::extend_permit`]); parse it
/// back with `str::parse`. It carries the permit's token, so treat it as
/// the permit itself.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PermitId {
    semaphore: String,
    slot: usize,
    token: String,
}

impl PermitId {
    /// The semaphore's name.
    pub fn semaphore(&self) -> &str {
        &self.semaphore
    }

    /// The permit's slot.
    pub fn slot(&self) -> usize {
        self.slot
    }
}

impl fmt::Display for PermitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.semaphore, self.slot, self.token)
    }
}

impl fmt::Debug for PermitId {
    // the token's secret half stays out of logs
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PermitId")
            .field("semaphore", &self.semaphore)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl FromStr for PermitId {
    type Err = RequestError;

    /// `semaphore/slot/token`, as [`Display`](fmt::Display) writes it (the
    /// name may hold `/`: the last two fields are the slot and token).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || RequestError::BadPermitId(text.chars().take(64).collect());
        let mut fields = text.rsplitn(3, '/');
        let (token, slot, semaphore) = (fields.next(), fields.next(), fields.next());
        let (Some(token), Some(slot), Some(semaphore)) = (token, slot, semaphore) else {
            return Err(bad());
        };
        if Token::from_hex(token).is_none() || semaphore.is_empty() {
            return Err(bad());
        }
        Ok(PermitId {
            semaphore: semaphore.to_owned(),
            slot: slot.parse().map_err(|_| bad())?,
            token: token.to_owned(),
        })
    }
}

impl quorate_redlock::Release for SemaphoreGuard {
    fn release_now(self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move {
            let _ = self.release().await;
        })
    }
}
