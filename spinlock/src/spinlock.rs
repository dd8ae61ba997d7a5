//! The spinlock: the quorum mutex with bounded tries, a fixed (or jittered)
//! sleep between them, and a maximum hold time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use quorate_redlock::raw::quorum::{self, Decide, Reply};
use quorate_redlock::raw::random_pause;
use quorate_redlock::raw::{MemoryStore, NodeScript, ReleaseWatch, ScriptValue};
use quorate_redlock::{
    Error, ForceUnlocked, Inspection, LockGuard, NodeOutcome, NodeReport, Outcomes, Redlock,
};
use tokio::time::Instant;
use tracing::Instrument;

use crate::error::SpinError;
use crate::key::SpinKey;
use crate::lock::Lock;
use crate::metrics;
use crate::options::SpinOptions;
use crate::scheme::{DefaultScheme, Scheme};

pub(crate) static LOCK_STATE: NodeScript = NodeScript::new(
    "spinlock_lock_state",
    include_str!("../scripts/lock_state.lua"),
)
.emulated(lock_state_in_memory);

/// `lock_state.lua` on a memory node.
fn lock_state_in_memory(
    store: &mut MemoryStore,
    keys: &[String],
    _args: &[Vec<u8>],
) -> Result<ScriptValue, String> {
    let key = keys.first().ok_or("no key")?;
    if store.get(key).is_some_and(|v| v.starts_with(b"q:")) {
        return Ok(ScriptValue::Int(-2));
    }
    Ok(ScriptValue::Int(store.pttl(key)))
}

/// Bounded-retry locks and distributed single-flight over the nodes of a
/// [`Redlock`]. Cheap to clone.
///
/// The script-based calls (`locked`, `compute_once`) run Lua on
/// Redis-protocol servers and the scripts' native twins on redlock's
/// `MemoryNode`s.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use quorate_redlock::Redlock;
/// use quorate_spinlock::{SpinOptions, Spinlock};
///
/// let redlock = Redlock::connect(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002",
///                                 "redis://127.0.0.1:7003"]).await?;
/// let spin = Spinlock::new(&redlock, SpinOptions::new().tries(5))?;
/// let guard = spin.acquire("nightly-report").await?;
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Spinlock {
    pub(crate) redlock: Redlock,
    pub(crate) options: SpinOptions,
    pub(crate) scheme: Arc<dyn Scheme>,
}

impl fmt::Debug for Spinlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spinlock")
            .field("nodes", &self.redlock.node_names())
            .field("options", &self.options)
            .field("scheme", &self.scheme)
            .finish()
    }
}

impl Spinlock {
    /// A spinlock over `redlock`'s nodes (its metrics labelled
    /// `primitive="spinlock"`), with the [`DefaultScheme`].
    ///
    /// Errors: [`SpinError::InvalidOptions`] naming the bad option; a
    /// [`max_hold`](SpinOptions::max_hold) above the Redlock's
    /// [`max_ttl`](Redlock::max_ttl) is
    /// [`SpinError::Lock`]`(InvalidConfig(TtlAboveMaxTtl))`.
    pub fn new(redlock: &Redlock, options: SpinOptions) -> Result<Self, SpinError> {
        options.validate()?;
        redlock
            .check_ttl(options.hold_ttl())
            .map_err(quorate_redlock::Error::from)?;
        metrics::describe();
        Ok(Spinlock {
            redlock: redlock.with_metric_label("spinlock"),
            options,
            scheme: Arc::new(DefaultScheme),
        })
    }

    /// The same spinlock with another key and storage [`Scheme`].
    pub fn with_scheme(mut self, scheme: impl Scheme) -> Self {
        self.scheme = Arc::new(scheme);
        self
    }

    /// The same spinlock with other options.
    ///
    /// Errors: [`SpinError::InvalidOptions`] naming the bad option.
    pub fn with_options(mut self, options: SpinOptions) -> Result<Self, SpinError> {
        options.validate()?;
        self.options = options;
        Ok(self)
    }

