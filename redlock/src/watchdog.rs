//! Auto-extension. One task per Redlock keeps every opted-in lock alive:
//! the extensions due in the same tick go out as one batched request per
//! node, so 10,000 held locks cost one request per node per tick, not
//! 10,000 timers and 10,000 round trips.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::backend::{ExtendRequest, Node};
use crate::lease::Lease;
use crate::metrics;
use crate::quorum::{self, Decide, Reply};

/// What a guard and the watchdog share: the current lease, and whether the
/// lock was found lost.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeaseState {
    pub lease: Lease,
    pub lost: bool,
}

pub(crate) type LeaseCell = Arc<watch::Sender<LeaseState>>;

/// The lock is extended when a third of its ttl has passed since the last
/// grant or extension, leaving two thirds for retries when nodes fail.
const EXTEND_AT: u32 = 3;
/// Locks due within a sixth of their ttl join the current tick's batch
/// (extending a little early is harmless; it saves a request).
const BATCH_WINDOW: u32 = 6;

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
}

enum Command {
    Watch(u64, Watched),
    Unwatch(u64),
}

struct Entry {
    lock: Watched,
    token: String,
    next_due: Instant,
}

impl Watchdog {
    pub fn new(nodes: Vec<Arc<dyn Node>>, quorum: usize, primitive: &'static str) -> Self {
        Watchdog {
            commands: OnceLock::new(),
            next_id: AtomicU64::new(0),
            nodes,
            quorum,
            primitive,
        }
    }

    /// Starts keeping `lock` alive; returns the id to stop with.
    pub fn watch(&self, lock: Watched) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let commands = self.commands.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let task = Task {
                nodes: self.nodes.clone(),
                quorum: self.quorum,
                primitive: self.primitive,
                entries: HashMap::new(),
            };
            tokio::spawn(task.run(rx));
            tx
        });
        let _ = commands.send(Command::Watch(id, lock));
        id
    }

    /// Stops extending lock `id`: no request for it is sent after this.
    pub fn unwatch(&self, id: u64) {
        if let Some(commands) = self.commands.get() {
            let _ = commands.send(Command::Unwatch(id));
        }
    }
}

struct Task {
    nodes: Vec<Arc<dyn Node>>,
    quorum: usize,
    primitive: &'static str,
    entries: HashMap<u64, Entry>,
}

impl Task {
    /// Ends when the Redlock (the command sender) is dropped.
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            let next_due = self.entries.values().map(|e| e.next_due).min();
            let command = match next_due {
                Some(due) => tokio::select! {
                    command = commands.recv() => command,
                    () = tokio::time::sleep_until(due) => {
                        self.tick().await;
                        continue;
                    }
                },
                None => commands.recv().await,
            };
            match command {
                Some(Command::Watch(id, lock)) => {
                    let lease = lock.cell.borrow().lease;
                    let entry = Entry {
                        token: lease.token().to_hex(),
                        next_due: lease.started() + lock.ttl / EXTEND_AT,
                        lock,
                    };
                    self.entries.insert(id, entry);
                }
                Some(Command::Unwatch(id)) => {
                    self.entries.remove(&id);
                }
                None => break,
            }
        }
    }

    /// Extends every lock due now or within its batch window, in one
    /// request per node, and settles each lock by its own majority.
    async fn tick(&mut self) {
        let now = Instant::now();
        let due: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.next_due <= now + e.lock.ttl / BATCH_WINDOW)
            .map(|(id, _)| *id)
            .collect();
        let batch: Vec<ExtendRequest> = due
            .iter()
            .filter_map(|id| self.entries.get(id))
            .map(|e| ExtendRequest {
                keys: Arc::clone(&e.lock.keys),
                token: e.token.clone(),
                ttl: e.lock.ttl,
            })
            .collect();
        // A batch of thousands of locks takes the server milliseconds, not
        // the microseconds of one lock: allow it the batch window (each
        // lock's validity still counts from the tick's start).
        let node_timeout = due
            .iter()
            .filter_map(|id| self.entries.get(id))
            .map(|e| e.lock.node_timeout.max(e.lock.ttl / BATCH_WINDOW))
            .max()
            .unwrap_or(Duration::from_millis(100));
        let started = Instant::now();
        let round = quorum::round(
            "extend_many",
            &self.nodes,
            node_timeout,
            Decide::All,
            |_| true,
            |node| node.extend_many(&batch),
        )
        .await;

        let n = self.nodes.len();
        for (i, id) in due.iter().enumerate() {
            let Some(entry) = self.entries.get_mut(id) else {
                continue;
            };
            let (mut extended, mut not_held) = (0, 0);
            for reply in &round.replies {
                if let Reply::Answered(results) = reply {
                    if results.get(i) == Some(&true) {
                        extended += 1;
                    } else {
                        not_held += 1;
                    }
                }
            }
            let lock = &entry.lock;
            if extended >= self.quorum {
                let mut renewed = lock.cell.borrow().lease;
                renewed.renew(lock.ttl, started, lock.drift_factor);
                if renewed.is_valid() {
                    lock.cell.send_modify(|s| s.lease = renewed);
                    entry.next_due = started + lock.ttl / EXTEND_AT;
                    metrics::extended(self.primitive, "extended");
                    continue;
                }
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
