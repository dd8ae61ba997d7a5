//! Batching: the single-key acquires and releases waiting to go to one node
//! at the same moment are sent as one script call.
//!
//! Every request to the node, batchable or not (scripts, multi-key locks,
//! extensions), goes through one queue per node, drained by one task; so
//! requests reach the connection in the order they were made (an undo never
//! overtakes its acquire or a later retry with the same token, a waiter's
//! acquire follows the release it was woken by). The task takes whatever is
//! queued when it runs (after letting the other ready tasks run once): a lone
//! request is sent as its own command (no timer, no waiting to fill a batch),
//! and under load many requests share one command, which is what a request
//! costs the client and the server.
//!
//! A request made while the node has nothing unanswered (nothing queued,
//! nothing sent and still awaited) skips the queue: its caller hands it to
//! the connection and awaits the answer itself, as Nagle's algorithm sends at
//! once when nothing is unacknowledged. It has nothing to be batched with and
//! nothing to overtake, and the uncontended call saves two task hops per node
//! (the draining task, and the task that awaited the answer).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use tokio::sync::{mpsc, oneshot};

use fred::types::Value;

use super::{remaining_from_pttl, Link};
use crate::backend::holder::Holder;
use crate::backend::queue_protocol::{queue_keys, QUEUE_LUA};
use crate::backend::{ttl_millis, AcquireReply, NodeError, NodeFuture, NodeScript, ScriptValue};

static BATCH: NodeScript = NodeScript::new("batch", include_str!("../../../scripts/batch.lua"))
    .with_helpers(QUEUE_LUA)
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

/// One request counted as unanswered until this is dropped: with its answer,
/// or with the request if it is never sent. A queued request carries its own,
/// so a caller that gives up does not end the count of a request still in the
/// queue (which a later request skipping the queue could then overtake).
#[derive(Debug)]
struct Unanswered(Arc<AtomicUsize>);

impl Unanswered {
    /// Counts one more request; also says whether none was unanswered.
    fn count(unanswered: &Arc<AtomicUsize>) -> (Unanswered, bool) {
        let before = unanswered.fetch_add(1, Ordering::AcqRel);
        (Unanswered(Arc::clone(unanswered)), before == 0)
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The queue of one node; the draining task ends when this is dropped.
#[derive(Debug)]
pub(super) struct Batcher {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queue: mpsc::UnboundedSender<(Request, Unanswered)>,
    /// For requests that skip the queue.
    link: Link,
    /// Requests queued, or sent and not answered yet. An `Arc` of its own:
    /// queued requests hold it, and holding `Shared` (the queue's sender)
    /// would keep the queue open for as long as it has requests.
    unanswered: Arc<AtomicUsize>,
}

impl Batcher {
    /// Starts the draining task (inside a tokio runtime).
    pub(super) fn start(link: Link, max_batch: usize) -> Batcher {
        let (queue, requests) = mpsc::unbounded_channel();
        tokio::spawn(drain(link.clone(), requests, max_batch));
        let unanswered = Arc::new(AtomicUsize::new(0));
        Batcher {
            shared: Arc::new(Shared {
                queue,
                link,
                unanswered,
            }),
        }
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
            Request::InOrder(Box::new(move |link: &Link| answer_to(command(link), reply)))
        })
    }

    /// At the first poll (as fred queues a command), sends the request
    /// when nothing is unanswered, else queues it; then waits for its answer.
    fn submit<T: Send + 'static>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, NodeError>>) -> Request + Send + 'static,
    ) -> NodeFuture<T> {
        let shared = Arc::clone(&self.shared);
        async move {
            let (reply, answer) = oneshot::channel();
            let request = request(reply);
            let (counted, idle) = Unanswered::count(&shared.unanswered);
            if idle {
                SentAlone::new(command_of(&shared.link, request), counted).await;
            } else {
                shared
                    .queue
                    .send((request, counted))
                    .map_err(|_| closed())?;
            }
            answer.await.map_err(|_| closed())?
        }
        .boxed()
    }
}

/// A request's command, on its own: its future hands the answer on.
fn command_of(link: &Link, request: Request) -> BoxFuture<'static, ()> {
    match request {
        Request::Batchable(request) => send_alone(link, request),
        Request::InOrder(command) => command(link),
    }
}

/// A command its caller awaits itself (it skipped the queue). A caller that
/// gives up leaves the rest to a task, as the queue's commands are: the
/// answer still counts (the silent-connection check, the unanswered count).
struct SentAlone {
    command: Option<(BoxFuture<'static, ()>, Unanswered)>,
}

impl SentAlone {
    fn new(command: BoxFuture<'static, ()>, counted: Unanswered) -> SentAlone {
        SentAlone {
            command: Some((command, counted)),
        }
    }
}

impl Future for SentAlone {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some((command, _)) = self.command.as_mut() {
            ready!(command.poll_unpin(cx));
            self.command = None;
        }
        Poll::Ready(())
    }
}

impl Drop for SentAlone {
    fn drop(&mut self) {
        if let (Some((command, counted)), Ok(runtime)) =
            (self.command.take(), tokio::runtime::Handle::try_current())
        {
            runtime.spawn(command.map(move |()| drop(counted)));
        }
    }
}

fn closed() -> NodeError {
    NodeError::new("node closed while a request was queued".to_owned())
}

