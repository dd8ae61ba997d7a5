//! One allocation attempt across the quorum: per node one atomic script
//! takes up to k candidates of each requirement; a candidate counts as held
//! only when a majority granted it to this attempt. Extras are released, the
//! shortfall is retried for a few rounds, and on failure everything is
//! released (release-all-then-back-off: nobody sits on half of what two
//! clients both need).

use std::time::Duration;

use quorate_redlock::raw::quorum::{self, Decide, Reply};
use quorate_redlock::raw::{MemoryStore, NodeScript, ScriptValue, UndoGuard};
use quorate_redlock::{Error, Holder, Lease, LockOptions, NodeOutcome, Redlock, Token};
use rand::seq::SliceRandom;
use tokio::time::Instant;

use crate::error::PoolError;
use crate::requirement::{CandidateOrder, Requirement};
use crate::size::Size;

pub(crate) static TAKE: NodeScript =
    NodeScript::new("pool_take", include_str!("../scripts/take.lua"))
        .emulated(take_in_memory)
        .granting();

/// `take.lua` on a memory node (same keys, arguments and reply).
fn take_in_memory(
    store: &mut MemoryStore,
    keys: &[String],
    args: &[Vec<u8>],
) -> Result<ScriptValue, String> {
    let int = |i: usize| -> Result<u64, String> {
        args.get(i)
            .and_then(|a| std::str::from_utf8(a).ok()?.parse().ok())
            .ok_or_else(|| format!("argument {} is not a number", i + 1))
    };
    let token = args.first().ok_or("no token")?.as_slice();
    let ttl = Duration::from_millis(int(1)?);
    let groups = usize::try_from(int(2)?).map_err(|e| e.to_string())?;
    let limit_at = 3 + 2 * groups;
    let (keys, permits) = match (args.get(limit_at), keys) {
        (Some(word), [candidates @ .., size, adds]) if word.as_slice() == b"limit" => {
            let out_of_sync = store
                .restart_mark()
                .is_some_and(|mark| store.hget(size, b"synced") != Some(mark));
            let permits = match store.hget(size, b"base") {
                // this node's number may be one it forgot a change of
                _ if out_of_sync => -1,
                Some(base) => store
                    .hgetall(adds)
                    .iter()
                    .fold(number(base)?, |total, (_, d)| {
                        total + number(d).unwrap_or(0)
                    }),
                None => i64::try_from(int(limit_at + 1)?).map_err(|e| e.to_string())?,
            };
            (candidates, Some(permits))
        }
        _ => (keys, None),
    };
    let beyond = |i: usize| -> Result<bool, String> {
        Ok(match permits {
            Some(permits) => {
                i64::try_from(int(limit_at + 2 + i)?).map_err(|e| e.to_string())? >= permits
            }
            None => false,
        })
    };
    let mut status = vec![-2i64; keys.len()];
    let mut holders = vec![ScriptValue::Nil; keys.len()];
    let mut first = 0;
    for g in 0..groups {
        let count = usize::try_from(int(3 + 2 * g)?).map_err(|e| e.to_string())?;
        let need = usize::try_from(int(4 + 2 * g)?).map_err(|e| e.to_string())?;
        let group = first..(first + count).min(keys.len());
        let mut held = 0;
        for i in group.clone() {
            if beyond(i)? {
                status[i] = -4;
                if store.holds(&keys[i], token) {
                    store.del(&keys[i]);
                }
            } else if store.holds(&keys[i], token) {
                store.pexpire(&keys[i], ttl);
                status[i] = -1;
                held += 1;
            }
        }
        for i in group {
            if status[i] != -2 {
                continue;
            }
            if store.exists(&keys[i]) {
                let left = store.pttl(&keys[i]);
                status[i] = if left < 0 { -3 } else { left };
                holders[i] = store.holder_of(store.get(&keys[i]));
            } else if held < need {
                store.set(&keys[i], token, Some(ttl));
                status[i] = -1;
                held += 1;
            }
        }
        first += count;
    }
    let mut reply: Vec<ScriptValue> = status.into_iter().map(ScriptValue::Int).collect();
    reply.extend(holders);
    Ok(ScriptValue::Array(reply))
}

fn number(bytes: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "not a number".to_owned())
}

/// One requirement as sent: keys in the order to try, and where each came
/// from in the caller's candidate list.
#[derive(Debug)]
pub(crate) struct Group {
    pub keys: Vec<String>,
    pub positions: Vec<usize>,
    pub need: usize,
    /// A resizable semaphore's slots: candidate `p` is slot `p`, refused by
    /// a node at or above its number of permits (take.lua's limit); the
    /// record is read again before every attempt after the first, which
    /// writes it back to nodes out of sync.
    pub limit: Option<Size>,
}

