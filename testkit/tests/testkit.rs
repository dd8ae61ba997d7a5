//! Tests of the testkit itself, against real redis-server processes.

use std::future::Future;
use std::time::{Duration, Instant};

use quorate_testkit::{
    command_at, faketime_available, faketime_path_from, redis_server_path_from, Cluster,
    Connection, Fault, FaultProxy, FenceLog, HoldLog, RedisServer, Reply, ServerOptions,
    TestkitError,
};

/// Upper bound for any single test, so a regression hangs nothing.
const TEST_BUDGET: Duration = Duration::from_secs(60);

async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(TEST_BUDGET, test)
        .await
        .expect("test exceeded its time budget")
}

fn simple(text: &str) -> Reply {
    Reply::Simple(text.to_owned())
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test]
async fn start_answers_ping_and_set_get_and_drop_kills() {
    bounded(async {
        let server = RedisServer::start().await.expect("start redis-server");
        assert_eq!(
            server.command(&["PING"]).await.expect("PING"),
            simple("PONG")
        );
        assert_eq!(
            server.command(&["SET", "k", "v"]).await.expect("SET"),
            simple("OK")
        );
        let got = server.command(&["GET", "k"]).await.expect("GET");
        assert_eq!(got.as_string().as_deref(), Some("v"));
        assert_eq!(
            server
                .command(&["GET", "missing"])
                .await
                .expect("GET missing"),
            Reply::Bulk(None)
        );
        assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
        assert!(server.pid().is_some());

        let (addr, dir) = (server.addr(), server.dir().to_owned());
        assert!(dir.exists());
        drop(server);
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "port still accepts after drop"
        );
        assert!(!dir.exists(), "temp dir {} left behind", dir.display());
    })
    .await;
}

