//! One fake worker's connections: its stream to the scheduler (register-worker, then batched
//! messages), its heartbeat connection, and its own listener answering `get_data`.

use crate::error::ZeroWorkerError;
use crate::messages::{self, Identity};
use crate::state::{lock, Memory, Stop, WorkerState};
use crate::stats::{unix_now, Stats};
use rask_comm::{Comm, CommConfig, CommError, CommWriter};
use rask_protocol::{Key, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, timeout, Instant};

/// How long registering may keep retrying a refused or timed-out connection
/// (`distributed.comm.timeouts.connect`, 30 s).
const CONNECT_DEADLINE: Duration = Duration::from_secs(30);
/// Bound on any single reply we wait for (register, heartbeat, get_data confirmation).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// A stock worker's first heartbeat interval (`Worker(heartbeat_interval="1s")`); later
/// ones come from the scheduler's replies.
const FIRST_HEARTBEAT: Duration = Duration::from_secs(1);
/// `keep-alive` period on the stream (worker.py:781).
const KEEP_ALIVE: Duration = Duration::from_secs(60);
/// How long a closing worker waits for its last messages to be written.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// What every fake worker shares.
pub struct Shared {
    /// `tcp://host:port` of the scheduler
    pub scheduler: String,
    /// echoed as our `versions` (the scheduler's own, so no mismatch warning)
    pub versions: Value,
    /// the scheduling-phase counters
    pub stats: Stats,
    /// IP the listeners bind and advertise
    pub host: String,
    /// threads per worker
    pub nthreads: u32,
    /// reported memory limit
    pub memory_limit: u64,
    /// `{prefix}-{index}` names
    pub name_prefix: String,
    /// bounds concurrent registrations so 1,000 connects do not overflow the scheduler's
    /// accept backlog
    pub registering: Semaphore,
    /// log the scheduler's version warning once, not once per worker
    pub warned: AtomicBool,
}

/// A worker whose `register-worker` was accepted.
pub struct Registered {
    id: Identity,
    comm: Comm,
    listener: TcpListener,
    thread: i64,
}

impl Registered {
    /// Its advertised address.
    pub fn address(&self) -> &str {
        &self.id.address
    }
}

/// Dials the scheduler, retrying refused connections and timeouts until the deadline as
/// `distributed.comm.core.connect` does.
pub async fn connect_with_retry(address: &str) -> Result<Comm, ZeroWorkerError> {
    let deadline = Instant::now() + CONNECT_DEADLINE;
    let mut backoff = Duration::from_millis(50);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match Comm::connect(
            address,
            left.max(Duration::from_millis(100)),
            &CommConfig::default(),
        )
        .await
        {
            Ok(c) => return Ok(c),
            Err(e @ (CommError::Io(_) | CommError::Timeout(..)))
                if Instant::now() + backoff < deadline =>
            {
                tracing::debug!("connect to {address} failed ({e}); retrying");
                sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(error) => {
                return Err(ZeroWorkerError::Connect {
                    address: address.to_string(),
                    error,
                })
            }
        }
    }
}

