//! Side-by-side benchmark: quorate vs rslock (the best Rust peer on
//! crates.io) vs a hand-written floor (raw fred: `SET NX PX` to every node plus a
//! scripted compare-and-delete), on the same 5 local `redis-server` nodes, in one run.
//! It measures and prints; it asserts nothing about speed.
//!
//! The one command:
//!
//! ```sh
//! cargo run --release -p quorate-bench --features bench
//! ```
//!
//! Optional arguments after `--`: the scenario letters to run (default: all), and
//! `--secs N` for the timed scenarios (default 5), e.g.
//! `cargo run --release -p quorate-bench --features bench -- A C --secs 2`.
//!
//! Scenarios:
//! - A: one task, one key, uncontended lock + release pairs (up to 2,000, at most `--secs`
//!   of each library's own time; the libraries take turns, 20 pairs at a time, so machine
//!   noise falls on all alike): p50/p99 of the lock call and of the pair, pairs/s, and
//!   the benchmark process's context switches per pair (all its threads, from
//!   `/proc/self/task/*/status`: what the pairs' task hops between threads cost).
//! - B: 64 tasks on 64 distinct keys for `--secs`: pairs/s in total, failed lock calls.
//! - C: 8 tasks on one key, each holding 1 ms then releasing, for `--secs`:
//!   acquisitions/s, p50/p99 wait (lock call start to grant), lock calls that failed
//!   outright; each library at its defaults and at a tuned setting. Then the same with
//!   a client of its own per task ("C (own clients)": 8 clients in one process;
//!   quorate at its defaults and with `fair(true)`).
//! - P (`scenario_p.rs`): 8 and then 16 separate processes (children of this program,
//!   each with its own client, one task) on one key, 1 ms holds, for `--secs`:
//!   grants/s, wait p50/p99, failed calls, per-process min/max grants, Jain's fairness
//!   index, client CPU per grant (all children), server script calls per grant per node
//!   (`INFO commandstats`) and overlaps across processes (wall-clock hold intervals).
//! - D: A and C again with all clients connected through 5 TCP fault proxies, proxy 4
//!   black-holing (a silent, partitioned node).
//! - G: the same with proxy 4 adding 20 ms each way (one node far away): the 4 near
//!   nodes are a quorum, so A and C should cost what they cost through the proxies
//!   without the fault.
//! - E: 10,000 held auto-extended quorate locks for `--secs`: extension requests per
//!   second per node (from each server's `INFO commandstats`), the longest command each
//!   server ran meanwhile (its `SLOWLOG`) and the client's CPU (from `/proc/self/stat`).
//!   rslock and the floor have no auto-extension; the row "one request per lock" is the
//!   arithmetic for a client that extends each lock on its own at the same interval.
//! - S (`scenario_s.rs`): deployment shapes, quorate at its defaults (and rslock where it
//!   can connect): A and P8 against the 5 standalone nodes, 3 of them, 1 of them, and one
//!   Redis Cluster node (3 shards, started for the scenario) as the only node.
//!
//! Every node runs on loopback; every loop is bounded in count and time; every lock call
//! is bounded by its library's own limit (quorate `acquire_timeout`, rslock's retry
//! count, the floor's deadline) and, as a safety net, by [`LOCK_CAP`].
//!
//! Requires `redis-server` on PATH (or `$QUORATE_REDIS_SERVER`); `bash scripts/test.sh`
//! installs it.

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use quorate_redlock::fred::clients::Client as FredClient;
use quorate_redlock::fred::prelude::{
    ClientLike, Config, ConnectionConfig, Expiration, KeysInterface, PerformanceConfig,
    ReconnectPolicy, SetOptions,
};
use quorate_redlock::fred::types::scripts::Script;
use quorate_redlock::{LockGuard, LockOptions, Redlock};
use quorate_testkit::{Cluster, Fault, FaultProxy, RedisServer};
use tokio::time::{sleep, timeout, Instant};

