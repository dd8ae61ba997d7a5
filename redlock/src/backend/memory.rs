//! An in-process node with the same semantics as the Lua scripts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::{self, FutureExt};
use tokio::sync::broadcast;

use super::memory_queue::{claim_for, client_of, MemoryQueues};
use super::memory_store::MemoryStore;
use super::queue_protocol::HEAD_CLAIM;
use super::{
    fence_key, AcquireReply, ExtendRequest, Node, NodeError, NodeFuture, NodeScript, QueueEntry,
    QueueGrant, Released, ScriptValue,
};
use crate::backend::holder::Holder;
use crate::backend::quarantine::{MemoryMarker, DEFAULT_MAX_TTL};

/// An in-memory node: for unit tests, users' own tests, deterministic fault
/// simulation and the demo when no Redis is at hand. Clones share state.
///
/// Time is tokio's, so tests with paused time can expire keys instantly.
/// Faults: [`set_down`](Self::set_down) makes every call fail,
/// [`set_stalled`](Self::set_stalled) makes every call hang (so the per-node
/// timeout fires), [`set_latency`](Self::set_latency) delays every answer,
/// [`set_request_delay`](Self::set_request_delay) delays every request (it
/// takes effect later, even if the caller stopped waiting: a late grant).
#[derive(Clone, Debug)]
pub struct MemoryNode {
    name: String,
    state: Arc<Mutex<State>>,
    /// Every announced release (no per-key subscription needed in-process).
    released: broadcast::Sender<Released>,
}

#[derive(Debug, Default)]
struct State {
    store: MemoryStore,
    down: bool,
    stalled: bool,
    latency: Duration,
    request_delay: Duration,
    /// When the last delayed request arrives and the last answer leaves: a
    /// later one never overtakes them (one connection, in order, as TCP).
    last_arrival: Option<tokio::time::Instant>,
    last_answer: Option<tokio::time::Instant>,
    /// Fence counters by counter key; they never expire.
    fences: BTreeMap<String, u64>,
    /// Waiter queues by lock key.
    queues: MemoryQueues,
    /// Batched extension requests served (each counts once, however many
    /// locks it carried).
    extends: u64,
    /// Quarantine after a data loss or restart ([`forget_all`](MemoryNode::forget_all),
    /// [`restart_from`](MemoryNode::restart_from)).
    marker: MemoryMarker,
    /// The quarantine's length; `None` until a Redlock sets it.
    max_ttl: Option<Duration>,
}

/// What a [`MemoryNode`]'s persistence kept at one moment
/// ([`MemoryNode::snapshot`]), to restart it with
/// ([`MemoryNode::restart_from`]). The default is an empty data set.
#[derive(Clone, Debug, Default)]
pub struct MemorySnapshot {
    store: MemoryStore,
    fences: BTreeMap<String, u64>,
    queues: MemoryQueues,
    /// `None`: no marker (nothing was kept).
    marker: Option<MemoryMarker>,
}

enum Fault {
    None,
    Down,
    Stalled,
}

