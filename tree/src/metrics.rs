//! Metrics through the `metrics` facade (the application installs the
//! recorder). Paths never become labels.
//!
//! Besides these, a tree guard reports through quorate-redlock's metrics
//! with `primitive="tree"`: releases, extensions, hold time, lost locks,
//! locks held, and per-node errors and latency (`op="tree_acquire"` for
//! the tree script).

use std::sync::Once;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_histogram, histogram};

/// Tree lock calls by final outcome (`granted`, `conflict`, `no_quorum`,
/// `expired`, `invalid`).
pub const ACQUIRE_TOTAL: &str = "quorate_tree_acquire_total";
/// Acquisition rounds sent (several per call while the node is blocked).
pub const ACQUIRE_ROUNDS_TOTAL: &str = "quorate_tree_acquire_rounds_total";
/// Seconds from the lock call to its result, by outcome.
pub const ACQUIRE_WAIT_SECONDS: &str = "quorate_tree_acquire_wait_seconds";
/// Refused rounds by what blocked them (`relation`: `ancestor`, `self`,
/// `descendant`).
pub const CONFLICTS_TOTAL: &str = "quorate_tree_conflicts_total";

static DESCRIBE: Once = Once::new();

/// Declares every metric once per process.
pub(crate) fn describe() {
    DESCRIBE.call_once(|| {
        describe_counter!(ACQUIRE_TOTAL, "Tree lock calls by final outcome");
        describe_counter!(ACQUIRE_ROUNDS_TOTAL, "Tree acquisition rounds sent");
        describe_histogram!(
            ACQUIRE_WAIT_SECONDS,
            metrics::Unit::Seconds,
            "Time from tree lock call to result"
        );
        describe_counter!(CONFLICTS_TOTAL, "Refused tree rounds by blocking relation");
    });
}

pub(crate) fn round() {
    counter!(ACQUIRE_ROUNDS_TOTAL).increment(1);
}

pub(crate) fn conflict(relation: &'static str) {
    counter!(CONFLICTS_TOTAL, "relation" => relation).increment(1);
}

pub(crate) fn acquire_done(outcome: &'static str, waited: Duration) {
    counter!(ACQUIRE_TOTAL, "outcome" => outcome).increment(1);
    histogram!(ACQUIRE_WAIT_SECONDS, "outcome" => outcome).record(waited.as_secs_f64());
}
