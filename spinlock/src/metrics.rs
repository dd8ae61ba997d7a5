//! Metrics through the `metrics` facade (the application picks the
//! exporter). Keys never become labels. The quorum lock underneath also
//! reports redlock's `quorate_*` metrics, with `primitive="spinlock"`.

use std::sync::Once;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_histogram, histogram};

/// Spinlock acquisitions by outcome (`acquired`, `held`, `tries_exhausted`, `error`).
pub const ACQUIRE_TOTAL: &str = "quorate_spinlock_acquire_total";
/// `compute_once` calls by outcome (`cached`, `computed`, `compute_error`,
/// `hold_exceeded`, `held`, `tries_exhausted`, `error`).
pub const COMPUTE_TOTAL: &str = "quorate_spinlock_compute_total";
/// Seconds the computations of `compute_once` ran (finished or failed).
pub const COMPUTE_SECONDS: &str = "quorate_spinlock_compute_seconds";
/// Result stores by outcome (`stored`, `no_quorum`, `expired`: the hold
/// time ran out first, so nothing was written).
pub const STORE_TOTAL: &str = "quorate_spinlock_store_total";
/// Seconds from a call to its outcome, by operation (`acquire`, `compute_once`).
pub const WAIT_SECONDS: &str = "quorate_spinlock_wait_seconds";

static DESCRIBE: Once = Once::new();

/// Declares every metric once per process.
pub(crate) fn describe() {
    DESCRIBE.call_once(|| {
        describe_counter!(ACQUIRE_TOTAL, "Spinlock acquisitions by outcome");
        describe_counter!(COMPUTE_TOTAL, "compute_once calls by outcome");
        describe_histogram!(
            COMPUTE_SECONDS,
            metrics::Unit::Seconds,
            "Time the single-flight computations ran"
        );
        describe_counter!(STORE_TOTAL, "Result stores by outcome");
        describe_histogram!(
            WAIT_SECONDS,
            metrics::Unit::Seconds,
            "Time from a spinlock call to its outcome"
        );
    });
}

pub(crate) fn acquired(outcome: &'static str, waited: Duration) {
    counter!(ACQUIRE_TOTAL, "outcome" => outcome).increment(1);
    histogram!(WAIT_SECONDS, "op" => "acquire").record(waited.as_secs_f64());
}

pub(crate) fn computed(outcome: &'static str, waited: Duration) {
    counter!(COMPUTE_TOTAL, "outcome" => outcome).increment(1);
    histogram!(WAIT_SECONDS, "op" => "compute_once").record(waited.as_secs_f64());
}

pub(crate) fn compute_time(took: Duration) {
    histogram!(COMPUTE_SECONDS).record(took.as_secs_f64());
}

pub(crate) fn stored(outcome: &'static str) {
    counter!(STORE_TOTAL, "outcome" => outcome).increment(1);
}
