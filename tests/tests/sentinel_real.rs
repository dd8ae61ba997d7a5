//! A Sentinel-managed primary as a node (fred's `redis-sentinel://` URL),
//! with real `redis-sentinel` processes: a failover promotes a replica, a
//! new server process that may lack the latest writes, so the node sits
//! out a quarantine as after a restart; waiting clients are served again
//! after it, and no two clients ever hold a lock at once.

use std::time::Duration;

use quorate_redlock::Redlock;
use quorate_system_tests::deployment;
use quorate_testkit::{Cluster, HoldLog, SentinelGroup};
use std::time::Instant;

const MAX_TTL: Duration = Duration::from_secs(2);

async fn client(urls: &[String]) -> Redlock {
    deployment::client(urls, MAX_TTL).await
}

/// The only node is a Sentinel-managed primary: a lock held across a
/// failover is not granted to a waiter before its lease ends, the promoted
/// replica starts a quarantine ('restarted'), and the waiter is served once
/// it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_quarantines_the_node_and_waiters_are_served_after() {
    let mut group = SentinelGroup::start(1, 3).await.expect("sentinels");
    let urls = [group.url()];
    let holder = client(&urls).await;
    let waiter = client(&urls).await;
    let guard = holder.lock("job", MAX_TTL).await.expect("lock before");
    let lease_end = Instant::now() + guard.remaining();
    // the primary crashes; the sentinels promote the replica
    let promoted = group.fail_primary().await.expect("failover");
    let waited = Instant::now();
    let served = waiter.lock("job", MAX_TTL).await.expect("served after");
    let granted = Instant::now();
    assert!(
        granted >= lease_end,
        "granted {:?} before the lease ended",
        lease_end - granted
    );
    let primary = group
        .servers()
        .iter()
        .find(|s| s.port() == promoted)
        .expect("the promoted server");
    let marker = primary
        .command(&["GET", "quorate:marker"])
        .await
        .expect("GET");
    let marker = marker.as_string().unwrap_or_default();
    assert!(marker.starts_with("restarted:"), "{marker}");
    println!(
        "served {:?} after the failover (quarantine of {MAX_TTL:?})",
        granted - waited
    );
    served.release().await.expect("release");
    drop(guard);
}

/// One Sentinel node and two standalone servers; 4 clients lock one key in
/// turn while the Sentinel node fails over and one standalone server
/// restarts (2 of 3 nodes lose their votes for a quarantine): no overlap,
/// grants before the faults and again after the quarantines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_deployment_through_a_failover_and_a_restart_never_overlaps() {
    let mut group = SentinelGroup::start(1, 3).await.expect("sentinels");
    let mut standalone = Cluster::start(2).await.expect("servers");
    let mut urls = vec![group.url()];
    urls.extend(standalone.urls());
    let holds = HoldLog::new();
    let started = Instant::now();
    let stop = started + Duration::from_secs(10);
    let mut workers = Vec::new();
    for id in 0..4u64 {
        let redlock = client(&urls).await;
        let holds = holds.clone();
        workers.push(tokio::spawn(async move {
            let mut grants = Vec::new();
            while Instant::now() < stop {
                let Ok(guard) = redlock.lock("shared", Duration::from_millis(500)).await else {
                    continue;
                };
                let start = Instant::now();
                let valid_until = start + guard.remaining();
                grants.push(start);
                tokio::time::sleep(Duration::from_millis(5)).await;
                // held until the release is sent, or the lease's end if sooner
                holds.record("shared", id, start, Instant::now().min(valid_until));
                let _ = guard.release().await;
            }
            grants
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let faults = Instant::now();
    let (failover, restart) =
        tokio::join!(group.fail_primary(), standalone.server_mut(0).restart());
    failover.expect("failover");
    restart.expect("restart");
    let mut grants = Vec::new();
    for worker in workers {
        grants.extend(worker.await.expect("worker"));
    }
    holds.check_exclusive().expect("no two holders at once");
    let before = grants.iter().filter(|g| **g < faults).count();
    let after = grants.iter().filter(|g| **g > faults + MAX_TTL).count();
    // while the Sentinel node waits for its promotion and the restarted
    // server sits out its quarantine, one vote of three is left: no grant
    let gap = (
        faults + Duration::from_millis(300),
        faults + Duration::from_millis(900),
    );
    let during = grants.iter().filter(|g| **g > gap.0 && **g < gap.1).count();
    println!("{before} grants before the faults, {during} during, {after} after the quarantines");
    assert!(before > 0 && after > 0, "{before} before, {after} after");
    assert_eq!(during, 0, "granted while two of three nodes could not vote");
}

/// A graceful failover (`SENTINEL FAILOVER`, as an operator runs it) leaves
/// the old primary running as a primary, serving the clients still
/// connected to it, until the sentinels demote it at their next look (their
/// INFO period, 10 s). The new primary's quarantine must outlast that
/// window, or a client there and a client on the old primary could both
/// win this node's vote: the default `max_ttl` (60 s) does; this measures
/// the window against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_failover_demotes_the_old_primary_within_the_default_quarantine() {
    let group = SentinelGroup::start(1, 3).await.expect("sentinels");
    let old = &group.servers()[0];
    let started = Instant::now();
    group.failover().await.expect("failover");
    let deadline = started + quorate_redlock::DEFAULT_MAX_TTL;
    let demoted = loop {
        let role = old.command(&["ROLE"]).await.expect("ROLE").into_array();
        if role.first().and_then(|r| r.as_string()).as_deref() == Some("slave") {
            break started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "the old primary still serves as one"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("the old primary was demoted {demoted:?} after the failover began");
}
