//! Auto-extension. One task per Redlock keeps every opted-in lock alive:
//! the extensions due in the same tick go out as one batched request per
//! node, so 10,000 held locks cost one request per node per tick, not
//! 10,000 timers and 10,000 round trips.
//!
//! See ARCHITECTURE.md, "Guards and the watchdog", for how this fits the whole.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::backend::{ExtendRequest, Node};
use crate::lease::Lease;
use crate::metrics;
use crate::notify_cell::NotifyCell;
use crate::quorum::{self, Decide, Reply};

/// What a guard and the watchdog share: the current lease, and whether the
/// lock was found lost.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeaseState {
    pub lease: Lease,
    pub lost: bool,
}

pub(crate) type LeaseCell = Arc<NotifyCell<LeaseState>>;

/// The lock is extended when a third of its ttl has passed since the last
/// grant or extension, leaving two thirds for retries when nodes fail.
const EXTEND_AT: u32 = 3;
/// Locks due within a sixth of their ttl join the current tick's batch
/// (extending a little early is harmless; it saves a request).
const BATCH_WINDOW: u32 = 6;
/// Most locks extended by one request to one node.
const MAX_LOCKS_PER_REQUEST: usize = 500;

pub(crate) struct Watchdog {
    commands: OnceLock<mpsc::UnboundedSender<Command>>,
    next_id: AtomicU64,
    nodes: Vec<Arc<dyn Node>>,
    quorum: usize,
    primitive: &'static str,
}

/// A lock handed to the watchdog.
pub(crate) struct Watched {
    pub keys: Arc<[String]>,
    pub ttl: Duration,
    pub drift_factor: f64,
    pub node_timeout: Duration,
    pub cell: LeaseCell,
    /// Extend once to `ttl`, then stop (a lease granted shorter than asked).
    pub once: bool,
}

enum Command {
    Watch(u64, Watched),
    Unwatch(u64),
}

struct Entry {
    lock: Watched,
    token: String,
    next_due: Instant,
    /// A batch carrying this lock is in flight: not due again until settled.
    in_flight: bool,
}

/// The answers to one batch, sent back from its round's task.
struct Settled {
    ids: Vec<u64>,
    started: Instant,
    /// Per node, the per-lock answers of those that answered in time.
    answers: Vec<Option<Vec<bool>>>,
}

impl Watchdog {
    pub(crate) fn new(nodes: Vec<Arc<dyn Node>>, quorum: usize, primitive: &'static str) -> Self {
        Watchdog {
            commands: OnceLock::new(),
            next_id: AtomicU64::new(0),
            nodes,
            quorum,
            primitive,
        }
    }

    /// Starts keeping `lock` alive; returns the id to stop with.
    pub(crate) fn watch(&self, lock: Watched) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let commands = self.commands.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let task = Task {
                nodes: self.nodes.clone(),
                quorum: self.quorum,
                primitive: self.primitive,
                entries: BTreeMap::new(),
            };
            tokio::spawn(task.run(rx));
            tx
        });
        let _ = commands.send(Command::Watch(id, lock));
        id
    }

    /// Stops extending lock `id`: no request for it is sent after this.
    pub(crate) fn unwatch(&self, id: u64) {
        if let Some(commands) = self.commands.get() {
            let _ = commands.send(Command::Unwatch(id));
        }
    }
}

struct Task {
    nodes: Vec<Arc<dyn Node>>,
    quorum: usize,
    primitive: &'static str,
    entries: BTreeMap<u64, Entry>,
}

