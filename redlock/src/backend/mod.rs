//! The backend seam: what the quorum engine needs from one server.
//!
//! Two implementations: [`FredNode`] (a real Redis-protocol server through
//! fred) and [`MemoryNode`] (in-process, same semantics, for unit tests and
//! demos). A conformance suite (`redlock/tests/conformance.rs`) runs the same cases on both.
//!
//! See ARCHITECTURE.md, "Backends", for how this fits the whole.

mod fred;
pub(crate) mod hash_slot;
pub(crate) mod holder;
#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "memory")]
mod memory_queue;
mod memory_store;
pub(crate) mod quarantine;
pub(crate) mod queue_protocol;
mod script;

pub(crate) use self::fred::server_version;
pub use self::fred::{FredNode, FredSettings};
#[cfg(feature = "memory")]
pub use self::memory::{MemoryNode, MemorySnapshot};
pub use self::memory_store::{MemoryScript, MemoryStore};
pub(crate) use self::queue_protocol::{QueueEntry, WAKE_CHANNEL_PREFIX};
pub use self::script::{NodeScript, ScriptValue};

use std::fmt;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use tokio::sync::broadcast;

use self::holder::Holder;

/// Releases are announced on this channel prefix plus the key.
pub const RELEASE_CHANNEL_PREFIX: &str = "quorate:released:";

/// A node call's future: owns what it needs, so it can outlive the caller
/// (cleanup after a cancelled lock call is spawned).
pub type NodeFuture<T> = BoxFuture<'static, Result<T, NodeError>>;

/// What a node answered to an acquire request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcquireReply {
    /// Every key was set to our token; with fencing, the largest of the
    /// keys' fence counters after incrementing them.
    Granted {
        /// The node's fence token, when fencing was asked for.
        fence: Option<u64>,
        /// The ticket of the first waiter still queued for these keys on
        /// this node after the grant (queued requests only): a local
        /// hand-off must not pass over it.
        next: Option<u64>,
        /// The ticket of the first fair waiter still queued for these keys
        /// on this node (queued requests only): nobody may pass over it.
        next_fair: Option<u64>,
    },
    /// `keys[index]` holds another token; nothing was set. `remaining` is that
    /// key's ttl (`None`: no expiry).
    Taken {
        /// Index into the request's keys.
        index: usize,
        /// The holder's remaining ttl on this node (`None`: no expiry, or
        /// free but claimed for or queued behind an earlier waiter).
        remaining: Option<Duration>,
        /// Our place in that key's waiter queue (0: the head), for queued
        /// requests.
        rank: Option<u64>,
        /// Who holds that key (`None`: claimed for a queued waiter, queued
        /// behind one, or not a quorate token).
        holder: Option<Holder>,
        /// For queued requests: the deadline the entry now has on this node
        /// (the node's clock, ms). A later grant's wake-up names it
        /// ([`QueueGrant`]).
        deadline: Option<u64>,
    },
}

/// What a wake-up says about the grant that woke it: the key was set to
/// `token` while the head's entry had `deadline`. The head counts the key as
/// held on that node if `deadline` is the one its latest refused round was
/// answered with (the grant then came after that round reached the node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueGrant {
    /// The head's entry deadline on the node (ms, the node's clock).
    pub deadline: u64,
    /// The value the key now holds.
    pub token: String,
}

/// A release announcement (which key, released by which client), or a
/// wake-up addressed to one client: its waiter is the head of the key's
/// queue and the key is claimed for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Released {
    /// The released key.
    pub key: String,
    /// The releasing client's id (a Redlock's random instance id); empty
    /// in a wake-up.
    pub by: String,
    /// `Some(client id)` for a wake-up addressed to that client; `None`
    /// for an announcement to every watcher of the key.
    pub to: Option<String>,
    /// For a wake-up: the grant that woke it.
    pub grant: Option<QueueGrant>,
}

/// One lock of a batched extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtendRequest {
    /// The lock's keys.
    pub keys: std::sync::Arc<[String]>,
    /// The lock's token.
    pub token: String,
    /// The new ttl.
    pub ttl: Duration,
}

