//! The clock-drift-aware lease that every quorate primitive hands out.
//!
//! See ARCHITECTURE.md, "The lease", for how this fits the whole.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// The largest ttl accepted (one year): far beyond any sane lease, far below
/// any arithmetic overflow.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// The fixed part of the clock-drift allowance: covers timer resolution and
/// the server's own millisecond rounding of `PX`.
pub const DRIFT_FLOOR: Duration = Duration::from_millis(2);

/// An unguessable lock token of 128 bits: a lock's token is its client's
/// 64-bit id ([`Owner`](crate::Owner)) followed by 64 bits from a CSPRNG
/// (`rand`'s thread RNG, ChaCha seeded from the OS); [`Token::random`] is
/// 128 random bits. Only the holder knows the random half, so only the
/// holder can release or extend.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(u128);

impl Token {
    /// A fresh random token.
    pub fn random() -> Self {
        Token(crate::determinism::random())
    }

    /// A fresh token of the client `client` (see [`Owner`](crate::Owner)):
    /// its first half names the client, the second is random.
    pub(crate) fn for_client(client: u64) -> Self {
        Token(u128::from(client) << 64 | u128::from(crate::determinism::random::<u64>()))
    }

    /// A token back from its 32 hex digits ([`to_hex`](Self::to_hex));
    /// `None` for anything else.
    pub fn from_hex(hex: &str) -> Option<Token> {
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(hex, 16).ok().map(Token)
    }

    /// The token as 32 lowercase hex digits, the form stored in Redis.
    pub fn to_hex(&self) -> String {
        format!("{:032x}", self.0)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for Token {
    // Half the token is enough to tell locks apart in logs without handing
    // the secret to whoever reads them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({:016x}…)", self.0 >> 64)
    }
}

/// The drift allowance for a ttl: `ttl × drift_factor + 2 ms`.
///
/// Never panics: a factor that is negative, not finite or absurdly large is
/// clamped (options reject such factors before they get here).
pub fn drift_for(ttl: Duration, drift_factor: f64) -> Duration {
    let factor = if drift_factor.is_finite() {
        drift_factor.clamp(0.0, 1.0)
    } else {
        1.0
    };
    Duration::try_from_secs_f64(ttl.as_secs_f64() * factor)
        .unwrap_or(ttl)
        .saturating_add(DRIFT_FLOOR)
}

/// What a quorum of servers granted: a token, a ttl and the monotonic instant
/// taken *before* the first request of the granting round was sent.
///
/// validity = ttl − (now − started) − drift, where drift is
/// ttl × drift_factor plus 2 ms. All arithmetic saturates: a ttl shorter than the drift gives a
/// lease that is already invalid, never a panic.
///
/// After extensions the validity follows one rule (see ARCHITECTURE.md, "The lease"): it
/// grows only on a majority's confirmation; on any doubt (an error, a timeout, a
/// cancelled extension) it becomes the smaller of what it was and what the doubtful
/// request could have set.
#[derive(Clone, Copy, Debug)]
pub struct Lease {
    token: Token,
    ttl: Duration,
    started: Instant,
    drift: Duration,
    /// Stored, not derived: after a doubtful extension it is capped below
    /// what `started + ttl − drift` would say.
    valid_until: Instant,
    fence: Option<u64>,
}

impl Lease {
    /// A lease for `token` granted by a round that started at `started`.
    pub fn new(token: Token, ttl: Duration, started: Instant, drift_factor: f64) -> Self {
        let drift = drift_for(ttl, drift_factor);
        Lease {
            token,
            ttl,
            started,
            drift,
            valid_until: valid_until(started, ttl, drift),
            fence: None,
        }
    }

    /// The lock token.
    pub fn token(&self) -> Token {
        self.token
    }

    /// The ttl each server was asked to keep the keys for.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The drift allowance subtracted from the ttl.
    pub fn drift(&self) -> Duration {
        self.drift
    }

