//! The Redlock quorum mutex: construction and the lock calls.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::announcements::Notifier;
use crate::backend::quarantine::DEFAULT_MAX_TTL;
use crate::backend::{FredNode, FredSettings, Node};
use crate::client::Redlock;
use crate::client_state::ClientState;
use crate::connect_error::ConnectError;
use crate::error::{ConfigError, Error, NodeOutcome, Outcomes};
use crate::guard::LockGuard;
use crate::lease::Lease;
use crate::metrics;
use crate::options::{LockOptions, MAX_TTL};
use crate::owner::Owner;
use crate::queue::Tickets;
use crate::quorum::{self, Decide};
use crate::wait::WaitPolicy;
use crate::waiter::Waiter;
use crate::watchdog::Watchdog;

impl Redlock {
    /// Connects to the nodes at `urls` with the default options and
    /// [`FredSettings`]. Waits up to the connection timeout for the
    /// connections; nodes that are down keep reconnecting in the background
    /// and count as failed until they answer.
    ///
    /// Errors: as [`RedlockBuilder::build`].
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future drops the half-built clients.
    pub async fn connect<I, S>(urls: I) -> Result<Redlock, ConnectError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        RedlockBuilder::new().urls(urls).build().await
    }

    /// A builder for nodes of mixed kinds, own fred clients, and defaults.
    pub fn builder() -> RedlockBuilder {
        RedlockBuilder::new()
    }

    /// A Redlock over nodes built by the caller (e.g. [`MemoryNode`](crate::MemoryNode)s).
    pub fn from_nodes(
        nodes: Vec<Arc<dyn Node>>,
        defaults: LockOptions,
    ) -> Result<Redlock, ConfigError> {
        let owner = Owner::this_process(None);
        let redlock = Self::build(
            nodes,
            defaults,
            DEFAULT_MAX_TTL,
            String::new(),
            "mutex",
            owner,
        )?;
        // No await here: the description goes out from a task, when there is a runtime.
        redlock.keep_owner_registered(true);
        Ok(redlock)
    }

    /// The same nodes with another `primitive` metric label, for the crates
    /// built on this one (`pool`, `tree`, `spinlock`).
    pub fn with_metric_label(&self, primitive: &'static str) -> Redlock {
        // with hand-offs of its own: a guard hands over only to waiters of its own kind
        Redlock::from_state(ClientState {
            nodes: self.inner.nodes.clone(),
            quorum: self.inner.quorum,
            defaults: self.inner.defaults.clone(),
            primitive,
            notifier: Arc::clone(&self.inner.notifier),
            local: Arc::clone(&self.inner.local),
            task_holds: Arc::default(),
            // one count for the whole client: its flush_released waits for
            // the background requests of every primitive built on it
            background: Arc::clone(&self.inner.background),
            tickets: Arc::clone(&self.inner.tickets),
            watchdog: Watchdog::new(self.inner.nodes.clone(), self.inner.quorum, primitive),
            max_ttl: self.inner.max_ttl,
            namespace: self.inner.namespace.clone(),
            owner: Arc::clone(&self.inner.owner),
        })
    }

    fn build(
        nodes: Vec<Arc<dyn Node>>,
        defaults: LockOptions,
        max_ttl: Duration,
        namespace: String,
        primitive: &'static str,
        owner: Owner,
    ) -> Result<Redlock, ConfigError> {
        if nodes.is_empty() {
            return Err(ConfigError::NoNodes);
        }
        let mut seen = HashSet::new();
        for node in &nodes {
            if !seen.insert(node.name().to_owned()) {
                return Err(ConfigError::DuplicateNode(node.name().to_owned()));
            }
        }
        defaults.validate()?;
        if max_ttl.is_zero() || max_ttl > MAX_TTL {
            return Err(ConfigError::TtlTooLong {
                ttl: max_ttl,
                max: MAX_TTL,
            });
        }
        check_ttl(defaults.get_ttl(), max_ttl)?;
        for node in &nodes {
            node.set_max_ttl(max_ttl);
        }
        metrics::describe();
        let quorum = quorum::majority(nodes.len());
        let notifier = Notifier::new(nodes.clone());
        Ok(Redlock::from_state(ClientState {
            tickets: Arc::new(Tickets::new(notifier.id())),
            notifier,
            local: Arc::default(),
            task_holds: Arc::default(),
            background: Arc::default(),
            watchdog: Watchdog::new(nodes.clone(), quorum, primitive),
            nodes,
            quorum,
            defaults,
            primitive,
            max_ttl,
            namespace,
            owner: Arc::new(owner),
        }))
    }

    /// The nodes' names, in order.
    pub fn node_names(&self) -> Vec<&str> {
        self.inner.nodes.iter().map(|n| n.name()).collect()
    }

    /// The majority needed: N/2 + 1.
    pub fn quorum(&self) -> usize {
        self.inner.quorum
    }

    /// The default options of this Redlock.
    pub fn defaults(&self) -> &LockOptions {
        &self.inner.defaults
    }

    /// The longest ttl this Redlock accepts, which is also how long a node
    /// that lost its data stays out of every vote
    /// ([`RedlockBuilder::max_ttl`]).
    pub fn max_ttl(&self) -> Duration {
        self.inner.max_ttl
    }

    /// Lock keys whose companions can share their Redis Cluster slot and,
    /// when a node is a Redis Cluster, all in one slot.
    fn check_slots(&self, keys: &[String]) -> Result<(), ConfigError> {
        use crate::backend::hash_slot::{companions_fit, hash_slot};
        if let Some(key) = keys.iter().find(|k| !companions_fit(k)) {
            return Err(ConfigError::UnhashableResource(key.clone()));
        }
        if keys.len() == 1 {
            return Ok(());
        }
        let slot = hash_slot(&keys[0]);
        if keys.iter().all(|k| hash_slot(k) == slot) {
            return Ok(());
        }
        match self.inner.nodes.iter().find(|n| n.is_cluster()) {
            Some(node) => Err(ConfigError::CrossSlot {
                node: node.name().to_owned(),
                keys: keys.iter().map(|k| (k.clone(), hash_slot(k))).collect(),
            }),
            None => Ok(()),
        }
    }

    /// The lock keys of `resources`: each after the namespace, if any.
    fn namespaced(&self, keys: Arc<[String]>) -> Arc<[String]> {
        let namespace = &self.inner.namespace;
        if namespace.is_empty() {
            return keys;
        }
        keys.iter().map(|k| self.lock_key(k)).collect()
    }

    /// The key a lock of `resource` uses on the nodes: the resource after
    /// the namespace ([`RedlockBuilder::namespace`]), if any.
    pub fn lock_key(&self, resource: &str) -> String {
        format!("{}{resource}", self.inner.namespace)
    }

    /// The prefix of every lock key ([`RedlockBuilder::namespace`]).
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// `Ok` if a lease of `ttl` is allowed: at most [`max_ttl`](Self::max_ttl).
    /// The lock calls check it; primitives built on this crate call it for
    /// the leases their own scripts grant.
    pub fn check_ttl(&self, ttl: Duration) -> Result<(), ConfigError> {
        self.inner.check_ttl(ttl)
    }

    /// Declares fresh every node without a quarantine marker, or with one
    /// from before its server's last restart, so that servers that never
    /// held a lock vote at once instead of sitting out a quarantine of
    /// [`max_ttl`](Self::max_ttl) (see [`MARKER_KEY`](crate::MARKER_KEY)).
    ///
    /// Only for servers you know are new and empty (just created for a
    /// test, a demo or a new deployment), or that restarted with every
    /// acknowledged write kept (AOF with `appendfsync always`), declared
    /// before a lock call reaches them. A server that lost its data, or
    /// came back from an RDB snapshot, looks the same until a lock call
    /// finds it: declaring it fresh skips the quarantine that keeps two
    /// holders apart, which is Redlock's hole this crate closes. A node
    /// marked by its running server, or in quarantine, is left as it is.
    ///
    /// Returns every node's outcome: [`NodeOutcome::Granted`] marked now,
    /// [`NodeOutcome::NotHeld`] already marked, otherwise why not.
    ///
    /// # Cancel safety
    /// Cancel safe: each node's marker is set atomically or not at all.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), quorate_redlock::Error> {
    /// use quorate_redlock::Redlock;
    /// // three servers started a moment ago for a demo
    /// let redlock = Redlock::connect(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002",
    ///                                 "redis://127.0.0.1:7003"]).await?;
    /// println!("{}", redlock.declare_fresh().await);
    /// # Ok(()) }
    /// ```
    pub async fn declare_fresh(&self) -> Outcomes {
        let round = quorum::round(
            "declare_fresh",
            &self.inner.nodes,
            self.inner.defaults.effective_node_timeout(),
            Decide::All,
            |_| true,
            |node| node.declare_fresh(),
        )
        .await;
        round.outcomes(&self.inner.nodes, |marked| {
            if *marked {
                NodeOutcome::Granted
            } else {
                NodeOutcome::NotHeld
            }
        })
    }

    /// Releases, through the servers, the locks of guards dropped a moment
    /// ago that are still kept for a next call of this process (a dropped
    /// guard's lock may wait a few scheduler turns for one, see
    /// [`LockOptions::local_handoff`]); returns how many. Then waits until
    /// every request this client sends from tasks of its own has been
    /// answered or timed out: the releases of dropped guards, the undos of
    /// cancelled lock calls, leaving the servers' waiter queues (each
    /// bounded by its node timeout). Call it before a process exits right
    /// after dropping guards: a lock whose release was never sent stays on
    /// the servers until its ttl, and a queue entry left behind holds later
    /// waiters up until it lapses. (An explicit [`LockGuard::release`]
    /// never waits like that.)
    ///
    /// # Cancel safety
    /// Cancel safe: a lock whose release was not sent yet is released as a
    /// dropped guard's is; requests in flight go on.
    ///
    /// ```no_run
    /// # async fn demo(redlock: quorate_redlock::Redlock) -> Result<(), quorate_redlock::Error> {
    /// let guard = redlock.lock("job", std::time::Duration::from_secs(5)).await?;
    /// drop(guard);
    /// redlock.flush_released().await; // about to exit
    /// # Ok(()) }
    /// ```
    pub async fn flush_released(&self) -> usize {
        let guards = self.handoffs.take_all_lingering();
        let count = guards.len();
        futures::future::join_all(guards.into_iter().map(LockGuard::release)).await;
        self.inner.background.idle().await;
        count
    }

    /// Locks `resource` for `ttl`, retrying with jittered back-off until the
    /// default acquire timeout (10 s unless changed). Returns the last
    /// round's error when it gives up: [`Error::Taken`] naming the holders'
    /// nodes and remaining ttls, or [`Error::NoQuorum`] naming failed nodes.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future undoes any partial grant of the
    /// round in flight (the undo is spawned), and no guard is lost.
    ///
    /// ```no_run
    /// # async fn demo(redlock: quorate_redlock::Redlock) -> Result<(), quorate_redlock::Error> {
    /// let guard = redlock.lock("report", std::time::Duration::from_secs(30)).await?;
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn lock(&self, resource: &str, ttl: Duration) -> Result<LockGuard, Error> {
        let options = self.inner.defaults.clone().ttl(ttl);
        self.lock_with([resource], &options).await
    }

    /// One round only: the lock if a majority grants it now, else the error.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`lock`](Self::lock).
    ///
    /// ```no_run
    /// # async fn demo(redlock: quorate_redlock::Redlock) {
    /// match redlock.try_lock("report", std::time::Duration::from_secs(30)).await {
    ///     Ok(guard) => drop(guard),
    ///     Err(quorate_redlock::Error::Taken { .. }) => println!("busy, try later"),
    ///     Err(other) => eprintln!("{other}"),
    /// }
    /// # }
    /// ```
    pub async fn try_lock(&self, resource: &str, ttl: Duration) -> Result<LockGuard, Error> {
        let options = self.inner.defaults.clone().ttl(ttl).max_attempts(Some(1));
        self.lock_with([resource], &options).await
    }

    /// Runs `work` only while `resource` is held: locks it with
    /// auto-extension (the default options, this `ttl`), runs the future,
    /// releases. If the lock is lost meanwhile, `work` is dropped
    /// (cancelled at its next await) and the call returns [`Error::Lost`]
    /// or [`Error::Expired`]; a lock that cannot be had returns its error
    /// without running `work`.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future drops `work` and releases the lock
    /// (spawned).
    ///
    /// ```no_run
    /// # async fn demo(redlock: quorate_redlock::Redlock) -> Result<(), quorate_redlock::Error> {
    /// use std::time::Duration;
    /// let rows = redlock
    ///     .run("nightly-report", Duration::from_secs(10), |lease| async move {
    ///         println!("holding with {:?} left", lease.remaining());
    ///         42 // long work; cancelled if the lock is lost
    ///     })
    ///     .await?;
    /// assert_eq!(rows, 42);
    /// # Ok(()) }
    /// ```
    pub async fn run<F, Fut, T>(&self, resource: &str, ttl: Duration, work: F) -> Result<T, Error>
    where
        F: FnOnce(Lease) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let options = self.inner.defaults.clone().ttl(ttl).auto_extend(true);
        let guard = self.lock_with([resource], &options).await?;
        let work = work(guard.lease());
        tokio::select! {
            biased;
            lost = guard.lost() => Err(lost),
            output = work => {
                if let Err(error) = guard.release().await {
                    // The work finished while the lock was held; the keys expire.
                    tracing::warn!(%error, "release after scoped work failed");
                }
                Ok(output)
            }
        }
    }

    /// Locks every resource in `resources` or none of them (each node sets
    /// all keys in one atomic script), with `options`.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`lock`](Self::lock).
    ///
    /// ```no_run
    /// # async fn demo(redlock: quorate_redlock::Redlock) -> Result<(), quorate_redlock::Error> {
    /// use std::time::Duration;
    /// use quorate_redlock::LockOptions;
    ///
    /// let options = LockOptions::new()
    ///     .ttl(Duration::from_secs(5))
    ///     .acquire_timeout(Some(Duration::from_secs(1)));
    /// let guard = redlock.lock_with(["account:1", "account:2"], &options).await?;
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn lock_with<I, S>(
        &self,
        resources: I,
        options: &LockOptions,
    ) -> Result<LockGuard, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let called = Instant::now();
        let result = self.lock_inner(resources, options, called).await;
        self.count_acquire(&result, called.elapsed());
        result.map(|mut guard| {
            guard.record_task(&self.inner.task_holds);
            guard
        })
    }

    async fn lock_inner<I, S>(
        &self,
        resources: I,
        options: &LockOptions,
        called: Instant,
    ) -> Result<LockGuard, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        options.validate()?;
        self.check_ttl(options.get_ttl())?;
        let keys = validate_resources(resources)?;
        let keys = self.namespaced(keys);
        self.check_slots(&keys)?;
        if options.get_reentry_check() {
            if let Some(resource) = self.inner.task_holds.held_by_this_task(&keys) {
                return Err(Error::Reentrant { resource });
            }
        }
        let policy = WaitPolicy::new(options, called);
        let span = tracing::debug_span!("quorate.acquire", resource = %keys.join(","), attempt = tracing::field::Empty);
        if let Some(guard) = Waiter::lingering(self, &keys, options, &span) {
            return Ok(guard);
        }
        Waiter::start(self, keys, options, policy, span)
            .await?
            .run()
            .await
    }
}

