//! A node's name: its path from the root, one byte string per level.

use std::fmt;

/// The deepest path accepted (segments).
pub const MAX_DEPTH: usize = 32;
/// The longest segment accepted, in bytes.
pub const MAX_SEGMENT_LEN: usize = 512;
/// The most bytes all segments of one path may hold together. With the
/// depth, it bounds what one lock sends: every ancestor's key is part of it.
pub const MAX_PATH_LEN: usize = 2048;

/// Why a path was refused; nothing was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// A path with no segment: there is no root node to lock.
    #[error("the path is empty: name a node by at least one segment")]
    Empty,
    /// A segment of zero bytes.
    #[error("segment #{index} is empty")]
    EmptySegment {
        /// Its position, from 0.
        index: usize,
    },
    /// More than [`MAX_DEPTH`] segments.
    #[error("the path has {depth} segments; at most {max} are supported")]
    TooDeep {
        /// The segments given.
        depth: usize,
        /// [`MAX_DEPTH`].
        max: usize,
    },
    /// A segment longer than [`MAX_SEGMENT_LEN`] bytes.
    #[error("segment #{index} is {len} bytes long; at most {max} are supported")]
    SegmentTooLong {
        /// Its position, from 0.
        index: usize,
        /// Its length in bytes.
        len: usize,
        /// [`MAX_SEGMENT_LEN`].
        max: usize,
    },
    /// More than [`MAX_PATH_LEN`] bytes in all segments together.
    #[error("the path holds {len} bytes; at most {max} are supported")]
    TooLong {
        /// The bytes of all segments.
        len: usize,
        /// [`MAX_PATH_LEN`].
        max: usize,
    },
}

/// A node of the tree, named by its path from the root: `[A, B, D]` is D,
/// child of B, child of A. Segments are arbitrary non-empty byte strings
/// (UTF-8 or not; `/`, braces and any other byte are fine: keys escape
/// them), within [`MAX_DEPTH`], [`MAX_SEGMENT_LEN`] and [`MAX_PATH_LEN`].
///
/// ```
/// use quorate_tree::TreePath;
/// let d = TreePath::new(["A", "B", "D"])?;
/// let a = TreePath::new(["A"])?;
/// assert!(a.is_ancestor_of(&d));
/// assert!(d.conflicts_with(&a));
/// assert!(!d.conflicts_with(&TreePath::new(["A", "C"])?));
/// // a separator inside a segment is just a byte: ["a/b"] is not ["a", "b"]
/// assert_ne!(TreePath::new(["a/b"])?, TreePath::new(["a", "b"])?);
/// assert_eq!(d.to_string(), r#"["A", "B", "D"]"#);
/// # Ok::<(), quorate_tree::PathError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TreePath {
    segments: Vec<Vec<u8>>,
}

impl TreePath {
    /// A path from its segments, root first.
    ///
    /// Errors: [`PathError`] for no segment, an empty segment, or a path
    /// beyond the limits.
    pub fn new<I, S>(segments: I) -> Result<TreePath, PathError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let segments: Vec<Vec<u8>> = segments.into_iter().map(|s| s.as_ref().to_vec()).collect();
        validate(&segments)?;
        Ok(TreePath { segments })
    }

    /// The segments, root first.
    pub fn segments(&self) -> &[Vec<u8>] {
        &self.segments
    }

    /// The number of segments (1 for a child of the root).
    pub fn depth(&self) -> usize {
        self.segments.len()
    }

    /// The parent node, `None` for a top-level node.
    pub fn parent(&self) -> Option<TreePath> {
        (self.segments.len() > 1).then(|| TreePath {
            segments: self.segments[..self.segments.len() - 1].to_vec(),
        })
    }

    /// The child named `segment`.
    ///
    /// Errors: as [`new`](Self::new), for the longer path.
    pub fn child(&self, segment: impl AsRef<[u8]>) -> Result<TreePath, PathError> {
        let mut segments = self.segments.clone();
        segments.push(segment.as_ref().to_vec());
        validate(&segments)?;
        Ok(TreePath { segments })
    }

    /// Whether `self` is a strict ancestor of `other`.
    pub fn is_ancestor_of(&self, other: &TreePath) -> bool {
        self.segments.len() < other.segments.len() && other.segments.starts_with(&self.segments)
    }

    /// Whether locks on `self` and `other` exclude each other: the same
    /// node, or one an ancestor of the other.
    pub fn conflicts_with(&self, other: &TreePath) -> bool {
        self == other || self.is_ancestor_of(other) || other.is_ancestor_of(self)
    }

    /// The path of every prefix, root first, ending with `self`.
    pub(crate) fn prefixes(&self) -> impl Iterator<Item = &[Vec<u8>]> {
        (1..=self.segments.len()).map(|n| &self.segments[..n])
    }

    /// A path decoded from a server's reply; the limits were checked when it
    /// was locked (possibly by another version), so only emptiness is.
    pub(crate) fn from_parts(segments: Vec<Vec<u8>>) -> Option<TreePath> {
        (!segments.is_empty() && segments.iter().all(|s| !s.is_empty()))
            .then_some(TreePath { segments })
    }
}

fn validate(segments: &[Vec<u8>]) -> Result<(), PathError> {
    if segments.is_empty() {
        return Err(PathError::Empty);
    }
    if segments.len() > MAX_DEPTH {
        return Err(PathError::TooDeep {
            depth: segments.len(),
            max: MAX_DEPTH,
        });
    }
    let mut total = 0;
    for (index, segment) in segments.iter().enumerate() {
        if segment.is_empty() {
            return Err(PathError::EmptySegment { index });
        }
        if segment.len() > MAX_SEGMENT_LEN {
            return Err(PathError::SegmentTooLong {
                index,
                len: segment.len(),
                max: MAX_SEGMENT_LEN,
            });
        }
        total += segment.len();
    }
    if total > MAX_PATH_LEN {
        return Err(PathError::TooLong {
            len: total,
            max: MAX_PATH_LEN,
        });
    }
    Ok(())
}

