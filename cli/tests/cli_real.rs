//! The `quorate` binary against real redis-server processes.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// `quorate … run` in the background, in a process group of its own.
fn spawn_run(cluster: &Cluster, owner: &str, key: &str, ttl: &str, command: &[&str]) -> Child {
    Command::new(BIN)
        .arg("--nodes")
        .arg(cluster.urls().join(","))
        .args(["--owner", owner, "run", key, "--ttl", ttl, "--"])
        .args(command)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn quorate run")
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
    // its command outlives it by at most 5 s, holding nothing
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
    // lost within the lease's 2 s validity, then SIGTERM to `sleep`
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
