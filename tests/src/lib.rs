//! A seeded, deterministic simulation of whole histories: several clients
//! (each its own [`Redlock`]) run a random mix of every primitive's
//! operations (mutex, semaphore, rwlock, tree, spinlock, latch) against 5
//! memory nodes while a fault task delays, stalls, downs and crashes them (a
//! crash comes back with an older snapshot of its data) and runs their
//! clocks slow or fast, and checkers look at every event. In one history in
//! three node 0 is a [`ShardedNode`] of 3 shards (a Redis Cluster node),
//! whose shards the fault task hits one by one.
//!
//! One thread, tokio's paused clock, one seed for every random choice (the
//! library's own too, and its wall clock, through
//! `raw::determinism::seed_thread`): a history is replayed exactly from its
//! seed, in any process (`QUORATE_SIM_SEED=<seed>`; `QUORATE_SIM_TRACE=1`
//! prints it).
//!
//! Checkers:
//! - no two holders' guards report validity left on conflicting resources
//!   at the same instant (checked whenever a guard is granted or its
//!   validity changes; readers share, tree paths conflict with their
//!   ancestors and descendants);
//! - fences strictly increase per resource, in grant order;
//! - no semaphore grant at or above the number a returned `set_permits`
//!   set, by an acquire no set ran beside or by a round that started after
//!   it returned (sets that overlap each other may take effect in either
//!   order);
//! - the latch never opens before its count of count-downs started;
//! - every call of a primitive that waits (mutex, permits, rwlock, tree,
//!   spinlock) ends within its acquire timeout plus a bound;
//! - after the faults heal, every client gets the mutex's resources, a
//!   permit (after a `set_permits` when a majority restarted since the
//!   number was set), the rwlock's writer, the tree's root and the spinlock
//!   within a bound (the quarantine plus the longest ttl).

pub mod deployment;
pub mod every_primitive;
pub mod sharded_node;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use quorate_latch::Latch;
use quorate_pool::{PermitId, PoolError, Semaphore};
use quorate_redlock::raw::determinism;
use quorate_redlock::{LockGuard, LockOptions, MemoryNode, MemorySnapshot, Node, Redlock};

use crate::sharded_node::ShardedNode;
use quorate_rwlock::RwLock;
use quorate_spinlock::{Expiry, SpinOptions, Spinlock};
use quorate_tree::TreeLock;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

/// The shape of one history.
#[derive(Clone, Debug)]
pub struct Shape {
    /// Memory nodes.
    pub nodes: usize,
    /// Clients, each a Redlock of its own.
    pub clients: usize,
    /// Tasks per client.
    pub tasks: usize,
    /// How long the clients run (simulated time).
    pub run: Duration,
    /// Each client sees only node `client % nodes`, a quorum of one: the
    /// broken configuration the checkers must catch.
    pub quorum_of_one: bool,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            nodes: 5,
            clients: 3,
            tasks: 2,
            run: Duration::from_secs(4),
            quorum_of_one: false,
        }
    }
}

/// The longest ttl any client uses, and so the quarantine after a crash.
const MAX_TTL: Duration = Duration::from_millis(1500);
const NODE_TIMEOUT: Duration = Duration::from_millis(60);
/// Every client's drift factor: five times the default, so that clocks
/// running up to that fast leave a window wide enough for a history to hit
/// when the allowance is missing.
const DRIFT_FACTOR: f64 = 0.05;
/// The fastest a node's clock runs: within the drift allowance.
const FASTEST_CLOCK: f64 = 1.0 + DRIFT_FACTOR * 0.9;
const LATCH: &str = "l";
const LATCH_COUNT: u64 = 3;
/// Steps per task at most (each takes at least 1 ms of simulated time).
const MAX_STEPS: usize = 10_000;
/// One hash tag: a lock on both must keep to one slot of a sharded node.
const RESOURCES: [&str; 2] = ["{r}a", "{r}b"];
const SEMAPHORE: &str = "s";
const INITIAL_PERMITS: usize = 3;

