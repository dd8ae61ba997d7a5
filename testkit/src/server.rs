//! One real `redis-server` process on a loopback port, owned by a test.

use std::fs::OpenOptions;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::client::{command_at, Connection, DEFAULT_COMMAND_TIMEOUT};
use crate::locate::{faketime_path, redis_server_path};
use crate::{Reply, TestkitError};

/// How long a fresh process gets to answer PING before `NotReady`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Gap between readiness probes; short because startup takes a few ms.
const READY_POLL: Duration = Duration::from_millis(10);
/// Deadline for one readiness probe, so a wedged probe cannot eat the budget.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Free-port picks tried by `start` before giving up on port races.
const PORT_ATTEMPTS: usize = 5;
/// Run by `sh` under faketime: `$0` is redis-server, `$@` its arguments.
const FAKETIME_EXEC: &str = r#"LD_PRELOAD="$LD_PRELOAD:libc.so.6" exec "$0" "$@""#;
/// Log lines quoted in start-up errors (the log itself is deleted with the server).
const LOG_TAIL_LINES: usize = 15;
/// Launches tried by `restart` on its fixed port (the old socket may linger briefly).
const RESTART_ATTEMPTS: usize = 3;

/// How a [`RedisServer`] is configured. The default is a plain in-memory
/// server: no persistence, real clock, no password.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// Enable the append-only file with `appendfsync always`, so that every
    /// acknowledged write survives [`RedisServer::kill`] + [`RedisServer::restart`].
    pub appendonly: bool,
    /// Run the server under `faketime -f "+0 x<rate>"`: its clock starts at
    /// the real time and then runs `rate` times as fast (e.g. `4.0` makes TTLs
    /// expire four times sooner in real time; `0.5` makes them last twice as long).
    pub clock_rate: Option<f64>,
    /// Require this password (`requirepass`); [`RedisServer::url`] and
    /// [`RedisServer::command`] then include it.
    pub password: Option<String>,
    /// Also listen for TLS connections on a port of their own
    /// ([`RedisServer::tls_url`]), with these files; the plain port stays
    /// open for the kit's own commands.
    pub tls: Option<TlsFiles>,
    /// RDB snapshots: the server's `save` setting (e.g. `"60 1"`, Redis's
    /// kind of default); `None` (the default) saves nothing. A
    /// [`RedisServer::restart`] loads the last snapshot (`dump.rdb` in
    /// [`RedisServer::dir`]), also one made by the `SAVE` command.
    pub save: Option<String>,
    /// Leave a new server without quorate's marker key, as a server quorate
    /// has never seen: its first granting call then quarantines it (see
    /// [`QUORATE_MARKER_KEY`]). By default a new server is declared fresh.
    pub unmarked: bool,
    /// Run as a Redis Cluster node (`cluster-enabled`, a node timeout of
    /// 1 s), with its cluster bus on the port + 10000; such a server is left
    /// unmarked (it serves no key before it owns slots). See
    /// [`RedisCluster`](crate::RedisCluster).
    pub cluster: bool,
}

/// PEM files of a TLS server ([`ServerOptions::tls`]); see
/// [`TestCertificates::generate`].
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The server's certificate.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
    /// The CA that signed the server's and the clients' certificates.
    pub ca: PathBuf,
    /// Require a client certificate signed by `ca` (`tls-auth-clients yes`).
    pub client_certs: bool,
}

/// A throwaway CA with a server certificate for `127.0.0.1`/`localhost`
/// and a client certificate, made by the `openssl` command in a directory
/// removed on drop.
#[derive(Debug)]
pub struct TestCertificates {
    dir: PathBuf,
}

