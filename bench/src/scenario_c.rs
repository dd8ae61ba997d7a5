//! Scenario C (and the C-shape of D): 8 tasks on one key.

use super::*;

#[derive(Debug, Default)]
pub(crate) struct ContendedRun {
    pub(crate) waits: Vec<Duration>,
    /// How long each grant was held (lock granted to release called).
    pub(crate) holds: Vec<Duration>,
    pub(crate) failed_waits: Vec<Duration>,
    pub(crate) failures: BTreeMap<String, usize>,
    pub(crate) release_failures: usize,
}

/// The critical section: `C_HOLD` of work, as a thread sleep (about 1.1 ms on
/// Linux) with the runtime's other tasks moved off this worker meanwhile
/// (`block_in_place`). A tokio `sleep` counts whole milliseconds and would hold
/// about 2 ms. Returns how long it held.
pub(crate) async fn hold() -> Duration {
    let start = Instant::now();
    tokio::task::block_in_place(|| std::thread::sleep(C_HOLD));
    start.elapsed()
}

/// `C_TASKS` tasks on `key` for `secs`; task i uses `clients[i % clients.len()]`
/// (one shared client, or one each).
pub(crate) async fn contended(
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

pub(crate) async fn scenario_c(set: &Contenders, tag: &str, args: &Args) {
    let title = if tag == "C" {
        format!(
            "C: {C_TASKS} tasks on 1 key, hold {} ms, for {:.1} s",
            C_HOLD.as_millis(),
            args.secs.as_secs_f64()
        )
    } else {
        let fault = if tag == "G" {
            format!("{} ms away each way", FAR_NODE_DELAY.as_millis())
        } else {
            "black-holed".to_owned()
        };
        format!(
            "{tag} (C-shape): {C_TASKS} tasks on 1 key, hold {} ms, for {:.1} s, node {FAULTED_NODE} {fault}",
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
pub(crate) async fn scenario_c_own_clients(urls: &[String], args: &Args) -> Result<(), BoxError> {
    let mut sets = Vec::new();
    for which in 0..4 {
        let mut clients = Vec::with_capacity(C_TASKS);
        for _ in 0..C_TASKS {
            let client = scenario_p::connect_one(which, urls).await?;
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
pub(crate) async fn contended_table(title: &str, tag: &str, sets: &[Vec<Contender>], args: &Args) {
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
