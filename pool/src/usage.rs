//! Usage reporting (resource_locker's reporter): per resource and per tag,
//! how often it was requested and acquired, how long callers waited and how
//! long they held it. Figures go to the `metrics` facade (labels `pool`,
//! `tag`, `value`) and to the nodes, where [`Usage`] queries them.
//!
//! Figures are written to every node and read from a majority, taking per
//! figure the largest value seen: exact while all nodes take every write;
//! an undercount is possible after node failures. Reporting is opt-in
//! ([`Pool::with_usage_reporting`](crate::Pool::with_usage_reporting)); it
//! costs one more round trip per acquire and per release.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use quorate_redlock::raw::quorum::Reply;
use quorate_redlock::raw::{MemoryStore, NodeScript, ScriptValue};
use quorate_redlock::{Outcomes, Redlock};

use crate::requirement::Tags;

pub(crate) static RECORD: NodeScript = NodeScript::new(
    "pool_record_usage",
    include_str!("../scripts/record_usage.lua"),
)
.emulated(record_in_memory);
pub(crate) static READ_SET: NodeScript =
    NodeScript::new("pool_read_set", include_str!("../scripts/read_set.lua"))
        .emulated(read_set_in_memory);
pub(crate) static READ_HASH: NodeScript =
    NodeScript::new("pool_read_hash", include_str!("../scripts/read_hash.lua"))
        .emulated(read_hash_in_memory);

/// `record_usage.lua` on a memory node.
fn record_in_memory(
    store: &mut MemoryStore,
    keys: &[String],
    args: &[Vec<u8>],
) -> Result<ScriptValue, String> {
    let tags = keys.first().ok_or("no tags key")?;
    let mut n = 0;
    for (i, figure) in args.chunks_exact(4).enumerate() {
        let (values, figures) = (
            keys.get(1 + 2 * i).ok_or("too few keys")?,
            keys.get(2 + 2 * i).ok_or("too few keys")?,
        );
        let amount: i64 = std::str::from_utf8(&figure[3])
            .ok()
            .and_then(|a| a.parse().ok())
            .ok_or("amount is not an integer")?;
        store.sadd(tags, &figure[0]);
        store.sadd(values, &figure[1]);
        store.hincrby(figures, &figure[2], amount)?;
        n += 1;
    }
    Ok(ScriptValue::Int(n))
}

/// `read_set.lua` on a memory node.
fn read_set_in_memory(
    store: &mut MemoryStore,
    keys: &[String],
    _args: &[Vec<u8>],
) -> Result<ScriptValue, String> {
    let key = keys.first().ok_or("no key")?;
    Ok(ScriptValue::Array(
        store
            .smembers(key)
            .into_iter()
            .map(ScriptValue::Bytes)
            .collect(),
    ))
}

/// `read_hash.lua` on a memory node.
fn read_hash_in_memory(
    store: &mut MemoryStore,
    keys: &[String],
    _args: &[Vec<u8>],
) -> Result<ScriptValue, String> {
    let key = keys.first().ok_or("no key")?;
    Ok(ScriptValue::Array(
        store
            .hgetall(key)
            .into_iter()
            .flat_map(|(f, v)| [ScriptValue::Bytes(f), ScriptValue::Bytes(v)])
            .collect(),
    ))
}

/// Reads and writes bound each usage call (they are not on the lock path).
const USAGE_TIMEOUT: Duration = Duration::from_millis(500);

/// What was recorded for one tag value (say `model` = `T1000`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageFigures {
    /// Requests that named a candidate with this tag value (once per request).
    pub requests: u64,
    /// Candidates with this tag value that were granted.
    pub acquisitions: u64,
    /// Total wait, request to grant, of those acquisitions.
    pub acquire_wait: Duration,
    /// Grants released (or dropped).
    pub releases: u64,
    /// Total hold time, grant to release, of those releases.
    pub hold: Duration,
}

/// A query failed: too few nodes answered.
#[derive(Clone, Debug, thiserror::Error)]
#[error("usage query failed: too few nodes answered ({outcomes})")]
pub struct UsageError {
    /// Every node's outcome.
    pub outcomes: Outcomes,
}

/// The usage figures recorded for one pool (resource_locker's `Query`).
///
/// ```no_run
/// # async fn demo(redlock: quorate_redlock::Redlock) -> Result<(), quorate_pool::UsageError> {
/// let usage = quorate_pool::Usage::new(&redlock, "lab");
/// for tag in usage.all_tags().await? {
///     for value in usage.all_values(&tag).await? {
///         let figures = usage.figures(&tag, &value).await?;
///         println!("{tag}={value}: held {:?} in {} grants", figures.hold, figures.acquisitions);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Usage {
    redlock: Redlock,
    pool: Arc<str>,
    /// What every key starts with: the namespace and the pool's hash tag.
    base: Arc<str>,
}

