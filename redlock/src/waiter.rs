//! One lock call that may wait, as states and transitions (each transition
//! one method):
//!
//! 1. **Lingering** ([`Waiter::lingering`]): a guard of this process
//!    dropped a moment ago still holds the keys; take it, no round.
//! 2. **Local turn** ([`Waiter::start`]): wait behind this client's earlier
//!    calls for the same keys (bounded-round calls skip it), then register
//!    for a local hand-off, and join the servers' queues at once when the
//!    call is fair or the keys were recently found taken.
//! 3. **Round** ([`Waiter::round`]): one acquire round with a fresh token,
//!    unless a guard of this process holds the keys (then wait for its
//!    hand-off or its end). Granted: done.
//! 4. **Refused** ([`Waiter::refused`]): give up (attempts spent, or the
//!    deadline), or join the servers' queues and go straight back to 3, or
//!    pause.
//! 5. **Pause** ([`Waiter::pause`]): until the turn comes (woken by a
//!    majority of nodes), the pause ends, or a lock is handed over; then 3,
//!    unless the wake-ups were grants ([`granted_by_queue`]): a
//!    majority of nodes gave the key to this waiter after its latest round
//!    reached them, so it holds the lock without another round.
//!
//! Every state can also end with a hand-off from a guard of this process.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use crate::acquire::{self, Granted};
use crate::announcements::Watch;
use crate::client::Redlock;
use crate::error::Error;
use crate::guard::LockGuard;
use crate::handoff::HandoffSlot;
use crate::lease::{Lease, Token};
use crate::local_queue::LocalTurn;
use crate::options::LockOptions;
use crate::pause::queued_pause;
use crate::queue::{NextWaiters, QueuePlace};
use crate::wait::WaitPolicy;

/// What a refusal leads to.
enum AfterRefusal {
    /// Another round at once (the call just joined the queues).
    RoundNow,
    /// Pause first.
    Pause(Error),
}

/// How a pause ended.
enum Resumed {
    /// Time for another round.
    Round,
    /// A guard of this process handed its lock over.
    HandedOver(LockGuard),
    /// The nodes granted the key to this waiter.
    Granted(Granted),
}

/// What the latest refused round tells about later grants.
struct LastRefusal {
    started: Instant,
    /// Per node: the deadline our entry got there.
    deadlines: Vec<Option<u64>>,
}

/// The state of one waiting lock call.
pub(crate) struct Waiter<'a> {
    redlock: &'a Redlock,
    keys: Arc<[String]>,
    options: &'a LockOptions,
    policy: WaitPolicy,
    deadline: Option<Instant>,
    span: tracing::Span,
    /// Our turn among this client's calls for the keys; dropped once
    /// granted (the next local waiter becomes head).
    local_turn: Option<LocalTurn>,
    /// Registered for a lock a guard of this process hands over.
    handoff: Option<HandoffSlot<LockGuard>>,
    /// The call's queue ticket: its start, on the servers' clock.
    ticket: u64,
    /// Our place in the servers' queues, once we queue.
    place: Option<QueuePlace>,
    /// Listening for our turn (wake-ups from the nodes).
    turn: Option<Watch>,
    /// Calls bounded in rounds (try_lock, spinlocks) poll at the retry
    /// delay instead of queueing: a place in line is no use to them.
    queues: bool,
    attempts: u32,
    /// Whether the last refusal put us first in a node's queue (only the
    /// head waits for the holder's expiry).
    at_head: bool,
    /// The token a release grants the key to us with (queue.lua), once we
    /// queue.
    grant: Option<Token>,
    /// The latest refused round, while no later one was sent.
    last_refusal: Option<LastRefusal>,
    /// Per node: a round of this call was granted there (and undone), so a
    /// grant that woke us before it may be gone: grants from that node are
    /// not counted.
    took_over: Vec<bool>,
}

impl<'a> Waiter<'a> {
    /// State 1: the lock of a guard of this process dropped a moment ago.
    pub(crate) fn lingering(
        redlock: &Redlock,
        keys: &[String],
        options: &LockOptions,
        span: &tracing::Span,
    ) -> Option<LockGuard> {
        if !options.get_local_handoff() || options.get_fair() {
            return None;
        }
        let min_remaining = options.get_ttl() / 2;
        let guard = redlock.handoffs.take_lingering(keys, None, min_remaining)?;
        Some(handed_over(span, guard, options))
    }