/// A checker's finding, with the seed that replays it.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The history's seed.
    pub seed: u64,
    /// What was seen, and when (ms of simulated time).
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (replay: QUORATE_SIM_SEED={} cargo test -p quorate-system-tests --test simulation replay)",
            self.what, self.seed
        )
    }
}

/// What one history did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Granted locks and permits.
    pub grants: u64,
    /// Faults injected.
    pub faults: u64,
    /// Every event, hashed in order: equal for equal seeds.
    pub trace: u64,
}

/// Runs the history of `seed` on a fresh single-threaded runtime with a
/// paused clock.
pub fn run(seed: u64, shape: &Shape) -> Result<Summary, Violation> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| Violation {
            seed,
            what: format!("runtime: {e}"),
        })?;
    determinism::seed_thread(seed);
    let result = runtime.block_on(history(seed, shape.clone()));
    determinism::unseed_thread();
    result
}

/// One live hold as its holder last reported it.
#[derive(Clone, Debug)]
struct Hold {
    holder: usize,
    resources: Vec<String>,
    /// A reader's hold: shares its resources with other readers.
    shared: bool,
    valid_until: Instant,
}

/// Whether two holds may not overlap: a resource in common (tree nodes:
/// one path on, above or below the other) unless both are readers.
fn conflict(a: &Hold, b: &Hold) -> bool {
    if a.shared && b.shared {
        return false;
    }
    a.resources.iter().any(|x| {
        b.resources
            .iter()
            .any(|y| match (x.strip_prefix(TREE), y.strip_prefix(TREE)) {
                (Some(p), Some(q)) => {
                    p == q || p.starts_with(&format!("{q}/")) || q.starts_with(&format!("{p}/"))
                }
                _ => x == y,
            })
    })
}

/// Resources of tree holds start with this, then the path (`a/b`).
const TREE: &str = "tree:";

#[derive(Default)]
struct World {
    started: Option<Instant>,
    holds: BTreeMap<u64, Hold>,
    next_hold: u64,
    fences: BTreeMap<String, u64>,
    /// The number the last returned set_permits set, and how many sets
    /// have started / are running.
    permits: usize,
    sets_started: u64,
    sets_running: u64,
    /// A set failed, or sets overlapped, since the last set that ran alone:
    /// the floor is not known.
    set_failed: bool,
    /// When the last set that ran alone returned, and `sets_started` then.
    set_returned: Option<(Instant, u64)>,
    permit_ids: Vec<PermitId>,
    /// Count-down calls started on the latch.
    count_downs: u64,
    violation: Option<String>,
    summary: Summary,
    /// Print every event (`QUORATE_SIM_TRACE=1`).
    trace: bool,
}

type Shared = Rc<RefCell<World>>;

impl World {
    fn at(&self) -> u128 {
        self.started.map_or(0, |s| s.elapsed().as_millis())
    }

    fn event(&mut self, what: impl fmt::Debug) {
        use std::hash::{Hash, Hasher};
        if self.trace {
            eprintln!("{:>6} ms  {what:?}", self.at());
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.summary.trace, self.at(), format!("{what:?}")).hash(&mut h);
        self.summary.trace = h.finish();
    }

    fn fail(&mut self, what: String) {
        if self.violation.is_none() {
            self.violation = Some(format!("at {} ms: {what}", self.at()));
        }
    }

    /// A holder's view changed (granted, extended): nobody else may claim
    /// validity on its resources now.
    fn report(&mut self, id: u64, hold: Hold) {
        let now = Instant::now();
        self.event(("hold", id, &hold.resources, hold.valid_until > now));
        if hold.valid_until > now {
            let clash = self.holds.iter().find(|(other_id, other)| {
                **other_id != id && other.valid_until > now && conflict(&hold, other)
            });
            if let Some((_, other)) = clash {
                let what = format!(
                    "two holders: client {} claims {:?} for {:?} more while client {} claims {:?} for {:?} more",
                    hold.holder,
                    hold.resources,
                    hold.valid_until - now,
                    other.holder,
                    other.resources,
                    other.valid_until - now
                );
                self.fail(what);
            }
        }
        self.holds.insert(id, hold);
    }

