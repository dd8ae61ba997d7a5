//! The quorum engine: one request to every node at once, decided as soon as
//! the answer is known. Public for the primitives built on this crate
//! (see also [`Redlock::eval_round`](crate::Redlock::eval_round)).
//!
//! See ARCHITECTURE.md, "The quorum round", for how this fits the whole.

use std::sync::Arc;
use std::time::Duration;

use std::task::Poll;

use futures::future::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use crate::backend::{Node, NodeError, NodeFuture};
use crate::error::{NodeOutcome, NodeReport, Outcomes};
use crate::metrics;

/// Most quorum rounds in flight at once in this process (see [`round`]).
pub const MAX_ROUNDS_IN_FLIGHT: usize = 256;

static ROUNDS_IN_FLIGHT: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MAX_ROUNDS_IN_FLIGHT);

/// The majority of `n` nodes.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// One node's answer in a round.
#[derive(Debug)]
pub enum Reply<T> {
    /// The node answered.
    Answered(T),
    /// The call failed (connection, protocol or script error).
    Failed(NodeError),
    /// No answer within the node timeout.
    TimedOut,
    /// The round was decided before this node answered.
    Pending,
}

/// The answers of one round, index-aligned with the nodes.
#[derive(Debug)]
pub struct Round<T> {
    /// One reply per node, in the nodes' order.
    pub replies: Vec<Reply<T>>,
    /// Answers that counted as success.
    pub successes: usize,
}

impl<T> Round<T> {
    /// Nodes that answered at all (successfully or not).
    pub fn answered(&self) -> usize {
        self.replies
            .iter()
            .filter(|r| matches!(r, Reply::Answered(_)))
            .count()
    }

    /// Every node's outcome, with `describe` turning an answer into one.
    pub fn outcomes(
        &self,
        nodes: &[Arc<dyn Node>],
        describe: impl Fn(&T) -> NodeOutcome,
    ) -> Outcomes {
        let reports = nodes
            .iter()
            .zip(&self.replies)
            .map(|(node, reply)| NodeReport {
                node: node.name().to_owned(),
                outcome: match reply {
                    Reply::Answered(t) => describe(t),
                    Reply::Failed(e) => match crate::backend::quarantine::left(e.message()) {
                        Some(remaining) => NodeOutcome::Quarantined { remaining },
                        None => NodeOutcome::Error(e.clone()),
                    },
                    Reply::TimedOut => NodeOutcome::TimedOut,
                    Reply::Pending => NodeOutcome::Pending,
                },
            })
            .collect();
        Outcomes(reports)
    }
}

/// When a round is decided, from the counts of successes and failures.
#[derive(Clone, Copy, Debug)]
pub enum Decide {
    /// As soon as `quorum` succeeded, or so many failed that it cannot.
    Majority(usize),
    /// As soon as every request is on its connection: for an undo, whose
    /// answers change nothing (it only has to precede the next round).
    Sent,
    /// When every node answered, failed or timed out: for a round whose
    /// every answer counts (a pool's candidates need a majority each, so
    /// the first majority to answer is not enough to count them).
    All,
    /// As [`All`](Self::All), but once a majority has answered with
    /// success, the others get only as long again as that took (plus 1 ms):
    /// a stalled node then costs a round about one round trip, not the node
    /// timeout. Failures do not start the grace (they may come at once,
    /// before any healthy node could answer); once so many failed that no
    /// majority can answer well, the round is decided.
    AllWithGrace,
    /// A queued waiter's round: as soon as `quorum` succeeded; once so
    /// many refused that it cannot, the others get as long again as that
    /// took (plus 1 ms). Each refusal carries the waiter's entry deadline
    /// there (a later grant counts only with it), and a node not heard from
    /// gets an undo, so the stragglers are worth a short wait.
    Queued(usize),
}

impl Decide {
    fn decided(self, n: usize, successes: usize, failures: usize) -> bool {
        match self {
            Decide::Majority(quorum) => successes >= quorum || failures > n - quorum,
            Decide::Sent => true,
            Decide::All => successes + failures >= n,
            // no majority can answer well any more: nothing to wait for
            Decide::AllWithGrace => successes + failures >= n || failures > n - majority(n),
            Decide::Queued(quorum) => successes >= quorum || successes + failures >= n,
        }
    }
}

