//! The pool: requests of several requirements granted all-or-nothing, and
//! the guard that holds what was granted.

use std::ops::Index;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, select_all};
use quorate_redlock::{
    Error, ForceUnlocked, Inspection, LockGuard, LockOptions, Redlock, ReleaseOutcome,
};
use tokio::time::Instant;
use tracing::Instrument;

use crate::allocate::{groups, Rounds};
use crate::error::{PoolError, RequestError};
use crate::requirement::{validate, Requirement, Tags};
use crate::retry::{self, Pause};
use crate::size::Size;
use crate::usage::{self, Usage};

/// Per attempt: the first round takes what it can, two more top up a
/// shortfall left by split votes before everything is released; every
/// node's answer counts.
const ROUNDS: Rounds = Rounds {
    max: 3,
    wait_for_all: true,
};

/// A named pool of resources on a quorum of nodes: "2 of these 8 devices"
/// plus "that printer", all or nothing. Every key is stored as
/// `quorate:pool:{<name>}:<key>`, so pools with different names never share
/// a resource and all keys of one pool share a Redis Cluster slot.
///
/// Runs on real servers (Lua scripts) and on
/// [`MemoryNode`](quorate_redlock::MemoryNode)s (the scripts' native twins,
/// tested against the same scenarios).
///
/// ```no_run
/// # async fn demo(redlock: quorate_redlock::Redlock) -> Result<(), quorate_pool::PoolError> {
/// use std::time::Duration;
/// use quorate_pool::{Pool, Requirement};
/// let pool = Pool::new(&redlock, "lab")?;
/// let devices = vec!["T1000-a", "T1000-b", "T800-a"];
/// let grant = pool
///     .acquire(vec![Requirement::need(2, devices, |d| d.to_string())], Duration::from_secs(30))
///     .await?;
/// println!("got {:?}", &grant[0]);
/// grant.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Pool {
    redlock: Redlock,
    name: Arc<str>,
    usage: Option<Usage>,
}

/// Names become hash tags: non-empty, without braces.
pub(crate) fn validate_name(name: &str) -> Result<(), RequestError> {
    Ok(quorate_redlock::NameError::check(
        "pool", name, false, None,
    )?)
}

impl Pool {
    /// The pool `name` on `redlock`'s nodes, with `redlock`'s default
    /// options. Errors: an empty name, or one with `{` or `}`.
    pub fn new(redlock: &Redlock, name: &str) -> Result<Self, RequestError> {
        Self::labelled(redlock, name, "pool")
    }

    /// A pool whose locks carry the `primitive` metric label `label`.
    pub(crate) fn labelled(
        redlock: &Redlock,
        name: &str,
        label: &'static str,
    ) -> Result<Self, RequestError> {
        validate_name(name)?;
        describe();
        Ok(Pool {
            redlock: redlock.with_metric_label(label),
            name: name.into(),
            usage: None,
        })
    }

