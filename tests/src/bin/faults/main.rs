//! The fault matrix of RELIABILITY.md: every primitive under every fault, on
//! 5 local redis-server processes behind fault proxies, with 4 separate
//! clients (each its own Redlock and connections) taking, holding and
//! releasing for a few seconds while the fault is on for the middle half.
//! Prints the tables RELIABILITY.md shows.
//!
//! `cargo run --release -p quorate-system-tests --bin faults [-- --secs 4]`

mod primitives;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use primitives::{fences_backwards, over_rate, overlaps, Client, Record, Row, ROWS, TTL};
use quorate_pool::{Pool, RateLimit, Requirement, Semaphore};
use quorate_redlock::{LockOptions, Redlock};
use quorate_spinlock::{SpinOptions, Spinlock};
use quorate_testkit::{Cluster, Fault as ProxyFault, FaultProxy, RedisServer, ServerOptions};
use quorate_tree::TreeLock;

const CLIENTS: usize = 4;
/// Quarantine of a node that lost its data (the rolling restarts).
const MAX_TTL: Duration = Duration::from_secs(2);
/// A call that fails must fail within this (acquire timeout 2 s + slack).
const FAIL_BOUND: Duration = Duration::from_secs(4);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    KillTwo,
    KillThree,
    StopOne,
    BlackholeTwo,
    ResetTwo,
    Rolling,
    FastClock,
    ScriptFlush,
    StalledClient,
}

const FAULTS: [Fault; 10] = [
    Fault::None,
    Fault::KillTwo,
    Fault::KillThree,
    Fault::StopOne,
    Fault::BlackholeTwo,
    Fault::ResetTwo,
    Fault::Rolling,
    Fault::FastClock,
    Fault::ScriptFlush,
    Fault::StalledClient,
];

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::KillTwo => "kill 2 of 5",
            Fault::KillThree => "kill 3 of 5",
            Fault::StopOne => "SIGSTOP 1",
            Fault::BlackholeTwo => "black-hole 2",
            Fault::ResetTwo => "reset 2",
            Fault::Rolling => "rolling restart, no persistence",
            Fault::FastClock => "1 node 4x clock",
            Fault::ScriptFlush => "SCRIPT + FUNCTION FLUSH every 200 ms",
            Fault::StalledClient => "client stalled past its ttl",
        }
    }
}

/// 5 servers (node 0 under a 4x clock for `FastClock`) behind proxies.
struct Setup {
    fast: Option<Cluster>,
    cluster: Cluster,
    proxies: Vec<FaultProxy>,
}

impl Setup {
    async fn start(fault: Fault) -> Setup {
        let (fast, cluster) = if fault == Fault::FastClock {
            let options = ServerOptions {
                clock_rate: Some(4.0),
                ..ServerOptions::default()
            };
            let fast = Cluster::start_with(1, options).await.expect("fast node");
            (Some(fast), Cluster::start(4).await.expect("4 nodes"))
        } else {
            (None, Cluster::start(5).await.expect("5 nodes"))
        };
        let mut setup = Setup {
            fast,
            cluster,
            proxies: Vec::new(),
        };
        for i in 0..5 {
            let proxy = FaultProxy::start(setup.server(i).addr()).await;
            setup.proxies.push(proxy.expect("proxy"));
        }
        setup
    }

    fn server(&self, i: usize) -> &RedisServer {
        match &self.fast {
            Some(fast) if i == 0 => fast.server(0),
            Some(_) => self.cluster.server(i - 1),
            None => self.cluster.server(i),
        }
    }

    fn server_mut(&mut self, i: usize) -> &mut RedisServer {
        match &mut self.fast {
            Some(fast) if i == 0 => fast.server_mut(0),
            Some(_) => self.cluster.server_mut(i - 1),
            None => self.cluster.server_mut(i),
        }
    }

    fn urls(&self) -> Vec<String> {
        self.proxies.iter().map(FaultProxy::url).collect()
    }

    async fn redlock(&self, urls: Vec<String>) -> Redlock {
        Redlock::builder()
            .urls(urls)
            .max_ttl(MAX_TTL)
            .defaults(LockOptions::new().ttl(TTL))
            .build()
            .await
            .expect("connect")
    }

