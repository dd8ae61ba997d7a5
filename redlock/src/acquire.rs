//! One acquisition round of the mutex; a failed or abandoned one is undone
//! by the shared [`UndoGuard`].
//!
//! See ARCHITECTURE.md, "Acquire and undo", for how this fits the whole.

use std::sync::Arc;

use tokio::time::Instant;

use crate::backend::{AcquireReply, QueueEntry};
use crate::client::Redlock;
use crate::client_state::ClientState;
use crate::error::{Error, NodeOutcome};
use crate::lease::{Lease, Token};
use crate::options::LockOptions;
use crate::queue::NextWaiters;
use crate::quorum::{self, Decide, Reply};
use crate::undo::UndoGuard;

/// A granted round: the lease, and the first waiters still queued on the
/// granting nodes.
pub(crate) struct Granted {
    pub lease: Lease,
    pub next_waiter: NextWaiters,
    /// Per node: whether it granted (and so removed a queued entry).
    pub granting: Vec<bool>,
}

/// A failed round: the error, and whether a node put us first in its
/// queue (only the head waits for the holder's expiry; see `queue.rs`).
pub(crate) struct Refused {
    pub error: Error,
    pub at_head: bool,
    /// When the round was sent.
    pub started: Instant,
    /// Per node, for a queued round it refused: the deadline our entry got
    /// there (a grant naming it came after this round reached the node).
    pub deadlines: Vec<Option<u64>>,
    /// Per node: whether it granted (this round is being undone there).
    pub granted_on: Vec<bool>,
}

impl Refused {
    /// A round a majority granted, undone (`error` says why).
    fn undone(error: Error, started: Instant, round: &quorum::Round<AcquireReply>) -> Self {
        Refused {
            error,
            at_head: false,
            started,
            deadlines: Vec::new(),
            granted_on: granted_on(round),
        }
    }
}

/// Per node: whether it granted the round.
fn granted_on(round: &quorum::Round<AcquireReply>) -> Vec<bool> {
    round
        .replies
        .iter()
        .map(|r| matches!(r, Reply::Answered(AcquireReply::Granted { .. })))
        .collect()
}

