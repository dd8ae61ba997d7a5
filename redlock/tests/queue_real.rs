//! The waiter queue on 5 real redis-server processes, with separate clients
//! (one `Redlock` each, as separate processes would have): first-come-first-
//! served with `fair(true)`, a dead waiter leaving the queue by itself, node
//! failures while clients wait, and exclusion over many contended grants.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use quorate_redlock::{LockGuard, LockOptions, Redlock};
use quorate_testkit::{Cluster, Fault, FaultProxy, HoldLog};
use tokio::time::Instant;

const KEY: &str = "queue:shared";

async fn client(urls: Vec<String>) -> Redlock {
    Redlock::connect(urls).await.expect("connect")
}

/// How many waiters each node has queued for `KEY`.
async fn queued(cluster: &Cluster) -> Vec<i64> {
    let mut counts = Vec::new();
    for i in 0..cluster.len() {
        let reply = cluster
            .server(i)
            .command(&["ZCARD", "quorate:queue:{queue:shared}"])
            .await
            .expect("ZCARD");
        counts.push(reply.as_i64().unwrap_or(0));
    }
    counts
}

/// Waits until every node has queued at least `n` waiters for `KEY`: the
/// signal that a waiter is in line.
async fn until_queued(cluster: &Cluster, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counts = queued(cluster).await;
        if counts.iter().all(|c| *c >= n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} waiters never queued: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A critical section long enough to be contended: a 1 ms thread sleep,
/// with the runtime's other tasks moved off this worker meanwhile.
fn work() {
    tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(1)));
}

/// Client `id` takes `KEY` `times` times, holding it for [`work`] each time;
/// every hold is checked against `inside` and recorded in `holds`.
async fn contend(
    redlock: Redlock,
    id: u64,
    times: usize,
    options: LockOptions,
    holds: HoldLog,
    inside: Arc<AtomicBool>,
) {
    for _ in 0..times {
        let guard = redlock.lock_with([KEY], &options).await.expect("granted");
        let start = StdInstant::now();
        assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
        work();
        inside.store(false, Ordering::SeqCst);
        assert!(guard.is_valid(), "held past validity");
        holds.record(KEY, id, start, StdInstant::now());
        guard.release().await.expect("release");
    }
}

/// 5 servers, and `KEY` held (10 s ttl) by a client of its own.
async fn cluster_with_holder() -> (Cluster, LockGuard) {
    let cluster = Cluster::start(5).await.expect("cluster");
    let holder = client(cluster.urls()).await;
    let held = holder
        .lock(KEY, Duration::from_secs(10))
        .await
        .expect("holder");
    (cluster, held)
}

/// 8 clients, each its own `Redlock`, contending `times` times (see
/// [`contend`]).
async fn spawn_clients(
    cluster: &Cluster,
    times: usize,
    options: &LockOptions,
    holds: &HoldLog,
    inside: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for id in 0..8u64 {
        let redlock = client(cluster.urls()).await;
        let run = contend(
            redlock,
            id,
            times,
            options.clone(),
            holds.clone(),
            Arc::clone(inside),
        );
        tasks.push(tokio::spawn(run));
    }
    tasks
}

/// Waits for every task, each within `limit`; a task that panicked fails the test.
async fn join_within(tasks: Vec<tokio::task::JoinHandle<()>>, limit: Duration) {
    for task in tasks {
        tokio::time::timeout(limit, task)
            .await
            .expect("every client is served within the limit")
            .expect("task");
    }
}

/// 4 clients queue one after the other behind a holder; with fair(true)
/// they are granted in exactly that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fair_waiters_are_granted_in_the_order_they_queued() {
    let (cluster, held) = cluster_with_holder().await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let options = LockOptions::new()
        .ttl(Duration::from_secs(10))
        .fair(true)
        .acquire_timeout(Some(Duration::from_secs(20)));
    let mut waiters = Vec::new();
    for i in 0..4 {
        let redlock = client(cluster.urls()).await;
        let (order, options) = (Arc::clone(&order), options.clone());
        waiters.push(tokio::spawn(async move {
            let guard = redlock.lock_with([KEY], &options).await.expect("granted");
            order.lock().expect("order").push(i);
            work();
            guard.release().await.expect("release");
        }));
        until_queued(&cluster, i + 1).await;
    }
    held.release().await.expect("release");
    join_within(waiters, Duration::from_secs(30)).await;
    assert_eq!(*order.lock().expect("order"), [0, 1, 2, 3]);
}