#[tokio::test]
async fn error_replies_become_resp_errors() {
    bounded(async {
        let server = RedisServer::start().await.expect("start redis-server");
        let err = server
            .command(&["NOSUCHCOMMAND"])
            .await
            .expect_err("unknown command must fail");
        assert!(
            matches!(&err, TestkitError::Resp(m) if m.starts_with("ERR")),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn kill_then_restart_keeps_port_and_aof_data() {
    bounded(async {
        let options = ServerOptions {
            appendonly: true,
            ..ServerOptions::default()
        };
        let mut server = RedisServer::start_with(options)
            .await
            .expect("start redis-server");
        let port = server.port();
        assert_eq!(
            server.command(&["SET", "k", "v"]).await.expect("SET"),
            simple("OK")
        );

        server.kill();
        assert!(!server.is_running());
        assert_eq!(server.pid(), None);
        assert!(server.command(&["PING"]).await.is_err());
        server.kill(); // idempotent

        server.restart().await.expect("restart");
        assert_eq!(server.port(), port);
        assert_eq!(
            server.command(&["PING"]).await.expect("PING"),
            simple("PONG")
        );
        let got = server.command(&["GET", "k"]).await.expect("GET");
        assert_eq!(
            got.as_string().as_deref(),
            Some("v"),
            "AOF write lost across restart"
        );

        // restart also works on a running server.
        server.restart().await.expect("restart while running");
        assert_eq!(
            server.command(&["PING"]).await.expect("PING"),
            simple("PONG")
        );
    })
    .await;
}

#[tokio::test]
async fn restart_without_aof_starts_empty() {
    bounded(async {
        let mut server = RedisServer::start().await.expect("start redis-server");
        server.command(&["SET", "k", "v"]).await.expect("SET");
        server.restart().await.expect("restart");
        assert_eq!(
            server.command(&["GET", "k"]).await.expect("GET"),
            Reply::Bulk(None)
        );
    })
    .await;
}

#[tokio::test]
async fn pause_stops_answers_until_resume() {
    bounded(async {
        let server = RedisServer::start().await.expect("start redis-server");
        server.pause();
        assert!(server.is_paused());

        let started = Instant::now();
        let err = server
            .command_timeout(&["PING"], ms(300))
            .await
            .expect_err("a paused server must not answer");
        assert!(matches!(err, TestkitError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));

        // The default 2 s deadline also bounds a plain command.
        let started = Instant::now();
        assert!(server.command(&["PING"]).await.is_err());
        assert!(started.elapsed() < Duration::from_millis(2500));

        server.resume();
        assert!(!server.is_paused());
        assert_eq!(
            server.command(&["PING"]).await.expect("PING after resume"),
            simple("PONG")
        );
    })
    .await;
}

#[tokio::test]
async fn drop_of_paused_server_kills_it() {
    bounded(async {
        let server = RedisServer::start().await.expect("start redis-server");
        let pid = server.pid().expect("running server has a pid");
        server.pause();
        drop(server);
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "paused redis-server {pid} survived drop"
        );
    })
    .await;
}

#[tokio::test]
async fn fast_clock_under_faketime_expires_keys_sooner() {
    if !faketime_available() {
        eprintln!("skipping: faketime not installed (apt-get install faketime)");
        return;
    }
    bounded(async {
        let options = ServerOptions {
            clock_rate: Some(4.0),
            ..ServerOptions::default()
        };
        let mut server = RedisServer::start_with(options)
            .await
            .expect("start redis-server under faketime");
        assert_eq!(
            server
                .command(&["SET", "k", "v", "PX", "2000"])
                .await
                .expect("SET PX"),
            simple("OK")
        );
        let set_at = Instant::now();
        // 2 s of server time is 0.5 s of real time at 4x.
        loop {
            let exists = server.command(&["EXISTS", "k"]).await.expect("EXISTS");
            if exists.as_i64() == Some(0) {
                break;
            }
            assert!(
                set_at.elapsed() < ms(1200),
                "key still present after {:?}: server clock is not sped up",
                set_at.elapsed()
            );
            tokio::time::sleep(ms(20)).await;
        }
        let gone_after = set_at.elapsed();
        assert!(gone_after < ms(1200), "took {gone_after:?}");

        // kill/restart work with the faketime wrapper in between.
        let pid = server.pid().expect("pid");
        server.kill();
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        server.restart().await.expect("restart under faketime");
        assert_eq!(
            server.command(&["PING"]).await.expect("PING"),
            simple("PONG")
        );
    })
    .await;
}

#[tokio::test]
async fn slow_clock_under_faketime_keeps_keys_longer() {
    if !faketime_available() {
        eprintln!("skipping: faketime not installed (apt-get install faketime)");
        return;
    }
    bounded(async {
        let options = ServerOptions {
            clock_rate: Some(0.5),
            ..ServerOptions::default()
        };
        let server = RedisServer::start_with(options)
            .await
            .expect("start redis-server under faketime");
        server
            .command(&["SET", "k", "v", "PX", "300"])
            .await
            .expect("SET PX");
        let set_at = Instant::now();
        // Waiting out a TTL is the point here: 450 ms real is 225 ms server time.
        tokio::time::sleep(ms(450)).await;
        let exists = server.command(&["EXISTS", "k"]).await.expect("EXISTS");
        assert_eq!(
            exists.as_i64(),
            Some(1),
            "key expired after {:?} real time: server clock is not slowed",
            set_at.elapsed()
        );
    })
    .await;
}

#[tokio::test]
async fn invalid_clock_rate_is_rejected() {
    let options = ServerOptions {
        clock_rate: Some(0.0),
        ..ServerOptions::default()
    };
    let err = RedisServer::start_with(options)
        .await
        .expect_err("zero clock rate");
    assert!(matches!(err, TestkitError::InvalidOptions(_)), "{err}");
}

#[tokio::test]
async fn password_is_in_url_and_used_by_command() {
    bounded(async {
        let options = ServerOptions {
            password: Some("s3cr/t".to_owned()),
            ..ServerOptions::default()
        };
        let server = RedisServer::start_with(options)
            .await
            .expect("start redis-server");
        assert_eq!(
            server.url(),
            format!("redis://:s3cr%2Ft@127.0.0.1:{}", server.port())
        );
        assert_eq!(
            server.command(&["PING"]).await.expect("PING"),
            simple("PONG")
        );
        let err = command_at(server.addr(), None, &["GET", "k"], ms(1000))
            .await
            .expect_err("unauthenticated GET must fail");
        assert!(
            matches!(&err, TestkitError::Resp(m) if m.starts_with("NOAUTH")),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn cluster_starts_nodes_and_lists_keys_skipping_down_ones() {
    bounded(async {
        let mut cluster = Cluster::start(3).await.expect("start cluster");
        assert_eq!(cluster.len(), 3);
        assert!(!cluster.is_empty());
        let mut urls = cluster.urls();
        urls.sort();
        urls.dedup();
        assert_eq!(urls.len(), 3, "nodes must have distinct ports");

        for i in 0..3 {
            cluster
                .server(i)
                .command(&["SET", "lock:a", "x"])
                .await
                .expect("SET");
        }
        cluster
            .server(0)
            .command(&["SET", "lock:b", "x"])
            .await
            .expect("SET");
        cluster
            .server(0)
            .command(&["SET", "other", "x"])
            .await
            .expect("SET");
        assert_eq!(
            cluster.keys("lock:*").await.expect("KEYS"),
            vec![
                vec!["lock:a".to_owned(), "lock:b".to_owned()],
                vec!["lock:a".to_owned()],
                vec!["lock:a".to_owned()],
            ]
        );

        cluster.server(1).pause();
        cluster.server_mut(2).kill();
        let started = Instant::now();
        let keys = cluster.keys("lock:*").await.expect("KEYS");
        assert!(started.elapsed() < Duration::from_secs(1), "keys hung");
        assert_eq!(
            keys,
            vec![
                vec!["lock:a".to_owned(), "lock:b".to_owned()],
                vec![],
                vec![]
            ]
        );

        cluster.server(1).resume();
        cluster.server_mut(2).restart().await.expect("restart");
        assert_eq!(
            cluster.keys("lock:*").await.expect("KEYS"),
            vec![
                vec!["lock:a".to_owned(), "lock:b".to_owned()],
                vec!["lock:a".to_owned()],
                vec![],
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn fault_proxy_passes_delays_blackholes_and_resets() {
    bounded(async {
        let server = RedisServer::start().await.expect("start redis-server");
        let proxy = FaultProxy::start(server.addr()).await.expect("start proxy");
        assert_eq!(proxy.url(), format!("redis://{}", proxy.addr()));
        let ping = || command_at(proxy.addr(), None, &["PING"], Duration::from_secs(2));

        // Pass.
        assert_eq!(ping().await.expect("PING via proxy"), simple("PONG"));
        let mut open = Connection::connect(proxy.addr()).await.expect("connect");
        assert_eq!(open.command(&["PING"]).await.expect("PING"), simple("PONG"));

        // Delay: each direction is delayed, so a round trip takes at least d.
        proxy.set(Fault::Delay(ms(200)));
        assert_eq!(proxy.fault(), Fault::Delay(ms(200)));
        let started = Instant::now();
        assert_eq!(ping().await.expect("delayed PING"), simple("PONG"));
        assert!(started.elapsed() >= ms(200), "took {:?}", started.elapsed());
        // An existing connection is delayed too.
        let started = Instant::now();
        assert_eq!(open.command(&["PING"]).await.expect("PING"), simple("PONG"));
        assert!(started.elapsed() >= ms(200), "took {:?}", started.elapsed());

        // Blackhole: a new and an existing connection both hang silently.
        proxy.set(Fault::Blackhole);
        let err = command_at(proxy.addr(), None, &["PING"], ms(500))
            .await
            .expect_err("black-holed PING must not answer");
        assert!(matches!(err, TestkitError::Timeout { .. }), "{err}");
        assert!(
            tokio::time::timeout(ms(500), open.command(&["PING"]))
                .await
                .is_err(),
            "existing connection answered through a black hole"
        );

        // Back to Pass: a new connection works.
        proxy.set(Fault::Pass);
        assert_eq!(ping().await.expect("PING after blackhole"), simple("PONG"));

        // Reset: existing connections and new ones fail fast.
        let mut open = Connection::connect(proxy.addr()).await.expect("connect");
        assert_eq!(open.command(&["PING"]).await.expect("PING"), simple("PONG"));
        proxy.set(Fault::Reset);
        let started = Instant::now();
        let existing = tokio::time::timeout(ms(1000), open.command(&["PING"]))
            .await
            .expect("reset connection must fail, not hang");
        assert!(existing.is_err(), "reset connection answered");
        let fresh = ping().await.expect_err("new connection must be reset");
        assert!(
            !matches!(fresh, TestkitError::Timeout { .. }),
            "reset looked like a hang: {fresh}"
        );
        assert!(started.elapsed() < ms(1000));

        // And back again.
        proxy.set(Fault::Pass);
        assert_eq!(ping().await.expect("PING after reset"), simple("PONG"));

        // Dropping the proxy stops it listening (the abort lands on the
        // runtime's next turn, hence the bounded poll).
        let addr = proxy.addr();
        drop(proxy);
        let deadline = Instant::now() + Duration::from_secs(2);
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "proxy still listening after drop"
            );
            tokio::time::sleep(ms(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn fault_proxy_reset_is_not_lost_when_replaced_at_once() {
    bounded(async {
        let server = RedisServer::start().await.expect("start redis-server");
        let proxy = FaultProxy::start(server.addr()).await.expect("start proxy");
        let mut open = Connection::connect(proxy.addr()).await.expect("connect");
        assert_eq!(open.command(&["PING"]).await.expect("PING"), simple("PONG"));
        // No await in between: the connection's task only sees the final Pass.
        proxy.set(Fault::Reset);
        proxy.set(Fault::Pass);
        let result = tokio::time::timeout(ms(1000), open.command(&["PING"]))
            .await
            .expect("reset connection must fail, not hang");
        assert!(result.is_err(), "connection survived a Reset");
        let fresh = command_at(proxy.addr(), None, &["PING"], ms(1000)).await;
        assert_eq!(fresh.expect("new connection after Pass"), simple("PONG"));
    })
    .await;
}

#[test]
fn hold_log_detects_overlap_and_accepts_disjoint_holds() {
    let t0 = Instant::now();
    let log = HoldLog::new();
    assert!(log.is_empty());
    log.record("a", 1, t0, t0 + ms(10));
    log.record("a", 2, t0 + ms(10), t0 + ms(20)); // touches, half-open: fine
    log.record("b", 3, t0 + ms(5), t0 + ms(15)); // other resource: fine
    assert_eq!(log.len(), 3);
    log.check_exclusive().expect("disjoint holds");

    // Nested inside the first hold but after a shorter one: must still be found.
    let nested = HoldLog::new();
    nested.record("a", 1, t0, t0 + ms(100));
    nested.record("a", 2, t0 + ms(1), t0 + ms(2));
    let shared = nested.clone(); // clones share the log
    shared.record("a", 3, t0 + ms(50), t0 + ms(60));
    let overlap = nested.check_exclusive().expect_err("overlap");
    assert_eq!(overlap.first.holder, 1);
    assert_eq!(overlap.second.holder, 2);
    assert!(overlap.to_string().contains("holder 2"), "{overlap}");

    // Same holder twice at once is also a violation.
    let same = HoldLog::new();
    same.record("a", 7, t0, t0 + ms(10));
    same.record("a", 7, t0 + ms(5), t0 + ms(15));
    assert!(same.check_exclusive().is_err());
}

#[test]
fn hold_log_general_conflicts_and_concurrency() {
    let t0 = Instant::now();
    let log = HoldLog::new();
    log.record("/a", 1, t0, t0 + ms(10));
    log.record("/a/b", 2, t0 + ms(5), t0 + ms(15));
    log.record("/c", 3, t0 + ms(6), t0 + ms(8));
    // Same-name exclusion holds...
    log.check_exclusive().expect("distinct names");
    // ...but a tree lock treats an ancestor as conflicting.
    let is_prefix = |a: &str, b: &str| {
        a == b || b.starts_with(&format!("{a}/")) || a.starts_with(&format!("{b}/"))
    };
    let overlap = log.check_exclusive_by(is_prefix).expect_err("tree overlap");
    assert_eq!((overlap.first.holder, overlap.second.holder), (1, 2));
    // counted: /a/b began inside /a; /c conflicts with neither
    assert_eq!(log.count_overlaps_by(1, is_prefix), 1);
    assert_eq!(log.count_overlaps_by(1, |_, _| true), 2);
    // with 2 permits only /c (inside /a and /a/b) is one too many
    assert_eq!(log.count_overlaps_by(2, |_, _| true), 1);
    assert_eq!(log.count_overlaps_by(1, |a, b| a == b), 0);

    assert_eq!(log.max_concurrency(), 3); // at t0+6ms..8ms all three are held
    assert_eq!(HoldLog::new().max_concurrency(), 0);

    let sequential = HoldLog::new();
    for i in 0..5u32 {
        let start = t0 + ms(10) * i;
        sequential.record("r", u64::from(i), start, start + ms(10));
    }
    assert_eq!(sequential.max_concurrency(), 1);
}

#[test]
fn fence_log_requires_strictly_increasing_fences() {
    let t0 = Instant::now();
    let log = FenceLog::new();
    assert!(log.is_empty());
    // Recorded out of order: the check orders by grant time.
    log.record(2, 11, t0 + ms(2));
    log.record(1, 10, t0 + ms(1));
    log.record(3, 15, t0 + ms(3));
    assert_eq!(log.len(), 3);
    log.check_strictly_increasing().expect("monotone fences");

    log.record(4, 15, t0 + ms(4)); // repeated fence
    let err = log.check_strictly_increasing().expect_err("repeat");
    assert!(err.contains("fence 15"), "{err}");

    let backwards = FenceLog::new();
    backwards.record(1, 5, t0);
    backwards.record(2, 4, t0 + ms(1));
    assert!(backwards.check_strictly_increasing().is_err());
}

#[test]
fn missing_binaries_give_install_hints() {
    let path = Some(std::ffi::OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    let missing = Some(std::ffi::OsStr::new("/nonexistent/redis-server"));

    let err = redis_server_path_from(missing, path).expect_err("bad override");
    assert!(matches!(err, TestkitError::RedisServerNotFound));
    let message = err.to_string();
    assert!(
        message.contains("apt-get install redis-server"),
        "{message}"
    );
    assert!(message.contains("brew install redis"), "{message}");
    assert!(message.contains("QUORATE_REDIS_SERVER"), "{message}");

    let empty_path = Some(std::ffi::OsStr::new("/nonexistent"));
    assert!(matches!(
        redis_server_path_from(None, empty_path),
        Err(TestkitError::RedisServerNotFound)
    ));
    assert!(redis_server_path_from(None, None).is_err());

    let err = faketime_path_from(None, empty_path).expect_err("no faketime");
    assert!(matches!(err, TestkitError::FaketimeNotFound));
    assert!(
        err.to_string().contains("apt-get install faketime"),
        "{err}"
    );

    // The happy paths, when the binaries are installed.
    if let Ok(found) = redis_server_path_from(None, path) {
        assert!(found.ends_with("redis-server"));
        let overridden = redis_server_path_from(Some(found.as_os_str()), None)
            .expect("override to a real binary");
        assert_eq!(overridden, found);
    }
}
