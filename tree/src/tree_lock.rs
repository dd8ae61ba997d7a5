//! The tree lock: one named tree over a Redlock's nodes, and its lock calls.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use quorate_redlock::{Error, ForceUnlocked, Inspection, Lease, Redlock};

use quorate_redlock::raw::{retry, Retry, WaitPolicy};
use tokio::time::Instant;
use tracing::Instrument;

use crate::acquire::{self, Mode};
use crate::error::{Conflict, TreeError};
use crate::guard::TreeGuard;
use crate::keys::TreeKeys;
use crate::metrics;
use crate::options::TreeLockOptions;
use crate::path::{IntoTreePath, PathError, TreePath};
use quorate_redlock::raw::quorum::Verdict;

/// Locks on the nodes of one named tree, over a quorum of Redis servers.
///
/// A node is named by its path from the root ([`TreePath`]). Locking it
/// conflicts with a lock on the node itself, on any ancestor, or on any
/// descendant; siblings and cousins are independent. Each server decides
/// in one atomic script (checks and sets), and a lock is granted when a
/// majority granted it in time, as with quorate-redlock's mutex.
///
/// Needs servers that run Lua (Redis ≥ 6.2, Valkey), or
/// [`MemoryNode`](quorate_redlock::MemoryNode)s (they run the script's
/// native twin). Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use quorate_redlock::Redlock;
/// use quorate_tree::TreeLock;
///
/// let redlock = Redlock::connect(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002",
///                                 "redis://127.0.0.1:7003"]).await?;
/// let tree = TreeLock::new(&redlock, "datacenter")?;
/// let rack = tree.lock(["dc1", "rack4"], Duration::from_secs(10)).await?;
/// // ["dc1"] and ["dc1", "rack4", "host2"] are blocked now; ["dc1", "rack5"] is not
/// rack.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TreeLock {
    inner: Arc<Inner>,
}

struct Inner {
    redlock: Redlock,
    name: String,
    keys: TreeKeys,
    lock_prefix: String,
    defaults: TreeLockOptions,
}

impl fmt::Debug for TreeLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TreeLock")
            .field("name", &self.inner.name)
            .field("redlock", &self.inner.redlock)
            .finish()
    }
}

impl TreeLock {
    /// The tree called `name` on `redlock`'s nodes. Its default options are
    /// the Redlock's (fencing aside: tree locks hand out no fence).
    ///
    /// Errors: [`TreeError::Name`] for an empty name or one longer than
    /// [`MAX_TREE_NAME_LEN`](crate::MAX_TREE_NAME_LEN) bytes.
    pub fn new(redlock: &Redlock, name: &str) -> Result<TreeLock, TreeError> {
        let keys = TreeKeys::new(redlock.namespace(), name)?;
        metrics::describe();
        Ok(TreeLock {
            inner: Arc::new(Inner {
                redlock: redlock.with_metric_label("tree"),
                name: name.to_owned(),
                lock_prefix: keys.lock_prefix(),
                keys,
                defaults: TreeLockOptions::from_lock_options(redlock.defaults().clone()),
            }),
        })
    }

    /// The tree's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// This tree's default options, to adjust for [`lock_with`](Self::lock_with).
    pub fn options(&self) -> TreeLockOptions {
        self.inner.defaults.clone()
    }

    /// Locks the node at `path` for `ttl`, retrying while it is blocked
    /// until the default acquire timeout (10 s unless the Redlock's defaults
    /// say otherwise). The error names what blocks it:
    /// [`TreeError::Conflict`] with the locked path, its relation, its
    /// remaining ttl and its owner id.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future undoes the round in flight (the
    /// undo is spawned); no guard is lost.
    ///
    /// ```no_run
    /// # async fn demo(tree: quorate_tree::TreeLock) -> Result<(), quorate_tree::TreeError> {
    /// let guard = tree.lock(["A", "B", "D"], std::time::Duration::from_secs(30)).await?;
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn lock(
        &self,
        path: impl IntoTreePath,
        ttl: Duration,
    ) -> Result<TreeGuard, TreeError> {
        let options = self.options().ttl(ttl);
        self.lock_with(path, &options).await
    }

    /// One round only (mutextree's `timeout=0`): the guard if a majority
    /// grants the node now, else the error.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`lock`](Self::lock).
    ///
    /// ```no_run
    /// # async fn demo(tree: quorate_tree::TreeLock) {
    /// use quorate_tree::TreeError;
    /// match tree.try_lock(["A", "B"], std::time::Duration::from_secs(30)).await {
    ///     Ok(guard) => drop(guard),
    ///     Err(TreeError::Conflict { conflict, .. }) => println!("busy: {conflict}"),
    ///     Err(other) => eprintln!("{other}"),
    /// }
    /// # }
    /// ```
    pub async fn try_lock(
        &self,
        path: impl IntoTreePath,
        ttl: Duration,
    ) -> Result<TreeGuard, TreeError> {
        let options = self.options().ttl(ttl).max_attempts(Some(1));
        self.lock_with(path, &options).await
    }

