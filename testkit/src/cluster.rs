//! A set of independent servers, as used by a quorum of N nodes.

use std::time::Duration;

use tokio::task::JoinSet;

use crate::{
    FaultProxy, RedisServer, Reply, ServerOptions, TestkitError, QUORATE_MARKER_KEY,
    QUORATE_OWNER_PREFIX, QUORATE_QUARANTINE_KEY,
};

/// `n` independent [`RedisServer`]s (not a Redis Cluster: no slots, no
/// replication — each node is a separate quorum member).
#[derive(Debug)]
pub struct Cluster {
    servers: Vec<RedisServer>,
}

impl Cluster {
    /// Starts `n` default servers concurrently.
    pub async fn start(n: usize) -> Result<Self, TestkitError> {
        Self::start_with(n, ServerOptions::default()).await
    }

    /// Starts `n` servers with the same `options`, concurrently. If any fails,
    /// the ones already started are killed and the first error is returned.
    pub async fn start_with(n: usize, options: ServerOptions) -> Result<Self, TestkitError> {
        let mut starting = JoinSet::new();
        for index in 0..n {
            let options = options.clone();
            starting.spawn(async move { (index, RedisServer::start_with(options).await) });
        }
        let mut slots: Vec<Option<RedisServer>> = (0..n).map(|_| None).collect();
        while let Some(joined) = starting.join_next().await {
            let (index, started) = match joined {
                Ok(result) => result,
                // A panic while starting is a bug; surface it as one.
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => return Err(std::io::Error::other(e.to_string()).into()),
            };
            // Returning early drops `slots` and `starting`, killing the rest.
            slots[index] = Some(started?);
        }
        let servers = slots.into_iter().flatten().collect::<Vec<_>>();
        debug_assert_eq!(servers.len(), n);
        Ok(Self { servers })
    }

    /// One URL per node, in node order.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(RedisServer::url).collect()
    }

    /// Creates the ACL user `user` with `password` and `rules` (the words
    /// after `ACL SETUSER <user>`, e.g. `"on resetkeys ~app:* -@all +get"`;
    /// the password is added as `>password`) on every node, and returns one
    /// URL per node that logs in as that user.
    pub async fn acl_user_urls(
        &self,
        user: &str,
        password: &str,
        rules: &str,
    ) -> Result<Vec<String>, TestkitError> {
        let secret = format!(">{password}");
        let mut urls = Vec::with_capacity(self.servers.len());
        for server in &self.servers {
            let mut args = vec!["ACL", "SETUSER", user, secret.as_str()];
            args.extend(rules.split_whitespace());
            server.command(&args).await?;
            urls.push(format!("redis://{user}:{password}@{}", server.addr()));
        }
        Ok(urls)
    }

    /// The number of nodes (running or not).
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// A [`FaultProxy`] in front of each node, in node order: connect
    /// clients to their [`url`](FaultProxy::url)s to inject faults.
    pub async fn proxies(&self) -> Result<Vec<FaultProxy>, TestkitError> {
        let mut proxies = Vec::with_capacity(self.servers.len());
        for server in &self.servers {
            proxies.push(FaultProxy::start(server.addr()).await?);
        }
        Ok(proxies)
    }

    /// Whether the cluster has no nodes.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Node `i`. Panics if `i >= len()`.
    pub fn server(&self, i: usize) -> &RedisServer {
        &self.servers[i]
    }

    /// Node `i`, for kill / restart. Panics if `i >= len()`.
    pub fn server_mut(&mut self, i: usize) -> &mut RedisServer {
        &mut self.servers[i]
    }

    /// All nodes, in order.
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// Waits until at least `nodes` running nodes have a subscriber on
    /// `channel` (`PUBSUB NUMSUB`): the signal that a client is listening,
    /// for tests that must act while it waits. `false` if not within `within`.
    pub async fn wait_subscribed(&self, channel: &str, nodes: usize, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut subscribed = 0;
            for server in self
                .servers
                .iter()
                .filter(|s| s.is_running() && !s.is_paused())
            {
                let reply = server.command(&["PUBSUB", "NUMSUB", channel]).await;
                let items = reply.map(Reply::into_array).unwrap_or_default();
                subscribed += usize::from(items.get(1).and_then(Reply::as_i64) >= Some(1));
            }
            if subscribed >= nodes {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// `SET key value PX ttl` on node `i`, behind every client's back: a
    /// leftover that a lost release left on a minority, or a foreign value.
    pub async fn plant(
        &self,
        i: usize,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), TestkitError> {
        let ttl = ttl.as_millis().max(1).to_string();
        self.servers[i]
            .command(&["SET", key, value, "PX", &ttl])
            .await
            .map(drop)
    }

    /// `KEYS pattern` on every node, in node order (sorted per node for
    /// stable assertions), leaving out quorate's node bookkeeping (its
    /// marker and quarantine keys). Killed and paused nodes yield an empty
    /// `Vec` rather than an error or a hang.
    pub async fn keys(&self, pattern: &str) -> Result<Vec<Vec<String>>, TestkitError> {
        let mut all = Vec::with_capacity(self.servers.len());
        for server in &self.servers {
            if !server.is_running() || server.is_paused() {
                all.push(Vec::new());
                continue;
            }
            let reply = server.command(&["KEYS", pattern]).await?;
            let mut keys: Vec<String> = reply
                .into_array()
                .iter()
                .filter_map(|k| k.as_string())
                .filter(|k| {
                    k != QUORATE_MARKER_KEY
                        && k != QUORATE_QUARANTINE_KEY
                        && !k.starts_with(QUORATE_OWNER_PREFIX)
                })
                .collect();
            keys.sort();
            all.push(keys);
        }
        Ok(all)
    }
}
