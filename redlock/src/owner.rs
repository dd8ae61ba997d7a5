//! Who holds a lock, for operators: every client records on the nodes, once
//! at start, a description of itself under `quorate:owner:<client id>`, and
//! every token it hands out starts with that id. Reading a lock key's value
//! then names its holder without any extra request per lock; the other
//! half of the token (64 random bits) stays secret, so nothing an operator
//! sees is enough to release someone else's lock.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use futures::FutureExt;

use crate::backend::holder::OWNER_KEY_PREFIX;
use crate::backend::{MemoryStore, Node, NodeScript, ScriptValue};
use crate::determinism::wall_clock;
use crate::quorum::{self, Decide};
use crate::server_clock::ServerClock;

/// How long a description lives without its client refreshing it.
pub(crate) const OWNER_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often a running client refreshes its description.
pub(crate) const OWNER_REFRESH: Duration = Duration::from_secs(6 * 3600);

static REGISTER: NodeScript = NodeScript::new(
    "register_owner",
    include_str!("../scripts/register_owner.lua"),
)
.emulated(register_in_memory);

fn register_in_memory(
    store: &mut MemoryStore,
    keys: &[String],
    args: &[Vec<u8>],
) -> Result<ScriptValue, String> {
    let key = keys.first().ok_or("no key")?;
    let description = args.first().ok_or("no description")?;
    let ms: u64 = args
        .get(1)
        .and_then(|a| std::str::from_utf8(a).ok())
        .and_then(|a| a.parse().ok())
        .ok_or("bad ttl")?;
    store.set(key, description, Some(Duration::from_millis(ms)));
    // the node's time: the client's wall clock moved by how far this
    // node's clock runs ahead of tokio's (or behind it)
    let real = tokio::time::Instant::now();
    let node = store.now();
    let wall = if node >= real {
        wall_clock() + (node - real)
    } else {
        wall_clock().saturating_sub(real - node)
    };
    Ok(ScriptValue::Int(
        i64::try_from(wall.as_micros()).unwrap_or(i64::MAX),
    ))
}

/// Who a [`Redlock`](crate::Redlock) client is: a UUID v7 (unique, time
/// ordered), the host and process it runs in, and an optional label the
/// application chose ([`RedlockBuilder::owner`](crate::RedlockBuilder::owner)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    client: u64,
    id: uuid::Uuid,
    host: String,
    pid: u32,
    label: Option<String>,
}

impl Owner {
    /// This process, with `label`.
    pub(crate) fn this_process(label: Option<String>) -> Self {
        Owner {
            // never 0: a token's first half is never all zeros
            client: crate::determinism::with_rng(|rng| rng.random_range(1..=u64::MAX)),
            id: uuid::Uuid::now_v7(),
            host: host_name(),
            pid: std::process::id(),
            label,
        }
    }

    /// Whether `holder` is this client: "is this lock mine?".
    ///
    /// ```no_run
    /// # async fn demo(redlock: quorate_redlock::Redlock) -> Result<(), quorate_redlock::Error> {
    /// let seen = redlock.inspect("invoice:42").await?;
    /// if seen.holder().is_some_and(|holder| redlock.owner().is_holder(holder)) {
    ///     println!("held by this client");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_holder(&self, holder: &crate::Holder) -> bool {
        holder.client == self.client_id()
    }

    /// The client's id as it starts every token it hands out: 16 hex digits.
    pub fn client_id(&self) -> String {
        format!("{:016x}", self.client)
    }

    pub(crate) fn client(&self) -> u64 {
        self.client
    }

    /// The client's UUID v7.
    pub fn uuid(&self) -> uuid::Uuid {
        self.id
    }

    /// The host name it runs on (`unknown` when it cannot be read).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The label the application gave it, if any.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// Where the description lives on each node.
    pub(crate) fn key(&self) -> String {
        format!("{OWNER_KEY_PREFIX}{}", self.client_id())
    }

    /// Writes the description to every node; returns as `decide` says
    /// (`All`: once every node answered or timed out, so that the servers'
    /// command statistics no longer change because of it; `Sent`: once each
    /// request is on its connection).
    /// Records this client's description on `nodes`; each node's answer
    /// is its time, kept in `clock`.
    pub(crate) async fn register(
        &self,
        nodes: &[Arc<dyn Node>],
        node_timeout: Duration,
        decide: Decide,
        clock: &Arc<ServerClock>,
    ) {
        let (key, description) = (self.key(), self.to_string());
        let ttl = OWNER_TTL.as_millis().to_string();
        quorum::round(
            "register_owner",
            nodes,
            node_timeout,
            decide,
            |_| true,
            |node| {
                let args = vec![description.clone().into_bytes(), ttl.clone().into_bytes()];
                let (clock, name) = (Arc::clone(clock), node.name().to_owned());
                let sent = wall_clock();
                let answer = node.eval(&REGISTER, vec![key.clone()], args);
                async move {
                    let answer = answer.await;
                    if let Ok(ScriptValue::Int(server)) = answer {
                        clock.observe(&name, server, sent, wall_clock());
                    }
                    answer
                }
                .boxed()
            },
        )
        .await;
    }
}

impl fmt::Display for Owner {
    /// `billing-worker-3 (host web-1, pid 4242, id 0190…)`; without a label,
    /// `host web-1, pid 4242, id 0190…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let details = format!("host {}, pid {}, id {}", self.host, self.pid, self.id);
        match &self.label {
            Some(label) => write!(f, "{label} ({details})"),
            None => f.write_str(&details),
        }
    }
}

/// The host name, from the kernel or the environment.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_names_the_label_host_and_process() {
        let owner = Owner::this_process(Some("billing-worker-3".into()));
        let text = owner.to_string();
        assert!(text.starts_with("billing-worker-3 (host "), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert_eq!(owner.client_id().len(), 16);
        assert_ne!(owner.client(), 0);
        let anonymous = Owner::this_process(None);
        assert!(anonymous.to_string().starts_with("host "));
        assert_ne!(owner.client(), anonymous.client());
    }
}
