//! Scenario A (and the A-shape of D): one task, one key, uncontended.

use super::*;

#[derive(Debug, Default)]
pub(crate) struct PairsRun {
    pub(crate) lock: Vec<Duration>,
    pub(crate) pair: Vec<Duration>,
    pub(crate) failures: BTreeMap<String, usize>,
    pub(crate) elapsed: Duration,
    /// Context switches of the whole process during these pairs.
    pub(crate) switches: u64,
}

pub(crate) async fn sequential_pairs(
    c: &Contender,
    key: &str,
    max_pairs: usize,
    secs: Duration,
) -> PairsRun {
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
pub(crate) async fn interleaved_pairs(
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
            let before = context_switches();
            let part = sequential_pairs(c, &key, block, secs - run.elapsed).await;
            run.switches += context_switches().saturating_sub(before);
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

pub(crate) async fn scenario_a(set: &Contenders, tag: &str, args: &Args) {
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
            "switches/pair",
        ],
        &["lock p50", "lock p99", "pairs/s"],
        &rows,
        &notes,
    );
}

pub(crate) fn pairs_row(c: &Contender, run: &PairsRun) -> Row {
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
            format!("{:.1}", run.switches as f64 / run.pair.len().max(1) as f64),
        ],
        keys: vec![ms(lock_p50), ms(percentile(&run.lock, 0.99)), rate],
    }
}
