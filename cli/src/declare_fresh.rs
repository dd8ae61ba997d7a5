//! `quorate declare-fresh --i-know-they-kept-every-write`: mark new servers
//! fresh so that they vote at once (`Redlock::declare_fresh`).

use quorate_redlock::{NodeOutcome, Redlock};
use serde_json::json;

use crate::{Failure, EXIT_UNAVAILABLE};

pub(crate) async fn run(redlock: &Redlock, confirmed: bool, as_json: bool) -> Result<u8, Failure> {
    if !confirmed {
        return Err(Failure {
            message: "refusing without --i-know-they-kept-every-write: a server that lost data \
                      (restarted without AOF appendfsync always, from an RDB snapshot, flushed, \
                      failed over) and is declared fresh votes at once and can grant a lock \
                      that another client still holds; its quarantine exists to prevent that. \
                      Check `quorate nodes` first"
                .to_owned(),
            code: 2,
        });
    }
    let outcomes = redlock.declare_fresh().await;
    let mut failed = 0;
    for report in &outcomes.0 {
        let (fresh, state) = match &report.outcome {
            NodeOutcome::Granted => (true, "declared fresh".to_owned()),
            NodeOutcome::NotHeld => (
                false,
                "left as it was (marked by its running server, or quarantined)".to_owned(),
            ),
            other => {
                failed += 1;
                (false, format!("failed: {other}"))
            }
        };
        if as_json {
            let line = json!({"node": report.node, "declared_fresh": fresh, "state": state});
            println!("{line}");
        } else {
            println!("{}: {state}", report.node);
        }
    }
    Ok(if failed > 0 { EXIT_UNAVAILABLE } else { 0 })
}
