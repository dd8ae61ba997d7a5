//! The spinlock and single-flight against 5 real redis-server processes,
//! with real faults (a partitioned holder, killed nodes).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quorate_redlock::{Error, MemoryNode, Redlock, ReleaseOutcome, MAX_TTL};
use quorate_spinlock::{ComputeError, Expiry, Scheme, SpinError, SpinKey, SpinOptions, Spinlock};
use quorate_testkit::{Cluster, Fault, FaultProxy, Reply};
use tokio::sync::{oneshot, Barrier};
use tokio::time::Instant;

async fn cluster() -> Cluster {
    Cluster::start(5).await.expect("5 redis-server nodes")
}

async fn spin(cluster: &Cluster, options: SpinOptions) -> Spinlock {
    let redlock = Redlock::connect(cluster.urls()).await.expect("connect");
    Spinlock::new(&redlock, options).expect("options")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `PTTL key` on every node (-2: absent, -1: no expiry).
async fn pttls(cluster: &Cluster, key: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for i in 0..cluster.len() {
        let reply = cluster
            .server(i)
            .command(&["PTTL", key])
            .await
            .expect("PTTL");
        out.push(reply.as_i64().expect("integer"));
    }
    out
}

/// The nodes of a scenario that runs on real servers and on memory nodes
/// (which run the scripts' native twins: the same scenario keeps them in step).
enum Nodes {
    Real(Cluster),
    Memory(Vec<MemoryNode>),
}

impl Nodes {
    async fn real() -> Self {
        Nodes::Real(cluster().await)
    }

    fn memory() -> Self {
        Nodes::Memory(MemoryNode::cluster(5))
    }

    /// A new client's spinlock.
    async fn spin(&self, options: SpinOptions) -> Spinlock {
        match self {
            Nodes::Real(cluster) => spin(cluster, options).await,
            Nodes::Memory(nodes) => memory_spin_on(nodes, options),
        }
    }

    /// `PTTL key` on every node (-2: absent, -1: no expiry).
    async fn pttls(&self, key: &str) -> Vec<i64> {
        match self {
            Nodes::Real(cluster) => pttls(cluster, key).await,
            Nodes::Memory(nodes) => nodes
                .iter()
                .map(|n| match n.ttl(key) {
                    None => -2,
                    Some(MAX_TTL) => -1,
                    Some(left) => i64::try_from(left.as_millis()).expect("ms"),
                })
                .collect(),
        }
    }

    /// `SET key value PX ttl` on node `i`, behind the clients' backs.
    async fn plant(&self, i: usize, key: &str, value: &str, ttl: Duration) {
        match self {
            Nodes::Real(cluster) => cluster.plant(i, key, value, ttl).await.expect("SET"),
            Nodes::Memory(nodes) => nodes[i].set(key, value.as_bytes(), Some(ttl)),
        }
    }
}

/// Runs a scenario on 5 real servers and on 5 memory nodes.
macro_rules! on_both_node_kinds {
    ($scenario:ident, $real:ident, $memory:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $real() {
            $scenario(Nodes::real().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $memory() {
            $scenario(Nodes::memory()).await;
        }
    };
}

/// How many SET commands node `i` has executed (INFO commandstats): each
/// acquisition round of a single unfenced key is one `SET NX PX` per node.
async fn set_calls(cluster: &Cluster, i: usize) -> u64 {
    let info = match cluster.server(i).command(&["INFO", "commandstats"]).await {
        Ok(Reply::Bulk(Some(b))) => String::from_utf8_lossy(&b).into_owned(),
        other => panic!("INFO: {other:?}"),
    };
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_set:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().expect("calls"))
}

/// A computation that counts its runs and returns `value`.
fn counted(
    runs: &Arc<AtomicUsize>,
    value: &'static [u8],
) -> impl FnOnce() -> std::future::Ready<Result<Vec<u8>, String>> {
    let runs = Arc::clone(runs);
    move || {
        runs.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(value.to_vec()))
    }
}

/// `compute_once(key)` with a [`counted`] computation, expected to succeed.
async fn once(
    spin: &Spinlock,
    key: &str,
    runs: &Arc<AtomicUsize>,
    value: &'static [u8],
) -> Vec<u8> {
    spin.compute_once(key, counted(runs, value))
        .await
        .expect("compute_once")
}

/// 20 callers of a spinlock on `redlock` start `compute_once("report")`
/// together: all get the one computation's result, which ran exactly once.
/// Returns once the client's background requests are done too: callers that
/// found the result while queued for the lock leave the servers' queues from
/// tasks of their own, and until they have, a node may still hold the lock
/// for one of them (a grant the leave passes on).
async fn twenty_callers_get_one_computation(redlock: &Redlock) -> Spinlock {
    let spin =
        Spinlock::new(redlock, SpinOptions::new().tries(20).sleep(ms(100))).expect("options");
    let runs = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(20));
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let (spin, runs, start) = (spin.clone(), Arc::clone(&runs), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                spin.compute_once("report", || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    // the expensive part, long enough for everyone to arrive
                    tokio::time::sleep(ms(300)).await;
                    Ok::<_, String>(b"the report".to_vec())
                })
                .await
            })
        })
        .collect();
    for caller in callers {
        let result = caller.await.expect("task");
        assert_eq!(result.expect("result"), b"the report");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "computed more than once");
    redlock.flush_released().await;
    spin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_callers_compute_once() {
    let cluster = cluster().await;
    let redlock = Redlock::connect(cluster.urls()).await.expect("connect");
    let spin = twenty_callers_get_one_computation(&redlock).await;
    // stored with the tag on a majority, with an expiry; the lock is gone
    let result_key = spin.result_key("report");
    let mut stored = 0;
    for i in 0..5 {
        if let Ok(Reply::Bulk(Some(v))) = cluster.server(i).command(&["GET", &result_key]).await {
            assert_eq!(v, b"qs1:the report");
            stored += 1;
        }
    }
    assert!(stored >= 3, "stored on {stored} nodes");
    assert!(pttls(&cluster, &result_key)
        .await
        .iter()
        .all(|&t| t == -2 || t > 0));
    assert!(!spin.locked("report").await.expect("locked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holder_is_taken_over_after_the_hold_time_and_not_before() {
    let cluster = cluster().await;
    let hold = ms(1000);
    let options = SpinOptions::new()
        .tries(30)
        .sleep(ms(100))
        .max_hold(Expiry::After(hold));
    // The holder reaches the nodes through proxies, so that it can die
    // (be partitioned away) without its release ever arriving.
    let proxies = cluster.proxies().await.expect("proxies");
    let doomed = Redlock::connect(proxies.iter().map(FaultProxy::url))
        .await
        .expect("connect");
    let doomed = Spinlock::new(&doomed, options.clone()).expect("options");
    let survivor = spin(&cluster, options.clone()).await;

    let (computing, started) = oneshot::channel();
    let called = Instant::now();
    let holder = tokio::spawn(async move {
        doomed
            .compute_once("job", || async move {
                let _ = computing.send(());
                std::future::pending::<Result<Vec<u8>, String>>().await
            })
            .await
    });
    started.await.expect("the holder computes");
    for proxy in &proxies {
        proxy.set(Fault::Blackhole);
    }
    holder.abort(); // its guard's release is sent into the black hole
    assert!(holder.await.expect_err("aborted").is_cancelled());

    // Meanwhile the key is held: fail-if-held says so, naming the time left.
    let impatient = survivor
        .clone()
        .with_options(options.clone().fail_if_held(true))
        .expect("options");
    match impatient
        .compute_once("job", || async { Ok::<_, String>(vec![]) })
        .await
    {
        Err(ComputeError::Spin(SpinError::Held {
            remaining: Some(left),
            ..
        })) => {
            assert!(left <= hold && left > ms(300), "{left:?}")
        }
        other => panic!("expected Held, got {other:?}"),
    }

    let runs = Arc::new(AtomicUsize::new(0));
    let computed_at = Arc::new(std::sync::Mutex::new(None));
    let (runs2, at) = (Arc::clone(&runs), Arc::clone(&computed_at));
    let value = survivor
        .compute_once("job", || async move {
            runs2.fetch_add(1, Ordering::SeqCst);
            *at.lock().expect("mutex") = Some(Instant::now());
            Ok::<_, String>(b"done".to_vec())
        })
        .await
        .expect("the survivor computes");
    assert_eq!(value, b"done");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let took_over = computed_at.lock().expect("mutex").expect("computed") - called;
    // the holder's keys were set after `called`, so they lived until at least hold
    assert!(
        took_over >= hold - ms(5),
        "took over after {took_over:?}, before the hold time"
    );
    assert!(
        took_over < hold + ms(1500),
        "took over only after {took_over:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_computation_releases_at_once() {
    let cluster = cluster().await;
    let spin = spin(&cluster, SpinOptions::new().tries(5).sleep(ms(100))).await;
    let (computing, started) = oneshot::channel();
    let holder = {
        let spin = spin.clone();
        tokio::spawn(async move {
            spin.compute_once("cancelled", || async move {
                let _ = computing.send(());
                std::future::pending::<Result<Vec<u8>, String>>().await
            })
            .await
        })
    };
    started.await.expect("computing");
    holder.abort();
    let _ = holder.await;
    let began = Instant::now();
    let runs = Arc::new(AtomicUsize::new(0));
    let value = spin
        .compute_once("cancelled", counted(&runs, b"v"))
        .await
        .expect("computes");
    assert_eq!(
        (value.as_slice(), runs.load(Ordering::SeqCst)),
        (&b"v"[..], 1)
    );
    // far sooner than the default 60 s hold: the dropped guard released
    assert!(began.elapsed() < ms(1000), "{:?}", began.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_key_fails_after_exactly_the_configured_tries() {
    let cluster = cluster().await;
    let holder = spin(
        &cluster,
        SpinOptions::new().max_hold(Expiry::After(ms(10_000))),
    )
    .await;
    let guard = holder.acquire("busy").await.expect("holder");
    let tries = 6;
    let sleep = ms(100);
    let contender = spin(&cluster, SpinOptions::new().tries(tries).sleep(sleep)).await;
    let mut before = Vec::new();
    for i in 0..5 {
        before.push(set_calls(&cluster, i).await);
    }

    let began = Instant::now();
    let error = contender
        .acquire("busy")
        .await
        .expect_err("held throughout");
    let took = began.elapsed();
    match &error {
        SpinError::TriesExhausted {
            tries: t,
            last: Error::Taken { .. },
            ..
        } => assert_eq!(*t, tries),
        other => panic!("expected TriesExhausted, got {other:?}"),
    }
    // `tries` rounds with `sleep` between each
    let fastest = sleep * (tries - 1);
    // (no upper bound: a loaded machine may be slow; the exact count of
    // requests below is what shows there was no extra try)
    assert!(took >= fastest, "{took:?} < {fastest:?}");

    // Every node saw exactly `tries` acquisition requests (the last ones may
    // still be on their way when the call returns: wait for them, bounded).
    let deadline = Instant::now() + ms(2000);
    for (i, before) in before.into_iter().enumerate() {
        let mut seen = set_calls(&cluster, i).await - before;
        while seen < u64::from(tries) && Instant::now() < deadline {
            tokio::time::sleep(ms(10)).await;
            seen = set_calls(&cluster, i).await - before;
        }
        assert_eq!(seen, u64::from(tries), "node {i}");
    }
    guard.release().await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_a_spinning_waiter_early() {
    let cluster = cluster().await;
    let spin = spin(&cluster, SpinOptions::new().tries(3).sleep(ms(5000))).await;
    let guard = spin.acquire("handoff").await.expect("holder");
    let waiter = {
        let spin = spin.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            let guard = spin.acquire("handoff").await;
            (guard, began.elapsed())
        })
    };
    // Released while the waiter sleeps its 5 s; it must not sleep them out.
    // The waiter is sleeping once it listens for releases on a majority.
    let channel = format!("quorate:released:{}", spin.lock_key("handoff"));
    assert!(
        cluster.wait_subscribed(&channel, 3, ms(5000)).await,
        "the waiter never listened"
    );
    assert_eq!(
        guard.release().await.expect("release"),
        ReleaseOutcome::Released
    );
    let (guard, waited) = waiter.await.expect("task");
    guard
        .expect("acquired after the release")
        .release()
        .await
        .expect("release");
    assert!(waited < ms(2000), "waited {waited:?}");
}

on_both_node_kinds!(
    results_expire_and_errors_are_not_cached_on,
    results_expire_and_errors_are_not_cached,
    in_memory_results_expire_and_errors_are_not_cached
);

async fn results_expire_and_errors_are_not_cached_on(nodes: Nodes) {
    let options = SpinOptions::new()
        .tries(5)
        .sleep(ms(100))
        .result_expiry(Expiry::After(ms(400)));
    let spin = nodes.spin(options).await;
    let runs = Arc::new(AtomicUsize::new(0));

    // an error: returned, not stored, lock released
    let failing = {
        let runs = Arc::clone(&runs);
        move || {
            runs.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Err::<Vec<u8>, _>("database down".to_owned()))
        }
    };
    match spin.compute_once("daily", failing).await {
        Err(ComputeError::Compute(e)) => assert_eq!(e, "database down"),
        other => panic!("{other:?}"),
    }
    assert!(!spin.locked("daily").await.expect("locked"));
    assert!(nodes
        .pttls(&spin.result_key("daily"))
        .await
        .iter()
        .all(|&t| t == -2));

    // the next call computes; the one after gets the stored result
    assert_eq!(once(&spin, "daily", &runs, b"v1").await, b"v1");
    assert_eq!(once(&spin, "daily", &runs, b"v2").await, b"v1");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let ttls = nodes.pttls(&spin.result_key("daily")).await;
    assert!(
        ttls.iter().filter(|&&t| t > 0 && t <= 400).count() >= 3,
        "{ttls:?}"
    );

    // after the expiry the servers dropped it, and the next call computes again
    let deadline = Instant::now() + ms(3000);
    while nodes
        .pttls(&spin.result_key("daily"))
        .await
        .iter()
        .any(|&t| t != -2)
    {
        assert!(Instant::now() < deadline, "result never expired");
        tokio::time::sleep(ms(50)).await;
    }
    assert_eq!(once(&spin, "daily", &runs, b"v3").await, b"v3");
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_if_held_names_the_holder_and_its_remaining_hold_time() {
    let cluster = cluster().await;
    let hold = ms(5000);
    let labelled = Redlock::builder()
        .urls(cluster.urls())
        .owner("report-builder-7")
        .build()
        .await
        .expect("connect");
    let holder = Spinlock::new(&labelled, SpinOptions::new().max_hold(Expiry::After(hold)))
        .expect("options");
    let _guard = holder.acquire("taken").await.expect("holder");
    // A sleep of 5 s between tries: a call that slept even once would show.
    let impatient = spin(
        &cluster,
        SpinOptions::new()
            .fail_if_held(true)
            .tries(3)
            .sleep(ms(5000)),
    )
    .await;
    let began = Instant::now();
    for result in [
        impatient.acquire("taken").await,
        impatient.try_acquire("taken").await,
    ] {
        match result {
            Err(SpinError::Held {
                key,
                holder: Some(who),
                remaining: Some(left),
                outcomes,
            }) => {
                assert_eq!(key, impatient.lock_key("taken"));
                assert_eq!(who.client, labelled.owner().client_id());
                assert_eq!(who.owner, Some(labelled.owner().to_string()));
                assert!(left <= hold && left > hold - ms(2000), "{left:?}");
                let per_node = format!("taken by client {} for", who.client);
                assert!(outcomes.to_string().contains(&per_node), "{outcomes}");
            }
            other => panic!("expected Held, got {other:?}"),
        }
    }
    // one round each, no sleeping
    assert!(began.elapsed() < ms(4000), "{:?}", began.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_handle_acquire_locked_renew_release() {
    let cluster = cluster().await;
    let options = SpinOptions::new()
        .tries(2)
        .sleep(ms(50))
        .max_hold(Expiry::After(ms(1000)));
    let spin = spin(&cluster, options).await;
    let mut mine = spin.lock("my_lock");
    let mut theirs = spin.lock("my_lock");
    assert!(!mine.locked().await.expect("locked"));
    assert!(matches!(
        mine.renew().await,
        Err(SpinError::WrongState { held: false, .. })
    ));
    assert!(matches!(
        mine.release().await,
        Err(SpinError::WrongState { held: false, .. })
    ));

    mine.acquire().await.expect("acquire");
    assert!(mine.is_acquired());
    assert!(matches!(
        mine.acquire().await,
        Err(SpinError::WrongState { held: true, .. })
    ));
    assert!(mine.locked().await.expect("locked"));
    assert!(theirs.locked().await.expect("locked"));
    assert!(!theirs.try_acquire().await.expect("try"));
    assert!(matches!(
        theirs.acquire().await,
        Err(SpinError::TriesExhausted { tries: 2, .. })
    ));

    // renew: the servers keep it the full hold time from now
    tokio::time::sleep(ms(600)).await;
    mine.renew().await.expect("renew");
    assert!(mine.remaining().expect("held") > ms(900));
    let ttls = pttls(&cluster, mine.key()).await;
    assert!(ttls.iter().filter(|&&t| t > 900).count() >= 3, "{ttls:?}");

    assert_eq!(
        mine.release().await.expect("release"),
        ReleaseOutcome::Released
    );
    assert!(!mine.locked().await.expect("locked"));
    assert!(theirs.try_acquire().await.expect("try"));
    theirs.release().await.expect("release");
}

on_both_node_kinds!(
    locked_means_held_on_a_majority,
    locked_means_held_on_a_majority_not_a_leftover_on_a_minority,
    in_memory_locked_means_held_on_a_majority_not_a_leftover_on_a_minority
);

async fn locked_means_held_on_a_majority(nodes: Nodes) {
    let spin = nodes.spin(SpinOptions::new().tries(2).sleep(ms(50))).await;
    let key = spin.lock_key("leftover");
    // keys a release never reached (two nodes were partitioned away)
    for i in [0, 1] {
        nodes.plant(i, &key, "someone", ms(10_000)).await;
    }
    assert!(!spin.locked("leftover").await.expect("locked"));
    let guard = spin
        .try_acquire("leftover")
        .await
        .expect("a majority is free");
    guard.release().await.expect("release");
    // on a majority it is held, and an acquire fails
    nodes.plant(2, &key, "someone", ms(10_000)).await;
    assert!(spin.locked("leftover").await.expect("locked"));
    assert!(matches!(
        spin.try_acquire("leftover").await,
        Err(SpinError::Held { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_expiry_only_when_asked_for() {
    let cluster = cluster().await;
    let forever = SpinOptions::new()
        .max_hold(Expiry::Never)
        .result_expiry(Expiry::Never);
    // a year-long hold needs a year-long max_ttl (and quarantine)
    let redlock = Redlock::connect(cluster.urls()).await.expect("connect");
    assert!(matches!(
        Spinlock::new(&redlock, forever.clone()),
        Err(SpinError::Lock(quorate_redlock::Error::InvalidConfig(
            quorate_redlock::ConfigError::TtlAboveMaxTtl { .. }
        )))
    ));
    let redlock = Redlock::builder()
        .urls(cluster.urls())
        .max_ttl(MAX_TTL)
        .build()
        .await
        .expect("connect");
    let spin = Spinlock::new(&redlock, forever).expect("options");
    let guard = spin.acquire("eternal").await.expect("acquire");
    let ttls = pttls(&cluster, &spin.lock_key("eternal")).await;
    let almost_a_year = (MAX_TTL - Duration::from_secs(60)).as_millis() as i64;
    assert!(
        ttls.iter().filter(|&&t| t > almost_a_year).count() >= 3,
        "{ttls:?}"
    );
    guard.release().await.expect("release");
    let value = spin
        .compute_once("eternal", || async { Ok::<_, String>(b"x".to_vec()) })
        .await;
    assert_eq!(value.expect("ok"), b"x");
    let ttls = pttls(&cluster, &spin.result_key("eternal")).await;
    assert!(ttls.iter().filter(|&&t| t == -1).count() >= 3, "{ttls:?}");
    // the defaults do expire
    let default = spin
        .clone()
        .with_options(SpinOptions::new())
        .expect("options");
    default
        .compute_once("mortal", || async { Ok::<_, String>(b"y".to_vec()) })
        .await
        .expect("ok");
    let ttls = pttls(&cluster, &default.result_key("mortal")).await;
    assert!(
        ttls.iter()
            .filter(|&&t| t > 3_590_000 && t <= 3_600_000)
            .count()
            >= 3,
        "{ttls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_bytes_and_hashed_keys_never_collide_and_a_string_is_one_key() {
    let cluster = cluster().await;
    let spin = spin(&cluster, SpinOptions::new().tries(3).sleep(ms(50))).await;
    let keys = [
        SpinKey::from("ab"),
        SpinKey::from(&b"ab"[..]),
        SpinKey::hashed(&("ab",)),
        SpinKey::hashed(&("a", "b")),
        SpinKey::hashed(&("ab", "")),
    ];
    for (i, key) in keys.iter().enumerate() {
        let value = vec![i as u8];
        let stored = spin
            .compute_once(key, || async move { Ok::<_, String>(value) })
            .await
            .expect("compute");
        assert_eq!(stored, [i as u8], "key {key} saw another key's result");
    }
    for (i, key) in keys.iter().enumerate() {
        let again = spin
            .compute_once(key, || async { Ok::<_, String>(b"recomputed".to_vec()) })
            .await
            .expect("cached");
        assert_eq!(again, [i as u8]);
    }
    // a plain string is one key however it is written: the cached result of `from("ab")`
    let hashed = spin
        .compute_once(SpinKey::hashed("ab"), || async {
            Ok::<_, String>(b"other".to_vec())
        })
        .await
        .expect("cached");
    assert_eq!(hashed, [0]);
    // locks are as separate: holding the string key leaves the bytes key free
    let held = spin.acquire(&keys[0]).await.expect("string key");
    let free = spin.try_acquire(&keys[1]).await.expect("bytes key is free");
    free.release().await.expect("release");
    held.release().await.expect("release");
    let on_node = cluster.keys("quorate:spin:result:*").await.expect("KEYS");
    assert_eq!(on_node[0].len(), keys.len(), "{on_node:?}");
}

#[derive(Debug)]
struct Versioned;

impl Scheme for Versioned {
    fn tag(&self) -> &[u8] {
        b"v2:"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_stored_value_is_a_decode_error_not_a_result() {
    let cluster = cluster().await;
    let old = spin(&cluster, SpinOptions::new()).await;
    old.compute_once("config", || async {
        Ok::<_, String>(b"old format".to_vec())
    })
    .await
    .expect("stored");
    let new = old.clone().with_scheme(Versioned);
    match new
        .compute_once("config", || async { Ok::<_, String>(vec![]) })
        .await
    {
        Err(ComputeError::Spin(SpinError::Codec { key, reason })) => {
            assert_eq!(key, new.result_key("config"));
            assert!(reason.contains("v2:"), "{reason}");
        }
        other => panic!("expected Codec, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_of_dead_nodes_changes_nothing_a_majority_is_an_error() {
    let mut cluster = cluster().await;
    // A node timeout of 5 s: a call that waited for the silent node would show.
    let spin = spin(
        &cluster,
        SpinOptions::new()
            .tries(3)
            .sleep(ms(50))
            .node_timeout(Some(ms(5000))),
    )
    .await;
    cluster.server(3).pause(); // SIGSTOP: a silent node, not a refused connection
    cluster.server_mut(4).kill();
    let runs = Arc::new(AtomicUsize::new(0));
    assert_eq!(once(&spin, "k", &runs, b"1").await, b"1");
    assert_eq!(once(&spin, "k", &runs, b"2").await, b"1");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let asked = Instant::now();
    assert!(!spin.locked("k").await.expect("quorum read"));
    let guard = spin.acquire("k").await.expect("acquire");
    assert!(spin.locked("k").await.expect("quorum read"));
    guard.release().await.expect("release");
    // a majority answers without the silent node: no call waits for it
    assert!(asked.elapsed() < ms(4000), "{:?}", asked.elapsed());

    cluster.server_mut(2).kill();
    match spin.locked("k").await {
        Err(SpinError::Lock(Error::NoQuorum { .. })) => {}
        other => panic!("expected NoQuorum, got {other:?}"),
    }
    match spin.compute_once("k", counted(&runs, b"3")).await {
        Err(ComputeError::Spin(SpinError::Lock(Error::NoQuorum { .. }))) => {}
        other => panic!("expected NoQuorum, got {other:?}"),
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[cfg(feature = "serde")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serde_values_are_stored_as_json() {
    let cluster = cluster().await;
    let spin = spin(&cluster, SpinOptions::new()).await;
    let runs = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let runs = Arc::clone(&runs);
        let got: (String, Vec<u32>) = spin
            .compute_once_serde(SpinKey::hashed(&("report", 7u32)), || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(("rows".to_owned(), vec![1, 2, 3]))
            })
            .await
            .expect("serde");
        assert_eq!(got, ("rows".to_owned(), vec![1, 2, 3]));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let key = spin.result_key(SpinKey::hashed(&("report", 7u32)));
    match cluster.server(0).command(&["GET", &key]).await {
        Ok(Reply::Bulk(Some(v))) => assert_eq!(v, br#"qs1:["rows",[1,2,3]]"#),
        other => panic!("{other:?}"),
    }
    // a stored value of another shape is a decode error, not a panic
    let wrong: Result<u64, _> = spin
        .compute_once_serde(SpinKey::hashed(&("report", 7u32)), || async {
            Ok::<_, String>(1u64)
        })
        .await;
    assert!(
        matches!(wrong, Err(ComputeError::Spin(SpinError::Codec { .. }))),
        "{wrong:?}"
    );
}

/// Compile-time check: every public future is `Send` (usable in `tokio::spawn`).
#[allow(dead_code)]
fn futures_are_send(spin: Spinlock, mut lock: quorate_spinlock::Lock) {
    fn send<T: Send>(_: T) {}
    send(spin.acquire("k"));
    send(spin.try_acquire("k"));
    send(spin.locked("k"));
    send(spin.compute_once("k", || async { Ok::<_, String>(vec![]) }));
    send(lock.acquire());
    send(lock.try_acquire());
    send(lock.locked());
    send(lock.renew());
    send(lock.release());
}

/// A client of `nodes`, which run the scripts' native twins.
fn memory_redlock(nodes: &[MemoryNode]) -> Redlock {
    let dyn_nodes = nodes
        .iter()
        .map(|m| Arc::new(m.clone()) as Arc<dyn quorate_redlock::Node>)
        .collect();
    Redlock::from_nodes(dyn_nodes, quorate_redlock::LockOptions::new()).expect("redlock")
}

/// A spinlock on `nodes`, which run the scripts' native twins.
fn memory_spin_on(nodes: &[MemoryNode], options: SpinOptions) -> Spinlock {
    Spinlock::new(&memory_redlock(nodes), options).expect("options")
}

/// A spinlock on 5 new memory nodes.
fn memory_spin(options: SpinOptions) -> (Vec<MemoryNode>, Spinlock) {
    let nodes = MemoryNode::cluster(5);
    let spin = memory_spin_on(&nodes, options);
    (nodes, spin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_twenty_concurrent_callers_compute_once() {
    let nodes = MemoryNode::cluster(5);
    let spin = twenty_callers_get_one_computation(&memory_redlock(&nodes)).await;
    let result_key = spin.result_key("report");
    let stored = nodes
        .iter()
        .filter(|n| n.ttl(&result_key).is_some())
        .count();
    assert!(stored >= 3, "stored on {stored} nodes");
    assert!(!spin.locked("report").await.expect("locked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_locked_and_fail_if_held_agree_with_the_servers() {
    let (nodes, spin) = memory_spin(SpinOptions::new().tries(3).sleep(ms(20)));
    let guard = spin.acquire("printer").await.expect("acquire");
    assert!(spin.locked("printer").await.expect("locked"));
    match spin.try_acquire("printer").await {
        Err(SpinError::Held { remaining, .. }) => assert!(remaining.is_some()),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        guard.release().await.expect("release"),
        ReleaseOutcome::Released
    );
    assert!(!spin.locked("printer").await.expect("locked"));
    // two of five nodes down: still a quorum
    nodes[0].set_down(true);
    nodes[1].set_down(true);
    let guard = spin.acquire("printer").await.expect("acquire with 2 down");
    assert!(spin.locked("printer").await.expect("locked"));
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_names_the_holder_and_force_unlock_frees_a_namespaced_key() {
    let cluster = cluster().await;
    let namespaced = |label: &'static str| {
        Redlock::builder()
            .urls(cluster.urls())
            .namespace("app1:")
            .owner(label)
            .build()
    };
    let holder = namespaced("nightly-holder").await.expect("connect");
    let other = namespaced("other").await.expect("connect");
    let hold = SpinOptions::new().max_hold(Expiry::After(ms(30_000)));
    let held = Spinlock::new(&holder, hold.clone()).expect("options");
    let _guard = held.acquire("nightly").await.expect("acquire");
    let theirs = Spinlock::new(&other, hold.fail_if_held(true)).expect("options");
    // the namespace is where the lock is, for every call
    assert!(theirs.locked("nightly").await.expect("locked"));
    let seen = theirs.inspect("nightly").await.expect("inspect");
    assert_eq!(seen.key, format!("app1:{}", theirs.lock_key("nightly")));
    let named = seen.holder().expect("held on a majority");
    assert_eq!(named.client, holder.owner().client_id());
    assert!(seen.to_string().contains("nightly-holder (host "), "{seen}");
    assert!(matches!(
        theirs.try_acquire("nightly").await,
        Err(SpinError::Held { .. })
    ));

    let gone = theirs.force_unlock("nightly").await.expect("force");
    assert_eq!(gone.deleted, 5);
    assert_eq!(gone.before.holder(), Some(named));
    assert!(!theirs.locked("nightly").await.expect("locked"));
    let mine = theirs
        .try_acquire("nightly")
        .await
        .expect("free after the force");
    mine.release().await.expect("release");
}
