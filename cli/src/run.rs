//! `quorate run KEY -- CMD…`: a distributed flock(1).
//!
//! The command runs in a process group of its own, led by a supervisor
//! (`supervise.rs`; Linux only), so that everything it starts can be
//! stopped together, and dies with `quorate`:
//! - at the lock's validity minus `--grace` (no extension confirmed in
//!   time) the group gets SIGTERM, at the validity SIGKILL: nothing of it
//!   runs once the lease has ended;
//! - SIGINT, SIGHUP and SIGTERM sent to `quorate` go to the group;
//! - when the command exits, what it left running in its group is killed
//!   (SIGKILL) before the lock is released;
//! - if `quorate` dies, even of SIGKILL, the supervisor kills the group.

use std::time::Duration;

use quorate_redlock::{Error, LockOptions, Redlock};

use crate::{Failure, EXIT_BUSY};

/// `--grace` when not given: 5 s, or a quarter of the ttl when that is shorter.
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// The grace period to use: `grace` if given (under half the ttl, see
/// [`run`]), else [`DEFAULT_GRACE`] capped at a quarter of the ttl.
fn grace_for(ttl: Duration, grace: Option<Duration>) -> Result<Duration, Failure> {
    match grace {
        None => Ok(DEFAULT_GRACE.min(ttl / 4)),
        // An extension is due a third of the ttl after the last one; the
        // validity (ttl less the drift allowance) minus the grace must end
        // later, or every healthy run would be stopped.
        Some(grace) if grace >= ttl / 2 => Err(Failure {
            message: format!(
                "--grace {grace:?} must be shorter than half of --ttl {ttl:?}: the command gets \
                 SIGTERM at the lock's validity minus the grace, and the lock is only extended \
                 once a third of its ttl has passed"
            ),
            code: 2,
        }),
        Some(grace) => Ok(grace),
    }
}

/// Takes `key` (waiting up to `wait`, `None`: until granted), runs `command` under it, releases it.
///
/// `grace`: how long before the end of the lock's validity the command's
/// group gets SIGTERM (SIGKILL comes at the end); it must be shorter than
/// half the ttl (a usage error otherwise). The exit code is the command's
/// (128 + a signal that ended it), or [`EXIT_LOST`](crate::EXIT_LOST) when
/// the lease ending stopped it.
pub(crate) async fn run(
    redlock: &Redlock,
    key: &str,
    ttl: Duration,
    wait: Option<Duration>,
    grace: Option<Duration>,
    command: &[String],
) -> Result<u8, Failure> {
    let grace = grace_for(ttl, grace)?;
    let Some(program) = command.first() else {
        return Err(Failure {
            message: "no command given after --".to_owned(),
            code: 2,
        });
    };
    let mut options = LockOptions::new()
        .ttl(ttl)
        .auto_extend(true)
        .acquire_timeout(wait);
    if wait.is_some_and(|wait| wait.is_zero()) {
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
                message: format!(
                    "`{key}` is {holder}; gave up after {:?}",
                    wait.unwrap_or_default()
                ),
                code: EXIT_BUSY,
            });
        }
        Err(other) => return Err(other.into()),
    };
    match linux::run_locked(&guard, ttl, grace, command).await {
        Ok(code) => {
            let _ = guard.release().await;
            Ok(code)
        }
        // the lease ended or is ending: not released, its keys expire
        Err(Stopped::Lease(why)) => Err(Failure {
            message: format!("lost `{key}` ({why}); stopped `{program}`"),
            code: crate::EXIT_LOST,
        }),
        Err(Stopped::Failed(failure)) => {
            let _ = guard.release().await;
            Err(failure)
        }
    }
}

/// Why the command did not simply run to its end.
enum Stopped {
    /// The lease ended, or was about to: why.
    Lease(String),
    /// It could not be run or watched.
    Failed(Failure),
}

#[cfg(target_os = "linux")]
mod linux {
    use std::process::{Child, Command};
    use std::time::Duration;

    use nix::errno::Errno;
    use nix::sys::signal::{kill, killpg, Signal};
    use nix::sys::wait::{waitid, Id, WaitPidFlag};
    use nix::unistd::Pid;
    use quorate_redlock::LockGuard;
    use std::os::unix::process::CommandExt;
    use tokio::signal::unix::{signal, SignalKind};
    use tokio::time::Instant;

    use super::Stopped;
    use crate::supervise::{exit_code, SUBCOMMAND};
    use crate::Failure;

