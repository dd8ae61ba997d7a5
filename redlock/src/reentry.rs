//! Reentrancy detection. quorate's locks are not reentrant (as tokio's
//! `Mutex` is not: a task is not a thread, it can move, and an async guard
//! proves nothing about who awaits next). A task asking again for a lock
//! it already holds would wait for itself until its acquire timeout and
//! then get `Taken`; instead, the lock call fails at once with
//! [`Error::Reentrant`](crate::Error::Reentrant). Each granted lock call
//! records who made it (the tokio task, or the thread for code that is not
//! a task: the future a runtime's `block_on` drives, such as
//! `#[tokio::main]`'s body) until its guard is released or dropped; a guard
//! handed to another task still counts as its acquirer's
//! (turn the check off with
//! [`LockOptions::reentry_check`](crate::LockOptions::reentry_check) for
//! that pattern).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use std::thread::ThreadId;

use tokio::task::Id;

/// Who makes a lock call: a tokio task, or a thread driving a future
/// outside any task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    Task(Id),
    Thread(ThreadId),
}

impl Caller {
    fn current() -> Caller {
        match tokio::task::try_id() {
            Some(task) => Caller::Task(task),
            None => Caller::Thread(std::thread::current().id()),
        }
    }
}

/// The locks this client's tasks hold, by the task that acquired them.
#[derive(Debug, Default)]
pub(crate) struct TaskHolds {
    entries: Mutex<Vec<Entry>>,
    next: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    caller: Caller,
    id: u64,
    keys: Arc<[String]>,
}

/// One recorded hold; dropping it (with its guard) ends the record.
#[derive(Debug)]
pub(crate) struct TaskHold {
    holds: Arc<TaskHolds>,
    id: u64,
}

impl TaskHolds {
    /// Records that the caller holds `keys`.
    pub(crate) fn record(self: &Arc<Self>, keys: &Arc<[String]>) -> TaskHold {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().push(Entry {
            caller: Caller::current(),
            id,
            keys: Arc::clone(keys),
        });
        TaskHold {
            holds: Arc::clone(self),
            id,
        }
    }

    /// The first of `keys` that a guard acquired by the caller holds.
    pub(crate) fn held_by_this_task(&self, keys: &[String]) -> Option<String> {
        let caller = Caller::current();
        self.lock()
            .iter()
            .filter(|e| e.caller == caller)
            .find_map(|e| keys.iter().find(|k| e.keys.contains(k)).cloned())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for TaskHold {
    fn drop(&mut self) {
        self.holds.lock().retain(|e| e.id != self.id);
    }
}
