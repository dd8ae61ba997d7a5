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

use crate::backend::{MemoryStore, Node, NodeScript, ScriptValue};
use crate::determinism::wall_clock;
use crate::quorum::{self, Decide};
use crate::server_clock::ServerClock;

/// Where a client's description lives on every node.
pub const OWNER_KEY_PREFIX: &str = "quorate:owner:";

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

/// The client holding a lock: the first half of its token (which is its
/// client id) and the description it recorded, if the node still has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The holder's client id: 16 hex digits ([`Owner::client_id`](crate::Owner::client_id)).
    pub client: String,
    /// Its description ([`Owner`](crate::Owner)'s `Display`), `None` when
    /// unknown (a client of an older version, or a description expired).
    pub owner: Option<String>,
}

impl Holder {
    /// A holder as [`holder_of`](Self::LUA) reports it (`'id description'`,
    /// `'id'`, or `nil` for a value that is not a token).
    pub fn from_script(value: &ScriptValue) -> Option<Holder> {
        let text = value.as_str()?;
        let (client, owner) = match text.split_once(' ') {
            Some((client, owner)) => (client, Some(owner.to_owned())),
            None => (text, None),
        };
        is_client_id(client).then(|| Holder {
            client: client.to_owned(),
            owner,
        })
    }

    /// The Lua function `holder_of(value)` that every granting script (and
    /// inspect) has, so that a refusal names its holder without another
    /// request: [`NodeScript`]s marked
    /// [`granting`](NodeScript::granting) get it prepended.
    pub const LUA: &'static str = include_str!("../scripts/holder.lua");
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.owner {
            Some(owner) => write!(f, "{owner} [client {}]", self.client),
            None => write!(f, "client {} (no description recorded)", self.client),
        }
    }
}

/// Whether `text` is a client id: 16 hex digits.
fn is_client_id(text: &str) -> bool {
    text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

impl MemoryStore {
    /// `holder_of` (holder.lua) on a memory node: the holder of a key
    /// whose value is `value`, for the memory twins of granting scripts.
    pub fn holder_of(&self, value: Option<&[u8]>) -> ScriptValue {
        let Some(value) = value.filter(|v| v.len() == 32 && v.iter().all(u8::is_ascii_hexdigit))
        else {
            return ScriptValue::Nil;
        };
        let id = String::from_utf8_lossy(&value[..16]).into_owned();
        match self.get(&format!("{OWNER_KEY_PREFIX}{id}")) {
            Some(description) => {
                let mut text = id.into_bytes();
                text.push(b' ');
                text.extend_from_slice(description);
                ScriptValue::Bytes(text)
            }
            None => ScriptValue::Bytes(id.into_bytes()),
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
    fn the_lua_and_the_memory_twin_read_owners_under_the_same_prefix() {
        assert!(Holder::LUA.contains(&format!("'{OWNER_KEY_PREFIX}' .. id")));
    }

    #[test]
    fn a_holder_reads_back_from_its_script_reply() {
        let mut store = MemoryStore::default();
        let token = "00000000000000aa0123456789abcdef";
        assert_eq!(store.holder_of(Some(b"q:member")), ScriptValue::Nil);
        assert_eq!(store.holder_of(None), ScriptValue::Nil);
        let bare = Holder::from_script(&store.holder_of(Some(token.as_bytes())));
        assert_eq!(
            bare,
            Some(Holder {
                client: "00000000000000aa".into(),
                owner: None
            })
        );
        store.set(
            &format!("{OWNER_KEY_PREFIX}00000000000000aa"),
            b"billing (host h, pid 1, id x)",
            None,
        );
        let described =
            Holder::from_script(&store.holder_of(Some(token.as_bytes()))).expect("holder");
        assert_eq!(
            described.owner.as_deref(),
            Some("billing (host h, pid 1, id x)")
        );
        assert_eq!(
            Holder::from_script(&ScriptValue::Bytes(b"nothex".to_vec())),
            None
        );
    }

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
