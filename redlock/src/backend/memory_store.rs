//! The keyspace of a [`MemoryNode`](super::MemoryNode), with the handful of
//! Redis commands the primitives' scripts use, so that each script can have
//! a native twin that runs on memory nodes ([`NodeScript::emulated`]).
//!
//! Semantics follow Redis where the scripts depend on them: `PTTL` answers
//! -2 for a missing key and -1 for one without expiry; empty sets and
//! hashes do not exist; sets and hashes are created without expiry. A
//! command on a key of another type treats it as missing (Redis would
//! answer `WRONGTYPE`; the scripts never mix types on one key).
//!
//! [`NodeScript::emulated`]: super::NodeScript::emulated

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::seq::SliceRandom;
use tokio::time::Instant;

/// The native twin of a script: what the Lua does, on a memory node's
/// keyspace, with the same keys and arguments. Errors become the node's
/// error for that call.
pub type MemoryScript =
    fn(&mut MemoryStore, &[String], &[Vec<u8>]) -> Result<super::ScriptValue, String>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Str(Vec<u8>),
    Set(BTreeSet<Vec<u8>>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
}

#[derive(Clone, Debug)]
struct Entry {
    value: Value,
    /// `None`: no expiry.
    expires: Option<Instant>,
}

/// A memory node's keys. Time is tokio's, fixed for the duration of one
/// atomic operation. Cloning copies the keys (a snapshot).
#[derive(Clone, Debug)]
pub struct MemoryStore {
    keys: BTreeMap<String, Entry>,
    now: Instant,
    /// Keys a twin announced as released (its script's `PUBLISH` on the
    /// release channel); the node sends them once the twin returns.
    announced: Vec<String>,
    /// The node's fence floor during a granting call (quarantine.lua's
    /// `fence_floor`): set by the node before a twin runs.
    pub(crate) fence_floor: u64,
    /// quarantine.lua's `restart_mark` during a granting call.
    pub(crate) restart_mark: Option<Vec<u8>>,
    /// The node's clock (the server's, not the data's: a restart keeps it).
    pub(crate) clock: NodeClock,
    /// What the node's milliseconds count from (`TIME` counts from the Unix
    /// epoch; only differences and equality matter here).
    epoch: Instant,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            keys: BTreeMap::new(),
            now: Instant::now(),
            announced: Vec::new(),
            fence_floor: 0,
            restart_mark: None,
            clock: NodeClock::default(),
            epoch: Instant::now(),
        }
    }
}

/// A memory node's clock: tokio's, or running `rate` times as fast from an
/// anchor (a server clock running fast or slow: its keys expire early or
/// late).
#[derive(Clone, Copy, Debug)]
pub(crate) struct NodeClock {
    /// tokio's instant and the node's time at the last change of rate.
    anchor: Option<(Instant, Instant)>,
    rate: f64,
}

impl Default for NodeClock {
    fn default() -> Self {
        NodeClock {
            anchor: None,
            rate: 1.0,
        }
    }
}

impl NodeClock {
    /// The node's time when tokio's is `real`.
    pub(crate) fn read(&self, real: Instant) -> Instant {
        match self.anchor {
            None => real,
            Some((real_at, node_at)) => {
                node_at + real.saturating_duration_since(real_at).mul_f64(self.rate)
            }
        }
    }

    /// From now on the node's time runs `rate` times as fast as tokio's.
    #[cfg_attr(not(feature = "memory"), allow(dead_code))]
    pub(crate) fn set_rate(&mut self, rate: f64, real: Instant) {
        let node = self.read(real);
        self.anchor = Some((real, node));
        self.rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            1.0
        };
    }
}

/// `now + ttl`, saturating where a hand-made absurd ttl would overflow.
pub(crate) fn expires_at(now: Instant, ttl: Duration) -> Instant {
    now.checked_add(ttl)
        .unwrap_or_else(|| now + crate::lease::MAX_TTL)
}

impl MemoryStore {
    /// Starts an atomic operation: fixes the time and drops expired keys.
    #[cfg_attr(not(feature = "memory"), allow(dead_code))]
    pub(crate) fn begin(&mut self) {
        self.now = self.clock.read(Instant::now());
        let now = self.now;
        self.keys.retain(|_, e| e.expires.is_none_or(|t| t > now));
    }

    /// A twin's `PUBLISH` of a release announcement for `key` (on
    /// [`RELEASE_CHANNEL_PREFIX`](crate::raw::RELEASE_CHANNEL_PREFIX)): the
    /// node's watchers hear it once the twin returns.
    pub fn announce_release(&mut self, key: &str) {
        self.announced.push(key.to_owned());
    }

