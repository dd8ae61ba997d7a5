//! How a primitive reads a decided round of its own script: granted on a
//! majority, blocked by a holder, or short of a quorum because nodes
//! failed. The mutex draws the same line between `Taken` and `NoQuorum`.

use crate::backend::ScriptValue;
use crate::client::Redlock;
use crate::error::{Error, NodeOutcome, Outcomes};
use crate::quorum::{Reply, Round};

/// One node's reply, read by the primitive.
#[derive(Debug)]
pub enum Answer<B> {
    /// The node granted.
    Granted,
    /// The node refused: `B` is in the way.
    Blocked(B),
    /// A reply the script never gives (another script under our keys?).
    Unexpected(String),
}

/// What a decided round means.
#[derive(Debug)]
pub enum Verdict<B> {
    /// A majority granted.
    Granted,
    /// Refused by holders: the first blocker any node reported, and every
    /// node's outcome.
    Blocked {
        /// The first blocker reported, in node order.
        first: B,
        /// Every node's answer.
        outcomes: Outcomes,
    },
    /// Too many nodes failed to decide anything: [`Error::NoQuorum`].
    NoQuorum(Error),
}

/// Reads `round`: granted when a majority granted; blocked while the
/// failed nodes alone could not have sunk it; else no quorum. `read`
/// parses a reply, `describe` turns a blocker into its node's outcome.
///
/// ```
/// use quorate_redlock::raw::quorum::{Answer, Verdict};
/// let answer: Answer<&str> = Answer::Blocked("writer");
/// assert!(matches!(answer, Answer::Blocked("writer")));
/// ```
pub fn verdict<B>(
    redlock: &Redlock,
    round: &Round<ScriptValue>,
    read: impl Fn(&ScriptValue) -> Answer<B>,
    describe: impl Fn(&B) -> NodeOutcome,
) -> Verdict<B> {
    let (n, quorum) = (redlock.nodes().len(), redlock.quorum());
    if round.successes >= quorum {
        return Verdict::Granted;
    }
    let outcomes = round.outcomes(redlock.nodes(), |v| match read(v) {
        Answer::Granted => NodeOutcome::Granted,
        Answer::Blocked(b) => describe(&b),
        Answer::Unexpected(e) => NodeOutcome::Error(crate::backend::NodeError::new(e)),
    });
    let mut first = None;
    let mut failed = 0;
    for reply in &round.replies {
        match reply {
            Reply::Answered(v) => match read(v) {
                Answer::Blocked(b) => {
                    first.get_or_insert(b);
                }
                Answer::Unexpected(_) => failed += 1,
                Answer::Granted => {}
            },
            Reply::Failed(_) | Reply::TimedOut => failed += 1,
            Reply::Pending => {}
        }
    }
    match first {
        Some(first) if failed <= n - quorum => Verdict::Blocked { first, outcomes },
        _ => Verdict::NoQuorum(Error::NoQuorum {
            granted: round.successes,
            nodes: n,
            quorum,
            outcomes,
        }),
    }
}

/// A round short of a majority as [`Error::NoQuorum`]: every node's
/// outcome named (an answer counts as granted; the caller decided it did
/// not make a majority).
pub fn no_quorum<T>(redlock: &Redlock, round: &Round<T>) -> Error {
    Error::NoQuorum {
        granted: round.answered(),
        nodes: redlock.nodes().len(),
        quorum: redlock.quorum(),
        outcomes: round.outcomes(redlock.nodes(), |_| NodeOutcome::Granted),
    }
}