/// A lease of `ttl` must not outlive the quarantine of a node that forgot it.
fn check_ttl(ttl: Duration, max_ttl: Duration) -> Result<(), ConfigError> {
    if ttl > max_ttl {
        return Err(ConfigError::TtlAboveMaxTtl { ttl, max_ttl });
    }
    Ok(())
}

/// The default options, their ttl no longer than `max_ttl`.
pub(crate) fn default_options(max_ttl: Duration) -> LockOptions {
    let defaults = LockOptions::default();
    let ttl = defaults.get_ttl().min(max_ttl);
    defaults.ttl(ttl)
}

/// Resources as keys: at least one, none empty, no duplicates.
fn validate_resources<I, S>(resources: I) -> Result<Arc<[String]>, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let keys: Vec<String> = resources.into_iter().map(Into::into).collect();
    if keys.is_empty() {
        return Err(ConfigError::NoResources);
    }
    let mut seen = HashSet::new();
    for (i, key) in keys.iter().enumerate() {
        if key.is_empty() {
            return Err(ConfigError::EmptyResource(i));
        }
        if !seen.insert(key.as_str()) {
            return Err(ConfigError::DuplicateResource(key.clone()));
        }
    }
    Ok(keys.into())
}

/// Builds a [`Redlock`] from URLs, own fred clients and custom nodes, in
/// the order given.
///
/// ```no_run
/// # async fn demo() -> Result<(), quorate_redlock::ConnectError> {
/// use std::time::Duration;
/// use quorate_redlock::{LockOptions, Redlock};
///
/// let redlock = Redlock::builder()
///     .url("redis://127.0.0.1:7001")
///     .url("redis://:secret@127.0.0.1:7002")
///     .url("redis://127.0.0.1:7003")
///     .defaults(LockOptions::new().ttl(Duration::from_secs(5)))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct RedlockBuilder {
    urls: Vec<(usize, String)>,
    clients: Vec<(usize, fred::clients::Client)>,
    nodes: Vec<(usize, Arc<dyn Node>)>,
    count: usize,
    defaults: Option<LockOptions>,
    settings: FredSettings,
    max_ttl: Option<Duration>,
    lazy: bool,
    namespace: String,
    owner: Option<String>,
}