    /// The options.
    pub fn options(&self) -> &SpinOptions {
        &self.options
    }

    /// The lock key of `key`; on the nodes, the Redlock's namespace (if
    /// any) goes before it.
    pub fn lock_key(&self, key: impl Into<SpinKey>) -> String {
        self.scheme.lock_key(&key.into())
    }

    /// The stored result's key of `key` on the nodes: after the Redlock's
    /// namespace (if any), as the lock key is.
    pub fn result_key(&self, key: impl Into<SpinKey>) -> String {
        format!(
            "{}{}",
            self.redlock.namespace(),
            self.scheme.result_key(&key.into())
        )
    }

    /// A sherlock-style lock handle for `key`: `acquire`, `try_acquire`,
    /// `locked`, `renew`, `release` on one object.
    pub fn lock(&self, key: impl Into<SpinKey>) -> Lock {
        Lock::new(self.clone(), self.lock_key(key))
    }

    /// Acquires `key`, held for at most the
    /// [`max_hold`](SpinOptions::max_hold) time (then it frees itself).
    ///
    /// Makes exactly [`tries`](SpinOptions::tries) rounds at most, each
    /// following the one before after [`sleep`](SpinOptions::sleep) + up
    /// to [`jitter`](SpinOptions::jitter), sooner when the holder releases
    /// (the call listens for the key's release announcements once its first
    /// round failed) or its hold time runs out. A key held throughout fails
    /// after about `(tries − 1) × sleep`, never later than
    /// `tries × (sleep + jitter + 2 × node timeout)`.
    ///
    /// Errors: [`SpinError::TriesExhausted`] with the last round's error;
    /// with [`fail_if_held`](SpinOptions::fail_if_held), [`SpinError::Held`]
    /// after one round.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future undoes the round in flight (spawned),
    /// and no guard is lost.
    ///
    /// ```no_run
    /// # async fn demo(spin: quorate_spinlock::Spinlock) -> Result<(), quorate_spinlock::SpinError> {
    /// let guard = spin.acquire("invoice:42").await?;
    /// // ... at most max_hold, check guard.remaining() ...
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn acquire(&self, key: impl Into<SpinKey>) -> Result<LockGuard, SpinError> {
        let lock_key = self.lock_key(key);
        self.acquire_key(&lock_key).await
    }

    /// One round: the lock if a majority grants it now, else
    /// [`SpinError::Held`] naming the holder's remaining hold time and
    /// every node's answer ([`SpinError::Lock`] when nodes failed).
    ///
    /// # Cancel safety
    /// Cancel safe, as [`acquire`](Self::acquire).
    ///
    /// ```no_run
    /// # async fn demo(spin: quorate_spinlock::Spinlock) {
    /// use quorate_spinlock::SpinError;
    /// match spin.try_acquire("invoice:42").await {
    ///     Ok(guard) => drop(guard),
    ///     Err(SpinError::Held { remaining, .. }) => println!("busy for {remaining:?}"),
    ///     Err(other) => eprintln!("{other}"),
    /// }
    /// # }
    /// ```
    pub async fn try_acquire(&self, key: impl Into<SpinKey>) -> Result<LockGuard, SpinError> {
        let lock_key = self.lock_key(key);
        let started = Instant::now();
        let result = self.try_key(&lock_key).await;
        metrics::acquired(acquire_outcome(&result), started.elapsed());
        result
    }

