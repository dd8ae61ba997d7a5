//! The waiter queue as the nodes keep it: entries, their keys and the
//! channels and claims a release uses (see `scripts/queue.lua`). The
//! client's side of waiting is `queue.rs`.

use std::time::Duration;

use super::hash_slot::companion_key;

/// Wake-ups for a client's queue heads arrive on this prefix plus the
/// client's id; the message is `<entry deadline> <grant token> <key>`
/// ([`QueueGrant`](crate::backend::QueueGrant)).
pub const WAKE_CHANNEL_PREFIX: &str = "quorate:wake:";

/// The shortest time a release grants the key to the queue's head for (it
/// grants the head's ttl, but no longer than the head's entry would have
/// lived); a head that does not come loses its turn to whoever asks next
/// once the grant expires.
pub const HEAD_CLAIM: Duration = Duration::from_millis(200);

/// The queue's Lua helpers (`scripts/queue.lua`) after its constants
/// (`scripts/queue_constants.lua`: the channel prefixes and [`HEAD_CLAIM`],
/// kept equal to these by a test), defined once per function library.
pub(crate) const QUEUE_LUA: &str = concat!(
    include_str!("../../scripts/queue_constants.lua"),
    include_str!("../../scripts/queue.lua")
);

/// Ends the queue member of a fair waiter: every caller, queued or not,
/// lets it go first.
pub const FAIR_SUFFIX: &str = ":f";

/// A waiter's entry in the queues of the keys it waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueEntry {
    /// `<client id>:<grant token>:<ttl ms>`, plus [`FAIR_SUFFIX`] for a
    /// fair waiter; the client id names the wake channel, and a release
    /// grants the key to the head with its grant token ([`grant_of`]).
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

/// The token and ttl (ms) a release grants the key to the waiter `member`
/// with (queue.lua's `grant_of`): `q:<member>` and 0 for a member without
/// a grant token, a claim only the waiter's round takes over.
pub fn grant_of(member: &str) -> (String, u64) {
    let mut parts = member.split(':').skip(1);
    if let (Some(token), Some(ttl)) = (parts.next(), parts.next()) {
        let hex = token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit());
        if let (true, Ok(ttl)) = (hex, ttl.parse()) {
            return (token.to_owned(), ttl);
        }
    }
    (format!("q:{member}"), 0)
}

/// The name of a key's queue: this, then the key in its slot.
const QUEUE_PREFIX: &str = "quorate:queue:";
/// The name of a key's queue deadlines: this, then the key in its slot.
const DEADLINES_PREFIX: &str = "quorate:queue-deadlines:";

/// The queue and the entries' deadlines of `key` (sorted sets), in the
/// key's Redis Cluster slot as [`fence_key`](crate::raw::fence_key).
pub fn queue_keys(key: &str) -> (String, String) {
    (
        companion_key(QUEUE_PREFIX, key),
        companion_key(DEADLINES_PREFIX, key),
    )
}

/// The lock keys followed by their queues and their queues' deadlines: the
/// KEYS layout of the queue-aware scripts.
pub(crate) fn with_queue_keys(keys: &[String]) -> Vec<String> {
    let mut all = Vec::with_capacity(3 * keys.len());
    all.extend_from_slice(keys);
    all.extend(keys.iter().map(|k| companion_key(QUEUE_PREFIX, k)));
    all.extend(keys.iter().map(|k| companion_key(DEADLINES_PREFIX, k)));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scripts' constants are the client's: a wake-up or announcement
    /// on another channel would never arrive, and another claim would not
    /// be what the docs promise.
    #[test]
    fn the_scripts_constants_are_the_clients() {
        let constants = include_str!("../../scripts/queue_constants.lua");
        let release = crate::backend::RELEASE_CHANNEL_PREFIX;
        for line in [
            format!("local RELEASE_CHANNEL_PREFIX = '{release}'"),
            format!("local WAKE_CHANNEL_PREFIX = '{WAKE_CHANNEL_PREFIX}'"),
            format!("local HEAD_CLAIM_MS = {}", HEAD_CLAIM.as_millis()),
        ] {
            assert!(
                constants.lines().any(|l| l == line),
                "queue_constants.lua lacks `{line}`"
            );
        }
    }

    #[test]
    fn a_member_names_its_grant() {
        let token = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            grant_of(&format!("c1:{token}:5000:f")),
            (token.to_owned(), 5000)
        );
        assert_eq!(
            grant_of(&format!("c1:{token}:5000")),
            (token.to_owned(), 5000)
        );
        assert_eq!(grant_of("c1:0"), ("q:c1:0".to_owned(), 0));
        assert_eq!(grant_of("c1:0:f"), ("q:c1:0:f".to_owned(), 0));
    }

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
