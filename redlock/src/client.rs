//! The client handle, [`Redlock`]: the state its clones share and its
//! registry of local hand-offs, side by side (the registry holds guards,
//! which hold the state). Its lock calls are in `mutex.rs`, the seam for
//! primitive authors in `seam.rs`, `inspect` in `inspect.rs`.

use std::fmt;
use std::sync::Arc;

use crate::client_state::ClientState;
use crate::guard::LockGuard;
use crate::handoff::Handoffs;

/// A distributed mutex over N independent Redis-protocol nodes (the Redlock
/// algorithm). A lock is granted when a majority (N/2 + 1) of nodes grant
/// it within the lease's validity; the loss of a minority changes nothing.
///
/// Cheap to clone (an `Arc` inside); clones share the nodes.
///
/// ```no_run
/// # async fn demo() -> Result<(), quorate_redlock::Error> {
/// use std::time::Duration;
/// use quorate_redlock::Redlock;
///
/// let redlock = Redlock::connect([
///     "redis://127.0.0.1:7001",
///     "redis://127.0.0.1:7002",
///     "redis://127.0.0.1:7003",
/// ])
/// .await?;
/// let guard = redlock.lock("invoice:42", Duration::from_secs(5)).await?;
/// // ... critical section, while guard.remaining() > 0 ...
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Redlock {
    pub(crate) inner: Arc<ClientState>,
    /// The heads of the local queues that a release can hand the lock to.
    pub(crate) handoffs: Arc<Handoffs<LockGuard>>,
}

impl Redlock {
    /// A client over `inner`, with a registry of hand-offs of its own.
    pub(crate) fn from_state(inner: ClientState) -> Redlock {
        Redlock {
            inner: Arc::new(inner),
            handoffs: Arc::default(),
        }
    }
}

impl fmt::Debug for Redlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redlock")
            .field("nodes", &self.node_names())
            .field("quorum", &self.inner.quorum)
            .field("defaults", &self.inner.defaults)
            .finish()
    }
}
