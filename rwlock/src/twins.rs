//! `acquire.lua` against its native twin: generated read, write and release
//! calls on a real server and on a memory node must get the same replies
//! and leave the same keys (`quorate_redlock::raw::check_twin`). One
//! difference is allowed, by design: which reader or waiting writer a
//! refusal names when there are several (the server's set order is not the
//! twin's), and the index entries the random pruning samples.

use quorate_redlock::raw::{check_keys, check_twin, twin_nodes, ScriptValue};
use quorate_redlock::Node;
use quorate_testkit::Cluster;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::acquire::ACQUIRE;
use crate::keys::RwKeys;

/// The kind of a refusal (`writer`, `reader`, `waiting`), if it is one.
fn refusal(reply: &Result<ScriptValue, String>) -> Option<Vec<u8>> {
    match reply {
        Ok(ScriptValue::Array(items)) => items.first()?.as_bytes().map(<[u8]>::to_vec),
        _ => None,
    }
}

#[tokio::test]
async fn acquire_matches_its_twin_on_generated_calls() {
    let cluster = Cluster::start(1).await.expect("redis-server");
    let (real, memory) = twin_nodes(&cluster.urls()[0]).await.expect("connect");
    let seed = rand::random();
    println!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let keys = RwKeys::new("", &format!("twin{seed}"));
    let ids = ["r0", "r1", "r2"];
    let members = ["m0", "m1"];
    let mut tracked = vec![keys.writer(), keys.fence()];
    tracked.extend(ids.iter().map(|id| keys.reader(id)));
    tracked.extend(members.iter().map(|m| keys.intent(m)));
    for call in 0..300 {
        let token = format!("t{}", rng.random_range(0..3));
        if rng.random_range(0..3) == 0 {
            // a release of the writer key or of a reader's key
            let releasable = [
                keys.writer(),
                keys.reader(ids[rng.random_range(0..ids.len())]),
            ];
            let key = [releasable[rng.random_range(0..2)].clone()];
            let on_server = real.release(&key, &token, None).await.expect("release");
            let in_memory = memory.release(&key, &token, None).await.expect("release");
            assert_eq!(on_server, in_memory, "seed {seed}: release of {key:?}");
            continue;
        }
        let write = rng.random_range(0..3) == 0;
        let member = members[rng.random_range(0..members.len())];
        let mine = if write {
            keys.intent(member)
        } else {
            keys.reader(ids[rng.random_range(0..ids.len())])
        };
        let fenced = if rng.random_range(0..2) == 0 {
            "1"
        } else {
            "0"
        };
        let args = vec![
            (if write { "write" } else { "read" }).as_bytes().to_vec(),
            token.into_bytes(),
            ["60000", "30000"][rng.random_range(0..2)]
                .as_bytes()
                .to_vec(),
            keys.prefix().as_bytes().to_vec(),
            member.as_bytes().to_vec(),
            b"60000".to_vec(),
            fenced.as_bytes().to_vec(),
        ];
        let all = vec![
            keys.writer(),
            keys.readers(),
            keys.intents(),
            mine,
            keys.fence(),
        ];
        match check_twin(&ACQUIRE, real.as_ref(), &memory, all, args).await {
            Ok(()) => {}
            Err(m) if refusal(&m.real).is_some() && refusal(&m.real) == refusal(&m.memory) => {}
            Err(m) => panic!("seed {seed}, call {call}: {m}"),
        }
    }
    check_keys(real.as_ref(), &memory, &tracked)
        .await
        .unwrap_or_else(|m| panic!("seed {seed}: {m}"));
}
