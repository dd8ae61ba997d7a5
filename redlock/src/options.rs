//! Lock options. Every option states its default.

use std::time::Duration;

use crate::config_error::ConfigError;
use crate::lease::drift_for;

pub use crate::lease::MAX_TTL;

/// Options for one lock call, or the defaults of a [`Redlock`](crate::Redlock).
///
/// Each option is set by a method of its own name and read by `get_` and
/// that name: the plain name is taken by the setter, so these getters keep
/// the prefix, as std's builder-style `Command::get_program` does (the
/// exception to API guideline C-GETTER). The option types of the other
/// quorate crates follow the same rule.
///
/// ```
/// use std::time::Duration;
/// use quorate_redlock::LockOptions;
///
/// let options = LockOptions::new()
///     .ttl(Duration::from_secs(5))
///     .acquire_timeout(Some(Duration::from_secs(2)))
///     .retry_delay(Duration::from_millis(20));
/// assert_eq!(options.get_ttl(), Duration::from_secs(5));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LockOptions {
    ttl: Duration,
    acquire_timeout: Option<Duration>,
    max_attempts: Option<u32>,
    retry_delay: Duration,
    retry_jitter: Duration,
    drift_factor: f64,
    node_timeout: Option<Duration>,
    auto_extend: bool,
    fencing: bool,
    local_handoff: bool,
    fair: bool,
    waiter_ttl: Duration,
    reentry_check: bool,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            ttl: Duration::from_secs(10),
            acquire_timeout: Some(Duration::from_secs(10)),
            max_attempts: None,
            retry_delay: Duration::from_millis(50),
            retry_jitter: Duration::from_millis(50),
            drift_factor: 0.01,
            node_timeout: None,
            auto_extend: false,
            fencing: false,
            local_handoff: true,
            fair: false,
            waiter_ttl: Duration::from_secs(1),
            reentry_check: true,
        }
    }
}

impl LockOptions {
    /// The defaults (see each setter).
    pub fn new() -> Self {
        Self::default()
    }

    /// How long each server keeps the keys. Default: 10 s. Must be positive,
    /// longer than the drift allowance, at most [`MAX_TTL`]. A lock the
    /// waiter queue granted starts shorter (see
    /// [`waiter_ttl`](Self::waiter_ttl)) and is extended to this once.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long `lock` keeps retrying before it returns the last failure.
    /// Default: `Some(10 s)`. `None` removes the deadline (then only
    /// [`max_attempts`](Self::max_attempts) bounds the wait; with both `None`
    /// `lock` waits until it gets the lock).
    pub fn acquire_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// The most acquisition rounds `lock` makes. Default: `None` (bounded by
    /// the acquire timeout only). `Some(1)` behaves like `try_lock`.
    pub fn max_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Retry until the lock is granted, however long it takes.
    pub fn wait_forever(self) -> Self {
        self.acquire_timeout(None).max_attempts(None)
    }

    /// The base delay between rounds of a call that does not wait in the
    /// servers' queue (one with [`max_attempts`](Self::max_attempts)), and
    /// after a round that found no quorum. Default: 50 ms. The actual delay
    /// is this plus a random jitter, and never longer than the holder's
    /// remaining ttl reported by the failed round. A queued waiter instead
    /// sleeps until its turn comes (or, at the latest, until its queue
    /// entry needs a refresh: see [`waiter_ttl`](Self::waiter_ttl)).
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// The upper bound of the uniform random jitter added to each retry
    /// delay, so that contending clients stop voting in lockstep.
    /// Default: 50 ms.
    pub fn retry_jitter(mut self, jitter: Duration) -> Self {
        self.retry_jitter = jitter;
        self
    }

    /// The clock-drift factor: drift = ttl × factor + 2 ms is subtracted from
    /// the validity. Default: 0.01. Must be finite, in `0.0..1.0`.
    pub fn drift_factor(mut self, factor: f64) -> Self {
        self.drift_factor = factor;
        self
    }

    /// How long to wait for one node's answer before counting it as timed
    /// out. Default: `None`, meaning ttl / 100 clamped to 50 ms ..= 500 ms
    /// (a stalled node never holds a call for the client library's
    /// multi-second defaults).
    pub fn node_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// Keep the lock alive until release: the Redlock's watchdog extends it
    /// by `ttl` whenever a third of the ttl has passed (batched with every
    /// other lock due in the same tick: one request per node), and reports
    /// it lost through [`LockGuard::lost`](crate::LockGuard::lost) when an
    /// extension cannot reach a majority in time. Default: `false`.
    pub fn auto_extend(mut self, on: bool) -> Self {
        self.auto_extend = on;
        self
    }