impl fmt::Debug for RedlockBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedlockBuilder")
            .field("nodes", &self.count)
            .field("defaults", &self.defaults)
            .field("settings", &self.settings)
            .field("max_ttl", &self.max_ttl)
            .field("lazy", &self.lazy)
            .field("namespace", &self.namespace)
            .field("owner", &self.owner)
            .finish()
    }
}

impl RedlockBuilder {
    /// No nodes, default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node by URL (`redis://`, `rediss://` with the `tls` feature,
    /// `redis-sentinel://`, `redis-cluster://`; `user:password@` for ACL).
    pub fn url(mut self, url: impl AsRef<str>) -> Self {
        self.urls.push((self.count, url.as_ref().to_owned()));
        self.count += 1;
        self
    }

    /// Adds several nodes by URL.
    pub fn urls<I, S>(self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        urls.into_iter().fold(self, |b, url| b.url(url))
    }

    /// Adds a node from a fred client the caller configured (TLS, ACL,
    /// Sentinel, Cluster). An unconnected client is connected here.
    pub fn client(mut self, client: fred::clients::Client) -> Self {
        self.clients.push((self.count, client));
        self.count += 1;
        self
    }

    /// Adds a node of any backend.
    pub fn node(mut self, node: Arc<dyn Node>) -> Self {
        self.nodes.push((self.count, node));
        self.count += 1;
        self
    }

