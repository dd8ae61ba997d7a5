//! Where a tree lives on a server: key names, and the escaping that keeps
//! any byte string from breaking them.
//!
//! Layout, for a tree named T and a node whose escaped path is P:
//! - `quorate:tree:{T}:lock:P`: the node's lock, the holder's token with a ttl;
//! - `quorate:tree:{T}:desc:P`: a set of the escaped paths of the node's
//!   locked descendants (an entry is live while its lock key exists);
//! - `quorate:tree:{T}:owners`: a hash, escaped path → `token:owner`.
//!
//! Segments are percent-escaped: every byte outside `A-Z a-z 0-9 - _ . ~`
//! becomes `%XX`, so an escaped segment never holds `/` (the separator),
//! `{`/`}` (the hash tag), `:` or `%` itself; distinct paths get distinct
//! keys. The tree name is escaped the same way, so every key of a tree
//! shares the Redis Cluster hash tag `{T}`.

use quorate_redlock::NameError;

use crate::path::TreePath;

/// The longest tree name accepted, in bytes.
pub const MAX_TREE_NAME_LEN: usize = 256;

/// Bytes kept as they are; everything else is `%XX`.
fn is_safe(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~')
}

fn escape_into(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if is_safe(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
}

fn unescape(escaped: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(escaped.len());
    let mut bytes = escaped.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hi = char::from(*bytes.next()?).to_digit(16)?;
            let lo = char::from(*bytes.next()?).to_digit(16)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
        } else if is_safe(b) {
            out.push(b);
        } else {
            return None;
        }
    }
    Some(out)
}

/// The escaped form of a path: escaped segments joined by `/`.
pub(crate) fn escape_path(segments: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        escape_into(segment, &mut out);
    }
    out
}

/// The path back from its escaped form (as a server reports it).
pub(crate) fn unescape_path(escaped: &[u8]) -> Option<TreePath> {
    let segments = escaped
        .split(|&b| b == b'/')
        .map(unescape)
        .collect::<Option<Vec<_>>>()?;
    TreePath::from_parts(segments)
}

/// The key names of one tree.
#[derive(Clone, Debug)]
pub(crate) struct TreeKeys {
    /// `quorate:tree:{T}:`
    base: String,
}

/// The keys one acquisition sends, in the order the script expects.
#[derive(Clone, Debug)]
pub(crate) struct PathKeys {
    /// Lock keys of every prefix, root first; the last one is the node's.
    pub locks: Vec<String>,
    /// Descendant sets of the same prefixes.
    pub descendants: Vec<String>,
    /// The tree's owners hash.
    pub owners: String,
}

impl PathKeys {
    /// The node's own lock key.
    pub(crate) fn lock(&self) -> &str {
        self.locks.last().map_or("", String::as_str)
    }

    /// Every key, as the script's KEYS: locks, then sets, then owners.
    pub(crate) fn all(&self) -> Vec<String> {
        let mut all = Vec::with_capacity(self.locks.len() * 2 + 1);
        all.extend(self.locks.iter().cloned());
        all.extend(self.descendants.iter().cloned());
        all.push(self.owners.clone());
        all
    }
}

impl TreeKeys {
    /// Keys for the tree called `name`, after the Redlock's `namespace`;
    /// an error if the name is empty or longer than [`MAX_TREE_NAME_LEN`]
    /// (braces are escaped, so allowed).
    pub(crate) fn new(namespace: &str, name: &str) -> Result<TreeKeys, NameError> {
        NameError::check("tree", name, true, Some(MAX_TREE_NAME_LEN))?;
        let mut base = format!("{namespace}quorate:tree:{{");
        escape_into(name.as_bytes(), &mut base);
        base.push_str("}:");
        Ok(TreeKeys { base })
    }

    /// What every lock key starts with; the rest is the escaped path.
    pub(crate) fn lock_prefix(&self) -> String {
        format!("{}lock:", self.base)
    }

