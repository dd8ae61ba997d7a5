//! The library's two sources of nondeterminism, random choices and the
//! wall clock: the thread's CSPRNG and the system clock, or, for a
//! deterministic simulation that replays a history from its seed, a seeded
//! generator and tokio's (paused) clock on the current thread
//! ([`seed_thread`]).

use std::cell::{Cell, RefCell};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

thread_local! {
    static SEEDED: RefCell<Option<StdRng>> = const { RefCell::new(None) };
    /// While seeded: the tokio instant the wall clock was first read at.
    static CLOCK_ANCHOR: Cell<Option<tokio::time::Instant>> = const { Cell::new(None) };
}

/// The wall clock a seeded thread reads at its first reading.
const SEEDED_EPOCH: Duration = Duration::from_secs(1_700_000_000);

/// Makes every random choice of the quorate crates made on the current
/// thread (tokens, retry jitter, the memory backend's shuffles) come from a
/// generator seeded with `seed`, and the wall clock they read (queue
/// tickets, semaphore epochs) follow tokio's clock, until
/// [`unseed_thread`]; for a single-threaded simulation that must replay
/// exactly.
///
/// Tokens then become predictable: never call this outside tests.
pub fn seed_thread(seed: u64) {
    SEEDED.with(|s| *s.borrow_mut() = Some(StdRng::seed_from_u64(seed)));
    CLOCK_ANCHOR.with(|a| a.set(None));
}

/// Back to the thread's CSPRNG and the system clock.
pub fn unseed_thread() {
    SEEDED.with(|s| *s.borrow_mut() = None);
    CLOCK_ANCHOR.with(|a| a.set(None));
}

/// The time since the Unix epoch: the system clock, or on a seeded thread
/// a fixed start plus tokio's time since the first reading.
pub fn wall_clock() -> Duration {
    let seeded = SEEDED.with(|s| s.borrow().is_some());
    if !seeded {
        return SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
    }
    let now = tokio::time::Instant::now();
    let anchor = CLOCK_ANCHOR.with(|a| {
        let anchor = a.get().unwrap_or(now);
        a.set(Some(anchor));
        anchor
    });
    SEEDED_EPOCH + now.saturating_duration_since(anchor)
}

/// Runs `f` with the current thread's generator (seeded or not): every
/// quorate crate draws its random choices through here.
pub fn with_rng<T>(f: impl FnOnce(&mut dyn RngCore) -> T) -> T {
    SEEDED.with(|s| match s.borrow_mut().as_mut() {
        Some(seeded) => f(seeded),
        None => f(&mut rand::rng()),
    })
}

/// A random value of a type the standard distribution covers.
pub(crate) fn random<T>() -> T
where
    rand::distr::StandardUniform: rand::distr::Distribution<T>,
{
    with_rng(|rng| rng.random())
}