impl MemoryNode {
    /// An empty node called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        MemoryNode {
            name: name.into(),
            state: Arc::default(),
            released: broadcast::channel(1024).0,
        }
    }

    /// `n` independent nodes named `memory-0`, `memory-1`, …
    pub fn cluster(n: usize) -> Vec<MemoryNode> {
        (0..n)
            .map(|i| MemoryNode::new(format!("memory-{i}")))
            .collect()
    }

    /// Simulate a dead server: calls fail with an error at once.
    pub fn set_down(&self, down: bool) {
        self.lock_state().down = down;
    }

    /// Simulate a stalled server (SIGSTOP): calls never answer.
    pub fn set_stalled(&self, stalled: bool) {
        self.lock_state().stalled = stalled;
    }

    /// Simulate a slow network: every answer arrives `latency` after the
    /// operation took effect.
    pub fn set_latency(&self, latency: Duration) {
        self.lock_state().latency = latency;
    }

    /// Simulate a server clock running `rate` times as fast as tokio's from
    /// now on (1.0: in step): its keys' ttls, its quarantine and its queue
    /// deadlines run by it. A rate above `1 + drift_factor` breaks the
    /// lease's assumption (bounded drift) by construction.
    pub fn set_clock_rate(&self, rate: f64) {
        let mut state = self.lock_state();
        let now = tokio::time::Instant::now();
        state.store.clock.set_rate(rate, now);
    }

    /// Simulate requests that are slow to arrive: each takes effect `delay`
    /// after it was sent, whether or not its caller still waits (as a
    /// request already on the wire does). Needs a tokio runtime.
    pub fn set_request_delay(&self, delay: Duration) {
        self.lock_state().request_delay = delay;
    }

    /// How many batched extension requests (the watchdog's) this node
    /// served; single `extend` calls are not counted.
    pub fn batched_extends(&self) -> u64 {
        self.lock_state().extends
    }

    /// The live keys, sorted, without the clients' descriptions for
    /// operators (`quorate:owner:*`, see [`Owner`](crate::Owner)).
    pub fn keys(&self) -> Vec<String> {
        let mut state = self.lock_state();
        state.store.begin();
        let mut keys = state.store.key_names();
        keys.retain(|k| !k.starts_with(crate::backend::holder::OWNER_KEY_PREFIX));
        keys
    }

    /// The members of the set or fields of the hash at `key` (as `SCARD`
    /// or `HLEN`); 0 when absent or a string.
    pub fn collection_len(&self, key: &str) -> usize {
        let mut state = self.lock_state();
        state.store.begin();
        state.store.collection_len(key)
    }

    /// The string value of `key` (as `GET`), `None` when absent.
    pub fn get(&self, key: &str) -> Option<String> {
        let mut state = self.lock_state();
        state.store.begin();
        let value = state.store.get(key)?;
        Some(String::from_utf8_lossy(value).into_owned())
    }

    /// The remaining ttl of `key`, `None` when absent ([`MAX_TTL`] for a
    /// key without expiry).
    ///
    /// [`MAX_TTL`]: crate::MAX_TTL
    pub fn ttl(&self, key: &str) -> Option<Duration> {
        let mut state = self.lock_state();
        state.store.begin();
        state
            .store
            .ttl(key)
            .map(|left| left.unwrap_or(crate::lease::MAX_TTL))
    }

    /// Sets `key` to `value` with an optional ttl (as `SET key value PX`),
    /// behind every client's back: a key a lost release left behind, or a
    /// foreign value.
    pub fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) {
        let mut state = self.lock_state();
        state.store.begin();
        state.store.set(key, value, ttl);
    }

    /// Forget every lock key and waiter queue (as if they were deleted
    /// behind our back). Fence counters survive, as on a server with
    /// persistence.
    pub fn flush(&self) {
        let mut state = self.lock_state();
        state.store.clear();
        state.queues = MemoryQueues::default();
    }

    /// Forget everything, fence counters and the quarantine marker
    /// included: a restart without persistence. The next call that could
    /// grant starts the node's quarantine (see
    /// [`MARKER_KEY`](crate::MARKER_KEY)).
    pub fn forget_all(&self) {
        self.restart_from(&MemorySnapshot::default());
    }

    /// A copy of the node's data as a server's persistence would keep it
    /// (lock keys with their expiry times, fence counters, queues, the
    /// quarantine marker): an RDB snapshot, for
    /// [`restart_from`](Self::restart_from).
    pub fn snapshot(&self) -> MemorySnapshot {
        let state = self.lock_state();
        MemorySnapshot {
            store: state.store.clone(),
            fences: state.fences.clone(),
            queues: state.queues.clone(),
            marker: Some(state.marker.clone()),
        }
    }

    /// Simulates a crash and a restart that loads `snapshot`: everything
    /// written since it is gone, and the node runs as a new server process
    /// (a new `run_id`). Keys whose expiry passed meanwhile are gone too.
    /// The next call that could grant starts the node's quarantine, as
    /// `quarantine.lua` does on a restarted server, unless the node is
    /// declared fresh first. A snapshot taken just before is a restart
    /// that kept every write (AOF with `appendfsync always`).
    pub fn restart_from(&self, snapshot: &MemorySnapshot) {
        let mut state = self.lock_state();
        let clock = state.store.clock;
        state.store = snapshot.store.clone();
        state.store.clock = clock;
        state.fences = snapshot.fences.clone();
        state.queues = snapshot.queues.clone();
        let mut kept = snapshot.marker.clone().unwrap_or_default();
        if snapshot.marker.is_none() {
            kept.lose();
        }
        state.marker.restart_with(&kept);
    }

    /// How many waiters the queue of `key` holds, after dropping lapsed
    /// entries.
    pub fn queued(&self, key: &str) -> usize {
        let mut state = self.lock_state();
        state.store.begin();
        let now = state.store.now();
        state.queues.prune(key, now);
        state.queues.len(key)
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the map half-updated
        // (each operation checks before it writes), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `op` atomically as a granting call: refused while quarantined.
    fn call_granting<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut State) -> T + Send + 'static,
    ) -> NodeFuture<T> {
        self.call(move |state| {
            let max_ttl = state.max_ttl.unwrap_or(DEFAULT_MAX_TTL);
            let now = state.store.now();
            state.marker.check(now, max_ttl).map(|()| {
                state.store.fence_floor = state.marker.fence_floor();
                state.store.restart_mark = state.marker.restart_mark();
                op(state)
            })
        })
        .map(|answer| answer?)
        .boxed()
    }

    /// Runs `op` atomically, unless a fault is simulated.
    fn call<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut State) -> T + Send + 'static,
    ) -> NodeFuture<T> {
        let mut state = self.lock_state();
        let fault = if state.stalled {
            Fault::Stalled
        } else if state.down {
            Fault::Down
        } else {
            Fault::None
        };
        match fault {
            Fault::Stalled => future::pending().boxed(),
            Fault::Down => {
                let err = NodeError::new(format!("{}: connection refused (simulated)", self.name));
                future::ready(Err(err)).boxed()
            }
            Fault::None if !state.request_delay.is_zero() => {
                let now = tokio::time::Instant::now();
                let arrival = (now + state.request_delay).max(state.last_arrival.unwrap_or(now));
                state.last_arrival = Some(arrival);
                let answer_at = arrival + state.latency;
                let answer_at = answer_at.max(state.last_answer.unwrap_or(answer_at));
                state.last_answer = Some(answer_at);
                drop(state);
                let node = self.clone();
                let (answer_tx, answer_rx) = futures::channel::oneshot::channel();
                // On its way whatever the caller does.
                tokio::spawn(async move {
                    tokio::time::sleep_until(arrival).await;
                    let answer = {
                        let mut state = node.lock_state();
                        state.store.begin();
                        op(&mut state)
                    };
                    tokio::time::sleep_until(answer_at).await;
                    let _ = answer_tx.send(answer);
                });
                async move {
                    answer_rx
                        .await
                        .map_err(|_| NodeError::new("request lost (simulated)"))
                }
                .boxed()
            }
            Fault::None => {
                state.store.begin();
                let answer = op(&mut state);
                if state.latency.is_zero() {
                    future::ready(Ok(answer)).boxed()
                } else {
                    let now = tokio::time::Instant::now();
                    let answer_at = (now + state.latency).max(state.last_answer.unwrap_or(now));
                    state.last_answer = Some(answer_at);
                    async move {
                        tokio::time::sleep_until(answer_at).await;
                        Ok(answer)
                    }
                    .boxed()
                }
            }
        }
    }
}

