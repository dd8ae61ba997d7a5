//! Checks a script's native twin against the real thing: the same call on a
//! real server and on a memory node must give the same reply and leave the
//! same keys behind. The primitives' twin tests drive every script with
//! generated calls through this (see ARCHITECTURE.md, "Scripts").

use std::fmt;
use std::sync::Arc;

use crate::backend::{MemoryNode, MemoryStore, Node, NodeScript, ScriptValue};
use crate::client::Redlock;
use crate::connect_error::ConnectError;

/// How far apart two remaining ttls (in ms) may be and still match: the two
/// nodes run the same call a moment apart.
const TTL_SLACK_MS: i64 = 250;

static DUMP_KEYS: NodeScript =
    NodeScript::new("dump_keys", include_str!("../scripts/dump_keys.lua"))
        .emulated(dump_keys_in_memory);

fn dump_keys_in_memory(
    store: &mut MemoryStore,
    keys: &[String],
    _args: &[Vec<u8>],
) -> Result<ScriptValue, String> {
    let dumped = keys
        .iter()
        .map(|key| {
            let kind = store.type_name(key);
            let mut content: Vec<Vec<u8>> = match kind {
                "string" => store.get(key).map(<[u8]>::to_vec).into_iter().collect(),
                "set" => store.smembers(key),
                "hash" => store
                    .hgetall(key)
                    .into_iter()
                    .map(|(mut field, value)| {
                        field.push(b'=');
                        field.extend_from_slice(&value);
                        field
                    })
                    .collect(),
                _ => Vec::new(),
            };
            content.sort();
            ScriptValue::Array(vec![
                ScriptValue::Bytes(kind.as_bytes().to_vec()),
                ScriptValue::Array(content.into_iter().map(ScriptValue::Bytes).collect()),
                ScriptValue::Int(store.pttl(key)),
            ])
        })
        .collect();
    Ok(ScriptValue::Array(dumped))
}

/// A call on which a script and its twin disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TwinMismatch {
    /// The script (or `dump_keys` for a keyspace difference).
    pub script: &'static str,
    /// The call's keys.
    pub keys: Vec<String>,
    /// The call's arguments, lossily as text.
    pub args: Vec<String>,
    /// What the real server answered (an error as text).
    pub real: Result<ScriptValue, String>,
    /// What the memory node answered.
    pub memory: Result<ScriptValue, String>,
}

impl fmt::Display for TwinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` keys {:?} args {:?}: the server answered {:?}, the twin {:?}",
            self.script, self.keys, self.args, self.real, self.memory
        )
    }
}

impl std::error::Error for TwinMismatch {}

/// The two sides of a twin check: the node of the server at `url` and a
/// fresh memory node.
///
/// # Cancel safety
/// Cancel safe: dropping the future drops the half-built client.
pub async fn twin_nodes(url: &str) -> Result<(Arc<dyn Node>, MemoryNode), ConnectError> {
    let redlock = Redlock::connect([url]).await?;
    Ok((Arc::clone(&redlock.nodes()[0]), MemoryNode::new("twin")))
}

/// Whether two replies match: the same shape and values, except that
/// integers that look like remaining ttls (both above 1000) may differ by
/// a little, and errors match errors whatever their text.
fn same(real: &ScriptValue, memory: &ScriptValue) -> bool {
    match (real, memory) {
        (ScriptValue::Int(a), ScriptValue::Int(b)) if *a > 1000 && *b > 1000 => {
            (a - b).abs() <= TTL_SLACK_MS
        }
        (ScriptValue::Array(a), ScriptValue::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b))
        }
        (a, b) => a == b,
    }
}

/// Runs `script` with `keys` and `args` on `real` (a server) and on
/// `memory` (which runs the twin), and compares the replies.
///
/// # Cancel safety
/// Not cancel safe in effect: dropped midway, the two nodes may have run
/// the call a different number of times.
pub async fn check_twin(
    script: &'static NodeScript,
    real: &dyn Node,
    memory: &MemoryNode,
    keys: Vec<String>,
    args: Vec<Vec<u8>>,
) -> Result<(), TwinMismatch> {
    let on_server = real
        .eval(script, keys.clone(), args.clone())
        .await
        .map_err(|e| e.message().to_owned());
    let in_memory = memory
        .eval(script, keys.clone(), args.clone())
        .await
        .map_err(|e| e.message().to_owned());
    let matches = match (&on_server, &in_memory) {
        (Ok(a), Ok(b)) => same(a, b),
        (Err(_), Err(_)) => true,
        _ => false,
    };
    if matches {
        return Ok(());
    }
    Err(TwinMismatch {
        script: script.name(),
        args: args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
        keys,
        real: on_server,
        memory: in_memory,
    })
}

/// As [`check_twin`], for scripts whose reply is a set in no particular
/// order (`SMEMBERS`, `HGETALL`): the replies' elements are compared
/// sorted.
///
/// # Cancel safety
/// As [`check_twin`].
pub async fn check_twin_unordered(
    script: &'static NodeScript,
    real: &dyn Node,
    memory: &MemoryNode,
    keys: Vec<String>,
    args: Vec<Vec<u8>>,
) -> Result<(), TwinMismatch> {
    match check_twin(script, real, memory, keys, args).await {
        Err(mut mismatch) => {
            let sorted = |reply: &mut Result<ScriptValue, String>| {
                if let Ok(ScriptValue::Array(items)) = reply {
                    items.sort_by_key(|item| format!("{item:?}"));
                }
            };
            sorted(&mut mismatch.real);
            sorted(&mut mismatch.memory);
            match (&mismatch.real, &mismatch.memory) {
                (Ok(a), Ok(b)) if same(a, b) => Ok(()),
                _ => Err(mismatch),
            }
        }
        matched => matched,
    }
}

/// Compares `keys` on the two nodes: type, content (strings, sets, hashes)
/// and remaining ttl.
///
/// # Cancel safety
/// Cancel safe: it only reads.
pub async fn check_keys(
    real: &dyn Node,
    memory: &MemoryNode,
    keys: &[String],
) -> Result<(), TwinMismatch> {
    check_twin(&DUMP_KEYS, real, memory, keys.to_vec(), Vec::new()).await
}