    fn granted(&mut self, holder: usize, resources: Vec<String>, remaining: Duration) -> u64 {
        self.granted_as(holder, resources, false, remaining)
    }

    fn granted_as(
        &mut self,
        holder: usize,
        resources: Vec<String>,
        shared: bool,
        remaining: Duration,
    ) -> u64 {
        self.summary.grants += 1;
        let id = self.next_hold;
        self.next_hold += 1;
        let hold = Hold {
            holder,
            resources,
            shared,
            valid_until: Instant::now() + remaining,
        };
        self.report(id, hold);
        id
    }

    fn update(&mut self, id: u64, remaining: Duration) {
        if let Some(mut hold) = self.holds.get(&id).cloned() {
            hold.valid_until = Instant::now() + remaining;
            self.report(id, hold);
        }
    }

    fn ended(&mut self, id: u64) {
        self.event(("ended", id));
        self.holds.remove(&id);
    }

    fn fenced(&mut self, resources: &[String], fence: u64) {
        for r in resources {
            let last = self.fences.get(r).copied().unwrap_or(0);
            if fence <= last {
                self.fail(format!("fence {fence} on {r} after fence {last}"));
            }
            self.fences.insert(r.clone(), last.max(fence));
        }
    }
}

async fn history(seed: u64, shape: Shape) -> Result<Summary, Violation> {
    let world: Shared = Rc::new(RefCell::new(World {
        started: Some(Instant::now()),
        permits: INITIAL_PERMITS,
        trace: std::env::var_os("QUORATE_SIM_TRACE").is_some(),
        ..World::default()
    }));
    let nodes = MemoryNode::cluster(shape.nodes);
    // One history in three: node 0 is a Redis Cluster-like node of 3 shards,
    // each crashed, restarted and delayed on its own by the fault task.
    let shards: Vec<MemoryNode> = if seed % 3 == 1 && !shape.quorum_of_one {
        (0..3)
            .map(|s| MemoryNode::new(format!("memory-0-shard-{s}")))
            .collect()
    } else {
        Vec::new()
    };
    let sharded: Option<Arc<dyn Node>> = (!shards.is_empty())
        .then(|| Arc::new(ShardedNode::new("memory-0", shards.clone())) as Arc<dyn Node>);
    if sharded.is_some() {
        world.borrow_mut().event("node 0 has 3 shards");
    }
    let mut clients = Vec::new();
    for c in 0..shape.clients {
        let mut builder = Redlock::builder().max_ttl(MAX_TTL).defaults(
            LockOptions::new()
                .ttl(Duration::from_millis(600))
                .node_timeout(Some(NODE_TIMEOUT))
                .drift_factor(DRIFT_FACTOR)
                .acquire_timeout(Some(Duration::from_millis(800)))
                .reentry_check(false),
        );
        let seen: Vec<&MemoryNode> = if shape.quorum_of_one {
            vec![&nodes[c % nodes.len()]]
        } else {
            nodes.iter().collect()
        };
        for (i, node) in seen.into_iter().enumerate() {
            builder = match (&sharded, i) {
                (Some(sharded), 0) => builder.node(Arc::clone(sharded)),
                _ => builder.node(Arc::new(node.clone()) as Arc<dyn Node>),
            };
        }
        let redlock = builder.build().await.map_err(|e| Violation {
            seed,
            what: format!("client {c}: {e}"),
        })?;
        clients.push(redlock);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let deadline = Instant::now() + shape.run;
    let local = tokio::task::LocalSet::new();
    for (c, redlock) in clients.iter().enumerate() {
        for t in 0..shape.tasks {
            let task_rng = StdRng::seed_from_u64(rng.random());
            let (world, redlock) = (Rc::clone(&world), redlock.clone());
            local.spawn_local(client_task(c, t, redlock, world, task_rng, deadline));
        }
    }
    let fault_rng = StdRng::seed_from_u64(rng.random());
    // the faults hit servers: node 0's shards in place of node 0
    let servers: Vec<MemoryNode> = if shards.is_empty() {
        nodes.clone()
    } else {
        shards.iter().chain(&nodes[1..]).cloned().collect()
    };
    local.spawn_local(faults(servers, Rc::clone(&world), fault_rng, deadline));
    local.await;

    // Healed: every client gets every resource within the quarantine plus
    // the longest ttl (plus a margin for the queue's claims and retries).
    for node in &nodes {
        node.set_down(false);
        node.set_stalled(false);
        node.set_request_delay(Duration::ZERO);
        node.set_latency(Duration::ZERO);
        node.set_clock_rate(1.0);
    }
    if !shape.quorum_of_one {
        let bound = MAX_TTL * 2 + Duration::from_secs(1);
        let options = LockOptions::new()
            .ttl(Duration::from_millis(300))
            .acquire_timeout(Some(bound))
            .reentry_check(false);
        for (c, redlock) in clients.iter().enumerate() {
            if let Err(e) = served_after_healing(redlock, &options).await {
                world.borrow_mut().fail(format!(
                    "client {c} not served within {bound:?} after healing: {e}"
                ));
            }
        }
    }
    let world = world.borrow();
    match &world.violation {
        Some(what) => Err(Violation {
            seed,
            what: what.clone(),
        }),
        None => Ok(world.summary.clone()),
    }
}

/// One call of every primitive that waits (the mutex on both resources, a
/// permit, the rwlock's writer, the tree's root, the spinlock), each within
/// `options`' acquire timeout.
async fn served_after_healing(redlock: &Redlock, options: &LockOptions) -> Result<(), String> {
    let keys: Vec<String> = RESOURCES.iter().map(|r| (*r).to_owned()).collect();
    let guard = redlock
        .lock_with(keys, options)
        .await
        .map_err(|e| format!("mutex: {e}"))?;
    let _ = guard.release().await;
    let semaphore = Semaphore::resizable(redlock, SEMAPHORE, INITIAL_PERMITS)
        .map_err(|e| format!("semaphore: {e}"))?;
    let permit = match semaphore.acquire_with(1, options).await {
        // a majority restarted since the number was set: what the error
        // says to do, set it again
        Err(PoolError::SizeUnknown { .. }) => {
            semaphore
                .set_permits(INITIAL_PERMITS)
                .await
                .map_err(|e| format!("set_permits after healing: {e}"))?;
            semaphore.acquire_with(1, options).await
        }
        other => other,
    };
    let permit = permit.map_err(|e| format!("a permit: {e}"))?;
    let _ = permit.release().await;
    let rwlock = RwLock::new(redlock, "rw").map_err(|e| format!("rwlock: {e}"))?;
    let writing = rwlock
        .write_with(options)
        .await
        .map_err(|e| format!("the rwlock's writer: {e}"))?;
    let _ = writing.release().await;
    let tree = TreeLock::new(redlock, "t").map_err(|e| format!("tree: {e}"))?;
    let tree_options = tree
        .options()
        .ttl(options.get_ttl())
        .acquire_timeout(options.get_acquire_timeout());
    let root = tree
        .lock_with(["a"], &tree_options)
        .await
        .map_err(|e| format!("the tree's root: {e}"))?;
    let _ = root.release().await;
    let timeout = options.get_acquire_timeout().unwrap_or_default();
    let sleep = Duration::from_millis(50);
    let spin_options = SpinOptions::new()
        .tries(u32::try_from(timeout.as_millis() / sleep.as_millis()).unwrap_or(u32::MAX))
        .sleep(sleep)
        .max_hold(Expiry::After(options.get_ttl()))
        .node_timeout(Some(NODE_TIMEOUT));
    let spin = Spinlock::new(redlock, spin_options).map_err(|e| format!("spinlock: {e}"))?;
    let held = spin
        .acquire("x")
        .await
        .map_err(|e| format!("the spinlock: {e}"))?;
    let _ = held.release().await;
    Ok(())
}

/// Random faults until `deadline`; snapshots are taken now and then, and a
/// crash restores a node from its last one.
async fn faults(nodes: Vec<MemoryNode>, world: Shared, mut rng: StdRng, deadline: Instant) {
    let mut snapshots: Vec<MemorySnapshot> = nodes.iter().map(MemoryNode::snapshot).collect();
    // One history in three starts with a majority of clocks as fast as the
    // drift allowance covers: the allowance is then all that keeps leases
    // safe (the fast-clock case real servers test with faketime).
    if rng.random_bool(1.0 / 3.0) {
        for node in &nodes[..nodes.len() / 2 + 1] {
            node.set_clock_rate(FASTEST_CLOCK);
        }
        world.borrow_mut().event("fast majority");
    }
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..300))).await;
        let i = rng.random_range(0..nodes.len());
        let node = &nodes[i];
        let kind = rng.random_range(0..9);
        world.borrow_mut().event(("fault", i, kind));
        world.borrow_mut().summary.faults += 1;
        match kind {
            0 => node.set_request_delay(Duration::from_millis(rng.random_range(0..120))),
            1 => node.set_latency(Duration::from_millis(rng.random_range(0..120))),
            2 => node.set_stalled(true),
            3 => node.set_down(true),
            4 => snapshots[i] = node.snapshot(),
            5 => node.restart_from(&snapshots[i]),
            // a clock running slow, or fast within the drift allowance
            // (beyond it the lease's assumption is broken by construction)
            6 => node.set_clock_rate(rng.random_range(0.5..=FASTEST_CLOCK)),
            _ => {
                node.set_stalled(false);
                node.set_down(false);
                node.set_request_delay(Duration::ZERO);
                node.set_latency(Duration::ZERO);
                node.set_clock_rate(1.0);
            }
        }
    }
}

