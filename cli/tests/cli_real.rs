//! The `quorate` binary against real redis-server processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use quorate_testkit::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_quorate");

/// `quorate --nodes <cluster> args…`, run to completion (bounded by `quorate`'s own limits).
fn quorate(cluster: &Cluster, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--nodes")
        .arg(cluster.urls().join(","))
        .args(args)
        .output()
        .expect("run quorate")
}

/// `quorate --nodes <cluster> args…` in the background, its stderr piped.
fn spawn_quorate(cluster: &Cluster, args: &[&str]) -> Child {
    Command::new(BIN)
        .arg("--nodes")
        .arg(cluster.urls().join(","))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn quorate")
}

/// `quorate … run` in the background.
fn spawn_run(cluster: &Cluster, owner: &str, key: &str, ttl: &str, command: &[&str]) -> Child {
    let mut args = vec!["--owner", owner, "run", key, "--ttl", ttl, "--"];
    args.extend_from_slice(command);
    spawn_quorate(cluster, &args)
}

/// The exit status of `child`, which must end within `within`.
fn exit_within(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "still running after {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What `child` wrote to its (piped) stderr, once it has exited.
fn stderr_of(child: &mut Child) -> String {
    let mut said = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        std::io::Read::read_to_string(&mut stderr, &mut said).expect("read stderr");
    }
    said
}

/// A fresh directory for one test's files, under the system's temporary
/// one; removed with its files when the test ends (passed or failed).
fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("quorate-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    Scratch(dir)
}

