//! A TCP proxy that injects network faults between a client and one server.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::TestkitError;

/// What a [`FaultProxy`] does to traffic. Changes apply to open and new
/// connections at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Forward bytes both ways unchanged.
    #[default]
    Pass,
    /// Forward every chunk, in order, this long after it was received.
    Delay(Duration),
    /// Accept and read, but forward nothing in either direction (bytes are
    /// dropped, connections stay open): a client sees a silent hang, as with
    /// a partitioned host.
    Blackhole,
    /// Reset (RST) every open connection and every new one right after accept.
    Reset,
}

/// A loopback TCP proxy in front of `upstream` whose behaviour is switched
/// with [`set`](Self::set). Its tasks stop when it is dropped.
///
/// Needs a running tokio runtime.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    /// A watch channel so every pump task wakes the moment the fault changes.
    mode: watch::Sender<Mode>,
    /// Owns the per-connection tasks; aborting it aborts them all.
    accept: JoinHandle<()>,
    /// Connections accepted so far.
    accepted: Arc<AtomicU64>,
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:<free port>` forwarding to `upstream`,
    /// initially in [`Fault::Pass`].
    pub async fn start(upstream: SocketAddr) -> Result<Self, TestkitError> {
        // Binding here (not in the task) means the port is known and bound
        // before `start` returns, without a pick-then-bind race.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (mode, watcher) = watch::channel(Mode::default());
        let accepted = Arc::new(AtomicU64::new(0));
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream,
            watcher,
            Arc::clone(&accepted),
        ));
        Ok(Self {
            addr,
            upstream,
            mode,
            accept,
            accepted,
        })
    }

    /// The proxy's listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:<proxy port>` (no password; add one if the upstream needs it).
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// The address traffic is forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// How many connections the proxy has accepted so far (a client that
    /// reconnects shows up here).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Switches the fault for existing and new connections immediately.
    ///
    /// `Reset` is remembered even if replaced before a connection's task
    /// observed it: every connection open at that moment is reset.
    pub fn set(&self, fault: Fault) {
        self.mode.send_modify(|mode| {
            if fault == Fault::Reset {
                mode.resets += 1;
            }
            mode.fault = fault;
        });
    }

    /// The fault currently applied.
    pub fn fault(&self) -> Fault {
        self.mode.borrow().fault.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// What the pump tasks watch.
#[derive(Debug, Default)]
struct Mode {
    fault: Fault,
    /// How many times `Reset` was set; a connection opened under an older
    /// count is reset even if the fault has since moved on.
    resets: u64,
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    mode: watch::Receiver<Mode>,
    accepted_count: Arc<AtomicU64>,
) {
    // Dropped with this task on abort, which aborts every connection task.
    let mut connections = JoinSet::new();
    loop {
        let accepted = listener.accept().await;
        while connections.try_join_next().is_some() {}
        let Ok((client, _)) = accepted else {
            // Transient (e.g. out of file descriptors); don't spin hot.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        accepted_count.fetch_add(1, Ordering::SeqCst);
        let resets = {
            let current = mode.borrow();
            if current.fault == Fault::Reset {
                drop(current);
                reset(client);
                continue;
            }
            current.resets
        };
        connections.spawn(serve(client, upstream, mode.clone(), resets));
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    resets: u64,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        // An unreachable upstream looks like a refused connection to the client.
        reset(client);
        return;
    };
    // Chunks are forwarded as read; Nagle would blur the Delay timings.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    if pump(&mut client, &mut server, &mut mode, resets).await == Outcome::Reset {
        reset(client);
        reset(server);
    }
}

/// Closes with RST instead of FIN, so the peer gets ECONNRESET.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Both sides closed normally (or the proxy is gone).
    Closed,
    /// Abort both sides with RST.
    Reset,
}

/// Bytes flowing one way, waiting for their forwarding time.
#[derive(Default)]
struct Direction {
    /// (time received, bytes not yet written), oldest first.
    queue: VecDeque<(Instant, Vec<u8>)>,
    /// The source sent EOF.
    eof: bool,
    /// EOF was passed on to the destination.
    shut: bool,
}

impl Direction {
    fn due(&self, delay: Duration) -> Option<Instant> {
        self.queue.front().map(|(at, _)| *at + delay)
    }