fn options(rng: &mut StdRng) -> LockOptions {
    LockOptions::new()
        .ttl(Duration::from_millis(
            rng.random_range(200..MAX_TTL.as_millis() as u64),
        ))
        .node_timeout(Some(NODE_TIMEOUT))
        .drift_factor(DRIFT_FACTOR)
        .acquire_timeout(Some(Duration::from_millis(rng.random_range(0..900))))
        .fencing(rng.random_bool(0.4))
        .auto_extend(rng.random_bool(0.3))
        .local_handoff(rng.random_bool(0.5))
        .fair(rng.random_bool(0.3))
        // shorter than most ttls: a grant by the waiter queue lasts at most
        // the entry's lifetime, then is topped up to the ttl
        .waiter_ttl(Duration::from_millis(rng.random_range(100..1000)))
        .reentry_check(false)
}

/// The longest a lock call may take: its acquire timeout, a round, the
/// undo and the fence write-back (each bounded by the node timeout), and
/// a pause.
fn call_bound(options: &LockOptions) -> Duration {
    options.get_acquire_timeout().unwrap_or_default() + NODE_TIMEOUT * 4 + options.get_ttl() / 3
}

/// Fails the history when a call that started at `asked` took longer than
/// `bound`.
fn check_took(world: &Shared, client: usize, what: &str, asked: Instant, bound: Duration) {
    let took = asked.elapsed();
    if took > bound {
        world.borrow_mut().fail(format!(
            "client {client}: {what} took {took:?} (bound {bound:?})"
        ));
    }
}

