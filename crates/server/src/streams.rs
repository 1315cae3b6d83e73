//! Long-lived client and worker streams (`handle_stream`, `distributed/core.py:843-893`).
//!
//! Each direction is a batched stream of lists of `{"op": ...}` dicts. A stream's reader
//! parses each batch with the op table into typed messages and hands them to the state task
//! as one event, so they are handled strictly in order; one batched writer per peer turns
//! the state task's typed messages into msgpack and writes whatever is queued as one
//! list.

use crate::error::RequestError;
use crate::event::{Event, Joined};
use crate::messages::{cluster, Rpc};
use crate::ops::{self, ConnectionOp, Serve};
use crate::session::{ConnectionError, Ctx};
use crate::translate::worker::{registration, WorkerStream};
use crate::translate::{self, client, worker};
use rask_comm::fields::str_field;
use rask_comm::{Comm, CommError, CommReader, CommWriter};
use rask_protocol::{MessageEncoder, MessageReader, Value};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Most messages written in one batch; keeps single writes bounded.
const MAX_BATCH: usize = 50_000;

/// Drains a peer's queue into batched writes until the queue or the socket closes; `encode`
/// writes one typed message into the batch's list.
async fn batched_writer<M>(
    mut rx: mpsc::UnboundedReceiver<M>,
    mut writer: CommWriter,
    encode: impl Fn(M, &mut MessageEncoder),
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let mut enc = MessageEncoder::new();
        enc.array_len(batch.len());
        for m in batch {
            encode(m, &mut enc);
        }
        if writer.write_frames(enc.finish()).await.is_err() {
            return;
        }
    }
}

