//! Worker streams, both ways: `register-worker`, the messages a worker sends
//! (`worker_state_machine.py:420-560`) and the ones it is sent (`Worker.stream_handlers`).

use super::{keys_value, now, who_has_value};
use crate::error::RequestError;
use crate::messages::diagnostics::{DoneMsg, DoneRecord, TaskDone};
use crate::messages::events::{StreamOp, WorkerEvent};
use crate::messages::{Registration, ToWorkerMsg, WorkerMsg};
use rask_comm::fields::{field, int_field, key_field, keys_field, str_field};
use rask_core::{ComputeTask, Stimulus, ToWorker, WorkerId, WorkerStatus};
use rask_protocol::decode_message;
use rask_protocol::{Key, MessageEncoder, MessageReader, ProtocolError, Value};
use std::sync::Arc;

// ---- register-worker -------------------------------------------------------------------------

/// `register-worker` (scheduler.py:4663-4800).
pub fn registration(msg: &Value) -> Result<Registration, RequestError> {
    let address = str_field(msg, "address")?;
    let server_id = match msg.get("server_id") {
        Some(Value::Str(s)) => s.clone(),
        _ => address.clone(),
    };
    let nthreads = int_field(msg, "nthreads")?.clamp(1, i64::from(u32::MAX)) as u32;
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
        .map_or(WorkerStatus::Running, WorkerStatus::from);
    let or_empty = |name: &str| msg.get(name).cloned().unwrap_or(Value::Map(Vec::new()));
    Ok(Registration {
        address,
        name_value,
        name,
        nthreads,
        memory_limit,
        resources_value,
        resources,
        status,
        local_directory: msg.get("local_directory").cloned().unwrap_or(Value::Nil),
        services: or_empty("services"),
        nanny: msg.get("nanny").cloned().unwrap_or(Value::Nil),
        metrics: or_empty("metrics"),
        versions: msg.get("versions").cloned().unwrap_or(Value::Nil),
        server_id,
    })
}

/// The reply to an accepted `register-worker`; `warning` is the version mismatch
/// (scheduler.py:4790), which the worker logs.
pub fn registered(heartbeat_interval: f64, worker_plugins: Value, warning: String) -> Value {
    Value::map([
        ("status", Value::from("OK")),
        ("time", Value::Float(now())),
        ("heartbeat-interval", Value::Float(heartbeat_interval)),
        ("worker-plugins", worker_plugins),
        ("warning", Value::from(warning)),
        ("error", Value::from("")),
    ])
}

/// The reply to a refused `register-worker` (`Worker._register_with_scheduler` raises on a
/// status other than "OK", showing `message`).
pub fn refused(message: &str) -> Value {
    Value::map([
        ("status", Value::from("error")),
        ("message", Value::from(message)),
        ("time", Value::Float(now())),
    ])
}

// ---- worker -> scheduler ---------------------------------------------------------------------

/// What a worker stream's reader keeps between messages.
pub struct WorkerStream {
    /// the registered worker
    pub worker: WorkerId,
    /// the worker said it is closing: its removal is expected
    pub closing: bool,
    types: TypeCache,
}