    /// The announcements a twin made, for its node to send.
    #[cfg_attr(not(feature = "memory"), allow(dead_code))]
    pub(crate) fn take_announced(&mut self) -> Vec<String> {
        std::mem::take(&mut self.announced)
    }

    /// The time of the current atomic operation.
    #[cfg_attr(not(feature = "memory"), allow(dead_code))]
    pub(crate) fn now(&self) -> Instant {
        self.now
    }

    /// The time of the current atomic operation in whole milliseconds of
    /// the node's clock (a script's `TIME` in ms).
    #[cfg_attr(not(feature = "memory"), allow(dead_code))]
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.now.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX)
    }

    #[cfg_attr(not(feature = "memory"), allow(dead_code))]
    pub(crate) fn clear(&mut self) {
        self.keys.clear();
    }

    /// Every live key, sorted.
    #[cfg_attr(not(feature = "memory"), allow(dead_code))]
    pub(crate) fn key_names(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.keys.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// The remaining ttl (`Some(None)`: no expiry), `None` when absent.
    pub(crate) fn ttl(&self, key: &str) -> Option<Option<Duration>> {
        self.keys
            .get(key)
            .map(|e| e.expires.map(|t| t.saturating_duration_since(self.now)))
    }

    /// Whether `key` holds exactly `value` (a string).
    pub fn holds(&self, key: &str, value: &[u8]) -> bool {
        matches!(self.keys.get(key), Some(Entry { value: Value::Str(v), .. }) if v == value)
    }

    /// `GET`: the string value.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        match self.keys.get(key) {
            Some(Entry {
                value: Value::Str(v),
                ..
            }) => Some(v),
            _ => None,
        }
    }

    /// `SET key value [PX ttl]`: replaces whatever was there.
    pub fn set(&mut self, key: &str, value: &[u8], ttl: Option<Duration>) {
        let expires = ttl.map(|t| expires_at(self.now, t));
        self.keys.insert(
            key.to_owned(),
            Entry {
                value: Value::Str(value.to_vec()),
                expires,
            },
        );
    }

    /// `EXISTS`.
    pub fn exists(&self, key: &str) -> bool {
        self.keys.contains_key(key)
    }

    /// `DEL`: whether it existed.
    pub fn del(&mut self, key: &str) -> bool {
        self.keys.remove(key).is_some()
    }

    /// quarantine.lua's `restart_mark`: the marker while it says the node
    /// lost data or restarted (state without a ttl written before it is not
    /// trusted), else `None`.
    pub fn restart_mark(&self) -> Option<&[u8]> {
        self.restart_mark.as_deref()
    }

    /// quarantine.lua's `fence_incr`: the counter at `key` (a string, no
    /// ttl) plus one, kept above the node's fence floor; the new value.
    pub fn fence_incr(&mut self, key: &str) -> u64 {
        let counter: u64 = self
            .get(key)
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0);
        let next = (counter + 1).max(self.fence_floor + 1);
        self.set(key, next.to_string().as_bytes(), None);
        next
    }

    /// `PTTL`: ms left, -1 without expiry, -2 when absent.
    pub fn pttl(&self, key: &str) -> i64 {
        match self.ttl(key) {
            None => -2,
            Some(None) => -1,
            Some(Some(left)) => i64::try_from(left.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// `PEXPIRE`: whether the key exists (and now expires after `ttl`).
    pub fn pexpire(&mut self, key: &str, ttl: Duration) -> bool {
        let expires = expires_at(self.now, ttl);
        match self.keys.get_mut(key) {
            Some(e) => {
                e.expires = Some(expires);
                true
            }
            None => false,
        }
    }

    fn set_mut(&mut self, key: &str) -> Option<&mut BTreeSet<Vec<u8>>> {
        match self.keys.get_mut(key) {
            Some(Entry {
                value: Value::Set(s),
                ..
            }) => Some(s),
            _ => None,
        }
    }

    /// `SADD` of one member: whether it was new.
    pub fn sadd(&mut self, key: &str, member: &[u8]) -> bool {
        if self.set_mut(key).is_none() {
            self.keys.insert(
                key.to_owned(),
                Entry {
                    value: Value::Set(BTreeSet::new()),
                    expires: None,
                },
            );
        }
        self.set_mut(key).is_some_and(|s| s.insert(member.to_vec()))
    }

    /// `SREM` of one member: whether it was there. An emptied set is gone.
    pub fn srem(&mut self, key: &str, member: &[u8]) -> bool {
        let Some(set) = self.set_mut(key) else {
            return false;
        };
        let removed = set.remove(member);
        if set.is_empty() {
            self.keys.remove(key);
        }
        removed
    }

    /// `SMEMBERS` (sorted).
    pub fn smembers(&self, key: &str) -> Vec<Vec<u8>> {
        match self.keys.get(key) {
            Some(Entry {
                value: Value::Set(s),
                ..
            }) => s.iter().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// `TYPE`: `none`, `string`, `set` or `hash`.
    pub fn type_name(&self, key: &str) -> &'static str {
        match self.keys.get(key).map(|e| &e.value) {
            None => "none",
            Some(Value::Str(_)) => "string",
            Some(Value::Set(_)) => "set",
            Some(Value::Hash(_)) => "hash",
        }
    }

    /// `SCARD` or `HLEN`: the members of the set or fields of the hash at
    /// `key`; 0 when absent or a string.
    pub fn collection_len(&self, key: &str) -> usize {
        match self.keys.get(key).map(|e| &e.value) {
            Some(Value::Set(s)) => s.len(),
            Some(Value::Hash(h)) => h.len(),
            _ => 0,
        }
    }

    /// `SRANDMEMBER key count` with a positive count: up to `count`
    /// distinct members, picked at random as Redis does.
    pub fn srandmember(&self, key: &str, count: usize) -> Vec<Vec<u8>> {
        let mut members = self.smembers(key);
        crate::determinism::with_rng(|rng| members.shuffle(rng));
        members.truncate(count);
        members
    }

    /// `HRANDFIELD key count WITHVALUES` with a positive count: up to
    /// `count` distinct fields with their values, picked at random.
    pub fn hrandfield(&self, key: &str, count: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut fields = self.hgetall(key);
        crate::determinism::with_rng(|rng| fields.shuffle(rng));
        fields.truncate(count);
        fields
    }

    fn hash_mut(&mut self, key: &str) -> Option<&mut BTreeMap<Vec<u8>, Vec<u8>>> {
        match self.keys.get_mut(key) {
            Some(Entry {
                value: Value::Hash(h),
                ..
            }) => Some(h),
            _ => None,
        }
    }

    /// `HSET` of one field.
    pub fn hset(&mut self, key: &str, field: &[u8], value: &[u8]) {
        if self.hash_mut(key).is_none() {
            self.keys.insert(
                key.to_owned(),
                Entry {
                    value: Value::Hash(BTreeMap::new()),
                    expires: None,
                },
            );
        }
        if let Some(h) = self.hash_mut(key) {
            h.insert(field.to_vec(), value.to_vec());
        }
    }

    /// `HGET`.
    pub fn hget(&self, key: &str, field: &[u8]) -> Option<&[u8]> {
        match self.keys.get(key) {
            Some(Entry {
                value: Value::Hash(h),
                ..
            }) => h.get(field).map(Vec::as_slice),
            _ => None,
        }
    }

    /// `HDEL` of one field. An emptied hash is gone.
    pub fn hdel(&mut self, key: &str, field: &[u8]) -> bool {
        let Some(hash) = self.hash_mut(key) else {
            return false;
        };
        let removed = hash.remove(field).is_some();
        if hash.is_empty() {
            self.keys.remove(key);
        }
        removed
    }

    /// `HGETALL` (sorted by field).
    pub fn hgetall(&self, key: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        match self.keys.get(key) {
            Some(Entry {
                value: Value::Hash(h),
                ..
            }) => h.iter().map(|(f, v)| (f.clone(), v.clone())).collect(),
            _ => Vec::new(),
        }
    }

    /// `HINCRBY`: the new value; an error when the field is not an integer.
    pub fn hincrby(&mut self, key: &str, field: &[u8], by: i64) -> Result<i64, String> {
        let old = match self.hget(key, field) {
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or("ERR hash value is not an integer")?,
            None => 0,
        };
        let new = old
            .checked_add(by)
            .ok_or("ERR increment or decrement would overflow")?;
        self.hset(key, field, new.to_string().as_bytes());
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn redis_like_semantics() {
        let mut store = MemoryStore::default();
        store.begin();
        assert_eq!(store.pttl("k"), -2);
        store.set("k", b"v", Some(Duration::from_millis(100)));
        assert_eq!(store.pttl("k"), 100);
        store.set("forever", b"v", None);
        assert_eq!(store.pttl("forever"), -1);
        assert!(store.sadd("s", b"a") && !store.sadd("s", b"a"));
        assert_eq!(store.pttl("s"), -1);
        assert!(store.srem("s", b"a"));
        assert!(!store.exists("s"), "an empty set does not exist");
        assert_eq!(store.hincrby("h", b"n", 5), Ok(5));
        assert_eq!(store.hincrby("h", b"n", 2), Ok(7));
        assert_eq!(store.get("h"), None, "a hash is not a string");
        tokio::time::advance(Duration::from_millis(100)).await;
        store.begin();
        assert!(!store.exists("k"), "expired");
        assert!(store.exists("forever"));
    }
}
