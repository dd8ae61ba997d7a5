//! The "I have one Redis" deployment: `Redlock::connect` with one URL, on a
//! real redis-server. Everything but surviving that server's loss works as
//! on 5 nodes: fencing, the waiter queue, auto-extension, the quarantine
//! after a restart; with the server down, every round fails at once naming
//! it, and a lock call fails when its acquire timeout runs out.

use std::time::Duration;

use quorate_redlock::{Error, LockOptions, NodeOutcome, Redlock};
use quorate_testkit::Cluster;
use tokio::time::Instant;

async fn one_node(cluster: &Cluster, max_ttl: Duration) -> Redlock {
    Redlock::builder()
        .url(cluster.server(0).url())
        .max_ttl(max_ttl)
        .defaults(LockOptions::new().ttl(max_ttl.min(Duration::from_secs(10))))
        .build()
        .await
        .expect("connect to one node")
}

#[tokio::test]
async fn one_node_fences_queues_and_extends() {
    let cluster = Cluster::start(1).await.expect("redis-server");
    let (a, b) = (
        one_node(&cluster, Duration::from_secs(60)).await,
        one_node(&cluster, Duration::from_secs(60)).await,
    );
    let fenced = LockOptions::new().ttl(Duration::from_secs(5)).fencing(true);
    let first = a.lock_with(["job"], &fenced).await.expect("lock");
    let first_fence = first.lease().fence().expect("fenced");

    // another client waits in the server's queue, and the release hands it the lock
    let waiting = fenced
        .clone()
        .acquire_timeout(Some(Duration::from_secs(10)));
    let waiter = tokio::spawn(async move { b.lock_with(["job"], &waiting).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let queued = cluster
            .server(0)
            .command(&["ZCARD", "quorate:queue:{job}"])
            .await;
        if queued.expect("ZCARD").as_i64() == Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the waiter never queued");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!waiter.is_finished(), "granted while held");
    first.release().await.expect("release");
    let second = waiter.await.expect("task").expect("the waiter gets it");
    let second_fence = second.lease().fence().expect("fenced");
    assert!(
        second_fence > first_fence,
        "fence {second_fence} after {first_fence}"
    );
    second.release().await.expect("release");

    // auto-extension keeps a 300 ms lease for 3 ttls
    let short = LockOptions::new()
        .ttl(Duration::from_millis(300))
        .auto_extend(true);
    let guard = a.lock_with(["long job"], &short).await.expect("lock");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(guard.is_valid(), "the watchdog let it lapse");
    let pttl = cluster.server(0).command(&["PTTL", "long job"]).await;
    assert!(
        pttl.expect("PTTL").as_i64().unwrap_or(-2) > 0,
        "the key expired"
    );
    guard.release().await.expect("release");
}

#[tokio::test]
async fn one_node_restarted_sits_out_its_quarantine() {
    let mut cluster = Cluster::start(1).await.expect("redis-server");
    let max_ttl = Duration::from_secs(2);
    let holder = one_node(&cluster, max_ttl).await;
    let held = holder
        .lock("acct", Duration::from_secs(2))
        .await
        .expect("lock");
    let restarted = Instant::now();
    cluster.server_mut(0).restart().await.expect("restart");
    let redlock = one_node(&cluster, max_ttl).await;
    // (the client reconnects with its backoff; until then the node is "not connected")
    let once = LockOptions::new()
        .ttl(Duration::from_secs(1))
        .max_attempts(Some(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let err = redlock
            .lock_with(["acct"], &once)
            .await
            .expect_err("the restarted node forgot the lock");
        let quarantined = err.outcomes().map_or(0, |o| {
            o.nodes_where(|o| matches!(o, NodeOutcome::Quarantined { .. }))
                .len()
        });
        if quarantined == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "never quarantined: {err}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let patient = LockOptions::new()
        .ttl(Duration::from_secs(1))
        .acquire_timeout(Some(Duration::from_secs(10)));
    let again = redlock.lock_with(["acct"], &patient).await.expect("lock");
    assert!(
        restarted.elapsed() >= max_ttl,
        "granted {:?} after the restart, before max_ttl",
        restarted.elapsed()
    );
    assert!(!held.is_valid(), "granted while the first lease was valid");
    again.release().await.expect("release");
}

/// A lock call retries until its acquire timeout (the server may be back
/// by then); one round fails at once.
#[tokio::test]
async fn with_its_one_node_down_a_round_fails_at_once_naming_it() {
    let mut cluster = Cluster::start(1).await.expect("redis-server");
    let redlock = one_node(&cluster, Duration::from_secs(60)).await;
    let node = cluster.server(0).url().replace("redis://", "");
    cluster.server_mut(0).kill();
    let started = Instant::now();
    let err = redlock
        .try_lock("job", Duration::from_secs(5))
        .await
        .expect_err("no server, no lock");
    assert!(matches!(err, Error::NoQuorum { granted: 0, .. }), "{err}");
    assert!(err.to_string().contains(&node), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}
