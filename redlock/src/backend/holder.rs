//! Who holds a lock, as a node reports it: every token starts with its
//! client's id, and every client records a description of itself under
//! [`OWNER_KEY_PREFIX`] (see `owner.rs`), so a refusal names its holder
//! without another request.

use std::fmt;

use super::{MemoryStore, ScriptValue};

/// Where a client's description lives on every node.
pub const OWNER_KEY_PREFIX: &str = "quorate:owner:";

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

    /// The holder's label ([`RedlockBuilder::owner`](crate::RedlockBuilder::owner)),
    /// if its description has one.
    pub fn label(&self) -> Option<&str> {
        self.described()?.0
    }

    /// The host the holder runs on, from its description.
    pub fn host(&self) -> Option<&str> {
        Some(self.described()?.1)
    }

    /// The holder's process id, from its description.
    pub fn pid(&self) -> Option<u32> {
        self.described()?.2.parse().ok()
    }

    /// The holder's UUID v7 ([`Owner::uuid`](crate::Owner::uuid)), from its
    /// description, as text.
    pub fn uuid(&self) -> Option<&str> {
        Some(self.described()?.3)
    }

    /// The description's parts: `label (host H, pid P, id U)` or
    /// `host H, pid P, id U` ([`Owner`](crate::Owner)'s `Display`); read
    /// from the end, so a label may contain anything.
    fn described(&self) -> Option<(Option<&str>, &str, &str, &str)> {
        let owner = self.owner.as_deref()?;
        let (label, details) = match owner.strip_suffix(')') {
            Some(rest) => {
                let at = rest.rfind(" (host ")?;
                (Some(&rest[..at]), &rest[at + 2..])
            }
            None => (None, owner),
        };
        let details = details.strip_prefix("host ")?;
        let (rest, id) = details.rsplit_once(", id ")?;
        let (host, pid) = rest.rsplit_once(", pid ")?;
        Some((label, host, pid, id))
    }

    /// The Lua function `holder_of(value)` that every granting script (and
    /// inspect) has, so that a refusal names its holder without another
    /// request: [`NodeScript`](super::NodeScript)s marked
    /// [`granting`](super::NodeScript::granting) get it prepended.
    pub const LUA: &'static str = include_str!("../../scripts/holder.lua");
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
    fn a_description_reads_as_fields() {
        let holder = |owner: Option<&str>| Holder {
            client: "0123456789abcdef".into(),
            owner: owner.map(Into::into),
        };
        let labelled = holder(Some("billing (3) (host web-1, pid 42, id 0190-ab)"));
        assert_eq!(labelled.label(), Some("billing (3)"));
        assert_eq!(labelled.host(), Some("web-1"));
        assert_eq!(labelled.pid(), Some(42));
        assert_eq!(labelled.uuid(), Some("0190-ab"));
        let plain = holder(Some("host web-1, pid 42, id 0190-ab"));
        assert_eq!((plain.label(), plain.pid()), (None, Some(42)));
        let unknown = holder(None);
        assert_eq!((unknown.label(), unknown.host()), (None, None));
    }
}
