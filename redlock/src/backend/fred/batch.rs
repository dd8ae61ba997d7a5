//! Batching: the single-key acquires and releases waiting to go to one node
//! at the same moment are sent as one script call.
//!
//! Every request to the node, batchable or not (scripts, multi-key locks,
//! extensions), goes through one queue per node, drained by one task; so
//! requests reach the connection in the order they were made (an undo never
//! overtakes its acquire or a later retry with the same token, a waiter's
//! acquire follows the release it was woken by). The task takes whatever is queued when it runs (after letting
//! the other ready tasks run once): a lone request is sent as its own
//! command (no timer, no waiting to fill a batch), and under load many
//! requests share one command, which is what a request costs the client and
//! the server.

use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use tokio::sync::{mpsc, oneshot};

use fred::types::Value;

use super::{head_claim_millis, remaining_from_pttl, Link};
use crate::backend::holder::Holder;
use crate::backend::queue_protocol::queue_keys;
use crate::backend::{
    ttl_millis, AcquireReply, NodeError, NodeFuture, NodeScript, ScriptValue,
    RELEASE_CHANNEL_PREFIX, WAKE_CHANNEL_PREFIX,
};

static BATCH: NodeScript = NodeScript::new(
    "batch",
    concat!(
        include_str!("../../../scripts/queue.lua"),
        include_str!("../../../scripts/batch.lua")
    ),
)
.granting();

/// One queued request.
enum Request {
    /// Joins the batch it is drained with.
    Batchable(Batchable),
    /// Any other command: sent on its own, in its place in the queue.
    InOrder(Command),
}

/// Makes a command's future (which hands its answer on) from the link.
type Command = Box<dyn FnOnce(&Link) -> BoxFuture<'static, ()> + Send>;

enum Batchable {
    Acquire {
        key: String,
        token: String,
        ttl: Duration,
        reply: oneshot::Sender<Result<AcquireReply, NodeError>>,
    },
    Release {
        key: String,
        token: String,
        /// The releasing client's id; empty for an undo (not announced).
        announce: String,
        reply: oneshot::Sender<Result<u64, NodeError>>,
    },
}

/// The queue of one node; the draining task ends when this is dropped.
#[derive(Debug)]
pub(super) struct Batcher {
    queue: mpsc::UnboundedSender<Request>,
}

impl Batcher {
    /// Starts the draining task (inside a tokio runtime).
    pub(super) fn start(link: Link, max_batch: usize) -> Batcher {
        let (queue, requests) = mpsc::unbounded_channel();
        tokio::spawn(drain(link, requests, max_batch));
        Batcher { queue }
    }

    /// `SET key token NX PX ttl`, batched.
    pub(super) fn acquire(
        &self,
        key: String,
        token: String,
        ttl: Duration,
    ) -> NodeFuture<AcquireReply> {
        self.submit(move |reply| {
            Request::Batchable(Batchable::Acquire {
                key,
                token,
                ttl,
                reply,
            })
        })
    }

    /// Compare-and-delete of `key`, batched.
    pub(super) fn release(&self, key: String, token: String, announce: String) -> NodeFuture<u64> {
        self.submit(move |reply| {
            Request::Batchable(Batchable::Release {
                key,
                token,
                announce,
                reply,
            })
        })
    }

    /// The command `command` makes, sent on its own in queue order.
    pub(super) fn in_order<T: Send + 'static>(
        &self,
        command: impl FnOnce(&Link) -> NodeFuture<T> + Send + 'static,
    ) -> NodeFuture<T> {
        self.submit(move |reply| {
            Request::InOrder(Box::new(move |link: &Link| {
                command(link)
                    .map(move |answer| drop(reply.send(answer)))
                    .boxed()
            }))
        })
    }

    /// Queues the request at the first poll (as fred queues a command) and
    /// waits for its answer.
    fn submit<T: Send + 'static>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, NodeError>>) -> Request + Send + 'static,
    ) -> NodeFuture<T> {
        let queue = self.queue.clone();
        async move {
            let (reply, answer) = oneshot::channel();
            queue.send(request(reply)).map_err(|_| closed())?;
            answer.await.map_err(|_| closed())?
        }
        .boxed()
    }
}

fn closed() -> NodeError {
    NodeError::new("node closed while a request was queued".to_owned())
}

