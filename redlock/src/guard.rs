//! The guard of a held lock: extend, release, and release on drop.
//!
//! See ARCHITECTURE.md, "Guards and the watchdog", for how this fits the whole.

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use crate::client_state::ClientState;
use crate::error::{Error, NodeOutcome, Outcomes};
use crate::handoff::{Handed, Handoffs};
use crate::lease::Lease;
use crate::metrics;
use crate::notify_cell::NotifyCell;
use crate::options::{validate_ttl, LockOptions};
use crate::queue::NextWaiters;
use crate::quorum::{self, Decide, Reply};
use crate::reentry::{TaskHold, TaskHolds};
use crate::watchdog::{LeaseCell, LeaseState, Watched};

/// Most grants of one lock in a row inside one process (one from the
/// servers, the rest passed on locally) while a waiter of another process is
/// queued ahead of the local callers. (Measured in the benchmark's scenario
/// P with dropped guards: 4 gave 0.99-1.03x rslock's grants/s with p99
/// waits 0.36-0.53x rslock's; 3 gave 0.98-0.99x with 0.27-0.35x.)
const LOCAL_TURN: u32 = 3;

/// Most grants of one lock in a row inside one process when no waiter of
/// another process was known to be queued ahead: bounds how long one that
/// queued since waits.
const LOCAL_CHAIN: u32 = 32;

/// How many times a dropped guard's lingering lock lets the other tasks run
/// before it is released through the servers (see `LockGuard::linger`).
const LINGER_YIELDS: usize = 3;

/// What a release found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReleaseOutcome {
    /// The lock was held (our token on a majority) and is now deleted.
    Released,
    /// The lock was no longer held: it expired, or its keys were lost or
    /// taken over, before the release. Whatever was still ours was deleted.
    NotHeld,
}

/// A held lock. Release it with [`release`](Self::release); dropping it
/// spawns a best-effort release instead (never blocks). With
/// [`LockOptions::auto_extend`] the Redlock's watchdog keeps extending it
/// until release, drop, or loss ([`lost`](Self::lost) resolves then).
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard {
    inner: Arc<ClientState>,
    /// The client's registry of local hand-offs.
    handoffs: Arc<Handoffs<LockGuard>>,
    keys: Arc<[String]>,
    cell: LeaseCell,
    /// The watchdog's id for this lock, when auto-extended.
    watchdog: Option<u64>,
    drift_factor: f64,
    node_timeout: Duration,
    /// Whether a release may hand the lock to the next local waiter.
    local_handoff: bool,
    /// This process's registration of the held keys (see `handoff.rs`);
    /// moves with a hand-off, ends with the lock.
    held_here: Option<u64>,
    /// The first waiters the servers still queued when the lock was
    /// granted: local passes of the lock over them are bounded, and never
    /// pass over a fair one.
    next_waiter: NextWaiters,
    /// How many times the lock was passed on inside this process since the
    /// servers granted it (see `handoff.rs`).
    local_passes: u32,
    /// `fair(true)`: the guard does not linger when dropped.
    fair: bool,
    /// The record of the task whose lock call returned this guard
    /// (reentrancy detection); ends with the guard.
    task_hold: Option<TaskHold>,

    acquired: Instant,
    released: bool,
}

impl LockGuard {
    pub(crate) fn new(
        inner: Arc<ClientState>,
        handoffs: Arc<Handoffs<LockGuard>>,
        keys: Arc<[String]>,
        lease: Lease,
        options: &LockOptions,
        next_waiter: NextWaiters,
    ) -> Self {
        let cell: LeaseCell = Arc::new(NotifyCell::new(LeaseState { lease, lost: false }));
        let watchdog = Self::watchdog_for(&inner, &keys, &cell, options);
        metrics::guard_made(inner.primitive);
        let held_here = Some(handoffs.hold(&keys, &cell));
        LockGuard {
            inner,
            handoffs,
            keys,
            cell,
            watchdog,
            drift_factor: options.get_drift_factor(),
            node_timeout: options.effective_node_timeout(),
            local_handoff: options.get_local_handoff(),
            held_here,
            next_waiter,
            local_passes: 0,
            fair: options.get_fair(),
            task_hold: None,
            acquired: Instant::now(),
            released: false,
        }
    }

