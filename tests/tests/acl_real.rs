//! Every primitive (mutex and `inspect`, pool with usage reporting,
//! semaphore with a resize, rate limit, read-write lock, latch, tree lock,
//! spinlock's single-flight) as a user with only the ACL the README
//! documents, on 3 real redis-servers: with functions (`FCALL`) and, for
//! servers or ACLs without them, by `EVALSHA`.

use quorate_redlock::Redlock;
use quorate_system_tests::every_primitive::every_primitive;
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
    every_primitive(&redlock).await;
    cluster
}