/// A test's directory ([`scratch`]), removed on drop.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The pid a command wrote (a line) to `path`, once it has (bounded).
fn read_pid(path: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(line) = std::fs::read_to_string(path) {
            if line.ends_with('\n') {
                return line.trim().parse().expect("a pid");
            }
        }
        assert!(Instant::now() < deadline, "nothing written to {path:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `pid` runs. A zombie does not (a container's pid 1 may never reap it).
fn running(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // the state follows the command name, which is in parentheses
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// When `pid` was seen not running, polled until `deadline`; `None` if it still ran.
fn gone_by(pid: i32, deadline: Instant) -> Option<Instant> {
    loop {
        if !running(pid) {
            return Some(Instant::now());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILLs the pids still running when the test ends, failed or not.
struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if running(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `status --json KEY` until `held` is `want` (bounded).
fn wait_held(cluster: &Cluster, key: &str, want: bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = quorate(cluster, &["status", "--json", key]);
        let json = text(&out.stdout);
        if json.contains(&format!("\"held\":{want}")) {
            return json;
        }
        assert!(
            Instant::now() < deadline,
            "{key} never became held={want}: {json}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn run_returns_the_commands_status_and_releases_the_lock() {
    let cluster = Cluster::start(3).await.expect("cluster");
    let out = quorate(&cluster, &["run", "job", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let ok = quorate(&cluster, &["run", "job", "--", "true"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let json = wait_held(&cluster, "job", false);
    assert!(json.contains("\"key\":\"job\""), "{json}");
}

#[tokio::test]
async fn a_held_key_makes_run_give_up_or_wait_as_asked_and_status_names_the_holder() {
    let cluster = Cluster::start(3).await.expect("cluster");
    let mut first = spawn_run(&cluster, "holder-a", "report", "10s", &["sleep", "2"]);
    let json = wait_held(&cluster, "report", true);
    assert!(json.contains("holder-a (host "), "{json}");
    let table = text(&quorate(&cluster, &["status", "report"]).stdout);
    assert!(table.contains("report: held by holder-a (host "), "{table}");

    let busy = quorate(&cluster, &["run", "report", "--", "true"]);
    assert_eq!(busy.status.code(), Some(75), "{}", text(&busy.stderr));
    assert!(
        text(&busy.stderr).contains("held by holder-a"),
        "{}",
        text(&busy.stderr)
    );

    let waited = quorate(&cluster, &["run", "report", "--wait", "20s", "--", "true"]);
    assert_eq!(waited.status.code(), Some(0), "{}", text(&waited.stderr));
    // it could only run once the first had finished and released
    let first_status = first.wait().expect("first run");
    assert_eq!(first_status.code(), Some(0));
}

#[tokio::test]
async fn unlock_force_frees_a_key_whose_holder_was_killed() {
    let cluster = Cluster::start(3).await.expect("cluster");
    // its command dies with it (see a_killed_quorate_takes_its_commands_whole_group_with_it)
    let mut holder = spawn_run(&cluster, "dead-worker", "nightly", "30s", &["sleep", "5"]);
    wait_held(&cluster, "nightly", true);
    holder.kill().expect("SIGKILL: no release");
    holder.wait().expect("the killed holder");
    let json = wait_held(&cluster, "nightly", true);
    assert!(json.contains("dead-worker"), "{json}");

    let refused = quorate(&cluster, &["unlock", "nightly"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("--force"),
        "{}",
        text(&refused.stderr)
    );
    let forced = quorate(&cluster, &["unlock", "--force", "nightly"]);
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced.stderr));
    let said = text(&forced.stdout);
    assert!(
        said.contains("deleted on 3 of 3 nodes") && said.contains("dead-worker"),
        "{said}"
    );
    wait_held(&cluster, "nightly", false);
    let next = quorate(&cluster, &["run", "nightly", "--", "true"]);
    assert_eq!(next.status.code(), Some(0), "{}", text(&next.stderr));
}

#[tokio::test]
async fn run_stops_the_command_when_the_lock_is_lost() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let mut holder = spawn_run(&cluster, "stalled", "fragile", "2s", &["sleep", "30"]);
    wait_held(&cluster, "fragile", true);
    for i in 0..3 {
        cluster.server(i).pause();
    }
    // SIGTERM to `sleep` 0.5 s (the default grace for a 2 s ttl) before the validity ends
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = holder.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "quorate run never gave up the command"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    for i in 0..3 {
        cluster.server(i).resume();
    }
    let mut stderr = String::new();
    use std::io::Read;
    holder
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read");
    assert_eq!(status.code(), Some(76), "{stderr}");
    assert!(stderr.contains("lost `fragile`"), "{stderr}");
}

#[tokio::test]
async fn nodes_reports_each_node_and_warns_about_what_breaks_safety() {
    let mut cluster = Cluster::start(3).await.expect("cluster");
    let out = quorate(&cluster, &["nodes"]);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert_eq!(said.matches(": up, ").count(), 3, "{said}");
    // the test kit's servers run without AOF
    assert!(said.contains("warning: appendonly is off"), "{said}");
    cluster.server_mut(0).kill();
    let out = quorate(&cluster, &["nodes"]);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "2 of 3 is a quorum: {said}");
    assert!(said.contains("DOWN"), "{said}");
    assert!(said.contains("2 of 3 nodes reachable"), "{said}");
    cluster.server_mut(1).kill();
    let out = quorate(&cluster, &["nodes"]);
    assert_eq!(out.status.code(), Some(69), "{}", text(&out.stdout));
}

#[tokio::test]
async fn list_shows_the_held_locks_and_watch_prints_acquisitions_and_releases() {
    let cluster = Cluster::start(3).await.expect("cluster");
    // an application's own key beside the locks is not a lock
    for i in 0..3 {
        cluster
            .plant(i, "jobs:config", "some value", Duration::from_secs(60))
            .await
            .expect("SET");
    }
    let mut a = spawn_run(&cluster, "lister-a", "jobs:a", "10s", &["sleep", "3"]);
    let mut b = spawn_run(&cluster, "lister-b", "jobs:b", "10s", &["sleep", "3"]);
    wait_held(&cluster, "jobs:a", true);
    wait_held(&cluster, "jobs:b", true);
    let listed = quorate(&cluster, &["list", "--prefix", "jobs:"]);
    let said = text(&listed.stdout);
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed.stderr));
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 2, "{said}");
    assert!(
        lines[0].starts_with("jobs:a\t") && lines[0].contains("lister-a"),
        "{said}"
    );
    assert!(
        lines[1].starts_with("jobs:b\t") && lines[1].contains("lister-b"),
        "{said}"
    );
    let status = text(&quorate(&cluster, &["status", "jobs:config"]).stdout);
    assert!(status.contains("not a quorate lock"), "{status}");
    a.wait().expect("a");
    b.wait().expect("b");

    // watch for 4 s while one run comes and goes
    let mut watcher = Command::new(BIN)
        .arg("--nodes")
        .arg(cluster.urls().join(","))
        .args(["watch", "jobs:w", "--for", "4s"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("watch");
    // the signal that it watches: its first line, the state it started from
    let mut out = std::io::BufReader::new(watcher.stdout.take().expect("stdout"));
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).expect("first line");
    if !first.contains("jobs:w: free") {
        let ended = watcher.wait_with_output().expect("watch");
        panic!("watch said {first:?}, then {ended:?}");
    }
    let ran = quorate(
        &cluster,
        &["--owner", "watched", "run", "jobs:w", "--", "sleep", "1"],
    );
    assert_eq!(ran.status.code(), Some(0), "{}", text(&ran.stderr));
    let mut said = String::new();
    std::io::Read::read_to_string(&mut out, &mut said).expect("the rest");
    let status = watcher.wait().expect("watch");
    assert_eq!(status.code(), Some(0), "{said}");
    assert!(
        said.contains("jobs:w: acquired by watched (host "),
        "{said}"
    );
    assert!(said.contains("jobs:w: released (announced)"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_unlock_work_on_a_pool_candidate_by_its_full_key() {
    let cluster = Cluster::start(3).await.expect("cluster");
    let holder = quorate_redlock::Redlock::builder()
        .urls(cluster.urls())
        .owner("gpu-job-9")
        .build()
        .await
        .expect("connect");
    let pool = quorate_pool::Pool::new(&holder, "gpus").expect("pool");
    let want = quorate_pool::Requirement::need(1, ["gpu-0"], |g| (*g).to_owned());
    let _grant = pool
        .acquire(vec![want], Duration::from_secs(30))
        .await
        .expect("grant");
    let key = "quorate:pool:{gpus}:gpu-0";
    let table = text(&quorate(&cluster, &["status", key]).stdout);
    assert!(
        table.contains(&format!("{key}: held by gpu-job-9 (host ")),
        "{table}"
    );
    let freed = quorate(&cluster, &["unlock", "--force", key]);
    assert_eq!(freed.status.code(), Some(0), "{}", text(&freed.stderr));
    let after = pool.inspect("gpu-0").await.expect("inspect");
    assert!(after.holder().is_none(), "{after}");
}

#[tokio::test]
async fn run_stops_the_commands_whole_group_before_the_lease_ends() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let dir = scratch("lease-end");
    let pidfile = dir.join("grandchild");
    let script = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
    let asked = Instant::now();
    let mut holder = spawn_quorate(
        &cluster,
        &[
            "run", "fading", "--ttl", "4s", "--grace", "1900ms", "--", "bash", "-c", &script,
        ],
    );
    let grandchild = read_pid(&pidfile);
    let _cleanup = KillOnDrop(vec![grandchild]);
    wait_held(&cluster, "fading", true);
    for i in 0..3 {
        cluster.server(i).pause();
    }
    let paused = asked.elapsed();
    // The lock was asked for after `asked`, and extensions only move its
    // validity later: it ends no earlier than the ttl less the drift
    // allowance (4 s × 0.01 + 2 ms) after `asked`.
    let validity_ends_after = asked + Duration::from_millis(4000 - 42);
    let gone = gone_by(grandchild, asked + Duration::from_secs(20));
    let status = exit_within(&mut holder, Duration::from_secs(20));
    for i in 0..3 {
        cluster.server(i).resume();
    }
    let stderr = stderr_of(&mut holder);
    let gone = gone.unwrap_or_else(|| panic!("the grandchild outlived quorate run: {stderr}"));
    assert!(
        gone < validity_ends_after,
        "the grandchild ran until {:?} after the lock was asked for, past the validity \
         (nodes paused at {paused:?})",
        gone - asked
    );
    assert_eq!(status.code(), Some(76), "{stderr}");
    assert!(stderr.contains("lost `fading`"), "{stderr}");
}

#[tokio::test]
async fn a_killed_quorate_takes_its_commands_whole_group_with_it() {
    let cluster = Cluster::start(3).await.expect("cluster");
    let dir = scratch("killed");
    let (shellfile, pidfile) = (dir.join("shell"), dir.join("grandchild"));
    let script = format!(
        "echo $$ > {}; sleep 60 & echo $! > {}; wait",
        shellfile.display(),
        pidfile.display()
    );
    let mut holder = spawn_run(
        &cluster,
        "doomed",
        "orphans",
        "2s",
        &["bash", "-c", &script],
    );
    let (shell, grandchild) = (read_pid(&shellfile), read_pid(&pidfile));
    let _cleanup = KillOnDrop(vec![shell, grandchild]);
    wait_held(&cluster, "orphans", true);
    holder
        .kill()
        .expect("SIGKILL: quorate can clean nothing up");
    let killed = Instant::now();
    holder.wait().expect("the killed holder");
    // The servers hold the lock for at least 2 s after its last extension,
    // at most ttl/3 before the kill: gone within 1 s, no later holder
    // overlaps them.
    let within = killed + Duration::from_secs(1);
    assert!(
        gone_by(grandchild, within).is_some(),
        "the grandchild outlived quorate"
    );
    assert!(
        gone_by(shell, within).is_some(),
        "the command outlived quorate"
    );
    let next = quorate(&cluster, &["run", "orphans", "--wait", "10s", "--", "true"]);
    assert_eq!(next.status.code(), Some(0), "{}", text(&next.stderr));
}

#[tokio::test]
async fn signals_to_quorate_reach_the_commands_group_and_the_lock_is_released_after() {
    let cluster = Cluster::start(3).await.expect("cluster");
    let cases = [
        (Signal::SIGINT, "INT", true),
        (Signal::SIGHUP, "HUP", true),
        (Signal::SIGTERM, "TERM", true),
        // no trap: ended by the signal, quorate exits 128 + 15
        (Signal::SIGTERM, "TERM", false),
    ];
    for (signal, name, trapped) in cases {
        let dir = scratch(&format!("signal-{name}-{trapped}"));
        let (seen, pidfile) = (dir.join("seen"), dir.join("grandchild"));
        let trap = if trapped {
            format!("trap 'echo {name} > {}; exit 7' {name}; ", seen.display())
        } else {
            String::new()
        };
        // (bash starts background jobs with SIGINT ignored: that grandchild
        // is left over, and killed before the lock is released)
        let script = format!("{trap}sleep 60 & echo $! > {}; wait", pidfile.display());
        let mut holder = spawn_run(
            &cluster,
            "signalled",
            "signals",
            "30s",
            &["bash", "-c", &script],
        );
        let grandchild = read_pid(&pidfile);
        let _cleanup = KillOnDrop(vec![grandchild]);
        let pid = Pid::from_raw(i32::try_from(holder.id()).expect("pid"));
        kill(pid, signal).expect("signal quorate");
        let status = exit_within(&mut holder, Duration::from_secs(10));
        let stderr = stderr_of(&mut holder);
        let want = if trapped { 7 } else { 128 + signal as i32 };
        assert_eq!(status.code(), Some(want), "{name}: {status:?} {stderr}");
        if trapped {
            let said = std::fs::read_to_string(&seen).unwrap_or_default();
            assert_eq!(said.trim(), name, "{name}: the command's trap did not run");
        }
        // SIGKILL, sent before the release, takes effect within microseconds
        let soon = Instant::now() + Duration::from_millis(200);
        assert!(
            gone_by(grandchild, soon).is_some(),
            "{name}: the grandchild outlived quorate run"
        );
        // released at once, not one 30 s ttl later
        let json = text(&quorate(&cluster, &["status", "--json", "signals"]).stdout);
        assert!(json.contains("\"held\":false"), "{name}: {json}");
    }
}

#[tokio::test]
async fn a_grace_as_long_as_half_the_ttl_is_a_usage_error() {
    let cluster = Cluster::start(3).await.expect("cluster");
    let out = quorate(
        &cluster,
        &["run", "early", "--ttl", "2s", "--grace", "1s", "--", "true"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--grace"),
        "{}",
        text(&out.stderr)
    );
    // nothing was taken
    let json = text(&quorate(&cluster, &["status", "--json", "early"]).stdout);
    assert!(json.contains("\"held\":false"), "{json}");
}

/// `nodes` names each node's quarantine state (plain and `--json`), and
/// `declare-fresh` refuses without its confirmation, then marks a node that
/// restarted empty so that it votes at once.
#[tokio::test]
async fn nodes_shows_the_quarantine_and_declare_fresh_asks_before_marking() {
    let mut cluster = Cluster::start(3).await.expect("cluster");
    let said = text(&quorate(&cluster, &["nodes"]).stdout);
    assert_eq!(said.matches("quorum: votes").count(), 3, "{said}");
    // without persistence, a restart loses the marker with the data
    cluster.server_mut(0).restart().await.expect("restart");
    let said = text(&quorate(&cluster, &["nodes"]).stdout);
    assert!(said.contains("quorum: no marker"), "{said}");
    // a lock call starts the quarantine (2 of 3 still grant)
    let ran = quorate(
        &cluster,
        &["--max-ttl", "30s", "run", "q", "--ttl", "10s", "--", "true"],
    );
    assert_eq!(ran.status.code(), Some(0), "{}", text(&ran.stderr));
    let out = quorate(&cluster, &["nodes", "--json"]);
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["quarantine"], "quarantined", "{lines:?}");
    let left = lines[0]["quarantine_left_ms"].as_u64().expect("ms left");
    assert!(left > 20_000 && left <= 30_000, "{left}");
    assert_eq!(lines[1]["quarantine"], "voting", "{lines:?}");
    // a quarantine already begun is never cut short
    let refused = quorate(&cluster, &["declare-fresh"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("can grant a lock"),
        "{}",
        text(&refused.stderr)
    );
    let confirmed = ["declare-fresh", "--i-know-they-kept-every-write"];
    let said = text(&quorate(&cluster, &confirmed).stdout);
    assert_eq!(said.matches("left as it was").count(), 3, "{said}");
    // a server that restarted empty and is known to be new is marked
    cluster.server_mut(1).restart().await.expect("restart");
    let said = text(&quorate(&cluster, &confirmed).stdout);
    assert_eq!(said.matches("declared fresh").count(), 1, "{said}");
    let said = text(&quorate(&cluster, &["nodes"]).stdout);
    assert!(said.contains("QUARANTINED for"), "{said}");
    assert_eq!(said.matches("quorum: votes").count(), 2, "{said}");
}

/// Durations as operators type them, `--max-ttl` for longer leases, and
/// `--wait forever`.
#[tokio::test]
async fn durations_max_ttl_and_waiting_forever() {
    let cluster = Cluster::start(3).await.expect("cluster");
    let long = quorate(&cluster, &["run", "long", "--ttl", "1m30s", "--", "true"]);
    assert_eq!(long.status.code(), Some(2));
    assert!(
        text(&long.stderr).contains("max_ttl"),
        "{}",
        text(&long.stderr)
    );
    let args = [
        "--max-ttl",
        "2m",
        "run",
        "long",
        "--ttl",
        "1m30s",
        "--",
        "true",
    ];
    let long = quorate(&cluster, &args);
    assert_eq!(long.status.code(), Some(0), "{}", text(&long.stderr));
    let bad = quorate(
        &cluster,
        &["run", "x", "--ttl", "3 fortnights", "--", "true"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("not a duration"),
        "{}",
        text(&bad.stderr)
    );

    let mut holder = spawn_run(&cluster, "holder", "patient", "10s", &["sleep", "2"]);
    wait_held(&cluster, "patient", true);
    let waited = quorate(
        &cluster,
        &["run", "patient", "--wait", "forever", "--", "true"],
    );
    assert_eq!(waited.status.code(), Some(0), "{}", text(&waited.stderr));
    assert_eq!(
        exit_within(&mut holder, Duration::from_secs(10)).code(),
        Some(0)
    );
}

/// `list` shows every primitive's held keys with their kind, and `--json`
/// gives the holder as fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_every_primitives_keys_with_holders_as_fields() {
    let cluster = Cluster::start(3).await.expect("cluster");
    let redlock = quorate_redlock::Redlock::builder()
        .urls(cluster.urls())
        .owner("lab-runner")
        .build()
        .await
        .expect("connect");
    let ttl = Duration::from_secs(20);
    let mutex = redlock.lock("lab:door", ttl).await.expect("mutex");
    let pool = quorate_pool::Pool::new(&redlock, "lab").expect("pool");
    let need = vec![quorate_pool::Requirement::need(
        1,
        ["gpu-0".to_owned()],
        |d| d.clone(),
    )];
    let gpu = pool.acquire(need, ttl).await.expect("pool");
    let out = quorate(&cluster, &["list", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    let find = |key: &str| {
        listed
            .iter()
            .find(|l| l["key"] == key)
            .unwrap_or_else(|| panic!("{key} not in {listed:?}"))
    };
    let door = find("lab:door");
    assert_eq!(door["kind"], "mutex");
    assert_eq!(door["holder"]["label"], "lab-runner");
    assert_eq!(door["holder"]["pid"], std::process::id());
    assert_eq!(door["holder"]["client"], redlock.owner().client_id());
    assert_eq!(find("quorate:pool:{lab}:gpu-0")["kind"], "pool");
    assert_eq!(listed.len(), 2, "{listed:?}");
    gpu.release().await.expect("release");
    mutex.release().await.expect("release");
}

/// Without the `tls` feature a `rediss://` node is refused with what to do
/// about it (never a plaintext connection).
#[cfg(not(feature = "tls"))]
#[test]
fn a_rediss_node_without_tls_says_how_to_install_with_it() {
    let out = Command::new(BIN)
        .args(["--nodes", "rediss://127.0.0.1:1", "status", "job"])
        .output()
        .expect("run quorate");
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out.stderr);
    assert!(
        said.contains("cargo install quorate-cli --features tls"),
        "{said}"
    );
}

/// `nodes` talks to each server directly, not through a Redlock: a
/// `rediss://` node there is refused too, never checked in plaintext (a
/// plain server listens on the port: before, it was reported "up").
#[cfg(not(feature = "tls"))]
#[tokio::test]
async fn nodes_refuses_a_rediss_node_without_tls_instead_of_connecting_in_plaintext() {
    let cluster = Cluster::start(1).await.expect("cluster");
    let url = cluster.urls()[0].replace("redis://", "rediss://");
    let out = Command::new(BIN)
        .args(["--nodes", &url, "nodes"])
        .output()
        .expect("run quorate");
    let said = text(&out.stdout);
    assert!(said.contains("DOWN: asks for TLS"), "{said}");
    assert!(!said.contains(": up, "), "{said}");
    assert_eq!(out.status.code(), Some(69), "{said}");
}