impl WorkerStream {
    /// A registered worker's stream.
    pub fn new(worker: WorkerId) -> WorkerStream {
        WorkerStream {
            worker,
            closing: false,
            types: TypeCache::default(),
        }
    }
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

fn sid(msg: &Value, op: &str) -> Arc<str> {
    super::stimulus_id(msg, op)
}

fn run_id(msg: &Value) -> Result<u64, RequestError> {
    Ok(int_field(msg, "run_id")?.max(0) as u64)
}

/// `task-finished`
pub fn task_finished(msg: &mut Value, s: &mut WorkerStream) -> Result<WorkerMsg, RequestError> {
    let key = key_field(msg, "key")?;
    let type_ = s.types.detach(msg.get("type"));
    let stimulus = Stimulus::TaskFinished {
        worker: s.worker,
        key: key.clone(),
        run_id: run_id(msg)?,
        nbytes: msg.get("nbytes").and_then(Value::as_i64).unwrap_or(0),
        type_: type_.clone(),
        compute_duration: action_duration(msg, "compute"),
        transfer_duration: action_duration(msg, "transfer").unwrap_or(0.0),
        stimulus_id: sid(msg, "task-finished"),
    };
    Ok(task_done(msg, stimulus, key, Some(type_)))
}

/// The two messages a worker sends for every task, `task-finished` and (once the result is
/// released) `release-worker-data`, read straight from the batch without a `Value` tree:
/// building and dropping their trees (a dozen fields, a list of dicts) cost more than the
/// scheduler's work on the task. `None` (with the reader anywhere in the message) for any
/// other message or shape, for [`task_finished`] and the other parsers to read from its
/// value instead, with the same result or error.
pub fn read_in_place(
    r: &mut MessageReader<'_>,
    s: &mut WorkerStream,
) -> Result<Option<WorkerMsg>, ProtocolError> {
    let start = r.mark();
    let Some(n) = r.map_len()? else {
        return Ok(None);
    };
    let mut op = None;
    let mut key = None;
    let mut run_id = None;
    let mut nbytes = None;
    let mut type_ = None;
    let mut spans = None;
    let mut stimulus_id = None;
    for _ in 0..n {
        let Some(name) = r.str_bytes()? else {
            return Ok(None);
        };
        // A typed read that finds another type leaves the value unread: stop there. So does
        // a field named twice (`Value::get` reads the first one).
        let read = match &name[..] {
            b"op" => r.str_bytes()?.is_some_and(|v| op.replace(v).is_none()),
            b"key" => r.key()?.is_some_and(|v| key.replace(v).is_none()),
            b"run_id" => r.i64()?.is_some_and(|v| run_id.replace(v).is_none()),
            b"nbytes" => r.i64()?.is_some_and(|v| nbytes.replace(v).is_none()),
            b"type" => type_.replace(r.value()?).is_none(),
            b"startstops" => startstops(r)?.is_some_and(|v| spans.replace(v).is_none()),
            b"stimulus_id" => r.str()?.is_some_and(|v| stimulus_id.replace(v).is_none()),
            _ => {
                r.skip()?;
                true
            }
        };
        if !read {
            return Ok(None);
        }
    }
    // a missing field: the other path reads it, or says what is wrong
    let (Some(op), Some(key)) = (op, key) else {
        return Ok(None);
    };
    let sid = |op: &str| stimulus_id.unwrap_or_else(|| format!("{op}-{}", now()).into());
    if op == "release-worker-data" {
        return Ok(Some(WorkerMsg::Core(Stimulus::ReleaseWorkerData {
            worker: s.worker,
            key,
            stimulus_id: sid("release-worker-data"),
        })));
    }
    let (b"task-finished", Some(run_id), Some(spans)) = (&op[..], run_id, spans) else {
        return Ok(None);
    };
    let type_ = s.types.detach(type_.as_ref());
    let stimulus = Stimulus::TaskFinished {
        worker: s.worker,
        key: key.clone(),
        run_id: run_id.max(0) as u64,
        nbytes: nbytes.unwrap_or(0),
        type_: type_.clone(),
        compute_duration: spans.compute,
        transfer_duration: spans.transfer.unwrap_or(0.0),
        stimulus_id: sid("task-finished"),
    };
    Ok(Some(WorkerMsg::TaskDone(Box::new(TaskDone {
        stimulus,
        key,
        msg: DoneMsg::Raw(r.since(&start)),
        type_: Some(type_),
    }))))
}

/// What `startstops` says a task spent computing and fetching: the sums of its `compute`
/// and `transfer` spans, as [`action_duration`] reads them; `None` for a list it would not
/// read the same way (a span without a number for `start` or `stop`, or not a dict).
#[derive(Default)]
struct Spans {
    compute: Option<f64>,
    transfer: Option<f64>,
}

fn startstops(r: &mut MessageReader<'_>) -> Result<Option<Spans>, ProtocolError> {
    let Some(n) = r.array_len()? else {
        return Ok(None);
    };
    let mut spans = Spans::default();
    for _ in 0..n {
        let Some(fields) = r.map_len()? else {
            return Ok(None);
        };
        let (mut action, mut start, mut stop) = (None, None, None);
        for _ in 0..fields {
            let Some(name) = r.str_bytes()? else {
                return Ok(None);
            };
            let read = match &name[..] {
                b"action" => r.str_bytes()?.is_some_and(|v| action.replace(v).is_none()),
                b"start" => r.f64()?.is_some_and(|v| start.replace(v).is_none()),
                b"stop" => r.f64()?.is_some_and(|v| stop.replace(v).is_none()),
                _ => {
                    r.skip()?;
                    true
                }
            };
            if !read {
                return Ok(None);
            }
        }
        let total = match action.as_deref() {
            Some(b"compute") => &mut spans.compute,
            Some(b"transfer") => &mut spans.transfer,
            _ => continue,
        };
        let (Some(start), Some(stop)) = (start, stop) else {
            return Ok(None);
        };
        *total = Some(total.unwrap_or(0.0) + (stop - start));
    }
    Ok(Some(spans))
}

/// `task-erred`
pub fn task_erred(msg: &mut Value, s: &mut WorkerStream) -> Result<WorkerMsg, RequestError> {
    let key = key_field(msg, "key")?;
    let stimulus = Stimulus::TaskErred {
        worker: s.worker,
        key: key.clone(),
        run_id: run_id(msg)?,
        exception: msg.get("exception").cloned().unwrap_or(Value::Nil),
        traceback: msg.get("traceback").cloned().unwrap_or(Value::Nil),
        stimulus_id: sid(msg, "task-erred"),
    };
    Ok(task_done(msg, stimulus, key, None))
}

/// A `task-finished`/`task-erred` with the message itself, taken rather than copied: most
/// of the time nothing records finished tasks, and copying every message's fields for a
/// record cost more than reading them.
fn task_done(msg: &mut Value, stimulus: Stimulus, key: Key, type_: Option<Value>) -> WorkerMsg {
    WorkerMsg::TaskDone(Box::new(TaskDone {
        stimulus,
        key,
        msg: DoneMsg::Value(std::mem::take(msg)),
        type_,
    }))
}

/// The task stream's record of a `task-finished`/`task-erred`: the message's fields as
/// `TaskStreamPlugin.transition` gets them (scheduler.py:2065: everything but `op` and
/// `run_id`; `stimulus_task_erred` adds `cause`, the task itself), with the result's type
/// as its own buffer, not a slice that keeps the whole batch alive.
pub fn done_record(
    stimulus: &Stimulus,
    key: &Key,
    msg: DoneMsg,
    type_: Option<Value>,
) -> DoneRecord {
    let msg = match msg {
        DoneMsg::Value(v) => v,
        // read once already, refusing what `decode_message` refuses: it decodes
        DoneMsg::Raw(raw) => decode_message(std::slice::from_ref(&raw)).unwrap_or_default(),
    };
    let erred = matches!(stimulus, Stimulus::TaskErred { .. });
    let last_stop = msg
        .get("startstops")
        .and_then(Value::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.get("stop").and_then(Value::as_f64))
        .fold(f64::NEG_INFINITY, f64::max);
    let metadata = msg
        .get("metadata")
        .filter(|_| !erred)
        .filter(|m| !matches!(m, Value::Nil) && m.as_map().is_none_or(|m| !m.is_empty()))
        .cloned();
    let mut entries = match msg {
        Value::Map(entries) => entries,
        _ => Vec::new(),
    };
    entries.retain(|(k, _)| !matches!(k.as_str(), Some("op" | "run_id")));
    if let Some(t) = type_ {
        if let Some(slot) = entries.iter_mut().find(|(k, _)| k.as_str() == Some("type")) {
            slot.1 = t;
        }
    }
    if erred {
        entries.push((Value::from("cause"), key.to_value()));
    }
    DoneRecord {
        record: Value::Map(entries),
        last_stop,
        metadata,
    }
}

/// `release-worker-data`
pub fn release_worker_data(
    msg: &mut Value,
    s: &mut WorkerStream,
) -> Result<WorkerMsg, RequestError> {
    Ok(WorkerMsg::Core(Stimulus::ReleaseWorkerData {
        worker: s.worker,
        key: key_field(msg, "key")?,
        stimulus_id: sid(msg, "release-worker-data"),
    }))
}

/// `add-keys`
pub fn add_keys(msg: &mut Value, s: &mut WorkerStream) -> Result<WorkerMsg, RequestError> {
    Ok(WorkerMsg::Core(Stimulus::AddKeys {
        worker: s.worker,
        keys: keys_field(msg, "keys")?,
        stimulus_id: sid(msg, "add-keys"),
    }))
}

/// `reschedule`
pub fn reschedule(msg: &mut Value, s: &mut WorkerStream) -> Result<WorkerMsg, RequestError> {
    Ok(WorkerMsg::Core(Stimulus::Reschedule {
        worker: s.worker,
        key: key_field(msg, "key")?,
        stimulus_id: sid(msg, "reschedule"),
    }))
}

/// `long-running`
pub fn long_running(msg: &mut Value, s: &mut WorkerStream) -> Result<WorkerMsg, RequestError> {
    Ok(WorkerMsg::Core(Stimulus::LongRunning {
        worker: s.worker,
        key: key_field(msg, "key")?,
    }))
}

/// `request-refresh-who-has`
pub fn request_refresh_who_has(
    msg: &mut Value,
    s: &mut WorkerStream,
) -> Result<WorkerMsg, RequestError> {
    Ok(WorkerMsg::Core(Stimulus::RequestRefreshWhoHas {
        worker: s.worker,
        keys: keys_field(msg, "keys")?,
        stimulus_id: sid(msg, "request-refresh-who-has"),
    }))
}

/// `steal-response`
pub fn steal_response(msg: &mut Value, s: &mut WorkerStream) -> Result<WorkerMsg, RequestError> {
    Ok(WorkerMsg::Core(Stimulus::StealResponse {
        worker: s.worker,
        key: key_field(msg, "key")?,
        state: msg.get("state").and_then(Value::as_str).map(Arc::from),
        stimulus_id: sid(msg, "steal-response"),
    }))
}

/// `worker-status-change`; a worker that says it is closing is expected to leave.
pub fn status_change(msg: &mut Value, s: &mut WorkerStream) -> Result<WorkerMsg, RequestError> {
    let name = str_field(msg, "status")?;
    if name.starts_with("closing") {
        s.closing = true;
    }
    Ok(WorkerMsg::Core(Stimulus::WorkerStatusChange {
        worker: s.worker,
        status: WorkerStatus::from(&*name),
    }))
}

/// `keep-alive`
pub fn keep_alive(_msg: &mut Value, _s: &mut WorkerStream) -> Result<WorkerMsg, RequestError> {
    Ok(WorkerMsg::KeepAlive)
}

/// `log-event {topic, msg}` (`Scheduler.log_worker_event`).
pub fn log_event(msg: &mut Value, _s: &mut WorkerStream) -> Result<WorkerMsg, RequestError> {
    let topics = super::events::topics(msg)?;
    let single_topic = match field(msg, "topic")? {
        Value::Str(t) => Some(t.clone()),
        _ => None,
    };
    Ok(WorkerMsg::Events(StreamOp::Log(WorkerEvent {
        topics,
        msg: msg.get("msg").cloned().unwrap_or(Value::Nil),
        single_topic,
    })))
}

/// Seconds spent in `action` according to `startstops`; `None` if it has no such span.
fn action_duration(msg: &Value, action: &str) -> Option<f64> {
    let spans = msg.get("startstops")?.as_array()?;
    let mut total = 0.0;
    let mut found = false;
    for s in spans {
        if s.get("action").and_then(Value::as_str) == Some(action) {
            total += s.get("stop")?.as_f64()? - s.get("start")?.as_f64()?;
            found = true;
        }
    }
    found.then_some(total)
}

// ---- scheduler -> worker ---------------------------------------------------------------------

/// A scheduler → worker stream message, written into its batch.
pub fn encode_to_worker(msg: ToWorkerMsg, enc: &mut MessageEncoder) {
    let value = match msg {
        ToWorkerMsg::Core(m) => return core(m, enc),
        // `AcquireReplicasEvent` (worker_state_machine.py)
        ToWorkerMsg::AcquireReplicas {
            who_has,
            nbytes,
            stimulus_id,
        } => Value::map([
            ("op", Value::from("acquire-replicas")),
            ("who_has", who_has_value(&who_has)),
            ("nbytes", nbytes_value(&nbytes)),
            ("stimulus_id", Value::Str(stimulus_id)),
        ]),
        ToWorkerMsg::StatusChange {
            status,
            stimulus_id,
        } => Value::map([
            ("op", Value::from("worker-status-change")),
            ("status", Value::from(status.as_str())),
            ("stimulus_id", Value::Str(stimulus_id)),
        ]),
        ToWorkerMsg::ShuffleFail {
            shuffle_id,
            run_id,
            message,
        } => Value::map([
            ("op", Value::from("shuffle-fail")),
            ("shuffle_id", Value::Str(shuffle_id)),
            ("run_id", Value::Int(run_id)),
            ("message", Value::from(message)),
        ]),
    };
    enc.value(&value);
}

fn nbytes_value(nbytes: &[(Key, i64)]) -> Value {
    Value::Map(
        nbytes
            .iter()
            .map(|(k, n)| (k.to_value(), Value::Int(*n)))
            .collect(),
    )
}

/// The core's messages: `compute-task`, the one sent per task, straight from the command
/// (building a value tree per task, then dropping it, cost more than the writing); the
/// others as values.
fn core(msg: ToWorker, enc: &mut MessageEncoder) {
    let value = match msg {
        ToWorker::ComputeTask(t) => return encode_compute_task(&t, enc),
        ToWorker::FreeKeys { keys, stimulus_id } => Value::map([
            ("op", Value::from("free-keys")),
            ("keys", keys_value(&keys)),
            ("stimulus_id", Value::Str(stimulus_id)),
        ]),
        ToWorker::RemoveReplicas { keys, stimulus_id } => Value::map([
            ("op", Value::from("remove-replicas")),
            ("keys", keys_value(&keys)),
            ("stimulus_id", Value::Str(stimulus_id)),
        ]),
        ToWorker::RefreshWhoHas {
            who_has,
            stimulus_id,
        } => Value::map([
            ("op", Value::from("refresh-who-has")),
            ("who_has", who_has_value(&who_has)),
            ("stimulus_id", Value::Str(stimulus_id)),
        ]),
        ToWorker::RemoveWorker {
            worker,
            stimulus_id,
        } => Value::map([
            ("op", Value::from("remove-worker")),
            ("worker", Value::Str(worker)),
            ("stimulus_id", Value::Str(stimulus_id)),
        ]),
        ToWorker::StealRequest { key, stimulus_id } => Value::map([
            ("op", Value::from("steal-request")),
            ("key", key.to_value()),
            ("stimulus_id", Value::Str(stimulus_id)),
        ]),
        ToWorker::Close { reason } => {
            Value::map([("op", Value::from("close")), ("reason", Value::Str(reason))])
        }
    };
    enc.value(&value);
}

/// `compute-task` with exactly the fields `ComputeTaskEvent` requires.
fn encode_compute_task(t: &ComputeTask, enc: &mut MessageEncoder) {
    enc.map_len(12);
    enc.str("op");
    enc.str("compute-task");
    enc.str("key");
    enc.key(&t.key);
    enc.str("run_id");
    enc.int(t.run_id as i64);
    enc.str("priority");
    enc.array_len(t.priority.len());
    for p in t.priority {
        enc.int(p);
    }
    enc.str("stimulus_id");
    enc.str(&t.stimulus_id);
    enc.str("who_has");
    enc.map_len(t.who_has.len());
    for (k, addrs) in &t.who_has {
        enc.key(k);
        enc.array_len(addrs.len());
        for a in addrs {
            enc.str(a);
        }
    }
    enc.str("nbytes");
    enc.map_len(t.nbytes.len());
    for (k, n) in &t.nbytes {
        enc.key(k);
        enc.int(*n);
    }
    enc.str("run_spec");
    enc.pickled(&t.run_spec);
    enc.str("resource_restrictions");
    match &t.resource_restrictions {
        None => enc.nil(),
        Some(r) => {
            enc.map_len(r.len());
            for (name, amount) in r {
                enc.str(name);
                enc.float(*amount);
            }
        }
    }
    enc.str("actor");
    enc.bool(t.actor);
    enc.str("annotations");
    enc.value(&t.annotations);
    enc.str("span_id");
    enc.nil();
}

#[cfg(test)]
mod tests {
    use super::*;
    use rask_protocol::{encode_message, Opaque};