/// Groups for one attempt, each in its requirement's candidate order.
pub(crate) fn groups<T>(requirements: &[Requirement<T>], limit: Option<&Size>) -> Vec<Group> {
    requirements
        .iter()
        .map(|r| {
            let mut positions: Vec<usize> = (0..r.keys.len()).collect();
            if r.order == CandidateOrder::Random {
                quorate_redlock::raw::determinism::with_rng(|rng| positions.shuffle(rng));
            }
            Group {
                keys: positions.iter().map(|&p| r.keys[p].clone()).collect(),
                positions,
                need: r.need,
                limit: limit.cloned(),
            }
        })
        .collect()
}

/// A candidate held by a majority: its position in the caller's list, key,
/// and lease (timed from the round in which a majority first granted it).
#[derive(Debug)]
pub(crate) struct Held {
    pub position: usize,
    pub key: String,
    pub lease: Lease,
}

/// What a successful attempt holds, per requirement, in the order taken.
#[derive(Debug)]
pub(crate) struct Allocation {
    pub held: Vec<Vec<Held>>,
}

/// Per key: `-1` ours, `-2` not tried (free), `-3` taken without expiry,
/// `>= 0` taken with that many ms left.
fn statuses(value: &ScriptValue, n: usize) -> Option<Vec<i64>> {
    let array = value.as_array().filter(|a| a.len() == 2 * n)?;
    array[..n].iter().map(ScriptValue::as_int).collect()
}

/// Who holds key `i` of `n`, when another client does.
fn holder(value: &ScriptValue, n: usize, i: usize) -> Option<Holder> {
    Holder::from_script(value.as_array()?.get(n + i)?)
}

/// How an attempt runs its rounds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rounds {
    /// Rounds per attempt: the first, then top-ups of a shortfall.
    pub max: usize,
    /// Wait for every node's answer, with a grace once a majority answered
    /// (pools: each candidate needs a majority of its own, so every answer
    /// counts, but a stalled node must not cost every round the node
    /// timeout), or decide once a majority answered (rate limits: a grant
    /// must be seen within the node timeout of its round's start).
    pub wait_for_all: bool,
}

/// One attempt of at most `rounds.max` rounds with one fresh token.
///
/// # Cancel safety
/// Dropping the future spawns the undo of every key of the request.
pub(crate) async fn attempt(
    redlock: &Redlock,
    groups: &[Group],
    options: &LockOptions,
    rounds: Rounds,
) -> Result<(Allocation, Token), PoolError> {
    let token = redlock.fresh_token();
    let hex = token.to_hex();
    let ttl = options.get_ttl();
    let timeout = options.effective_node_timeout();
    let quorum = redlock.quorum();
    let keys: Vec<String> = groups.iter().flat_map(|g| g.keys.clone()).collect();
    let mut undo = UndoGuard::armed(redlock, keys.clone(), &hex, timeout);
    let mut args: Vec<Vec<u8>> = vec![
        hex.clone().into_bytes(),
        // whole ms, rounded up as the mutex does: never shorter than the lease
        ttl.as_nanos().div_ceil(1_000_000).to_string().into_bytes(),
        groups.len().to_string().into_bytes(),
    ];
    for g in groups {
        args.push(g.keys.len().to_string().into_bytes());
        args.push(g.need.to_string().into_bytes());
    }
    let mut script_keys = keys.clone();
    if let Some(limit) = groups.iter().find_map(|g| g.limit.as_ref()) {
        args.push(b"limit".to_vec());
        args.push(limit.initial().to_string().into_bytes());
        for g in groups {
            for &p in &g.positions {
                let slot = if g.limit.is_some() { p as i64 } else { -1 };
                args.push(slot.to_string().into_bytes());
            }
        }
        script_keys.extend(limit.keys().iter().cloned());
    }

    // kept[i]: the lease of key i once a majority granted it.
    let mut kept: Vec<Option<Lease>> = vec![None; keys.len()];
    let mut last_error = None;
    let decide = if rounds.wait_for_all {
        Decide::AllWithGrace
    } else {
        Decide::Majority(quorum)
    };
    for _ in 0..rounds.max.max(1) {
        let started = Instant::now();
        let n = keys.len();
        let round = quorum::round(
            TAKE.name(),
            redlock.nodes(),
            timeout,
            decide,
            |v| statuses(v, n).is_some(),
            |node| node.eval(&TAKE, script_keys.clone(), args.clone()),
        )
        .await;
        let answers: Vec<Option<Vec<i64>>> = round
            .replies
            .iter()
            .map(|r| match r {
                Reply::Answered(v) => statuses(v, n),
                _ => None,
            })
            .collect();
        let outcomes = round.outcomes(redlock.nodes(), |v| describe(v, groups));
        if round.successes < quorum {
            undo.send_and_wait().await;
            return Err(PoolError::Lock(Error::NoQuorum {
                granted: round.successes,
                nodes: redlock.nodes().len(),
                quorum,
                outcomes,
            }));
        }

        let grants: Vec<usize> = (0..n)
            .map(|i| answers.iter().flatten().filter(|s| s[i] == -1).count())
            .collect();
        let mut progress = false;
        let mut offset = 0;
        for g in groups {
            let mut have = (offset..offset + g.keys.len())
                .filter(|&i| kept[i].is_some())
                .count();
            for i in offset..offset + g.keys.len() {
                if have < g.need && kept[i].is_none() && grants[i] >= quorum {
                    kept[i] = Some(Lease::new(token, ttl, started, options.get_drift_factor()));
                    have += 1;
                    progress = true;
                }
            }
            offset += g.keys.len();
        }
        // What some node granted but we do not keep goes back at once.
        let extras: Vec<String> = (0..n)
            .filter(|&i| grants[i] > 0 && kept[i].is_none())
            .map(|i| keys[i].clone())
            .collect();

        match shortfall(groups, &kept) {
            None => {
                if !extras.is_empty() {
                    // no later round uses this token: sent is enough
                    undo.give_back(&extras).await;
                }
                if kept.iter().flatten().all(Lease::is_valid) {
                    if round.replies.iter().any(|r| matches!(r, Reply::Pending)) {
                        // Nodes that answered after the decision may hold
                        // other candidates for us: give back all we do not keep.
                        let unkept: Vec<String> = (0..n)
                            .filter(|&i| kept[i].is_none())
                            .map(|i| keys[i].clone())
                            .collect();
                        undo.give_back(&unkept).await;
                    }
                    undo.disarm();
                    return Ok((allocation(groups, &keys, kept), token));
                }
                undo.send_and_wait().await;
                return Err(PoolError::Lock(Error::Expired));
            }
            Some((requirement, held)) => {
                let group = &groups[requirement];
                last_error = Some(PoolError::Unavailable {
                    requirement,
                    need: group.need,
                    held,
                    retry_after: retry_after(groups, requirement, &kept, &answers, quorum),
                    outcomes,
                });
                // The next round reuses the token: only once every give-back
                // is known to have landed (or failed), never behind that
                // round's take; otherwise the attempt ends (the next one has
                // a fresh token).
                if !extras.is_empty() && !undo.give_back_confirmed(&extras).await {
                    break;
                }
            }
        }
        if !progress {
            break;
        }
    }
    undo.send_and_wait().await;
    Err(last_error.unwrap_or(PoolError::Lock(Error::Expired)))
}

