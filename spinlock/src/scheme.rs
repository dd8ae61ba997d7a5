//! The customisation points of py-dspinlock (`get_key`, `_get_tag`,
//! `_unpack_value`) as one small trait with defaults.

use std::fmt;

use crate::key::SpinKey;

/// The namespace of the default scheme's keys.
pub const DEFAULT_PREFIX: &str = "quorate:spin:";

/// The default tag written before every stored result (format version 1).
pub const DEFAULT_TAG: &[u8] = b"qs1:";

/// How keys are derived and results stored. Every method has a default;
/// override only what you need (e.g. a namespace per application, or a
/// tag that carries a schema version so results of an old release are not
/// decoded by a new one):
///
/// ```
/// use quorate_spinlock::{Scheme, SpinKey};
/// #[derive(Debug)]
/// struct Billing;
/// impl Scheme for Billing {
///     fn lock_key(&self, key: &SpinKey) -> String { format!("billing:lock:{key}") }
///     fn result_key(&self, key: &SpinKey) -> String { format!("billing:result:{key}") }
///     fn tag(&self) -> &[u8] { b"billing-v2:" }
/// }
/// ```
///
/// The lock key and the result key of one [`SpinKey`] must differ, and no
/// lock key may equal another key's result key; the defaults keep them in
/// separate namespaces (`quorate:spin:lock:` and `quorate:spin:result:`).
pub trait Scheme: Send + Sync + fmt::Debug + 'static {
    /// The lock's key on the nodes (py-dspinlock's `get_key`).
    /// Default: `quorate:spin:lock:` + the encoded key.
    fn lock_key(&self, key: &SpinKey) -> String {
        format!("{DEFAULT_PREFIX}lock:{key}")
    }

    /// The stored result's key. Default: `quorate:spin:result:` + the encoded key.
    fn result_key(&self, key: &SpinKey) -> String {
        format!("{DEFAULT_PREFIX}result:{key}")
    }

    /// The tag that marks a stored value as ours (py-dspinlock's
    /// `_get_tag`). Default: [`DEFAULT_TAG`].
    fn tag(&self) -> &[u8] {
        DEFAULT_TAG
    }

    /// The stored form of a result. Default: the tag, then the result.
    fn encode(&self, result: &[u8]) -> Vec<u8> {
        let tag = self.tag();
        let mut stored = Vec::with_capacity(tag.len() + result.len());
        stored.extend_from_slice(tag);
        stored.extend_from_slice(result);
        stored
    }

    /// A result back from its stored form (py-dspinlock's `_unpack_value`).
    /// Default: strips the tag; a value without it is an error (written by
    /// something else, or by another format version).
    fn decode(&self, stored: &[u8]) -> Result<Vec<u8>, String> {
        stored
            .strip_prefix(self.tag())
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                format!(
                    "stored value does not start with the tag {:?}",
                    String::from_utf8_lossy(self.tag())
                )
            })
    }
}

/// The scheme with every default.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultScheme;

impl Scheme for DefaultScheme {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_keys_live_in_separate_namespaces() {
        let scheme = DefaultScheme;
        let key = SpinKey::from("report");
        assert_eq!(scheme.lock_key(&key), "quorate:spin:lock:s:report");
        assert_eq!(scheme.result_key(&key), "quorate:spin:result:s:report");
        // a string key cannot reach into the result namespace
        let sneaky = SpinKey::from("x:result:s:report");
        assert_ne!(scheme.lock_key(&sneaky), scheme.result_key(&key));
    }

    #[test]
    fn encode_decode_round_trip_and_foreign_values() {
        let scheme = DefaultScheme;
        let stored = scheme.encode(b"\x00payload");
        assert_eq!(stored, b"qs1:\x00payload");
        assert_eq!(scheme.decode(&stored).as_deref(), Ok(&b"\x00payload"[..]));
        assert_eq!(
            scheme.decode(b""),
            Err("stored value does not start with the tag \"qs1:\"".to_owned())
        );
        assert!(scheme.decode(b"qs2:x").is_err());
    }
}
