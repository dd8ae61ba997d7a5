//! The waiter queue kept on the servers, per lock key: only the next waiter
//! wakes.
//!
//! A waiter that was refused joins the key's queue on every node it reaches
//! (each node keeps its own queue). Entries are ordered by the waiter's
//! *ticket*, the start of its lock call in microseconds on the servers'
//! clock as the waiter sees it ([`ServerClock`]), the same on every node, so nodes whose queues hold the same waiters
//! agree on their order, and nodes that missed an entry disagree only about
//! waiters they never saw. A release grants the key to the queue's head
//! (its grant token, for its ttl but no longer than its entry would have
//! lived, at least [`HEAD_CLAIM`]; others are refused meanwhile) and wakes
//! the head's client on its own channel; nobody else wakes. The head holds
//! the lock without a round when a majority's grants answer its latest
//! refused round (`waiter.rs`). An entry lasts its
//! lifetime ([`LockOptions::waiter_ttl`](crate::LockOptions::waiter_ttl))
//! unless refreshed (every waiting round refreshes it), so a crashed waiter
//! leaves the queue by itself.
//!
//! Why nobody deadlocks: a key is granted to whoever reaches it free or
//! granted to them (and, with `fair(true)`, only if no waiter with a
//! smaller ticket is queued there). The waiter with the smallest ticket is
//! first in every queue it joined, so it is refused only where a holder or
//! a grant to someone else is, and both expire; a split vote is undone and
//! retried as in plain Redlock. A dead or stalled minority only misses
//! entries and wake-ups: the head is woken by the first node that answers.
//!
//! See ARCHITECTURE.md, "Waiting: three queues, one order", for how this fits the whole.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::backend::queue_protocol::{QueueEntry, FAIR_SUFFIX};
use crate::backend::Node;
use crate::background::Background;
use crate::lease::Token;
use crate::quorum::{self, Decide};
use crate::server_clock::ServerClock;

/// The first waiters of other processes still queued on the nodes that
/// granted a lock (the smallest tickets they reported): whom a local
/// hand-off must not pass over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct NextWaiters {
    /// The first waiter's ticket.
    pub any: Option<u64>,
    /// The first fair waiter's ticket.
    pub fair: Option<u64>,
}

impl NextWaiters {
    /// Whether a waiter of this process with `ticket` came before every
    /// waiter of another process.
    pub(crate) fn first(&self, ticket: u64) -> bool {
        self.any.is_none_or(|next| ticket < next)
    }

    /// Whether a waiter of this process with `ticket` (`fair` or not) may
    /// be handed the lock at all: `fair(true)` is a waiter's promise, so
    /// nobody passes over a fair waiter, and a fair waiter passes over
    /// nobody.
    pub(crate) fn allow(&self, ticket: u64, fair: bool) -> bool {
        self.fair.is_none_or(|next| ticket < next) && (!fair || self.first(ticket))
    }
}

/// How long a key set this client found taken counts as contended: a call
/// for it then queues from its first round (one round instead of a plain
/// refused one plus a queued one).
const CONTENDED_FOR: Duration = Duration::from_secs(1);

/// Remembered contended key sets beyond which old ones are dropped.
const CONTENDED_MAX: usize = 4096;

/// Hands out this client's queue entries, and remembers which key sets it
/// recently found taken.
#[derive(Debug)]
pub(crate) struct Tickets {
    client: String,
    contended: Mutex<BTreeMap<Arc<[String]>, Instant>>,
    /// The servers' clock, that tickets are read on.
    pub(crate) clock: Arc<ServerClock>,
}

impl Tickets {
    pub(crate) fn new(client: &str) -> Self {
        Tickets {
            client: client.to_owned(),
            contended: Mutex::default(),
            clock: Arc::default(),
        }
    }

