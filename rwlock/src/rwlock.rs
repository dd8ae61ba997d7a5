//! The read-write lock: many readers or one writer, writers preferred.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use quorate_redlock::raw::{retry, Retry, UndoGuard, WaitPolicy};
use quorate_redlock::{Error, LockOptions, NameError, Redlock};
use tokio::time::Instant;
use tracing::Instrument;

use crate::acquire::{self, Access, Call};
use crate::guard::RwLockGuard;
use crate::keys::RwKeys;

/// A read-write lock called `name` on a Redlock's nodes: any number of
/// readers, or one writer. Cloning shares it.
///
/// **Writers are preferred.** A writer that finds readers leaves an intent
/// on the servers, and new readers wait while any writer's intent is live,
/// so a stream of readers cannot starve a writer; readers already in keep
/// their lock until they release it. A writer that gives up takes its
/// intent back; one that died (or whose call was dropped while its undo
/// could not reach a node) holds readers up at most `waiter_ttl` (1 s by
/// default), after which its intent lapses. Readers can starve while
/// writers keep coming (as in every writer-preferring lock).
///
/// Readers and writers are leases like the mutex's: they end at their ttl
/// if their holder dies, extend, auto-extend and signal loss the same way.
/// A writer locked with `fencing(true)` gets a fencing token, strictly
/// larger than any earlier writer's.
/// Not reentrant, and no upgrade: a holder of a read lock asking for the
/// write lock waits for itself.
#[derive(Clone)]
pub struct RwLock {
    inner: Arc<Inner>,
}

struct Inner {
    redlock: Redlock,
    name: String,
    keys: RwKeys,
}

impl fmt::Debug for RwLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RwLock")
            .field("name", &self.inner.name)
            .field("redlock", &self.inner.redlock)
            .finish()
    }
}

impl RwLock {
    /// The read-write lock `name` on `redlock`'s nodes; its default options
    /// are the Redlock's. Every client naming it on the same nodes shares it.
    ///
    /// Errors: [`NameError`] for an empty name, or one with a brace.
    pub fn new(redlock: &Redlock, name: &str) -> Result<RwLock, NameError> {
        NameError::check("read-write lock", name, false, None)?;
        Ok(RwLock {
            inner: Arc::new(Inner {
                redlock: redlock.with_metric_label("rwlock"),
                name: name.to_owned(),
                keys: RwKeys::new(redlock.namespace(), name),
            }),
        })
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The default options (the Redlock's), to adjust for
    /// [`read_with`](Self::read_with) and [`write_with`](Self::write_with).
    pub fn options(&self) -> LockOptions {
        self.inner.redlock.defaults().clone()
    }

    /// A read lock for `ttl`, waiting while a writer holds the lock or
    /// waits for it, up to the default acquire timeout (10 s unless the
    /// Redlock's defaults say otherwise).
    ///
    /// Errors: [`Error::Taken`] (naming the writer or waiting writer) when
    /// the timeout passed; [`Error::NoQuorum`] when too few nodes answered.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future undoes the round in flight (the
    /// undo is spawned); no guard is lost.
    ///
    /// ```no_run
    /// # async fn demo(lock: quorate_rwlock::RwLock) -> Result<(), quorate_redlock::Error> {
    /// let reading = lock.read(std::time::Duration::from_secs(10)).await?;
    /// // other readers may read too; no writer writes
    /// reading.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn read(&self, ttl: Duration) -> Result<RwLockGuard, Error> {
        self.read_with(&self.options().ttl(ttl)).await
    }

    /// The write lock for `ttl`, waiting for the writer and the readers to
    /// release (and keeping new readers out meanwhile), up to the default
    /// acquire timeout.
    ///
    /// Errors: [`Error::Taken`] (naming a reader or the writer) when the
    /// timeout passed; [`Error::NoQuorum`] when too few nodes answered.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future undoes the round in flight and the
    /// writer's intent (both spawned).
    ///
    /// ```no_run
    /// # async fn demo(lock: quorate_rwlock::RwLock) -> Result<(), quorate_redlock::Error> {
    /// let writing = lock.write(std::time::Duration::from_secs(10)).await?;
    /// // alone: no reader, no other writer
    /// writing.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn write(&self, ttl: Duration) -> Result<RwLockGuard, Error> {
        self.write_with(&self.options().ttl(ttl)).await
    }

