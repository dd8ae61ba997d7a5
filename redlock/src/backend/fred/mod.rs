//! The real backend: one fred client per node, scripts by EVALSHA.

mod batch;
pub(crate) mod server_version;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::interfaces::{ClusterInterface, FunctionInterface, LuaInterface, PubsubInterface};
use fred::prelude::{
    ClientLike, Config, ConnectionConfig, EventInterface, PerformanceConfig, ReconnectPolicy,
    Server,
};
use fred::types::config::{ServerConfig, UnresponsiveConfig};
use fred::types::{ClientState, Value};
use futures::future::FutureExt;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::{
    fence_key, ttl_millis, AcquireReply, ExtendRequest, Node, NodeError, NodeFuture, NodeScript,
    QueueEntry, QueueGrant, Released, ScriptValue, RELEASE_CHANNEL_PREFIX, WAKE_CHANNEL_PREFIX,
};
use crate::backend::extend_in_groups;
use crate::backend::hash_slot::{hash_slot, shard_marker_suffix};
use crate::backend::holder::Holder;
use crate::backend::quarantine::{self, DEFAULT_MAX_TTL, MARKER_KEY, QUARANTINE_KEY};
use crate::backend::queue_protocol::{with_queue_keys, QUEUE_LUA};
use crate::config_error::ConfigError;
use batch::{acquire_one, Batcher};

static ACQUIRE: NodeScript =
    NodeScript::new("acquire", include_str!("../../../scripts/acquire.lua"))
        .with_helpers(QUEUE_LUA)
        .granting();
static RELEASE: NodeScript =
    NodeScript::new("release", include_str!("../../../scripts/release.lua"))
        .with_helpers(QUEUE_LUA);
static LEAVE: NodeScript =
    NodeScript::new("leave", include_str!("../../../scripts/leave.lua")).with_helpers(QUEUE_LUA);
static EXTEND: NodeScript = NodeScript::new("extend", include_str!("../../../scripts/extend.lua"));
static RAISE_FENCE: NodeScript = NodeScript::new(
    "raise_fence",
    include_str!("../../../scripts/raise_fence.lua"),
);
static EXTEND_MANY: NodeScript = NodeScript::new(
    "extend_many",
    include_str!("../../../scripts/extend_many.lua"),
);
static DECLARE_FRESH: NodeScript = NodeScript::new(
    "declare_fresh",
    include_str!("../../../scripts/declare_fresh.lua"),
);

/// Client settings that quorate applies to the clients it builds from URLs.
///
/// fred's defaults suit a cache client, not a lock: 10 s connection and
/// internal timeouts, and commands re-sent after a reconnect (a lock request
/// must never be replayed blindly, so quorate sends each at most once).
///
/// Built from [`FredSettings::default`] with one setter per setting (each
/// states its default); new settings can be added without breaking callers.
///
/// ```
/// use std::time::Duration;
/// use quorate_redlock::FredSettings;
///
/// let settings = FredSettings::default()
///     .connection_timeout(Duration::from_millis(500))
///     .max_batch(16);
/// assert_eq!(settings.get_max_batch(), 16);
/// assert_eq!(settings.get_command_timeout(), Duration::from_secs(5));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FredSettings {
    pub(crate) connection_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) max_reconnect_delay: Duration,
    pub(crate) max_batch: usize,
    pub(crate) unresponsive_timeout: Duration,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<fred::types::config::TlsConfig>,
}

