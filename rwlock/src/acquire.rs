//! One read or write acquisition across the quorum: the script on every
//! server, the verdict of the round, and the undo of a round that did not
//! grant.

use std::time::Duration;

use quorate_redlock::raw::quorum::{self, verdict, Answer, Reply, Round, Verdict};
use quorate_redlock::raw::{MemoryStore, NodeScript, ScriptValue, UndoGuard};
use quorate_redlock::{Error, Holder, Lease, LockGuard, LockOptions, NodeOutcome, Redlock};
use tokio::time::Instant;

use crate::keys::RwKeys;

pub(crate) static ACQUIRE: NodeScript =
    NodeScript::new("rw_acquire", include_str!("../scripts/acquire.lua"))
        .emulated(acquire_in_memory)
        .granting();

/// How many reader entries a reader's registration samples for pruning.
const SAMPLE: usize = 3;

/// Read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Access {
    /// Shared with other readers.
    Read,
    /// Exclusive.
    Write,
}

impl Access {
    /// `read` or `write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// `acquire.lua` on a memory node: same keys, arguments and reply.
fn acquire_in_memory(
    store: &mut MemoryStore,
    keys: &[String],
    args: &[Vec<u8>],
) -> Result<ScriptValue, String> {
    let [w, readers, intents, mine, fence] = keys else {
        return Err("expected 5 keys".to_owned());
    };
    let arg = |i: usize| args.get(i).map(Vec::as_slice).ok_or("too few arguments");
    let text = |i: usize| -> Result<&str, String> {
        std::str::from_utf8(arg(i)?).map_err(|e| e.to_string())
    };
    let ms = |i: usize| -> Result<Duration, String> {
        let n: u64 = text(i)?
            .parse()
            .map_err(|_| format!("argument {} is not a number", i + 1))?;
        Ok(Duration::from_millis(n))
    };
    let (mode, token, ttl, prefix) = (text(0)?, arg(1)?, ms(2)?, text(3)?);
    let blocked = |store: &MemoryStore, what: &str, key: &str| {
        ScriptValue::Array(vec![
            ScriptValue::Bytes(what.as_bytes().to_vec()),
            ScriptValue::Bytes(
                key.get(prefix.len()..)
                    .unwrap_or_default()
                    .as_bytes()
                    .to_vec(),
            ),
            ScriptValue::Int(store.pttl(key)),
            store.holder_of(store.get(key)),
        ])
    };
    let intend = |store: &mut MemoryStore| -> Result<(), String> {
        if mode == "write" {
            store.set(mine, arg(4)?, Some(ms(5)?));
            store.sadd(intents, arg(4)?);
        }
        Ok(())
    };
    if store.exists(w) {
        intend(store)?;
        return Ok(blocked(store, "writer", w));
    }
    if mode == "read" {
        for member in store.smembers(intents) {
            let intent = format!("{prefix}i:{}", String::from_utf8_lossy(&member));
            if store.exists(&intent) {
                return Ok(blocked(store, "waiting", &intent));
            }
            store.srem(intents, &member);
        }
        store.set(mine, token, Some(ttl));
        let id = mine.get(prefix.len() + 2..).unwrap_or_default();
        store.sadd(readers, id.as_bytes());
        for other in store.srandmember(readers, SAMPLE) {
            if !store.exists(&format!("{prefix}r:{}", String::from_utf8_lossy(&other))) {
                store.srem(readers, &other);
            }
        }
        return Ok(ScriptValue::Int(1));
    }
    for reader in store.smembers(readers) {
        let key = format!("{prefix}r:{}", String::from_utf8_lossy(&reader));
        if store.exists(&key) {
            intend(store)?;
            return Ok(blocked(store, "reader", &key));
        }
        store.srem(readers, &reader);
    }
    store.set(w, token, Some(ttl));
    store.del(mine);
    store.srem(intents, arg(4)?);
    if args.get(6).map(Vec::as_slice) == Some(b"1") {
        let counter = i64::try_from(store.fence_incr(fence)).unwrap_or(i64::MAX);
        return Ok(ScriptValue::Array(vec![
            ScriptValue::Int(1),
            ScriptValue::Int(counter),
        ]));
    }
    Ok(ScriptValue::Int(1))
}

/// A fence counter's value on a memory node (0 when absent).
fn counter(store: &MemoryStore, key: &str) -> i64 {
    store
        .get(key)
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0)
}

