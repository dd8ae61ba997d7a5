//! One suite, two backends: every case runs against in-memory nodes and
//! against real redis-server processes, so the two cannot drift apart.

use std::sync::Arc;
use std::time::Duration;

use quorate_redlock::{FredNode, FredSettings, Holder, MemoryNode, Node, OWNER_KEY_PREFIX};

use quorate_redlock::raw::{
    grant_of, AcquireReply, MemoryStore, NodeScript, QueueEntry, QueueGrant, Released, ScriptValue,
    FAIR_SUFFIX,
};
use quorate_testkit::Cluster;

const TTL: Duration = Duration::from_secs(10);
const GRANTED: AcquireReply = AcquireReply::Granted {
    fence: None,
    next: None,
    next_fair: None,
};

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

async fn acquire(node: &dyn Node, names: &[&str], token: &str, ttl: Duration) -> AcquireReply {
    node.acquire(&keys(names), token, ttl, false, None)
        .await
        .expect("node answers")
}

async fn release(node: &dyn Node, names: &[&str], token: &str) -> u64 {
    node.release(&keys(names), token, None)
        .await
        .expect("node answers")
}

async fn extend(node: &dyn Node, names: &[&str], token: &str, ttl: Duration) -> bool {
    node.extend(&keys(names), token, ttl)
        .await
        .expect("node answers")
}

async fn case_acquire_is_exclusive(node: &dyn Node) {
    assert_eq!(acquire(node, &["k"], "a", TTL).await, GRANTED);
    // any holder refuses, the same token too (tokens are fresh per round)
    for token in ["b", "a"] {
        match acquire(node, &["k"], token, TTL).await {
            AcquireReply::Taken {
                index: 0,
                remaining: Some(ttl),
                rank: None,
                holder: None,
                deadline: None,
            } => {
                assert!(ttl > Duration::from_secs(9) && ttl <= TTL, "{ttl:?}");
            }
            other => panic!("expected Taken, got {other:?}"),
        }
    }
    // the multi-key (scripted) path says the same, naming the key
    match acquire(node, &["k2", "k"], "c", TTL).await {
        AcquireReply::Taken {
            index: 1,
            remaining: Some(ttl),
            rank: None,
            holder: None,
            deadline: None,
        } => assert!(ttl <= TTL),
        other => panic!("expected Taken, got {other:?}"),
    }
}

/// Writes a plain string, as a client's description is written.
static SET: NodeScript =
    NodeScript::new("set", "return redis.call('SET', KEYS[1], ARGV[1])").emulated(set_in_memory);

fn set_in_memory(
    store: &mut MemoryStore,
    keys: &[String],
    args: &[Vec<u8>],
) -> Result<ScriptValue, String> {
    store.set(&keys[0], &args[0], None);
    Ok(ScriptValue::Int(1))
}

fn holder_of(reply: &AcquireReply) -> Option<Holder> {
    match reply {
        AcquireReply::Taken { holder, .. } => holder.clone(),
        other => panic!("expected Taken, got {other:?}"),
    }
}

async fn case_a_refusal_names_the_holder(node: &dyn Node) {
    let client = "00000000000000ab";
    let token = format!("{client}0123456789abcdef");
    assert_eq!(acquire(node, &["h"], &token, TTL).await, GRANTED);
    // no description recorded: the client id alone, on both paths
    let bare = Some(Holder {
        client: client.into(),
        owner: None,
    });
    assert_eq!(holder_of(&acquire(node, &["h"], "b", TTL).await), bare);
    assert_eq!(
        holder_of(&acquire(node, &["h2", "h"], "b", TTL).await),
        bare
    );
    let description = "billing-3 (host web-1, pid 7, id 0190)";
    let owner_key = format!("{OWNER_KEY_PREFIX}{client}");
    node.eval(&SET, vec![owner_key], vec![description.into()])
        .await
        .expect("node answers");
    let described = Some(Holder {
        client: client.into(),
        owner: Some(description.into()),
    });
    assert_eq!(holder_of(&acquire(node, &["h"], "b", TTL).await), described);
    assert_eq!(
        holder_of(&acquire(node, &["h2", "h"], "b", TTL).await),
        described
    );
    // a value that is not a token names no one
    assert_eq!(acquire(node, &["plain"], "not-a-token", TTL).await, GRANTED);
    assert_eq!(holder_of(&acquire(node, &["plain"], "b", TTL).await), None);
}

