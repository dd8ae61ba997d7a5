//! Spinlock keys: strings and bytes directly, structured values by their
//! stable hash. Each kind has its own prefix, so a string, a byte string and
//! a hashed value never share a key.

use std::fmt;

use crate::stable_hash::{stable_hash, StableHash};

/// What a spinlock is keyed by, encoded into the `String` that the nodes
/// see (before the [`Scheme`](crate::Scheme) adds its namespace):
///
/// - a string `s` as `s:` followed by `s` itself (readable in `redis-cli`);
/// - bytes as `b:` followed by their lowercase hex;
/// - a structured value as `h:` followed by the hex SHA-256 of its
///   canonical encoding (see [`StableHash`]), stable across runs, machines
///   and Rust versions; a plain string given to [`hashed`](Self::hashed)
///   is keyed by its text, so `"report"` names one lock however it is
///   written.
///
/// ```
/// use quorate_spinlock::SpinKey;
/// assert_eq!(SpinKey::from("report").as_str(), "s:report");
/// assert_eq!(SpinKey::hashed("report"), SpinKey::from("report"));
/// assert_eq!(SpinKey::from(&b"\x01\xff"[..]).as_str(), "b:01ff");
/// assert!(SpinKey::hashed(&("report", 2024u32)).as_str().starts_with("h:"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SpinKey(String);

impl SpinKey {
    /// The key of a string.
    pub fn string(s: &str) -> Self {
        SpinKey(format!("s:{s}"))
    }

    /// The key of a byte string (hex-encoded: the nodes take `String` keys).
    pub fn bytes(bytes: &[u8]) -> Self {
        let mut encoded = String::with_capacity(2 + bytes.len() * 2);
        encoded.push_str("b:");
        for byte in bytes {
            encoded.push_str(&format!("{byte:02x}"));
        }
        SpinKey(encoded)
    }

    /// The key of a structured value: the SHA-256 of its canonical
    /// encoding. A plain string (`&str`, `String`) is keyed by its text
    /// instead, exactly as [`SpinKey::from`] keys it: one string, one lock.
    pub fn hashed<T: StableHash + ?Sized>(value: &T) -> Self {
        if let Some(text) = value.key_text() {
            return SpinKey::string(text);
        }
        let digest = stable_hash(value);
        SpinKey(format!("h:{}", hex(&digest)))
    }

    /// The encoded key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl fmt::Debug for SpinKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpinKey({})", self.0)
    }
}

impl fmt::Display for SpinKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for SpinKey {
    fn from(s: &str) -> Self {
        SpinKey::string(s)
    }
}

impl From<String> for SpinKey {
    fn from(s: String) -> Self {
        SpinKey::string(&s)
    }
}

impl From<&String> for SpinKey {
    fn from(s: &String) -> Self {
        SpinKey::string(s)
    }
}

impl From<&[u8]> for SpinKey {
    fn from(b: &[u8]) -> Self {
        SpinKey::bytes(b)
    }
}

impl<const N: usize> From<&[u8; N]> for SpinKey {
    fn from(b: &[u8; N]) -> Self {
        SpinKey::bytes(b)
    }
}

impl From<Vec<u8>> for SpinKey {
    fn from(b: Vec<u8>) -> Self {
        SpinKey::bytes(&b)
    }
}

impl From<&SpinKey> for SpinKey {
    fn from(k: &SpinKey) -> Self {
        k.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_never_collide() {
        // the same text as a string, as bytes and hashed
        let s = SpinKey::from("ab");
        let b = SpinKey::from(&b"ab"[..]);
        let h = SpinKey::hashed(&("ab",));
        assert_ne!(s, b);
        assert_ne!(s, h);
        assert_ne!(b, h);
        // a string is one key whichever way it is given
        assert_eq!(SpinKey::hashed("ab"), s);
        assert_eq!(SpinKey::hashed(&"ab".to_owned()), s);
        assert_eq!(SpinKey::hashed(&Box::new("ab".to_owned())), s);
        // a string that looks like another kind's encoding stays a string
        assert_ne!(SpinKey::from("6162"), b);
        assert_eq!(SpinKey::from("b:6162").as_str(), "s:b:6162");
        assert_ne!(SpinKey::from("b:6162"), b);
    }

    #[test]
    fn bytes_are_lowercase_hex_and_binary_safe() {
        assert_eq!(SpinKey::bytes(&[0, 0x7f, 0xff]).as_str(), "b:007fff");
        assert_eq!(SpinKey::bytes(&[]).as_str(), "b:");
        assert_eq!(SpinKey::from(vec![0xab]).as_str(), "b:ab");
    }

    #[test]
    fn hashed_keys_are_pinned() {
        // same digest as stable_hash's pinned "str" case, for a value
        // that is not a plain string
        assert_eq!(
            format!("h:{}", hex(&stable_hash("example"))),
            "h:5a2e7de372594480ff5032f35c1902da63c1b997ea1be2028fcf53bb154a7ec3"
        );
    }
}
