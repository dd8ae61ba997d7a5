//! The floor: the least a Redlock client must do, by hand on raw fred.

use super::*;

/// One fred client per node; lock = `SET key token NX PX ttl` to all nodes at once,
/// granted with a majority (else compare-and-delete everywhere); unlock =
/// compare-and-delete script on all nodes at once. No metrics, no tracing, no
/// error reports, no early decision: it waits for every node (each call bounded by
/// [`FLOOR_NODE_TIMEOUT`]).
#[derive(Debug)]
pub(crate) struct Floor {
    pub(crate) clients: Vec<FredClient>,
    pub(crate) quorum: usize,
    pub(crate) unlock: Script,
}

pub(crate) const FLOOR_UNLOCK: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
else
  return 0
end
"#;

impl Floor {
    pub(crate) async fn connect(urls: &[String]) -> Result<Floor, BoxError> {
        let mut clients = Vec::with_capacity(urls.len());
        for url in urls {
            let config = Config::from_url(url)?;
            // The same client settings as quorate's FredNode: 1 s connect, a command
            // sent at most once, reconnect forever with the delay capped at 1 s.
            let connection = ConnectionConfig {
                connection_timeout: Duration::from_secs(1),
                internal_command_timeout: Duration::from_secs(1),
                max_command_attempts: 1,
                ..ConnectionConfig::default()
            };
            let performance = PerformanceConfig {
                default_command_timeout: Duration::from_secs(5),
                ..PerformanceConfig::default()
            };
            let policy = ReconnectPolicy::new_exponential(0, 10, 1_000, 2);
            let client = FredClient::new(config, Some(performance), Some(connection), Some(policy));
            // `init` connects and waits for the first connection; the handle of the
            // connection task is not needed (the task lives as long as the client).
            let task = timeout(Duration::from_secs(5), client.init())
                .await
                .map_err(|_| format!("floor: connecting to {url} timed out"))??;
            drop(task);
            clients.push(client);
        }
        let unlock = Script::from_lua(FLOOR_UNLOCK);
        Ok(Floor {
            quorum: clients.len() / 2 + 1,
            clients,
            unlock,
        })
    }

    /// Retries rounds with a 1..5 ms random pause until [`ACQUIRE_DEADLINE`].
    pub(crate) async fn lock(&self, key: &str) -> Result<String, String> {
        let token = format!("{:032x}", rand::random::<u128>());
        let deadline = Instant::now() + ACQUIRE_DEADLINE;
        loop {
            if self.round(key, &token).await {
                return Ok(token);
            }
            let pause = Duration::from_millis(rand::random_range(1..=5));
            if Instant::now() + pause >= deadline {
                return Err("floor: deadline".to_owned());
            }
            sleep(pause).await;
        }
    }

    pub(crate) async fn round(&self, key: &str, token: &str) -> bool {
        let started = Instant::now();
        let ttl_ms = i64::try_from(TTL.as_millis()).unwrap_or(i64::MAX);
        let replies = join_all(self.clients.iter().map(|client| {
            timeout(
                FLOOR_NODE_TIMEOUT,
                client.set::<Option<String>, _, _>(
                    key,
                    token,
                    Some(Expiration::PX(ttl_ms)),
                    Some(SetOptions::NX),
                    false,
                ),
            )
        }))
        .await;
        let granted = replies
            .iter()
            .filter(|reply| matches!(reply, Ok(Ok(Some(ok))) if ok == "OK"))
            .count();
        // Validity as in the Redlock description: ttl - elapsed - drift (1% + 2 ms).
        let drift = TTL / 100 + Duration::from_millis(2);
        if granted >= self.quorum && started.elapsed() + drift < TTL {
            return true;
        }
        self.unlock(key, token).await;
        false
    }

    /// Compare-and-delete on every node at once; returns how many deleted.
    pub(crate) async fn unlock(&self, key: &str, token: &str) -> usize {
        let replies = join_all(self.clients.iter().map(|client| {
            timeout(
                FLOOR_NODE_TIMEOUT,
                self.unlock
                    .evalsha_with_reload::<i64, _, _>(client, key, token),
            )
        }))
        .await;
        replies
            .iter()
            .filter(|reply| matches!(reply, Ok(Ok(1))))
            .count()
    }
}
