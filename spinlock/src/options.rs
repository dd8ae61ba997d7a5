//! Spinlock options. Every option states its default.

use std::time::Duration;

use quorate_redlock::{LockOptions, MAX_TTL};

use crate::error::{OptionsError, SpinError};

/// How long something lasts on the servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Expires after this long (must be positive).
    After(Duration),
    /// Never expires; only where asked for explicitly.
    ///
    /// For a lock's hold time this is [`MAX_TTL`] (one year): a quorum lock
    /// key always carries a ttl, so that a crashed holder cannot block the
    /// key for good. Such a lock needs a Redlock built with
    /// `max_ttl(MAX_TTL)`, which also keeps a node that lost its data out
    /// of every vote for a year. For a stored result it is a key without
    /// expiry.
    Never,
}

/// Options of a [`Spinlock`](crate::Spinlock).
///
/// ```
/// use std::time::Duration;
/// use quorate_spinlock::{Expiry, SpinOptions};
/// let options = SpinOptions::new()
///     .tries(5)
///     .sleep(Duration::from_millis(100))
///     .max_hold(Expiry::After(Duration::from_secs(30)));
/// assert_eq!(options.get_tries(), 5);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SpinOptions {
    tries: u32,
    sleep: Duration,
    jitter: Duration,
    max_hold: Expiry,
    result_expiry: Expiry,
    fail_if_held: bool,
    node_timeout: Option<Duration>,
    drift_factor: f64,
}

impl Default for SpinOptions {
    fn default() -> Self {
        SpinOptions {
            tries: 10,
            sleep: Duration::from_millis(500),
            jitter: Duration::ZERO,
            max_hold: Expiry::After(Duration::from_secs(60)),
            result_expiry: Expiry::After(Duration::from_secs(3600)),
            fail_if_held: false,
            node_timeout: None,
            drift_factor: 0.01,
        }
    }
}

impl SpinOptions {
    /// The defaults (see each setter).
    pub fn new() -> Self {
        Self::default()
    }

    /// How many acquisition rounds an acquire makes before it gives up with
    /// [`SpinError::TriesExhausted`] (py-dspinlock's `max_spinlock_tries`).
    /// Default: 10. At least 1.
    pub fn tries(mut self, tries: u32) -> Self {
        self.tries = tries;
        self
    }

    /// The pause between tries (py-dspinlock's `spinlock_sleep_thresh`).
    /// Default: 500 ms. A release of the key wakes waiters earlier, and
    /// the pause is cut short when the holder's hold time ends sooner.
    pub fn sleep(mut self, sleep: Duration) -> Self {
        self.sleep = sleep;
        self
    }

    /// The upper bound of a uniform random extra pause added to each sleep,
    /// so that contending processes stop polling in lockstep. Default: zero
    /// (a fixed sleep, like py-dspinlock).
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// The longest a lock is held: after it, the lock frees itself on the
    /// servers even if the holder never releases it (crashed, hung, or its
    /// task was aborted). Default: 60 s (py-dspinlock's `max_block_time`).
    /// `Expiry::Never` means one year ([`MAX_TTL`]). It must not exceed the
    /// Redlock's `max_ttl` (default 60 s).
    pub fn max_hold(mut self, hold: Expiry) -> Self {
        self.max_hold = hold;
        self
    }

    /// How long a stored result of [`compute_once`](crate::Spinlock::compute_once)
    /// is kept (py-dspinlock's `expire_at_timedelta`). Default: 1 hour.
    /// `Expiry::Never` stores it without expiry.
    pub fn result_expiry(mut self, expiry: Expiry) -> Self {
        self.result_expiry = expiry;
        self
    }

    /// Fail at once with [`SpinError::Held`] when the key is held, instead
    /// of spinning (py-dspinlock's `fail_if_key_exists`). Default: `false`.
    pub fn fail_if_held(mut self, on: bool) -> Self {
        self.fail_if_held = on;
        self
    }

    /// How long to wait for one node's answer. Default: `None`, meaning
    /// redlock's default: the hold time / 100, clamped to 50 ms ..= 500 ms.
    pub fn node_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// The clock-drift factor of the lock's lease (see
    /// [`LockOptions::drift_factor`]). Default: 0.01.
    pub fn drift_factor(mut self, factor: f64) -> Self {
        self.drift_factor = factor;
        self
    }

    /// The number of tries.
    pub fn get_tries(&self) -> u32 {
        self.tries
    }

    /// The sleep between tries.
    pub fn get_sleep(&self) -> Duration {
        self.sleep
    }

    /// The jitter bound.
    pub fn get_jitter(&self) -> Duration {
        self.jitter
    }

    /// The maximum hold time.
    pub fn get_max_hold(&self) -> Expiry {
        self.max_hold
    }

    /// The expiry of stored results.
    pub fn get_result_expiry(&self) -> Expiry {
        self.result_expiry
    }

    /// Whether acquires fail at once on a held key.
    pub fn get_fail_if_held(&self) -> bool {
        self.fail_if_held
    }

    /// The hold time as a lock ttl.
    pub fn hold_ttl(&self) -> Duration {
        match self.max_hold {
            Expiry::After(ttl) => ttl,
            Expiry::Never => MAX_TTL,
        }
    }

