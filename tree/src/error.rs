//! Why a tree lock could not be had, and what stood in the way.

use std::fmt;
use std::time::Duration;

use quorate_redlock::{Holder, Outcomes};

use crate::path::{PathError, TreePath};

/// Where the conflicting lock sits, seen from the node asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Relation {
    /// An ancestor of the node is locked.
    Ancestor,
    /// The node itself is locked.
    Same,
    /// A descendant of the node is locked.
    Descendant,
}

impl Relation {
    /// `ancestor`, `self` or `descendant` (also the metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Ancestor => "ancestor",
            Relation::Same => "self",
            Relation::Descendant => "descendant",
        }
    }

    pub(crate) fn parse(bytes: &[u8]) -> Option<Relation> {
        match bytes {
            b"ancestor" => Some(Relation::Ancestor),
            b"self" => Some(Relation::Same),
            b"descendant" => Some(Relation::Descendant),
            _ => None,
        }
    }
}

/// A lock that blocks the node asked for, as a server reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The locked node.
    pub path: TreePath,
    /// Where it sits relative to the node asked for.
    pub relation: Relation,
    /// Its remaining ttl on the reporting server; `None`: no expiry.
    pub remaining: Option<Duration>,
    /// Its holder's owner id, when the holder gave one.
    pub owner: Option<String>,
    /// The client holding it (its id and the description it recorded),
    /// when the server could name it.
    pub holder: Option<Holder>,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.relation {
            Relation::Same => f.write_str("locked itself")?,
            Relation::Ancestor => write!(f, "its ancestor {} is locked", self.path)?,
            Relation::Descendant => write!(f, "its descendant {} is locked", self.path)?,
        }
        if let Some(owner) = &self.owner {
            write!(f, " by {owner:?}")?;
        }
        if let Some(holder) = &self.holder {
            write!(f, " (holder: {holder})")?;
        }
        match self.remaining {
            Some(ttl) => write!(f, " for {} ms more", ttl.as_millis()),
            None => f.write_str(" with no expiry"),
        }
    }
}

/// Why a tree lock call failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// Another lock on the node, an ancestor or a descendant kept a
    /// majority out of reach. `conflict` is the first one reported;
    /// `outcomes` has every node's answer.
    #[error("{path} is not available: {conflict} ({outcomes})")]
    Conflict {
        /// The node asked for.
        path: TreePath,
        /// What blocks it (boxed: it keeps every other result small).
        conflict: Box<Conflict>,
        /// Every node's answer in the last round.
        outcomes: Outcomes,
    },
    /// The path was refused before anything was sent.
    #[error("invalid tree path: {0}")]
    InvalidPath(#[from] PathError),
    /// A tree name that is empty or longer than
    /// [`MAX_TREE_NAME_LEN`](crate::MAX_TREE_NAME_LEN) bytes (braces are
    /// escaped, so allowed).
    #[error(transparent)]
    Name(#[from] quorate_redlock::NameError),
    /// An owner id that is empty or longer than
    /// [`MAX_OWNER_LEN`](crate::MAX_OWNER_LEN) bytes.
    #[error("invalid owner id: must be 1 to {max} bytes, got {len}")]
    InvalidOwner {
        /// Its length in bytes.
        len: usize,
        /// [`MAX_OWNER_LEN`](crate::MAX_OWNER_LEN).
        max: usize,
    },
    /// Any other failure, as quorate-redlock reports it: too few nodes
    /// answered ([`NoQuorum`](quorate_redlock::Error::NoQuorum)), the grant
    /// came too late to be valid ([`Expired`](quorate_redlock::Error::Expired)),
    /// bad options ([`InvalidConfig`](quorate_redlock::Error::InvalidConfig)),
    /// or, in [`run`](crate::TreeLock::run), a lock lost while the work ran.
    #[error(transparent)]
    Lock(#[from] quorate_redlock::Error),
}

impl TreeError {
    /// The conflict, when this is one.
    pub fn conflict(&self) -> Option<&Conflict> {
        match self {
            TreeError::Conflict { conflict, .. } => Some(conflict),
            _ => None,
        }
    }

    /// Every node's outcome, where the error came from a round.
    pub fn outcomes(&self) -> Option<&Outcomes> {
        match self {
            TreeError::Conflict { outcomes, .. } => Some(outcomes),
            TreeError::Lock(error) => error.outcomes(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_names_the_blocking_path_owner_and_ttl() {
        let conflict = Conflict {
            path: TreePath::new(["A"]).expect("path"),
            relation: Relation::Ancestor,
            remaining: Some(Duration::from_millis(1500)),
            owner: Some("worker-7".into()),
            holder: Some(Holder {
                client: "00000000000000c7".into(),
                owner: Some("indexer (host h, pid 7, id x)".into()),
            }),
        };
        let error = TreeError::Conflict {
            path: TreePath::new(["A", "B", "D"]).expect("path"),
            conflict: Box::new(conflict),
            outcomes: Outcomes::default(),
        };
        assert_eq!(
            error.to_string(),
            r#"["A", "B", "D"] is not available: its ancestor ["A"] is locked by "worker-7" (holder: indexer (host h, pid 7, id x) [client 00000000000000c7]) for 1500 ms more (no node outcomes)"#
        );
        assert_eq!(
            error.conflict().map(|c| c.relation),
            Some(Relation::Ancestor)
        );
    }

    #[test]
    fn relations_round_trip_through_their_names() {
        for r in [Relation::Ancestor, Relation::Same, Relation::Descendant] {
            assert_eq!(Relation::parse(r.as_str().as_bytes()), Some(r));
        }
        assert_eq!(Relation::parse(b"cousin"), None);
    }
}