    fn contended_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Arc<[String]>, Instant>> {
        self.contended.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this client found `keys` taken within the last second.
    pub(crate) fn recently_contended(&self, keys: &[String]) -> bool {
        self.contended_map()
            .get(keys)
            .is_some_and(|at| at.elapsed() < CONTENDED_FOR)
    }

    /// Remembers that `keys` were found taken now.
    pub(crate) fn mark_contended(&self, keys: &Arc<[String]>) {
        let mut map = self.contended_map();
        if map.len() >= CONTENDED_MAX {
            map.retain(|_, at| at.elapsed() < CONTENDED_FOR);
        }
        map.insert(Arc::clone(keys), Instant::now());
    }

    /// The ticket of a lock call that starts now: microseconds since the
    /// Unix epoch on the servers' clock.
    pub(crate) fn ticket(&self) -> u64 {
        self.clock.now_micros()
    }

    /// A new entry for a lock call with `ticket`, that a release grants the
    /// key to with `grant` for `ttl` (see queue.lua).
    pub(crate) fn entry(
        &self,
        ticket: u64,
        lifetime: Duration,
        fair: bool,
        grant: Token,
        ttl: Duration,
    ) -> QueueEntry {
        // the servers know a fair waiter by its name (queue.lua's fair_ahead)
        let fair_mark = if fair { FAIR_SUFFIX } else { "" };
        let (grant, ttl) = (grant.to_hex(), ttl.as_millis());
        QueueEntry {
            member: format!("{}:{grant}:{ttl}{fair_mark}", self.client),
            ticket,
            lifetime,
            fair,
        }
    }
}

/// A lock call's place in the servers' queues; leaves them on drop, from
/// every node that may hold the entry: all of them once a queued round was
/// sent (even if the call is cancelled before any answer), the nodes that
/// did not grant once a round granted (a granting node removed it).
///
/// Not in a queue until [`sent`](Self::sent): a call that never sent a
/// queued round sends nothing more.
#[derive(Debug)]
pub(crate) struct QueuePlace {
    pub entry: QueueEntry,
    nodes: Vec<Arc<dyn Node>>,
    keys: Arc<[String]>,
    timeout: Duration,
    joined: bool,
    /// Where the leaving is sent from, counted.
    background: Arc<Background>,
}

impl QueuePlace {
    pub(crate) fn new(
        entry: QueueEntry,
        nodes: &[Arc<dyn Node>],
        keys: &Arc<[String]>,
        timeout: Duration,
        background: &Arc<Background>,
    ) -> Self {
        QueuePlace {
            entry,
            nodes: nodes.to_vec(),
            keys: Arc::clone(keys),
            timeout,
            joined: false,
            background: Arc::clone(background),
        }
    }

    /// A queued round is about to be sent: from now on the entry may be on
    /// any node.
    pub(crate) fn sent(&mut self) {
        self.joined = true;
    }

    /// A round granted the lock: the nodes that granted (`granting[i]`)
    /// removed the entry; the others still hold it, and with `fair(true)`
    /// would hold back later waiters until it lapses, so it leaves them.
    pub(crate) fn granted(&mut self, granting: &[bool]) {
        let nodes = std::mem::take(&mut self.nodes);
        self.nodes = nodes
            .into_iter()
            .zip(granting.iter().copied().chain(std::iter::repeat(false)))
            .filter(|(_, granted)| !granted)
            .map(|(node, _)| node)
            .collect();
        self.joined = !self.nodes.is_empty();
    }
}

impl Drop for QueuePlace {
    fn drop(&mut self) {
        if !self.joined || self.nodes.is_empty() {
            return;
        }
        // Outside a runtime nothing can be sent; the entry lapses.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let nodes = std::mem::take(&mut self.nodes);
        let keys = Arc::clone(&self.keys);
        let member = std::mem::take(&mut self.entry.member);
        let timeout = self.timeout;
        self.background.spawn(&handle, async move {
            quorum::round(
                "leave_queue",
                &nodes,
                timeout,
                Decide::Sent,
                |_| true,
                |node| node.leave_queue(&keys, &member),
            )
            .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_ordered_by_call_named_by_client_and_marked_fair() {
        let tickets = Tickets::new("c1");
        let second = Duration::from_secs(1);
        let a = tickets.entry(
            tickets.ticket(),
            second,
            false,
            Token::from_hex(&format!("{:032x}", 1)).expect("hex"),
            second,
        );
        let b = tickets.entry(
            tickets.ticket(),
            second,
            true,
            Token::from_hex(&format!("{:032x}", 2)).expect("hex"),
            second,
        );
        assert_eq!(a.member, format!("c1:{:032x}:1000", 1));
        assert_eq!(
            b.member,
            format!("c1:{:032x}:1000:f", 2),
            "a fair entry is marked"
        );
        assert!(a.ticket <= b.ticket);
        assert!(b.fair && !a.fair);
    }
}
