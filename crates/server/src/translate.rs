//! Wire messages ⇄ core stimuli and commands. The only module that knows both vocabularies.

use crate::error::ServerError;
use bytes::Bytes;
use rask_core::{ComputeTask, NewTask, ToClient, ToWorker};
use rask_protocol::{Key, Opaque, Value};
use std::sync::Arc;

pub use rask_comm::fields::{
    field, int_field, key_field, keys_field, opt_str, opt_str_list, parse_timedelta, str_field,
};
pub use rask_comm::reply::{error_message, pickled_exception, raised};

// ---- commands -> wire ----------------------------------------------------------------------

fn keys_value(keys: &[Key]) -> Value {
    Value::Array(keys.iter().map(Key::to_value).collect())
}

fn addrs_value(addrs: &[Arc<str>]) -> Value {
    Value::Array(addrs.iter().map(|a| Value::Str(a.clone())).collect())
}

/// A scheduler → worker stream message.
pub fn to_worker(msg: ToWorker) -> Value {
    match msg {
        ToWorker::ComputeTask(t) => compute_task(*t),
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
            (
                "who_has",
                Value::Map(
                    who_has
                        .iter()
                        .map(|(k, a)| (k.to_value(), addrs_value(a)))
                        .collect(),
                ),
            ),
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
    }
}

/// `compute-task` with exactly the fields `ComputeTaskEvent` requires.
fn compute_task(t: ComputeTask) -> Value {
    let resource_restrictions = match t.resource_restrictions {
        None => Value::Nil,
        Some(r) => Value::Map(
            r.into_iter()
                .map(|(k, v)| (Value::Str(k), Value::Float(v)))
                .collect(),
        ),
    };
    Value::map([
        ("op", Value::from("compute-task")),
        ("key", t.key.to_value()),
        ("run_id", Value::from(t.run_id)),
        (
            "priority",
            Value::Array(t.priority.iter().map(|p| Value::Int(*p)).collect()),
        ),
        ("stimulus_id", Value::Str(t.stimulus_id)),
        (
            "who_has",
            Value::Map(
                t.who_has
                    .iter()
                    .map(|(k, a)| (k.to_value(), addrs_value(a)))
                    .collect(),
            ),
        ),
        (
            "nbytes",
            Value::Map(
                t.nbytes
                    .iter()
                    .map(|(k, n)| (k.to_value(), Value::Int(*n)))
                    .collect(),
            ),
        ),
        ("run_spec", Value::Opaque(Opaque::pickled(t.run_spec))),
        ("resource_restrictions", resource_restrictions),
        ("actor", Value::Bool(false)),
        ("annotations", t.annotations),
        ("span_id", Value::Nil),
    ])
}

/// A scheduler → client stream message.
pub fn to_client(msg: ToClient) -> Value {
    match msg {
        ToClient::KeyInMemory { key, type_ } => {
            let mut v = Value::map([
                ("op", Value::from("key-in-memory")),
                ("key", key.to_value()),
            ]);
            if !type_.is_nil() {
                v.set("type", type_);
            }
            v
        }
        ToClient::TaskErred {
            key,
            exception,
            traceback,
        } => Value::map([
            ("op", Value::from("task-erred")),
            ("key", key.to_value()),
            ("exception", exception),
            ("traceback", traceback),
        ]),
        ToClient::LostData { key } => {
            Value::map([("op", Value::from("lost-data")), ("key", key.to_value())])
        }
        ToClient::CancelledKeys { keys, reason, msg } => Value::map([
            ("op", Value::from("cancelled-keys")),
            ("keys", keys_value(&keys)),
            ("reason", reason.map_or(Value::Nil, Value::Str)),
            ("msg", msg.map_or(Value::Nil, Value::Str)),
        ]),
        ToClient::TaskRetried { key } => {
            Value::map([("op", Value::from("task-retried")), ("key", key.to_value())])
        }
    }
}

// ---- graph helper records -> NewTask -------------------------------------------------------

/// One task record of the helper's `update_graph` reply (PROTOCOL.md §4.3).
pub fn new_task(rec: &Value) -> Result<NewTask, ServerError> {
    let key = key_field(rec, "key")?;
    // The P2P plugin acts when a shuffle's barrier is released, erred or forgotten; like
    // Dask's hook (`id_from_key`, shuffle/_core.py:436) it knows barriers by their key.
    let watch = matches!(&key, Key::Str(k) if k.starts_with("shuffle-barrier-"));
    let deps = keys_field(rec, "deps")?;
    // Its own buffer: a slice would keep the helper's whole reply chunk alive for as long
    // as the task lives (about 190 bytes per task besides the pickle).
    let run_spec = Bytes::copy_from_slice(&rask_comm::fields::bytes_field(rec, "run_spec")?);
    let order = rec.get("order").and_then(Value::as_i64).unwrap_or(0);
    let prefix =
        opt_str(rec, "prefix")?.unwrap_or_else(|| key.first_str().unwrap_or("task").into());
    let annotations = match (rec.get("annotations"), rec.get("annotations_pickled")) {
        (Some(a @ Value::Map(_)), _) => a.clone(),
        (_, Some(Value::Bin(p))) => Value::Opaque(Opaque::pickled(p.clone())),
        _ => Value::Map(Vec::new()),
    };
    let r = rec.get("restrictions").cloned().unwrap_or(Value::Nil);
    let workers = opt_str_list(&r, "workers")?.unwrap_or_default();
    let resources = match r.get("resources") {
        Some(Value::Map(m)) => m
            .iter()
            .filter_map(|(k, v)| Some((Arc::<str>::from(k.as_str()?), v.as_f64()?)))
            .collect(),
        _ => Vec::new(),
    };
    Ok(NewTask {
        key,
        deps,
        run_spec,
        order,
        prefix,
        annotations,
        workers,
        allow_other_workers: r.get("allow_other_workers").is_some_and(Value::truthy),
        resources,
        retries: r.get("retries").and_then(Value::as_i64).unwrap_or(0).max(0) as u32,
        user_priority: r.get("priority").and_then(Value::as_f64).unwrap_or(0.0) as i64,
        watch,
    })
}

/// The message's `stimulus_id`, or `<default>-<now>` as Dask names its own stimuli.
pub fn stimulus_id(msg: &Value, default: &str) -> Arc<str> {
    msg.get("stimulus_id").and_then(Value::as_str).map_or_else(
        || format!("{default}-{}", crate::runtime::now()).into(),
        Arc::from,
    )
}
