//! The blocking API (feature `blocking`) from plain threads, no runtime in
//! the caller, against real redis-server processes: threads of separate
//! clients exclude each other, a dropped guard releases, a held lock is
//! refused naming its holder, and a guard dropped inside a runtime does not
//! block it.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use quorate_redlock::blocking::Redlock;
use quorate_redlock::{Error, NodeState, ReleaseOutcome};
use quorate_testkit::{Cluster, HoldLog};

/// The test kit is async: a runtime only to start and stop the servers.
fn cluster(runtime: &tokio::runtime::Runtime, n: usize) -> Cluster {
    runtime.block_on(Cluster::start(n)).expect("cluster")
}

fn test_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn threads_of_separate_clients_exclude_each_other_and_drops_release() {
    let runtime = test_runtime();
    let cluster = cluster(&runtime, 5);
    let holds = HoldLog::new();
    let mut threads = Vec::new();
    for c in 0..3u64 {
        let (urls, holds) = (cluster.urls(), holds.clone());
        threads.push(thread::spawn(move || {
            let redlock = Arc::new(Redlock::connect(urls).expect("connect"));
            let mut inner = Vec::new();
            for t in 0..2u64 {
                let (redlock, holds) = (Arc::clone(&redlock), holds.clone());
                inner.push(thread::spawn(move || {
                    for i in 0..10 {
                        let guard = redlock
                            .lock("ledger", Duration::from_secs(5))
                            .expect("granted in time");
                        let start = Instant::now();
                        thread::sleep(Duration::from_millis(2));
                        assert!(guard.is_valid());
                        holds.record("ledger", c * 2 + t, start, Instant::now());
                        if i % 2 == 0 {
                            assert_eq!(guard.release().expect("release"), ReleaseOutcome::Released);
                        } else {
                            drop(guard); // releases too
                        }
                    }
                }));
            }
            for t in inner {
                t.join().expect("thread");
            }
        }));
    }
    for t in threads {
        t.join().expect("client");
    }
    assert_eq!(holds.len(), 60);
    holds
        .check_exclusive()
        .expect("two threads held the lock at once");
    // every lock was released (dropped ones too): no node holds a token.
    // (A release may pass the key to a queued waiter of the other client as
    // a short claim, which lapses by itself if that waiter got the lock
    // another way; that is not a held lock.)
    let seen = Redlock::connect(cluster.urls())
        .expect("connect")
        .inspect("ledger")
        .expect("inspect");
    assert!(
        seen.nodes
            .iter()
            .all(|v| matches!(v.state, NodeState::Free | NodeState::Claimed { .. })),
        "{seen}"
    );
}

#[test]
fn a_held_lock_is_refused_naming_its_holder_and_freed_by_a_drop() {
    let runtime = test_runtime();
    let cluster = cluster(&runtime, 3);
    let holder = Redlock::build(
        quorate_redlock::Redlock::builder()
            .urls(cluster.urls())
            .owner("nightly-batch"),
    )
    .expect("connect");
    let other = Redlock::connect(cluster.urls()).expect("connect");
    let mut guard = holder.lock("report", Duration::from_secs(2)).expect("lock");
    guard.extend(Duration::from_secs(30)).expect("extend");
    assert!(guard.remaining() > Duration::from_secs(20));
    match other.try_lock("report", Duration::from_secs(5)) {
        Err(error @ Error::Taken { .. }) => {
            let named = error.holder().expect("a holder");
            assert_eq!(named.client, holder.owner().client_id());
            assert!(error.to_string().contains("nightly-batch"), "{error}");
        }
        other => panic!("expected Taken, got {other:?}"),
    }
    let seen = other.inspect("report").expect("inspect");
    assert!(seen.holder().is_some(), "{seen}");
    drop(guard);
    // the drop's release is done when drop returns
    let next = other
        .try_lock("report", Duration::from_secs(5))
        .expect("free after the drop");
    next.release().expect("release");
}

#[test]
fn a_guard_dropped_inside_a_runtime_does_not_block_it() {
    let runtime = test_runtime();
    let cluster = cluster(&runtime, 3);
    let redlock = Redlock::connect(cluster.urls()).expect("connect");
    let guard = redlock
        .lock("inside", Duration::from_secs(5))
        .expect("lock");
    // misuse: dropped in async code; the release goes to the client's own runtime
    runtime.block_on(async move { drop(guard) });
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match redlock.try_lock("inside", Duration::from_secs(5)) {
            Ok(again) => {
                again.release().expect("release");
                break;
            }
            // still held, or (same thread) still recorded as ours, until the
            // spawned release has run
            Err(Error::Taken { .. } | Error::Reentrant { .. }) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(other) => panic!("the spawned release never came: {other}"),
        }
    }
}
