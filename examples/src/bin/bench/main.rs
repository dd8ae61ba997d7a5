//! Side-by-side benchmark: quorate vs rslock (the best Rust peer on
//! crates.io) vs a hand-written floor (raw fred: `SET NX PX` to every node plus a
//! scripted compare-and-delete), on the same 5 local `redis-server` nodes, in one run.
//! It measures and prints; it asserts nothing about speed.
//!
//! The one command:
//!
//! ```sh
//! cargo run --release -p quorate-examples --features bench --bin bench
//! ```
//!
//! Optional arguments after `--`: the scenario letters to run (default: all), and
//! `--secs N` for the timed scenarios (default 5), e.g.
//! `cargo run --release -p quorate-examples --features bench --bin bench -- A C --secs 2`.
//!
//! Scenarios:
//! - A: one task, one key, uncontended lock + release pairs (up to 2,000, at most `--secs`
//!   of each library's own time; the libraries take turns, 20 pairs at a time, so machine
//!   noise falls on all alike): p50/p99 of the lock call and of the pair, pairs/s.
//! - B: 64 tasks on 64 distinct keys for `--secs`: pairs/s in total, failed lock calls.
//! - C: 8 tasks on one key, each holding 1 ms then releasing, for `--secs`:
//!   acquisitions/s, p50/p99 wait (lock call start to grant), lock calls that failed
//!   outright; each library at its defaults and at a tuned setting. Then the same with
//!   a client of its own per task ("C (own clients)": 8 clients in one process;
//!   quorate at its defaults and with `fair(true)`).
//! - P (`processes.rs`): 8 and then 16 separate processes (children of this program,
//!   each with its own client, one task) on one key, 1 ms holds, for `--secs`:
//!   grants/s, wait p50/p99, failed calls, per-process min/max grants, Jain's fairness
//!   index, client CPU per grant (all children), server script calls per grant per node
//!   (`INFO commandstats`) and overlaps across processes (wall-clock hold intervals).
//! - D: A and C again with all clients connected through 5 TCP fault proxies, proxy 4
//!   black-holing (a silent, partitioned node).
//! - E: 10,000 held auto-extended quorate locks for `--secs`: extension requests per
//!   second per node (from each server's `INFO commandstats`), the longest command each
//!   server ran meanwhile (its `SLOWLOG`) and the client's CPU (from `/proc/self/stat`).
//!   rslock and the floor have no auto-extension; the row "one request per lock" is the
//!   arithmetic for a client that extends each lock on its own at the same interval.
//!
//! Every node runs on loopback; every loop is bounded in count and time; every lock call
//! is bounded by its library's own limit (quorate `acquire_timeout`, rslock's retry
//! count, the floor's deadline) and, as a safety net, by [`LOCK_CAP`].
//!
//! Requires `redis-server` on PATH (or `$QUORATE_REDIS_SERVER`); `bash tests/run.sh`
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
use quorate_testkit::{Cluster, Fault, FaultProxy};
use tokio::time::{sleep, timeout, Instant};

/// Lease ttl for every library (long enough that no hold in this program expires).
const TTL: Duration = Duration::from_secs(5);
/// How long quorate (`acquire_timeout`) and the floor (deadline) keep retrying.
const ACQUIRE_DEADLINE: Duration = Duration::from_secs(10);
/// The floor's bound on one node call: quorate's default node timeout for a 5 s ttl
/// (ttl/100 within 50..500 ms), so that both give up on a silent node equally soon.
const FLOOR_NODE_TIMEOUT: Duration = Duration::from_millis(50);
/// Safety net around every lock call of every library (none should reach it).
const LOCK_CAP: Duration = Duration::from_secs(15);
/// Safety net around every release.
const RELEASE_CAP: Duration = Duration::from_secs(5);
/// Scenario A: most pairs per contender (also stopped after `--secs`).
const A_PAIRS: usize = 2_000;
/// Scenario A: pairs per contender per turn (the contenders take turns).
const A_BLOCK: usize = 20;
/// Scenario B: tasks, each on its own key.
const B_TASKS: usize = 64;
/// Scenario C: tasks on one key.
const C_TASKS: usize = 8;
/// Scenario C: how long a holder keeps the lock.
const C_HOLD: Duration = Duration::from_millis(1);
/// Lock + release pairs per contender before any measurement (connections, scripts).
const WARMUP_PAIRS: usize = 50;
/// Which proxy black-holes in scenario D.
const DEAD_NODE: usize = 4;
/// rslock tuned for contention: retries (bounded) and the upper bound of its random
/// pause between rounds (rslock sleeps uniformly in `0..delay` whole milliseconds).
const RSLOCK_TUNED_RETRIES: u32 = 3_000;
const RSLOCK_TUNED_DELAY: Duration = Duration::from_millis(5);
/// quorate tuned for contention.
const QUORATE_TUNED_DELAY: Duration = Duration::from_millis(1);
const QUORATE_TUNED_JITTER: Duration = Duration::from_millis(5);

type BoxError = Box<dyn Error + Send + Sync>;

mod processes;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), BoxError> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().is_some_and(|a| a == "--child") {
        return processes::child(&argv[1..]).await;
    }
    let args = match Args::parse(argv.into_iter()) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            eprintln!(
                "usage: cargo run --release -p quorate-examples --features bench --bin bench \
                 [-- [A] [B] [C] [D] [E] [P] [--secs N]]"
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
            'P' => processes::scenario_p(&cluster, &args).await?,
            'D' => scenario_d(&cluster, &args).await?,
            'E' => scenario_e(&cluster, &args).await?,
            other => println!("\n== {other}: unknown scenario"),
        }
    }
    println!("\ndone; load average now {}", load_average());
    drop(direct);
    drop(cluster);
    Ok(())
}

