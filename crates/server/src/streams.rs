//! Long-lived client and worker streams (`handle_stream`, `distributed/core.py:843-893`).
//!
//! Each direction is a batched stream of lists of `{"op": ...}` dicts. Incoming messages of
//! one stream are handled strictly in order: an `update-graph` holds back that client's
//! later messages until its graph is in the state, while every other peer keeps flowing.

use crate::connection::Ctx;
use crate::error::ServerError;
use crate::ordering::{self, OrderInfo};
use crate::runtime::{now, ClientInfo, Outgoing, WorkerInfo};
use crate::translate::{
    self, field, int_field, key_field, keys_field, opt_str, pickled_exception, stimulus_id,
    str_field,
};
use rask_comm::{Comm, CommWriter};
use rask_core::{ClientId, NewTask, Stimulus, WorkerId, WorkerSpec};
use rask_protocol::{Key, OpaqueKind, Value};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Most messages written in one batch; keeps single writes bounded.
const MAX_BATCH: usize = 50_000;

/// Drains a peer's queue into batched writes until the queue or the socket closes.
async fn batched_writer(mut rx: mpsc::UnboundedReceiver<Outgoing>, mut writer: CommWriter) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![Value::from(first)];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m.into()),
                Err(_) => break,
            }
        }
        if writer.write(&Value::Array(batch)).await.is_err() {
            return;
        }
    }
}

/// A stream's incoming messages: a list of dicts, or one dict.
fn messages(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        other => vec![other],
    }
}

// ---- clients ---------------------------------------------------------------------------

/// `register-client` (scheduler.py:5904-5952), then the client's stream.
pub async fn client_stream(comm: Comm, msg: Value, ctx: Arc<Ctx>) -> Result<(), ServerError> {
    let name = str_field(&msg, "client")?;
    let Comm {
        mut reader,
        writer,
        peer,
    } = comm;
    let (tx, rx) = mpsc::unbounded_channel();
    let writer_task = tokio::spawn(batched_writer(rx, writer));
    let name2 = name.clone();
    let client = ctx
        .handle
        .call(move |s| {
            // `stream-start` must be the first message on the stream.
            let _ = tx.send(
                Value::map([
                    ("op", Value::from("stream-start")),
                    ("warning", Value::from("")),
                    ("error", Value::from("")),
                ])
                .into(),
            );
            let id = s.core.new_client_id();
            s.clients.insert(
                id,
                ClientInfo {
                    name: name2.clone(),
                    tx,
                },
            );
            s.client_ids.insert(name2.clone(), id);
            s.stimulus(Stimulus::AddClient { id, name: name2 });
            id
        })
        .await?;
    tracing::info!(client = %name, %peer, "Receive client connection");
    let result = client_loop(&mut reader, client, &ctx).await;
    ctx.handle.send(move |s| {
        s.stimulus(Stimulus::RemoveClient { client });
        if let Some(info) = s.clients.remove(&client) {
            s.client_ids.remove(&info.name);
            crate::extensions::on_client_removed(s, client, &info.name);
        }
    });
    tracing::info!(client = %name, "Remove client");
    // The writer ends once the state task dropped the client's sender.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer_task).await;
    match result {
        Err(e) if e.is_peer_fault() => Err(e),
        _ => Ok(()),
    }
}

