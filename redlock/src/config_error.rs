//! Configuration mistakes, caught before any request is sent: the error
//! below every other (the backend's URL parsing reports them too). Fix the
//! configuration; retrying the same call fails the same way.

use std::time::Duration;

/// A configuration mistake, caught before any request is sent.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No nodes were given.
    #[error("no Redis nodes given: a Redlock needs at least one (use 3 or 5 independent nodes)")]
    NoNodes,
    /// The same node was given twice, which would let one server cast two votes.
    #[error("node {0} was given twice: every node must be an independent server")]
    DuplicateNode(String),
    /// A node URL that cannot be parsed.
    #[error("node #{index} has a bad URL `{url}`: {reason}")]
    BadUrl {
        /// Position of the node in the list, from 0.
        index: usize,
        /// The URL with any password replaced by `***`.
        url: String,
        /// What the parser said.
        reason: String,
    },
    /// A `rediss://` URL, but this build has no TLS (quorate-redlock's `tls`
    /// feature): connecting would silently send everything in plaintext.
    #[error(
        "node #{index} `{url}` asks for TLS, but quorate-redlock was built without its `tls` \
         feature: enable it (it would otherwise connect in plaintext)"
    )]
    TlsNotEnabled {
        /// Position of the node in the list, from 0.
        index: usize,
        /// The URL with any password replaced by `***`.
        url: String,
    },
    /// A node runs a Redis older than quorate supports (6.2: see the
    /// README's "Deployments").
    #[error(
        "node {node} runs Redis {version}; quorate needs Redis 6.2 or newer (the tree lock's \
         script calls HRANDFIELD, the documented ACL needs ACL users): upgrade the server or \
         leave it out"
    )]
    ServerTooOld {
        /// The node, as `host:port`.
        node: String,
        /// Its `redis_version`.
        version: String,
    },
    /// A setting in the environment or a config file that cannot be read
    /// ([`RedlockConfig`](crate::RedlockConfig)).
    #[error("{name}=`{value}`: {reason}")]
    BadSetting {
        /// The variable, e.g. `QUORATE_TTL`.
        name: String,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A ttl of zero.
    #[error("ttl must be positive")]
    ZeroTtl,
    /// A ttl so short that the drift allowance leaves no validity at all.
    #[error("ttl of {ttl:?} leaves no validity after the clock-drift allowance of {drift:?}")]
    TtlTooShort {
        /// The ttl asked for.
        ttl: Duration,
        /// The drift allowance (ttl × drift_factor + 2 ms).
        drift: Duration,
    },
    /// A ttl above the supported maximum.
    #[error("ttl of {ttl:?} is above the maximum of {max:?}")]
    TtlTooLong {
        /// The ttl asked for.
        ttl: Duration,
        /// The largest ttl accepted.
        max: Duration,
    },
    /// A ttl above the Redlock's [`max_ttl`](crate::RedlockBuilder::max_ttl):
    /// a node that lost its data is quarantined only that long, so a longer
    /// lease could be forgotten and granted twice.
    #[error(
        "ttl of {ttl:?} is above this Redlock's max_ttl of {max_ttl:?} (a node that lost its \
         data is quarantined for max_ttl; raise RedlockBuilder::max_ttl on every client)"
    )]
    TtlAboveMaxTtl {
        /// The ttl asked for.
        ttl: Duration,
        /// The Redlock's max_ttl.
        max_ttl: Duration,
    },
    /// A token that is not 32 hex digits (a permit id or token passed in).
    #[error("a token must be 32 hex digits")]
    BadToken,
    /// A drift factor outside `0.0..1.0`.
    #[error("drift factor {0} must be a finite number in 0.0..1.0")]
    BadDriftFactor(f64),
    /// A per-node timeout of zero.
    #[error("per-node timeout must be positive")]
    ZeroNodeTimeout,
    /// A waiter ttl of zero or above [`MAX_TTL`](crate::MAX_TTL).
    #[error("waiter ttl {0:?} must be positive and at most one year")]
    BadWaiterTtl(Duration),
    /// A lock call named no resource.
    #[error("no resource given")]
    NoResources,
    /// A resource name that is empty.
    #[error("resource #{0} is an empty string")]
    EmptyResource(usize),
    /// The same resource named twice in one lock.
    #[error("resource `{0}` is named twice in one lock")]
    DuplicateResource(String),
    /// A lock key with a `}` but no hash tag (`a}b`): its fence counter and
    /// queue could not be named into its Redis Cluster slot. Put the `}`
    /// inside a tag (`{a}b}` hashes `a`) or leave it out.
    #[error(
        "lock key `{0}` contains `}}` outside a hash tag: quorate's companion keys (fence, \
         queue) could not share its Redis Cluster slot; leave out the `}}` or give the key a \
         tag such as `{{tenant}}:...`"
    )]
    UnhashableResource(String),
    /// The keys of one lock call fall in different hash slots of a Redis
    /// Cluster node, which runs a script only on keys of one slot. Give
    /// them a common hash tag (`{order-7}:stock`, `{order-7}:payment`).
    #[error(
        "the keys of one lock are in different hash slots of Redis Cluster node {node} ({}): \
         give them a common hash tag such as `{{order-7}}:a`, `{{order-7}}:b`",
        slot_list(keys)
    )]
    CrossSlot {
        /// The Cluster node.
        node: String,
        /// Each key and its hash slot.
        keys: Vec<(String, u16)>,
    },
}

fn slot_list(keys: &[(String, u16)]) -> String {
    keys.iter()
        .map(|(key, slot)| format!("`{key}` in slot {slot}"))
        .collect::<Vec<_>>()
        .join(", ")
}