impl Default for FredSettings {
    fn default() -> Self {
        FredSettings {
            connection_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(5),
            max_reconnect_delay: Duration::from_secs(1),
            max_batch: DEFAULT_MAX_BATCH,
            unresponsive_timeout: Duration::from_secs(2),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl FredSettings {
    /// TCP (and TLS) connect timeout; also how long `build` waits for the
    /// connections. Default: 1 s.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Upper bound on one command inside fred; the quorum engine's per-node
    /// timeout is normally much shorter. Default: 5 s.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Longest delay between reconnection attempts (exponential from 10 ms,
    /// never giving up). Default: 1 s.
    pub fn max_reconnect_delay(mut self, delay: Duration) -> Self {
        self.max_reconnect_delay = delay;
        self
    }

    /// Most single-key acquires and releases sent to this node in one
    /// script call when several are waiting (see [`FredNode`]); `1` sends
    /// every request as its own command, as do Redis Cluster nodes (a
    /// batch's keys would span slots). Default: 64.
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// A connection with a request unanswered this long is closed and
    /// opened again (fred's unresponsive check, run every quarter of it):
    /// a silently partitioned node would otherwise keep its dead connection
    /// and every request queued on it. Default: 2 s.
    pub fn unresponsive_timeout(mut self, timeout: Duration) -> Self {
        self.unresponsive_timeout = timeout;
        self
    }

    /// TLS for `rediss://` nodes: fred's TLS config, e.g. from a rustls
    /// `ClientConfig` trusting your CA and presenting a client certificate
    /// (`TlsConfig::from(client_config)`). Default: `None`, fred's default
    /// (the system's root certificates, no client certificate). Only with
    /// the `tls` feature; `redis://` nodes stay plaintext.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: Option<fred::types::config::TlsConfig>) -> Self {
        self.tls = tls;
        self
    }

    /// The connect timeout ([`connection_timeout`](Self::connection_timeout)).
    pub fn get_connection_timeout(&self) -> Duration {
        self.connection_timeout
    }

    /// The command timeout ([`command_timeout`](Self::command_timeout)).
    pub fn get_command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// The longest reconnect delay ([`max_reconnect_delay`](Self::max_reconnect_delay)).
    pub fn get_max_reconnect_delay(&self) -> Duration {
        self.max_reconnect_delay
    }

    /// The batch size ([`max_batch`](Self::max_batch)).
    pub fn get_max_batch(&self) -> usize {
        self.max_batch
    }

    /// The unresponsive timeout ([`unresponsive_timeout`](Self::unresponsive_timeout)).
    pub fn get_unresponsive_timeout(&self) -> Duration {
        self.unresponsive_timeout
    }

    /// The TLS config ([`tls`](Self::tls)).
    #[cfg(feature = "tls")]
    pub fn get_tls(&self) -> Option<&fred::types::config::TlsConfig> {
        self.tls.as_ref()
    }
}

const DEFAULT_MAX_BATCH: usize = 64;

/// A Redis-protocol server reached through a fred [`Client`](fred::clients::Client).
///
/// The client can be standalone, TLS (`rediss://`, with this crate's `tls`
/// feature), authenticated (`redis://user:password@host`), Sentinel
/// (`redis-sentinel://`) or Cluster (`redis-cluster://`): whatever fred
/// connects to counts as one independent node.
///
/// Single-key acquires and releases that are waiting to be sent to the
/// node at the same moment go in one script call (up to
/// [`FredSettings::max_batch`]): under load each request then costs a
/// share of one command instead of a command, and a lone request is sent
/// at once, as before. Requests keep their order on the connection: every
/// request goes through one queue per node, except one made while nothing
/// else to that node is queued or awaiting its answer, which its caller
/// sends itself.
///
/// Release announcements use one extra subscriber connection per node,
/// opened with the node. Clients quorate built are
/// closed when the last clone of the node is dropped; a caller's own client
/// is left open.
#[derive(Clone, Debug)]
pub struct FredNode {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    link: Link,
    name: String,
    /// Whether quorate built the client (and so closes it).
    owned: bool,
    announcements: OnceLock<Announcements>,
    /// `None` when every request goes as its own command.
    batcher: Option<Batcher>,
}

/// The command connection of one node: the client, its last error, and the
/// scripts it has cached. Cheap to clone (the batching task holds one).
#[derive(Clone, Debug)]
pub(super) struct Link {
    client: fred::clients::Client,
    /// The last connection error, shown instead of a bare timeout while
    /// the node is disconnected (e.g. `WRONGPASS`, connection refused).
    /// The last connection error: described, and fred's own.
    last_error: Arc<Mutex<Option<(String, fred::error::Error)>>>,
    /// Scripts this node has, by function name ([`NodeScript::function`]):
    /// loaded as functions, or cached by a run of their source.
    loaded: Arc<Mutex<HashSet<&'static str>>>,
    /// Whether scripts run as functions here ([`Functions`] as a `u8`).
    functions: Arc<std::sync::atomic::AtomicU8>,
    /// The quarantine of this node after a data loss, in ms as the text
    /// appended to every granting script ([`Node::set_max_ttl`]): made once,
    /// its bytes shared by every call.
    max_ttl: Arc<Mutex<Value>>,
    /// Since when requests have gone unanswered (no answer after them).
    /// fred's own unresponsive check restarts its clock at every write, so
    /// steady traffic to a silently partitioned node never trips it.
    silent_since: Arc<Mutex<Option<std::time::Instant>>>,
    /// How long requests may go unanswered before the connection is
    /// opened again ([`FredSettings::unresponsive_timeout`]).
    unresponsive_timeout: Duration,
    /// A Redis Cluster client: each shard keeps its own quarantine marker.
    clustered: bool,
}

#[derive(Debug)]
struct Announcements {
    subscriber: SubscriberClient,
    released: broadcast::Sender<Released>,
}

impl FredNode {
    /// A node for `url`, with quorate's [`FredSettings`]. The connection is
    /// started in the background (so a node that is down now can join
    /// later); the call must run inside a tokio runtime.
    ///
    /// Errors: [`ConfigError::BadUrl`] for a URL fred cannot parse or a
    /// scheme that is not a Redis one (`http://`), and
    /// [`ConfigError::TlsNotEnabled`] for `rediss://` without this crate's
    /// `tls` feature (which would otherwise connect in plaintext).
    pub fn from_url(url: &str, settings: &FredSettings) -> Result<Self, ConfigError> {
        check_scheme(url)?;
        let mut config = Config::from_url(url).map_err(|e| ConfigError::BadUrl {
            index: 0,
            url: redact(url),
            reason: e.details().to_string(),
        })?;
        #[cfg(feature = "tls")]
        if let (Some(tls), Some(_)) = (&settings.tls, &config.tls) {
            config.tls = Some(tls.clone());
        }
        // A node that is down at start-up must join when it comes up, so the
        // first connection gets the same reconnect logic as later ones.
        config.fail_fast = false;
        let connection = ConnectionConfig {
            connection_timeout: settings.connection_timeout,
            internal_command_timeout: settings.connection_timeout,
            max_command_attempts: 1,
            unresponsive: UnresponsiveConfig {
                max_timeout: Some(settings.unresponsive_timeout),
                interval: (settings.unresponsive_timeout / 4).max(Duration::from_millis(10)),
            },
            ..ConnectionConfig::default()
        };
        let performance = PerformanceConfig {
            default_command_timeout: settings.command_timeout,
            ..PerformanceConfig::default()
        };
        let max_delay = u32::try_from(settings.max_reconnect_delay.as_millis()).unwrap_or(u32::MAX);
        let policy = ReconnectPolicy::new_exponential(0, 10, max_delay.max(10), 2);
        let client =
            fred::clients::Client::new(config, Some(performance), Some(connection), Some(policy));
        Ok(Self::new(client, true, settings))
    }

    /// A node for a client the caller built (own TLS, ACL, Sentinel or
    /// Cluster config). If the client has not been connected yet, its
    /// connection task is started here; an initialised client is used as is.
    pub fn from_client(client: fred::clients::Client) -> Self {
        Self::new(client, false, &FredSettings::default())
    }

    fn new(client: fred::clients::Client, owned: bool, settings: &FredSettings) -> Self {
        let max_batch = settings.max_batch;
        let name = node_name(&client.client_config());
        let last_error = Arc::new(Mutex::new(None));
        let mut errors = client.error_rx();
        let slot = Arc::clone(&last_error);
        // Ends when the client closes (the channel closes).
        tokio::spawn(async move {
            loop {
                match errors.recv().await {
                    Ok((error, _)) => {
                        let text = describe(&error);
                        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some((text, error));
                    }
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                }
            }
        });
        if client.state() == ClientState::Disconnected {
            // The handle is not needed: the task lives as long as the client.
            drop(client.connect());
        }
        // On a Redis Cluster the keys of one batch would span slots.
        let clustered = client.client_config().server.is_clustered();
        let batches = max_batch > 1 && !clustered;
        let link = Link {
            client,
            last_error,
            loaded: Arc::default(),
            // a Cluster client would load a library on one shard only
            functions: Arc::new(std::sync::atomic::AtomicU8::new(if clustered {
                Functions::No as u8
            } else {
                Functions::Unknown as u8
            })),
            max_ttl: Arc::new(Mutex::new(ttl_millis(DEFAULT_MAX_TTL).to_string().into())),
            silent_since: Arc::default(),
            unresponsive_timeout: settings.unresponsive_timeout,
            clustered,
        };
        let node = FredNode {
            shared: Arc::new(Shared {
                batcher: batches.then(|| Batcher::start(link.clone(), max_batch)),
                link,
                name,
                owned,
                announcements: OnceLock::new(),
            }),
        };
        // Opened now rather than by the first waiter, which would otherwise
        // wait for the connection before it can hear a release.
        node.announcements();
        node
    }

    /// The underlying client.
    pub fn client(&self) -> &fred::clients::Client {
        &self.shared.link.client
    }

    /// The socket addresses the node's host names resolve to (empty when
    /// they do not resolve within `timeout`: the node then fails on its
    /// own), for telling `localhost` and `127.0.0.1` apart as one server.
    pub(crate) async fn addresses(&self, timeout: Duration) -> Vec<std::net::SocketAddr> {
        let config = self.shared.link.client.client_config();
        let hosts: Vec<Server> = match &config.server {
            ServerConfig::Centralized { server } => vec![server.clone()],
            other => other.hosts(),
        };
        let mut addresses = Vec::new();
        for server in hosts {
            let lookup = tokio::net::lookup_host((server.host.to_string(), server.port));
            if let Ok(Ok(found)) = tokio::time::timeout(timeout, lookup).await {
                addresses.extend(found);
            }
        }
        addresses
    }

    /// Why the node is not connected now (the last connection error, or
    /// that it is still connecting); `None` while it is connected.
    pub fn connection_problem(&self) -> Option<String> {
        self.shared
            .link
            .disconnected_error()
            .map(|e| e.message().to_owned())
    }

    /// Waits up to `timeout` for the first connection; `false` if it is not
    /// up by then (it keeps trying in the background).
    ///
    /// # Cancel safety
    /// Cancel safe: it only watches the connection.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), quorate_redlock::ConnectError> {
    /// use std::time::Duration;
    /// use quorate_redlock::{FredNode, FredSettings};
    /// let node = FredNode::from_url("redis://127.0.0.1:7001", &FredSettings::default())?;
    /// if !node.wait_connected(Duration::from_secs(1)).await {
    ///     eprintln!("127.0.0.1:7001 is not up yet; it keeps reconnecting");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let client = &self.shared.link.client;
        if client.is_connected() {
            return true;
        }
        matches!(
            tokio::time::timeout(timeout, client.wait_for_connect()).await,
            Ok(Ok(()))
        )
    }

    /// The server's version (`INFO server`'s `redis_version`), or `None` when
    /// it does not answer within `timeout` or the answer names none.
    ///
    /// # Cancel safety
    /// Cancel safe: a read.
    pub(crate) async fn redis_version(&self, timeout: Duration) -> Option<String> {
        let client = &self.shared.link.client;
        let info = client.info::<String>(Some(fred::types::InfoKind::Server));
        let info = tokio::time::timeout(timeout, info).await.ok()?.ok()?;
        server_version::from_info(&info).map(str::to_owned)
    }

    /// The subscriber connection, opened on first use, and its dispatcher.
    fn announcements(&self) -> &Announcements {
        self.shared.announcements.get_or_init(|| {
            let client = &self.shared.link.client;
            let mut config = client.client_config();
            config.fail_fast = false;
            let performance = PerformanceConfig {
                // one reader drains it; a burst of releases must not lag it
                broadcast_channel_capacity: 1024,
                ..client.perf_config()
            };
            let subscriber = SubscriberClient::new(
                config,
                Some(performance),
                Some(client.connection_config().clone()),
                client.client_reconnect_policy(),
            );
            let (released, _) = broadcast::channel(1024);
            let mut messages = subscriber.message_rx();
            let forward = released.clone();
            tokio::spawn(async move {
                loop {
                    match messages.recv().await {
                        Ok(message) => {
                            let text = message.value.as_string().unwrap_or_default();
                            let channel = &message.channel;
                            let released = if let Some(key) =
                                channel.strip_prefix(RELEASE_CHANNEL_PREFIX)
                            {
                                Released {
                                    key: key.to_owned(),
                                    by: text,
                                    to: None,
                                    grant: None,
                                }
                            } else if let Some(client) = channel.strip_prefix(WAKE_CHANNEL_PREFIX) {
                                let Some((grant, key)) = wake_message(&text) else {
                                    continue;
                                };
                                Released {
                                    key,
                                    by: String::new(),
                                    to: Some(client.to_owned()),
                                    grant: Some(grant),
                                }
                            } else {
                                continue;
                            };
                            let _ = forward.send(released);
                        }
                        // a lost announcement only costs a waiter latency
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => break,
                    }
                }
            });
            drop(subscriber.connect());
            drop(subscriber.manage_subscriptions());
            Announcements {
                subscriber,
                released,
            }
        })
    }
}

impl FredNode {
    /// One of quorate-redlock's own scripts, with string arguments.
    fn quorate_script<T>(
        &self,
        script: &'static NodeScript,
        keys: &[String],
        args: Vec<Value>,
    ) -> NodeFuture<T>
    where
        T: fred::types::FromValue + Send + 'static,
    {
        let keys = keys.to_vec();
        self.in_order(move |link| link.run_script(script, keys, args))
    }