    /// Default options for `lock`/`try_lock`. Default: [`LockOptions::default`],
    /// with its ttl lowered to [`max_ttl`](Self::max_ttl) when that is shorter.
    pub fn defaults(mut self, defaults: LockOptions) -> Self {
        self.defaults = Some(defaults);
        self
    }

    /// The longest ttl of any lease (lock, pool grant, tree node) this
    /// Redlock takes; longer ones fail with
    /// [`ConfigError::TtlAboveMaxTtl`]. It is also the quarantine of a node
    /// that lost its data (see [`MARKER_KEY`](crate::MARKER_KEY)), so every client of the same
    /// servers must use the same value (or the largest). Default:
    /// [`DEFAULT_MAX_TTL`] (60 s); at most [`MAX_TTL`]. Without
    /// [`defaults`](Self::defaults), the default lock ttl (10 s) is lowered
    /// to it when it is shorter.
    pub fn max_ttl(mut self, max_ttl: Duration) -> Self {
        self.max_ttl = Some(max_ttl);
        self
    }

    /// Client settings for nodes added by URL. Default: [`FredSettings::default`].
    pub fn fred_settings(mut self, settings: FredSettings) -> Self {
        self.settings = settings;
        self
    }

    /// A label for this client in what operators see of its locks
    /// ([`Redlock::inspect`], `quorate status`), e.g. `"billing-worker-3"`,
    /// next to the host, the process id and a UUID v7 that every client
    /// records anyway. Default: none.
    pub fn owner(mut self, label: impl Into<String>) -> Self {
        self.owner = Some(label.into());
        self
    }

