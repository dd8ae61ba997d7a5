//! The latch's scripts against their native twins: generated count-downs
//! (some with another count) and reads on a real server and on a memory
//! node must get the same replies and leave the same keys
//! (`quorate_redlock::raw::check_twin`); a read's ids are compared as sets.

use quorate_redlock::raw::{check_keys, check_twin, twin_nodes, ScriptValue};
use quorate_redlock::Node;
use quorate_testkit::Cluster;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::latch::{COUNT_DOWN, READ};

/// A read's reply with its ids sorted (`SMEMBERS` has no order).
fn sorted(reply: Result<ScriptValue, quorate_redlock::NodeError>) -> Result<ScriptValue, String> {
    let mut reply = reply.map_err(|e| e.message().to_owned())?;
    if let ScriptValue::Array(items) = &mut reply {
        if let Some(ScriptValue::Array(ids)) = items.get_mut(1) {
            ids.sort_by_key(|id| format!("{id:?}"));
        }
    }
    Ok(reply)
}

#[tokio::test]
async fn count_down_and_read_match_their_twins_on_generated_calls() {
    let cluster = Cluster::start(1).await.expect("redis-server");
    let (real, memory) = twin_nodes(&cluster.urls()[0]).await.expect("connect");
    let seed = rand::random();
    println!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let keys = vec![format!("twin:{seed}:count"), format!("twin:{seed}:downs")];
    for call in 0..200 {
        if rng.random_range(0..3) == 0 {
            let on_server = sorted(real.eval(&READ, keys.clone(), vec![]).await);
            let in_memory = sorted(memory.eval(&READ, keys.clone(), vec![]).await);
            match (&on_server, &in_memory) {
                (Ok(a), Ok(b)) if a == b => {}
                _ => panic!("seed {seed}, call {call}: read {on_server:?} / {in_memory:?}"),
            }
            continue;
        }
        // mostly the latch's count, sometimes another (refused on both)
        let count = if rng.random_range(0..8) == 0 {
            "4"
        } else {
            "3"
        };
        let args = vec![
            count.as_bytes().to_vec(),
            format!("id{}", rng.random_range(0..5)).into_bytes(),
            b"60000".to_vec(),
            b"quorate:released:".to_vec(),
            b"twin".to_vec(),
        ];
        check_twin(&COUNT_DOWN, real.as_ref(), &memory, keys.clone(), args)
            .await
            .unwrap_or_else(|m| panic!("seed {seed}, call {call}: {m}"));
    }
    check_keys(real.as_ref(), &memory, &keys)
        .await
        .unwrap_or_else(|m| panic!("seed {seed}: {m}"));
}
