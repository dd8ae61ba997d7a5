//! Scenario S: what each deployment shape costs. quorate at its defaults
//! (`Redlock::connect`) against 1 of the benchmark's standalone nodes, a
//! Redis Cluster of 3 shards (started here) as the only node, 3 standalone
//! nodes and all 5; rslock beside it on the standalone shapes (it cannot
//! use a Cluster: the Cluster row's ratios are to rslock on 1 server). For each: shape A (one task, uncontended lock + release) and
//! shape P8 (8 processes with a client each on one key, 1 ms holds).

use quorate_testkit::RedisCluster;

use crate::scenario_p::{run_processes, script_calls, RunFigures};

use super::*;

/// Index of quorate's defaults and of rslock's in scenario P's contenders.
const P_QUORATE: usize = 0;
const P_RSLOCK: usize = 2;
/// Processes of the P-shaped run.
const S_PROCESSES: usize = 8;

/// One deployment shape: its label, its node URLs and every server behind them.
struct Shape<'a> {
    label: &'static str,
    urls: Vec<String>,
    servers: Vec<&'a RedisServer>,
    /// rslock takes standalone servers only.
    rslock: bool,
}

pub(crate) async fn scenario_s(cluster: &Cluster, args: &Args) -> Result<(), BoxError> {
    let redis_cluster = RedisCluster::start(3, 0).await?;
    let fresh = Redlock::connect([redis_cluster.url()])
        .await?
        .declare_fresh()
        .await;
    println!(
        "\nRedis Cluster of 3 shards started ({}): {fresh}",
        redis_cluster.url()
    );
    let standalone: Vec<&RedisServer> = cluster.servers().iter().collect();
    // rslock has no Cluster row: the Cluster node's ratios are to rslock's
    // first row, the single standalone server
    let shapes = [
        Shape {
            label: "1 standalone",
            urls: cluster.urls()[..1].to_vec(),
            servers: standalone[..1].to_vec(),
            rslock: true,
        },
        Shape {
            label: "1 Cluster node",
            urls: vec![redis_cluster.url()],
            servers: redis_cluster.servers().iter().collect(),
            rslock: false,
        },
        Shape {
            label: "3 standalone",
            urls: cluster.urls()[..3].to_vec(),
            servers: standalone[..3].to_vec(),
            rslock: true,
        },
        Shape {
            label: "5 standalone",
            urls: cluster.urls(),
            servers: standalone.clone(),
            rslock: true,
        },
    ];

    let mut a_rows = Vec::new();
    let mut a_notes = Vec::new();
    for shape in &shapes {
        let mut set = vec![Contender {
            library: "quorate",
            setting: shape.label,
            client: LockClient::Quorate {
                redlock: Redlock::connect(&shape.urls).await?,
                options: None,
            },
        }];
        if shape.rslock {
            set.push(Contender {
                library: "rslock",
                setting: shape.label,
                client: LockClient::Rslock(rslock::LockManager::new(shape.urls.clone())),
            });
        }
        for c in &set {
            c.warm_up("bench:S:warm").await;
        }
        let refs: Vec<&Contender> = set.iter().collect();
        let runs = interleaved_pairs(&refs, "S", A_PAIRS, args.secs).await;
        for (c, run) in set.iter().zip(&runs) {
            a_rows.push(pairs_row(c, run));
            a_notes.extend(failure_note(&c.label(), &run.failures));
        }
    }
    print_table(
        &format!(
            "S/A: uncontended lock + release per deployment shape (up to {A_PAIRS} pairs, at most \
             {:.1} s each)",
            args.secs.as_secs_f64()
        ),
        &[
            "pairs",
            "failed",
            "lock p50",
            "lock p99",
            "pair p50",
            "pair p99",
            "pairs/s",
            "switches/pair",
        ],
        &["lock p50", "lock p99", "pairs/s"],
        &a_rows,
        &a_notes,
    );

    let mut p_rows = Vec::new();
    let mut p_notes = Vec::new();
    for shape in &shapes {
        let contenders: &[(usize, &'static str)] = if shape.rslock {
            &[(P_QUORATE, "quorate"), (P_RSLOCK, "rslock")]
        } else {
            &[(P_QUORATE, "quorate")]
        };
        for &(which, library) in contenders {
            let mut run =
                run_processes(&shape.urls, &shape.servers, which, S_PROCESSES, args.secs).await?;
            let scripts = script_calls(&shape.servers).await?;
            let RunFigures {
                rate,
                p99,
                cpu_per_grant,
                scripts_per_grant,
            } = run.figures(args.secs, scripts, shape.urls.len());
            p_rows.push(Row {
                library,
                setting: shape.label,
                cells: [
                    grant_cells(&run.waits, &run.failed_waits, rate),
                    vec![
                        format!("{:.3}", run.jain()),
                        format!("{cpu_per_grant:.2} ms"),
                        format!("{scripts_per_grant:.2}"),
                        run.overlaps().to_string(),
                    ],
                ]
                .concat(),
                keys: vec![rate, ms(p99), cpu_per_grant],
            });
            p_notes.extend(failure_note(
                &format!("{library} {}", shape.label),
                &run.failures,
            ));
        }
    }
    p_notes.push(
        "as P8, per shape; scripts = script calls per grant per quorate node (a Cluster node \
         counts the calls on all its shards)"
            .to_owned(),
    );
    print_table(
        &format!(
            "S/P{S_PROCESSES}: {S_PROCESSES} processes on 1 key per deployment shape, hold {} ms, \
             for {:.1} s",
            C_HOLD.as_millis(),
            args.secs.as_secs_f64()
        ),
        &[
            GRANT_HEADERS.as_slice(),
            &["Jain", "CPU/grant", "scripts/grant/node", "overlaps"],
        ]
        .concat(),
        &["grants/s", "wait p99", "CPU/grant"],
        &p_rows,
        &p_notes,
    );
    Ok(())
}
