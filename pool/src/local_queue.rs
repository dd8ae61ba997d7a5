//! Local waiters take turns: of the tasks in one process making the same
//! request, only the head contends with other clients; the rest wait for
//! their turn. Without it every local waiter retries at each release, the
//! nodes see them in different orders, the votes split and nobody wins.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// One queue per request shape (its sorted candidate keys).
#[derive(Debug, Default)]
pub(crate) struct LocalQueues {
    queues: Mutex<HashMap<Vec<String>, Weak<tokio::sync::Mutex<()>>>>,
}

impl LocalQueues {
    /// The queue of requests for exactly `keys` (tokio's mutex is FIFO).
    pub fn queue(&self, mut keys: Vec<String>) -> Arc<tokio::sync::Mutex<()>> {
        keys.sort_unstable();
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(queue) = queues.get(&keys).and_then(Weak::upgrade) {
            return queue;
        }
        // Drop the queues nobody waits in any more.
        queues.retain(|_, q| q.strong_count() > 0);
        let queue = Arc::new(tokio::sync::Mutex::new(()));
        queues.insert(keys, Arc::downgrade(&queue));
        queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_keys_in_any_order_share_a_queue_and_unused_queues_go() {
        let queues = LocalQueues::default();
        let a = queues.queue(vec!["x".into(), "y".into()]);
        let b = queues.queue(vec!["y".into(), "x".into()]);
        assert!(Arc::ptr_eq(&a, &b));
        let c = queues.queue(vec!["z".into()]);
        assert!(!Arc::ptr_eq(&a, &c));
        drop((a, b, c));
        let _d = queues.queue(vec!["w".into()]);
        assert_eq!(queues.queues.lock().map(|q| q.len()).unwrap_or(0), 1);
    }
}
