//! What a request needs: k of some candidates, a named resource, a key.

use std::collections::HashSet;
use std::fmt;

use crate::error::RequestError;

/// Tags of a candidate for usage reporting: `(tag, value)` pairs, such as
/// `("model", "T1000")`. The candidate's key is always tag `key`.
pub type Tags = Vec<(String, String)>;

/// In which order each node tries a requirement's candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CandidateOrder {
    /// A fresh random order for every attempt (the same on every node within
    /// an attempt), so that contending clients spread over the candidates
    /// instead of all wanting the first ones. The default.
    #[default]
    Random,
    /// The order given: earlier candidates are preferred.
    AsGiven,
}

/// "Need `k` of these candidates": any values with a key function (the
/// resource_locker `R(*devices, need=2, key_gen=...)`), a single named
/// resource, or a plain key.
///
/// ```
/// use quorate_pool::Requirement;
/// #[derive(Clone)]
/// struct Device { id: String, model: &'static str }
/// let devices = vec![Device { id: "d1".into(), model: "T1000" },
///                    Device { id: "d2".into(), model: "T800" }];
/// let two = Requirement::need(2, devices, |d| d.id.clone())
///     .tags(|d| vec![("model".into(), d.model.into())]);
/// assert_eq!(two.need_count(), 2);
/// let printer = Requirement::key("printer");
/// assert_eq!(printer.keys(), ["printer"]);
/// ```
///
/// One request holds one type: to mix kinds (devices, licences, plain
/// names) in one all-or-nothing lock, [`map`](Self::map) each requirement
/// into a common enum.
///
/// ```
/// use quorate_pool::Requirement;
/// #[derive(Clone, Debug)]
/// enum Resource { Gpu(u32), Licence(&'static str), Named(String) }
/// let request: Vec<Requirement<Resource>> = vec![
///     Requirement::need(2, [0u32, 1, 2, 3], |g| format!("gpu-{g}")).map(Resource::Gpu),
///     Requirement::need(1, ["matlab-a", "matlab-b"], |l| l.to_string()).map(Resource::Licence),
///     Requirement::key("printer").map(Resource::Named),
/// ];
/// assert_eq!(request[2].keys(), ["printer"]);
/// ```
#[derive(Clone)]
pub struct Requirement<T> {
    pub(crate) candidates: Vec<T>,
    pub(crate) keys: Vec<String>,
    pub(crate) need: usize,
    pub(crate) order: CandidateOrder,
    /// Each candidate's tags, in candidate order, when [`tags`](Self::tags) was given.
    pub(crate) tags: Option<Vec<Tags>>,
}

impl<T> Requirement<T> {
    /// Need `k` of `candidates`, each named by `key`. Checked when the
    /// request is made: `k` ≥ 1, `k` ≤ the number of candidates, keys
    /// non-empty and unique within the whole request.
    pub fn need<I, K>(k: usize, candidates: I, key: K) -> Self
    where
        I: IntoIterator<Item = T>,
        K: Fn(&T) -> String,
    {
        let candidates: Vec<T> = candidates.into_iter().collect();
        let keys = candidates.iter().map(key).collect();
        Requirement {
            candidates,
            keys,
            need: k,
            order: CandidateOrder::default(),
            tags: None,
        }
    }

    /// One named resource carrying `value` (a single candidate, need 1):
    /// resource_locker's `P('this one thing')` alongside other values.
    pub fn named(key: impl Into<String>, value: T) -> Self {
        Requirement {
            candidates: vec![value],
            keys: vec![key.into()],
            need: 1,
            order: CandidateOrder::AsGiven,
            tags: None,
        }
    }

    /// The order in which nodes try the candidates. Default:
    /// [`CandidateOrder::Random`].
    pub fn order(mut self, order: CandidateOrder) -> Self {
        self.order = order;
        self
    }

    /// Tags of each candidate for usage reporting (besides `key`), read
    /// from each candidate now. Default: none.
    pub fn tags(mut self, tags: impl Fn(&T) -> Tags) -> Self {
        self.tags = Some(self.candidates.iter().map(tags).collect());
        self
    }