    /// Records usage figures ([`Usage`]) for every request and release.
    /// Default: off. Costs one round trip per acquire and per release.
    /// Metric labels carry each tag value: keep tags and pools bounded.
    pub fn with_usage_reporting(mut self, on: bool) -> Self {
        if on {
            usage::describe();
        }
        self.usage = on.then(|| Usage::new(&self.redlock, &self.name));
        self
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The usage figures recorded for this pool.
    pub fn usage(&self) -> Usage {
        Usage::new(&self.redlock, &self.name)
    }

    /// Acquires every requirement for `ttl`, retrying until the Redlock's
    /// default acquire timeout (10 s unless changed).
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future undoes the attempt in flight (the
    /// undo is spawned) and no grant is lost.
    ///
    /// ```no_run
    /// # async fn demo(pool: quorate_pool::Pool) -> Result<(), quorate_pool::PoolError> {
    /// use quorate_pool::Requirement;
    /// let grant = pool.acquire(vec![Requirement::key("printer")],
    ///                          std::time::Duration::from_secs(10)).await?;
    /// # drop(grant); Ok(()) }
    /// ```
    pub async fn acquire<T>(
        &self,
        requirements: Vec<Requirement<T>>,
        ttl: Duration,
    ) -> Result<PoolGuard<T>, PoolError> {
        let options = self.redlock.defaults().clone().ttl(ttl);
        self.acquire_with(requirements, &options).await
    }

    /// One attempt: grants every requirement now or fails with
    /// [`PoolError::Unavailable`] (naming the short requirement and when
    /// enough candidates free up).
    ///
    /// # Cancel safety
    /// Cancel safe, as [`acquire`](Self::acquire).
    ///
    /// ```no_run
    /// # async fn demo(pool: quorate_pool::Pool) {
    /// use quorate_pool::Requirement;
    /// match pool.try_acquire(vec![Requirement::key("printer")],
    ///                        std::time::Duration::from_secs(10)).await {
    ///     Ok(grant) => drop(grant),
    ///     Err(e) => println!("busy: {e}; retry in {:?}", e.retry_after()),
    /// }
    /// # }
    /// ```
    pub async fn try_acquire<T>(
        &self,
        requirements: Vec<Requirement<T>>,
        ttl: Duration,
    ) -> Result<PoolGuard<T>, PoolError> {
        let options = self
            .redlock
            .defaults()
            .clone()
            .ttl(ttl)
            .max_attempts(Some(1));
        self.acquire_with(requirements, &options).await
    }

    /// Acquires with explicit options: ttl, acquire timeout, attempts,
    /// retry delay and jitter, node timeout, drift factor, auto-extension
    /// (fencing is not supported by pools and is ignored).
    ///
    /// # Cancel safety
    /// Cancel safe, as [`acquire`](Self::acquire).
    ///
    /// ```no_run
    /// # async fn demo(pool: quorate_pool::Pool) -> Result<(), quorate_pool::PoolError> {
    /// use std::time::Duration;
    /// use quorate_pool::Requirement;
    /// use quorate_redlock::LockOptions;
    /// let options = LockOptions::new().ttl(Duration::from_secs(5)).auto_extend(true);
    /// let grant = pool.acquire_with(vec![Requirement::key("printer")], &options).await?;
    /// # drop(grant); Ok(()) }
    /// ```
    pub async fn acquire_with<T>(
        &self,
        requirements: Vec<Requirement<T>>,
        options: &LockOptions,
    ) -> Result<PoolGuard<T>, PoolError> {
        self.acquire_limited(requirements, options, None).await
    }

    /// [`acquire_with`](Self::acquire_with), each node refusing candidates
    /// beyond a resizable semaphore's number of permits (`limit`).
    pub(crate) async fn acquire_limited<T>(
        &self,
        requirements: Vec<Requirement<T>>,
        options: &LockOptions,
        limit: Option<&Size>,
    ) -> Result<PoolGuard<T>, PoolError> {
        validate(&requirements)?;
        let asked = Instant::now();
        let prefixed: Vec<Requirement<()>> = requirements
            .iter()
            .map(|r| Requirement {
                candidates: vec![(); r.keys.len()],
                keys: r.keys.iter().map(|k| self.key(k)).collect(),
                need: r.need,
                order: r.order,
                tags: None,
            })
            .collect();
        let span = tracing::debug_span!(
            "quorate.pool.acquire",
            pool = %self.name,
            requirements = prefixed.len()
        );
        let result = retry::acquire(
            &self.redlock,
            || groups(&prefixed, limit),
            options,
            ROUNDS,
            Pause::Poll,
        )
        .instrument(span)
        .await;
        let outcome = if result.is_ok() { "granted" } else { "failed" };
        metrics::counter!("quorate_pool_grants_total", "pool" => self.name.to_string(),
            "outcome" => outcome)
        .increment(1);
        let wait = asked.elapsed();
        let allocation = match result {
            Ok((allocation, _token)) => allocation,
            Err(error) => {
                if let Some(usage) = &self.usage {
                    usage
                        .record_request(&all_tags(&requirements), &[], wait)
                        .await;
                }
                return Err(error);
            }
        };

        let mut granted = Vec::with_capacity(requirements.len());
        let mut keys = Vec::with_capacity(requirements.len());
        let mut guards = Vec::new();
        let mut held_tags = Vec::new();
        let candidate_tags = self.usage.as_ref().map(|_| all_tags(&requirements));
        for (requirement, held) in requirements.into_iter().zip(allocation.held) {
            if self.usage.is_some() {
                held_tags.extend(held.iter().map(|h| requirement.tags_of(h.position)));
            }
            let mut slots: Vec<Option<T>> = requirement.candidates.into_iter().map(Some).collect();
            let mut values = Vec::with_capacity(held.len());
            let mut own_keys = Vec::with_capacity(held.len());
            for h in held {
                values.extend(slots[h.position].take());
                own_keys.push(requirement.keys[h.position].clone());
                guards.push(self.redlock.adopt(vec![h.key], h.lease, options));
            }
            granted.push(values);
            keys.push(own_keys);
        }
        if let (Some(usage), Some(candidates)) = (&self.usage, candidate_tags) {
            usage.record_request(&candidates, &held_tags, wait).await;
        }
        Ok(PoolGuard {
            granted,
            keys,
            guards,
            usage: self.usage.clone().map(|u| (u, held_tags)),
            granted_at: Instant::now(),
        })
    }

    /// Every node's view of candidate `key` (as given to a
    /// [`Requirement`]): the client holding it, remaining ttl, queued
    /// waiters, and the majority's view
    /// ([`Redlock::inspect`](quorate_redlock::Redlock::inspect) on the
    /// candidate's key).
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    ///
    /// ```no_run
    /// # async fn demo(pool: quorate_pool::Pool) -> Result<(), quorate_pool::PoolError> {
    /// let seen = pool.inspect("gpu-3").await?;
    /// println!("{seen}");
    /// # Ok(()) }
    /// ```
    pub async fn inspect(&self, key: &str) -> Result<Inspection, PoolError> {
        Ok(self.redlock.inspect_key(&self.key(key)).await?)
    }

    /// Frees candidate `key` on every node whatever its holder, for a
    /// holder known to be dead; waiters are woken
    /// ([`Redlock::force_unlock`](quorate_redlock::Redlock::force_unlock)
    /// on the candidate's key, counted with `primitive="pool"`). The
    /// holder, if alive, is not told.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped midway, some nodes may have deleted the key.
    ///
    /// ```no_run
    /// # async fn demo(pool: quorate_pool::Pool) -> Result<(), quorate_pool::PoolError> {
    /// let gone = pool.force_unlock("gpu-3").await?;
    /// println!("deleted on {} nodes", gone.deleted);
    /// # Ok(()) }
    /// ```
    pub async fn force_unlock(&self, key: &str) -> Result<ForceUnlocked, PoolError> {
        Ok(self.redlock.force_unlock_key(&self.key(key)).await?)
    }

    pub(crate) fn key(&self, key: &str) -> String {
        // after the Redlock's namespace, as the mutex's keys
        format!(
            "{}quorate:pool:{{{}}}:{key}",
            self.redlock.namespace(),
            self.name
        )
    }
}

fn all_tags<T>(requirements: &[Requirement<T>]) -> Vec<Tags> {
    requirements
        .iter()
        .flat_map(|r| (0..r.keys.len()).map(move |p| r.tags_of(p)))
        .collect()
}

/// What a pool request holds: per requirement, the caller's own candidate
/// values that were granted (`grant[0][1]`: requirement 0, second value).
/// Release it with [`release`](Self::release); dropping it spawns a release
/// instead. Each granted candidate is a quorate-redlock lease of its own
/// (granted by a majority), so extension, auto-extension and the lost
/// signal are the mutex's.
#[must_use = "the grant is released as soon as it is dropped"]
#[derive(Debug)]
pub struct PoolGuard<T> {
    granted: Vec<Vec<T>>,
    keys: Vec<Vec<String>>,
    guards: Vec<LockGuard>,
    usage: Option<(Usage, Vec<Tags>)>,
    granted_at: Instant,
}

impl<T> Index<usize> for PoolGuard<T> {
    type Output = [T];

    /// The values granted for requirement `requirement`.
    fn index(&self, requirement: usize) -> &[T] {
        &self.granted[requirement]
    }
}

impl<T> PoolGuard<T> {
    /// The values granted for `requirement`, or `None` past the last one.
    pub fn get(&self, requirement: usize) -> Option<&[T]> {
        self.granted.get(requirement).map(Vec::as_slice)
    }

    /// The keys granted for `requirement` (the caller's keys, unprefixed).
    pub fn keys(&self, requirement: usize) -> &[String] {
        self.keys.get(requirement).map_or(&[], Vec::as_slice)
    }

    /// Every held key's lease, requirement after requirement, in the order
    /// of [`keys`](Self::keys).
    pub(crate) fn leases(&self) -> Vec<quorate_redlock::Lease> {
        self.guards.iter().map(LockGuard::lease).collect()
    }

    /// The number of requirements.
    pub fn len(&self) -> usize {
        self.granted.len()
    }

    /// Whether the request had no requirements (never: requests need one).
    pub fn is_empty(&self) -> bool {
        self.granted.is_empty()
    }

    /// Every granted value, requirement after requirement.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.granted.iter().flatten()
    }

    /// The validity left: the smallest of the candidates' leases.
    pub fn remaining(&self) -> Duration {
        self.guards
            .iter()
            .map(LockGuard::remaining)
            .min()
            .unwrap_or_default()
    }

    /// Resolves when any granted candidate can no longer be relied on (see
    /// [`LockGuard::lost`]).
    ///
    /// # Cancel safety
    /// Cancel safe: it only watches.
    ///
    /// ```no_run
    /// # async fn demo(grant: quorate_pool::PoolGuard<String>) {
    /// let lost = grant.lost().await;
    /// eprintln!("stop using the devices: {lost}");
    /// # }
    /// ```
    pub async fn lost(&self) -> Error {
        let watches = self.guards.iter().map(|g| Box::pin(g.lost()));
        select_all(watches).await.0
    }

    /// Extends every granted candidate to at least `ttl` from now (in
    /// parallel; as [`LockGuard::extend`]).
    /// Fails if any candidate could not be extended; the others keep the
    /// new ttl.
    ///
    /// # Cancel safety
    /// Cancel safe: a lease in doubt only shrinks, so none claims more than
    /// a majority holds.
    ///
    /// ```no_run
    /// # async fn demo(mut grant: quorate_pool::PoolGuard<String>) -> Result<(), quorate_pool::PoolError> {
    /// grant.extend(std::time::Duration::from_secs(30)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend(&mut self, ttl: Duration) -> Result<(), PoolError> {
        let results = join_all(self.guards.iter_mut().map(|g| g.extend(ttl))).await;
        results.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(())
    }