async fn case_multi_key_is_all_or_nothing(node: &dyn Node) {
    assert_eq!(acquire(node, &["m2"], "other", TTL).await, GRANTED);
    let reply = acquire(node, &["m1", "m2", "m3"], "me", TTL).await;
    assert!(
        matches!(reply, AcquireReply::Taken { index: 1, .. }),
        "{reply:?}"
    );
    // nothing of the failed request was set
    assert_eq!(acquire(node, &["m1"], "third", TTL).await, GRANTED);
    assert_eq!(acquire(node, &["m3"], "third", TTL).await, GRANTED);
}

async fn case_release_is_compare_and_delete(node: &dyn Node) {
    assert_eq!(acquire(node, &["r1", "r2"], "a", TTL).await, GRANTED);
    assert_eq!(release(node, &["r1", "r2"], "b").await, 0);
    assert!(matches!(
        acquire(node, &["r1"], "b", TTL).await,
        AcquireReply::Taken { .. }
    ));
    assert_eq!(release(node, &["r1", "r2", "never"], "a").await, 2);
    assert_eq!(release(node, &["r1", "r2"], "a").await, 0, "idempotent");
    assert_eq!(acquire(node, &["r1"], "b", TTL).await, GRANTED);
}

async fn case_extend_needs_every_key(node: &dyn Node) {
    assert_eq!(
        acquire(node, &["e1", "e2"], "a", Duration::from_secs(1)).await,
        GRANTED
    );
    assert!(!extend(node, &["e1", "e2"], "b", TTL).await);
    assert!(
        !extend(node, &["e1", "e2", "e3"], "a", TTL).await,
        "e3 is not ours"
    );
    assert!(extend(node, &["e1", "e2"], "a", TTL).await);
    match acquire(node, &["e2"], "b", TTL).await {
        AcquireReply::Taken {
            remaining: Some(ttl),
            ..
        } => assert!(ttl > Duration::from_secs(9)),
        other => panic!("expected Taken, got {other:?}"),
    }
}