impl TestCertificates {
    /// Generates the files (RSA 2048, valid one day).
    pub fn generate() -> Result<Self, TestkitError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("quorate-tls-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let certificates = TestCertificates { dir };
        let subject = |cn: &str| format!("/CN={cn}");
        certificates.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            &subject("quorate test CA"),
        ])?;
        std::fs::write(
            certificates.dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )?;
        // extensions make them v3 certificates, which rustls requires
        std::fs::write(
            certificates.dir.join("client.ext"),
            "extendedKeyUsage=clientAuth\n",
        )?;
        for (name, ext) in [("server", "server.ext"), ("client", "client.ext")] {
            let (key, csr, crt) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
            );
            certificates.openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &subject(name),
            ])?;
            let mut sign = vec![
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-out",
                &crt,
            ];
            sign.extend(["-extfile", ext]);
            certificates.openssl(&sign)?;
        }
        Ok(certificates)
    }

    fn openssl(&self, args: &[&str]) -> Result<(), TestkitError> {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .map_err(|source| TestkitError::Spawn {
                program: PathBuf::from("openssl"),
                source,
            })?;
        if !output.status.success() {
            return Err(TestkitError::InvalidOptions(format!(
                "openssl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(())
    }

    /// A file of the set: `ca.crt`, `server.crt`, `server.key`,
    /// `client.crt`, `client.key`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The server's files, requiring client certificates or not.
    pub fn server_files(&self, client_certs: bool) -> TlsFiles {
        TlsFiles {
            cert: self.path("server.crt"),
            key: self.path("server.key"),
            ca: self.path("ca.crt"),
            client_certs,
        }
    }
}

impl Drop for TestCertificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// quorate's per-node marker key (quorate-redlock's `MARKER_KEY`; a test
/// checks they agree). A server that lost its data loses it and is
/// quarantined by quorate. [`RedisServer::start_with`] sets it on a new
/// server (as `Redlock::declare_fresh` would, unless
/// [`ServerOptions::unmarked`]), naming the process's `run_id`;
/// [`RedisServer::restart`] does not, so quorate sees every restart.
pub const QUORATE_MARKER_KEY: &str = "quorate:marker";

/// The key of a running quarantine (quorate-redlock's `QUARANTINE_KEY`).
pub const QUORATE_QUARANTINE_KEY: &str = "quorate:quarantine";

/// What quorate clients' descriptions (for operators) start with: bookkeeping,
/// not locks, so [`Cluster::keys`](crate::Cluster::keys) leaves them out.
pub const QUORATE_OWNER_PREFIX: &str = "quorate:owner:";

/// A `redis-server` process listening on `127.0.0.1:<free port>`.
///
/// The process is SIGKILLed and its temporary directory removed on `Drop`, so
/// a panicking test leaves nothing behind.
#[derive(Debug)]
pub struct RedisServer {
    options: ServerOptions,
    port: u16,
    /// The TLS port, with [`ServerOptions::tls`].
    tls_port: Option<u16>,
    dir: PathBuf,
    process: Option<Process>,
    /// Tracked so `Cluster::keys` can skip a stopped node instead of hanging,
    /// and so `Drop` can SIGCONT before killing.
    paused: AtomicBool,
}

#[derive(Debug)]
struct Process {
    /// What we spawned: redis-server itself, or `faketime`, which forks it.
    child: Child,
    /// The redis-server process, which is the one to signal.
    redis_pid: u32,
}

impl RedisServer {
    /// Starts a server with [`ServerOptions::default`].
    pub async fn start() -> Result<Self, TestkitError> {
        Self::start_with(ServerOptions::default()).await
    }

    /// Starts a server with `options` and waits until it answers PING.
    ///
    /// The port is found by binding port 0 and releasing it, which can race
    /// with other processes; if the server exits early, another port is tried.
    pub async fn start_with(options: ServerOptions) -> Result<Self, TestkitError> {
        if let Some(rate) = options.clock_rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(TestkitError::InvalidOptions(format!(
                    "clock_rate must be a positive finite number, got {rate}"
                )));
            }
        }
        // Fail fast on missing binaries, before any directory is created.
        redis_server_path()?;
        if options.clock_rate.is_some() {
            faketime_path()?;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = if options.cluster {
                cluster_port()?
            } else {
                free_port()?
            };
            let dir = fresh_dir("quorate-testkit", port)?;
            let tls_port = match options.tls {
                Some(_) => Some(free_port()?),
                None => None,
            };
            let mut server = RedisServer {
                options: options.clone(),
                port,
                tls_port,
                dir,
                process: None,
                paused: AtomicBool::new(false),
            };
            match server.launch().await {
                Ok(()) => {
                    if !server.options.unmarked && !server.options.cluster {
                        server.mark_fresh().await?;
                    }
                    return Ok(server);
                }
                // Dropping `server` removes its directory before the next try.
                Err(TestkitError::Exited { .. }) if attempt < PORT_ATTEMPTS => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Marks the server fresh as `Redlock::declare_fresh` does, if it has
    /// no marker: `fresh:testkit:<run_id>`, naming the running process, so
    /// that a restart (a new `run_id`) still counts as one.
    async fn mark_fresh(&self) -> Result<(), TestkitError> {
        let run_id = self.run_id().await?;
        let marker = format!("fresh:testkit:{run_id}");
        self.command(&["SET", QUORATE_MARKER_KEY, &marker, "NX"])
            .await?;
        Ok(())
    }

    /// The running process's `run_id` (`INFO server`): new at every start.
    pub async fn run_id(&self) -> Result<String, TestkitError> {
        let info = self.command(&["INFO", "server"]).await?;
        info.as_string()
            .and_then(|info| {
                info.lines()
                    .find_map(|line| line.strip_prefix("run_id:"))
                    .map(|id| id.trim().to_owned())
            })
            .ok_or_else(|| TestkitError::Resp("INFO server has no run_id".into()))
    }

    /// The TCP port the server listens on (stable across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port))
    }

    /// `redis://127.0.0.1:<port>`, or `redis://:<password>@127.0.0.1:<port>`
    /// when a password is set (percent-encoded as needed).
    pub fn url(&self) -> String {
        match &self.options.password {
            Some(password) => format!(
                "redis://:{}@127.0.0.1:{}",
                percent_encode(password),
                self.port
            ),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// `rediss://127.0.0.1:<tls port>` (with the password, if any), when
    /// started with [`ServerOptions::tls`].
    pub fn tls_url(&self) -> Option<String> {
        let port = self.tls_port?;
        Some(match &self.options.password {
            Some(password) => format!("rediss://:{}@127.0.0.1:{port}", percent_encode(password)),
            None => format!("rediss://127.0.0.1:{port}"),
        })
    }

    /// The options the server was started with.
    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    /// The server's working directory (AOF files and `redis.log` live here).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file receiving the server's stdout and stderr, across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// The redis-server process id while running (under `faketime`, the
    /// forked redis-server, not the `faketime` wrapper); `None` after [`kill`](Self::kill).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.redis_pid)
    }

    /// Whether the process is running (it may still be paused).
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Whether [`pause`](Self::pause) was called without a later
    /// [`resume`](Self::resume), kill or restart.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// SIGKILLs the server and reaps it; the port and data directory are kept
    /// for [`restart`](Self::restart). Does nothing if already killed.
    pub fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            stop_process(process, self.is_paused());
        }
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Kills the server if running, then starts it again on the same port with
    /// the same options and data directory (so an AOF is replayed), and waits
    /// for PING.
    pub async fn restart(&mut self) -> Result<(), TestkitError> {
        self.kill();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.launch().await {
                Ok(()) => return Ok(()),
                Err(TestkitError::Exited { .. }) if attempt < RESTART_ATTEMPTS => {
                    // Back off: the cause is a socket still bound to our port.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Freezes the server with SIGSTOP: connections stay open but nothing is
    /// answered, like a long GC pause or a stalled VM. No-op when killed.
    pub fn pause(&self) {
        if let Some(pid) = self.pid() {
            send_signal(pid, "STOP");
            self.paused.store(true, Ordering::SeqCst);
        }
    }

    /// Thaws a [`pause`](Self::pause)d server with SIGCONT. No-op when killed.
    pub fn resume(&self) {
        if let Some(pid) = self.pid() {
            send_signal(pid, "CONT");
            self.paused.store(false, Ordering::SeqCst);
        }
    }

    /// One-shot command: connect, AUTH if a password is set, send, read the
    /// reply, close — within 2 s.
    ///
    /// A top-level error reply is [`TestkitError::Resp`]; a missed deadline
    /// (e.g. the server is paused) is [`TestkitError::Timeout`].
    pub async fn command(&self, args: &[&str]) -> Result<Reply, TestkitError> {
        self.command_timeout(args, DEFAULT_COMMAND_TIMEOUT).await
    }

    /// [`command`](Self::command) with a caller-chosen deadline.
    pub async fn command_timeout(
        &self,
        args: &[&str],
        timeout: Duration,
    ) -> Result<Reply, TestkitError> {
        command_at(self.addr(), self.options.password.as_deref(), args, timeout).await
    }

    /// Opens a long-lived connection, authenticated if a password is set.
    pub async fn connect(&self) -> Result<Connection, TestkitError> {
        let mut conn = Connection::connect(self.addr()).await?;
        if let Some(password) = &self.options.password {
            conn.auth(password).await?;
        }
        Ok(conn)
    }

    /// Spawns the process on `self.port` and waits for it to answer PING as
    /// itself (not as some other server that grabbed the port).
    async fn launch(&mut self) -> Result<(), TestkitError> {
        let mut child = self.spawn()?;
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return Err(TestkitError::Exited {
                    port: self.port,
                    status: status.to_string(),
                    log: self.log_path(),
                    tail: self.log_tail(),
                });
            }
            if let Some(redis_pid) = self.probe(&child).await {
                self.process = Some(Process { child, redis_pid });
                self.paused.store(false, Ordering::SeqCst);
                return Ok(());
            }
            if started.elapsed() >= READY_TIMEOUT {
                let redis_pid = child_pids(child.id())
                    .first()
                    .copied()
                    .unwrap_or(child.id());
                stop_process(Process { child, redis_pid }, false);
                return Err(TestkitError::NotReady {
                    port: self.port,
                    waited: started.elapsed(),
                    log: self.log_path(),
                    tail: self.log_tail(),
                });
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// PINGs the port; when it answers, returns the server's pid if that
    /// server is ours (`child` itself, or forked by it under `faketime`).
    async fn probe(&self, child: &Child) -> Option<u32> {
        let password = self.options.password.as_deref();
        let pong = command_at(self.addr(), password, &["PING"], PROBE_TIMEOUT).await;
        if !matches!(pong, Ok(Reply::Simple(ref s)) if s == "PONG") {
            return None;
        }
        let info = command_at(self.addr(), password, &["INFO", "server"], PROBE_TIMEOUT)
            .await
            .ok()?
            .as_string()?;
        let pid: u32 = info
            .lines()
            .find_map(|line| line.strip_prefix("process_id:"))?
            .trim()
            .parse()
            .ok()?;
        // Someone else's server on our port would otherwise pass for ours
        // until our process noticed EADDRINUSE and exited.
        let ours = pid == child.id() || parent_pid(pid) == Some(child.id());
        ours.then_some(pid)
    }

    /// The last lines of the server log, for error messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    fn spawn(&self) -> Result<Child, TestkitError> {
        let redis = redis_server_path()?;
        let mut command = match self.options.clock_rate {
            Some(rate) => {
                // libfaketime cannot initialise inside a jemalloc process
                // (wolfcw/libfaketime#130: recursive clock_gettime, redis never
                // starts), and Debian's redis-server links jemalloc. Appending
                // glibc right after libfaketime in LD_PRELOAD makes malloc
                // resolve to glibc's, so jemalloc stays idle. `faketime` puts
                // its library last in LD_PRELOAD, hence the `sh` hop to append.
                let mut c = Command::new(faketime_path()?);
                c.arg("-f")
                    .arg(format!("+0 x{rate}"))
                    .args(["/bin/sh", "-c", FAKETIME_EXEC])
                    .arg(&redis);
                c
            }
            None => Command::new(&redis),
        };
        let port = self.port.to_string();
        let appendonly = if self.options.appendonly { "yes" } else { "no" };
        let save = self.options.save.as_deref().unwrap_or("");
        command
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", save])
            .args(["--appendonly", appendonly]);
        if self.options.appendonly {
            command.args(["--appendfsync", "always"]);
        }
        command
            .arg("--dir")
            .arg(&self.dir)
            .args(["--protected-mode", "no", "--daemonize", "no"]);
        if let Some(password) = &self.options.password {
            command.args(["--requirepass", password]);
        }
        if self.options.cluster {
            command.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
            ]);
        }
        if let (Some(tls), Some(port)) = (&self.options.tls, self.tls_port) {
            command
                .args(["--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca)
                .args([
                    "--tls-auth-clients",
                    if tls.client_certs { "yes" } else { "no" },
                ]);
        }
        // Append so a restart keeps the earlier run's output for post-mortems.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let program = PathBuf::from(command.get_program());
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|source| TestkitError::Spawn { program, source })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new, empty working directory for a process on `port`. One per call:
/// two tests of one process can be told the same free port, and the one
/// that then fails to bind removes its directory, which must not be the
/// running process's.
pub(crate) fn fresh_dir(kind: &str, port: u16) -> Result<PathBuf, TestkitError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("{kind}-{}-{port}-{n}", std::process::id()));
    // A leftover from an earlier run of a recycled pid must not leak data in.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Picks a port that was free a moment ago by letting the OS choose one.
pub(crate) fn free_port() -> Result<u16, TestkitError> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// A free port whose cluster bus port (+ 10000) is free too.
fn cluster_port() -> Result<u16, TestkitError> {
    for _ in 0..100 {
        let port = free_port()?;
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, bus)).is_ok() {
            return Ok(port);
        }
    }
    Err(TestkitError::InvalidOptions(
        "no free port pair (port, port + 10000) for a cluster node".into(),
    ))
}

/// Kills redis-server and reaps what we spawned, leaving the port free.
fn stop_process(mut process: Process, paused: bool) {
    // SIGKILL first even when paused (it ends stopped processes too): a SIGCONT
    // first would let a "partitioned" node briefly serve queued commands.
    send_signal(process.redis_pid, "KILL");
    if paused {
        // Wake it so the kernel finishes the kill promptly.
        send_signal(process.redis_pid, "CONT");
    }
    if process.redis_pid != process.child.id() {
        // Under faketime: let faketime reap redis and exit, so that when our
        // wait returns the listening socket is gone.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if matches!(process.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = process.child.kill();
    let _ = process.child.wait();
}

/// Sends a signal via the `kill` command, since this crate forbids `unsafe`.
fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The parent of `pid`, from `/proc/<pid>/stat`.
fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in field 2 may contain spaces; fields after its `)` are fixed.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Direct children of `pid` (used to find redis-server under `faketime`
/// when it never became ready, so it is not left running).
fn child_pids(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
