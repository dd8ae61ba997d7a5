//! The process-wide bound on quorum rounds in flight, in a test binary of its
//! own (the bound is per process; other tests' rounds would share it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quorate_redlock::raw::quorum::{self, Decide, MAX_ROUNDS_IN_FLIGHT};
use quorate_redlock::{MemoryNode, Node};

#[tokio::test(start_paused = true)]
async fn rounds_beyond_the_bound_wait_before_sending_and_timing() {
    let node = MemoryNode::new("stalled");
    node.set_stalled(true);
    let nodes: Vec<Arc<dyn Node>> = vec![Arc::new(node)];
    let sent = Arc::new(AtomicUsize::new(0));
    let timeout = Duration::from_secs(60);
    let calls = MAX_ROUNDS_IN_FLIGHT + 44;
    let rounds: Vec<_> = (0..calls)
        .map(|i| {
            let (nodes, sent) = (nodes.clone(), Arc::clone(&sent));
            tokio::spawn(async move {
                let keys = vec![format!("k{i}")];
                let started = tokio::time::Instant::now();
                let round = quorum::round(
                    "release",
                    &nodes,
                    timeout,
                    Decide::Majority(1),
                    |_| true,
                    |n| {
                        sent.fetch_add(1, Ordering::SeqCst);
                        n.release(&keys, "t", None)
                    },
                )
                .await;
                assert_eq!(round.answered(), 0, "the node is stalled");
                started.elapsed()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        sent.load(Ordering::SeqCst),
        MAX_ROUNDS_IN_FLIGHT,
        "the rest wait"
    );
    let mut took = Vec::new();
    for round in rounds {
        took.push(round.await.expect("round"));
    }
    assert_eq!(sent.load(Ordering::SeqCst), calls);
    // the first rounds time out after the node timeout; the waiting ones
    // start then, and get a full node timeout of their own
    assert_eq!(
        took.iter()
            .filter(|t| **t <= timeout + Duration::from_millis(1))
            .count(),
        MAX_ROUNDS_IN_FLIGHT
    );
    assert!(
        took.iter()
            .all(|t| *t <= 2 * timeout + Duration::from_millis(2)),
        "{took:?}"
    );
}
