//! Distributed single-flight: the first caller computes and stores the
//! result; the others get the stored result instead of computing again.

use std::future::Future;

use quorate_redlock::raw::quorum::Reply;
use quorate_redlock::raw::{MemoryStore, NodeScript, ScriptValue};
use quorate_redlock::{Error, LockGuard, NodeOutcome};
use tokio::time::Instant;
use tracing::Instrument;

use crate::error::{ComputeError, SpinError};
use crate::key::SpinKey;
use crate::metrics;
use crate::spinlock::Spinlock;

pub(crate) static GET_RESULT: NodeScript = NodeScript::new(
    "spinlock_get_result",
    include_str!("../scripts/get_result.lua"),
)
.emulated(get_result_in_memory);
pub(crate) static STORE_RESULT: NodeScript = NodeScript::new(
    "spinlock_store_result",
    include_str!("../scripts/store_result.lua"),
)
.emulated(store_result_in_memory);

/// `get_result.lua` on a memory node.
fn get_result_in_memory(
    store: &mut MemoryStore,
    keys: &[String],
    _args: &[Vec<u8>],
) -> Result<ScriptValue, String> {
    let key = keys.first().ok_or("no key")?;
    Ok(store
        .get(key)
        .map_or(ScriptValue::Nil, |v| ScriptValue::Bytes(v.to_vec())))
}

/// `store_result.lua` on a memory node.
fn store_result_in_memory(
    store: &mut MemoryStore,
    keys: &[String],
    args: &[Vec<u8>],
) -> Result<ScriptValue, String> {
    let key = keys.first().ok_or("no key")?;
    let (value, expiry) = match args {
        [value, expiry, ..] => (value, expiry),
        _ => return Err("too few arguments".into()),
    };
    let ms: u64 = std::str::from_utf8(expiry)
        .ok()
        .and_then(|e| e.parse().ok())
        .ok_or("expiry is not a number")?;
    let ttl = (ms != 0).then(|| std::time::Duration::from_millis(ms));
    store.set(key, value, ttl);
    Ok(ScriptValue::Int(1))
}

impl Spinlock {
    /// The result for `key`: the stored one if a computation already
    /// finished, else `compute`'s, computed by exactly one caller at a time
    /// across every process sharing the nodes (py-dspinlock's
    /// `cached_if_computed`).
    ///
    /// 1. A quorum read of the stored result: found, it is returned.
    /// 2. Otherwise the caller waits for the lock in at most
    ///    [`tries`](crate::SpinOptions::tries) slices of
    ///    [`sleep`](crate::SpinOptions::sleep) (+ jitter), reading the
    ///    stored result again before each slice; within a slice it is woken
    ///    by the holder's release (or the end of its hold time), and the
    ///    callers of one process queue rather than all contend. The whole
    ///    wait is therefore bounded by about `tries × (sleep + jitter)`;
    ///    then [`SpinError::TriesExhausted`].
    /// 3. With the lock: read again (the previous holder may have stored it
    ///    meanwhile), else run `compute` while the lock is held, store its
    ///    result with the [`result_expiry`](crate::SpinOptions::result_expiry)
    ///    (on a majority), release, and return it.
    ///
    /// A computation error is returned as [`ComputeError::Compute`] and not
    /// stored: the next call computes again. A computation that outlives the
    /// [`max_hold`](crate::SpinOptions::max_hold) time is cancelled
    /// ([`SpinError::HoldTimeExceeded`]): by then another caller may hold
    /// the lock. A holder that dies (its task aborted, its process killed)
    /// blocks the key until its hold time ends; then a waiting or later
    /// caller computes. A result stored on fewer than a majority of nodes is
    /// still returned to its computer (and logged at warn), but later
    /// callers may not see it and compute again.
    ///
    /// With [`fail_if_held`](crate::SpinOptions::fail_if_held) a held key
    /// with no stored result fails at once with [`SpinError::Held`].
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future drops the computation; a held lock is
    /// released (spawned) and nothing is stored.
    ///
    /// ```no_run
    /// # async fn demo(spin: quorate_spinlock::Spinlock) -> Result<(), Box<dyn std::error::Error>> {
    /// let report = spin
    ///     .compute_once("report:2024-06", || async {
    ///         // the expensive part; runs once across all callers
    ///         Ok::<_, std::io::Error>(b"42 rows".to_vec())
    ///     })
    ///     .await?;
    /// assert_eq!(report, b"42 rows");
    /// # Ok(()) }
    /// ```
    pub async fn compute_once<K, F, Fut, E>(
        &self,
        key: K,
        compute: F,
    ) -> Result<Vec<u8>, ComputeError<E>>
    where
        K: Into<SpinKey>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
    {
        let key = key.into();
        let lock_key = self.scheme.lock_key(&key);
        let result_key = self.result_key(key.clone());
        let started = Instant::now();
        let span = tracing::debug_span!("quorate.spinlock.compute_once", key = %lock_key);
        let (result, outcome) = self
            .single_flight(&lock_key, &result_key, started, compute)
            .instrument(span)
            .await;
        metrics::computed(outcome, started.elapsed());
        result
    }

