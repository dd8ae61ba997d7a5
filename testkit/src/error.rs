//! The one error type every fallible testkit operation returns.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Why a testkit operation failed.
///
/// The "not found" variants carry an install hint because the usual cause is
/// a fresh machine, and the person reading the test failure needs to know
/// what to install rather than which path was searched.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// No usable `redis-server` binary was found.
    #[error(
        "redis-server not found on PATH or in $QUORATE_REDIS_SERVER; install it with \
         `apt-get install redis-server` (Debian/Ubuntu) or `brew install redis`"
    )]
    RedisServerNotFound,

    /// No usable `faketime` binary was found (needed for `ServerOptions::clock_rate`).
    #[error(
        "faketime not found on PATH or in $QUORATE_FAKETIME; install it with \
         `apt-get install faketime` (Debian/Ubuntu) or `brew install libfaketime`"
    )]
    FaketimeNotFound,

    /// The [`ServerOptions`](crate::ServerOptions) cannot be honoured (e.g. a
    /// clock rate that is not a positive finite number).
    #[error("invalid server options: {0}")]
    InvalidOptions(String),

    /// A child process could not be started at all.
    #[error("failed to spawn {program}: {source}")]
    Spawn {
        /// The program that was executed.
        program: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },

    /// The server process was started but never answered PING.
    #[error(
        "redis-server on 127.0.0.1:{port} did not answer PING within {waited:?}; \
         its output was in {} (deleted with the server); last lines:\n{tail}",
        log.display()
    )]
    NotReady {
        /// The port the server was asked to listen on.
        port: u16,
        /// How long readiness was awaited before giving up.
        waited: Duration,
        /// The file that held the server's stdout and stderr.
        log: PathBuf,
        /// The last lines of that file.
        tail: String,
    },

    /// The server process exited before it answered PING (for example because
    /// another process took its port first; `start` retries those).
    #[error(
        "redis-server for 127.0.0.1:{port} exited before it was ready ({status}); \
         its output was in {} (deleted with the server); last lines:\n{tail}",
        log.display()
    )]
    Exited {
        /// The port the server was asked to listen on.
        port: u16,
        /// How the process ended, as printed by the OS.
        status: String,
        /// The file that held the server's stdout and stderr.
        log: PathBuf,
        /// The last lines of that file.
        tail: String,
    },

    /// A request did not complete within its deadline (e.g. the node is paused
    /// or black-holed).
    #[error("no reply from {addr} within {after:?}")]
    Timeout {
        /// The address that was talked to.
        addr: SocketAddr,
        /// The deadline that passed.
        after: Duration,
    },

    /// A socket or file-system operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),

    /// The server replied with an error, or sent bytes that are not valid RESP2.
    #[error("RESP error: {0}")]
    Resp(String),
}