/// Sends one acquire round to every node (as the queued waiter `queue`,
/// when given). On success the lease is timed from before the first
/// request; a grant with no validity left, or a round without a majority,
/// is undone on every node that may hold it.
///
/// # Cancel safety
/// Dropping the future spawns the undo, so an abandoned round leaves no key
/// behind longer than one round trip (or the ttl, on an unreachable node).
pub(crate) async fn attempt(
    redlock: &Redlock,
    keys: &Arc<[String]>,
    token: Token,
    options: &LockOptions,
    queue: Option<&QueueEntry>,
) -> Result<Granted, Refused> {
    let ttl = options.get_ttl();
    let hex = token.to_hex();
    let inner = &redlock.inner;
    let node_timeout = options.effective_node_timeout();
    let mut undo = UndoGuard::armed(redlock, Arc::clone(keys), &hex, node_timeout);
    let started = Instant::now();
    crate::metrics::acquire_round(inner.primitive);
    let fenced = options.get_fencing();
    let round = quorum::round(
        "acquire",
        &inner.nodes,
        options.effective_node_timeout(),
        match queue {
            Some(_) => Decide::Queued(inner.quorum),
            None => Decide::Majority(inner.quorum),
        },
        |reply| matches!(reply, AcquireReply::Granted { .. }),
        |node| node.acquire(keys, &hex, ttl, fenced, queue),
    )
    .await;

    if round.successes >= inner.quorum {
        let mut lease = Lease::new(token, ttl, started, options.get_drift_factor());
        if fenced {
            match raise_fence(inner, keys, &round, options).await {
                Ok(fence) => lease = lease.with_fence(fence),
                Err(error) => {
                    undo.send().await;
                    return Err(Refused::undone(error, started, &round));
                }
            }
        }
        // Checked after the fence write-back: a holder paused in between
        // gets no lease.
        if lease.is_valid() {
            undo.disarm();
            let next = |pick: fn(&AcquireReply) -> Option<u64>| {
                round
                    .replies
                    .iter()
                    .filter_map(|r| match r {
                        Reply::Answered(reply) => pick(reply),
                        _ => None,
                    })
                    .min()
            };
            let next_waiter = NextWaiters {
                any: next(|r| match r {
                    AcquireReply::Granted { next, .. } => *next,
                    AcquireReply::Taken { .. } => None,
                }),
                fair: next(|r| match r {
                    AcquireReply::Granted { next_fair, .. } => *next_fair,
                    AcquireReply::Taken { .. } => None,
                }),
            };
            return Ok(Granted {
                lease,
                next_waiter,
                granting: granted_on(&round),
            });
        }
        undo.send().await;
        return Err(Refused::undone(Error::Expired, started, &round));
    }

    let refused: Vec<bool> = round
        .replies
        .iter()
        .map(|r| matches!(r, Reply::Answered(AcquireReply::Taken { .. })))
        .collect();
    undo.send_except(&refused).await;
    let outcomes = round.outcomes(&inner.nodes, |reply| match reply {
        AcquireReply::Granted { .. } => NodeOutcome::Granted,
        AcquireReply::Taken {
            index,
            remaining,
            holder,
            ..
        } => NodeOutcome::Taken {
            resource: keys.get(*index).cloned().unwrap_or_default(),
            remaining: *remaining,
            holder: holder.clone(),
        },
    });
    let first_taken = round.replies.iter().find_map(|r| match r {
        Reply::Answered(AcquireReply::Taken { index, .. }) => Some(*index),
        _ => None,
    });
    let failed = round
        .replies
        .iter()
        .filter(|r| matches!(r, Reply::Failed(_) | Reply::TimedOut))
        .count();
    let at_head = round.replies.iter().any(|r| {
        matches!(
            r,
            Reply::Answered(AcquireReply::Taken { rank: Some(0), .. })
        )
    });
    let n = inner.nodes.len();
    // Failed nodes alone sink the round: the nodes are the problem. Otherwise
    // a holder is what kept us from a majority.
    let error = if let (Some(index), true) = (first_taken, failed <= n - inner.quorum) {
        let resource = keys.get(index).cloned().unwrap_or_default();
        Error::Taken { resource, outcomes }
    } else {
        Error::NoQuorum {
            granted: round.successes,
            nodes: n,
            quorum: inner.quorum,
            outcomes,
        }
    };
    let deadlines = round
        .replies
        .iter()
        .map(|r| match r {
            Reply::Answered(AcquireReply::Taken { deadline, .. }) => *deadline,
            _ => None,
        })
        .collect();
    Err(Refused {
        error,
        at_head,
        started,
        deadlines,
        granted_on: granted_on(&round),
    })
}

/// The fence: the largest counter among the granting nodes, written back
/// to a majority (counter = max(counter, fence)) before the lease is handed
/// out, so that every later majority meets it and goes higher.
async fn raise_fence(
    inner: &Arc<ClientState>,
    keys: &Arc<[String]>,
    round: &quorum::Round<AcquireReply>,
    options: &LockOptions,
) -> Result<u64, Error> {
    let fence = round
        .replies
        .iter()
        .filter_map(|r| match r {
            Reply::Answered(AcquireReply::Granted { fence, .. }) => *fence,
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let raised = quorum::round(
        "raise_fence",
        &inner.nodes,
        options.effective_node_timeout(),
        Decide::Majority(inner.quorum),
        |_| true,
        |node| node.raise_fence(keys, fence),
    )
    .await;
    if raised.successes >= inner.quorum {
        return Ok(fence);
    }
    Err(Error::NoQuorum {
        granted: raised.successes,
        nodes: inner.nodes.len(),
        quorum: inner.quorum,
        outcomes: raised.outcomes(&inner.nodes, |_| NodeOutcome::Granted),
    })
}