/// The longest a spinlock's `acquire` may take: each of its tries a round
/// and its undo, then its sleep.
fn spin_bound(options: &SpinOptions) -> Duration {
    (NODE_TIMEOUT * 2 + options.get_sleep() * 2) * options.get_tries()
}

async fn client_task(
    client: usize,
    task: usize,
    redlock: Redlock,
    world: Shared,
    mut rng: StdRng,
    deadline: Instant,
) {
    let semaphore = Semaphore::resizable(&redlock, SEMAPHORE, INITIAL_PERMITS).ok();
    let others = Others::new(&redlock);
    // Bounded in steps as well as in time: a step that fails at once (a
    // broken quorum, say) must not spin without the clock moving.
    for _ in 0..MAX_STEPS {
        if Instant::now() >= deadline || world.borrow().violation.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        match rng.random_range(0..16) {
            0..=5 => mutex_step(client, &redlock, &world, &mut rng).await,
            6..=7 => {
                if let Some(semaphore) = &semaphore {
                    permit_step(client, semaphore, &world, &mut rng).await;
                }
            }
            8 => {
                if let Some(semaphore) = &semaphore {
                    resize_step(client, semaphore, &world, &mut rng).await;
                }
            }
            9..=10 => rwlock_step(client, &others, &world, &mut rng).await,
            11..=12 => tree_step(client, &others, &world, &mut rng).await,
            13 => spin_step(client, &others, &world, &mut rng).await,
            _ => latch_step(client, &others, &world, &mut rng).await,
        }
        world.borrow_mut().event(("step", client, task));
    }
}