    /// When the granting round started (monotonic clock).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The last instant at which the lease is still safe to rely on.
    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// How much validity is left; zero once the lease expired.
    pub fn remaining(&self) -> Duration {
        self.valid_until().saturating_duration_since(Instant::now())
    }

    /// Whether any validity is left.
    pub fn is_valid(&self) -> bool {
        !self.remaining().is_zero()
    }

    /// The fencing token, when the lock was taken with fencing enabled.
    pub fn fence(&self) -> Option<u64> {
        self.fence
    }

    /// The lease with its fencing token: for a primitive that hands out
    /// fences of its own (a fenced rwlock writer), before
    /// [`Redlock::adopt`](crate::Redlock::adopt).
    ///
    /// Part of the seam for primitive authors (see [`raw`](crate::raw)): may
    /// change in minor versions.
    pub fn with_fence(mut self, fence: u64) -> Self {
        self.fence = Some(fence);
        self
    }

    /// A majority confirmed an extension to `ttl` sent at `started`: the
    /// validity becomes the later of the old one and `started + ttl − drift`.
    ///
    /// Keeping the later one is sound because the extension scripts never
    /// shorten a key's ttl (`extend.lua`): the majority that confirmed the old
    /// validity still holds the keys at least that long.
    pub(crate) fn confirm(&mut self, ttl: Duration, started: Instant, drift_factor: f64) {
        let drift = drift_for(ttl, drift_factor);
        let until = valid_until(started, ttl, drift);
        if until >= self.valid_until {
            self.ttl = ttl;
            self.started = started;
            self.drift = drift;
            self.valid_until = until;
        }
    }