/// Opens worker `index`'s listener and registers it (worker.py:1077-1155).
pub async fn register(shared: &Shared, index: usize) -> Result<Registered, ZeroWorkerError> {
    let bind = format!("{}:0", shared.host);
    let listener = TcpListener::bind(&bind)
        .await
        .map_err(|error| ZeroWorkerError::Listen {
            addr: bind.clone(),
            error,
        })?;
    let local = listener
        .local_addr()
        .map_err(|error| ZeroWorkerError::Listen { addr: bind, error })?;
    let id = Identity {
        address: format!("tcp://{local}"),
        name: format!("{}-{index}", shared.name_prefix),
        server_id: format!("Worker-{}", uuid::Uuid::new_v4()),
        nthreads: shared.nthreads,
        memory_limit: shared.memory_limit,
        pid: std::process::id(),
        local_directory: std::env::temp_dir()
            .join(format!("rask-zero-worker-{index}"))
            .to_string_lossy()
            .into_owned(),
    };
    let _permit = shared.registering.acquire().await;
    let mut comm = connect_with_retry(&shared.scheduler).await?;
    let msg = messages::register_worker(&id, &shared.versions, unix_now());
    let reply = timeout(REPLY_TIMEOUT, comm.request(&msg))
        .await
        .map_err(|_| CommError::Timeout(REPLY_TIMEOUT, "the register-worker reply"))??;
    let refused = |message: String| ZeroWorkerError::Refused {
        address: shared.scheduler.clone(),
        name: id.name.clone(),
        message,
    };
    match reply.get("status").and_then(Value::as_str) {
        Some("OK") => {}
        Some(_) => {
            let message = reply
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| format!("{reply:?}"), str::to_string);
            return Err(refused(message));
        }
        None => return Err(refused(format!("unexpected reply {reply:?}"))),
    }
    if let Some(w) = reply.get("warning").and_then(Value::as_str) {
        if !w.is_empty() && !shared.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!("scheduler: {w}");
        }
    }
    Ok(Registered {
        id,
        comm,
        listener,
        // a stable, distinct "executor thread id" per worker, as Python's threading.get_ident
        thread: 0x7f00_0000_0000 + i64::try_from(index).unwrap_or(0),
    })
}

/// A batch of messages for the writer; `finished` of them are `task-finished`.
struct Batch {
    msgs: Vec<Value>,
    finished: u64,
}

/// Writes everything queued so far as one list per write, like `BatchedSend` (batched.py),
/// and stamps the scheduling phase's end after each write holding `task-finished`.
async fn write_loop(
    mut writer: CommWriter,
    mut rx: mpsc::UnboundedReceiver<Batch>,
    shared: Arc<Shared>,
) {
    while let Some(first) = rx.recv().await {
        let mut msgs = first.msgs;
        let mut finished = first.finished;
        while let Ok(more) = rx.try_recv() {
            msgs.extend(more.msgs);
            finished += more.finished;
        }
        if msgs.is_empty() {
            continue;
        }
        if let Err(e) = writer.write(&Value::Array(msgs)).await {
            // The reader sees the same failure as EOF and ends the worker.
            tracing::debug!("stream write failed: {e}");
            return;
        }
        if finished > 0 {
            shared.stats.finished_sent(finished, unix_now());
        }
    }
}

/// `heartbeat_worker` every interval on its own connection (a stock worker's pooled RPC
/// comm). Fires `missing` when the scheduler no longer knows this worker.
async fn heartbeat_loop(shared: Arc<Shared>, address: String, missing: oneshot::Sender<()>) {
    let mut interval = FIRST_HEARTBEAT;
    let mut comm: Option<Comm> = None;
    let mut next = Instant::now() + interval;
    loop {
        sleep_until(next).await;
        let start = Instant::now();
        if comm.is_none() {
            match Comm::connect(&shared.scheduler, REPLY_TIMEOUT, &CommConfig::default()).await {
                Ok(c) => comm = Some(c),
                Err(e) => tracing::warn!("{address}: heartbeat connection failed: {e}"),
            }
        }
        if let Some(c) = comm.as_mut() {
            let msg = messages::heartbeat(&address, unix_now());
            match timeout(REPLY_TIMEOUT, c.request(&msg)).await {
                Ok(Ok(reply)) => match reply.get("status").and_then(Value::as_str) {
                    Some("OK") => {
                        if let Some(s) = reply.get("heartbeat-interval").and_then(Value::as_f64) {
                            if s.is_finite() && s > 0.0 {
                                interval = Duration::from_secs_f64(s.min(3600.0));
                            }
                        }
                    }
                    Some("missing") => {
                        tracing::warn!(
                            "{address}: scheduler was unaware of this worker; shutting down"
                        );
                        let _ = missing.send(());
                        return;
                    }
                    _ => tracing::warn!("{address}: unexpected heartbeat reply {reply:?}"),
                },
                Ok(Err(e)) => {
                    tracing::warn!("{address}: heartbeat failed: {e}");
                    comm = None;
                }
                Err(_) => {
                    tracing::warn!("{address}: no heartbeat reply within {REPLY_TIMEOUT:?}");
                    comm = None;
                }
            }
        }
        // start to start, as tornado's PeriodicCallback
        next = start + interval;
    }
}

