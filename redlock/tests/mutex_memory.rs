//! The mutex's semantics on in-memory nodes with paused time: fast and
//! deterministic. The same claims are proved against real servers in
//! `redlock/tests/redlock_real.rs`.

use std::sync::Arc;
use std::time::Duration;

use quorate_redlock::{
    ConfigError, ConnectError, Error, LockGuard, LockOptions, MemoryNode, Node, NodeOutcome,
    Redlock, ReleaseOutcome,
};
use tokio::time::Instant;

fn redlock(memory: &[MemoryNode]) -> Redlock {
    redlock_with(memory, LockOptions::new())
}

/// A client whose lock calls skip the reentrancy check: these tests play
/// the holder and its contenders from one task (the check has its own
/// test, `a_task_locking_what_it_holds_fails_at_once_and_others_still_wait`).
fn redlock_with(memory: &[MemoryNode], defaults: LockOptions) -> Redlock {
    let nodes = memory
        .iter()
        .map(|m| Arc::new(m.clone()) as Arc<dyn Node>)
        .collect();
    Redlock::from_nodes(nodes, defaults.reentry_check(false)).expect("valid config")
}

const TTL: Duration = Duration::from_secs(10);

/// Waits until every node has queued at least `n` waiters for `key` (the
/// clock is paused: each step lets every task run first).
async fn until_queued(memory: &[MemoryNode], key: &str, n: usize) {
    while memory.iter().any(|node| node.queued(key) < n) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn lock_sets_the_key_on_every_node_and_release_removes_it() {
    let memory = MemoryNode::cluster(5);
    let redlock = redlock(&memory);
    let guard = redlock.lock("r", TTL).await.expect("lock");
    assert!(memory.iter().all(|m| m.keys() == ["r"]));
    assert_eq!(guard.remaining(), TTL - Duration::from_millis(102));
    // and it stays there while held: nothing of the round (an undo) follows
    tokio::time::sleep(TTL / 2).await;
    assert!(
        memory.iter().all(|m| m.keys() == ["r"]),
        "the grant was undone"
    );
    assert_eq!(
        guard.release().await.expect("release"),
        ReleaseOutcome::Released
    );
    assert!(memory.iter().all(|m| m.keys().is_empty()));
}

#[tokio::test(start_paused = true)]
async fn try_lock_on_a_held_lock_reports_taken_with_holder_ttls() {
    let memory = MemoryNode::cluster(5);
    let redlock = redlock(&memory);
    let _held = redlock.lock("r", TTL).await.expect("lock");
    tokio::time::advance(Duration::from_secs(4)).await;
    let err = redlock.try_lock("r", TTL).await.expect_err("taken");
    let Error::Taken { resource, outcomes } = err else {
        panic!("expected Taken, got {err:?}");
    };
    assert_eq!(resource, "r");
    assert_eq!(outcomes.0.len(), 5);
    for report in &outcomes.0 {
        if let NodeOutcome::Taken { remaining, .. } = &report.outcome {
            assert_eq!(*remaining, Some(Duration::from_secs(6)));
        }
    }
    assert!(
        outcomes
            .nodes_where(|o| matches!(o, NodeOutcome::Taken { .. }))
            .len()
            >= 3
    );
}

#[tokio::test(start_paused = true)]
async fn lock_waits_for_the_holder_and_gives_up_at_the_deadline() {
    let memory = MemoryNode::cluster(5);
    let redlock = redlock(&memory);
    let held = redlock
        .lock("r", Duration::from_secs(2))
        .await
        .expect("lock");
    // The holder's keys expire after 2 s; the waiter is granted right then.
    let started = Instant::now();
    let guard = redlock.lock("r", TTL).await.expect("granted after expiry");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(2200),
        "{waited:?}"
    );
    drop(held);
    // Now a waiter with a 1 s deadline gives up, with Taken.
    let options = LockOptions::new()
        .reentry_check(false)
        .acquire_timeout(Some(Duration::from_secs(1)));
    let started = Instant::now();
    let err = redlock
        .lock_with(["r"], &options)
        .await
        .expect_err("deadline");
    assert!(matches!(err, Error::Taken { .. }), "{err:?}");
    assert!(started.elapsed() <= Duration::from_secs(1));
    drop(guard);
}

