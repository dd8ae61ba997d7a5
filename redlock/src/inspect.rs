//! Inspection and administration of locks, for operators: who holds a
//! resource on each node, for how long, its fence counter and queued
//! waiters, and the forced release of a lock whose holder is known dead.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::holder::{Holder, OWNER_KEY_PREFIX};
use crate::backend::queue_protocol::queue_keys;
use crate::backend::{fence_key, MemoryStore, Node, NodeScript, ScriptValue};
use crate::client::Redlock;
use crate::error::{ConfigError, Error};
use crate::quorum::{self, Decide, Reply};

static INSPECT: NodeScript = NodeScript::new(
    "inspect",
    concat!(
        include_str!("../scripts/holder.lua"),
        include_str!("../scripts/inspect.lua")
    ),
)
.emulated(inspect_in_memory);

/// A client's description (`quorate:owner:<id>`), read where it lives.
static OWNER_DESCRIPTION: NodeScript =
    NodeScript::new("owner_description", "return redis.call('GET', KEYS[1])");

/// On a Redis Cluster node `inspect.lua` cannot read a holder's
/// description kept on another shard: it is read here, from its own shard,
/// for the holders named by id alone (bounded by the node timeout; a
/// holder stays undescribed if that fails).
async fn describe_cluster_holders(nodes: &[Arc<dyn Node>], views: &mut [NodeView]) {
    for (node, view) in nodes.iter().zip(views.iter_mut()) {
        let NodeState::Held { holder, .. } = &mut view.state else {
            continue;
        };
        if holder.owner.is_some() || !node.is_cluster() {
            continue;
        }
        let key = format!("{OWNER_KEY_PREFIX}{}", holder.client);
        let read = node.eval(&OWNER_DESCRIPTION, vec![key], Vec::new());
        if let Ok(Ok(ScriptValue::Bytes(bytes))) =
            tokio::time::timeout(DESCRIBE_TIMEOUT, read).await
        {
            holder.owner = Some(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
}

/// How long [`describe_cluster_holders`] waits for each description.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(1);

/// `inspect.lua` on a memory node. Memory nodes keep fence counters and
/// waiter queues outside the keyspace a twin sees: they report neither.
fn inspect_in_memory(
    store: &mut MemoryStore,
    keys: &[String],
    _args: &[Vec<u8>],
) -> Result<ScriptValue, String> {
    let key = keys.first().ok_or("no key")?;
    let value = store.get(key).map(<[u8]>::to_vec);
    let holder = store.holder_of(value.as_deref());
    Ok(ScriptValue::Array(vec![
        value.map_or(ScriptValue::Nil, ScriptValue::Bytes),
        ScriptValue::Int(store.pttl(key)),
        ScriptValue::Nil,
        ScriptValue::Int(0),
        holder,
    ]))
}

/// What one node holds for a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeState {
    /// No key.
    Free,
    /// Held by `holder`, for `remaining` more (`None`: no expiry).
    Held {
        /// Who.
        holder: Holder,
        /// The key's remaining ttl on this node.
        remaining: Option<Duration>,
    },
    /// The key holds something that is not a quorate token (an
    /// application's own key of that name, or a namespace mix-up).
    Foreign,
    /// Passed to the head of the waiter queue, waiting for it to take it:
    /// only for a waiter whose queue entry names no grant token (a client
    /// of an earlier version). A release grants the key to a current
    /// client's head instead, which shows as [`Held`](Self::Held) by it.
    Claimed {
        /// How long the claim lasts.
        remaining: Option<Duration>,
    },
    /// The node did not answer usefully (the client library's error is
    /// the source, where there was one).
    Failed(crate::backend::NodeError),
}

/// One node's view of a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// The node's name (`host:port`).
    pub node: String,
    /// What it holds.
    pub state: NodeState,
    /// Its fence counter for the key, if it has one (fenced locks).
    pub fence: Option<u64>,
    /// Waiters in its queue for the key.
    pub queued: u64,
}

/// Every node's view of one lock ([`Redlock::inspect`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// The lock key (the resource with the client's namespace).
    pub key: String,
    /// One view per node, in the client's node order.
    pub nodes: Vec<NodeView>,
    /// The majority needed.
    pub quorum: usize,
}