/// What a worker's RPC handlers need.
struct RpcCtx {
    memory: Memory,
    versions: Value,
}

/// Accepts RPC connections (the scheduler's `get_data` for `gather`, `update_data` for
/// `scatter`) until aborted; the connections' tasks live in a `JoinSet` so aborting this task
/// ends them too.
async fn listen_loop(listener: TcpListener, ctx: Arc<RpcCtx>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(serve_rpc(stream, ctx.clone()));
                }
                Err(e) => {
                    // e.g. out of file descriptors: back off instead of spinning
                    tracing::warn!("accept failed: {e}");
                    sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// One incoming RPC connection (`Server._handle_comm`, core.py:706-841).
async fn serve_rpc(stream: TcpStream, ctx: Arc<RpcCtx>) {
    let mut comm = match Comm::accept(stream, &CommConfig::default()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("rpc handshake failed: {e}");
            return;
        }
    };
    if let Err(e) = rpc_loop(&mut comm, &ctx).await {
        tracing::debug!("rpc connection from {} ended: {e}", comm.peer);
    }
}

async fn rpc_loop(comm: &mut Comm, ctx: &RpcCtx) -> Result<(), ZeroWorkerError> {
    while let Some(msg) = comm.reader.read().await? {
        let op = msg.get("op").and_then(Value::as_str).unwrap_or("");
        let reply = msg.get("reply").is_none_or(Value::truthy);
        match op {
            "get_data" => {
                let keys = msg.get("keys").and_then(Value::as_array).unwrap_or(&[]);
                comm.writer.write(&messages::get_data_reply(keys)).await?;
                // Worker.get_data waits for the requester's "OK" (worker.py:1690-1694).
                match timeout(REPLY_TIMEOUT, comm.reader.read()).await {
                    Ok(Ok(Some(v))) if v.as_str() == Some("OK") => {}
                    Ok(Ok(other)) => {
                        return Err(ZeroWorkerError::BadMessage(format!(
                            "get_data confirmation was {other:?}, not 'OK'"
                        )))
                    }
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => {
                        return Err(CommError::Timeout(REPLY_TIMEOUT, "get_data's 'OK'").into())
                    }
                }
            }
            "update_data" => {
                // Worker.update_data (worker.py:1730-1738): the keys go to memory without a
                // message to the scheduler (released -> memory sends nothing); the reply
                // reports their sizes, here the payload bytes.
                let data = msg.get("data").and_then(Value::as_map).unwrap_or(&[]);
                let mut nbytes = Vec::with_capacity(data.len());
                {
                    let mut memory = lock(&ctx.memory);
                    for (k, v) in data {
                        if let Some(key) = Key::from_value(k) {
                            memory.insert(key);
                        }
                        let n = match v {
                            Value::Opaque(o) => i64::try_from(o.payload_len()).unwrap_or(i64::MAX),
                            _ => messages::RESULT_NBYTES,
                        };
                        nbytes.push((k.clone(), Value::Int(n)));
                    }
                }
                if reply {
                    let answer = Value::map([
                        ("nbytes", Value::Map(nbytes)),
                        ("status", Value::from("OK")),
                    ]);
                    comm.writer.write(&answer).await?;
                }
            }
            "versions" => {
                if reply {
                    comm.writer.write(&ctx.versions).await?;
                }
            }
            "close" => {
                if reply {
                    comm.writer.write(&Value::from("OK")).await?;
                }
                return Ok(());
            }
            other => {
                tracing::warn!(
                    "rpc {other:?} from {} is not supported by zero-worker",
                    comm.peer
                );
                if reply {
                    let text = format!("rask zero-worker does not support the operation {other:?}");
                    comm.writer.write(&messages::error_reply(&text)).await?;
                }
            }
        }
    }
    Ok(())
}