    async fn single_flight<F, Fut, E>(
        &self,
        lock_key: &str,
        result_key: &str,
        started: Instant,
        compute: F,
    ) -> (Result<Vec<u8>, ComputeError<E>>, &'static str)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
    {
        let guard = match self
            .wait_for_result_or_lock(lock_key, result_key, started)
            .await
        {
            Ok(Found::Result(value)) => return (Ok(value), "cached"),
            Ok(Found::Lock(guard)) => guard,
            Err(error) => {
                let outcome = match error {
                    SpinError::Held { .. } => "held",
                    SpinError::TriesExhausted { .. } => "tries_exhausted",
                    _ => "error",
                };
                return (Err(error.into()), outcome);
            }
        };
        // Double-checked: the previous holder may have stored it just now.
        match self.read_result(result_key).await {
            Ok(Some(value)) => {
                release(guard).await;
                return (Ok(value), "cached");
            }
            Ok(None) => {}
            Err(error) => return (Err(error.into()), "error"),
        }
        self.compute_holding(guard, lock_key, result_key, compute)
            .await
    }

    /// Step 2: the stored result, or the lock.
    async fn wait_for_result_or_lock(
        &self,
        lock_key: &str,
        result_key: &str,
        started: Instant,
    ) -> Result<Found, SpinError> {
        let tries = self.options.get_tries();
        let slice = self.options.wait_slice_options();
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(value) = self.read_result(result_key).await? {
                return Ok(Found::Result(value));
            }
            if self.options.get_fail_if_held() {
                return self.try_key(lock_key).await.map(Found::Lock);
            }
            match self.redlock.lock_with([lock_key], &slice).await {
                Ok(guard) => return Ok(Found::Lock(guard)),
                Err(last) if attempt >= tries => return Err(self.gave_up(lock_key, started, last)),
                Err(error) => {
                    tracing::debug!(%error, attempt, "slice over; reading the result again")
                }
            }
        }
    }

    /// Step 3: compute while the lock is held, store, release.
    async fn compute_holding<F, Fut, E>(
        &self,
        guard: LockGuard,
        lock_key: &str,
        result_key: &str,
        compute: F,
    ) -> (Result<Vec<u8>, ComputeError<E>>, &'static str)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
    {
        let computing = Instant::now();
        let outcome = tokio::select! {
            biased;
            _lost = guard.lost() => None,
            output = compute() => Some(output),
        };
        metrics::compute_time(computing.elapsed());
        match outcome {
            None => {
                tracing::warn!(key = %lock_key, "computation outlived the hold time; cancelled");
                // Expired: the drop's release deletes only what is still ours.
                drop(guard);
                let error = SpinError::HoldTimeExceeded {
                    key: lock_key.to_owned(),
                    max_hold: self.options.hold_ttl(),
                };
                (Err(error.into()), "hold_exceeded")
            }
            Some(Err(error)) => {
                release(guard).await;
                (Err(ComputeError::Compute(error)), "compute_error")
            }
            Some(Ok(value)) => {
                self.store_result(&guard, result_key, &value).await;
                release(guard).await;
                (Ok(value), "computed")
            }
        }
    }

    /// The stored result, decoded; `None` when no computation finished (or
    /// its result expired).
    async fn read_result(&self, result_key: &str) -> Result<Option<Vec<u8>>, SpinError> {
        let Some(stored) = self.read_stored(result_key).await? else {
            return Ok(None);
        };
        self.scheme
            .decode(&stored)
            .map(Some)
            .map_err(|reason| SpinError::Codec {
                key: result_key.to_owned(),
                reason,
            })
    }

    /// The stored value of `result_key` among the first majority of answers
    /// (any node's copy is a finished computation's result), or `None`. Fewer
    /// answers are `NoQuorum`, even if one of them holds a value: a call
    /// never depends on which nodes happened to answer first.
    async fn read_stored(&self, result_key: &str) -> Result<Option<Vec<u8>>, SpinError> {
        let timeout = self.options.effective_node_timeout();
        let round = self
            .redlock
            .eval_round(
                &GET_RESULT,
                vec![result_key.to_owned()],
                vec![],
                timeout,
                |_| true,
            )
            .await;
        let nodes = self.redlock.nodes();
        let quorum = self.redlock.quorum();
        if round.answered() < quorum {
            return Err(SpinError::Lock(Error::NoQuorum {
                granted: round.answered(),
                nodes: nodes.len(),
                quorum,
                outcomes: round.outcomes(nodes, |_| NodeOutcome::Granted),
            }));
        }
        Ok(round.replies.into_iter().find_map(|r| match r {
            Reply::Answered(ScriptValue::Bytes(stored)) => Some(stored),
            _ => None,
        }))
    }

    /// Writes the result on every node, decided at a majority. Only while
    /// the lock is still ours: after the hold time another caller may be
    /// computing.
    async fn store_result(&self, guard: &LockGuard, result_key: &str, value: &[u8]) {
        if !guard.is_valid() {
            tracing::warn!(key = %result_key, "hold time ran out before the result was stored");
            metrics::stored("expired");
            return;
        }
        let args = vec![self.scheme.encode(value), self.options.result_expiry_arg()];
        let round = self
            .redlock
            .eval_round(
                &STORE_RESULT,
                vec![result_key.to_owned()],
                args,
                self.options.effective_node_timeout(),
                |v| v.as_int() == Some(1),
            )
            .await;
        if round.successes >= self.redlock.quorum() {
            metrics::stored("stored");
        } else {
            let outcomes = round.outcomes(self.redlock.nodes(), |_| {
                quorate_redlock::NodeOutcome::Granted
            });
            tracing::warn!(key = %result_key, %outcomes, "result stored on fewer than a majority");
            metrics::stored("no_quorum");
        }
    }
}

enum Found {
    Result(Vec<u8>),
    Lock(LockGuard),
}

/// Releases after the work is done; a failed release only delays the next
/// holder until the hold time ends, so it is logged, not returned.
async fn release(guard: LockGuard) {
    if let Err(error) = guard.release().await {
        tracing::warn!(%error, "release after compute_once failed; the lock expires with its hold time");
    }
}
