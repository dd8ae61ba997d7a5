//! Scenario D: one of the 5 nodes black-holed.

use super::*;

pub(crate) async fn scenario_d(cluster: &Cluster, args: &Args) -> Result<(), BoxError> {
    let proxies = cluster.proxies().await?;
    let urls: Vec<String> = proxies.iter().map(FaultProxy::url).collect();
    println!(
        "\n-- D: every client reconnected through 5 fault proxies ({}); warming up, then proxy {DEAD_NODE} black-holes",
        urls.join(" ")
    );
    let set = Contenders::connect(&urls).await?;
    set.warm_up("D:warmup").await;
    // The proxies run in this process and add a hop: A through them, with no
    // fault, is the baseline the black-holed figures compare with.
    println!("\n-- D0: A again, through the proxies, before any fault");
    scenario_a(&set, "D0", args).await;
    proxies[DEAD_NODE].set(Fault::Blackhole);

    // A-shape: the count bound is lower, the time bound the same.
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let contenders = set.uncontended();
    let runs = interleaved_pairs(&contenders, "D:A", A_PAIRS, args.secs).await;
    for (c, run) in contenders.iter().zip(&runs) {
        let mut row = pairs_row(c, run);
        // Ratios of p99 here (the figure D is about), then pairs/s.
        row.keys = vec![row.keys[1], row.keys[2]];
        rows.push(row);
        notes.extend(failure_note(&c.label(), &run.failures));
    }
    print_table(
        &format!(
            "D (A-shape): uncontended pairs, node {DEAD_NODE} black-holed (up to {A_PAIRS} pairs, at most {:.1} s)",
            args.secs.as_secs_f64()
        ),
        &["pairs", "failed", "lock p50", "lock p99", "pair p50", "pair p99", "pairs/s"],
        &["lock p99", "pairs/s"],
        &rows,
        &notes,
    );

    scenario_c(&set, "D", args).await;
    proxies[DEAD_NODE].set(Fault::Pass);
    drop(set);
    drop(proxies);
    Ok(())
}