/// The first requirement short of its need, and how many it holds.
fn shortfall(groups: &[Group], kept: &[Option<Lease>]) -> Option<(usize, usize)> {
    let mut offset = 0;
    for (r, g) in groups.iter().enumerate() {
        let have = kept[offset..offset + g.keys.len()]
            .iter()
            .filter(|k| k.is_some())
            .count();
        if have < g.need {
            return Some((r, have));
        }
        offset += g.keys.len();
    }
    None
}

fn allocation(groups: &[Group], keys: &[String], kept: Vec<Option<Lease>>) -> Allocation {
    let mut held = Vec::with_capacity(groups.len());
    let mut offset = 0;
    for g in groups {
        let mut mine = Vec::with_capacity(g.need);
        for j in 0..g.keys.len() {
            if let Some(lease) = kept[offset + j] {
                mine.push(Held {
                    position: g.positions[j],
                    key: keys[offset + j].clone(),
                    lease,
                });
            }
        }
        held.push(mine);
        offset += g.keys.len();
    }
    Allocation { held }
}

/// When enough of `requirement`'s missing candidates are free on a majority,
/// from the holders' remaining ttls. A node that did not answer, did not
/// try the candidate, or granted it to this caller (who gave it back, for
/// want of a majority) says nothing about the holder elsewhere: it counts as held
/// as long as the longest ttl another node reported for that candidate
/// (free only when no node reported it held). `None` when some needed
/// candidate is held without expiry.
fn retry_after(
    groups: &[Group],
    requirement: usize,
    kept: &[Option<Lease>],
    answers: &[Option<Vec<i64>>],
    quorum: usize,
) -> Option<Duration> {
    let offset: usize = groups[..requirement].iter().map(|g| g.keys.len()).sum();
    let group = &groups[requirement];
    let have = (offset..offset + group.keys.len())
        .filter(|&i| kept[i].is_some())
        .count();
    // Per missing candidate: the time until a majority of nodes has it free
    // (u64::MAX: never, by itself).
    let mut free_at: Vec<u64> = (offset..offset + group.keys.len())
        .filter(|&i| kept[i].is_none())
        .map(|i| {
            // per node: how long it holds the candidate, `None` when its
            // answer says nothing of a holder elsewhere (unanswered, granted
            // to us and given back, or not tried: the need was met)
            let held: Vec<Option<u64>> = answers
                .iter()
                .map(|a| match a.as_ref().map(|s| s[i]) {
                    Some(-3) => Some(u64::MAX),
                    Some(ms) if ms >= 0 => Some(ms.unsigned_abs()),
                    None | Some(-1) | Some(-2) => None,
                    // beyond a semaphore's size there (a resize frees it)
                    _ => Some(0),
                })
                .collect();
            let longest_held = held.iter().flatten().copied().max().unwrap_or(0);
            let mut per_node: Vec<u64> = held
                .into_iter()
                .map(|h| h.unwrap_or(longest_held))
                .collect();
            per_node.sort_unstable();
            per_node[quorum.min(per_node.len()) - 1]
        })
        .collect();
    free_at.sort_unstable();
    let wait = *free_at.get(group.need.saturating_sub(have + 1))?;
    (wait != u64::MAX).then(|| Duration::from_millis(wait))
}

