//! The seam for primitives built on quorate-redlock (pool, tree,
//! spinlock): their own scripts in quorum rounds, and guards for what those
//! scripts granted, so that extension, auto-extension, release and the lost
//! signal are this crate's and never a second implementation.
//!
//! See ARCHITECTURE.md, "The seam for primitives", for how this fits the whole.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::announcements::Watch;
use crate::backend::{Node, NodeScript, ScriptValue};
use crate::client::Redlock;
use crate::error::{ConfigError, Error};
use crate::guard::LockGuard;
use crate::lease::Lease;
use crate::options::LockOptions;
use crate::queue::NextWaiters;
use crate::quorum::{self, Decide, Round};
use crate::undo::release_round;

impl Redlock {
    /// The nodes, in order (the order of every [`Round`]'s replies).
    pub fn nodes(&self) -> &[Arc<dyn Node>] {
        &self.inner.nodes
    }

    /// Runs `script` on every node at once, each bounded by `node_timeout`,
    /// decided as soon as a majority answered with `success` or can no
    /// longer do so. Nodes that had not answered by then are
    /// [`Reply::Pending`](crate::raw::quorum::Reply::Pending); their requests
    /// still complete in the background.
    ///
    /// Part of the seam for primitive authors (see [`raw`](crate::raw)): may
    /// change in minor versions.
    ///
    /// # Cancel safety
    /// Every request is handed to its connection before the first await
    /// point returns; dropping the future does not recall them. A caller
    /// whose script takes something must arrange its own undo.
    ///
    /// ```no_run
    /// # async fn demo(redlock: quorate_redlock::Redlock) {
    /// use std::time::Duration;
    /// use quorate_redlock::raw::NodeScript;
    /// static EXISTS: NodeScript =
    ///     NodeScript::new("exists", "return redis.call('EXISTS', KEYS[1])");
    /// let round = redlock
    ///     .eval_round(&EXISTS, vec!["job".into()], vec![], Duration::from_millis(50),
    ///                 |v| v.as_int() == Some(1))
    ///     .await;
    /// println!("{} of {} nodes hold it", round.successes, redlock.nodes().len());
    /// # }
    /// ```
    pub async fn eval_round(
        &self,
        script: &'static NodeScript,
        keys: Vec<String>,
        args: Vec<Vec<u8>>,
        node_timeout: Duration,
        success: impl Fn(&ScriptValue) -> bool,
    ) -> Round<ScriptValue> {
        quorum::round(
            script.name(),
            &self.inner.nodes,
            node_timeout,
            Decide::Majority(self.inner.quorum),
            success,
            |node| node.eval(script, keys.clone(), args.clone()),
        )
        .await
    }

    /// A guard for `keys` that a primitive's own script set to
    /// `lease.token()` on a majority of nodes, in a round that started at
    /// `lease.started()`. From here on it is an ordinary [`LockGuard`]:
    /// `extend`, `release` (compare-and-delete of the keys), drop, and with
    /// `options.auto_extend` the watchdog and the lost signal.
    ///
    /// Only for keys holding the token as a plain string value with a ttl,
    /// which is what the mutex's own extend and release scripts expect.
    ///
    /// Part of the seam for primitive authors (see [`raw`](crate::raw)): may
    /// change in minor versions.
    pub fn adopt(&self, keys: Vec<String>, lease: Lease, options: &LockOptions) -> LockGuard {
        LockGuard::new(
            Arc::clone(&self.inner),
            Arc::clone(&self.handoffs),
            keys.into(),
            lease,
            options,
            NextWaiters::default(),
        )
        .without_local_handoff()
    }