    /// An extension to `ttl` sent at `started` was not confirmed (error,
    /// timeout, cancellation): some nodes may have applied it, so the validity
    /// becomes the earlier of the old one and `started + ttl − drift`.
    ///
    /// With scripts that never shorten this only matters for a shorter ttl;
    /// it is kept as the one rule so that no request in doubt can leave the
    /// holder believing more than some node might hold.
    pub(crate) fn doubt(&mut self, ttl: Duration, started: Instant, drift_factor: f64) {
        let until = valid_until(started, ttl, drift_for(ttl, drift_factor));
        self.valid_until = self.valid_until.min(until);
    }
}

/// `started + ttl − drift`, saturating.
fn valid_until(started: Instant, ttl: Duration, drift: Duration) -> Instant {
    let validity = ttl.saturating_sub(drift);
    // Options cap ttls far below overflow; the fallback keeps a hand-made
    // lease with an absurd ttl from panicking.
    started
        .checked_add(validity)
        .or_else(|| started.checked_add(crate::lease::MAX_TTL))
        .unwrap_or(started)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_shows_in_full_only_as_its_stored_form() {
        let token = Token::random();
        let hex = token.to_hex();
        assert_eq!(hex.len(), 32);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(token.to_string(), hex);
        // Debug (logs) shows the first half only
        assert_eq!(format!("{token:?}"), format!("Token({}…)", &hex[..16]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_reports_the_ttl_it_was_granted_with() {
        let ttl = Duration::from_millis(1500);
        let lease = Lease::new(Token::random(), ttl, Instant::now(), 0.01);
        assert_eq!(lease.ttl(), ttl);
    }

    #[tokio::test(start_paused = true)]
    async fn validity_is_ttl_minus_elapsed_minus_drift() {
        let lease = Lease::new(
            Token::random(),
            Duration::from_secs(10),
            Instant::now(),
            0.01,
        );
        // drift = 10 s × 0.01 + 2 ms = 102 ms
        assert_eq!(lease.drift(), Duration::from_millis(102));
        assert_eq!(lease.remaining(), Duration::from_millis(9_898));
        tokio::time::advance(Duration::from_millis(9_000)).await;
        assert_eq!(lease.remaining(), Duration::from_millis(898));
        assert!(lease.is_valid());
        tokio::time::advance(Duration::from_millis(898)).await;
        assert_eq!(lease.remaining(), Duration::ZERO);
        assert!(!lease.is_valid());
    }

    #[tokio::test(start_paused = true)]
    async fn start_instant_counts_not_the_grant_instant() {
        let started = Instant::now();
        tokio::time::advance(Duration::from_millis(40)).await; // the round took 40 ms
        let lease = Lease::new(Token::random(), Duration::from_millis(1000), started, 0.01);
        assert_eq!(lease.remaining(), Duration::from_millis(1000 - 40 - 12));
    }

    #[tokio::test(start_paused = true)]
    async fn short_ttls_saturate_instead_of_underflowing() {
        // 1 ms ttl: drift (2.01 ms) exceeds the ttl; a naive u64 subtraction panics here.
        for ttl_ms in [0u64, 1, 2] {
            let lease = Lease::new(
                Token::random(),
                Duration::from_millis(ttl_ms),
                Instant::now(),
                0.01,
            );
            assert_eq!(lease.remaining(), Duration::ZERO, "ttl {ttl_ms} ms");
            assert!(!lease.is_valid());
        }
        // elapsed time beyond the ttl also saturates
        let lease = Lease::new(
            Token::random(),
            Duration::from_millis(5),
            Instant::now(),
            0.01,
        );
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(lease.remaining(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_confirmed_extension_measures_from_its_start() {
        let mut lease = Lease::new(Token::random(), Duration::from_secs(1), Instant::now(), 0.0);
        tokio::time::advance(Duration::from_millis(900)).await;
        let extend_started = Instant::now();
        tokio::time::advance(Duration::from_millis(10)).await;
        lease.confirm(Duration::from_secs(2), extend_started, 0.0);
        assert_eq!(lease.remaining(), Duration::from_millis(2000 - 10 - 2));
        assert_eq!(lease.ttl(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_confirmed_shorter_extension_keeps_the_longer_validity() {
        // the scripts never shorten: the old majority still holds the keys
        let mut lease = Lease::new(
            Token::random(),
            Duration::from_secs(10),
            Instant::now(),
            0.0,
        );
        let before = lease.valid_until();
        lease.confirm(Duration::from_millis(300), Instant::now(), 0.0);
        assert_eq!(lease.valid_until(), before);
        assert_eq!(lease.ttl(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_doubtful_extension_only_ever_shrinks_the_validity() {
        let mut lease = Lease::new(
            Token::random(),
            Duration::from_secs(10),
            Instant::now(),
            0.0,
        );
        tokio::time::advance(Duration::from_millis(700)).await;
        let before = lease.valid_until();
        // a longer ttl in doubt grows nothing
        lease.doubt(Duration::from_secs(30), Instant::now(), 0.0);
        assert_eq!(lease.valid_until(), before);
        // a shorter one in doubt caps it at what it could have set
        let started = Instant::now();
        lease.doubt(Duration::from_millis(300), started, 0.0);
        assert_eq!(lease.valid_until(), started + Duration::from_millis(298));
        // and a later confirmation of the old length grows it again
        lease.confirm(Duration::from_secs(10), started, 0.0);
        assert_eq!(lease.valid_until(), started + Duration::from_millis(9_998));
    }

    #[test]
    fn drift_never_panics_on_odd_factors() {
        let ttl = Duration::MAX;
        for factor in [f64::NAN, f64::INFINITY, -1.0, 1e300, 0.0] {
            let drift = drift_for(ttl, factor);
            assert!(drift >= DRIFT_FLOOR);
        }
    }

    #[test]
    fn tokens_are_distinct_and_hex() {
        let a = Token::random();
        let b = Token::random();
        assert_ne!(a, b);
        assert_eq!(a.to_hex().len(), 32);
        assert!(a.to_hex().chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!format!("{a:?}").contains(&a.to_hex()));
    }
}
