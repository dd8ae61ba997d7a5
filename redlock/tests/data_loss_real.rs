//! Data loss on the servers: nodes killed with -9 and restarted empty (no
//! persistence) or from an older RDB snapshot (the marker comes back, the
//! later writes do not). quorate's quarantine must keep two holders apart
//! and the fencing tokens moving forward. The same overlap checker is shown
//! finding the overlap once the quarantine is skipped (restarted nodes
//! declared fresh), so a 0 here means something.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorate_redlock::{LockOptions, NodeOutcome, Redlock};
use quorate_testkit::{Cluster, FenceLog, HoldLog, ServerOptions, QUORATE_MARKER_KEY};

async fn connect(urls: Vec<String>, max_ttl: Duration) -> Redlock {
    let builder = Redlock::builder()
        .urls(urls)
        .max_ttl(max_ttl)
        .defaults(LockOptions::new().ttl(max_ttl));
    builder.build().await.expect("connect")
}

/// Every hold that began while another was still going (one resource).
fn overlaps(holds: &HoldLog) -> usize {
    holds.count_overlaps_by(1, |a, b| a == b)
}

#[test]
fn the_kit_marks_new_servers_with_quorates_marker_key() {
    assert_eq!(QUORATE_MARKER_KEY, quorate_redlock::MARKER_KEY);
}

/// A lock held on all 5 nodes; 3 of them restarted empty one after the
/// other: they have forgotten it, and so a majority has.
async fn a_lock_forgotten_by_a_majority(
    max_ttl: Duration,
) -> (Cluster, HoldLog, quorate_redlock::LockGuard) {
    let mut cluster = Cluster::start(5).await.expect("cluster");
    let holder = connect(cluster.urls(), max_ttl).await;
    let guard = holder.lock("acct", max_ttl).await.expect("lock");
    let holds = HoldLog::new();
    let start = Instant::now();
    holds.record("acct", 1, start, start + guard.remaining());
    for i in 0..3 {
        cluster.server_mut(i).restart().await.expect("restart");
    }
    (cluster, holds, guard)
}

#[tokio::test]
async fn the_checker_sees_two_holders_when_restarted_nodes_are_declared_fresh() {
    let (cluster, holds, guard) = a_lock_forgotten_by_a_majority(Duration::from_secs(10)).await;
    // the broken configuration: an operator declares the restarted nodes
    // fresh, skipping their quarantine
    let rival = connect(cluster.urls(), Duration::from_secs(10)).await;
    let declared = rival.declare_fresh().await;
    assert_eq!(
        declared.nodes_where(|o| *o == NodeOutcome::Granted).len(),
        3,
        "{declared}"
    );
    let second = rival.try_lock("acct", Duration::from_secs(1)).await;
    let second = second.expect("granted by the 3 nodes that forgot the first lock");
    let start = Instant::now();
    holds.record("acct", 2, start, start + second.remaining());
    assert!(guard.is_valid(), "the first holder still has validity");
    assert!(holds.check_exclusive().is_err(), "the checker must see it");
    assert_eq!(overlaps(&holds), 1);
}

#[tokio::test]
async fn a_lock_forgotten_by_a_majority_is_not_granted_again_while_it_is_valid() {
    let max_ttl = Duration::from_secs(2);
    let (cluster, holds, guard) = a_lock_forgotten_by_a_majority(max_ttl).await;
    let rival = connect(cluster.urls(), max_ttl).await;
    let options = LockOptions::new()
        .ttl(Duration::from_secs(1))
        .acquire_timeout(Some(Duration::from_secs(10)));
    let second = rival.lock_with(["acct"], &options).await;
    let second = second.expect("granted once the quarantines ended");
    let start = Instant::now();
    holds.record("acct", 2, start, start + second.remaining());
    assert!(!guard.is_valid(), "granted while the first lease was valid");
    holds.check_exclusive().expect("one holder at a time");
    for i in 0..3 {
        let marker = cluster
            .server(i)
            .command(&["GET", QUORATE_MARKER_KEY])
            .await;
        let marker = marker.expect("GET").as_string().unwrap_or_default();
        assert!(marker.starts_with("lost:"), "node {i}: {marker}");
    }
}

