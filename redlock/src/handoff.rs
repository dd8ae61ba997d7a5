//! Local hand-off: a lock released while the next task of this process
//! waits for exactly the same resources passes to that task directly, with
//! no round trip: the servers keep the keys and the token, the new holder
//! gets the lease with the validity it has left.
//!
//! The waiter is the head of the local queue (the only task of this process
//! contending for these keys); it registers here while it waits. A release
//! hands over only when the lease still has at least the waiter's minimum
//! validity (half its ttl), so a chain of hand-offs ends within half a ttl
//! and the lock then goes back through the servers. Fenced locks never
//! hand over: each holder needs its own fencing token.
//!
//! While a guard of this process holds exactly the keys a head waits for,
//! the head sends nothing: the lock comes to it by hand, or it is told when
//! that guard ends, is found lost, or runs out of validity, and tries the
//! servers then.
//!
//! See ARCHITECTURE.md, "Waiting: three queues, one order", for how this fits the whole.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::watchdog::LeaseCell;

/// What is handed over: a lock guard (`LockGuard`), which this module knows
/// only by what it asks of it, so that the guard can use the registry.
pub(crate) trait Handed: Send + 'static {
    /// The validity the lock has left.
    fn remaining(&self) -> Duration;
}

/// The waiting heads of this process's local queues, by their sorted keys.
#[derive(Debug)]
pub(crate) struct Handoffs<G> {
    waiting: Mutex<BTreeMap<Vec<String>, Waiting<G>>>,
    /// The leases of this process's guards that may hand over, by their
    /// sorted keys, with the registration's id.
    held: Mutex<BTreeMap<Vec<String>, (u64, LeaseCell)>>,
    /// Told whenever such a guard ends without handing over.
    ended: Notify,
    /// Dropped guards' locks kept for a moment for the next call of this
    /// process (see `LockGuard::linger`), with their registration's id.
    lingering: Mutex<BTreeMap<Vec<String>, (u64, G)>>,
    next_id: AtomicU64,
}

impl<G> Default for Handoffs<G> {
    fn default() -> Self {
        Handoffs {
            waiting: Mutex::default(),
            held: Mutex::default(),
            ended: Notify::new(),
            lingering: Mutex::default(),
            next_id: AtomicU64::new(0),
        }
    }
}

#[derive(Debug)]
struct Waiting<G> {
    id: u64,
    min_remaining: Duration,
    /// The waiter's queue ticket (see `queue.rs`).
    ticket: u64,
    /// Whether the waiter asked for `fair(true)`.
    fair: bool,
    deliver: oneshot::Sender<G>,
}

/// A waiter's registration; unregisters on drop.
#[derive(Debug)]
pub(crate) struct HandoffSlot<G> {
    handoffs: Arc<Handoffs<G>>,
    keys: Vec<String>,
    id: u64,
    /// `None` once the registration was taken without a lock (cannot
    /// happen: a taken registration is always delivered to) or used.
    receive: Option<oneshot::Receiver<G>>,
}

/// The registries' key for a key set: sorted, copied only when it is not
/// (a single key never is copied for a lookup).
fn sorted(keys: &[String]) -> Cow<'_, [String]> {
    if keys.is_sorted() {
        Cow::Borrowed(keys)
    } else {
        let mut keys = keys.to_vec();
        keys.sort();
        Cow::Owned(keys)
    }
}