    /// The per-node timeout in force.
    pub fn effective_node_timeout(&self) -> Duration {
        self.base_lock_options().effective_node_timeout()
    }

    /// Checks every option; every call runs this before sending anything.
    pub fn validate(&self) -> Result<(), SpinError> {
        if self.tries == 0 {
            return Err(OptionsError::ZeroTries.into());
        }
        if self.max_hold == Expiry::After(Duration::ZERO) {
            return Err(OptionsError::ZeroMaxHold.into());
        }
        if let Expiry::After(expiry) = self.result_expiry {
            if expiry < Duration::from_millis(1) {
                return Err(OptionsError::ResultExpiryTooShort(expiry).into());
            }
        }
        self.base_lock_options().validate().map_err(|e| {
            use quorate_redlock::ConfigError::{TtlTooLong, TtlTooShort, ZeroTtl};
            match e {
                ZeroTtl | TtlTooShort { .. } | TtlTooLong { .. } => OptionsError::MaxHold(e).into(),
                other => OptionsError::Lock(other).into(),
            }
        })
    }

    fn base_lock_options(&self) -> LockOptions {
        LockOptions::new()
            // as in sherlock, a second Lock for a held key is refused like
            // any other holder's (tries are bounded: nothing waits forever)
            .reentry_check(false)
            .ttl(self.hold_ttl())
            .drift_factor(self.drift_factor)
            .node_timeout(self.node_timeout)
            .retry_delay(self.sleep)
            .retry_jitter(self.jitter)
    }

    /// One spin: exactly `tries` rounds, `sleep` (+ jitter) apart, no
    /// deadline (the tries bound the wait).
    /// One round, for fail-if-held and `try_acquire`.
    pub(crate) fn single_round_options(&self) -> LockOptions {
        self.base_lock_options()
            .acquire_timeout(None)
            .max_attempts(Some(1))
    }

    /// One waiting slice of `compute_once`: rounds whenever the key is
    /// released or the holder's time runs out, for at most `sleep` + jitter.
    /// In this mode the mutex queues the callers of this process, so only
    /// one of them contends at a time.
    pub(crate) fn wait_slice_options(&self) -> LockOptions {
        self.base_lock_options()
            .max_attempts(None)
            .acquire_timeout(Some(self.sleep + self.jitter))
    }

    /// The result expiry in ms as the store script takes it ("0": none).
    pub(crate) fn result_expiry_arg(&self) -> Vec<u8> {
        match self.result_expiry {
            Expiry::After(expiry) => expiry.as_millis().max(1).to_string().into_bytes(),
            Expiry::Never => b"0".to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_values() {
        let o = SpinOptions::default();
        assert_eq!(o.get_tries(), 10);
        assert_eq!(o.get_sleep(), Duration::from_millis(500));
        assert_eq!(o.get_jitter(), Duration::ZERO);
        assert_eq!(o.get_max_hold(), Expiry::After(Duration::from_secs(60)));
        assert_eq!(
            o.get_result_expiry(),
            Expiry::After(Duration::from_secs(3600))
        );
        assert!(!o.get_fail_if_held());
        assert_eq!(o.effective_node_timeout(), Duration::from_millis(500));
        assert!(o.validate().is_ok());
    }

    #[test]
    fn each_try_is_one_round_and_a_wait_slice_is_one_sleep() {
        let o = SpinOptions::new().tries(7).sleep(Duration::from_millis(20));
        let round = o.single_round_options();
        assert_eq!(round.get_max_attempts(), Some(1));
        assert_eq!(round.get_acquire_timeout(), None);
        assert!(!round.get_auto_extend());
        let slice = o.jitter(Duration::from_millis(5)).wait_slice_options();
        assert_eq!(slice.get_acquire_timeout(), Some(Duration::from_millis(25)));
    }

    #[test]
    fn never_means_max_ttl_for_locks_and_no_px_for_results() {
        let o = SpinOptions::new()
            .max_hold(Expiry::Never)
            .result_expiry(Expiry::Never);
        assert_eq!(o.hold_ttl(), MAX_TTL);
        assert!(o.validate().is_ok());
        assert_eq!(o.result_expiry_arg(), b"0");
        let o = SpinOptions::new().result_expiry(Expiry::After(Duration::from_millis(1500)));
        assert_eq!(o.result_expiry_arg(), b"1500");
    }

    #[test]
    fn bad_values_are_typed_errors_naming_the_option() {
        let bad = [
            SpinOptions::new().tries(0),
            SpinOptions::new().max_hold(Expiry::After(Duration::ZERO)),
            SpinOptions::new().max_hold(Expiry::After(Duration::from_millis(1))),
            SpinOptions::new().result_expiry(Expiry::After(Duration::from_micros(10))),
            SpinOptions::new().drift_factor(f64::NAN),
            SpinOptions::new().node_timeout(Some(Duration::ZERO)),
        ];
        let names = [
            "tries",
            "max_hold",
            "max_hold",
            "result_expiry",
            "drift",
            "node timeout",
        ];
        for (options, name) in bad.iter().zip(names) {
            match options.validate() {
                Err(SpinError::InvalidOptions(why)) => {
                    assert!(why.to_string().contains(name), "{why}")
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}
