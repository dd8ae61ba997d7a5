//! The deterministic simulation (see the crate's docs): many seeded
//! histories, a replay of one seed, and the checkers seen failing on a
//! broken configuration.
//!
//! ```sh
//! cargo test -p quorate-system-tests --release --test simulation              # CI: 2,000 histories (200 unoptimised)
//! QUORATE_SIM_HISTORIES=200000 cargo test -p quorate-system-tests --release --test simulation many  # a soak
//! QUORATE_SIM_SEED=1234 cargo test -p quorate-system-tests --test simulation replay
//! ```

use std::time::Instant;

use quorate_system_tests::{run, Shape};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Seeds that found bugs while the simulation was built: run first, every
/// time (with the shape they were found in).
const REGRESSIONS: &[u64] = &[
    // fence 2 handed out twice: 2 of the 4 nodes holding it restarted from an
    // older snapshot (fixed by the fence floor after a data loss)
    1202,
];

#[test]
fn many_histories_find_no_violation() {
    // 2,000 in CI's optimised run; an unoptimised `cargo test --workspace`
    // runs a tenth of them (about 15 times slower per history).
    let default = if cfg!(debug_assertions) { 200 } else { 2_000 };
    let histories = env_u64("QUORATE_SIM_HISTORIES").unwrap_or(default);
    let first = env_u64("QUORATE_SIM_FIRST_SEED").unwrap_or(0);
    let shape = Shape::default();
    let started = Instant::now();
    // QUORATE_SIM_KEEP_GOING=1: run every history and count the violating
    // ones (the hit rate of a planted bug, scripts/sim_mutants.sh).
    let keep_going = std::env::var_os("QUORATE_SIM_KEEP_GOING").is_some();
    // counts the grants the waiter queue made without a round: the
    // histories must draw that path, not only the rounds
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");
    let (mut grants, mut faults, mut digest) = (0, 0, 0u64);
    let mut violations = Vec::new();
    for seed in REGRESSIONS.iter().copied().chain(first..first + histories) {
        match run(seed, &shape) {
            Ok(summary) => {
                grants += summary.grants;
                faults += summary.faults;
                digest = digest.rotate_left(5) ^ summary.trace;
            }
            Err(violation) if keep_going => violations.push(violation),
            Err(violation) => panic!("{violation}"),
        }
    }
    let took = started.elapsed();
    let queue_grants: u64 = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == quorate_redlock::metrics::QUEUE_GRANTS_TOTAL)
        .map(|(.., value)| match value {
            metrics_util::debugging::DebugValue::Counter(n) => n,
            _ => 0,
        })
        .sum();
    eprintln!(
        "{histories} histories in {took:.1?} ({:.0} per second): {grants} grants ({queue_grants} by the waiter queue without a round), {faults} faults, {} violating; traces {digest:016x}",
        histories as f64 / took.as_secs_f64(),
        violations.len()
    );
    if let Some(first) = violations.first() {
        panic!(
            "{} of {histories} histories violate; first: {first}",
            violations.len()
        );
    }
    assert!(
        grants > histories,
        "the histories granted almost nothing: {grants}"
    );
    assert!(
        queue_grants > 0,
        "no history drew a grant by the waiter queue"
    );
}

#[test]
fn a_seed_replays_exactly() {
    // 20 seeds: a wake-up order that changed from run to run (tokio's
    // `watch`) made about one history in twelve differ.
    let shape = Shape::default();
    for seed in 0..20 {
        let a = run(seed, &shape);
        let b = run(seed, &shape);
        assert_eq!(
            a.as_ref().map_err(|v| v.what.clone()),
            b.as_ref().map_err(|v| v.what.clone()),
            "seed {seed}"
        );
    }
}

/// What `QUORATE_SIM_SEED` prints is what a fresh process finds: this
/// test binary is run again for a few seeds and their traces compared
/// (a process has its own hash keys and addresses; a run in the same
/// process would not see a difference they make).
#[test]
fn a_seed_replays_exactly_in_another_process() {
    if std::env::var_os("QUORATE_SIM_SEED").is_some() {
        return; // this is the other process
    }
    let shape = Shape::default();
    let exe = std::env::current_exe().expect("the test binary's path");
    for seed in [3, 8, 16] {
        let here = run(seed, &shape).map_err(|v| v.what);
        let output = std::process::Command::new(&exe)
            .args(["replay", "--exact", "--nocapture"])
            .env("QUORATE_SIM_SEED", seed.to_string())
            .output()
            .expect("run the test binary");
        let printed = String::from_utf8_lossy(&output.stderr);
        let expected = match &here {
            Ok(summary) => format!("seed {seed}: no violation ({summary:?})"),
            Err(what) => what.clone(),
        };
        assert!(
            printed.contains(&expected),
            "seed {seed}: this process found {here:?}, another printed:\n{printed}"
        );
    }
}

/// `QUORATE_SIM_SEED=<seed>` replays one history and prints what it found.
#[test]
fn replay() {
    let Some(seed) = env_u64("QUORATE_SIM_SEED") else {
        return;
    };
    match run(seed, &Shape::default()) {
        Ok(summary) => eprintln!("seed {seed}: no violation ({summary:?})"),
        Err(violation) => panic!("{violation}"),
    }
}

/// The checkers are trusted only once seen failing: each client with a
/// quorum of one node of its own must be caught within a few histories.
#[test]
fn a_quorum_of_one_per_client_is_caught() {
    let shape = Shape {
        quorum_of_one: true,
        ..Shape::default()
    };
    let caught = (0..20).find_map(|seed| run(seed, &shape).err());
    let violation = caught.expect("20 histories with a quorum of one per client and no violation");
    assert!(violation.what.contains("two holders"), "{violation}");
}
