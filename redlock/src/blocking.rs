//! The same locks for code that is not async (feature `blocking`), in the
//! style of `reqwest::blocking`: each client owns a small tokio runtime
//! (one worker thread, which also runs the client's background work:
//! release announcements, auto-extension, owner refresh), and each call
//! blocks the calling thread until it is done. Guards release on drop,
//! with no runtime needed in the caller.
//!
//! Do not use it from async code: blocking a runtime's thread stalls it
//! (calls made inside a runtime panic, as `reqwest::blocking`'s do).
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use quorate_redlock::blocking::Redlock;
//!
//! let redlock = Redlock::connect(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002",
//!                                 "redis://127.0.0.1:7003"])?;
//! let guard = redlock.lock("invoice:42", Duration::from_secs(10))?;
//! // ... work while guard.remaining() > 0 ...
//! guard.release()?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;

use crate::error::{ConfigError, Error};
use crate::guard::ReleaseOutcome;
use crate::inspect::{ForceUnlocked, Inspection};
use crate::lease::Lease;
use crate::options::LockOptions;
use crate::owner::Owner;

/// A blocking [`Redlock`](crate::Redlock): the same calls, each blocking
/// the calling thread. Cloning shares the client and its runtime.
#[derive(Clone, Debug)]
pub struct Redlock {
    inner: crate::Redlock,
    runtime: Arc<Runtime>,
}

/// A held lock of a blocking [`Redlock`]. Dropping it releases the lock
/// (through the client's runtime; the drop returns once the release round
/// is done, each node bounded by the node timeout).
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard {
    inner: Option<crate::LockGuard>,
    runtime: Arc<Runtime>,
}

fn runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("quorate-blocking")
        .enable_all()
        .build()
}

impl Redlock {
    /// [`Redlock::connect`](crate::Redlock::connect), blocking.
    ///
    /// Errors: as the async call; [`ConfigError::Runtime`] when the
    /// runtime's thread cannot be started.
    pub fn connect<I, S>(urls: I) -> Result<Redlock, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::build(crate::Redlock::builder().urls(urls))
    }

    /// A client from an async [`RedlockBuilder`](crate::RedlockBuilder)
    /// (options, owner label, namespace, settings), built on this client's
    /// own runtime.
    pub fn build(builder: crate::RedlockBuilder) -> Result<Redlock, ConfigError> {
        let runtime = runtime().map_err(|e| ConfigError::Runtime(e.to_string()))?;
        let inner = runtime.block_on(builder.build())?;
        Ok(Redlock {
            inner,
            runtime: Arc::new(runtime),
        })
    }

    /// A client over nodes built by the caller (e.g.
    /// [`MemoryNode`](crate::MemoryNode)s), as
    /// [`Redlock::from_nodes`](crate::Redlock::from_nodes), on this
    /// client's own runtime.
    pub fn from_nodes(
        nodes: Vec<Arc<dyn crate::Node>>,
        defaults: LockOptions,
    ) -> Result<Redlock, ConfigError> {
        let runtime = runtime().map_err(|e| ConfigError::Runtime(e.to_string()))?;
        // its background work starts on this runtime
        let inner = runtime.block_on(async { crate::Redlock::from_nodes(nodes, defaults) })?;
        Ok(Redlock {
            inner,
            runtime: Arc::new(runtime),
        })
    }

    /// [`Redlock::lock`](crate::Redlock::lock), blocking: waits for the
    /// lock up to the default acquire timeout.
    pub fn lock(&self, resource: &str, ttl: Duration) -> Result<LockGuard, Error> {
        self.guard(self.runtime.block_on(self.inner.lock(resource, ttl)))
    }

    /// [`Redlock::try_lock`](crate::Redlock::try_lock), blocking: one round.
    pub fn try_lock(&self, resource: &str, ttl: Duration) -> Result<LockGuard, Error> {
        self.guard(self.runtime.block_on(self.inner.try_lock(resource, ttl)))
    }

    /// [`Redlock::lock_with`](crate::Redlock::lock_with), blocking.
    pub fn lock_with<I, S>(&self, resources: I, options: &LockOptions) -> Result<LockGuard, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.guard(
            self.runtime
                .block_on(self.inner.lock_with(resources, options)),
        )
    }

    /// [`Redlock::inspect`](crate::Redlock::inspect), blocking.
    pub fn inspect(&self, resource: &str) -> Result<Inspection, Error> {
        self.runtime.block_on(self.inner.inspect(resource))
    }

    /// [`Redlock::force_unlock`](crate::Redlock::force_unlock), blocking.
    pub fn force_unlock(&self, resource: &str) -> Result<ForceUnlocked, Error> {
        self.runtime.block_on(self.inner.force_unlock(resource))
    }

    /// Who this client is, as recorded on the nodes.
    pub fn owner(&self) -> &Owner {
        self.inner.owner()
    }

    /// The async client underneath (to use from async code elsewhere in
    /// the program; its futures must run on a runtime).
    pub fn as_async(&self) -> &crate::Redlock {
        &self.inner
    }

    fn guard(&self, result: Result<crate::LockGuard, Error>) -> Result<LockGuard, Error> {
        result.map(|guard| LockGuard {
            inner: Some(guard),
            runtime: Arc::clone(&self.runtime),
        })
    }
}

impl LockGuard {
    fn guard(&self) -> &crate::LockGuard {
        // only `release` and `drop` take it, and both consume the guard
        self.inner.as_ref().expect("a live guard holds its lock")
    }

    /// The current lease (token, ttl, validity, fence).
    pub fn lease(&self) -> Lease {
        self.guard().lease()
    }

    /// The validity left; act under the lock only while this is positive.
    pub fn remaining(&self) -> Duration {
        self.guard().remaining()
    }

    /// Whether validity is left.
    pub fn is_valid(&self) -> bool {
        self.guard().is_valid()
    }

    /// The locked resources.
    pub fn resources(&self) -> &[String] {
        self.guard().resources()
    }

    /// [`LockGuard::extend`](crate::LockGuard::extend), blocking.
    pub fn extend(&mut self, ttl: Duration) -> Result<(), Error> {
        let runtime = Arc::clone(&self.runtime);
        let guard = self.inner.as_mut().expect("a live guard holds its lock");
        runtime.block_on(guard.extend(ttl))
    }

    /// [`LockGuard::release`](crate::LockGuard::release), blocking.
    pub fn release(mut self) -> Result<ReleaseOutcome, Error> {
        let guard = self.inner.take().expect("a live guard holds its lock");
        self.runtime.block_on(guard.release())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let Some(guard) = self.inner.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            // inside some runtime (misuse): never block it; the async
            // guard's own drop spawns the release on ours
            let _entered = self.runtime.enter();
            drop(guard);
        } else if let Err(error) = self.runtime.block_on(guard.release()) {
            tracing::warn!(%error, "release of a dropped blocking guard failed; the lock expires at its ttl");
        }
    }
}
