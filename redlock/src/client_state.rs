//! The state one [`Redlock`](crate::Redlock) client and its clones share:
//! the nodes and quorum, the defaults, and the machinery of waiting
//! (announcements, local queue, server-queue tickets) and of holding (the
//! watchdog). The local hand-off registry holds guards, which hold this
//! state, so it sits beside it in `Redlock` (`client.rs`), not in it.

use std::sync::Arc;
use std::time::Duration;

use crate::announcements::Notifier;
use crate::backend::Node;
use crate::background::Background;
use crate::config_error::ConfigError;
use crate::local_queue::LocalQueue;
use crate::options::LockOptions;
use crate::owner::Owner;
use crate::queue::Tickets;
use crate::quorum::{self, Decide, Round};
use crate::reentry::TaskHolds;
use crate::watchdog::Watchdog;

pub(crate) struct ClientState {
    pub nodes: Vec<Arc<dyn Node>>,
    pub quorum: usize,
    pub defaults: LockOptions,
    /// The `primitive` metric label.
    pub primitive: &'static str,
    pub notifier: Arc<Notifier>,
    pub local: Arc<LocalQueue>,
    /// This client's entries in the servers' waiter queues.
    pub tickets: Arc<Tickets>,
    pub watchdog: Watchdog,
    /// The longest ttl of any lease: a node that lost its data sits out this long.
    pub max_ttl: Duration,
    /// Prepended to every resource to make its lock key.
    pub namespace: String,
    /// Who this client is (its id starts every token it hands out).
    pub owner: Arc<Owner>,
    /// The locks this client's tasks hold, for reentrancy detection.
    pub task_holds: Arc<TaskHolds>,
    /// Requests being sent from tasks of their own (releases of dropped
    /// guards, undos, leaving queues), for `flush_released`.
    pub background: Arc<Background>,
}

impl std::fmt::Debug for ClientState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes: Vec<&str> = self.nodes.iter().map(|n| n.name()).collect();
        f.debug_struct("ClientState")
            .field("nodes", &nodes)
            .field("quorum", &self.quorum)
            .finish_non_exhaustive()
    }
}

impl ClientState {
    /// A lease of `ttl` must not outlive the quarantine of a node that
    /// forgot it (`max_ttl`).
    pub(crate) fn check_ttl(&self, ttl: Duration) -> Result<(), ConfigError> {
        if ttl > self.max_ttl {
            return Err(ConfigError::TtlAboveMaxTtl {
                ttl,
                max_ttl: self.max_ttl,
            });
        }
        Ok(())
    }

    /// Compare-and-delete of `keys` on every node: the undo of a failed
    /// round and the body of a release.
    /// Waiters everywhere are told (this is a release, not an undo).
    ///
    /// Decided once a majority answered: whatever those nodes held is gone,
    /// so at most a minority can still hold the lock (and the stragglers
    /// still get the request).
    pub(crate) async fn release_round(
        &self,
        keys: &[String],
        token: &str,
        node_timeout: Duration,
    ) -> Round<u64> {
        let announce = Some(self.notifier.id());
        quorum::round(
            "release",
            &self.nodes,
            node_timeout,
            Decide::Majority(self.quorum),
            |_answered| true,
            |node| node.release(keys, token, announce),
        )
        .await
    }
}