/// A node's answer as an outcome: granted when it gave every requirement its
/// need, else the first candidate it found taken.
fn describe(value: &ScriptValue, groups: &[Group]) -> NodeOutcome {
    let n: usize = groups.iter().map(|g| g.keys.len()).sum();
    let Some(statuses) = statuses(value, n) else {
        return NodeOutcome::Error(quorate_redlock::NodeError::new(format!(
            "unexpected reply {value:?}"
        )));
    };
    let mut offset = 0;
    for g in groups {
        let part = &statuses[offset..offset + g.keys.len()];
        if part.iter().filter(|&&s| s == -1).count() < g.need {
            if let Some(j) = part.iter().position(|&s| s >= 0 || s == -3) {
                return NodeOutcome::Taken {
                    resource: g.keys[j].clone(),
                    remaining: (part[j] >= 0).then(|| Duration::from_millis(part[j] as u64)),
                    holder: holder(value, n, offset + j),
                };
            }
        }
        offset += g.keys.len();
    }
    NodeOutcome::Granted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(keys: &[&str], need: usize) -> Group {
        Group {
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            positions: (0..keys.len()).collect(),
            need,
            limit: None,
        }
    }

    #[test]
    fn retry_after_is_when_a_majority_frees_enough_candidates() {
        let groups = [group(&["a", "b", "c"], 2)];
        let kept = vec![None, None, None];
        // 3 nodes, quorum 2: a frees on a majority after 30 ms, b after 50, c never.
        let answers = vec![
            Some(vec![10, 50, -3]),
            Some(vec![30, 60, -3]),
            Some(vec![40, 20, -3]),
        ];
        assert_eq!(
            retry_after(&groups, 0, &kept, &answers, 2),
            Some(Duration::from_millis(50))
        );
        let one = [group(&["a", "b", "c"], 1)];
        assert_eq!(
            retry_after(&one, 0, &kept, &answers, 2),
            Some(Duration::from_millis(30))
        );
        let all = [group(&["a", "b", "c"], 3)];
        assert_eq!(retry_after(&all, 0, &kept, &answers, 2), None);
    }

    #[test]
    fn unanswered_nodes_and_grants_given_back_do_not_count_as_free() {
        let one = [group(&["a"], 1)];
        let kept = vec![None];
        // 3 nodes, quorum 2: one holds `a` for 400 ms, one granted it to
        // the caller (given back: no majority), one did not answer.
        let answers = vec![Some(vec![400]), Some(vec![-1]), None];
        assert_eq!(
            retry_after(&one, 0, &kept, &answers, 2),
            Some(Duration::from_millis(400))
        );
        // no node reports it held (not tried where the need was met): now
        let answers = vec![Some(vec![-2]), Some(vec![-1]), None];
        assert_eq!(
            retry_after(&one, 0, &kept, &answers, 2),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn a_node_that_gave_less_than_the_need_names_what_it_found_taken() {
        let groups = [group(&["a", "b"], 2)];
        let holder = "00000000000000bb worker-2 (host h, pid 2, id x)";
        let reply = ScriptValue::Array(vec![
            ScriptValue::Int(-1),
            ScriptValue::Int(250),
            ScriptValue::Nil,
            ScriptValue::Bytes(holder.into()),
        ]);
        assert_eq!(
            describe(&reply, &groups),
            NodeOutcome::Taken {
                resource: "b".into(),
                remaining: Some(Duration::from_millis(250)),
                holder: Some(Holder {
                    client: "00000000000000bb".into(),
                    owner: Some("worker-2 (host h, pid 2, id x)".into())
                }),
            }
        );
        let ok = ScriptValue::Array(vec![
            ScriptValue::Int(-1),
            ScriptValue::Int(-1),
            ScriptValue::Nil,
            ScriptValue::Nil,
        ]);
        assert_eq!(describe(&ok, &groups), NodeOutcome::Granted);
    }
}
