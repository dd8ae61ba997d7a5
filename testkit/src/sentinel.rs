//! A Sentinel-managed primary with replicas, watched by real `redis-sentinel`
//! processes (the same `redis-server` binary run with `--sentinel`), for
//! tests of a node that fails over.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use crate::client::command_at;
use crate::error::TestkitError;
use crate::locate::redis_server_path;
use crate::resp::Reply;
use crate::server::{free_port, fresh_dir, RedisServer, ServerOptions};

/// The service name the sentinels monitor.
pub const SENTINEL_SERVICE: &str = "quorate";

/// A primary, its replicas and the sentinels that watch them; every process
/// is killed and every directory removed on drop.
#[derive(Debug)]
pub struct SentinelGroup {
    servers: Vec<RedisServer>,
    sentinels: Vec<SentinelProcess>,
}

#[derive(Debug)]
struct SentinelProcess {
    port: u16,
    child: Child,
    dir: PathBuf,
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl SentinelGroup {
    /// Starts a primary (marked fresh, as every kit server), `replicas`
    /// replicas of it, and `sentinels` sentinels with a quorum of a
    /// majority of them, a down-after of 1 s; returns once every sentinel
    /// knows the primary and every replica.
    pub async fn start(replicas: usize, sentinels: usize) -> Result<Self, TestkitError> {
        let primary = RedisServer::start_with(ServerOptions::default()).await?;
        let mut servers = vec![primary];
        for _ in 0..replicas {
            let replica = RedisServer::start_with(ServerOptions {
                unmarked: true,
                ..ServerOptions::default()
            })
            .await?;
            let port = servers[0].port().to_string();
            replica.command(&["REPLICAOF", "127.0.0.1", &port]).await?;
            servers.push(replica);
        }
        let mut group = SentinelGroup {
            servers,
            sentinels: Vec::new(),
        };
        group.wait_replicated().await?;
        let quorum = sentinels / 2 + 1;
        for _ in 0..sentinels {
            let sentinel = group.spawn_sentinel(quorum)?;
            group.sentinels.push(sentinel);
        }
        group.wait_watched(replicas).await?;
        Ok(group)
    }

    fn spawn_sentinel(&self, quorum: usize) -> Result<SentinelProcess, TestkitError> {
        let port = free_port()?;
        let dir = fresh_dir("quorate-testkit-sentinel", port)?;
        let config = dir.join("sentinel.conf");
        let primary = self.servers[0].port();
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {dir}\n\
                 sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {primary} {quorum}\n\
                 sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n\
                 sentinel failover-timeout {SENTINEL_SERVICE} 5000\n\
                 sentinel parallel-syncs {SENTINEL_SERVICE} 1\n",
                dir = dir.display()
            ),
        )?;
        let child = Command::new(redis_server_path()?)
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(SentinelProcess { port, child, dir })
    }

    /// Waits until every replica reports its link to the primary up.
    async fn wait_replicated(&self) -> Result<(), TestkitError> {
        let deadline = Instant::now() + Duration::from_secs(15);
        for replica in &self.servers[1..] {
            loop {
                let info = replica.command(&["INFO", "replication"]).await?;
                let up = info
                    .as_string()
                    .is_some_and(|i| i.contains("master_link_status:up"));
                if up {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(TestkitError::Resp(format!(
                        "replica {} never synced",
                        replica.port()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Waits until every sentinel answers and knows every replica.
    async fn wait_watched(&self, replicas: usize) -> Result<(), TestkitError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        for sentinel in &self.sentinels {
            let addr = ([127, 0, 0, 1], sentinel.port).into();
            loop {
                let known = command_at(
                    addr,
                    None,
                    &["SENTINEL", "REPLICAS", SENTINEL_SERVICE],
                    Duration::from_secs(1),
                )
                .await
                .ok()
                .map(|r| r.into_array().len());
                if known.is_some_and(|n| n >= replicas) {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(TestkitError::Resp(format!(
                        "sentinel {} never saw the {replicas} replicas",
                        sentinel.port
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// The node's URL for quorate (fred's Sentinel scheme): every sentinel,
    /// the service name.
    pub fn url(&self) -> String {
        let mut url = format!(
            "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName={SENTINEL_SERVICE}",
            self.sentinels[0].port
        );
        for sentinel in &self.sentinels[1..] {
            url.push_str(&format!("&node=127.0.0.1:{}", sentinel.port));
        }
        url
    }

    /// The data servers: the first started as the primary.
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// The data server the sentinels name as the primary now.
    pub async fn primary_port(&self) -> Result<u16, TestkitError> {
        let addr = ([127, 0, 0, 1], self.sentinels[0].port).into();
        let reply = command_at(
            addr,
            None,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE],
            Duration::from_secs(1),
        )
        .await?;
        reply
            .clone()
            .into_array()
            .get(1)
            .and_then(Reply::as_string)
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| TestkitError::Resp(format!("no primary address in {reply:?}")))
    }

    /// Kills the primary (SIGKILL, as a crash) and waits until the
    /// sentinels agree it is down and a replica runs as the primary;
    /// returns its port. Clients connected to the old primary lose their
    /// connections and find the new one through the sentinels.
    pub async fn fail_primary(&mut self) -> Result<u16, TestkitError> {
        let before = self.primary_port().await?;
        if let Some(primary) = self.servers.iter_mut().find(|s| s.port() == before) {
            primary.kill();
        }
        self.wait_promoted(before).await
    }

    /// Makes the sentinels fail the primary over to a replica now
    /// (`SENTINEL FAILOVER`, no agreement needed) and waits until a replica
    /// runs as the primary; returns its port. The old primary keeps
    /// running as a primary until the sentinels demote it, and clients
    /// still connected to it keep using it until then.
    pub async fn failover(&self) -> Result<u16, TestkitError> {
        let before = self.primary_port().await?;
        let addr = ([127, 0, 0, 1], self.sentinels[0].port).into();
        // a sentinel that has not yet heard from a replica finds none to promote
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let asked = command_at(
                addr,
                None,
                &["SENTINEL", "FAILOVER", SENTINEL_SERVICE],
                Duration::from_secs(2),
            )
            .await;
            match asked {
                Err(TestkitError::Resp(e))
                    if e.contains("NOGOODSLAVE") && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => {
                    other?;
                    break;
                }
            }
        }
        self.wait_promoted(before).await
    }

    /// Waits until the sentinels name a primary other than `before` and it
    /// runs as one.
    async fn wait_promoted(&self, before: u16) -> Result<u16, TestkitError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = self.primary_port().await?;
            if now != before {
                let promoted = self.servers.iter().find(|s| s.port() == now);
                if let Some(server) = promoted {
                    let info = server.command(&["INFO", "replication"]).await?;
                    if info.as_string().is_some_and(|i| i.contains("role:master")) {
                        return Ok(now);
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(TestkitError::Resp("the failover did not complete".into()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
