//! One pass through every primitive's calls (mutex and `inspect`, pool
//! with usage reporting, semaphore with a resize, rate limit, read-write
//! lock, latch, tree lock, spinlock's single-flight), for tests that run
//! them on a deployment shape or under an ACL: each call must succeed.

use std::time::Duration;

use quorate_pool::{Pool, RateLimit, Requirement, Semaphore};
use quorate_redlock::Redlock;

/// Runs every primitive once on `redlock`'s nodes; panics naming the
/// first call that fails.
pub async fn every_primitive(redlock: &Redlock) {
    let ttl = Duration::from_secs(5);

    let guard = redlock.lock("invoice", ttl).await.expect("mutex");
    let seen = redlock.inspect("invoice").await.expect("inspect");
    assert!(seen.to_string().contains("invoice"), "{seen}");
    guard.release().await.expect("mutex release");

    let lab = Pool::new(redlock, "lab")
        .expect("pool")
        .with_usage_reporting(true);
    let devices = vec!["dev-1".to_owned(), "dev-2".to_owned()];
    let grant = lab
        .acquire(vec![Requirement::need(1, devices, |d| d.clone())], ttl)
        .await
        .expect("pool");
    grant.release().await.expect("pool release");
    lab.usage().all_tags().await.expect("pool usage");

    let permits = Semaphore::resizable(redlock, "permits", 2).expect("semaphore");
    let permit = permits.acquire(1, ttl).await.expect("semaphore");
    permits.set_permits(3).await.expect("resize");
    permits.inspect().await.expect("semaphore inspect");
    permit.release().await.expect("semaphore release");

    let limit = RateLimit::new(redlock, "api", 2, Duration::from_millis(500)).expect("limit");
    limit.acquire().await.expect("rate limit");

    let table = quorate_rwlock::RwLock::new(redlock, "table").expect("rwlock");
    let reading = table.read(ttl).await.expect("read");
    reading.release().await.expect("read release");
    let writing = table.write(ttl).await.expect("write");
    writing.release().await.expect("write release");

    let shards = quorate_latch::Latch::new(redlock, "shards", 1).expect("latch");
    shards.count_down().await.expect("count down");
    shards
        .wait(Duration::from_secs(5))
        .await
        .expect("latch opens");
    assert_eq!(shards.current_count().await.expect("remaining"), 0);

    let tree = quorate_tree::TreeLock::new(redlock, "dc").expect("tree");
    let rack = tree.lock(["dc1", "rack4"], ttl).await.expect("tree lock");
    rack.release().await.expect("tree release");

    let spin = quorate_spinlock::Spinlock::new(redlock, quorate_spinlock::SpinOptions::new())
        .expect("spinlock");
    let report = spin
        .compute_once("report", || async {
            Ok::<_, std::io::Error>(b"42".to_vec())
        })
        .await
        .expect("compute once");
    assert_eq!(report, b"42");
}