/// `pool` is the Redlock's namespace and the pool's hash tag, e.g.
/// `billing:quorate:usage:{gpus}` (see [`Usage::new`]).
fn tags_key(pool: &str) -> String {
    format!("{pool}:tags")
}

fn values_key(pool: &str, tag: &str) -> String {
    format!("{pool}:values:{}:{tag}", tag.len())
}

fn figures_key(pool: &str, tag: &str, value: &str) -> String {
    format!("{pool}:figures:{}:{tag}:{}:{value}", tag.len(), value.len())
}

/// One event's figures, as (tag, value, field, amount).
type Figures = Vec<(String, String, &'static str, u64)>;

/// An event with a count and a time: its figure fields and metric names.
#[derive(Clone, Copy)]
struct Timed {
    count_field: &'static str,
    time_field: &'static str,
    counter: &'static str,
    histogram: &'static str,
}

impl Timed {
    const ACQUIRED: Timed = Timed {
        count_field: "acquisitions",
        time_field: "acquire_wait_us",
        counter: "quorate_pool_acquisitions_total",
        histogram: "quorate_pool_wait_seconds",
    };
    const RELEASED: Timed = Timed {
        count_field: "releases",
        time_field: "hold_us",
        counter: "quorate_pool_releases_total",
        histogram: "quorate_pool_hold_seconds",
    };
}

impl Usage {
    /// The usage of pool `pool` on `redlock`'s nodes.
    pub fn new(redlock: &Redlock, pool: &str) -> Self {
        Usage {
            redlock: redlock.clone(),
            pool: pool.into(),
            base: format!("{}quorate:usage:{{{pool}}}", redlock.namespace()).into(),
        }
    }

    /// Every tag name recorded (always `key`, plus the requirements' tags).
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn all_tags(&self) -> Result<Vec<String>, UsageError> {
        self.read_set(tags_key(&self.base)).await
    }

    /// Every value recorded for `tag`.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn all_values(&self, tag: &str) -> Result<Vec<String>, UsageError> {
        self.read_set(values_key(&self.base, tag)).await
    }

    /// The figures of `tag` = `value` (all zero when nothing was recorded).
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn figures(&self, tag: &str, value: &str) -> Result<UsageFigures, UsageError> {
        let key = figures_key(&self.base, tag, value);
        let round = self
            .redlock
            .eval_round(&READ_HASH, vec![key], vec![], USAGE_TIMEOUT, |v| {
                v.as_array().is_some()
            })
            .await;
        let mut max: BTreeMap<String, u64> = BTreeMap::new();
        for answer in self.answers(&round)? {
            for pair in answer.chunks(2) {
                let (Some(field), Some(value)) = (
                    pair.first().and_then(ScriptValue::as_str),
                    pair.get(1)
                        .and_then(ScriptValue::as_str)
                        .and_then(|v| v.parse::<u64>().ok()),
                ) else {
                    continue;
                };
                let slot = max.entry(field.to_owned()).or_default();
                *slot = (*slot).max(value);
            }
        }
        let get = |field: &str| max.get(field).copied().unwrap_or(0);
        Ok(UsageFigures {
            requests: get("requests"),
            acquisitions: get("acquisitions"),
            acquire_wait: Duration::from_micros(get("acquire_wait_us")),
            releases: get("releases"),
            hold: Duration::from_micros(get("hold_us")),
        })
    }

    async fn read_set(&self, key: String) -> Result<Vec<String>, UsageError> {
        let round = self
            .redlock
            .eval_round(&READ_SET, vec![key], vec![], USAGE_TIMEOUT, |v| {
                v.as_array().is_some()
            })
            .await;
        let mut union = BTreeSet::new();
        for answer in self.answers(&round)? {
            union.extend(
                answer
                    .iter()
                    .filter_map(ScriptValue::as_str)
                    .map(str::to_owned),
            );
        }
        Ok(union.into_iter().collect())
    }

    fn answers<'a>(
        &self,
        round: &'a quorate_redlock::raw::quorum::Round<ScriptValue>,
    ) -> Result<Vec<&'a [ScriptValue]>, UsageError> {
        if round.successes < self.redlock.quorum() {
            return Err(UsageError {
                outcomes: round.outcomes(self.redlock.nodes(), |_| {
                    quorate_redlock::NodeOutcome::Granted
                }),
            });
        }
        Ok(round
            .replies
            .iter()
            .filter_map(|r| match r {
                Reply::Answered(v) => v.as_array(),
                _ => None,
            })
            .collect())
    }

    /// A request: `requests` +1 for every distinct tag value among all
    /// candidates; for the granted ones `acquisitions` +1 and the wait.
    pub(crate) async fn record_request(
        &self,
        candidates: &[Tags],
        granted: &[Tags],
        wait: Duration,
    ) {
        let mut figures: Figures = Vec::new();
        let distinct: BTreeSet<&(String, String)> = candidates.iter().flatten().collect();
        for (tag, value) in distinct {
            figures.push((tag.clone(), value.clone(), "requests", 1));
            metrics::counter!("quorate_pool_requests_total", &self.labels(tag, value)).increment(1);
        }
        self.add_timed(&mut figures, granted, Timed::ACQUIRED, wait);
        self.write(figures).await;
    }

    /// A release: `releases` +1 and the hold time for every held tag value.
    pub(crate) async fn record_release(&self, held: &[Tags], hold: Duration) {
        let mut figures: Figures = Vec::new();
        self.add_timed(&mut figures, held, Timed::RELEASED, hold);
        self.write(figures).await;
    }

    /// For every tag value of `tags`: the event's count +1 and `time` added,
    /// to the figures and to the metrics.
    fn add_timed(&self, figures: &mut Figures, tags: &[Tags], event: Timed, time: Duration) {
        let micros = u64::try_from(time.as_micros()).unwrap_or(u64::MAX);
        for (tag, value) in tags.iter().flatten() {
            figures.push((tag.clone(), value.clone(), event.count_field, 1));
            figures.push((tag.clone(), value.clone(), event.time_field, micros));
            let labels = self.labels(tag, value);
            metrics::counter!(event.counter, &labels).increment(1);
            metrics::histogram!(event.histogram, &labels).record(time.as_secs_f64());
        }
    }

    fn labels(&self, tag: &str, value: &str) -> [(&'static str, String); 3] {
        [
            ("pool", self.pool.to_string()),
            ("tag", tag.to_owned()),
            ("value", value.to_owned()),
        ]
    }

    /// Sends the figures to every node, returning once a majority took them
    /// (the rest complete in the background). Failures only cost figures.
    async fn write(&self, figures: Figures) {
        if figures.is_empty() {
            return;
        }
        let mut keys = vec![tags_key(&self.base)];
        let mut args = Vec::with_capacity(figures.len() * 4);
        for (tag, value, field, amount) in figures {
            keys.push(values_key(&self.base, &tag));
            keys.push(figures_key(&self.base, &tag, &value));
            args.extend([
                tag.into_bytes(),
                value.into_bytes(),
                field.as_bytes().to_vec(),
                amount.to_string().into_bytes(),
            ]);
        }
        let round = self
            .redlock
            .eval_round(&RECORD, keys, args, USAGE_TIMEOUT, |v| v.as_int().is_some())
            .await;
        if round.successes < self.redlock.quorum() {
            tracing::warn!(pool = %self.pool, "usage figures reached too few nodes");
        }
    }
}

