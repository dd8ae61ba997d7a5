//! Scenarios D and G: A and C again with every client connected through 5
//! fault proxies, one of them faulted. D: the node is black-holed (a silent,
//! partitioned node). G: the node is far away (20 ms more each way): the
//! quorum of the 4 near nodes answers first, so A and C should cost what
//! they cost without it.

use super::*;

/// Scenario G: how far the far node is, each way.
pub(crate) const FAR_NODE_DELAY: Duration = Duration::from_millis(20);

pub(crate) async fn scenario_d(cluster: &Cluster, args: &Args) -> Result<(), BoxError> {
    one_node_faulted(cluster, args, "D", Fault::Blackhole, "black-holes").await
}

pub(crate) async fn scenario_g(cluster: &Cluster, args: &Args) -> Result<(), BoxError> {
    let what = format!("adds {} ms each way", FAR_NODE_DELAY.as_millis());
    one_node_faulted(cluster, args, "G", Fault::Delay(FAR_NODE_DELAY), &what).await
}

async fn one_node_faulted(
    cluster: &Cluster,
    args: &Args,
    letter: &str,
    fault: Fault,
    what: &str,
) -> Result<(), BoxError> {
    let proxies = cluster.proxies().await?;
    let urls: Vec<String> = proxies.iter().map(FaultProxy::url).collect();
    println!(
        "\n-- {letter}: every client reconnected through 5 fault proxies ({}); warming up, then proxy {FAULTED_NODE} {what}",
        urls.join(" ")
    );
    let set = Contenders::connect(&urls).await?;
    set.warm_up(&format!("{letter}:warmup")).await;
    // The proxies run in this process and add a hop: A through them, with no
    // fault, is the baseline the faulted figures compare with.
    println!("\n-- {letter}0: A again, through the proxies, before any fault");
    scenario_a(&set, &format!("{letter}0"), args).await;
    proxies[FAULTED_NODE].set(fault);

    // A-shape: the count bound is lower, the time bound the same.
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let contenders = set.uncontended();
    let runs = interleaved_pairs(&contenders, &format!("{letter}:A"), A_PAIRS, args.secs).await;
    for (c, run) in contenders.iter().zip(&runs) {
        let mut row = pairs_row(c, run);
        // Ratios of p99 here (the figure this scenario is about), then pairs/s.
        row.keys = vec![row.keys[1], row.keys[2]];
        rows.push(row);
        notes.extend(failure_note(&c.label(), &run.failures));
    }
    print_table(
        &format!(
            "{letter} (A-shape): uncontended pairs, node {FAULTED_NODE} {what} (up to {A_PAIRS} pairs, at most {:.1} s)",
            args.secs.as_secs_f64()
        ),
        &[
            "pairs", "failed", "lock p50", "lock p99", "pair p50", "pair p99", "pairs/s",
            "switches/pair",
        ],
        &["lock p99", "pairs/s"],
        &rows,
        &notes,
    );

    scenario_c(&set, letter, args).await;
    proxies[FAULTED_NODE].set(Fault::Pass);
    drop(set);
    drop(proxies);
    Ok(())
}