    /// Locks the node at `path` with `options` (ttl, acquire timeout,
    /// attempts, owner id, auto-extension, ...).
    ///
    /// # Cancel safety
    /// Cancel safe, as [`lock`](Self::lock).
    ///
    /// ```no_run
    /// # async fn demo(tree: quorate_tree::TreeLock) -> Result<(), quorate_tree::TreeError> {
    /// use std::time::Duration;
    /// let options = tree
    ///     .options()
    ///     .ttl(Duration::from_secs(10))
    ///     .acquire_timeout(Some(Duration::from_secs(2)))
    ///     .owner("billing-worker-3");
    /// let guard = tree.lock_with(["accounts", "eu"], &options).await?;
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn lock_with(
        &self,
        path: impl IntoTreePath,
        options: &TreeLockOptions,
    ) -> Result<TreeGuard, TreeError> {
        let called = Instant::now();
        let result = self
            .lock_inner(path.into_tree_path(), options, called)
            .await;
        let outcome = match &result {
            Ok(_) => "granted",
            Err(TreeError::Conflict { .. }) => "conflict",
            Err(TreeError::Lock(Error::NoQuorum { .. })) => "no_quorum",
            Err(TreeError::Lock(Error::Expired)) => "expired",
            Err(_) => "invalid",
        };
        metrics::acquire_done(outcome, called.elapsed());
        result
    }

    async fn lock_inner(
        &self,
        path: Result<TreePath, PathError>,
        options: &TreeLockOptions,
        called: Instant,
    ) -> Result<TreeGuard, TreeError> {
        let path = path?;
        options.validate()?;
        let lock = options.lock_options();
        self.inner
            .redlock
            .check_ttl(lock.get_ttl())
            .map_err(Error::from)?;
        let keys = self.inner.keys.for_path(&path);
        let policy = WaitPolicy::new(lock, called);
        let span = tracing::debug_span!("quorate.tree.acquire", tree = %self.inner.name, path = %path, attempt = tracing::field::Empty);
        let guard = retry(
            &self.inner.redlock,
            &policy,
            // No local queue: two tree waiters of one process rarely want
            // exactly the same node, and a queue per node would not order
            // an ancestor against its descendants.
            None,
            |attempts| {
                span.record("attempt", attempts);
                let attempt = acquire::attempt(
                    &self.inner.redlock,
                    &path,
                    &keys,
                    &self.inner.lock_prefix,
                    options,
                )
                .instrument(span.clone());
                async {
                    let result = attempt.await;
                    if let Err(error) = &result {
                        if let Some(conflict) = error.conflict() {
                            metrics::conflict(conflict.relation.as_str());
                        }
                        tracing::debug!(parent: &span, %error, "round failed");
                    }
                    result
                }
            },
            |error: &TreeError| {
                let blocker = error.conflict().map(|conflict| {
                    vec![self.inner.keys.for_path(&conflict.path).lock().to_owned()]
                });
                Retry::After {
                    pause: lock.retry_pause(error.outcomes()),
                    // released, the node that blocked this round wakes us
                    watch: blocker,
                }
            },
        )
        .await?;
        tracing::debug!(parent: &span, remaining_ms = guard.remaining().as_millis() as u64, "granted");
        let owner = options.get_owner().map(str::to_owned);
        Ok(TreeGuard::new(guard, path, owner))
    }

