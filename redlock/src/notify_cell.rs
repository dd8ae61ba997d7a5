//! A value whose changes wake its watchers: the part of
//! `tokio::sync::watch` the library uses, built on [`Notify`] so that
//! watchers wake in a fixed order. `watch` spreads its watchers over
//! randomly chosen notifiers, so the order in which a change wakes them
//! differs from run to run, and a seeded simulation could not replay a
//! history from its seed.

use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

struct State<T> {
    value: T,
    /// Bumped by every change.
    version: u64,
    /// The cell was dropped: no change will come.
    closed: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    changed: Notify,
}

impl<T> Shared<T> {
    fn state(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The value and the right to change it; watchers see it closed once it is
/// dropped.
pub(crate) struct NotifyCell<T> {
    shared: Arc<Shared<T>>,
}

/// Sees the cell's value and waits for its changes.
pub(crate) struct CellWatcher<T> {
    shared: Arc<Shared<T>>,
    /// The version seen last.
    seen: u64,
}

/// The cell was dropped.
#[derive(Debug)]
pub(crate) struct Closed;

/// A read of the value; holds the cell's lock, so keep it short.
pub(crate) struct Ref<'a, T>(MutexGuard<'a, State<T>>);

impl<T> Deref for Ref<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0.value
    }
}

impl<T> NotifyCell<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    value,
                    version: 0,
                    closed: false,
                }),
                changed: Notify::new(),
            }),
        }
    }

    /// The current value.
    pub(crate) fn borrow(&self) -> Ref<'_, T> {
        Ref(self.shared.state())
    }

    /// Changes the value and wakes every watcher.
    pub(crate) fn send_modify(&self, change: impl FnOnce(&mut T)) {
        {
            let mut state = self.shared.state();
            change(&mut state.value);
            state.version += 1;
        }
        self.shared.changed.notify_waiters();
    }

    /// A watcher that has seen the current value.
    pub(crate) fn subscribe(&self) -> CellWatcher<T> {
        CellWatcher {
            seen: self.shared.state().version,
            shared: self.shared.clone(),
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for NotifyCell<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NotifyCell").field(&*self.borrow()).finish()
    }
}

impl<T> Drop for NotifyCell<T> {
    fn drop(&mut self) {
        self.shared.state().closed = true;
        self.shared.changed.notify_waiters();
    }
}

impl<T> CellWatcher<T> {
    /// The current value, without marking it seen.
    pub(crate) fn borrow(&self) -> Ref<'_, T> {
        Ref(self.shared.state())
    }

    /// The current value, marked seen.
    pub(crate) fn borrow_and_update(&mut self) -> Ref<'_, T> {
        let state = self.shared.state();
        self.seen = state.version;
        Ref(state)
    }

    /// Resolves once the value changed since it was last seen (and marks it
    /// seen), or with [`Closed`] once the cell is dropped.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is marked seen until it resolves.
    pub(crate) async fn changed(&mut self) -> Result<(), Closed> {
        loop {
            // Listening before looking: a change between the two is not
            // missed (a `Notified` receives `notify_waiters` from creation).
            let notified = self.shared.changed.notified();
            {
                let state = self.shared.state();
                if state.version != self.seen {
                    self.seen = state.version;
                    return Ok(());
                }
                if state.closed {
                    return Err(Closed);
                }
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_wakes_a_watcher_once() {
        let cell = NotifyCell::new(1);
        let mut watcher = cell.subscribe();
        let waiting = tokio::spawn(async move {
            watcher.changed().await.expect("the cell is alive");
            let value = *watcher.borrow();
            (value, watcher)
        });
        tokio::task::yield_now().await;
        cell.send_modify(|v| *v = 2);
        let (value, mut watcher) = waiting.await.expect("the watcher ran");
        assert_eq!(value, 2);
        // seen: the next wait lasts until the next change or the cell's end
        drop(cell);
        assert!(watcher.changed().await.is_err());
    }

    #[tokio::test]
    async fn a_change_before_the_wait_is_not_missed() {
        let cell = NotifyCell::new(0);
        let mut watcher = cell.subscribe();
        cell.send_modify(|v| *v += 1);
        watcher.changed().await.expect("the cell is alive");
        assert_eq!(*watcher.borrow_and_update(), 1);
    }
}