    /// A `task-finished` as a stock worker writes it (`TaskFinishedMsg.to_dict`).
    fn finished() -> Vec<(&'static str, Value)> {
        let span = |action: &str, start: f64, stop: f64| {
            Value::map([
                ("action", Value::from(action)),
                ("start", Value::Float(start)),
                ("stop", Value::Float(stop)),
            ])
        };
        vec![
            (
                "key",
                Key::Tuple(vec![Key::str("x"), Key::Int(3)].into()).to_value(),
            ),
            ("run_id", Value::Int(7)),
            ("nbytes", Value::Int(28)),
            (
                "type",
                Value::Bin(bytes::Bytes::from_static(b"\x80\x05int.")),
            ),
            ("typename", Value::from("int")),
            (
                "metadata",
                Value::map([
                    ("a", Value::Int(1)),
                    ("b", Value::Nil),
                    ("c", Value::Array(vec![])),
                ]),
            ),
            ("thread", Value::Int(140)),
            (
                "startstops",
                Value::Array(vec![
                    span("transfer", 1.0, 1.5),
                    span("compute", 2.0, 2.25),
                    span("disk-read", 3.0, 4.0),
                ]),
            ),
            ("op", Value::from("task-finished")),
            ("stimulus_id", Value::from("task-finished-1")),
            ("status", Value::from("OK")),
        ]
    }

