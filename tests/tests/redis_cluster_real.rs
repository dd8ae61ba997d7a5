//! A Redis Cluster as a quorate node (fred's `redis-cluster://` URL), on
//! real `redis-server` processes with `cluster-enabled`: every key a script
//! touches is in the lock key's slot (or, for the quarantine marker, on the
//! same shard), so locks work on every shard and with hash-tagged keys;
//! each shard serves its own quarantine after a restart or a failover.

use std::time::{Duration, Instant};

use quorate_redlock::raw::hash_slot;
use quorate_redlock::{ConfigError, Error, LockOptions, NodeOutcome, Redlock, ReleaseOutcome};
use quorate_system_tests::deployment;
use quorate_system_tests::every_primitive::every_primitive;
use quorate_testkit::{HoldLog, RedisCluster};

const MAX_TTL: Duration = Duration::from_secs(2);

async fn client(urls: &[String]) -> Redlock {
    deployment::client(urls, MAX_TTL).await
}

/// A key in each of the cluster's shards (the kit splits the slots evenly).
fn key_per_shard(shards: u16) -> Vec<String> {
    let per_shard = 16384 / shards;
    (0..shards)
        .map(|shard| {
            (0..)
                .map(|n| format!("job-{n}"))
                .find(|k| hash_slot(k) / per_shard == shard)
                .expect("a key")
        })
        .collect()
}

/// The cluster as the only node: plain keys on every shard, a hash-tagged
/// key with fencing and a queue, keys sharing a tag in one lock; keys in
/// different slots get an error naming the slots, a key whose `}` would
/// split its companions from it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_locks_every_shard_and_tagged_keys() {
    let cluster = RedisCluster::start(3, 0).await.expect("cluster");
    let urls = [cluster.url()];
    let redlock = client(&urls).await;
    let fresh = redlock.declare_fresh().await;
    let failed = fresh.nodes_where(|o| matches!(o, NodeOutcome::Error(_) | NodeOutcome::TimedOut));
    assert!(failed.is_empty(), "{fresh}");
    for key in key_per_shard(3) {
        let guard = redlock.lock(&key, MAX_TTL).await.expect(&key);
        guard.release().await.expect("release");
    }
    let fenced = LockOptions::new().ttl(MAX_TTL).fencing(true);
    let first = redlock
        .lock_with(["{tenant-7}:a"], &fenced)
        .await
        .expect("tagged key");
    let fence = first.lease().fence().expect("a fence");
    // a second client queues behind the holder and is served on release
    let other = client(&urls).await;
    let waiting = tokio::spawn(async move {
        let opts = LockOptions::new().ttl(MAX_TTL).fencing(true).fair(true);
        let guard = other.lock_with(["{tenant-7}:a"], &opts).await;
        guard.map(|g| g.lease().fence())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.release().await.expect("release");
    let next = waiting
        .await
        .expect("task")
        .expect("served after the release");
    assert!(next > Some(fence), "{next:?} after {fence}");
    let both = redlock
        .lock_with(["{order-7}:stock", "{order-7}:payment"], &fenced)
        .await
        .expect("keys sharing a tag");
    both.release().await.expect("release");

    let (a, b) = ("stock", "payment");
    assert_ne!(hash_slot(a), hash_slot(b));
    match redlock.lock_with([a, b], &fenced).await {
        Err(Error::InvalidConfig(ConfigError::CrossSlot { node, keys })) => {
            assert!(urls[0].contains(&node), "{node}");
            assert_eq!(
                keys,
                vec![(a.to_owned(), hash_slot(a)), (b.to_owned(), hash_slot(b))]
            );
        }
        other => panic!("keys in two slots: {other:?}"),
    }
    match redlock.lock("a}b", MAX_TTL).await {
        Err(Error::InvalidConfig(ConfigError::UnhashableResource(key))) => assert_eq!(key, "a}b"),
        other => panic!("a key with a stray brace: {other:?}"),
    }
}

/// The watchdog extends every lock a client holds in one batched call per
/// node; on a Cluster node, locks on different shards go in one call per
/// slot: each stays held across three of its ttls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_extends_locks_on_every_shard() {
    let cluster = RedisCluster::start(3, 0).await.expect("cluster");
    let urls = [cluster.url()];
    let redlock = client(&urls).await;
    redlock.declare_fresh().await;
    let ttl = Duration::from_millis(600);
    let opts = LockOptions::new().ttl(ttl).auto_extend(true);
    let mut guards = Vec::new();
    for key in key_per_shard(3) {
        guards.push(redlock.lock_with([key], &opts).await.expect("lock"));
    }
    tokio::time::sleep(3 * ttl).await;
    for guard in guards {
        assert!(guard.is_valid(), "{:?} lost", guard.resources());
        let released = guard.release().await.expect("release");
        assert_eq!(released, ReleaseOutcome::Released);
    }
}

