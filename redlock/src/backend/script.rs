//! Lua scripts of the crates built on quorate-redlock (pool, tree,
//! spinlock), run on a node through [`Node::eval`](super::Node::eval).

use std::fmt;
use std::sync::OnceLock;

use super::memory_store::MemoryScript;

/// A Lua script that a primitive built on quorate-redlock runs on every
/// node. Declare it as a `static` so its SHA1 is computed once:
///
/// ```
/// use quorate_redlock::raw::NodeScript;
/// static GET: NodeScript = NodeScript::new("get", "return redis.call('GET', KEYS[1])");
/// assert_eq!(GET.name(), "get");
/// ```
pub struct NodeScript {
    name: &'static str,
    lua: &'static str,
    memory: Option<MemoryScript>,
    granting: bool,
    /// The source sent: `lua`, after the quarantine prelude when granting.
    source: OnceLock<String>,
    fred: OnceLock<fred::types::scripts::Script>,
}

impl NodeScript {
    /// A script called `name` (for errors and metric labels) with source `lua`.
    pub const fn new(name: &'static str, lua: &'static str) -> Self {
        NodeScript {
            name,
            lua,
            memory: None,
            granting: false,
            source: OnceLock::new(),
            fred: OnceLock::new(),
        }
    }

    /// The script can grant (its answer is a vote for a lock, a pool grant
    /// or a tree node). Its refusals can name the holder: the Lua function
    /// `holder_of(value)` ([`Holder::LUA`](crate::Holder::LUA)) is defined
    /// before the script's code. A node that lost its data refuses it while in
    /// quarantine (see [`MARKER_KEY`](crate::MARKER_KEY)), failing the call
    /// with an error that says so. The node appends the longest ttl
    /// ([`RedlockBuilder::max_ttl`](crate::RedlockBuilder::max_ttl)) as an
    /// extra last argument, which the prelude removes before the script's
    /// own code runs; memory nodes apply the same rule before the twin.
    pub const fn granting(mut self) -> Self {
        self.granting = true;
        self
    }

    /// Whether the script can grant (see [`granting`](Self::granting)).
    pub fn is_granting(&self) -> bool {
        self.granting
    }

    /// The script with a native twin for [`MemoryNode`](super::MemoryNode)s:
    /// what the Lua does, on the memory node's keyspace. Without one, memory
    /// nodes answer the script with an error naming it.
    pub const fn emulated(mut self, twin: MemoryScript) -> Self {
        self.memory = Some(twin);
        self
    }

    /// The native twin, if any.
    pub fn emulation(&self) -> Option<MemoryScript> {
        self.memory
    }

    /// The script's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The Lua source, as written (without the quarantine prelude).
    pub fn lua(&self) -> &'static str {
        self.lua
    }

    /// The Lua source sent to servers: with the quarantine prelude and
    /// `holder_of` when [`granting`](Self::granting).
    pub fn source(&self) -> &str {
        self.source.get_or_init(|| {
            if self.granting {
                format!(
                    "{}{}{}",
                    crate::backend::quarantine::QUARANTINE_LUA,
                    crate::backend::holder::Holder::LUA,
                    self.lua
                )
            } else {
                self.lua.to_owned()
            }
        })
    }

    pub(crate) fn fred(&self) -> &fred::types::scripts::Script {
        self.fred
            .get_or_init(|| fred::types::scripts::Script::from_lua(self.source()))
    }
}

impl fmt::Debug for NodeScript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeScript")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What a script returned, in Lua-to-RESP terms: `nil`/`false` → `Nil`,
/// numbers → `Int` (Lua truncates them), strings → `Bytes`, tables →
/// `Array` (up to the first nil), `true` → `Int(1)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptValue {
    /// `nil` or `false`.
    Nil,
    /// An integer.
    Int(i64),
    /// A string (binary safe).
    Bytes(Vec<u8>),
    /// A table.
    Array(Vec<ScriptValue>),
}

impl ScriptValue {
    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            ScriptValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The bytes, if this is a string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            ScriptValue::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The string, if this is a UTF-8 string.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The elements, if this is a table (an empty table is `Array(vec![])`).
    pub fn as_array(&self) -> Option<&[ScriptValue]> {
        match self {
            ScriptValue::Array(a) => Some(a),
            _ => None,
        }
    }

    pub(crate) fn from_fred(value: fred::types::Value) -> Result<Self, String> {
        use fred::types::Value;
        Ok(match value {
            Value::Null => ScriptValue::Nil,
            Value::Integer(i) => ScriptValue::Int(i),
            Value::Boolean(b) => {
                if b {
                    ScriptValue::Int(1)
                } else {
                    ScriptValue::Nil
                }
            }
            Value::String(s) => ScriptValue::Bytes(s.as_bytes().to_vec()),
            Value::Bytes(b) => ScriptValue::Bytes(b.to_vec()),
            Value::Array(a) => ScriptValue::Array(
                a.into_iter()
                    .map(ScriptValue::from_fred)
                    .collect::<Result<_, _>>()?,
            ),
            Value::Double(d) => ScriptValue::Int(d as i64),
            other => return Err(format!("unexpected script reply {other:?}")),
        })
    }
}
