//! The number of permits of a resizable semaphore, kept on the nodes: the
//! newest `set_permits` (an epoch, ordered by time) plus every
//! `add_permits` made under it, each recorded under an id of its own on a
//! majority. A read takes the newest epoch a majority reports and unites
//! its adds (any two majorities meet), as the latch does with count-downs,
//! and writes what it united back to a majority when the answers disagreed
//! (so a set or add that reached only a minority is either completed by the
//! first read that sees it or never seen at all).
//!
//! Every node also enforces its own number: take.lua refuses slots at or
//! above it (take.lua's limit). A set or add that returned is on a majority, so no
//! acquire round started after it can grant a slot beyond the new number.
//!
//! What a failed `set_permits`/`add_permits` (an error) may leave behind:
//! the new number on a minority of nodes. A later read that sees it writes
//! it back and it then applies everywhere; until then those nodes refuse
//! slots beyond it, which can only delay grants, never add one.

use std::collections::BTreeMap;

use quorate_redlock::raw::quorum::{self, Decide, Reply};
use quorate_redlock::raw::{retry, MemoryStore, NodeScript, Retry, ScriptValue, WaitPolicy};
use quorate_redlock::Redlock;
use tokio::time::Instant;

use crate::error::PoolError;

pub(crate) static SIZE: NodeScript =
    NodeScript::new("semaphore_size", include_str!("../scripts/size.lua"))
        .emulated(size_in_memory)
        .granting();

/// What an `add` answers on a server that has a newer `set`.
const STALE: &str = "QUORATE_STALE_EPOCH";

/// The epoch of a semaphore nobody resized yet: older than any `set`.
const INITIAL_EPOCH: &str = "000000000000000-initial";

fn size_in_memory(
    store: &mut MemoryStore,
    keys: &[String],
    args: &[Vec<u8>],
) -> Result<ScriptValue, String> {
    let [size, adds] = keys else {
        return Err("expected 2 keys".to_owned());
    };
    let epoch = store.hget(size, b"epoch").map(<[u8]>::to_vec);
    let catch_up = |store: &mut MemoryStore, new: &[u8], base: &[u8]| -> Vec<u8> {
        match &epoch {
            Some(current) if current.as_slice() >= new => current.clone(),
            _ => {
                store.hset(size, b"epoch", new);
                store.hset(size, b"base", base);
                store.del(adds);
                new.to_vec()
            }
        }
    };
    match args {
        [op, new, base, pairs @ ..] if op.as_slice() == b"set" || op.as_slice() == b"add" => {
            if catch_up(store, new, base) != *new {
                return Err(STALE.to_owned());
            }
            for pair in pairs.chunks_exact(2) {
                store.hset(adds, &pair[0], &pair[1]);
            }
            let synced = store.restart_mark().unwrap_or_default().to_vec();
            store.hset(size, b"synced", &synced);
            Ok(ScriptValue::Int(1))
        }
        [op, ..] if op.as_slice() == b"read" => {
            let field =
                |v: Option<&[u8]>| v.map_or(ScriptValue::Nil, |v| ScriptValue::Bytes(v.to_vec()));
            let in_sync = match store.restart_mark() {
                Some(mark) => store.hget(size, b"synced") == Some(mark),
                None => true,
            };
            let mut out = vec![
                field(epoch.as_deref()),
                field(store.hget(size, b"base")),
                ScriptValue::Int(i64::from(in_sync)),
            ];
            for (id, delta) in store.hgetall(adds) {
                out.extend([ScriptValue::Bytes(id), ScriptValue::Bytes(delta)]);
            }
            Ok(ScriptValue::Array(out))
        }
        _ => Err("expected set, add or read".to_owned()),
    }
}

/// A semaphore's size record on the nodes.
#[derive(Clone, Debug)]
pub(crate) struct Size {
    /// The semaphore's name, for errors.
    name: String,
    keys: Vec<String>,
    /// The size before any `set_permits`.
    initial: usize,
}

/// The newest epoch a majority reported, with its base and adds.
struct Seen {
    epoch: String,
    base: i64,
    adds: BTreeMap<Vec<u8>, i64>,
}

impl Seen {
    /// The permits, plus `more` not yet seen (0 at least).
    fn permits_plus(&self, more: i64) -> usize {
        let total = self.base + self.adds.values().sum::<i64>() + more;
        usize::try_from(total.max(0)).unwrap_or(usize::MAX)
    }
}

