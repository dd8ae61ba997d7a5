//! Redis Cluster hash slots, and the names of a lock key's companion keys
//! (fence counter, queue, queue deadlines) so that they share its slot:
//! one script call touches a key and its companions together, and a
//! Cluster node refuses a call whose keys span slots.
//!
//! Redis hashes the part of a key between its first `{` and the next `}`
//! when that part is not empty (the key's *hash tag*), else the whole key.
//! A companion of key `k` is `<prefix>{k}` when `k` has no tag (the whole
//! key becomes the tag: the same slot), and `<prefix>{t}:k` when `k`'s tag
//! is `t`. A key without a tag that contains `}` cannot be named this way
//! (its own `}` would end the companion's tag early), so lock calls refuse
//! it ([`ConfigError::UnhashableResource`](crate::ConfigError::UnhashableResource)).

/// The key's hash tag: the text between its first `{` and the next `}`,
/// when not empty. Redis hashes only this part of a key that has one.
///
/// ```
/// use quorate_redlock::raw::hash_tag;
/// assert_eq!(hash_tag("{tenant-7}:orders"), Some("tenant-7"));
/// assert_eq!(hash_tag("orders"), None);
/// assert_eq!(hash_tag("{}orders"), None);
/// ```
pub fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let rest = &key[open + 1..];
    let close = rest.find('}')?;
    (close > 0).then(|| &rest[..close])
}

/// The Redis Cluster hash slot of `key` (CRC16 of its hash tag or of the
/// whole key, modulo 16384).
///
/// ```
/// use quorate_redlock::raw::hash_slot;
/// assert_eq!(hash_slot("{user1000}.following"), hash_slot("{user1000}.followers"));
/// ```
pub fn hash_slot(key: &str) -> u16 {
    fred::util::redis_keyslot(key.as_bytes())
}

/// The suffix of the quarantine marker's and quarantine's key names
/// ([`MARKER_KEY`](crate::MARKER_KEY), [`QUARANTINE_KEY`](crate::QUARANTINE_KEY))
/// on the Redis Cluster shard whose primary is `primary`: `:{n}` for the
/// smallest `n` whose slot that primary serves in `routing`, so each shard
/// keeps its own marker, on itself. `""` if it serves no slot.
pub fn shard_marker_suffix(
    routing: &fred::types::cluster::ClusterRouting,
    primary: &fred::types::config::Server,
) -> String {
    (0..u32::from(u16::MAX))
        .map(|n| n.to_string())
        .find(|n| routing.get_server(hash_slot(n)) == Some(primary))
        .map(|n| format!(":{{{n}}}"))
        .unwrap_or_default()
}

/// Whether companions of `key` can share its slot: `false` for a key
/// without a hash tag that contains `}`.
pub(crate) fn companions_fit(key: &str) -> bool {
    hash_tag(key).is_some() || !key.contains('}')
}

/// The companion of `key` named `prefix`: in `key`'s slot, distinct for
/// every key (see the module's documentation).
pub(crate) fn companion_key(prefix: &str, key: &str) -> String {
    // Built to its exact length: the client sends a string of exact capacity
    // without another allocation (fred's bytes take over its buffer).
    let parts: [&str; 5] = match hash_tag(key) {
        Some(tag) => [prefix, "{", tag, "}:", key],
        None => [prefix, "{", key, "}", ""],
    };
    parts.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companions_share_the_slot_of_their_key() {
        for key in [
            "job",
            "{tenant-7}:a",
            "app:{tenant-7}:a",
            "{a}{b}",
            "a{b",
            "quorate:pool:{p}:slot",
        ] {
            assert!(companions_fit(key), "{key}");
            let companion = companion_key("quorate:fence:", key);
            assert_eq!(
                hash_slot(&companion),
                hash_slot(key),
                "{key} -> {companion}"
            );
        }
        // untagged keys keep the layout they always had
        assert_eq!(
            companion_key("quorate:fence:", "job"),
            "quorate:fence:{job}"
        );
    }

    #[test]
    fn companions_of_different_keys_differ() {
        let keys = [
            "a", "{a}", "{a}:a", "{a}a", "x{a}", "a:{a}", "{a}:{a}", "{a",
        ];
        let mut names: Vec<String> = keys
            .iter()
            .map(|k| companion_key("quorate:queue:", k))
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), keys.len(), "{names:?}");
    }

    #[test]
    fn a_closing_brace_outside_a_tag_does_not_fit() {
        for key in ["a}b", "{}x}", "{}{x}", "}"] {
            assert!(!companions_fit(key), "{key}");
        }
    }
}