/// How a worker ended.
#[derive(Debug)]
pub enum Ended {
    /// it closed itself (signal, `close` op, heartbeat "missing") after telling the scheduler
    Closed(String),
    /// the scheduler closed the stream or the connection broke
    Disconnected,
    /// the scheduler sent something no stock scheduler sends
    Failed(ZeroWorkerError),
}

/// Runs a registered worker until the scheduler closes it or `shutdown` turns true.
pub async fn serve(
    shared: Arc<Shared>,
    reg: Registered,
    mut shutdown: watch::Receiver<bool>,
) -> Ended {
    let Registered {
        id,
        comm,
        listener,
        thread,
    } = reg;
    let Comm {
        mut reader, writer, ..
    } = comm;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut writer_task = tokio::spawn(write_loop(writer, rx, shared.clone()));
    let mut state = WorkerState::new(id.address.clone(), thread);
    let rpc = Arc::new(RpcCtx {
        memory: state.memory().clone(),
        versions: shared.versions.clone(),
    });
    let listener_task = tokio::spawn(listen_loop(listener, rpc));
    let (missing_tx, mut missing_rx) = oneshot::channel();
    let heartbeat_task = tokio::spawn(heartbeat_loop(
        shared.clone(),
        id.address.clone(),
        missing_tx,
    ));
    let send = |msgs: Vec<Value>, finished: u64| {
        // fails only once the writer has given up, and then the reader ends the loop too
        let _ = tx.send(Batch { msgs, finished });
    };

    // `self.status = Status.running` right after registering sends the confirmation.
    send(
        vec![messages::worker_status_change(
            "running",
            messages::stimulus_id("worker-status-change", unix_now()),
        )],
        0,
    );
    let mut keep_alive = tokio::time::interval_at(Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    let mut heartbeat_done = false;
    let ended = loop {
        if *shutdown.borrow() {
            break Ended::Closed("worker-close".into());
        }
        tokio::select! {
            read = reader.read() => match read {
                Ok(Some(batch)) => {
                    let now = unix_now();
                    match state.handle_batch(batch, now) {
                        Ok(o) => {
                            if o.computes > 0 {
                                shared.stats.compute_received(now);
                            }
                            send(o.out, o.finished);
                            match o.stop {
                                Some(Stop::Close(reason)) => break Ended::Closed(reason),
                                Some(Stop::StreamClosed) => break Ended::Disconnected,
                                None => {}
                            }
                        }
                        Err(e) => break Ended::Failed(e),
                    }
                }
                Ok(None) => break Ended::Disconnected,
                Err(e) => {
                    tracing::debug!("{}: stream read failed: {e}", id.address);
                    break Ended::Disconnected;
                }
            },
            _ = shutdown.changed() => {
                // a dropped sender means the process is going away as well
                break Ended::Closed("worker-close".into());
            }
            _ = keep_alive.tick() => send(vec![messages::bare("keep-alive")], 0),
            r = &mut missing_rx, if !heartbeat_done => {
                heartbeat_done = true;
                if r.is_ok() {
                    break Ended::Closed("worker-heartbeat-missing".into());
                }
            }
        }
    };
    heartbeat_task.abort();
    listener_task.abort();
    if let Ended::Closed(reason) = &ended {
        // Worker.close (worker.py:1398-1540): closing event and status first, then
        // close-stream, then the socket closes.
        send(
            vec![
                messages::closing_event(&id.address, reason),
                messages::worker_status_change(
                    "closing",
                    messages::stimulus_id("worker-status-change", unix_now()),
                ),
            ],
            0,
        );
        send(vec![messages::bare("close-stream")], 0);
    }
    drop(tx);
    if timeout(FLUSH_TIMEOUT, &mut writer_task).await.is_err() {
        tracing::debug!("{}: last messages not written in time", id.address);
        writer_task.abort();
    }
    drop(reader);
    ended
}
