//! The rows of the fault matrix: each primitive as "take it, hold it, let it
//! go", reporting what a caller saw (when it held what, with which fence).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorate_pool::{Pool, RateLimit, Requirement, Semaphore};
use quorate_redlock::{LockOptions, Redlock};
use quorate_spinlock::{Expiry, SpinOptions, Spinlock};
use quorate_testkit::HoldLog;
use quorate_tree::TreeLock;

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One hold as the caller saw it: from the grant to the release, cut at the
/// end of its validity (a lease that ran out is not held any more).
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub resource: String,
    pub start: Instant,
    pub end: Instant,
    pub fence: Option<u64>,
}

/// The ttl of every lease in the matrix, and how long one is held.
pub(crate) const TTL: Duration = Duration::from_millis(1000);
pub(crate) const HOLD: Duration = Duration::from_millis(20);

/// The rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Row {
    Mutex,
    Fenced,
    AutoExtended,
    MultiResource,
    PoolTwoOfThree,
    Semaphore,
    RateLimit,
    Tree,
    Spinlock,
}

pub(crate) const ROWS: [Row; 9] = [
    Row::Mutex,
    Row::Fenced,
    Row::AutoExtended,
    Row::MultiResource,
    Row::PoolTwoOfThree,
    Row::Semaphore,
    Row::RateLimit,
    Row::Tree,
    Row::Spinlock,
];

/// The rate limit's figures: at most 5 grants in any 500 ms.
pub(crate) const RATE: (usize, Duration) = (5, Duration::from_millis(500));

impl Row {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Row::Mutex => "mutex",
            Row::Fenced => "fenced mutex",
            Row::AutoExtended => "auto-extended mutex (hold 1.5 ttl)",
            Row::MultiResource => "multi-resource mutex",
            Row::PoolTwoOfThree => "pool, 2 of 3 devices",
            Row::Semaphore => "semaphore, 2 permits",
            Row::RateLimit => "rate limit, 5 per 500 ms",
            Row::Tree => "tree (a, a/b, a/c)",
            Row::Spinlock => "spinlock",
        }
    }

    /// How many holders one resource may have at once.
    pub(crate) fn capacity(self) -> usize {
        match self {
            Row::Semaphore => 2,
            _ => 1,
        }
    }

    /// Whether two resources of this row exclude each other.
    pub(crate) fn conflict(self, a: &str, b: &str) -> bool {
        match self {
            Row::Tree => {
                let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
                long == short || long.starts_with(&format!("{short}/"))
            }
            _ => a == b,
        }
    }
}

/// A client of one row's primitive, on its own Redlock.
pub(crate) struct Client {
    row: Row,
    redlock: Redlock,
    pool: Option<Pool>,
    semaphore: Option<Semaphore>,
    rate: Option<RateLimit>,
    tree: Option<TreeLock>,
    spin: Option<Spinlock>,
    turn: Arc<AtomicU64>,
}

fn options() -> LockOptions {
    LockOptions::new()
        .ttl(TTL)
        .acquire_timeout(Some(Duration::from_secs(2)))
}

impl Client {
    pub(crate) fn new(row: Row, redlock: Redlock) -> Client {
        let mut client = Client {
            row,
            redlock: redlock.clone(),
            pool: None,
            semaphore: None,
            rate: None,
            tree: None,
            spin: None,
            turn: Arc::default(),
        };
        match row {
            Row::PoolTwoOfThree => client.pool = Pool::new(&redlock, "devices").ok(),
            Row::Semaphore => client.semaphore = Semaphore::new(&redlock, "sem", 2).ok(),
            Row::RateLimit => {
                client.rate = RateLimit::new(&redlock, "rate", RATE.0, RATE.1)
                    .ok()
                    .map(|r| r.acquire_timeout(Some(Duration::from_secs(2))));
            }
            Row::Tree => client.tree = TreeLock::new(&redlock, "matrix").ok(),
            Row::Spinlock => {
                let spin = SpinOptions::new()
                    .max_hold(Expiry::After(TTL))
                    .tries(40)
                    .sleep(Duration::from_millis(50));
                client.spin = Spinlock::new(&redlock, spin).ok();
            }
            _ => {}
        }
        client
    }