    /// Hand out a fencing token with the lease ([`Lease::fence`](crate::Lease::fence)):
    /// strictly larger than every token handed out for the same resource
    /// before, so the protected resource can reject a paused holder's late
    /// writes. Costs one more round trip per acquisition. Assumes servers
    /// keep their counters (AOF with fsync, or delayed restarts). Default:
    /// `false`.
    pub fn fencing(mut self, on: bool) -> Self {
        self.fencing = on;
        self
    }

    /// Pass the lock straight to the next task of this process that waits
    /// for exactly the same resources (also with this option on), without
    /// a round trip to the servers: they keep the keys and the token, and
    /// the next holder gets the lease with the validity it has left. Only
    /// while at least half of the next holder's ttl is left, so the lock
    /// goes back through the servers at least every half ttl; never with
    /// [`fencing`](Self::fencing) (each holder needs its own token). At
    /// most 3 grants in a row when the servers had queued a waiter of
    /// another process ahead, 32 otherwise, so other processes are not
    /// starved; never past a [`fair`](Self::fair) waiter of another process
    /// the servers had queued, and to a fair waiter never past any. A guard that is *dropped* (not
    /// released with [`LockGuard::release`](crate::LockGuard::release))
    /// within those bounds keeps its lock for a few scheduler turns for the
    /// next lock call of this process on the same resources (a worker
    /// taking its next job), which then takes it with no round trip; before
    /// a process exits right after dropping guards, call
    /// [`Redlock::flush_released`](crate::Redlock::flush_released).
    /// Default: `true`.
    pub fn local_handoff(mut self, on: bool) -> Self {
        self.local_handoff = on;
        self
    }

    /// Strict first-come-first-served across processes: a free lock is
    /// granted only to the waiter queued earliest (by the start of its lock
    /// call, on the servers' clock; see the README's "Waiter queue"). The
    /// promise binds everyone else too: while a fair waiter is queued, a
    /// free lock is refused to every caller behind it, whether it queues
    /// or not ([`try_lock`](crate::Redlock::try_lock), the spinlocks) and
    /// whether it is fair or not, and a local hand-off does not pass over
    /// it (see [`local_handoff`](Self::local_handoff)).
    /// Without it (the default) waiters are still served in queue order
    /// after each release, but a lock that becomes free without a release
    /// (its holder died, or the queue's head did not come for its grant)
    /// goes to whoever asks first, and a caller that finds it free at its
    /// first round takes it. A dead head then stalls nobody; a dead fair
    /// waiter stalls every caller behind it for up to its
    /// [`waiter_ttl`](Self::waiter_ttl). Default: `false`.
    pub fn fair(mut self, on: bool) -> Self {
        self.fair = on;
        self
    }

    /// How long a waiter's entry in the servers' queues lasts without a
    /// refresh; a waiting call refreshes it every third of this. A waiter
    /// that crashed leaves the queue within this time (with `fair(true)`,
    /// it can hold up the waiters behind it that long). Default: 1 s. Must
    /// be positive.
    ///
    /// A release grants the lock to the queue's head for no longer than
    /// its entry has left to live (so a head that crashed blocks nobody for
    /// longer). A call granted that way without another round (one key, no
    /// fencing, no auto-extension) starts with at most this much validity,
    /// counted from its latest round, and is extended to its
    /// [`ttl`](Self::ttl) once, a third of the way in: as always, act on
    /// [`LockGuard::remaining`](crate::LockGuard::remaining).
    pub fn waiter_ttl(mut self, ttl: Duration) -> Self {
        self.waiter_ttl = ttl;
        self
    }

    /// Fail a lock call at once with [`Error::Reentrant`](crate::Error::Reentrant)
    /// when the calling tokio task already holds one of its resources
    /// through a guard it acquired from this client (the call would
    /// otherwise wait for itself until its acquire timeout). Turn it off
    /// when a task hands its guard to another task and then asks for the
    /// same lock again, waiting for that task to release it: the check
    /// cannot see the hand-over. Default: `true`.
    pub fn reentry_check(mut self, on: bool) -> Self {
        self.reentry_check = on;
        self
    }

    /// Whether reentrant calls fail at once.
    pub fn get_reentry_check(&self) -> bool {
        self.reentry_check
    }

    /// Whether fairness is on.
    pub fn get_fair(&self) -> bool {
        self.fair
    }

    /// The lifetime of a waiter's queue entry.
    pub fn get_waiter_ttl(&self) -> Duration {
        self.waiter_ttl
    }

    /// Whether a lock may be handed to or from the next local waiter.
    pub fn get_local_handoff(&self) -> bool {
        self.local_handoff && !self.fencing
    }

