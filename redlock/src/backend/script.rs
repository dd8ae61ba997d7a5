//! Lua scripts of the crates built on quorate-redlock (pool, tree,
//! spinlock), run on a node through [`Node::eval`](super::Node::eval).

use std::fmt;
use std::sync::OnceLock;

use super::memory_store::MemoryScript;

/// This server process's `run_id` (`run_id()`), before the quarantine
/// prelude: kept by a function library, asked of `INFO` by an `EVAL` script.
const RUN_ID_LUA: &str = include_str!("../../scripts/run_id.lua");

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
    /// Functions (and constants) the script uses, defined once per library.
    helpers: &'static str,
    /// The source sent: `lua`, after the quarantine prelude when granting.
    source: OnceLock<String>,
    fred: OnceLock<fred::types::scripts::Script>,
    /// The function's name and its library's code (see [`function`](Self::function)).
    function: OnceLock<(String, String)>,
}

impl NodeScript {
    /// A script called `name` (for errors and metric labels) with source `lua`.
    pub const fn new(name: &'static str, lua: &'static str) -> Self {
        NodeScript {
            name,
            lua,
            memory: None,
            granting: false,
            helpers: "",
            source: OnceLock::new(),
            fred: OnceLock::new(),
            function: OnceLock::new(),
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

    /// Lua that only defines functions and constants the script uses: in a
    /// function library it runs once, when the library loads, instead of on
    /// every call (an `EVAL` script still runs it first every time).
    pub(crate) const fn with_helpers(mut self, helpers: &'static str) -> Self {
        self.helpers = helpers;
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

    /// The Lua source sent to servers as an `EVAL` script: the script's
    /// helpers first, and with the quarantine prelude and `holder_of` when
    /// [`granting`](Self::granting).
    pub fn source(&self) -> &str {
        self.source
            .get_or_init(|| format!("{}{}", self.library_state(), self.body()))
    }

    /// What a function library defines once: the `run_id` cache and
    /// `holder_of` when granting, then the script's helpers.
    fn library_state(&self) -> String {
        if self.granting {
            format!(
                "{RUN_ID_LUA}{}{}",
                crate::backend::holder::Holder::LUA,
                self.helpers
            )
        } else {
            self.helpers.to_owned()
        }
    }

    /// The code run on every call: the quarantine prelude when granting
    /// (it reads the call's arguments and this node's state), then the
    /// script.
    fn body(&self) -> String {
        if self.granting {
            format!("{}{}", crate::backend::quarantine::QUARANTINE_LUA, self.lua)
        } else {
            self.lua.to_owned()
        }
    }

    /// The script as a Redis 7 function: its name and the code of the
    /// library that registers it (`FUNCTION LOAD`, then `FCALL name`).
    ///
    /// Both names carry the script's name and the start of its SHA1, so
    /// clients of different versions sharing a server each load their own.
    /// The library keeps the server's `run_id` between calls (asked of
    /// `INFO` once per server process instead of on every call) and
    /// defines `holder_of` and the script's helpers once. Scripts
    /// that cannot grant may run while the server is out of memory
    /// (`allow-oom`), as `EVAL` lets a release's `DEL` run: a release must
    /// not fail for lack of memory.
    pub(crate) fn function(&self) -> (&str, &str) {
        let (name, library) = self.function.get_or_init(|| {
            let sha = self.fred().sha1();
            let short: String = self
                .name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let name = format!("quorate_{short}_{}", &sha[..sha.len().min(12)]);
            let flags = if self.granting {
                ""
            } else {
                ", flags = {'allow-oom'}"
            };
            let library = format!(
                "#!lua name={name}\n{}\nredis.register_function{{function_name = '{name}', \
                 callback = function(KEYS, ARGV)\n{}\nend{flags}}}\n",
                self.library_state(),
                self.body()
            );
            (name, library)
        });
        (name, library)
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