    /// Extends `keys` to `ttl` wherever they hold `token`, without a guard:
    /// for a primitive whose holders hand their token to another task or
    /// process (a semaphore's permit id). The lease returned counts its
    /// validity from the start of this round.
    ///
    /// Errors: [`Error::Lost`] when too many nodes no longer hold the
    /// token, [`Error::NoQuorum`] when too few answered, [`Error::InvalidConfig`]
    /// for a bad token or ttl.
    ///
    /// Part of the seam for primitive authors (see [`raw`](crate::raw)): may
    /// change in minor versions.
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped extension leaves each node's ttl as it was or
    /// longer (extensions never shorten).
    pub async fn extend_token(
        &self,
        keys: &[String],
        token: &str,
        ttl: Duration,
    ) -> Result<Lease, Error> {
        let drift = self.inner.defaults.get_drift_factor();
        crate::options::validate_ttl(ttl, drift)?;
        self.check_ttl(ttl)?;
        let parsed = crate::Token::from_hex(token).ok_or(ConfigError::BadToken)?;
        let node_timeout = self.inner.defaults.effective_node_timeout();
        let started =
            crate::guard::extend_round(&self.inner, keys, token, ttl, node_timeout).await?;
        Ok(Lease::new(parsed, ttl, started, drift))
    }

    /// Releases `keys` wherever they hold `token`, without a guard
    /// (compare-and-delete, announced to waiters): `Released` when a
    /// majority answered and one of them deleted, `NotHeld` when none did.
    ///
    /// Part of the seam for primitive authors (see [`raw`](crate::raw)): may
    /// change in minor versions.
    ///
    /// # Cancel safety
    /// Cancel safe in effect: the requests are sent before the first await
    /// returns; the keys not reached expire with their ttl.
    pub async fn release_token(
        &self,
        keys: &[String],
        token: &str,
    ) -> Result<crate::ReleaseOutcome, Error> {
        let node_timeout = self.inner.defaults.effective_node_timeout();
        let round = self.inner.release_round(keys, token, node_timeout).await;
        if round.answered() < self.inner.quorum {
            return Err(crate::verdict::no_quorum(self, &round));
        }
        let deleted = round
            .replies
            .iter()
            .any(|r| matches!(r, quorum::Reply::Answered(n) if *n > 0));
        Ok(if deleted {
            crate::ReleaseOutcome::Released
        } else {
            crate::ReleaseOutcome::NotHeld
        })
    }

    /// Deletes `keys` wherever they still hold `token` (no announcement),
    /// returning once every request is on its connection: the undo of a
    /// primitive's failed or abandoned grant.
    ///
    /// Part of the seam for primitive authors (see [`raw`](crate::raw)): may
    /// change in minor versions.
    ///
    /// # Cancel safety
    /// Cancel safe in effect: the requests are sent before the first await
    /// returns, and a key left behind expires with its ttl.
    pub async fn undo(&self, keys: &[String], token: &str, node_timeout: Duration) {
        release_round(&self.inner.nodes, keys, token, node_timeout, Decide::Sent).await;
    }

    /// A fresh token for a round of this client: its first half is the
    /// client's id (so operators can tell who holds a key, see
    /// [`Owner`](crate::Owner)), its second half random.
    ///
    /// Part of the seam for primitive authors (see [`raw`](crate::raw)): may
    /// change in minor versions.
    pub fn fresh_token(&self) -> crate::Token {
        crate::Token::for_client(self.inner.owner.client())
    }

    /// Counts one acquisition round of a primitive in
    /// `quorate_acquire_rounds_total`, with this client's `primitive` label.
    ///
    /// Part of the seam for primitive authors (see [`raw`](crate::raw)): may
    /// change in minor versions.
    pub fn count_round(&self) {
        crate::metrics::acquire_round(self.inner.primitive);
    }

    /// Counts a primitive's finished lock call in `quorate_acquire_total`
    /// and `quorate_acquire_wait_seconds` by outcome (`granted`, `taken`,
    /// `no_quorum`, `expired`, `invalid`, as the mutex's), with this
    /// client's `primitive` label.
    ///
    /// Part of the seam for primitive authors (see [`raw`](crate::raw)): may
    /// change in minor versions.
    pub fn count_acquire<T>(&self, result: &Result<T, Error>, waited: Duration) {
        crate::metrics::acquire_done(self.inner.primitive, outcome_of(result), waited);
    }

    /// Who this client is, as recorded on the nodes.
    pub fn owner(&self) -> &crate::Owner {
        &self.inner.owner
    }