impl Task {
    /// Ends when the Redlock (the command sender) is dropped. Rounds run on
    /// their own tasks, so a slow batch never delays the next one (or the
    /// first extension of a lock taken meanwhile).
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let (settled_tx, mut settled_rx) = mpsc::unbounded_channel();
        loop {
            let next_due = self
                .entries
                .values()
                .filter(|e| !e.in_flight)
                .map(|e| e.next_due)
                .min();
            let due = async move {
                match next_due {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // due first: a stream of commands never delays extensions
                biased;
                () = due => self.send_batch(&settled_tx),
                Some(settled) = settled_rx.recv() => self.settle(settled),
                command = commands.recv() => match command {
                    Some(command) => {
                        self.apply(command);
                        // Apply every queued command before the next scan
                        // for the earliest due lock: one scan per command
                        // would cost n² for n locks taken or released at
                        // once (10,000 released together stalled a worker
                        // long enough to time their own releases out).
                        while let Ok(command) = commands.try_recv() {
                            self.apply(command);
                        }
                    }
                    None => break,
                },
            }
        }
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Watch(id, lock) => {
                let lease = lock.cell.borrow().lease;
                let entry = Entry {
                    token: lease.token().to_hex(),
                    next_due: lease.started() + lease.ttl().min(lock.ttl) / EXTEND_AT,
                    lock,
                    in_flight: false,
                };
                self.entries.insert(id, entry);
            }
            Command::Unwatch(id) => {
                self.entries.remove(&id);
            }
        }
    }

    /// Sends one request per node extending every lock due now or within
    /// its batch window.
    fn send_batch(&mut self, settled: &mpsc::UnboundedSender<Settled>) {
        let now = Instant::now();
        let mut due = Vec::new();
        for (id, entry) in &mut self.entries {
            if entry.in_flight || entry.next_due > now + entry.lock.ttl / BATCH_WINDOW {
                continue;
            }
            entry.in_flight = true;
            let request = ExtendRequest {
                keys: Arc::clone(&entry.lock.keys),
                token: entry.token.clone(),
                ttl: entry.lock.ttl,
            };
            // A batch of many locks takes a server milliseconds, not the
            // microseconds of one lock, and a loaded machine more: wait as
            // long as an answer can still help, i.e. while the lock is valid.
            let useful = entry
                .lock
                .node_timeout
                .max(entry.lock.cell.borrow().lease.remaining());
            due.push((*id, request, useful));
        }
        // One request per node per chunk, all sent now: a script extending
        // 10,000 locks kept each server busy 70-110 ms (bench E, SLOWLOG),
        // stalling every other client of that server meanwhile.
        for chunk in due.chunks(MAX_LOCKS_PER_REQUEST) {
            let ids: Vec<u64> = chunk.iter().map(|(id, ..)| *id).collect();
            let batch: Vec<ExtendRequest> = chunk.iter().map(|(_, r, _)| r.clone()).collect();
            let node_timeout = chunk.iter().map(|(.., t)| *t).min().unwrap_or_default();
            let (nodes, settled) = (self.nodes.clone(), settled.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let round = quorum::round(
                    "extend_many",
                    &nodes,
                    node_timeout,
                    // Not the first majority to answer: nodes that lost their data
                    // answer "not held" as fast as the holders answer "extended",
                    // and only confirmations count. Every node gets as long again
                    // as the majority took; a lock a slower node would have
                    // confirmed is retried soon.
                    Decide::AllWithGrace,
                    |_answered| true,
                    |node| node.extend_many(&batch),
                )
                .await;
                let answers = round
                    .replies
                    .into_iter()
                    .map(|reply| match reply {
                        Reply::Answered(results) => Some(results),
                        _ => None,
                    })
                    .collect();
                let _ = settled.send(Settled {
                    ids,
                    started,
                    answers,
                });
            });
        }
    }

    /// Settles each lock of a batch by its own majority: renewed, retried
    /// soon (nodes failed), or lost (a majority no longer holds it, or its
    /// validity ran out).
    fn settle(&mut self, settled: Settled) {
        let n = self.nodes.len();
        for (i, id) in settled.ids.iter().enumerate() {
            // Released meanwhile: nothing to settle.
            let Some(entry) = self.entries.get_mut(id) else {
                continue;
            };
            entry.in_flight = false;
            let (mut extended, mut not_held) = (0, 0);
            for answer in settled.answers.iter().flatten() {
                if answer.get(i) == Some(&true) {
                    extended += 1;
                } else {
                    not_held += 1;
                }
            }
            let lock = &entry.lock;
            if extended >= self.quorum {
                lock.cell.send_modify(|s| {
                    s.lease
                        .confirm(lock.ttl, settled.started, lock.drift_factor)
                });
                if lock.cell.borrow().lease.is_valid() {
                    entry.next_due = settled.started + lock.ttl / EXTEND_AT;
                    metrics::extended(self.primitive, "extended");
                    if lock.once {
                        self.entries.remove(id);
                    }
                    continue;
                }
            } else {
                // Some nodes may have applied it: the lease's one rule for doubt.
                lock.cell
                    .send_modify(|s| s.lease.doubt(lock.ttl, settled.started, lock.drift_factor));
            }
            let valid = lock.cell.borrow().lease.is_valid();
            if valid && not_held <= n - self.quorum {
                // Nodes failed, not the lock: try again soon, while validity lasts.
                entry.next_due = Instant::now() + (lock.ttl / 20).max(Duration::from_millis(10));
                metrics::extended(self.primitive, "no_quorum");
                continue;
            }
            tracing::warn!(resources = %lock.keys.join(","), extended, not_held, "lock lost: auto-extension failed");
            metrics::extended(self.primitive, "lost");
            lock.cell.send_modify(|s| s.lost = true);
            self.entries.remove(id);
        }
    }
}
