//! The wait/retry driver of the primitives built on this crate (pool,
//! tree): attempts until granted, the attempt limit or the acquire
//! timeout, pausing between attempts until the holders' ttls run out or a
//! release announcement wakes the waiter (see ARCHITECTURE.md, "Waiting").
//! The mutex keeps its own loop (it also waits in the servers' queues and
//! for local hand-offs) but follows the same rules through
//! [`WaitPolicy`]: `max_attempts` bounds rounds and skips the local queue,
//! `acquire_timeout` bounds the whole call, a pause never outlasts it.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::client::Redlock;
use crate::local_queue::LocalTurn;
use crate::options::LockOptions;
use crate::pause::{random_pause, SPLIT_SPREAD};
use crate::seam::ReleaseWatch;

/// The limits of one waiting call, from its [`LockOptions`].
#[derive(Clone, Debug)]
pub struct WaitPolicy {
    deadline: Option<Instant>,
    max_attempts: Option<u32>,
    node_timeout: Duration,
}

impl WaitPolicy {
    /// The limits of a call made at `called` with `options`: its deadline
    /// (`acquire_timeout` after `called`) and its attempt limit.
    pub fn new(options: &LockOptions, called: Instant) -> Self {
        WaitPolicy {
            deadline: options.get_acquire_timeout().map(|t| called + t),
            max_attempts: options.get_max_attempts(),
            node_timeout: options.effective_node_timeout(),
        }
    }

    /// When the call gives up, if ever.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the deadline has passed.
    pub fn is_past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Whether `attempts` rounds used up the attempt limit.
    pub fn attempts_spent(&self, attempts: u32) -> bool {
        self.max_attempts.is_some_and(|max| attempts >= max)
    }

    /// Whether the call waits in this process's local queue before its
    /// rounds: only when its rounds are unbounded (a call bounded in rounds,
    /// such as `try_lock` or a spinlock's tries, polls instead: a place in
    /// line is no use to it, and waiting there is not a round).
    pub fn queues_locally(&self) -> bool {
        self.max_attempts.is_none()
    }

    /// Sleeps `pause`, cut short at the deadline, or until `woken`
    /// resolves; `true` when woken.
    ///
    /// # Cancel safety
    /// Cancel safe if `woken` is.
    pub async fn pause(&self, pause: Duration, woken: impl Future<Output = ()>) -> bool {
        let wake = Instant::now() + pause;
        let until = self.deadline.map_or(wake, |d| d.min(wake));
        tokio::select! {
            biased;
            () = woken => true,
            () = tokio::time::sleep_until(until) => false,
        }
    }
}

/// What a refused attempt means for the next one.
#[derive(Debug)]
pub enum Retry {
    /// Give up now with this attempt's error (bad input, or a refusal no
    /// wait can change).
    GiveUp,
    /// Try again after `pause`, or as soon as a release of one of `watch`
    /// is announced (`None`: nothing will be released, as for rate-limit
    /// permits, which only expire).
    After {
        /// How long to wait at most.
        pause: Duration,
        /// The keys whose release announcements wake the waiter.
        watch: Option<Vec<String>>,
    },
}

/// Runs `attempt` (given the attempt's number, from 1) until it succeeds,
/// `refused` says to give up, the attempt limit is spent or the deadline
/// passed; returns the last attempt's error then.
///
/// - With `local_queue` (the keys of the request), the call first
///   waits for its turn among this process's waiters for the same keys;
///   one that runs out of time there still makes one attempt, so its error
///   carries the servers' answer.
/// - On its first refusal with keys to watch, the waiter subscribes to
///   their release announcements and retries at once (a release may have
///   come between the attempt and the subscription); when the keys to watch
///   change (another holder blocks it), it subscribes to those instead.
/// - Woken by an announcement, it waits a random moment of up to
///   [`SPLIT_SPREAD`] first: every waiter of those keys heard it.
///
/// # Cancel safety
/// Cancel safe if `attempt`'s futures are (each primitive's attempt undoes
/// its own round when dropped).
///
/// ```no_run
/// # async fn demo(redlock: quorate_redlock::Redlock) -> Result<(), String> {
/// use std::time::Duration;
/// use quorate_redlock::LockOptions;
/// use quorate_redlock::raw::{retry, Retry, WaitPolicy};
///
/// let options = LockOptions::new().acquire_timeout(Some(Duration::from_secs(2)));
/// let policy = WaitPolicy::new(&options, tokio::time::Instant::now());
/// let granted: Result<u32, String> = retry(
///     &redlock,
///     &policy,
///     None,
///     |attempt| async move { if attempt < 3 { Err("busy".to_owned()) } else { Ok(attempt) } },
///     |_error| Retry::After { pause: Duration::from_millis(10), watch: None },
/// )
/// .await;
/// assert_eq!(granted, Ok(3));
/// # Ok(()) }
/// ```
pub async fn retry<T, E, F, Fut>(
    redlock: &Redlock,
    policy: &WaitPolicy,
    local_queue: Option<&[String]>,
    mut attempt: F,
    mut refused: impl FnMut(&E) -> Retry,
) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let _turn: Option<LocalTurn> = match local_queue.filter(|_| policy.queues_locally()) {
        None => None,
        Some(keys) => {
            let turn = redlock.local_turn(keys);
            match policy.deadline {
                // out of time in the queue: one attempt all the same
                Some(d) => tokio::time::timeout_at(d, turn).await.ok(),
                None => Some(turn.await),
            }
        }
    };
    let mut attempts = 0u32;
    let mut watch: Option<(Vec<String>, ReleaseWatch)> = None;
    loop {
        attempts = attempts.saturating_add(1);
        if let Some((_, watch)) = watch.as_mut() {
            watch.mark_seen();
        }
        let error = match attempt(attempts).await {
            Ok(granted) => return Ok(granted),
            Err(error) => error,
        };
        if policy.attempts_spent(attempts) || policy.is_past_deadline() {
            return Err(error);
        }
        let Retry::After {
            pause,
            watch: watch_keys,
        } = refused(&error)
        else {
            return Err(error);
        };
        if let Some(keys) = watch_keys {
            if watch.as_ref().is_none_or(|(watched, _)| *watched != keys) {
                let first = watch.is_none();
                let heard = redlock.watch_releases(&keys, policy.node_timeout).await;
                watch = Some((keys, heard));
                if policy.is_past_deadline() {
                    return Err(error);
                }
                if first {
                    continue;
                }
            }
        }
        let woken = async {
            match watch.as_mut() {
                Some((_, watch)) => {
                    watch.released().await;
                }
                None => std::future::pending().await,
            }
        };
        if policy.pause(pause, woken).await {
            // Every waiter of these keys heard it: spread their retries.
            tokio::time::sleep(random_pause(SPLIT_SPREAD)).await;
        }
        if policy.is_past_deadline() {
            return Err(error);
        }
    }
}
