//! The countdown latch: `count` count-downs open it; waiters wake when it
//! opens.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use quorate_redlock::raw::quorum::{self, Decide, Reply, Round};
use quorate_redlock::raw::{
    retry, MemoryStore, NodeScript, Retry, ScriptValue, WaitPolicy, RELEASE_CHANNEL_PREFIX,
};
use quorate_redlock::Redlock;
use tokio::time::Instant;

use crate::error::LatchError;

pub(crate) static COUNT_DOWN: NodeScript = NodeScript::new(
    "latch_count_down",
    include_str!("../scripts/count_down.lua"),
)
.emulated(count_down_in_memory)
.granting();

pub(crate) static READ: NodeScript =
    NodeScript::new("latch_read", include_str!("../scripts/read.lua"))
        .emulated(read_in_memory)
        .granting();

/// What a count-down's error reply starts with when the server has
/// another count for the latch.
const MISMATCH: &str = "QUORATE_LATCH_COUNT ";

/// How long a waiter sleeps between reads when no announcement comes (a
/// count-down announces itself; a missed announcement costs this much).
const POLL: Duration = Duration::from_secs(1);

fn count_down_in_memory(
    store: &mut MemoryStore,
    keys: &[String],
    args: &[Vec<u8>],
) -> Result<ScriptValue, String> {
    let [count_key, downs] = keys else {
        return Err("expected 2 keys".to_owned());
    };
    let [count, id, ttl, ..] = args else {
        return Err("expected 5 arguments".to_owned());
    };
    let ttl: u64 = std::str::from_utf8(ttl)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or("ttl is not a number")?;
    let ttl = Duration::from_millis(ttl);
    if let Some(current) = store.get(count_key) {
        if current != count.as_slice() {
            return Err(format!("{MISMATCH}{}", String::from_utf8_lossy(current)));
        }
    }
    store.set(count_key, count, Some(ttl));
    store.sadd(downs, id);
    store.pexpire(downs, ttl);
    store.announce_release(count_key);
    Ok(ScriptValue::Int(store.collection_len(downs) as i64))
}

fn read_in_memory(
    store: &mut MemoryStore,
    keys: &[String],
    _args: &[Vec<u8>],
) -> Result<ScriptValue, String> {
    let [count_key, downs] = keys else {
        return Err("expected 2 keys".to_owned());
    };
    let count = store
        .get(count_key)
        .map_or(ScriptValue::Nil, |c| ScriptValue::Bytes(c.to_vec()));
    let ids = store.smembers(downs).into_iter().map(ScriptValue::Bytes);
    Ok(ScriptValue::Array(vec![
        count,
        ScriptValue::Array(ids.collect()),
    ]))
}

/// A countdown latch called `name` on a Redlock's nodes: it opens once
/// `count` count-downs were made, by any clients; [`wait`](Self::wait)
/// returns then. Every client must use the same count for a name (a
/// different one is [`LatchError::CountMismatch`]). Cloning shares it.
///
/// **On a quorum.** Each count-down is recorded, under an id of its own, on
/// a majority of nodes; a read unites the ids a majority reports. Any two
/// majorities meet, so a read sees every count-down that succeeded: the
/// count survives a minority of nodes failing, and nodes that lost their
/// data sit out (quarantine) like for locks. A count-down that failed may
/// still count (it reached some nodes); one that succeeded counts once,
/// even though it is sent again until a majority has it.
///
/// The latch's keys expire `expire_after` (default 24 h) after its last
/// count-down; a latch nobody counted down since is gone (and starts again
/// from `count`).
#[derive(Clone)]
pub struct Latch {
    inner: Arc<Inner>,
}

struct Inner {
    redlock: Redlock,
    name: String,
    count: u64,
    count_key: String,
    downs_key: String,
    expire_after: Duration,
}

impl fmt::Debug for Latch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Latch")
            .field("name", &self.inner.name)
            .field("count", &self.inner.count)
            .finish_non_exhaustive()
    }
}

/// The default lifetime of a latch after its last count-down.
pub const DEFAULT_EXPIRE_AFTER: Duration = Duration::from_secs(24 * 3600);

