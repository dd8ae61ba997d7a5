//! `quorate status KEY…`: who holds each lock, node by node.

use quorate_redlock::{Holder, Inspection, NodeState, Redlock};
use serde_json::{json, Value};

use crate::{Failure, EXIT_UNAVAILABLE};

pub(crate) async fn run(redlock: &Redlock, keys: &[String], as_json: bool) -> Result<u8, Failure> {
    let mut code = 0;
    for key in keys {
        let seen = redlock.inspect(key).await?;
        let failed = seen
            .nodes
            .iter()
            .filter(|v| matches!(v.state, NodeState::Failed(_)))
            .count();
        if seen.nodes.len() - failed < seen.quorum {
            code = EXIT_UNAVAILABLE;
        }
        if as_json {
            println!("{}", to_json(&seen));
        } else {
            print!("{}", summary(&seen));
        }
    }
    Ok(code)
}

/// The majority view first, then each node.
fn summary(seen: &Inspection) -> String {
    let mut text = seen.to_string();
    if let (Some(_), Some(left)) = (seen.holder(), seen.remaining()) {
        let line = format!("  majority: {:.1} s left", left.as_secs_f64());
        let line = match seen.fence() {
            Some(fence) => format!("{line}, fence {fence}"),
            None => line,
        };
        text.push_str(&line);
        text.push('\n');
    }
    text
}

fn to_json(seen: &Inspection) -> Value {
    let nodes: Vec<Value> = seen
        .nodes
        .iter()
        .map(|view| {
            let mut node = json!({
                "node": view.node,
                "fence": view.fence,
                "queued": view.queued,
            });
            let fields = match &view.state {
                NodeState::Free => json!({"state": "free"}),
                NodeState::Held { holder, remaining } => json!({
                    "state": "held",
                    "holder": holder_json(holder),
                    "remaining_ms": remaining.map(|r| r.as_millis() as u64),
                }),
                NodeState::Claimed { remaining } => json!({
                    "state": "claimed",
                    "remaining_ms": remaining.map(|r| r.as_millis() as u64),
                }),
                NodeState::Failed(error) => json!({"state": "failed", "error": error.message()}),
                other => json!({"state": format!("{other}")}),
            };
            if let (Some(node), Value::Object(fields)) = (node.as_object_mut(), fields) {
                node.extend(fields);
            }
            node
        })
        .collect();
    json!({
        "key": seen.key,
        "held": seen.holder().is_some(),
        "holder": seen.holder().map(holder_json),
        "remaining_ms": seen.remaining().map(|r| r.as_millis() as u64),
        "fence": seen.fence(),
        "quorum": seen.quorum,
        "nodes": nodes,
    })
}

/// A holder as fields: its client id, and what its description says
/// (label, host, pid, UUID; `null` where unknown), with the description.
pub(crate) fn holder_json(holder: &Holder) -> Value {
    json!({
        "client": holder.client,
        "label": holder.label(),
        "host": holder.host(),
        "pid": holder.pid(),
        "uuid": holder.uuid(),
        "description": holder.owner,
    })
}
