//! The waiter queues of a [`MemoryNode`](super::MemoryNode): the native
//! twin of `scripts/queue.lua` (same order, lifetimes, claims and
//! wake-ups), so the in-memory backend runs the same queue logic.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::memory_store::{expires_at, MemoryStore};
use crate::backend::queue_protocol::{QueueEntry, FAIR_SUFFIX};

/// One queued waiter.
#[derive(Debug, Clone)]
struct Waiter {
    ticket: u64,
    member: String,
    deadline: Instant,
}

/// Every key's queue on one memory node.
#[derive(Clone, Debug, Default)]
pub(super) struct MemoryQueues {
    queues: BTreeMap<String, Vec<Waiter>>,
}

/// The claim value a release leaves in the key for `member`.
pub(super) fn claim_for(member: &str) -> String {
    format!("q:{member}")
}

/// The client id part of a member (`<client>:<sequence>`).
pub(super) fn client_of(member: &str) -> &str {
    member.split(':').next().unwrap_or(member)
}

impl MemoryQueues {
    /// Drops the lapsed entries of `key`'s queue, then its head.
    fn pruned_head(&mut self, key: &str, now: Instant) -> Option<&Waiter> {
        let queue = self.queues.get_mut(key)?;
        queue.retain(|w| w.deadline > now);
        if queue.is_empty() {
            self.queues.remove(key);
            return None;
        }
        self.queues.get(key).and_then(|q| q.first())
    }

    /// Prunes `key`'s queue (as acquire.lua does before looking).
    pub(super) fn prune(&mut self, key: &str, now: Instant) {
        self.pruned_head(key, now);
    }

    /// Whether a request for a free `key` must let a queued waiter go
    /// first: a fair waiter ahead of it (every waiter is ahead of a request
    /// that does not queue), or for a fair `entry` any waiter ahead of it
    /// (queue.lua's `fair_ahead` and acquire.lua's `behind`).
    pub(super) fn behind(&mut self, key: &str, entry: Option<&QueueEntry>, now: Instant) -> bool {
        self.pruned_head(key, now);
        let Some(queue) = self.queues.get(key) else {
            return false;
        };
        let fair_entry = entry.is_some_and(|e| e.fair);
        queue
            .iter()
            .take_while(|w| {
                entry.is_none_or(|e| {
                    w.member != e.member && (w.ticket, w.member.as_str()) < (e.ticket, &e.member)
                })
            })
            .any(|w| fair_entry || w.member.ends_with(FAIR_SUFFIX))
    }

    /// Adds or refreshes `entry` in `key`'s queue (its place is kept).
    pub(super) fn enqueue(&mut self, key: &str, entry: &QueueEntry, now: Instant) {
        let deadline = expires_at(now, entry.lifetime);
        let queue = self.queues.entry(key.to_owned()).or_default();
        match queue.iter_mut().find(|w| w.member == entry.member) {
            Some(waiter) => waiter.deadline = deadline,
            None => {
                let waiter = Waiter {
                    ticket: entry.ticket,
                    member: entry.member.clone(),
                    deadline,
                };
                let at = queue
                    .iter()
                    .position(|w| (w.ticket, &w.member) > (waiter.ticket, &waiter.member))
                    .unwrap_or(queue.len());
                queue.insert(at, waiter);
            }
        }
    }

    /// How many waiters `key`'s queue holds.
    pub(super) fn len(&self, key: &str) -> usize {
        self.queues.get(key).map_or(0, Vec::len)
    }

    /// `member`'s place in `key`'s queue (0: the head).
    pub(super) fn rank(&self, key: &str, member: &str) -> Option<u64> {
        let queue = self.queues.get(key)?;
        let at = queue.iter().position(|w| w.member == member)?;
        u64::try_from(at).ok()
    }

    /// Removes `member` from `key`'s queue.
    pub(super) fn remove(&mut self, key: &str, member: &str) {
        if let Some(queue) = self.queues.get_mut(key) {
            queue.retain(|w| w.member != member);
            if queue.is_empty() {
                self.queues.remove(key);
            }
        }
    }

    /// The tickets of the first waiter and of the first fair waiter of
    /// `key`.
    pub(super) fn first_tickets(&self, key: &str) -> (Option<u64>, Option<u64>) {
        let Some(queue) = self.queues.get(key) else {
            return (None, None);
        };
        let first_fair = queue.iter().find(|w| w.member.ends_with(FAIR_SUFFIX));
        (
            queue.first().map(|w| w.ticket),
            first_fair.map(|w| w.ticket),
        )
    }

    /// After the holder's delete: claims `key` for the head for `claim` and
    /// returns the head's member to wake, or deletes the key when nobody
    /// waits (as `pass_on` in queue.lua).
    pub(super) fn pass_on(
        &mut self,
        store: &mut MemoryStore,
        key: &str,
        claim: Duration,
        now: Instant,
    ) -> Option<String> {
        match self.pruned_head(key, now).map(|w| w.member.clone()) {
            Some(member) => {
                store.set(key, claim_for(&member).as_bytes(), Some(claim));
                Some(member)
            }
            None => {
                store.del(key);
                None
            }
        }
    }
}
