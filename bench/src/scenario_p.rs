//! Scenario P: contenders in separate processes, the shape a distributed lock is
//! deployed in. The benchmark starts P child processes of itself; each connects its own
//! client (one `Redlock`, one rslock `LockManager`, one raw-fred floor), warms up on a
//! private key, says `ready`, and on the parent's `go` loops lock → 1 ms hold → release
//! on one shared key for `--secs` (quorate's "drop" row ends each lock by dropping the
//! guard instead of `release().await`: a dropped guard may pass its lock to the process's
//! next call with no round trip). Each child reports every hold (start and end on the
//! machine's wall clock, so the parent can check overlaps across processes), every
//! failed call and its own CPU time; the parent adds the servers' script calls from
//! `INFO commandstats` (reset after the warm-ups).

use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use super::*;

/// Process counts scenario P runs.
const P_COUNTS: [usize; 2] = [8, 16];
/// The contenders each child can be, by name.
const P_CONTENDERS: [(&str, &str); 5] = [
    ("quorate", "defaults"),
    ("quorate", "fair"),
    ("rslock", "defaults"),
    ("floor", "raw fred"),
    ("quorate", "drop"),
];

/// Microseconds on the wall clock (comparable across processes of one machine).
fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The child's side: `bench --child <index into P_CONTENDERS> <secs> <key> <url>...`.
/// Prints `ready`, waits for `go` on stdin, runs, prints its report, exits.
pub(crate) async fn child(args: &[String]) -> Result<(), BoxError> {
    let [which, secs, key, urls @ ..] = args else {
        return Err("usage: bench --child <contender> <secs> <key> <url>...".into());
    };
    let which: usize = which.parse()?;
    let secs = Duration::from_secs_f64(secs.parse()?);
    let contender = connect_one(which, urls).await?;
    contender
        .warm_up(&format!("bench:P:warm:{}", std::process::id()))
        .await;
    println!("ready");
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    match stdin.next_line().await? {
        Some(line) if line == "go" => {}
        other => return Err(format!("expected `go`, got {other:?}").into()),
    }
    let cpu_start = cpu_time();
    let deadline = Instant::now() + secs;
    let mut out = String::new();
    // Bounded by time; the count bound is far above any possible rate.
    for _ in 0..1_000_000 {
        if Instant::now() >= deadline {
            break;
        }
        let t0 = Instant::now();
        match contender.lock(key).await {
            Ok(held) => {
                let wait = t0.elapsed();
                let start = wall_us();
                hold().await;
                let end = wall_us();
                out.push_str(&format!("hold {start} {end} {}\n", wait.as_micros()));
                if let Err(kind) = held.release().await {
                    out.push_str(&format!("release-failed {kind}\n"));
                }
            }
            Err(kind) => out.push_str(&format!("fail {} {kind}\n", t0.elapsed().as_micros())),
        }
    }
    if let LockClient::QuorateDropping(redlock) = &contender.client {
        // a process that ends right after dropping guards flushes them
        redlock.flush_released().await;
    }
    let cpu = match (cpu_start, cpu_time()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => Duration::ZERO,
    };
    out.push_str(&format!("cpu {}\n", cpu.as_micros()));
    print!("{out}");
    Ok(())
}

/// One contender of `P_CONTENDERS`, with a client of its own.
pub(crate) async fn connect_one(which: usize, urls: &[String]) -> Result<Contender, BoxError> {
    let (library, setting) = *P_CONTENDERS.get(which).ok_or("no such contender")?;
    let client = match (library, setting) {
        ("quorate", "defaults") => LockClient::Quorate {
            redlock: Redlock::connect(urls).await?,
            options: None,
        },
        ("quorate", "drop") => LockClient::QuorateDropping(Redlock::connect(urls).await?),
        ("quorate", _) => LockClient::Quorate {
            redlock: Redlock::connect(urls).await?,
            options: Some(LockOptions::new().ttl(TTL).fair(true)),
        },
        ("rslock", _) => LockClient::Rslock(rslock::LockManager::new(urls.to_vec())),
        _ => LockClient::Floor(Arc::new(Floor::connect(urls).await?)),
    };
    Ok(Contender {
        library,
        setting,
        client,
    })
}