    /// A prefix for every key of every primitive built on this Redlock,
    /// e.g. `"billing:lock:"`: `lock("invoice:42")` uses the key
    /// `billing:lock:invoice:42`, not the application's own key of that
    /// name, and a pool `gpus` of another application on the same servers
    /// (`quorate:pool:{gpus}:…`) is not this one's
    /// (`billing:lock:quorate:pool:{gpus}:…`); an ACL can grant just
    /// `~billing:lock:*` plus the shared bookkeeping (`~quorate:*`: the
    /// waiter queues, the owner descriptions, the quarantine marker).
    /// Errors and metrics name the prefixed key. Default: none.
    pub fn namespace(mut self, prefix: impl Into<String>) -> Self {
        self.namespace = prefix.into();
        self
    }

    /// Starts without waiting for the nodes: `build` neither waits for the
    /// connections nor fails when fewer than a majority can be reached;
    /// nodes count as failed in rounds until they answer (for clients that
    /// start before their servers). Default: `false`.
    pub fn lazy(mut self, lazy: bool) -> Self {
        self.lazy = lazy;
        self
    }

    /// Validates everything, starts the connections and waits up to the
    /// connection timeout for them.
    ///
    /// Errors: [`ConfigError`] for no nodes, a bad URL (naming it, password
    /// redacted), `rediss://` without the `tls` feature, bad defaults, and
    /// the same server given twice (compared by resolved address, so
    /// `localhost:6379` and `127.0.0.1:6379` are one server);
    /// [`ConnectError::Unreachable`] (retryable) when fewer than a majority of the nodes
    /// could be reached and authenticated by then, naming each failed node
    /// and why (unless [`lazy`](Self::lazy)). Nodes that are down but not
    /// needed for a majority join when they come up.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future drops the half-built clients.
    pub async fn build(self) -> Result<Redlock, ConnectError> {
        let mut slots: Vec<Option<Arc<dyn Node>>> = (0..self.count).map(|_| None).collect();
        let mut fred_nodes = Vec::new();
        for (index, url) in &self.urls {
            let node = FredNode::from_url(url, &self.settings).map_err(|e| match e {
                ConfigError::BadUrl { url, reason, .. } => ConfigError::BadUrl {
                    index: *index,
                    url,
                    reason,
                },
                ConfigError::TlsNotEnabled { url, .. } => {
                    ConfigError::TlsNotEnabled { index: *index, url }
                }
                other => other,
            })?;
            fred_nodes.push(node.clone());
            slots[*index] = Some(Arc::new(node));
        }
        for (index, client) in self.clients {
            let node = FredNode::from_client(client);
            fred_nodes.push(node.clone());
            slots[index] = Some(Arc::new(node));
        }
        for (index, node) in self.nodes {
            slots[index] = Some(node);
        }
        let timeout = self.settings.connection_timeout;
        reject_same_server(&fred_nodes, timeout).await?;
        let nodes: Vec<Arc<dyn Node>> = slots.into_iter().flatten().collect();
        let max_ttl = self.max_ttl.unwrap_or(DEFAULT_MAX_TTL);
        let defaults = self.defaults.unwrap_or_else(|| default_options(max_ttl));
        let owner = Owner::this_process(self.owner);
        let redlock = Redlock::build(nodes, defaults, max_ttl, self.namespace, "mutex", owner)?;
        if self.lazy {
            redlock.keep_owner_registered(true);
            return Ok(redlock);
        }
        futures::future::join_all(fred_nodes.iter().map(|n| n.wait_connected(timeout))).await;
        let problems: Vec<(String, String)> = fred_nodes
            .iter()
            .filter_map(|n| Some((n.name().to_owned(), n.connection_problem()?)))
            .collect();
        let reachable = redlock.inner.nodes.len() - problems.len();
        if reachable < redlock.inner.quorum {
            return Err(ConnectError::Unreachable {
                reachable,
                nodes: redlock.inner.nodes.len(),
                quorum: redlock.inner.quorum,
                waited: timeout,
                problems,
            });
        }
        // Refused now rather than by a script error at the first lock call.
        let versions =
            futures::future::join_all(fred_nodes.iter().map(|n| n.redis_version(timeout))).await;
        for (node, version) in fred_nodes.iter().zip(versions) {
            let Some(version) = version else { continue };
            if crate::backend::server_version::is_too_old(&version) == Some(true) {
                return Err(ConfigError::ServerTooOld {
                    node: node.name().to_owned(),
                    version,
                }
                .into());
            }
        }
        // Done on every node (or timed out) before any lock of this client.
        let node_timeout = redlock.inner.defaults.effective_node_timeout();
        redlock
            .inner
            .owner
            .register(
                &redlock.inner.nodes,
                node_timeout,
                quorum::Decide::All,
                &redlock.inner.tickets.clock,
            )
            .await;
        redlock.keep_owner_registered(false);
        Ok(redlock)
    }
}

/// Two nodes whose names resolve to a common address are one server, which
/// would cast two votes.
async fn reject_same_server(nodes: &[FredNode], timeout: Duration) -> Result<(), ConfigError> {
    let resolved = futures::future::join_all(nodes.iter().map(|n| n.addresses(timeout))).await;
    let mut seen: std::collections::HashMap<std::net::SocketAddr, &str> = Default::default();
    for (node, addresses) in nodes.iter().zip(&resolved) {
        for address in addresses {
            match seen.insert(*address, node.name()) {
                Some(other) if other != node.name() => {
                    return Err(ConfigError::DuplicateNode(format!(
                        "{address} (as {other} and as {})",
                        node.name()
                    )));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_validated() {
        assert_eq!(
            validate_resources(Vec::<String>::new()).err(),
            Some(ConfigError::NoResources)
        );
        assert_eq!(
            validate_resources(["a", ""]).err(),
            Some(ConfigError::EmptyResource(1))
        );
        assert_eq!(
            validate_resources(["a", "b", "a"]).err(),
            Some(ConfigError::DuplicateResource("a".into()))
        );
        assert_eq!(
            validate_resources(["a", "b"]).ok().map(|k| k.len()),
            Some(2)
        );
    }
}