    /// Whether fencing is on.
    pub fn get_fencing(&self) -> bool {
        self.fencing
    }

    /// Whether auto-extension is on.
    pub fn get_auto_extend(&self) -> bool {
        self.auto_extend
    }

    /// The ttl.
    pub fn get_ttl(&self) -> Duration {
        self.ttl
    }

    /// The acquire deadline.
    pub fn get_acquire_timeout(&self) -> Option<Duration> {
        self.acquire_timeout
    }

    /// The attempt bound.
    pub fn get_max_attempts(&self) -> Option<u32> {
        self.max_attempts
    }

    /// The base retry delay.
    pub fn get_retry_delay(&self) -> Duration {
        self.retry_delay
    }

    /// The retry jitter bound.
    pub fn get_retry_jitter(&self) -> Duration {
        self.retry_jitter
    }

    /// The drift factor.
    pub fn get_drift_factor(&self) -> f64 {
        self.drift_factor
    }

    /// The per-node timeout in force: the one set, or the default derived
    /// from the ttl.
    pub fn effective_node_timeout(&self) -> Duration {
        self.node_timeout.unwrap_or_else(|| {
            (self.ttl / 100).clamp(Duration::from_millis(50), Duration::from_millis(500))
        })
    }

    /// Checks every option; the lock calls run this before sending anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_ttl(self.ttl, self.drift_factor)?;
        if self.node_timeout == Some(Duration::ZERO) {
            return Err(ConfigError::ZeroNodeTimeout);
        }
        if self.waiter_ttl.is_zero() || self.waiter_ttl > MAX_TTL {
            return Err(ConfigError::BadWaiterTtl(self.waiter_ttl));
        }
        Ok(())
    }
}

/// Checks a ttl against the drift it implies.
pub(crate) fn validate_ttl(ttl: Duration, drift_factor: f64) -> Result<(), ConfigError> {
    if !drift_factor.is_finite() || !(0.0..1.0).contains(&drift_factor) {
        return Err(ConfigError::BadDriftFactor(drift_factor));
    }
    if ttl.is_zero() {
        return Err(ConfigError::ZeroTtl);
    }
    if ttl > MAX_TTL {
        return Err(ConfigError::TtlTooLong { ttl, max: MAX_TTL });
    }
    let drift = drift_for(ttl, drift_factor);
    if ttl <= drift {
        return Err(ConfigError::TtlTooShort { ttl, drift });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_documented_values() {
        let o = LockOptions::default();
        assert_eq!(o.get_ttl(), Duration::from_secs(10));
        assert_eq!(o.get_acquire_timeout(), Some(Duration::from_secs(10)));
        assert_eq!(o.get_max_attempts(), None);
        assert_eq!(o.get_retry_delay(), Duration::from_millis(50));
        assert_eq!(o.get_retry_jitter(), Duration::from_millis(50));
        assert_eq!(o.get_drift_factor(), 0.01);
        assert_eq!(o.effective_node_timeout(), Duration::from_millis(100));
        assert!(o.validate().is_ok());
    }

    #[test]
    fn node_timeout_default_is_clamped() {
        let short = LockOptions::new().ttl(Duration::from_millis(100));
        assert_eq!(short.effective_node_timeout(), Duration::from_millis(50));
        let long = LockOptions::new().ttl(Duration::from_secs(600));
        assert_eq!(long.effective_node_timeout(), Duration::from_millis(500));
    }

    #[test]
    fn bad_values_are_typed_errors() {
        let base = LockOptions::new();
        assert_eq!(
            base.clone().ttl(Duration::ZERO).validate(),
            Err(ConfigError::ZeroTtl)
        );
        assert!(matches!(
            base.clone().ttl(Duration::from_millis(2)).validate(),
            Err(ConfigError::TtlTooShort { .. })
        ));
        assert!(matches!(
            base.clone().ttl(Duration::MAX).validate(),
            Err(ConfigError::TtlTooLong { .. })
        ));
        for f in [f64::NAN, -0.1, 1.0, f64::INFINITY] {
            assert!(matches!(
                base.clone().drift_factor(f).validate(),
                Err(ConfigError::BadDriftFactor(_))
            ));
        }
        assert_eq!(
            base.node_timeout(Some(Duration::ZERO)).validate(),
            Err(ConfigError::ZeroNodeTimeout)
        );
    }

    #[test]
    fn smallest_workable_ttl_is_accepted() {
        // drift for 3 ms = 2.03 ms, so 3 ms leaves ~1 ms of validity
        assert!(validate_ttl(Duration::from_millis(3), 0.01).is_ok());
    }
}
