//! `acquire.lua` against its native twin: generated lock, check and release
//! calls on a real server and on a memory node must get the same replies
//! and leave the same lock keys (`quorate_redlock::raw::check_twin`). Two
//! differences are allowed, both by design: which live descendant a
//! conflict names when there are several (the server's set order is not
//! the twin's), and the index and owner entries the random pruning samples.

use quorate_redlock::raw::{check_keys, check_twin, twin_nodes, ScriptValue};
use quorate_redlock::Node;
use quorate_testkit::Cluster;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::acquire::ACQUIRE;
use crate::keys::TreeKeys;
use crate::path::TreePath;

/// Whether a reply is a conflict with a descendant.
fn descendant_conflict(reply: &Result<ScriptValue, String>) -> bool {
    matches!(reply, Ok(ScriptValue::Array(items))
        if items.first().and_then(ScriptValue::as_bytes) == Some(b"descendant"))
}

#[tokio::test]
async fn acquire_matches_its_twin_on_generated_calls() {
    let cluster = Cluster::start(1).await.expect("redis-server");
    let (real, memory) = twin_nodes(&cluster.urls()[0]).await.expect("connect");
    let seed = rand::random();
    println!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let keys = TreeKeys::new("", &format!("twin{seed}")).expect("tree name");
    let prefix = keys.lock_prefix();
    // every path of depth 1 to 3 over {A, B}
    let mut paths = Vec::new();
    for depth in 1..=3u32 {
        for bits in 0..(1u32 << depth) {
            let segments: Vec<&str> = (0..depth)
                .map(|d| if bits >> d & 1 == 0 { "A" } else { "B" })
                .collect();
            paths.push(TreePath::new(segments).expect("path"));
        }
    }
    let lock_keys: Vec<String> = paths
        .iter()
        .map(|p| keys.for_path(p).lock().to_owned())
        .collect();
    for call in 0..300 {
        let path = &paths[rng.random_range(0..paths.len())];
        let path_keys = keys.for_path(path);
        if rng.random_range(0..4) == 0 {
            // a release by a random holder: the node's own compare-and-delete
            let token = format!("t{}", rng.random_range(0..3));
            let key = [path_keys.lock().to_owned()];
            let on_server = real.release(&key, &token, None).await.expect("release");
            let in_memory = memory.release(&key, &token, None).await.expect("release");
            assert_eq!(on_server, in_memory, "seed {seed}: release of {key:?}");
            continue;
        }
        let mode = if rng.random_range(0..4) == 0 {
            "check"
        } else {
            "lock"
        };
        let owner = ["", "worker-1", "worker-2"][rng.random_range(0..3)];
        let args = vec![
            format!("t{}", rng.random_range(0..3)).into_bytes(),
            ["60000", "30000"][rng.random_range(0..2)]
                .as_bytes()
                .to_vec(),
            prefix.as_bytes().to_vec(),
            mode.as_bytes().to_vec(),
            owner.as_bytes().to_vec(),
        ];
        match check_twin(&ACQUIRE, real.as_ref(), &memory, path_keys.all(), args).await {
            Ok(()) => {}
            Err(m) if descendant_conflict(&m.real) && descendant_conflict(&m.memory) => {}
            Err(m) => panic!("seed {seed}, call {call}: {m}"),
        }
    }
    check_keys(real.as_ref(), &memory, &lock_keys)
        .await
        .unwrap_or_else(|m| panic!("seed {seed}: {m}"));
}
