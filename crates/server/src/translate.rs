//! Wire messages ⇄ core stimuli and commands. The only module that knows both vocabularies.

use crate::error::ServerError;
use bytes::Bytes;
use rask_core::{ComputeTask, NewTask, ToClient, ToWorker};
use rask_protocol::{Key, Opaque, Value};
use std::sync::Arc;

// ---- reading fields ------------------------------------------------------------------------

/// A required field.
pub fn field<'a>(msg: &'a Value, name: &str) -> Result<&'a Value, ServerError> {
    msg.get(name)
        .ok_or_else(|| ServerError::BadMessage(format!("missing field {name:?}")))
}

fn wrong(name: &str, expected: &str, got: &Value) -> ServerError {
    ServerError::BadMessage(format!(
        "field {name:?} must be {expected}, not {}",
        got.type_name()
    ))
}

/// A required string field.
pub fn str_field(msg: &Value, name: &str) -> Result<Arc<str>, ServerError> {
    match field(msg, name)? {
        Value::Str(s) => Ok(s.clone()),
        other => Err(wrong(name, "a str", other)),
    }
}

/// An optional string field (missing or None -> None).
pub fn opt_str(msg: &Value, name: &str) -> Result<Option<Arc<str>>, ServerError> {
    match msg.get(name) {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong(name, "a str", other)),
    }
}

/// A required integer field.
pub fn int_field(msg: &Value, name: &str) -> Result<i64, ServerError> {
    let v = field(msg, name)?;
    v.as_i64().ok_or_else(|| wrong(name, "an int", v))
}

/// A required key field.
pub fn key_field(msg: &Value, name: &str) -> Result<Key, ServerError> {
    let v = field(msg, name)?;
    Key::from_value(v).ok_or_else(|| wrong(name, "a task key", v))
}

/// A list of keys (None or missing -> empty).
pub fn keys_field(msg: &Value, name: &str) -> Result<Vec<Key>, ServerError> {
    match msg.get(name) {
        None | Some(Value::Nil) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|k| Key::from_value(k).ok_or_else(|| wrong(name, "a list of task keys", k)))
            .collect(),
        Some(other) => Err(wrong(name, "a list of task keys", other)),
    }
}

/// A list of strings (None or missing -> None).
pub fn opt_str_list(msg: &Value, name: &str) -> Result<Option<Vec<Arc<str>>>, ServerError> {
    match msg.get(name) {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::Str(s)) => Ok(Some(vec![s.clone()])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::Str(s) => Ok(s.clone()),
                other => Err(wrong(name, "a list of str", other)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(wrong(name, "a list of str", other)),
    }
}

/// Dask's `parse_timedelta` for `fifo_timeout`: `"60s"`, `"100 ms"`, `"1 minute"` or a number
/// of seconds.
pub fn parse_timedelta(v: &Value) -> Option<f64> {
    if let Some(f) = v.as_f64() {
        return Some(f);
    }
    let s = v.as_str()?.trim().to_ascii_lowercase();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = if num.is_empty() {
        1.0
    } else {
        num.trim().parse().ok()?
    };
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "ms" | "millisecond" | "milliseconds" => 1e-3,
        "us" | "microsecond" | "microseconds" => 1e-6,
        "ns" | "nanosecond" | "nanoseconds" => 1e-9,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86400.0,
        _ => return None,
    };
    Some(n * scale)
}

/// A scheduler-made exception, pickled (`builtins.<name>(message)`).
pub use rask_protocol::pickle::builtin_exception as pickled_exception;

/// The reply Dask's `error_message` builds (`core.py:1596-1640`) around a pickled exception:
/// `status` is `"uncaught-error"` for a handler that raised (the caller's `send_recv` raises
/// it) or `"error"` for handlers that return errors for the caller to inspect.
pub fn error_message(status: &str, exception: Bytes, exception_text: String) -> Value {
    Value::map([
        ("status", Value::from(status)),
        ("exception", Value::Bin(exception)),
        ("traceback", Value::Nil),
        ("exception_text", Value::from(exception_text)),
        ("traceback_text", Value::from("")),
    ])
}

/// What a Python handler raising `builtins.<kind>(message)` replies: the client re-raises
/// that exception type.
pub fn raised(kind: &str, message: &str) -> Value {
    error_message(
        "uncaught-error",
        pickled_exception(kind, message),
        format!("{kind}('{message}')"),
    )
}

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
    let run_spec = match field(rec, "run_spec")? {
        // Its own buffer: a slice would keep the helper's whole reply chunk alive for as
        // long as the task lives (about 190 bytes per task besides the pickle).
        Value::Bin(b) => Bytes::copy_from_slice(b),
        other => return Err(wrong("run_spec", "bytes", other)),
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timedeltas() {
        assert_eq!(parse_timedelta(&Value::from("60s")), Some(60.0));
        assert_eq!(parse_timedelta(&Value::from("100 ms")), Some(0.1));
        assert_eq!(parse_timedelta(&Value::Int(2)), Some(2.0));
        assert_eq!(parse_timedelta(&Value::from("1 minute")), Some(60.0));
        assert_eq!(parse_timedelta(&Value::from("soon")), None);
    }
}
