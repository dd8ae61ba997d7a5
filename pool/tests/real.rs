//! quorate-pool against 5 real redis-server processes: exclusive devices,
//! semaphores with nodes killed mid-run, rate-limit windows, all-or-nothing,
//! usage figures.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorate_pool::{
    CandidateOrder, PermitId, Pool, PoolError, RateLimit, RequestError, Requirement, Semaphore,
};
use quorate_redlock::{LockOptions, MemoryNode, Node, Redlock, ReleaseOutcome};
use quorate_testkit::{Cluster, Fault, FaultProxy, HoldLog};

#[derive(Clone, Debug, PartialEq)]
struct Device {
    id: String,
    model: &'static str,
}

fn devices(n: usize) -> Vec<Device> {
    (0..n)
        .map(|i| Device {
            id: format!("dev-{i}"),
            model: if i % 2 == 0 { "T1000" } else { "T800" },
        })
        .collect()
}

async fn cluster() -> (Cluster, Redlock) {
    let cluster = Cluster::start(5).await.expect("start 5 redis-server nodes");
    let redlock = Redlock::connect(cluster.urls()).await.expect("connect");
    (cluster, redlock)
}

/// Where a scenario runs: 5 real servers, or 5 memory nodes running the
/// scripts' native twins (the same scenario on both keeps them in step).
enum Backend {
    Real(Cluster),
    Memory(Vec<MemoryNode>),
}

impl Backend {
    async fn real() -> Self {
        Backend::Real(Cluster::start(5).await.expect("start 5 redis-server nodes"))
    }

    fn memory() -> Self {
        Backend::Memory(MemoryNode::cluster(5))
    }

    /// A new client (its own connections, notifier and local queues).
    async fn client(&self) -> Redlock {
        match self {
            Backend::Real(cluster) => Redlock::connect(cluster.urls()).await.expect("connect"),
            Backend::Memory(nodes) => {
                let nodes = nodes
                    .iter()
                    .map(|m| Arc::new(m.clone()) as Arc<dyn Node>)
                    .collect();
                Redlock::from_nodes(nodes, LockOptions::new()).expect("redlock")
            }
        }
    }

    /// A new client whose requests reach nodes 2-4 `delay` late (through
    /// fault proxies on real servers, kept alive by the returned handles).
    async fn client_with_slow_majority(&self, delay: Duration) -> (Redlock, Vec<FaultProxy>) {
        match self {
            Backend::Real(cluster) => {
                let proxies = cluster.proxies().await.expect("proxies");
                let urls = proxies.iter().map(FaultProxy::url).collect::<Vec<_>>();
                let redlock = Redlock::connect(urls).await.expect("connect");
                // once connected: the connection handshake is not the test
                for proxy in &proxies[2..] {
                    proxy.set(Fault::Delay(delay));
                }
                (redlock, proxies)
            }
            Backend::Memory(nodes) => {
                nodes[2..].iter().for_each(|n| n.set_request_delay(delay));
                (self.client().await, Vec::new())
            }
        }
    }

    /// `SET key value PX ttl` on node `i`, behind the clients' backs.
    async fn plant(&self, i: usize, key: &str, value: &str, ttl: Duration) {
        match self {
            Backend::Real(cluster) => cluster.plant(i, key, value, ttl).await.expect("SET"),
            Backend::Memory(nodes) => nodes[i].set(key, value.as_bytes(), Some(ttl)),
        }
    }

    /// Kills node `i` (SIGKILL; a memory node goes down).
    fn kill(&mut self, i: usize) {
        match self {
            Backend::Real(cluster) => cluster.server_mut(i).kill(),
            Backend::Memory(nodes) => nodes[i].set_down(true),
        }
    }

    /// The pool keys on node `i`.
    async fn pool_keys_on(&self, i: usize) -> Vec<String> {
        match self {
            Backend::Real(cluster) => {
                cluster.keys("quorate:pool:*").await.expect("KEYS")[i].clone()
            }
            Backend::Memory(nodes) => nodes[i]
                .keys()
                .into_iter()
                .filter(|k| k.starts_with("quorate:pool:"))
                .collect(),
        }
    }

    /// The pool keys on every node, flattened.
    async fn pool_keys(&self) -> Vec<String> {
        match self {
            Backend::Real(cluster) => keys_on_nodes(cluster, "quorate:pool:*").await,
            Backend::Memory(nodes) => nodes
                .iter()
                .flat_map(MemoryNode::keys)
                .filter(|k| k.starts_with("quorate:pool:"))
                .collect(),
        }
    }
}

/// Keys matching `pattern` on every running node, flattened.
async fn keys_on_nodes(cluster: &Cluster, pattern: &str) -> Vec<String> {
    cluster
        .keys(pattern)
        .await
        .expect("KEYS")
        .into_iter()
        .flatten()
        .collect()
}

/// Runs a scenario on real servers and on memory nodes.
macro_rules! on_both_backends {
    ($scenario:ident, $real:ident, $memory:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $real() {
            $scenario(Backend::real().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $memory() {
            $scenario(Backend::memory()).await;
        }
    };
}

on_both_backends!(
    twelve_tasks_on_eight_devices,
    twelve_tasks_taking_two_of_eight_devices_never_share_one_and_all_progress,
    in_memory_twelve_tasks_taking_two_of_eight_devices_never_share_one
);

async fn twelve_tasks_on_eight_devices(backend: Backend) {
    let redlock = backend.client().await;
    let log = HoldLog::new();
    let stop = Instant::now() + Duration::from_secs(2);
    let mut tasks = Vec::new();
    for task in 0..12u64 {
        // 3 separate clients (own connections), 4 tasks each
        let redlock = if task % 4 == 0 {
            backend.client().await
        } else {
            redlock.clone()
        };
        let pool = Pool::new(&redlock, "lab").expect("pool");
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut grants = 0;
            while Instant::now() < stop && grants < 40 {
                let need = Requirement::need(2, devices(8), |d| d.id.clone());
                let grant = pool
                    .acquire(vec![need], Duration::from_secs(2))
                    .await
                    .expect("acquire 2 of 8");
                let start = Instant::now();
                assert_eq!(grant[0].len(), 2);
                assert_ne!(grant[0][0], grant[0][1]);
                tokio::time::sleep(Duration::from_millis(3)).await;
                let end = Instant::now();
                for device in grant.iter() {
                    log.record(&device.id, task, start, end);
                }
                assert_eq!(
                    grant.release().await.expect("release"),
                    ReleaseOutcome::Released
                );
                grants += 1;
            }
            grants
        }));
    }
    let mut per_task = Vec::new();
    for task in tasks {
        per_task.push(task.await.expect("task"));
    }
    log.check_exclusive()
        .expect("a device was held by two tasks at once");
    println!(
        "grants per task: {per_task:?}; most devices in use at once: {}",
        log.max_concurrency() / 2
    );
    assert!(
        per_task.iter().all(|&g| g > 0),
        "a task starved: {per_task:?}"
    );
    // 12 tasks on 8 devices, 2 each: up to 4 grants at once; more than one
    // at a time shows the pool allocates in parallel.
    assert!(log.max_concurrency() > 2, "grants never overlapped");
}

