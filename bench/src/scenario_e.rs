//! Scenario E: many held, auto-extended locks.

use super::*;

/// Scenario E: locks held at once.
pub(crate) const E_LOCKS: usize = 10_000;
/// Scenario E: their ttl; the watchdog extends each after a third of it.
pub(crate) const E_TTL: Duration = Duration::from_secs(3);
/// Scenario E: lock calls in flight while taking the locks.
pub(crate) const E_CONCURRENCY: usize = 256;

/// `cmdstat_<command>` calls on one server since its last `CONFIG RESETSTAT`.
pub(crate) async fn command_calls(server: &RedisServer, command: &str) -> Result<u64, BoxError> {
    let info = server
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
pub(crate) fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // fields after the parenthesised command name; utime and stime are 14th and 15th
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

pub(crate) async fn scenario_e(cluster: &Cluster, args: &Args) -> Result<(), BoxError> {
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
        let scripts = command_calls(cluster.server(node), "evalsha").await?
            + command_calls(cluster.server(node), "fcall").await?;
        per_node.push(scripts as f64 / elapsed);
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