    /// Records the current task as this lock's holder until the guard ends.
    pub(crate) fn record_task(&mut self, holds: &Arc<TaskHolds>) {
        self.task_hold = Some(holds.record(&self.keys));
    }

    /// The watchdog's id for the lease in `cell`, if `options` auto-extend
    /// or the lease is shorter than the ttl asked for (a grant by the
    /// waiter queue lasts at most the waiter's entry lifetime): then it is
    /// extended to the ttl once, a third of the way into it.
    fn watchdog_for(
        inner: &ClientState,
        keys: &Arc<[String]>,
        cell: &LeaseCell,
        options: &LockOptions,
    ) -> Option<u64> {
        let auto_extend = options.get_auto_extend();
        let short = cell.borrow().lease.ttl() < options.get_ttl();
        (auto_extend || short).then(|| {
            inner.watchdog.watch(Watched {
                keys: Arc::clone(keys),
                ttl: options.get_ttl(),
                drift_factor: options.get_drift_factor(),
                node_timeout: options.effective_node_timeout(),
                cell: Arc::clone(cell),
                once: !auto_extend,
            })
        })
    }

    /// Never hands the lock to a local waiter (for guards of other
    /// primitives' keys).
    pub(crate) fn without_local_handoff(mut self) -> Self {
        self.local_handoff = false;
        self.end_held_here();
        self
    }

    /// Tells waiting local heads that this process no longer holds the keys.
    fn end_held_here(&mut self) {
        let id = self.held_here.take();
        self.handoffs.ended(&self.keys, id);
    }

    /// The lock, taken over by the local waiter it was handed to: the same
    /// lease, with the waiter's options from now on.
    pub(crate) fn taken_over(mut self, options: &LockOptions) -> LockGuard {
        self.stop_watchdog();
        self.watchdog = Self::watchdog_for(&self.inner, &self.keys, &self.cell, options);
        self.drift_factor = options.get_drift_factor();
        self.node_timeout = options.effective_node_timeout();
        self.local_handoff = options.get_local_handoff();
        self.fair = options.get_fair();
        self.acquired = Instant::now();
        self
    }

    /// Whether this lock may still pass to the waiting local head with
    /// queue ticket `ticket` (a `fair` waiter or not): at most `LOCAL_TURN`
    /// grants in a row when a waiter of another process queued before that
    /// head, at most `LOCAL_CHAIN` otherwise (a waiter of another process
    /// may have queued since the grant), so other processes wait at most
    /// one turn; never past a fair waiter of another process, and to a
    /// fair head never past any.
    fn may_pass_over(&self, ticket: u64, fair: bool) -> bool {
        if !self.next_waiter.allow(ticket, fair) {
            return false;
        }
        let before_foreign = self.next_waiter.first(ticket);
        let limit = if before_foreign {
            LOCAL_CHAIN
        } else {
            LOCAL_TURN
        };
        self.local_passes + 1 < limit
    }