/// Every primitive's calls on a cluster node (their keys share the hash
/// tag of the primitive's name; their quarantine marker is their shard's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_primitive_works_on_a_cluster_node() {
    let cluster = RedisCluster::start(3, 0).await.expect("cluster");
    let redlock = Redlock::builder()
        .url(cluster.url())
        .namespace("app:lock:")
        .build()
        .await
        .expect("connect");
    redlock.declare_fresh().await;
    every_primitive(&redlock).await;
}

/// Clients on separate connections take turns on one key of a cluster
/// node through its waiter queue: no two hold it at once, and every
/// client is served (release wake-ups reach waiters whichever shard their
/// subscription went to).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_take_turns_on_a_cluster_node_without_overlap() {
    let cluster = RedisCluster::start(3, 0).await.expect("cluster");
    let urls = [cluster.url()];
    client(&urls).await.declare_fresh().await;
    let holds = HoldLog::new();
    let mut workers = Vec::new();
    for id in 0..4u64 {
        let redlock = client(&urls).await;
        let holds = holds.clone();
        workers.push(tokio::spawn(async move {
            let opts = LockOptions::new()
                .ttl(MAX_TTL)
                .fair(true)
                .acquire_timeout(Some(Duration::from_secs(20)));
            for _ in 0..25 {
                let guard = redlock
                    .lock_with(["{tenant-7}:turns"], &opts)
                    .await
                    .expect("lock");
                let start = Instant::now();
                let valid_until = start + guard.remaining();
                tokio::time::sleep(Duration::from_millis(2)).await;
                holds.record("turns", id, start, Instant::now().min(valid_until));
                guard.release().await.expect("release");
            }
        }));
    }
    for worker in workers {
        worker.await.expect("worker");
    }
    holds.check_exclusive().expect("no two holders at once");
    assert_eq!(holds.len(), 100);
}

/// A queued waiter behind a lease of a minute, whose own retries and queue
/// entry refreshes are 30 s apart, is served right after the release: the
/// release's wake-up (a `PUBLISH` in the release script, which a Redis
/// Cluster forwards to every node) reaches its subscription whichever node
/// that went to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_a_waiter_through_the_cluster() {
    let cluster = RedisCluster::start(3, 0).await.expect("cluster");
    let urls = [cluster.url()];
    // leases of a minute: a waiter not woken would wait for the holder's ttl
    let long = Duration::from_secs(60);
    let connect = || Redlock::builder().urls(&urls).max_ttl(long).build();
    let holder = connect().await.expect("connect");
    holder.declare_fresh().await;
    for key in key_per_shard(3) {
        let guard = holder.lock(&key, long).await.expect("lock");
        let waiter = connect().await.expect("connect");
        let opts = LockOptions::new()
            .ttl(long)
            .auto_extend(false)
            .retry_delay(Duration::from_secs(30))
            .waiter_ttl(Duration::from_secs(30))
            .retry_jitter(Duration::ZERO)
            .acquire_timeout(Some(Duration::from_secs(60)));
        let resource = key.clone();
        let waiting = tokio::spawn(async move { waiter.lock_with([resource], &opts).await });
        // queued on the node: the waiter has sent its first round
        let queued = async {
            while holder.inspect(&key).await.expect("inspect").nodes[0].queued == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), queued)
            .await
            .expect("the waiter queued");
        guard.release().await.expect("release");
        let served = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("woken, not left to its 30 s retry")
            .expect("task");
        served.expect("served").release().await.expect("release");
    }
}

/// A shard's primary dies and has no replica to take over (and the
/// Cluster serves the other slots: `cluster-require-full-coverage no`):
/// every lock call still ends within its acquire timeout, granted or with
/// an error naming the node. (fred 10's Cluster client stalls its commands
/// to every shard while it reconnects to the dead one, so calls on the live
/// shards time out too: measured, not asserted; see the README.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_shard_never_makes_a_lock_call_hang() {
    let mut cluster = RedisCluster::start(3, 0).await.expect("cluster");
    let urls = [cluster.url()];
    let redlock = client(&urls).await;
    redlock.declare_fresh().await;
    for server in cluster.servers() {
        server
            .command(&["CONFIG", "SET", "cluster-require-full-coverage", "no"])
            .await
            .expect("CONFIG SET");
    }
    let keys = key_per_shard(3);
    let dead = cluster
        .primary_of(hash_slot(&keys[0]))
        .await
        .expect("shard");
    cluster.server_mut(dead).kill();
    let timeout = Duration::from_secs(2);
    let soon = LockOptions::new()
        .ttl(MAX_TTL)
        .acquire_timeout(Some(timeout));
    for key in &keys {
        let asked = Instant::now();
        let outcome = match redlock.lock_with([key.as_str()], &soon).await {
            Ok(guard) => {
                drop(guard);
                "granted".to_owned()
            }
            Err(Error::NoQuorum { outcomes, .. }) => {
                let failed = outcomes
                    .nodes_where(|o| matches!(o, NodeOutcome::Error(_) | NodeOutcome::TimedOut));
                assert_eq!(failed.len(), 1, "{outcomes}");
                assert!(urls[0].contains(failed[0]), "{outcomes}");
                outcomes.to_string()
            }
            Err(other) => panic!("{key}: {other:?}"),
        };
        let took = asked.elapsed();
        println!("{key} (slot {}): {outcome} after {took:?}", hash_slot(key));
        assert!(took < timeout + Duration::from_secs(2), "{key}: {took:?}");
    }
}