/// Reads a stream until it ends: each batch (a list of dicts, or one dict) read message by
/// message with `parse` (`None` ends the stream) and handed to `deliver` as one batch, so
/// the state task sees them in order. A message that does not parse ends the stream after
/// the ones before it are delivered.
async fn read_stream<M>(
    reader: &mut CommReader,
    mut parse: impl FnMut(&mut MessageReader<'_>) -> Result<Option<M>, ConnectionError>,
    deliver: impl Fn(Vec<M>),
) -> End {
    loop {
        let frames = match reader.read_frames().await {
            Ok(Some(frames)) => frames,
            Ok(None) => return End::Closed,
            Err(e) => return End::Failed(e.into()),
        };
        let mut msgs = Vec::new();
        let end = read_batch(&frames, &mut parse, &mut msgs);
        if !msgs.is_empty() {
            deliver(msgs);
        }
        match end {
            Ok(false) => {}
            Ok(true) => return End::Closed,
            Err(e) => return End::Failed(e),
        }
    }
}

/// One batch's messages into `msgs`; `true` if one of them ended the stream.
fn read_batch<M>(
    frames: &[bytes::Bytes],
    parse: &mut impl FnMut(&mut MessageReader<'_>) -> Result<Option<M>, ConnectionError>,
    msgs: &mut Vec<M>,
) -> Result<bool, ConnectionError> {
    let mut r = MessageReader::new(frames).map_err(CommError::from)?;
    let count = r.array_len().map_err(CommError::from)?.unwrap_or(1);
    for _ in 0..count {
        match parse(&mut r)? {
            Some(m) => msgs.push(m),
            None => return Ok(true),
        }
    }
    r.finish().map_err(CommError::from)?;
    Ok(false)
}

/// How a stream ended.
enum End {
    /// the peer closed it (`close-stream` or EOF)
    Closed,
    /// it failed; the peer is told nothing more
    Failed(ConnectionError),
}

// ---- clients ---------------------------------------------------------------------------------

/// `register-client` (scheduler.py:5904-5952), then the client's stream.
pub async fn client_stream(comm: Comm, msg: Value, ctx: Arc<Ctx>) -> Result<(), ConnectionError> {
    let name = str_field(&msg, "client").map_err(RequestError::from)?;
    warn_untested_release("client", &name, &msg);
    let Comm {
        mut reader,
        writer,
        peer,
    } = comm;
    let (tx, rx) = mpsc::unbounded_channel();
    let writer_task = tokio::spawn(batched_writer(rx, writer, |m, enc| {
        enc.value(&client::to_client(m))
    }));
    let n = name.clone();
    let versions = msg.get("versions").cloned().unwrap_or(Value::Nil);
    let client = ctx
        .handle
        .ask(move |reply| Event::ClientJoined {
            name: n,
            versions,
            stream: tx,
            reply,
        })
        .await?;
    tracing::info!(client = %name, %peer, "Receive client connection");
    let end = read_stream(
        &mut reader,
        |r| Ok(client_message(&r.value().map_err(CommError::from)?)?),
        |msgs| {
            let _ = ctx.handle.send(Event::Client { client, msgs });
        },
    )
    .await;
    let _ = ctx.handle.send(Event::ClientLeft { client });
    // The writer ends once the state task dropped the client's sender.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer_task).await;
    match end {
        End::Failed(e) => Err(e),
        End::Closed => Ok(()),
    }
}

/// Logs a warning when a client or worker runs a `distributed` release rask is not tested
/// with (its `versions` of `register-client`/`register-worker`, `versions.get_versions()`:
/// `{"host": ..., "packages": {"distributed": "2026.8.0", ...}}`). It still connects: the
/// ops of the tested releases are all served, and an op rask does not know is answered
/// with an error naming it.
fn warn_untested_release(kind: &str, who: &str, msg: &Value) {
    let release = msg
        .get("versions")
        .and_then(|v| v.get("packages"))
        .and_then(|p| p.get("distributed"))
        .and_then(Value::as_str);
    match release {
        Some(r) if rask_protocol::is_tested_distributed(r) => {}
        Some(r) => tracing::warn!(
            "{kind} {who} runs distributed {r}; rask is tested with distributed {}",
            rask_protocol::tested_distributed_releases()
        ),
        None => tracing::warn!(
            "{kind} {who} did not say its distributed version; rask is tested with \
             distributed {}",
            rask_protocol::tested_distributed_releases()
        ),
    }
}

/// One client stream message; `None` for `close-stream`.
fn client_message(msg: &Value) -> Result<Option<crate::messages::ClientMsg>, RequestError> {
    let op = str_field(msg, "op")?;
    match ops::find(ops::CLIENT_STREAM, &op).map(|o| o.serve) {
        Some(Serve::Client(parse)) => parse(msg).map(Some),
        Some(Serve::Connection(ConnectionOp::CloseStream)) => Ok(None),
        _ => Err(RequestError::UnknownOp {
            kind: "client stream",
            op: op.to_string(),
        }),
    }
}

// ---- worker-status feeds ---------------------------------------------------------------------

/// `subscribe_worker_status` (scheduler.py:7836, `WorkerStatusPlugin`): the identity, then
/// the connection carries batches of `[op, msg]` about workers arriving and leaving until the
/// subscriber (a `Cluster` object) closes it.
pub async fn worker_status_stream(comm: Comm, ctx: Arc<Ctx>) -> Result<(), ConnectionError> {
    let Comm {
        mut reader,
        mut writer,
        peer,
    } = comm;
    let (tx, rx) = mpsc::unbounded_channel();
    let identity = ctx
        .handle
        .rpc(Rpc::Cluster(cluster::Rpc::SubscribeWorkerStatus {
            stream: tx,
        }))
        .await?;
    // The reply goes first; what the state task queued meanwhile follows it.
    writer.write(&identity).await?;
    tracing::debug!(%peer, "worker status feed open");
    let writer_task = tokio::spawn(batched_writer(rx, writer, |m, enc| {
        enc.value(&translate::cluster::to_status(m))
    }));
    // The subscriber sends nothing more; its closing ends the feed.
    while let Ok(Some(_)) = reader.read().await {}
    writer_task.abort();
    Ok(())
}

// ---- feeds -----------------------------------------------------------------------------------

/// `feed` (scheduler.py:7788): the plugin host runs the feed's `setup`, then its function
/// every interval; each result is written here until the peer closes the connection (or
/// the function raises, or the host dies), then its `teardown` runs.
pub async fn feed_stream(comm: Comm, msg: &Value, ctx: Arc<Ctx>) -> Result<(), ConnectionError> {
    let Comm {
        mut reader,
        mut writer,
        peer,
    } = comm;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let request = translate::rpc::feed(msg);
    let answer = ctx
        .handle
        .rpc(Rpc::FeedOpen {
            request,
            responses: tx,
        })
        .await;
    let feed = match answer {
        Ok(Value::Int(feed)) => feed,
        // `setup` raised: the stock handler's error goes to the peer
        Ok(error) => return Ok(writer.write(&error).await?),
        Err(e) => return Ok(writer.write(&crate::translate::reply::error(&e)).await?),
    };
    tracing::debug!(%peer, feed, "feed open");
    let ended = loop {
        tokio::select! {
            response = rx.recv() => match response {
                Some(r) => {
                    if let Err(e) = writer.write(&r).await {
                        break Err(e);
                    }
                }
                None => break Ok(()),
            },
            // the peer sends nothing; its closing ends the feed
            read = reader.read() => match read {
                Ok(Some(_)) => {}
                _ => break Ok(()),
            },
        }
    };
    let _ = ctx.handle.rpc(Rpc::FeedClose { feed }).await;
    Ok(ended?)
}

// ---- workers ---------------------------------------------------------------------------------

/// `register-worker` (scheduler.py:4663-4800), then the worker's stream.
pub async fn worker_stream(comm: Comm, msg: Value, ctx: Arc<Ctx>) -> Result<(), ConnectionError> {
    let registration = Box::new(registration(&msg)?);
    let address = registration.address.clone();
    warn_untested_release("worker", &address, &msg);
    let Comm {
        mut reader,
        mut writer,
        peer,
    } = comm;
    let (tx, rx) = mpsc::unbounded_channel();
    let joined = ctx
        .handle
        .ask(move |reply| Event::WorkerJoined {
            registration,
            stream: tx,
            reply,
        })
        .await?;
    let worker = match joined {
        Joined::Accepted { worker, reply } => {
            writer.write(&reply).await?;
            worker
        }
        Joined::Refused { reply } => {
            writer.write(&reply).await?;
            return Ok(());
        }
    };
    tracing::debug!(%address, %peer, "worker stream open");
    let writer_task = tokio::spawn(batched_writer(rx, writer, worker::encode_to_worker));
    let mut stream = WorkerStream::new(worker);
    let end = read_stream(
        &mut reader,
        |r| worker_item(r, &mut stream),
        |msgs| {
            let _ = ctx.handle.send(Event::Worker { worker, msgs });
        },
    )
    .await;
    if let End::Failed(e) = &end {
        tracing::warn!(%address, "worker stream failed: {e}");
    }
    let _ = ctx.handle.send(Event::WorkerLeft {
        worker,
        expected: stream.closing,
    });
    writer_task.abort();
    Ok(())
}

/// One worker stream message: read in place if it can be (one sent per task, no payloads
/// in the batch), else decoded and parsed.
fn worker_item(
    r: &mut MessageReader<'_>,
    stream: &mut WorkerStream,
) -> Result<Option<crate::messages::WorkerMsg>, ConnectionError> {
    if !r.has_payloads() {
        let start = r.clone();
        if let Some(m) = worker::read_in_place(r, stream).map_err(CommError::from)? {
            return Ok(Some(m));
        }
        *r = start;
    }
    let mut msg = r.value().map_err(CommError::from)?;
    Ok(worker_message(&mut msg, stream)?)
}

/// One worker stream message; `None` for `close-stream`.
fn worker_message(
    msg: &mut Value,
    stream: &mut WorkerStream,
) -> Result<Option<crate::messages::WorkerMsg>, RequestError> {
    let op = str_field(msg, "op")?;
    match ops::find(ops::WORKER_STREAM, &op).map(|o| o.serve) {
        Some(Serve::Worker(parse)) => parse(msg, stream).map(Some),
        Some(Serve::Connection(ConnectionOp::CloseStream)) => Ok(None),
        _ => Err(RequestError::UnknownOp {
            kind: "worker stream",
            op: op.to_string(),
        }),
    }
}
