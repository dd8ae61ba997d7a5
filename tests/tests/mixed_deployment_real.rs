//! Five nodes of three kinds: a Redis Cluster (3 shards, a replica each), a
//! Sentinel-managed primary with a replica and 3 sentinels, and three
//! standalone servers. Four clients lock one key in turn, with fencing,
//! while the Cluster shard serving the key and the Sentinel primary both
//! crash and fail over: 2 of the 5 nodes change servers mid-run.

use std::time::{Duration, Instant};

use quorate_redlock::raw::hash_slot;
use quorate_redlock::{LockOptions, NodeOutcome};
use quorate_system_tests::deployment;
use quorate_testkit::{Cluster, FenceLog, HoldLog, RedisCluster, SentinelGroup};

const MAX_TTL: Duration = Duration::from_secs(2);
const KEY: &str = "{tenant-7}:shared";

/// No two clients hold the key at once and fences only grow, through both
/// failovers; the three nodes that keep their servers are a majority, so
/// clients are served before, during and after the failovers, and every
/// client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_a_sentinel_and_three_servers_through_two_failovers() {
    let mut redis_cluster = RedisCluster::start(3, 1).await.expect("redis cluster");
    let mut sentinel = SentinelGroup::start(1, 3).await.expect("sentinels");
    let standalone = Cluster::start(3).await.expect("servers");
    let mut urls = vec![redis_cluster.url(), sentinel.url()];
    urls.extend(standalone.urls());
    let fresh = deployment::client(&urls, MAX_TTL)
        .await
        .declare_fresh()
        .await;
    let failed = fresh.nodes_where(|o| matches!(o, NodeOutcome::Error(_) | NodeOutcome::TimedOut));
    assert!(failed.is_empty(), "{fresh}");

    let holds = HoldLog::new();
    let fences = FenceLog::new();
    let started = Instant::now();
    let stop = started + Duration::from_secs(12);
    let mut workers = Vec::new();
    for id in 0..4u64 {
        let redlock = deployment::client(&urls, MAX_TTL).await;
        let (holds, fences) = (holds.clone(), fences.clone());
        workers.push(tokio::spawn(async move {
            let opts = LockOptions::new()
                .ttl(Duration::from_millis(500))
                .fencing(true)
                .acquire_timeout(Some(Duration::from_secs(2)));
            let mut grants = Vec::new();
            while Instant::now() < stop {
                let Ok(guard) = redlock.lock_with([KEY], &opts).await else {
                    continue;
                };
                let start = Instant::now();
                let valid_until = start + guard.remaining();
                grants.push(start);
                fences.record(id, guard.lease().fence().expect("fenced"), start);
                tokio::time::sleep(Duration::from_millis(5)).await;
                holds.record(KEY, id, start, Instant::now().min(valid_until));
                let _ = guard.release().await;
            }
            grants
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let faults = Instant::now();
    let (shard, primary) = tokio::join!(
        redis_cluster.fail_primary_of(hash_slot(KEY)),
        sentinel.fail_primary()
    );
    shard.expect("cluster failover");
    primary.expect("sentinel failover");
    let healed = Instant::now();
    let mut per_client = Vec::new();
    for worker in workers {
        per_client.push(worker.await.expect("worker"));
    }
    holds.check_exclusive().expect("no two holders at once");
    fences
        .check_strictly_increasing()
        .expect("fences only grow");
    let all: Vec<Instant> = per_client.iter().flatten().copied().collect();
    let before = all.iter().filter(|g| **g < faults).count();
    let during = all.iter().filter(|g| **g >= faults && **g < healed).count();
    let after = all.iter().filter(|g| **g >= healed + MAX_TTL).count();
    println!(
        "{before} grants before the faults, {during} during the failovers ({:?}), {after} after \
         the quarantines; per client {:?}",
        healed - faults,
        per_client.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(
        before > 0 && during > 0 && after > 0,
        "{before}/{during}/{after}"
    );
    assert!(
        per_client.iter().all(|g| !g.is_empty()),
        "a client was never served"
    );
}
