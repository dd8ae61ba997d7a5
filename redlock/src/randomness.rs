//! Where the library's random choices come from: the thread's CSPRNG, or,
//! for a deterministic simulation that replays a history from its seed, a
//! seeded generator on the current thread ([`seed_thread`]).

use std::cell::RefCell;

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

thread_local! {
    static SEEDED: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// Makes every random choice of this crate made on the current thread
/// (tokens, retry jitter, the memory backend's shuffles) come from a
/// generator seeded with `seed`, until [`unseed_thread`]; for a
/// single-threaded simulation that must replay exactly.
///
/// Tokens then become predictable: never call this outside tests.
pub fn seed_thread(seed: u64) {
    SEEDED.with(|s| *s.borrow_mut() = Some(StdRng::seed_from_u64(seed)));
}

/// Back to the thread's CSPRNG.
pub fn unseed_thread() {
    SEEDED.with(|s| *s.borrow_mut() = None);
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
