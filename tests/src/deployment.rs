//! The client the deployment-shape tests (Sentinel, Redis Cluster) build:
//! a short `max_ttl` so that a quarantine ends within the test, leases of
//! that length, and waits bounded at 20 s.

use std::time::Duration;

use quorate_redlock::{LockOptions, Redlock};

/// A client of `urls` whose leases and quarantines last `max_ttl`.
pub async fn client(urls: &[String], max_ttl: Duration) -> Redlock {
    Redlock::builder()
        .urls(urls)
        .max_ttl(max_ttl)
        .defaults(
            LockOptions::new()
                .ttl(max_ttl)
                .acquire_timeout(Some(Duration::from_secs(20))),
        )
        .build()
        .await
        .expect("connect")
}