/// A queued waiter whose connections go silent (as a killed process or a
/// cut network) cannot leave the queue, and is first in line when the
/// holder releases; the waiter behind it is still served once the dead
/// entry's lifetime has passed, long before its own acquire timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_waiter_holds_up_the_queue_at_most_its_entry_lifetime() {
    let (cluster, held) = cluster_with_holder().await;
    let waiter_ttl = Duration::from_secs(1);
    let options = LockOptions::new()
        .ttl(Duration::from_secs(10))
        .fair(true)
        .waiter_ttl(waiter_ttl)
        .acquire_timeout(Some(Duration::from_secs(20)));
    let mut proxies = Vec::new();
    for server in cluster.servers() {
        proxies.push(FaultProxy::start(server.addr()).await.expect("proxy"));
    }
    let doomed = client(proxies.iter().map(FaultProxy::url).collect()).await;
    let doomed_call = {
        let options = options.clone();
        tokio::spawn(async move { doomed.lock_with([KEY], &options).await })
    };
    until_queued(&cluster, 1).await;
    let behind = client(cluster.urls()).await;
    let behind_call = tokio::spawn(async move {
        let guard = behind.lock_with([KEY], &options).await;
        (Instant::now(), guard)
    });
    until_queued(&cluster, 2).await;
    // The first waiter dies: nothing it sends reaches a server any more.
    for proxy in &proxies {
        proxy.set(Fault::Blackhole);
    }
    doomed_call.abort();
    let released_at = Instant::now();
    held.release().await.expect("release");
    let (granted_at, guard) = tokio::time::timeout(Duration::from_secs(30), behind_call)
        .await
        .expect("the waiter behind is served")
        .expect("task");
    let guard = guard.expect("granted, not timed out");
    let waited = granted_at - released_at;
    // The dead entry lapses within its lifetime; the waiter behind notices
    // at its next refresh (a third of its waiter ttl); 1 s of slack for a
    // loaded machine. Without lapsing entries it would wait 20 s.
    assert!(
        waited < waiter_ttl + waiter_ttl / 3 + Duration::from_secs(1),
        "waited {waited:?}"
    );
    guard.release().await.expect("release");
}

/// 8 clients contend, each 20 times; 2 of the 5 nodes are killed while
/// they wait. Everyone is served and no two holds overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_five_nodes_killed_while_eight_clients_wait() {
    let (mut cluster, held) = cluster_with_holder().await;
    let holds = HoldLog::new();
    let inside = Arc::new(AtomicBool::new(false));
    let options = LockOptions::new()
        .ttl(Duration::from_secs(5))
        .acquire_timeout(Some(Duration::from_secs(30)));
    let tasks = spawn_clients(&cluster, 20, &options, &holds, &inside).await;
    until_queued(&cluster, 8).await;
    cluster.server_mut(1).kill();
    cluster.server_mut(3).kill();
    held.release().await.expect("release");
    join_within(tasks, Duration::from_secs(120)).await;
    assert_eq!(holds.len(), 160);
    holds.check_exclusive().expect("no two holders at once");
}

