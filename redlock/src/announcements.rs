//! Release announcements and queue wake-ups: waiters wake when a holder
//! releases, instead of polling. Announcements (for the primitives'
//! waiters, [`Redlock::watch_releases`](crate::Redlock::watch_releases)):
//! one subscription per key per process, shared by its waiters. Wake-ups
//! (for the mutex's queued waiters, see `queue.rs`): one channel per
//! process, on which the servers name the key whose queue head is ours.
//! Both over the one subscriber connection per node.
//!
//! See ARCHITECTURE.md, "Waiting: three queues, one order", for how this fits the whole.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use futures::future::{join_all, select_all};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::backend::{Node, QueueGrant};
use crate::notify_cell::{CellWatcher, NotifyCell};

/// Per Redlock: which keys local waiters watch, fed by every node's
/// announcements.
pub(crate) struct Notifier {
    nodes: Vec<Arc<dyn Node>>,
    /// This client's id in announcements, to tell its own releases apart.
    id: String,
    watched: Mutex<BTreeMap<String, Watched>>,
    /// Queued waiters of this process, by key, woken by wake-ups.
    turns: Mutex<BTreeMap<String, Watched>>,
    /// Whether a majority confirmed the wake-up subscription.
    wakes_subscribed: AtomicBool,
    dispatching: OnceLock<()>,
}

/// Which registry a [`Watch`] is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Released,
    Turn,
}

struct Watched {
    watchers: usize,
    /// Bumped on every announcement; receivers see "changed".
    announced: NotifyCell<Announcement>,
    /// Bumped whenever the watcher count drops to zero, so that a lingering
    /// unsubscribe knows whether someone came back meanwhile.
    generation: u64,
    /// Wake-ups only: the latest grant each node woke us with, by node.
    grants: BTreeMap<usize, QueueGrant>,
}

/// The latest announcement of a key.
#[derive(Clone, Copy, Debug, Default)]
struct Announcement {
    seq: u64,
    /// Released by this process: its waiters are alone in the local queue,
    /// so they need not spread out against other clients.
    local: bool,
}

/// How long a subscription outlives its last watcher: a lock that is
/// contended again soon keeps its subscription instead of churning.
const LINGER: Duration = Duration::from_secs(5);

impl Notifier {
    pub(crate) fn new(nodes: Vec<Arc<dyn Node>>) -> Arc<Self> {
        Arc::new(Notifier {
            nodes,
            id: crate::lease::Token::random().to_hex(),
            watched: Mutex::default(),
            turns: Mutex::default(),
            wakes_subscribed: AtomicBool::new(false),
            dispatching: OnceLock::new(),
        })
    }