    /// State 2: this client's local queue, the hand-off registration and,
    /// for a fair call or keys recently found taken, the servers' queues.
    ///
    /// Unlike the primitives' driver, a mutex call that runs out of time in
    /// the local queue returns `Taken` without a round: its queue's head is
    /// contending on the servers right now, so the answer is known.
    pub(crate) async fn start(
        redlock: &'a Redlock,
        keys: Arc<[String]>,
        options: &'a LockOptions,
        policy: WaitPolicy,
        span: tracing::Span,
    ) -> Result<Waiter<'a>, Error> {
        let inner = &redlock.inner;
        let deadline = policy.deadline();
        // Bounded-round calls skip the local queue: waiting in it is not a
        // round.
        let local_turn = match (policy.queues_locally(), deadline) {
            (false, _) => None,
            (true, None) => Some(inner.local.turn(&keys).await),
            (true, Some(deadline)) => {
                match tokio::time::timeout_at(deadline, inner.local.turn(&keys)).await {
                    Ok(turn) => Some(turn),
                    Err(_) => {
                        return Err(Error::Taken {
                            resource: keys[0].clone(),
                            outcomes: crate::error::Outcomes::default(),
                        })
                    }
                }
            }
        };
        let ticket = inner.tickets.ticket();
        let handoff = local_turn
            .as_ref()
            .filter(|_| options.get_local_handoff())
            .map(|_| {
                let min_remaining = options.get_ttl() / 2;
                redlock
                    .handoffs
                    .wait(&keys, min_remaining, ticket, options.get_fair())
            });
        let queues = policy.queues_locally();
        let mut waiter = Waiter {
            redlock,
            keys,
            options,
            policy,
            deadline,
            span,
            local_turn,
            handoff,
            ticket,
            place: None,
            turn: None,
            queues,
            attempts: 0,
            at_head: false,
            grant: None,
            last_refusal: None,
            took_over: vec![false; inner.nodes.len()],
        };
        let contended = inner.tickets.recently_contended(&waiter.keys);
        if queues && (options.get_fair() || contended) {
            // fair: even the first round takes its place in the queue; so
            // does a call for keys this client recently found taken
            waiter.join_queue().await;
        }
        Ok(waiter)
    }

    /// Listen for our turn, then take a place in the servers' queues (the
    /// next round joins them): a release between the two is not missed.
    async fn join_queue(&mut self) {
        let inner = &self.redlock.inner;
        let node_timeout = self.options.effective_node_timeout();
        self.turn = Some(inner.notifier.await_turn(&self.keys, node_timeout).await);
        let grant = self.redlock.fresh_token();
        self.grant = Some(grant);
        let entry = inner.tickets.entry(
            self.ticket,
            self.options.get_waiter_ttl(),
            self.options.get_fair(),
            grant,
            self.options.get_ttl(),
        );
        self.place = Some(QueuePlace::new(
            entry,
            &inner.nodes,
            &self.keys,
            node_timeout,
            &inner.background,
        ));
    }

    /// States 3 to 5 until granted, handed a lock, or given up.
    pub(crate) async fn run(mut self) -> Result<LockGuard, Error> {
        loop {
            let refused = match self.round().await {
                Ok(Ok(granted)) => return Ok(self.granted(granted)),
                Ok(Err(refused)) => refused,
                Err(guard) => return Ok(handed_over(&self.span, guard, self.options)),
            };
            match self.refused(refused).await? {
                AfterRefusal::RoundNow => continue,
                AfterRefusal::Pause(error) => match self.pause(error).await? {
                    Resumed::Round => {}
                    Resumed::HandedOver(guard) => {
                        return Ok(handed_over(&self.span, guard, self.options))
                    }
                    Resumed::Granted(granted) => return Ok(self.granted(granted)),
                },
            }
        }
    }

    /// State 3: one round (or, while a guard of this process holds the
    /// keys, its hand-off). `Err` carries a handed-over lock.
    async fn round(&mut self) -> Result<Result<Granted, acquire::Refused>, LockGuard> {
        self.attempts = self.attempts.saturating_add(1);
        self.span.record("attempt", self.attempts);
        if let Some(turn) = self.turn.as_mut() {
            turn.mark_seen();
        }
        if let Some(slot) = self.handoff.as_mut() {
            // Held by a guard of this process: no round can win; wait for
            // the hand-off, or for that guard to end.
            if let Some(guard) = slot.while_held_here(self.deadline).await {
                return Err(guard);
            }
        }
        // A fresh token per round: whatever a failed round left behind (or
        // its undo, arriving late) can never be mistaken for this one.
        let token = self.redlock.fresh_token();
        // grants that answer an earlier round are not ours to count
        self.last_refusal = None;
        if let Some(place) = self.place.as_mut() {
            // cancelled from here on, the call still leaves the queues
            place.sent();
        }
        let entry = self.place.as_ref().map(|p| &p.entry);
        let attempt = acquire::attempt(self.redlock, &self.keys, token, self.options, entry)
            .instrument(self.span.clone());
        unless_handed_over(&mut self.handoff, attempt).await
    }

    /// The end of state 3: the guard; the next local waiter becomes head.
    fn granted(mut self, granted: Granted) -> LockGuard {
        let lease = granted.lease;
        tracing::debug!(parent: &self.span, remaining_ms = lease.remaining().as_millis() as u64, "granted");
        if let Some(place) = self.place.as_mut() {
            place.granted(&granted.granting);
        }
        // the next local waiter becomes head and contends
        drop(self.handoff.take());
        drop(self.local_turn.take());
        LockGuard::new(
            Arc::clone(&self.redlock.inner),
            Arc::clone(&self.redlock.handoffs),
            self.keys.clone(),
            lease,
            self.options,
            granted.next_waiter,
        )
    }

    /// State 4: what a refused round leads to.
    async fn refused(&mut self, refused: acquire::Refused) -> Result<AfterRefusal, Error> {
        for (took, granted) in self.took_over.iter_mut().zip(&refused.granted_on) {
            *took |= *granted;
        }
        if self.place.is_some() {
            self.last_refusal = Some(LastRefusal {
                started: refused.started,
                deadlines: refused.deadlines,
            });
        }
        let error = refused.error;
        if matches!(error, Error::Taken { .. }) {
            self.redlock.inner.tickets.mark_contended(&self.keys);
        }
        tracing::debug!(parent: &self.span, %error, "round failed");
        if self.policy.attempts_spent(self.attempts) {
            return Err(error);
        }
        if self.queues && self.place.is_none() && matches!(error, Error::Taken { .. }) {
            // retry at once as a queued waiter (which takes our place in
            // the queues)
            self.join_queue().await;
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(error);
            }
            return Ok(AfterRefusal::RoundNow);
        }
        self.at_head = refused.at_head;
        Ok(AfterRefusal::Pause(error))
    }

    /// State 5: until the turn comes, the pause ends or a lock is handed
    /// over; `Err` once past the deadline.
    async fn pause(&mut self, error: Error) -> Result<Resumed, Error> {
        let majority = u64::try_from(self.redlock.inner.quorum).unwrap_or(u64::MAX);
        let node_timeout = self.options.effective_node_timeout();
        let pause = if self.place.is_some() && matches!(error, Error::Taken { .. }) {
            queued_pause(self.options, error.outcomes(), self.at_head)
        } else {
            self.options.retry_pause(error.outcomes())
        };
        let turn = &mut self.turn;
        let woken = async {
            match turn.as_mut() {
                Some(turn) => turn.turn_came(majority, node_timeout).await,
                None => std::future::pending().await,
            }
        };
        let wait = self.policy.pause(pause, woken);
        match unless_handed_over(&mut self.handoff, wait).await {
            Ok(true) => {
                let Some(grant) = self.grant else {
                    return Ok(Resumed::Round);
                };
                let granted = unless_handed_over(&mut self.handoff, async {
                    granted_by_queue(
                        self.redlock,
                        &self.keys,
                        self.options,
                        grant,
                        self.last_refusal.as_ref(),
                        &self.took_over,
                        self.turn.as_mut(),
                    )
                    .await
                })
                .await;
                return Ok(match granted {
                    Ok(Some(granted)) => Resumed::Granted(granted),
                    Ok(None) => Resumed::Round,
                    Err(guard) => Resumed::HandedOver(guard),
                });
            }
            Ok(false) => {}
            Err(guard) => return Ok(Resumed::HandedOver(guard)),
        }
        if self.policy.is_past_deadline() {
            return Err(error);
        }
        Ok(Resumed::Round)
    }
}