async fn client_loop(
    reader: &mut rask_comm::CommReader,
    client: ClientId,
    ctx: &Arc<Ctx>,
) -> Result<(), ServerError> {
    while let Some(batch) = reader.read().await? {
        for msg in messages(batch) {
            let op = str_field(&msg, "op")?;
            match &*op {
                "close-stream" => return Ok(()),
                "close-client" => {}
                "update-graph" => update_graph(client, msg, ctx).await?,
                "heartbeat-client" => {
                    ctx.handle.send(move |s| {
                        let interval = s.heartbeat_interval() * 10.0;
                        if let Some(c) = s.clients.get(&client) {
                            let _ = c.tx.send(
                                Value::map([
                                    ("op", Value::from("adjust-heartbeat-interval")),
                                    ("interval", Value::Float(interval)),
                                ])
                                .into(),
                            );
                        }
                    });
                }
                "client-desires-keys" => {
                    let keys = keys_field(&msg, "keys")?;
                    let who = opt_str(&msg, "client")?;
                    ctx.handle.send(move |s| {
                        let id = who
                            .and_then(|n| s.client_ids.get(&n).copied())
                            .unwrap_or(client);
                        s.stimulus(Stimulus::ClientDesiresKeys { client: id, keys });
                    });
                }
                "client-releases-keys" => {
                    let keys = keys_field(&msg, "keys")?;
                    let who = opt_str(&msg, "client")?;
                    let sid = stimulus_id(&msg, "client-releases-keys");
                    ctx.handle.send(move |s| {
                        let id = who
                            .and_then(|n| s.client_ids.get(&n).copied())
                            .unwrap_or(client);
                        s.stimulus(Stimulus::ClientReleasesKeys {
                            client: id,
                            keys,
                            stimulus_id: sid,
                        });
                    });
                }
                "cancel-keys" => {
                    let keys = keys_field(&msg, "keys")?;
                    let force = msg.get("force").is_some_and(Value::truthy);
                    let reason = opt_str(&msg, "reason")?;
                    let text = opt_str(&msg, "msg")?;
                    ctx.handle.send(move |s| {
                        s.stimulus(Stimulus::CancelKeys {
                            client,
                            keys,
                            force,
                            reason,
                            msg: text,
                        })
                    });
                }
                "report-key" => {
                    let key = key_field(&msg, "key")?;
                    ctx.handle
                        .send(move |s| s.stimulus(Stimulus::ReportKey { client, key }));
                }
                "update-data" => {
                    let who_has = field(&msg, "who_has")?.clone();
                    let nbytes = msg.get("nbytes").cloned().unwrap_or(Value::Nil);
                    ctx.handle.send(move |s| {
                        crate::rpc::apply_update_data(s, Some(client), &who_has, &nbytes)
                    });
                }
                other => match crate::extensions::client_stream_op(other, &msg, client, ctx) {
                    Some(result) => result?,
                    None => {
                        return Err(ServerError::UnknownOp(format!(
                            "unknown client stream op {other:?}"
                        )));
                    }
                },
            }
        }
    }
    Ok(())
}

/// `update-graph`: materialize in a helper (this client's stream waits; nobody else does),
/// then hand the tasks to the core.
async fn update_graph(client: ClientId, msg: Value, ctx: &Arc<Ctx>) -> Result<(), ServerError> {
    let keys = keys_field(&msg, "keys")?;
    let expr = match field(&msg, "expr_ser")? {
        Value::Opaque(o) if o.kind == OpaqueKind::Serialized => o.clone(),
        other => {
            return Err(ServerError::BadMessage(format!(
                "update-graph: expr_ser must be a serialized expression, not {}",
                other.type_name()
            )))
        }
    };
    let (ann_pickle, ann_buffers, ann_compression) = match msg.get("annotations") {
        Some(Value::Opaque(o)) => (
            o.header_get("pickled-obj").cloned().unwrap_or(Value::Nil),
            Value::Array(o.frames.iter().cloned().map(Value::Bin).collect()),
            o.header_get("compression").cloned().unwrap_or(Value::Nil),
        ),
        _ => (Value::Nil, Value::Array(Vec::new()), Value::Nil),
    };
    let fifo_timeout = msg
        .get("fifo_timeout")
        .and_then(translate::parse_timedelta)
        .unwrap_or(60.0);
    let request = Value::map([
        ("op", Value::from("update_graph")),
        ("expr_header", Value::Map(expr.header.clone())),
        (
            "expr_frames",
            Value::Array(expr.frames.iter().cloned().map(Value::Bin).collect()),
        ),
        (
            "keys",
            Value::Array(keys.iter().map(Key::to_value).collect()),
        ),
        (
            "internal_priority",
            msg.get("internal_priority").cloned().unwrap_or(Value::Nil),
        ),
        ("annotations_pickled", ann_pickle),
        ("annotations_buffers", ann_buffers),
        ("annotations_compression", ann_compression),
        ("chunk_size", Value::Int(GRAPH_CHUNK)),
        ("rust_order", Value::Bool(true)),
    ]);
    let started = std::time::Instant::now();
    // Records arrive in chunks and become tasks while the helper pickles the next chunk.
    let (chunk_tx, mut chunk_rx) = mpsc::unbounded_channel();
    let call = ctx.helpers.call_chunked(request, chunk_tx);
    tokio::pin!(call);
    let mut streamed: Result<Records, ServerError> = Ok(Records::default());
    let result = loop {
        tokio::select! {
            Some(chunk) = chunk_rx.recv() => add_records(&mut streamed, chunk.get("chunk")),
            result = &mut call => break result,
        }
    };
    while let Ok(chunk) = chunk_rx.try_recv() {
        add_records(&mut streamed, chunk.get("chunk"));
    }
    let stimulus = match result {
        Ok(reply) if reply.get("status").and_then(Value::as_str) == Some("OK") => {
            let helper_s = started.elapsed().as_secs_f64();
            add_records(&mut streamed, reply.get("tasks"));
            let n = streamed.as_ref().map_or(0, |r| r.tasks.len());
            log_helper_timings(&reply, n, helper_s);
            let ordered = match streamed {
                Ok(r) => order_off_runtime(r).await,
                Err(e) => Err(e),
            };
            match ordered {
                Ok(tasks) => Stimulus::UpdateGraph {
                    client,
                    tasks,
                    keys,
                    fifo_timeout,
                    stimulus_id: format!("update-graph-{}", now()).into(),
                },
                Err(e) => graph_failed(client, keys, &e.to_string()),
            }
        }
        Ok(reply) => {
            let text = reply
                .get("exception_text")
                .and_then(Value::as_str)
                .unwrap_or("");
            tracing::warn!(%text, "graph failed to materialize");
            let exception = match reply.get("exception") {
                Some(Value::Bin(b)) => Value::Bin(b.clone()),
                _ => Value::Bin(pickled_exception("RuntimeError", text)),
            };
            Stimulus::GraphFailed {
                client,
                keys,
                exception,
                traceback: match reply.get("traceback") {
                    Some(Value::Bin(b)) => Value::Bin(b.clone()),
                    _ => Value::Nil,
                },
            }
        }
        Err(e) => graph_failed(client, keys, &e.to_string()),
    };
    ctx.handle.send(move |s| s.stimulus(stimulus));
    Ok(())
}

