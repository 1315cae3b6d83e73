//! A Dask connection: TCP or TLS + framing + handshake (`distributed/comm/tcp.py`,
//! `core.py`), with the limits that keep one peer from hurting the others.
//!
//! - **Caps**: a message announcing more than [`CommConfig::max_message_bytes`] or more
//!   than [`CommConfig::max_frames`] frames is refused before its body is buffered, and
//!   the connection is closed.
//! - **Handshake**: TLS and Dask's handshake must finish within
//!   `distributed.comm.timeouts.connect`; a peer that connects and stays silent is dropped.
//! - **Stalls**: a write that makes no progress for `distributed.comm.timeouts.tcp` (a peer
//!   that stopped reading, or vanished) fails and closes the whole connection, so the
//!   reading side ends too; a message whose bytes stop arriving mid-way for that long
//!   closes it as well. An idle connection between messages is fine for any time (Dask
//!   pools connections and clients can be quiet for hours).
//! - **Dead peers**: TCP keepalive and `TCP_USER_TIMEOUT` as `set_tcp_timeout` in
//!   `tcp.py` sets them, so a vanished host is noticed even on an idle connection.

use crate::error::CommError;
use crate::tls::{TlsContext, TlsError};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use rask_protocol::handshake::{check_peer_handshake, handshake};
use rask_protocol::{decode_message, encode_message, FrameCodec, Frames, ProtocolError, Value};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder, FramedRead};
use tokio_util::sync::CancellationToken;

/// Connection settings: caps, timeouts and transport security.
#[derive(Debug, Clone)]
pub struct CommConfig {
    /// largest message a peer may send (sum of its frame lengths)
    pub max_message_bytes: u64,
    /// most frames in one message
    pub max_frames: u64,
    /// `distributed.comm.timeouts.connect`: TLS + Dask handshake must finish within it
    pub connect_timeout: Duration,
    /// `distributed.comm.timeouts.tcp`: no write progress, or a message stuck mid-way,
    /// for this long closes the connection; also the keepalive / `TCP_USER_TIMEOUT` budget
    pub tcp_timeout: Duration,
    /// certificates for `tls://` (listening and dialing)
    pub tls: Option<Arc<TlsContext>>,
    /// speak TLS on accepted connections (the listener is `tls://`)
    pub listen_tls: bool,
    /// refuse to dial `tcp://`
    pub require_encryption: bool,
}

impl Default for CommConfig {
    /// The frame codec's own caps and distributed's default timeouts, plain TCP.
    fn default() -> Self {
        let codec = FrameCodec::default();
        CommConfig {
            max_message_bytes: codec.max_message_bytes,
            max_frames: codec.max_frames,
            connect_timeout: Duration::from_secs(30),
            tcp_timeout: Duration::from_secs(30),
            tls: None,
            listen_tls: false,
            require_encryption: false,
        }
    }
}

type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// The read half of a connection.
pub struct CommReader {
    inner: FramedRead<Progress<BoxRead>, Codec>,
    /// cancelled when either half gives up on the connection
    closed: CancellationToken,
    stall: Duration,
    peer: Arc<str>,
}

/// The write half of a connection.
pub struct CommWriter {
    io: BoxWrite,
    codec: FrameCodec,
    buf: BytesMut,
    closed: CancellationToken,
    stall: Duration,
    peer: Arc<str>,
}

/// What a listener got: a connection to serve, or a plain (unencrypted) Dask peer on a
/// `tls://` listener, handshaken in the clear only so it can be told why it is refused.
pub enum Accepted {
    /// TLS if the listener is `tls://`, handshake done
    Ready(Comm),
    /// plain TCP on a `tls://` listener: answer its first request with a refusal, close
    Plaintext(Comm),
}

/// Both halves, for request/reply use.
pub struct Comm {
    /// read half
    pub reader: CommReader,
    /// write half
    pub writer: CommWriter,
    /// `ip:port` of the other side, for logs
    pub peer: String,
}

/// Counts bytes as they arrive, so a read can tell a silent peer from a slow one.
struct Progress<R> {
    inner: R,
    bytes: u64,
}

impl<R: AsyncRead + Unpin> AsyncRead for Progress<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.bytes += (buf.filled().len() - before) as u64;
        r
    }
}