static RAISE_FENCE: NodeScript =
    NodeScript::new("rw_raise_fence", include_str!("../scripts/raise_fence.lua"))
        .emulated(raise_fence_in_memory);

/// `raise_fence.lua` on a memory node.
fn raise_fence_in_memory(
    store: &mut MemoryStore,
    keys: &[String],
    args: &[Vec<u8>],
) -> Result<ScriptValue, String> {
    let key = keys.first().ok_or("no key")?;
    let fence: i64 = args
        .first()
        .and_then(|a| std::str::from_utf8(a).ok()?.parse().ok())
        .ok_or("the fence is not a number")?;
    if counter(store, key) < fence {
        store.set(key, fence.to_string().as_bytes(), None);
    }
    Ok(ScriptValue::Int(1))
}

/// What stood in the way on one server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Blocker {
    /// `writer`, `reader` or `waiting` (a writer waiting for readers).
    pub what: String,
    /// The blocking key, without the lock's prefix.
    pub key: String,
    /// Its remaining ttl on that server (`None`: no expiry).
    pub remaining: Option<Duration>,
    /// The client holding it (or waiting), when the server could name it.
    pub holder: Option<Holder>,
}

fn parse(value: &ScriptValue) -> Answer<Blocker> {
    if value.as_int() == Some(1) || fence_of(value).is_some() {
        return Answer::Granted;
    }
    match value.as_array() {
        Some([what, key, ScriptValue::Int(pttl), holder]) => match (what.as_str(), key.as_str()) {
            (Some(what), Some(key)) => Answer::Blocked(Blocker {
                what: what.to_owned(),
                key: key.to_owned(),
                remaining: u64::try_from(*pttl).ok().map(Duration::from_millis),
                holder: Holder::from_script(holder),
            }),
            _ => Answer::Unexpected(format!("unexpected rwlock reply {value:?}")),
        },
        _ => Answer::Unexpected(format!("unexpected rwlock reply {value:?}")),
    }
}

/// A fenced writer's grant: `{1, counter}`.
fn fence_of(value: &ScriptValue) -> Option<u64> {
    match value.as_array()? {
        [granted, counter] if granted.as_int() == Some(1) => u64::try_from(counter.as_int()?).ok(),
        _ => None,
    }
}

fn describe(blocker: &Blocker) -> NodeOutcome {
    NodeOutcome::Taken {
        resource: format!("{} {}", blocker.what, blocker.key),
        remaining: blocker.remaining,
        holder: blocker.holder.clone(),
    }
}

/// One call's identity across its rounds: a writer's intent is renewed,
/// not multiplied, by each round.
#[derive(Debug)]
pub(crate) struct Call {
    pub access: Access,
    /// A writer's member in the intents index.
    pub member: String,
}

/// A refused round: the error, and the key whose release may free the way.
#[derive(Debug)]
pub(crate) struct Refused {
    pub error: Error,
    pub watch: Option<String>,
}