/// Where a graph's time went, per stage: the helper's own timings (unpickle, materialize,
/// order, per-task pickling) and the round trip as rask saw it (adds the pipe transfer and
/// decoding the reply). Debug level unless the graph is big.
fn log_helper_timings(reply: &Value, n: usize, helper_s: f64) {
    let stage = |name: &str| {
        reply
            .get("timings")
            .and_then(|t| t.get(name))
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN)
    };
    let (de, mat, order, tasks, total) = (
        stage("deserialize_s"),
        stage("materialize_s"),
        stage("order_s"),
        stage("tasks_s"),
        stage("total_s"),
    );
    let line = format!(
        "graph helper: deserialize {de:.3}s, materialize {mat:.3}s, order {order:.3}s, \
         per-task records {tasks:.3}s (helper total {total:.3}s; with transfer and decoding {helper_s:.3}s)"
    );
    if n >= 10_000 {
        tracing::info!(tasks = n, "{line}");
    } else {
        tracing::debug!(tasks = n, "{line}");
    }
}

/// Records per chunk of a helper's `update_graph` reply.
const GRAPH_CHUNK: i64 = 20_000;

/// A graph's tasks as they arrive from the helper, with what ordering needs of each.
/// (`pub` for the `helper_reply` fuzz target only.)
#[doc(hidden)]
#[derive(Default)]
pub struct Records {
    pub tasks: Vec<NewTask>,
    pub order: Vec<OrderInfo>,
}

/// Turns a chunk of helper records into tasks; the first bad record fails the graph.
#[doc(hidden)]
pub fn add_records(out: &mut Result<Records, ServerError>, records: Option<&Value>) {
    let Ok(r) = out else {
        return;
    };
    let converted = match records {
        Some(Value::Array(records)) => records.iter().try_for_each(|rec| {
            r.tasks.push(translate::new_task(rec)?);
            r.order.push(OrderInfo::of(rec));
            Ok(())
        }),
        _ => Err(ServerError::Helper("helper reply without tasks".into())),
    };
    if let Err(e) = converted {
        *out = Err(e);
    }
}

/// Gives the tasks their priorities (rask-order) on a blocking thread: a million-task
/// graph takes about a second, which no runtime thread should spend.
async fn order_off_runtime(r: Records) -> Result<Vec<NewTask>, ServerError> {
    let Records { mut tasks, order } = r;
    tokio::task::spawn_blocking(move || ordering::assign(&mut tasks, &order).map(|()| tasks))
        .await
        .map_err(|e| ServerError::Helper(format!("ordering the graph panicked: {e}")))?
}

fn graph_failed(client: ClientId, keys: Vec<Key>, text: &str) -> Stimulus {
    tracing::error!("graph failed: {text}");
    Stimulus::GraphFailed {
        client,
        keys,
        exception: Value::Bin(pickled_exception("RuntimeError", text)),
        traceback: Value::Nil,
    }
}

// ---- workers ---------------------------------------------------------------------------

