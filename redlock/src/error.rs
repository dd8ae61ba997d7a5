//! Errors: what went wrong, and on which node.

use std::fmt;
use std::time::Duration;

use crate::backend::holder::Holder;

/// What one node answered in one quorum round.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeOutcome {
    /// The node did what was asked (granted, released, extended).
    Granted,
    /// Another holder has the key (`resource`); `remaining` is the holder's
    /// ttl on this node, `None` when the key has no expiry.
    Taken {
        /// The resource that was taken (the first one found, for several).
        resource: String,
        /// The holder's remaining ttl on this node.
        remaining: Option<Duration>,
        /// Who holds it on this node (`None`: claimed for or queued behind
        /// a waiter, or not a quorate token).
        holder: Option<Holder>,
    },
    /// The node answered, but not with the lock: for a release or extend,
    /// the key no longer held our token.
    NotHeld,
    /// The node lost its data (restart without persistence, `FLUSHALL`,
    /// failover to an empty replica) and refuses to vote for `remaining`
    /// more, until every lease it may have forgotten has expired.
    Quarantined {
        /// How long the quarantine lasts from this answer.
        remaining: Duration,
    },
    /// The request failed: connection refused, reset, script error, auth…
    /// (the client library's error is its source).
    Error(crate::backend::NodeError),
    /// No answer within the per-node timeout.
    TimedOut,
    /// The round was decided before this node answered.
    Pending,
}

impl fmt::Display for NodeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeOutcome::Granted => f.write_str("granted"),
            NodeOutcome::Taken {
                resource,
                remaining,
                holder,
            } => {
                write!(f, "`{resource}` taken")?;
                if let Some(holder) = holder {
                    write!(f, " by client {}", holder.client)?;
                }
                match remaining {
                    Some(ttl) => write!(f, " for {} ms more", ttl.as_millis()),
                    None => f.write_str(" with no expiry"),
                }
            }
            NodeOutcome::NotHeld => f.write_str("not held by us"),
            NodeOutcome::Quarantined { remaining } => write!(
                f,
                "quarantined for {:.1} s more (it lost its data; it votes again once every \
                 lease it may have forgotten has expired)",
                remaining.as_secs_f64()
            ),
            NodeOutcome::Error(e) => write!(f, "error: {e}"),
            NodeOutcome::TimedOut => f.write_str("timed out"),
            NodeOutcome::Pending => f.write_str("not waited for (the round was decided first)"),
        }
    }
}

/// One node's outcome, with the node's name (`host:port`, never credentials).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeReport {
    /// The node, as `host:port` or the name its backend gave it.
    pub node: String,
    /// What it answered.
    pub outcome: NodeOutcome,
}

/// Every node's outcome in one round, printable as `a: granted; b: timed out`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcomes(pub Vec<NodeReport>);

impl Outcomes {
    /// Nodes whose outcome matches `pred`, by name.
    pub fn nodes_where(&self, pred: impl Fn(&NodeOutcome) -> bool) -> Vec<&str> {
        self.0
            .iter()
            .filter(|r| pred(&r.outcome))
            .map(|r| r.node.as_str())
            .collect()
    }

    /// The holder named by the most nodes that refused: who has the lock
    /// (ties go to the first node's). `None` when no refusing node could
    /// name one.
    pub fn holder(&self) -> Option<&Holder> {
        let named: Vec<&Holder> = self
            .0
            .iter()
            .filter_map(|r| match &r.outcome {
                NodeOutcome::Taken {
                    holder: Some(h), ..
                } => Some(h),
                _ => None,
            })
            .collect();
        let votes = |h: &Holder| named.iter().filter(|o| o.client == h.client).count();
        let mut best: Option<&Holder> = None;
        for h in &named {
            if best.is_none_or(|b| votes(h) > votes(b)) {
                best = Some(h);
            }
        }
        best
    }

    /// Nodes that failed (error, timeout or quarantine), by name.
    pub fn failed_nodes(&self) -> Vec<&str> {
        self.nodes_where(|o| {
            matches!(
                o,
                NodeOutcome::Error(_) | NodeOutcome::TimedOut | NodeOutcome::Quarantined { .. }
            )
        })
    }
}

impl fmt::Display for Outcomes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no node outcomes");
        }
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", r.node, r.outcome)?;
        }
        Ok(())
    }
}

pub use crate::config_error::ConfigError;