/// Lock (maybe cancelled midway), hold a while with extensions (some
/// shorter, some cancelled), then release or drop.
async fn mutex_step(client: usize, redlock: &Redlock, world: &Shared, rng: &mut StdRng) {
    let options = options(rng);
    let resources: Vec<String> = match rng.random_range(0..3) {
        0 => vec![RESOURCES[0].into()],
        1 => vec![RESOURCES[1].into()],
        _ => RESOURCES.iter().map(|r| (*r).to_owned()).collect(),
    };
    let asked = Instant::now();
    let attempt = redlock.lock_with(resources.clone(), &options);
    let guard = if rng.random_bool(0.2) {
        let cancel_after = Duration::from_millis(rng.random_range(0..200));
        match tokio::time::timeout(cancel_after, attempt).await {
            Ok(result) => result,
            Err(_) => return, // cancelled
        }
    } else {
        attempt.await
    };
    check_took(world, client, "a lock call", asked, call_bound(&options));
    let Ok(mut guard) = guard else { return };
    let id = world
        .borrow_mut()
        .granted(client, resources.clone(), guard.remaining());
    if let Some(fence) = guard.lease().fence() {
        world
            .borrow_mut()
            .event(("fence", client, &resources, fence));
        world.borrow_mut().fenced(&resources, fence);
    }
    for _ in 0..rng.random_range(0..4) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        world.borrow_mut().update(id, guard.remaining());
        let ttl = Duration::from_millis(rng.random_range(50..MAX_TTL.as_millis() as u64));
        if rng.random_bool(0.3) {
            let cancel_after = Duration::from_millis(rng.random_range(0..80));
            let _ = tokio::time::timeout(cancel_after, guard.extend(ttl)).await;
        } else {
            let _ = guard.extend(ttl).await;
        }
        world.borrow_mut().update(id, guard.remaining());
    }
    finish(guard, id, world, rng).await;
}

async fn finish(guard: LockGuard, id: u64, world: &Shared, rng: &mut StdRng) {
    world.borrow_mut().update(id, guard.remaining());
    // the hold ends when its holder lets go: before the release is sent
    world.borrow_mut().ended(id);
    if rng.random_bool(0.7) {
        let _ = guard.release().await;
    } else {
        drop(guard);
    }
}