/// `register-worker` (scheduler.py:4663-4800), then the worker's stream.
pub async fn worker_stream(comm: Comm, msg: Value, ctx: Arc<Ctx>) -> Result<(), ServerError> {
    let address = str_field(&msg, "address")?;
    let nthreads = int_field(&msg, "nthreads")?.max(1) as u32;
    let name_value = msg
        .get("name")
        .cloned()
        .unwrap_or_else(|| Value::Str(address.clone()));
    let name: Arc<str> = match &name_value {
        Value::Str(s) => s.clone(),
        Value::Nil => address.clone(),
        Value::Int(i) => i.to_string().into(),
        other => format!("{other:?}").into(),
    };
    let memory_limit = msg
        .get("memory_limit")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .max(0) as u64;
    let resources_value = msg
        .get("resources")
        .cloned()
        .unwrap_or(Value::Map(Vec::new()));
    let resources = match &resources_value {
        Value::Map(m) => m
            .iter()
            .filter_map(|(k, v)| Some((Arc::<str>::from(k.as_str()?), v.as_f64()?)))
            .collect(),
        _ => Vec::new(),
    };
    let status = msg
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("running")
        .to_string();
    let Comm {
        mut reader,
        mut writer,
        peer,
    } = comm;
    let (tx, rx) = mpsc::unbounded_channel();
    let info = WorkerInfo {
        name: name_value,
        nthreads,
        memory_limit,
        resources: resources_value,
        local_directory: msg.get("local_directory").cloned().unwrap_or(Value::Nil),
        services: msg
            .get("services")
            .cloned()
            .unwrap_or(Value::Map(Vec::new())),
        nanny: msg.get("nanny").cloned().unwrap_or(Value::Nil),
        last_seen: now(),
        metrics: msg
            .get("metrics")
            .cloned()
            .unwrap_or(Value::Map(Vec::new())),
        status: status.as_str().into(),
        tx,
    };
    let spec = WorkerSpec {
        address: address.clone(),
        name: name.clone(),
        nthreads,
        memory_limit,
        resources,
        running: status == "running",
    };
    // Register and build the reply on the state task, so a name clash is decided atomically.
    let registered: Result<(WorkerId, Value), Value> = ctx
        .handle
        .call(move |s| {
            let taken = s
                .core
                .workers()
                .any(|(_, w)| w.name == spec.name || w.address == spec.address);
            if taken {
                return Err(Value::map([
                    ("status", Value::from("error")),
                    ("message", Value::from(format!("name taken, {}", spec.name))),
                    ("time", Value::Float(now())),
                ]));
            }
            let id = s.core.new_worker_id();
            s.workers.insert(id, info);
            let reply = Value::map([
                ("status", Value::from("OK")),
                ("time", Value::Float(now())),
                ("heartbeat-interval", Value::Float(s.heartbeat_interval())),
                ("worker-plugins", s.worker_plugins.clone()),
                ("warning", Value::from("")),
                ("error", Value::from("")),
            ]);
            s.stimulus(Stimulus::AddWorker { id, spec });
            Ok((id, reply))
        })
        .await?;
    let worker = match registered {
        Ok((id, reply)) => {
            writer.write(&reply).await?;
            id
        }
        Err(reply) => {
            tracing::warn!(%address, "refusing worker: name taken");
            writer.write(&reply).await?;
            return Ok(());
        }
    };
    tracing::info!(%address, %name, nthreads, %peer, "Register worker");
    let writer_task = tokio::spawn(batched_writer(rx, writer));
    let mut expected = false;
    let result = worker_loop(&mut reader, worker, &ctx, &mut expected).await;
    if let Err(e) = &result {
        tracing::warn!(%address, "worker stream failed: {e}");
    }
    ctx.handle.send(move |s| {
        s.remove_worker(
            worker,
            expected,
            format!("handle-worker-cleanup-{}", now()).into(),
        );
    });
    tracing::info!(%address, "Remove worker");
    writer_task.abort();
    Ok(())
}

async fn worker_loop(
    reader: &mut rask_comm::CommReader,
    worker: WorkerId,
    ctx: &Arc<Ctx>,
    expected: &mut bool,
) -> Result<(), ServerError> {
    let mut types = TypeCache::default();
    while let Some(batch) = reader.read().await? {
        let mut stimuli = Vec::new();
        for msg in messages(batch) {
            let op = str_field(&msg, "op")?;
            if crate::extensions::WORKER_STREAM_OPS.contains(&&*op) {
                // Extensions act through the state task too: keep the order of messages.
                ctx.handle.stimuli(std::mem::take(&mut stimuli));
                crate::extensions::worker_stream_op(&op, &msg, worker, ctx)?;
                continue;
            }
            if let Some(s) = worker_message(worker, &op, &msg, expected, &mut types)? {
                if let Stimulus::WorkerStatusChange { status, .. } = &s {
                    // `identity()` reports it; `Client.wait_for_workers` waits for "running".
                    let status = status.clone();
                    ctx.handle.stimuli(std::mem::take(&mut stimuli));
                    ctx.handle.send(move |s| {
                        if let Some(info) = s.workers.get_mut(&worker) {
                            info.status = status;
                        }
                    });
                }
                stimuli.push(s);
            }
            if &*op == "close-stream" {
                ctx.handle.stimuli(stimuli);
                return Ok(());
            }
        }
        ctx.handle.stimuli(stimuli);
    }
    Ok(())
}

