//! Metrics through the `metrics` facade. The application picks the exporter;
//! this crate never installs a recorder. Resource names never become labels
//! (unbounded cardinality); node names do (there are a handful).

use std::sync::Once;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::backend::NodeError;

/// Lock calls by final outcome (`granted`, `taken`, `no_quorum`, `expired`, `invalid`).
pub const ACQUIRE_TOTAL: &str = "quorate_acquire_total";
/// Acquisition rounds sent (several per call under contention).
pub const ACQUIRE_ROUNDS_TOTAL: &str = "quorate_acquire_rounds_total";
/// Lock calls granted by the waiter queue: a release gave the key to the
/// waiting call, which holds it without another round.
pub const QUEUE_GRANTS_TOTAL: &str = "quorate_queue_grants_total";
/// Seconds from the lock call to its result, by outcome.
pub const ACQUIRE_WAIT_SECONDS: &str = "quorate_acquire_wait_seconds";
/// Seconds a lock was held, from grant to release or drop.
pub const HOLD_SECONDS: &str = "quorate_hold_seconds";
/// Locks currently held by this process.
pub const LOCKS_HELD: &str = "quorate_locks_held";
/// Releases by outcome (`released`, `not_held`, `no_quorum`, `dropped`,
/// `handed_off`: passed to the next local waiter, see
/// [`LockOptions::local_handoff`](crate::LockOptions::local_handoff)).
pub const RELEASE_TOTAL: &str = "quorate_release_total";
/// Extensions by outcome (`extended`, `expired`, `lost`, `no_quorum`).
pub const EXTEND_TOTAL: &str = "quorate_extend_total";
/// Locks found lost (a majority no longer holds our token) while still valid locally.
pub const LOST_TOTAL: &str = "quorate_lost_total";
/// Node calls that failed, by node, operation and kind (`error`, `timeout`).
pub const NODE_ERRORS_TOTAL: &str = "quorate_node_errors_total";
/// Seconds per node call, by node and operation (answers and errors; not timeouts).
pub const NODE_LATENCY_SECONDS: &str = "quorate_node_latency_seconds";
/// Locks deleted by an operator whatever their holder ([`Redlock::force_unlock`](crate::Redlock::force_unlock)).
pub const FORCE_UNLOCK_TOTAL: &str = "quorate_force_unlock_total";

static DESCRIBE: Once = Once::new();

/// Declares every metric once per process.
pub(crate) fn describe() {
    DESCRIBE.call_once(|| {
        describe_counter!(ACQUIRE_TOTAL, "Lock calls by final outcome");
        describe_counter!(ACQUIRE_ROUNDS_TOTAL, "Acquisition rounds sent to the nodes");
        describe_counter!(
            QUEUE_GRANTS_TOTAL,
            "Lock calls granted by the waiter queue without a round"
        );
        describe_histogram!(
            ACQUIRE_WAIT_SECONDS,
            metrics::Unit::Seconds,
            "Time from lock call to result"
        );
        describe_histogram!(HOLD_SECONDS, metrics::Unit::Seconds, "Time a lock was held");
        describe_gauge!(LOCKS_HELD, "Locks currently held by this process");
        describe_counter!(RELEASE_TOTAL, "Releases by outcome");
        describe_counter!(EXTEND_TOTAL, "Extensions by outcome");
        describe_counter!(LOST_TOTAL, "Locks found lost while still valid locally");
        describe_counter!(
            NODE_ERRORS_TOTAL,
            "Failed node calls by node, operation and kind"
        );
        describe_histogram!(
            NODE_LATENCY_SECONDS,
            metrics::Unit::Seconds,
            "Latency of node calls by node and operation"
        );
        describe_counter!(
            FORCE_UNLOCK_TOTAL,
            "Locks deleted by an operator (force_unlock)"
        );
    });
}

pub(crate) fn force_unlocked(primitive: &'static str) {
    metrics::counter!(FORCE_UNLOCK_TOTAL, "primitive" => primitive).increment(1);
}

pub(crate) fn acquire_round(primitive: &'static str) {
    counter!(ACQUIRE_ROUNDS_TOTAL, "primitive" => primitive).increment(1);
}

pub(crate) fn granted_by_queue(primitive: &'static str) {
    counter!(QUEUE_GRANTS_TOTAL, "primitive" => primitive).increment(1);
}

pub(crate) fn acquire_done(primitive: &'static str, outcome: &'static str, waited: Duration) {
    counter!(ACQUIRE_TOTAL, "primitive" => primitive, "outcome" => outcome).increment(1);
    histogram!(ACQUIRE_WAIT_SECONDS, "primitive" => primitive, "outcome" => outcome)
        .record(waited.as_secs_f64());
}

/// A guard was made (by a lock call or [`Redlock::adopt`](crate::Redlock::adopt)):
/// every guard counts up here and down when released or dropped.
pub(crate) fn guard_made(primitive: &'static str) {
    gauge!(LOCKS_HELD, "primitive" => primitive).increment(1.0);
}

pub(crate) fn released(primitive: &'static str, outcome: &'static str, held: Duration) {
    counter!(RELEASE_TOTAL, "primitive" => primitive, "outcome" => outcome).increment(1);
    histogram!(HOLD_SECONDS, "primitive" => primitive).record(held.as_secs_f64());
    gauge!(LOCKS_HELD, "primitive" => primitive).decrement(1.0);
}

pub(crate) fn extended(primitive: &'static str, outcome: &'static str) {
    counter!(EXTEND_TOTAL, "primitive" => primitive, "outcome" => outcome).increment(1);
    if outcome == "lost" {
        counter!(LOST_TOTAL, "primitive" => primitive).increment(1);
    }
}

pub(crate) fn node_call<T>(
    node: &str,
    op: &'static str,
    took: Duration,
    result: &Result<Result<T, NodeError>, tokio::time::error::Elapsed>,
) {
    let kind = match result {
        Ok(Ok(_)) => None,
        Ok(Err(_)) => Some("error"),
        Err(_) => Some("timeout"),
    };
    if let Some(kind) = kind {
        counter!(NODE_ERRORS_TOTAL, "node" => node.to_owned(), "op" => op, "kind" => kind)
            .increment(1);
    }
    if kind != Some("timeout") {
        histogram!(NODE_LATENCY_SECONDS, "node" => node.to_owned(), "op" => op)
            .record(took.as_secs_f64());
    }
}
