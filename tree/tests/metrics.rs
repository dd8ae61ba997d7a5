//! The metrics a tree lock records, captured with a debugging recorder
//! (its own test binary: the recorder is process-wide).

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use quorate_redlock::Redlock;
use quorate_testkit::Cluster;
use quorate_tree::{metrics, TreeError, TreeLock};

type Snapshot = Vec<(
    metrics_util::CompositeKey,
    Option<::metrics::Unit>,
    Option<::metrics::SharedString>,
    DebugValue,
)>;

/// One snapshot (taking it drains counters and gauges: values are changes since the last).
fn snapshot(snapshotter: &Snapshotter) -> Snapshot {
    snapshotter.snapshot().into_vec()
}

/// The value of metric `name` with exactly `labels`, if recorded.
fn value(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> Option<DebugValue> {
    snapshot
        .iter()
        .find(|(key, ..)| {
            let key = key.key();
            let mut have: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
            have.sort();
            let mut want = labels.to_vec();
            want.sort();
            key.name() == name && have == want
        })
        .map(|(.., value)| match value {
            // DebugValue is not Clone
            DebugValue::Counter(n) => DebugValue::Counter(*n),
            DebugValue::Gauge(g) => DebugValue::Gauge(*g),
            DebugValue::Histogram(v) => DebugValue::Histogram(v.clone()),
        })
}

#[tokio::test]
async fn outcomes_conflicts_rounds_and_the_held_gauge_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let cluster = Cluster::start(5).await.expect("cluster");
    let redlock = Redlock::connect(cluster.urls()).await.expect("connect");
    let tree = TreeLock::new(&redlock, "metrics").expect("tree");
    let ttl = Duration::from_secs(5);
    let child = tree.lock(["A", "B"], ttl).await.expect("lock");
    let blocked = tree.try_lock(["A"], ttl).await;
    assert!(
        matches!(blocked, Err(TreeError::Conflict { .. })),
        "the ancestor of a held node: {:?}",
        blocked.map(drop)
    );
    child.release().await.expect("release");
    let parent = tree.try_lock(["A"], ttl).await.expect("A");
    parent.release().await.expect("release");
    let held = tree.lock(["C"], ttl).await.expect("C");

    let now = snapshot(&snapshotter);
    let get = |name, labels: &[(&str, &str)]| value(&now, name, labels);
    let counter = |n| Some(DebugValue::Counter(n));
    assert_eq!(
        get(metrics::ACQUIRE_TOTAL, &[("outcome", "granted")]),
        counter(3)
    );
    assert_eq!(
        get(metrics::ACQUIRE_TOTAL, &[("outcome", "conflict")]),
        counter(1)
    );
    assert_eq!(
        get(metrics::CONFLICTS_TOTAL, &[("relation", "descendant")]),
        counter(1)
    );
    assert_eq!(get(metrics::ACQUIRE_ROUNDS_TOTAL, &[]), counter(4));
    assert!(matches!(
        get(metrics::ACQUIRE_WAIT_SECONDS, &[("outcome", "granted")]),
        Some(DebugValue::Histogram(v)) if v.len() == 3
    ));
    // quorate-redlock's guard metrics carry the tree label
    let released = [("primitive", "tree"), ("outcome", "released")];
    assert_eq!(
        get(quorate_redlock::metrics::RELEASE_TOTAL, &released),
        counter(2)
    );
    let tree_label = [("primitive", "tree")];
    assert_eq!(
        get(quorate_redlock::metrics::LOCKS_HELD, &tree_label),
        Some(DebugValue::Gauge(1.0.into()))
    );

    held.release().await.expect("release");
    // the snapshot drained the gauge: this is the release's change, back to 0 in all
    assert_eq!(
        value(
            &snapshot(&snapshotter),
            quorate_redlock::metrics::LOCKS_HELD,
            &tree_label
        ),
        Some(DebugValue::Gauge((-1.0).into()))
    );
}