    /// The keys for locking `path`.
    pub(crate) fn for_path(&self, path: &TreePath) -> PathKeys {
        let lock_prefix = self.lock_prefix();
        let desc_prefix = format!("{}desc:", self.base);
        let escaped: Vec<String> = path.prefixes().map(escape_path).collect();
        PathKeys {
            locks: escaped
                .iter()
                .map(|p| format!("{lock_prefix}{p}"))
                .collect(),
            descendants: escaped
                .iter()
                .map(|p| format!("{desc_prefix}{p}"))
                .collect(),
            owners: format!("{}owners", self.base),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(segments: &[&[u8]]) -> TreePath {
        TreePath::new(segments).expect("path")
    }

    #[test]
    fn layout() {
        let keys = TreeKeys::new("", "inventory").expect("name");
        let k = keys.for_path(&path(&[b"A", b"B"]));
        assert_eq!(
            k.locks,
            [
                "quorate:tree:{inventory}:lock:A",
                "quorate:tree:{inventory}:lock:A/B"
            ]
        );
        assert_eq!(
            k.descendants,
            [
                "quorate:tree:{inventory}:desc:A",
                "quorate:tree:{inventory}:desc:A/B"
            ]
        );
        assert_eq!(k.owners, "quorate:tree:{inventory}:owners");
        assert_eq!(k.lock(), "quorate:tree:{inventory}:lock:A/B");
        assert_eq!(k.all().len(), 5);
    }

    #[test]
    fn separators_braces_and_bytes_are_escaped() {
        assert_eq!(escape_path(&[b"a/b".to_vec()]), "a%2Fb");
        assert_eq!(escape_path(&[b"a".to_vec(), b"b".to_vec()]), "a/b");
        assert_eq!(escape_path(&[b"{x}:%".to_vec()]), "%7Bx%7D%3A%25");
        assert_eq!(escape_path(&[vec![0xff, 0x00, b' ']]), "%FF%00%20");
        // the tree name cannot break the hash tag either
        let keys = TreeKeys::new("", "a}b{c").expect("name");
        let lock = keys.for_path(&path(&[b"x"])).locks.remove(0);
        assert_eq!(lock, "quorate:tree:{a%7Db%7Bc}:lock:x");
        assert_eq!(lock.matches('{').count(), 1);
        assert_eq!(lock.matches('}').count(), 1);
    }

    #[test]
    fn tree_names_are_checked() {
        assert!(TreeKeys::new("", "").is_err());
        assert!(TreeKeys::new("", &"n".repeat(MAX_TREE_NAME_LEN + 1)).is_err());
        assert!(TreeKeys::new("", &"n".repeat(MAX_TREE_NAME_LEN)).is_ok());
    }

    #[test]
    fn every_byte_round_trips_and_distinct_paths_never_collide() {
        let all: Vec<u8> = (0..=255).collect();
        let hostile = [
            path(&[&all]),
            path(&[b"a/b"]),
            path(&[b"a", b"b"]),
            path(&[b"a%2Fb"]),
            path(&[b"%"]),
            path(&[b"{", b"}"]),
            path(&[b"{}"]),
            path(&[b"\xff\xfe", b"\x00"]),
        ];
        let mut seen = std::collections::HashSet::new();
        for p in &hostile {
            let escaped = escape_path(p.segments());
            assert!(escaped
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}'));
            assert_eq!(unescape_path(escaped.as_bytes()).as_ref(), Some(p));
            assert!(seen.insert(escaped), "collision for {p}");
        }
    }

    #[test]
    fn malformed_escapes_are_refused() {
        for bad in [&b"%"[..], b"%4", b"%zz", b"a b", b"", b"a//b", b"/a"] {
            assert_eq!(
                unescape_path(bad),
                None,
                "{:?}",
                bad.escape_ascii().to_string()
            );
        }
    }
}