/// The end of state 5 without a round: a majority of nodes granted the key
/// to this waiter (its grant token `grant`) while its entry had the deadline
/// its latest refused round was answered with, i.e. after that round reached
/// them. Each such key lives at least min(ttl, entry lifetime) from that
/// round's start (queue.lua's `pass_on`), which is the lease. A release
/// reaches the nodes at slightly different moments: while a majority can
/// still match, the wake-ups of the others are awaited for up to the node
/// timeout. Single-key, unfenced calls without auto-extension only: a
/// fence needs a round, and so do the other calls (their round takes the
/// grants over).
async fn granted_by_queue(
    redlock: &Redlock,
    keys: &[String],
    options: &LockOptions,
    grant: Token,
    last: Option<&LastRefusal>,
    took_over: &[bool],
    turn: Option<&mut Watch>,
) -> Option<Granted> {
    // auto-extended locks watch their validity against a grace (`quorate
    // run` stops its child then): they take the grants over with a round,
    // for a first validity of the full ttl
    if keys.len() != 1 || options.get_fencing() || options.get_auto_extend() {
        return None;
    }
    let (last, turn) = (last?, turn?);
    let quorum = redlock.inner.quorum;
    let token = grant.to_hex();
    // the nodes whose grant would count: they refused our latest round
    let counted: Vec<(usize, u64)> = last
        .deadlines
        .iter()
        .enumerate()
        .filter(|(node, _)| !took_over.get(*node).copied().unwrap_or(true))
        .filter_map(|(node, deadline)| deadline.map(|d| (node, d)))
        .collect();
    if counted.len() < quorum {
        return None;
    }
    let until = Instant::now() + options.effective_node_timeout();
    let granting = loop {
        let grants = turn.grants();
        let granting: Vec<usize> = counted
            .iter()
            .filter(|(node, deadline)| {
                grants
                    .get(node)
                    .is_some_and(|g| g.deadline == *deadline && g.token == token)
            })
            .map(|(node, _)| *node)
            .collect();
        if granting.len() >= quorum {
            break granting;
        }
        if tokio::time::timeout_at(until, turn.released())
            .await
            .is_err()
        {
            return None;
        }
    };
    // whole milliseconds on the servers (the member's ttl, the entry's
    // deadline): one less covers the rounding
    let ttl =
        Duration::from_millis(u64::try_from(options.get_ttl().as_millis()).unwrap_or(u64::MAX))
            .min(options.get_waiter_ttl())
            .saturating_sub(Duration::from_millis(1));
    let lease = Lease::new(grant, ttl, last.started, options.get_drift_factor());
    if !lease.is_valid() {
        return None;
    }
    crate::metrics::granted_by_queue(redlock.inner.primitive);
    Some(Granted {
        lease,
        // who waits behind us is unknown: no local hand-off passes anyone
        next_waiter: NextWaiters {
            any: Some(0),
            fair: Some(0),
        },
        granting: (0..took_over.len())
            .map(|n| granting.contains(&n))
            .collect(),
    })
}