/// What the children of one run reported.
#[derive(Debug, Default)]
pub(crate) struct ProcessesRun {
    /// (start, end) of every hold, wall-clock µs.
    holds: Vec<(u64, u64)>,
    pub(crate) waits: Vec<Duration>,
    pub(crate) failed_waits: Vec<Duration>,
    grants_per_child: Vec<usize>,
    pub(crate) failures: BTreeMap<String, usize>,
    release_failures: usize,
    cpu: Duration,
}

impl ProcessesRun {
    fn parse_child(&mut self, report: &str) {
        let mut grants = 0;
        for line in report.lines() {
            let mut words = line.split(' ');
            match words.next() {
                Some("hold") => {
                    let n: Vec<u64> = words.filter_map(|w| w.parse().ok()).collect();
                    if let [start, end, wait] = n[..] {
                        self.holds.push((start, end));
                        self.waits.push(Duration::from_micros(wait));
                        grants += 1;
                    }
                }
                Some("fail") => {
                    let us = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                    self.failed_waits.push(Duration::from_micros(us));
                    let kind: Vec<&str> = words.collect();
                    *self.failures.entry(kind.join(" ")).or_default() += 1;
                }
                Some("release-failed") => self.release_failures += 1,
                Some("cpu") => {
                    let us = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                    self.cpu += Duration::from_micros(us);
                }
                _ => {}
            }
        }
        self.grants_per_child.push(grants);
    }

    /// Sorts the waits and works out the figures per grant of a run of
    /// `secs` during which the servers ran `scripts` script calls on `nodes`
    /// nodes.
    pub(crate) fn figures(&mut self, secs: Duration, scripts: u64, nodes: usize) -> RunFigures {
        self.waits.sort();
        self.failed_waits.sort();
        let grants = self.waits.len();
        let per_grant = |x: f64| {
            if grants == 0 {
                f64::NAN
            } else {
                x / grants as f64
            }
        };
        RunFigures {
            rate: grants as f64 / secs.as_secs_f64(),
            p99: percentile(&self.waits, 0.99),
            cpu_per_grant: per_grant(self.cpu.as_secs_f64() * 1e3),
            scripts_per_grant: per_grant(scripts as f64 / nodes as f64),
        }
    }

    /// Holds that began before an earlier hold ended (must be 0).
    pub(crate) fn overlaps(&mut self) -> usize {
        self.holds.sort_unstable();
        let mut overlaps = 0;
        let mut busy_until = 0;
        for &(start, end) in &self.holds {
            if start < busy_until {
                overlaps += 1;
            }
            busy_until = busy_until.max(end);
        }
        overlaps
    }

    /// Jain's fairness index over the children's grant counts (1 = all equal).
    pub(crate) fn jain(&self) -> f64 {
        let n = self.grants_per_child.len() as f64;
        let sum: f64 = self.grants_per_child.iter().map(|&g| g as f64).sum();
        let squares: f64 = self
            .grants_per_child
            .iter()
            .map(|&g| (g as f64).powi(2))
            .sum();
        if squares == 0.0 {
            0.0
        } else {
            sum * sum / (n * squares)
        }
    }
}

/// A process run's figures ([`ProcessesRun::figures`]).
pub(crate) struct RunFigures {
    /// Grants per second.
    pub(crate) rate: f64,
    /// The 99th percentile of the waits.
    pub(crate) p99: Duration,
    /// The children's CPU time per grant, in ms.
    pub(crate) cpu_per_grant: f64,
    /// Script calls per grant per node.
    pub(crate) scripts_per_grant: f64,
}