    fn watched(&self) -> MutexGuard<'_, BTreeMap<String, Watched>> {
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn registry(&self, kind: Kind) -> MutexGuard<'_, BTreeMap<String, Watched>> {
        match kind {
            Kind::Released => self.watched(),
            Kind::Turn => self.turns.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Registers a queued waiter of `keys`: it wakes when a node names one
    /// of them as this process's turn. Subscribes this process's wake
    /// channel first if no majority confirmed it yet (waiting up to
    /// `timeout`); without it the waiter only wakes on its timers.
    pub(crate) async fn await_turn(self: &Arc<Self>, keys: &[String], timeout: Duration) -> Watch {
        self.start_dispatch();
        let watch = self.register(Kind::Turn, keys).0;
        if !self.wakes_subscribed.load(Ordering::Relaxed) {
            let id = self.id.clone();
            let confirmed = self
                .confirm_on_majority(timeout, |node| node.subscribe_wakes(&id))
                .await;
            if confirmed {
                self.wakes_subscribed.store(true, Ordering::Relaxed);
            }
        }
        watch
    }

    /// Adds a watcher of `keys` to the `kind` registry; returns it and the
    /// keys nobody watched before.
    fn register(self: &Arc<Self>, kind: Kind, keys: &[String]) -> (Watch, Vec<String>) {
        let mut new_keys = Vec::new();
        let mut receivers = Vec::new();
        {
            let mut registry = self.registry(kind);
            for key in keys {
                let entry = registry.entry(key.clone()).or_insert_with(|| {
                    new_keys.push(key.clone());
                    Watched {
                        watchers: 0,
                        announced: NotifyCell::new(Announcement::default()),
                        generation: 0,
                        grants: BTreeMap::new(),
                    }
                });
                entry.watchers += 1;
                receivers.push(entry.announced.subscribe());
            }
        }
        // Registered before any await: a cancelled call unregisters on drop.
        let watch = Watch {
            notifier: Arc::clone(self),
            kind,
            keys: keys.to_vec(),
            seen: vec![0; receivers.len()],
            receivers,
        };
        (watch, new_keys)
    }

    /// Sends `call` to every node; waits up to `timeout` until a majority
    /// confirmed (the rest finish in the background). `true` if one did.
    async fn confirm_on_majority(
        &self,
        timeout: Duration,
        call: impl Fn(&Arc<dyn Node>) -> crate::backend::NodeFuture<()>,
    ) -> bool {
        let majority = crate::quorum::majority(self.nodes.len());
        let mut confirmations: FuturesUnordered<_> = self
            .nodes
            .iter()
            .map(|node| tokio::time::timeout(timeout, call(node)))
            .collect();
        let mut confirmed = 0;
        while let Some(result) = confirmations.next().await {
            confirmed += usize::from(matches!(result, Ok(Ok(()))));
            if confirmed >= majority {
                break;
            }
        }
        if !confirmations.is_empty() {
            tokio::spawn(confirmations.for_each(|_| async {}));
        }
        confirmed >= majority
    }

    /// Registers interest in `keys`. Keys not subscribed yet are subscribed
    /// on every node; waits up to `timeout` until a majority confirmed. A
    /// release deletes on a majority and announces there, so a majority of
    /// subscriptions always hears it; a node that does not confirm just
    /// costs latency (polling remains).
    pub(crate) async fn watch(self: &Arc<Self>, keys: &[String], timeout: Duration) -> Watch {
        self.start_dispatch();
        let (watch, new_keys) = self.register(Kind::Released, keys);
        if !new_keys.is_empty() {
            self.confirm_on_majority(timeout, |node| node.subscribe(&new_keys))
                .await;
        }
        watch
    }

    /// One task per node forwards its announcements to the watchers.
    fn start_dispatch(self: &Arc<Self>) {
        self.dispatching.get_or_init(|| {
            for (index, node) in self.nodes.iter().enumerate() {
                let Some(mut released) = node.releases() else {
                    continue;
                };
                let notifier: Weak<Notifier> = Arc::downgrade(self);
                tokio::spawn(async move {
                    loop {
                        match released.recv().await {
                            Ok(released) => match notifier.upgrade() {
                                Some(notifier) => match &released.to {
                                    None => {
                                        let local = released.by == notifier.id;
                                        notifier.announce(Kind::Released, &released.key, local);
                                    }
                                    Some(to) if *to == notifier.id => {
                                        if let Some(grant) = released.grant {
                                            notifier.record_grant(&released.key, index, grant);
                                        }
                                        notifier.announce(Kind::Turn, &released.key, false);
                                    }
                                    // another client's turn (in-process nodes tell everyone)
                                    Some(_) => {}
                                },
                                None => break,
                            },
                            Err(RecvError::Lagged(_)) => continue,
                            Err(RecvError::Closed) => break,
                        }
                    }
                });
            }
        });
    }

    /// The id this client announces its releases with.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Wakes local waiters of `keys` (a release by this process).
    pub(crate) fn announce_all(&self, keys: &[String]) {
        for key in keys {
            self.announce(Kind::Released, key, true);
        }
    }

    /// Remembers the grant node `index` woke a waiter of `key` with.
    pub(crate) fn record_grant(&self, key: &str, index: usize, grant: QueueGrant) {
        if let Some(entry) = self.registry(Kind::Turn).get_mut(key) {
            entry.grants.insert(index, grant);
        }
    }

    fn announce(&self, kind: Kind, key: &str, local: bool) {
        if let Some(entry) = self.registry(kind).get(key) {
            entry.announced.send_modify(|a| {
                a.seq = a.seq.wrapping_add(1);
                a.local = local;
            });
        }
    }

    fn unwatch(self: &Arc<Self>, kind: Kind, keys: &[String]) {
        if kind == Kind::Turn {
            // no per-key subscription to linger: just forget idle keys
            let mut turns = self.registry(kind);
            for key in keys {
                if let Some(entry) = turns.get_mut(key) {
                    entry.watchers -= 1;
                    if entry.watchers == 0 {
                        turns.remove(key);
                    }
                }
            }
            return;
        }
        let mut idle = Vec::new();
        {
            let mut watched = self.watched();
            for key in keys {
                if let Some(entry) = watched.get_mut(key) {
                    entry.watchers -= 1;
                    if entry.watchers == 0 {
                        entry.generation += 1;
                        idle.push((key.clone(), entry.generation));
                    }
                }
            }
        }
        if idle.is_empty() {
            return;
        }
        // Outside a runtime the subscription just stays until the Redlock goes.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let notifier = Arc::downgrade(self);
        handle.spawn(async move {
            tokio::time::sleep(LINGER).await;
            let Some(notifier) = notifier.upgrade() else {
                return;
            };
            let gone: Vec<String> = {
                let mut watched = notifier.watched();
                idle.into_iter()
                    .filter(|(key, generation)| {
                        let still_idle = watched
                            .get(key)
                            .is_some_and(|e| e.watchers == 0 && e.generation == *generation);
                        if still_idle {
                            watched.remove(key);
                        }
                        still_idle
                    })
                    .map(|(key, _)| key)
                    .collect()
            };
            if !gone.is_empty() {
                // A waiter subscribing this very moment may lose to this
                // unsubscribe: that costs it latency only.
                join_all(notifier.nodes.iter().map(|n| n.unsubscribe(&gone))).await;
            }
        });
    }
}

/// A waiter's registration; unregisters on drop.
pub(crate) struct Watch {
    notifier: Arc<Notifier>,
    kind: Kind,
    keys: Vec<String>,
    receivers: Vec<CellWatcher<Announcement>>,
    /// Each receiver's announcement count at the last `mark_seen`.
    seen: Vec<u64>,
}

impl Watch {
    /// Forgets the announcements seen so far (call before each round, so
    /// that only a release after it wakes the waiter).
    pub(crate) fn mark_seen(&mut self) {
        self.seen = self
            .receivers
            .iter_mut()
            .map(|r| r.borrow_and_update().seq)
            .collect();
    }

