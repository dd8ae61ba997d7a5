//! Why a client could not be built: a configuration mistake to fix, or
//! servers (or a runtime) that may be there on a later try.

use std::time::Duration;

use crate::config_error::ConfigError;

/// Why [`Redlock::connect`](crate::Redlock::connect),
/// [`RedlockBuilder::build`](crate::RedlockBuilder::build) or
/// [`Redlock::from_config`](crate::Redlock::from_config) failed:
/// [`is_retryable`](Self::is_retryable) tells "fix the configuration" from
/// "try again later".
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// A configuration mistake; nothing was sent. Not retryable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Fewer than a majority of the nodes could be reached and authenticated
    /// while connecting (see [`RedlockBuilder::lazy`](crate::RedlockBuilder::lazy)
    /// to start anyway and let them join later). Retryable.
    #[error(
        "only {reachable} of {nodes} nodes could be reached and authenticated within \
         {waited:?}, {quorum} needed: {}",
        problems.iter().map(|(node, why)| format!("{node}: {why}")).collect::<Vec<_>>().join("; ")
    )]
    Unreachable {
        /// Nodes connected.
        reachable: usize,
        /// Nodes given.
        nodes: usize,
        /// The majority needed.
        quorum: usize,
        /// How long the connections were waited for.
        waited: Duration,
        /// Every unreachable node (`host:port`) and why.
        problems: Vec<(String, String)>,
    },
    /// The blocking API's runtime could not be started (its thread).
    /// Retryable.
    #[error("the blocking client's runtime could not be started: {0}")]
    Runtime(String),
}

impl ConnectError {
    /// Whether the same call may succeed later without a change: the
    /// servers were unreachable, or a thread could not be started. A
    /// configuration mistake is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectError::Config(_) => false,
            ConnectError::Unreachable { .. } | ConnectError::Runtime(_) => true,
        }
    }

    /// The configuration mistake, if that is what it is.
    pub fn config(&self) -> Option<&ConfigError> {
        match self {
            ConnectError::Config(config) => Some(config),
            _ => None,
        }
    }
}