    async fn inject(&mut self, fault: Fault) {
        match fault {
            Fault::KillTwo => (0..2).for_each(|i| self.server_mut(i).kill()),
            Fault::KillThree => (0..3).for_each(|i| self.server_mut(i).kill()),
            Fault::StopOne => self.server(0).pause(),
            Fault::BlackholeTwo => (0..2).for_each(|i| self.proxies[i].set(ProxyFault::Blackhole)),
            Fault::ResetTwo => (0..2).for_each(|i| self.proxies[i].set(ProxyFault::Reset)),
            _ => {}
        }
    }

    async fn heal(&mut self, fault: Fault) {
        match fault {
            Fault::KillTwo | Fault::KillThree => {
                let killed = if fault == Fault::KillTwo { 2 } else { 3 };
                for i in 0..killed {
                    self.server_mut(i).restart().await.expect("restart");
                }
            }
            Fault::StopOne => self.server(0).resume(),
            Fault::BlackholeTwo | Fault::ResetTwo => {
                (0..2).for_each(|i| self.proxies[i].set(ProxyFault::Pass));
            }
            _ => {}
        }
    }

    /// The faults that act all along their window.
    async fn keep_injecting(&mut self, fault: Fault, until: Instant) {
        let mut restarts = 0;
        while Instant::now() < until {
            match fault {
                Fault::Rolling => {
                    self.server_mut(restarts % 5)
                        .restart()
                        .await
                        .expect("restart");
                    restarts += 1;
                    tokio::time::sleep(Duration::from_millis(400)).await;
                }
                Fault::ScriptFlush => {
                    for i in 0..5 {
                        let _ = self.server(i).command(&["SCRIPT", "FLUSH"]).await;
                        let _ = self.server(i).command(&["FUNCTION", "FLUSH"]).await;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => return,
            }
        }
    }
}

/// What one cell saw.
#[derive(Default)]
struct Cell {
    grants: usize,
    failed: usize,
    violations: usize,
    /// Why the violations count what it counts, when that is not overlaps.
    applies: bool,
}

type Log = Arc<Mutex<Vec<Result<Vec<Record>, (Instant, Instant, String)>>>>;

async fn run_cell(row: Row, fault: Fault, run: Duration) -> Cell {
    let mut setup = Setup::start(fault).await;
    let started = Instant::now();
    let (inject_at, heal_at, end_at) = (started + run / 4, started + run * 3 / 4, started + run);
    let log: Log = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let client = Client::new(row, setup.redlock(setup.urls()).await);
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end_at {
                let called = Instant::now();
                let outcome = client.once().await;
                let outcome = outcome.map_err(|e| (called, Instant::now(), e));
                log.lock().expect("log").push(outcome);
                if log.lock().expect("log").last().is_some_and(Result::is_err) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    tokio::time::sleep_until(inject_at.into()).await;
    setup.inject(fault).await;
    let stalled = (fault == Fault::StalledClient && matches!(row, Row::Mutex | Row::Fenced))
        .then(|| tokio::spawn(stalled_client(row, setup.urls())));
    setup.keep_injecting(fault, heal_at).await;
    tokio::time::sleep_until(heal_at.into()).await;
    setup.heal(fault).await;
    for task in tasks {
        let _ = tokio::time::timeout(FAIL_BOUND * 2, task).await;
    }
    let log = std::mem::take(&mut *log.lock().expect("log"));
    let mut records = Vec::new();
    let mut cell = Cell {
        applies: true,
        ..Cell::default()
    };
    let mut slow_failures = 0;
    for outcome in log {
        match outcome {
            Ok(held) => {
                cell.grants += 1;
                records.extend(held);
            }
            Err((called, ended, _)) => {
                cell.failed += 1;
                if ended.duration_since(called) > FAIL_BOUND {
                    slow_failures += 1;
                }
            }
        }
    }
    cell.violations = slow_failures
        + match row {
            Row::RateLimit => over_rate(&records),
            Row::Fenced => overlaps(row, &records) + fences_backwards(&records),
            _ => overlaps(row, &records),
        };
    if fault == Fault::KillThree {
        // no grant may begin while a majority is down (after the grants in
        // flight at the kill have returned)
        let window = (inject_at + Duration::from_millis(200))..heal_at;
        cell.violations += records.iter().filter(|r| window.contains(&r.start)).count();
    }
    if fault == Fault::StalledClient {
        match stalled {
            Some(task) => {
                let stalled = task.await.expect("stalled client");
                cell.violations += usize::from(stalled.violated(&records));
            }
            None => cell.applies = false,
        }
    }
    cell
}

/// A client that takes the lock (ttl 300 ms) and then stalls 700 ms (a
/// task that sleeps without extending; in-process, not a paused process).
struct Stalled {
    granted: Instant,
    fence: Option<u64>,
    still_valid: bool,
}

impl Stalled {
    /// Unfenced: the stalled client must see that its lease ran out.
    /// Fenced: its late write (fence f) must lose against any later grant.
    fn violated(&self, records: &[Record]) -> bool {
        match self.fence {
            None => self.still_valid,
            Some(fence) => records
                .iter()
                .filter(|r| r.start > self.granted)
                .filter_map(|r| r.fence)
                .max()
                .is_some_and(|later| fence >= later),
        }
    }
}

async fn stalled_client(row: Row, urls: Vec<String>) -> Stalled {
    let redlock = Redlock::builder()
        .urls(urls)
        .max_ttl(MAX_TTL)
        .defaults(LockOptions::new().ttl(TTL))
        .build()
        .await
        .expect("connect");
    let options = LockOptions::new()
        .ttl(Duration::from_millis(300))
        .fencing(row == Row::Fenced)
        .acquire_timeout(Some(Duration::from_secs(5)));
    let guard = redlock
        .lock_with(["m"], &options)
        .await
        .expect("stalled client's lock");
    let granted = Instant::now();
    tokio::time::sleep(Duration::from_millis(700)).await;
    Stalled {
        granted,
        fence: guard.lease().fence(),
        still_valid: guard.is_valid(),
    }
}

/// The checker against a broken configuration: every client alone on its
/// own node (a quorum of one), so they never see each other.
async fn broken_cell(run: Duration) -> Cell {
    let setup = Setup::start(Fault::None).await;
    let urls = setup.urls();
    let log: Arc<Mutex<Vec<Record>>> = Arc::default();
    let end_at = Instant::now() + run;
    let mut tasks = Vec::new();
    for url in urls.into_iter().take(CLIENTS) {
        let client = Client::new(Row::Mutex, setup.redlock(vec![url]).await);
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end_at {
                if let Ok(held) = client.once().await {
                    log.lock().expect("log").extend(held);
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let records = std::mem::take(&mut *log.lock().expect("log"));
    Cell {
        grants: records.len(),
        failed: 0,
        violations: overlaps(Row::Mutex, &records),
        applies: true,
    }
}

/// Bad input, each with the typed error it gets.
async fn bad_inputs() -> Vec<(String, String)> {
    let cluster = Cluster::start(3).await.expect("cluster");
    let urls = cluster.urls();
    let redlock = Redlock::connect(urls.clone()).await.expect("connect");
    let port = cluster.server(0).port();
    let mut out = Vec::new();
    let mut add = |input: &str, result: String| out.push((input.to_owned(), result));
    let second = Duration::from_secs(1);
    add("lock(\"\", 1 s)", err(redlock.lock("", second).await));
    add(
        "lock(\"k\", 0)",
        err(redlock.lock("k", Duration::ZERO).await),
    );
    add(
        "lock(\"k\", 2 ms)",
        err(redlock.lock("k", Duration::from_millis(2)).await),
    );
    add(
        "lock(\"k\", 61 s) with max_ttl 60 s",
        err(redlock.lock("k", Duration::from_secs(61)).await),
    );
    let drift = LockOptions::new().drift_factor(1.5);
    add(
        "drift_factor(1.5)",
        err(redlock.lock_with(["k"], &drift).await),
    );
    add(
        "lock_with([\"a\", \"a\"])",
        err(redlock.lock_with(["a", "a"], &LockOptions::new()).await),
    );
    add(
        "connect([])",
        err(Redlock::connect(Vec::<String>::new()).await),
    );
    add(
        "connect([\"http://…\"])",
        err(Redlock::connect([format!("http://127.0.0.1:{port}")]).await),
    );
    add(
        "connect([\"rediss://…\"]) without the tls feature",
        err(Redlock::connect([format!("rediss://127.0.0.1:{port}")]).await),
    );
    add(
        "connect([localhost:p, 127.0.0.1:p])",
        err(Redlock::connect([
            format!("redis://localhost:{port}"),
            format!("redis://127.0.0.1:{port}"),
        ])
        .await),
    );
    add(
        "connect(2 of 3 nodes down)",
        err(Redlock::connect([
            urls[0].clone(),
            "redis://127.0.0.1:1".into(),
            "redis://127.0.0.1:2".into(),
        ])
        .await),
    );
    let pool = Pool::new(&redlock, "p").expect("pool");
    add(
        "pool: need 3 of 2 candidates",
        err(pool
            .acquire(
                vec![Requirement::need(3, ["x", "y"], |s| (*s).to_owned())],
                second,
            )
            .await),
    );
    add("pool: empty name", err(Pool::new(&redlock, "")));
    add(
        "semaphore with 0 permits",
        err(Semaphore::new(&redlock, "s", 0)),
    );
    add(
        "rate limit of 0 per second",
        err(RateLimit::new(&redlock, "r", 0, second)),
    );
    let tree = TreeLock::new(&redlock, "t").expect("tree");
    add(
        "tree: lock an empty path",
        err(tree.lock(Vec::<String>::new(), second).await),
    );
    add(
        "spinlock: 0 tries",
        err(Spinlock::new(&redlock, SpinOptions::new().tries(0))),
    );
    out
}

fn err<T, E: std::fmt::Debug + std::fmt::Display>(result: Result<T, E>) -> String {
    match result {
        Ok(_) => "ACCEPTED (no error)".to_owned(),
        Err(e) => format!("`{}`: {e}", variant_path(&format!("{e:?}"))),
    }
}

/// `InvalidConfig(EmptyResource(0))` → `InvalidConfig(EmptyResource)`: the
/// nested variant names of a `Debug` text, without their fields.
fn variant_path(debug: &str) -> String {
    let mut names = Vec::new();
    let mut rest = debug;
    loop {
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect();
        if !name.starts_with(|c: char| c.is_ascii_uppercase()) {
            break;
        }
        rest = &rest[name.len()..];
        names.push(name);
        match rest.strip_prefix('(') {
            Some(inner) => rest = inner,
            None => break,
        }
    }
    let closing = ")".repeat(names.len().saturating_sub(1));
    format!("{}{closing}", names.join("("))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut secs = 4.0;
    while let Some(arg) = args.next() {
        if arg == "--secs" {
            secs = args.next().and_then(|s| s.parse().ok()).unwrap_or(secs);
        }
    }
    let run = Duration::from_secs_f64(secs);
    let started = Instant::now();
    println!("## Fault matrix\n");
    println!(
        "{CLIENTS} clients (each its own Redlock), 5 local redis-server nodes behind fault proxies, \
         {secs} s per cell, the fault on for the middle half; ttl 1 s, max_ttl 2 s. \
         Each cell: violations / grants (failed calls). 0 violations is the target.\n"
    );
    let mut header = "| primitive |".to_owned();
    let mut rule = "|---|".to_owned();
    for fault in FAULTS {
        header.push_str(&format!(" {} |", fault.name()));
        rule.push_str("---|");
    }
    println!("{header}\n{rule}");
    let mut total = 0;
    for row in ROWS {
        let mut line = format!("| {} |", row.name());
        for fault in FAULTS {
            let cell = run_cell(row, fault, run).await;
            if cell.applies {
                total += cell.violations;
                line.push_str(&format!(
                    " **{}** / {} ({}) |",
                    cell.violations, cell.grants, cell.failed
                ));
            } else {
                line.push_str(" n/a |");
            }
        }
        println!("{line}");
    }
    let broken = broken_cell(run).await;
    println!(
        "\nChecker control (a broken configuration: each client alone on its own node, a \
         quorum of one): **{}** overlaps in {} grants; the same checker must report them.\n",
        broken.violations, broken.grants
    );
    println!("## Bad input\n\n| input | error |\n|---|---|");
    for (input, result) in bad_inputs().await {
        println!("| {input} | {} |", result.replace('|', "\\|"));
    }
    println!(
        "\n{total} violations in the matrix; {:.0} s in all.",
        started.elapsed().as_secs_f64()
    );
}