/// One acquisition round: a guard when a majority granted in time, else
/// the round is undone and the reason returned.
///
/// # Cancel safety
/// Dropping the future spawns the undo, so an abandoned round leaves no
/// key behind longer than a round trip (or the ttl, on an unreachable
/// node). A writer's intent lapses after `waiter_ttl`.
pub(crate) async fn attempt(
    redlock: &Redlock,
    keys: &RwKeys,
    name: &str,
    call: &Call,
    options: &LockOptions,
) -> Result<LockGuard, Refused> {
    let token = redlock.fresh_token();
    let hex = token.to_hex();
    let held = match call.access {
        Access::Read => keys.reader(&redlock.fresh_token().to_hex()),
        Access::Write => keys.writer(),
    };
    let mine = match call.access {
        Access::Read => held.clone(),
        Access::Write => keys.intent(&call.member),
    };
    let fenced = call.access == Access::Write && options.get_fencing();
    let mut undo = UndoGuard::armed(
        redlock,
        vec![held.clone()],
        &hex,
        options.effective_node_timeout(),
    );
    redlock.count_round();
    let started = Instant::now();
    let ms = |d: Duration| d.as_nanos().div_ceil(1_000_000).to_string().into_bytes();
    let args = vec![
        call.access.as_str().as_bytes().to_vec(),
        hex.as_bytes().to_vec(),
        ms(options.get_ttl()),
        keys.prefix().as_bytes().to_vec(),
        call.member.as_bytes().to_vec(),
        ms(options.get_waiter_ttl()),
        if fenced { b"1".to_vec() } else { b"0".to_vec() },
    ];
    let round = redlock
        .eval_round(
            &ACQUIRE,
            vec![
                keys.writer(),
                keys.readers(),
                keys.intents(),
                mine,
                keys.fence(),
            ],
            args,
            options.effective_node_timeout(),
            |v| matches!(parse(v), Answer::Granted),
        )
        .await;
    let refused = match verdict(redlock, &round, parse, describe) {
        Verdict::Granted => {
            let mut lease = Lease::new(
                token,
                options.get_ttl(),
                started,
                options.get_drift_factor(),
            );
            let fence = match fenced {
                true => raise_fence(redlock, keys, &round, options).await.map(Some),
                false => Ok(None),
            };
            match fence {
                Ok(fence) if lease.is_valid() => {
                    if let Some(fence) = fence {
                        lease = lease.with_fence(fence);
                    }
                    undo.disarm();
                    return Ok(redlock.adopt(vec![held], lease, options));
                }
                Ok(_) => Refused {
                    error: Error::Expired,
                    watch: None,
                },
                Err(error) => Refused { error, watch: None },
            }
        }
        Verdict::Blocked { first, outcomes } => Refused {
            watch: Some(match first.what.as_str() {
                "reader" => keys.full(&first.key),
                // a writer holds it, or one waits and will hold it next
                _ => keys.writer(),
            }),
            error: Error::Taken {
                resource: name.to_owned(),
                outcomes,
            },
        },
        Verdict::NoQuorum(error) => Refused { error, watch: None },
    };
    undo.send().await;
    Err(refused)
}

/// A fenced writer's fence: the largest counter among the granting
/// nodes, written back to a majority before the lease is handed out, so
/// that every later majority meets it and goes higher (as the mutex does).
async fn raise_fence(
    redlock: &Redlock,
    keys: &RwKeys,
    round: &Round<ScriptValue>,
    options: &LockOptions,
) -> Result<u64, Error> {
    let fence = round
        .replies
        .iter()
        .filter_map(|r| match r {
            Reply::Answered(v) => fence_of(v),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let raised = redlock
        .eval_round(
            &RAISE_FENCE,
            vec![keys.fence()],
            vec![fence.to_string().into_bytes()],
            options.effective_node_timeout(),
            |v| v.as_int() == Some(1),
        )
        .await;
    if raised.successes >= redlock.quorum() {
        Ok(fence)
    } else {
        Err(quorum::no_quorum(redlock, &raised))
    }
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
            bytes("reader"),
            bytes("r:ab"),
            ScriptValue::Int(250),
            bytes("00000000000000c7 reporter"),
        ]);
        let Answer::Blocked(b) = parse(&reply) else {
            panic!("not blocked: {reply:?}");
        };
        assert_eq!((b.what.as_str(), b.key.as_str()), ("reader", "r:ab"));
        assert_eq!(b.remaining, Some(Duration::from_millis(250)));
        assert_eq!(b.holder.map(|h| h.client), Some("00000000000000c7".into()));
        for odd in [
            ScriptValue::Nil,
            ScriptValue::Int(0),
            ScriptValue::Array(vec![]),
        ] {
            assert!(matches!(parse(&odd), Answer::Unexpected(_)), "{odd:?}");
        }
    }
}
