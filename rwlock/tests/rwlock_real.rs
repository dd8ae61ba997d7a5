//! The read-write lock against 5 real redis-server processes (and, for the
//! scenarios marked so, the same on memory nodes, which run the script's
//! native twin): readers share, writers exclude, a waiting writer keeps new
//! readers out, separate clients never see a writer overlap anyone (also
//! with 2 of 5 nodes killed mid-run), a dead holder's lock ends at its ttl.

use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use quorate_redlock::{Error, LockOptions, MemoryNode, Node, Redlock};
use quorate_rwlock::{Access, NameError, RwLock};
use quorate_testkit::{Cluster, Fault, FaultProxy, FenceLog, HoldLog};

const TTL: Duration = Duration::from_secs(5);

/// A client of its own (connections, notifier), as a separate process has.
async fn client(urls: Vec<String>, label: &str) -> Redlock {
    // 500 ms per node: a live node slowed by a loaded machine is not a failed one
    let defaults = LockOptions::new().node_timeout(Some(Duration::from_millis(500)));
    Redlock::builder()
        .urls(urls)
        .defaults(defaults)
        .owner(label)
        .build()
        .await
        .expect("connect")
}

fn memory_client(nodes: &[MemoryNode]) -> Redlock {
    let nodes = nodes
        .iter()
        .map(|m| Arc::new(m.clone()) as Arc<dyn Node>)
        .collect();
    let defaults = LockOptions::new().node_timeout(Some(Duration::from_millis(500)));
    Redlock::from_nodes(nodes, defaults).expect("redlock")
}

/// Clients of one backend: real servers or memory nodes.
enum Backend {
    Real(Cluster),
    Memory(Vec<MemoryNode>),
}

impl Backend {
    async fn client(&self, label: &str) -> Redlock {
        match self {
            Backend::Real(cluster) => client(cluster.urls(), label).await,
            Backend::Memory(nodes) => memory_client(nodes),
        }
    }
}

