//! The countdown latch against 5 real redis-server processes (and the
//! scenarios marked so on memory nodes, which run the scripts' twins):
//! count-downs of separate clients open a waiter of another client; a
//! count-down recorded on 3 nodes is still seen when 2 of those 3 stall; 2
//! of 5 nodes killed mid-run change nothing; a wait times out naming what
//! is missing; clients disagreeing on the count are told.

use std::sync::Arc;
use std::time::Duration;

use quorate_latch::{Latch, LatchError};
use quorate_redlock::{LockOptions, MemoryNode, Node, Redlock};
use quorate_testkit::Cluster;

/// A client of its own, as a separate process has; 500 ms per node so a
/// slowed live node is not a failed one, 2 s per count-down.
async fn client(urls: Vec<String>) -> Redlock {
    let defaults = LockOptions::new()
        .node_timeout(Some(Duration::from_millis(500)))
        .acquire_timeout(Some(Duration::from_secs(2)));
    Redlock::builder()
        .urls(urls)
        .defaults(defaults)
        .build()
        .await
        .expect("connect")
}

enum Backend {
    Real(Cluster),
    Memory(Vec<MemoryNode>),
}

impl Backend {
    async fn client(&self) -> Redlock {
        match self {
            Backend::Real(cluster) => client(cluster.urls()).await,
            Backend::Memory(nodes) => {
                let nodes = nodes
                    .iter()
                    .map(|m| Arc::new(m.clone()) as Arc<dyn Node>)
                    .collect();
                Redlock::from_nodes(nodes, LockOptions::new()).expect("redlock")
            }
        }
    }
}

macro_rules! on_both_backends {
    ($scenario:ident, $real:ident, $memory:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $real() {
            let cluster = Cluster::start(5).await.expect("cluster");
            $scenario(Backend::Real(cluster)).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $memory() {
            $scenario(Backend::Memory(MemoryNode::cluster(5))).await;
        }
    };
}

on_both_backends!(
    workers_open_a_waiter,
    count_downs_of_separate_clients_open_a_waiter_of_another,
    in_memory_count_downs_of_separate_clients_open_a_waiter_of_another
);

async fn workers_open_a_waiter(backend: Backend) {
    let waiter = Latch::new(&backend.client().await, "shards", 3).expect("latch");
    assert_eq!(waiter.current_count().await.expect("read"), 3);
    let waiting = {
        let waiter = waiter.clone();
        tokio::spawn(async move { waiter.wait(Duration::from_secs(30)).await })
    };
    for worker in 0..3u64 {
        let latch = Latch::new(&backend.client().await, "shards", 3).expect("latch");
        latch.count_down().await.expect("count down");
        let left = waiter.current_count().await.expect("read");
        assert_eq!(left, 2 - worker);
        if left > 0 {
            assert!(!waiting.is_finished(), "opened with {left} to go");
        }
    }
    waiting.await.expect("task").expect("open");
    // open stays open
    waiter
        .wait(Duration::from_secs(1))
        .await
        .expect("still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_down_on_three_nodes_is_seen_with_two_of_them_stalled() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let worker = Latch::new(&client(cluster.urls()).await, "handover", 2).expect("latch");
    let reader = Latch::new(&client(cluster.urls()).await, "handover", 2).expect("latch");
    // recorded on nodes 2, 3, 4 only
    cluster.server(0).pause();
    cluster.server(1).pause();
    worker.count_down().await.expect("on a majority");
    cluster.server(0).resume();
    cluster.server(1).resume();
    // read from 0, 1, 4: only node 4 has it, and that is enough
    cluster.server(2).pause();
    cluster.server(3).pause();
    assert_eq!(reader.current_count().await.expect("a majority answers"), 1);
    worker.count_down().await.expect("on 0, 1, 4");
    reader
        .wait(Duration::from_secs(10))
        .await
        .expect("open with two nodes stalled");
    cluster.server(2).resume();
    cluster.server(3).resume();
    assert_eq!(reader.current_count().await.expect("read"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_five_nodes_killed_mid_run_change_nothing() {
    let mut cluster = Cluster::start(5).await.expect("cluster");
    let latch = Latch::new(&client(cluster.urls()).await, "batch", 4).expect("latch");
    latch.count_down().await.expect("count down");
    latch.count_down().await.expect("count down");
    cluster.server_mut(0).kill();
    cluster.server_mut(3).kill();
    let other = Latch::new(&client(cluster.urls()).await, "batch", 4).expect("latch");
    assert_eq!(other.current_count().await.expect("3 of 5 answer"), 2);
    other.count_down().await.expect("count down");
    latch.count_down().await.expect("count down");
    other.wait(Duration::from_secs(5)).await.expect("open");
    // a third node down: no majority to read from, and the error says so
    cluster.server_mut(1).kill();
    match other.current_count().await {
        Err(LatchError::Lock(error)) => {
            assert!(error.to_string().contains("no quorum"), "{error}")
        }
        other => panic!("expected no quorum, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_times_out_naming_what_is_missing_and_counts_must_agree() {
    let cluster = Cluster::start(3).await.expect("cluster");
    let redlock = client(cluster.urls()).await;
    let latch = Latch::new(&redlock, "deploy", 3).expect("latch");
    latch.count_down().await.expect("count down");
    match latch.wait(Duration::from_millis(300)).await {
        Err(LatchError::TimedOut { name, remaining }) => {
            assert_eq!((name.as_str(), remaining), ("deploy", 2));
        }
        other => panic!("expected TimedOut, got {other:?}"),
    }
    let wrong = Latch::new(&redlock, "deploy", 5).expect("latch");
    for result in [
        wrong.count_down().await,
        wrong.current_count().await.map(drop),
    ] {
        match result {
            Err(LatchError::CountMismatch { ours, theirs, .. }) => {
                assert_eq!((ours, theirs.as_str()), (5, "3"));
            }
            other => panic!("expected CountMismatch, got {other:?}"),
        }
    }
    assert!(matches!(
        Latch::new(&redlock, "x", 0),
        Err(LatchError::ZeroCount)
    ));
    assert!(matches!(
        Latch::new(&redlock, "", 1),
        Err(LatchError::Name(quorate_redlock::NameError::Empty { .. }))
    ));
    assert!(matches!(
        Latch::with_expiry(&redlock, "x", 1, Duration::ZERO),
        Err(LatchError::BadExpiry(_))
    ));
}