/// The pickled result types a worker reported, as buffers of their own. A task keeps its
/// `type` until it is forgotten; as a slice of the message it came in, it kept that whole
/// frame (every task-finished of the batch) alive: about 250 bytes per task on a 1M-task
/// graph. Most tasks of a graph share a handful of types, so they share one copy too.
#[derive(Default)]
struct TypeCache {
    seen: rustc_hash::FxHashSet<bytes::Bytes>,
}

impl TypeCache {
    /// Bounds the cache against a worker that reports a new type for every task.
    const MAX: usize = 256;

    fn detach(&mut self, v: Option<&Value>) -> Value {
        match v {
            Some(Value::Bin(b)) => {
                if let Some(own) = self.seen.get(b) {
                    return Value::Bin(own.clone());
                }
                let own = bytes::Bytes::copy_from_slice(b);
                if self.seen.len() < Self::MAX {
                    self.seen.insert(own.clone());
                }
                Value::Bin(own)
            }
            Some(other) => other.clone(),
            None => Value::Nil,
        }
    }
}

/// One worker → scheduler stream message as a stimulus (worker_state_machine.py:420-560).
fn worker_message(
    worker: WorkerId,
    op: &str,
    msg: &Value,
    expected: &mut bool,
    types: &mut TypeCache,
) -> Result<Option<Stimulus>, ServerError> {
    let sid = || stimulus_id(msg, op);
    Ok(Some(match op {
        "task-finished" => Stimulus::TaskFinished {
            worker,
            key: key_field(msg, "key")?,
            run_id: int_field(msg, "run_id")?.max(0) as u64,
            nbytes: msg.get("nbytes").and_then(Value::as_i64).unwrap_or(0),
            type_: types.detach(msg.get("type")),
            compute_duration: compute_duration(msg),
            stimulus_id: sid(),
        },
        "task-erred" => Stimulus::TaskErred {
            worker,
            key: key_field(msg, "key")?,
            run_id: int_field(msg, "run_id")?.max(0) as u64,
            exception: msg.get("exception").cloned().unwrap_or(Value::Nil),
            traceback: msg.get("traceback").cloned().unwrap_or(Value::Nil),
            stimulus_id: sid(),
        },
        "release-worker-data" => Stimulus::ReleaseWorkerData {
            worker,
            key: key_field(msg, "key")?,
            stimulus_id: sid(),
        },
        "add-keys" => Stimulus::AddKeys {
            worker,
            keys: keys_field(msg, "keys")?,
            stimulus_id: sid(),
        },
        "reschedule" => Stimulus::Reschedule {
            worker,
            key: key_field(msg, "key")?,
            stimulus_id: sid(),
        },
        "long-running" => Stimulus::LongRunning {
            worker,
            key: key_field(msg, "key")?,
        },
        "request-refresh-who-has" => Stimulus::RequestRefreshWhoHas {
            worker,
            keys: keys_field(msg, "keys")?,
            stimulus_id: sid(),
        },
        "worker-status-change" => {
            let status = str_field(msg, "status")?;
            if status.starts_with("closing") {
                *expected = true;
            }
            Stimulus::WorkerStatusChange { worker, status }
        }
        "steal-response" => Stimulus::StealResponse {
            worker,
            key: key_field(msg, "key")?,
            state: msg.get("state").and_then(Value::as_str).map(Arc::from),
            stimulus_id: sid(),
        },
        // Nothing to do: liveness is the stream itself (and the heartbeats).
        "keep-alive" | "close-stream" => return Ok(None),
        other => {
            return Err(ServerError::UnknownOp(format!(
                "unknown worker stream op {other:?}"
            )))
        }
    }))
}

/// Seconds spent in `compute` according to `startstops`.
fn compute_duration(msg: &Value) -> Option<f64> {
    let spans = msg.get("startstops")?.as_array()?;
    let mut total = 0.0;
    let mut found = false;
    for s in spans {
        if s.get("action").and_then(Value::as_str) == Some("compute") {
            total += s.get("stop")?.as_f64()? - s.get("start")?.as_f64()?;
            found = true;
        }
    }
    found.then_some(total)
}
