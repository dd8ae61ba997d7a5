//! `quorate`: the operator's command line for quorate locks.
//!
//! ```text
//! quorate --nodes redis://a:6379,redis://b:6379,redis://c:6379 status invoice:42
//! QUORATE_NODES=... quorate run nightly-report --ttl 30s --wait 10s -- ./report.sh
//! ```
//!
//! Exit codes: see [`EXIT_CODES`].
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod declare_fresh;
mod direct;
mod duration;
mod list;
mod nodes;
mod run;
mod status;
#[cfg(target_os = "linux")]
mod supervise;
#[cfg(feature = "tls")]
mod tls;
mod unlock;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use quorate_redlock::{ConfigError, ConnectError, Error, FredSettings, Redlock};

use crate::duration::Wait;

/// The exit codes, as `--help` shows them.
const EXIT_CODES: &str = "Exit codes: 0 success (for `run`: the command's own status, 128 + \
the signal that ended it); 1 anything else (the message says what); 2 bad usage; 69 the \
nodes are unavailable (no quorum, unreachable); 75 `run`: the lock is held and was not \
granted within --wait; 76 `run`: the lock was lost and the command stopped.";

/// The nodes are unavailable (no quorum, unreachable).
pub(crate) const EXIT_UNAVAILABLE: u8 = 69;
/// `run`: the lock was not granted within `--wait`.
pub(crate) const EXIT_BUSY: u8 = 75;
/// `run`: the lock was lost while the command ran; the command was stopped.
pub(crate) const EXIT_LOST: u8 = 76;

