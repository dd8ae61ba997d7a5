//! A real Redis Cluster: `redis-server` processes with `cluster-enabled`,
//! joined with `CLUSTER MEET`, the 16384 slots split evenly among the
//! primaries (`CLUSTER ADDSLOTSRANGE`), and optionally replicas
//! (`CLUSTER REPLICATE`) that a crashed primary fails over to.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::TestkitError;
use crate::resp::Reply;
use crate::server::{RedisServer, ServerOptions};

/// How many hash slots a Redis Cluster has.
pub const CLUSTER_SLOTS: u16 = 16384;

/// A Redis Cluster of `shards` primaries with `replicas` replicas each;
/// every process is killed and every directory removed on drop. Nodes
/// are left without quorate's marker: a test declares them fresh through
/// quorate (`Redlock::declare_fresh`), which marks every shard.
#[derive(Debug)]
pub struct RedisCluster {
    servers: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the cluster and waits until every node reports
    /// `cluster_state:ok` and knows every other node.
    pub async fn start(shards: usize, replicas: usize) -> Result<Self, TestkitError> {
        if shards == 0 || usize::from(CLUSTER_SLOTS) < shards {
            return Err(TestkitError::InvalidOptions(format!(
                "a Redis Cluster needs 1 to {CLUSTER_SLOTS} shards, not {shards}"
            )));
        }
        let options = ServerOptions {
            cluster: true,
            ..ServerOptions::default()
        };
        let mut servers = Vec::new();
        for _ in 0..shards * (1 + replicas) {
            servers.push(RedisServer::start_with(options.clone()).await?);
        }
        let first = servers[0].port().to_string();
        for server in &servers[1..] {
            server
                .command(&["CLUSTER", "MEET", "127.0.0.1", &first])
                .await?;
        }
        let per_shard = usize::from(CLUSTER_SLOTS) / shards;
        for (i, primary) in servers[..shards].iter().enumerate() {
            let start = i * per_shard;
            let end = if i + 1 == shards {
                usize::from(CLUSTER_SLOTS) - 1
            } else {
                start + per_shard - 1
            };
            primary
                .command(&[
                    "CLUSTER",
                    "ADDSLOTSRANGE",
                    &start.to_string(),
                    &end.to_string(),
                ])
                .await?;
        }
        let cluster = RedisCluster { servers };
        cluster.wait_known().await?;
        for (i, replica) in cluster.servers[shards..].iter().enumerate() {
            let primary = &cluster.servers[i % shards];
            let id = node_id(primary).await?;
            replica.command(&["CLUSTER", "REPLICATE", &id]).await?;
        }
        cluster.wait_ok().await?;
        Ok(cluster)
    }

    /// Waits until every node knows all of the others.
    async fn wait_known(&self) -> Result<(), TestkitError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        for server in &self.servers {
            loop {
                let nodes = server.command(&["CLUSTER", "NODES"]).await?;
                let known = nodes
                    .as_string()
                    .map(|n| n.lines().filter(|l| !l.contains("handshake")).count());
                if known == Some(self.servers.len()) {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(TestkitError::Resp(format!(
                        "cluster node {} never met every other node",
                        server.port()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Waits until every running node reports `cluster_state:ok`, every
    /// slot assigned, and every replica's link to its primary up.
    pub async fn wait_ok(&self) -> Result<(), TestkitError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        for server in self.servers.iter().filter(|s| s.is_running()) {
            loop {
                let info = server.command(&["CLUSTER", "INFO"]).await?;
                let info = info.as_string().unwrap_or_default();
                let replication = server.command(&["INFO", "replication"]).await?;
                let replication = replication.as_string().unwrap_or_default();
                let synced = replication.contains("role:master")
                    || replication.contains("master_link_status:up");
                if info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_slots_ok:{CLUSTER_SLOTS}"))
                    && synced
                {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(TestkitError::Resp(format!(
                        "cluster node {} is not ready: {info}",
                        server.port()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// The node's URL for quorate (fred's Cluster scheme), naming every
    /// server as a seed.
    pub fn url(&self) -> String {
        let mut url = format!("redis-cluster://127.0.0.1:{}", self.servers[0].port());
        for (i, server) in self.servers[1..].iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            url.push_str(&format!("{sep}node=127.0.0.1:{}", server.port()));
        }
        url
    }

    /// Every server: the primaries first (in slot order), then the
    /// replicas (replica `i` follows primary `i % shards`).
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// Server `i`, to kill, restart or pause.
    pub fn server_mut(&mut self, i: usize) -> &mut RedisServer {
        &mut self.servers[i]
    }

    /// The index (in [`servers`](Self::servers)) of the server that serves
    /// `slot` as a primary now, asked of the running servers.
    pub async fn primary_of(&self, slot: u16) -> Result<usize, TestkitError> {
        for server in self
            .servers
            .iter()
            .filter(|s| s.is_running() && !s.is_paused())
        {
            let Ok(reply) = server.command(&["CLUSTER", "SLOTS"]).await else {
                continue;
            };
            for range in reply.into_array() {
                let range = range.into_array();
                let (Some(start), Some(end)) = (
                    range.first().and_then(Reply::as_i64),
                    range.get(1).and_then(Reply::as_i64),
                ) else {
                    continue;
                };
                if !(start..=end).contains(&i64::from(slot)) {
                    continue;
                }
                let port = range
                    .get(2)
                    .cloned()
                    .map(Reply::into_array)
                    .and_then(|p| p.get(1).and_then(Reply::as_i64));
                if let Some(i) = self
                    .servers
                    .iter()
                    .position(|s| port == Some(i64::from(s.port())))
                {
                    return Ok(i);
                }
            }
        }
        Err(TestkitError::Resp(format!(
            "no running node serves slot {slot}"
        )))
    }

    /// Kills the primary serving `slot` (SIGKILL, as a crash) and waits
    /// until one of its replicas serves the slot as a primary; returns the
    /// index of the promoted server.
    pub async fn fail_primary_of(&mut self, slot: u16) -> Result<usize, TestkitError> {
        let before = self.primary_of(slot).await?;
        self.servers[before].kill();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(now) = self.primary_of(slot).await {
                if now != before {
                    let info = self.servers[now].command(&["CLUSTER", "INFO"]).await?;
                    if info
                        .as_string()
                        .is_some_and(|i| i.contains("cluster_state:ok"))
                    {
                        return Ok(now);
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(TestkitError::Resp(format!(
                    "no replica took over slot {slot} from node {}",
                    self.servers[before].port()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A cluster node's id (`CLUSTER MYID`).
async fn node_id(server: &RedisServer) -> Result<String, TestkitError> {
    let id = server.command(&["CLUSTER", "MYID"]).await?;
    id.as_string()
        .ok_or_else(|| TestkitError::Resp(format!("CLUSTER MYID answered {id:?}")))
}