/// The frame codec, plus whether a message has begun and not ended: only then is a silent
/// peer stalling (between messages, silence is normal).
struct Codec {
    inner: FrameCodec,
    in_message: bool,
}

impl Decoder for Codec {
    type Item = Frames;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frames>, ProtocolError> {
        let before = src.len();
        let r = self.inner.decode(src)?;
        match r {
            Some(_) => self.in_message = !src.is_empty(),
            // the prelude was taken (the body is pending), or part of a message is buffered
            None if src.len() != before || !src.is_empty() => self.in_message = true,
            None => {}
        }
        Ok(r)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frames>, ProtocolError> {
        self.inner.decode_eof(src)
    }
}

impl CommReader {
    /// The next message, or `None` on a clean EOF. Cancel-safe: dropping the future keeps
    /// a partly read message for the next call.
    pub async fn read(&mut self) -> Result<Option<Value>, CommError> {
        match self.read_frames().await? {
            Some(frames) => Ok(Some(decode_message(&frames)?)),
            None => Ok(None),
        }
    }

    /// The next message's frames, not decoded (for a [`rask_protocol::MessageReader`]), or
    /// `None` on a clean EOF. Cancel-safe as [`Self::read`].
    pub async fn read_frames(&mut self) -> Result<Option<Frames>, CommError> {
        let mut seen = self.inner.get_ref().bytes;
        loop {
            let next = tokio::select! {
                biased;
                _ = self.closed.cancelled() => return Err(CommError::Closed),
                next = tokio::time::timeout(self.stall, self.inner.next()) => next,
            };
            match next {
                Ok(None) => return Ok(None),
                // Python's ssl closes without TLS close_notify; between messages that is
                // an ordinary close, not truncation.
                Ok(Some(Err(ProtocolError::Io(e))))
                    if e.kind() == std::io::ErrorKind::UnexpectedEof
                        && !self.inner.decoder().in_message =>
                {
                    return Ok(None)
                }
                // TCP_USER_TIMEOUT or keepalive gave up on the peer: a dead host
                Ok(Some(Err(ProtocolError::Io(e)))) if e.kind() == std::io::ErrorKind::TimedOut => {
                    self.closed.cancel();
                    let e = CommError::Stalled(self.stall, "a peer that stopped answering");
                    tracing::warn!(peer = %self.peer, "{e}");
                    return Err(e);
                }
                Ok(Some(Err(e))) => {
                    self.closed.cancel();
                    // Logged here, where the peer is known: a stream's owner may only see
                    // that its connection ended.
                    let flag = match e {
                        ProtocolError::MessageTooLarge { .. } => Some("--max-message-bytes"),
                        ProtocolError::TooManyFrames { .. } => Some("--max-frames"),
                        _ => None,
                    };
                    if let Some(flag) = flag {
                        tracing::warn!(peer = %self.peer, "closing connection: {e} ({flag})");
                    }
                    return Err(e.into());
                }
                Ok(Some(Ok(frames))) => return Ok(Some(frames)),
                Err(_) => {
                    let now = self.inner.get_ref().bytes;
                    if self.inner.decoder().in_message && now == seen {
                        self.closed.cancel();
                        let e = CommError::Stalled(self.stall, "the rest of a message");
                        tracing::warn!(peer = %self.peer, "{e}");
                        return Err(e);
                    }
                    seen = now;
                }
            }
        }
    }
}

impl CommWriter {
    /// Writes one message and flushes. Fails (and closes the connection) if the peer takes
    /// no bytes for `distributed.comm.timeouts.tcp`.
    pub async fn write(&mut self, msg: &Value) -> Result<(), CommError> {
        self.write_frames(encode_message(msg)).await
    }

    /// Writes a message already encoded (by a [`rask_protocol::MessageEncoder`]).
    pub async fn write_frames(&mut self, frames: Vec<Bytes>) -> Result<(), CommError> {
        if self.closed.is_cancelled() {
            return Err(CommError::Closed);
        }
        self.buf.clear();
        self.codec.encode(frames, &mut self.buf)?;
        let result = self.write_buf().await;
        // Do not keep a one-off huge message's buffer for the connection's lifetime.
        if self.buf.capacity() > 4 << 20 {
            self.buf = BytesMut::new();
        }
        if let Err(e) = &result {
            self.closed.cancel();
            if matches!(e, CommError::Stalled(..)) {
                tracing::warn!(peer = %self.peer, "{e}");
            }
        }
        result
    }

