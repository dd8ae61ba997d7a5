//! The waiter queue as the nodes keep it: entries, their keys and the
//! channels and claims a release uses (see `scripts/queue.lua`). The
//! client's side of waiting is `queue.rs`.

use std::time::Duration;

/// Wake-ups for a client's queue heads arrive on this prefix plus the
/// client's id; the message is the key.
pub const WAKE_CHANNEL_PREFIX: &str = "quorate:wake:";

/// How long a release keeps the key for the queue's head (its wake-up and
/// its round must arrive within it); a head that does not come loses its
/// turn to whoever asks next once the claim expires.
pub const HEAD_CLAIM: Duration = Duration::from_millis(200);

/// Ends the queue member of a fair waiter: every caller, queued or not,
/// lets it go first.
pub const FAIR_SUFFIX: &str = ":f";

/// A waiter's entry in the queues of the keys it waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueEntry {
    /// `<client id>:<sequence>`, plus [`FAIR_SUFFIX`] for a fair waiter;
    /// the client id names the wake channel.
    pub member: String,
    /// The order among waiters: the lock call's start, in microseconds
    /// since the Unix epoch, on the servers' clock as the waiter sees it
    /// (its own clock plus the median of the nodes' offsets from it).
    pub ticket: u64,
    /// How long the entry stays without a refresh.
    pub lifetime: Duration,
    /// Strict first-come-first-served: a free key is refused while a
    /// waiter with a smaller ticket is queued.
    pub fair: bool,
}

/// The queue and the entries' deadlines of `key` (sorted sets), with the
/// key's hash tag as [`fence_key`](crate::raw::fence_key).
pub fn queue_keys(key: &str) -> (String, String) {
    (
        format!("quorate:queue:{{{key}}}"),
        format!("quorate:queue-deadlines:{{{key}}}"),
    )
}

/// The lock keys followed by their queues and their queues' deadlines: the
/// KEYS layout of the queue-aware scripts.
pub(crate) fn with_queue_keys(keys: &[String]) -> Vec<String> {
    let mut all = keys.to_vec();
    let (queues, deadlines): (Vec<String>, Vec<String>) =
        keys.iter().map(|k| queue_keys(k)).unzip();
    all.extend(queues);
    all.extend(deadlines);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_share_the_hash_tag() {
        let (queue, deadlines) = queue_keys("job");
        assert_eq!(queue, "quorate:queue:{job}");
        assert_eq!(deadlines, "quorate:queue-deadlines:{job}");
        let all = with_queue_keys(&["a".into(), "b".into()]);
        assert_eq!(all.len(), 6);
        assert_eq!(all[3], "quorate:queue:{b}");
    }
}