    /// The command `command` makes, sent after every request made before it
    /// (through the batching queue, when there is one).
    fn in_order<T: Send + 'static>(
        &self,
        command: impl FnOnce(&Link) -> NodeFuture<T> + Send + 'static,
    ) -> NodeFuture<T> {
        match &self.shared.batcher {
            Some(batcher) => batcher.in_order(command),
            None => command(&self.shared.link),
        }
    }
}

impl Link {
    /// While disconnected, calls fail at once with the last connection
    /// error instead of queueing until the per-node timeout.
    /// A Redis Cluster client is "disconnected" while any one shard is
    /// down; its other shards still serve, so its calls are always sent.
    pub(super) fn disconnected_error(&self) -> Option<NodeError> {
        if self.clustered || self.client.is_connected() {
            return None;
        }
        let last = self
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Some(match last {
            Some((text, error)) => NodeError::with_source(format!("not connected: {text}"), error),
            None => NodeError::new("not connected yet (connecting in the background)"),
        })
    }

    /// Runs `script` as a function (`FCALL`) where the node has Redis 7
    /// functions, else by `EVALSHA`; either way with the source (`EVAL`)
    /// until this node is known to have it. A first `FCALL` or `EVALSHA`
    /// answered "not loaded" and re-sent after loading would reach the
    /// server after anything sent meanwhile on the connection (such as the
    /// undo of this very request); `EVAL` executes in order. So the first
    /// call sends `FUNCTION LOAD` and `EVAL` back to back, and the load's
    /// answer says whether later calls use `FCALL` (a server before 7.0, a
    /// Redis Cluster client or an ACL without `FUNCTION LOAD` or `FCALL`
    /// keeps `EVALSHA`). After a `FUNCTION FLUSH`, a `SCRIPT FLUSH` or a
    /// restart, the "not loaded" answer is followed at once by `EVAL`.
    pub(super) fn run_script<T>(
        &self,
        script: &'static NodeScript,
        keys: Vec<String>,
        args: Vec<fred::types::Value>,
    ) -> NodeFuture<T>
    where
        T: fred::types::FromValue + Send + 'static,
    {
        if let Some(error) = self.disconnected_error() {
            return futures::future::ready(Err(error)).boxed();
        }
        self.note_sent();
        let link = self.clone();
        let (function, _) = script.function();
        let known = link.loaded_scripts().contains(function);
        let mut args = args;
        if script.is_granting() {
            args.push(match keys.first() {
                Some(key) if self.clustered => self.shard_suffix(key).into(),
                _ => Value::from_static_str(""),
            });
            args.push(self.max_ttl_value());
        }
        // Converted once: the copies kept for a retry (below) and fred's own
        // copies then share each key's bytes instead of allocating their own.
        let keys: Vec<fred::types::Key> = keys.into_iter().map(Into::into).collect();
        if !(known && link.functions() == Functions::Yes) {
            return Link::run_script_slowly(link, script, known, keys, args);
        }
        // The usual call: a loaded function. Its future holds fred's `fcall`
        // and nothing else; the other paths' futures (`EVALSHA`, `EVAL`,
        // `FUNCTION LOAD`) are boxed apart. Every call's future is moved into
        // a box: with them inline it was ~10 KB, and copying it took a fifth
        // of the client's instructions in an uncontended lock loop.
        async move {
            let result = link
                .client
                .fcall::<T, _, _, _>(static_name(function), keys.clone(), args.clone())
                .await;
            link.note_answer(&result);
            match result {
                Err(e) if not_loaded(&e) => {
                    link.forget_script(function, &e);
                    Link::run_script_slowly(link, script, false, keys, args).await
                }
                result => result.map_err(node_error),
            }
        }
        .boxed()
    }