/// Inspect and operate quorate locks on a set of Redis nodes.
#[derive(Debug, Parser)]
#[command(name = "quorate", version, about, after_help = EXIT_CODES)]
struct Cli {
    /// The nodes, comma-separated URLs (`redis://host:port`; `rediss://` when built with
    /// the `tls` feature: `cargo install quorate-cli --features tls`).
    #[arg(long, env = "QUORATE_NODES", value_delimiter = ',', global = true)]
    nodes: Vec<String>,
    /// The longest lease the applications may take (`RedlockBuilder::max_ttl`): the
    /// longest `run --ttl`, and how long a node that lost its data sits out. Give the
    /// applications' value.
    #[arg(long, env = "QUORATE_MAX_TTL", default_value = "60s", value_parser = duration::parse, global = true)]
    max_ttl: Duration,
    /// Machine-readable output: one JSON object per line.
    #[arg(long, global = true)]
    json: bool,
    /// TLS: a PEM file of the CA certificates to trust for `rediss://` nodes (default:
    /// the system's roots).
    #[cfg(feature = "tls")]
    #[arg(long, env = "QUORATE_TLS_CA", global = true)]
    tls_ca: Option<std::path::PathBuf>,
    /// TLS: a PEM file with this client's certificate chain (with --tls-key).
    #[cfg(feature = "tls")]
    #[arg(long, env = "QUORATE_TLS_CERT", global = true, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// TLS: a PEM file with this client's private key (with --tls-cert).
    #[cfg(feature = "tls")]
    #[arg(long, env = "QUORATE_TLS_KEY", global = true, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// The key prefix the applications use (`RedlockBuilder::namespace`).
    #[arg(long, env = "QUORATE_NAMESPACE", default_value = "", global = true)]
    namespace: String,
    /// How this client names itself in what others see of its locks.
    #[arg(long, default_value = "quorate-cli", global = true)]
    owner: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Who holds each KEY, on each node: holder, remaining ttl, fence, queued waiters.
    Status {
        /// The lock names (resources).
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Delete a lock whatever its holder (for a holder known to be dead).
    Unlock {
        /// The lock name.
        key: String,
        /// Required: the holder, if alive, is not told and keeps working.
        #[arg(long)]
        force: bool,
    },
    /// Run a command while holding KEY (a distributed flock(1)), in a process group of its
    /// own (Linux only): the lock is extended while the command runs, released once the
    /// command exited and what it left in its group was killed. If no extension is
    /// confirmed in time the group gets SIGTERM at the lock's validity minus --grace and
    /// SIGKILL at the validity (exit 76). SIGINT, SIGHUP and SIGTERM are forwarded to the
    /// group; if quorate dies, even of SIGKILL, the group is killed.
    Run {
        /// The lock name.
        key: String,
        /// The lock's ttl (it is extended every third of it).
        #[arg(long, default_value = "30s", value_parser = duration::parse)]
        ttl: Duration,
        /// How long to wait for the lock: a duration (0: try once) or `forever`.
        #[arg(long, default_value = "0s", value_parser = duration::parse_wait)]
        wait: Wait,
        /// How long before the lock's validity ends the command's group gets SIGTERM
        /// (SIGKILL comes at the end); part of the validity, shorter than half of --ttl
        /// [default: 5s, or a quarter of --ttl when shorter].
        #[arg(long, value_parser = duration::parse)]
        grace: Option<Duration>,
        /// The command and its arguments.
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
    /// The locks held on a majority of nodes (SCAN on each node, then each key inspected).
    List {
        /// Only lock names starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Print acquisitions and releases of KEY as they happen, until Ctrl-C.
    Watch {
        /// The lock name.
        key: String,
        /// Stop after this long.
        #[arg(long = "for", value_parser = duration::parse)]
        for_at_most: Option<Duration>,
    },
    /// Each node's reachability, latency, version, quarantine state, and the settings
    /// that matter for safety.
    Nodes,
    /// Declare every node without a current quarantine marker fresh, so that it votes at
    /// once instead of sitting out a quarantine of --max-ttl. ONLY for servers known to be
    /// new and empty, or restarted with every write kept (AOF, appendfsync always): a node
    /// that lost data and is declared fresh can grant a lock that is still held elsewhere.
    /// A node in quarantine or already marked is left as it is.
    DeclareFresh {
        /// Required: confirms the servers are new or kept every write.
        #[arg(long)]
        i_know_they_kept_every_write: bool,
    },
    /// Internal: `run`'s command, started by the supervisor with the signals unblocked.
    #[command(name = "__exec", hide = true)]
    Exec {
        /// The command and its arguments.
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
    /// Internal: `run`'s supervisor of the command's process group.
    #[command(name = "__supervise", hide = true)]
    Supervise {
        /// The `quorate run` process whose death kills the group.
        #[arg(long)]
        parent: u32,
        /// The command and its arguments.
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any runtime: the supervisor blocks signals in its only thread.
    match &cli.command {
        #[cfg(target_os = "linux")]
        Command::Supervise { parent, command } => {
            return ExitCode::from(supervise::supervise(*parent, command));
        }
        #[cfg(target_os = "linux")]
        Command::Exec { command } => return ExitCode::from(supervise::exec(command)),
        #[cfg(not(target_os = "linux"))]
        Command::Supervise { .. } | Command::Exec { .. } => {
            eprintln!("quorate: `run` needs Linux");
            return ExitCode::from(1);
        }
        _ => {}
    }
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        // `run` relies on its future being polled on this (the main) thread
        Ok(runtime) => runtime.block_on(run_cli(cli)),
        Err(e) => {
            eprintln!("quorate: cannot start the runtime: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run_cli(cli: Cli) -> ExitCode {
    if cli.nodes.is_empty() {
        eprintln!("quorate: no nodes: give --nodes URL,URL,... or set QUORATE_NODES");
        return ExitCode::from(2);
    }
    let settings = match fred_settings(&cli) {
        Ok(settings) => settings,
        Err(failure) => {
            eprintln!("quorate: {}", failure.message);
            return ExitCode::from(failure.code);
        }
    };
    let json = cli.json;
    let result = match cli.command {
        Command::Nodes => nodes::run(&cli.nodes, &settings, cli.max_ttl, json).await,
        command => match connect(
            &cli.nodes,
            &cli.namespace,
            &cli.owner,
            cli.max_ttl,
            settings.clone(),
        )
        .await
        {
            Err(error) => Err(error),
            Ok(redlock) => match command {
                Command::Status { keys } => status::run(&redlock, &keys, json).await,
                Command::Unlock { key, force } => unlock::run(&redlock, &key, force, json).await,
                Command::DeclareFresh {
                    i_know_they_kept_every_write,
                } => declare_fresh::run(&redlock, i_know_they_kept_every_write, json).await,
                Command::Run {
                    key,
                    ttl,
                    wait,
                    grace,
                    command,
                } => run::run(&redlock, &key, ttl, wait.0, grace, &command).await,
                Command::List { prefix } => {
                    list::run(&redlock, &cli.nodes, &settings, &prefix, json).await
                }
                Command::Watch { key, for_at_most } => {
                    watch::run(&redlock, &key, for_at_most, json).await
                }
                Command::Nodes | Command::Supervise { .. } | Command::Exec { .. } => {
                    unreachable!("handled above")
                }
            },
        },
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("quorate: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// A failed command: what to print and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) code: u8,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        match error {
            // a bad --ttl or key is bad usage, whichever layer found it
            Error::InvalidConfig(config) => Failure::from(config),
            Error::Connect(connect) => Failure::from(connect),
            Error::NoQuorum { .. } => Failure {
                message: error.to_string(),
                code: EXIT_UNAVAILABLE,
            },
            _ => Failure {
                message: error.to_string(),
                code: 1,
            },
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(error: ConfigError) -> Self {
        let code = 2;
        let message = match &error {
            // the library's advice (a cargo feature of quorate-redlock) is not the operator's
            ConfigError::TlsNotEnabled { url, .. } => format!(
                "`{url}` asks for TLS, but this quorate was built without TLS: install it with \
                 `cargo install quorate-cli --features tls`"
            ),
            _ => error.to_string(),
        };
        Failure { message, code }
    }
}

impl From<ConnectError> for Failure {
    fn from(error: ConnectError) -> Self {
        match error {
            ConnectError::Config(config) => Failure::from(config),
            retryable => Failure {
                message: retryable.to_string(),
                code: EXIT_UNAVAILABLE,
            },
        }
    }
}

async fn connect(
    urls: &[String],
    namespace: &str,
    owner: &str,
    max_ttl: Duration,
    settings: FredSettings,
) -> Result<Redlock, Failure> {
    let redlock = Redlock::builder()
        .urls(urls)
        .namespace(namespace)
        .owner(owner)
        .fred_settings(settings)
        // `run --ttl` may ask for up to the longest lease any client may use
        .max_ttl(max_ttl)
        .build()
        .await?;
    Ok(redlock)
}

/// The client settings: quorate's defaults, and the TLS files given.
fn fred_settings(cli: &Cli) -> Result<FredSettings, Failure> {
    #[cfg(feature = "tls")]
    {
        let tls = tls::config(
            cli.tls_ca.as_deref(),
            cli.tls_cert.as_deref(),
            cli.tls_key.as_deref(),
        )?;
        Ok(FredSettings::default().tls(tls))
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = cli;
        Ok(FredSettings::default())
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