    /// What each path makes of one message: the stimulus and the record.
    fn both(fields: Vec<(&'static str, Value)>) -> (Option<String>, Result<String, String>) {
        let msg = Value::Map(
            fields
                .into_iter()
                .map(|(k, v)| (Value::from(k), v))
                .collect(),
        );
        let frames = encode_message(&Value::Array(vec![msg.clone()]));
        // without a stimulus id, each path makes its own from the clock
        let same_clock = |sid: &mut Arc<str>| {
            if sid.contains('-') && !sid.ends_with("-1") {
                *sid = "(now)".into();
            }
        };
        let show = |m: WorkerMsg| match m {
            WorkerMsg::TaskDone(d) => {
                let TaskDone {
                    mut stimulus,
                    key,
                    msg,
                    type_,
                } = *d;
                if let Stimulus::TaskFinished { stimulus_id, .. } = &mut stimulus {
                    same_clock(stimulus_id);
                }
                let record = done_record(&stimulus, &key, msg, type_);
                format!(
                    "{stimulus:?} {:?} {} {:?}",
                    record.record, record.last_stop, record.metadata
                )
            }
            WorkerMsg::Core(mut stimulus) => {
                if let Stimulus::ReleaseWorkerData { stimulus_id, .. } = &mut stimulus {
                    same_clock(stimulus_id);
                }
                format!("{stimulus:?}")
            }
            _ => "another message".into(),
        };
        let mut stream = WorkerStream::new(WorkerId(1));
        let mut r = MessageReader::new(&frames).unwrap();
        assert_eq!(r.array_len().unwrap(), Some(1));
        let fast = read_in_place(&mut r, &mut stream).unwrap().map(show);
        let mut msg = msg;
        let slow = match msg.get("op").and_then(Value::as_str) {
            Some("release-worker-data") => release_worker_data(&mut msg, &mut stream),
            _ => task_finished(&mut msg, &mut stream),
        };
        (fast, slow.map(show).map_err(|e| e.to_string()))
    }

    /// Mutations of `fields`: each field left out, named twice, or of another type, and
    /// all in reverse order.
    fn variants(fields: Vec<(&'static str, Value)>) -> Vec<Vec<(&'static str, Value)>> {
        let mut variants = Vec::new();
        for i in 0..fields.len() {
            let mut without = fields.clone();
            without.remove(i);
            variants.push(without);
            let mut twice = fields.clone();
            twice.push(twice[i].clone());
            variants.push(twice);
            for other in [
                Value::Float(7.0),
                Value::from("7"),
                Value::Nil,
                Value::Array(vec![]),
                Value::Array(vec![Value::Int(1), Value::Nil]),
            ] {
                let mut changed = fields.clone();
                changed[i].1 = other;
                variants.push(changed);
            }
        }
        let mut reversed = fields;
        reversed.reverse();
        variants.push(reversed);
        variants
    }

    /// Read in place or from its value, a `task-finished` or a `release-worker-data` makes
    /// the same stimulus and the same record; a message in another shape is left to the
    /// value path.
    #[test]
    fn read_in_place_as_from_the_value() {
        let release = vec![
            ("key", Value::from("y")),
            ("op", Value::from("release-worker-data")),
            ("stimulus_id", Value::from("free-keys-1")),
        ];
        for fields in [finished(), release] {
            let (fast, slow) = both(fields.clone());
            assert!(fast.is_some(), "the stock shape is read in place");
            assert_eq!(fast, slow.clone().ok());
            let mut read_in_place = 0;
            for v in variants(fields) {
                let (fast, slow) = both(v.clone());
                if let Some(fast) = fast {
                    read_in_place += 1;
                    assert_eq!(Ok(fast), slow, "{v:?}");
                }
            }
            assert!(read_in_place > 5, "{read_in_place}");
        }
    }

    /// The directly written `compute-task` decodes to the dict `ComputeTaskEvent` is built
    /// from, field for field.
    #[test]
    fn compute_task_has_the_event_fields() {
        let dep = Key::Tuple(vec![Key::str("x"), Key::Int(0)].into());
        let task = ComputeTask {
            key: Key::str("y"),
            run_id: 3,
            priority: [0, 1, -2],
            who_has: vec![(dep.clone(), vec!["tcp://a:1".into(), "tcp://b:2".into()])],
            nbytes: vec![(dep.clone(), 80)],
            run_spec: bytes::Bytes::from_static(b"\x80\x05N."),
            actor: false,
            resource_restrictions: Some(vec![("GPU".into(), 1.0)]),
            annotations: Value::map([("retries", Value::Int(2))]),
            stimulus_id: "s-1".into(),
        };
        let mut enc = MessageEncoder::new();
        encode_compute_task(&task, &mut enc);
        let expected = Value::map([
            ("op", Value::from("compute-task")),
            ("key", Value::from("y")),
            ("run_id", Value::Int(3)),
            (
                "priority",
                Value::Array(vec![Value::Int(0), Value::Int(1), Value::Int(-2)]),
            ),
            ("stimulus_id", Value::from("s-1")),
            (
                "who_has",
                Value::Map(vec![(
                    dep.to_value(),
                    Value::Array(vec![Value::from("tcp://a:1"), Value::from("tcp://b:2")]),
                )]),
            ),
            ("nbytes", Value::Map(vec![(dep.to_value(), Value::Int(80))])),
            (
                "run_spec",
                Value::Opaque(Opaque::pickled(task.run_spec.clone())),
            ),
            (
                "resource_restrictions",
                Value::Map(vec![(Value::from("GPU"), Value::Float(1.0))]),
            ),
            ("actor", Value::Bool(false)),
            ("annotations", Value::map([("retries", Value::Int(2))])),
            ("span_id", Value::Nil),
        ]);
        assert_eq!(
            rask_protocol::decode_message(&enc.finish()).ok(),
            Some(expected)
        );
    }
}
