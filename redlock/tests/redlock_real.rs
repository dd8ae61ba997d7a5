//! The Redlock mutex against 5 real redis-server processes, with real faults:
//! kill, restart, SIGSTOP, a black-holing proxy, SCRIPT FLUSH, a fast clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use quorate_redlock::{
    ConfigError, ConnectError, Error, FredNode, FredSettings, LockOptions, Node, NodeOutcome,
    Redlock, ReleaseOutcome,
};
use quorate_testkit::{Cluster, Fault, FaultProxy, FenceLog, HoldLog, Reply, ServerOptions};
use tokio::time::Instant;

async fn connect(urls: Vec<String>) -> Redlock {
    Redlock::connect(urls).await.expect("connect")
}

fn name_of(url: &str) -> String {
    url.trim_start_matches("redis://").to_owned()
}

/// GET `key` on node `i` of the cluster.
async fn get(cluster: &Cluster, i: usize, key: &str) -> Option<String> {
    match cluster.server(i).command(&["GET", key]).await.expect("GET") {
        Reply::Bulk(Some(v)) => Some(String::from_utf8_lossy(&v).into_owned()),
        _ => None,
    }
}

/// Every key on every running node.
async fn all_keys(cluster: &Cluster) -> Vec<Vec<String>> {
    cluster.keys("*").await.expect("KEYS")
}

/// A Redlock whose nodes sit out `max_ttl` after losing their data.
async fn connect_with_max_ttl(urls: Vec<String>, max_ttl: Duration) -> Redlock {
    let builder = Redlock::builder()
        .urls(urls)
        .max_ttl(max_ttl)
        .defaults(LockOptions::new().ttl(max_ttl));
    builder.build().await.expect("connect")
}