impl Latch {
    /// The latch `name` of `count` count-downs on `redlock`'s nodes.
    /// Nothing is sent until the first call.
    ///
    /// Errors: a count of 0, an empty name or one with a brace.
    pub fn new(redlock: &Redlock, name: &str, count: u64) -> Result<Latch, LatchError> {
        Self::with_expiry(redlock, name, count, DEFAULT_EXPIRE_AFTER)
    }

    /// [`new`](Self::new) with the latch's lifetime after its last
    /// count-down (default [`DEFAULT_EXPIRE_AFTER`]; positive, at most
    /// [`MAX_TTL`](quorate_redlock::MAX_TTL)).
    pub fn with_expiry(
        redlock: &Redlock,
        name: &str,
        count: u64,
        expire_after: Duration,
    ) -> Result<Latch, LatchError> {
        quorate_redlock::NameError::check("latch", name, false, None)?;
        if count == 0 {
            return Err(LatchError::ZeroCount);
        }
        if expire_after < Duration::from_millis(1) || expire_after > quorate_redlock::MAX_TTL {
            return Err(LatchError::BadExpiry(expire_after));
        }
        // after the Redlock's namespace, as the mutex's keys
        let base = format!("{}quorate:latch:{{{name}}}:", redlock.namespace());
        Ok(Latch {
            inner: Arc::new(Inner {
                redlock: redlock.with_metric_label("latch"),
                name: name.to_owned(),
                count,
                count_key: format!("{base}count"),
                downs_key: format!("{base}downs"),
                expire_after,
            }),
        })
    }

    /// The latch's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The number of count-downs that open it.
    pub fn count(&self) -> u64 {
        self.inner.count
    }

    /// Counts down once: recorded on a majority of nodes under a fresh id
    /// (sent again to every node until a majority has it, up to the
    /// Redlock's acquire timeout), then announced so waiters read again.
    ///
    /// Errors: [`LatchError::CountMismatch`] when a node has another count
    /// for this name; [`LatchError::Lock`] with [`Error::NoQuorum`](quorate_redlock::Error::NoQuorum) when no
    /// majority recorded it in time (it may still count: see [`Latch`]).
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped midway, the count-down may have reached
    /// some nodes, and then counts (once) wherever a read sees it.
    ///
    /// ```no_run
    /// # async fn demo(latch: quorate_latch::Latch) -> Result<(), quorate_latch::LatchError> {
    /// latch.count_down().await?; // this worker is done
    /// # Ok(()) }
    /// ```
    pub async fn count_down(&self) -> Result<(), LatchError> {
        let inner = &self.inner;
        let redlock = &inner.redlock;
        let options = redlock.defaults();
        let id = redlock.fresh_token().to_hex();
        let args = vec![
            inner.count.to_string().into_bytes(),
            id.into_bytes(),
            millis(inner.expire_after).into_bytes(),
            RELEASE_CHANNEL_PREFIX.as_bytes().to_vec(),
            redlock.owner().client_id().into_bytes(),
        ];
        let keys = vec![inner.count_key.clone(), inner.downs_key.clone()];
        let policy = WaitPolicy::new(options, Instant::now());
        retry(
            redlock,
            &policy,
            None,
            |_| async {
                let round = redlock
                    .eval_round(
                        &COUNT_DOWN,
                        keys.clone(),
                        args.clone(),
                        options.effective_node_timeout(),
                        |v| v.as_int().is_some(),
                    )
                    .await;
                if round.successes >= redlock.quorum() {
                    return Ok(());
                }
                Err(self.failed(&round))
            },
            |error| match error {
                LatchError::CountMismatch { .. } => Retry::GiveUp,
                _ => Retry::After {
                    pause: options.retry_pause(None),
                    watch: None,
                },
            },
        )
        .await
    }

    /// The old name of [`current_count`](Self::current_count): every
    /// guard's `remaining()` is a duration, a latch's is a count.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`current_count`](Self::current_count).
    #[deprecated(since = "0.2.0", note = "renamed to `current_count`")]
    pub async fn remaining(&self) -> Result<u64, LatchError> {
        self.current_count().await
    }