async fn case_keys_expire_after_their_ttl(node: &dyn Node) {
    assert_eq!(
        acquire(node, &["x"], "a", Duration::from_millis(100)).await,
        GRANTED
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(release(node, &["x"], "a").await, 0, "already expired");
    assert!(
        !extend(node, &["x"], "a", TTL).await,
        "an expired lock is not revived"
    );
    assert_eq!(acquire(node, &["x"], "b", TTL).await, GRANTED);
}

async fn case_tokens_and_keys_are_opaque_bytes(node: &dyn Node) {
    let key = "weird key: {tag} \u{e9}\u{1F512} -- \"quoted\" \\ slash";
    assert_eq!(acquire(node, &[key], "tok with spaces", TTL).await, GRANTED);
    assert!(matches!(
        acquire(node, &[key], "tok", TTL).await,
        AcquireReply::Taken { .. }
    ));
    assert_eq!(release(node, &[key], "tok with spaces").await, 1);
}

async fn next(released: &mut tokio::sync::broadcast::Receiver<Released>) -> String {
    let announcement = tokio::time::timeout(Duration::from_secs(2), released.recv())
        .await
        .expect("announced within 2 s")
        .expect("channel open");
    assert_eq!(
        announcement.by, "client-7",
        "the releaser's id travels along"
    );
    announcement.key
}

async fn case_release_announces_only_when_asked(node: &dyn Node) {
    let mut released = node.releases().expect("this backend announces releases");
    node.subscribe(&keys(&["n1", "n2"]))
        .await
        .expect("subscribe");
    // an undo (no announcer) is silent; a release announces each deleted key
    assert_eq!(acquire(node, &["n1"], "a", TTL).await, GRANTED);
    assert_eq!(node.release(&keys(&["n1"]), "a", None).await, Ok(1));
    assert_eq!(acquire(node, &["n1", "n2"], "b", TTL).await, GRANTED);
    assert_eq!(
        node.release(&keys(&["n1", "n2"]), "b", Some("client-7"))
            .await,
        Ok(2)
    );
    let first = next(&mut released).await;
    let second = next(&mut released).await;
    assert_eq!([first, second], ["n1", "n2"]);
    // a release that deletes nothing announces nothing
    assert_eq!(
        node.release(&keys(&["n1"]), "b", Some("client-7")).await,
        Ok(0)
    );
    assert_eq!(acquire(node, &["n2"], "c", TTL).await, GRANTED);
    assert_eq!(
        node.release(&keys(&["n2"]), "c", Some("client-7")).await,
        Ok(1)
    );
    assert_eq!(next(&mut released).await, "n2");
}

async fn fenced(node: &dyn Node, names: &[&str], token: &str) -> AcquireReply {
    node.acquire(&keys(names), token, TTL, true, None)
        .await
        .expect("node answers")
}

async fn case_fence_counters_only_grow(node: &dyn Node) {
    let fence = |reply| match reply {
        AcquireReply::Granted { fence: Some(f), .. } => f,
        other => panic!("expected a fenced grant, got {other:?}"),
    };
    let first = fence(fenced(node, &["f1"], "a").await);
    assert_eq!(first, 1);
    // taken: no grant, no increment
    assert!(matches!(
        fenced(node, &["f1"], "b").await,
        AcquireReply::Taken { .. }
    ));
    assert_eq!(release(node, &["f1"], "a").await, 1);
    assert_eq!(
        fence(fenced(node, &["f1"], "b").await),
        2,
        "counters outlive the lock"
    );
    assert_eq!(release(node, &["f1"], "b").await, 1);
    // write-back raises, never lowers
    node.raise_fence(&keys(&["f1"]), 10).await.expect("raise");
    node.raise_fence(&keys(&["f1"]), 3).await.expect("raise");
    assert_eq!(fence(fenced(node, &["f1"], "c").await), 11);
    // several keys: the largest counter after incrementing each
    assert_eq!(fence(fenced(node, &["f2", "f3"], "d").await), 1);
    assert_eq!(release(node, &["f2", "f3"], "d").await, 2);
    node.raise_fence(&keys(&["f3"]), 5).await.expect("raise");
    assert_eq!(fence(fenced(node, &["f2", "f3"], "e").await), 6);
    // an unfenced grant reports no fence and leaves counters alone
    assert_eq!(release(node, &["f2", "f3"], "e").await, 2);
    assert_eq!(acquire(node, &["f3"], "g", TTL).await, GRANTED);
}

/// Requests made at the same moment (the real node sends them in one batch)
/// take effect in the order they were made, each with its own answer.
async fn case_requests_made_together_keep_their_order(node: &dyn Node) {
    let k = keys(&["together"]);
    let mut announcements = node.releases();
    let (a, b, wrong, right, c, undo) = futures::join!(
        node.acquire(&k, "a", TTL, false, None),
        node.acquire(&k, "b", TTL, false, None),
        node.release(&k, "b", None),
        node.release(&k, "a", Some("client-7")),
        node.acquire(&k, "c", TTL, false, None),
        node.release(&k, "c", None),
    );
    assert_eq!(a.expect("answer"), GRANTED);
    match b.expect("answer") {
        AcquireReply::Taken {
            index: 0,
            remaining: Some(ttl),
            rank: None,
            holder: None,
            deadline: None,
        } => assert!(ttl > Duration::from_secs(9) && ttl <= TTL, "{ttl:?}"),
        other => panic!("expected Taken, got {other:?}"),
    }
    assert_eq!(wrong.expect("answer"), 0, "another token deletes nothing");
    assert_eq!(right.expect("answer"), 1);
    assert_eq!(c.expect("answer"), GRANTED, "granted after the release");
    assert_eq!(undo.expect("answer"), 1);
    if let Some(announcements) = announcements.as_mut() {
        node.subscribe(&k).await.expect("subscribe");
        // only the announced release is heard: repeat it now that we listen
        assert_eq!(acquire(node, &["together"], "d", TTL).await, GRANTED);
        let (first, second) = futures::join!(
            node.release(&k, "d", None),
            node.release(&k, "x", Some("client-7")),
        );
        assert_eq!((first.expect("answer"), second.expect("answer")), (1, 0));
        assert_eq!(acquire(node, &["together"], "e", TTL).await, GRANTED);
        let (first, second) = futures::join!(
            node.release(&k, "e", Some("client-7")),
            node.acquire(&k, "f", TTL, false, None),
        );
        assert_eq!(first.expect("answer"), 1);
        assert_eq!(second.expect("answer"), GRANTED);
        assert_eq!(next(announcements).await, "together");
    }
    // an undo (batchable) never overtakes a later request that is not
    // batchable (a multi-key acquire, a script) with the same token
    let (undo, retry) = futures::join!(
        node.release(&keys(&["o1"]), "t", None),
        node.acquire(&keys(&["o1", "o2"]), "t", TTL, false, None),
    );
    assert_eq!(undo.expect("answer"), 0, "nothing to undo yet");
    assert_eq!(retry.expect("answer"), GRANTED);
    assert_eq!(release(node, &["o1", "o2"], "t").await, 2, "both keys held");
    // many distinct keys at once: all granted, all released
    let many: Vec<Vec<String>> = (0..40).map(|i| keys(&[&format!("many{i}")])).collect();
    let granted =
        futures::future::join_all(many.iter().map(|k| node.acquire(k, "m", TTL, false, None)));
    for reply in granted.await {
        assert_eq!(reply.expect("answer"), GRANTED);
    }
    let released = futures::future::join_all(many.iter().map(|k| node.release(k, "m", None)));
    for reply in released.await {
        assert_eq!(reply.expect("answer"), 1);
    }
    for k in &many {
        assert_eq!(
            release(node, &[k[0].as_str()], "m").await,
            0,
            "{k:?} is gone"
        );
    }
}

/// A waiter whose grants carry its token (`grant_of`) and a ttl of `TTL`.
fn waiter(client: &str, ticket: u64, lifetime: Duration, fair: bool) -> QueueEntry {
    let token = format!("{:0>32}", hex(client));
    let fair = if fair { FAIR_SUFFIX } else { "" };
    QueueEntry {
        member: format!("{client}:{token}:{}{fair}", TTL.as_millis()),
        ticket,
        lifetime,
        fair: !fair.is_empty(),
    }
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn deadline_of(reply: &AcquireReply) -> u64 {
    match reply {
        AcquireReply::Taken {
            deadline: Some(deadline),
            ..
        } => *deadline,
        other => panic!("expected a queued refusal with the entry's deadline, got {other:?}"),
    }
}

async fn queued(node: &dyn Node, name: &str, token: &str, entry: &QueueEntry) -> AcquireReply {
    node.acquire(&keys(&[name]), token, TTL, false, Some(entry))
        .await
        .expect("node answers")
}

/// The next wake-up delivered: (key, client), skipping announcements.
async fn next_wake(released: &mut tokio::sync::broadcast::Receiver<Released>) -> (String, String) {
    let (key, to, _) = next_grant(released).await;
    (key, to)
}

/// The next wake-up delivered, with its grant.
async fn next_grant(
    released: &mut tokio::sync::broadcast::Receiver<Released>,
) -> (String, String, QueueGrant) {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(2), released.recv())
            .await
            .expect("woken within 2 s")
            .expect("channel open");
        if let Some(to) = message.to {
            let grant = message.grant.expect("a wake-up names its grant");
            return (message.key, to, grant);
        }
    }
}