/// Declares the usage metrics once (idempotent).
pub(crate) fn describe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        metrics::describe_counter!(
            "quorate_pool_requests_total",
            "Pool requests naming a candidate with this tag value"
        );
        metrics::describe_counter!(
            "quorate_pool_acquisitions_total",
            "Candidates with this tag value granted"
        );
        metrics::describe_counter!(
            "quorate_pool_releases_total",
            "Grants with this tag value released"
        );
        metrics::describe_histogram!(
            "quorate_pool_wait_seconds",
            metrics::Unit::Seconds,
            "Wait from request to grant"
        );
        metrics::describe_histogram!(
            "quorate_pool_hold_seconds",
            metrics::Unit::Seconds,
            "Hold time from grant to release"
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_keys_cannot_collide_and_share_the_pools_slot() {
        assert_ne!(figures_key("p", "a:b", "c"), figures_key("p", "a", "b:c"));
        assert_ne!(values_key("p", "a"), values_key("p", "1:a"));
        for key in [
            tags_key("ns:quorate:usage:{p}"),
            values_key("ns:quorate:usage:{p}", "t"),
            figures_key("ns:quorate:usage:{p}", "t", "v"),
        ] {
            assert!(key.starts_with("ns:quorate:usage:{p}:"), "{key}");
        }
    }
}