    /// After a "not loaded" answer (a restart, `FUNCTION FLUSH`, `SCRIPT
    /// FLUSH`): the next call sends the source; where the answer says
    /// functions are refused, later calls use `EVALSHA`.
    fn forget_script(&self, function: &str, error: &fred::error::Error) {
        self.loaded_scripts().remove(function);
        if functions_refused(error) {
            self.set_functions(Functions::No);
        }
    }

    /// [`run_script`](Self::run_script) by `EVALSHA` (`known`), or with the
    /// source (`EVAL`, and `FUNCTION LOAD` where functions may be allowed).
    fn run_script_slowly<T>(
        link: Link,
        script: &'static NodeScript,
        known: bool,
        keys: Vec<fred::types::Key>,
        args: Vec<fred::types::Value>,
    ) -> NodeFuture<T>
    where
        T: fred::types::FromValue + Send + 'static,
    {
        let (function, library) = script.function();
        async move {
            let client = &link.client;
            let functions = link.functions();
            if known {
                let result = if functions == Functions::Yes {
                    client
                        .fcall::<T, _, _, _>(function, keys.clone(), args.clone())
                        .await
                } else {
                    let sha = script.fred().sha1().clone();
                    client
                        .evalsha::<T, _, _, _>(sha, keys.clone(), args.clone())
                        .await
                };
                link.note_answer(&result);
                match result {
                    Err(e) if not_loaded(&e) => link.forget_script(function, &e),
                    result => return result.map_err(node_error),
                }
            }
            let eval = client.eval::<T, _, _, _>(script.source(), keys.clone(), args.clone());
            let result = if link.functions() == Functions::No {
                eval.await
            } else {
                // `join!` polls the load first: it reaches the server first
                let load = client.function_load::<fred::types::Value, _>(false, library);
                let (loaded, result) = futures::join!(load, eval);
                let available = match &loaded {
                    Ok(_) => Some(true),
                    Err(e) if e.details().contains("already exists") => Some(true),
                    Err(e) if functions_refused(e) => Some(false),
                    // (a lost connection, a full memory): ask again next time
                    Err(_) => None,
                };
                match available {
                    Some(true) => link.set_functions(Functions::Yes),
                    Some(false) => link.set_functions(Functions::No),
                    None => {}
                }
                match result {
                    // EVAL denied, functions allowed: the function, now loaded
                    Err(e) if available == Some(true) && functions_refused(&e) => {
                        client.fcall::<T, _, _, _>(function, keys, args).await
                    }
                    result => result,
                }
            };
            link.note_answer(&result);
            let result = result.map_err(node_error);
            if result.is_ok() {
                link.loaded_scripts().insert(function);
            }
            result
        }
        .boxed()
    }