impl<G> Handoffs<G> {
    fn waiting(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<String>, Waiting<G>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<G: Handed> Handoffs<G> {
    fn held(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<String>, (u64, LeaseCell)>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the head of the local queue for `keys` (queue ticket
    /// `ticket`, `fair` or not), accepting a lock with at least
    /// `min_remaining` validity.
    pub(crate) fn wait(
        self: &Arc<Self>,
        keys: &[String],
        min_remaining: Duration,
        ticket: u64,
        fair: bool,
    ) -> HandoffSlot<G> {
        let keys = sorted(keys).into_owned();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (deliver, receive) = oneshot::channel();
        let waiting = Waiting {
            id,
            min_remaining,
            ticket,
            fair,
            deliver,
        };
        self.waiting().insert(keys.clone(), waiting);
        HandoffSlot {
            handoffs: Arc::clone(self),
            keys,
            id,
            receive: Some(receive),
        }
    }

    /// The waiter for exactly `keys` that accepts `remaining` validity and
    /// whose ticket and fairness `may_have` allows, taken out of the
    /// registry (so one lock goes to one waiter).
    pub(crate) fn take(
        &self,
        keys: &[String],
        remaining: Duration,
        may_have: impl FnOnce(u64, bool) -> bool,
    ) -> Option<oneshot::Sender<G>> {
        let keys = sorted(keys);
        let mut waiting = self.waiting();
        let accepts = waiting.get(&*keys).is_some_and(|w| {
            remaining >= w.min_remaining && !w.deliver.is_closed() && may_have(w.ticket, w.fair)
        });
        if !accepts {
            return None;
        }
        waiting.remove(&*keys).map(|w| w.deliver)
    }

    fn lingering(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<String>, (u64, G)>> {
        self.lingering.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `guard` (of `keys`) for the next call of this process; returns
    /// the id to take it back with.
    pub(crate) fn linger(&self, keys: &[String], guard: G) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let replaced = self
            .lingering()
            .insert(sorted(keys).into_owned(), (id, guard));
        // One lock per key set can linger; a replaced one (cannot happen)
        // is dropped, which releases it.
        drop(replaced);
        id
    }

    /// The lingering lock of exactly `keys` (the one registered as `id`, if
    /// given) with at least `min_remaining` validity, taken out.
    pub(crate) fn take_lingering(
        &self,
        keys: &[String],
        id: Option<u64>,
        min_remaining: Duration,
    ) -> Option<G> {
        let keys = sorted(keys);
        let mut lingering = self.lingering();
        let fits = lingering.get(&*keys).is_some_and(|(held_id, guard)| {
            id.is_none_or(|id| id == *held_id) && guard.remaining() >= min_remaining
        });
        if !fits {
            return None;
        }
        lingering.remove(&*keys).map(|(_, guard)| guard)
    }

    /// Every lingering lock, taken out.
    pub(crate) fn take_all_lingering(&self) -> Vec<G> {
        std::mem::take(&mut *self.lingering())
            .into_values()
            .map(|(_, guard)| guard)
            .collect()
    }

    /// Registers a guard of this process holding `keys` (lease in `cell`);
    /// returns the id to end it with.
    pub(crate) fn hold(&self, keys: &[String], cell: &LeaseCell) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = (id, Arc::clone(cell));
        self.held().insert(sorted(keys).into_owned(), entry);
        id
    }

    /// The guard registered as `id` (if it was) ended without handing over.
    pub(crate) fn ended(&self, keys: &[String], id: Option<u64>) {
        let Some(id) = id else {
            return;
        };
        let keys = sorted(keys);
        let mut held = self.held();
        if held.get(&*keys).is_some_and(|(held_id, _)| *held_id == id) {
            held.remove(&*keys);
        }
        drop(held);
        self.ended.notify_waiters();
    }

    /// The lease of the guard of this process that holds exactly `keys`,
    /// if one does.
    fn holder(&self, keys: &[String]) -> Option<LeaseCell> {
        self.held()
            .get(&*sorted(keys))
            .map(|(_, cell)| Arc::clone(cell))
    }
}

impl<G: Handed> HandoffSlot<G> {
    /// Waits, sending nothing, while a guard of this process holds these
    /// keys: until it hands the lock over (`Some`), ends, or runs out of
    /// validity, or `deadline` passes (`None`: try the servers now).
    /// Returns `None` at once when no such guard exists.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`handed_over`](Self::handed_over).
    pub(crate) async fn while_held_here(&mut self, deadline: Option<Instant>) -> Option<G> {
        let handoffs = Arc::clone(&self.handoffs);
        loop {
            // Listening before looking: an end between the two is not missed.
            let ended = handoffs.ended.notified();
            let mut ended = std::pin::pin!(ended);
            ended.as_mut().enable();
            let holder = handoffs.holder(&self.keys)?;
            let mut lease = holder.subscribe();
            let until = {
                let state = lease.borrow_and_update();
                if state.lost {
                    return None;
                }
                state.lease.valid_until()
            };
            let until = deadline.map_or(until, |d| d.min(until));
            if until <= Instant::now() {
                return None;
            }
            tokio::select! {
                biased;
                guard = self.handed_over() => return Some(guard),
                () = ended => {}
                // extended (look again) or found lost (try the servers)
                _ = lease.changed() => {}
                () = tokio::time::sleep_until(until) => return None,
            }
        }
    }

    /// Resolves with a lock handed over; never resolves when none comes.
    ///
    /// # Cancel safety
    /// Cancel safe: a lock that arrives is kept in the slot for the next
    /// call (and released by its own drop if the slot is dropped first).
    pub(crate) async fn handed_over(&mut self) -> G {
        if let Some(receive) = self.receive.as_mut() {
            if let Ok(guard) = receive.await {
                self.receive = None;
                return guard;
            }
            self.receive = None;
        }
        std::future::pending().await
    }
}

impl<G> Drop for HandoffSlot<G> {
    fn drop(&mut self) {
        let mut waiting = self.handoffs.waiting();
        if waiting.get(&self.keys).is_some_and(|w| w.id == self.id) {
            waiting.remove(&self.keys);
        }
    }
}
