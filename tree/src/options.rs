//! Options of one tree lock call. Every option states its default.

use std::time::Duration;

use quorate_redlock::LockOptions;

use crate::error::TreeError;

/// The longest owner id accepted, in bytes.
pub const MAX_OWNER_LEN: usize = 256;

/// Options for [`TreeLock::lock_with`](crate::TreeLock::lock_with) and
/// [`run_with`](crate::TreeLock::run_with).
///
/// [`TreeLockOptions::new`] starts from quorate-redlock's defaults;
/// [`TreeLock::options`](crate::TreeLock::options) from those of the
/// tree's Redlock. mutextree's `expire` is [`ttl`](Self::ttl), its
/// `timeout` is [`acquire_timeout`](Self::acquire_timeout) (its `timeout=0`,
/// one try, is [`try_lock`](crate::TreeLock::try_lock) or
/// `max_attempts(Some(1))`), its `id` is [`owner`](Self::owner).
///
/// ```
/// use std::time::Duration;
/// use quorate_tree::TreeLockOptions;
/// let options = TreeLockOptions::new()
///     .ttl(Duration::from_secs(30))
///     .acquire_timeout(Some(Duration::from_secs(2)))
///     .owner("worker-7");
/// assert_eq!(options.get_owner(), Some("worker-7"));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TreeLockOptions {
    lock: LockOptions,
    owner: Option<String>,
}

impl TreeLockOptions {
    /// quorate-redlock's defaults (see each setter), no owner.
    pub fn new() -> Self {
        Self::default()
    }

    /// `lock`'s options, minus fencing (tree locks hand out no fence).
    pub(crate) fn from_lock_options(lock: LockOptions) -> Self {
        TreeLockOptions {
            lock: lock.fencing(false),
            owner: None,
        }
    }

    /// How long each server keeps the node locked. Default: 10 s. Must be
    /// positive, longer than the drift allowance, at most
    /// [`MAX_TTL`](quorate_redlock::MAX_TTL).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.lock = self.lock.ttl(ttl);
        self
    }

    /// How long `lock` keeps retrying while the node is blocked. Default:
    /// `Some(10 s)`. `None` removes the deadline.
    pub fn acquire_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.lock = self.lock.acquire_timeout(timeout);
        self
    }

    /// The most rounds `lock` makes. Default: `None` (bounded by the acquire
    /// timeout only). `Some(1)` is one try.
    pub fn max_attempts(mut self, attempts: Option<u32>) -> Self {
        self.lock = self.lock.max_attempts(attempts);
        self
    }

    /// Retry until the node is locked, however long it takes.
    pub fn wait_forever(mut self) -> Self {
        self.lock = self.lock.wait_forever();
        self
    }

    /// The base delay between rounds. Default: 50 ms, plus the jitter, and
    /// never longer than the blocking lock's remaining ttl.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.lock = self.lock.retry_delay(delay);
        self
    }

    /// The upper bound of the random jitter added to each retry delay.
    /// Default: 50 ms.
    pub fn retry_jitter(mut self, jitter: Duration) -> Self {
        self.lock = self.lock.retry_jitter(jitter);
        self
    }

    /// The clock-drift factor. Default: 0.01.
    pub fn drift_factor(mut self, factor: f64) -> Self {
        self.lock = self.lock.drift_factor(factor);
        self
    }

    /// The per-node timeout. Default: `None`, meaning ttl / 100 clamped to
    /// 50 ms ..= 500 ms.
    pub fn node_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.lock = self.lock.node_timeout(timeout);
        self
    }

    /// Keep the node locked until release (quorate-redlock's watchdog), and
    /// report a loss through [`TreeGuard::lost`](crate::TreeGuard::lost).
    /// Default: `false`.
    pub fn auto_extend(mut self, on: bool) -> Self {
        self.lock = self.lock.auto_extend(on);
        self
    }

    /// Who holds the lock (mutextree's `id`): shown to the callers it blocks
    /// ([`Conflict::owner`](crate::Conflict::owner)) and on the guard.
    /// Default: `None`. 1 to [`MAX_OWNER_LEN`] bytes.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// The owner id.
    pub fn get_owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// The underlying lock options (ttl, timeouts, retries, auto-extension).
    pub fn lock_options(&self) -> &LockOptions {
        &self.lock
    }

    /// Checks every option; the lock calls run this before sending anything.
    pub fn validate(&self) -> Result<(), TreeError> {
        self.lock.validate().map_err(quorate_redlock::Error::from)?;
        if let Some(owner) = &self.owner {
            if owner.is_empty() || owner.len() > MAX_OWNER_LEN {
                return Err(TreeError::InvalidOwner {
                    len: owner.len(),
                    max: MAX_OWNER_LEN,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_redlocks() {
        let o = TreeLockOptions::new();
        assert_eq!(o.lock_options(), &LockOptions::default());
        assert_eq!(o.get_owner(), None);
        assert!(o.validate().is_ok());
    }

    #[test]
    fn setters_reach_the_lock_options() {
        let o = TreeLockOptions::new()
            .ttl(Duration::from_secs(3))
            .acquire_timeout(None)
            .max_attempts(Some(2))
            .retry_delay(Duration::from_millis(7))
            .retry_jitter(Duration::ZERO)
            .drift_factor(0.02)
            .node_timeout(Some(Duration::from_millis(80)))
            .auto_extend(true);
        let l = o.lock_options();
        assert_eq!(l.get_ttl(), Duration::from_secs(3));
        assert_eq!(l.get_acquire_timeout(), None);
        assert_eq!(l.get_max_attempts(), Some(2));
        assert_eq!(l.get_retry_delay(), Duration::from_millis(7));
        assert_eq!(l.get_retry_jitter(), Duration::ZERO);
        assert_eq!(l.get_drift_factor(), 0.02);
        assert_eq!(l.effective_node_timeout(), Duration::from_millis(80));
        assert!(l.get_auto_extend());
        let forever = o.wait_forever().lock_options().clone();
        assert_eq!(forever.get_max_attempts(), None);
        assert_eq!(forever.get_acquire_timeout(), None);
        assert!(
            !TreeLockOptions::from_lock_options(LockOptions::new().fencing(true))
                .lock_options()
                .get_fencing()
        );
    }

    #[test]
    fn bad_options_are_typed_errors() {
        assert!(matches!(
            TreeLockOptions::new().owner("").validate(),
            Err(TreeError::InvalidOwner { len: 0, .. })
        ));
        assert!(matches!(
            TreeLockOptions::new()
                .owner("x".repeat(MAX_OWNER_LEN + 1))
                .validate(),
            Err(TreeError::InvalidOwner { .. })
        ));
        assert!(TreeLockOptions::new()
            .owner("x".repeat(MAX_OWNER_LEN))
            .validate()
            .is_ok());
        assert!(matches!(
            TreeLockOptions::new().ttl(Duration::ZERO).validate(),
            Err(TreeError::Lock(quorate_redlock::Error::InvalidConfig(_)))
        ));
    }
}
