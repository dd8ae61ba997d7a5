//! quorate-testkit: the harness quorate's tests run on.
//!
//! Every claim about Redis behaviour is proved against real `redis-server`
//! processes. This crate provides:
//!
//! - [`RedisServer`] / [`Cluster`]: real servers on free loopback ports that
//!   can be killed, restarted (optionally with an AOF that survives),
//!   paused with SIGSTOP, or run under `faketime` with a fast or slow clock;
//! - [`RedisCluster`] / [`SentinelGroup`]: a real Redis Cluster (with
//!   replicas that take over from a crashed primary) and a Sentinel-managed
//!   primary, each as one quorate node;
//! - [`FaultProxy`]: a TCP proxy that delays, black-holes or resets traffic;
//! - [`Connection`] / [`Reply`]: a minimal RESP2 client independent of the
//!   client library under test;
//! - [`HoldLog`] / [`FenceLog`]: checkers for mutual exclusion, bounded
//!   concurrency and fencing-token monotonicity.
//!
//! When `redis-server` is missing, errors say how to install it; tests can
//! call [`redis_server_available`] to skip instead.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod checker;
mod client;
mod cluster;
mod error;
mod locate;
mod proxy;
mod redis_cluster;
mod resp;
mod sentinel;
mod server;

pub use checker::{FenceGrant, FenceLog, Hold, HoldLog, Overlap};
pub use client::{command_at, Connection, DEFAULT_COMMAND_TIMEOUT};
pub use cluster::Cluster;
pub use error::TestkitError;
pub use locate::{
    faketime_available, faketime_path, faketime_path_from, redis_server_available,
    redis_server_path, redis_server_path_from, FAKETIME_ENV, REDIS_SERVER_ENV,
};
pub use proxy::{Fault, FaultProxy};
pub use redis_cluster::{RedisCluster, CLUSTER_SLOTS};
pub use resp::Reply;
pub use sentinel::{SentinelGroup, SENTINEL_SERVICE};
pub use server::{
    RedisServer, ServerOptions, TestCertificates, TlsFiles, QUORATE_MARKER_KEY,
    QUORATE_OWNER_PREFIX, QUORATE_QUARANTINE_KEY,
};