/// Wakes the client of the queue head `member` for `key`.
fn wake(wakes: &broadcast::Sender<Released>, key: String, (member, grant): (String, QueueGrant)) {
    // no receiver is fine: the head's client is gone, its grant lapses
    let _ = wakes.send(Released {
        key,
        by: String::new(),
        to: Some(client_of(&member).to_owned()),
        grant: Some(grant),
    });
}

/// The smaller of two tickets, either of which may be missing.
fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl State {
    fn holds(&self, key: &str, token: &str) -> bool {
        self.store.holds(key, token.as_bytes())
    }

    /// acquire.lua on this node's state.
    fn acquire(
        &mut self,
        keys: &[String],
        token: &str,
        ttl: Duration,
        fenced: bool,
        queue: Option<&QueueEntry>,
    ) -> AcquireReply {
        let now = self.store.now();
        let mine = queue.map(|q| claim_for(&q.member));
        let mut refused = None;
        for (index, key) in keys.iter().enumerate() {
            if queue.is_some() {
                self.queues.prune(key, now);
            }
            if let Some(remaining) = self.store.ttl(key) {
                let claimed_for_us = mine
                    .as_ref()
                    .is_some_and(|m| self.store.holds(key, m.as_bytes()));
                if !claimed_for_us {
                    let holder = Holder::from_script(&self.store.holder_of(self.store.get(key)));
                    refused = Some((index, remaining, holder));
                    break;
                }
            } else if self.queues.behind(key, queue, now) {
                refused = Some((index, None, None));
                break;
            }
        }
        if let Some((index, remaining, holder)) = refused {
            let now_ms = self.store.now_ms();
            let mut deadline = None;
            let rank = queue.and_then(|entry| {
                for key in keys {
                    deadline = Some(self.queues.enqueue(key, entry, now, now_ms));
                }
                self.queues.rank(&keys[index], &entry.member)
            });
            return AcquireReply::Taken {
                index,
                remaining,
                rank,
                holder,
                deadline,
            };
        }
        let mut fence = None;
        let (mut next, mut next_fair): (Option<u64>, Option<u64>) = (None, None);
        for key in keys {
            if fenced {
                let floor = self.store.fence_floor;
                let counter = self.fences.entry(fence_key(key)).or_default();
                *counter = (*counter + 1).max(floor + 1);
                fence = fence.max(Some(*counter));
            }
            self.store.set(key, token.as_bytes(), Some(ttl));
            if let Some(entry) = queue {
                self.queues.remove(key, &entry.member);
                let (first, first_fair) = self.queues.first_tickets(key);
                next = earliest(next, first);
                next_fair = earliest(next_fair, first_fair);
            }
        }
        AcquireReply::Granted {
            fence,
            next,
            next_fair,
        }
    }

    fn extend(&mut self, keys: &[String], token: &str, ttl: Duration) -> bool {
        if !keys.iter().all(|k| self.holds(k, token)) {
            return false;
        }
        // never shortens (extend.lua's twin)
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        for key in keys {
            if self.store.pttl(key) < ms {
                self.store.pexpire(key, ttl);
            }
        }
        true
    }
}