fn rank_of(reply: &AcquireReply) -> Option<u64> {
    match reply {
        AcquireReply::Taken { rank, .. } => *rank,
        AcquireReply::Granted { .. } => panic!("expected Taken, got {reply:?}"),
    }
}

/// Waiters are ordered by ticket (not arrival); a release grants the key to
/// the head (its grant token, for no longer than its entry would have
/// lived) and wakes only its client, naming the deadline the head's latest
/// refused request was answered with; the grant refuses everyone else; the
/// head leaves the queue; a round of the head takes the grant over and
/// reports the next waiter.
async fn case_queue_serves_the_head_only(node: &dyn Node) {
    let mut released = node.releases().expect("this backend delivers wake-ups");
    for client in ["qa", "qb"] {
        node.subscribe_wakes(client).await.expect("subscribe");
    }
    let lifetime = Duration::from_secs(3);
    let a = waiter("qa", 10, lifetime, false);
    let b = waiter("qb", 20, lifetime, false);
    assert_eq!(acquire(node, &["q"], "h", TTL).await, GRANTED);
    assert_eq!(rank_of(&queued(node, "q", "b1", &b).await), Some(0));
    let first = queued(node, "q", "a1", &a).await;
    assert_eq!(rank_of(&first), Some(0), "a's ticket is earlier");
    let refreshed = queued(node, "q", "a0", &a).await;
    assert_eq!(
        rank_of(&queued(node, "q", "b2", &b).await),
        Some(1),
        "b keeps its place behind a"
    );
    assert!(deadline_of(&refreshed) >= deadline_of(&first));
    assert_eq!(node.release(&keys(&["q"]), "h", Some("rel")).await, Ok(1));
    let (key, to, grant) = next_grant(&mut released).await;
    assert_eq!((key.as_str(), to.as_str()), ("q", "qa"));
    assert_eq!(
        grant,
        QueueGrant {
            deadline: deadline_of(&refreshed),
            token: grant_of(&a.member).0,
        },
        "the grant names a's token and the deadline of a's latest request"
    );
    // granted to a, for no longer than a's entry would have lived: a plain
    // request and b are refused
    match acquire(node, &["q"], "x", TTL).await {
        AcquireReply::Taken {
            remaining: Some(granted),
            ..
        } => assert!(granted <= lifetime, "{granted:?}"),
        other => panic!("expected the grant to refuse, got {other:?}"),
    }
    assert_eq!(
        rank_of(&queued(node, "q", "b3", &b).await),
        Some(0),
        "a left the queue when granted"
    );
    assert_eq!(
        queued(node, "q", "a2", &a).await,
        AcquireReply::Granted {
            fence: None,
            next: Some(20),
            next_fair: None,
        },
        "a's round takes its grant over; b is next"
    );
    assert_eq!(node.release(&keys(&["q"]), "a2", Some("rel")).await, Ok(1));
    assert_eq!(
        next_wake(&mut released).await,
        ("q".to_owned(), "qb".to_owned())
    );
    // b holds its grant without a round: its token releases the key
    assert_eq!(
        node.release(&keys(&["q"]), &grant_of(&b.member).0, None)
            .await,
        Ok(1),
        "the grant is b's lock"
    );
    // nobody queued: the key was just deleted
    assert_eq!(acquire(node, &["q"], "y", TTL).await, GRANTED);
}