    /// The suffix of the quarantine marker's name on the shard that serves
    /// `key` (quarantine.lua): `""` on a standalone server; on a Redis
    /// Cluster `:{n}` for the smallest `n` whose slot the same primary
    /// serves, from the client's current view of the slots. Computed per
    /// call, so a changed slot map names the new owner's marker (a shard
    /// that gains the marker's slot serves its quarantine: the cautious
    /// side). `""` when the client knows no slots yet (the call then fails).
    fn shard_suffix(&self, key: &str) -> String {
        if !self.clustered {
            return String::new();
        }
        let Some(routing) = self.client.cached_cluster_state() else {
            return String::new();
        };
        match routing.get_server(hash_slot(key)) {
            Some(server) => shard_marker_suffix(&routing, server),
            None => String::new(),
        }
    }

    /// The quarantine's length, the last argument of a granting script.
    fn max_ttl_value(&self) -> Value {
        self.max_ttl
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Before a request: if requests have gone unanswered for longer than
    /// the unresponsive timeout, the connection is dead in silence (a
    /// partition, a black hole): open it again.
    fn note_sent(&self) {
        let now = std::time::Instant::now();
        let mut since = self.silent_since.lock().unwrap_or_else(|e| e.into_inner());
        match *since {
            None => *since = Some(now),
            Some(t) if now.duration_since(t) > self.unresponsive_timeout => {
                *since = None;
                let node = node_name(&self.client.client_config());
                tracing::warn!(%node, silent = ?now.duration_since(t), "no answer on the connection: reconnecting");
                let client = self.client.clone();
                tokio::spawn(async move { client.force_reconnection().await });
            }
            Some(_) => {}
        }
    }

    /// After a request: a reply (even an error reply) shows the connection works.
    fn note_answer<T>(&self, result: &Result<T, fred::error::Error>) {
        use fred::error::ErrorKind;
        let answered = match result {
            Ok(_) => true,
            Err(e) => !matches!(
                e.kind(),
                ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled
            ),
        };
        if answered {
            *self.silent_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    fn loaded_scripts(&self) -> std::sync::MutexGuard<'_, HashSet<&'static str>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn functions(&self) -> Functions {
        match self.functions.load(Ordering::Relaxed) {
            1 => Functions::Yes,
            2 => Functions::No,
            _ => Functions::Unknown,
        }
    }

    fn set_functions(&self, functions: Functions) {
        self.functions.store(functions as u8, Ordering::Relaxed);
    }

    /// Compare-and-delete of `keys`, each passing to its queue's head; when
    /// `announce` is the releasing client's id, the release is announced on
    /// the key's channel.
    pub(super) fn release(
        &self,
        keys: Vec<String>,
        token: String,
        announce: String,
    ) -> NodeFuture<u64> {
        let keys = with_queue_keys(&keys);
        let args = vec![token.into(), announce.into()];
        self.run_script(&RELEASE, keys, args)
    }
}

/// A `PTTL` answer as the holder's remaining time: -1 (no expiry) and -2
/// (gone meanwhile) are unknown.
/// A wake-up's message, `<entry deadline> <grant token> <key>` (queue.lua).
fn wake_message(text: &str) -> Option<(QueueGrant, String)> {
    let (deadline, rest) = text.split_once(' ')?;
    let (token, key) = rest.split_once(' ')?;
    let grant = QueueGrant {
        deadline: deadline.parse().ok()?,
        token: token.to_owned(),
    };
    Some((grant, key.to_owned()))
}

/// acquire.lua's reply: `{1, fence, next, next fair}` or `{0, index, pttl,
/// rank, holder[, deadline]}`.
fn acquire_reply(reply: &ScriptValue) -> Option<AcquireReply> {
    let int = |v: &ScriptValue| v.as_int();
    match reply.as_array()? {
        [granted, fence, next, next_fair] if int(granted) == Some(1) => {
            Some(AcquireReply::Granted {
                fence: u64::try_from(int(fence)?).ok(),
                next: u64::try_from(int(next)?).ok(),
                next_fair: u64::try_from(int(next_fair)?).ok(),
            })
        }
        [refused, index, pttl, rank, holder, rest @ ..]
            if int(refused) == Some(0) && rest.len() <= 1 =>
        {
            Some(AcquireReply::Taken {
                index: usize::try_from(int(index)? - 1).ok()?,
                remaining: remaining_from_pttl(int(pttl)?),
                rank: u64::try_from(int(rank)?).ok(),
                holder: Holder::from_script(holder),
                deadline: rest
                    .first()
                    .and_then(int)
                    .and_then(|d| u64::try_from(d).ok()),
            })
        }
        _ => None,
    }
}

pub(super) fn remaining_from_pttl(pttl: i64) -> Option<Duration> {
    u64::try_from(pttl).ok().map(Duration::from_millis)
}

/// Whether a node runs quorate's scripts as Redis 7 functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Functions {
    /// Not asked yet: the next script call loads its library.
    Unknown = 0,
    /// `FUNCTION LOAD` worked: scripts run by `FCALL`.
    Yes = 1,
    /// Not there (before Redis 7.0) or not allowed: scripts run by `EVALSHA`.
    No = 2,
}

/// A script call's error saying the node does not have the script (after a
/// restart, a flush, or on a server or ACL without functions).
fn not_loaded(e: &fred::error::Error) -> bool {
    let details = e.details();
    details.starts_with("NOSCRIPT")
        || details.contains("Function not found")
        || functions_refused(e)
}

/// A script's function name as fred's string without copying it (the
/// names live as long as the program: [`NodeScript`]s are statics).
fn static_name(name: &'static str) -> fred::bytes_utils::Str {
    fred::util::static_str(name)
}

/// `FUNCTION LOAD` or `FCALL` refused as unknown or not allowed.
fn functions_refused(e: &fred::error::Error) -> bool {
    let details = e.details();
    // (a NOPERM for a key or a channel is the call's own error)
    (details.starts_with("NOPERM") && details.contains("permissions to run"))
        || details.contains("unknown command")
        || details.contains("unknown subcommand")
}

fn node_error(e: fred::error::Error) -> NodeError {
    let details = e.details().to_owned();
    quarantine::from_server_error(&details, || NodeError::with_source(describe(&e), e))
}

/// A fred error as a user can act on it, not a `Debug` dump.
fn describe(e: &fred::error::Error) -> String {
    use fred::error::ErrorKind;
    let details = e.details();
    let io = [
        (
            "ConnectionRefused",
            "connection refused (is a server listening there?)",
        ),
        (
            "ConnectionReset",
            "connection reset by the server or the network",
        ),
        ("ConnectionAborted", "connection aborted"),
        ("TimedOut", "connection timed out"),
        ("NotFound", "host not found"),
        ("HostUnreachable", "host unreachable"),
        ("NetworkUnreachable", "network unreachable"),
        ("AddrNotAvailable", "address not available"),
        ("UnexpectedEof", "connection closed by the server"),
    ];
    if details.contains("CertificateRequired") {
        return "TLS: the server requires a client certificate (FredSettings::tls)".to_owned();
    }
    if let Some(at) = details.find("InvalidCertificate(") {
        let reason = details[at + "InvalidCertificate(".len()..]
            .split(')')
            .next()
            .unwrap_or_default();
        return format!(
            "TLS: the server's certificate was rejected ({reason}); trust its CA in FredSettings::tls"
        );
    }
    if details.contains("InvalidContentType") || details.contains("CorruptMessage") {
        return "TLS handshake failed: is this a TLS port?".to_owned();
    }
    match e.kind() {
        ErrorKind::IO => match io.iter().find(|(kind, _)| details.contains(kind)) {
            Some((_, text)) => (*text).to_owned(),
            None => format!("I/O error: {details}"),
        },
        ErrorKind::Auth => auth_failed(details),
        _ if details.contains("WRONGPASS") || details.contains("NOAUTH") => auth_failed(details),
        _ if details.contains("NOPERM") => format!(
            "permission denied ({details}): the ACL user needs the commands and keys in the README's ACL section"
        ),
        ErrorKind::Timeout => "timed out".to_owned(),
        ErrorKind::Canceled => format!("cancelled ({details})"),
        kind => format!("{kind:?} error: {details}"),
    }
}

fn auth_failed(details: &str) -> String {
    format!("authentication failed ({details}): check the user and password in the node's URL")
}

/// Only Redis schemes; `rediss` only with TLS compiled in (fred would
/// otherwise connect in plaintext without a word).
fn check_scheme(url: &str) -> Result<(), ConfigError> {
    let bad = |reason: String| ConfigError::BadUrl {
        index: 0,
        url: redact(url),
        reason,
    };
    let Some((scheme, _)) = url.split_once("://") else {
        return Err(bad("no scheme: write it as redis://host:port".to_owned()));
    };
    let scheme = scheme.to_ascii_lowercase();
    let base = scheme
        .strip_suffix("-cluster")
        .or_else(|| scheme.strip_suffix("-sentinel"))
        .or_else(|| scheme.strip_suffix("+unix"))
        .unwrap_or(&scheme);
    match base {
        "redis" | "valkey" => Ok(()),
        "rediss" | "valkeys" if cfg!(feature = "tls") => Ok(()),
        "rediss" | "valkeys" => Err(ConfigError::TlsNotEnabled {
            index: 0,
            url: redact(url),
        }),
        _ => Err(bad(format!(
            "unsupported scheme `{scheme}`: use redis://, rediss:// (with the tls feature), \
             redis-sentinel:// or redis-cluster://"
        ))),
    }
}

fn channels(keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|k| format!("{RELEASE_CHANNEL_PREFIX}{k}"))
        .collect()
}

impl Drop for Shared {
    fn drop(&mut self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.owned {
            let client = self.link.client.clone();
            handle.spawn(async move { client.quit().await });
        }
        if let Some(a) = self.announcements.get() {
            let subscriber = a.subscriber.clone();
            handle.spawn(async move { subscriber.quit().await });
        }
    }
}

impl Node for FredNode {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn acquire(
        &self,
        keys: &[String],
        token: &str,
        ttl: Duration,
        fenced: bool,
        queue: Option<&QueueEntry>,
    ) -> NodeFuture<AcquireReply> {
        if let ([key], false, None) = (keys, fenced, queue) {
            let (key, token) = (key.clone(), token.to_owned());
            return match &self.shared.batcher {
                Some(batcher) => batcher.acquire(key, token, ttl),
                None => self.in_order(move |link| acquire_one(link, key, token, ttl)),
            };
        }
        let flag = |on: bool| Value::from_static_str(if on { "1" } else { "0" });
        let mut args = vec![
            token.to_owned().into(),
            ttl_millis(ttl).to_string().into(),
            flag(fenced),
        ];
        let mut all_keys = keys.to_vec();
        if fenced {
            all_keys.extend(keys.iter().map(|k| fence_key(k)));
        }
        // queued or not: a free key is refused behind a fair waiter
        all_keys.extend(with_queue_keys(keys).into_iter().skip(keys.len()));
        match queue {
            Some(entry) => {
                args.extend([
                    entry.member.clone().into(),
                    entry.ticket.to_string().into(),
                    ttl_millis(entry.lifetime).to_string().into(),
                    flag(entry.fair),
                ]);
            }
            None => args.extend([
                Value::from_static_str(""),
                flag(false),
                flag(false),
                flag(false),
            ]),
        }
        self.quorate_script::<fred::types::Value>(&ACQUIRE, &all_keys, args)
            .map(|reply| {
                let reply = ScriptValue::from_fred(reply?).map_err(NodeError::new)?;
                acquire_reply(&reply)
                    .ok_or_else(|| NodeError::new(format!("unexpected acquire reply {reply:?}")))
            })
            .boxed()
    }