    /// On drop: keeps the lock, for a few scheduler turns, for the next lock
    /// call of this process on the same keys (a worker taking its next
    /// job), which then takes it with no round trip; otherwise the lock is
    /// released through the servers, as any dropped guard's (spawned).
    /// Within the same bounds as a hand-off (`may_pass_over`, half the ttl
    /// left), never with `fair(true)` or fencing. `true` if it did.
    ///
    /// Only on drop: an explicit [`release`](Self::release) always reaches
    /// the servers before it returns, so a process may exit right after
    /// it. (A process that exits right after dropping a guard may leave
    /// the keys to their ttl, with or without this.)
    fn linger(&mut self) -> bool {
        if self.released || !self.local_handoff || self.fair {
            return false;
        }
        let lease = self.lease();
        // The next call has no ticket yet: it comes after every queued waiter.
        if lease.fence().is_some()
            || self.remaining() < lease.ttl() / 2
            || !self.may_pass_over(u64::MAX, false)
        {
            return false;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let inner = Arc::clone(&self.inner);
        let handoffs = Arc::clone(&self.handoffs);
        let next = self.pass_on();
        let keys = Arc::clone(&self.keys);
        let id = handoffs.linger(&keys, next);
        self.released = true;
        metrics::guard_made(inner.primitive);
        metrics::released(inner.primitive, "handed_off", self.acquired.elapsed());
        let background = Arc::clone(&inner.background);
        background.spawn(&handle, async move {
            for _ in 0..LINGER_YIELDS {
                tokio::task::yield_now().await;
            }
            if let Some(guard) = handoffs.take_lingering(&keys, Some(id), Duration::ZERO) {
                // an explicit release: it does not linger again
                if let Err(error) = guard.release().await {
                    tracing::debug!(%error, "release after a linger failed; the keys expire");
                }
            }
        });
        true
    }

    /// Moves the lock into a new guard (the one handed on), stopping this
    /// one's extension; this guard is then released.
    fn pass_on(&mut self) -> LockGuard {
        self.stop_watchdog();
        LockGuard {
            inner: Arc::clone(&self.inner),
            handoffs: Arc::clone(&self.handoffs),
            keys: Arc::clone(&self.keys),
            cell: Arc::clone(&self.cell),
            watchdog: None,
            drift_factor: self.drift_factor,
            node_timeout: self.node_timeout,
            local_handoff: true,
            held_here: self.held_here.take(),
            next_waiter: self.next_waiter,
            local_passes: self.local_passes + 1,
            fair: self.fair,
            // the receiving call records its own task
            task_hold: None,
            acquired: Instant::now(),
            released: false,
        }
    }

    /// Passes the lock to the head of the local queue for the same keys
    /// when one waits and accepts the validity left (see
    /// [`LockOptions::local_handoff`]). `true` if it did: this guard is
    /// then released.
    fn hand_off(&mut self) -> bool {
        if self.released || !self.local_handoff {
            return false;
        }
        let remaining = self.remaining();
        if remaining.is_zero() || self.lease().fence().is_some() {
            return false;
        }
        let inner = Arc::clone(&self.inner);
        let Some(deliver) = self.handoffs.take(&self.keys, remaining, |ticket, fair| {
            self.may_pass_over(ticket, fair)
        }) else {
            return false;
        };
        // In transit it is a guard of its own: dropped undelivered, it
        // releases the lock through the servers.
        let next = self.pass_on();
        match deliver.send(next) {
            Ok(()) => {
                self.released = true;
                metrics::guard_made(inner.primitive);
                metrics::released(inner.primitive, "handed_off", self.acquired.elapsed());
                true
            }
            Err(mut next) => {
                // the waiter is gone: this guard releases through the servers
                self.held_here = next.held_here.take();
                next.released = true;
                false
            }
        }
    }

    /// The current lease (token, ttl, validity, fence); auto-extension and
    /// [`extend`](Self::extend) replace it.
    pub fn lease(&self) -> Lease {
        self.cell.borrow().lease
    }

    /// The validity left; act on the lock only while this is positive.
    /// Zero once the lock was found lost.
    pub fn remaining(&self) -> Duration {
        let state = self.cell.borrow();
        if state.lost {
            Duration::ZERO
        } else {
            state.lease.remaining()
        }
    }

    /// Whether validity is left.
    pub fn is_valid(&self) -> bool {
        !self.remaining().is_zero()
    }

    /// Resolves when the lock can no longer be relied on: with
    /// auto-extension, when an extension could not reach a majority before
    /// the validity ran out, or a majority no longer holds our token
    /// ([`Error::Lost`]); otherwise when the validity runs out
    /// ([`Error::Expired`]). Never resolves while the lock is safely held.
    ///
    /// # Cancel safety
    /// Cancel safe: it only watches.
    ///
    /// ```no_run
    /// # async fn demo(redlock: quorate_redlock::Redlock) -> Result<(), quorate_redlock::Error> {
    /// use std::time::Duration;
    /// use quorate_redlock::LockOptions;
    /// let options = LockOptions::new().ttl(Duration::from_secs(5)).auto_extend(true);
    /// let guard = redlock.lock_with(["job"], &options).await?;
    /// tokio::select! {
    ///     lost = guard.lost() => eprintln!("stopped: {lost}"),
    ///     () = tokio::time::sleep(Duration::from_secs(60)) => {} // the work
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn lost(&self) -> Error {
        let mut state = self.cell.subscribe();
        loop {
            let (lost, until) = {
                let now = state.borrow_and_update();
                (now.lost, now.lease.valid_until())
            };
            if lost {
                return Error::Lost {
                    outcomes: Outcomes::default(),
                };
            }
            if until <= Instant::now() {
                return Error::Expired;
            }
            tokio::select! {
                biased;
                changed = state.changed() => {
                    if changed.is_err() {
                        // cannot happen while we hold the cell; never spin
                        tokio::time::sleep_until(until).await;
                    }
                }
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// Stops auto-extension (the watchdog sends nothing more for this lock).
    fn stop_watchdog(&mut self) {
        if let Some(id) = self.watchdog.take() {
            self.inner.watchdog.unwatch(id);
        }
    }

    /// The locked resources.
    pub fn resources(&self) -> &[String] {
        &self.keys
    }

    /// Extends the keys to at least `ttl` from now on every node that still
    /// holds our token. An extension never shortens: a node whose key has
    /// longer left keeps it (end a lock early with [`release`](Self::release)).
    /// Once a majority confirmed, the validity is the later of the old one
    /// and `ttl` counted from the start of this call.
    ///
    /// Errors: [`Error::Expired`] when the lease ran out before (or during)
    /// the call; [`Error::Lost`] when a majority answered that the lock is
    /// no longer ours; [`Error::NoQuorum`] when too few nodes answered.
    /// After an error the lease is in doubt: its validity becomes the
    /// earlier of the old one and `ttl` from the start of this call (it never
    /// grows without a majority's confirmation).
    ///
    /// # Cancel safety
    /// Cancel safe: if dropped mid-flight the lease is in doubt, as after an
    /// error.
    ///
    /// ```no_run
    /// # async fn demo(redlock: quorate_redlock::Redlock) -> Result<(), quorate_redlock::Error> {
    /// use std::time::Duration;
    /// let mut guard = redlock.lock("job", Duration::from_secs(5)).await?;
    /// guard.extend(Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend(&mut self, ttl: Duration) -> Result<(), Error> {
        let primitive = self.inner.primitive;
        let result = self.extend_inner(ttl).await;
        let outcome = match &result {
            Ok(()) => "extended",
            Err(Error::Expired) => "expired",
            Err(Error::Lost { .. }) => "lost",
            Err(Error::InvalidConfig(_)) => "invalid",
            Err(_) => "no_quorum",
        };
        metrics::extended(primitive, outcome);
        if let Err(Error::Lost { outcomes }) = &result {
            tracing::warn!(resources = %self.keys.join(","), %outcomes, "lock lost");
        }
        result
    }

    async fn extend_inner(&mut self, ttl: Duration) -> Result<(), Error> {
        validate_ttl(ttl, self.drift_factor)?;
        self.inner.check_ttl(ttl)?;
        if !self.is_valid() {
            return Err(Error::Expired);
        }
        let token = self.lease().token().to_hex();
        // Until a majority confirms, the request is in doubt: if this future is
        // dropped mid-round, the lease shrinks as for a failed round.
        let mut in_doubt = DoubtfulExtension {
            cell: &self.cell,
            ttl,
            started: Instant::now(),
            drift_factor: self.drift_factor,
            settled: false,
        };
        let result = extend_round(&self.inner, &self.keys, &token, ttl, self.node_timeout).await;
        in_doubt.settle(result.as_ref().ok().copied());
        match result {
            Ok(_) if !self.is_valid() => Err(Error::Expired),
            Ok(_) => Ok(()),
            Err(_) if !self.is_valid() => Err(Error::Expired),
            Err(error) => Err(error),
        }
    }

    /// Deletes our keys on every node (compare-and-delete: another holder's
    /// keys are never touched), or, when the next task of this process
    /// waits for the same resources, hands the lock to it without a round
    /// trip ([`LockOptions::local_handoff`], on by default; then
    /// [`ReleaseOutcome::Released`] at once). Dropping the guard does the
    /// same in the background.
    ///
    /// Returns [`ReleaseOutcome::NotHeld`] — not an error — when the lock had
    /// already expired or was lost; [`Error::NoQuorum`] only when the lease
    /// was still valid and too few nodes answered in 3 rounds (the keys then
    /// expire with their ttl).
    ///
    /// # Cancel safety
    /// Cancel safe: if dropped mid-flight, the guard's `Drop` spawns the
    /// release again.
    ///
    /// ```no_run
    /// # async fn demo(redlock: quorate_redlock::Redlock) -> Result<(), quorate_redlock::Error> {
    /// use quorate_redlock::ReleaseOutcome;
    /// let guard = redlock.lock("job", std::time::Duration::from_secs(5)).await?;
    /// if guard.release().await? == ReleaseOutcome::NotHeld {
    ///     eprintln!("the lock expired before we were done");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn release(mut self) -> Result<ReleaseOutcome, Error> {
        if self.hand_off() {
            return Ok(ReleaseOutcome::Released);
        }
        self.stop_watchdog();
        let was_valid = self.is_valid();
        let inner = Arc::clone(&self.inner);
        let token = self.lease().token().to_hex();
        let span = tracing::debug_span!("quorate.release", resource = %self.keys.join(","));
        // A round that misses a majority (slow or failing nodes) is retried
        // while the lease lasts, at most 3 rounds: the alternative is a lock
        // that blocks everyone until its ttl runs out.
        // Each retry gives the nodes twice as long: a round that missed its
        // majority under a burst of requests (nodes busy, not dead) would
        // miss it again at the same timeout.
        let mut rounds = 0;
        let mut node_timeout = self.node_timeout;
        let (mut deleted, mut unseen_deletes) = (false, false);
        let held_here = self.held_here.take();
        let round = loop {
            rounds += 1;
            let mut round = std::pin::pin!(inner
                .release_round(&self.keys, &token, node_timeout)
                .instrument(span.clone()));
            // The first poll puts every request on its connection. Local
            // waiters go now: their acquire follows our delete on each
            // connection, so they need wait neither for our answers nor for
            // the servers' announcements.
            let first = futures::poll!(round.as_mut());
            if rounds == 1 {
                inner.notifier.announce_all(&self.keys);
                self.handoffs.ended(&self.keys, held_here);
            }
            let round = match first {
                Poll::Ready(round) => round,
                Poll::Pending => round.await,
            };
            deleted |= round
                .replies
                .iter()
                .any(|r| matches!(r, Reply::Answered(n) if *n > 0));
            if round.answered() >= inner.quorum || rounds >= 3 || !self.is_valid() {
                break round;
            }
            // The unanswered requests still reach their nodes and delete
            // there: a later round may find our keys gone by our own hand.
            unseen_deletes |= round
                .replies
                .iter()
                .any(|r| matches!(r, Reply::TimedOut | Reply::Pending));
            node_timeout *= 2;
        };
        self.released = true;
        let held = self.acquired.elapsed();
        // A valid lease means our keys were on a majority, so any majority
        // of answers includes a deletion (in this round or, by the requests
        // of an earlier one, unseen) unless the keys were lost.
        let deleted = deleted || unseen_deletes;
        let result = if round.answered() >= inner.quorum {
            if deleted && was_valid {
                Ok(ReleaseOutcome::Released)
            } else {
                Ok(ReleaseOutcome::NotHeld)
            }
        } else if !was_valid {
            Ok(ReleaseOutcome::NotHeld)
        } else {
            Err(Error::NoQuorum {
                granted: round.answered(),
                nodes: inner.nodes.len(),
                quorum: inner.quorum,
                outcomes: round.outcomes(&inner.nodes, |deleted| {
                    if *deleted > 0 {
                        NodeOutcome::Granted
                    } else {
                        NodeOutcome::NotHeld
                    }
                }),
            })
        };
        let outcome = match &result {
            Ok(ReleaseOutcome::Released) => "released",
            Ok(ReleaseOutcome::NotHeld) => "not_held",
            Err(_) => "no_quorum",
        };
        metrics::released(inner.primitive, outcome, held);
        result
    }
}

impl Handed for LockGuard {
    fn remaining(&self) -> Duration {
        LockGuard::remaining(self)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.hand_off() || self.linger() {
            return;
        }
        self.stop_watchdog();
        if self.released {
            return;
        }
        let inner = Arc::clone(&self.inner);
        let handoffs = Arc::clone(&self.handoffs);
        metrics::released(inner.primitive, "dropped", self.acquired.elapsed());
        let held_here = self.held_here.take();
        let keys = Arc::clone(&self.keys);
        let token = self.lease().token().to_hex();
        let timeout = self.node_timeout;
        // Never block in Drop: spawn. Outside a runtime nothing can be sent
        // and the keys expire with their ttl.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let background = Arc::clone(&inner.background);
                background.spawn(&handle, async move {
                    inner.release_round(&keys, &token, timeout).await;
                    inner.notifier.announce_all(&keys);
                    handoffs.ended(&keys, held_here);
                });
            }
            Err(_) => {
                handoffs.ended(&keys, held_here);
                tracing::debug!("guard dropped outside a runtime; keys expire with their ttl")
            }
        }
    }
}

