//! Where a read-write lock lives on each server. For a lock named N (a
//! hash tag, so every key of one lock is in one Cluster slot):
//!
//! - `quorate:rw:{N}:w`: the writer key (the writer's token, its ttl);
//! - `quorate:rw:{N}:r:<id>`: one key per reader (its token, its ttl), `id`
//!   a random name that is not the token (errors show it);
//! - `quorate:rw:{N}:readers`: the set of reader ids;
//! - `quorate:rw:{N}:i:<member>`: one key per waiting writer (lives
//!   `waiter_ttl` unless the writer tries again);
//! - `quorate:rw:{N}:intents`: the set of waiting writers;
//! - `quorate:rw:{N}:fence`: the fenced writers' counter.

/// The keys of one read-write lock.
#[derive(Clone, Debug)]
pub(crate) struct RwKeys {
    prefix: String,
}

impl RwKeys {
    /// The keys of the lock called `name` (non-empty, without braces),
    /// after the Redlock's `namespace`.
    pub(crate) fn new(namespace: &str, name: &str) -> RwKeys {
        RwKeys {
            prefix: format!("{namespace}quorate:rw:{{{name}}}:"),
        }
    }

    /// What every key of this lock starts with.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn writer(&self) -> String {
        format!("{}w", self.prefix)
    }

    pub(crate) fn readers(&self) -> String {
        format!("{}readers", self.prefix)
    }

    /// The writers' fence counter (no ttl: it only grows).
    pub(crate) fn fence(&self) -> String {
        format!("{}fence", self.prefix)
    }

    pub(crate) fn intents(&self) -> String {
        format!("{}intents", self.prefix)
    }

    pub(crate) fn reader(&self, id: &str) -> String {
        format!("{}r:{id}", self.prefix)
    }

    pub(crate) fn intent(&self, member: &str) -> String {
        format!("{}i:{member}", self.prefix)
    }

    /// A key named in a script's refusal (the part after the prefix).
    pub(crate) fn full(&self, short: &str) -> String {
        format!("{}{short}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shares_the_hash_tag() {
        let keys = RwKeys::new("", "ledger");
        for key in [
            keys.writer(),
            keys.readers(),
            keys.intents(),
            keys.reader("ab"),
            keys.intent("cd"),
            keys.full("r:ab"),
        ] {
            assert!(key.starts_with("quorate:rw:{ledger}:"), "{key}");
        }
        assert_eq!(keys.full("r:ab"), keys.reader("ab"));
    }
}
