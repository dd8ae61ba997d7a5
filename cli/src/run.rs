//! `quorate run KEY -- CMD…`: a distributed flock(1).

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use quorate_redlock::{Error, LockOptions, Redlock};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

use crate::{Failure, EXIT_BUSY, EXIT_LOST};

pub(crate) async fn run(
    redlock: &Redlock,
    key: &str,
    ttl: Duration,
    wait: Duration,
    grace: Duration,
    command: &[String],
) -> Result<u8, Failure> {
    let mut options = LockOptions::new()
        .ttl(ttl)
        .auto_extend(true)
        .acquire_timeout(Some(wait));
    if wait.is_zero() {
        options = options.max_attempts(Some(1));
    }
    let guard = match redlock.lock_with([key], &options).await {
        Ok(guard) => guard,
        Err(error @ Error::Taken { .. }) => {
            // the refusing nodes named the holder; no second request
            let holder = match error.holder() {
                Some(holder) => format!("held by {holder}"),
                None => "held (no node named its holder)".to_owned(),
            };
            return Err(Failure {
                message: format!("`{key}` is {holder}; gave up after {wait:?}"),
                code: EXIT_BUSY,
            });
        }
        Err(other) => return Err(other.into()),
    };
    let (program, args) = command.split_first().ok_or_else(|| Failure {
        message: "no command given after --".to_owned(),
        code: 2,
    })?;
    let mut child = Command::new(program)
        .args(args)
        .spawn()
        .map_err(|e| Failure {
            message: format!("cannot start `{program}`: {e}"),
            code: 1,
        })?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| Failure {
        message: format!("cannot listen for SIGTERM: {e}"),
        code: 1,
    })?;
    let outcome = tokio::select! {
        status = child.wait() => Ok(status),
        lost = guard.lost() => Err(lost),
        _ = terminate.recv() => {
            // asked to stop: the command stops first, then the lock goes
            let status = stop(&mut child, grace).await;
            let _ = guard.release().await;
            return Ok(exit_code(status));
        }
    };
    match outcome {
        Ok(status) => {
            let _ = guard.release().await;
            let status = status.map_err(|e| Failure {
                message: format!("waiting for `{program}`: {e}"),
                code: 1,
            })?;
            Ok(exit_code(Ok(status)))
        }
        Err(lost) => {
            stop(&mut child, grace).await.ok();
            Err(Failure {
                message: format!("lost `{key}` ({lost}); stopped `{program}`"),
                code: EXIT_LOST,
            })
        }
    }
}

/// SIGTERM, then SIGKILL after `grace`.
async fn stop(child: &mut Child, grace: Duration) -> std::io::Result<ExitStatus> {
    if let Some(pid) = child.id() {
        // without libc: the system's kill(1)
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            child.kill().await?;
            child.wait().await
        }
    }
}

/// The command's exit code; 128 + the signal when a signal ended it (as shells do).
fn exit_code(status: std::io::Result<ExitStatus>) -> u8 {
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => u8::try_from(code).unwrap_or(1),
            (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(1),
            (None, None) => 1,
        },
        Err(_) => 1,
    }
}