macro_rules! on_both_backends {
    ($scenario:ident, $real:ident, $memory:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $real() {
            let cluster = Cluster::start(5).await.expect("cluster");
            $scenario(Backend::Real(cluster)).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $memory() {
            $scenario(Backend::Memory(MemoryNode::cluster(5))).await;
        }
    };
}

/// The refusal of a try, naming what blocked it.
fn refused(result: Result<quorate_rwlock::RwLockGuard, Error>) -> Error {
    match result {
        Err(error @ Error::Taken { .. }) => error,
        Err(other) => panic!("expected Taken, got {other}"),
        Ok(guard) => panic!("expected Taken, got a {:?} lock", guard.access()),
    }
}

on_both_backends!(
    readers_share_writers_exclude,
    readers_share_and_writers_exclude,
    in_memory_readers_share_and_writers_exclude
);

async fn readers_share_writers_exclude(backend: Backend) {
    let (a, b) = (
        backend.client("reader-a").await,
        backend.client("reader-b").await,
    );
    let lock_a = RwLock::new(&a, "prices").expect("name");
    let lock_b = RwLock::new(&b, "prices").expect("name");
    let read_a = lock_a.try_read(TTL).await.expect("first reader");
    let read_b = lock_b.try_read(TTL).await.expect("readers share");
    assert_eq!(read_b.access(), Access::Read);

    // a writer is refused, naming a reader's client
    let busy = refused(lock_b.try_write(TTL).await);
    let holder = busy.holder().expect("a named reader").client.clone();
    assert!(
        [a.owner().client_id(), b.owner().client_id()].contains(&holder),
        "{busy}"
    );
    assert!(busy.to_string().contains("reader r:"), "{busy}");
    // the refused try took its intent back: readers are not held up (the
    // same client's next request follows that undo on every connection)
    let read_b2 = lock_b.try_read(TTL).await.expect("no intent left behind");
    read_b2.release().await.expect("release");
    read_a.release().await.expect("release");
    read_b.release().await.expect("release");

    let write_b = lock_b.try_write(TTL).await.expect("alone now");
    let busy = refused(lock_a.try_read(TTL).await);
    assert_eq!(
        busy.holder().map(|h| h.client.clone()),
        Some(b.owner().client_id())
    );
    assert!(busy.to_string().contains("writer w"), "{busy}");
    refused(lock_a.try_write(TTL).await);
    write_b.release().await.expect("release");
    let again = lock_a
        .try_read(TTL)
        .await
        .expect("free again, no intent of a's");
    again.release().await.expect("release");
}

on_both_backends!(
    waiting_writer_keeps_new_readers_out,
    a_waiting_writer_keeps_new_readers_out_and_gets_in_when_the_readers_leave,
    in_memory_a_waiting_writer_keeps_new_readers_out
);

async fn waiting_writer_keeps_new_readers_out(backend: Backend) {
    let reader = RwLock::new(&backend.client("reader").await, "ledger").expect("name");
    let writer = RwLock::new(&backend.client("writer").await, "ledger").expect("name");
    let latecomer = RwLock::new(&backend.client("late-reader").await, "ledger").expect("name");
    let first = reader.read(TTL).await.expect("reader");

    let patient = writer
        .options()
        .ttl(TTL)
        .acquire_timeout(Some(Duration::from_secs(20)));
    let waiting = tokio::spawn(async move {
        let guard = writer.write_with(&patient).await;
        (guard, StdInstant::now())
    });
    // the writer's intent shows as a refusal of new readers (bounded wait)
    let deadline = StdInstant::now() + Duration::from_secs(10);
    loop {
        match latecomer.try_read(TTL).await {
            Err(error @ Error::Taken { .. }) => {
                assert!(error.to_string().contains("waiting i:"), "{error}");
                break;
            }
            Ok(guard) => guard.release().await.map(drop).expect("release"),
            Err(other) => panic!("{other}"),
        }
        assert!(
            StdInstant::now() < deadline,
            "the writer never showed as waiting"
        );
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished(), "the writer got in beside a reader");
    let released = StdInstant::now();
    first.release().await.expect("release");
    let (granted, at) = waiting.await.expect("writer task");
    let granted = granted.expect("the writer gets in once the reader left");
    assert!(at >= released);
    assert_eq!(granted.access(), Access::Write);
    refused(latecomer.try_read(TTL).await);
    granted.release().await.expect("release");
}

/// `clients` separate clients, each with 2 tasks doing `rounds` reads or
/// writes (every third a write, fenced), recorded in `holds` and, for the
/// writers, their fences in `fences`.
async fn workload(clients: Vec<Redlock>, rounds: usize, holds: &HoldLog, fences: &FenceLog) {
    let mut tasks = Vec::new();
    for (c, redlock) in clients.into_iter().enumerate() {
        for t in 0..2 {
            let lock = RwLock::new(&redlock, "table").expect("name");
            let (holds, fences) = (holds.clone(), fences.clone());
            let id = (c * 2 + t) as u64;
            tasks.push(tokio::spawn(async move {
                for i in 0..rounds {
                    let write = (i + t) % 3 == 0;
                    let options = lock
                        .options()
                        .ttl(Duration::from_secs(2))
                        .fencing(true)
                        .acquire_timeout(Some(Duration::from_secs(30)));
                    let guard = if write {
                        lock.write_with(&options).await
                    } else {
                        lock.read_with(&options).await
                    }
                    .unwrap_or_else(|e| panic!("client {c} task {t}: {e}"));
                    let start = StdInstant::now();
                    match (write, guard.lease().fence()) {
                        (true, Some(fence)) => fences.record(id, fence, start),
                        (true, None) => panic!("a fenced writer without a fence"),
                        (false, fence) => assert_eq!(fence, None, "a reader with a fence"),
                    }
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    let kind = if write { "write" } else { "read" };
                    // only what was held while the lease was valid counts
                    if guard.is_valid() {
                        holds.record(kind, id, start, StdInstant::now());
                    }
                    guard.release().await.expect("release");
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("task");
    }
}

/// A write conflicts with everything; reads only with writes.
fn conflicting(a: &str, b: &str) -> bool {
    a == "write" || b == "write"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_clients_never_see_a_writer_beside_anyone_even_with_two_nodes_killed() {
    let mut cluster = Cluster::start(5).await.expect("cluster");
    let (holds, fences) = (HoldLog::new(), FenceLog::new());
    let mut clients = Vec::new();
    for c in 0..3 {
        clients.push(client(cluster.urls(), &format!("client-{c}")).await);
    }
    workload(clients.clone(), 10, &holds, &fences).await;
    let before = holds.len();
    cluster.server_mut(1).kill();
    cluster.server_mut(3).kill();
    workload(clients, 10, &holds, &fences).await;
    assert_eq!(holds.len(), before * 2);
    assert!(holds.holds().iter().any(|h| h.resource == "read"));
    assert!(holds.holds().iter().any(|h| h.resource == "write"));
    holds
        .check_exclusive_by(conflicting)
        .expect("a writer beside another holder");
    assert!(fences.len() >= 20, "{} fenced writes", fences.len());
    fences
        .check_strictly_increasing()
        .expect("a later writer with a smaller fence");
}

/// The checker above, seen failing: each client alone on its own server
/// (a quorum of one each) lets writers in together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_checker_fires_when_each_client_has_a_quorum_of_one() {
    let cluster = Cluster::start(3).await.expect("cluster");
    let (holds, fences) = (HoldLog::new(), FenceLog::new());
    let mut clients = Vec::new();
    for (c, url) in cluster.urls().into_iter().enumerate() {
        clients.push(client(vec![url], &format!("split-{c}")).await);
    }
    workload(clients, 10, &holds, &fences).await;
    assert!(
        fences.check_strictly_increasing().is_err(),
        "the fence checker saw nothing"
    );
    assert!(
        holds.check_exclusive_by(conflicting).is_err(),
        "the checker saw nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_writers_lock_ends_at_its_ttl() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let dead = client(cluster.urls(), "dead-writer").await;
    let lock = RwLock::new(&dead, "config").expect("name");
    let ttl = Duration::from_millis(1500);
    let granted = lock.write(ttl).await.expect("write");
    // its process dies: no release, no extension (the client goes with it)
    std::mem::forget(granted);
    drop(lock);
    drop(dead);
    let survivor = client(cluster.urls(), "survivor").await;
    let lock = RwLock::new(&survivor, "config").expect("name");
    let began = StdInstant::now();
    let reading = lock.read(TTL).await.expect("free once the ttl ran out");
    assert!(
        began.elapsed() <= ttl + Duration::from_secs(1),
        "{:?}",
        began.elapsed()
    );
    reading.release().await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_extension_keeps_a_reader_past_its_ttl_and_bad_names_are_refused() {
    let cluster = Cluster::start(3).await.expect("cluster");
    let redlock = client(cluster.urls(), "long-reader").await;
    let lock = RwLock::new(&redlock, "report").expect("name");
    let options = lock
        .options()
        .ttl(Duration::from_millis(600))
        .auto_extend(true);
    let reading = lock.read_with(&options).await.expect("read");
    tokio::select! {
        lost = reading.lost() => panic!("lost: {lost}"),
        () = tokio::time::sleep(Duration::from_millis(1500)) => {}
    }
    let other = RwLock::new(&client(cluster.urls(), "writer").await, "report").expect("name");
    refused(other.try_write(TTL).await);
    reading.release().await.expect("release");

    assert!(matches!(
        RwLock::new(&redlock, ""),
        Err(NameError::Empty { .. })
    ));
    assert!(matches!(
        RwLock::new(&redlock, "a{b"),
        Err(NameError::Brace { .. })
    ));
    assert!(matches!(
        lock.read(Duration::ZERO).await,
        Err(Error::InvalidConfig(_))
    ));
}

/// The writers' fence write-back: of 3 nodes, node 0 alone has a high
/// counter. The first writer (nodes 0 and 1; node 2's connections reset)
/// takes it and writes it back to node 1; then node 0 drops out, and the
/// next writer, granted by nodes 1 and 2, must still get a larger fence.
/// Without the write-back it would restart from their own low counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_fences_stay_ahead_when_the_node_with_the_highest_counter_drops_out() {
    let cluster = Cluster::start(3).await.expect("cluster");
    let proxies = cluster.proxies().await.expect("proxies");
    let redlock = client(proxies.iter().map(FaultProxy::url).collect(), "fenced").await;
    let set = ["SET", "quorate:rw:{ledger}:fence", "100"];
    cluster.server(0).command(&set).await.expect("SET");
    let lock = RwLock::new(&redlock, "ledger").expect("name");
    let options = lock.options().ttl(TTL).fencing(true);
    proxies[2].set(Fault::Reset);
    let first = lock.write_with(&options).await.expect("write");
    assert_eq!(first.lease().fence(), Some(101));
    first.release().await.expect("release");
    proxies[2].set(Fault::Pass);
    proxies[0].set(Fault::Reset);
    let second = lock.write_with(&options).await.expect("write");
    // 102 when the first round grants; a round that fails and is retried
    // has counted on the nodes that answered it, so more is fine: only
    // ahead of the first writer's matters
    let fence = second.lease().fence().expect("a fence");
    assert!(fence > 101, "the token stays ahead: {fence}");
    second.release().await.expect("release");
}