/// Locks and releases `key` until node `i` is seen holding our token (it
/// reconnected and takes part again); fails after 15 s.
async fn wait_until_node_grants(redlock: &Redlock, cluster: &Cluster, i: usize, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let guard = redlock
            .lock(key, Duration::from_secs(1))
            .await
            .expect("lock");
        let token = guard.lease().token().to_hex();
        let on_node = get(cluster, i, key).await;
        guard.release().await.expect("release");
        if on_node.as_deref() == Some(token.as_str()) {
            return;
        }
        assert!(Instant::now() < deadline, "node {i} never granted again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fault proxy in front of every node, and a Redlock that goes through them.
async fn through_proxies(cluster: &Cluster) -> (Vec<FaultProxy>, Redlock) {
    let proxies = cluster.proxies().await.expect("proxies");
    let redlock = connect(proxies.iter().map(FaultProxy::url).collect()).await;
    (proxies, redlock)
}

/// One lock and release of `key`, both expected to succeed.
async fn lock_and_release(redlock: &Redlock, key: &str) {
    let guard = redlock
        .lock(key, Duration::from_secs(1))
        .await
        .expect("lock");
    assert_eq!(
        guard.release().await.expect("release"),
        ReleaseOutcome::Released
    );
}

/// The slowest of `rounds` lock calls (each followed by its release).
async fn worst_lock_latency(redlock: &Redlock, rounds: usize) -> Duration {
    let mut worst = Duration::ZERO;
    for _ in 0..rounds {
        let started = Instant::now();
        let guard = redlock
            .lock("r", Duration::from_secs(10))
            .await
            .expect("a majority is up");
        worst = worst.max(started.elapsed());
        guard.release().await.expect("release");
    }
    worst
}

/// Waits (bounded) until no running node holds any key. Rounds are decided
/// early and undos go out on the same connections right after, so a clean
/// state follows within a few round trips; there is no event to wait on.
async fn assert_keys_vanish(cluster: &Cluster, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let keys = all_keys(cluster).await;
        if keys.iter().all(Vec::is_empty) {
            return;
        }
        assert!(Instant::now() < deadline, "keys left behind: {keys:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every grant of a [`contended_run`]: token, client, when.
/// One grant of a contended run.
#[derive(Clone, Debug)]
struct Grant {
    token: String,
    client: u64,
    /// When the lock call returned.
    granted: StdInstant,
    /// When the holder called `release` (a hand-off is decided after this).
    released: StdInstant,
    /// The lease's validity end as the holder saw it.
    valid_until: StdInstant,
}

type Grants = Arc<std::sync::Mutex<Vec<Grant>>>;

const MS: Duration = Duration::from_millis(1);

/// `clients` independent Redlock clients (as separate processes would
/// have), `tasks` tasks on each, take one resource `each` times; every
/// hold, fence (when fencing is on) and grant is logged. Bounded: each
/// lock call by `options`, the run by 240 s.
async fn contended_run(
    urls: Vec<String>,
    clients: u64,
    tasks: u64,
    each: usize,
    hold: Duration,
    options: LockOptions,
) -> (HoldLog, FenceLog, Grants) {
    let holds = HoldLog::new();
    let fences = FenceLog::new();
    let grants = Grants::default();
    let inside = Arc::new(AtomicBool::new(false));
    let mut running = Vec::new();
    for client in 0..clients {
        let redlock = connect(urls.clone()).await;
        for task in 0..tasks {
            let id = client * tasks + task;
            let (redlock, options, holds, fences, grants, inside) = (
                redlock.clone(),
                options.clone(),
                holds.clone(),
                fences.clone(),
                Arc::clone(&grants),
                inside.clone(),
            );
            running.push(tokio::spawn(async move {
                for _ in 0..each {
                    let guard = redlock
                        .lock_with(["mutex:shared"], &options)
                        .await
                        .expect("lock within the acquire timeout");
                    let start = StdInstant::now();
                    assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                    // held long enough that a rival grant would land inside it
                    tokio::time::sleep(hold).await;
                    inside.store(false, Ordering::SeqCst);
                    assert!(guard.is_valid(), "held past validity");
                    let end = StdInstant::now();
                    holds.record("mutex:shared", id, start, end);
                    if let Some(fence) = guard.lease().fence() {
                        fences.record(id, fence, start);
                    }
                    let token = guard.lease().token().to_hex();
                    let valid_until = guard.lease().valid_until().into_std();
                    let released = StdInstant::now();
                    grants.lock().expect("grants").push(Grant {
                        token,
                        client,
                        granted: start,
                        released,
                        valid_until,
                    });
                    guard.release().await.expect("release");
                }
            }));
        }
    }
    let all = futures::future::join_all(running);
    tokio::time::timeout(Duration::from_secs(240), all)
        .await
        .expect("run finishes within 240 s")
        .into_iter()
        .for_each(|r| r.expect("task"));
    (holds, fences, grants)
}

/// Checks the hand-offs of a contended run: a lock is handed over only
/// inside its client, and only while half its ttl is left (checked against
/// the moment the previous holder called `release`, which precedes the
/// decision, so without slack). Returns (hand-offs, least validity left at one).
fn check_hand_offs(grants: &Grants, ttl: Duration) -> (usize, Duration) {
    let mut grants = grants.lock().expect("grants").clone();
    // A token's grants in the order they were handed over (holds never overlap).
    grants.sort_by(|a, b| (&a.token, a.granted).cmp(&(&b.token, b.granted)));
    let mut handed_over = 0;
    let mut least_left = Duration::MAX;
    for pair in grants.windows(2) {
        let (previous, next) = (&pair[0], &pair[1]);
        if previous.token != next.token {
            continue;
        }
        handed_over += 1;
        assert_eq!(
            previous.client, next.client,
            "a lock is handed over only inside its client"
        );
        let left = next
            .valid_until
            .saturating_duration_since(previous.released);
        least_left = least_left.min(left);
        assert!(
            left >= ttl / 2,
            "token {} handed over with only {left:?} of its {ttl:?} left",
            next.token
        );
    }
    (handed_over, least_left)
}

/// Inside a client the lock passes from task to task without a round trip
/// (the same token serves several grants), holds never overlap, a lock is
/// handed over only while half its ttl is left and then goes back through
/// the servers, and no key is left behind. Two runs: 2 clients (processes)
/// × 4 tasks × 150 (the other client's queued waiters end chains early) and
/// 1 client × 4 tasks × 60 holding 20 ms (chains long enough to reach half
/// the ttl).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_hand_offs_keep_exclusion_and_end_within_half_a_ttl() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let ttl = Duration::from_secs(1);
    let options = LockOptions::new()
        .ttl(ttl)
        .acquire_timeout(Some(Duration::from_secs(60)));
    for (clients, each, hold) in [(2, 150, MS), (1, 60, 20 * MS)] {
        let (holds, _, grants) =
            contended_run(cluster.urls(), clients, 4, each, hold, options.clone()).await;
        holds.check_exclusive().expect("no overlapping holds");
        let total = grants.lock().expect("grants").len();
        assert_eq!(total, clients as usize * 4 * each);
        let (handed_over, least_left) = check_hand_offs(&grants, ttl);
        assert!(handed_over > 0, "no grant was a hand-off");
        assert_keys_vanish(&cluster, Duration::from_secs(2)).await;
        eprintln!(
            "{clients} client(s): {total} grants, {} through the servers, \
             {handed_over} handed over, at least {least_left:?} left at each",
            total - handed_over
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_exclusion_and_fences_16_tasks_200_acquisitions_each() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let options = LockOptions::new()
        .ttl(Duration::from_secs(5))
        .acquire_timeout(Some(Duration::from_secs(60)))
        .fencing(true);
    let started = StdInstant::now();
    // 4 clients (processes) × 4 tasks: contention both across clients
    // (on the servers) and inside each (the local queue)
    let (holds, fences, _) = contended_run(cluster.urls(), 4, 4, 200, MS, options).await;
    assert_eq!(holds.len(), 16 * 200);
    assert_eq!(fences.len(), holds.len(), "every lease is fenced");
    holds.check_exclusive().expect("no overlapping holds");
    fences
        .check_strictly_increasing()
        .expect("fences strictly increase");
    println!(
        "{} fenced acquisitions by 4 clients × 4 tasks in {:.1} s",
        holds.len(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_increase_while_a_minority_is_killed_and_restarted() {
    // AOF with fsync on every write: a killed node keeps its counters.
    let options = ServerOptions {
        appendonly: true,
        ..ServerOptions::default()
    };
    let mut cluster = Cluster::start_with(5, options).await.expect("cluster");
    let urls = cluster.urls();
    // fsync on every write makes these nodes slow on a loaded machine: a
    // 50 ms node timeout (the default for this ttl) once timed out two live
    // nodes in a release, failing it for lack of quorum.
    let lock_options = LockOptions::new()
        .ttl(Duration::from_secs(5))
        .node_timeout(Some(Duration::from_millis(500)))
        .acquire_timeout(Some(Duration::from_secs(60)))
        .fencing(true);
    let run = tokio::spawn(contended_run(urls, 4, 2, 60, MS, lock_options));
    // kill and restart nodes 0 and 1 in turn (never more than one down)
    let mut restarts = 0;
    while !run.is_finished() && restarts < 40 {
        let node = restarts % 2;
        cluster.server_mut(node).kill();
        tokio::time::sleep(Duration::from_millis(100)).await;
        cluster.server_mut(node).restart().await.expect("restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
        restarts += 1;
    }
    let (holds, fences, _) = run.await.expect("run");
    assert!(restarts >= 2, "the run ended before any fault");
    assert_eq!(holds.len(), 8 * 60);
    holds.check_exclusive().expect("no overlapping holds");
    fences
        .check_strictly_increasing()
        .expect("fences strictly increase");
    println!(
        "{} fenced acquisitions across {restarts} kill/restarts",
        holds.len()
    );
}

#[tokio::test]
async fn a_release_wakes_the_queued_waiter_of_another_client_at_once() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let holder = connect(cluster.urls()).await;
    // Its timers alone would retry only after 5 s (a third of its waiter
    // ttl): only the wake-up the release sends to the queue's head (pub/sub
    // from the servers) can wake this waiter earlier.
    let waiter = Redlock::builder()
        .urls(cluster.urls())
        .defaults(
            LockOptions::new()
                .waiter_ttl(Duration::from_secs(15))
                .acquire_timeout(Some(Duration::from_secs(20))),
        )
        .build()
        .await
        .expect("waiter");
    let held = holder
        .lock("handoff", Duration::from_secs(30))
        .await
        .expect("lock");
    let waiting = tokio::spawn(async move {
        let guard = waiter
            .lock("handoff", Duration::from_secs(30))
            .await
            .expect("granted");
        (Instant::now(), guard)
    });
    // The signal that the waiter waits: its wake-up channel and its place
    // in the queue on every node.
    let deadline = Instant::now() + Duration::from_secs(5);
    for i in 0..5 {
        loop {
            let channels = cluster
                .server(i)
                .command(&["PUBSUB", "CHANNELS", "quorate:wake:*"])
                .await
                .expect("PUBSUB CHANNELS")
                .into_array();
            let queued = cluster
                .server(i)
                .command(&["ZCARD", "quorate:queue:{handoff}"])
                .await
                .expect("ZCARD");
            if channels.len() == 1 && queued.as_i64() == Some(1) {
                break;
            }
            assert!(Instant::now() < deadline, "waiter never queued");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let released_at = Instant::now();
    held.release().await.expect("release");
    let (granted_at, guard) = waiting.await.expect("task");
    let handoff = granted_at.saturating_duration_since(released_at);
    // Below the 5 s its timers would take, with room for a loaded machine.
    assert!(
        handoff < Duration::from_secs(4),
        "woken by its timers, not by the release: hand-off took {handoff:?}"
    );
    guard.release().await.expect("release");
}

#[tokio::test]
async fn two_dead_nodes_change_nothing_three_give_no_quorum_naming_them() {
    let mut cluster = Cluster::start(5).await.expect("cluster");
    let urls = cluster.urls();
    let redlock = connect(urls.clone()).await;
    cluster.server_mut(0).kill();
    cluster.server_mut(1).kill();
    for _ in 0..5 {
        let guard = redlock
            .try_lock("r", Duration::from_secs(5))
            .await
            .expect("3 of 5");
        assert_eq!(
            guard.release().await.expect("release"),
            ReleaseOutcome::Released
        );
    }

    cluster.server_mut(2).kill();
    let started = Instant::now();
    let err = redlock
        .try_lock("r", Duration::from_secs(5))
        .await
        .expect_err("2 of 5");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let Error::NoQuorum {
        granted, outcomes, ..
    } = &err
    else {
        panic!("expected NoQuorum, got {err:?}");
    };
    // decided once the 3 dead nodes failed: the live ones may not have answered yet
    assert!(*granted <= 2, "{err}");
    let mut failed = outcomes.failed_nodes();
    failed.sort();
    let mut dead: Vec<String> = urls[..3].iter().map(|u| name_of(u)).collect();
    dead.sort();
    assert_eq!(failed, dead, "{err}");
    // lock() with a deadline gives up within it, with the same diagnosis
    let options = LockOptions::new().acquire_timeout(Some(Duration::from_millis(500)));
    let started = Instant::now();
    let err = redlock
        .lock_with(["r"], &options)
        .await
        .expect_err("no quorum");
    assert!(matches!(err, Error::NoQuorum { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // the 2 live nodes keep no partial grant
    assert_keys_vanish(&cluster, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_paused_node_costs_nothing_three_cost_one_node_timeout() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let redlock = connect(cluster.urls()).await;
    let node_timeout = redlock.defaults().effective_node_timeout();
    cluster.server(0).pause();
    let worst = worst_lock_latency(&redlock, 20).await;
    assert!(
        worst < node_timeout,
        "lock waited for the paused node: {worst:?}"
    );

    cluster.server(1).pause();
    cluster.server(2).pause();
    let started = Instant::now();
    let err = redlock
        .try_lock("r2", Duration::from_secs(10))
        .await
        .expect_err("3 paused");
    let took = started.elapsed();
    assert!(took >= node_timeout && took < node_timeout * 3, "{took:?}");
    let timed_out = err
        .outcomes()
        .expect("outcomes")
        .nodes_where(|o| *o == NodeOutcome::TimedOut);
    assert_eq!(timed_out.len(), 3, "{err}");
    for i in 0..3 {
        cluster.server(i).resume();
    }
}

#[tokio::test]
async fn a_black_holed_node_costs_nothing_three_cost_one_node_timeout() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let (proxies, redlock) = through_proxies(&cluster).await;
    let node_timeout = redlock.defaults().effective_node_timeout();
    proxies[4].set(Fault::Blackhole);
    let worst = worst_lock_latency(&redlock, 20).await;
    assert!(
        worst < node_timeout,
        "lock waited for the black hole: {worst:?}"
    );

    proxies[3].set(Fault::Blackhole);
    proxies[2].set(Fault::Blackhole);
    let started = Instant::now();
    let err = redlock
        .try_lock("r2", Duration::from_secs(10))
        .await
        .expect_err("3 black-holed");
    let took = started.elapsed();
    assert!(matches!(err, Error::NoQuorum { .. }), "{err:?}");
    assert!(took >= node_timeout && took < node_timeout * 3, "{took:?}");
}

#[tokio::test]
async fn only_the_owner_can_release_or_extend() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let alice = connect(cluster.urls()).await;
    let mallory = connect(cluster.urls()).await;
    let guard = alice
        .lock("owned", Duration::from_secs(10))
        .await
        .expect("lock");
    let token = guard.lease().token().to_hex();

    assert!(matches!(
        mallory.try_lock("owned", Duration::from_secs(10)).await,
        Err(Error::Taken { .. })
    ));
    for url in cluster.urls() {
        let node = FredNode::from_url(&url, &FredSettings::default()).expect("url");
        assert!(node.wait_connected(Duration::from_secs(5)).await);
        let keys = vec!["owned".to_owned()];
        assert_eq!(node.release(&keys, "guessed-token", Some("x")).await, Ok(0));
        assert_eq!(
            node.extend(&keys, "guessed-token", Duration::from_secs(99))
                .await,
            Ok(false)
        );
    }
    // Rounds are decided by a majority: alice's token is on at least 3
    // nodes, and nothing else is on any.
    let mut holding = 0;
    for i in 0..5 {
        match get(&cluster, i, "owned").await {
            Some(value) if value == token => holding += 1,
            Some(other) => panic!("node {i} holds {other}, not alice's token"),
            None => {}
        }
    }
    assert!(holding >= 3, "only {holding} nodes hold alice's token");
    // an old, expired guard of mallory's cannot release alice's lock either
    let old = mallory
        .lock("owned2", Duration::from_millis(50))
        .await
        .expect("lock");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let alices = alice
        .lock("owned2", Duration::from_secs(10))
        .await
        .expect("after expiry");
    assert_eq!(
        old.release().await.expect("release"),
        ReleaseOutcome::NotHeld
    );
    assert!(alices.is_valid());
    let alices_token = alices.lease().token().to_hex();
    let mut holding = 0;
    for i in 0..5 {
        if get(&cluster, i, "owned2").await.as_deref() == Some(alices_token.as_str()) {
            holding += 1;
        }
    }
    assert!(holding >= 3, "mallory's late release deleted alice's keys");
    assert_eq!(
        guard.release().await.expect("release"),
        ReleaseOutcome::Released
    );
}

#[tokio::test]
async fn script_flush_between_operations_is_survived() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let redlock = connect(cluster.urls()).await;
    // both kinds of cached script: EVAL's and the function libraries
    let flush = || async {
        for i in 0..5 {
            for command in [["SCRIPT", "FLUSH"], ["FUNCTION", "FLUSH"]] {
                cluster.server(i).command(&command).await.expect("flush");
            }
        }
    };
    let mut guard = redlock
        .lock("f", Duration::from_secs(2))
        .await
        .expect("lock");
    flush().await;
    guard
        .extend(Duration::from_secs(10))
        .await
        .expect("extend after flush");
    // the servers have it: more than the first 2 s left on every node
    for i in 0..5 {
        let pttl = cluster.server(i).command(&["PTTL", "f"]).await;
        let pttl = pttl.expect("PTTL").as_i64().unwrap_or(-2);
        assert!(pttl > 5000, "node {i}: {pttl} ms left after the extension");
    }
    flush().await;
    assert_eq!(
        guard.release().await.expect("release"),
        ReleaseOutcome::Released
    );
    flush().await;
    let guard = redlock
        .lock("f", Duration::from_secs(10))
        .await
        .expect("lock after flush");
    guard.release().await.expect("release");
}

#[tokio::test]
async fn a_node_restarted_empty_sits_out_its_quarantine_then_is_used_again() {
    let mut cluster = Cluster::start(5).await.expect("cluster");
    let max_ttl = Duration::from_secs(2);
    let redlock = connect_with_max_ttl(cluster.urls(), max_ttl).await;
    lock_and_release(&redlock, "x").await;
    cluster.server_mut(0).kill();
    let guard = redlock
        .lock("x", Duration::from_secs(1))
        .await
        .expect("4 of 5");
    guard.release().await.expect("release");
    let restarted = Instant::now();
    cluster.server_mut(0).restart().await.expect("restart");
    // the client reconnects on its own (backoff up to 1 s); the node's
    // first granting call finds its marker gone and starts the quarantine
    wait_until_node_grants(&redlock, &cluster, 0, "x").await;
    let out = restarted.elapsed();
    assert!(
        out >= max_ttl,
        "granted again {out:?} after an empty restart"
    );
    let marker = cluster.server(0).command(&["GET", "quorate:marker"]).await;
    let marker = marker.expect("GET").as_string().unwrap_or_default();
    assert!(marker.starts_with("lost:"), "{marker}");
}

#[tokio::test]
async fn a_lock_call_names_the_quarantined_node_and_how_long_it_sits_out() {
    let mut cluster = Cluster::start(3).await.expect("cluster");
    let redlock = connect_with_max_ttl(cluster.urls(), Duration::from_secs(30)).await;
    for i in 0..2 {
        cluster.server_mut(i).restart().await.expect("restart");
    }
    let options = LockOptions::new()
        .ttl(Duration::from_secs(1))
        .acquire_timeout(Some(Duration::from_secs(3)));
    let started = Instant::now();
    let err = loop {
        // until the client has reconnected to both restarted nodes
        let err = redlock
            .lock_with(["q"], &options)
            .await
            .expect_err("2 of 3 lost");
        let quarantined = err.outcomes().map_or(0, |o| {
            o.nodes_where(|o| matches!(o, NodeOutcome::Quarantined { .. }))
                .len()
        });
        if quarantined == 2 || started.elapsed() > Duration::from_secs(15) {
            break err;
        }
    };
    assert!(
        matches!(err, Error::NoQuorum { granted: 0 | 1, .. }),
        "{err}"
    );
    let text = err.to_string();
    for i in 0..2 {
        let node = name_of(&cluster.server(i).url());
        assert!(
            text.contains(&format!("{node}: quarantined for ")),
            "{text}"
        );
    }
    // a ttl above max_ttl is refused before anything is sent
    let long = redlock.lock("q", Duration::from_secs(31)).await;
    assert!(
        matches!(
            long,
            Err(Error::InvalidConfig(ConfigError::TtlAboveMaxTtl { .. }))
        ),
        "{long:?}"
    );
}

#[tokio::test]
async fn a_node_down_at_construction_joins_when_it_comes_up() {
    let mut cluster = Cluster::start(3).await.expect("cluster");
    cluster.server_mut(2).kill();
    let redlock = connect_with_max_ttl(cluster.urls(), Duration::from_secs(1)).await;
    let err = redlock.try_lock("late", Duration::from_secs(1)).await;
    // 2 of 3 still grant; the dead node fails fast with its connection error
    let guard = err.expect("2 of 3");
    guard.release().await.expect("release");
    // it comes back empty, so it joins after its quarantine
    cluster.server_mut(2).restart().await.expect("restart");
    wait_until_node_grants(&redlock, &cluster, 2, "late").await;
}

#[tokio::test]
async fn cancelled_lock_leaves_no_key_behind() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let (proxies, redlock) = through_proxies(&cluster).await;
    // 3 nodes answer 300 ms late: the round is still undecided when cancelled
    for p in &proxies[2..] {
        p.set(Fault::Delay(Duration::from_millis(300)));
    }
    let options = LockOptions::new()
        .ttl(Duration::from_secs(30))
        .node_timeout(Some(Duration::from_secs(2)));
    let cancelled = tokio::time::timeout(
        Duration::from_millis(100),
        redlock.lock_with(["c"], &options),
    )
    .await;
    assert!(cancelled.is_err(), "still pending when dropped");
    // The fast nodes granted before the cancel; the slow ones grant when the
    // request arrives, ~300 ms after it was sent. Wait until a slow node shows
    // that late grant (so the check below cannot pass before it happened)...
    let deadline = Instant::now() + Duration::from_secs(2);
    while all_keys(&cluster).await[2..].iter().all(Vec::is_empty) {
        assert!(
            Instant::now() < deadline,
            "the late grant never reached a slow node"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ...then the spawned undo, which follows each grant on the same
    // connection, cleans every node, long before the 30 s ttl.
    assert_keys_vanish(&cluster, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn three_resources_all_or_nothing_when_one_is_taken() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let redlock = connect(cluster.urls()).await;
    let held = redlock
        .lock("res:b", Duration::from_secs(10))
        .await
        .expect("b");
    let err = redlock
        .lock_with(
            ["res:a", "res:b", "res:c"],
            // one task plays both clients here
            &LockOptions::new()
                .reentry_check(false)
                .max_attempts(Some(1)),
        )
        .await
        .expect_err("b taken");
    assert!(
        matches!(&err, Error::Taken { resource, .. } if resource == "res:b"),
        "{err:?}"
    );
    // Nothing of the failed request stays anywhere: the undo goes out at
    // once, and lands within a few round trips (nothing signals it).
    // (`res:b` itself may still be in flight to a straggler.)
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let keys = all_keys(&cluster).await;
        if keys.iter().flatten().all(|k| k == "res:b") {
            break;
        }
        assert!(Instant::now() < deadline, "partial grant left: {keys:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    held.release().await.expect("release");
    let all = redlock
        .lock_with(["res:a", "res:b", "res:c"], &LockOptions::new())
        .await
        .expect("all three");
    let complete = all_keys(&cluster)
        .await
        .into_iter()
        .filter(|keys| keys.len() == 3)
        .count();
    assert!(complete >= 3, "a majority holds all three");
    all.release().await.expect("release");
}

#[tokio::test]
async fn password_protected_nodes_and_a_wrong_password() {
    let options = ServerOptions {
        password: Some("s3cret".into()),
        ..ServerOptions::default()
    };
    let cluster = Cluster::start_with(3, options).await.expect("cluster");
    let redlock = connect(cluster.urls()).await;
    lock_and_release(&redlock, "acl").await;

    let wrong: Vec<String> = cluster
        .urls()
        .iter()
        .map(|u| u.replace("s3cret", "wrong"))
        .collect();
    // connecting fails fast, naming the problem of every node
    let err = Redlock::connect(wrong.clone())
        .await
        .expect_err("auth fails");
    assert!(
        matches!(err, ConnectError::Unreachable { reachable: 0, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(!text.contains("wrong"), "password leaked: {text}");
    assert_eq!(text.matches("authentication failed").count(), 3, "{text}");
    // started lazily, a lock call names the auth problem per node
    let redlock = Redlock::builder().urls(wrong).lazy(true).build().await;
    let redlock = redlock.expect("lazy start");
    let deadline = Instant::now() + Duration::from_secs(5);
    let err = loop {
        let err = redlock
            .try_lock("acl", Duration::from_secs(5))
            .await
            .expect_err("auth fails");
        // until the first connection attempt of every node has failed
        let reasons = err
            .outcomes()
            .expect("outcomes")
            .0
            .iter()
            .filter_map(|r| match &r.outcome {
                NodeOutcome::Error(e) => Some(e.message().contains("authentication failed")),
                _ => None,
            });
        let reasons: Vec<bool> = reasons.collect();
        if (reasons.len() >= 2 && reasons.iter().all(|&auth| auth)) || Instant::now() > deadline {
            break err;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(matches!(err, Error::NoQuorum { .. }), "{err:?}");
    assert!(!err.to_string().contains("wrong"), "password leaked: {err}");
    // the round is decided after 2 failures; each names the auth problem
    let outcomes = err.outcomes().expect("outcomes");
    assert!(outcomes.failed_nodes().len() >= 2, "{err}");
    for report in &outcomes.0 {
        if let NodeOutcome::Error(e) = &report.outcome {
            assert!(e.message().contains("authentication failed"), "{e}");
            // fred's own error stays reachable, with its kind
            let source = std::error::Error::source(e).expect("fred's error as the source");
            let fred = source.downcast_ref::<quorate_redlock::fred::error::Error>();
            assert_eq!(
                fred.map(|f| f.kind().clone()),
                Some(quorate_redlock::fred::error::ErrorKind::Auth),
                "{source:?}"
            );
        }
    }
}

#[tokio::test]
async fn connect_fails_fast_naming_each_unreachable_node_unless_lazy() {
    let mut cluster = Cluster::start(3).await.expect("cluster");
    cluster.server_mut(0).kill();
    cluster.server_mut(1).kill();
    let started = Instant::now();
    let err = Redlock::connect(cluster.urls()).await.expect_err("1 of 3");
    let took = started.elapsed();
    let ConnectError::Unreachable {
        reachable,
        quorum,
        problems,
        ..
    } = &err
    else {
        panic!("expected Unreachable, got {err:?}");
    };
    assert_eq!((*reachable, *quorum), (1, 2));
    for i in 0..2 {
        let node = name_of(&cluster.server(i).url());
        let why = problems.iter().find(|(name, _)| *name == node);
        assert!(
            why.is_some_and(|(_, why)| why.starts_with("not connected: connection refused")),
            "{err}"
        );
    }
    assert!(!err.to_string().contains("Os {"), "a Debug dump: {err}");
    assert!(err.is_retryable() && !ConnectError::from(ConfigError::NoNodes).is_retryable());
    // the connection timeout (1 s), not a lock call's 10 s
    assert!(took < Duration::from_secs(3), "{took:?}");
    let lazy = Redlock::builder().urls(cluster.urls()).lazy(true).build();
    assert!(lazy.await.is_ok(), "lazy start with 1 of 3");
}

#[tokio::test]
async fn urls_naming_the_same_server_twice_or_the_wrong_scheme_are_refused() {
    let cluster = Cluster::start(2).await.expect("cluster");
    let port = cluster.server(0).port();
    let same = [
        format!("redis://localhost:{port}"),
        format!("redis://127.0.0.1:{port}"),
        cluster.server(1).url(),
    ];
    let err = Redlock::connect(same).await.expect_err("one server twice");
    assert!(
        matches!(&err, ConnectError::Config(ConfigError::DuplicateNode(text)) if text.contains(&format!("127.0.0.1:{port}"))),
        "{err:?}"
    );
    let tls = Redlock::connect([format!("rediss://127.0.0.1:{port}")]).await;
    assert!(
        matches!(
            tls,
            Err(ConnectError::Config(ConfigError::TlsNotEnabled {
                index: 0,
                ..
            }))
        ),
        "plaintext where TLS was asked for: {tls:?}"
    );
    for scheme in ["http", "foo"] {
        let err = Redlock::connect([format!("{scheme}://127.0.0.1:{port}")]).await;
        assert!(
            matches!(&err, Err(ConnectError::Config(ConfigError::BadUrl { reason, .. })) if reason.contains("unsupported scheme")),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn a_black_holed_nodes_connection_is_reset_and_it_answers_once_healed() {
    let cluster = Cluster::start(3).await.expect("cluster");
    let proxy = FaultProxy::start(cluster.server(0).addr())
        .await
        .expect("proxy");
    let mut urls = vec![proxy.url()];
    urls.extend([cluster.server(1).url(), cluster.server(2).url()]);
    let settings = FredSettings::default().unresponsive_timeout(Duration::from_millis(400));
    let redlock = Redlock::builder()
        .urls(urls)
        .fred_settings(settings)
        .build()
        .await
        .expect("connect");
    lock_and_release(&redlock, "bh").await;
    let before = proxy.accepted();
    proxy.set(Fault::Blackhole);
    // requests pile up on the silent connection; 2 of 3 still grant
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.accepted() == before {
        lock_and_release(&redlock, "bh").await;
        assert!(
            Instant::now() < deadline,
            "the silent connection was never reset"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.set(Fault::Pass);
    // healed: node 0 grants again (over a fresh connection, with no stale
    // replies queued ahead of new ones)
    wait_until_node_grants(&redlock, &cluster, 0, "bh").await;
}

#[tokio::test]
async fn sentinel_and_cluster_urls_are_accepted_as_nodes() {
    // Nothing listens on these ports: a lazy construction succeeds (the
    // nodes keep reconnecting), and a lock call names them as failed.
    let redlock = Redlock::builder()
        .urls([
            "redis-sentinel://127.0.0.1:9?sentinelServiceName=mymaster",
            "redis-cluster://127.0.0.1:11",
            "redis://127.0.0.1:13",
        ])
        .lazy(true)
        .build()
        .await
        .expect("accepted");
    assert_eq!(
        redlock.node_names(),
        ["127.0.0.1:9", "127.0.0.1:11", "127.0.0.1:13"]
    );
    let err = redlock
        .try_lock("k", Duration::from_secs(5))
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, Error::NoQuorum { .. }), "{err:?}");
}

#[tokio::test]
async fn bad_urls_are_caught_at_construction() {
    let err = Redlock::connect(["redis://127.0.0.1:1", "not a url"])
        .await
        .expect_err("bad url");
    assert!(
        matches!(
            &err,
            ConnectError::Config(ConfigError::BadUrl { index: 1, .. })
        ),
        "{err:?}"
    );
    let err = Redlock::connect(Vec::<String>::new())
        .await
        .expect_err("empty");
    assert_eq!(err, ConnectError::Config(ConfigError::NoNodes));
    let err = Redlock::connect(["redis://127.0.0.1:7", "redis://127.0.0.1:7"])
        .await
        .expect_err("twice");
    assert!(matches!(
        err,
        ConnectError::Config(ConfigError::DuplicateNode(_))
    ));
}

/// The overlap checker of these tests, on a broken configuration: each
/// client alone on its own node (a quorum of one), so both are granted at
/// once. It must report the overlap, or its silence elsewhere means nothing.
#[tokio::test]
async fn the_overlap_checker_fires_when_each_client_has_a_quorum_of_one() {
    let cluster = Cluster::start(2).await.expect("cluster");
    let holds = HoldLog::new();
    let mut clients = Vec::new();
    for (id, url) in cluster.urls().into_iter().enumerate() {
        let redlock = connect(vec![url]).await;
        let holds = holds.clone();
        clients.push(tokio::spawn(async move {
            for _ in 0..20 {
                let guard = redlock
                    .lock("split", Duration::from_secs(1))
                    .await
                    .expect("a quorum of one always grants");
                let start = StdInstant::now();
                tokio::time::sleep(Duration::from_millis(5)).await;
                holds.record("split", id as u64, start, StdInstant::now());
                guard.release().await.expect("release");
            }
        }));
    }
    for client in clients {
        client.await.expect("client");
    }
    assert!(holds.check_exclusive().is_err(), "the checker saw nothing");
}

/// Two of three nodes run 1.2 times fast, so every majority needs a fast
/// node, and their keys expire after ttl/1.2 of real time. Only the drift
/// allowance keeps the lease inside that: with drift_factor 0.2 the
/// validity ends at 0.8 ttl − 2 ms, before a rival can be granted at
/// ttl/1.2 (a lease without the allowance, valid for the whole ttl, would
/// overlap the rival by ~0.17 ttl).
#[tokio::test]
async fn fast_clocks_on_a_majority_are_covered_by_the_drift_allowance() {
    if !quorate_testkit::faketime_available() {
        panic!("faketime is required for this test: apt-get install faketime");
    }
    let options = ServerOptions {
        clock_rate: Some(1.2),
        ..ServerOptions::default()
    };
    let fast = Cluster::start_with(2, options).await.expect("fast nodes");
    let normal = Cluster::start(1).await.expect("normal node");
    let mut urls = fast.urls();
    urls.extend(normal.urls());
    let (holder, rival) = (connect(urls.clone()).await, connect(urls).await);
    let ttl = Duration::from_secs(2);
    let options = LockOptions::new().ttl(ttl).drift_factor(0.2);
    let holds = HoldLog::new();
    let called = StdInstant::now();
    let guard = holder.lock_with(["clock"], &options).await.expect("lock");
    // the lease is measured from before the round: so is the hold
    holds.record("clock", 1, called, StdInstant::now() + guard.remaining());
    let rival_options = options
        .clone()
        .retry_delay(Duration::from_millis(5))
        .retry_jitter(Duration::from_millis(5))
        .max_attempts(Some(1000))
        .acquire_timeout(Some(Duration::from_secs(5)));
    let second = rival.lock_with(["clock"], &rival_options).await;
    let second = second.expect("granted once the fast nodes dropped the key");
    let granted = StdInstant::now();
    holds.record("clock", 2, granted, granted + second.remaining());
    let waited = granted.duration_since(called);
    assert!(waited < ttl, "the fast nodes were not needed: {waited:?}");
    holds
        .check_exclusive()
        .expect("the holder's validity ended before the rival was granted");
}

#[tokio::test]
async fn nodes_from_the_callers_own_fred_clients() {
    use quorate_redlock::fred::prelude::{Client, Config};
    let cluster = Cluster::start(3).await.expect("cluster");
    let mut builder = Redlock::builder();
    for url in cluster.urls() {
        let config = Config::from_url(&url).expect("url");
        builder = builder.client(Client::new(config, None, None, None));
    }
    let redlock = builder.build().await.expect("build");
    let names: Vec<String> = cluster.urls().iter().map(|u| name_of(u)).collect();
    assert_eq!(redlock.node_names(), names);
    lock_and_release(&redlock, "own-clients").await;
}

/// Calls of `command` on node `i` since the last CONFIG RESETSTAT.
async fn calls(cluster: &Cluster, i: usize, command: &str) -> i64 {
    let info = cluster
        .server(i)
        .command(&["INFO", "commandstats"])
        .await
        .expect("INFO")
        .as_string()
        .expect("text");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Script calls on node `i`: by source, by hash and as functions.
async fn script_calls(cluster: &Cluster, i: usize) -> i64 {
    calls(cluster, i, "eval").await
        + calls(cluster, i, "evalsha").await
        + calls(cluster, i, "fcall").await
}

/// 50 single-key acquires made together go to the server as two script
/// calls (50 keys set): the first alone, sent at once because nothing was
/// unanswered, the other 49 together; and as 50 with batching turned off.
#[tokio::test]
async fn requests_made_together_are_sent_as_one_command() {
    let cluster = Cluster::start(1).await.expect("cluster");
    let url = &cluster.urls()[0];
    for (max_batch, commands) in [(64, 2), (1, 50)] {
        let settings = FredSettings::default().max_batch(max_batch);
        let node = FredNode::from_url(url, &settings).expect("url");
        assert!(node.wait_connected(Duration::from_secs(5)).await);
        cluster
            .server(0)
            .command(&["CONFIG", "RESETSTAT"])
            .await
            .expect("RESETSTAT");
        let keys: Vec<Vec<String>> = (0..50).map(|i| vec![format!("b{max_batch}-{i}")]).collect();
        let token = format!("t{max_batch}");
        let ttl = Duration::from_secs(10);
        let replies = futures::future::join_all(
            keys.iter()
                .map(|k| node.acquire(k, &token, ttl, false, None)),
        )
        .await;
        assert!(
            replies
                .iter()
                .all(|r| matches!(r, Ok(quorate_redlock::raw::AcquireReply::Granted { .. }))),
            "{replies:?}"
        );
        let sent = calls(&cluster, 0, "set").await + script_calls(&cluster, 0).await;
        // the scripts' own SETs count too: subtract the keys they set (every
        // acquire is a script: a plain SET NX could not refuse while the
        // node is quarantined)
        let scripted = 50;
        assert_eq!(sent - scripted, commands, "max_batch {max_batch}");
        for k in &keys {
            assert_eq!(
                get(&cluster, 0, &k[0]).await.as_deref(),
                Some(token.as_str())
            );
        }
    }
}

#[tokio::test]
async fn auto_extension_batches_and_stops_with_the_guards() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let redlock = connect(cluster.urls()).await;
    let ttl = Duration::from_millis(600);
    let options = LockOptions::new().ttl(ttl).auto_extend(true);
    let mut guards = Vec::new();
    for i in 0..50 {
        guards.push(
            redlock
                .lock_with([format!("auto:{i}")], &options)
                .await
                .expect("lock"),
        );
    }
    for i in 0..5 {
        cluster
            .server(i)
            .command(&["CONFIG", "RESETSTAT"])
            .await
            .expect("reset");
    }
    // 3 s = 5 ttls: without extension every lock would be gone
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(guards.iter().all(|g| g.is_valid()));
    let keys = all_keys(&cluster).await;
    assert!(
        keys.iter().filter(|k| k.len() == 50).count() >= 3,
        "majority holds all 50"
    );
    // one lock alone is extended every ttl/3 = 200 ms: ~15 times in 3 s;
    // 50 locks acquired within one batch window need no more requests
    let requests = script_calls(&cluster, 0).await;
    assert!(
        (5..=40).contains(&requests),
        "{requests} requests for 50 locks in 3 s"
    );

    let dropped = guards.split_off(25);
    for guard in guards {
        guard.release().await.expect("release");
    }
    drop(dropped);
    assert_keys_vanish(&cluster, Duration::from_secs(2)).await;
    for i in 0..5 {
        cluster
            .server(i)
            .command(&["CONFIG", "RESETSTAT"])
            .await
            .expect("reset");
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // 5 extension periods
    for i in 0..5 {
        assert_eq!(script_calls(&cluster, i).await, 0, "traffic after release");
    }
}

#[tokio::test]
async fn run_is_cancelled_when_a_majority_stalls() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let redlock = connect(cluster.urls()).await;
    let ttl = Duration::from_secs(1);
    let started = Instant::now();
    let result = redlock
        .run("scoped", ttl, |_lease| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            for i in 0..3 {
                cluster.server(i).pause();
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        })
        .await;
    let took = started.elapsed();
    for i in 0..3 {
        cluster.server(i).resume();
    }
    assert!(
        matches!(result, Err(Error::Lost { .. } | Error::Expired)),
        "{result:?}"
    );
    // cancelled within the lease's validity after the last good extension
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn two_thousand_auto_extended_locks_all_stay_valid() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let redlock = connect(cluster.urls()).await;
    let options = LockOptions::new()
        .ttl(Duration::from_secs(2))
        .auto_extend(true);
    let mut guards = Vec::new();
    for chunk in 0..20 {
        let calls = (0..100).map(|i| {
            let key = format!("many:{}", chunk * 100 + i);
            let (redlock, options) = (redlock.clone(), options.clone());
            async move { redlock.lock_with([key], &options).await.expect("lock") }
        });
        guards.extend(futures::future::join_all(calls).await);
    }
    // 4.5 s: more than twice the ttl; each batch carries up to 2,000 locks
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let valid = guards.iter().filter(|g| g.is_valid()).count();
    assert_eq!(valid, 2000, "locks lost by the watchdog");
    // released 100 at a time, as they were taken
    while !guards.is_empty() {
        let chunk: Vec<_> = guards.drain(..guards.len().min(100)).collect();
        let releases = chunk.into_iter().map(|g| g.release());
        for outcome in futures::future::join_all(releases).await {
            assert_eq!(outcome.expect("release"), ReleaseOutcome::Released);
        }
    }
}

#[tokio::test]
async fn auto_extension_counts_only_confirmations_not_fast_not_held_answers() {
    let mut cluster = Cluster::start(5).await.expect("cluster");
    // the 3 nodes that keep the lock answer 5 ms late; the 2 that will lose
    // it answer at once, so the first 3 answers to every extension are
    // two "not held" and one "extended"
    let mut proxies = Vec::new();
    for i in 0..3 {
        let proxy = FaultProxy::start(cluster.server(i).addr()).await;
        proxies.push(proxy.expect("proxy"));
    }
    let mut urls: Vec<String> = proxies.iter().map(FaultProxy::url).collect();
    urls.extend([cluster.server(3).url(), cluster.server(4).url()]);
    let redlock = connect(urls).await;
    let ttl = Duration::from_millis(600);
    let options = LockOptions::new().ttl(ttl).auto_extend(true);
    let guard = redlock
        .lock_with(["watched"], &options)
        .await
        .expect("lock");
    for proxy in &proxies {
        proxy.set(Fault::Delay(Duration::from_millis(5)));
    }
    for i in 3..5 {
        cluster.server_mut(i).restart().await.expect("restart");
    }
    // 5 ttls: the lock lives only if extensions confirmed by the 3 holders count
    tokio::time::sleep(ttl * 5).await;
    assert!(
        guard.is_valid(),
        "lock reported lost with 3 of 5 nodes holding it"
    );
    let token = guard.lease().token().to_hex();
    for i in 0..3 {
        assert_eq!(
            get(&cluster, i, "watched").await.as_deref(),
            Some(token.as_str())
        );
    }
    assert_eq!(
        guard.release().await.expect("release"),
        ReleaseOutcome::Released
    );
}

/// The ACL of a quorate user, as the README documents it: the scripts'
/// commands, pub/sub on quorate's channels, its own keys only.
const QUORATE_ACL: &str = "on resetkeys ~app:lock:* ~quorate:* resetchannels \
    &quorate:* -@all +fcall +function|load +eval +evalsha +get +set +del +exists +incr \
    +pexpire +pttl +publish +time +info +type +zadd +zcard +zrange +zrangebyscore +zrank \
    +zrem +zscore +sadd +srem +scard +smembers +srandmember +hset +hget +hdel +hgetall +hvals \
    +hincrby +hrandfield +subscribe +unsubscribe +ping +auth +hello";

/// The same without functions: what a user set up before quorate ran its
/// scripts as functions has.
const QUORATE_ACL_WITHOUT_FUNCTIONS: &str = "on resetkeys ~app:lock:* ~quorate:* \
    resetchannels &quorate:* -@all +eval +evalsha +get +set +del +exists +incr +pexpire +pttl \
    +publish +time +info +zadd +zrange +zrangebyscore +zrank +zrem +zscore +subscribe \
    +unsubscribe +ping +auth +hello";

#[tokio::test]
async fn a_user_with_only_the_documented_acl_locks_queues_fences_and_releases() {
    let cluster = lock_queue_fence_and_release_as(QUORATE_ACL).await;
    assert_scripts_ran_as_functions(&cluster).await;
}

/// Every node loaded libraries and no script ran by `EVALSHA`.
async fn assert_scripts_ran_as_functions(cluster: &Cluster) {
    let mut fcalls = 0;
    for i in 0..cluster.len() {
        assert!(libraries(cluster, i).await > 0, "node {i}: no library");
        assert_eq!(calls(cluster, i, "evalsha").await, 0, "node {i}");
        fcalls += calls(cluster, i, "fcall").await;
    }
    assert!(fcalls > 0, "no FCALL");
}

/// Without `FCALL` and `FUNCTION LOAD` the scripts run by `EVALSHA`, as
/// they do on servers older than Redis 7.
#[tokio::test]
async fn a_user_without_functions_gets_the_scripts_by_evalsha() {
    let cluster = lock_queue_fence_and_release_as(QUORATE_ACL_WITHOUT_FUNCTIONS).await;
    let mut evalshas = 0;
    for i in 0..3 {
        assert_eq!(libraries(&cluster, i).await, 0, "node {i}");
        assert_eq!(calls(&cluster, i, "fcall").await, 0, "node {i}");
        evalshas += calls(&cluster, i, "evalsha").await;
    }
    assert!(evalshas > 0, "no EVALSHA");
}

/// The ACL of a service that allows functions but not `EVAL` or
/// `EVALSHA`: every script call is an `FCALL`, the first one after loading
/// its library.
const QUORATE_ACL_FUNCTIONS_ONLY: &str = "on resetkeys ~app:lock:* ~quorate:* \
    resetchannels &quorate:* -@all +fcall +function|load +get +set +del +exists +incr \
    +pexpire +pttl +publish +time +info +zadd +zrange +zrangebyscore +zrank +zrem +zscore \
    +subscribe +unsubscribe +ping +auth +hello";

#[tokio::test]
async fn a_user_denied_eval_runs_every_script_as_a_function() {
    let cluster = lock_queue_fence_and_release_as(QUORATE_ACL_FUNCTIONS_ONLY).await;
    assert_scripts_ran_as_functions(&cluster).await;
}

/// How many function libraries node `i` has.
async fn libraries(cluster: &Cluster, i: usize) -> usize {
    let list = cluster.server(i).command(&["FUNCTION", "LIST"]).await;
    match list.expect("FUNCTION LIST") {
        quorate_testkit::Reply::Array(libraries) => libraries.map_or(0, |l| l.len()),
        other => panic!("FUNCTION LIST: {other:?}"),
    }
}

/// Locks, extends, queues a waiter, fences and releases as user `locker`
/// with `acl`, on 3 nodes; checks that the same user is refused outside
/// its keys.
async fn lock_queue_fence_and_release_as(acl: &str) -> Cluster {
    let cluster = Cluster::start(3).await.expect("cluster");
    let urls = cluster
        .acl_user_urls("locker", "lockpass", acl)
        .await
        .expect("ACL SETUSER");
    let client = || async {
        Redlock::builder()
            .urls(urls.clone())
            .namespace("app:lock:")
            .build()
            .await
            .expect("connect as locker")
    };
    let (a, b) = (client().await, client().await);
    let options = LockOptions::new()
        .ttl(Duration::from_secs(5))
        .fencing(true)
        .auto_extend(true);
    let mut held = a.lock_with(["invoice:42"], &options).await.expect("lock");
    assert_eq!(
        get(&cluster, 0, "app:lock:invoice:42").await.as_deref(),
        Some(held.lease().token().to_hex().as_str()),
        "the key is in the namespace"
    );
    // twice: the second call of a script runs what the first loaded
    // (FCALL or EVALSHA), whatever else the waiter below happens to send
    held.extend(Duration::from_secs(5)).await.expect("extend");
    held.extend(Duration::from_secs(5)).await.expect("extend");
    // a waiter of another client queues, and the release wakes it
    let waiter = tokio::spawn(async move { b.lock("invoice:42", Duration::from_secs(5)).await });
    let (queue, _) = quorate_redlock::raw::queue_keys("app:lock:invoice:42");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let queued = cluster.server(0).command(&["ZCARD", &queue]).await;
        if queued.expect("ZCARD").as_i64() == Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the waiter never queued");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        held.release().await.expect("release"),
        ReleaseOutcome::Released
    );
    let second = waiter.await.expect("task").expect("the waiter gets it");
    second.release().await.expect("release");
    // outside its keys the same user is refused
    let outside = Redlock::builder()
        .urls(urls.clone())
        .build()
        .await
        .expect("connect");
    let err = outside.try_lock("invoice:42", Duration::from_secs(5)).await;
    let err = err
        .expect_err("no permission outside app:lock:*")
        .to_string();
    assert!(err.contains("permission denied"), "{err}");
    cluster
}

/// 3 nodes behind proxies; node 0 alone has the fence counter of `ledger`
/// at 100, the others none.
async fn ledger_with_a_high_counter_on_node_0() -> (Cluster, Vec<FaultProxy>, Redlock) {
    let cluster = Cluster::start(3).await.expect("cluster");
    let (proxies, redlock) = through_proxies(&cluster).await;
    let counter = quorate_redlock::raw::fence_key("ledger");
    let set = ["SET", counter.as_str(), "100"];
    cluster.server(0).command(&set).await.expect("SET");
    (cluster, proxies, redlock)
}

/// The fence write-back: of 3 nodes, node 0 alone has a high counter. The
/// first grant (nodes 0 and 1; node 2's connections reset) takes it as its token
/// and writes it back to node 1; then node 0 drops out, and the next grant,
/// from nodes 1 and 2, must still be larger. Without the write-back it
/// would restart from their own low counters.
#[tokio::test]
async fn fences_stay_ahead_when_the_node_with_the_highest_counter_drops_out() {
    let (_cluster, proxies, redlock) = ledger_with_a_high_counter_on_node_0().await;
    let options = LockOptions::new().ttl(Duration::from_secs(5)).fencing(true);
    let fences = FenceLog::new();
    proxies[2].set(Fault::Reset);
    let first = redlock.lock_with(["ledger"], &options).await.expect("lock");
    fences.record(1, first.lease().fence().expect("fenced"), StdInstant::now());
    assert_eq!(first.lease().fence(), Some(101));
    first.release().await.expect("release");
    proxies[2].set(Fault::Pass);
    proxies[0].set(Fault::Reset);
    let second = redlock.lock_with(["ledger"], &options).await.expect("lock");
    fences.record(
        2,
        second.lease().fence().expect("fenced"),
        StdInstant::now(),
    );
    second.release().await.expect("release");
    fences
        .check_strictly_increasing()
        .expect("the token stays ahead of the one before");
}

/// A lease is handed out only once its fence was written back to a
/// majority: here node 1 refuses the write-back (its ACL denies `SET` on the
/// fence counter, while the acquire's `INCR` passes) and node 2 is cut off,
/// so the write-back reaches node 0 alone and the call must fail.
#[tokio::test]
async fn a_fence_written_back_to_a_minority_gives_no_lease() {
    let (cluster, proxies, redlock) = ledger_with_a_high_counter_on_node_0().await;
    let acl = ["ACL", "SETUSER", "default", "-set", "(+set ~ledger)"];
    cluster.server(1).command(&acl).await.expect("ACL");
    proxies[2].set(Fault::Reset);
    let options = LockOptions::new()
        .ttl(Duration::from_secs(5))
        .fencing(true)
        .max_attempts(Some(1));
    let result = redlock.lock_with(["ledger"], &options).await;
    assert!(
        matches!(result, Err(Error::NoQuorum { granted: 1, .. })),
        "a lease whose fence only one node keeps: {result:?}"
    );
}

/// A stand-in for an old server (no real Redis before 7.0 is installable
/// here): answers every command with `+OK`, `PING` with `+PONG`, `CLIENT
/// ID` with 1, and `INFO` with a `redis_version` of `version`. Returns
/// its URL; it serves until the test process ends.
fn server_claiming_version(version: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("redis://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    while let Some((command, used)) = next_command(&pending) {
                        pending.drain(..used);
                        let reply = match command.first().map(|c| c.to_ascii_uppercase()) {
                            Some(c) if c == "INFO" => {
                                let info = format!("# Server\r\nredis_version:{version}\r\n");
                                format!("${}\r\n{info}\r\n", info.len())
                            }
                            Some(c) if c == "PING" => "+PONG\r\n".to_owned(),
                            Some(c) if c == "CLIENT" => ":1\r\n".to_owned(),
                            _ => "+OK\r\n".to_owned(),
                        };
                        if stream.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    url
}

/// The first complete RESP command (an array of bulk strings) in `buf`,
/// and how many bytes it took.
fn next_command(buf: &[u8]) -> Option<(Vec<String>, usize)> {
    let line = |at: usize| -> Option<(&[u8], usize)> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((&buf[at..end], end + 2))
    };
    let (head, mut at) = line(0)?;
    let count: usize = std::str::from_utf8(head.strip_prefix(b"*")?)
        .ok()?
        .parse()
        .ok()?;
    let mut parts = Vec::with_capacity(count);
    for _ in 0..count {
        let (size, next) = line(at)?;
        let size: usize = std::str::from_utf8(size.strip_prefix(b"$")?)
            .ok()?
            .parse()
            .ok()?;
        let body = buf.get(next..next + size)?;
        parts.push(String::from_utf8_lossy(body).into_owned());
        at = next + size + 2;
        if at > buf.len() {
            return None;
        }
    }
    Some((parts, at))
}

#[tokio::test]
async fn connect_refuses_a_server_older_than_6_2_naming_it() {
    let cluster = Cluster::start(2).await.expect("cluster");
    let old = server_claiming_version("6.0.9");
    let mut urls = cluster.urls();
    urls.push(old.clone());
    let err = Redlock::connect(urls)
        .await
        .expect_err("a 6.0 server is refused");
    assert!(
        matches!(&err, ConnectError::Config(ConfigError::ServerTooOld { version, .. }) if version == "6.0.9"),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains(old.trim_start_matches("redis://")), "{text}");
    assert!(text.contains("6.2 or newer"), "{text}");
    // the same stand-in claiming 6.2 is let through the version check
    let mut urls = cluster.urls();
    urls.push(server_claiming_version("6.2.0"));
    let result = Redlock::connect(urls).await;
    assert!(
        !matches!(
            result,
            Err(ConnectError::Config(ConfigError::ServerTooOld { .. }))
        ),
        "{result:?}"
    );
}

/// A client built from its configuration as the environment gives it
/// (`RedlockConfig::from_vars`, what `from_env` reads) uses every setting.
#[tokio::test]
async fn a_client_from_its_configuration_uses_every_setting() {
    let cluster = Cluster::start(3).await.expect("cluster");
    let nodes = cluster.urls().join(",");
    let config = quorate_redlock::RedlockConfig::from_vars([
        ("QUORATE_NODES", nodes.as_str()),
        ("QUORATE_NAMESPACE", "cfg:"),
        ("QUORATE_OWNER", "configured"),
        ("QUORATE_MAX_TTL", "5s"),
        ("QUORATE_FAIR", "true"),
    ])
    .expect("config");
    let redlock = Redlock::from_config(&config).await.expect("connect");
    assert_eq!(redlock.max_ttl(), Duration::from_secs(5));
    assert_eq!(redlock.defaults().get_ttl(), Duration::from_secs(5));
    assert!(redlock.defaults().get_fair());
    let guard = redlock
        .lock("job", Duration::from_secs(5))
        .await
        .expect("lock");
    for keys in all_keys(&cluster).await {
        assert!(keys.iter().any(|k| k == "cfg:job"), "{keys:?}");
    }
    let seen = redlock.inspect("job").await.expect("inspect");
    let holder = seen.holder().expect("held");
    assert_eq!(holder.label(), Some("configured"));
    assert!(redlock.owner().is_holder(holder));
    guard.release().await.expect("release");
    let none = quorate_redlock::RedlockConfig::from_vars([("QUORATE_FAIR", "true")]);
    let none = Redlock::from_config(&none.expect("config")).await;
    assert_eq!(none.err(), Some(ConnectError::Config(ConfigError::NoNodes)));
}

/// A process about to exit calls `flush_released` after dropping a guard:
/// it returns only once the dropped guard's release, sent from a task of
/// its own, has been answered (it used to return at once, and a process
/// exiting then left the keys to their ttl).
#[tokio::test]
async fn flush_released_waits_for_a_dropped_guards_release_in_flight() {
    let cluster = Cluster::start(3).await.expect("cluster");
    let (proxies, redlock) = through_proxies(&cluster).await;
    // fair: a dropped guard does not linger, its release is spawned at once;
    // answers 300 ms late are well within the node timeout
    let options = LockOptions::new()
        .ttl(Duration::from_secs(30))
        .node_timeout(Some(Duration::from_secs(2)))
        .fair(true);
    let guard = redlock
        .lock_with(["flushed"], &options)
        .await
        .expect("lock");
    // a primitive built on the client (pool, tree, spinlock) is the client too
    let labelled = redlock.with_metric_label("pool");
    let labelled_guard = labelled
        .lock_with(["flushed-by-a-primitive"], &options)
        .await
        .expect("lock");
    for proxy in &proxies {
        proxy.set(Fault::Delay(Duration::from_millis(300)));
    }
    // each on its own, so one release in flight cannot cover the other
    for (dropped, key) in [
        (guard, "flushed"),
        (labelled_guard, "flushed-by-a-primitive"),
    ] {
        drop(dropped);
        assert_eq!(redlock.flush_released().await, 0, "nothing lingered");
        let mut released = 0;
        for i in 0..3 {
            if get(&cluster, i, key).await.is_none() {
                released += 1;
            }
        }
        // the release round ends once a majority answered (the ttl is 30 s)
        assert!(
            released >= 2,
            "{key}: {released} of 3 nodes had the release when flush_released returned"
        );
    }
}