/// An extension round in flight on a guard's lease: settled with the
/// round's start when a majority confirmed, else (error, or dropped
/// mid-round) the lease is put in doubt (see [`Lease::doubt`]).
struct DoubtfulExtension<'a> {
    cell: &'a LeaseCell,
    ttl: Duration,
    started: Instant,
    drift_factor: f64,
    settled: bool,
}

impl DoubtfulExtension<'_> {
    /// `Some(started)` of a confirmed round, `None` for a failed one.
    fn settle(&mut self, confirmed: Option<Instant>) {
        self.settled = true;
        let (ttl, drift_factor) = (self.ttl, self.drift_factor);
        match confirmed {
            Some(started) => self
                .cell
                .send_modify(|s| s.lease.confirm(ttl, started, drift_factor)),
            None => self.doubt(),
        }
    }

    fn doubt(&self) {
        let (ttl, started, drift_factor) = (self.ttl, self.started, self.drift_factor);
        self.cell
            .send_modify(|s| s.lease.doubt(ttl, started, drift_factor));
    }
}

impl Drop for DoubtfulExtension<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.doubt();
        }
    }
}

/// One extension round: `keys` reset to `ttl` wherever they hold `token`.
/// `Ok(started)` once a majority did (validity counts from `started`);
/// [`Error::Lost`] when too many nodes no longer hold the token for a
/// majority to be possible, else [`Error::NoQuorum`].
pub(crate) async fn extend_round(
    inner: &ClientState,
    keys: &[String],
    token: &str,
    ttl: Duration,
    node_timeout: Duration,
) -> Result<Instant, Error> {
    let started = Instant::now();
    let span = tracing::debug_span!("quorate.extend", resource = %keys.join(","));
    let round = quorum::round(
        "extend",
        &inner.nodes,
        node_timeout,
        Decide::Majority(inner.quorum),
        |extended| *extended,
        |node| node.extend(keys, token, ttl),
    )
    .instrument(span)
    .await;
    if round.successes >= inner.quorum {
        return Ok(started);
    }
    let outcomes = round.outcomes(&inner.nodes, |extended| {
        if *extended {
            NodeOutcome::Granted
        } else {
            NodeOutcome::NotHeld
        }
    });
    let not_held = round.answered() - round.successes;
    if not_held > inner.nodes.len() - inner.quorum {
        Err(Error::Lost { outcomes })
    } else {
        Err(Error::NoQuorum {
            granted: round.successes,
            nodes: inner.nodes.len(),
            quorum: inner.quorum,
            outcomes,
        })
    }
}
