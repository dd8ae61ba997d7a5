//! One round of the tree script on every node, what its answers mean, and
//! the undo of a round that did not win.

use std::time::Duration;

use quorate_redlock::raw::quorum::{self, Answer, Round, Verdict};
use quorate_redlock::raw::{MemoryStore, NodeScript, ScriptValue, UndoGuard};
use quorate_redlock::{Error, Holder, Lease, LockGuard, NodeOutcome, Redlock};
use tokio::time::Instant;

use crate::error::{Conflict, Relation, TreeError};
use crate::keys::{unescape_path, PathKeys};
use crate::metrics;
use crate::options::TreeLockOptions;
use crate::path::TreePath;

/// The per-server check-and-lock; see the script's header.
pub(crate) static ACQUIRE: NodeScript =
    NodeScript::new("tree_acquire", include_str!("../scripts/acquire.lua"))
        .emulated(acquire_in_memory)
        .granting();

/// How many index and owner entries a registration samples for pruning.
const SAMPLE: usize = 3;

/// `acquire.lua` on a memory node: same keys, arguments and reply (see the
/// script for the layout), sampling for pruning at random as the script's
/// `SRANDMEMBER` and `HRANDFIELD` do.
fn acquire_in_memory(
    store: &mut MemoryStore,
    keys: &[String],
    args: &[Vec<u8>],
) -> Result<ScriptValue, String> {
    let arg = |i: usize| args.get(i).map(Vec::as_slice).ok_or("too few arguments");
    let (token, prefix, mode, owner) = (arg(0)?, arg(2)?, arg(3)?, arg(4)?);
    let ttl_ms: u64 = std::str::from_utf8(arg(1)?)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or("ttl is not a number")?;
    let prefix = std::str::from_utf8(prefix).map_err(|e| e.to_string())?;
    let depth = keys.len().checked_sub(1).ok_or("no keys")? / 2;
    let owners = &keys[keys.len() - 1];
    let path_of = |key: &str| key.get(prefix.len()..).unwrap_or_default().to_owned();
    let owner_of = |store: &MemoryStore, path: &str| -> Vec<u8> {
        let holder = store.get(&format!("{prefix}{path}")).map(<[u8]>::to_vec);
        match (holder, store.hget(owners, path.as_bytes())) {
            (Some(mut holder), Some(entry)) => {
                holder.push(b':');
                entry
                    .strip_prefix(holder.as_slice())
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        }
    };
    let conflict = |store: &MemoryStore, relation: &str, path: String, pttl: i64| {
        let owner = owner_of(store, &path);
        let holder = store.holder_of(store.get(&format!("{prefix}{path}")));
        ScriptValue::Array(vec![
            ScriptValue::Bytes(relation.as_bytes().to_vec()),
            ScriptValue::Bytes(path.into_bytes()),
            ScriptValue::Int(pttl),
            ScriptValue::Bytes(owner),
            holder,
        ])
    };

    for (i, key) in keys[..depth].iter().enumerate() {
        let pttl = store.pttl(key);
        if pttl != -2 {
            let relation = if i + 1 == depth { "self" } else { "ancestor" };
            return Ok(conflict(store, relation, path_of(key), pttl));
        }
    }
    let index = &keys[2 * depth - 1];
    for member in store.smembers(index) {
        let path = String::from_utf8_lossy(&member).into_owned();
        let pttl = store.pttl(&format!("{prefix}{path}"));
        if pttl == -2 {
            store.srem(index, &member);
        } else {
            return Ok(conflict(store, "descendant", path, pttl));
        }
    }
    if mode == b"check" {
        return Ok(ScriptValue::Int(1));
    }

    let node = path_of(&keys[depth - 1]);
    store.set(&keys[depth - 1], token, Some(Duration::from_millis(ttl_ms)));
    for ancestor_index in &keys[depth..2 * depth - 1] {
        store.sadd(ancestor_index, node.as_bytes());
        for member in store.srandmember(ancestor_index, SAMPLE) {
            let live = store.exists(&format!("{prefix}{}", String::from_utf8_lossy(&member)));
            if !live {
                store.srem(ancestor_index, &member);
            }
        }
    }
    if owner.is_empty() {
        store.hdel(owners, node.as_bytes());
    } else {
        let mut entry = token.to_vec();
        entry.push(b':');
        entry.extend_from_slice(owner);
        store.hset(owners, node.as_bytes(), &entry);
    }
    for (field, entry) in store.hrandfield(owners, SAMPLE) {
        let path = String::from_utf8_lossy(&field).into_owned();
        let current = match store.get(&format!("{prefix}{path}")) {
            Some(holder) => {
                let mut holder = holder.to_vec();
                holder.push(b':');
                entry.starts_with(&holder)
            }
            None => false,
        };
        if !current {
            store.hdel(owners, &field);
        }
    }
    Ok(ScriptValue::Int(1))
}

/// What the script is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Check, and lock if nothing conflicts.
    Lock,
    /// Only report a conflict.
    Check,
}

fn parse(value: &ScriptValue) -> Answer<Conflict> {
    if value.as_int() == Some(1) {
        return Answer::Granted;
    }
    let parsed = match value.as_array() {
        Some(
            [ScriptValue::Bytes(relation), ScriptValue::Bytes(path), ScriptValue::Int(pttl), ScriptValue::Bytes(owner), holder],
        ) => {
            Relation::parse(relation)
                .zip(unescape_path(path))
                .map(|(relation, path)| Conflict {
                    path,
                    relation,
                    // -1: the key has no expiry (set by something other than us)
                    remaining: u64::try_from(*pttl).ok().map(Duration::from_millis),
                    owner: (!owner.is_empty()).then(|| String::from_utf8_lossy(owner).into_owned()),
                    holder: Holder::from_script(holder),
                })
        }
        _ => None,
    };
    match parsed {
        Some(conflict) => Answer::Blocked(conflict),
        None => Answer::Unexpected(format!("unexpected tree script reply {value:?}")),
    }
}