/// 8 clients × 200 acquisitions of one key, each holding 1 ms: no two
/// holds overlap, with and without fair(true), and nobody is shut out.
async fn eight_clients_exclusive(fair: bool) {
    let cluster = Cluster::start(5).await.expect("cluster");
    let holds = HoldLog::new();
    let inside = Arc::new(AtomicBool::new(false));
    let options = LockOptions::new()
        .ttl(Duration::from_secs(5))
        .fair(fair)
        .acquire_timeout(Some(Duration::from_secs(30)));
    let tasks = spawn_clients(&cluster, 200, &options, &holds, &inside).await;
    join_within(tasks, Duration::from_secs(180)).await;
    assert_eq!(holds.len(), 1600);
    holds.check_exclusive().expect("no two holders at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_clients_never_overlap() {
    eight_clients_exclusive(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_fair_clients_never_overlap() {
    eight_clients_exclusive(true).await;
}

/// 3 clients × 2 tasks each take one key until 300 grants were made in
/// all, with local hand-off on (the default): the lock passes between the
/// tasks of one client, but at most a few times in a row while a task of
/// another client is queued, so no client is shut out. (Before the waiter
/// queue one client took every grant of a 20 s run in most runs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_hand_offs_do_not_shut_other_clients_out() {
    hand_offs_share_the_lock(false).await;
}

/// The same with the guards dropped instead of released: a dropped guard's
/// lock may wait for the next call of its process, within the same bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_guards_do_not_shut_other_clients_out() {
    hand_offs_share_the_lock(true).await;
}

async fn hand_offs_share_the_lock(drop_guards: bool) {
    const GRANTS: usize = 300;
    let cluster = Cluster::start(5).await.expect("cluster");
    let holds = HoldLog::new();
    let inside = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicUsize::new(0));
    let per_client: Arc<Vec<AtomicUsize>> = Arc::new((0..3).map(|_| AtomicUsize::new(0)).collect());
    let options = LockOptions::new()
        .ttl(Duration::from_secs(5))
        .acquire_timeout(Some(Duration::from_secs(30)));
    let mut tasks = Vec::new();
    for client_id in 0..3usize {
        let redlock = client(cluster.urls()).await;
        for task in 0..2u64 {
            let (redlock, options, holds) = (redlock.clone(), options.clone(), holds.clone());
            let (inside, total, per_client) = (
                Arc::clone(&inside),
                Arc::clone(&total),
                Arc::clone(&per_client),
            );
            let id = client_id as u64 * 2 + task;
            tasks.push(tokio::spawn(async move {
                // bounded by the shared count; 1,000 rounds is far above it
                for _ in 0..1_000 {
                    let guard = redlock.lock_with([KEY], &options).await.expect("granted");
                    if total.fetch_add(1, Ordering::SeqCst) >= GRANTS {
                        guard.release().await.expect("release");
                        break;
                    }
                    per_client[client_id].fetch_add(1, Ordering::SeqCst);
                    let start = StdInstant::now();
                    assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                    work();
                    inside.store(false, Ordering::SeqCst);
                    holds.record(KEY, id, start, StdInstant::now());
                    if drop_guards {
                        drop(guard);
                    } else {
                        guard.release().await.expect("release");
                    }
                }
                redlock.flush_released().await;
            }));
        }
    }
    join_within(tasks, Duration::from_secs(120)).await;
    holds.check_exclusive().expect("no two holders at once");
    let shares: Vec<usize> = per_client
        .iter()
        .map(|n| n.load(Ordering::SeqCst))
        .collect();
    assert_eq!(shares.iter().sum::<usize>(), GRANTS);
    // a fair share is 100 each; a client shut out would have (nearly) none
    assert!(
        shares.iter().all(|&n| n >= GRANTS / 10),
        "grants per client: {shares:?}"
    );
}

/// A dropped guard's lock goes to the next call of its process with no
/// round trip (the same token); `flush_released` sends the release of one
/// nobody took; a dropped guard nobody takes is released through the
/// servers by itself. On one thread: the lingering lock waits a few
/// scheduler turns, which a second worker could spend before this task's
/// next call on a loaded machine (it failed so once in CI).
#[tokio::test]
async fn a_dropped_guard_passes_to_the_next_call_or_is_released() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let redlock = client(cluster.urls()).await;
    let first = redlock
        .lock(KEY, Duration::from_secs(10))
        .await
        .expect("lock");
    let token = first.lease().token();
    drop(first);
    let second = redlock
        .lock(KEY, Duration::from_secs(10))
        .await
        .expect("lock");
    assert_eq!(second.lease().token(), token, "taken over without a round");
    drop(second);
    assert_eq!(redlock.flush_released().await, 1);
    for i in 0..cluster.len() {
        let left = cluster
            .server(i)
            .command(&["EXISTS", KEY])
            .await
            .expect("EXISTS");
        assert_eq!(left.as_i64(), Some(0), "node {i} still has the key");
    }
    // nobody takes it and nobody flushes: released within a moment anyway
    let third = redlock
        .lock(KEY, Duration::from_secs(10))
        .await
        .expect("lock");
    drop(third);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut left = 0;
        for i in 0..cluster.len() {
            let reply = cluster
                .server(i)
                .command(&["EXISTS", KEY])
                .await
                .expect("EXISTS");
            left += reply.as_i64().unwrap_or(1);
        }
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} nodes still hold the dropped lock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(redlock.flush_released().await, 0);
}

/// Set in a child process of this test binary: the waiter's name.
const CHILD_NAME: &str = "QUORATE_TEST_WAITER_NAME";