    /// Releases every granted candidate (in parallel): `Released` when all
    /// were still held, `NotHeld` when any had expired or been lost.
    ///
    /// # Cancel safety
    /// Not cancel safe in effect: candidates whose release was not sent
    /// yet are released by their guards' drop instead.
    ///
    /// ```no_run
    /// # async fn demo(grant: quorate_pool::PoolGuard<String>) -> Result<(), quorate_pool::PoolError> {
    /// grant.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn release(mut self) -> Result<ReleaseOutcome, PoolError> {
        let guards = std::mem::take(&mut self.guards);
        let results = join_all(guards.into_iter().map(LockGuard::release)).await;
        if let Some((usage, tags)) = self.usage.take() {
            usage.record_release(&tags, self.granted_at.elapsed()).await;
        }
        let mut outcome = ReleaseOutcome::Released;
        for result in results {
            if result? == ReleaseOutcome::NotHeld {
                outcome = ReleaseOutcome::NotHeld;
            }
        }
        Ok(outcome)
    }
}

impl<T> Drop for PoolGuard<T> {
    fn drop(&mut self) {
        // The candidates' own guards spawn their releases; only the usage
        // figures are ours to send.
        if let Some((usage, tags)) = self.usage.take() {
            let hold = self.granted_at.elapsed();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move { usage.record_release(&tags, hold).await });
            }
        }
    }
}

impl Pool {
    /// The Redlock the pool runs on (with the `pool` metric label).
    pub(crate) fn redlock(&self) -> &Redlock {
        &self.redlock
    }
}

/// Declares the pool's own always-on metrics once per process.
fn describe() {
    static DESCRIBE: std::sync::Once = std::sync::Once::new();
    DESCRIBE.call_once(|| {
        metrics::describe_counter!(
            "quorate_pool_grants_total",
            "Pool and semaphore requests by pool and outcome (granted, failed)"
        );
        metrics::describe_counter!(
            "quorate_pool_rate_grants_total",
            "Rate-limit permits granted, by limit"
        );
    });
}

impl<T: Send + Sync + 'static> quorate_redlock::Release for PoolGuard<T> {
    fn release_now(self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move {
            let _ = self.release().await;
        })
    }
}