#[tokio::test(start_paused = true)]
async fn max_attempts_bounds_the_rounds() {
    let memory = MemoryNode::cluster(3);
    let redlock = redlock(&memory);
    let _held = redlock.lock("r", TTL).await.expect("lock");
    let options = LockOptions::new()
        .reentry_check(false)
        .acquire_timeout(None)
        .max_attempts(Some(4))
        .retry_delay(Duration::from_millis(100))
        .retry_jitter(Duration::ZERO);
    let started = Instant::now();
    redlock.lock_with(["r"], &options).await.expect_err("taken");
    // 4 rounds, 3 pauses of 100 ms: a call bounded in rounds polls at the
    // retry delay (it does not wait in the servers' queue)
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn minority_down_still_grants_majority_down_names_the_nodes() {
    let memory = MemoryNode::cluster(5);
    let redlock = redlock(&memory);
    memory[0].set_down(true);
    memory[1].set_stalled(true);
    let guard = redlock.try_lock("r", TTL).await.expect("3 of 5 grant");
    guard.release().await.expect("release");

    memory[2].set_down(true);
    let err = redlock.try_lock("r", TTL).await.expect_err("2 of 5");
    let Error::NoQuorum {
        granted,
        quorum,
        outcomes,
        ..
    } = &err
    else {
        panic!("expected NoQuorum, got {err:?}");
    };
    assert!(*granted < 3 && *quorum == 3);
    let failed = outcomes.failed_nodes();
    assert!(
        failed.contains(&"memory-0") && failed.contains(&"memory-2"),
        "{err}"
    );
    assert!(err.to_string().contains("memory-0"), "{err}");
    // the partial grant was undone
    assert!(memory[3].keys().is_empty() && memory[4].keys().is_empty());
}

#[tokio::test(start_paused = true)]
async fn several_resources_are_all_or_nothing() {
    let memory = MemoryNode::cluster(5);
    let redlock = redlock(&memory);
    let _b = redlock.lock("b", TTL).await.expect("lock b");
    let options = LockOptions::new()
        .reentry_check(false)
        .max_attempts(Some(1));
    let err = redlock
        .lock_with(["a", "b", "c"], &options)
        .await
        .expect_err("b is taken");
    assert!(
        matches!(&err, Error::Taken { resource, .. } if resource == "b"),
        "{err:?}"
    );
    assert!(memory.iter().all(|m| m.keys() == ["b"]));
    let all = redlock
        .lock_with(["a", "c", "d"], &options)
        .await
        .expect("free ones");
    assert_eq!(all.resources(), ["a", "c", "d"]);
    assert!(memory.iter().all(|m| m.keys() == ["a", "b", "c", "d"]));
}

#[tokio::test(start_paused = true)]
async fn release_after_expiry_says_not_held() {
    let memory = MemoryNode::cluster(5);
    let redlock = redlock(&memory);
    let guard = redlock
        .lock("r", Duration::from_secs(1))
        .await
        .expect("lock");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(!guard.is_valid());
    assert_eq!(
        guard.release().await.expect("no error"),
        ReleaseOutcome::NotHeld
    );

    // expired and every node unreachable: still a clear answer, no error, no hang
    let guard = redlock
        .lock("r", Duration::from_secs(1))
        .await
        .expect("lock");
    tokio::time::advance(Duration::from_secs(2)).await;
    memory.iter().for_each(|m| m.set_stalled(true));
    assert_eq!(
        guard.release().await.expect("no error"),
        ReleaseOutcome::NotHeld
    );
}

#[tokio::test(start_paused = true)]
async fn release_never_deletes_the_next_holders_lock() {
    let memory = MemoryNode::cluster(3);
    let redlock = redlock(&memory);
    let first = redlock
        .lock("r", Duration::from_secs(1))
        .await
        .expect("lock");
    tokio::time::advance(Duration::from_secs(2)).await;
    let second = redlock.lock("r", TTL).await.expect("second holder");
    assert_eq!(
        first.release().await.expect("release"),
        ReleaseOutcome::NotHeld
    );
    assert!(memory.iter().all(|m| m.keys() == ["r"]));
    assert!(second.is_valid());
}

#[tokio::test(start_paused = true)]
async fn extend_renews_validity_from_its_own_start() {
    let memory = MemoryNode::cluster(5);
    let redlock = redlock(&memory);
    let mut guard = redlock
        .lock("r", Duration::from_secs(2))
        .await
        .expect("lock");
    tokio::time::advance(Duration::from_millis(1500)).await;
    guard.extend(Duration::from_secs(5)).await.expect("extend");
    assert_eq!(
        guard.remaining(),
        Duration::from_secs(5) - Duration::from_millis(52)
    );
    assert_eq!(memory[0].ttl("r"), Some(Duration::from_secs(5)));
}

#[tokio::test(start_paused = true)]
async fn extend_distinguishes_expired_from_lost() {
    let memory = MemoryNode::cluster(5);
    let redlock = redlock(&memory);
    let mut guard = redlock
        .lock("r", Duration::from_secs(1))
        .await
        .expect("lock");
    tokio::time::advance(Duration::from_secs(2)).await;
    let err = guard.extend(TTL).await.expect_err("expired");
    assert!(matches!(err, Error::Expired), "{err:?}");

    let mut guard = redlock.lock("r", TTL).await.expect("lock");
    // three nodes restart without persistence: the keys are gone
    memory[..3].iter().for_each(MemoryNode::flush);
    let err = guard.extend(TTL).await.expect_err("lost");
    assert!(matches!(err, Error::Lost { .. }), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn other_token_cannot_release_or_extend() {
    let memory = MemoryNode::cluster(3);
    let redlock = redlock(&memory);
    let guard = redlock.lock("r", TTL).await.expect("lock");
    for m in &memory {
        assert_eq!(
            m.release(&["r".into()], "not-the-token", Some("x")).await,
            Ok(0)
        );
        assert_eq!(
            m.extend(&["r".into()], "not-the-token", TTL).await,
            Ok(false)
        );
    }
    assert!(memory.iter().all(|m| m.keys() == ["r"]));
    drop(guard);
}

#[tokio::test(start_paused = true)]
async fn dropped_guard_releases_in_the_background() {
    let memory = MemoryNode::cluster(3);
    let redlock = redlock(&memory);
    let guard = redlock.lock("r", TTL).await.expect("lock");
    drop(guard);
    // The lock waits a few scheduler turns for a next call of this process
    // (none comes), then the spawned release runs: no time passes.
    let started = Instant::now();
    for _ in 0..100 {
        if memory.iter().all(|m| m.keys().is_empty()) {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(memory.iter().all(|m| m.keys().is_empty()));
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn cancelled_lock_leaves_no_partial_grant() {
    let memory = MemoryNode::cluster(5);
    let redlock = redlock(&memory);
    // two nodes grant at once, three get the request 300 ms late: the round
    // cannot decide before the cancel, and those three grant after it
    memory[2..]
        .iter()
        .for_each(|m| m.set_request_delay(Duration::from_millis(300)));
    let attempt = redlock.lock("r", TTL);
    let cancelled = tokio::time::timeout(Duration::from_millis(10), attempt).await;
    assert!(cancelled.is_err(), "the lock call should still be pending");
    assert_eq!(memory[0].keys(), ["r"], "granted before the cancel");
    assert!(memory[2].keys().is_empty(), "not yet arrived");
    // The late grants land 300 ms after sending; the undo, sent at the
    // cancel, lands after them. Watch each slow node hold the key, then lose it.
    let mut seen_late = [false; 5];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
        for (i, node) in memory.iter().enumerate() {
            seen_late[i] |= !node.keys().is_empty();
        }
    }
    assert_eq!(seen_late[2..], [true; 3], "the late grants landed");
    for node in &memory {
        assert!(node.keys().is_empty(), "{}: {:?}", node.name(), node.keys());
    }
}

#[tokio::test(start_paused = true)]
async fn bad_input_is_a_typed_error_before_anything_is_sent() {
    let memory = MemoryNode::cluster(3);
    let redlock = redlock(&memory);
    let cases: Vec<(Vec<&str>, LockOptions, ConfigError)> = vec![
        (vec![], LockOptions::new(), ConfigError::NoResources),
        (vec![""], LockOptions::new(), ConfigError::EmptyResource(0)),
        (
            vec!["a", "a"],
            LockOptions::new(),
            ConfigError::DuplicateResource("a".into()),
        ),
        (
            vec!["a"],
            LockOptions::new().ttl(Duration::ZERO),
            ConfigError::ZeroTtl,
        ),
    ];
    for (resources, options, expected) in cases {
        let err = redlock
            .lock_with(resources, &options)
            .await
            .expect_err("invalid");
        assert!(
            matches!(&err, Error::InvalidConfig(e) if *e == expected),
            "{err:?}"
        );
    }
    let err = redlock
        .lock("a", Duration::from_millis(1))
        .await
        .expect_err("too short");
    assert!(matches!(
        err,
        Error::InvalidConfig(ConfigError::TtlTooShort { .. })
    ));
    assert!(memory.iter().all(|m| m.keys().is_empty()));

    assert_eq!(
        Redlock::from_nodes(vec![], LockOptions::new()).err(),
        Some(ConfigError::NoNodes)
    );
    let twice: Vec<Arc<dyn Node>> = vec![Arc::new(memory[0].clone()), Arc::new(memory[0].clone())];
    assert!(matches!(
        Redlock::from_nodes(twice, LockOptions::new()),
        Err(ConfigError::DuplicateNode(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn grant_with_no_validity_left_is_an_error_not_a_lease() {
    let memory = MemoryNode::cluster(5);
    // answers take 99 ms: a 100 ms ttl minus 99 ms minus 3 ms drift is gone
    memory
        .iter()
        .for_each(|m| m.set_latency(Duration::from_millis(99)));
    let redlock = redlock_with(
        &memory,
        LockOptions::new().node_timeout(Some(Duration::from_millis(500))),
    );
    let err = redlock
        .try_lock("r", Duration::from_millis(100))
        .await
        .expect_err("no validity");
    assert!(matches!(err, Error::Expired), "{err:?}");
    // with a longer ttl the same latency is fine, and validity counts it
    let guard = redlock.try_lock("r", TTL).await.expect("lock");
    assert_eq!(guard.remaining(), TTL - Duration::from_millis(99 + 102));
}

#[test]
fn public_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let memory = MemoryNode::cluster(1);
    let redlock = redlock(&memory);
    let lock = redlock.lock("r", TTL);
    assert_send(&lock);
    let try_lock = redlock.try_lock("r", TTL);
    assert_send(&try_lock);
    let options = LockOptions::new();
    let with = redlock.lock_with(["r"], &options);
    assert_send(&with);
    let connect = Redlock::connect(["redis://127.0.0.1:1"]);
    assert_send(&connect);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn metrics_count_outcomes_per_primitive_and_node() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // current-thread runtime: every task of this test records here
    let _local = metrics::set_default_local_recorder(&recorder);

    let memory = MemoryNode::cluster(3);
    memory[2].set_down(true);
    let redlock = redlock(&memory);
    let guard = redlock.lock("m", TTL).await.expect("lock");
    redlock.try_lock("m", TTL).await.expect_err("taken");
    guard.release().await.expect("release");
    tokio::task::yield_now().await;

    // one snapshot: taking one resets the counters
    let snapshot = snapshotter.snapshot().into_vec();
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<&DebugValue> {
        snapshot
            .iter()
            .find(|(key, ..)| {
                key.key().name() == name
                    && labels
                        .iter()
                        .all(|(k, v)| key.key().labels().any(|l| l.key() == *k && l.value() == *v))
            })
            .map(|(_, _, _, value)| value)
    };
    let counter = |name: &str, labels: &[(&str, &str)]| match value(name, labels) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name} {labels:?}: {other:?}"),
    };
    use quorate_redlock::metrics as m;
    let granted = [("primitive", "mutex"), ("outcome", "granted")];
    assert_eq!(counter(m::ACQUIRE_TOTAL, &granted), 1);
    let taken = [("primitive", "mutex"), ("outcome", "taken")];
    assert_eq!(counter(m::ACQUIRE_TOTAL, &taken), 1);
    let released = [("primitive", "mutex"), ("outcome", "released")];
    assert_eq!(counter(m::RELEASE_TOTAL, &released), 1);
    let node_errors = [("node", "memory-2"), ("kind", "error"), ("op", "acquire")];
    assert_eq!(counter(m::NODE_ERRORS_TOTAL, &node_errors), 2);
    match value(m::LOCKS_HELD, &[("primitive", "mutex")]) {
        Some(DebugValue::Gauge(g)) => assert_eq!(g.0, 0.0),
        other => panic!("locks held: {other:?}"),
    }
    match value(m::HOLD_SECONDS, &[("primitive", "mutex")]) {
        Some(DebugValue::Histogram(h)) => assert_eq!(h.len(), 1),
        other => panic!("hold: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiter_is_woken_by_the_release_not_by_polling() {
    let memory = MemoryNode::cluster(5);
    // polling alone would wake the waiter only after 30 s
    let slow_polling = LockOptions::new()
        .retry_delay(Duration::from_secs(30))
        .retry_jitter(Duration::ZERO)
        .acquire_timeout(Some(Duration::from_secs(60)));
    let holder_side = redlock(&memory);
    // a second Redlock over the same nodes: another process, as far as the
    // local queue is concerned; only the announcement can wake it
    let waiter_side = redlock_with(&memory, slow_polling);
    let held = holder_side
        .lock("r", Duration::from_secs(60))
        .await
        .expect("lock");
    let started = Instant::now();
    let waiter = tokio::spawn(async move { waiter_side.lock("r", Duration::from_secs(60)).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    held.release().await.expect("release");
    let guard = waiter.await.expect("task").expect("granted");
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    drop(guard);
}

#[tokio::test(start_paused = true)]
async fn local_waiters_are_served_first_come_first_served() {
    let memory = MemoryNode::cluster(3);
    let redlock = redlock(&memory);
    let held = redlock.lock("q", TTL).await.expect("lock");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for id in 0..4 {
        let (redlock, tx) = (redlock.clone(), tx.clone());
        tasks.push(tokio::spawn(async move {
            let guard = redlock.lock("q", TTL).await.expect("lock");
            tx.send(id).expect("send");
            guard.release().await.expect("release");
        }));
        // let each task reach the queue before the next one starts
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    held.release().await.expect("release");
    for task in tasks {
        task.await.expect("task");
    }
    let mut order = Vec::new();
    while let Ok(id) = rx.try_recv() {
        order.push(id);
    }
    assert_eq!(order, [0, 1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn a_local_wait_respects_the_deadline() {
    let memory = MemoryNode::cluster(3);
    let redlock = redlock(&memory);
    let _held = redlock.lock("d", TTL).await.expect("lock");
    let options = LockOptions::new()
        .reentry_check(false)
        .acquire_timeout(Some(Duration::from_millis(300)));
    let first = tokio::spawn({
        let redlock = redlock.clone();
        let options = options.clone();
        async move { redlock.lock_with(["d"], &options).await }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    // the second waiter's deadline passes while the first is still head
    let shorter = options
        .clone()
        .acquire_timeout(Some(Duration::from_millis(100)));
    let started = Instant::now();
    let err = redlock
        .lock_with(["d"], &shorter)
        .await
        .expect_err("deadline");
    assert!(
        matches!(&err, Error::Taken { outcomes, .. } if outcomes.0.is_empty()),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert!(first.await.expect("task").is_err());
}

fn auto(ttl: Duration) -> LockOptions {
    LockOptions::new().ttl(ttl).auto_extend(true)
}

#[tokio::test(start_paused = true)]
async fn auto_extension_keeps_a_lock_far_past_its_ttl() {
    let memory = MemoryNode::cluster(5);
    let redlock = redlock(&memory);
    let guard = redlock
        .lock_with(["w"], &auto(Duration::from_secs(3)))
        .await
        .expect("lock");
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(guard.is_valid());
        assert!(
            guard.remaining() > Duration::from_secs(1),
            "{:?}",
            guard.remaining()
        );
    }
    assert!(memory.iter().all(|m| m.keys() == ["w"]));
    // another client still cannot take it
    assert!(matches!(
        redlock.try_lock("w", TTL).await,
        Err(Error::Taken { .. })
    ));
    guard.release().await.expect("release");
}

#[tokio::test(start_paused = true)]
async fn extensions_due_together_go_out_as_one_request_per_node() {
    let memory = MemoryNode::cluster(3);
    let redlock = redlock(&memory);
    let options = auto(Duration::from_secs(3));
    let mut guards = Vec::new();
    for i in 0..200 {
        guards.push(
            redlock
                .lock_with([format!("lock:{i}")], &options)
                .await
                .expect("lock"),
        );
        if i % 20 == 0 {
            // acquisitions spread over 1 s
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let before = memory[0].batched_extends();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let requests = memory[0].batched_extends() - before;
    // one lock alone needs 30 s / 1 s = 30 extensions; 200 locks must not
    // need 200 times as many requests: the spread fits in a batch window
    assert!(
        (25..=70).contains(&requests),
        "{requests} batched requests for 200 locks"
    );
    assert!(guards.iter().all(LockGuard::is_valid));
    // release and drop stop all extension traffic
    let dropped = guards.split_off(100);
    for guard in guards {
        guard.release().await.expect("release");
    }
    drop(dropped);
    tokio::task::yield_now().await;
    let stopped_at = memory[0].batched_extends();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        memory[0].batched_extends(),
        stopped_at,
        "traffic after release"
    );
}

#[tokio::test(start_paused = true)]
async fn lost_resolves_when_a_majority_forgets_the_lock() {
    let memory = MemoryNode::cluster(5);
    let redlock = redlock(&memory);
    let guard = redlock
        .lock_with(["l"], &auto(Duration::from_secs(3)))
        .await
        .expect("lock");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(guard.is_valid());
    memory[..3].iter().for_each(MemoryNode::flush);
    let started = Instant::now();
    // bounded: with a broken quorum the two kept copies would keep it forever
    let lost = tokio::time::timeout(Duration::from_secs(6), guard.lost())
        .await
        .expect("the loss is reported");
    assert!(matches!(lost, Error::Lost { .. }), "{lost:?}");
    // found at the next tick: within a third of the ttl
    assert!(
        started.elapsed() <= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(!guard.is_valid());
}

#[tokio::test(start_paused = true)]
async fn lost_resolves_before_validity_ends_when_nodes_stall() {
    let memory = MemoryNode::cluster(5);
    let redlock = redlock(&memory);
    let ttl = Duration::from_secs(3);
    let guard = redlock.lock_with(["s"], &auto(ttl)).await.expect("lock");
    memory[..3].iter().for_each(|m| m.set_stalled(true));
    let valid_until = guard.lease().valid_until();
    // bounded: with a broken quorum the two live nodes would keep it forever
    let lost = tokio::time::timeout(ttl * 2, guard.lost())
        .await
        .expect("the loss is reported, not the lock kept by a minority");
    assert!(
        matches!(lost, Error::Lost { .. } | Error::Expired),
        "{lost:?}"
    );
    assert!(
        Instant::now() <= valid_until,
        "reported after validity ended"
    );
    assert!(!guard.is_valid());
}

#[tokio::test(start_paused = true)]
async fn lost_of_a_plain_lock_is_its_expiry() {
    let memory = MemoryNode::cluster(3);
    let redlock = redlock(&memory);
    let guard = redlock
        .lock("p", Duration::from_secs(2))
        .await
        .expect("lock");
    let until = guard.lease().valid_until();
    let lost = tokio::time::timeout(Duration::from_secs(4), guard.lost()).await;
    assert!(matches!(lost, Ok(Error::Expired)), "{lost:?}");
    assert_eq!(Instant::now(), until);
}

#[tokio::test(start_paused = true)]
async fn run_returns_the_work_and_releases() {
    let memory = MemoryNode::cluster(3);
    let redlock = redlock(&memory);
    let out = redlock
        .run("job", Duration::from_secs(2), |lease| async move {
            assert!(lease.is_valid());
            tokio::time::sleep(Duration::from_secs(10)).await; // 5× the ttl
            7
        })
        .await
        .expect("work done under the lock");
    assert_eq!(out, 7);
    tokio::task::yield_now().await;
    assert!(memory.iter().all(|m| m.keys().is_empty()));
}

#[tokio::test(start_paused = true)]
async fn run_cancels_the_work_when_the_lock_is_lost() {
    let memory = MemoryNode::cluster(3);
    let redlock = redlock(&memory);
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = finished.clone();
    let memory_for_fault = memory.clone();
    let result = redlock
        .run("job", Duration::from_secs(2), |_lease| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            // two of three nodes lose the lock under the worker's feet
            memory_for_fault[..2].iter().for_each(MemoryNode::flush);
            tokio::time::sleep(Duration::from_secs(10)).await;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        })
        .await;
    assert!(matches!(result, Err(Error::Lost { .. })), "{result:?}");
    assert!(
        !finished.load(std::sync::atomic::Ordering::SeqCst),
        "work ran on"
    );
}

#[tokio::test(start_paused = true)]
async fn run_does_not_start_work_without_the_lock() {
    let memory = MemoryNode::cluster(3);
    let redlock = redlock_with(
        &memory,
        LockOptions::new().acquire_timeout(Some(Duration::from_millis(200))),
    );
    let _held = redlock.lock("busy", TTL).await.expect("lock");
    let result = redlock
        .run("busy", TTL, |_| async {
            panic!("work started without the lock")
        })
        .await;
    assert!(matches!(result, Err(Error::Taken { .. })), "{result:?}");
}

#[tokio::test(start_paused = true)]
async fn a_fenced_grant_is_checked_after_the_write_back() {
    let memory = MemoryNode::cluster(5);
    // every answer takes 49 ms: a 100 ms ttl (drift 3 ms) survives one
    // round trip but not the fence write-back's second one
    memory
        .iter()
        .for_each(|m| m.set_latency(Duration::from_millis(49)));
    let redlock = redlock_with(
        &memory,
        LockOptions::new().node_timeout(Some(Duration::from_secs(1))),
    );
    let plain = LockOptions::new()
        .ttl(Duration::from_millis(100))
        .max_attempts(Some(1));
    let guard = redlock
        .lock_with(["f"], &plain)
        .await
        .expect("one round trip fits");
    assert!(guard.lease().fence().is_none());
    guard.release().await.expect("release");

    let fenced = plain.clone().fencing(true);
    let err = redlock
        .lock_with(["f"], &fenced)
        .await
        .expect_err("two do not");
    assert!(matches!(err, Error::Expired), "{err:?}");

    // with time to spare, fences count up per grant
    let roomy = fenced.ttl(Duration::from_secs(10));
    let first = redlock.lock_with(["f"], &roomy).await.expect("lock");
    let f1 = first.lease().fence().expect("fenced");
    first.release().await.expect("release");
    let second = redlock.lock_with(["f"], &roomy).await.expect("lock");
    assert!(second.lease().fence().expect("fenced") > f1);
}

#[tokio::test(start_paused = true)]
async fn validity_counts_from_the_granting_round_not_the_first() {
    let memory = MemoryNode::cluster(3);
    let redlock = redlock(&memory);
    let _held = redlock
        .lock("v", Duration::from_secs(2))
        .await
        .expect("lock");
    // waits ~2 s through several refused rounds, then is granted
    let guard = redlock.lock("v", TTL).await.expect("granted after expiry");
    assert_eq!(guard.remaining(), TTL - Duration::from_millis(102));
}

/// The value `key` holds on every node that has it.
fn values(memory: &[MemoryNode], key: &str) -> Vec<String> {
    memory.iter().filter_map(|m| m.get(key)).collect()
}

#[tokio::test(start_paused = true)]
async fn a_release_hands_the_lock_to_the_next_local_waiter_without_a_round() {
    let memory = MemoryNode::cluster(3);
    // the waiter would poll only every 30 s and is never told of a release:
    // only a hand-off can serve it at once
    let slow = LockOptions::new()
        .retry_delay(Duration::from_secs(30))
        .retry_jitter(Duration::ZERO)
        .acquire_timeout(Some(Duration::from_secs(60)));
    let redlock = redlock_with(&memory, slow);
    let held = redlock.lock("h", TTL).await.expect("lock");
    let token = held.lease().token();
    let waiter = tokio::spawn({
        let redlock = redlock.clone();
        async move { redlock.lock("h", TTL).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    assert_eq!(
        held.release().await.expect("release"),
        ReleaseOutcome::Released
    );
    let next = waiter.await.expect("task").expect("handed over");
    assert_eq!(started.elapsed(), Duration::ZERO, "no round, no wait");
    assert_eq!(next.lease().token(), token, "the same lease");
    // the servers never saw a release: the key still holds the token, with
    // the ttl left from the first grant
    let hex = token.to_hex();
    assert_eq!(values(&memory, "h"), [hex.clone(), hex.clone(), hex]);
    assert!(
        next.remaining() > TTL - Duration::from_secs(2),
        "{:?}",
        next.remaining()
    );
    assert_eq!(
        next.release().await.expect("release"),
        ReleaseOutcome::Released
    );
    assert!(values(&memory, "h").is_empty());
}

#[tokio::test(start_paused = true)]
async fn no_hand_off_with_less_than_half_the_waiters_ttl_left_or_when_turned_off() {
    let memory = MemoryNode::cluster(3);
    let redlock = redlock(&memory);
    let cases = [
        // (holder ttl, holder hands off, waiter options)
        (Duration::from_secs(4), true, LockOptions::new().ttl(TTL)),
        (TTL, false, LockOptions::new().ttl(TTL)),
        (TTL, true, LockOptions::new().ttl(TTL).local_handoff(false)),
        (TTL, true, LockOptions::new().ttl(TTL).fencing(true)),
    ];
    for (holder_ttl, hands_off, waiter_options) in cases {
        let holder = LockOptions::new().ttl(holder_ttl).local_handoff(hands_off);
        let held = redlock.lock_with(["n"], &holder).await.expect("lock");
        let token = held.lease().token();
        let waiter = tokio::spawn({
            let redlock = redlock.clone();
            async move { redlock.lock_with(["n"], &waiter_options).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        held.release().await.expect("release");
        let next = waiter.await.expect("task").expect("granted anew");
        assert_ne!(
            next.lease().token(),
            token,
            "holder ttl {holder_ttl:?}, hands off {hands_off}"
        );
        next.release().await.expect("release");
    }
}

#[tokio::test(start_paused = true)]
async fn a_lock_handed_to_a_waiter_that_went_away_is_released() {
    let memory = MemoryNode::cluster(3);
    let redlock = redlock(&memory);
    let held = redlock.lock("w", TTL).await.expect("lock");
    let mut waiter = Box::pin(redlock.lock("w", TTL));
    assert!(futures::poll!(waiter.as_mut()).is_pending(), "waits");
    // handed over into the waiting call, which is dropped before it looks
    assert_eq!(
        held.release().await.expect("release"),
        ReleaseOutcome::Released
    );
    drop(waiter);
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(
        values(&memory, "w").is_empty(),
        "released through the servers"
    );
    // and a waiter that is gone before the release gets nothing
    let held = redlock.lock("w", TTL).await.expect("lock");
    let mut waiter = Box::pin(redlock.lock("w", TTL));
    assert!(futures::poll!(waiter.as_mut()).is_pending(), "waits");
    drop(waiter);
    held.release().await.expect("release");
    assert!(values(&memory, "w").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_handed_over_lock_takes_the_waiters_auto_extension() {
    let memory = MemoryNode::cluster(3);
    let redlock = redlock(&memory);
    let ttl = Duration::from_secs(3);
    let held = redlock.lock("x", ttl).await.expect("lock");
    let waiter = tokio::spawn({
        let redlock = redlock.clone();
        async move { redlock.lock_with(["x"], &auto(ttl)).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let token = held.lease().token();
    held.release().await.expect("release");
    let next = waiter.await.expect("task").expect("handed over");
    assert_eq!(next.lease().token(), token);
    // far past the first grant's ttl: extended by the watchdog
    tokio::time::sleep(ttl * 4).await;
    assert!(next.is_valid());
    assert_eq!(values(&memory, "x").len(), 3);
    next.release().await.expect("release");
}

#[tokio::test(start_paused = true)]
async fn a_release_whose_deletes_answer_late_is_still_released() {
    let memory = MemoryNode::cluster(5);
    let redlock = redlock(&memory);
    let held = redlock.lock("late", TTL).await.expect("lock");
    // every node deletes at once but answers after the node timeout (100 ms
    // for a 10 s ttl) and before the retry's doubled one
    for node in &memory {
        node.set_latency(Duration::from_millis(150));
    }
    assert_eq!(
        held.release().await.expect("release"),
        ReleaseOutcome::Released
    );
    assert!(values(&memory, "late").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_tick_with_many_locks_goes_out_in_requests_of_at_most_500_locks() {
    let memory = MemoryNode::cluster(3);
    let redlock = redlock(&memory);
    let options = auto(Duration::from_secs(3));
    // taken together (no time passes): all due in the same tick
    let taking = (0..1_200).map(|i| redlock.lock_with([format!("many:{i}")], &options));
    let guards: Vec<LockGuard> = futures::future::join_all(taking)
        .await
        .into_iter()
        .map(|g| g.expect("lock"))
        .collect();
    let before = memory[0].batched_extends();
    // one tick: extended at ttl/3 = 1 s, the next tick at 2 s
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        memory[0].batched_extends() - before,
        3,
        "1,200 locks = 500 + 500 + 200"
    );
    assert!(guards.iter().all(LockGuard::is_valid));
}

/// Acquisition rounds counted by a local metrics recorder.
fn rounds(snapshotter: &metrics_util::debugging::Snapshotter) -> u64 {
    use metrics_util::debugging::DebugValue;
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(key, ..)| key.key().name() == quorate_redlock::metrics::ACQUIRE_ROUNDS_TOTAL)
        .map_or(0, |(_, _, _, value)| match value {
            DebugValue::Counter(n) => n,
            _ => 0,
        })
}

#[tokio::test(start_paused = true)]
async fn a_local_waiter_sends_nothing_while_its_process_holds_the_lock() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let memory = MemoryNode::cluster(3);
    // polling every 20 ms would send 100 rounds in the 2 s below
    let polling = LockOptions::new()
        .retry_delay(Duration::from_millis(20))
        .retry_jitter(Duration::ZERO)
        .acquire_timeout(Some(Duration::from_secs(60)));
    let redlock = redlock_with(&memory, polling);
    for hands_off in [true, false] {
        let holder = LockOptions::new().ttl(TTL).local_handoff(hands_off);
        let held = redlock.lock_with(["s"], &holder).await.expect("lock");
        // a snapshot resets the counters: count from here
        rounds(&snapshotter);
        let waiter = tokio::spawn({
            let redlock = redlock.clone();
            async move { redlock.lock("s", TTL).await }
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(rounds(&snapshotter), 0, "no round while held here");
        let released = Instant::now();
        let token = held.lease().token();
        held.release().await.expect("release");
        let next = waiter.await.expect("task").expect("granted");
        assert_eq!(next.lease().token() == token, hands_off);
        assert_eq!(released.elapsed(), Duration::ZERO, "served at the release");
        // handed over: no round; released through the servers: the waiter's one round
        assert_eq!(
            rounds(&snapshotter),
            u64::from(!hands_off),
            "hands off: {hands_off}"
        );
        next.release().await.expect("release");
    }
}

#[tokio::test(start_paused = true)]
async fn a_local_waiter_tries_the_servers_as_soon_as_its_processs_lock_is_found_lost() {
    let memory = MemoryNode::cluster(5);
    let slow = LockOptions::new()
        .retry_delay(Duration::from_secs(30))
        .retry_jitter(Duration::ZERO)
        .acquire_timeout(Some(Duration::from_secs(60)));
    let redlock = redlock_with(&memory, slow);
    // the waiter starts waiting with ~9 s of the holder's validity ahead
    let ttl = Duration::from_secs(9);
    let held = redlock.lock_with(["g"], &auto(ttl)).await.expect("lock");
    let waiter = tokio::spawn({
        let redlock = redlock.clone();
        async move { redlock.lock("g", ttl).await }
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    memory[..3].iter().for_each(MemoryNode::flush);
    let flushed = Instant::now();
    let validity_left = held.remaining();
    let next = waiter.await.expect("task").expect("granted");
    // found lost at the watchdog's next tick (within ttl/3), not when the
    // lost lease's validity would have run out
    assert!(flushed.elapsed() <= ttl / 3, "{:?}", flushed.elapsed());
    assert!(validity_left > ttl / 2, "{validity_left:?}");
    assert_ne!(next.lease().token(), held.lease().token());
    drop(held);
    next.release().await.expect("release");
}

/// The queue on memory nodes, end to end through separate Redlocks (as
/// separate processes): with fair(true) waiters are granted in the order
/// they queued, each woken by the release before it.
#[tokio::test(start_paused = true)]
async fn fair_waiters_of_separate_clients_are_served_in_queue_order() {
    let memory = MemoryNode::cluster(5);
    let holder = redlock(&memory);
    let held = holder.lock("q", TTL).await.expect("holder");
    let options = LockOptions::new().ttl(TTL).fair(true);
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for i in 0..3usize {
        let client = redlock_with(&memory, options.clone());
        let order = Arc::clone(&order);
        waiters.push(tokio::spawn(async move {
            let guard = client.lock("q", TTL).await.expect("granted");
            order.lock().expect("order").push(i);
            guard.release().await.expect("release");
        }));
        // the signal that waiter i is in line: its entry on every node
        while memory.iter().any(|n| n.queued("q") < i + 1) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // distinct tickets (microseconds of the wall clock)
        std::thread::sleep(Duration::from_millis(1));
    }
    let released = Instant::now();
    held.release().await.expect("release");
    for waiter in waiters {
        waiter.await.expect("task");
    }
    assert_eq!(*order.lock().expect("order"), [0, 1, 2]);
    // woken by the releases, not by their refresh timers (a third of 1 s)
    assert!(
        released.elapsed() < Duration::from_millis(300),
        "{:?}",
        released.elapsed()
    );
    assert!(
        memory.iter().all(|n| n.queued("q") == 0),
        "everyone left the queue"
    );
}

/// A dropped guard's lock goes to the next call of its process with the
/// same token (no round); `flush_released` releases one nobody took.
#[tokio::test(start_paused = true)]
async fn a_dropped_guard_passes_to_the_next_call_then_flushes() {
    let memory = MemoryNode::cluster(3);
    let redlock = redlock(&memory);
    let first = redlock.lock("d", TTL).await.expect("lock");
    let token = first.lease().token();
    drop(first);
    let second = redlock.lock("d", TTL).await.expect("lock");
    assert_eq!(second.lease().token(), token, "taken over without a round");
    drop(second);
    assert_eq!(redlock.flush_released().await, 1);
    assert!(
        memory.iter().all(|n| n.get("d").is_none()),
        "released everywhere"
    );
    // with fair(true) a dropped guard never lingers
    let fair = LockOptions::new().ttl(TTL).fair(true);
    let third = redlock.lock_with(["d"], &fair).await.expect("lock");
    drop(third);
    assert_eq!(redlock.flush_released().await, 0);
}

/// The description's lifetime on the nodes without a refresh (7 days) and
/// the refresh period (6 h), as `owner.rs` sets them.
const OWNER_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

#[tokio::test(start_paused = true)]
async fn a_clone_keeps_the_description_fresh_after_the_original_client_is_dropped() {
    let memory = MemoryNode::cluster(3);
    let original = redlock(&memory);
    let pool_side = original.with_metric_label("pool");
    let client = original.owner().client_id();
    drop(original);
    // longer than the description lives unrefreshed
    tokio::time::sleep(OWNER_TTL + Duration::from_secs(24 * 3600)).await;
    let _guard = pool_side.lock("job", TTL).await.expect("lock");
    let seen = pool_side.inspect("job").await.expect("inspect");
    let holder = seen.holder().expect("held");
    assert_eq!(holder.client, client);
    assert!(
        holder.owner.is_some(),
        "the description expired: nobody refreshed it ({seen})"
    );
}

#[tokio::test(start_paused = true)]
async fn a_task_locking_what_it_holds_fails_at_once_and_others_still_wait() {
    let memory = MemoryNode::cluster(3);
    // the default options: the check is on
    let nodes = memory
        .iter()
        .map(|m| Arc::new(m.clone()) as Arc<dyn Node>)
        .collect();
    let redlock = Redlock::from_nodes(nodes, LockOptions::new()).expect("redlock");
    let guard = redlock.lock("job", TTL).await.expect("lock");
    let began = Instant::now();
    for again in [
        redlock.lock("job", TTL).await,
        redlock.try_lock("job", TTL).await,
        redlock
            .lock_with(["other", "job"], &LockOptions::new())
            .await,
    ] {
        match again {
            Err(Error::Reentrant { resource }) => assert_eq!(resource, "job"),
            other => panic!("expected Reentrant, got {other:?}"),
        }
    }
    // at once: no round, no wait for the acquire timeout
    assert_eq!(began.elapsed(), Duration::ZERO);
    // another resource is fine, and so is the same one once released
    redlock
        .lock("elsewhere", TTL)
        .await
        .expect("lock")
        .release()
        .await
        .expect("release");
    guard.release().await.expect("release");
    let again = redlock.lock("job", TTL).await.expect("free again");

    // another task of the same client still waits for it (not reentrant)
    let waiter = {
        let redlock = redlock.clone();
        tokio::spawn(async move { redlock.lock("job", TTL).await.map(|g| g.lease().ttl()) })
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    again.release().await.expect("release");
    assert_eq!(waiter.await.expect("task").expect("granted"), TTL);

    // a guard handed to another task: the check cannot see that, so it is
    // turned off for the caller that waits for the other task's release
    let handed = redlock.lock("handed", TTL).await.expect("lock");
    let worker = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        handed.release().await
    });
    let patient = LockOptions::new().ttl(TTL).reentry_check(false);
    let mine = redlock
        .lock_with(["handed"], &patient)
        .await
        .expect("after the worker");
    worker.await.expect("worker").expect("release");
    mine.release().await.expect("release");
}

/// A fair call cancelled while its first queued round is in flight leaves
/// the queues: a release then claims the key for nobody, and another client
/// takes it at once. Before, the entry was left behind (only a refused round
/// counted as joined) and the release claimed the key for the gone waiter
/// (seen failing: the try_lock after the release was refused as taken).
#[tokio::test(start_paused = true)]
async fn a_waiter_cancelled_in_its_first_queued_round_leaves_the_queues() {
    let memory = MemoryNode::cluster(5);
    let holder = redlock(&memory);
    let held = holder.lock("gone", TTL).await.expect("holder");
    for node in &memory {
        node.set_request_delay(Duration::from_millis(50));
    }
    let waiter = redlock_with(&memory, LockOptions::new().ttl(TTL).fair(true));
    let cancelled = tokio::time::timeout(Duration::from_millis(10), waiter.lock("gone", TTL)).await;
    assert!(
        cancelled.is_err(),
        "still in its first round when cancelled"
    );
    // the cancelled round's entry reaches the nodes, and its leave after it
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        memory.iter().all(|n| n.queued("gone") == 0),
        "entries left: {:?}",
        memory.iter().map(|n| n.queued("gone")).collect::<Vec<_>>()
    );
    for node in &memory {
        node.set_request_delay(Duration::ZERO);
    }
    held.release().await.expect("release");
    let other = redlock(&memory);
    let taken = other.try_lock("gone", TTL).await;
    assert!(
        taken.is_ok(),
        "claimed for a waiter that is gone: {taken:?}"
    );
}

/// A queued waiter granted by 4 nodes of 5 leaves the queue of the fifth,
/// which refused it (another holder's key there): its entry would
/// otherwise hold fair waiters back on that node until it lapsed (seen
/// failing: 1 entry left on node 4).
#[tokio::test(start_paused = true)]
async fn a_granted_waiter_leaves_the_queues_of_the_nodes_that_refused_it() {
    let memory = MemoryNode::cluster(5);
    let holder = redlock(&memory);
    let held = holder.lock("split", TTL).await.expect("holder");
    let waiter = redlock_with(&memory, LockOptions::new().ttl(TTL).fair(true));
    let waiting = tokio::spawn(async move { waiter.lock("split", TTL).await });
    until_queued(&memory, "split", 1).await;
    // node 4 will refuse: a stray holder's key takes over there
    memory[4].set("split", b"stray", Some(TTL));
    held.release().await.expect("release");
    let guard = waiting.await.expect("task").expect("granted by nodes 0-3");
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(memory[4].queued("split"), 0, "the refusing node's entry");
    drop(guard);
}

/// Review point of the composition issue: a call that does not queue
/// (`try_lock`, the spinlocks) took a key that became free without a
/// release (its holder died) ahead of a fair waiter queued for it (failed
/// before fair waiters were known to the servers by their queue member).
#[tokio::test(start_paused = true)]
async fn a_try_lock_never_takes_a_free_key_ahead_of_a_fair_waiter() {
    let memory = MemoryNode::cluster(5);
    let holder = redlock(&memory);
    let ttl = Duration::from_millis(300);
    let dead = holder.lock("fair-key", ttl).await.expect("holder");
    let waiter = redlock_with(&memory, LockOptions::new().ttl(ttl).fair(true));
    let waiting = tokio::spawn(async move { waiter.lock("fair-key", ttl).await });
    until_queued(&memory, "fair-key", 1).await;
    // the holder dies: its key expires, nothing is released or claimed
    std::mem::forget(dead);
    tokio::time::sleep(ttl).await;
    let barging = redlock(&memory).try_lock("fair-key", ttl).await;
    assert!(
        barging.is_err(),
        "try_lock took the key ahead of a fair waiter"
    );
    drop(waiting);
}

/// A local hand-off follows the waiters' `fair`, not the holder's: the
/// holder (not fair) was granted while a fair waiter of another process
/// was queued; a later call of the holder's process is not handed the lock
/// past that waiter (before: handed over, up to `LOCAL_CHAIN` times).
#[tokio::test(start_paused = true)]
async fn a_local_hand_off_never_passes_over_a_fair_waiter_of_another_process() {
    let memory = MemoryNode::cluster(5);
    let first = redlock(&memory)
        .lock("handed", TTL)
        .await
        .expect("first holder");
    let process = redlock(&memory);
    let holding = {
        let process = process.clone();
        tokio::spawn(async move { process.lock("handed", TTL).await })
    };
    until_queued(&memory, "handed", 1).await;
    let fair = redlock_with(&memory, LockOptions::new().fair(true));
    let fair_waiting = tokio::spawn(async move { fair.lock("handed", TTL).await });
    until_queued(&memory, "handed", 2).await;
    first.release().await.expect("release");
    let held = holding
        .await
        .expect("task")
        .expect("the process's first call");
    // a later call of the same process waits for a hand-off
    let later = tokio::spawn(async move { process.lock("handed", TTL).await });
    tokio::time::sleep(Duration::from_millis(5)).await;
    held.release().await.expect("release");
    let fair_guard = fair_waiting
        .await
        .expect("task")
        .expect("the fair waiter is served first");
    assert!(!later.is_finished(), "handed over past the fair waiter");
    fair_guard.release().await.expect("release");
    let later_guard = later.await.expect("task").expect("then the later call");
    drop(later_guard);
}

/// A `max_ttl` below the default lock ttl lowers the default ttl with it
/// (no `defaults` given); explicit defaults above it are still refused.
#[tokio::test]
async fn a_short_max_ttl_lowers_the_default_ttl_unless_defaults_are_given() {
    let memory = [
        MemoryNode::new("m0"),
        MemoryNode::new("m1"),
        MemoryNode::new("m2"),
    ];
    let builder = || {
        memory.iter().fold(Redlock::builder(), |builder, m| {
            builder.node(Arc::new(m.clone()) as Arc<dyn Node>)
        })
    };
    let max_ttl = Duration::from_secs(2);
    let redlock = builder().max_ttl(max_ttl).build().await.expect("derived");
    assert_eq!(redlock.defaults().get_ttl(), max_ttl);
    let long = builder().max_ttl(Duration::from_secs(120)).build().await;
    assert_eq!(
        long.expect("default max_ttl above").defaults().get_ttl(),
        LockOptions::default().get_ttl()
    );
    let explicit = builder()
        .max_ttl(max_ttl)
        .defaults(LockOptions::new().ttl(Duration::from_secs(10)))
        .build()
        .await;
    assert!(
        matches!(
            explicit,
            Err(ConnectError::Config(ConfigError::TtlAboveMaxTtl { .. }))
        ),
        "{explicit:?}"
    );
}
