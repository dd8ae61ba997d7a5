//! The read-write lock from plain threads through quorate-redlock's
//! blocking client (`block_on` + `hold`), against real redis-server
//! processes: threads of separate clients never see a writer beside anyone,
//! and held guards release on drop without a runtime in the caller.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use quorate_redlock::blocking::Redlock;
use quorate_rwlock::RwLock;
use quorate_testkit::{Cluster, HoldLog};

#[test]
fn threads_of_separate_blocking_clients_keep_writers_alone_and_drops_release() {
    let setup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cluster = setup.block_on(Cluster::start(5)).expect("cluster");
    let holds = HoldLog::new();
    let mut threads = Vec::new();
    for c in 0..2u64 {
        let client = Arc::new(Redlock::connect(cluster.urls()).expect("connect"));
        let table = RwLock::new(client.as_async(), "table").expect("name");
        for t in 0..2u64 {
            let (client, table, holds) = (Arc::clone(&client), table.clone(), holds.clone());
            threads.push(thread::spawn(move || {
                for i in 0..8u64 {
                    let write = (i + t) % 3 == 0;
                    let ttl = Duration::from_secs(5);
                    let granted = if write {
                        client.block_on(table.write(ttl))
                    } else {
                        client.block_on(table.read(ttl))
                    };
                    let guard = client.hold(granted.expect("granted in time"));
                    let start = Instant::now();
                    thread::sleep(Duration::from_millis(2));
                    assert!(guard.is_valid());
                    let kind = if write { "write" } else { "read" };
                    holds.record(kind, c * 2 + t, start, Instant::now());
                    drop(guard); // released through the client's runtime
                }
            }));
        }
    }
    for thread in threads {
        thread.join().expect("thread");
    }
    assert_eq!(holds.len(), 32);
    assert!(holds.holds().iter().any(|h| h.resource == "write"));
    holds
        .check_exclusive_by(|a, b| a == "write" || b == "write")
        .expect("a writer beside another holder");
    // every dropped guard was released (a drop returns once a majority
    // deleted; the others follow at once): no reader or writer key is left
    // well before the 5 s ttl could have removed them
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let readers = setup
            .block_on(cluster.keys("quorate:rw:{table}:r:*"))
            .expect("keys");
        let writer = setup
            .block_on(cluster.keys("quorate:rw:{table}:w"))
            .expect("keys");
        let left: Vec<_> = readers.iter().chain(&writer).flatten().collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {left:?}");
        thread::sleep(Duration::from_millis(10));
    }
}