/// fair: a free key is refused to a fair waiter behind any earlier waiter,
/// and to anyone behind a fair waiter (queued or not, fair or not); behind
/// waiters that are not fair, a free key goes to whoever asks.
async fn case_fair_waits_behind_earlier_waiters(node: &dyn Node) {
    let a = waiter("fa", 10, TTL, true);
    let late = waiter("fb", 20, TTL, true);
    let short = Duration::from_millis(100);
    assert_eq!(acquire(node, &["f"], "h", short).await, GRANTED);
    assert_eq!(rank_of(&queued(node, "f", "a1", &a).await), Some(0));
    // the holder's lock expires: the key is free, claimed for nobody
    tokio::time::sleep(Duration::from_millis(250)).await;
    match queued(node, "f", "b1", &late).await {
        AcquireReply::Taken {
            index: 0,
            remaining: None,
            rank: Some(1),
            holder: None,
            deadline: Some(_),
        } => {}
        other => panic!("expected to queue behind a, got {other:?}"),
    }
    let not_fair = waiter("fc", 30, TTL, false);
    match queued(node, "f", "c1", &not_fair).await {
        AcquireReply::Taken {
            remaining: None,
            rank: Some(2),
            ..
        } => {}
        other => panic!("a waiter that is not fair must let a fair one go first, got {other:?}"),
    }
    for names in [&["f"][..], &["other", "f"][..]] {
        match acquire(node, names, "plain", TTL).await {
            AcquireReply::Taken {
                remaining: None,
                holder: None,
                ..
            } => {}
            other => panic!(
                "a call that does not queue took {names:?} ahead of a fair waiter: {other:?}"
            ),
        }
    }
    assert_eq!(
        queued(node, "f", "a2", &a).await,
        AcquireReply::Granted {
            fence: None,
            next: Some(20),
            next_fair: Some(20),
        }
    );
    assert_eq!(node.release(&keys(&["f"]), "a2", None).await, Ok(1));
    // behind waiters that are not fair, a free, unclaimed key goes to
    // whoever asks
    let d = waiter("fd", 10, TTL, false);
    assert_eq!(acquire(node, &["g"], "h", short).await, GRANTED);
    assert_eq!(rank_of(&queued(node, "g", "d1", &d).await), Some(0));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(acquire(node, &["g"], "plain", TTL).await, GRANTED);
    // even an undo passes the key to the queue's head: a claim for d
    assert_eq!(node.release(&keys(&["g"]), "plain", None).await, Ok(1));
    assert!(matches!(
        acquire(node, &["g"], "plain2", TTL).await,
        AcquireReply::Taken {
            remaining: Some(_),
            ..
        }
    ));
    assert_eq!(
        queued(node, "g", "d2", &d).await,
        AcquireReply::Granted {
            fence: None,
            next: None,
            next_fair: None,
        }
    );
}

