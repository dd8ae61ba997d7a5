//! Extensions in doubt, against 5 real redis-servers behind fault proxies:
//! a holder's validity must never be longer than what a majority holds,
//! however its extensions (manual, watchdog, another client's) interleave
//! with slow answers.

use std::time::Duration;

use quorate_redlock::{Error, LockOptions, Redlock};
use quorate_testkit::{Cluster, Fault, FaultProxy, Reply};
use tokio::time::Instant;

/// PTTL of `key` on every node, read directly (not through the proxies).
async fn pttls(cluster: &Cluster, key: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for server in cluster.servers() {
        match server.command(&["PTTL", key]).await.expect("PTTL") {
            Reply::Integer(ms) => out.push(ms),
            other => panic!("PTTL answered {other:?}"),
        }
    }
    out
}

/// Script calls (EVAL, EVALSHA and FCALL) so far on every node.
async fn script_calls(cluster: &Cluster) -> Vec<i64> {
    let mut out = Vec::new();
    for server in cluster.servers() {
        let info = server
            .command(&["INFO", "commandstats"])
            .await
            .expect("INFO")
            .as_string()
            .expect("text");
        let calls: i64 = info
            .lines()
            .filter_map(|line| {
                let rest = line
                    .strip_prefix("cmdstat_evalsha:calls=")
                    .or_else(|| line.strip_prefix("cmdstat_eval:calls="))
                    .or_else(|| line.strip_prefix("cmdstat_fcall:calls="))?;
                rest.split(',').next()?.parse::<i64>().ok()
            })
            .sum();
        out.push(calls);
    }
    out
}

/// How many nodes hold `key` for at least `validity` more.
async fn nodes_holding_for(cluster: &Cluster, key: &str, validity: Duration) -> usize {
    let ms = i64::try_from(validity.as_millis()).expect("ms");
    pttls(cluster, key)
        .await
        .iter()
        .filter(|&&t| t >= ms)
        .count()
}

async fn through_proxies(cluster: &Cluster, node_timeout: Duration) -> (Vec<FaultProxy>, Redlock) {
    let proxies = cluster.proxies().await.expect("proxies");
    let redlock = Redlock::builder()
        .urls(proxies.iter().map(FaultProxy::url))
        .defaults(LockOptions::new().node_timeout(Some(node_timeout)))
        .build()
        .await
        .expect("connect");
    (proxies, redlock)
}

/// The reported hole: a shorter extension whose answers are late fails with
/// `NoQuorum`, but the late nodes apply it. Before the fix the servers then
/// held the key for 300 ms while the guard still claimed ~9 s, and another
/// client's `try_lock` succeeded beside it (seen failing on the old scripts
/// and lease: `remaining()` 9.3 s with the second holder granted).
#[tokio::test]
async fn a_shorter_extension_answered_late_leaves_no_second_holder() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let (proxies, a) = through_proxies(&cluster, Duration::from_millis(100)).await;
    let b = Redlock::connect(cluster.urls()).await.expect("connect");
    let mut guard = a
        .lock_with(["doubt"], &LockOptions::new().ttl(Duration::from_secs(10)))
        .await
        .expect("lock");
    let before: Vec<i64> = script_calls(&cluster).await;
    for p in &proxies[2..] {
        p.set(Fault::Delay(Duration::from_millis(600)));
    }
    let extended = guard.extend(Duration::from_millis(300)).await;
    assert!(
        matches!(extended, Err(Error::NoQuorum { .. })),
        "{extended:?}"
    );
    // In doubt: the guard claims no more than the short ttl could have left.
    assert!(
        guard.remaining() <= Duration::from_millis(300),
        "{:?}",
        guard.remaining()
    );
    // Wait (bounded) until the late requests ran on their servers: each slow
    // node counts one more script call than before.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = script_calls(&cluster).await;
        if (2..5).all(|i| now[i] > before[i]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the late extensions never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The servers never shorten: every node keeps the long ttl.
    assert_eq!(
        nodes_holding_for(&cluster, "doubt", Duration::from_secs(5)).await,
        5,
        "a node shortened the key: {:?}",
        pttls(&cluster, "doubt").await
    );
    // No second holder while the first claims validity.
    let other = b.try_lock("doubt", Duration::from_secs(1)).await;
    assert!(
        other.is_err() || guard.remaining().is_zero(),
        "two holders: B granted while A claims {:?}",
        guard.remaining()
    );
}

/// A confirmed shorter extension does not shorten the servers' ttl, and the
/// guard keeps the validity the earlier majority confirmed (both are true).
#[tokio::test]
async fn a_confirmed_shorter_extension_shortens_nothing() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let a = Redlock::connect(cluster.urls()).await.expect("connect");
    let mut guard = a
        .lock("short", Duration::from_secs(10))
        .await
        .expect("lock");
    guard
        .extend(Duration::from_millis(300))
        .await
        .expect("extend");
    assert!(
        guard.remaining() > Duration::from_secs(9),
        "{:?}",
        guard.remaining()
    );
    assert_eq!(
        nodes_holding_for(&cluster, "short", Duration::from_secs(9)).await,
        5
    );
    // a longer one does lengthen both
    guard.extend(Duration::from_secs(30)).await.expect("extend");
    assert!(guard.remaining() > Duration::from_secs(29));
    assert_eq!(
        nodes_holding_for(&cluster, "short", Duration::from_secs(29)).await,
        5
    );
}

/// The watchdog (long ttl) and manual extensions (short ttl) racing on one
/// guard: after every step, a majority holds the key for at least what the
/// guard claims.
#[tokio::test]
async fn watchdog_and_manual_extensions_racing_never_overclaim() {
    let cluster = Cluster::start(5).await.expect("cluster");
    let (proxies, a) = through_proxies(&cluster, Duration::from_secs(1)).await;
    let options = LockOptions::new()
        .ttl(Duration::from_millis(900))
        .auto_extend(true);
    let mut guard = a.lock_with(["race"], &options).await.expect("lock");
    // uneven delays, so the rounds land in different orders on different nodes
    for (i, p) in proxies.iter().enumerate() {
        p.set(Fault::Delay(Duration::from_millis(5 * i as u64)));
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut steps = 0;
    while Instant::now() < deadline {
        let _ = guard.extend(Duration::from_millis(150)).await;
        let claimed = guard.remaining();
        let held = nodes_holding_for(&cluster, "race", claimed).await;
        assert!(
            held >= 3 || claimed.is_zero(),
            "guard claims {claimed:?}, only {held} nodes hold that long: {:?}",
            pttls(&cluster, "race").await
        );
        steps += 1;
    }
    assert!(steps > 5, "{steps} steps");
    assert!(guard.remaining() > Duration::ZERO, "the watchdog kept it");
}