/// Runs the script once on every node, decided at a majority.
pub(crate) async fn round(
    redlock: &Redlock,
    keys: &PathKeys,
    lock_prefix: &str,
    mode: Mode,
    token: &str,
    options: &TreeLockOptions,
) -> Round<ScriptValue> {
    let lock = options.lock_options();
    let ttl_ms = lock.get_ttl().as_nanos().div_ceil(1_000_000);
    let args = vec![
        token.as_bytes().to_vec(),
        ttl_ms.to_string().into_bytes(),
        lock_prefix.as_bytes().to_vec(),
        match mode {
            Mode::Lock => b"lock".to_vec(),
            Mode::Check => b"check".to_vec(),
        },
        options.get_owner().unwrap_or("").as_bytes().to_vec(),
    ];
    redlock
        .eval_round(
            &ACQUIRE,
            keys.all(),
            args,
            lock.effective_node_timeout(),
            |v| matches!(parse(v), Answer::Granted),
        )
        .await
}

/// Reads a decided round: free on a majority, blocked, or no quorum.
pub(crate) fn verdict(redlock: &Redlock, round: &Round<ScriptValue>) -> Verdict<Conflict> {
    quorum::verdict(redlock, round, parse, |c| NodeOutcome::Taken {
        resource: format!("{} {}", c.relation.as_str(), c.path),
        remaining: c.remaining,
        holder: c.holder.clone(),
    })
}

/// One acquisition round: a guard when a majority locked the node in time,
/// else the round is undone and the reason returned.
///
/// # Cancel safety
/// Dropping the future spawns the undo, so an abandoned round leaves no
/// lock key behind longer than a round trip (or the ttl, on an unreachable
/// node). Index entries left behind are dead without their lock key.
pub(crate) async fn attempt(
    redlock: &Redlock,
    path: &TreePath,
    keys: &PathKeys,
    lock_prefix: &str,
    options: &TreeLockOptions,
) -> Result<LockGuard, TreeError> {
    let lock = options.lock_options();
    // A fresh token per round: a late undo of this round can never touch a
    // later grant.
    let token = redlock.fresh_token();
    let hex = token.to_hex();
    let mut undo = UndoGuard::armed(
        redlock,
        vec![keys.lock().to_owned()],
        &hex,
        lock.effective_node_timeout(),
    );
    metrics::round();
    let started = Instant::now();
    let round = round(redlock, keys, lock_prefix, Mode::Lock, &hex, options).await;
    let error = match verdict(redlock, &round) {
        Verdict::Granted => {
            let lease = Lease::new(token, lock.get_ttl(), started, lock.get_drift_factor());
            if lease.is_valid() {
                undo.disarm();
                return Ok(redlock.adopt(vec![keys.lock().to_owned()], lease, lock));
            }
            TreeError::Lock(Error::Expired)
        }
        Verdict::Blocked { first, outcomes } => TreeError::Conflict {
            path: path.clone(),
            conflict: Box::new(first),
            outcomes,
        },
        Verdict::NoQuorum(error) => TreeError::Lock(error),
    };
    undo.send().await;
    Err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(s: &str) -> ScriptValue {
        ScriptValue::Bytes(s.as_bytes().to_vec())
    }

    #[test]
    fn replies_are_parsed() {
        assert!(matches!(parse(&ScriptValue::Int(1)), Answer::Granted));
        let reply = ScriptValue::Array(vec![
            bytes("descendant"),
            bytes("A/B%2FC"),
            ScriptValue::Int(250),
            bytes("w1"),
            bytes("00000000000000c7 indexer"),
        ]);
        let Answer::Blocked(c) = parse(&reply) else {
            panic!("not a conflict: {reply:?}");
        };
        assert_eq!(c.relation, Relation::Descendant);
        assert_eq!(c.path, TreePath::new(["A", "B/C"]).expect("path"));
        assert_eq!(c.remaining, Some(Duration::from_millis(250)));
        assert_eq!(c.owner.as_deref(), Some("w1"));
        let holder = c.holder.expect("holder");
        assert_eq!(holder.client, "00000000000000c7");
        assert_eq!(holder.owner.as_deref(), Some("indexer"));
        let no_expiry = ScriptValue::Array(vec![
            bytes("self"),
            bytes("A"),
            ScriptValue::Int(-1),
            bytes(""),
            ScriptValue::Nil,
        ]);
        let Answer::Blocked(c) = parse(&no_expiry) else {
            panic!("not a conflict");
        };
        assert_eq!((c.remaining, c.owner, c.holder), (None, None, None));
        for odd in [
            ScriptValue::Nil,
            ScriptValue::Int(0),
            ScriptValue::Array(vec![
                bytes("cousin"),
                bytes("A"),
                ScriptValue::Int(1),
                bytes(""),
                ScriptValue::Nil,
            ]),
            ScriptValue::Array(vec![
                bytes("self"),
                bytes("%zz"),
                ScriptValue::Int(1),
                bytes(""),
                ScriptValue::Nil,
            ]),
        ] {
            assert!(matches!(parse(&odd), Answer::Unexpected(_)), "{odd:?}");
        }
    }
}
