//! Safety checkers: record what clients observed, then assert the invariants
//! a lock must keep (mutual exclusion, bounded concurrency, monotone fences).

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// One interval during which `holder` believed it held `resource`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// The locked resource (lock name, key, tree path, ...).
    pub resource: String,
    /// Who held it (a test-chosen client or task id).
    pub holder: u64,
    /// When the hold began (acquire returned).
    pub start: Instant,
    /// When the hold ended (just before release was sent). Half-open: a hold
    /// starting exactly at another's `end` does not overlap it.
    pub end: Instant,
}

/// Two holds that overlap in time on conflicting resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlap {
    /// The hold that started first.
    pub first: Hold,
    /// The hold that started before `first` ended.
    pub second: Hold,
}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b) = (&self.first, &self.second);
        write!(
            f,
            "holder {} acquired {:?} {:?} after holder {} acquired {:?}, \
             which it then held for another {:?}",
            b.holder,
            b.resource,
            b.start.saturating_duration_since(a.start),
            a.holder,
            a.resource,
            a.end.saturating_duration_since(b.start),
        )
    }
}

impl std::error::Error for Overlap {}

/// A thread-safe log of hold intervals. Clones share the same log, so give
/// one to every task and check once at the end.
#[derive(Clone, Debug, Default)]
pub struct HoldLog {
    holds: Arc<Mutex<Vec<Hold>>>,
}

impl HoldLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `holder` held `resource` from `start` to `end`.
    ///
    /// Panics if `end < start`: that is a bug in the test, not in the lock.
    pub fn record(&self, resource: &str, holder: u64, start: Instant, end: Instant) {
        assert!(
            end >= start,
            "hold of {resource:?} by {holder} ends before it starts"
        );
        lock(&self.holds).push(Hold {
            resource: resource.to_owned(),
            holder,
            start,
            end,
        });
    }

    /// The number of recorded holds.
    pub fn len(&self) -> usize {
        lock(&self.holds).len()
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        lock(&self.holds).is_empty()
    }

    /// A copy of every recorded hold, sorted by start.
    pub fn holds(&self) -> Vec<Hold> {
        let mut holds = lock(&self.holds).clone();
        holds.sort_by_key(|h| h.start);
        holds
    }

    /// Mutual exclusion: no two holds of the same resource overlap in time
    /// (whether by different holders or the same one).
    #[allow(
        clippy::result_large_err,
        reason = "called once per test; the fixed API returns the offending holds by value"
    )]
    pub fn check_exclusive(&self) -> Result<(), Overlap> {
        self.check_exclusive_by(|a, b| a == b)
    }

    /// General form of [`check_exclusive`](Self::check_exclusive): any two
    /// holds that overlap in time and whose resources `conflicts` (e.g. a
    /// tree path and its ancestor) are reported, earliest-starting pair first.
    #[allow(
        clippy::result_large_err,
        reason = "called once per test; the fixed API returns the offending holds by value"
    )]
    pub fn check_exclusive_by(
        &self,
        conflicts: impl Fn(&str, &str) -> bool,
    ) -> Result<(), Overlap> {
        let holds = self.holds();
        for (i, first) in holds.iter().enumerate() {
            // Sorted by start, so once one starts at or after `first` ends, all later ones do.
            for second in holds[i + 1..].iter().take_while(|h| h.start < first.end) {
                if conflicts(&first.resource, &second.resource) {
                    return Err(Overlap {
                        first: first.clone(),
                        second: second.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// How many holds began while `capacity` or more conflicting holds
    /// (by `conflicts`, as in [`check_exclusive_by`](Self::check_exclusive_by))
    /// were still in progress: every violation counted, not just the first;
    /// `capacity` 1 for a lock, k for k permits.
    pub fn count_overlaps_by(
        &self,
        capacity: usize,
        conflicts: impl Fn(&str, &str) -> bool,
    ) -> usize {
        let holds = self.holds();
        holds
            .iter()
            .enumerate()
            .filter(|&(i, hold)| {
                let concurrent = holds[..i]
                    .iter()
                    .filter(|earlier| earlier.end > hold.start)
                    .filter(|earlier| conflicts(&earlier.resource, &hold.resource))
                    .count();
                concurrent >= capacity
            })
            .count()
    }

    /// The largest number of holds (over all resources) in progress at any
    /// one instant: a semaphore's bound, or proof that work ran in parallel.
    pub fn max_concurrency(&self) -> usize {
        let holds = lock(&self.holds);
        // (time, +1 start / -1 end); ends sort before starts at the same
        // instant because intervals are half-open.
        let mut events: Vec<(Instant, i64)> = holds
            .iter()
            .filter(|h| h.end > h.start)
            .flat_map(|h| [(h.start, 1), (h.end, -1)])
            .collect();
        drop(holds);
        events.sort();
        let (mut current, mut max) = (0i64, 0i64);
        for (_, delta) in events {
            current += delta;
            max = max.max(current);
        }
        usize::try_from(max).unwrap_or(0)
    }
}

/// One fencing token as a client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FenceGrant {
    /// Who was granted the token.
    pub holder: u64,
    /// The token.
    pub fence: u64,
    /// When the acquire that returned it completed.
    pub granted_at: Instant,
}

/// A thread-safe log of fencing tokens, for checking that later grants
/// always carry larger tokens. Clones share the same log.
#[derive(Clone, Debug, Default)]
pub struct FenceLog {
    grants: Arc<Mutex<Vec<FenceGrant>>>,
}

impl FenceLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `holder` was granted `fence` at `granted_at`.
    pub fn record(&self, holder: u64, fence: u64, granted_at: Instant) {
        lock(&self.grants).push(FenceGrant {
            holder,
            fence,
            granted_at,
        });
    }

    /// The number of recorded grants.
    pub fn len(&self) -> usize {
        lock(&self.grants).len()
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        lock(&self.grants).is_empty()
    }

    /// A copy of every grant, sorted by `granted_at`.
    pub fn grants(&self) -> Vec<FenceGrant> {
        let mut grants = lock(&self.grants).clone();
        grants.sort_by_key(|g| g.granted_at);
        grants
    }

    /// Ordered by grant time, every fence is strictly greater than the one
    /// before; the error names the first offending pair.
    pub fn check_strictly_increasing(&self) -> Result<(), String> {
        let grants = self.grants();
        for pair in grants.windows(2) {
            let (before, after) = (&pair[0], &pair[1]);
            if after.fence <= before.fence {
                return Err(format!(
                    "fence {} granted to holder {} {:?} after fence {} granted to holder {} \
                     (fences must strictly increase)",
                    after.fence,
                    after.holder,
                    after
                        .granted_at
                        .saturating_duration_since(before.granted_at),
                    before.fence,
                    before.holder,
                ));
            }
        }
        Ok(())
    }
}

/// Locks, ignoring poisoning: a test thread that panicked mid-record must not
/// hide the log from the check that explains the failure.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