/// A failed node call: connection, protocol, script or auth error. Its
/// message says what happened in words; its [`source`](std::error::Error::source)
/// is the client library's own error where there was one (for fred:
/// `fred::error::Error`, with its kind), so callers can inspect it.
#[derive(Clone, Debug)]
pub struct NodeError {
    message: String,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl NodeError {
    /// An error described by `message` alone.
    pub fn new(message: impl Into<String>) -> Self {
        NodeError {
            message: message.into(),
            source: None,
        }
    }

    /// An error described by `message`, caused by `source`.
    pub fn with_source(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        NodeError {
            message: message.into(),
            source: Some(std::sync::Arc::new(source)),
        }
    }

    /// What happened, in words.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Two errors are equal when they say the same (sources are not compared).
impl PartialEq for NodeError {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl Eq for NodeError {}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// One independent server. Each call is atomic on the node.
///
/// Semantics every implementation keeps (the conformance suite checks them):
/// - `acquire` sets all keys to `token` with `ttl`, or none if any exists
///   (whatever token it holds: tokens are fresh per round), reporting the
///   first existing key and its remaining ttl. A queued request (see
///   [`QueueEntry`]) may also take a key claimed for it, and when refused
///   is added to (or refreshed in) each key's waiter queue.
/// - `release` deletes the keys that still hold `token`, returns how many,
///   passes each to the head of its waiter queue (a claim of
///   [`HEAD_CLAIM`](queue_protocol::HEAD_CLAIM), the head's client woken),
///   and with `announce` tells subscribers which key was released by whom.
/// - `extend` resets the ttl of all keys if all still hold `token`.
///
/// Release notifications are optional: a node that cannot deliver them
/// keeps the defaults (`releases` → `None`) and waiters fall back to
/// polling. Notifications only ever save latency, never decide anything.
pub trait Node: Send + Sync + fmt::Debug + 'static {
    /// A name for errors, logs and metric labels: `host:port`, no secrets.
    fn name(&self) -> &str;
    /// Take every key or none; with `fenced`, also increment each key's
    /// fence counter ([`fence_key`]) and report the largest. With `queue`,
    /// the request is a queued waiter's.
    fn acquire(
        &self,
        keys: &[String],
        token: &str,
        ttl: Duration,
        fenced: bool,
        queue: Option<&QueueEntry>,
    ) -> NodeFuture<AcquireReply>;

    /// Removes the waiter `member` from the queues of `keys` (it stopped
    /// waiting); a claim held for it passes to the next head.
    fn leave_queue(&self, keys: &[String], member: &str) -> NodeFuture<()>;

    /// Fencing write-back: each key's counter = max(counter, `fence`).
    fn raise_fence(&self, keys: &[String], fence: u64) -> NodeFuture<()>;
    /// Compare-and-delete; returns the number of keys deleted. With
    /// `announce` (the releasing client's id), each deleted key is announced.
    fn release(&self, keys: &[String], token: &str, announce: Option<&str>) -> NodeFuture<u64>;
    /// Compare-and-reset-ttl of all keys; `false` if any key is not ours.
    fn extend(&self, keys: &[String], token: &str, ttl: Duration) -> NodeFuture<bool>;

    /// Extends many locks in one request (the watchdog's batch): one answer
    /// per lock, with [`extend`](Self::extend)'s semantics. The default
    /// sends one `extend` per lock; backends override it with one request.
    fn extend_many(&self, locks: &[ExtendRequest]) -> NodeFuture<Vec<bool>> {
        let calls: Vec<_> = locks
            .iter()
            .map(|l| self.extend(&l.keys, &l.token, l.ttl))
            .collect();
        futures::future::try_join_all(calls).boxed()
    }

    /// Runs a primitive's own script (pool, tree, spinlock) atomically on
    /// the node, with `keys` and binary-safe `args`: as a Redis 7 function
    /// (`FCALL`) where the server has functions and allows them, else by
    /// `EVALSHA`, loading the script when the server does not know it. The
    /// default answers with an error naming the script: a node that cannot
    /// run Lua does not support
    /// the primitives built on scripts. [`MemoryNode`] runs the script's
    /// native twin ([`NodeScript::emulated`]) when it has one.
    fn eval(
        &self,
        script: &'static NodeScript,
        keys: Vec<String>,
        args: Vec<Vec<u8>>,
    ) -> NodeFuture<ScriptValue> {
        let _ = (keys, args);
        let error = NodeError::new(format!(
            "{} cannot run script `{}`",
            self.name(),
            script.name()
        ));
        futures::future::ready(Err(error)).boxed()
    }

    /// Whether the node is a Redis Cluster: one script call must keep to
    /// keys of one hash slot. The default: `false`.
    fn is_cluster(&self) -> bool {
        false
    }

    /// Starts delivering release announcements of `keys` to
    /// [`releases`](Self::releases); resolves once the node confirmed.
    fn subscribe(&self, keys: &[String]) -> NodeFuture<()> {
        let _ = keys;
        futures::future::ready(Ok(())).boxed()
    }

    /// Starts delivering wake-ups addressed to `client` to
    /// [`releases`](Self::releases); resolves once the node confirmed.
    fn subscribe_wakes(&self, client: &str) -> NodeFuture<()> {
        let _ = client;
        futures::future::ready(Ok(())).boxed()
    }

    /// Stops delivering announcements of `keys`.
    fn unsubscribe(&self, keys: &[String]) -> NodeFuture<()> {
        let _ = keys;
        futures::future::ready(Ok(())).boxed()
    }

    /// A receiver of release announcements (at least of the subscribed
    /// keys) and wake-ups, or `None` when the node cannot deliver them.
    fn releases(&self) -> Option<broadcast::Receiver<Released>> {
        None
    }

    /// How long this node stays out of every vote after it lost its data:
    /// the longest ttl any of its clients may use (see
    /// [`MARKER_KEY`](crate::MARKER_KEY)). Set by the [`Redlock`](crate::Redlock)
    /// built on the node. The default ignores it: a node without quarantine.
    fn set_max_ttl(&self, max_ttl: Duration) {
        let _ = max_ttl;
    }

    /// Declares the node fresh: sets its marker if it has none or has one
    /// from before the server's last restart, and no quarantine is
    /// running, so a server that never held a lock (or restarted with
    /// every write kept) votes at once instead of serving a quarantine.
    /// `true` if it set it. The default does nothing.
    fn declare_fresh(&self) -> NodeFuture<bool> {
        futures::future::ready(Ok(false)).boxed()
    }
}

/// The watchdog's batch on a node whose calls each keep to one group of
/// keys (a Redis Cluster's hash slot, a shard): `locks` grouped by
/// `group`, one `extend` call per group, sent together, the answers put back
/// in the order of `locks`. A group that fails fails the node's answer for
/// every lock: an extension counts only where it was confirmed.
pub fn extend_in_groups<K: Ord>(
    locks: &[ExtendRequest],
    group: impl Fn(&ExtendRequest) -> K,
    extend: impl Fn(&[ExtendRequest]) -> NodeFuture<Vec<bool>>,
) -> NodeFuture<Vec<bool>> {
    let mut groups: std::collections::BTreeMap<K, Vec<usize>> = Default::default();
    for (i, lock) in locks.iter().enumerate() {
        groups.entry(group(lock)).or_default().push(i);
    }
    let groups: Vec<Vec<usize>> = groups.into_values().collect();
    let calls: Vec<_> = groups
        .iter()
        .map(|members| {
            let part: Vec<ExtendRequest> = members.iter().map(|&i| locks[i].clone()).collect();
            extend(&part)
        })
        .collect();
    let count = locks.len();
    async move {
        let mut extended = vec![false; count];
        for (members, answer) in groups.iter().zip(futures::future::join_all(calls).await) {
            for (&i, ok) in members.iter().zip(answer?) {
                extended[i] = ok;
            }
        }
        Ok(extended)
    }
    .boxed()
}

/// The fence counter of a lock key: `quorate:fence:{key}`, or
/// `quorate:fence:{tag}:key` for a key with a hash tag, so that it is in
/// the key's Redis Cluster slot (see [`hash_tag`](crate::raw::hash_tag)).
/// It has no ttl.
pub fn fence_key(key: &str) -> String {
    hash_slot::companion_key("quorate:fence:", key)
}

/// Redis wants whole milliseconds; round up so a 1.5 ms ttl is not 1 ms
/// and a sub-millisecond ttl is not 0 (which Redis rejects).
pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}