    fn leave_queue(&self, keys: &[String], member: &str) -> NodeFuture<()> {
        let args = vec![member.to_owned().into()];
        self.quorate_script::<i64>(&LEAVE, &with_queue_keys(keys), args)
            .map(|reply| reply.map(drop))
            .boxed()
    }

    fn raise_fence(&self, keys: &[String], fence: u64) -> NodeFuture<()> {
        let counters: Vec<String> = keys.iter().map(|k| fence_key(k)).collect();
        self.quorate_script::<i64>(&RAISE_FENCE, &counters, vec![fence.to_string().into()])
            .map(|reply| reply.map(drop))
            .boxed()
    }

    fn release(&self, keys: &[String], token: &str, announce: Option<&str>) -> NodeFuture<u64> {
        let (token, announce) = (token.to_owned(), announce.unwrap_or_default().to_owned());
        match (&self.shared.batcher, keys) {
            (Some(batcher), [key]) => batcher.release(key.clone(), token, announce),
            _ => {
                let keys = keys.to_vec();
                self.in_order(move |link| link.release(keys, token, announce))
            }
        }
    }

    fn extend(&self, keys: &[String], token: &str, ttl: Duration) -> NodeFuture<bool> {
        let args = vec![token.to_owned().into(), ttl_millis(ttl).to_string().into()];
        self.quorate_script::<i64>(&EXTEND, keys, args)
            .map(|reply| Ok(reply? == 1))
            .boxed()
    }

