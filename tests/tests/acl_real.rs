//! Every primitive (mutex and `inspect`, pool with usage reporting,
//! semaphore with a resize, rate limit, read-write lock, latch, tree lock,
//! spinlock's single-flight) as a user with only the ACL the README
//! documents, on 3 real redis-servers: with functions (`FCALL`) and, for
//! servers or ACLs without them, by `EVALSHA`.

use std::time::Duration;

use quorate_pool::{Pool, RateLimit, Requirement, Semaphore};
use quorate_redlock::Redlock;
use quorate_testkit::Cluster;

/// The README's ACL, word for word (after `ACL SETUSER locker`).
const DOCUMENTED: &str = "on resetkeys ~app:lock:* ~quorate:* resetchannels \
    &quorate:* -@all +fcall +function|load +eval +evalsha +get +set +del +exists +incr \
    +pexpire +pttl +publish +time +info +type +zadd +zcard +zrange +zrangebyscore +zrank \
    +zrem +zscore +sadd +srem +scard +smembers +srandmember +hset +hget +hdel +hgetall +hvals \
    +hincrby +hrandfield +subscribe +unsubscribe +ping +auth +hello";

/// The same without functions: every script runs by `EVALSHA`.
fn without_functions() -> String {
    DOCUMENTED.replace("+fcall +function|load ", "")
}

#[tokio::test]
async fn every_primitive_works_under_the_documented_acl() {
    let cluster = every_primitive_as(DOCUMENTED).await;
    assert!(script_calls(&cluster, "fcall").await > 0, "no FCALL");
    assert_eq!(script_calls(&cluster, "evalsha").await, 0);
}

#[tokio::test]
async fn every_primitive_works_under_the_documented_acl_without_functions() {
    let cluster = every_primitive_as(&without_functions()).await;
    assert!(script_calls(&cluster, "evalsha").await > 0, "no EVALSHA");
    assert_eq!(script_calls(&cluster, "fcall").await, 0);
}

/// `command`'s calls on all nodes (`INFO commandstats`).
async fn script_calls(cluster: &Cluster, command: &str) -> i64 {
    let mut total = 0;
    for server in cluster.servers() {
        let info = server.command(&["INFO", "commandstats"]).await;
        let info = info.expect("INFO").as_string().unwrap_or_default();
        let prefix = format!("cmdstat_{command}:calls=");
        total += info
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or(0);
    }
    total
}

async fn every_primitive_as(acl: &str) -> Cluster {
    let cluster = Cluster::start(3).await.expect("cluster");
    let urls = cluster
        .acl_user_urls("locker", "lockpass", acl)
        .await
        .expect("ACL SETUSER");
    let redlock = Redlock::builder()
        .urls(urls)
        .namespace("app:lock:")
        .build()
        .await
        .expect("connect as locker");
    let ttl = Duration::from_secs(5);

    let guard = redlock.lock("invoice", ttl).await.expect("mutex");
    let seen = redlock.inspect("invoice").await.expect("inspect");
    assert!(seen.to_string().contains("invoice"), "{seen}");
    guard.release().await.expect("mutex release");

    let lab = Pool::new(&redlock, "lab")
        .expect("pool")
        .with_usage_reporting(true);
    let devices = vec!["dev-1".to_owned(), "dev-2".to_owned()];
    let grant = lab
        .acquire(vec![Requirement::need(1, devices, |d| d.clone())], ttl)
        .await
        .expect("pool");
    grant.release().await.expect("pool release");
    lab.usage().all_tags().await.expect("pool usage");

    let permits = Semaphore::resizable(&redlock, "permits", 2).expect("semaphore");
    let permit = permits.acquire(1, ttl).await.expect("semaphore");
    permits.set_permits(3).await.expect("resize");
    permits.inspect().await.expect("semaphore inspect");
    permit.release().await.expect("semaphore release");

    let limit = RateLimit::new(&redlock, "api", 2, Duration::from_millis(500)).expect("limit");
    limit.acquire().await.expect("rate limit");

    let table = quorate_rwlock::RwLock::new(&redlock, "table").expect("rwlock");
    let reading = table.read(ttl).await.expect("read");
    reading.release().await.expect("read release");
    let writing = table.write(ttl).await.expect("write");
    writing.release().await.expect("write release");

    let shards = quorate_latch::Latch::new(&redlock, "shards", 1).expect("latch");
    shards.count_down().await.expect("count down");
    shards
        .wait(Duration::from_secs(5))
        .await
        .expect("latch opens");
    assert_eq!(shards.current_count().await.expect("remaining"), 0);

    let tree = quorate_tree::TreeLock::new(&redlock, "dc").expect("tree");
    let rack = tree.lock(["dc1", "rack4"], ttl).await.expect("tree lock");
    rack.release().await.expect("tree release");

    let spin = quorate_spinlock::Spinlock::new(&redlock, quorate_spinlock::SpinOptions::new())
        .expect("spinlock");
    let report = spin
        .compute_once("report", || async {
            Ok::<_, std::io::Error>(b"42".to_vec())
        })
        .await
        .expect("compute once");
    assert_eq!(report, b"42");
    cluster
}
