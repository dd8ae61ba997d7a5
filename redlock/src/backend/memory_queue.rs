//! The waiter queues of a [`MemoryNode`](super::MemoryNode): the native
//! twin of `scripts/queue.lua` (same order, lifetimes, claims and
//! wake-ups), so the in-memory backend runs the same queue logic.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::memory_store::{expires_at, MemoryStore};
use crate::backend::queue_protocol::{grant_of, QueueEntry, FAIR_SUFFIX};
use crate::backend::QueueGrant;

/// One queued waiter.
#[derive(Debug, Clone)]
struct Waiter {
    ticket: u64,
    member: String,
    deadline: Instant,
    /// The deadline as queue.lua keeps it: the node's milliseconds.
    deadline_ms: u64,
}

/// Every key's queue on one memory node.
#[derive(Clone, Debug, Default)]
pub(super) struct MemoryQueues {
    queues: BTreeMap<String, Vec<Waiter>>,
}

/// The value a release grants the key to `member` with.
pub(super) fn claim_for(member: &str) -> String {
    grant_of(member).0
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

    /// Adds or refreshes `entry` in `key`'s queue (its place is kept);
    /// returns its deadline as queue.lua does (the node's ms, `now_ms`).
    pub(super) fn enqueue(
        &mut self,
        key: &str,
        entry: &QueueEntry,
        now: Instant,
        now_ms: u64,
    ) -> u64 {
        let deadline = expires_at(now, entry.lifetime);
        let deadline_ms =
            now_ms.saturating_add(u64::try_from(entry.lifetime.as_millis()).unwrap_or(u64::MAX));
        let queue = self.queues.entry(key.to_owned()).or_default();
        match queue.iter_mut().find(|w| w.member == entry.member) {
            Some(waiter) => {
                waiter.deadline = deadline;
                waiter.deadline_ms = deadline_ms;
            }
            None => {
                let waiter = Waiter {
                    ticket: entry.ticket,
                    member: entry.member.clone(),
                    deadline,
                    deadline_ms,
                };
                let at = queue
                    .iter()
                    .position(|w| (w.ticket, &w.member) > (waiter.ticket, &waiter.member))
                    .unwrap_or(queue.len());
                queue.insert(at, waiter);
            }
        }
        deadline_ms
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

    /// After the holder's delete: grants `key` to the head (its grant token,
    /// for its ttl but no longer than its entry would have lived, at least
    /// `claim`), removes the head from the queue and returns its member and
    /// the grant to wake it with; or deletes the key when nobody waits (as
    /// `pass_on` in queue.lua).
    pub(super) fn pass_on(
        &mut self,
        store: &mut MemoryStore,
        key: &str,
        claim: Duration,
        now: Instant,
        now_ms: u64,
    ) -> Option<(String, QueueGrant)> {
        match self.pruned_head(key, now).cloned() {
            Some(head) => {
                let (token, ttl) = grant_of(&head.member);
                let lives = head.deadline_ms.saturating_sub(now_ms);
                let ms = ttl
                    .min(lives)
                    .max(u64::try_from(claim.as_millis()).unwrap_or(0));
                store.set(key, token.as_bytes(), Some(Duration::from_millis(ms)));
                self.remove(key, &head.member);
                let grant = QueueGrant {
                    deadline: head.deadline_ms,
                    token,
                };
                Some((head.member, grant))
            }
            None => {
                store.del(key);
                None
            }
        }
    }
}