    /// One script call for the whole batch; on a Redis Cluster node, one per
    /// hash slot ([`extend_in_groups`]).
    fn extend_many(&self, locks: &[ExtendRequest]) -> NodeFuture<Vec<bool>> {
        if self.shared.link.clustered {
            return self.extend_per_slot(locks);
        }
        self.extend_batch(locks)
    }

    fn eval(
        &self,
        script: &'static NodeScript,
        keys: Vec<String>,
        args: Vec<Vec<u8>>,
    ) -> NodeFuture<ScriptValue> {
        let args = args
            .into_iter()
            .map(|a| fred::types::Value::Bytes(a.into()))
            .collect();
        self.in_order(move |link| link.run_script::<fred::types::Value>(script, keys, args))
            .map(|value| ScriptValue::from_fred(value?).map_err(NodeError::new))
            .boxed()
    }

    fn subscribe(&self, keys: &[String]) -> NodeFuture<()> {
        let subscriber = self.announcements().subscriber.clone();
        let channels = channels(keys);
        async move { subscriber.subscribe(channels).await.map_err(node_error) }.boxed()
    }

    fn subscribe_wakes(&self, client: &str) -> NodeFuture<()> {
        let subscriber = self.announcements().subscriber.clone();
        let channel = format!("{WAKE_CHANNEL_PREFIX}{client}");
        async move { subscriber.subscribe(channel).await.map_err(node_error) }.boxed()
    }

