//! One acquisition round, and the undo that follows a failed or abandoned one.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::backend::{AcquireReply, Node, QueueEntry};
use crate::error::{Error, NodeOutcome};
use crate::lease::{Lease, Token};
use crate::mutex::Inner;
use crate::options::LockOptions;
use crate::quorum::{self, Decide, Reply};

/// A granted round: the lease, and the ticket of the first waiter still
/// queued on the granting nodes (the smallest they reported).
pub(crate) struct Granted {
    pub lease: Lease,
    pub next_waiter: Option<u64>,
}

/// A failed round: the error, and whether a node put us first in its
/// queue (only the head waits for the holder's expiry; see `queue.rs`).
pub(crate) struct Refused {
    pub error: Error,
    pub at_head: bool,
}

impl From<Error> for Refused {
    fn from(error: Error) -> Self {
        Refused {
            error,
            at_head: false,
        }
    }
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
    inner: &Arc<Inner>,
    keys: &Arc<[String]>,
    token: Token,
    options: &LockOptions,
    queue: Option<&QueueEntry>,
) -> Result<Granted, Refused> {
    let ttl = options.get_ttl();
    let hex = token.to_hex();
    let mut undo = Undo::armed(inner, keys, &hex);
    let started = Instant::now();
    crate::metrics::acquire_round(inner.primitive);
    let fenced = options.get_fencing();
    let round = quorum::round(
        "acquire",
        &inner.nodes,
        options.effective_node_timeout(),
        Decide::Majority(inner.quorum),
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
                    undo.run(options).await;
                    return Err(error.into());
                }
            }
        }
        // Checked after the fence write-back: a holder paused in between
        // gets no lease.
        if lease.is_valid() {
            undo.disarm();
            let next_waiter = round
                .replies
                .iter()
                .filter_map(|r| match r {
                    Reply::Answered(AcquireReply::Granted { next, .. }) => *next,
                    _ => None,
                })
                .min();
            return Ok(Granted { lease, next_waiter });
        }
        undo.run(options).await;
        return Err(Error::Expired.into());
    }

    let refused: Vec<bool> = round
        .replies
        .iter()
        .map(|r| matches!(r, Reply::Answered(AcquireReply::Taken { .. })))
        .collect();
    undo.run_except(options, &refused).await;
    let outcomes = round.outcomes(&inner.nodes, |reply| match reply {
        AcquireReply::Granted { .. } => NodeOutcome::Granted,
        AcquireReply::Taken {
            index, remaining, ..
        } => NodeOutcome::Taken {
            resource: keys.get(*index).cloned().unwrap_or_default(),
            remaining: *remaining,
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
    Err(Refused { error, at_head })
}

/// The fence: the largest counter among the granting nodes, written back
/// to a majority (counter = max(counter, fence)) before the lease is handed
/// out, so that every later majority meets it and goes higher.
async fn raise_fence(
    inner: &Arc<Inner>,
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

/// Compare-and-delete of a round's keys on every node, run when the round
/// fails, or spawned from `Drop` when the round is abandoned mid-flight.
struct Undo {
    inner: Arc<Inner>,
    keys: Arc<[String]>,
    token: String,
    armed: bool,
}

impl Undo {
    fn armed(inner: &Arc<Inner>, keys: &Arc<[String]>, token: &str) -> Self {
        Undo {
            inner: Arc::clone(inner),
            keys: Arc::clone(keys),
            token: token.to_owned(),
            armed: true,
        }
    }

    fn disarm(&mut self) {
        self.armed = false;
    }

    /// Sends the undo to every node. Waits only until every request is on
    /// its connection, which orders it before our next round there; the
    /// answers are collected in the background. Stays armed until sent, so
    /// a cancellation in here still spawns it.
    async fn run(&mut self, options: &LockOptions) {
        self.run_except(options, &[]).await;
    }

    /// The undo, skipping the nodes that answered "taken": they set nothing.
    /// (Under contention most losers are refused everywhere, so most undos
    /// then send nothing at all.)
    async fn run_except(&mut self, options: &LockOptions, skip: &[bool]) {
        let nodes: Vec<Arc<dyn Node>> = self
            .inner
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !skip.get(*i).copied().unwrap_or(false))
            .map(|(_, node)| Arc::clone(node))
            .collect();
        if !nodes.is_empty() {
            let timeout = options.effective_node_timeout();
            silent_release(&nodes, &self.keys, &self.token, timeout).await;
        }
        self.armed = false;
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let inner = Arc::clone(&self.inner);
        let keys = Arc::clone(&self.keys);
        let token = std::mem::take(&mut self.token);
        let timeout = inner.defaults.effective_node_timeout();
        // Outside a runtime nothing can be sent; the keys expire with their ttl.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                silent_release(&inner.nodes, &keys, &token, timeout).await;
            });
        }
    }
}

/// Compare-and-delete without announcement (nobody held the lock), returning
/// once every request is handed to its connection. An undo may still reach
/// a server late (fred re-sends a script after `NOSCRIPT`), which is why
/// every round uses a fresh token: a late undo cannot touch a later grant.
pub(crate) async fn silent_release(
    nodes: &[Arc<dyn Node>],
    keys: &[String],
    token: &str,
    timeout: Duration,
) {
    quorum::round(
        "release",
        nodes,
        timeout,
        Decide::Sent,
        |_| true,
        |node| node.release(keys, token, None),
    )
    .await;
}