async fn drain(link: Link, mut requests: mpsc::UnboundedReceiver<Request>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    while requests.recv_many(&mut batch, max_batch).await > 0 {
        if batch.len() < max_batch {
            // Let the tasks that are ready run first: under load they add
            // their requests to this batch (measured: ~4 requests per batch
            // without this, ~17 with it, in the benchmark's scenario B). A
            // lone request loses only a pass through an idle scheduler.
            tokio::task::yield_now().await;
            while batch.len() < max_batch {
                match requests.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
        }
        let mut batchable = Vec::new();
        for request in batch.drain(..) {
            match request {
                Request::Batchable(request) => batchable.push(request),
                Request::InOrder(command) => {
                    if !batchable.is_empty() {
                        hand_over(send(&link, std::mem::take(&mut batchable))).await;
                    }
                    hand_over(command(&link)).await;
                }
            }
        }
        if !batchable.is_empty() {
            hand_over(send(&link, batchable)).await;
        }
    }
}

/// Polls `command` once, which hands it to fred (so commands go in queue
/// order); the answer is awaited by a task of its own so the next command can
/// go meanwhile.
async fn hand_over(mut command: BoxFuture<'static, ()>) {
    if futures::poll!(command.as_mut()).is_pending() {
        tokio::spawn(command);
    }
}

/// One key's acquire on its own (a node without batching): the batch
/// script with one request, not a plain `SET NX`, which could not refuse
/// while the node is quarantined.
pub(super) fn acquire_one(
    link: &Link,
    key: String,
    token: String,
    ttl: Duration,
) -> NodeFuture<AcquireReply> {
    let (reply, answer) = oneshot::channel();
    let request = Batchable::Acquire {
        key,
        token,
        ttl,
        reply,
    };
    let sent = send(link, vec![request]);
    async move {
        sent.await;
        answer.await.map_err(|_| closed())?
    }
    .boxed()
}

/// Where one request's answer goes.
enum Reply {
    Acquire(oneshot::Sender<Result<AcquireReply, NodeError>>),
    Release(oneshot::Sender<Result<u64, NodeError>>),
}

/// Sends `batch` as one command and hands each request its answer.
fn send(link: &Link, mut batch: Vec<Batchable>) -> BoxFuture<'static, ()> {
    if let [Batchable::Release { .. }] = batch.as_slice() {
        if let Some(Batchable::Release {
            key,
            token,
            announce,
            reply,
        }) = batch.pop()
        {
            return link
                .release(vec![key], token, announce)
                .map(|answer| drop(reply.send(answer)))
                .boxed();
        }
    }
    let mut keys = Vec::with_capacity(3 * batch.len());
    let mut args: Vec<Value> = Vec::with_capacity(3 + 3 * batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    args.push(Value::from_static_str(RELEASE_CHANNEL_PREFIX));
    args.push(Value::from_static_str(WAKE_CHANNEL_PREFIX));
    args.push(head_claim_millis());
    for request in batch {
        // either way the key's queue follows it: a release passes the key
        // to the queue's head, an acquire is refused behind a fair waiter
        let (key, kind, token, last, reply) = match request {
            Batchable::Acquire {
                key,
                token,
                ttl,
                reply,
            } => {
                let ttl = Value::from(ttl_millis(ttl).to_string());
                (key, "a", token, ttl, Reply::Acquire(reply))
            }
            Batchable::Release {
                key,
                token,
                announce,
                reply,
            } => (key, "r", token, announce.into(), Reply::Release(reply)),
        };
        let (queue, deadlines) = queue_keys(&key);
        keys.extend([key, queue, deadlines]);
        args.extend([Value::from_static_str(kind), token.into(), last]);
        replies.push(reply);
    }
    link.run_script::<Value>(&BATCH, keys, args)
        .map(move |answer| answer_each(replies, answer))
        .boxed()
}

/// Three values per request (batch.lua): `{granted or deleted, pttl, holder}`.
fn answer_each(replies: Vec<Reply>, answer: Result<Value, NodeError>) {
    let values = match answer.and_then(|v| ScriptValue::from_fred(v).map_err(NodeError::new)) {
        Ok(ScriptValue::Array(values)) if values.len() == 3 * replies.len() => values,
        Ok(other) => {
            let error = NodeError::new(format!(
                "unexpected batch reply for {} requests: {other:?}",
                replies.len()
            ));
            return fail_all(replies, &error);
        }
        Err(error) => return fail_all(replies, &error),
    };
    for (reply, triple) in replies.into_iter().zip(values.chunks_exact(3)) {
        let done = triple[0].as_int() == Some(1);
        match reply {
            Reply::Acquire(reply) => {
                let answer = if done {
                    AcquireReply::Granted {
                        fence: None,
                        next: None,
                        next_fair: None,
                    }
                } else {
                    AcquireReply::Taken {
                        index: 0,
                        remaining: triple[1].as_int().and_then(remaining_from_pttl),
                        rank: None,
                        deadline: None,
                        holder: Holder::from_script(&triple[2]),
                    }
                };
                let _ = reply.send(Ok(answer));
            }
            Reply::Release(reply) => {
                let _ = reply.send(Ok(u64::from(done)));
            }
        }
    }
}

fn fail_all(replies: Vec<Reply>, error: &NodeError) {
    for reply in replies {
        // a caller that gave up (timed out) dropped its receiver: nothing to do
        match reply {
            Reply::Acquire(reply) => drop(reply.send(Err(error.clone()))),
            Reply::Release(reply) => drop(reply.send(Err(error.clone()))),
        }
    }
}