impl Node for MemoryNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn acquire(
        &self,
        keys: &[String],
        token: &str,
        ttl: Duration,
        fenced: bool,
        queue: Option<&QueueEntry>,
    ) -> NodeFuture<AcquireReply> {
        let keys = keys.to_vec();
        let token = token.to_owned();
        let queue = queue.cloned();
        self.call_granting(move |state| state.acquire(&keys, &token, ttl, fenced, queue.as_ref()))
    }

    fn leave_queue(&self, keys: &[String], member: &str) -> NodeFuture<()> {
        let keys = keys.to_vec();
        let member = member.to_owned();
        let wakes = self.released.clone();
        self.call(move |state| {
            let (now, now_ms) = (state.store.now(), state.store.now_ms());
            for key in keys {
                state.queues.remove(&key, &member);
                if state.store.holds(&key, claim_for(&member).as_bytes()) {
                    if let Some(head) =
                        state
                            .queues
                            .pass_on(&mut state.store, &key, HEAD_CLAIM, now, now_ms)
                    {
                        wake(&wakes, key, head);
                    }
                }
            }
        })
    }

    fn raise_fence(&self, keys: &[String], fence: u64) -> NodeFuture<()> {
        let keys = keys.to_vec();
        self.call(move |state| {
            for key in keys {
                let counter = state.fences.entry(fence_key(&key)).or_default();
                *counter = (*counter).max(fence);
            }
        })
    }

    fn release(&self, keys: &[String], token: &str, announce: Option<&str>) -> NodeFuture<u64> {
        let keys = keys.to_vec();
        let token = token.to_owned();
        let announcer = announce.map(str::to_owned);
        let announce = self.released.clone();
        self.call(move |state| {
            let mut deleted = 0;
            let (now, now_ms) = (state.store.now(), state.store.now_ms());
            for key in keys {
                if !state.holds(&key, &token) {
                    continue;
                }
                deleted += 1;
                if let Some(head) =
                    state
                        .queues
                        .pass_on(&mut state.store, &key, HEAD_CLAIM, now, now_ms)
                {
                    wake(&announce, key.clone(), head);
                }
                let Some(by) = &announcer else {
                    continue;
                };
                // no receiver is fine: nobody waits
                let _ = announce.send(Released {
                    key,
                    by: by.clone(),
                    to: None,
                    grant: None,
                });
            }
            deleted
        })
    }

    fn eval(
        &self,
        script: &'static NodeScript,
        keys: Vec<String>,
        args: Vec<Vec<u8>>,
    ) -> NodeFuture<ScriptValue> {
        let Some(emulation) = script.emulation() else {
            let error = NodeError::new(format!(
                "{} cannot run script `{}`: it has no in-memory twin",
                self.name,
                script.name()
            ));
            return future::ready(Err(error)).boxed();
        };
        let name = self.name.clone();
        let announce = self.released.clone();
        let run = move |state: &mut State| {
            let answer = emulation(&mut state.store, &keys, &args);
            for key in state.store.take_announced() {
                // another client's announcement to every watcher; nobody
                // listening is fine
                let _ = announce.send(Released {
                    key,
                    by: String::new(),
                    to: None,
                    grant: None,
                });
            }
            answer
        };
        let answer = if script.is_granting() {
            self.call_granting(run)
        } else {
            self.call(run)
        };
        answer
            .map(move |answer| {
                answer?
                    .map_err(|e| NodeError::new(format!("{name}: script `{}`: {e}", script.name())))
            })
            .boxed()
    }

    fn releases(&self) -> Option<broadcast::Receiver<Released>> {
        Some(self.released.subscribe())
    }

    fn set_max_ttl(&self, max_ttl: Duration) {
        self.lock_state().max_ttl = Some(max_ttl);
    }

    fn declare_fresh(&self) -> NodeFuture<bool> {
        self.call(|state| {
            let now = state.store.now();
            state.marker.declare_fresh(now)
        })
    }

    fn extend(&self, keys: &[String], token: &str, ttl: Duration) -> NodeFuture<bool> {
        let keys = keys.to_vec();
        let token = token.to_owned();
        self.call(move |state| state.extend(&keys, &token, ttl))
    }

    fn extend_many(&self, locks: &[ExtendRequest]) -> NodeFuture<Vec<bool>> {
        let locks = locks.to_vec();
        self.call(move |state| {
            state.extends += 1;
            locks
                .iter()
                .map(|l| state.extend(&l.keys, &l.token, l.ttl))
                .collect()
        })
    }
}
