//! What code that is not async needs of a guard: a release it can run to
//! completion on a runtime of its own (see the `blocking` feature), where
//! dropping the guard would only spawn one.

use futures::future::{BoxFuture, FutureExt};

use crate::guard::LockGuard;

/// A guard whose release can be run to completion by whoever holds it:
/// quorate's guards (the mutex's, a pool's, a semaphore's, an rwlock's, a
/// tree node's) implement it, so a blocking client's `hold` can release
/// any of them on drop.
pub trait Release: Send + 'static {
    /// Releases the lock; whether it was still held is not reported (use
    /// the guard's own `release` for that).
    fn release_now(self) -> BoxFuture<'static, ()>;
}

impl Release for LockGuard {
    fn release_now(self) -> BoxFuture<'static, ()> {
        self.release().map(drop).boxed()
    }
}
