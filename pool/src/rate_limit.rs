//! A rate limit: at most N grants in any window of W, across processes and
//! hosts. It is a semaphore of N slots whose permits are never released and
//! expire after the window.
//!
//! Why grants are at least W apart per slot *as callers see them*: a slot
//! key is set no earlier than the round's start s1 and lives ttl = W +
//! drift(W) + node timeout on a majority; the grant is only handed out if
//! the round ended by s1 + node timeout. The next grant of that slot needs
//! the key gone from a majority (which meets ours), so it is set, and seen,
//! no earlier than s1 + ttl ≥ (our grant) + W, up to the servers' clock
//! rate (the drift allowance). The price: slightly under N per W
//! (N per W + drift + node timeout).

use std::time::Duration;

use quorate_redlock::{LockOptions, Redlock};

use quorate_redlock::raw::drift_for;
use tokio::time::Instant;
use tracing::Instrument;

use crate::allocate::{Group, Rounds};
use crate::error::{PoolError, RequestError};
use crate::pool::{validate_name, Pool};
use crate::requirement::{CandidateOrder, Requirement};
use crate::retry::{self, Pause};

/// One round per attempt, decided once a majority answered: the grant is
/// then seen within the node timeout of the round's start, which the ttl
/// covers, even while a node is stalled.
const ROUNDS: Rounds = Rounds {
    max: 1,
    wait_for_all: false,
};

/// "At most `limit` grants in any window of `window`" (the seed use case:
/// a resource with a hard limit on requests per second). Grants need no
/// release. Defaults: acquire timeout = the Redlock's (10 s unless
/// changed); node timeout = window / 10, clamped to 5..=50 ms.
///
/// ```no_run
/// # async fn demo(redlock: quorate_redlock::Redlock) -> Result<(), quorate_pool::PoolError> {
/// use std::time::Duration;
/// let limit = quorate_pool::RateLimit::new(&redlock, "partner-api", 5, Duration::from_millis(800))?;
/// for _ in 0..20 {
///     limit.acquire().await?; // waits until a grant is possible
///     // call the partner API
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct RateLimit {
    pool: Pool,
    limit: usize,
    window: Duration,
    options: LockOptions,
}

impl RateLimit {
    /// `limit` grants per `window` under `name`. Errors: a limit of 0, a
    /// zero window, a bad name. Every client must use the same limit and
    /// window for a name.
    pub fn new(
        redlock: &Redlock,
        name: &str,
        limit: usize,
        window: Duration,
    ) -> Result<Self, RequestError> {
        validate_name(name)?;
        if limit == 0 {
            return Err(RequestError::ZeroPermits {
                name: name.to_owned(),
            });
        }
        if window.is_zero() {
            return Err(RequestError::ZeroWindow);
        }
        let node_timeout = (window / 10).clamp(Duration::from_millis(5), Duration::from_millis(50));
        let mut limiter = RateLimit {
            pool: Pool::labelled(redlock, &format!("rate:{name}"), "rate_limit")?,
            limit,
            window,
            options: redlock.defaults().clone().max_attempts(None),
        };
        limiter.options = limiter.options_for(node_timeout);
        Ok(limiter)
    }

    fn options_for(&self, node_timeout: Duration) -> LockOptions {
        let drift_factor = self.options.get_drift_factor();
        let ttl = self.window + drift_for(self.window, drift_factor) + node_timeout;
        self.options
            .clone()
            .node_timeout(Some(node_timeout))
            .ttl(ttl)
    }

    /// The per-node timeout; it is also the margin added to every slot's
    /// ttl. Default: window / 10, clamped to 5..=50 ms.
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.options = self.options_for(timeout);
        self
    }

    /// How long [`acquire`](Self::acquire) waits at most (`None`: until a
    /// grant). Default: the Redlock's acquire timeout (10 s unless changed).
    pub fn acquire_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.options = self.options.clone().acquire_timeout(timeout);
        self
    }

    /// The limit and the window.
    pub fn rate(&self) -> (usize, Duration) {
        (self.limit, self.window)
    }

    fn groups(&self) -> Vec<Group> {
        let slots = Requirement::need(1, 0..self.limit, |i| self.pool.key(&format!("slot:{i}")))
            .order(CandidateOrder::Random);
        crate::allocate::groups(&[slots], None)
    }

    /// Waits until a grant is possible and takes it; sleeps until the
    /// earliest slot expires rather than polling. Errors:
    /// [`PoolError::Unavailable`] when the acquire timeout would pass
    /// first, [`PoolError::Lock`] with [`Error::NoQuorum`](quorate_redlock::Error::NoQuorum) when too few nodes answer.
    ///
    /// # Cancel safety
    /// Cancel safe: a grant in flight is undone, so a cancelled call uses
    /// up no slot beyond one round trip.
    ///
    /// ```no_run
    /// # async fn demo(limit: quorate_pool::RateLimit) -> Result<(), quorate_pool::PoolError> {
    /// limit.acquire().await?;
    /// # Ok(()) }
    /// ```
    pub async fn acquire(&self) -> Result<(), PoolError> {
        self.grant(&self.options).await
    }

    /// One attempt: a grant now, or [`PoolError::Unavailable`] whose
    /// [`retry_after`](PoolError::retry_after) says how long to wait (every
    /// refusal has that shape; too few nodes answering is
    /// [`PoolError::Lock`] with [`Error::NoQuorum`](quorate_redlock::Error::NoQuorum)).
    ///
    /// # Cancel safety
    /// Cancel safe, as [`acquire`](Self::acquire).
    ///
    /// ```no_run
    /// # async fn demo(limit: quorate_pool::RateLimit) {
    /// if let Err(e) = limit.try_acquire().await {
    ///     println!("over the limit; next grant in {:?}", e.retry_after());
    /// }
    /// # }
    /// ```
    pub async fn try_acquire(&self) -> Result<(), PoolError> {
        self.grant(&self.options.clone().max_attempts(Some(1)))
            .await
    }

    async fn grant(&self, options: &LockOptions) -> Result<(), PoolError> {
        let started = Instant::now();
        let node_timeout = options.effective_node_timeout();
        loop {
            let span =
                tracing::debug_span!("quorate.rate_limit.acquire", limit = %self.pool.name());
            let (allocation, _) = retry::acquire(
                self.pool.redlock(),
                || self.groups(),
                options,
                ROUNDS,
                Pause::UntilExpiry,
            )
            .instrument(span)
            .await?;
            // A grant seen later than its round's node timeout could come
            // less than a window before the slot's next grant: give it back.
            let late = allocation
                .held
                .iter()
                .flatten()
                .any(|h| h.lease.started().elapsed() > node_timeout);
            if !late {
                metrics::counter!("quorate_pool_rate_grants_total", "limit" => self.pool.name().to_owned())
                    .increment(1);
                return Ok(());
            }
            for held in allocation.held.iter().flatten() {
                let token = held.lease.token().to_hex();
                self.pool
                    .redlock()
                    .undo(std::slice::from_ref(&held.key), &token, node_timeout)
                    .await;
            }
            let out_of_time = options
                .get_acquire_timeout()
                .is_some_and(|t| started.elapsed() >= t);
            if out_of_time || options.get_max_attempts() == Some(1) {
                // the same shape as every other refusal; the slot given back is free again
                return Err(PoolError::Unavailable {
                    requirement: 0,
                    need: 1,
                    held: 0,
                    retry_after: Some(Duration::ZERO),
                    outcomes: quorate_redlock::Outcomes(Vec::new()),
                });
            }
        }
    }
}