/// What a rolling restart run saw.
struct Rolling {
    holds: HoldLog,
    fences: FenceLog,
    failed: u64,
    restarts: usize,
}

/// How the servers of a rolling restart come back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Comeback {
    /// Empty (no persistence).
    Empty,
    /// Empty, and declared fresh at once (the broken configuration).
    DeclaredFresh,
    /// From an RDB snapshot taken once, after the servers were marked
    /// fresh and before any lock (`save 60 1`, as a server that has run a
    /// while): the marker comes back, later locks and fence counts do not.
    Snapshot,
}

/// 8 clients (each its own Redlock) contend for one fenced lock (ttl 1 s),
/// holding it 400 ms or until its validity ends, while nodes are killed
/// with -9 and restarted one at a time as `comeback` says, for `run`: in
/// waves of 3 restarts 150 ms apart (so that a lock held across a wave has
/// been forgotten by a majority), then 2 s without faults, the next wave
/// starting at the next node.
async fn rolling_restarts(run: Duration, comeback: Comeback) -> Rolling {
    let max_ttl = Duration::from_secs(1);
    let options = ServerOptions {
        save: (comeback == Comeback::Snapshot).then(|| "60 1".to_owned()),
        ..ServerOptions::default()
    };
    let mut cluster = Cluster::start_with(5, options).await.expect("cluster");
    if comeback == Comeback::Snapshot {
        for server in cluster.servers() {
            server.command(&["SAVE"]).await.expect("SAVE");
        }
    }
    let holds = HoldLog::new();
    let fences = FenceLog::new();
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let options = LockOptions::new()
        .ttl(max_ttl)
        .fencing(true)
        .acquire_timeout(Some(Duration::from_secs(2)));
    let mut clients = Vec::new();
    for id in 0..8u64 {
        let redlock = connect(cluster.urls(), max_ttl).await;
        let (holds, fences, failed, stop, options) = (
            holds.clone(),
            fences.clone(),
            Arc::clone(&failed),
            Arc::clone(&stop),
            options.clone(),
        );
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let guard = match redlock.lock_with(["rolling"], &options).await {
                    Ok(guard) => guard,
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                let start = Instant::now();
                let valid_until = start + guard.remaining();
                tokio::time::sleep_until((start + Duration::from_millis(400)).into()).await;
                let end = Instant::now().min(valid_until);
                holds.record("rolling", id, start, end);
                fences.record(id, guard.lease().fence().expect("fenced"), start);
                let _ = guard.release().await;
            }
        }));
    }
    let started = Instant::now();
    let mut restarts = 0;
    while started.elapsed() < run {
        for _ in 0..3 {
            let node = restarts % cluster.len();
            cluster.server_mut(node).restart().await.expect("restart");
            if comeback == Comeback::DeclaredFresh {
                // what Redlock::declare_fresh does, before any client is back
                let server = cluster.server(node);
                let run_id = server.run_id().await.expect("run_id");
                let mark = [
                    "SET",
                    QUORATE_MARKER_KEY,
                    &format!("fresh:test:{run_id}"),
                    "NX",
                ];
                server.command(&mark).await.expect("SET");
            }
            restarts += 1;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        tokio::time::timeout(Duration::from_secs(10), client)
            .await
            .expect("clients stop within a lock call")
            .expect("client");
    }
    Rolling {
        holds,
        fences,
        failed: failed.load(Ordering::Relaxed),
        restarts,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restarts_without_persistence_never_grant_twice_or_move_fences_back() {
    let run = rolling_restarts(Duration::from_secs(40), Comeback::Empty).await;
    let holds = run.holds.holds();
    println!(
        "rolling restarts: {} restarts, {} grants, {} failed calls, {} overlaps",
        run.restarts,
        holds.len(),
        run.failed,
        overlaps(&run.holds)
    );
    assert!(run.restarts >= 30, "{} restarts", run.restarts);
    assert!(
        holds.len() >= 20,
        "only {} grants: no progress",
        holds.len()
    );
    run.holds
        .check_exclusive()
        .expect("one holder with validity at a time");
    run.fences
        .check_strictly_increasing()
        .expect("fencing tokens never go backwards");
}

/// The broken configuration of the test above, run by hand
/// (`cargo test -p quorate-redlock --test data_loss_real -- --ignored`):
/// restarted nodes declared fresh at once. It prints how many overlaps the
/// checker found; it fails if it found none (then the run proves nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "negative control, run by hand: the same scenario with the quarantine skipped"]
async fn rolling_restarts_declared_fresh_do_grant_twice() {
    let run = rolling_restarts(Duration::from_secs(40), Comeback::DeclaredFresh).await;
    let holds = run.holds.holds();
    let found = overlaps(&run.holds);
    let backwards = run.fences.check_strictly_increasing();
    println!(
        "declared fresh: {} restarts, {} grants, {} failed calls, {found} overlaps, fences: {backwards:?}",
        run.restarts,
        holds.len(),
        run.failed,
    );
    assert!(found > 0 || backwards.is_err(), "no overlap found");
}

/// The reported hole: a server restarted from an RDB snapshot gets its
/// marker back, but not the locks and fence counts written after the
/// snapshot. It must sit out its quarantine as one that lost everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restarts_from_an_rdb_snapshot_never_grant_twice_or_move_fences_back() {
    let run = rolling_restarts(Duration::from_secs(15), Comeback::Snapshot).await;
    let holds = run.holds.holds();
    let backwards = run.fences.check_strictly_increasing();
    println!(
        "rolling restarts from a snapshot: {} restarts, {} grants, {} failed calls, \
         {} overlaps, fences: {backwards:?}",
        run.restarts,
        holds.len(),
        run.failed,
        overlaps(&run.holds)
    );
    assert!(run.restarts >= 15, "{} restarts", run.restarts);
    assert!(holds.len() >= 8, "only {} grants: no progress", holds.len());
    run.holds
        .check_exclusive()
        .expect("one holder with validity at a time");
    backwards.expect("fencing tokens never go backwards");
}

/// A snapshot, then a fenced lock on all 3 nodes, then 2 of them restarted
/// from the snapshot: they have their marker back but neither the lock nor
/// its fence count. They refuse to vote (quarantined) until `max_ttl` has
/// passed, so the lock is not granted again while valid.
#[tokio::test]
async fn nodes_restarted_from_an_older_snapshot_sit_out_their_quarantine() {
    let max_ttl = Duration::from_secs(2);
    let mut cluster = Cluster::start(3).await.expect("cluster");
    let holder = connect(cluster.urls(), max_ttl).await;
    let fenced = LockOptions::new().ttl(max_ttl).fencing(true);
    // the snapshot has the scripts' function libraries, which ran in the
    // old process (and kept its run_id there)
    let warm_up = holder.lock_with(["warm-up"], &fenced).await.expect("lock");
    warm_up.release().await.expect("release");
    for server in cluster.servers() {
        server.command(&["SAVE"]).await.expect("SAVE");
    }
    let first = holder.lock_with(["acct"], &fenced).await.expect("lock");
    let restarted = Instant::now();
    for i in 0..2 {
        let server = cluster.server_mut(i);
        let before = server.run_id().await.expect("run_id");
        server.restart().await.expect("restart");
        assert_ne!(server.run_id().await.expect("run_id"), before);
        let marker = server.command(&["GET", QUORATE_MARKER_KEY]).await;
        let marker = marker.expect("GET").as_string().unwrap_or_default();
        assert!(
            marker.ends_with(&before),
            "node {i}: the snapshot's marker {marker}"
        );
        let fence = quorate_redlock::raw::fence_key("acct");
        let gone = server.command(&["EXISTS", "acct", fence.as_str()]).await;
        assert_eq!(
            gone.expect("EXISTS").as_i64(),
            Some(0),
            "node {i}: neither the lock nor its fence count came back"
        );
    }

    // The holder's client calls the functions it knows: the libraries came
    // back with the snapshot, and in the new process they ask INFO afresh.
    // (fenced, as before the restart: the same script)
    let once = fenced.clone().max_attempts(Some(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let refused = holder.lock_with(["other"], &once).await;
        let refused = refused.expect_err("the 2 restarted nodes are quarantined");
        let outcomes = refused.outcomes().expect("per-node outcomes");
        let quarantined = outcomes.nodes_where(|o| matches!(o, NodeOutcome::Quarantined { .. }));
        if quarantined.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "never quarantined: {outcomes}");
        // (the holder's connections to the restarted nodes are reopening)
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..2 {
        let stats = cluster.server(i).command(&["INFO", "commandstats"]).await;
        let stats = stats.expect("INFO").as_string().unwrap_or_default();
        assert!(stats.contains("cmdstat_fcall:"), "node {i}: {stats}");
        assert!(!stats.contains("cmdstat_eval:"), "node {i}: {stats}");
    }

    let rival = connect(cluster.urls(), max_ttl).await;
    // a free resource, so that the round waits for both restarted nodes
    let refused = rival.try_lock("other", Duration::from_secs(1)).await;
    let refused = refused.expect_err("the 2 restarted nodes are quarantined");
    let outcomes = refused.outcomes().expect("per-node outcomes");
    let quarantined = outcomes.nodes_where(|o| matches!(o, NodeOutcome::Quarantined { .. }));
    assert_eq!(quarantined.len(), 2, "{outcomes}");
    for i in 0..2 {
        let marker = cluster
            .server(i)
            .command(&["GET", QUORATE_MARKER_KEY])
            .await;
        let marker = marker.expect("GET").as_string().unwrap_or_default();
        assert!(marker.starts_with("restarted:"), "node {i}: {marker}");
    }

    let patient = fenced
        .clone()
        .ttl(Duration::from_secs(1))
        .acquire_timeout(Some(Duration::from_secs(10)));
    let second = rival.lock_with(["acct"], &patient).await;
    let second = second.expect("granted once the quarantines ended");
    assert!(!first.is_valid(), "granted while the first lease was valid");
    assert!(restarted.elapsed() >= max_ttl, "voted before max_ttl");
    drop(second);
}

/// Fence counters come back from a snapshot as they were: 3 of 5 nodes
/// restarted from a snapshot taken before two fenced grants (fences 1 and 2)
/// form the only majority left (the other 2 stopped). Once their quarantine
/// ends, the next fence must still be above 2: a restarted node keeps its
/// counters above the time of its restart (quarantine.lua's fence floor).
/// Before the floor, the restarted majority counted from the snapshot and
/// handed out fence 1 again (seen failing: 1 after 2; the simulation found
/// it first, seed 1202).
#[tokio::test]
async fn fences_stay_ahead_when_a_majority_restarts_from_an_older_snapshot() {
    let max_ttl = Duration::from_secs(1);
    let mut cluster = Cluster::start(5).await.expect("cluster");
    for server in cluster.servers() {
        server.command(&["SAVE"]).await.expect("SAVE");
    }
    let client = connect(cluster.urls(), max_ttl).await;
    let fenced = LockOptions::new()
        .ttl(max_ttl)
        .fencing(true)
        .acquire_timeout(Some(Duration::from_secs(10)));
    let mut last = 0;
    for _ in 0..2 {
        let guard = client.lock_with(["ledger"], &fenced).await.expect("lock");
        last = guard.lease().fence().expect("fenced");
        guard.release().await.expect("release");
    }
    assert_eq!(last, 2);
    for i in 0..3 {
        cluster.server_mut(i).restart().await.expect("restart");
    }
    for i in 3..5 {
        cluster.server(i).pause();
    }
    let guard = client
        .lock_with(["ledger"], &fenced)
        .await
        .expect("granted by the restarted majority once quarantined long enough");
    let fence = guard.lease().fence().expect("fenced");
    assert!(fence > last, "fence {fence} after fence {last}");
    for i in 3..5 {
        cluster.server(i).resume();
    }
}