on_both_backends!(
    two_clients_needing_all_four,
    two_clients_that_both_need_all_four_devices_do_not_livelock,
    in_memory_two_clients_that_both_need_all_four_devices_do_not_livelock
);

async fn two_clients_needing_all_four(backend: Backend) {
    let log = HoldLog::new();
    let mut tasks = Vec::new();
    for client in 0..2u64 {
        let redlock = backend.client().await;
        for task in 0..2u64 {
            let pool = Pool::new(&redlock, "rig").expect("pool");
            let log = log.clone();
            let holder = client * 2 + task;
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    // AsGiven order: every client wants the same devices first.
                    let all = Requirement::need(4, devices(4), |d| d.id.clone())
                        .order(CandidateOrder::AsGiven);
                    let grant = pool
                        .acquire(vec![all], Duration::from_secs(2))
                        .await
                        .expect("all four, eventually");
                    let start = Instant::now();
                    // held long enough that a rival grant would land inside it
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    log.record("rig", holder, start, Instant::now());
                    grant.release().await.expect("release");
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(log.len(), 40);
    log.check_exclusive().expect("two holders of the whole rig");
}

on_both_backends!(
    semaphore_with_two_nodes_killed,
    a_semaphore_of_three_never_has_four_holders_even_with_two_nodes_killed,
    in_memory_a_semaphore_of_three_never_has_four_holders_even_with_two_nodes_down
);

async fn semaphore_with_two_nodes_killed(mut backend: Backend) {
    let redlock = backend.client().await;
    let semaphore = Semaphore::new(&redlock, "encoders", 3).expect("semaphore");
    let log = HoldLog::new();
    let killed = Arc::new(AtomicBool::new(false));
    let after_kill = Arc::new(AtomicUsize::new(0));
    let stop = Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for task in 0..20u64 {
        let (semaphore, log) = (semaphore.clone(), log.clone());
        let (killed, after_kill) = (Arc::clone(&killed), Arc::clone(&after_kill));
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let options = LockOptions::new()
                    .ttl(Duration::from_secs(2))
                    .acquire_timeout(Some(Duration::from_secs(3)));
                let permit = match semaphore.acquire_with(1, &options).await {
                    Ok(permit) => permit,
                    // busy for the whole acquire timeout: the one expected failure
                    Err(PoolError::Unavailable { .. }) => continue,
                    Err(other) => panic!("unexpected error: {other}"),
                };
                let start = Instant::now();
                tokio::time::sleep(Duration::from_millis(2)).await;
                log.record("encoder", task, start, Instant::now());
                if killed.load(Ordering::SeqCst) {
                    after_kill.fetch_add(1, Ordering::SeqCst);
                }
                // the killed nodes fail; the 3 others are a majority
                permit.release().await.expect("released by a majority");
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    backend.kill(0);
    backend.kill(3);
    killed.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.expect("task");
    }
    let max = log.max_concurrency();
    println!(
        "{} holds, most at once {max}, {} after the kill",
        log.len(),
        after_kill.load(Ordering::SeqCst)
    );
    assert!(max <= 3, "{max} holders of a 3-permit semaphore");
    assert!(max >= 2, "permits were never used in parallel");
    assert!(
        after_kill.load(Ordering::SeqCst) > 0,
        "no progress after 2 of 5 nodes were killed"
    );
}

/// 10 tasks take grants of a 5-per-200-ms limit for 2 s; returns the grant times.
async fn rate_limited_grants(redlock: &Redlock, name: &str) -> Vec<Instant> {
    let window = Duration::from_millis(200);
    let limit = RateLimit::new(redlock, name, 5, window)
        .expect("rate limit")
        .acquire_timeout(Some(Duration::from_secs(1)));
    let grants = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = Instant::now() + Duration::from_secs(2);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (limit, grants) = (limit.clone(), Arc::clone(&grants));
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop {
                match limit.acquire().await {
                    Ok(()) => {
                        let at = Instant::now();
                        if at < stop {
                            grants.lock().expect("grants").push(at);
                        }
                    }
                    // spent for the whole acquire timeout: the one expected failure
                    Err(PoolError::Unavailable { .. }) => {}
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let mut times = grants.lock().expect("grants").clone();
    times.sort();
    for pair in times.windows(6) {
        let span = pair[5] - pair[0];
        assert!(span >= window, "6 grants within {span:?}");
    }
    times
}

on_both_backends!(
    rate_limit_windows,
    a_rate_limit_of_5_per_200ms_holds_in_every_sliding_window,
    in_memory_a_rate_limit_of_5_per_200ms_holds_in_every_sliding_window
);

async fn rate_limit_windows(backend: Backend) {
    let redlock = backend.client().await;
    let times = rate_limited_grants(&redlock, "partner-api").await;
    let rate = times.len() as f64 / 2.0;
    println!(
        "{} grants in 2 s: {rate:.1}/s against a limit of 25/s",
        times.len()
    );
    assert!(
        rate >= 15.0,
        "throughput {rate}/s is far below the limit of 25/s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limit_keeps_its_windows_and_its_pace_with_a_node_stalled() {
    let (cluster, redlock) = cluster().await;
    cluster.server(2).pause();
    let times = rate_limited_grants(&redlock, "stalled").await;
    cluster.server(2).resume();
    let rate = times.len() as f64 / 2.0;
    println!(
        "{} grants in 2 s with a node stalled: {rate:.1}/s",
        times.len()
    );
    assert!(rate >= 15.0, "throughput {rate}/s with one node stalled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_acquire_on_a_spent_rate_limit_says_how_long_to_wait() {
    let (_cluster, redlock) = cluster().await;
    let window = Duration::from_millis(500);
    let limit = RateLimit::new(&redlock, "burst", 2, window).expect("rate limit");
    limit.try_acquire().await.expect("first");
    limit.try_acquire().await.expect("second");
    let spent = limit
        .try_acquire()
        .await
        .expect_err("third within the window");
    let wait = spent.retry_after().expect("a wait");
    assert!(
        wait > Duration::from_millis(300) && wait <= Duration::from_millis(600),
        "{wait:?}"
    );
    assert!(matches!(spent, PoolError::Unavailable { .. }), "{spent}");
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    limit.try_acquire().await.expect("after the wait");
}

/// A refusal's hint does not count a node that did not answer, nor a slot
/// granted to the refused caller (and given back), as free: here another
/// client holds slot 0 on nodes 0-2 (a majority) and slot 1 everywhere, node
/// 2 is stalled, and nodes 3 and 4 grant slot 0 to the caller, who cannot
/// reach a majority with it. Slot 0 frees only when the holder's ttl runs
/// out; a hint of 0 would have the caller poll until then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_with_a_node_stalled_says_when_the_slot_really_frees() {
    let (cluster, redlock) = cluster().await;
    let held = Duration::from_secs(5);
    let slot = |i: usize| format!("quorate:pool:{{rate:hint}}:slot:{i}");
    let other = "00000000000000bb0123456789abcdef";
    for node in 0..5 {
        if node < 3 {
            cluster
                .plant(node, &slot(0), other, held)
                .await
                .expect("SET");
        }
        cluster
            .plant(node, &slot(1), other, held)
            .await
            .expect("SET");
    }
    cluster.server(2).pause();
    let limit = RateLimit::new(&redlock, "hint", 2, held).expect("limit");
    let refused = limit.try_acquire().await;
    cluster.server(2).resume();
    let refused = refused.expect_err("both slots held on a majority");
    let wait = refused.retry_after().expect("a hint");
    assert!(wait > Duration::from_secs(4), "{wait:?}: {refused}");
    // the slot given back on nodes 3 and 4 is free again there
    for node in 3..5 {
        let value = cluster.server(node).command(&["GET", &slot(0)]).await;
        assert_eq!(value.expect("GET").as_string(), None, "node {node}");
    }
}

on_both_backends!(
    all_or_nothing,
    two_devices_plus_a_taken_named_resource_gets_nothing,
    in_memory_two_devices_plus_a_taken_named_resource_gets_nothing
);

async fn all_or_nothing(backend: Backend) {
    let redlock = backend.client().await;
    let pool = Pool::new(&redlock, "lab").expect("pool");
    let printer = pool
        .acquire(vec![Requirement::key("printer")], Duration::from_secs(10))
        .await
        .expect("printer");
    let other_client = backend.client().await;
    let pool2 = Pool::new(&other_client, "lab").expect("pool");
    let request = vec![
        Requirement::need(2, devices(4), |d| d.id.clone()),
        Requirement::named(
            "printer",
            Device {
                id: "printer".into(),
                model: "laser",
            },
        ),
    ];
    let error = pool2
        .try_acquire(request, Duration::from_secs(10))
        .await
        .expect_err("the printer is taken");
    match &error {
        PoolError::Unavailable {
            requirement,
            need,
            held,
            ..
        } => assert_eq!((*requirement, *need, *held), (1, 1, 0), "{error}"),
        other => panic!("unexpected {other}"),
    }
    assert!(error.to_string().contains("printer"), "{error}");
    // nothing of the request is left on any node: only the printer (a node
    // slower than the cleanup's grace may take a moment longer)
    assert_pool_keys_vanish(&backend, |k| k.ends_with(":printer")).await;
    printer.release().await.expect("release");
}

/// One all-or-nothing request of three kinds (devices, licences, a plain
/// name), each mapped into one enum, on real servers: granted together,
/// handed back as the enum, held under each candidate's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_mixing_kinds_through_map_is_granted_whole() {
    #[derive(Clone, Debug, PartialEq)]
    enum Resource {
        Device(String),
        Licence(u32),
        Named(String),
    }
    let (cluster, redlock) = cluster().await;
    let pool = Pool::new(&redlock, "mixed").expect("pool");
    let request = vec![
        Requirement::need(2, devices(3), |d| d.id.clone())
            .tags(|d| vec![("model".into(), d.model.into())])
            .map(|d| Resource::Device(d.id)),
        Requirement::need(1, [7u32], |l| format!("licence-{l}")).map(Resource::Licence),
        Requirement::key("printer").map(Resource::Named),
    ];
    let grant = pool
        .acquire(request, Duration::from_secs(10))
        .await
        .expect("all three");
    assert_eq!(grant[0].len(), 2);
    assert!(matches!(grant[0][0], Resource::Device(_)), "{grant:?}");
    assert_eq!(grant[1], [Resource::Licence(7)]);
    assert_eq!(grant[2], [Resource::Named("printer".into())]);
    for key in ["licence-7", "printer"] {
        let seen = pool.inspect(key).await.expect("inspect");
        assert!(seen.holder().is_some(), "{key}: {seen}");
    }
    grant.release().await.expect("release");
    drop(cluster);
}

on_both_backends!(
    values_and_usage,
    the_grant_hands_back_values_per_requirement_and_usage_is_queryable,
    in_memory_the_grant_hands_back_values_per_requirement_and_usage_is_queryable
);

async fn values_and_usage(backend: Backend) {
    let redlock = backend.client().await;
    let pool = Pool::new(&redlock, "bench")
        .expect("pool")
        .with_usage_reporting(true);
    let request = vec![
        Requirement::need(2, devices(6), |d| d.id.clone())
            .order(CandidateOrder::AsGiven)
            .tags(|d| vec![("model".into(), d.model.into())]),
        Requirement::named(
            "scope",
            Device {
                id: "scope".into(),
                model: "DSO",
            },
        ),
    ];
    let grant = pool
        .acquire(request, Duration::from_secs(10))
        .await
        .expect("grant");
    assert_eq!(grant.len(), 2);
    assert_eq!(grant[0], devices(6)[..2]);
    assert_eq!(grant.keys(0), ["dev-0", "dev-1"]);
    assert_eq!(grant[1][0].id, "scope");
    assert!(grant.get(2).is_none());
    tokio::time::sleep(Duration::from_millis(50)).await; // a measurable hold
    grant.release().await.expect("release");

    let usage = pool.usage();
    assert_eq!(usage.all_tags().await.expect("tags"), ["key", "model"]);
    assert_eq!(
        usage.all_values("model").await.expect("values"),
        ["T1000", "T800"]
    );
    let t1000 = usage.figures("model", "T1000").await.expect("figures");
    assert_eq!(t1000.requests, 1);
    assert_eq!(t1000.acquisitions, 1, "dev-0 is the one T1000 granted");
    assert_eq!(t1000.releases, 1);
    assert!(t1000.hold >= Duration::from_millis(50), "{t1000:?}");
    let dev5 = usage.figures("key", "dev-5").await.expect("figures");
    assert_eq!((dev5.requests, dev5.acquisitions), (1, 0));
    let nothing = usage.figures("model", "T-X").await.expect("figures");
    assert_eq!(nothing, Default::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_extension_keeps_a_grant_past_its_ttl_and_release_stops_it() {
    let backend = Backend::real().await;
    let redlock = backend.client().await;
    let pool = Pool::new(&redlock, "lab").expect("pool");
    let options = LockOptions::new()
        .ttl(Duration::from_millis(300))
        .auto_extend(true);
    let grant = pool
        .acquire_with(
            vec![Requirement::need(2, devices(3), |d| d.id.clone())],
            &options,
        )
        .await
        .expect("grant");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(grant.remaining() > Duration::ZERO, "auto-extension lapsed");
    let other = pool
        .try_acquire(
            vec![Requirement::need(2, devices(3), |d| d.id.clone())],
            Duration::from_secs(1),
        )
        .await;
    assert!(
        matches!(other, Err(PoolError::Unavailable { .. })),
        "two of three devices are still held: {:?}",
        other.map(drop)
    );
    assert_eq!(
        grant.release().await.expect("release"),
        ReleaseOutcome::Released
    );
    // a release returns at a majority; the other nodes follow at once
    assert_pool_keys_vanish(&backend, |_| false).await;
}

on_both_backends!(
    split_grant_gives_back,
    what_only_a_minority_granted_is_given_back_at_once,
    in_memory_what_only_a_minority_granted_is_given_back_at_once
);

async fn split_grant_gives_back(backend: Backend) {
    let redlock = backend.client().await;
    let pool = Pool::new(&redlock, "lab").expect("pool");
    // dev-0 is held by someone else on node 0 only (a leftover): node 0
    // takes dev-1 instead, the other four take dev-0
    let dev0 = "quorate:pool:{lab}:dev-0";
    let dev1 = "quorate:pool:{lab}:dev-1";
    backend
        .plant(0, dev0, "someone", Duration::from_secs(30))
        .await;
    let need = Requirement::need(1, devices(3), |d| d.id.clone()).order(CandidateOrder::AsGiven);
    let grant = pool
        .acquire(vec![need], Duration::from_secs(30))
        .await
        .expect("dev-0 on a majority");
    assert_eq!(grant.keys(0), ["dev-0"]);
    // node 0's dev-1 was granted to nobody: it is given back at once, not
    // left for its 30 s ttl
    let deadline = Instant::now() + Duration::from_secs(2);
    while backend.pool_keys_on(0).await.contains(&dev1.to_owned()) {
        assert!(Instant::now() < deadline, "dev-1 kept on node 0");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    grant.release().await.expect("release");
}

on_both_backends!(
    cancelled_acquire,
    a_cancelled_acquire_leaves_no_key_behind,
    in_memory_a_cancelled_acquire_leaves_no_key_behind
);

async fn cancelled_acquire(backend: Backend) {
    // Nodes 2-4 get every request 300 ms late: the round cannot decide before
    // the cancel, and their grants land after it.
    let slow = Duration::from_millis(300);
    let (redlock, _proxies) = backend.client_with_slow_majority(slow).await;
    let pool = Pool::new(&redlock, "lab").expect("pool");
    let options = LockOptions::new()
        .ttl(Duration::from_secs(30))
        .node_timeout(Some(Duration::from_secs(2)));
    let acquire = pool.acquire_with(
        vec![Requirement::need(3, devices(5), |d| d.id.clone())],
        &options,
    );
    let cancelled = tokio::time::timeout(Duration::from_millis(100), acquire).await;
    assert!(cancelled.is_err(), "still pending when dropped");
    // Wait until a slow node shows the late grant (so the check below
    // cannot pass before it happened)...
    let deadline = Instant::now() + Duration::from_secs(2);
    while backend.pool_keys_on(2).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the late grant never reached a slow node"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ...then the undo sent at the cancel cleans every node, long before
    // the 30 s ttl.
    assert_pool_keys_vanish(&backend, |_| false).await;
}

/// Waits (up to 2 s) until no pool key but those `kept` is left on any node.
async fn assert_pool_keys_vanish(backend: &Backend, kept: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left: Vec<String> = backend
            .pool_keys()
            .await
            .into_iter()
            .filter(|k| !kept(k))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A client of `cluster` whose description carries `label`.
async fn labelled(cluster: &Cluster, label: &str) -> Redlock {
    Redlock::builder()
        .urls(cluster.urls())
        .owner(label)
        .build()
        .await
        .expect("connect")
}

#[tokio::test]
async fn a_refused_request_names_the_client_holding_the_candidates() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let holder = labelled(&cluster, "rig-owner").await;
    let other = Redlock::connect(cluster.urls()).await.expect("other");
    let want = || Requirement::need(2, devices(2), |d| d.id.clone());
    let _grant = Pool::new(&holder, "rig")
        .expect("pool")
        .acquire(vec![want()], Duration::from_secs(30))
        .await
        .expect("grant");
    let refused = Pool::new(&other, "rig")
        .expect("pool")
        .try_acquire(vec![want()], Duration::from_secs(30))
        .await
        .expect_err("held by the other client");
    let outcomes = match &refused {
        PoolError::Unavailable { outcomes, .. } => outcomes,
        other => panic!("expected Unavailable, got {other}"),
    };
    let named = outcomes.holder().expect("a holder");
    assert_eq!(refused.holder(), Some(named));
    assert_eq!(named.client, holder.owner().client_id());
    assert_eq!(named.owner, Some(holder.owner().to_string()));
    assert!(
        refused
            .to_string()
            .contains(&format!("by client {}", named.client)),
        "{refused}"
    );
}

#[tokio::test]
async fn inspect_and_force_unlock_of_pool_candidates_and_semaphore_permits() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let holder = labelled(&cluster, "encoder-1").await;
    let operator = Redlock::connect(cluster.urls()).await.expect("operator");
    let ttl = Duration::from_secs(30);

    let pool = Pool::new(&holder, "rig").expect("pool");
    let want = Requirement::need(1, devices(2), |d| d.id.clone()).order(CandidateOrder::AsGiven);
    let _grant = pool.acquire(vec![want], ttl).await.expect("grant");
    let seen = Pool::new(&operator, "rig").expect("pool");
    let held = seen.inspect("dev-0").await.expect("inspect");
    assert_eq!(
        held.holder().map(|h| h.client.clone()),
        Some(holder.owner().client_id())
    );
    assert!(held.remaining().is_some_and(|r| r <= ttl));
    assert!(seen
        .inspect("dev-1")
        .await
        .expect("inspect")
        .holder()
        .is_none());
    let gone = seen.force_unlock("dev-0").await.expect("force");
    assert_eq!(gone.deleted, 5);
    assert!(seen
        .inspect("dev-0")
        .await
        .expect("inspect")
        .holder()
        .is_none());

    let semaphore = Semaphore::new(&holder, "encoders", 3).expect("semaphore");
    let permit = semaphore.acquire(1, ttl).await.expect("permit");
    let slot = permit.slots()[0];
    let watched = Semaphore::new(&operator, "encoders", 3).expect("semaphore");
    let views = watched.inspect().await.expect("inspect");
    assert_eq!(views.len(), 3);
    for (i, view) in views.iter().enumerate() {
        assert_eq!(view.holder().is_some(), i == slot, "permit {i}: {view}");
    }
    assert!(matches!(
        watched.force_unlock(3).await,
        Err(PoolError::InvalidRequest(RequestError::NoSuchPermit {
            slot: 3,
            permits: 3
        }))
    ));
    assert_eq!(watched.force_unlock(slot).await.expect("force").deleted, 5);
    let views = watched.inspect().await.expect("inspect");
    assert!(views.iter().all(|v| v.holder().is_none()));
}

on_both_backends!(
    resizable_semaphore,
    a_resizable_semaphore_grows_and_shrinks_for_every_client,
    in_memory_a_resizable_semaphore_grows_and_shrinks_for_every_client
);

async fn resizable_semaphore(backend: Backend) {
    let ttl = Duration::from_secs(30);
    let (a, b) = (backend.client().await, backend.client().await);
    let sem_a = Semaphore::resizable(&a, "licences", 2).expect("semaphore");
    let sem_b = Semaphore::resizable(&b, "licences", 2).expect("semaphore");
    assert_eq!(sem_b.current_permits().await.expect("read"), 2);
    let two = sem_a.acquire(2, ttl).await.expect("both permits");
    assert!(matches!(
        sem_b.try_acquire(1, ttl).await,
        Err(PoolError::Unavailable { .. })
    ));
    // another client grows it: the new slot is free at once
    sem_b.set_permits(3).await.expect("set");
    assert_eq!(sem_a.current_permits().await.expect("read"), 3);
    let third = sem_b.try_acquire(1, ttl).await.expect("the new permit");
    assert_eq!(third.slots(), &[2]);
    // concurrent adds all count, each once
    let adds = (0..3).map(|_| {
        let semaphore = sem_b.clone();
        tokio::spawn(async move { semaphore.add_permits(1).await })
    });
    for add in adds {
        add.await.expect("task").expect("add");
    }
    assert_eq!(sem_a.current_permits().await.expect("read"), 6);
    // shrinking keeps what is held; new grants stay below the new number
    assert_eq!(sem_a.add_permits(-5).await.expect("add"), 1);
    assert_eq!(sem_b.current_permits().await.expect("read"), 1);
    assert!(matches!(
        sem_b.try_acquire(1, ttl).await,
        Err(PoolError::Unavailable { .. })
    ));
    two.release().await.expect("release");
    let again = sem_b.try_acquire(1, ttl).await.expect("slot 0 again");
    assert_eq!(again.slots(), &[0]);
    assert!(matches!(
        sem_b.try_acquire(2, ttl).await,
        Err(PoolError::InvalidRequest(RequestError::NeedTooMany { .. }))
    ));
    // a set drops the adds made before it
    sem_a.set_permits(4).await.expect("set");
    assert_eq!(sem_b.current_permits().await.expect("read"), 4);
    // a fixed semaphore refuses
    let fixed = Semaphore::new(&a, "fixed", 2).expect("semaphore");
    assert!(matches!(
        fixed.set_permits(3).await,
        Err(PoolError::InvalidRequest(RequestError::NotResizable { .. }))
    ));
    third.release().await.expect("release");
    again.release().await.expect("release");
}

/// 3 clients x 4 tasks on a resizable semaphore of 2 permits; another
/// client grows it to 4 mid-run, then 2 of 5 nodes are killed: never more
/// than 2 holders before the grow, never more than 4 after, and the new
/// permits are used.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_semaphore_grown_mid_run_by_another_client_keeps_its_bounds_with_two_nodes_killed() {
    let mut cluster = Cluster::start(5).await.expect("cluster");
    let log = HoldLog::new();
    let stop = Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for client in 0..3u64 {
        let redlock = Redlock::connect(cluster.urls()).await.expect("connect");
        let semaphore = Semaphore::resizable(&redlock, "render", 2).expect("semaphore");
        for task in 0..4u64 {
            let (semaphore, log) = (semaphore.clone(), log.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < stop {
                    let options = LockOptions::new()
                        .ttl(Duration::from_secs(2))
                        .acquire_timeout(Some(Duration::from_secs(2)));
                    let permit = match semaphore.acquire_with(1, &options).await {
                        Ok(permit) => permit,
                        Err(PoolError::Unavailable { .. }) => continue,
                        Err(other) => panic!("unexpected error: {other}"),
                    };
                    let start = Instant::now();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    log.record("render", client * 4 + task, start, Instant::now());
                    permit.release().await.expect("released by a majority");
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let operator = Redlock::connect(cluster.urls()).await.expect("connect");
    let grown_at = Instant::now();
    Semaphore::resizable(&operator, "render", 2)
        .expect("semaphore")
        .set_permits(4)
        .await
        .expect("grow");
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.server_mut(1).kill();
    cluster.server_mut(4).kill();
    for task in tasks {
        task.await.expect("task");
    }
    let before = HoldLog::new();
    for hold in log.holds().iter().filter(|h| h.end <= grown_at) {
        before.record(&hold.resource, hold.holder, hold.start, hold.end);
    }
    assert!(!before.is_empty(), "nothing held before the grow");
    assert!(
        before.max_concurrency() <= 2,
        "{} holders of 2 permits",
        before.max_concurrency()
    );
    let max = log.max_concurrency();
    assert!(max <= 4, "{max} holders of 4 permits");
    assert!(
        max >= 3,
        "the grown permits were never used (at most {max} at once)"
    );
}

#[tokio::test]
async fn a_resize_recorded_on_three_nodes_is_seen_with_two_of_them_stalled() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let writer = Semaphore::resizable(
        &Redlock::connect(cluster.urls()).await.expect("connect"),
        "gpus",
        2,
    )
    .expect("semaphore");
    let reader = Semaphore::resizable(
        &Redlock::connect(cluster.urls()).await.expect("connect"),
        "gpus",
        2,
    )
    .expect("semaphore");
    cluster.server(0).pause();
    cluster.server(1).pause();
    writer.set_permits(5).await.expect("on nodes 2-4");
    writer.add_permits(2).await.expect("on nodes 2-4");
    cluster.server(0).resume();
    cluster.server(1).resume();
    cluster.server(2).pause();
    cluster.server(3).pause();
    // nodes 0, 1 never saw it; node 4 did, and that is enough
    assert_eq!(reader.current_permits().await.expect("read"), 7);
    cluster.server(2).resume();
    cluster.server(3).resume();
}

#[tokio::test]
async fn a_permit_id_releases_or_extends_the_permit_from_another_client() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let holder = Redlock::connect(cluster.urls()).await.expect("connect");
    let other = Redlock::connect(cluster.urls()).await.expect("connect");
    let mine = Semaphore::new(&holder, "encoders", 2).expect("semaphore");
    let theirs = Semaphore::new(&other, "encoders", 2).expect("semaphore");
    let permit = mine
        .acquire(1, Duration::from_secs(2))
        .await
        .expect("permit");
    let text = permit.permit_ids()[0].to_string();
    assert!(!format!("{:?}", permit.permit_ids()[0]).contains(&text[text.len() - 16..]));

    // another process gets the id as text
    let id: PermitId = text.parse().expect("a permit id");
    assert_eq!((id.semaphore(), id.slot()), ("encoders", permit.slots()[0]));
    let lease = theirs
        .extend_permit(&id, Duration::from_secs(30))
        .await
        .expect("extended");
    assert!(lease.remaining() > Duration::from_secs(25));
    let seen = theirs.inspect().await.expect("inspect");
    let held = &seen[id.slot()];
    assert!(
        held.remaining()
            .is_some_and(|r| r > Duration::from_secs(25)),
        "{held}"
    );
    assert_eq!(
        theirs.release_permit(&id).await.expect("release"),
        ReleaseOutcome::Released
    );
    assert_eq!(
        theirs.release_permit(&id).await.expect("release"),
        ReleaseOutcome::NotHeld
    );
    // the holder's guard finds it gone
    assert_eq!(
        permit.release().await.expect("release"),
        ReleaseOutcome::NotHeld
    );
    assert!(matches!(
        theirs.extend_permit(&id, Duration::from_secs(5)).await,
        Err(PoolError::Lock(quorate_redlock::Error::Lost { .. }))
    ));
    let elsewhere = Semaphore::new(&other, "decoders", 2).expect("semaphore");
    assert!(matches!(
        elsewhere.release_permit(&id).await,
        Err(PoolError::InvalidRequest(
            RequestError::WrongSemaphore { .. }
        ))
    ));
    for bad in ["", "encoders/0", "encoders/x/00", "encoders/0/not-a-token"] {
        assert!(
            matches!(bad.parse::<PermitId>(), Err(RequestError::BadPermitId(_))),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn bad_input_gets_typed_errors() {
    // construction only: no script runs, so memory nodes do
    let nodes = MemoryNode::cluster(3)
        .into_iter()
        .map(|m| Arc::new(m) as Arc<dyn Node>)
        .collect();
    let redlock = Redlock::from_nodes(nodes, LockOptions::new()).expect("redlock");
    assert_eq!(
        Semaphore::new(&redlock, "s", 0).expect_err("0 permits"),
        RequestError::ZeroPermits { name: "s".into() }
    );
    assert!(matches!(
        Pool::new(&redlock, ""),
        Err(RequestError::Name(quorate_redlock::NameError::Empty { .. }))
    ));
    assert!(matches!(
        Pool::new(&redlock, "a{b}"),
        Err(RequestError::Name(quorate_redlock::NameError::Brace { .. }))
    ));
    assert_eq!(
        RateLimit::new(&redlock, "r", 5, Duration::ZERO).expect_err("zero window"),
        RequestError::ZeroWindow
    );
    let semaphore = Semaphore::new(&redlock, "s", 3).expect("semaphore");
    let too_many = semaphore
        .try_acquire(4, Duration::from_secs(1))
        .await
        .expect_err("4 of 3");
    assert!(
        matches!(
            too_many,
            PoolError::InvalidRequest(RequestError::NeedTooMany {
                need: 4,
                candidates: 3,
                ..
            })
        ),
        "{too_many}"
    );
    let zero = semaphore
        .try_acquire(0, Duration::from_secs(1))
        .await
        .expect_err("0 permits");
    assert!(matches!(
        zero,
        PoolError::InvalidRequest(RequestError::NeedZero { .. })
    ));
    let pool = Pool::new(&redlock, "p").expect("pool");
    let bad_ttl = pool
        .try_acquire(vec![Requirement::key("k")], Duration::ZERO)
        .await
        .expect_err("zero ttl");
    assert!(matches!(bad_ttl, PoolError::InvalidConfig(_)), "{bad_ttl}");
    // memory nodes run the scripts' native twins
    let grant = pool
        .try_acquire(vec![Requirement::key("k")], Duration::from_secs(1))
        .await
        .expect("memory nodes run the pool's script twin");
    assert_eq!(grant.keys(0), ["k"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_a_waiting_pool_request_of_another_client() {
    let (cluster, redlock) = cluster().await;
    let pool = Pool::new(&redlock, "lab").expect("pool");
    let held = pool
        .acquire(vec![Requirement::key("scope")], Duration::from_secs(30))
        .await
        .expect("scope");
    let other = Redlock::connect(cluster.urls()).await.expect("connect");
    let waiter_pool = Pool::new(&other, "lab").expect("pool");
    // Polling alone would take 5 s: only the release announcement can wake it sooner.
    let options = LockOptions::new()
        .ttl(Duration::from_secs(5))
        .retry_delay(Duration::from_secs(5))
        .retry_jitter(Duration::ZERO)
        .acquire_timeout(Some(Duration::from_secs(20)));
    let waiter = tokio::spawn(async move {
        let grant = waiter_pool
            .acquire_with(vec![Requirement::key("scope")], &options)
            .await;
        (grant.map(drop), Instant::now())
    });
    // The waiter is waiting once it subscribed to the release channel on a majority.
    let channel = "quorate:released:quorate:pool:{lab}:scope";
    assert!(
        cluster
            .wait_subscribed(channel, 3, Duration::from_secs(5))
            .await,
        "the waiter never subscribed"
    );
    let released_at = Instant::now();
    held.release().await.expect("release");
    let (grant, granted_at) = waiter.await.expect("waiter");
    grant.expect("the waiter gets the scope");
    let hand_off = granted_at - released_at;
    println!("hand-off took {hand_off:?}");
    assert!(
        hand_off < Duration::from_secs(2),
        "woken by polling, not by the release ({hand_off:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_node_does_not_cost_each_request_the_node_timeout() {
    let (cluster, redlock) = cluster().await;
    let pool = Pool::new(&redlock, "lab").expect("pool");
    cluster.server(1).pause();
    // Waiting for every node would cost each round these 5 s.
    let options = LockOptions::new()
        .ttl(Duration::from_secs(10))
        .node_timeout(Some(Duration::from_secs(5)));
    let started = Instant::now();
    for _ in 0..5 {
        let grant = pool
            .acquire_with(
                vec![Requirement::need(2, devices(4), |d| d.id.clone())],
                &options,
            )
            .await
            .expect("grant with a node stalled");
        assert_eq!(
            grant.release().await.expect("release"),
            ReleaseOutcome::Released
        );
    }
    // refused requests (every device taken) return as fast
    let all = pool
        .acquire_with(
            vec![Requirement::need(4, devices(4), |d| d.id.clone())],
            &options,
        )
        .await
        .expect("all four");
    for _ in 0..5 {
        let refused = pool
            .try_acquire(
                vec![Requirement::need(1, devices(4), |d| d.id.clone())],
                Duration::from_secs(10),
            )
            .await;
        assert!(
            matches!(refused, Err(PoolError::Unavailable { .. })),
            "{refused:?}"
        );
    }
    drop(all);
    let took = started.elapsed();
    cluster.server(1).resume();
    println!("11 requests with a node stalled took {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "{took:?}: a round waited for the stalled node"
    );
}

/// A client whose nodes sit out `max_ttl` after losing their data.
async fn client_with_max_ttl(cluster: &Cluster, max_ttl: Duration) -> Redlock {
    Redlock::builder()
        .urls(cluster.urls())
        .max_ttl(max_ttl)
        .defaults(LockOptions::new().ttl(max_ttl))
        .build()
        .await
        .expect("connect")
}

#[tokio::test]
async fn a_grant_forgotten_by_a_majority_is_not_granted_again_while_it_is_valid() {
    let mut cluster = Cluster::start(3).await.expect("cluster");
    let max_ttl = Duration::from_secs(2);
    let holder = Pool::new(&client_with_max_ttl(&cluster, max_ttl).await, "q").expect("pool");
    let grant = holder
        .acquire(vec![Requirement::key("dev")], max_ttl)
        .await
        .expect("granted");
    let valid_until = Instant::now() + grant.remaining();
    // 2 of 3 nodes restarted empty: a majority forgot the grant
    for i in 0..2 {
        cluster.server_mut(i).restart().await.expect("restart");
    }
    let rival = Pool::new(&client_with_max_ttl(&cluster, max_ttl).await, "q").expect("pool");
    let refused = rival
        .try_acquire(vec![Requirement::key("dev")], max_ttl)
        .await
        .expect_err("refused by the quarantined nodes");
    assert!(refused.to_string().contains("quarantined"), "{refused}");
    let options = LockOptions::new()
        .ttl(max_ttl)
        .acquire_timeout(Some(Duration::from_secs(10)));
    let second = rival
        .acquire_with(vec![Requirement::key("dev")], &options)
        .await
        .expect("granted once the quarantine ended");
    assert!(Instant::now() >= valid_until, "granted twice");
    drop((grant, second));
}

/// Another client extends a semaphore permit by its id with a short ttl:
/// the holder's own lease stays true (the servers keep the longer ttl;
/// before extensions stopped shortening, every node held it for 300 ms
/// while the holder claimed 10 s).
#[tokio::test]
async fn a_permit_extended_shorter_by_another_client_keeps_the_holders_lease_true() {
    let (cluster, mine) = cluster().await;
    let theirs = Redlock::connect(cluster.urls()).await.expect("connect");
    let semaphore = Semaphore::new(&mine, "encoders", 1).expect("semaphore");
    let permit = semaphore
        .acquire(1, Duration::from_secs(10))
        .await
        .expect("permit");
    let id = permit.permit_ids().remove(0);
    let other = Semaphore::new(&theirs, "encoders", 1).expect("semaphore");
    let lease = other
        .extend_permit(&id, Duration::from_millis(300))
        .await
        .expect("extend");
    assert!(lease.remaining() <= Duration::from_millis(300));
    let key = semaphore.inspect().await.expect("inspect")[0].key.clone();
    let claimed = permit.remaining();
    assert!(claimed > Duration::from_secs(9), "{claimed:?}");
    // every node still holds the permit at least as long as the holder claims
    let claimed_ms = i64::try_from(claimed.as_millis()).expect("ms");
    for server in cluster.servers() {
        let pttl = server.command(&["PTTL", &key]).await.expect("PTTL");
        assert!(
            pttl.as_i64().is_some_and(|ms| ms >= claimed_ms),
            "{pttl:?} < {claimed:?}"
        );
    }
}

/// The reported hole: 4 permits all held, a waiter waiting, `set_permits(2)`
/// returns, the holder of slot 2 releases: the waiter must not get slot 2.
/// Before the nodes checked their number (take.lua's limit) the waiter's
/// next round took slot 2 at once (seen failing: granted slot 2).
#[tokio::test]
async fn after_a_shrink_returned_a_waiter_gets_no_slot_beyond_it() {
    let (cluster, mine) = cluster().await;
    let theirs = Redlock::connect(cluster.urls()).await.expect("connect");
    let holders = Semaphore::resizable(&mine, "shrink", 4).expect("semaphore");
    let ttl = Duration::from_secs(20);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(holders.acquire(1, ttl).await.expect("permit"));
    }
    held.sort_by_key(|p| p.slots()[0]);
    let waiting = Semaphore::resizable(&theirs, "shrink", 4).expect("semaphore");
    let options = LockOptions::new()
        .ttl(ttl)
        .acquire_timeout(Some(Duration::from_secs(15)));
    let waiter = tokio::spawn(async move { waiting.acquire_with(1, &options).await });
    holders.set_permits(2).await.expect("set");
    let slot3 = held.pop().expect("slot 3");
    let slot2 = held.pop().expect("slot 2");
    slot2.release().await.expect("release");
    slot3.release().await.expect("release");
    // The waiter is woken by each release and tries again; for 1 s (several
    // of its rounds) slots 2 and 3 must stay free.
    let watch_until = Instant::now() + Duration::from_secs(1);
    let all_four = Semaphore::new(&mine, "shrink", 4).expect("semaphore");
    while Instant::now() < watch_until {
        let seen = all_four.inspect().await.expect("inspect");
        assert!(
            seen[2].holder().is_none() && seen[3].holder().is_none(),
            "a slot beyond the new size was granted: {} / {}",
            seen[2],
            seen[3]
        );
        assert!(!waiter.is_finished(), "the waiter got a permit beyond 2");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A slot below the new number frees: that one is granted.
    held.remove(0).release().await.expect("release");
    let granted = waiter.await.expect("join").expect("granted");
    assert_eq!(granted.slots(), &[0]);
}

/// A setter whose clock is behind the last setter's: its set must win
/// (it returned last). The nodes hold a set made by a clock 60 s ahead.
/// Before sets were made on top of the newest epoch read, the older epoch
/// was refused by every node and `set_permits` still returned Ok (seen
/// failing: 9 permits after set_permits(2) returned).
#[tokio::test]
async fn a_set_from_a_clock_behind_the_last_setters_still_wins() {
    let (cluster, redlock) = cluster().await;
    let key = "quorate:pool:{semaphore:behind}:size";
    let ahead = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
        + 60_000;
    let epoch = format!("{ahead:015}-00000000000000aa");
    for server in cluster.servers() {
        let set = ["HSET", key, "epoch", &epoch, "base", "9"];
        server.command(&set).await.expect("HSET");
    }
    let semaphore = Semaphore::resizable(&redlock, "behind", 1).expect("semaphore");
    assert_eq!(semaphore.current_permits().await.expect("read"), 9);
    for permits in [2, 3, 2] {
        semaphore.set_permits(permits).await.expect("set");
        assert_eq!(semaphore.current_permits().await.expect("read"), permits);
    }
}

/// A set that reached only a minority (written here on 2 of 5 nodes, as a
/// set whose other requests were lost leaves it): the first read that sees
/// it completes it, so every later reader agrees, even with the 2 nodes
/// that had it gone. Before reads wrote back, a reader without those 2
/// nodes saw the old number (seen failing: 4 after 7 was read).
#[tokio::test]
async fn a_partial_set_seen_by_one_reader_is_seen_by_every_later_one() {
    let (mut cluster, redlock) = cluster().await;
    let key = "quorate:pool:{semaphore:partial}:size";
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    let epoch = format!("{ms:015}-00000000000000aa");
    for i in 0..2 {
        let set = ["HSET", key, "epoch", &epoch, "base", "7"];
        cluster.server(i).command(&set).await.expect("HSET");
    }
    let reader = Semaphore::resizable(&redlock, "partial", 4).expect("semaphore");
    let first = reader.current_permits().await.expect("read");
    assert_eq!(first, 7, "the newest set any node has");
    cluster.server_mut(0).kill();
    cluster.server_mut(1).kill();
    let other = Redlock::connect(cluster.urls()[2..].to_vec())
        .await
        .expect("connect");
    let other = Semaphore::resizable(&other, "partial", 4).expect("semaphore");
    assert_eq!(other.current_permits().await.expect("read"), first);
}

/// The reported hole's companion on real servers: a shrink recorded by
/// nodes 0-2 only (3 and 4 reset the setter's connections), then nodes 1 and
/// 2 restarted from snapshots taken before it (their size record is gone)
/// and node 0 stopped. Nodes 1-4 are a majority that never heard of the
/// shrink: a waiter must get no slot beyond it. Only nodes in sync count
/// for a read (a restarted node is out of sync until written under its new
/// process), and take.lua refuses every slot on a node out of sync. Before,
/// the waiter took slot 3 from nodes 1-4.
#[tokio::test]
async fn a_shrink_forgotten_by_restarted_servers_is_not_undone() {
    let max_ttl = Duration::from_secs(1);
    let mut cluster = Cluster::start(5).await.expect("cluster");
    let defaults = LockOptions::new()
        .ttl(max_ttl)
        .node_timeout(Some(Duration::from_millis(200)))
        .acquire_timeout(Some(Duration::from_secs(10)));
    let connect = |urls: Vec<String>| {
        Redlock::builder()
            .urls(urls)
            .max_ttl(max_ttl)
            .defaults(defaults.clone())
            .build()
    };
    let holders = connect(cluster.urls()).await.expect("connect");
    let semaphore = Semaphore::resizable(&holders, "cfg", 4).expect("semaphore");
    let kept = LockOptions::new().ttl(max_ttl).auto_extend(true);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(semaphore.acquire_with(1, &kept).await.expect("permit"));
    }
    held.sort_by_key(|p| p.slots()[0]);
    for server in cluster.servers() {
        server.command(&["SAVE"]).await.expect("SAVE");
    }
    let waiting = Semaphore::resizable(&connect(cluster.urls()).await.expect("connect"), "cfg", 4)
        .expect("semaphore");
    let waiter = tokio::spawn(async move { waiting.acquire(1, max_ttl).await });
    let proxies = cluster.proxies().await.expect("proxies");
    let setter = connect(proxies.iter().map(FaultProxy::url).collect())
        .await
        .expect("connect");
    for p in &proxies[3..] {
        p.set(Fault::Reset);
    }
    Semaphore::resizable(&setter, "cfg", 4)
        .expect("semaphore")
        .set_permits(2)
        .await
        .expect("set on nodes 0-2");
    for i in [1, 2] {
        cluster.server_mut(i).restart().await.expect("restart");
    }
    // A mutex call starts their quarantine; wait until they vote again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(guard) = holders.try_lock("poke", Duration::from_millis(100)).await {
            let token = guard.lease().token().to_hex();
            let mut on_restarted = true;
            for i in [1, 2] {
                let value = cluster.server(i).command(&["GET", "poke"]).await;
                on_restarted &= value.ok().and_then(|v| v.as_string()) == Some(token.clone());
            }
            let _ = guard.release().await;
            if on_restarted {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the restarted nodes never voted again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.server(0).pause();
    let slot3 = held.pop().expect("slot 3");
    let _ = slot3.release().await;
    let watch_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < watch_until {
        assert!(!waiter.is_finished(), "the waiter got a slot beyond 2");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.server(0).resume();
    held.remove(0).release().await.expect("release");
    let granted = waiter.await.expect("join").expect("granted");
    assert_eq!(granted.slots(), &[0]);
}

/// A resizable semaphore whose number a majority lost (2 of 3 servers
/// restarted empty after `set_permits`): once their quarantine is over, an
/// acquire says the number is unknown and names the restarted nodes
/// (before: a `NoQuorum` claiming "3 of 3 nodes granted, 2 needed"), and a
/// `set_permits` makes it known again.
#[tokio::test]
async fn a_semaphore_number_lost_by_a_majority_is_unknown_until_set_again() {
    let mut cluster = Cluster::start(3).await.expect("cluster");
    let max_ttl = Duration::from_millis(500);
    let redlock = client_with_max_ttl(&cluster, max_ttl).await;
    let semaphore = Semaphore::resizable(&redlock, "lost", 4).expect("semaphore");
    semaphore.set_permits(2).await.expect("set");
    let restarted: Vec<String> = (1..3).map(|i| cluster.server(i).url()).collect();
    for i in 1..3 {
        cluster.server_mut(i).restart().await.expect("restart");
    }
    // long enough for the quarantine to end: the number is read again
    // until the deadline (before: the first read's NoQuorum was returned)
    let options = LockOptions::new()
        .ttl(max_ttl)
        .acquire_timeout(Some(Duration::from_secs(2)));
    let unknown = semaphore
        .acquire_with(1, &options)
        .await
        .expect_err("the number is unknown");
    match &unknown {
        // any one server may miss the last read's deadline on a loaded
        // machine: 0 or 1 in sync, never a majority, and the restarted
        // servers that answered named (with the one in sync, a majority)
        PoolError::SizeUnknown {
            name,
            in_sync: in_sync @ (0 | 1),
            quorum: 2,
            restarted: named,
        } => {
            assert_eq!(name, "lost");
            let addresses: Vec<&str> = restarted
                .iter()
                .map(|url| url.trim_start_matches("redis://"))
                .collect();
            let named: Vec<&str> = named.split(", ").collect();
            for address in &named {
                assert!(addresses.contains(address), "{address} did not restart");
            }
            assert!(
                in_sync + named.len() >= 2,
                "{named:?} and {in_sync} in sync are no majority"
            );
        }
        other => panic!("expected SizeUnknown, got {other}"),
    }
    semaphore.set_permits(2).await.expect("set again");
    let permit = semaphore
        .acquire_with(1, &options)
        .await
        .expect("granted once the number is set again");
    assert!(permit.slots()[0] < 2);
    permit.release().await.expect("release");
}