    /// Messages for the watched keys since [`mark_seen`](Self::mark_seen).
    fn arrived(&self) -> u64 {
        self.receivers
            .iter()
            .zip(&self.seen)
            .map(|(r, seen)| r.borrow().seq.wrapping_sub(*seen))
            .sum()
    }

    /// Resolves once `needed` wake-ups arrived since
    /// [`mark_seen`](Self::mark_seen), or `grace` after the first one: a
    /// release reaches the nodes at slightly different moments, and a head
    /// that asks when only the first node has passed the key on is refused
    /// by the others (a split vote, undone and retried).
    pub(crate) async fn turn_came(&mut self, needed: u64, grace: Duration) {
        let mut first: Option<Instant> = None;
        loop {
            let arrived = self.arrived();
            if arrived >= needed {
                return;
            }
            if arrived > 0 && first.is_none() {
                first = Some(Instant::now() + grace);
            }
            match first {
                // biased (here and in every select! of the library): a fixed
                // order, so a seeded simulation replays exactly
                Some(until) => tokio::select! {
                    biased;
                    _ = self.released() => {}
                    () = tokio::time::sleep_until(until) => return,
                },
                None => {
                    self.released().await;
                }
            }
        }
    }

    /// The latest grant each node woke us with for the first watched key,
    /// by node (wake-ups only).
    pub(crate) fn grants(&self) -> BTreeMap<usize, QueueGrant> {
        let Some(key) = self.keys.first() else {
            return BTreeMap::new();
        };
        self.notifier
            .registry(self.kind)
            .get(key)
            .map(|entry| entry.grants.clone())
            .unwrap_or_default()
    }

    /// Resolves at the next announcement of any watched key; `true` when
    /// it came from a release by this process.
    pub(crate) async fn released(&mut self) -> bool {
        if self.receivers.is_empty() {
            return futures::future::pending().await;
        }
        let changes = self.receivers.iter_mut().map(|r| Box::pin(r.changed()));
        let (_, index, _) = select_all(changes).await;
        self.receivers.get(index).is_some_and(|r| r.borrow().local)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.notifier.unwatch(self.kind, &self.keys);
    }
}