    /// Runs `command` in its own group while `guard` is valid; its exit code.
    pub(super) async fn run_locked(
        guard: &LockGuard,
        ttl: Duration,
        grace: Duration,
        command: &[String],
    ) -> Result<u8, Stopped> {
        // Listening before the group exists: a signal from now on is forwarded.
        let listen = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| {
                Stopped::Failed(Failure {
                    message: format!("cannot listen for {name}: {e}"),
                    code: 1,
                })
            })
        };
        let mut interrupt = listen(SignalKind::interrupt(), "SIGINT")?;
        let mut hangup = listen(SignalKind::hangup(), "SIGHUP")?;
        let mut terminate = listen(SignalKind::terminate(), "SIGTERM")?;
        let group = Group::spawn(command).map_err(Stopped::Failed)?;
        // Why the lease stopped the group, once it did.
        let mut stopped: Option<String> = None;
        let mut killed = false;
        let mut exited = tokio::task::spawn_blocking(group.exit_watch());
        let exit = loop {
            // The watchdog's extensions only move the validity later, so a
            // wake at the old deadline re-reads it in time; the cap also
            // catches a validity that moved earlier.
            let wake = term_at(guard, grace).min(Instant::now() + ttl / 6);
            tokio::select! {
                exit = &mut exited => break exit,
                () = tokio::time::sleep_until(wake), if stopped.is_none() => {
                    if term_at(guard, grace) <= Instant::now() {
                        group.signal(Signal::SIGTERM);
                        stopped = Some(format!(
                            "no extension reached a majority; SIGTERM {grace:?} before its validity ended"
                        ));
                    }
                }
                // at the validity's end (or when the lock was found taken over)
                lost = guard.lost(), if !killed => {
                    group.kill();
                    killed = true;
                    stopped = Some(format!("{lost}; SIGKILL"));
                }
                Some(()) = interrupt.recv() => group.signal(Signal::SIGINT),
                Some(()) = hangup.recv() => group.signal(Signal::SIGHUP),
                Some(()) = terminate.recv() => group.signal(Signal::SIGTERM),
            }
        };
        let status = group.reap(exit).map_err(Stopped::Failed)?;
        match stopped {
            Some(why) => Err(Stopped::Lease(why)),
            None => Ok(exit_code(status)),
        }
    }

    /// When the group is to get SIGTERM: the current validity less the grace.
    fn term_at(guard: &LockGuard, grace: Duration) -> Instant {
        let until = guard.lease().valid_until();
        if !guard.is_valid() {
            return Instant::now();
        }
        until.checked_sub(grace).unwrap_or(until)
    }

    /// The supervisor (see `supervise.rs`) leading the command's process group.
    struct Group {
        supervisor: Child,
        /// The supervisor's pid, also the group's id.
        pid: Pid,
    }

    impl Group {
        /// Starts this binary as the supervisor of `command`, in a new group.
        ///
        /// Spawned from the thread that polls `run` (the runtime's
        /// `block_on`, i.e. the main thread): the parent-death signal is
        /// sent when the spawning thread ends, and the main thread ends
        /// only with the process.
        fn spawn(command: &[String]) -> Result<Group, Failure> {
            let exe = std::env::current_exe().map_err(|e| Failure {
                message: format!("cannot find the quorate binary to supervise the command: {e}"),
                code: 1,
            })?;
            let supervisor = Command::new(&exe)
                .arg(SUBCOMMAND)
                .arg("--parent")
                .arg(std::process::id().to_string())
                .arg("--")
                .args(command)
                .process_group(0)
                .spawn()
                .map_err(|e| Failure {
                    message: format!("cannot start {}: {e}", exe.display()),
                    code: 1,
                })?;
            let pid = i32::try_from(supervisor.id()).map_err(|_| Failure {
                message: format!("pid {} out of range", supervisor.id()),
                code: 1,
            })?;
            Ok(Group {
                supervisor,
                pid: Pid::from_raw(pid),
            })
        }

        /// Blocks until the supervisor has exited, leaving it unreaped: as a
        /// zombie it keeps the group's id from being reused until `reap`.
        fn exit_watch(&self) -> impl FnOnce() -> Result<(), Errno> + Send + 'static {
            let pid = self.pid;
            move || loop {
                match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                    Err(Errno::EINTR) => continue,
                    other => return other.map(drop),
                }
            }
        }

        /// `signal` to the supervisor, which forwards it to the group.
        fn signal(&self, signal: Signal) {
            // ESRCH only: it has exited (the group goes next)
            let _ = kill(self.pid, signal);
        }

        /// SIGKILL to the whole group, the supervisor included.
        fn kill(&self) {
            let _ = killpg(self.pid, Signal::SIGKILL);
        }

        /// After the supervisor exited: kills what is left of the group,
        /// then reaps the supervisor; its status.
        fn reap(
            mut self,
            exit: Result<Result<(), Errno>, tokio::task::JoinError>,
        ) -> Result<std::process::ExitStatus, Failure> {
            self.kill();
            if let Err(e) = exit
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                // cannot tell when it exits: waiting for it is all that is left
                eprintln!("quorate: watching the command's supervisor: {e}");
            }
            self.supervisor.wait().map_err(|e| Failure {
                message: format!("waiting for the command's supervisor: {e}"),
                code: 1,
            })
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod linux {
    use std::time::Duration;

    use quorate_redlock::LockGuard;

    use super::Stopped;
    use crate::Failure;

    /// Not on this system: the command could not be stopped with the lease.
    pub(super) async fn run_locked(
        _guard: &LockGuard,
        _ttl: Duration,
        _grace: Duration,
        _command: &[String],
    ) -> Result<u8, Stopped> {
        Err(Stopped::Failed(Failure {
            message: "`quorate run` needs Linux (prctl's parent-death signal, signalfd)".to_owned(),
            code: 1,
        }))
    }
}
