//! The hidden `quorate __supervise --parent PID -- CMD…` that `quorate run`
//! starts as the leader of the command's process group (Linux only: it
//! needs `prctl(PR_SET_PDEATHSIG)` and `signalfd`).
//!
//! It exists so that the command's group dies with `quorate` even when
//! `quorate` is killed with SIGKILL and can clean nothing up: the kernel
//! sends the supervisor SIGTERM when its parent dies, and the supervisor
//! SIGKILLs its whole group, grandchildren included, itself last.
//!
//! Everything else it does is forwarding: `quorate run` sends SIGINT, SIGHUP
//! and SIGTERM to the supervisor alone, which sends them on to the whole
//! group once the command exists (so a signal that came before the command
//! started is not lost). It exits with the command's status, 128 + the
//! signal when a signal ended the command.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};

use nix::errno::Errno;
use nix::sys::prctl;
use nix::sys::signal::{killpg, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{getpgrp, getpid, getppid, Pid};

use crate::Failure;

/// The signals `quorate run` forwards to the command's group.
const FORWARDED: [Signal; 3] = [Signal::SIGINT, Signal::SIGHUP, Signal::SIGTERM];

/// The name of the hidden subcommand that supervises.
pub(crate) const SUBCOMMAND: &str = "__supervise";

/// The name of the hidden subcommand that becomes the command (see [`exec`]).
pub(crate) const EXEC: &str = "__exec";

/// Supervises `command` for the `quorate run` process `parent`; the exit code.
pub(crate) fn supervise(parent: u32, command: &[String]) -> u8 {
    match supervise_inner(parent, command) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("quorate: {}", failure.message);
            failure.code
        }
    }
}

fn supervise_inner(parent: u32, command: &[String]) -> Result<u8, Failure> {
    let parent = Pid::from_raw(i32::try_from(parent).map_err(|_| usage("bad --parent"))?);
    if getpgrp() != getpid() {
        return Err(usage(
            "must lead its own process group (it is started by `quorate run`)",
        ));
    }
    let (program, args) = command
        .split_first()
        .ok_or_else(|| usage("no command given after --"))?;
    // Blocked before anything else, so that a signal sent now waits in the
    // signalfd instead of killing the supervisor. A child inherits the
    // mask, and std does not reset it: the command is started through
    // `quorate __exec`, which unblocks them and becomes the command.
    let mut mask = SigSet::empty();
    for signal in FORWARDED {
        mask.add(signal);
    }
    mask.add(Signal::SIGCHLD);
    mask.thread_block()
        .map_err(|e| internal("block signals", e))?;
    let signals =
        SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).map_err(|e| internal("signalfd", e))?;
    prctl::set_pdeathsig(Signal::SIGTERM)
        .map_err(|e| internal("set the parent-death signal", e))?;
    // The parent may have died before prctl: then no signal will come.
    if getppid() != parent {
        kill_group();
    }
    let exe = std::env::current_exe().map_err(|e| Failure {
        message: format!("cannot find the quorate binary to start `{program}`: {e}"),
        code: 1,
    })?;
    let mut child = Command::new(&exe)
        .arg(EXEC)
        .arg("--")
        .arg(program)
        .args(args)
        .spawn()
        .map_err(|e| Failure {
            message: format!("cannot start `{program}` (through {}): {e}", exe.display()),
            code: 1,
        })?;
    loop {
        let info = match signals.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) | Err(Errno::EINTR) => continue,
            Err(e) => {
                // cannot watch the parent any more: nothing may outlive it
                eprintln!("quorate: reading signals: {e}");
                kill_group();
            }
        };
        let Ok(signal) = Signal::try_from(i32::try_from(info.ssi_signo).unwrap_or(0)) else {
            continue;
        };
        if signal == Signal::SIGCHLD {
            // also sent when the command stops or continues: only an exit ends this
            if let Ok(Some(status)) = child.try_wait() {
                return Ok(exit_code(status));
            }
            continue;
        }
        if getppid() != parent {
            // the parent-death signal (or any signal after the parent died)
            kill_group();
        }
        // Only the parent's signals are forwarded: the supervisor's own
        // forwarding comes back to it, and one sent to the whole group
        // reached the command already.
        if u32::try_from(parent.as_raw()) == Ok(info.ssi_pid) {
            let _ = killpg(getpgrp(), signal);
        }
    }
}

/// `quorate __exec -- CMD…`: unblocks the signals the supervisor blocked
/// and replaces itself with the command (same pid, same group); a signal
/// that came meanwhile is delivered on unblocking, as to the command. The
/// exit code when the command cannot be started.
pub(crate) fn exec(command: &[String]) -> u8 {
    let Some((program, args)) = command.split_first() else {
        eprintln!("quorate: {EXEC}: no command given after --");
        return 2;
    };
    if let Err(e) = SigSet::empty().thread_set_mask() {
        eprintln!("quorate: {EXEC}: cannot unblock signals: {e}");
        return 1;
    }
    // returns only if the command could not be started
    let error = std::os::unix::process::CommandExt::exec(Command::new(program).args(args));
    eprintln!("quorate: cannot start `{program}`: {error}");
    1
}

/// SIGKILL to the whole group, the supervisor included: never returns.
fn kill_group() -> ! {
    let _ = killpg(getpgrp(), Signal::SIGKILL);
    // SIGKILL cannot be caught or blocked; this is not reached
    std::process::exit(128 + Signal::SIGKILL as i32)
}

/// A process's exit code as a shell reports it: 128 + the signal that ended it.
pub(crate) fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(1),
        (None, None) => 1,
    }
}

fn usage(what: &str) -> Failure {
    Failure {
        message: format!("{SUBCOMMAND}: {what}"),
        code: 2,
    }
}

fn internal(what: &str, error: Errno) -> Failure {
    Failure {
        message: format!("{SUBCOMMAND}: cannot {what}: {error}"),
        code: 1,
    }
}
