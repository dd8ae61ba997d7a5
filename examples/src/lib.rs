//! Shared setup of the example programs: where the nodes come from.

use std::error::Error;

use quorate_redlock::Redlock;
use quorate_testkit::{redis_server_available, Cluster};

/// Real nodes for an example, in order of preference:
/// 1. `QUORATE_NODES=redis://h1:p1,redis://h2:p2,...` (e.g. the docker/ compose file);
/// 2. 5 local `redis-server` processes started through the test kit (returned, so that they
///    live until the caller drops them).
///
/// Fails with a clear message when neither is available: the script-based primitives (pool,
/// tree, spinlock) need servers that run Lua, so there is no in-memory fallback.
pub async fn real_nodes() -> Result<(Redlock, Option<Cluster>), Box<dyn Error>> {
    if let Ok(list) = std::env::var("QUORATE_NODES") {
        if !list.trim().is_empty() {
            let urls: Vec<&str> = list.split(',').map(str::trim).collect();
            println!("using the {} nodes in QUORATE_NODES", urls.len());
            return Ok((Redlock::connect(urls).await?, None));
        }
    }
    if !redis_server_available() {
        return Err(
            "redis-server not found: install it (apt-get install redis-server) or set \
                    QUORATE_NODES; this example needs servers that run Lua scripts"
                .into(),
        );
    }
    let cluster = Cluster::start(5).await?;
    println!(
        "started 5 local redis-server nodes: {}",
        cluster.urls().join(" ")
    );
    let redlock = Redlock::connect(cluster.urls()).await?;
    Ok((redlock, Some(cluster)))
}