impl Size {
    /// The size record of semaphore `name` (its keys carry the semaphore's
    /// hash tag, as its slots do), after the Redlock's `namespace`.
    pub(crate) fn new(namespace: &str, name: &str, initial: usize) -> Size {
        Size {
            name: name.to_owned(),
            keys: vec![
                format!("{namespace}quorate:pool:{{semaphore:{name}}}:size"),
                format!("{namespace}quorate:pool:{{semaphore:{name}}}:size_adds"),
            ],
            initial,
        }
    }

    /// The size hash and the adds hash, which take.lua also reads.
    pub(crate) fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The number of permits before any set.
    pub(crate) fn initial(&self) -> usize {
        self.initial
    }

    /// The permits a majority of nodes agree on.
    pub(crate) async fn read(&self, redlock: &Redlock) -> Result<usize, PoolError> {
        Ok(self.seen(redlock).await?.permits_plus(0))
    }

    /// Sets the permits to `permits` (the newest set wins everywhere; adds
    /// made before it no longer count). Returns once a majority has this set
    /// as its newest: its epoch is newer than any this client read (whatever
    /// its clock says), and a set that lost to a concurrent newer one on a
    /// majority is made again on top of it, never reported as done.
    pub(crate) async fn set(&self, redlock: &Redlock, permits: usize) -> Result<(), PoolError> {
        until_written(redlock, || async {
            // newer than any epoch a node reports, in sync or not: a set
            // also brings nodes that restarted back in sync
            let (_, newest) = self.records(redlock).await?;
            let args = vec![
                b"set".to_vec(),
                epoch_after(&newest).into_bytes(),
                permits.to_string().into_bytes(),
            ];
            self.write(redlock, &args).await
        })
        .await
    }

    /// Adds `delta` permits (negative: removes) on top of the newest set,
    /// once even if sent again; the permits after it, as this client saw
    /// them.
    pub(crate) async fn add(&self, redlock: &Redlock, delta: i64) -> Result<usize, PoolError> {
        let id = redlock.fresh_token().to_hex().into_bytes();
        until_written(redlock, || async {
            let seen = self.seen(redlock).await?;
            let args = vec![
                b"add".to_vec(),
                seen.epoch.clone().into_bytes(),
                seen.base.to_string().into_bytes(),
                id.clone(),
                delta.to_string().into_bytes(),
            ];
            self.write(redlock, &args).await?;
            // the read already counts it if an earlier try reached a majority
            let unseen = if seen.adds.contains_key(&id) {
                0
            } else {
                delta
            };
            Ok(seen.permits_plus(unseen))
        })
        .await
    }

    /// One write on every node, decided at a majority (an add refused as
    /// stale by nodes with a newer set counts as not written).
    async fn write(&self, redlock: &Redlock, args: &[Vec<u8>]) -> Result<(), PoolError> {
        let round = redlock
            .eval_round(
                &SIZE,
                self.keys.clone(),
                args.to_vec(),
                redlock.defaults().effective_node_timeout(),
                |v| v.as_int() == Some(1),
            )
            .await;
        if round.successes >= redlock.quorum() {
            return Ok(());
        }
        Err(quorum::no_quorum(redlock, &round).into())
    }

    /// Every node's record, united (the newest epoch any of a majority
    /// reported, with every add of it), written back to a majority when the
    /// answers were not all the same.
    async fn seen(&self, redlock: &Redlock) -> Result<Seen, PoolError> {
        let (seen, agreed) = self.united(redlock).await?;
        if agreed < redlock.quorum() {
            let mut args = vec![
                b"add".to_vec(),
                seen.epoch.clone().into_bytes(),
                seen.base.to_string().into_bytes(),
            ];
            for (id, delta) in &seen.adds {
                args.extend([id.clone(), delta.to_string().into_bytes()]);
            }
            // Stale: a newer set arrived meanwhile, which the caller's next
            // read sees; the caller retries.
            self.write(redlock, &args).await?;
        }
        Ok(seen)
    }