    fn front(&self) -> &[u8] {
        self.queue.front().map(|(_, b)| b.as_slice()).unwrap_or(&[])
    }

    fn consume(&mut self, n: usize) {
        if let Some((_, bytes)) = self.queue.front_mut() {
            bytes.drain(..n.min(bytes.len()));
            if bytes.is_empty() {
                self.queue.pop_front();
            }
        }
    }
}

/// What woke the pump; handled after `select!` so no future borrows linger.
enum Event {
    ModeChanged { proxy_gone: bool },
    ReadUp(std::io::Result<usize>),
    ReadDown(std::io::Result<usize>),
    WroteUp(std::io::Result<usize>),
    WroteDown(std::io::Result<usize>),
    Timer,
}

/// Shuttles bytes both ways under the current fault until both sides close
/// or a reset is due. Everything runs in one task so a fault change is seen
/// by both directions at once.
async fn pump(
    client: &mut TcpStream,
    server: &mut TcpStream,
    mode: &mut watch::Receiver<Mode>,
    resets_at_accept: u64,
) -> Outcome {
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let mut up = Direction::default();
    let mut down = Direction::default();
    let mut up_buf = vec![0u8; 16 * 1024];
    let mut down_buf = vec![0u8; 16 * 1024];
    loop {
        let fault = {
            let current = mode.borrow_and_update();
            if current.resets != resets_at_accept {
                return Outcome::Reset;
            }
            current.fault.clone()
        };
        let delay = match fault {
            Fault::Pass | Fault::Blackhole => Duration::ZERO,
            Fault::Delay(d) => d,
            Fault::Reset => return Outcome::Reset,
        };
        let blackhole = fault == Fault::Blackhole;
        if blackhole {
            up.queue.clear();
            down.queue.clear();
        } else {
            // Pass on a half-close only once everything before it was delivered.
            if up.eof && up.queue.is_empty() && !up.shut {
                let _ = server_write.shutdown().await;
                up.shut = true;
            }
            if down.eof && down.queue.is_empty() && !down.shut {
                let _ = client_write.shutdown().await;
                down.shut = true;
            }
            if up.shut && down.shut {
                return Outcome::Closed;
            }
        }
        let now = Instant::now();
        let up_due = up.due(delay);
        let down_due = down.due(delay);
        let up_ready = up_due.is_some_and(|t| t <= now);
        let down_ready = down_due.is_some_and(|t| t <= now);
        let wake = [up_due, down_due]
            .into_iter()
            .flatten()
            .filter(|t| *t > now)
            .min();

        let event = tokio::select! {
            changed = mode.changed() => Event::ModeChanged { proxy_gone: changed.is_err() },
            r = client_read.read(&mut up_buf), if !up.eof => Event::ReadUp(r),
            r = server_read.read(&mut down_buf), if !down.eof => Event::ReadDown(r),
            r = server_write.write(up.front()), if up_ready => Event::WroteUp(r),
            r = client_write.write(down.front()), if down_ready => Event::WroteDown(r),
            () = tokio::time::sleep_until(wake.unwrap_or(now)), if wake.is_some() => Event::Timer,
        };

        match event {
            Event::ModeChanged { proxy_gone: true } => return Outcome::Closed,
            Event::ModeChanged { proxy_gone: false } | Event::Timer => {}
            Event::ReadUp(Ok(0)) => up.eof = true,
            Event::ReadDown(Ok(0)) => down.eof = true,
            Event::ReadUp(Ok(n)) => {
                if !blackhole {
                    up.queue.push_back((Instant::now(), up_buf[..n].to_vec()));
                }
            }
            Event::ReadDown(Ok(n)) => {
                if !blackhole {
                    down.queue
                        .push_back((Instant::now(), down_buf[..n].to_vec()));
                }
            }
            Event::WroteUp(Ok(n)) if n > 0 => up.consume(n),
            Event::WroteDown(Ok(n)) if n > 0 => down.consume(n),
            // An error or a zero-length write on either side: mirror it as a
            // reset to the other, as a broken network path would.
            Event::ReadUp(Err(_))
            | Event::ReadDown(Err(_))
            | Event::WroteUp(_)
            | Event::WroteDown(_) => return Outcome::Reset,
        }
    }
}