async fn drain(
    link: Link,
    mut requests: mpsc::UnboundedReceiver<(Request, Unanswered)>,
    max_batch: usize,
) {
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
        let (mut batchable, mut counted) = (Vec::new(), Vec::new());
        for (request, count) in batch.drain(..) {
            match request {
                Request::Batchable(request) => {
                    batchable.push(request);
                    counted.push(count);
                }
                Request::InOrder(command) => {
                    if !batchable.is_empty() {
                        let taken = std::mem::take(&mut batchable);
                        hand_over(send(&link, taken), std::mem::take(&mut counted)).await;
                    }
                    hand_over(command(&link), count).await;
                }
            }
        }
        match <[Batchable; 1]>::try_from(batchable) {
            Ok([lone]) => hand_over(send_alone(&link, lone), counted).await,
            Err(batchable) if batchable.is_empty() => {}
            Err(batchable) => hand_over(send(&link, batchable), counted).await,
        }
    }
}

/// A request with nothing to batch with, as its own command.
fn send_alone(link: &Link, request: Batchable) -> BoxFuture<'static, ()> {
    match request {
        Batchable::Acquire {
            key,
            token,
            ttl,
            reply,
        } => answer_to(acquire_one(link, key, token, ttl), reply),
        Batchable::Release {
            key,
            token,
            announce,
            reply,
        } => answer_to(link.release(vec![key], token, announce), reply),
    }
}

/// `command`, its answer sent to its caller (a caller that gave up dropped
/// its receiver: the answer is dropped).
fn answer_to<T: Send + 'static>(
    command: NodeFuture<T>,
    reply: oneshot::Sender<Result<T, NodeError>>,
) -> BoxFuture<'static, ()> {
    command.map(move |answer| drop(reply.send(answer))).boxed()
}

/// Polls `command` once, which hands it to fred (so commands go in queue
/// order); the answer is awaited by a task of its own so the next command can
/// go meanwhile. Its requests stay `counted` as unanswered until then.
async fn hand_over(mut command: BoxFuture<'static, ()>, counted: impl Send + 'static) {
    if futures::poll!(command.as_mut()).is_pending() {
        tokio::spawn(command.map(move |()| drop(counted)));
    }
}

/// One key's acquire on its own (alone in its batch, or a node without
/// batching): the batch script with one request, not a plain `SET NX`,
/// which could not refuse while the node is quarantined.
pub(super) fn acquire_one(
    link: &Link,
    key: String,
    token: String,
    ttl: Duration,
) -> NodeFuture<AcquireReply> {
    let (keys, args) = batch_arguments([(key, "a", token, ttl_value(ttl))]);
    link.run_script::<Value>(&BATCH, keys, args)
        .map(|answer| Ok(acquire_answer(&values_of(answer, 1)?)))
        .boxed()
}

fn ttl_value(ttl: Duration) -> Value {
    Value::from(ttl_millis(ttl).to_string())
}

/// Sends `batch` (more than one request) as one command and hands each
/// request its answer.
fn send(link: &Link, batch: Vec<Batchable>) -> BoxFuture<'static, ()> {
    let mut replies = Vec::with_capacity(batch.len());
    let requests = batch.into_iter().map(|request| match request {
        Batchable::Acquire {
            key,
            token,
            ttl,
            reply,
        } => {
            replies.push(Reply::Acquire(reply));
            (key, "a", token, ttl_value(ttl))
        }
        Batchable::Release {
            key,
            token,
            announce,
            reply,
        } => {
            replies.push(Reply::Release(reply));
            (key, "r", token, announce.into())
        }
    });
    let (keys, args) = batch_arguments(requests);
    link.run_script::<Value>(&BATCH, keys, args)
        .map(move |answer| answer_each(replies, answer))
        .boxed()
}

/// batch.lua's KEYS and ARGV for requests `(key, "a" or "r", token, ttl
/// or releasing client)`: each key is followed by its queue's keys (a
/// release passes the key to the queue's head, an acquire is refused behind
/// a fair waiter).
fn batch_arguments(
    requests: impl IntoIterator<Item = (String, &'static str, String, Value)>,
) -> (Vec<String>, Vec<Value>) {
    let requests = requests.into_iter();
    let n = requests.size_hint().0;
    let mut keys = Vec::with_capacity(3 * n);
    let mut args: Vec<Value> = Vec::with_capacity(3 * n);
    for (key, kind, token, last) in requests {
        let (queue, deadlines) = queue_keys(&key);
        keys.extend([key, queue, deadlines]);
        args.extend([Value::from_static_str(kind), token.into(), last]);
    }
    (keys, args)
}

/// Where one request's answer goes.
enum Reply {
    Acquire(oneshot::Sender<Result<AcquireReply, NodeError>>),
    Release(oneshot::Sender<Result<u64, NodeError>>),
}

/// The batch reply's values, three per request (batch.lua): `{granted or
/// deleted, pttl, holder}`.
fn values_of(
    answer: Result<Value, NodeError>,
    requests: usize,
) -> Result<Vec<ScriptValue>, NodeError> {
    match ScriptValue::from_fred(answer?).map_err(NodeError::new)? {
        ScriptValue::Array(values) if values.len() == 3 * requests => Ok(values),
        other => Err(NodeError::new(format!(
            "unexpected batch reply for {requests} requests: {other:?}"
        ))),
    }
}

/// One acquire's three values.
fn acquire_answer(triple: &[ScriptValue]) -> AcquireReply {
    if triple[0].as_int() == Some(1) {
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
    }
}

fn answer_each(replies: Vec<Reply>, answer: Result<Value, NodeError>) {
    let values = match values_of(answer, replies.len()) {
        Ok(values) => values,
        Err(error) => return fail_all(replies, &error),
    };
    for (reply, triple) in replies.into_iter().zip(values.chunks_exact(3)) {
        // a caller that gave up (timed out) dropped its receiver: nothing to do
        match reply {
            Reply::Acquire(reply) => drop(reply.send(Ok(acquire_answer(triple)))),
            Reply::Release(reply) => {
                let done = triple[0].as_int() == Some(1);
                drop(reply.send(Ok(u64::from(done))));
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