    /// Takes the primitive once, holds it, lets it go.
    pub(crate) fn once(&self) -> BoxFuture<Result<Vec<Record>, String>> {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let redlock = self.redlock.clone();
        match self.row {
            Row::Mutex | Row::Fenced | Row::AutoExtended | Row::MultiResource => {
                let row = self.row;
                Box::pin(async move {
                    let mut options = options();
                    let mut hold = HOLD;
                    let resources: Vec<&str> = match row {
                        Row::MultiResource if turn.is_multiple_of(2) => vec!["a", "b"],
                        Row::MultiResource => vec!["b", "c"],
                        _ => vec!["m"],
                    };
                    if row == Row::Fenced {
                        options = options.fencing(true);
                    }
                    if row == Row::AutoExtended {
                        options = options.ttl(Duration::from_millis(300)).auto_extend(true);
                        hold = Duration::from_millis(450);
                    }
                    let guard = redlock
                        .lock_with(resources.clone(), &options)
                        .await
                        .map_err(|e| e.to_string())?;
                    let start = Instant::now();
                    let valid_until = start + guard.remaining();
                    let fence = guard.lease().fence();
                    let end = tokio::select! {
                        () = tokio::time::sleep(hold) => Instant::now(),
                        _ = guard.lost(), if row == Row::AutoExtended => Instant::now(),
                    };
                    // a lease that ran out ended then, whatever the caller did
                    // (an auto-extended one is renewed: its end is the lost signal)
                    let end = if row == Row::AutoExtended {
                        end
                    } else {
                        end.min(valid_until)
                    };
                    let _ = guard.release().await;
                    Ok(held(
                        resources.into_iter().map(str::to_owned),
                        (start, end),
                        fence,
                    ))
                })
            }
            Row::PoolTwoOfThree => {
                let pool = self.pool.clone().expect("pool");
                Box::pin(async move {
                    let devices = ["d0", "d1", "d2"];
                    let need = Requirement::need(2, devices, |d| (*d).to_owned());
                    let grant = pool
                        .acquire_with(vec![need], &options())
                        .await
                        .map_err(|e| e.to_string())?;
                    let span = hold(grant.remaining()).await;
                    let records = held(grant.keys(0).iter().cloned(), span, None);
                    let _ = grant.release().await;
                    Ok(records)
                })
            }
            Row::Semaphore => {
                let semaphore = self.semaphore.clone().expect("semaphore");
                Box::pin(async move {
                    let permit = semaphore
                        .acquire_with(1, &options())
                        .await
                        .map_err(|e| e.to_string())?;
                    let span = hold(permit.remaining()).await;
                    let _ = permit.release().await;
                    Ok(held(["sem".to_owned()], span, None))
                })
            }
            Row::RateLimit => {
                let rate = self.rate.clone().expect("rate limit");
                Box::pin(async move {
                    rate.acquire().await.map_err(|e| e.to_string())?;
                    let at = Instant::now();
                    Ok(held(["rate".to_owned()], (at, at), None))
                })
            }
            Row::Tree => {
                let tree = self.tree.clone().expect("tree");
                Box::pin(async move {
                    let path: &[&str] = match turn % 3 {
                        0 => &["a"],
                        1 => &["a", "b"],
                        _ => &["a", "c"],
                    };
                    let options = tree
                        .options()
                        .ttl(TTL)
                        .acquire_timeout(Some(Duration::from_secs(2)));
                    let guard = tree
                        .lock_with(path.to_vec(), &options)
                        .await
                        .map_err(|e| e.to_string())?;
                    let span = hold(guard.remaining()).await;
                    let _ = guard.release().await;
                    Ok(held([path.join("/")], span, None))
                })
            }
            Row::Spinlock => {
                let spin = self.spin.clone().expect("spinlock");
                Box::pin(async move {
                    let guard = spin.acquire("s").await.map_err(|e| e.to_string())?;
                    let span = hold(guard.remaining()).await;
                    let _ = guard.release().await;
                    Ok(held(["s".to_owned()], span, None))
                })
            }
        }
    }
}

/// Holds for [`HOLD`] from now, cut at the end of a validity of
/// `remaining`: the hold's start and end.
async fn hold(remaining: Duration) -> (Instant, Instant) {
    let start = Instant::now();
    let valid_until = start + remaining;
    tokio::time::sleep(HOLD).await;
    (start, Instant::now().min(valid_until))
}

/// One record per resource held over `span`.
fn held(
    resources: impl IntoIterator<Item = String>,
    (start, end): (Instant, Instant),
    fence: Option<u64>,
) -> Vec<Record> {
    resources
        .into_iter()
        .map(|resource| Record {
            resource,
            start,
            end,
            fence,
        })
        .collect()
}

/// Holds that began while `capacity` conflicting holds were still going
/// (the test kit's counter, on these records).
pub(crate) fn overlaps(row: Row, records: &[Record]) -> usize {
    let log = HoldLog::new();
    for r in records {
        log.record(&r.resource, 0, r.start, r.end);
    }
    log.count_overlaps_by(row.capacity(), |a, b| row.conflict(a, b))
}

/// Grants beyond the rate limit: grants that are the (limit+1)-th or later
/// within one window after an earlier grant.
pub(crate) fn over_rate(records: &[Record]) -> usize {
    let mut at: Vec<Instant> = records.iter().map(|r| r.start).collect();
    at.sort();
    let (limit, window) = RATE;
    (0..at.len())
        .filter(|&i| i >= limit && at[i].duration_since(at[i - limit]) < window)
        .count()
}

/// Fences that did not grow (ordered by grant).
pub(crate) fn fences_backwards(records: &[Record]) -> usize {
    let mut sorted: Vec<&Record> = records.iter().filter(|r| r.fence.is_some()).collect();
    sorted.sort_by_key(|r| r.start);
    sorted
        .windows(2)
        .filter(|pair| pair[1].fence <= pair[0].fence)
        .count()
}
