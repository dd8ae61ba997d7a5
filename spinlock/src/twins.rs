//! The scripts against their native twins: generated calls run on a real
//! server and on a memory node must get the same replies and leave the
//! same keys (`quorate_redlock::raw::check_twin`).

use std::time::Duration;

use quorate_redlock::raw::{check_keys, check_twin, twin_nodes};
use quorate_testkit::Cluster;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::single_flight::{GET_RESULT, STORE_RESULT};
use crate::spinlock::LOCK_STATE;

#[tokio::test]
async fn result_and_lock_state_scripts_match_their_twins_on_generated_calls() {
    let cluster = Cluster::start(1).await.expect("redis-server");
    let (real, memory) = twin_nodes(&cluster.urls()[0]).await.expect("connect");
    let seed = rand::random();
    println!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let universe: Vec<String> = (0..4).map(|k| format!("twin:{seed}:k{k}")).collect();
    for _call in 0..200 {
        let key = universe[rng.random_range(0..universe.len())].clone();
        let checked = match rng.random_range(0..5) {
            0 => {
                // a lock key held, claimed for a queued waiter, or foreign
                let value = ["token", "q:waiter-1", "qx"][rng.random_range(0..3)];
                let ttl = Duration::from_secs(rng.random_range(2..60));
                cluster.plant(0, &key, value, ttl).await.expect("SET");
                memory.set(&key, value.as_bytes(), Some(ttl));
                Ok(())
            }
            1 => {
                let expiry = ["0", "30000", "5000"][rng.random_range(0..3)];
                let value = format!("v{}", rng.random_range(0..100)).into_bytes();
                check_twin(
                    &STORE_RESULT,
                    real.as_ref(),
                    &memory,
                    vec![key],
                    vec![value, expiry.as_bytes().to_vec()],
                )
                .await
            }
            2 => check_twin(&GET_RESULT, real.as_ref(), &memory, vec![key], Vec::new()).await,
            _ => check_twin(&LOCK_STATE, real.as_ref(), &memory, vec![key], Vec::new()).await,
        };
        checked.unwrap_or_else(|m| panic!("seed {seed}: {m}"));
    }
    check_keys(real.as_ref(), &memory, &universe)
        .await
        .unwrap_or_else(|m| panic!("seed {seed}: {m}"));
}
