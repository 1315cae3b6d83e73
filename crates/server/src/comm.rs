//! A Dask connection: TCP + framing + handshake (`distributed/comm/tcp.py`, `core.py`).

use crate::error::ServerError;
use futures::{SinkExt, StreamExt};
use rask_protocol::handshake::{check_peer_handshake, handshake};
use rask_protocol::{decode_message, encode_message, FrameCodec, Value};
use std::time::Duration;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, FramedWrite};

/// How long a peer may take to send its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The read half of a connection.
pub struct CommReader {
    inner: FramedRead<OwnedReadHalf, FrameCodec>,
}

/// The write half of a connection.
pub struct CommWriter {
    inner: FramedWrite<OwnedWriteHalf, FrameCodec>,
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

impl CommReader {
    /// The next message, or `None` on a clean EOF.
    pub async fn read(&mut self) -> Result<Option<Value>, ServerError> {
        match self.inner.next().await {
            None => Ok(None),
            Some(Err(e)) => Err(e.into()),
            Some(Ok(frames)) => Ok(Some(decode_message(&frames)?)),
        }
    }
}

impl CommWriter {
    /// Writes one message and flushes.
    pub async fn write(&mut self, msg: &Value) -> Result<(), ServerError> {
        self.inner.send(encode_message(msg)).await?;
        Ok(())
    }
}

impl Comm {
    fn new(stream: TcpStream) -> Comm {
        let _ = stream.set_nodelay(true);
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into());
        let (r, w) = stream.into_split();
        Comm {
            reader: CommReader {
                inner: FramedRead::new(r, FrameCodec::default()),
            },
            writer: CommWriter {
                inner: FramedWrite::new(w, FrameCodec::default()),
            },
            peer,
        }
    }

    /// Server side of a new connection: both sides write their handshake, then read.
    pub async fn accept(stream: TcpStream) -> Result<Comm, ServerError> {
        let mut comm = Comm::new(stream);
        comm.handshake().await?;
        Ok(comm)
    }

    /// Dials `tcp://host:port` (the way the scheduler reaches workers for `get_data`,
    /// `update_data`, `run`).
    pub async fn connect(address: &str, timeout: Duration) -> Result<Comm, ServerError> {
        let hostport = match address.split_once("://") {
            Some(("tcp", rest)) => rest,
            Some((_, _)) => {
                return Err(ServerError::BadAddress(
                    address.into(),
                    "only tcp:// is supported",
                ))
            }
            None => address,
        };
        let hostport = hostport.trim_end_matches('/');
        let stream = tokio::time::timeout(timeout, TcpStream::connect(hostport))
            .await
            .map_err(|_| ServerError::Timeout(timeout, "connect"))??;
        let mut comm = Comm::new(stream);
        comm.handshake().await?;
        Ok(comm)
    }

    async fn handshake(&mut self) -> Result<(), ServerError> {
        self.writer.write(&handshake()).await?;
        let theirs = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.reader.read())
            .await
            .map_err(|_| ServerError::Timeout(HANDSHAKE_TIMEOUT, "handshake"))??
            .ok_or(ServerError::Closed)?;
        check_peer_handshake(&theirs).map_err(ServerError::Handshake)
    }

    /// Writes a request and reads its reply.
    pub async fn request(&mut self, msg: &Value) -> Result<Value, ServerError> {
        self.writer.write(msg).await?;
        self.reader.read().await?.ok_or(ServerError::Closed)
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