    /// Keeps this client's description on the nodes: refreshed every
    /// few hours by a task that ends with the client and every clone of
    /// it ([`with_metric_label`](Self::with_metric_label)); none outside a
    /// runtime. With `register_now`, the first registration is also that
    /// task's.
    pub(crate) fn keep_owner_registered(&self, register_now: bool) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Weak references to what every clone of this client shares (the
        // pool's, the tree's…): the refresh lasts while any clone lives,
        // not just this one, and keeps no connection open by itself.
        let owner = Arc::downgrade(&self.inner.owner);
        let clock = Arc::downgrade(&self.inner.tickets.clock);
        let nodes: Vec<Weak<dyn Node>> = self.inner.nodes.iter().map(Arc::downgrade).collect();
        let timeout = self.inner.defaults.effective_node_timeout();
        handle.spawn(async move {
            let mut wait = if register_now {
                Duration::ZERO
            } else {
                crate::owner::OWNER_REFRESH
            };
            loop {
                tokio::time::sleep(wait).await;
                let (Some(owner), Some(clock)) = (owner.upgrade(), clock.upgrade()) else {
                    return;
                };
                let nodes: Vec<Arc<dyn Node>> = nodes.iter().filter_map(Weak::upgrade).collect();
                owner
                    .register(&nodes, timeout, crate::quorum::Decide::Sent, &clock)
                    .await;
                wait = crate::owner::OWNER_REFRESH;
            }
        });
    }

    /// Waits for this task's turn among this client's waiters for `keys`
    /// (first come, first served); the turn ends when dropped.
    pub(crate) async fn local_turn(&self, keys: &[String]) -> crate::local_queue::LocalTurn {
        self.inner.local.turn(keys).await
    }

    /// Starts hearing release announcements of `keys` (a release by any
    /// client announces each key it deleted), subscribing on every node
    /// and waiting up to `node_timeout` for a majority to confirm. The
    /// waiters of a primitive built on this crate retry when woken instead
    /// of polling; a missed announcement only costs latency.
    ///
    /// Part of the seam for primitive authors (see [`raw`](crate::raw)): may
    /// change in minor versions.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled call unregisters; subscriptions sent are
    /// dropped again once nobody watches.
    ///
    /// ```no_run
    /// # async fn demo(redlock: quorate_redlock::Redlock) {
    /// use std::time::Duration;
    /// let mut watch = redlock
    ///     .watch_releases(&["printer".to_owned()], Duration::from_millis(50))
    ///     .await;
    /// watch.mark_seen();
    /// // ... a failed attempt ...
    /// tokio::select! {
    ///     _ = watch.released() => {}                          // retry now
    ///     () = tokio::time::sleep(Duration::from_millis(100)) => {} // or poll
    /// }
    /// # }
    /// ```
    pub async fn watch_releases(&self, keys: &[String], node_timeout: Duration) -> ReleaseWatch {
        ReleaseWatch(self.inner.notifier.watch(keys, node_timeout).await)
    }
}

/// A registration for release announcements of some keys; unregisters on
/// drop. See [`Redlock::watch_releases`].
pub struct ReleaseWatch(Watch);

impl std::fmt::Debug for ReleaseWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReleaseWatch").finish_non_exhaustive()
    }
}

impl ReleaseWatch {
    /// Forgets the announcements heard so far: call it before each
    /// attempt, so that only a release after it wakes the waiter.
    pub fn mark_seen(&mut self) {
        self.0.mark_seen();
    }

    /// Resolves at the next announcement of any watched key; `true` when
    /// the release came from this process.
    ///
    /// # Cancel safety
    /// Cancel safe: an announcement not yet seen stays pending.
    pub async fn released(&mut self) -> bool {
        self.0.released().await
    }
}

/// A lock call's outcome label.
fn outcome_of<T>(result: &Result<T, Error>) -> &'static str {
    match result {
        Ok(_) => "granted",
        Err(Error::Taken { .. }) => "taken",
        Err(Error::NoQuorum { .. }) => "no_quorum",
        Err(Error::Expired) => "expired",
        Err(_) => "invalid",
    }
}
