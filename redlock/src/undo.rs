//! The undo of a round that may have granted something: compare-and-delete
//! by the round's token on every node, sent when the round fails, or
//! spawned from `Drop` when the round is abandoned mid-flight (see
//! ARCHITECTURE.md, "Acquire and undo"). One guard for the mutex and every
//! primitive built on it.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::Node;
use crate::client::Redlock;
use crate::quorum::{self, Decide, Reply};

/// Armed from the moment a round's requests may leave until the round's
/// outcome is settled: a lease handed out ([`disarm`](Self::disarm)) or the
/// undo sent ([`send`](Self::send), [`send_except`](Self::send_except),
/// [`send_and_wait`](Self::send_and_wait)). Dropped while armed (a
/// cancelled call), it spawns the undo, so nothing a late node grants
/// outlives the round by more than a round trip (or its ttl, on a node
/// that cannot be reached). It never blocks in `Drop`.
///
/// ```no_run
/// # async fn demo(redlock: quorate_redlock::Redlock) {
/// use std::time::Duration;
/// use quorate_redlock::{raw::UndoGuard, Token};
///
/// let token = Token::random().to_hex();
/// let keys = vec!["job:7".to_owned()];
/// let mut undo = UndoGuard::armed(&redlock, keys, &token, Duration::from_millis(50));
/// // ... a round of a script that sets the keys to `token` ...
/// let granted = false;
/// if granted {
///     undo.disarm();
/// } else {
///     undo.send().await;
/// }
/// # }
/// ```
#[must_use = "an undo guard sends the undo when dropped armed"]
#[derive(Debug)]
pub struct UndoGuard {
    redlock: Redlock,
    keys: Arc<[String]>,
    token: String,
    node_timeout: Duration,
    armed: bool,
}

impl UndoGuard {
    /// An armed guard for `keys` set to `token`, each request bounded by
    /// `node_timeout`.
    pub fn armed(
        redlock: &Redlock,
        keys: impl Into<Arc<[String]>>,
        token: &str,
        node_timeout: Duration,
    ) -> Self {
        UndoGuard {
            redlock: redlock.clone(),
            keys: keys.into(),
            token: token.to_owned(),
            node_timeout,
            armed: true,
        }
    }

    /// The round's outcome is settled without an undo (a lease was handed
    /// out): dropping the guard sends nothing.
    pub fn disarm(&mut self) {
        self.armed = false;
    }

    /// Sends the undo to every node, returning once every request is on its
    /// connection (which orders it before the next round there); the
    /// answers are collected in the background.
    ///
    /// # Cancel safety
    /// The guard stays armed until every request is sent: cancelled in
    /// here, it still spawns the undo when dropped.
    pub async fn send(&mut self) {
        self.send_except(&[]).await;
    }

    /// [`send`](Self::send), skipping the nodes whose index is `true` in
    /// `skip` (they answered that they set nothing).
    ///
    /// # Cancel safety
    /// As [`send`](Self::send).
    pub async fn send_except(&mut self, skip: &[bool]) {
        let nodes: Vec<Arc<dyn Node>> = self
            .redlock
            .nodes()
            .iter()
            .enumerate()
            .filter(|(i, _)| !skip.get(*i).copied().unwrap_or(false))
            .map(|(_, node)| Arc::clone(node))
            .collect();
        if !nodes.is_empty() {
            release_round(
                &nodes,
                &self.keys,
                &self.token,
                self.node_timeout,
                Decide::Sent,
            )
            .await;
        }
        self.armed = false;
    }

    /// Gives back some of the keys now (what a round took but its caller
    /// does not keep), returning once every request is on its connection;
    /// the guard stays armed for all its keys. Only when no later round
    /// uses the token: see [`give_back_confirmed`](Self::give_back_confirmed).
    ///
    /// # Cancel safety
    /// Cancel safe: the guard stays armed.
    pub async fn give_back(&self, keys: &[String]) {
        let nodes = self.redlock.nodes();
        release_round(nodes, keys, &self.token, self.node_timeout, Decide::Sent).await;
    }

    /// As [`give_back`](Self::give_back), but waits for every node's answer,
    /// each bounded by the node timeout.
    ///
    /// Returns whether another round with the same token is safe: every
    /// node answered or failed. A give-back still unanswered may land after
    /// the next round (a `NOSCRIPT` answer is followed by the script sent
    /// again, behind whatever went out meanwhile) and delete what that round
    /// counted as granted; after `false`, start over with a fresh token.
    ///
    /// # Cancel safety
    /// Cancel safe: the guard stays armed.
    pub async fn give_back_confirmed(&self, keys: &[String]) -> bool {
        let round = quorum::round(
            "release",
            self.redlock.nodes(),
            self.node_timeout,
            Decide::All,
            |_| true,
            |node| node.release(keys, &self.token, None),
        )
        .await;
        round
            .replies
            .iter()
            .all(|r| matches!(r, Reply::Answered(_) | Reply::Failed(_)))
    }

    /// Sends the undo and waits until every node answered (a stalled one
    /// only briefly, [`Decide::AllWithGrace`]): the live nodes hold
    /// nothing of the round when this returns, not merely soon after.
    ///
    /// # Cancel safety
    /// Once called, the undo is sent even if the future is dropped (the
    /// guard is consumed, so it is not sent twice).
    pub async fn send_and_wait(mut self) {
        self.armed = false;
        let nodes = self.redlock.nodes();
        let decide = Decide::AllWithGrace;
        release_round(nodes, &self.keys, &self.token, self.node_timeout, decide).await;
    }
}

impl Drop for UndoGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let redlock = self.redlock.clone();
        let keys = Arc::clone(&self.keys);
        let token = std::mem::take(&mut self.token);
        let timeout = self.node_timeout;
        // Outside a runtime nothing can be sent; the keys expire with their ttl.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let background = Arc::clone(&redlock.inner.background);
            background.spawn(&handle, async move {
                release_round(redlock.nodes(), &keys, &token, timeout, Decide::Sent).await;
            });
        }
    }
}

/// Compare-and-delete without announcement (nobody held the lock). An undo
/// may still reach a server late (fred re-sends a script after `NOSCRIPT`),
/// which is why every round uses a fresh token: a late undo cannot touch a
/// later grant.
pub(crate) async fn release_round(
    nodes: &[Arc<dyn Node>],
    keys: &[String],
    token: &str,
    timeout: Duration,
    decide: Decide,
) {
    quorum::round(
        "release",
        nodes,
        timeout,
        decide,
        |_| true,
        |node| node.release(keys, token, None),
    )
    .await;
}