/// One run: `processes` children of contender `which` on nodes `urls`, on a
/// fresh key; `servers` (every process behind those nodes) have their
/// command statistics reset when the children are ready.
pub(crate) async fn run_processes(
    urls: &[String],
    servers: &[&RedisServer],
    which: usize,
    processes: usize,
    secs: Duration,
) -> Result<ProcessesRun, BoxError> {
    let exe = std::env::current_exe()?;
    let key = format!("bench:P{processes}:{which}:{}", urls.len());
    let mut children = Vec::with_capacity(processes);
    for _ in 0..processes {
        let child = Command::new(&exe)
            .arg("--child")
            .arg(which.to_string())
            .arg(secs.as_secs_f64().to_string())
            .arg(&key)
            .args(urls)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        children.push(child);
    }
    let mut lines = Vec::with_capacity(processes);
    for child in &mut children {
        let stdout = child.stdout.take().ok_or("child stdout")?;
        let mut reader = BufReader::new(stdout).lines();
        match timeout(Duration::from_secs(60), reader.next_line()).await {
            Ok(Ok(Some(line))) if line == "ready" => lines.push(reader),
            other => return Err(format!("a child did not get ready: {other:?}").into()),
        }
    }
    for server in servers {
        server.command(&["CONFIG", "RESETSTAT"]).await?;
    }
    for child in &mut children {
        let stdin = child.stdin.as_mut().ok_or("child stdin")?;
        stdin.write_all(b"go\n").await?;
        stdin.flush().await?;
    }
    let mut run = ProcessesRun::default();
    let cap = secs + LOCK_CAP + RELEASE_CAP;
    for (child, mut reader) in children.iter_mut().zip(lines) {
        let mut report = String::new();
        let read = async {
            while let Some(line) = reader.next_line().await? {
                report.push_str(&line);
                report.push('\n');
            }
            Ok::<_, std::io::Error>(())
        };
        timeout(cap, read).await.map_err(|_| "a child hung")??;
        child.wait().await?;
        run.parse_child(&report);
    }
    Ok(run)
}

/// Script calls (`EVAL`, `EVALSHA`, `FCALL`) on `servers` since their
/// statistics were reset.
pub(crate) async fn script_calls(servers: &[&RedisServer]) -> Result<u64, BoxError> {
    let mut calls = 0;
    for server in servers {
        for command in ["evalsha", "eval", "fcall"] {
            calls += command_calls(server, command).await?;
        }
    }
    Ok(calls)
}

/// Scenario P: for each process count, every contender in turn.
pub(crate) async fn scenario_p(cluster: &Cluster, args: &Args) -> Result<(), BoxError> {
    for processes in P_COUNTS {
        let mut rows = Vec::new();
        let mut notes = Vec::new();
        for (which, (library, setting)) in P_CONTENDERS.iter().enumerate() {
            let servers: Vec<&RedisServer> = cluster.servers().iter().collect();
            let mut run =
                run_processes(&cluster.urls(), &servers, which, processes, args.secs).await?;
            let scripts = script_calls(&servers).await?;
            let RunFigures {
                rate,
                p99,
                cpu_per_grant,
                scripts_per_grant,
            } = run.figures(args.secs, scripts, cluster.len());
            let overlaps = run.overlaps();
            let min = run.grants_per_child.iter().min().copied().unwrap_or(0);
            let max = run.grants_per_child.iter().max().copied().unwrap_or(0);
            rows.push(Row {
                library,
                setting,
                cells: [
                    grant_cells(&run.waits, &run.failed_waits, rate),
                    vec![
                        format!("{min} / {max}"),
                        format!("{:.3}", run.jain()),
                        format!("{cpu_per_grant:.2} ms"),
                        format!("{scripts_per_grant:.2}"),
                        overlaps.to_string(),
                    ],
                ]
                .concat(),
                keys: vec![rate, ms(p99), cpu_per_grant, scripts_per_grant],
            });
            let label = format!("{library} {setting}");
            notes.extend(failure_note(&label, &run.failures));
            if run.release_failures > 0 {
                notes.push(format!("{label}: {} releases failed", run.release_failures));
            }
        }
        notes.push(
            "one client per process, one task each; wait = lock call start to grant; \
             min / max = grants of the least and the most served process; Jain = Jain's \
             fairness index over the processes' grants (1 = equal); CPU = user + system \
             time of all children during the run, per grant; scripts = EVAL + EVALSHA + \
             FCALL calls per grant per node (INFO commandstats); overlaps = holds that \
             began before another process's hold ended (wall clock; must be 0)"
                .to_owned(),
        );
        print_table(
            &format!(
                "P{processes}: {processes} processes on 1 key, hold {} ms, for {:.1} s",
                C_HOLD.as_millis(),
                args.secs.as_secs_f64()
            ),
            &[
                GRANT_HEADERS.as_slice(),
                &[
                    "min / max",
                    "Jain",
                    "CPU/grant",
                    "scripts/grant/node",
                    "overlaps",
                ],
            ]
            .concat(),
            &["grants/s", "wait p99", "CPU/grant", "scripts/grant/node"],
            &rows,
            &notes,
        );
    }
    Ok(())
}
