//! A node made of shards, as a Redis Cluster node is: each key lives on
//! the shard of its hash slot, each shard is a [`MemoryNode`] that the
//! fault task delays, stalls, downs and crashes on its own, and each keeps
//! its own quarantine. A lock call's keys share a slot (the client refuses
//! others for a node that [`is_cluster`](Node::is_cluster)), so a call goes
//! to one shard; the watchdog's batch is split per shard.

use std::fmt;
use std::time::Duration;

use futures::future::{join_all, BoxFuture};
use quorate_redlock::raw::{
    extend_in_groups, hash_slot, AcquireReply, ExtendRequest, NodeScript, QueueEntry, Released,
    ScriptValue,
};
use quorate_redlock::{MemoryNode, Node, NodeError, NodeFuture};
use tokio::sync::broadcast;

/// A node of `shards.len()` memory shards, keys spread by hash slot.
pub struct ShardedNode {
    name: String,
    shards: Vec<MemoryNode>,
    released: broadcast::Sender<Released>,
}

impl fmt::Debug for ShardedNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedNode")
            .field("name", &self.name)
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl ShardedNode {
    /// A node called `name` over `shards` (at least one). Each shard's
    /// release announcements are forwarded to the node's own channel by a
    /// task of the current runtime.
    pub fn new(name: impl Into<String>, shards: Vec<MemoryNode>) -> Self {
        assert!(!shards.is_empty(), "a sharded node needs a shard");
        let (released, _) = broadcast::channel(1024);
        for shard in &shards {
            if let Some(mut from) = shard.releases() {
                let to = released.clone();
                tokio::spawn(async move {
                    loop {
                        match from.recv().await {
                            Ok(message) => {
                                let _ = to.send(message);
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(broadcast::error::RecvError::Closed) => break,
                        }
                    }
                });
            }
        }
        ShardedNode {
            name: name.into(),
            shards,
            released,
        }
    }

    /// The index of the shard holding `key`.
    fn shard_index(&self, key: &str) -> usize {
        usize::from(hash_slot(key)) % self.shards.len()
    }

    /// The shard holding `key`.
    fn shard_of(&self, key: &str) -> &MemoryNode {
        &self.shards[self.shard_index(key)]
    }

    /// The shard of a call's keys (they share a slot; none: the first).
    fn shard(&self, keys: &[String]) -> &MemoryNode {
        keys.first()
            .map_or(&self.shards[0], |key| self.shard_of(key))
    }

    /// The same call on every shard, done when all are; the first error.
    fn on_every_shard<T: Send + 'static>(
        &self,
        call: impl Fn(&MemoryNode) -> NodeFuture<T>,
    ) -> BoxFuture<'static, Result<Vec<T>, NodeError>> {
        let calls: Vec<_> = self.shards.iter().map(call).collect();
        Box::pin(async move { join_all(calls).await.into_iter().collect() })
    }
}

impl Node for ShardedNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn acquire(
        &self,
        keys: &[String],
        token: &str,
        ttl: Duration,
        fenced: bool,
        queue: Option<&QueueEntry>,
    ) -> NodeFuture<AcquireReply> {
        self.shard(keys).acquire(keys, token, ttl, fenced, queue)
    }

    fn leave_queue(&self, keys: &[String], member: &str) -> NodeFuture<()> {
        self.shard(keys).leave_queue(keys, member)
    }

    fn raise_fence(&self, keys: &[String], fence: u64) -> NodeFuture<()> {
        self.shard(keys).raise_fence(keys, fence)
    }

    fn release(&self, keys: &[String], token: &str, announce: Option<&str>) -> NodeFuture<u64> {
        self.shard(keys).release(keys, token, announce)
    }

    fn extend(&self, keys: &[String], token: &str, ttl: Duration) -> NodeFuture<bool> {
        self.shard(keys).extend(keys, token, ttl)
    }

    /// One batch per shard, sent together (as the Redis Cluster client
    /// sends one per slot).
    fn extend_many(&self, locks: &[ExtendRequest]) -> NodeFuture<Vec<bool>> {
        extend_in_groups(
            locks,
            |lock| lock.keys.first().map(|k| self.shard_index(k)),
            |part| self.shard(&part[0].keys).extend_many(part),
        )
    }

    fn eval(
        &self,
        script: &'static NodeScript,
        keys: Vec<String>,
        args: Vec<Vec<u8>>,
    ) -> NodeFuture<ScriptValue> {
        self.shard(&keys).eval(script, keys, args)
    }

    fn is_cluster(&self) -> bool {
        true
    }

    fn subscribe(&self, keys: &[String]) -> NodeFuture<()> {
        let keys = keys.to_vec();
        let all = self.on_every_shard(move |shard| shard.subscribe(&keys));
        Box::pin(async move { all.await.map(drop) })
    }

    fn subscribe_wakes(&self, client: &str) -> NodeFuture<()> {
        let client = client.to_owned();
        let all = self.on_every_shard(move |shard| shard.subscribe_wakes(&client));
        Box::pin(async move { all.await.map(drop) })
    }

    fn unsubscribe(&self, keys: &[String]) -> NodeFuture<()> {
        let keys = keys.to_vec();
        let all = self.on_every_shard(move |shard| shard.unsubscribe(&keys));
        Box::pin(async move { all.await.map(drop) })
    }

    fn releases(&self) -> Option<broadcast::Receiver<Released>> {
        Some(self.released.subscribe())
    }

    fn set_max_ttl(&self, max_ttl: Duration) {
        for shard in &self.shards {
            shard.set_max_ttl(max_ttl);
        }
    }

    fn declare_fresh(&self) -> NodeFuture<bool> {
        let all = self.on_every_shard(|shard| shard.declare_fresh());
        Box::pin(async move { Ok(all.await?.into_iter().any(|set| set)) })
    }
}