/// One shard restarts empty: its keys are refused for the quarantine (the
/// shard's marker is gone), keys on the other shards are granted at once,
/// and once the quarantine ends the shard serves again with fences above
/// every fence it handed out before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_shard_serves_its_own_quarantine() {
    let mut cluster = RedisCluster::start(3, 0).await.expect("cluster");
    let urls = [cluster.url()];
    let redlock = client(&urls).await;
    redlock.declare_fresh().await;
    let keys = key_per_shard(3);
    let fenced = LockOptions::new().ttl(MAX_TTL).fencing(true);
    let before = redlock
        .lock_with([keys[0].as_str()], &fenced)
        .await
        .expect("before");
    let old_fence = before.lease().fence().expect("fence");
    before.release().await.expect("release");

    let shard = cluster
        .primary_of(hash_slot(&keys[0]))
        .await
        .expect("shard");
    let server = cluster.server_mut(shard);
    server.kill();
    server.restart().await.expect("restart");
    cluster.wait_ok().await.expect("cluster ok");
    let restarted = Instant::now();

    // the client may still be finding the restarted shard again: bounded
    let soon = fenced.clone().acquire_timeout(Some(MAX_TTL / 2));
    match redlock.lock_with([keys[0].as_str()], &soon).await {
        Err(e) => assert!(e.to_string().contains("quarantined"), "{e}"),
        Ok(_) => panic!("the restarted shard granted during its quarantine"),
    }
    for key in &keys[1..] {
        let guard = redlock
            .lock_with([key.as_str()], &soon)
            .await
            .expect("the other shards vote");
        guard.release().await.expect("release");
    }
    assert!(restarted.elapsed() < MAX_TTL, "{:?}", restarted.elapsed());
    let after = redlock
        .lock_with([keys[0].as_str()], &fenced)
        .await
        .expect("served after the quarantine");
    assert!(
        restarted.elapsed() >= MAX_TTL - Duration::from_millis(100),
        "served {:?} after the restart",
        restarted.elapsed()
    );
    assert!(
        after.lease().fence() > Some(old_fence),
        "{:?} after {old_fence}",
        after.lease().fence()
    );
    after.release().await.expect("release");
}

/// A shard's primary crashes and its replica takes over (asynchronous
/// replication: it may lack the last writes): that shard serves a
/// quarantine ('restarted': the marker it copied names another process),
/// the other shards go on voting, and a lease held across the failover is
/// never granted to another client before it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_failover_quarantines_that_shard_only() {
    let mut cluster = RedisCluster::start(3, 1).await.expect("cluster");
    let urls = [cluster.url()];
    let holder = client(&urls).await;
    holder.declare_fresh().await;
    let waiter = client(&urls).await;
    let keys = key_per_shard(3);
    let guard = holder.lock(&keys[0], MAX_TTL).await.expect("lock before");
    let lease_end = Instant::now() + guard.remaining();
    let promoted = cluster
        .fail_primary_of(hash_slot(&keys[0]))
        .await
        .expect("failover");
    let promoted_at = Instant::now();
    // the client may still be finding the new primary: bounded
    let soon = LockOptions::new()
        .ttl(MAX_TTL)
        .acquire_timeout(Some(MAX_TTL / 2));
    for key in &keys[1..] {
        let other = waiter
            .lock_with([key.as_str()], &soon)
            .await
            .expect("the other shards vote");
        other.release().await.expect("release");
    }
    match waiter.lock_with([keys[0].as_str()], &soon).await {
        Err(e) if promoted_at.elapsed() < MAX_TTL => {
            assert!(e.to_string().contains("quarantined"), "{e}")
        }
        Err(e) => panic!("{e} after {:?}", promoted_at.elapsed()),
        Ok(_) => panic!("the promoted replica granted during its quarantine"),
    }
    let served = waiter.lock(&keys[0], MAX_TTL).await.expect("served after");
    assert!(
        Instant::now() >= lease_end,
        "granted before the lease ended"
    );
    let marker = cluster.servers()[promoted]
        .command(&["KEYS", "quorate:marker*"])
        .await
        .expect("KEYS");
    let markers: Vec<String> = marker
        .into_array()
        .iter()
        .filter_map(|m| m.as_string())
        .collect();
    assert_eq!(markers.len(), 1, "{markers:?}");
    let value = cluster.servers()[promoted]
        .command(&["GET", &markers[0]])
        .await
        .expect("GET");
    let value = value.as_string().unwrap_or_default();
    assert!(value.starts_with("restarted:"), "{value}");
    served.release().await.expect("release");
    drop(guard);
}