const RSLOCK_VERSION: &str = "0.10";

// ---------------------------------------------------------------------------------------
// Arguments and machine

#[derive(Debug)]
struct Args {
    scenarios: Vec<char>,
    secs: Duration,
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
                    if !('A'..='E').contains(&c) && c != 'P' {
                        return Err(format!("unknown scenario `{c}` (A..E, P)"));
                    }
                    if !scenarios.contains(&c) {
                        scenarios.push(c);
                    }
                }
            }
        }
        if scenarios.is_empty() {
            scenarios = vec!['A', 'B', 'C', 'P', 'D', 'E'];
        }
        Ok(Args { scenarios, secs })
    }
}

/// The value of `--secs`: a number of seconds within 0.1..=600.
fn parse_secs(value: &str) -> Result<Duration, String> {
    let n: f64 = value
        .parse()
        .map_err(|_| format!("--secs: not a number: {value}"))?;
    if !(0.1..=600.0).contains(&n) {
        return Err(format!("--secs must be within 0.1..=600, not {n}"));
    }
    Ok(Duration::from_secs_f64(n))
}

fn print_machine(args: &Args) {
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

fn load_average() -> String {
    match std::fs::read_to_string("/proc/loadavg") {
        Ok(text) => text
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        Err(e) => format!("unknown ({e})"),
    }
}

// ---------------------------------------------------------------------------------------
// Contenders: one enum, so every scenario drives all three libraries the same way

/// One library at one setting.
#[derive(Clone, Debug)]
struct Contender {
    library: &'static str,
    setting: &'static str,
    client: LockClient,
}

#[derive(Clone, Debug)]
enum LockClient {
    /// `options: None` = `redlock.lock(key, TTL)` with the connect defaults.
    Quorate {
        redlock: Redlock,
        options: Option<LockOptions>,
    },
    /// `redlock.lock(key, TTL)` with the connect defaults, the guard then
    /// dropped instead of released (Rust's usual way to end a lock).
    QuorateDropping(Redlock),
    Rslock(rslock::LockManager),
    Floor(Arc<Floor>),
}

/// A held lock of any library.
#[derive(Debug)]
enum Held {
    Quorate(LockGuard),
    /// Ends by drop (see [`LockClient::QuorateDropping`]).
    QuorateDropped(LockGuard),
    Rslock(rslock::Lock),
    Floor {
        floor: Arc<Floor>,
        key: String,
        token: String,
    },
}

impl Contender {
    fn label(&self) -> String {
        format!("{} {}", self.library, self.setting)
    }

    /// One lock call, bounded by the library's own limit and by [`LOCK_CAP`].
    /// Errors are short kinds, for counting.
    async fn lock(&self, key: &str) -> Result<Held, String> {
        let call = async {
            match &self.client {
                LockClient::Quorate {
                    redlock,
                    options: None,
                } => redlock
                    .lock(key, TTL)
                    .await
                    .map(Held::Quorate)
                    .map_err(|e| quorate_kind(&e)),
                LockClient::Quorate {
                    redlock,
                    options: Some(options),
                } => redlock
                    .lock_with([key], options)
                    .await
                    .map(Held::Quorate)
                    .map_err(|e| quorate_kind(&e)),
                LockClient::QuorateDropping(redlock) => redlock
                    .lock(key, TTL)
                    .await
                    .map(Held::QuorateDropped)
                    .map_err(|e| quorate_kind(&e)),
                LockClient::Rslock(manager) => manager
                    .lock(key, TTL)
                    .await
                    .map(Held::Rslock)
                    .map_err(|e| format!("rslock: {e}")),
                LockClient::Floor(floor) => floor.lock(key).await.map(|token| Held::Floor {
                    floor: Arc::clone(floor),
                    key: key.to_owned(),
                    token,
                }),
            }
        };
        match timeout(LOCK_CAP, call).await {
            Ok(result) => result,
            Err(_) => Err(format!("hit the {} s safety cap", LOCK_CAP.as_secs())),
        }
    }

    /// Warm-up pairs on a private key, so connections and scripts are ready.
    async fn warm_up(&self, key: &str) -> usize {
        let mut failed = 0;
        for _ in 0..WARMUP_PAIRS {
            match self.lock(key).await {
                Ok(held) => {
                    if held.release().await.is_err() {
                        failed += 1;
                    }
                }
                Err(_) => failed += 1,
            }
        }
        failed
    }
}

impl Held {
    /// Releases, bounded by [`RELEASE_CAP`]. rslock's unlock reports nothing.
    async fn release(self) -> Result<(), String> {
        let call = async {
            match self {
                Held::Quorate(guard) => guard
                    .release()
                    .await
                    .map(drop)
                    .map_err(|e| quorate_kind(&e)),
                Held::QuorateDropped(guard) => {
                    drop(guard);
                    Ok(())
                }
                Held::Rslock(lock) => {
                    lock.release().await;
                    Ok(())
                }
                Held::Floor { floor, key, token } => {
                    floor.unlock(&key, &token).await;
                    Ok(())
                }
            }
        };
        match timeout(RELEASE_CAP, call).await {
            Ok(result) => result,
            Err(_) => Err(format!("release hit the {} s cap", RELEASE_CAP.as_secs())),
        }
    }
}

fn quorate_kind(error: &quorate_redlock::Error) -> String {
    use quorate_redlock::Error;
    match error {
        Error::Taken { .. } => "quorate: taken".to_owned(),
        Error::NoQuorum { .. } => "quorate: no quorum".to_owned(),
        Error::Expired => "quorate: expired".to_owned(),
        other => format!("quorate: {other}"),
    }
}

/// Every contender, connected to one set of node URLs.
#[derive(Debug)]
struct Contenders {
    quorate_default: Contender,
    quorate_tuned: Contender,
    /// quorate with every request sent as its own command (no batching).
    quorate_unbatched: Contender,
    rslock_default: Contender,
    rslock_tuned: Contender,
    floor: Contender,
}

impl Contenders {
    async fn connect(urls: &[String]) -> Result<Contenders, BoxError> {
        let redlock = Redlock::connect(urls).await?;
        let unbatched = Redlock::builder()
            .urls(urls)
            .fred_settings(quorate_redlock::FredSettings {
                max_batch: 1,
                ..Default::default()
            })
            .build()
            .await?;
        let tuned = LockOptions::new()
            .ttl(TTL)
            .retry_delay(QUORATE_TUNED_DELAY)
            .retry_jitter(QUORATE_TUNED_JITTER)
            .acquire_timeout(Some(ACQUIRE_DEADLINE));
        // rslock: `new` panics on a bad URL (it unwraps `Client::open`) and connects
        // lazily on the first command; the warm-up pays for that.
        let rslock_default = rslock::LockManager::new(urls.to_vec());
        let mut rslock_tuned = rslock::LockManager::new(urls.to_vec());
        rslock_tuned.set_retry(RSLOCK_TUNED_RETRIES, RSLOCK_TUNED_DELAY);
        let floor = Arc::new(Floor::connect(urls).await?);
        Ok(Contenders {
            quorate_default: Contender {
                library: "quorate",
                setting: "defaults",
                client: LockClient::Quorate {
                    redlock: redlock.clone(),
                    options: None,
                },
            },
            quorate_tuned: Contender {
                library: "quorate",
                setting: "tuned",
                client: LockClient::Quorate {
                    redlock,
                    options: Some(tuned),
                },
            },
            quorate_unbatched: Contender {
                library: "quorate",
                setting: "unbatched",
                client: LockClient::Quorate {
                    redlock: unbatched,
                    options: None,
                },
            },
            rslock_default: Contender {
                library: "rslock",
                setting: "defaults",
                client: LockClient::Rslock(rslock_default),
            },
            rslock_tuned: Contender {
                library: "rslock",
                setting: "tuned",
                client: LockClient::Rslock(rslock_tuned),
            },
            floor: Contender {
                library: "floor",
                setting: "raw fred",
                client: LockClient::Floor(floor),
            },
        })
    }

    /// The uncontended set: one setting per library (retry settings do not matter
    /// without contention).
    fn uncontended(&self) -> [&Contender; 3] {
        [&self.quorate_default, &self.rslock_default, &self.floor]
    }

    /// B's set: the uncontended set and quorate without batching.
    fn many_keys(&self) -> [&Contender; 4] {
        [
            &self.quorate_default,
            &self.quorate_unbatched,
            &self.rslock_default,
            &self.floor,
        ]
    }

    /// The contended set: each library at its defaults and at its tuned setting.
    fn contended(&self) -> [&Contender; 5] {
        [
            &self.quorate_default,
            &self.quorate_tuned,
            &self.rslock_default,
            &self.rslock_tuned,
            &self.floor,
        ]
    }

    async fn warm_up(&self, tag: &str) {
        for c in self
            .contended()
            .into_iter()
            .chain([&self.quorate_unbatched])
        {
            let key = format!("bench:{tag}:{}:{}", c.library, c.setting);
            let failed = c.warm_up(&key).await;
            if failed > 0 {
                println!(
                    "warning: {}: {failed} of {WARMUP_PAIRS} warm-up pairs failed",
                    c.label()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The floor: the least a Redlock client must do, by hand on raw fred

/// One fred client per node; lock = `SET key token NX PX ttl` to all nodes at once,
/// granted with a majority (else compare-and-delete everywhere); unlock =
/// compare-and-delete script on all nodes at once. No metrics, no tracing, no
/// error reports, no early decision: it waits for every node (each call bounded by
/// [`FLOOR_NODE_TIMEOUT`]).
#[derive(Debug)]
struct Floor {
    clients: Vec<FredClient>,
    quorum: usize,
    unlock: Script,
}

const FLOOR_UNLOCK: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
else
  return 0
end
"#;

impl Floor {
    async fn connect(urls: &[String]) -> Result<Floor, BoxError> {
        let mut clients = Vec::with_capacity(urls.len());
        for url in urls {
            let config = Config::from_url(url)?;
            // The same client settings as quorate's FredNode: 1 s connect, a command
            // sent at most once, reconnect forever with the delay capped at 1 s.
            let connection = ConnectionConfig {
                connection_timeout: Duration::from_secs(1),
                internal_command_timeout: Duration::from_secs(1),
                max_command_attempts: 1,
                ..ConnectionConfig::default()
            };
            let performance = PerformanceConfig {
                default_command_timeout: Duration::from_secs(5),
                ..PerformanceConfig::default()
            };
            let policy = ReconnectPolicy::new_exponential(0, 10, 1_000, 2);
            let client = FredClient::new(config, Some(performance), Some(connection), Some(policy));
            // `init` connects and waits for the first connection; the handle of the
            // connection task is not needed (the task lives as long as the client).
            let task = timeout(Duration::from_secs(5), client.init())
                .await
                .map_err(|_| format!("floor: connecting to {url} timed out"))??;
            drop(task);
            clients.push(client);
        }
        let unlock = Script::from_lua(FLOOR_UNLOCK);
        Ok(Floor {
            quorum: clients.len() / 2 + 1,
            clients,
            unlock,
        })
    }

    /// Retries rounds with a 1..5 ms random pause until [`ACQUIRE_DEADLINE`].
    async fn lock(&self, key: &str) -> Result<String, String> {
        let token = format!("{:032x}", rand::random::<u128>());
        let deadline = Instant::now() + ACQUIRE_DEADLINE;
        loop {
            if self.round(key, &token).await {
                return Ok(token);
            }
            let pause = Duration::from_millis(rand::random_range(1..=5));
            if Instant::now() + pause >= deadline {
                return Err("floor: deadline".to_owned());
            }
            sleep(pause).await;
        }
    }

    async fn round(&self, key: &str, token: &str) -> bool {
        let started = Instant::now();
        let ttl_ms = i64::try_from(TTL.as_millis()).unwrap_or(i64::MAX);
        let replies = join_all(self.clients.iter().map(|client| {
            timeout(
                FLOOR_NODE_TIMEOUT,
                client.set::<Option<String>, _, _>(
                    key,
                    token,
                    Some(Expiration::PX(ttl_ms)),
                    Some(SetOptions::NX),
                    false,
                ),
            )
        }))
        .await;
        let granted = replies
            .iter()
            .filter(|reply| matches!(reply, Ok(Ok(Some(ok))) if ok == "OK"))
            .count();
        // Validity as in the Redlock description: ttl - elapsed - drift (1% + 2 ms).
        let drift = TTL / 100 + Duration::from_millis(2);
        if granted >= self.quorum && started.elapsed() + drift < TTL {
            return true;
        }
        self.unlock(key, token).await;
        false
    }

    /// Compare-and-delete on every node at once; returns how many deleted.
    async fn unlock(&self, key: &str, token: &str) -> usize {
        let replies = join_all(self.clients.iter().map(|client| {
            timeout(
                FLOOR_NODE_TIMEOUT,
                self.unlock
                    .evalsha_with_reload::<i64, _, _>(client, key, token),
            )
        }))
        .await;
        replies
            .iter()
            .filter(|reply| matches!(reply, Ok(Ok(1))))
            .count()
    }
}

// ---------------------------------------------------------------------------------------
// Figures

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// Nearest-rank percentile of sorted durations (zero when empty).
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn mean(durations: &[Duration]) -> Option<Duration> {
    let n = u32::try_from(durations.len()).ok().filter(|n| *n > 0)?;
    Some(durations.iter().sum::<Duration>() / n)
}

/// The headers of [`grant_cells`].
const GRANT_HEADERS: [&str; 6] = [
    "grants", "grants/s", "wait p50", "wait p99", "failed", "fail p50",
];

/// The cells every contended table starts with ([`GRANT_HEADERS`]): grants,
/// grants/s, wait p50 and p99, failed calls and how long those took (p50).
fn grant_cells(sorted_waits: &[Duration], sorted_failed: &[Duration], rate: f64) -> Vec<String> {
    vec![
        sorted_waits.len().to_string(),
        format!("{rate:.0}"),
        fmt_ms(percentile(sorted_waits, 0.50)),
        fmt_ms(percentile(sorted_waits, 0.99)),
        sorted_failed.len().to_string(),
        if sorted_failed.is_empty() {
            "-".to_owned()
        } else {
            fmt_ms(percentile(sorted_failed, 0.50))
        },
    ]
}

fn fmt_ms(d: Duration) -> String {
    format!("{:.3} ms", ms(d))
}

/// One table row: the figures as text, plus the figures ratios are taken of.
#[derive(Debug)]
struct Row {
    library: &'static str,
    setting: &'static str,
    cells: Vec<String>,
    keys: Vec<f64>,
}

/// Prints a table; `key_names` name the figures in `Row::keys`, each given as a
/// ratio to the floor row and to the rslock row of the same setting (else rslock's
/// defaults).
fn print_table(title: &str, headers: &[&str], key_names: &[&str], rows: &[Row], notes: &[String]) {
    println!("\n== {title}");
    let floor = rows.iter().find(|r| r.library == "floor");
    let ratio_cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let rslock = rows
                .iter()
                .find(|r| r.library == "rslock" && r.setting == row.setting)
                .or_else(|| rows.iter().find(|r| r.library == "rslock"));
            key_names
                .iter()
                .enumerate()
                .map(|(i, _)| {
                    let value = row.keys.get(i).copied().unwrap_or(f64::NAN);
                    let to =
                        |other: Option<&Row>, name: &str| match other.and_then(|o| o.keys.get(i)) {
                            Some(base) if *base > 0.0 && value.is_finite() => {
                                format!("{} {name}", fmt_ratio(value / base))
                            }
                            _ => format!("- {name}"),
                        };
                    format!("{}, {}", to(floor, "floor"), to(rslock, "rslock"))
                })
                .collect()
        })
        .collect();
    let mut header: Vec<String> = vec!["library".into(), "setting".into()];
    header.extend(headers.iter().map(|h| (*h).to_owned()));
    header.extend(key_names.iter().map(|k| format!("{k} ratio")));
    let lines: Vec<Vec<String>> = rows
        .iter()
        .zip(&ratio_cells)
        .map(|(row, ratios)| {
            let mut line = vec![row.library.to_owned(), row.setting.to_owned()];
            line.extend(row.cells.iter().cloned());
            line.extend(ratios.iter().cloned());
            line
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |line: &[String]| {
        line.iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    println!("{}", render(&header));
    println!(
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-")
    );
    for line in &lines {
        println!("{}", render(line));
    }
    for note in notes {
        println!("  {note}");
    }
}

/// `1.05x`; more digits for very small ratios, fewer for very large ones.
fn fmt_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}x")
    } else if r >= 0.1 {
        format!("{r:.2}x")
    } else {
        format!("{r:.4}x")
    }
}

fn failure_note(label: &str, failures: &BTreeMap<String, usize>) -> Option<String> {
    if failures.is_empty() {
        return None;
    }
    let kinds: Vec<String> = failures.iter().map(|(k, n)| format!("{n}× {k}")).collect();
    Some(format!("{label} failures: {}", kinds.join(", ")))
}

// ---------------------------------------------------------------------------------------
// Scenario A (and the A-shape of D): one task, one key, uncontended

#[derive(Debug, Default)]
struct PairsRun {
    lock: Vec<Duration>,
    pair: Vec<Duration>,
    failures: BTreeMap<String, usize>,
    elapsed: Duration,
}

async fn sequential_pairs(c: &Contender, key: &str, max_pairs: usize, secs: Duration) -> PairsRun {
    let mut run = PairsRun::default();
    let start = Instant::now();
    for _ in 0..max_pairs {
        if start.elapsed() >= secs {
            break;
        }
        let t0 = Instant::now();
        match c.lock(key).await {
            Ok(held) => {
                let locked = t0.elapsed();
                let released = held.release().await;
                let pair = t0.elapsed();
                match released {
                    Ok(()) => {
                        run.lock.push(locked);
                        run.pair.push(pair);
                    }
                    Err(kind) => *run.failures.entry(kind).or_default() += 1,
                }
            }
            Err(kind) => *run.failures.entry(kind).or_default() += 1,
        }
    }
    run.elapsed = start.elapsed();
    run.lock.sort();
    run.pair.sort();
    run
}

/// Pairs from every contender in turn, `A_BLOCK` at a time, so that a noisy
/// moment on the machine falls on all of them alike; each stops at `max_pairs`
/// or when its own pairs took `secs` in all.
async fn interleaved_pairs(
    set: &[&Contender],
    tag: &str,
    max_pairs: usize,
    secs: Duration,
) -> Vec<PairsRun> {
    let mut runs: Vec<PairsRun> = set.iter().map(|_| PairsRun::default()).collect();
    loop {
        let mut ran = false;
        for (c, run) in set.iter().zip(runs.iter_mut()) {
            let done = run.lock.len() + run.failures.values().sum::<usize>();
            if done >= max_pairs || run.elapsed >= secs {
                continue;
            }
            ran = true;
            let key = format!("bench:{tag}:{}", c.library);
            let block = A_BLOCK.min(max_pairs - done);
            let part = sequential_pairs(c, &key, block, secs - run.elapsed).await;
            run.lock.extend(part.lock);
            run.pair.extend(part.pair);
            for (kind, n) in part.failures {
                *run.failures.entry(kind).or_default() += n;
            }
            run.elapsed += part.elapsed;
        }
        if !ran {
            break;
        }
    }
    for run in &mut runs {
        run.lock.sort();
        run.pair.sort();
    }
    runs
}

async fn scenario_a(set: &Contenders, tag: &str, args: &Args) {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let contenders = set.uncontended();
    let runs = interleaved_pairs(&contenders, tag, A_PAIRS, args.secs).await;
    for (c, run) in contenders.iter().zip(&runs) {
        rows.push(pairs_row(c, run));
        notes.extend(failure_note(&c.label(), &run.failures));
    }
    print_table(
        &format!(
            "{tag}: uncontended lock + release, 1 task, 1 key (up to {A_PAIRS} pairs, at most {:.1} s)",
            args.secs.as_secs_f64()
        ),
        &[
            "pairs", "failed", "lock p50", "lock p99", "pair p50", "pair p99", "pairs/s",
        ],
        &["lock p50", "lock p99", "pairs/s"],
        &rows,
        &notes,
    );
}

fn pairs_row(c: &Contender, run: &PairsRun) -> Row {
    let failed: usize = run.failures.values().sum();
    let rate = run.pair.len() as f64 / run.elapsed.as_secs_f64().max(1e-9);
    let lock_p50 = percentile(&run.lock, 0.50);
    Row {
        library: c.library,
        setting: c.setting,
        cells: vec![
            run.pair.len().to_string(),
            failed.to_string(),
            fmt_ms(lock_p50),
            fmt_ms(percentile(&run.lock, 0.99)),
            fmt_ms(percentile(&run.pair, 0.50)),
            fmt_ms(percentile(&run.pair, 0.99)),
            format!("{rate:.0}"),
        ],
        keys: vec![ms(lock_p50), ms(percentile(&run.lock, 0.99)), rate],
    }
}

// ---------------------------------------------------------------------------------------
// Scenario B: 64 tasks on distinct keys

async fn scenario_b(set: &Contenders, args: &Args) {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for c in set.many_keys() {
        let start = Instant::now();
        let cpu_before = cpu_time();
        let tasks: Vec<_> = (0..B_TASKS)
            .map(|i| {
                let c = c.clone();
                let secs = args.secs;
                tokio::spawn(async move {
                    let key = format!("bench:B:{}:{}:{i}", c.library, c.setting);
                    // Bounded by time; the count bound is generous (>1 pair per 10 µs).
                    sequential_pairs(&c, &key, 100_000 * secs.as_secs().max(1) as usize, secs).await
                })
            })
            .collect();
        let mut pairs = Vec::new();
        let mut failures = BTreeMap::new();
        for task in tasks {
            match task.await {
                Ok(run) => {
                    pairs.extend(run.pair);
                    for (kind, n) in run.failures {
                        *failures.entry(kind).or_default() += n;
                    }
                }
                Err(e) => *failures.entry(format!("task: {e}")).or_default() += 1,
            }
        }
        let elapsed = start.elapsed();
        // This process's CPU per pair: the client library's own cost (the
        // servers are other processes).
        let cpu_per_pair = match (cpu_before, cpu_time()) {
            (Some(before), Some(after)) if !pairs.is_empty() => format!(
                "{:.1} µs",
                after.saturating_sub(before).as_secs_f64() * 1e6 / pairs.len() as f64
            ),
            _ => "-".to_owned(),
        };
        pairs.sort();
        let failed: usize = failures.values().sum();
        let rate = pairs.len() as f64 / elapsed.as_secs_f64().max(1e-9);
        rows.push(Row {
            library: c.library,
            setting: c.setting,
            cells: vec![
                pairs.len().to_string(),
                failed.to_string(),
                fmt_ms(percentile(&pairs, 0.50)),
                fmt_ms(percentile(&pairs, 0.99)),
                format!("{rate:.0}"),
                cpu_per_pair,
            ],
            keys: vec![rate],
        });
        notes.extend(failure_note(&c.label(), &failures));
    }
    print_table(
        &format!(
            "B: {B_TASKS} tasks on {B_TASKS} distinct keys for {:.1} s",
            args.secs.as_secs_f64()
        ),
        &[
            "pairs",
            "failed",
            "pair p50",
            "pair p99",
            "pairs/s",
            "client CPU/pair",
        ],
        &["pairs/s"],
        &rows,
        &notes,
    );
}

// ---------------------------------------------------------------------------------------
// Scenario C (and the C-shape of D): 8 tasks on one key

#[derive(Debug, Default)]
struct ContendedRun {
    waits: Vec<Duration>,
    /// How long each grant was held (lock granted to release called).
    holds: Vec<Duration>,
    failed_waits: Vec<Duration>,
    failures: BTreeMap<String, usize>,
    release_failures: usize,
}

/// The critical section: `C_HOLD` of work, as a thread sleep (about 1.1 ms on
/// Linux) with the runtime's other tasks moved off this worker meanwhile
/// (`block_in_place`). A tokio `sleep` counts whole milliseconds and would hold
/// about 2 ms. Returns how long it held.
async fn hold() -> Duration {
    let start = Instant::now();
    tokio::task::block_in_place(|| std::thread::sleep(C_HOLD));
    start.elapsed()
}

/// `C_TASKS` tasks on `key` for `secs`; task i uses `clients[i % clients.len()]`
/// (one shared client, or one each).
async fn contended(
    clients: &[Contender],
    key: &str,
    secs: Duration,
) -> (ContendedRun, Duration, usize) {
    let holders = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + secs;
    let tasks: Vec<_> = (0..C_TASKS)
        .map(|i| {
            let c = clients[i % clients.len()].clone();
            let key = key.to_owned();
            let holders = Arc::clone(&holders);
            let overlaps = Arc::clone(&overlaps);
            tokio::spawn(async move {
                let mut run = ContendedRun::default();
                // Bounded by time; the count bound is far above any possible rate.
                for _ in 0..1_000_000 {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let t0 = Instant::now();
                    match c.lock(&key).await {
                        Ok(held) => {
                            run.waits.push(t0.elapsed());
                            if holders.fetch_add(1, Ordering::SeqCst) > 0 {
                                overlaps.fetch_add(1, Ordering::SeqCst);
                            }
                            run.holds.push(hold().await);
                            holders.fetch_sub(1, Ordering::SeqCst);
                            if held.release().await.is_err() {
                                run.release_failures += 1;
                            }
                        }
                        Err(kind) => {
                            run.failed_waits.push(t0.elapsed());
                            *run.failures.entry(kind).or_default() += 1;
                        }
                    }
                }
                run
            })
        })
        .collect();
    let mut total = ContendedRun::default();
    for task in tasks {
        match task.await {
            Ok(run) => {
                total.waits.extend(run.waits);
                total.holds.extend(run.holds);
                total.failed_waits.extend(run.failed_waits);
                total.release_failures += run.release_failures;
                for (kind, n) in run.failures {
                    *total.failures.entry(kind).or_default() += n;
                }
            }
            Err(e) => *total.failures.entry(format!("task: {e}")).or_default() += 1,
        }
    }
    let elapsed = start.elapsed();
    total.waits.sort();
    total.failed_waits.sort();
    (total, elapsed, overlaps.load(Ordering::SeqCst))
}

async fn scenario_c(set: &Contenders, tag: &str, args: &Args) {
    let title = if tag == "C" {
        format!(
            "C: {C_TASKS} tasks on 1 key, hold {} ms, for {:.1} s",
            C_HOLD.as_millis(),
            args.secs.as_secs_f64()
        )
    } else {
        format!(
            "D (C-shape): {C_TASKS} tasks on 1 key, hold {} ms, for {:.1} s, node {DEAD_NODE} black-holed",
            C_HOLD.as_millis(),
            args.secs.as_secs_f64()
        )
    };
    let sets: Vec<Vec<Contender>> = set
        .contended()
        .into_iter()
        .map(|c| vec![c.clone()])
        .collect();
    contended_table(&title, tag, &sets, args).await;
}

/// C with a client of its own per task (8 clients in one process).
async fn scenario_c_own_clients(urls: &[String], args: &Args) -> Result<(), BoxError> {
    let mut sets = Vec::new();
    for which in 0..4 {
        let mut clients = Vec::with_capacity(C_TASKS);
        for _ in 0..C_TASKS {
            let client = processes::connect_one(which, urls).await?;
            client.warm_up("bench:C1:warm").await;
            clients.push(client);
        }
        sets.push(clients);
    }
    let title = format!(
        "C (own clients): {C_TASKS} tasks on 1 key, each with its own client, hold {} ms, for {:.1} s",
        C_HOLD.as_millis(),
        args.secs.as_secs_f64()
    );
    contended_table(&title, "C1", &sets, args).await;
    Ok(())
}

/// Runs each set of clients in turn on a key of its own and prints the table.
async fn contended_table(title: &str, tag: &str, sets: &[Vec<Contender>], args: &Args) {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for clients in sets {
        let c = &clients[0];
        let key = format!("bench:{tag}:{}:{}", c.library, c.setting);
        let (run, elapsed, overlaps) = contended(clients, &key, args.secs).await;
        let rate = run.waits.len() as f64 / elapsed.as_secs_f64().max(1e-9);
        let p99 = percentile(&run.waits, 0.99);
        rows.push(Row {
            library: c.library,
            setting: c.setting,
            cells: [
                grant_cells(&run.waits, &run.failed_waits, rate),
                vec![
                    format!("{:.1} s", elapsed.as_secs_f64()),
                    overlaps.to_string(),
                    mean(&run.holds).map_or_else(|| "-".to_owned(), fmt_ms),
                ],
            ]
            .concat(),
            keys: vec![rate, ms(p99)],
        });
        notes.extend(failure_note(&c.label(), &run.failures));
        if run.release_failures > 0 {
            notes.push(format!(
                "{}: {} releases failed",
                c.label(),
                run.release_failures
            ));
        }
    }
    notes.push(
        "wait = lock call start to grant; failed = lock calls that returned an error \
         (fail p50 = how long those took); elapsed includes calls in flight at the end; \
         overlaps = grants while another task held the lock (must be 0); hold mean = \
         the critical section as measured (a 1 ms thread sleep in block_in_place)"
            .to_owned(),
    );
    print_table(
        title,
        &[
            GRANT_HEADERS.as_slice(),
            &["elapsed", "overlaps", "hold mean"],
        ]
        .concat(),
        &["grants/s", "wait p99"],
        &rows,
        &notes,
    );
}

// ---------------------------------------------------------------------------------------
// Scenario D: one of the 5 nodes black-holed

async fn scenario_d(cluster: &Cluster, args: &Args) -> Result<(), BoxError> {
    let mut proxies = Vec::with_capacity(cluster.len());
    for i in 0..cluster.len() {
        proxies.push(FaultProxy::start(cluster.server(i).addr()).await?);
    }
    let urls: Vec<String> = proxies.iter().map(FaultProxy::url).collect();
    println!(
        "\n-- D: every client reconnected through 5 fault proxies ({}); warming up, then proxy {DEAD_NODE} black-holes",
        urls.join(" ")
    );
    let set = Contenders::connect(&urls).await?;
    set.warm_up("D:warmup").await;
    // The proxies run in this process and add a hop: A through them, with no
    // fault, is the baseline the black-holed figures compare with.
    println!("\n-- D0: A again, through the proxies, before any fault");
    scenario_a(&set, "D0", args).await;
    proxies[DEAD_NODE].set(Fault::Blackhole);

    // A-shape: the count bound is lower, the time bound the same.
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let contenders = set.uncontended();
    let runs = interleaved_pairs(&contenders, "D:A", A_PAIRS, args.secs).await;
    for (c, run) in contenders.iter().zip(&runs) {
        let mut row = pairs_row(c, run);
        // Ratios of p99 here (the figure D is about), then pairs/s.
        row.keys = vec![row.keys[1], row.keys[2]];
        rows.push(row);
        notes.extend(failure_note(&c.label(), &run.failures));
    }
    print_table(
        &format!(
            "D (A-shape): uncontended pairs, node {DEAD_NODE} black-holed (up to {A_PAIRS} pairs, at most {:.1} s)",
            args.secs.as_secs_f64()
        ),
        &["pairs", "failed", "lock p50", "lock p99", "pair p50", "pair p99", "pairs/s"],
        &["lock p99", "pairs/s"],
        &rows,
        &notes,
    );

    scenario_c(&set, "D", args).await;
    proxies[DEAD_NODE].set(Fault::Pass);
    drop(set);
    drop(proxies);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// E: many held, auto-extended locks

/// Scenario E: locks held at once.
const E_LOCKS: usize = 10_000;
/// Scenario E: their ttl; the watchdog extends each after a third of it.
const E_TTL: Duration = Duration::from_secs(3);
/// Scenario E: lock calls in flight while taking the locks.
const E_CONCURRENCY: usize = 256;

/// `cmdstat_<command>` calls on one server since its last `CONFIG RESETSTAT`.
async fn command_calls(cluster: &Cluster, node: usize, command: &str) -> Result<u64, BoxError> {
    let info = cluster
        .server(node)
        .command(&["INFO", "commandstats"])
        .await?
        .as_string()
        .unwrap_or_default();
    let prefix = format!("cmdstat_{command}:calls=");
    Ok(info
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// This process's user + system CPU time, from /proc/self/stat (clock ticks of 10 ms).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // fields after the parenthesised command name; utime and stime are 14th and 15th
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

async fn scenario_e(cluster: &Cluster, args: &Args) -> Result<(), BoxError> {
    println!(
        "\n== E: {E_LOCKS} auto-extended quorate locks held for {:.1} s (ttl {} s, extended \
         every ttl/3)",
        args.secs.as_secs_f64(),
        E_TTL.as_secs()
    );
    let redlock = Redlock::connect(cluster.urls()).await?;
    let options = LockOptions::new().ttl(E_TTL).auto_extend(true);
    let taking = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let workers = (0..E_CONCURRENCY).map(|_| {
        let (redlock, options, next) = (redlock.clone(), options.clone(), next.clone());
        async move {
            let mut held = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= E_LOCKS {
                    return held;
                }
                match timeout(
                    LOCK_CAP,
                    redlock.lock_with([format!("bench:e:{i}")], &options),
                )
                .await
                {
                    Ok(Ok(guard)) => held.push(guard),
                    Ok(Err(error)) => eprintln!("E: lock {i} failed: {error}"),
                    Err(_) => eprintln!("E: lock {i} hit the safety cap"),
                }
            }
        }
    });
    let guards: Vec<LockGuard> = join_all(workers).await.into_iter().flatten().collect();
    println!(
        "took {} locks in {:.2} s",
        guards.len(),
        taking.elapsed().as_secs_f64()
    );

    for node in 0..cluster.len() {
        let server = cluster.server(node);
        server.command(&["CONFIG", "RESETSTAT"]).await?;
        server.command(&["SLOWLOG", "RESET"]).await?;
        server
            .command(&["CONFIG", "SET", "slowlog-log-slower-than", "0"])
            .await?;
    }
    let cpu_before = cpu_time();
    let window = Instant::now();
    sleep(args.secs).await;
    let elapsed = window.elapsed().as_secs_f64();
    let cpu = match (cpu_before, cpu_time()) {
        (Some(before), Some(after)) => format!(
            "{:.1} % of one core ({} ms CPU in {:.1} s)",
            after.saturating_sub(before).as_secs_f64() / elapsed * 100.0,
            after.saturating_sub(before).as_millis(),
            elapsed
        ),
        _ => "unavailable (no /proc/self/stat)".to_owned(),
    };
    let valid = guards.iter().filter(|g| g.is_valid()).count();
    let mut per_node = Vec::new();
    for node in 0..cluster.len() {
        per_node.push(command_calls(cluster, node, "evalsha").await? as f64 / elapsed);
    }
    // How long one extension request kept each server busy (its own
    // measurement, SLOWLOG; every command of the window is logged).
    let mut longest = Vec::new();
    for node in 0..cluster.len() {
        let log = cluster
            .server(node)
            .command(&["SLOWLOG", "GET", "128"])
            .await?;
        let micros = match log {
            quorate_testkit::Reply::Array(Some(entries)) => entries
                .iter()
                .filter_map(|e| match e {
                    quorate_testkit::Reply::Array(Some(fields)) => fields.get(2)?.as_i64(),
                    _ => None,
                })
                .max(),
            _ => None,
        };
        longest.push(micros.map_or("-".to_owned(), |us| format!("{:.1} ms", us as f64 / 1000.0)));
    }
    let naive = guards.len() as f64 / (E_TTL.as_secs_f64() / 3.0);
    let worst = per_node.iter().copied().fold(0.0, f64::max);
    println!("library | setting                   | requests/s per node (nodes 1-5)          | client CPU");
    println!("--------+---------------------------+------------------------------------------+-----------");
    println!(
        "quorate | auto_extend(true), ≤500 locks/request | {} | {cpu}",
        per_node
            .iter()
            .map(|r| format!("{r:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "(per lock)| one request per lock       | {naive:.0} (arithmetic: {} locks / {:.1} s)     | -",
        guards.len(),
        E_TTL.as_secs_f64() / 3.0
    );
    println!(
        "rslock  | no auto-extension          | n/a                                      | n/a"
    );
    println!(
        "floor   | no auto-extension          | n/a                                      | n/a"
    );
    println!(
        "  longest command on each server during the window (SLOWLOG): {}",
        longest.join(", ")
    );
    println!(
        "  {valid} of {} locks still valid after the window; batching saves {:.0}x requests",
        guards.len(),
        if worst > 0.0 {
            naive / worst
        } else {
            f64::INFINITY
        }
    );

    let releasing = Instant::now();
    let releases = guards
        .into_iter()
        .map(|g| timeout(RELEASE_CAP, g.release()));
    let results = join_all(releases).await;
    let released = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for result in &results {
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => *failures.entry(quorate_kind(error)).or_default() += 1,
            Err(_) => *failures.entry("safety cap".to_owned()).or_default() += 1,
        }
    }
    for (kind, n) in &failures {
        println!("  release failed {n}x: {kind}");
    }
    println!(
        "released {released} locks in {:.2} s",
        releasing.elapsed().as_secs_f64()
    );
    Ok(())
}
