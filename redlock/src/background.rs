//! Requests a client sends from tasks of their own: a dropped guard's
//! release, the release at the end of a linger, the undo of an abandoned
//! round, leaving the servers' waiter queues. Counted, so that
//! [`Redlock::flush_released`](crate::Redlock::flush_released) can wait for
//! them before a process exits (a task still running when the runtime ends
//! never sends its request, and the keys stay until their ttl).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::Notify;

/// The tasks of one client that are sending requests in the background.
#[derive(Debug, Default)]
pub(crate) struct Background {
    running: AtomicUsize,
    ended: Notify,
}

impl Background {
    /// Runs `work` on a task of its own, counted until it ends (or is
    /// dropped with its runtime).
    pub(crate) fn spawn(
        self: &Arc<Self>,
        handle: &Handle,
        work: impl Future<Output = ()> + Send + 'static,
    ) {
        let counted = Running::new(Arc::clone(self));
        handle.spawn(async move {
            work.await;
            drop(counted);
        });
    }

    /// Until none of the counted tasks is running. Each one's requests are
    /// bounded by their node timeouts, so this ends.
    pub(crate) async fn idle(&self) {
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            // registered before the check: an end between the two is not missed
            ended.as_mut().enable();
            if self.running.load(Ordering::Acquire) == 0 {
                return;
            }
            ended.await;
        }
    }
}

/// One counted task, for as long as it lives.
struct Running(Arc<Background>);

impl Running {
    fn new(background: Arc<Background>) -> Running {
        background.running.fetch_add(1, Ordering::AcqRel);
        Running(background)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.ended.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_every_counted_task() {
        let background = Arc::new(Background::default());
        background.idle().await; // nothing running: at once
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        background.spawn(&Handle::current(), async move {
            let _ = rx.await;
        });
        background.spawn(
            &Handle::current(),
            tokio::time::sleep(Duration::from_secs(1)),
        );
        let idle = background.idle();
        tokio::pin!(idle);
        assert!(
            tokio::time::timeout(Duration::from_secs(5), idle.as_mut())
                .await
                .is_err(),
            "idle while a task still waits"
        );
        tx.send(()).expect("task waiting");
        tokio::time::timeout(Duration::from_secs(5), idle)
            .await
            .expect("idle once both ended");
    }
}