    /// One round only: a read lock now, or the error.
    ///
    /// # Cancel safety
    /// As [`read`](Self::read).
    ///
    /// ```no_run
    /// # async fn demo(lock: quorate_rwlock::RwLock) {
    /// match lock.try_read(std::time::Duration::from_secs(10)).await {
    ///     Ok(reading) => drop(reading),
    ///     Err(busy) => eprintln!("{busy}"), // names the writer
    /// }
    /// # }
    /// ```
    pub async fn try_read(&self, ttl: Duration) -> Result<RwLockGuard, Error> {
        self.read_with(&self.options().ttl(ttl).max_attempts(Some(1)))
            .await
    }

    /// One round only: the write lock now, or the error (the refused
    /// round's intent is taken back at once).
    ///
    /// # Cancel safety
    /// As [`write`](Self::write).
    ///
    /// ```no_run
    /// # async fn demo(lock: quorate_rwlock::RwLock) {
    /// if let Ok(writing) = lock.try_write(std::time::Duration::from_secs(10)).await {
    ///     drop(writing);
    /// }
    /// # }
    /// ```
    pub async fn try_write(&self, ttl: Duration) -> Result<RwLockGuard, Error> {
        self.write_with(&self.options().ttl(ttl).max_attempts(Some(1)))
            .await
    }

    /// [`read`](Self::read) with `options` (ttl, acquire timeout, attempts,
    /// auto-extension, node timeout…). Fencing does not apply to readers.
    ///
    /// # Cancel safety
    /// As [`read`](Self::read).
    ///
    /// ```no_run
    /// # async fn demo(lock: quorate_rwlock::RwLock) -> Result<(), quorate_redlock::Error> {
    /// let options = lock.options().auto_extend(true);
    /// let reading = lock.read_with(&options).await?;
    /// # drop(reading); Ok(()) }
    /// ```
    pub async fn read_with(&self, options: &LockOptions) -> Result<RwLockGuard, Error> {
        self.lock(Access::Read, options).await
    }

    /// [`write`](Self::write) with `options`.
    ///
    /// # Cancel safety
    /// As [`write`](Self::write).
    ///
    /// ```no_run
    /// # async fn demo(lock: quorate_rwlock::RwLock) -> Result<(), quorate_redlock::Error> {
    /// let options = lock.options().acquire_timeout(Some(std::time::Duration::from_secs(30)));
    /// let writing = lock.write_with(&options).await?;
    /// # drop(writing); Ok(()) }
    /// ```
    pub async fn write_with(&self, options: &LockOptions) -> Result<RwLockGuard, Error> {
        self.lock(Access::Write, options).await
    }

    async fn lock(&self, access: Access, options: &LockOptions) -> Result<RwLockGuard, Error> {
        let called = Instant::now();
        let result = self.lock_inner(access, options, called).await;
        self.inner.redlock.count_acquire(&result, called.elapsed());
        result
    }

    async fn lock_inner(
        &self,
        access: Access,
        options: &LockOptions,
        called: Instant,
    ) -> Result<RwLockGuard, Error> {
        options.validate()?;
        let redlock = &self.inner.redlock;
        redlock.check_ttl(options.get_ttl())?;
        let call = Call {
            access,
            member: redlock.fresh_token().to_hex(),
        };
        // A writer that gives up (or is dropped) takes its intent back, so
        // readers are not held up for nothing; granted, the script already did.
        let mut intent = (access == Access::Write).then(|| {
            UndoGuard::armed(
                redlock,
                vec![self.inner.keys.intent(&call.member)],
                &call.member,
                options.effective_node_timeout(),
            )
        });
        let policy = WaitPolicy::new(options, called);
        // a writer tries again before its intent lapses
        let renew = options.get_waiter_ttl() / 3;
        let span = tracing::debug_span!("quorate.rwlock.acquire", lock = %self.inner.name, access = access.as_str());
        let guard = retry(
            redlock,
            &policy,
            None,
            |_| {
                acquire::attempt(redlock, &self.inner.keys, &self.inner.name, &call, options)
                    .instrument(span.clone())
            },
            |refused| {
                let pause = options.retry_pause(refused.error.outcomes());
                Retry::After {
                    pause: match access {
                        Access::Read => pause,
                        Access::Write => pause.min(renew),
                    },
                    watch: refused.watch.clone().map(|key| vec![key]),
                }
            },
        )
        .await;
        match (guard, intent.as_mut()) {
            (Ok(guard), intent) => {
                intent.map(UndoGuard::disarm);
                Ok(RwLockGuard::new(guard, access))
            }
            (Err(refused), Some(intent)) => {
                intent.send().await;
                Err(refused.error)
            }
            (Err(refused), None) => Err(refused.error),
        }
    }
}
