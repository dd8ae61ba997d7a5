//! The scripts against their native twins: generated calls run on a real
//! server and on a memory node must get the same replies and leave the
//! same keys (`quorate_redlock::raw::check_twin`).

use quorate_redlock::raw::{check_keys, check_twin, check_twin_unordered, twin_nodes};
use quorate_testkit::Cluster;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::allocate::TAKE;
use crate::usage::{READ_HASH, READ_SET, RECORD};

fn seeded() -> (u64, StdRng) {
    let seed = rand::random();
    println!("seed {seed}");
    (seed, StdRng::seed_from_u64(seed))
}

#[tokio::test]
async fn take_matches_its_twin_on_generated_requests() {
    let cluster = Cluster::start(1).await.expect("redis-server");
    let (real, memory) = twin_nodes(&cluster.urls()[0]).await.expect("connect");
    let (seed, mut rng) = seeded();
    for scenario in 0..40 {
        let universe: Vec<String> = (0..6)
            .map(|k| format!("twin:{seed}:{scenario}:k{k}"))
            .collect();
        // leftovers behind the scripts' backs: with a ttl, or without one
        for key in &universe {
            match rng.random_range(0..6) {
                0 => {
                    cluster
                        .plant(0, key, "other", std::time::Duration::from_secs(40))
                        .await
                        .expect("SET");
                    memory.set(key, b"other", Some(std::time::Duration::from_secs(40)));
                }
                1 => {
                    cluster
                        .server(0)
                        .command(&["SET", key, "other"])
                        .await
                        .expect("SET");
                    memory.set(key, b"other", None);
                }
                _ => {}
            }
        }
        for _call in 0..8 {
            let groups = rng.random_range(1..=2);
            let mut keys = Vec::new();
            let token = format!("token-{}", rng.random_range(0..3));
            let ttl = [30_000, 60_000][rng.random_range(0..2)];
            let mut args = vec![
                token.into_bytes(),
                ttl.to_string().into_bytes(),
                groups.to_string().into_bytes(),
            ];
            let mut pool: Vec<&String> = universe.iter().collect();
            for _ in 0..groups {
                let count = rng.random_range(1..=pool.len().min(3));
                let need = rng.random_range(1..=count);
                for _ in 0..count {
                    let i = rng.random_range(0..pool.len());
                    keys.push(pool.remove(i).clone());
                }
                args.push(count.to_string().into_bytes());
                args.push(need.to_string().into_bytes());
            }
            check_twin(&TAKE, real.as_ref(), &memory, keys, args)
                .await
                .unwrap_or_else(|m| panic!("seed {seed}: {m}"));
        }
        check_keys(real.as_ref(), &memory, &universe)
            .await
            .unwrap_or_else(|m| panic!("seed {seed}: {m}"));
    }
}

#[tokio::test]
async fn usage_scripts_match_their_twins_on_generated_figures() {
    let cluster = Cluster::start(1).await.expect("redis-server");
    let (real, memory) = twin_nodes(&cluster.urls()[0]).await.expect("connect");
    let (seed, mut rng) = seeded();
    let tags = format!("twin:{seed}:tags");
    let mut touched = vec![tags.clone()];
    for _call in 0..60 {
        let figures = rng.random_range(1..=3);
        let mut keys = vec![tags.clone()];
        let mut args = Vec::new();
        for _ in 0..figures {
            let tag = format!("tag{}", rng.random_range(0..3));
            let value = format!("v{}", rng.random_range(0..4));
            keys.push(format!("twin:{seed}:values:{tag}"));
            keys.push(format!("twin:{seed}:figures:{tag}:{value}"));
            args.push(tag.into_bytes());
            args.push(value.into_bytes());
            args.push(
                ["grants", "waited_ms", "held_ms"][rng.random_range(0..3)]
                    .as_bytes()
                    .to_vec(),
            );
            args.push(rng.random_range(-5..100i64).to_string().into_bytes());
        }
        touched.extend(keys.iter().cloned());
        check_twin(&RECORD, real.as_ref(), &memory, keys.clone(), args)
            .await
            .unwrap_or_else(|m| panic!("seed {seed}: {m}"));
        let read = keys[rng.random_range(0..keys.len())].clone();
        let script = if read.contains(":figures:") {
            &READ_HASH
        } else {
            &READ_SET
        };
        check_twin_unordered(script, real.as_ref(), &memory, vec![read], Vec::new())
            .await
            .unwrap_or_else(|m| panic!("seed {seed}: {m}"));
    }
    touched.sort();
    touched.dedup();
    check_keys(real.as_ref(), &memory, &touched)
        .await
        .unwrap_or_else(|m| panic!("seed {seed}: {m}"));
}

/// A size read with its adds in id order (`HGETALL` has no order).
fn size_read(
    reply: Result<quorate_redlock::raw::ScriptValue, quorate_redlock::NodeError>,
) -> Result<Vec<quorate_redlock::raw::ScriptValue>, String> {
    use quorate_redlock::raw::ScriptValue;
    match reply.map_err(|e| e.message().to_owned())? {
        // epoch, base, in sync, then the adds in any order
        ScriptValue::Array(items) if items.len() >= 3 => {
            let mut pairs: Vec<Vec<ScriptValue>> =
                items[3..].chunks(2).map(<[ScriptValue]>::to_vec).collect();
            pairs.sort_by_key(|pair| format!("{pair:?}"));
            let mut out = items[..3].to_vec();
            out.extend(pairs.into_iter().flatten());
            Ok(out)
        }
        other => Err(format!("unexpected read {other:?}")),
    }
}

#[tokio::test]
async fn size_matches_its_twin_on_generated_sets_adds_and_reads() {
    use crate::size::SIZE;
    use quorate_redlock::Node;

    let cluster = Cluster::start(1).await.expect("redis-server");
    let (real, memory) = twin_nodes(&cluster.urls()[0]).await.expect("connect");
    let (seed, mut rng) = seeded();
    let keys = vec![format!("twin:{seed}:size"), format!("twin:{seed}:adds")];
    let epochs = [
        "000000000000001-a",
        "000000000000002-b",
        "000000000000003-c",
    ];
    for call in 0..200 {
        let epoch = epochs[rng.random_range(0..epochs.len())]
            .as_bytes()
            .to_vec();
        let base = rng.random_range(1..9u32).to_string().into_bytes();
        let args = match rng.random_range(0..4) {
            0 => vec![b"set".to_vec(), epoch, base],
            1 => {
                let on_server =
                    size_read(real.eval(&SIZE, keys.clone(), vec![b"read".to_vec()]).await);
                let in_memory = size_read(
                    memory
                        .eval(&SIZE, keys.clone(), vec![b"read".to_vec()])
                        .await,
                );
                assert_eq!(on_server, in_memory, "seed {seed}, call {call}: read");
                continue;
            }
            // an add under some epoch: applied, caught up, or refused as stale
            _ => vec![
                b"add".to_vec(),
                epoch,
                base,
                format!("id{}", rng.random_range(0..4)).into_bytes(),
                rng.random_range(-3..4i32).to_string().into_bytes(),
            ],
        };
        check_twin(&SIZE, real.as_ref(), &memory, keys.clone(), args)
            .await
            .unwrap_or_else(|m| panic!("seed {seed}, call {call}: {m}"));
    }
    check_keys(real.as_ref(), &memory, &keys)
        .await
        .unwrap_or_else(|m| panic!("seed {seed}: {m}"));
}