    /// Runs `work` only while the node at `path` is held (the decorator and
    /// context-manager forms of mutextree): locks it with auto-extension
    /// (the default options, this `ttl`), runs the future, releases. If the
    /// lock is lost meanwhile, `work` is dropped (cancelled at its next
    /// await) and the call returns [`TreeError::Lock`] with
    /// [`Error::Lost`] or [`Error::Expired`]; a node that cannot be locked
    /// returns its error without running `work`.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future drops `work` and releases the node
    /// (spawned).
    ///
    /// ```no_run
    /// # async fn demo(tree: quorate_tree::TreeLock) -> Result<(), quorate_tree::TreeError> {
    /// use std::time::Duration;
    /// let moved = tree
    ///     .run(["dc1", "rack4"], Duration::from_secs(10), |lease| async move {
    ///         println!("rack held, {:?} left", lease.remaining());
    ///         12 // servers moved; cancelled if the lock is lost
    ///     })
    ///     .await?;
    /// assert_eq!(moved, 12);
    /// # Ok(()) }
    /// ```
    pub async fn run<F, Fut, T>(
        &self,
        path: impl IntoTreePath,
        ttl: Duration,
        work: F,
    ) -> Result<T, TreeError>
    where
        F: FnOnce(Lease) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let options = self.options().ttl(ttl);
        self.run_with(path, &options, work).await
    }

    /// [`run`](Self::run) with `options` (auto-extension is turned on).
    ///
    /// # Cancel safety
    /// As [`run`](Self::run).
    ///
    /// ```no_run
    /// # async fn demo(tree: quorate_tree::TreeLock) -> Result<(), quorate_tree::TreeError> {
    /// let options = tree.options().owner("nightly-audit");
    /// tree.run_with(["dc1"], &options, |_lease| async { /* audit */ }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn run_with<F, Fut, T>(
        &self,
        path: impl IntoTreePath,
        options: &TreeLockOptions,
        work: F,
    ) -> Result<T, TreeError>
    where
        F: FnOnce(Lease) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let options = options.clone().auto_extend(true);
        let guard = self.lock_with(path, &options).await?;
        let work = work(guard.lease());
        tokio::select! {
            biased;
            lost = guard.lost() => Err(TreeError::Lock(lost)),
            output = work => {
                if let Err(error) = guard.release().await {
                    // The work finished while the lock was held; the key expires.
                    tracing::warn!(%error, "release after scoped tree work failed");
                }
                Ok(output)
            }
        }
    }

    /// Every server's view of the lock on node `path` itself (not its
    /// ancestors or descendants: [`conflict`](Self::conflict) answers
    /// "what blocks it"): the client holding it, its remaining ttl, and
    /// the majority's view ([`Redlock::inspect`] on the node's lock key).
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    ///
    /// ```no_run
    /// # async fn demo(tree: quorate_tree::TreeLock) -> Result<(), quorate_tree::TreeError> {
    /// println!("{}", tree.inspect(["dc1", "rack4"]).await?);
    /// # Ok(()) }
    /// ```
    pub async fn inspect(&self, path: impl IntoTreePath) -> Result<Inspection, TreeError> {
        let key = self.node_key(path)?;
        Ok(self.inner.redlock.inspect_key(&key).await?)
    }

    /// Frees node `path` on every server whatever its holder, for a holder
    /// known to be dead ([`Redlock::force_unlock`] on the node's lock key;
    /// its entries in the ancestors' indexes lapse with the key, and
    /// waiters are woken). The holder, if alive, is not told.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped midway, some servers may have deleted the key.
    ///
    /// ```no_run
    /// # async fn demo(tree: quorate_tree::TreeLock) -> Result<(), quorate_tree::TreeError> {
    /// let gone = tree.force_unlock(["dc1", "rack4"]).await?;
    /// println!("deleted on {} servers", gone.deleted);
    /// # Ok(()) }
    /// ```
    pub async fn force_unlock(&self, path: impl IntoTreePath) -> Result<ForceUnlocked, TreeError> {
        let key = self.node_key(path)?;
        Ok(self.inner.redlock.force_unlock_key(&key).await?)
    }

    /// The lock key of the node at `path`.
    fn node_key(&self, path: impl IntoTreePath) -> Result<String, TreeError> {
        let path = path.into_tree_path()?;
        Ok(self.inner.keys.for_path(&path).lock().to_owned())
    }

    /// What would block a lock of `path` now, without locking anything:
    /// `None` when a majority of servers see nothing in the way. A snapshot:
    /// the answer may be stale by the time it arrives.
    ///
    /// Errors: [`TreeError::InvalidPath`]; [`TreeError::Lock`] with
    /// [`Error::NoQuorum`] when too few servers answered.
    ///
    /// # Cancel safety
    /// Cancel safe: it locks nothing (it may drop dead index entries).
    ///
    /// ```no_run
    /// # async fn demo(tree: quorate_tree::TreeLock) -> Result<(), quorate_tree::TreeError> {
    /// if let Some(conflict) = tree.conflict(["dc1", "rack4"]).await? {
    ///     println!("busy: {conflict}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn conflict(&self, path: impl IntoTreePath) -> Result<Option<Conflict>, TreeError> {
        let path = path.into_tree_path()?;
        let keys = self.inner.keys.for_path(&path);
        let redlock = &self.inner.redlock;
        let round = acquire::round(
            redlock,
            &keys,
            &self.inner.lock_prefix,
            Mode::Check,
            "",
            &self.inner.defaults,
        )
        .await;
        match acquire::verdict(redlock, &round) {
            Verdict::Granted => Ok(None),
            Verdict::Blocked { first, .. } => Ok(Some(first)),
            Verdict::NoQuorum(error) => Err(TreeError::Lock(error)),
        }
    }
}