/// Sends `call` to every node at once, each bounded by `node_timeout`, and
/// returns as soon as `decide` says the round is decided.
///
/// Requests still in flight when the round is decided are not abandoned:
/// they are driven to completion (or their timeout) on a spawned task, so
/// every node gets every request, in order with whatever is sent on its
/// connection afterwards (an undo, say), and the caller does not wait.
///
/// At most [`MAX_ROUNDS_IN_FLIGHT`] rounds run at once in a process; a
/// further round waits for one to be decided before it sends anything (and
/// before its node timeouts start), so a burst of thousands of calls waits
/// here instead of timing itself out in the servers' queues.
pub async fn round<T: Send + 'static>(
    op: &'static str,
    nodes: &[Arc<dyn Node>],
    node_timeout: Duration,
    decide: Decide,
    success: impl Fn(&T) -> bool,
    call: impl Fn(&dyn Node) -> NodeFuture<T>,
) -> Round<T> {
    // Started only with a permit: a burst of thousands of calls queues
    // here, not on the servers, where it would time out on its own backlog.
    let _permit = ROUNDS_IN_FLIGHT.acquire().await;
    let n = nodes.len();
    let started = Instant::now();
    let requests = nodes.iter().enumerate().map(|(i, node)| {
        let request = call(node.as_ref());
        let node = Arc::clone(node);
        async move {
            let sent = Instant::now();
            let result = tokio::time::timeout(node_timeout, request).await;
            metrics::node_call(node.name(), op, sent.elapsed(), &result);
            (i, result)
        }
        .boxed()
    });
    // Poll every request once before deciding anything: that puts each on
    // its connection now. A request first polled later (by the straggler
    // task) could reach its server after a follow-up sent meanwhile, such
    // as the undo of this very round.
    let mut requests = Some(requests.collect::<Vec<_>>());
    let (answered, mut pending) = std::future::poll_fn(|cx| {
        let mut answered = Vec::new();
        let pending = FuturesUnordered::new();
        for mut request in requests.take().unwrap_or_default() {
            match request.as_mut().poll(cx) {
                Poll::Ready(answer) => answered.push(answer),
                Poll::Pending => pending.push(request),
            }
        }
        Poll::Ready((answered, pending))
    })
    .await;

    let mut replies: Vec<Reply<T>> = (0..n).map(|_| Reply::Pending).collect();
    let (mut successes, mut failures) = (0, 0);
    let mut answered = answered.into_iter();
    let mut grace: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        if decide.decided(n, successes, failures) {
            break;
        }
        // The grace starts once a majority *answered well*: nodes that
        // failed at once (refused connections) must not cut the healthy
        // ones short, or a round with two of five nodes down would end
        // before a majority of answers came in.
        let grace_due = match decide {
            Decide::AllWithGrace => successes >= majority(n),
            Decide::Queued(quorum) => failures > n - quorum,
            _ => false,
        };
        if grace_due && grace.is_none() {
            let wait = started.elapsed() + Duration::from_millis(1);
            grace = Some(Box::pin(tokio::time::sleep(wait)));
        }
        let next = match (answered.next(), grace.as_mut()) {
            (Some(answer), _) => Some(answer),
            (None, None) => pending.next().await,
            (None, Some(grace)) => tokio::select! {
                biased;
                answer = pending.next() => answer,
                () = grace => break,
            },
        };
        let Some((i, result)) = next else {
            break;
        };
        replies[i] = match result {
            Ok(Ok(answer)) => {
                if success(&answer) {
                    successes += 1;
                } else {
                    failures += 1;
                }
                Reply::Answered(answer)
            }
            Ok(Err(e)) => {
                failures += 1;
                Reply::Failed(e)
            }
            Err(_elapsed) => {
                failures += 1;
                Reply::TimedOut
            }
        };
    }
    if !pending.is_empty() {
        tokio::spawn(pending.for_each(|_| async {}));
    }
    Round { replies, successes }
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use super::*;
    use crate::backend::MemoryNode;

    fn nodes(memory: &[MemoryNode]) -> Vec<Arc<dyn Node>> {
        memory
            .iter()
            .map(|m| Arc::new(m.clone()) as Arc<dyn Node>)
            .collect()
    }

    #[test]
    fn majority_of_n() {
        assert_eq!(majority(1), 1);
        assert_eq!(majority(2), 2);
        assert_eq!(majority(3), 2);
        assert_eq!(majority(4), 3);
        assert_eq!(majority(5), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn all_waits_for_every_node_and_all_with_grace_only_briefly_after_a_majority() {
        let memory = MemoryNode::cluster(5);
        for (i, node) in memory.iter().enumerate() {
            node.set_latency(Duration::from_millis(10 * (i as u64 + 1)));
        }
        memory[4].set_stalled(true);
        let nodes = nodes(&memory);
        let keys = vec!["k".to_owned()];
        let timeout = Duration::from_secs(60);
        let call = |n: &dyn Node| n.extend(&keys, "t", Duration::from_secs(1));

        let started = Instant::now();
        let all = round("extend", &nodes, timeout, Decide::All, |_| true, call).await;
        assert_eq!(started.elapsed(), timeout, "All waits out the stalled node");
        assert_eq!(all.answered(), 4);
        assert!(matches!(all.replies[4], Reply::TimedOut));

        // a majority answered after 30 ms: the rest get 31 ms more, so the
        // node answering at 40 ms counts and the stalled one does not
        let started = Instant::now();
        let graced = round(
            "extend",
            &nodes,
            timeout,
            Decide::AllWithGrace,
            |_| true,
            call,
        )
        .await;
        assert_eq!(started.elapsed(), Duration::from_millis(61));
        assert_eq!(graced.answered(), 4);
        assert!(matches!(graced.replies[4], Reply::Pending));
    }

    /// A queued round that is refused waits briefly for the stragglers
    /// (their refusals carry the waiter's entry deadline), not for a
    /// stalled node; a granted one returns at the majority.
    #[tokio::test(start_paused = true)]
    async fn a_queued_round_hears_out_its_stragglers_briefly() {
        let memory = MemoryNode::cluster(5);
        for (i, node) in memory.iter().enumerate() {
            node.set_latency(Duration::from_millis(10 * (i as u64 + 1)));
        }
        memory[4].set_stalled(true);
        let nodes = nodes(&memory);
        let keys = vec!["k".to_owned()];
        let granted = |r: &crate::backend::AcquireReply| {
            matches!(r, crate::backend::AcquireReply::Granted { .. })
        };
        let timeout = Duration::from_secs(60);
        let call = |token: &'static str| {
            let keys = keys.clone();
            move |n: &dyn Node| n.acquire(&keys, token, Duration::from_secs(10), false, None)
        };
        let started = Instant::now();
        let first = round(
            "acquire",
            &nodes,
            timeout,
            Decide::Queued(3),
            granted,
            call("a"),
        )
        .await;
        assert_eq!(first.successes, 3);
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(30),
            "granted at the majority"
        );

        // refused everywhere: decided at the third refusal (30 ms), then 31 ms
        // more, so the node at 40 ms is heard and the stalled one is not
        let started = Instant::now();
        let refused = round(
            "acquire",
            &nodes,
            timeout,
            Decide::Queued(3),
            granted,
            call("b"),
        )
        .await;
        assert_eq!(refused.successes, 0);
        assert_eq!(started.elapsed(), Duration::from_millis(61));
        assert_eq!(refused.answered(), 4);
        assert!(matches!(refused.replies[4], Reply::Pending));
    }

    #[tokio::test(start_paused = true)]
    async fn decides_without_waiting_for_stalled_nodes() {
        let memory = MemoryNode::cluster(5);
        memory[3].set_stalled(true);
        memory[4].set_stalled(true);
        let nodes = nodes(&memory);
        let keys = vec!["k".to_owned()];
        let started = Instant::now();
        let round = round(
            "acquire",
            &nodes,
            Duration::from_secs(60),
            Decide::Majority(3),
            |r| matches!(r, crate::backend::AcquireReply::Granted { .. }),
            |n| n.acquire(&keys, "t", Duration::from_secs(1), false, None),
        )
        .await;
        assert_eq!(round.successes, 3);
        // paused time: any wait for the stalled nodes would have advanced the clock
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert!(matches!(round.replies[3], Reply::Pending));
    }

    #[tokio::test(start_paused = true)]
    async fn fails_fast_once_majority_is_out_of_reach() {
        let memory = MemoryNode::cluster(5);
        for m in &memory[..3] {
            m.set_down(true);
        }
        memory[4].set_stalled(true);
        let nodes = nodes(&memory);
        let keys = vec!["k".to_owned()];
        let started = Instant::now();
        let round = round(
            "acquire",
            &nodes,
            Duration::from_secs(60),
            Decide::Majority(3),
            |r| matches!(r, crate::backend::AcquireReply::Granted { .. }),
            |n| n.acquire(&keys, "t", Duration::from_secs(1), false, None),
        )
        .await;
        assert_eq!(round.successes, 0);
        assert_eq!(started.elapsed(), Duration::ZERO);
        let outcomes = round.outcomes(&nodes, |_| NodeOutcome::Granted);
        assert_eq!(
            outcomes.failed_nodes(),
            ["memory-0", "memory-1", "memory-2"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_count_against_the_majority_so_the_round_fails_fast() {
        let memory = MemoryNode::cluster(5);
        let nodes = nodes(&memory);
        let keys = vec!["k".to_owned()];
        let acquire = |n: &dyn Node, token: &str| {
            n.acquire(&keys, token, Duration::from_secs(10), false, None)
        };
        let granted = |r: &crate::backend::AcquireReply| {
            matches!(r, crate::backend::AcquireReply::Granted { .. })
        };
        // held on every node by someone else; then two nodes stall
        let held = round(
            "acquire",
            &nodes,
            Duration::from_secs(1),
            Decide::Majority(3),
            granted,
            |n| acquire(n, "other"),
        )
        .await;
        assert!(held.successes >= 3);
        memory[3].set_stalled(true);
        memory[4].set_stalled(true);
        let started = Instant::now();
        let refused = round(
            "acquire",
            &nodes,
            Duration::from_secs(60),
            Decide::Majority(3),
            granted,
            |n| acquire(n, "t"),
        )
        .await;
        assert_eq!(refused.successes, 0);
        // three refusals leave no majority: no wait for the stalled nodes
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn all_counts_every_answer_of_seven_nodes() {
        let memory = MemoryNode::cluster(7);
        for m in &memory[..3] {
            m.set_down(true);
        }
        memory[6].set_latency(Duration::from_millis(50));
        let nodes = nodes(&memory);
        let keys = vec!["k".to_owned()];
        let all = round(
            "extend",
            &nodes,
            Duration::from_secs(1),
            Decide::All,
            |_| true,
            |n| n.release(&keys, "t", None),
        )
        .await;
        // 3 failed and 3 answered at once; the slow seventh still counts
        assert_eq!(all.successes, 4);
    }

    /// `AllWithGrace` on 5 nodes set up by `set`: how long the round took
    /// and how many answered well.
    async fn graced_round(set: impl Fn(&[MemoryNode])) -> (Duration, usize) {
        let memory = MemoryNode::cluster(5);
        set(&memory);
        let nodes = nodes(&memory);
        let keys = vec!["k".to_owned()];
        let started = Instant::now();
        let graced = round(
            "extend",
            &nodes,
            Duration::from_secs(60),
            Decide::AllWithGrace,
            |_| true,
            |n| n.release(&keys, "t", None),
        )
        .await;
        (started.elapsed(), graced.successes)
    }

    #[tokio::test(start_paused = true)]
    async fn failures_at_once_do_not_cut_the_healthy_nodes_short() {
        // two down (tolerated of five): the three healthy ones all count,
        // the slowest 20 times slower than the first
        let (took, answered) = graced_round(|m| {
            m[0].set_down(true);
            m[1].set_down(true);
            m[2].set_latency(Duration::from_millis(1));
            m[3].set_latency(Duration::from_millis(5));
            m[4].set_latency(Duration::from_millis(20));
        })
        .await;
        assert_eq!((took, answered), (Duration::from_millis(20), 3));
    }

    #[tokio::test(start_paused = true)]
    async fn the_grace_starts_once_a_majority_answered_well() {
        // three answer well by 15 ms; the others get 15 ms + 1 ms more
        let (took, answered) = graced_round(|m| {
            m[0].set_latency(Duration::from_millis(5));
            m[1].set_latency(Duration::from_millis(10));
            m[2].set_latency(Duration::from_millis(15));
            m[3].set_latency(Duration::from_millis(20));
            m[4].set_stalled(true);
        })
        .await;
        assert_eq!((took, answered), (Duration::from_millis(31), 4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_that_can_no_longer_reach_a_majority_ends_at_once() {
        // a third node down: no majority can answer well, so the slow and
        // the stalled node are not waited for
        let (took, answered) = graced_round(|m| {
            m[0].set_down(true);
            m[1].set_down(true);
            m[2].set_latency(Duration::from_millis(10));
            m[3].set_stalled(true);
            m[4].set_down(true);
        })
        .await;
        assert_eq!((took, answered), (Duration::ZERO, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_node_counts_as_timed_out_after_node_timeout() {
        let memory = MemoryNode::cluster(3);
        memory[0].set_stalled(true);
        memory[1].set_stalled(true);
        let nodes = nodes(&memory);
        let keys = vec!["k".to_owned()];
        let started = Instant::now();
        let round = round(
            "release",
            &nodes,
            Duration::from_millis(80),
            Decide::Majority(2),
            |deleted| *deleted > 0,
            |n| n.release(&keys, "t", None),
        )
        .await;
        assert_eq!(started.elapsed(), Duration::from_millis(80));
        assert!(matches!(round.replies[0], Reply::TimedOut));
        assert_eq!(round.answered(), 1);
    }
}
