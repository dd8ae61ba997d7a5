//! Operators' tools against 5 real redis-server processes: who holds a
//! lock (inspect) and the forced release of a lock whose holder is gone.

use std::time::Duration;

use quorate_redlock::{Error, LockOptions, NodeState, Redlock};
use quorate_testkit::Cluster;
use tokio::time::Instant;

/// A client of `cluster` whose description carries `label`.
async fn labelled(cluster: &Cluster, label: &str) -> Redlock {
    Redlock::builder()
        .urls(cluster.urls())
        .owner(label)
        .build()
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_names_the_holder_and_force_unlock_frees_the_lock_for_the_next_waiter() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let holder = labelled(&cluster, "billing-worker-3").await;
    let operator = Redlock::connect(cluster.urls()).await.expect("operator");
    let ttl = Duration::from_secs(30);
    let fenced = LockOptions::new().ttl(ttl).fencing(true);
    let mut guard = holder
        .lock_with(["invoice:42"], &fenced)
        .await
        .expect("lock");
    let token = guard.lease().token().to_hex();

    let seen = operator.inspect("invoice:42").await.expect("inspect");
    let named = seen.holder().expect("held on a majority");
    assert_eq!(named.client, holder.owner().client_id());
    let owner = named.owner.as_deref().expect("a description");
    assert!(owner.starts_with("billing-worker-3 (host "), "{owner}");
    assert!(
        owner.contains(&format!("pid {}", std::process::id())),
        "{owner}"
    );
    assert!(
        owner.contains(&holder.owner().uuid().to_string()),
        "{owner}"
    );
    let remaining = seen.remaining().expect("a ttl");
    assert!(
        remaining <= ttl && remaining > ttl - Duration::from_secs(5),
        "{remaining:?}"
    );
    assert_eq!(seen.fence(), guard.lease().fence());
    assert!(seen
        .nodes
        .iter()
        .all(|v| matches!(v.state, NodeState::Held { .. })));
    // the token's secret half shows nowhere
    let shown = format!("{seen}{seen:?}");
    assert!(!shown.contains(&token), "{shown}");
    assert!(shown.contains(&token[..16]), "{shown}");

    // A waiter of another client queues behind the lock (its timers alone
    // would retry only after 5 s; the queue view shows it waiting).
    let waiter = Redlock::builder()
        .urls(cluster.urls())
        .defaults(
            LockOptions::new()
                .waiter_ttl(Duration::from_secs(15))
                .acquire_timeout(Some(Duration::from_secs(20))),
        )
        .build()
        .await
        .expect("waiter");
    let waiting = tokio::spawn(async move {
        let guard = waiter.lock("invoice:42", Duration::from_secs(5)).await;
        (guard, Instant::now())
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen = operator.inspect("invoice:42").await.expect("inspect");
        if seen.nodes.iter().filter(|v| v.queued == 1).count() >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the waiter never queued: {seen}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The holder is "dead": the operator forces the lock free.
    let forced_at = Instant::now();
    let gone = operator.force_unlock("invoice:42").await.expect("force");
    assert_eq!(gone.deleted, 5, "{}", gone.before);
    assert_eq!(
        gone.before.holder().map(|h| h.client.clone()),
        Some(holder.owner().client_id())
    );
    let (granted, at) = waiting.await.expect("waiter task");
    let granted = granted.expect("the waiter gets the lock");
    // woken by the forced release's announcement, not its 5 s timers
    assert!(
        at - forced_at < Duration::from_secs(4),
        "{:?}",
        at - forced_at
    );
    // the old holder finds out at its next extension
    assert!(
        guard.extend(ttl).await.is_err(),
        "the forced-out holder still extends"
    );
    granted.release().await.expect("release");
    let after = operator.inspect("invoice:42").await.expect("inspect");
    assert!(after.holder().is_none(), "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_lock_names_its_holder_on_every_path() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let holder = labelled(&cluster, "billing-worker-3").await;
    let other = Redlock::connect(cluster.urls()).await.expect("other");
    let ttl = Duration::from_secs(30);
    let _one = holder.lock("single", ttl).await.expect("lock");
    let _fenced = holder
        .lock_with(["fenced"], &LockOptions::new().ttl(ttl).fencing(true))
        .await
        .expect("fenced lock");
    let _both = holder
        .lock_with(["left", "right"], &LockOptions::new().ttl(ttl))
        .await
        .expect("multi-key lock");
    // the batched single-key path, the scripted fenced one, the multi-key one
    let refusals = [
        other.try_lock("single", ttl).await,
        other
            .lock_with(
                ["fenced"],
                &LockOptions::new()
                    .ttl(ttl)
                    .fencing(true)
                    .max_attempts(Some(1)),
            )
            .await,
        other
            .lock_with(
                ["right", "free"],
                &LockOptions::new().ttl(ttl).max_attempts(Some(1)),
            )
            .await,
    ];
    for refusal in refusals {
        let error = refusal.expect_err("held by the other client");
        assert!(matches!(error, Error::Taken { .. }), "{error}");
        let named = error.holder().expect("a holder").clone();
        assert_eq!(named.client, holder.owner().client_id());
        assert_eq!(named.owner, Some(holder.owner().to_string()));
        let text = error.to_string();
        assert!(
            text.contains("is taken by billing-worker-3 (host "),
            "{text}"
        );
        let outcomes = error.outcomes().expect("outcomes");
        assert_eq!(outcomes.holder(), Some(&named));
    }
}

#[tokio::test]
async fn inspect_of_a_free_lock_and_bad_input() {
    let cluster = Cluster::start(3).await.expect("cluster");
    let redlock = Redlock::connect(cluster.urls()).await.expect("connect");
    let seen = redlock.inspect("nothing-here").await.expect("inspect");
    assert!(seen.holder().is_none());
    assert!(
        seen.nodes.iter().all(|v| v.state == NodeState::Free),
        "{seen}"
    );
    assert!(redlock.inspect("").await.is_err());
    let gone = redlock.force_unlock("nothing-here").await.expect("force");
    assert_eq!(gone.deleted, 0);
}