    async fn write_buf(&mut self) -> Result<(), CommError> {
        // Each write that makes progress restarts the clock: a big message to a slow but
        // live peer is fine, a peer that takes nothing is not.
        while !self.buf.is_empty() {
            match tokio::time::timeout(self.stall, self.io.write_buf(&mut self.buf)).await {
                Err(_) => return Err(CommError::Stalled(self.stall, "the peer to read")),
                Ok(Ok(0)) => return Err(CommError::Closed),
                Ok(Ok(_)) => {}
                // the kernel's TCP_USER_TIMEOUT (the same budget) noticed first
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(CommError::Stalled(self.stall, "the peer to acknowledge"))
                }
                Ok(Err(e)) => return Err(e.into()),
            }
        }
        tokio::time::timeout(self.stall, self.io.flush())
            .await
            .map_err(|_| CommError::Stalled(self.stall, "the peer to read"))??;
        Ok(())
    }
}

/// `TCP_NODELAY`, keepalive and `TCP_USER_TIMEOUT` as `distributed/comm/tcp.py`
/// (`set_tcp_timeout`) sets them: probes start after `idle`, every `interval`, 10 of them,
/// adding up to the timeout.
fn prepare_socket(stream: &TcpStream, timeout: Duration) {
    let _ = stream.set_nodelay(true);
    let (idle, interval, probes) = keepalive_schedule(timeout);
    let sock = socket2::SockRef::from(stream);
    let ka = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(interval)
        .with_retries(probes);
    if let Err(e) = sock.set_tcp_keepalive(&ka) {
        tracing::debug!("cannot set TCP keepalive: {e}");
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = sock.set_tcp_user_timeout(Some(timeout)) {
        tracing::debug!("cannot set TCP_USER_TIMEOUT: {e}");
    }
}

/// (idle, interval, probes) for a dead-peer budget of `timeout`, Dask's arithmetic; Dask
/// asserts `timeout >= 11 s`, rask shrinks the probe count instead.
fn keepalive_schedule(timeout: Duration) -> (Duration, Duration, u32) {
    let t = timeout.as_secs().max(2);
    let probes = 10.min(t - 1);
    let idle = (t / 4).max(2).min(t - 1);
    let interval = ((t - idle) / probes).max(1);
    let idle = t.saturating_sub(interval * probes).max(1);
    (
        Duration::from_secs(idle),
        Duration::from_secs(interval),
        probes as u32,
    )
}

impl Comm {
    fn new(read: BoxRead, write: BoxWrite, peer: String, config: &CommConfig) -> Comm {
        let codec = FrameCodec::with_limits(config.max_message_bytes, config.max_frames);
        let closed = CancellationToken::new();
        let name: Arc<str> = peer.as_str().into();
        Comm {
            reader: CommReader {
                inner: FramedRead::new(
                    Progress {
                        inner: read,
                        bytes: 0,
                    },
                    Codec {
                        inner: codec.clone(),
                        in_message: false,
                    },
                ),
                closed: closed.clone(),
                stall: config.tcp_timeout,
                peer: name.clone(),
            },
            writer: CommWriter {
                io: write,
                codec,
                buf: BytesMut::new(),
                closed,
                stall: config.tcp_timeout,
                peer: name,
            },
            peer,
        }
    }

    fn plain(stream: TcpStream, peer: String, config: &CommConfig) -> Comm {
        let (r, w) = stream.into_split();
        Comm::new(Box::new(r), Box::new(w), peer, config)
    }

    /// Server side of a new connection; a plain peer on a `tls://` listener is an error.
    pub async fn accept(stream: TcpStream, config: &CommConfig) -> Result<Comm, CommError> {
        match Comm::accept_listener(stream, config).await? {
            Accepted::Ready(comm) => Ok(comm),
            Accepted::Plaintext(_) => Err(TlsError::PlainTcp.into()),
        }
    }

    /// Server side of a new connection: TLS if the listener is `tls://`, then both sides
    /// write their handshake and read the other's, all within the connect timeout.
    pub async fn accept_listener(
        stream: TcpStream,
        config: &CommConfig,
    ) -> Result<Accepted, CommError> {
        prepare_socket(&stream, config.tcp_timeout);
        let peer = peer_of(&stream);
        let limit = config.connect_timeout;
        tokio::time::timeout(limit, async {
            let mut accepted = match (&config.tls, config.listen_tls) {
                (Some(tls), true) => {
                    if looks_like_tls(&stream).await? {
                        let s = tls
                            .acceptor
                            .accept(stream)
                            .await
                            .map_err(TlsError::handshake)?;
                        let (r, w) = tokio::io::split(s);
                        Accepted::Ready(Comm::new(Box::new(r), Box::new(w), peer, config))
                    } else {
                        // Only small messages: this peer gets one refusal and nothing else.
                        let refusal = CommConfig {
                            max_message_bytes: config.max_message_bytes.min(1 << 20),
                            max_frames: config.max_frames.min(64),
                            ..config.clone()
                        };
                        Accepted::Plaintext(Comm::plain(stream, peer, &refusal))
                    }
                }
                (None, true) => {
                    return Err(TlsError::NotConfigured("a tls:// listener".into()).into())
                }
                (_, false) => Accepted::Ready(Comm::plain(stream, peer, config)),
            };
            match &mut accepted {
                Accepted::Ready(comm) | Accepted::Plaintext(comm) => comm.handshake().await?,
            }
            Ok(accepted)
        })
        .await
        .map_err(|_| CommError::Timeout(limit, "the handshake"))?
    }

    /// Dials `tcp://host:port` or `tls://host:port` (the way the scheduler reaches workers
    /// for `get_data`, `update_data`, `run`, the way workers and tools reach the
    /// scheduler). `timeout` bounds the TCP connect; TLS and the handshake get
    /// `config.connect_timeout`.
    pub async fn connect(
        address: &str,
        timeout: Duration,
        config: &CommConfig,
    ) -> Result<Comm, CommError> {
        let (tls, hostport) = match address.split_once("://") {
            Some(("tcp", rest)) => (false, rest),
            Some(("tls", rest)) => (true, rest),
            Some((_, _)) => {
                return Err(CommError::BadAddress(
                    address.into(),
                    "only tcp:// and tls:// are supported",
                ))
            }
            None => (false, address),
        };
        if !tls && config.require_encryption {
            return Err(TlsError::EncryptionRequired(format!("tcp://{hostport}")).into());
        }
        let hostport = hostport.trim_end_matches('/');
        let stream = tokio::time::timeout(timeout, TcpStream::connect(hostport))
            .await
            .map_err(|_| CommError::Timeout(timeout, "connect"))??;
        prepare_socket(&stream, config.tcp_timeout);
        let peer = peer_of(&stream);
        let limit = config.connect_timeout;
        tokio::time::timeout(limit, async {
            let mut comm = if tls {
                let ctx = config
                    .tls
                    .as_ref()
                    .ok_or_else(|| TlsError::NotConfigured(address.to_string()))?;
                let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
                let name = crate::tls::server_name(host)?;
                let s = ctx
                    .connector
                    .connect(name, stream)
                    .await
                    .map_err(TlsError::handshake)?;
                let (r, w) = tokio::io::split(s);
                Comm::new(Box::new(r), Box::new(w), peer, config)
            } else {
                Comm::plain(stream, peer, config)
            };
            comm.handshake().await?;
            Ok(comm)
        })
        .await
        .map_err(|_| CommError::Timeout(limit, "the handshake"))?
    }

    /// Both sides write their handshake, then read the other's (`comm/core.py:261-276`).
    pub async fn handshake(&mut self) -> Result<(), CommError> {
        self.writer.write(&handshake()).await?;
        let theirs = self.reader.read().await?.ok_or(CommError::Closed)?;
        check_peer_handshake(&theirs).map_err(CommError::Handshake)
    }

    /// Writes a request and reads its reply.
    pub async fn request(&mut self, msg: &Value) -> Result<Value, CommError> {
        self.writer.write(msg).await?;
        self.reader.read().await?.ok_or(CommError::Closed)
    }

    /// Tells the peer's server loop that we are done with this connection.
    pub async fn close(mut self) {
        let _ = self
            .writer
            .write(&Value::map([
                ("op", Value::from("close")),
                ("reply", Value::Bool(false)),
            ]))
            .await;
    }
}

fn peer_of(stream: &TcpStream) -> String {
    stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Whether the first byte the peer sends is a TLS handshake record (22). A plain Dask peer
/// starts with its handshake message's 8-byte size instead; telling them apart lets rask
/// answer that peer with a clear refusal rather than a TLS alert it cannot read.
async fn looks_like_tls(stream: &TcpStream) -> Result<bool, CommError> {
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await?;
    if n == 0 {
        return Err(CommError::Closed);
    }
    Ok(first[0] == 22)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_adds_up_to_the_timeout_like_dask() {
        // Dask, timeout=30: nprobes=10, idle=max(2, 7)=7, interval=max(1, 23//10)=2, idle=10
        assert_eq!(
            keepalive_schedule(Duration::from_secs(30)),
            (Duration::from_secs(10), Duration::from_secs(2), 10)
        );
        for t in [0, 1, 2, 5, 11, 60, 3600] {
            let (idle, interval, probes) = keepalive_schedule(Duration::from_secs(t));
            assert!(
                idle.as_secs() >= 1 && interval.as_secs() >= 1 && probes >= 1,
                "{t}"
            );
            assert!(
                idle.as_secs() + interval.as_secs() * u64::from(probes) <= t.max(2) + 1,
                "{t}"
            );
        }
    }

    async fn pair(config: &CommConfig) -> (Comm, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let peer = peer_of(&server);
        (Comm::plain(server, peer, config), client)
    }

    #[tokio::test]
    async fn a_message_stuck_midway_times_out_an_idle_connection_does_not() {
        let config = CommConfig {
            tcp_timeout: Duration::from_millis(200),
            ..CommConfig::default()
        };
        let (mut comm, mut client) = pair(&config).await;
        // idle: nothing arrives for a long time, the read is still waiting
        let idle = tokio::time::timeout(Duration::from_secs(1), comm.reader.read()).await;
        assert!(idle.is_err(), "an idle connection must not time out");
        // a prelude announcing 100 bytes, then nothing
        let mut head = Vec::new();
        head.extend_from_slice(&124u64.to_le_bytes());
        head.extend_from_slice(&1u64.to_le_bytes());
        head.extend_from_slice(&100u64.to_le_bytes());
        client.write_all(&head).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), comm.reader.read()).await;
        assert!(
            matches!(r, Ok(Err(CommError::Stalled(..)))),
            "expected a stall, got {r:?}"
        );
        // the writer side is closed too
        assert!(matches!(
            comm.writer.write(&Value::Nil).await,
            Err(CommError::Closed)
        ));
    }

    #[tokio::test]
    async fn a_peer_that_does_not_read_fails_the_write_and_closes_the_reader() {
        let config = CommConfig {
            tcp_timeout: Duration::from_millis(300),
            ..CommConfig::default()
        };
        let (comm, _client) = pair(&config).await;
        let Comm {
            mut reader,
            mut writer,
            ..
        } = comm;
        let big = Value::Bin(bytes::Bytes::from(vec![0u8; 1 << 20]));
        let mut result = Ok(());
        for _ in 0..200 {
            result = writer.write(&big).await;
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(result, Err(CommError::Stalled(..))), "{result:?}");
        assert!(matches!(reader.read().await, Err(CommError::Closed)));
    }

    #[tokio::test]
    async fn caps_refuse_big_messages() {
        let config = CommConfig {
            max_message_bytes: 1000,
            max_frames: 4,
            ..CommConfig::default()
        };
        let (mut comm, mut client) = pair(&config).await;
        let mut head = Vec::new();
        head.extend_from_slice(&0u64.to_le_bytes());
        head.extend_from_slice(&1u64.to_le_bytes());
        head.extend_from_slice(&5000u64.to_le_bytes());
        client.write_all(&head).await.unwrap();
        let r = comm.reader.read().await;
        assert!(r.is_err(), "{r:?}");
        assert!(r.unwrap_err().to_string().contains("1000"));
    }
}
