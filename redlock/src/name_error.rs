//! Names of pools, semaphores, rate limits, read-write locks, latches and
//! trees: one error for every primitive built on this crate.

/// A primitive's name that cannot be used; `kind` says which primitive
/// (`"pool"`, `"read-write lock"`, `"latch"`, `"tree"`, …).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("the {kind}'s name is empty")]
    Empty {
        /// Which primitive.
        kind: &'static str,
    },
    /// The name contains a brace: names become hash tags (`{name}`).
    #[error("the {kind}'s name `{name}` contains a brace: names become hash tags")]
    Brace {
        /// Which primitive.
        kind: &'static str,
        /// The name given.
        name: String,
    },
    /// The name is longer than the primitive allows.
    #[error("the {kind}'s name is {len} bytes long, more than {max}")]
    TooLong {
        /// Which primitive.
        kind: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The longest allowed.
        max: usize,
    },
}

impl NameError {
    /// `Ok` if `name` can name a `kind`: not empty, at most `max` bytes,
    /// and without braces unless `braces_allowed` (the primitive escapes
    /// them itself). For primitive authors (see [`raw`](crate::raw)).
    pub fn check(
        kind: &'static str,
        name: &str,
        braces_allowed: bool,
        max: Option<usize>,
    ) -> Result<(), NameError> {
        if name.is_empty() {
            return Err(NameError::Empty { kind });
        }
        if !braces_allowed && name.contains(['{', '}']) {
            return Err(NameError::Brace {
                kind,
                name: name.to_owned(),
            });
        }
        match max {
            Some(max) if name.len() > max => Err(NameError::TooLong {
                kind,
                len: name.len(),
                max,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_problem_names_the_primitive() {
        assert_eq!(
            NameError::check("pool", "", false, None),
            Err(NameError::Empty { kind: "pool" })
        );
        let brace = NameError::check("latch", "a{b", false, None).expect_err("brace");
        assert_eq!(
            brace.to_string(),
            "the latch's name `a{b` contains a brace: names become hash tags"
        );
        assert_eq!(NameError::check("tree", "a{b", true, Some(8)), Ok(()));
        assert!(matches!(
            NameError::check("tree", "abcdefghi", true, Some(8)),
            Err(NameError::TooLong { len: 9, max: 8, .. })
        ));
    }
}