/// `work`, unless a lock is handed over first (then `work` is dropped).
async fn unless_handed_over<T>(
    slot: &mut Option<HandoffSlot<LockGuard>>,
    work: impl std::future::Future<Output = T>,
) -> Result<T, LockGuard> {
    match slot {
        None => Ok(work.await),
        Some(slot) => tokio::select! {
            biased;
            guard = slot.handed_over() => Err(guard),
            output = work => Ok(output),
        },
    }
}

fn handed_over(span: &tracing::Span, guard: LockGuard, options: &LockOptions) -> LockGuard {
    let guard = guard.taken_over(options);
    tracing::debug!(parent: span, remaining_ms = guard.remaining().as_millis() as u64, "handed over");
    guard
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use super::*;
    use crate::backend::{MemoryNode, Node, QueueGrant};

    /// Which wake-ups make a grant: only those naming this call's token and
    /// the deadline its latest refused round got on that node, from nodes
    /// where no round of the call was granted and undone, from a majority.
    #[tokio::test]
    async fn only_grants_made_after_the_latest_refusal_count() {
        let nodes: Vec<Arc<dyn Node>> = MemoryNode::cluster(3)
            .into_iter()
            .map(|n| Arc::new(n) as Arc<dyn Node>)
            .collect();
        let redlock = Redlock::from_nodes(nodes, LockOptions::new()).expect("redlock");
        let keys: Arc<[String]> = vec!["k".to_owned()].into();
        let options = LockOptions::new().node_timeout(Some(Duration::from_millis(5)));
        let grant = redlock.fresh_token();
        let notifier = &redlock.inner.notifier;
        let mut turn = notifier.await_turn(&keys, Duration::from_millis(50)).await;
        let last = LastRefusal {
            started: Instant::now(),
            deadlines: vec![Some(10), Some(11), Some(12)],
        };
        let give = |node: usize, deadline: u64, token: String| {
            notifier.record_grant("k", node, QueueGrant { deadline, token });
        };
        macro_rules! check {
            ($took_over:expr) => {
                granted_by_queue(
                    &redlock,
                    &keys,
                    &options,
                    grant,
                    Some(&last),
                    &$took_over,
                    Some(&mut turn),
                )
                .await
                .map(|granted| granted.granting)
            };
        }
        give(0, 10, grant.to_hex());
        give(1, 9, grant.to_hex()); // made before the latest round reached node 1
        give(2, 12, "another call's token".to_owned());
        assert_eq!(check!([false; 3]), None, "one matching node of three");
        give(2, 12, grant.to_hex());
        assert_eq!(
            check!([false; 3]),
            Some(vec![true, false, true]),
            "nodes 0 and 2 granted after the latest round"
        );
        assert_eq!(
            check!([false, false, true]),
            None,
            "node 2 granted a round of this call that was undone: its grant may be gone"
        );
        give(1, 11, grant.to_hex());
        assert_eq!(check!([false, false, true]), Some(vec![true, true, false]));
    }
}