    /// How many count-downs are still needed, as a majority of nodes sees
    /// them (0: open).
    ///
    /// Errors: [`LatchError::CountMismatch`]; [`LatchError::Lock`] with
    /// [`Error::NoQuorum`](quorate_redlock::Error::NoQuorum) when fewer than a majority answered.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    ///
    /// ```no_run
    /// # async fn demo(latch: quorate_latch::Latch) -> Result<(), quorate_latch::LatchError> {
    /// println!("{} to go", latch.current_count().await?);
    /// # Ok(()) }
    /// ```
    pub async fn current_count(&self) -> Result<u64, LatchError> {
        let redlock = &self.inner.redlock;
        let nodes = redlock.nodes();
        let keys = vec![self.inner.count_key.clone(), self.inner.downs_key.clone()];
        // every node's answer (a stalled one only briefly once a majority
        // answered): the union needs them all
        let round = quorum::round(
            READ.name(),
            nodes,
            redlock.defaults().effective_node_timeout(),
            Decide::AllWithGrace,
            |_| true,
            |node| node.eval(&READ, keys.clone(), vec![]),
        )
        .await;
        let mut ids: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut answered = 0;
        for reply in &round.replies {
            let Reply::Answered(ScriptValue::Array(items)) = reply else {
                continue;
            };
            let [count, members] = items.as_slice() else {
                continue;
            };
            if let Some(theirs) = count.as_str() {
                if theirs != self.inner.count.to_string() {
                    return Err(self.mismatch(theirs));
                }
            }
            answered += 1;
            if let Some(members) = members.as_array() {
                ids.extend(
                    members
                        .iter()
                        .filter_map(|m| m.as_bytes().map(<[u8]>::to_vec)),
                );
            }
        }
        if answered < redlock.quorum() {
            return Err(self.failed(&round));
        }
        Ok(self.inner.count.saturating_sub(ids.len() as u64))
    }

    /// Waits until the latch is open, up to `timeout`: woken by every
    /// count-down's announcement (and reading at least every second).
    ///
    /// Errors: [`LatchError::TimedOut`] with the count-downs still
    /// missing; [`LatchError::CountMismatch`]; [`LatchError::Lock`] when
    /// no majority answered at the last read.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    ///
    /// ```no_run
    /// # async fn demo(latch: quorate_latch::Latch) -> Result<(), quorate_latch::LatchError> {
    /// latch.wait(std::time::Duration::from_secs(60)).await?; // every worker is done
    /// # Ok(()) }
    /// ```
    pub async fn wait(&self, timeout: Duration) -> Result<(), LatchError> {
        let redlock = &self.inner.redlock;
        let options = redlock
            .defaults()
            .clone()
            .acquire_timeout(Some(timeout))
            .max_attempts(None);
        let policy = WaitPolicy::new(&options, Instant::now());
        let watch = vec![self.inner.count_key.clone()];
        retry(
            redlock,
            &policy,
            None,
            |_| async {
                match self.current_count().await {
                    Ok(0) => Ok(()),
                    Ok(remaining) => Err(LatchError::TimedOut {
                        name: self.inner.name.clone(),
                        remaining,
                    }),
                    Err(error) => Err(error),
                }
            },
            |error| match error {
                LatchError::CountMismatch { .. } => Retry::GiveUp,
                _ => Retry::After {
                    pause: POLL,
                    watch: Some(watch.clone()),
                },
            },
        )
        .await
    }

    fn mismatch(&self, theirs: &str) -> LatchError {
        LatchError::CountMismatch {
            name: self.inner.name.clone(),
            ours: self.inner.count,
            theirs: theirs.trim().to_owned(),
        }
    }

    /// The error of a round short of a majority: a count mismatch if a
    /// node reported one, else no quorum, naming every node's outcome.
    fn failed<T>(&self, round: &Round<T>) -> LatchError {
        for reply in &round.replies {
            if let Reply::Failed(e) = reply {
                if let Some(theirs) = e.message().split(MISMATCH).nth(1) {
                    return self.mismatch(theirs);
                }
            }
        }
        LatchError::Lock(quorum::no_quorum(&self.inner.redlock, round))
    }
}

fn millis(d: Duration) -> String {
    d.as_nanos().div_ceil(1_000_000).to_string()
}