/// Queue tickets are read on the servers' clock, not the waiter's: a waiter
/// in a process whose clock is 30 s behind (libfaketime), queued after
/// another, is granted after it with `fair(true)`. Before tickets were
/// corrected by the servers' clock it always went first (its tickets were
/// 30 s smaller), and a process whose clock is ahead waited behind every
/// later waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_whose_clock_is_behind_does_not_go_first() {
    if std::env::var_os(CHILD_NAME).is_some() {
        return; // the child runs `waiter_in_a_child_process` only
    }
    if !quorate_testkit::faketime_available() {
        panic!("faketime is required for this test: apt-get install faketime");
    }
    let (cluster, held) = cluster_with_holder().await;
    let order = std::env::temp_dir().join(format!("quorate-ticket-order-{}", std::process::id()));
    let _ = std::fs::remove_file(&order);
    let exe = std::env::current_exe().expect("the test binary");
    let spawn = |name: &str, behind: bool| {
        let mut command = if behind {
            let mut c =
                std::process::Command::new(quorate_testkit::faketime_path().expect("faketime"));
            c.args(["-f", "-30s"]).arg(&exe);
            c
        } else {
            std::process::Command::new(&exe)
        };
        command
            .args(["waiter_in_a_child_process", "--exact", "--nocapture"])
            .env(CHILD_NAME, name)
            .env("QUORATE_TEST_NODES", cluster.urls().join(","))
            .env("QUORATE_TEST_ORDER", &order)
            .spawn()
            .expect("spawn a waiter process")
    };
    let on_time = spawn("on-time", false);
    until_queued(&cluster, 1).await;
    let behind = spawn("behind", true);
    until_queued(&cluster, 2).await;
    held.release().await.expect("release");
    for mut child in [on_time, behind] {
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait");
        assert!(status.success(), "a waiter process failed: {status}");
    }
    let granted = std::fs::read_to_string(&order).expect("the order file");
    let _ = std::fs::remove_file(&order);
    assert_eq!(granted, "on-time\nbehind\n");
}

/// The waiter of `a_waiter_whose_clock_is_behind_does_not_go_first`, run
/// as a child process; does nothing in a normal test run.
#[tokio::test]
async fn waiter_in_a_child_process() {
    let Ok(name) = std::env::var(CHILD_NAME) else {
        return;
    };
    let nodes = std::env::var("QUORATE_TEST_NODES").expect("nodes");
    let order = std::env::var("QUORATE_TEST_ORDER").expect("order file");
    let redlock = client(nodes.split(',').map(str::to_owned).collect()).await;
    let options = LockOptions::new()
        .ttl(Duration::from_secs(10))
        .fair(true)
        .acquire_timeout(Some(Duration::from_secs(20)));
    let guard = redlock.lock_with([KEY], &options).await.expect("granted");
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(order)
            .expect("open the order file");
        writeln!(file, "{name}").expect("write");
    }
    guard.release().await.expect("release");
}

/// A release grants the key to the queue's head, which holds the lock
/// without another round: its first validity is the waiter entry's lifetime
/// (counted from its latest refused round), not the ttl; a third of the way
/// into it the guard is extended to the ttl once. Then it is an ordinary
/// lock: its release frees the key for everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_grants_the_lock_to_its_head_without_a_round() {
    let (cluster, held) = cluster_with_holder().await;
    let waiter = client(cluster.urls()).await;
    let lifetime = Duration::from_millis(900);
    let ttl = Duration::from_secs(10);
    let options = LockOptions::new().ttl(ttl).waiter_ttl(lifetime);
    let waiting = tokio::spawn(async move {
        let guard = waiter.lock_with([KEY], &options).await.expect("granted");
        (waiter, guard)
    });
    until_queued(&cluster, 1).await;
    held.release().await.expect("release");
    let (waiter, guard) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the head is served")
        .expect("task");
    let first = guard.remaining();
    assert!(
        first > Duration::ZERO && first < lifetime,
        "granted by the queue (validity at most the entry's lifetime), not by a round \
         (which would count from the ttl): {first:?}"
    );
    assert_eq!(
        queued(&cluster).await,
        vec![0; 5],
        "the head left the queue"
    );
    // topped up to the ttl once, a third of the way into the first validity
    let deadline = Instant::now() + lifetime;
    while guard.remaining() < lifetime {
        assert!(
            Instant::now() < deadline,
            "not extended to the ttl within the first validity: {:?}",
            guard.remaining()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(guard.remaining() > ttl / 2, "{:?}", guard.remaining());
    assert!(guard.is_valid());
    guard.release().await.expect("release");
    let other = client(cluster.urls()).await;
    let next = other
        .try_lock(KEY, ttl)
        .await
        .expect("free after the head's release");
    next.release().await.expect("release");
    drop(waiter);
}
