//! A resizable semaphore's number is configuration kept on the nodes, and a
//! node restarted from an older snapshot brings back an older number. The
//! lease quarantine does not restore it: a node must not let slots be taken
//! by a number it may have forgotten.

use std::sync::Arc;
use std::time::Duration;

use quorate_pool::Semaphore;
use quorate_redlock::{LockOptions, MemoryNode, Node, Redlock};

/// A client whose nodes sit out `max_ttl` after a restart.
async fn client(memory: &[MemoryNode], max_ttl: Duration) -> Redlock {
    let defaults = LockOptions::new()
        .ttl(max_ttl)
        .acquire_timeout(Some(Duration::from_secs(10)))
        .reentry_check(false);
    let mut builder = Redlock::builder().max_ttl(max_ttl).defaults(defaults);
    for m in memory {
        builder = builder.node(Arc::new(m.clone()) as Arc<dyn Node>);
    }
    builder.build().await.expect("config")
}

/// 4 permits all held, a waiter waiting with slots 0..4; `set_permits(2)`
/// returns while nodes 3 and 4 are down, so only nodes 0-2 have it. Nodes 3
/// and 4 come back; nodes 1 and 2 then restart from snapshots taken before
/// the set (4 permits again) and sit out their quarantine. When the holder
/// of slot 3 releases, nodes 1-4 would all let slot 3 be taken: a majority
/// that forgot the shrink. The waiter must still get no slot beyond 2.
#[tokio::test(start_paused = true)]
async fn a_shrink_forgotten_by_restarted_nodes_is_not_undone() {
    let max_ttl = Duration::from_secs(1);
    let memory = MemoryNode::cluster(5);
    let holders = client(&memory, max_ttl).await;
    let semaphore = Semaphore::resizable(&holders, "cfg", 4).expect("semaphore");
    // held throughout: auto-extended
    let kept = LockOptions::new().ttl(max_ttl).auto_extend(true);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(semaphore.acquire_with(1, &kept).await.expect("permit"));
    }
    held.sort_by_key(|p| p.slots()[0]);
    let snapshots: Vec<_> = memory.iter().map(MemoryNode::snapshot).collect();
    let waiter_client = client(&memory, max_ttl).await;
    let waiting = Semaphore::resizable(&waiter_client, "cfg", 4).expect("semaphore");
    let waiter = tokio::spawn(async move { waiting.acquire(1, max_ttl).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    for i in [3, 4] {
        memory[i].set_down(true);
    }
    semaphore.set_permits(2).await.expect("set on nodes 0-2");
    for i in [3, 4] {
        memory[i].set_down(false);
    }
    for i in [1, 2] {
        memory[i].restart_from(&snapshots[i]);
    }
    // any call that can grant starts their quarantine (a mutex lock here,
    // not a semaphore read, whose write-back would repair them)
    let _ = holders.try_lock("elsewhere", max_ttl).await;
    tokio::time::sleep(max_ttl * 2).await;
    let slot3 = held.pop().expect("slot 3");
    slot3.release().await.expect("release");
    // several of the waiter's rounds
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert!(
        !waiter.is_finished(),
        "the waiter got slot {:?}",
        waiter.await.expect("join").map(|p| p.slots().to_vec())
    );
    held.remove(0).release().await.expect("release");
    let granted = waiter.await.expect("join").expect("granted");
    assert_eq!(granted.slots(), &[0]);
}
