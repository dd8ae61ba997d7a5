//! Quarantine of nodes that lost their data.
//!
//! Redlock's known hole: a node restarted without persistence (or flushed,
//! or failed over to an empty replica) has forgotten the leases it granted,
//! and can vote for a second holder while the first still has validity.
//! A node restarted from an RDB snapshot, or a promoted replica that missed
//! the last writes, is the same hole with the marker kept: it has forgotten
//! what was written after the snapshot (leases, fence counts).
//! Every script that can grant (`acquire.lua`, `batch.lua`, the pool's and
//! the tree's) starts with `scripts/quarantine.lua`: each node keeps a
//! marker key without ttl ([`MARKER_KEY`]) naming the server process
//! (`run_id`) it was written under. A granting script that finds it gone,
//! or written under another process (the node restarted, or a replica was
//! promoted), marks it again and refuses every vote for the longest ttl any
//! client may use ([`RedlockBuilder::max_ttl`], default
//! [`DEFAULT_MAX_TTL`]), by which time every forgotten lease has expired.
//! Every restart counts, whatever the persistence: a script cannot read
//! `appendfsync`, and a flag kept in the data would follow it to a replica.
//! The state is on the server, so clients agree without talking to each
//! other.
//!
//! A server that never held a lock has no marker either: declare it fresh
//! ([`Redlock::declare_fresh`]) and it votes at once; the same call, made
//! before any lock call reaches it, spares a restarted server that kept
//! every write (AOF with `appendfsync always`) its quarantine.
//!
//! [`RedlockBuilder::max_ttl`]: crate::RedlockBuilder::max_ttl
//! [`Redlock::declare_fresh`]: crate::Redlock::declare_fresh
//!
//! See ARCHITECTURE.md, "Quarantine after data loss", for how this fits the whole.

use std::time::Duration;

use super::NodeError;

/// The marker key every node keeps (no ttl): `<why>:<ms>:<run_id>`, with
/// `why` `fresh` when declared fresh, `lost` or `restarted` when a
/// quarantine began, the server's time, and the `run_id` of the server
/// process that wrote it (a restart or a replica's promotion changes it).
pub const MARKER_KEY: &str = "quorate:marker";

/// The key that exists (with a ttl) while a node is quarantined.
pub const QUARANTINE_KEY: &str = "quorate:quarantine";

/// The default longest ttl of any lease, and so the quarantine of a node
/// that lost its data: 60 s.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(60);

/// The Lua prelude of granting scripts.
pub(crate) const QUARANTINE_LUA: &str = include_str!("../../scripts/quarantine.lua");

/// The error a granting script answers on a quarantined node, then the ms left.
const REFUSAL: &str = "QUORATE_QUARANTINED ";

/// What [`NodeError`]s of a quarantined node start with, then the ms left.
const MESSAGE: &str = "quarantined for ";

/// The error of a node that refused to vote for `left` more.
pub(crate) fn refusal(left: Duration) -> NodeError {
    NodeError::new(format!(
        "{MESSAGE}{} ms more: the node lost its data or restarted (restart without \
         persistence or from an RDB snapshot, FLUSHALL, failover) and votes again once \
         every lease it may have forgotten has expired",
        left.as_millis()
    ))
}

/// The node error for a server's error reply: a quarantine refusal becomes
/// [`refusal`], anything else is kept as `other`.
pub(crate) fn from_server_error(details: &str, other: impl FnOnce() -> NodeError) -> NodeError {
    match details
        .find(REFUSAL)
        .map(|at| &details[at + REFUSAL.len()..])
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|ms| ms.parse::<u64>().ok())
    {
        Some(ms) => refusal(Duration::from_millis(ms)),
        None => other(),
    }
}

/// How long a node that answered `error` stays quarantined, if that is why
/// it failed.
pub(crate) fn left(error: &str) -> Option<Duration> {
    let rest = error.strip_prefix(MESSAGE)?;
    let ms = rest.split(' ').next()?.parse().ok()?;
    Some(Duration::from_millis(ms))
}

/// The memory node's marker: the same rules as `quarantine.lua`, on tokio
/// time, with a counter standing for the server's `run_id`.
#[cfg(feature = "memory")]
#[derive(Clone, Debug)]
pub(crate) struct MemoryMarker {
    /// The node's current run; a simulated restart begins the next one.
    run: u64,
    /// The run the marker was written in; `None`: no marker.
    marked: Option<u64>,
    /// When the running quarantine began, and when it ends.
    quarantine: Option<(tokio::time::Instant, tokio::time::Instant)>,
    /// quarantine.lua's `fence_floor`: above every fence handed out before
    /// the data was lost (the loss's time in µs since the node was made).
    fence_floor: u64,
    /// When the node was made: its clock's zero for the fence floor.
    born: tokio::time::Instant,
    /// The run in which the marker was rewritten after a loss or restart
    /// (quarantine.lua's `restart_mark`), until declared fresh.
    lost_in_run: Option<u64>,
}

#[cfg(feature = "memory")]
impl Default for MemoryMarker {
    /// A new memory node cannot have lost anything: it starts declared fresh.
    fn default() -> Self {
        MemoryMarker {
            run: 0,
            marked: Some(0),
            quarantine: None,
            fence_floor: 0,
            born: tokio::time::Instant::now(),
            lost_in_run: None,
        }
    }
}