/// Lease ttl for every library (long enough that no hold in this program expires).
pub(crate) const TTL: Duration = Duration::from_secs(5);
/// How long quorate (`acquire_timeout`) and the floor (deadline) keep retrying.
pub(crate) const ACQUIRE_DEADLINE: Duration = Duration::from_secs(10);
/// The floor's bound on one node call: quorate's default node timeout for a 5 s ttl
/// (ttl/100 within 50..500 ms), so that both give up on a silent node equally soon.
pub(crate) const FLOOR_NODE_TIMEOUT: Duration = Duration::from_millis(50);
/// Safety net around every lock call of every library (none should reach it).
pub(crate) const LOCK_CAP: Duration = Duration::from_secs(15);
/// Safety net around every release.
pub(crate) const RELEASE_CAP: Duration = Duration::from_secs(5);
/// Scenario A: most pairs per contender (also stopped after `--secs`).
pub(crate) const A_PAIRS: usize = 2_000;
/// Scenario A: pairs per contender per turn (the contenders take turns).
pub(crate) const A_BLOCK: usize = 20;
/// Scenario B: tasks, each on its own key.
pub(crate) const B_TASKS: usize = 64;
/// Scenario C: tasks on one key.
pub(crate) const C_TASKS: usize = 8;
/// Scenario C: how long a holder keeps the lock.
pub(crate) const C_HOLD: Duration = Duration::from_millis(1);
/// Lock + release pairs per contender before any measurement (connections, scripts).
pub(crate) const WARMUP_PAIRS: usize = 50;
/// Which proxy black-holes in scenario D (and is far away in G).
pub(crate) const FAULTED_NODE: usize = 4;
/// rslock tuned for contention: retries (bounded) and the upper bound of its random
/// pause between rounds (rslock sleeps uniformly in `0..delay` whole milliseconds).
pub(crate) const RSLOCK_TUNED_RETRIES: u32 = 3_000;
pub(crate) const RSLOCK_TUNED_DELAY: Duration = Duration::from_millis(5);
/// quorate tuned for contention.
pub(crate) const QUORATE_TUNED_DELAY: Duration = Duration::from_millis(1);
pub(crate) const QUORATE_TUNED_JITTER: Duration = Duration::from_millis(5);

pub(crate) type BoxError = Box<dyn Error + Send + Sync>;

mod contender;
mod floor;
mod report;
mod scenario_a;
mod scenario_b;
mod scenario_c;
mod scenario_d;
mod scenario_e;
mod scenario_p;
mod scenario_s;

use contender::*;
use floor::*;
use report::*;
use scenario_a::*;
use scenario_b::*;
use scenario_c::*;
use scenario_d::*;
use scenario_e::*;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), BoxError> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().is_some_and(|a| a == "--child") {
        return scenario_p::child(&argv[1..]).await;
    }
    let args = match Args::parse(argv.into_iter()) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            eprintln!(
                "usage: cargo run --release -p quorate-bench --features bench \
                 [-- [A] [B] [C] [D] [E] [G] [P] [S] [--secs N]]"
            );
            std::process::exit(2);
        }
    };
    print_machine(&args);

    let cluster = Cluster::start(5).await?;
    let urls = cluster.urls();
    println!("nodes: 5 local redis-server processes: {}", urls.join(" "));
    println!(
        "ttl {} s for every library; quorate: defaults = Redlock::connect + lock \
         (retry 50 ms + jitter 50 ms, acquire timeout 10 s), tuned = retry {} ms + jitter {} ms; \
         rslock {}: defaults = 3 tries, pause 0..200 ms, tuned = {} tries, pause 0..{} ms; \
         floor: raw fred, node timeout {} ms, pause 1..5 ms, deadline {} s",
        TTL.as_secs(),
        QUORATE_TUNED_DELAY.as_millis(),
        QUORATE_TUNED_JITTER.as_millis(),
        RSLOCK_VERSION,
        RSLOCK_TUNED_RETRIES,
        RSLOCK_TUNED_DELAY.as_millis(),
        FLOOR_NODE_TIMEOUT.as_millis(),
        ACQUIRE_DEADLINE.as_secs()
    );

    let direct = Contenders::connect(&urls).await?;
    direct.warm_up("warmup").await;

    for scenario in &args.scenarios {
        match scenario {
            'A' => scenario_a(&direct, "A", &args).await,
            'B' => scenario_b(&direct, &args).await,
            'C' => {
                scenario_c(&direct, "C", &args).await;
                scenario_c_own_clients(&urls, &args).await?;
            }
            'P' => scenario_p::scenario_p(&cluster, &args).await?,
            'D' => scenario_d(&cluster, &args).await?,
            'G' => scenario_g(&cluster, &args).await?,
            'E' => scenario_e(&cluster, &args).await?,
            'S' => scenario_s::scenario_s(&cluster, &args).await?,
            other => println!("\n== {other}: unknown scenario"),
        }
    }
    println!("\ndone; load average now {}", load_average());
    drop(direct);
    drop(cluster);
    Ok(())
}

