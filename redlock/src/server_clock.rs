//! The servers' clock as this client sees it. Queue tickets order waiters
//! from every client alike only if they are read on one clock: a client
//! whose own clock is behind would otherwise always go first, and one whose
//! clock is ahead would wait behind everyone (with `fair(true)`, for as
//! long as others keep coming). Every registration of the client's
//! description ([`Owner::register`](crate::owner::Owner::register), at
//! start and every few hours) returns the node's time; the client keeps
//! each node's offset from its own clock and reads tickets on its clock
//! plus the median offset.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Each node's clock minus this client's, in microseconds, and their
/// median, kept up to date as answers come in (every ticket reads it; an
/// answer comes every few hours).
#[derive(Debug, Default)]
pub(crate) struct ServerClock {
    offsets: Mutex<BTreeMap<String, i64>>,
    median: AtomicI64,
}

impl ServerClock {
    /// Records a node's time `server` (µs since the Unix epoch), answered
    /// to a request sent at `sent` and answered at `answered` by this
    /// client's clock: the node read it halfway, as far as this client can
    /// tell.
    pub(crate) fn observe(&self, node: &str, server: i64, sent: Duration, answered: Duration) {
        let midpoint = (micros(sent) + micros(answered)) / 2;
        let mut offsets = self.offsets.lock().unwrap_or_else(PoisonError::into_inner);
        offsets.insert(node.to_owned(), server - midpoint);
        let mut sorted: Vec<i64> = offsets.values().copied().collect();
        sorted.sort_unstable();
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2
        };
        self.median.store(median, Ordering::Relaxed);
    }

    /// The median of the nodes' offsets (µs), 0 before any answered: a
    /// minority of nodes with wrong clocks does not move it far.
    pub(crate) fn offset(&self) -> i64 {
        self.median.load(Ordering::Relaxed)
    }

    /// Now on the servers' clock, in µs since the Unix epoch.
    pub(crate) fn now_micros(&self) -> u64 {
        let local = micros(crate::determinism::wall_clock());
        u64::try_from(local.saturating_add(self.offset())).unwrap_or(0)
    }
}

fn micros(since_epoch: Duration) -> i64 {
    i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_offset_ignores_a_minority_of_wrong_clocks() {
        let clock = ServerClock::default();
        assert_eq!(clock.offset(), 0);
        let s = Duration::from_secs;
        // sent at 100 s, answered at 102 s: read at 101 s by this clock
        clock.observe("a", 131_000_000, s(100), s(102));
        clock.observe("b", 130_000_000, s(100), s(102));
        clock.observe("c", 9_000_000_000, s(100), s(102));
        assert_eq!(clock.offset(), 30_000_000);
        clock.observe("c", 129_000_000, s(100), s(102));
        assert_eq!(clock.offset(), 29_000_000);
    }
}