/// Take a permit, hold it, maybe extend or release it by its id (as
/// another process would), else release it.
async fn permit_step(client: usize, semaphore: &Semaphore, world: &Shared, rng: &mut StdRng) {
    let options = options(rng).fencing(false).fair(false);
    let (sets_before, running_before, floor) = {
        let w = world.borrow();
        let floor = if w.set_failed { usize::MAX } else { w.permits };
        (w.sets_started, w.sets_running, floor)
    };
    world
        .borrow_mut()
        .event(("permit asked", client, sets_before, running_before, floor));
    // k of n: one permit, or two at once
    let k = if rng.random_bool(0.25) { 2 } else { 1 };
    let asked = Instant::now();
    let granted = semaphore.acquire_with(k, &options).await;
    check_took(world, client, "a permit call", asked, call_bound(&options));
    let Ok(mut permit) = granted else { return };
    let slots = permit.slots().to_vec();
    world.borrow_mut().event(("permit", client, &slots));
    let slot = slots.iter().copied().max().unwrap_or_default();
    {
        let mut w = world.borrow_mut();
        if running_before == 0 && w.sets_started == sets_before && slot >= floor {
            let what =
                format!("client {client} granted slot {slot} after set_permits({floor}) returned");
            w.fail(what);
        }
        // A call that started before the set (a waiter) may still not be
        // granted beyond it by a round that started after it returned
        // (strictly after: at the same instant the round may have gone out
        // first).
        let round_started = permit
            .leases()
            .iter()
            .map(|lease| lease.started())
            .min()
            .unwrap_or_else(Instant::now);
        if let Some((returned, sets)) = w.set_returned {
            if !w.set_failed
                && w.sets_started == sets
                && round_started > returned
                && slot >= w.permits
            {
                let what = format!(
                    "client {client} granted slot {slot} by a round that started after set_permits({}) returned",
                    w.permits
                );
                w.fail(what);
            }
        }
    }
    let resources = slots.iter().map(|s| format!("{SEMAPHORE}/{s}")).collect();
    let id = world
        .borrow_mut()
        .granted(client, resources, permit.remaining());
    tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
    world.borrow_mut().update(id, permit.remaining());
    if rng.random_bool(0.3) {
        let ttl = Duration::from_millis(rng.random_range(50..MAX_TTL.as_millis() as u64));
        let _ = permit.extend(ttl).await;
        world.borrow_mut().update(id, permit.remaining());
    }
    if rng.random_bool(0.3) {
        // someone else may extend (shorter or longer) or release it by its id
        world.borrow_mut().permit_ids.extend(permit.permit_ids());
    }
    world.borrow_mut().update(id, permit.remaining());
    world.borrow_mut().ended(id);
    let _ = permit.release().await;
}

/// Resize the semaphore, or act on a permit id another task handed out.
async fn resize_step(client: usize, semaphore: &Semaphore, world: &Shared, rng: &mut StdRng) {
    if rng.random_bool(0.3) {
        let id = world.borrow_mut().permit_ids.pop();
        if let Some(id) = id {
            if rng.random_bool(0.5) {
                let ttl = Duration::from_millis(rng.random_range(50..MAX_TTL.as_millis() as u64));
                let _ = semaphore.extend_permit(&id, ttl).await;
            } else {
                let _ = semaphore.release_permit(&id).await;
            }
            return;
        }
    }
    let permits = rng.random_range(1..=4);
    let (started_before, running_before) = {
        let mut w = world.borrow_mut();
        w.sets_started += 1;
        w.sets_running += 1;
        (w.sets_started, w.sets_running)
    };
    let result = semaphore.set_permits(permits).await;
    let mut w = world.borrow_mut();
    w.sets_running -= 1;
    w.event(("set", client, permits, result.is_ok()));
    // Sets that overlap are linearized in the order they took effect on the
    // nodes, not the order they returned: the floor is known again only
    // after a set that ran alone.
    let alone = running_before == 1 && w.sets_started == started_before && w.sets_running == 0;
    if result.is_ok() && alone {
        w.permits = permits;
        w.set_failed = false;
        w.set_returned = Some((Instant::now(), w.sets_started));
    } else {
        w.set_failed = true;
    }
}

/// The other primitives of one client.
struct Others {
    rwlock: Option<RwLock>,
    tree: Option<TreeLock>,
    /// The longest a tree call may take, but for its ttl's share.
    tree_bound: Duration,
    spin: Option<Spinlock>,
    spin_bound: Duration,
    latch: Option<Latch>,
}

impl Others {
    fn new(redlock: &Redlock) -> Self {
        let spin_options = SpinOptions::new()
            .tries(3)
            .sleep(Duration::from_millis(50))
            .max_hold(Expiry::After(Duration::from_millis(700)))
            .node_timeout(Some(NODE_TIMEOUT))
            .drift_factor(DRIFT_FACTOR);
        Others {
            rwlock: RwLock::new(redlock, "rw").ok(),
            tree: TreeLock::new(redlock, "t").ok(),
            tree_bound: call_bound(&redlock.defaults().clone().ttl(Duration::ZERO)),
            spin_bound: spin_bound(&spin_options),
            spin: Spinlock::new(redlock, spin_options).ok(),
            latch: Latch::new(redlock, LATCH, LATCH_COUNT).ok(),
        }
    }
}