impl Inspection {
    /// The holder seen on a majority of nodes: the lock's holder. `None`
    /// when no client holds it on a majority (free, expiring, or split).
    pub fn holder(&self) -> Option<&Holder> {
        let mut counts: Vec<(&Holder, usize)> = Vec::new();
        for view in &self.nodes {
            if let NodeState::Held { holder, .. } = &view.state {
                match counts.iter_mut().find(|(h, _)| h.client == holder.client) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((holder, 1)),
                }
            }
        }
        counts
            .into_iter()
            .find(|(_, n)| *n >= self.quorum)
            .map(|(h, _)| h)
    }

    /// The longest remaining ttl among the nodes that hold it for the
    /// majority holder.
    pub fn remaining(&self) -> Option<Duration> {
        let holder = self.holder()?;
        self.nodes
            .iter()
            .filter_map(|v| match &v.state {
                NodeState::Held {
                    holder: h,
                    remaining,
                } if h.client == holder.client => *remaining,
                _ => None,
            })
            .max()
    }

    /// The highest fence counter on any node.
    pub fn fence(&self) -> Option<u64> {
        self.nodes.iter().filter_map(|v| v.fence).max()
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ttl = |r: &Option<Duration>| match r {
            Some(r) => format!("{} ms left", r.as_millis()),
            None => "no expiry".to_owned(),
        };
        match self {
            NodeState::Free => f.write_str("free"),
            NodeState::Held { holder, remaining } => {
                write!(f, "held by {holder}, {}", ttl(remaining))
            }
            NodeState::Claimed { remaining } => {
                write!(f, "claimed for the next queued waiter, {}", ttl(remaining))
            }
            NodeState::Foreign => f.write_str("not a quorate lock (another kind of value)"),
            NodeState::Failed(e) => write!(f, "no answer: {e}"),
        }
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.holder() {
            Some(holder) => writeln!(f, "{}: held by {holder}", self.key)?,
            None => writeln!(f, "{}: not held by any client on a majority", self.key)?,
        }
        for view in &self.nodes {
            write!(f, "  {}: {}", view.node, view.state)?;
            if let Some(fence) = view.fence {
                write!(f, ", fence {fence}")?;
            }
            if view.queued > 0 {
                write!(f, ", {} queued", view.queued)?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// What [`Redlock::force_unlock`] removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForceUnlocked {
    /// The lock as it was just before.
    pub before: Inspection,
    /// How many nodes deleted the key.
    pub deleted: usize,
}

impl Redlock {
    /// Every node's view of `resource`'s lock: holder (client id and
    /// description), remaining ttl, fence counter, queued waiters; and the
    /// majority view ([`Inspection::holder`]). Reads only; waits for every
    /// node (each bounded by the default node timeout). Memory nodes report
    /// no fence counter and no queue.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    ///
    /// ```no_run
    /// # async fn demo(redlock: quorate_redlock::Redlock) -> Result<(), quorate_redlock::Error> {
    /// let seen = redlock.inspect("invoice:42").await?;
    /// match seen.holder() {
    ///     Some(holder) => println!("held by {holder}, {:?} left", seen.remaining()),
    ///     None => println!("free"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn inspect(&self, resource: &str) -> Result<Inspection, Error> {
        self.inspect_key(&self.resource_key(resource)?).await
    }

    /// [`inspect`](Self::inspect) of a key by its full name on the nodes,
    /// without this client's namespace: how quorate-pool, quorate-tree
    /// and quorate-spinlock inspect their own keys (their `inspect`
    /// methods name the key).
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    ///
    /// ```no_run
    /// # async fn demo(redlock: quorate_redlock::Redlock) -> Result<(), quorate_redlock::Error> {
    /// let seen = redlock.inspect_key("quorate:spin:lock:s:nightly").await?;
    /// println!("{seen}");
    /// # Ok(()) }
    /// ```
    pub async fn inspect_key(&self, key: &str) -> Result<Inspection, Error> {
        Ok(self.inspect_with_tokens(key).await?.0)
    }

    /// `resource`'s lock key; an empty resource is an error.
    fn resource_key(&self, resource: &str) -> Result<String, Error> {
        if resource.is_empty() {
            return Err(ConfigError::EmptyResource(0).into());
        }
        Ok(self.lock_key(resource))
    }

    /// The inspection of `key` and, per node, the holder's whole token
    /// (kept inside the crate: it is what a release needs).
    async fn inspect_with_tokens(
        &self,
        key: &str,
    ) -> Result<(Inspection, Vec<Option<String>>), Error> {
        if key.is_empty() {
            return Err(ConfigError::EmptyResource(0).into());
        }
        let key = key.to_owned();
        let (queue, _) = queue_keys(&key);
        let keys = vec![key.clone(), fence_key(&key), queue];
        let nodes = self.nodes();
        let round = quorum::round(
            "inspect",
            nodes,
            self.defaults().effective_node_timeout(),
            Decide::All,
            |_| true,
            |node| node.eval(&INSPECT, keys.clone(), Vec::new()),
        )
        .await;
        let mut views = Vec::with_capacity(nodes.len());
        let mut tokens = Vec::with_capacity(nodes.len());
        for (node, reply) in nodes.iter().zip(round.replies) {
            let (view, token) = read_view(node.name(), reply);
            views.push(view);
            tokens.push(token);
        }
        describe_cluster_holders(nodes, &mut views).await;
        let inspection = Inspection {
            key,
            nodes: views,
            quorum: self.quorum(),
        };
        Ok((inspection, tokens))
    }

    /// Deletes `resource`'s lock on every node whatever its token, and
    /// tells the waiters (a release announcement; the queue's head gets
    /// the key): for a lock whose holder is known to be dead. Returns what
    /// was there and how many nodes deleted it; logs at warn and counts in
    /// `quorate_force_unlock_total`.
    ///
    /// **The holder, if alive, is not told**: it keeps working until its
    /// next extension or `lost()` check finds the lock gone. Use it only
    /// when the holder is known dead, or with fencing downstream.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped midway, some nodes may have deleted the key.
    ///
    /// ```no_run
    /// # async fn demo(redlock: quorate_redlock::Redlock) -> Result<(), quorate_redlock::Error> {
    /// let gone = redlock.force_unlock("invoice:42").await?;
    /// println!("deleted on {} nodes: {}", gone.deleted, gone.before);
    /// # Ok(()) }
    /// ```
    pub async fn force_unlock(&self, resource: &str) -> Result<ForceUnlocked, Error> {
        self.force_unlock_key(&self.resource_key(resource)?).await
    }

    /// [`force_unlock`](Self::force_unlock) of a key by its full name on
    /// the nodes, without this client's namespace (as
    /// [`inspect_key`](Self::inspect_key)).
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped midway, some nodes may have deleted the key.
    ///
    /// ```no_run
    /// # async fn demo(redlock: quorate_redlock::Redlock) -> Result<(), quorate_redlock::Error> {
    /// let gone = redlock.force_unlock_key("quorate:spin:lock:s:nightly").await?;
    /// println!("deleted on {} nodes", gone.deleted);
    /// # Ok(()) }
    /// ```
    pub async fn force_unlock_key(&self, key: &str) -> Result<ForceUnlocked, Error> {
        let (before, tokens) = self.inspect_with_tokens(key).await?;
        let key = [before.key.clone()];
        let announce = self.inner.notifier.id().to_owned();
        let timeout = self.defaults().effective_node_timeout();
        let releases = self
            .nodes()
            .iter()
            .zip(&tokens)
            .filter_map(|(node, token)| {
                let token = token.clone()?;
                let node = Arc::clone(node);
                let (key, announce) = (key.clone(), announce.clone());
                Some(async move {
                    tokio::time::timeout(timeout, node.release(&key, &token, Some(&announce))).await
                })
            });
        let deleted = futures::future::join_all(releases)
            .await
            .into_iter()
            .filter(|r| matches!(r, Ok(Ok(n)) if *n > 0))
            .count();
        tracing::warn!(key = %before.key, deleted, holder = ?before.holder(), "lock force-unlocked");
        crate::metrics::force_unlocked(self.inner.primitive);
        Ok(ForceUnlocked { before, deleted })
    }
}

/// One node's answer as a view, and the holder's token when held.
fn read_view(node: &str, reply: Reply<ScriptValue>) -> (NodeView, Option<String>) {
    let failed = |why: crate::backend::NodeError| NodeView {
        node: node.to_owned(),
        state: NodeState::Failed(why),
        fence: None,
        queued: 0,
    };
    let items = match reply {
        Reply::Answered(ScriptValue::Array(items)) if items.len() == 5 => items,
        Reply::Answered(other) => {
            let why = crate::backend::NodeError::new(format!("unexpected reply {other:?}"));
            return (failed(why), None);
        }
        Reply::Failed(e) => return (failed(e), None),
        Reply::TimedOut => return (failed(crate::backend::NodeError::new("timed out")), None),
        Reply::Pending => {
            return (
                failed(crate::backend::NodeError::new("no answer yet")),
                None,
            )
        }
    };
    let value = items[0].as_str().map(str::to_owned);
    let remaining = items[1]
        .as_int()
        .and_then(|ms| u64::try_from(ms).ok())
        .map(Duration::from_millis);
    let fence = items[2].as_str().and_then(|f| f.parse().ok());
    let queued = items[3]
        .as_int()
        .and_then(|q| u64::try_from(q).ok())
        .unwrap_or(0);
    let (state, token) = match value {
        None => (NodeState::Free, None),
        Some(v) if v.starts_with("q:") => (NodeState::Claimed { remaining }, None),
        Some(v) => match Holder::from_script(&items[4]) {
            Some(holder) => (NodeState::Held { holder, remaining }, Some(v)),
            None => (NodeState::Foreign, None),
        },
    };
    let view = NodeView {
        node: node.to_owned(),
        state,
        fence,
        queued,
    };
    (view, token)
}