/// Why a lock, extend or release call failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad options or input; nothing was sent.
    #[error("invalid configuration: {0}")]
    InvalidConfig(#[from] ConfigError),
    /// The client could not be built (for `?` in functions that connect
    /// and lock).
    #[error("cannot connect: {0}")]
    Connect(#[from] crate::connect_error::ConnectError),
    /// Another holder has the lock on enough nodes that a majority is out of
    /// reach. `outcomes` names the holders' nodes and their remaining ttls;
    /// it is empty when the deadline passed while another task of this
    /// process was first in line (no round was sent).
    #[error(
        "`{resource}` is taken{} ({})",
        taken_by(outcomes),
        taken_detail(outcomes)
    )]
    Taken {
        /// The (first) resource found taken.
        resource: String,
        /// Every node's answer in the last round.
        outcomes: Outcomes,
    },
    /// Too many nodes failed or timed out to reach a majority.
    #[error("no quorum: {granted} of {nodes} nodes granted, {quorum} needed ({outcomes})")]
    NoQuorum {
        /// Nodes that granted.
        granted: usize,
        /// Nodes in the Redlock.
        nodes: usize,
        /// The majority needed.
        quorum: usize,
        /// Every node's answer in the last round.
        outcomes: Outcomes,
    },
    /// The calling task already holds `resource` through a guard it
    /// acquired from this client: quorate's locks are not reentrant, and
    /// waiting would only wait for itself (see
    /// [`LockOptions::reentry_check`](crate::LockOptions::reentry_check)).
    /// Nothing was sent.
    #[error(
        "`{resource}` is already held by a guard this task acquired: quorate locks are not \
         reentrant (release the guard first, or pass it on instead of locking again)"
    )]
    Reentrant {
        /// The resource held.
        resource: String,
    },
    /// The lease ran out: on extend, before the call; on acquire, the round
    /// took so long that the grant had no validity left (and was undone).
    #[error("the lease expired")]
    Expired,
    /// The lease still had validity locally, but a majority of nodes no
    /// longer hold our token (keys lost on restart, deleted, or taken over),
    /// or auto-extension could not reach a majority in time. `outcomes` is
    /// empty when the watchdog found it (it logs the per-node counts at warn).
    #[error("the lock was lost: a majority of nodes no longer hold it ({outcomes})")]
    Lost {
        /// Every node's answer in the round that found the lock gone.
        outcomes: Outcomes,
    },
}

/// ` by <holder>`, when the nodes named one.
fn taken_by(outcomes: &Outcomes) -> String {
    outcomes
        .holder()
        .map(|h| format!(" by {h}"))
        .unwrap_or_default()
}

fn taken_detail(outcomes: &Outcomes) -> String {
    if outcomes.0.is_empty() {
        "another task of this process is first in line".to_owned()
    } else {
        outcomes.to_string()
    }
}

impl Error {
    /// Who holds the lock, for [`Error::Taken`]: the holder most refusing
    /// nodes named ([`Outcomes::holder`]).
    pub fn holder(&self) -> Option<&Holder> {
        match self {
            Error::Taken { outcomes, .. } => outcomes.holder(),
            _ => None,
        }
    }

    /// Every node's outcome, where the error came from a round.
    pub fn outcomes(&self) -> Option<&Outcomes> {
        match self {
            Error::Taken { outcomes, .. }
            | Error::NoQuorum { outcomes, .. }
            | Error::Lost { outcomes } => Some(outcomes),
            Error::InvalidConfig(_)
            | Error::Connect(_)
            | Error::Reentrant { .. }
            | Error::Expired => None,
        }
    }

    /// Whether a later call may succeed without a change to the program or
    /// its configuration: the lock was taken, too few nodes answered, the
    /// lease ran out or was lost (lock again), the servers could not be
    /// reached. Bad input and a reentrant lock are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Taken { .. } | Error::NoQuorum { .. } | Error::Expired | Error::Lost { .. } => {
                true
            }
            Error::Connect(connect) => connect.is_retryable(),
            Error::InvalidConfig(_) | Error::Reentrant { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect_error::ConnectError;

    #[test]
    fn retry_later_is_told_from_fix_the_program() {
        let outcomes = Outcomes(Vec::new());
        let taken = Error::Taken {
            resource: "r".into(),
            outcomes: outcomes.clone(),
        };
        let unreachable = ConnectError::Unreachable {
            reachable: 0,
            nodes: 3,
            quorum: 2,
            waited: Duration::from_secs(1),
            problems: Vec::new(),
        };
        for retryable in [
            taken,
            Error::Expired,
            Error::Lost { outcomes },
            unreachable.into(),
        ] {
            assert!(retryable.is_retryable(), "{retryable}");
        }
        let config = Error::from(ConnectError::from(ConfigError::NoNodes));
        for fix in [
            config,
            ConfigError::ZeroTtl.into(),
            Error::Reentrant {
                resource: "r".into(),
            },
        ] {
            assert!(!fix.is_retryable(), "{fix}");
        }
    }
}
