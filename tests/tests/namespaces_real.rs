//! Two applications sharing the same servers under different namespaces
//! (`RedlockBuilder::namespace`) use the same names at once without
//! meeting, in every primitive; a third client in the first application's
//! namespace meets it (the control: the isolation comes from the namespace,
//! not from the test). On 3 real redis-servers.

use std::time::Duration;

use quorate_pool::{Pool, RateLimit, Requirement, Semaphore};
use quorate_redlock::Redlock;
use quorate_testkit::Cluster;

const TTL: Duration = Duration::from_secs(10);

async fn client(cluster: &Cluster, namespace: &str) -> Redlock {
    Redlock::builder()
        .urls(cluster.urls())
        .namespace(namespace)
        .build()
        .await
        .expect("connect")
}

#[tokio::test]
async fn two_namespaces_use_the_same_names_at_once_in_every_primitive() {
    let cluster = Cluster::start(3).await.expect("cluster");
    let billing = client(&cluster, "billing:").await;
    let search = client(&cluster, "search:").await;
    let billing_again = client(&cluster, "billing:").await;

    // the mutex
    let held = billing.lock("job", TTL).await.expect("billing's job");
    let other = search.try_lock("job", TTL).await.expect("search's own job");
    assert!(billing_again.try_lock("job", TTL).await.is_err());
    drop((held, other));

    // a pool of named devices
    let gpus = |redlock: &Redlock| Pool::new(redlock, "gpus").expect("pool");
    let need = || vec![Requirement::need(1, ["gpu-0".to_owned()], |d| d.clone())];
    let held = gpus(&billing).acquire(need(), TTL).await.expect("pool");
    let other = gpus(&search).try_acquire(need(), TTL).await;
    let other = other.expect("search's own gpu-0");
    assert!(gpus(&billing_again).try_acquire(need(), TTL).await.is_err());
    drop((held, other));

    // a resizable semaphore of one permit
    let permits = |redlock: &Redlock| Semaphore::resizable(redlock, "exports", 1).expect("sem");
    let held = permits(&billing).acquire(1, TTL).await.expect("permit");
    let other = permits(&search).try_acquire(1, TTL).await;
    let other = other.expect("search's own permit");
    assert!(permits(&billing_again).try_acquire(1, TTL).await.is_err());
    permits(&search)
        .set_permits(2)
        .await
        .expect("resize search's");
    assert_eq!(permits(&billing).current_permits().await.expect("size"), 1);
    drop((held, other));

    // a rate limit of one per 30 s
    let limit = |redlock: &Redlock| {
        RateLimit::new(redlock, "api", 1, Duration::from_secs(30)).expect("limit")
    };
    limit(&billing).try_acquire().await.expect("billing's call");
    limit(&search).try_acquire().await.expect("search's call");
    assert!(limit(&billing_again).try_acquire().await.is_err());

    // a read-write lock
    let table = |redlock: &Redlock| quorate_rwlock::RwLock::new(redlock, "table").expect("rw");
    let held = table(&billing).write(TTL).await.expect("write");
    let other = table(&search).try_write(TTL).await.expect("search's write");
    assert!(table(&billing_again).try_read(TTL).await.is_err());
    drop((held, other));

    // a latch
    let latch = |redlock: &Redlock| quorate_latch::Latch::new(redlock, "shards", 1).expect("latch");
    latch(&billing).count_down().await.expect("count down");
    assert_eq!(latch(&search).current_count().await.expect("remaining"), 1);
    assert_eq!(
        latch(&billing_again)
            .current_count()
            .await
            .expect("remaining"),
        0
    );

    // a tree lock
    let tree = |redlock: &Redlock| quorate_tree::TreeLock::new(redlock, "dc").expect("tree");
    let held = tree(&billing).lock(["dc1"], TTL).await.expect("tree");
    let other = tree(&search).try_lock(["dc1", "rack4"], TTL).await;
    let other = other.expect("search's own rack");
    assert!(tree(&billing_again)
        .try_lock(["dc1", "rack4"], TTL)
        .await
        .is_err());
    drop((held, other));

    // single-flight results
    let spin = |redlock: &Redlock| {
        quorate_spinlock::Spinlock::new(redlock, quorate_spinlock::SpinOptions::new())
            .expect("spinlock")
    };
    let compute = |spin: quorate_spinlock::Spinlock, value: &'static [u8]| async move {
        spin.compute_once("report", || async move {
            Ok::<_, std::io::Error>(value.to_vec())
        })
        .await
        .expect("compute once")
    };
    assert_eq!(compute(spin(&billing), b"billing").await, b"billing");
    assert_eq!(compute(spin(&search), b"search").await, b"search");
    assert_eq!(compute(spin(&billing_again), b"again").await, b"billing");
}