    /// The united record, and how many nodes reported exactly it (0 when
    /// any answering node is out of sync, so that the caller writes it
    /// back). Only nodes in sync count: a node that restarted may report a
    /// record older than a set it forgot, or none; when fewer than a
    /// majority are in sync, the number is unknown (`NoQuorum`) until a
    /// `set_permits`.
    async fn united(&self, redlock: &Redlock) -> Result<(Seen, usize), PoolError> {
        let (round, _) = self.records(redlock).await?;
        let mut records = Vec::new();
        let mut restarted = Vec::new();
        for (reply, node) in round.replies.iter().zip(redlock.node_names()) {
            if let Reply::Answered(ScriptValue::Array(items)) = reply {
                if items.get(2).and_then(ScriptValue::as_int) == Some(1) {
                    records.push(items.as_slice());
                } else {
                    restarted.push(node);
                }
            }
        }
        let all_in_sync = restarted.is_empty();
        if records.len() + restarted.len() < redlock.quorum() {
            return Err(quorum::no_quorum(redlock, &round).into());
        }
        if records.len() < redlock.quorum() {
            return Err(PoolError::SizeUnknown {
                name: self.name.clone(),
                in_sync: records.len(),
                quorum: redlock.quorum(),
                restarted: restarted.join(", "),
            });
        }
        let epoch_of =
            |r: &[ScriptValue]| r.first().and_then(ScriptValue::as_str).map(str::to_owned);
        let newest = records.iter().filter_map(|r| epoch_of(r)).max();
        let Some(epoch) = newest else {
            let initial = Seen {
                epoch: INITIAL_EPOCH.to_owned(),
                base: i64::try_from(self.initial).unwrap_or(i64::MAX),
                adds: BTreeMap::new(),
            };
            let agreed = if all_in_sync { records.len() } else { 0 };
            return Ok((initial, agreed));
        };
        let mut seen = Seen {
            epoch: epoch.clone(),
            base: 0,
            adds: BTreeMap::new(),
        };
        let number = |v: &ScriptValue| v.as_str().and_then(|s| s.parse::<i64>().ok());
        let adds_of = |record: &[ScriptValue]| -> BTreeMap<Vec<u8>, i64> {
            let pairs = record.get(3..).unwrap_or_default().chunks_exact(2);
            pairs
                .filter_map(|pair| Some((pair[0].as_bytes()?.to_vec(), number(&pair[1])?)))
                .collect()
        };
        let newest: Vec<&[ScriptValue]> = records
            .iter()
            .copied()
            .filter(|r| epoch_of(r).as_deref() == Some(&epoch))
            .collect();
        for record in &newest {
            seen.base = record.get(1).and_then(number).unwrap_or(0);
            seen.adds.extend(adds_of(record));
        }
        let agreed = newest.iter().filter(|r| adds_of(r) == seen.adds).count();
        Ok((seen, if all_in_sync { agreed } else { 0 }))
    }

    /// Every node's answer to a read (a majority at least), and the newest
    /// epoch any of them reports.
    async fn records(
        &self,
        redlock: &Redlock,
    ) -> Result<(quorum::Round<ScriptValue>, String), PoolError> {
        let keys = self.keys.clone();
        let round = quorum::round(
            SIZE.name(),
            redlock.nodes(),
            redlock.defaults().effective_node_timeout(),
            Decide::AllWithGrace,
            |_| true,
            |node| node.eval(&SIZE, keys.clone(), vec![b"read".to_vec()]),
        )
        .await;
        if round.answered() < redlock.quorum() {
            return Err(quorum::no_quorum(redlock, &round).into());
        }
        let newest = round
            .replies
            .iter()
            .filter_map(|r| match r {
                Reply::Answered(ScriptValue::Array(items)) => items
                    .first()
                    .and_then(ScriptValue::as_str)
                    .map(str::to_owned),
                _ => None,
            })
            .max()
            .unwrap_or_else(|| INITIAL_EPOCH.to_owned());
        Ok((round, newest))
    }
}

/// Runs `write` (a read, then a write on top of what it saw) again until it
/// succeeds or the acquire timeout ends: a newer set came between the read
/// and the write (stale), or too few nodes answered.
async fn until_written<T, F, Fut>(redlock: &Redlock, mut write: F) -> Result<T, PoolError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, PoolError>>,
{
    let policy = WaitPolicy::new(redlock.defaults(), Instant::now());
    retry(
        redlock,
        &policy,
        None,
        |_| write(),
        |_| Retry::After {
            pause: redlock.defaults().retry_pause(None),
            watch: None,
        },
    )
    .await
}

/// A new epoch newer than `seen`: the wall clock in ms, or one more than
/// `seen`'s when this clock is behind (15 digits, so strings order as
/// numbers), and a random tail that breaks ties.
fn epoch_after(seen: &str) -> String {
    let ms = quorate_redlock::raw::determinism::wall_clock().as_millis();
    let seen_ms = seen
        .split('-')
        .next()
        .and_then(|ms| ms.parse::<u128>().ok())
        .unwrap_or(0);
    let ms = ms.max(seen_ms + 1);
    let tail = quorate_redlock::raw::determinism::with_rng(|rng| rng.next_u64());
    format!("{ms:015}-{tail:016x}")
}