    /// Whether anyone holds `key`: whether a majority of nodes have its lock
    /// key (what any holder's acquisition left, and what makes an acquire
    /// fail now). Keys left on a minority (a release that missed a node, an
    /// acquisition round being undone) do not count; a node that fails to
    /// answer counts as not holding it.
    ///
    /// Waits for every node's answer (each at most the node timeout).
    ///
    /// Errors: [`SpinError::Lock`] with `NoQuorum` when more than a
    /// minority of nodes failed to answer (and the rest do not prove it held).
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    ///
    /// ```no_run
    /// # async fn demo(spin: quorate_spinlock::Spinlock) -> Result<(), quorate_spinlock::SpinError> {
    /// if spin.locked("invoice:42").await? {
    ///     println!("someone is on it");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn locked(&self, key: impl Into<SpinKey>) -> Result<bool, SpinError> {
        let lock_key = self.lock_key(key);
        self.locked_key(&lock_key).await
    }

    /// Every node's view of `key`'s lock: the client holding it, its
    /// remaining hold time, and the majority's view ([`Redlock::inspect`]
    /// on the lock key).
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    ///
    /// ```no_run
    /// # async fn demo(spin: quorate_spinlock::Spinlock) -> Result<(), quorate_spinlock::SpinError> {
    /// println!("{}", spin.inspect("invoice:42").await?);
    /// # Ok(()) }
    /// ```
    pub async fn inspect(&self, key: impl Into<SpinKey>) -> Result<Inspection, SpinError> {
        Ok(self.redlock.inspect(&self.lock_key(key)).await?)
    }

    /// Frees `key`'s lock on every node whatever its holder, for a holder
    /// known to be dead ([`Redlock::force_unlock`] on the lock key;
    /// waiting tries are woken). The holder, if alive, is not told. A
    /// stored result is left alone.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped midway, some nodes may have deleted the key.
    ///
    /// ```no_run
    /// # async fn demo(spin: quorate_spinlock::Spinlock) -> Result<(), quorate_spinlock::SpinError> {
    /// let gone = spin.force_unlock("invoice:42").await?;
    /// println!("deleted on {} nodes", gone.deleted);
    /// # Ok(()) }
    /// ```
    pub async fn force_unlock(&self, key: impl Into<SpinKey>) -> Result<ForceUnlocked, SpinError> {
        Ok(self.redlock.force_unlock(&self.lock_key(key)).await?)
    }

    pub(crate) async fn locked_key(&self, lock_key: &str) -> Result<bool, SpinError> {
        // where lock_with put it: after the namespace
        let lock_key = &self.redlock.lock_key(lock_key);
        // Every node's answer (each bounded by the node timeout, a stalled
        // one only briefly once a majority answered), not just the first
        // majority's: "held", "free" and "cannot tell" need them all.
        let timeout = self.options.effective_node_timeout();
        let nodes = self.redlock.nodes();
        let round = quorum::round(
            LOCK_STATE.name(),
            nodes,
            timeout,
            Decide::AllWithGrace,
            |_| true,
            |node| node.eval(&LOCK_STATE, vec![lock_key.to_owned()], vec![]),
        )
        .await;
        let quorum = self.redlock.quorum();
        let mut held = 0;
        let mut reports = Vec::new();
        for (node, answer) in nodes.iter().zip(round.replies) {
            let outcome = match answer {
                Reply::Answered(pttl) if pttl.as_int().is_some_and(|t| t != -2) => {
                    held += 1;
                    NodeOutcome::Taken {
                        resource: lock_key.to_owned(),
                        remaining: pttl
                            .as_int()
                            .and_then(|t| u64::try_from(t).ok())
                            .map(Duration::from_millis),
                        // `locked` answers yes or no; `inspect` names holders
                        holder: None,
                    }
                }
                Reply::Answered(_) => NodeOutcome::NotHeld,
                Reply::Failed(error) => NodeOutcome::Error(error),
                Reply::TimedOut => NodeOutcome::TimedOut,
                Reply::Pending => NodeOutcome::Pending,
            };
            reports.push(NodeReport {
                node: node.name().to_owned(),
                outcome,
            });
        }
        let outcomes = Outcomes(reports);
        // failed, timed out, or cut off by the grace: no answer either way
        let failed = outcomes
            .nodes_where(|o| {
                matches!(
                    o,
                    NodeOutcome::Error(_) | NodeOutcome::TimedOut | NodeOutcome::Pending
                )
            })
            .len();
        if held < quorum && failed > nodes.len() - quorum {
            return Err(SpinError::Lock(Error::NoQuorum {
                granted: nodes.len() - failed,
                nodes: nodes.len(),
                quorum,
                outcomes,
            }));
        }
        Ok(held >= quorum)
    }

    pub(crate) async fn acquire_key(&self, lock_key: &str) -> Result<LockGuard, SpinError> {
        let started = Instant::now();
        let span = tracing::debug_span!("quorate.spinlock.acquire", key = %lock_key);
        let result = async {
            if self.options.get_fail_if_held() {
                return self.try_key(lock_key).await;
            }
            self.spin(lock_key, started).await
        }
        .instrument(span)
        .await;
        metrics::acquired(acquire_outcome(&result), started.elapsed());
        result
    }

    /// `tries` single rounds with `sleep` (+ jitter) between them; a
    /// release announcement of the key (heard once the first round failed)
    /// ends a sleep early. Exactly `tries` rounds, about (tries − 1) × sleep
    /// when the key stays held.
    async fn spin(&self, lock_key: &str, started: Instant) -> Result<LockGuard, SpinError> {
        let round = self.options.single_round_options();
        let tries = self.options.get_tries();
        let mut watch: Option<ReleaseWatch> = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(watch) = watch.as_mut() {
                watch.mark_seen();
            }
            let last = match self.redlock.lock_with([lock_key], &round).await {
                Ok(guard) => return Ok(guard),
                Err(error @ Error::InvalidConfig(_)) => return Err(SpinError::Lock(error)),
                Err(error) => error,
            };
            if attempt >= tries {
                return Err(self.gave_up(lock_key, started, last));
            }
            let pause = self.options.get_sleep() + random_pause(self.options.get_jitter());
            // The holder's longest remaining time bounds when a majority is free.
            let expiry = match &last {
                Error::Taken { outcomes, .. } => outcomes
                    .0
                    .iter()
                    .filter_map(|r| match r.outcome {
                        NodeOutcome::Taken { remaining, .. } => remaining,
                        _ => None,
                    })
                    .max()
                    .map(|left| left + Duration::from_millis(1)),
                _ => None,
            };
            let until = Instant::now() + expiry.map_or(pause, |e| e.min(pause));
            if watch.is_none() {
                let keys = [lock_key.to_owned()];
                let timeout = round.effective_node_timeout();
                watch = Some(self.redlock.watch_releases(&keys, timeout).await);
            }
            if let Some(watch) = watch.as_mut() {
                tokio::select! {
                    biased;
                    _ = watch.released() => {
                        // Every spinning waiter hears it: spread their tries.
                        tokio::time::sleep(random_pause(Duration::from_millis(4))).await;
                    }
                    () = tokio::time::sleep_until(until) => {}
                }
            }
        }
    }

    pub(crate) async fn try_key(&self, lock_key: &str) -> Result<LockGuard, SpinError> {
        let options = self.options.single_round_options();
        match self.redlock.lock_with([lock_key], &options).await {
            Ok(guard) => Ok(guard),
            Err(Error::Taken { outcomes, .. }) => Err(SpinError::held(lock_key, outcomes)),
            Err(other) => Err(SpinError::Lock(other)),
        }
    }

    /// The error after the last try: bad options pass through; anything else
    /// means every try was made (no deadline is set on a spin).
    pub(crate) fn gave_up(&self, lock_key: &str, started: Instant, last: Error) -> SpinError {
        match last {
            Error::InvalidConfig(_) => SpinError::Lock(last),
            last => {
                tracing::debug!(key = %lock_key, %last, "tries exhausted");
                SpinError::TriesExhausted {
                    key: lock_key.to_owned(),
                    tries: self.options.get_tries(),
                    waited: started.elapsed(),
                    last,
                }
            }
        }
    }
}

fn acquire_outcome(result: &Result<LockGuard, SpinError>) -> &'static str {
    match result {
        Ok(_) => "acquired",
        Err(SpinError::Held { .. }) => "held",
        Err(SpinError::TriesExhausted { .. }) => "tries_exhausted",
        Err(_) => "error",
    }
}