/// A waiter that stops refreshing drops out; one that leaves passes its
/// claim on.
async fn case_queue_entries_lapse_and_leave(node: &dyn Node) {
    let mut released = node.releases().expect("this backend delivers wake-ups");
    for client in ["la", "lb", "lc"] {
        node.subscribe_wakes(client).await.expect("subscribe");
    }
    let short = waiter("la", 10, Duration::from_millis(100), false);
    let b = waiter("lb", 20, TTL, false);
    let c = waiter("lc", 30, TTL, false);
    assert_eq!(acquire(node, &["l"], "h", TTL).await, GRANTED);
    for (entry, token) in [(&short, "a1"), (&b, "b1"), (&c, "c1")] {
        assert!(rank_of(&queued(node, "l", token, entry).await).is_some());
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(node.release(&keys(&["l"]), "h", Some("rel")).await, Ok(1));
    assert_eq!(
        next_wake(&mut released).await,
        ("l".to_owned(), "lb".to_owned()),
        "a's entry lapsed: b is woken"
    );
    node.leave_queue(&keys(&["l"]), &b.member)
        .await
        .expect("leave");
    assert_eq!(
        next_wake(&mut released).await,
        ("l".to_owned(), "lc".to_owned()),
        "b left: its claim went to c"
    );
    assert!(matches!(
        queued(node, "l", "b2", &b).await,
        AcquireReply::Taken { .. }
    ));
    assert!(matches!(
        queued(node, "l", "c2", &c).await,
        AcquireReply::Granted { .. }
    ));
}

/// A node that lost its data refuses every granting call for its max_ttl
/// (releases and extensions still answer), then votes again; one declared
/// fresh before any granting call votes at once.
async fn case_a_node_that_lost_its_data_sits_out_its_quarantine<F, Fut>(node: &dyn Node, lose: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let max_ttl = Duration::from_millis(400);
    node.set_max_ttl(max_ttl);
    assert_eq!(acquire(node, &["held"], "a", max_ttl).await, GRANTED);
    lose().await;
    let lost_at = std::time::Instant::now();
    let refusals = [
        node.acquire(&keys(&["q"]), "b", max_ttl, false, None).await,
        node.acquire(&keys(&["q", "q2"]), "b", max_ttl, false, None)
            .await,
        node.acquire(&keys(&["q"]), "b", max_ttl, true, None).await,
    ];
    for refusal in refusals {
        let error = refusal.expect_err("quarantined").to_string();
        assert!(error.starts_with("quarantined for "), "{error}");
    }
    assert_eq!(release(node, &["held"], "a").await, 0);
    assert!(!extend(node, &["held"], "a", max_ttl).await);
    assert!(!node.declare_fresh().await.expect("answers"), "marked");
    loop {
        match node.acquire(&keys(&["q"]), "c", max_ttl, false, None).await {
            Ok(reply) => {
                assert_eq!(reply, GRANTED);
                break;
            }
            Err(e) => assert!(lost_at.elapsed() < 2 * max_ttl, "still {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(lost_at.elapsed() >= max_ttl - Duration::from_millis(20));

    lose().await;
    assert!(node.declare_fresh().await.expect("answers"), "declared");
    assert_eq!(acquire(node, &["q"], "d", max_ttl).await, GRANTED);
}

#[tokio::test]
async fn memory_case_a_node_that_lost_its_data_sits_out_its_quarantine() {
    let memory = MemoryNode::new("memory");
    let node: Arc<dyn Node> = Arc::new(memory.clone());
    let lose = || {
        memory.forget_all();
        std::future::ready(())
    };
    case_a_node_that_lost_its_data_sits_out_its_quarantine(node.as_ref(), lose).await;
}

#[tokio::test]
async fn redis_case_a_node_that_lost_its_data_sits_out_its_quarantine() {
    let (cluster, node) = real_node().await;
    let lose = || async {
        cluster
            .server(0)
            .command(&["FLUSHALL"])
            .await
            .expect("FLUSHALL");
    };
    case_a_node_that_lost_its_data_sits_out_its_quarantine(node.as_ref(), lose).await;
}

/// A node that restarted from a snapshot older than its last grant (RDB
/// persistence): it still has its marker, but not the lock granted after
/// the snapshot. It refuses to vote for its max_ttl, and declaring it fresh
/// then does not cut the quarantine short; a restart declared fresh before
/// any granting call (the operator knows nothing was lost) votes at once.
async fn case_a_node_restarted_from_an_older_snapshot_sits_out_its_quarantine<S, R, SF, RF>(
    node: &dyn Node,
    snapshot: S,
    restart: R,
) where
    S: Fn() -> SF,
    SF: std::future::Future<Output = ()>,
    R: Fn() -> RF,
    RF: std::future::Future<Output = ()>,
{
    let max_ttl = Duration::from_millis(400);
    node.set_max_ttl(max_ttl);
    snapshot().await;
    assert_eq!(acquire(node, &["held"], "a", max_ttl).await, GRANTED);
    restart().await;
    let restarted_at = std::time::Instant::now();
    // a real server's client reconnects first
    loop {
        match node
            .acquire(&keys(&["held"]), "b", max_ttl, false, None)
            .await
        {
            Ok(reply) => panic!("a restarted node voted at once: {reply:?}"),
            Err(e) if e.to_string().starts_with("quarantined for ") => break,
            Err(e) => assert!(restarted_at.elapsed() < Duration::from_secs(5), "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !node.declare_fresh().await.expect("answers"),
        "in quarantine"
    );
    loop {
        match node
            .acquire(&keys(&["held"]), "c", max_ttl, false, None)
            .await
        {
            Ok(reply) => {
                assert_eq!(reply, GRANTED);
                break;
            }
            Err(e) => assert!(restarted_at.elapsed() < 2 * max_ttl, "still {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(restarted_at.elapsed() >= max_ttl - Duration::from_millis(20));

    snapshot().await;
    restart().await;
    let declared = loop {
        match node.declare_fresh().await {
            Ok(declared) => break declared,
            Err(e) => assert!(restarted_at.elapsed() < Duration::from_secs(10), "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(declared, "a restart is declared fresh");
    assert!(!node.declare_fresh().await.expect("answers"), "marked");
    assert_eq!(acquire(node, &["next"], "d", max_ttl).await, GRANTED);
}

#[tokio::test]
async fn memory_case_a_node_restarted_from_an_older_snapshot_sits_out_its_quarantine() {
    let memory = MemoryNode::new("memory");
    let node: Arc<dyn Node> = Arc::new(memory.clone());
    let saved = std::sync::Mutex::new(memory.snapshot());
    let snapshot = || {
        *saved.lock().expect("snapshot") = memory.snapshot();
        std::future::ready(())
    };
    let restart = || {
        memory.restart_from(&saved.lock().expect("snapshot"));
        std::future::ready(())
    };
    case_a_node_restarted_from_an_older_snapshot_sits_out_its_quarantine(
        node.as_ref(),
        snapshot,
        restart,
    )
    .await;
}

#[tokio::test]
async fn redis_case_a_node_restarted_from_an_older_snapshot_sits_out_its_quarantine() {
    let (cluster, node) = real_node().await;
    let cluster = tokio::sync::Mutex::new(cluster);
    let snapshot = || async {
        let cluster = cluster.lock().await;
        cluster.server(0).command(&["SAVE"]).await.expect("SAVE");
    };
    // SIGKILL, then the server loads the last SAVE's dump.rdb
    let restart = || async {
        let mut cluster = cluster.lock().await;
        cluster.server_mut(0).restart().await.expect("restart");
    };
    case_a_node_restarted_from_an_older_snapshot_sits_out_its_quarantine(
        node.as_ref(),
        snapshot,
        restart,
    )
    .await;
}

async fn memory_node() -> Arc<dyn Node> {
    Arc::new(MemoryNode::new("memory"))
}

async fn real_node() -> (Cluster, Arc<dyn Node>) {
    let cluster = Cluster::start(1).await.expect("redis-server starts");
    let node = FredNode::from_url(&cluster.urls()[0], &FredSettings::default()).expect("url");
    assert!(
        node.wait_connected(Duration::from_secs(5)).await,
        "connects"
    );
    (cluster, Arc::new(node))
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    let node = super::memory_node().await;
                    super::$case(node.as_ref()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $case() {
                    let (_cluster, node) = super::real_node().await;
                    super::$case(node.as_ref()).await;
                }
            )*
        }
    };
}

conformance!(
    case_acquire_is_exclusive,
    case_a_refusal_names_the_holder,
    case_multi_key_is_all_or_nothing,
    case_release_is_compare_and_delete,
    case_extend_needs_every_key,
    case_keys_expire_after_their_ttl,
    case_tokens_and_keys_are_opaque_bytes,
    case_release_announces_only_when_asked,
    case_fence_counters_only_grow,
    case_requests_made_together_keep_their_order,
    case_queue_serves_the_head_only,
    case_fair_waits_behind_earlier_waiters,
    case_queue_entries_lapse_and_leave,
);
