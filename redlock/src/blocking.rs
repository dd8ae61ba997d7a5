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

use crate::connect_error::ConnectError;
use crate::error::Error;
use crate::guard::ReleaseOutcome;
use crate::inspect::{ForceUnlocked, Inspection};
use crate::lease::Lease;
use crate::options::LockOptions;
use crate::owner::Owner;
use crate::release::Release;

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
    inner: Held<crate::LockGuard>,
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
    /// Errors: as the async call; [`ConnectError::Runtime`] when the
    /// runtime's thread cannot be started.
    pub fn connect<I, S>(urls: I) -> Result<Redlock, ConnectError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::build(crate::Redlock::builder().urls(urls))
    }

    /// A client from an async [`RedlockBuilder`](crate::RedlockBuilder)
    /// (options, owner label, namespace, settings), built on this client's
    /// own runtime.
    pub fn build(builder: crate::RedlockBuilder) -> Result<Redlock, ConnectError> {
        Self::on_own_runtime(builder.build())
    }

    /// A client over nodes built by the caller (e.g.
    /// [`MemoryNode`](crate::MemoryNode)s), as
    /// [`Redlock::from_nodes`](crate::Redlock::from_nodes), on this
    /// client's own runtime.
    pub fn from_nodes(
        nodes: Vec<Arc<dyn crate::Node>>,
        defaults: LockOptions,
    ) -> Result<Redlock, ConnectError> {
        Self::on_own_runtime(async { Ok(crate::Redlock::from_nodes(nodes, defaults)?) })
    }

    /// A client made by `make` on a new runtime of its own, where its
    /// background work then runs.
    fn on_own_runtime(
        make: impl std::future::Future<Output = Result<crate::Redlock, ConnectError>>,
    ) -> Result<Redlock, ConnectError> {
        let runtime = runtime().map_err(|e| ConnectError::Runtime(e.to_string()))?;
        let inner = runtime.block_on(make)?;
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

    /// Runs `future` on this client's runtime, blocking the calling
    /// thread: any call of the crates built on quorate-redlock (a pool,
    /// semaphore, rwlock, latch, tree lock or spinlock made from
    /// [`as_async`](Self::as_async)). Keep the guards it returns with
    /// [`hold`](Self::hold).
    ///
    /// ```no_run
    /// # fn demo(redlock: quorate_redlock::blocking::Redlock) -> Result<(), quorate_redlock::Error> {
    /// # use std::time::Duration;
    /// let guard = redlock.block_on(redlock.as_async().lock("job", Duration::from_secs(5)))?;
    /// let guard = redlock.hold(guard);
    /// println!("{:?} left", guard.remaining());
    /// # Ok(()) }
    /// ```
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Keeps an async guard (a [`LockGuard`](crate::LockGuard), a pool's,
    /// an rwlock's…) for code that is not async: it derefs to the guard,
    /// and dropping it releases the lock on this client's runtime (the drop
    /// returns once the release round is done).
    pub fn hold<G: Release>(&self, guard: G) -> Held<G> {
        Held {
            guard: Some(guard),
            runtime: Arc::clone(&self.runtime),
        }
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
            inner: self.hold(guard),
        })
    }
}

/// An async guard kept by blocking code ([`Redlock::hold`]): derefs to the
/// guard; dropping it releases the lock on the client's runtime, returning
/// once the release round is done (dropped inside some runtime by mistake,
/// it spawns the release there instead of blocking). Call its async
/// methods with [`Redlock::block_on`]; take it back with
/// [`into_inner`](Self::into_inner) (for a `release` that reports).
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct Held<G: Release> {
    guard: Option<G>,
    runtime: Arc<Runtime>,
}

impl<G: Release> Held<G> {
    /// The guard itself (its drop then needs a runtime again).
    pub fn into_inner(mut self) -> G {
        self.guard.take().expect("a held guard")
    }
}

impl<G: Release> std::ops::Deref for Held<G> {
    type Target = G;

    fn deref(&self) -> &G {
        self.guard.as_ref().expect("a held guard")
    }
}

impl<G: Release> std::ops::DerefMut for Held<G> {
    fn deref_mut(&mut self) -> &mut G {
        self.guard.as_mut().expect("a held guard")
    }
}

impl<G: Release> Drop for Held<G> {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            // inside some runtime (misuse): never block it; the release runs
            // on ours
            drop(self.runtime.spawn(guard.release_now()));
        } else {
            // Run to completion: a release merely spawned could be cut off
            // if the client (and its runtime) went away right after.
            self.runtime.block_on(guard.release_now());
        }
    }
}

impl LockGuard {
    /// The current lease (token, ttl, validity, fence).
    pub fn lease(&self) -> Lease {
        self.inner.lease()
    }

    /// The validity left; act under the lock only while this is positive.
    pub fn remaining(&self) -> Duration {
        self.inner.remaining()
    }

    /// Whether validity is left.
    pub fn is_valid(&self) -> bool {
        self.inner.is_valid()
    }

    /// The locked resources.
    pub fn resources(&self) -> &[String] {
        self.inner.resources()
    }

    /// [`LockGuard::extend`](crate::LockGuard::extend), blocking.
    pub fn extend(&mut self, ttl: Duration) -> Result<(), Error> {
        let runtime = Arc::clone(&self.inner.runtime);
        runtime.block_on(self.inner.extend(ttl))
    }

    /// [`LockGuard::release`](crate::LockGuard::release), blocking.
    pub fn release(self) -> Result<ReleaseOutcome, Error> {
        let runtime = Arc::clone(&self.inner.runtime);
        runtime.block_on(self.inner.into_inner().release())
    }
}
