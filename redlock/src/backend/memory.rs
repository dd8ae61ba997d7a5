//! An in-process node with the same semantics as the Lua scripts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::{self, FutureExt};
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{fence_key, AcquireReply, ExtendRequest, Node, NodeError, NodeFuture, Released};

/// An in-memory node: for unit tests, users' own tests, deterministic fault
/// simulation and the demo when no Redis is at hand. Clones share state.
///
/// Time is tokio's, so tests with paused time can expire keys instantly.
/// Faults: [`set_down`](Self::set_down) makes every call fail,
/// [`set_stalled`](Self::set_stalled) makes every call hang (so the per-node
/// timeout fires), [`set_latency`](Self::set_latency) delays every answer.
#[derive(Clone, Debug)]
pub struct MemoryNode {
    name: String,
    state: Arc<Mutex<State>>,
    /// Every announced release (no per-key subscription needed in-process).
    released: broadcast::Sender<Released>,
}

#[derive(Debug, Default)]
struct State {
    keys: HashMap<String, Entry>,
    down: bool,
    stalled: bool,
    latency: Duration,
    /// Fence counters by counter key; they never expire.
    fences: HashMap<String, u64>,
    /// Batched extension requests served (each counts once, however many
    /// locks it carried).
    extends: u64,
}

#[derive(Debug)]
struct Entry {
    value: String,
    expires: Instant,
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

    /// How many batched extension requests (the watchdog's) this node
    /// served; single `extend` calls are not counted.
    pub fn batched_extends(&self) -> u64 {
        self.lock_state().extends
    }

    /// The live keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut state = self.lock_state();
        state.purge_expired();
        let mut keys: Vec<String> = state.keys.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// The remaining ttl of `key`, `None` when absent.
    pub fn ttl(&self, key: &str) -> Option<Duration> {
        let mut state = self.lock_state();
        state.purge_expired();
        state
            .keys
            .get(key)
            .map(|e| e.expires.saturating_duration_since(Instant::now()))
    }

    /// Forget every lock key (as if they were deleted behind our back).
    /// Fence counters survive, as on a server with persistence.
    pub fn flush(&self) {
        self.lock_state().keys.clear();
    }

    /// Forget everything, fence counters included: a restart without
    /// persistence (which fencing does not survive, see the README).
    pub fn forget_all(&self) {
        let mut state = self.lock_state();
        state.keys.clear();
        state.fences.clear();
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the map half-updated
        // (each operation checks before it writes), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `op` atomically, unless a fault is simulated.
    fn call<T: Send + 'static>(&self, op: impl FnOnce(&mut State) -> T) -> NodeFuture<T> {
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
                let err = NodeError(format!("{}: connection refused (simulated)", self.name));
                future::ready(Err(err)).boxed()
            }
            Fault::None => {
                state.purge_expired();
                let answer = op(&mut state);
                let latency = state.latency;
                if latency.is_zero() {
                    future::ready(Ok(answer)).boxed()
                } else {
                    async move {
                        tokio::time::sleep(latency).await;
                        Ok(answer)
                    }
                    .boxed()
                }
            }
        }
    }
}

impl State {
    fn purge_expired(&mut self) {
        let now = Instant::now();
        self.keys.retain(|_, e| e.expires > now);
    }

    fn holds(&self, key: &str, token: &str) -> bool {
        self.keys.get(key).is_some_and(|e| e.value == token)
    }

    fn extend(&mut self, keys: &[String], token: &str, ttl: Duration) -> bool {
        if !keys.iter().all(|k| self.holds(k, token)) {
            return false;
        }
        let expires = expires_at(Instant::now(), ttl);
        for key in keys {
            if let Some(e) = self.keys.get_mut(key) {
                e.expires = expires;
            }
        }
        true
    }
}

/// `now + ttl`, saturating where a hand-made absurd ttl would overflow.
fn expires_at(now: Instant, ttl: Duration) -> Instant {
    now.checked_add(ttl)
        .unwrap_or_else(|| now + crate::options::MAX_TTL)
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
    ) -> NodeFuture<AcquireReply> {
        let keys = keys.to_vec();
        let token = token.to_owned();
        self.call(move |state| {
            let now = Instant::now();
            for (index, key) in keys.iter().enumerate() {
                if let Some(e) = state.keys.get(key) {
                    let remaining = Some(e.expires.saturating_duration_since(now));
                    return AcquireReply::Taken { index, remaining };
                }
            }
            let expires = expires_at(now, ttl);
            let mut fence = None;
            for key in keys {
                if fenced {
                    let counter = state.fences.entry(fence_key(&key)).or_default();
                    *counter += 1;
                    fence = fence.max(Some(*counter));
                }
                let value = token.clone();
                state.keys.insert(key, Entry { value, expires });
            }
            AcquireReply::Granted { fence }
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
            for key in keys {
                if state.holds(&key, &token) {
                    state.keys.remove(&key);
                    deleted += 1;
                    if let Some(by) = &announcer {
                        // no receiver is fine: nobody waits
                        let _ = announce.send(Released {
                            key,
                            by: by.clone(),
                        });
                    }
                }
            }
            deleted
        })
    }

    fn releases(&self) -> Option<broadcast::Receiver<Released>> {
        Some(self.released.subscribe())
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
