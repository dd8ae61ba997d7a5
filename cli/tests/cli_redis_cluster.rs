//! The `quorate` binary with a Redis Cluster as its node, on real
//! cluster-enabled redis-server processes.

use std::process::{Command, Output};
use std::time::Duration;

use quorate_redlock::raw::hash_slot;
use quorate_redlock::Redlock;
use quorate_testkit::RedisCluster;

const BIN: &str = env!("CARGO_BIN_EXE_quorate");

/// `QUORATE_NODES=<cluster URL> quorate args…`, run to completion.
fn quorate(cluster: &RedisCluster, args: &[&str]) -> Output {
    Command::new(BIN)
        .env("QUORATE_NODES", cluster.url())
        .args(args)
        .output()
        .expect("run quorate")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A new cluster's shards have no marker until declared fresh, then each
/// votes; `run` holds a lock on it, `list` shows locks on every shard; a shard that restarts is shown as
/// restarted (its own marker names another process) while the others vote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_shows_each_shard_and_run_locks_on_a_cluster() {
    let mut cluster = RedisCluster::start(3, 0).await.expect("cluster");
    let out = quorate(&cluster, &["nodes"]);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert_eq!(said.matches(": up, ").count(), 3, "{said}");
    assert_eq!(said.matches("no marker").count(), 3, "{said}");

    let out = quorate(
        &cluster,
        &["declare-fresh", "--i-know-they-kept-every-write"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = quorate(&cluster, &["nodes"]);
    let said = text(&out.stdout);
    assert_eq!(said.matches("quorum: votes").count(), 3, "{said}");

    let out = quorate(&cluster, &["run", "clusterkey", "--", "echo", "held"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "held");

    // locks on every shard: `list` scans every primary
    let redlock = Redlock::connect([cluster.url()]).await.expect("connect");
    let keys = ["job-0", "job-1", "job-2", "job-5"];
    let mut guards = Vec::new();
    for key in keys {
        guards.push(
            redlock
                .lock(key, Duration::from_secs(30))
                .await
                .expect("lock"),
        );
    }
    let slots: std::collections::BTreeSet<u16> = keys.iter().map(|k| hash_slot(k) / 5462).collect();
    assert_eq!(slots.len(), 3, "the keys cover the 3 shards");
    let out = quorate(&cluster, &["list"]);
    let said = text(&out.stdout);
    for key in keys {
        assert!(said.contains(key), "{key} not listed: {said}");
    }
    // each holder's description is read from the shard that keeps it
    assert!(!said.contains("no description recorded"), "{said}");
    for guard in guards {
        guard.release().await.expect("release");
    }

    let restarted = cluster.server_mut(1);
    restarted.kill();
    restarted.restart().await.expect("restart");
    let port = restarted.port();
    cluster.wait_ok().await.expect("cluster ok");
    let out = quorate(&cluster, &["nodes"]);
    let said = text(&out.stdout);
    let line = said
        .lines()
        .skip_while(|l| !l.contains(&format!("shard 127.0.0.1:{port}")))
        .nth(1)
        .unwrap_or_default();
    // a restart without persistence lost the marker with the data
    assert!(line.contains("no marker"), "{said}");
    assert_eq!(said.matches("quorum: votes").count(), 2, "{said}");
}