    /// The same requirement over other values: each candidate through `f`
    /// (keys, need, order and tags stay), e.g. into an enum shared by every
    /// requirement of a request that mixes kinds.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Requirement<U> {
        Requirement {
            candidates: self.candidates.into_iter().map(f).collect(),
            keys: self.keys,
            need: self.need,
            order: self.order,
            tags: self.tags,
        }
    }

    /// How many candidates this requirement needs.
    pub fn need_count(&self) -> usize {
        self.need
    }

    /// The candidates' keys, in the order given.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The candidates, in the order given.
    pub fn candidates(&self) -> &[T] {
        &self.candidates
    }

    /// Every tag of candidate `position`, `key` first.
    pub(crate) fn tags_of(&self, position: usize) -> Tags {
        let mut tags = vec![("key".to_owned(), self.keys[position].clone())];
        if let Some(all) = &self.tags {
            tags.extend(all[position].iter().cloned());
        }
        tags
    }
}

impl Requirement<String> {
    /// A plain key that must be held (need 1); the grant hands the key back.
    pub fn key(key: impl Into<String>) -> Self {
        let key = key.into();
        Requirement::named(key.clone(), key)
    }
}

impl<T: fmt::Debug> fmt::Debug for Requirement<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Requirement")
            .field("need", &self.need)
            .field("keys", &self.keys)
            .field("order", &self.order)
            .finish_non_exhaustive()
    }
}

/// Checks a whole request: at least one requirement, each needing 1..=its
/// candidate count, keys non-empty and unique across the request.
pub(crate) fn validate<T>(requirements: &[Requirement<T>]) -> Result<(), RequestError> {
    if requirements.is_empty() {
        return Err(RequestError::NoRequirements);
    }
    let mut seen = HashSet::new();
    for (r, requirement) in requirements.iter().enumerate() {
        let candidates = requirement.keys.len();
        if candidates == 0 {
            return Err(RequestError::NoCandidates { requirement: r });
        }
        if requirement.need == 0 {
            return Err(RequestError::NeedZero { requirement: r });
        }
        if requirement.need > candidates {
            return Err(RequestError::NeedTooMany {
                requirement: r,
                need: requirement.need,
                candidates,
            });
        }
        for (position, key) in requirement.keys.iter().enumerate() {
            if key.is_empty() {
                return Err(RequestError::EmptyKey {
                    requirement: r,
                    position,
                });
            }
            if !seen.insert(key.as_str()) {
                return Err(RequestError::DuplicateKey { key: key.clone() });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_requests_get_typed_errors() {
        let none: Vec<Requirement<String>> = vec![];
        assert_eq!(validate(&none), Err(RequestError::NoRequirements));
        let zero = Requirement::need(0, ["a".to_owned()], Clone::clone);
        assert_eq!(
            validate(&[zero]),
            Err(RequestError::NeedZero { requirement: 0 })
        );
        let too_many = Requirement::need(3, ["a".to_owned(), "b".to_owned()], Clone::clone);
        assert_eq!(
            validate(&[Requirement::key("x"), too_many]),
            Err(RequestError::NeedTooMany {
                requirement: 1,
                need: 3,
                candidates: 2
            })
        );
        let empty: Requirement<String> = Requirement::need(1, Vec::<String>::new(), Clone::clone);
        assert_eq!(
            validate(&[empty]),
            Err(RequestError::NoCandidates { requirement: 0 })
        );
        let dup = Requirement::need(1, ["a".to_owned(), "b".to_owned()], Clone::clone);
        assert_eq!(
            validate(&[dup, Requirement::key("b")]),
            Err(RequestError::DuplicateKey { key: "b".into() })
        );
        assert_eq!(
            validate(&[Requirement::key("")]),
            Err(RequestError::EmptyKey {
                requirement: 0,
                position: 0
            })
        );
        assert_eq!(validate(&[Requirement::key("ok")]), Ok(()));
    }

    #[test]
    fn tags_start_with_the_key() {
        let r = Requirement::need(1, [7u32], |n| format!("dev{n}"))
            .tags(|n| vec![("model".into(), format!("m{n}"))]);
        assert_eq!(
            r.tags_of(0),
            vec![
                ("key".to_owned(), "dev7".to_owned()),
                ("model".to_owned(), "m7".to_owned())
            ]
        );
    }
}