/// `["A", "B"]`: quoted, so that `["a/b"]` and `["a", "b"]` read apart;
/// a segment that is not UTF-8 prints as `b"\xff"`.
impl fmt::Display for TreePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, segment) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match std::str::from_utf8(segment) {
                Ok(s) => write!(f, "{s:?}")?,
                Err(_) => write!(f, "b\"{}\"", segment.escape_ascii())?,
            }
        }
        f.write_str("]")
    }
}

impl fmt::Debug for TreePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TreePath{self}")
    }
}

/// What the lock calls accept as a path: a [`TreePath`], or segments as an
/// array, slice or `Vec` of anything byte-like (`&str`, `String`,
/// `&[u8]`, `Vec<u8>`), validated on use.
pub trait IntoTreePath {
    /// The validated path.
    fn into_tree_path(self) -> Result<TreePath, PathError>;
}

impl IntoTreePath for TreePath {
    fn into_tree_path(self) -> Result<TreePath, PathError> {
        Ok(self)
    }
}

impl IntoTreePath for &TreePath {
    fn into_tree_path(self) -> Result<TreePath, PathError> {
        Ok(self.clone())
    }
}

impl<S: AsRef<[u8]>, const N: usize> IntoTreePath for [S; N] {
    fn into_tree_path(self) -> Result<TreePath, PathError> {
        TreePath::new(self)
    }
}

impl<S: AsRef<[u8]>> IntoTreePath for &[S] {
    fn into_tree_path(self) -> Result<TreePath, PathError> {
        TreePath::new(self)
    }
}

impl<S: AsRef<[u8]>> IntoTreePath for Vec<S> {
    fn into_tree_path(self) -> Result<TreePath, PathError> {
        TreePath::new(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_paths_are_typed_errors() {
        assert_eq!(TreePath::new(Vec::<&str>::new()), Err(PathError::Empty));
        assert_eq!(
            TreePath::new(["a", "", "c"]),
            Err(PathError::EmptySegment { index: 1 })
        );
        let deep = vec!["x"; MAX_DEPTH + 1];
        assert_eq!(
            TreePath::new(&deep[..]),
            Err(PathError::TooDeep {
                depth: MAX_DEPTH + 1,
                max: MAX_DEPTH
            })
        );
        assert!(TreePath::new(&deep[..MAX_DEPTH]).is_ok());
        let long = vec![b'a'; MAX_SEGMENT_LEN + 1];
        assert_eq!(
            TreePath::new([&b"ok"[..], &long]),
            Err(PathError::SegmentTooLong {
                index: 1,
                len: MAX_SEGMENT_LEN + 1,
                max: MAX_SEGMENT_LEN
            })
        );
        let wide = vec![vec![b'a'; MAX_SEGMENT_LEN]; MAX_PATH_LEN / MAX_SEGMENT_LEN + 1];
        assert!(matches!(
            TreePath::new(wide),
            Err(PathError::TooLong { .. })
        ));
        assert_eq!(
            TreePath::new(["a"]).and_then(|p| p.child("")),
            Err(PathError::EmptySegment { index: 1 })
        );
    }

    #[test]
    fn relations() {
        let p = |s: &[&str]| TreePath::new(s).expect("path");
        let (a, ab, abd, ac) = (
            p(&["A"]),
            p(&["A", "B"]),
            p(&["A", "B", "D"]),
            p(&["A", "C"]),
        );
        assert!(a.is_ancestor_of(&abd) && ab.is_ancestor_of(&abd));
        assert!(!abd.is_ancestor_of(&a) && !a.is_ancestor_of(&a));
        assert!(a.conflicts_with(&abd) && abd.conflicts_with(&a) && ab.conflicts_with(&ab));
        assert!(!ab.conflicts_with(&ac) && !abd.conflicts_with(&ac));
        // a prefix of a segment is not an ancestor
        assert!(!p(&["A"]).conflicts_with(&p(&["AB"])));
        assert_eq!(abd.parent(), Some(ab.clone()));
        assert_eq!(a.parent(), None);
        assert_eq!(ab.child("D"), Ok(abd.clone()));
        assert_eq!(abd.prefixes().count(), 3);
    }

    #[test]
    fn display_tells_separators_and_bytes_apart() {
        let p = TreePath::new([&b"a/b"[..], b"\xff{x}", b"\"q\""]).expect("path");
        assert_eq!(p.to_string(), r#"["a/b", b"\xff{x}", "\"q\""]"#);
        assert_eq!(format!("{p:?}"), r#"TreePath["a/b", b"\xff{x}", "\"q\""]"#);
    }

    #[test]
    fn every_byte_like_input_is_a_path() {
        let expected = TreePath::new(["a", "b"]).expect("path");
        assert_eq!(["a", "b"].into_tree_path().as_ref(), Ok(&expected));
        assert_eq!(
            vec![b"a".to_vec(), b"b".to_vec()].into_tree_path().as_ref(),
            Ok(&expected)
        );
        let slice: &[String] = &["a".to_owned(), "b".to_owned()];
        assert_eq!(slice.into_tree_path().as_ref(), Ok(&expected));
        assert_eq!((&expected).into_tree_path().as_ref(), Ok(&expected));
    }
}
