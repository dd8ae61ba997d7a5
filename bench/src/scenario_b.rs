//! Scenario B: 64 tasks on distinct keys.

use super::*;

pub(crate) async fn scenario_b(set: &Contenders, args: &Args) {
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