#[cfg(feature = "memory")]
impl MemoryMarker {
    /// The node lost its data (the marker went with it).
    pub(crate) fn lose(&mut self) {
        self.marked = None;
    }

    /// The node's process restarted (a new `run_id`) with `data`'s marker
    /// and quarantine: what its persistence kept.
    pub(crate) fn restart_with(&mut self, data: &MemoryMarker) {
        self.marked = data.marked;
        self.quarantine = data.quarantine;
        self.fence_floor = data.fence_floor;
        self.lost_in_run = data.lost_in_run;
        self.run += 1;
    }

    /// quarantine.lua's `restart_mark`: `Some` (naming this run) while the
    /// marker says the node lost data or restarted.
    pub(crate) fn restart_mark(&self) -> Option<Vec<u8>> {
        (self.lost_in_run.is_some() && self.lost_in_run == self.marked)
            .then(|| format!("restarted:{}", self.run).into_bytes())
    }

    /// The floor fenced counters are kept above (see quarantine.lua).
    pub(crate) fn fence_floor(&self) -> u64 {
        self.fence_floor
    }

    /// Declares the node fresh if its marker is missing or from an earlier
    /// run and no quarantine is running; whether it did.
    pub(crate) fn declare_fresh(&mut self, now: tokio::time::Instant) -> bool {
        let running = self.quarantine.is_some_and(|(_, ends)| ends > now);
        if self.marked == Some(self.run) || running {
            return false;
        }
        self.marked = Some(self.run);
        self.lost_in_run = None;
        true
    }

    /// Before a granting call: `Err` while the node must not vote.
    pub(crate) fn check(
        &mut self,
        now: tokio::time::Instant,
        max_ttl: Duration,
    ) -> Result<(), NodeError> {
        // lost or written by an earlier run (restart, promoted replica)
        if self.marked != Some(self.run) {
            self.marked = Some(self.run);
            self.lost_in_run = Some(self.run);
            self.quarantine = Some((now, now + max_ttl));
            // + 1 s: above the fences of a node that never lost anything.
            // tokio's clock, not the node's (which may run fast or slow):
            // wall clocks agree, as the Lua floor assumes.
            let since = tokio::time::Instant::now()
                .saturating_duration_since(self.born)
                .as_micros();
            self.fence_floor = u64::try_from(since).unwrap_or(u64::MAX / 2) + 1_000_000;
        }
        let Some((began, mut ends)) = self.quarantine else {
            return Ok(());
        };
        if ends <= now {
            self.quarantine = None;
            return Ok(());
        }
        ends = ends.max(began + max_ttl);
        self.quarantine = Some((began, ends));
        Err(refusal(ends - now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_refusal_becomes_a_readable_error_that_names_the_time_left() {
        let e = from_server_error("QUORATE_QUARANTINED 1234 script: ...", || {
            NodeError::new("other")
        });
        assert!(
            e.message().starts_with("quarantined for 1234 ms more"),
            "{e}"
        );
        assert_eq!(left(e.message()), Some(Duration::from_millis(1234)));
        let other = from_server_error("ERR wrong", || NodeError::new("other"));
        assert_eq!(other.message(), "other");
        assert_eq!(left("connection refused"), None);
    }

    #[cfg(feature = "memory")]
    #[tokio::test(start_paused = true)]
    async fn memory_marker_quarantines_a_lost_node_for_the_longest_max_ttl_seen() {
        let mut marker = MemoryMarker::default();
        let now = tokio::time::Instant::now();
        let max = Duration::from_secs(10);
        assert!(marker.check(now, max).is_ok(), "a new node votes");
        marker.lose();
        let e = marker.check(now, max).expect_err("lost: quarantined");
        assert_eq!(left(e.message()), Some(max));
        // a client allowing 20 s leases stretches it to 20 s from the loss
        let later = now + Duration::from_secs(5);
        let e = marker.check(later, 2 * max).expect_err("still quarantined");
        assert_eq!(left(e.message()), Some(Duration::from_secs(15)));
        assert!(marker.check(now + 2 * max, max).is_ok(), "votes again");
        assert!(!marker.declare_fresh(now + 2 * max), "already marked");
    }

    #[cfg(feature = "memory")]
    #[tokio::test(start_paused = true)]
    async fn memory_marker_quarantines_a_node_restarted_with_its_marker() {
        let mut marker = MemoryMarker::default();
        let now = tokio::time::Instant::now();
        let max = Duration::from_secs(10);
        let snapshot = marker.clone();
        marker.restart_with(&snapshot);
        let e = marker.check(now, max).expect_err("restarted: quarantined");
        assert_eq!(left(e.message()), Some(max));
        assert!(
            !marker.declare_fresh(now),
            "a quarantine is never cut short"
        );
        assert!(marker.check(now + max, max).is_ok(), "votes again");
        // restarted and declared fresh before any granting call: votes
        let snapshot = marker.clone();
        marker.restart_with(&snapshot);
        assert!(marker.declare_fresh(now + max), "declared");
        assert!(marker.check(now + max, max).is_ok());
    }
}