/// A reader or a writer of the rwlock, held a while (maybe extended), then
/// released or dropped.
async fn rwlock_step(client: usize, others: &Others, world: &Shared, rng: &mut StdRng) {
    let Some(rwlock) = &others.rwlock else { return };
    let options = options(rng).fair(false).local_handoff(false);
    let reader = rng.random_bool(0.5);
    let asked = Instant::now();
    let granted = if reader {
        rwlock.read_with(&options).await
    } else {
        rwlock.write_with(&options).await
    };
    check_took(world, client, "an rwlock call", asked, call_bound(&options));
    let Ok(mut guard) = granted else { return };
    let resources = vec!["rw".to_owned()];
    let id = world
        .borrow_mut()
        .granted_as(client, resources.clone(), reader, guard.remaining());
    if let Some(fence) = guard.lease().fence() {
        world.borrow_mut().fenced(&["rw-writers".to_owned()], fence);
    }
    tokio::time::sleep(Duration::from_millis(rng.random_range(0..200))).await;
    world.borrow_mut().update(id, guard.remaining());
    if rng.random_bool(0.3) {
        let ttl = Duration::from_millis(rng.random_range(50..MAX_TTL.as_millis() as u64));
        let _ = guard.extend(ttl).await;
        world.borrow_mut().update(id, guard.remaining());
    }
    world.borrow_mut().ended(id);
    if rng.random_bool(0.7) {
        let _ = guard.release().await;
    }
}

/// A node of the tree (a path of 1 to 3 segments) held a while.
async fn tree_step(client: usize, others: &Others, world: &Shared, rng: &mut StdRng) {
    let Some(tree) = &others.tree else { return };
    let paths: [&[&str]; 4] = [&["a"], &["a", "b"], &["a", "c"], &["a", "b", "d"]];
    let path = paths[rng.random_range(0..paths.len())];
    let ttl = Duration::from_millis(rng.random_range(200..MAX_TTL.as_millis() as u64));
    let asked = Instant::now();
    let granted = if rng.random_bool(0.5) {
        tree.try_lock(path, ttl).await
    } else {
        tree.lock(path, ttl).await
    };
    check_took(
        world,
        client,
        "a tree call",
        asked,
        others.tree_bound + ttl / 3,
    );
    let Ok(guard) = granted else { return };
    let resources = vec![format!("{TREE}{}", path.join("/"))];
    let id = world
        .borrow_mut()
        .granted(client, resources, guard.remaining());
    tokio::time::sleep(Duration::from_millis(rng.random_range(0..200))).await;
    world.borrow_mut().update(id, guard.remaining());
    world.borrow_mut().ended(id);
    let _ = guard.release().await;
}

/// sherlock's spinlock on one key: a few tries, a short hold.
async fn spin_step(client: usize, others: &Others, world: &Shared, rng: &mut StdRng) {
    let Some(spin) = &others.spin else { return };
    let asked = Instant::now();
    let granted = spin.acquire("x").await;
    check_took(world, client, "a spinlock call", asked, others.spin_bound);
    let Ok(guard) = granted else {
        return;
    };
    let id = world
        .borrow_mut()
        .granted(client, vec!["spin:x".to_owned()], guard.remaining());
    tokio::time::sleep(Duration::from_millis(rng.random_range(0..200))).await;
    world.borrow_mut().update(id, guard.remaining());
    world.borrow_mut().ended(id);
    let _ = guard.release().await;
}

/// Count the latch down, or wait for it: it must never open before
/// `LATCH_COUNT` count-downs were at least started.
async fn latch_step(client: usize, others: &Others, world: &Shared, rng: &mut StdRng) {
    let Some(latch) = &others.latch else { return };
    if rng.random_bool(0.4) {
        world.borrow_mut().count_downs += 1;
        let _ = latch.count_down().await;
        return;
    }
    let timeout = Duration::from_millis(rng.random_range(0..500));
    if latch.wait(timeout).await.is_ok() {
        let mut w = world.borrow_mut();
        if w.count_downs < LATCH_COUNT {
            let started = w.count_downs;
            w.fail(format!(
                "client {client}: the latch opened after {started} of {LATCH_COUNT} count-downs"
            ));
        }
        w.event(("latch open", client));
    }
}
