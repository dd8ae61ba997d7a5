//! A tiny RESP2 client over one TCP connection, independent of the client
//! library under test so that test setup and assertions cannot share its bugs.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::resp::{encode_command, parse};
use crate::{Reply, TestkitError};

/// Deadline used by the one-shot helpers ([`command_at`] callers and
/// `RedisServer::command`) unless told otherwise.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// One open connection to a RESP2 server (or to a [`FaultProxy`](crate::FaultProxy)).
///
/// Methods have no built-in deadline; wrap them in `tokio::time::timeout` when
/// the peer may be paused or black-holed.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    addr: SocketAddr,
    /// Bytes read but not yet consumed by a parsed reply.
    buf: Vec<u8>,
}

impl Connection {
    /// Opens a TCP connection to `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<Self, TestkitError> {
        let stream = TcpStream::connect(addr).await?;
        // Commands are tiny; waiting for Nagle would only add latency to timings.
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            addr,
            buf: Vec::new(),
        })
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `AUTH password`; an error reply becomes [`TestkitError::Resp`].
    pub async fn auth(&mut self, password: &str) -> Result<(), TestkitError> {
        self.command(&["AUTH", password]).await.map(drop)
    }

    /// Sends one command and reads its reply.
    ///
    /// A top-level error reply is returned as [`TestkitError::Resp`] so that
    /// `Ok` always means the server accepted the command; errors nested in
    /// arrays (e.g. from `EXEC`) stay as [`Reply::Error`].
    pub async fn command(&mut self, args: &[&str]) -> Result<Reply, TestkitError> {
        self.stream.write_all(&encode_command(args)).await?;
        match self.read_reply().await? {
            Reply::Error(message) => Err(TestkitError::Resp(message)),
            reply => Ok(reply),
        }
    }

    async fn read_reply(&mut self) -> Result<Reply, TestkitError> {
        loop {
            if let Some((reply, used)) = parse(&self.buf).map_err(TestkitError::Resp)? {
                self.buf.drain(..used);
                return Ok(reply);
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{} closed the connection before replying", self.addr),
                )
                .into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Connects to `addr`, authenticates if `password` is set, sends one command,
/// reads the reply and closes — all within `timeout`.
///
/// A missed deadline is [`TestkitError::Timeout`]; an error reply is
/// [`TestkitError::Resp`].
pub async fn command_at(
    addr: SocketAddr,
    password: Option<&str>,
    args: &[&str],
    timeout: Duration,
) -> Result<Reply, TestkitError> {
    let exchange = async {
        let mut conn = Connection::connect(addr).await?;
        if let Some(password) = password {
            conn.auth(password).await?;
        }
        conn.command(args).await
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| TestkitError::Timeout {
            addr,
            after: timeout,
        })?
}