pub(crate) const RSLOCK_VERSION: &str = "0.10";

// ---------------------------------------------------------------------------------------
// Arguments and machine

#[derive(Debug)]
pub(crate) struct Args {
    pub(crate) scenarios: Vec<char>,
    pub(crate) secs: Duration,
}

impl Args {
    fn parse(args: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut scenarios = Vec::new();
        let mut secs = Duration::from_secs(5);
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            if arg == "--secs" {
                secs = parse_secs(&args.next().ok_or("--secs needs a number")?)?;
            } else if let Some(value) = arg.strip_prefix("--secs=") {
                secs = parse_secs(value)?;
            } else {
                for c in arg.chars().filter(|c| *c != ',') {
                    let c = c.to_ascii_uppercase();
                    if !('A'..='E').contains(&c) && !['P', 'G', 'S'].contains(&c) {
                        return Err(format!("unknown scenario `{c}` (A..E, G, P, S)"));
                    }
                    if !scenarios.contains(&c) {
                        scenarios.push(c);
                    }
                }
            }
        }
        if scenarios.is_empty() {
            scenarios = vec!['A', 'B', 'C', 'P', 'D', 'G', 'E', 'S'];
        }
        Ok(Args { scenarios, secs })
    }
}

/// The value of `--secs`: a number of seconds within 0.1..=600.
pub(crate) fn parse_secs(value: &str) -> Result<Duration, String> {
    let n: f64 = value
        .parse()
        .map_err(|_| format!("--secs: not a number: {value}"))?;
    if !(0.1..=600.0).contains(&n) {
        return Err(format!("--secs must be within 0.1..=600, not {n}"));
    }
    Ok(Duration::from_secs_f64(n))
}

pub(crate) fn print_machine(args: &Args) {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"));
    println!("quorate side-by-side benchmark (quorate vs rslock vs raw-fred floor)");
    println!(
        "machine: {cores} cores (available_parallelism), load average {}",
        load_average()
    );
    println!(
        "scenarios: {}; timed scenarios run {:.1} s each; tokio multi-thread runtime",
        args.scenarios.iter().collect::<String>(),
        args.secs.as_secs_f64()
    );
}

pub(crate) fn load_average() -> String {
    match std::fs::read_to_string("/proc/loadavg") {
        Ok(text) => text
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        Err(e) => format!("unknown ({e})"),
    }
}

/// Context switches of this process so far, voluntary and not, summed over
/// its threads (`/proc/self/task/*/status`; 0 where that is not readable):
/// each is a thread going to sleep or being put aside, which is what a task
/// hop between threads costs.
pub(crate) fn context_switches() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

// ---------------------------------------------------------------------------------------
// Contenders: one enum, so every scenario drives all three libraries the same way