    fn unsubscribe(&self, keys: &[String]) -> NodeFuture<()> {
        let subscriber = self.announcements().subscriber.clone();
        let channels = channels(keys);
        async move { subscriber.unsubscribe(channels).await.map_err(node_error) }.boxed()
    }

    fn releases(&self) -> Option<broadcast::Receiver<Released>> {
        Some(self.announcements().released.subscribe())
    }

    fn set_max_ttl(&self, max_ttl: Duration) {
        let text = ttl_millis(max_ttl).to_string().into();
        *self
            .shared
            .link
            .max_ttl
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = text;
    }

    fn is_cluster(&self) -> bool {
        self.shared.link.clustered
    }

    fn declare_fresh(&self) -> NodeFuture<bool> {
        let link = &self.shared.link;
        // one marker per shard: the suffix of a slot each primary serves
        let suffixes: Vec<String> = match link.client.cached_cluster_state() {
            Some(routing) if link.clustered => routing
                .unique_primary_nodes()
                .iter()
                .map(|server| shard_marker_suffix(&routing, server))
                .collect(),
            _ => vec![String::new()],
        };
        let calls: Vec<NodeFuture<i64>> = suffixes
            .iter()
            .map(|suffix| {
                let keys = [
                    format!("{MARKER_KEY}{suffix}"),
                    format!("{QUARANTINE_KEY}{suffix}"),
                ];
                self.quorate_script::<i64>(&DECLARE_FRESH, &keys, Vec::new())
            })
            .collect();
        async move {
            let mut set = false;
            for reply in futures::future::join_all(calls).await {
                set |= reply? == 1;
            }
            Ok(set)
        }
        .boxed()
    }
}

impl FredNode {
    /// The watchdog's extensions in one `extend_many.lua` call.
    fn extend_batch(&self, locks: &[ExtendRequest]) -> NodeFuture<Vec<bool>> {
        let keys: Vec<String> = locks.iter().flat_map(|l| l.keys.iter().cloned()).collect();
        let mut args = Vec::with_capacity(1 + 3 * locks.len());
        args.push(locks.len().to_string().into());
        for lock in locks {
            args.push(lock.token.clone().into());
            args.push(ttl_millis(lock.ttl).to_string().into());
            args.push(lock.keys.len().to_string().into());
        }
        self.quorate_script::<Vec<i64>>(&EXTEND_MANY, &keys, args)
            .map(|reply| Ok(reply?.into_iter().map(|r| r == 1).collect()))
            .boxed()
    }

    /// On a Redis Cluster node: one call per hash slot (a lock's keys share
    /// one, checked when it was taken).
    fn extend_per_slot(&self, locks: &[ExtendRequest]) -> NodeFuture<Vec<bool>> {
        extend_in_groups(
            locks,
            |lock| lock.keys.first().map_or(0, |k| hash_slot(k)),
            |part| self.extend_batch(part),
        )
    }
}

/// `host:port` of the (first) server a config points at.
fn node_name(config: &Config) -> String {
    let server: Option<Server> = match &config.server {
        ServerConfig::Centralized { server } => Some(server.clone()),
        other => other.hosts().into_iter().next(),
    };
    match server {
        Some(s) => format!("{}:{}", s.host, s.port),
        None => "unknown".to_owned(),
    }
}

/// The URL with any password replaced, for error messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("redis://u:secret@h:1"), "redis://u:***@h:1");
        assert_eq!(redact("redis://:secret@h:1"), "redis://:***@h:1");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
        assert_eq!(redact("nonsense"), "nonsense");
    }

    #[test]
    fn only_redis_schemes_and_rediss_only_with_tls() {
        for ok in [
            "redis://h:1",
            "REDIS://h:1",
            "redis-cluster://h:1",
            "redis-sentinel://h:1",
        ] {
            assert_eq!(check_scheme(ok), Ok(()), "{ok}");
        }
        for bad in ["http://h:1", "foo://h:1", "h:1"] {
            assert!(
                matches!(check_scheme(bad), Err(ConfigError::BadUrl { .. })),
                "{bad}"
            );
        }
        let tls = check_scheme("rediss://u:secret@h:1");
        if cfg!(feature = "tls") {
            assert_eq!(tls, Ok(()));
        } else {
            assert_eq!(
                tls,
                Err(ConfigError::TlsNotEnabled {
                    index: 0,
                    url: "rediss://u:***@h:1".to_owned()
                })
            );
        }
    }

    #[test]
    fn ttl_rounds_up_to_whole_millis() {
        assert_eq!(ttl_millis(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_millis(Duration::from_nanos(1)), 1);
        assert_eq!(ttl_millis(Duration::from_secs(3)), 3000);
    }
}
