//! A first-come-first-served queue per key among the waiting tasks of one
//! process.
//!
//! Only the head of the local queue contends on the servers; the others
//! wait here without sending anything, and the next one becomes head as
//! soon as the previous head was granted (or gave up). This removes
//! in-process vote splitting; the servers still decide everything: the
//! queue orders waiters, it never guards the lock itself (a holder whose
//! lease expired blocks nobody here).
//!
//! See ARCHITECTURE.md, "Waiting: three queues, one order", for how this fits the whole.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Debug, Default)]
pub(crate) struct LocalQueue {
    slots: Mutex<BTreeMap<String, Arc<AsyncMutex<()>>>>,
}

/// The head-of-queue position for a set of keys; gives it up on drop.
#[derive(Debug)]
pub(crate) struct LocalTurn {
    queue: Arc<LocalQueue>,
    keys: Vec<String>,
    permits: Vec<OwnedMutexGuard<()>>,
}

impl LocalQueue {
    /// Waits until this task is first in line for every key. Keys are taken
    /// in sorted order, so overlapping multi-key calls cannot deadlock.
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped call gives up the positions it took.
    pub(crate) async fn turn(self: &Arc<Self>, keys: &[String]) -> LocalTurn {
        let mut sorted = keys.to_vec();
        sorted.sort();
        let mut turn = LocalTurn {
            queue: Arc::clone(self),
            keys: sorted.clone(),
            permits: Vec::with_capacity(sorted.len()),
        };
        for key in &sorted {
            let slot = {
                let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                Arc::clone(slots.entry(key.clone()).or_default())
            };
            turn.permits.push(slot.lock_owned().await);
        }
        turn
    }
}

impl Drop for LocalTurn {
    fn drop(&mut self) {
        self.permits.clear();
        let mut slots = self.queue.slots.lock().unwrap_or_else(|e| e.into_inner());
        for key in &self.keys {
            // Only the map still refers to an idle slot: forget it.
            if slots.get(key).is_some_and(|s| Arc::strong_count(s) == 1) {
                slots.remove(key);
            }
        }
    }
}
