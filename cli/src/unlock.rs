//! `quorate unlock --force KEY`: delete a lock whatever its holder.

use quorate_redlock::Redlock;
use serde_json::json;

use crate::Failure;

pub(crate) async fn run(
    redlock: &Redlock,
    key: &str,
    force: bool,
    as_json: bool,
) -> Result<u8, Failure> {
    if !force {
        return Err(Failure {
            message: format!(
                "refusing to unlock `{key}` without --force: its holder, if still alive, is not \
                 told and keeps working (see `quorate status {key}` first)"
            ),
            code: 2,
        });
    }
    let gone = redlock.force_unlock(key).await?;
    if as_json {
        let line = json!({
            "key": gone.before.key,
            "deleted_on": gone.deleted,
            "nodes": gone.before.nodes.len(),
            "holder": gone.before.holder().map(crate::status::holder_json),
        });
        println!("{line}");
        return Ok(0);
    }
    match gone.before.holder() {
        Some(holder) => println!(
            "{}: deleted on {} of {} nodes; it was held by {holder}",
            gone.before.key,
            gone.deleted,
            gone.before.nodes.len()
        ),
        None => println!(
            "{}: deleted on {} of {} nodes; no client held it on a majority",
            gone.before.key,
            gone.deleted,
            gone.before.nodes.len()
        ),
    }
    Ok(0)
}
