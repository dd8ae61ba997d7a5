//! The metrics a spinlock reports, captured with a debugging recorder
//! (its own test binary: the recorder is process-global).

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use quorate_redlock::Redlock;
use quorate_spinlock::{metrics as names, SpinError, SpinOptions, Spinlock};
use quorate_testkit::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_are_counted_without_the_key_as_a_label() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("recorder");

    let cluster = Cluster::start(5).await.expect("cluster");
    let redlock = Redlock::connect(cluster.urls()).await.expect("connect");
    let options = SpinOptions::new().tries(3).sleep(Duration::from_millis(20));
    let spin = Spinlock::new(&redlock, options).expect("options");
    for _ in 0..2 {
        spin.compute_once("metered", || async { Ok::<_, String>(b"v".to_vec()) })
            .await
            .expect("compute");
    }
    let guard = spin.acquire("busy").await.expect("acquire");
    let error = spin.acquire("busy").await.expect_err("held");
    assert!(matches!(error, SpinError::TriesExhausted { tries: 3, .. }));
    guard.release().await.expect("release");

    let snapshot = snapshotter.snapshot().into_vec();
    let count = |name: &str, label: (&str, &str)| -> u64 {
        snapshot
            .iter()
            .filter(|(key, _, _, _)| key.kind() == MetricKind::Counter && key.key().name() == name)
            .filter(|(key, _, _, _)| {
                key.key()
                    .labels()
                    .any(|l| l.key() == label.0 && l.value() == label.1)
            })
            .map(|(_, _, _, value)| match value {
                DebugValue::Counter(n) => *n,
                _ => 0,
            })
            .sum()
    };
    assert_eq!(count(names::COMPUTE_TOTAL, ("outcome", "computed")), 1);
    assert_eq!(count(names::COMPUTE_TOTAL, ("outcome", "cached")), 1);
    assert_eq!(count(names::STORE_TOTAL, ("outcome", "stored")), 1);
    assert_eq!(count(names::ACQUIRE_TOTAL, ("outcome", "acquired")), 1);
    assert_eq!(
        count(names::ACQUIRE_TOTAL, ("outcome", "tries_exhausted")),
        1
    );
    // redlock's own metrics carry the spinlock's primitive label; the failed
    // rounds: the computing lock 1, the holder 1, the failed acquire exactly 3
    assert_eq!(
        count("quorate_acquire_rounds_total", ("primitive", "spinlock")),
        5
    );
    // no label anywhere carries a key
    for (key, _, _, _) in &snapshot {
        for label in key.key().labels() {
            assert!(!label.value().contains("metered") && !label.value().contains("busy"));
        }
    }
}
