//! The cluster-manager family's messages (`distributed.deploy`'s calls on the scheduler,
//! and the data-placement RPCs) and the worker-status feed's wire shape.

use crate::error::{Invalid, RequestError};
use crate::messages::cluster::{Rebalance, Replicate, Rpc, WorkerStatusMsg, WorkersToClose};
use crate::messages::Rpc as AnyRpc;
use rask_comm::fields::{field, flag, keys_field, list_field, opt_str, str_field};
use rask_comm::FieldError;
use rask_protocol::{Key, Value};
use std::sync::Arc;

fn wrong(field: &str, expected: &'static str, got: &Value) -> RequestError {
    FieldError::Wrong {
        field: field.into(),
        expected,
        got: got.type_name(),
    }
    .into()
}

/// A `keys` path: a list (a tuple on the wire), or one key.
fn path(msg: &Value) -> Result<Vec<Value>, RequestError> {
    match field(msg, "keys")? {
        Value::Array(items) => Ok(items.clone()),
        one => Ok(vec![one.clone()]),
    }
}

/// Worker names or addresses as the stock scheduler compares them: `str(name)`, so an
/// int name (`SpecCluster` names its workers 0, 1, ...) matches too.
pub fn name_list(msg: &Value, name: &str) -> Result<Option<Vec<Arc<str>>>, RequestError> {
    let one = |v: &Value| -> Result<Arc<str>, RequestError> {
        match v {
            Value::Str(s) => Ok(s.clone()),
            Value::Int(_) | Value::UInt(_) => Ok(v.as_i64().unwrap_or(0).to_string().into()),
            other => Err(wrong(name, "a list of str", other)),
        }
    };
    match msg.get(name) {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::Array(items)) => items.iter().map(one).collect::<Result<_, _>>().map(Some),
        Some(v) => Ok(Some(vec![one(v)?])),
    }
}

fn opt_int(msg: &Value, name: &str) -> Result<Option<i64>, RequestError> {
    match msg.get(name) {
        None | Some(Value::Nil) => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| wrong(name, "an int", v)),
    }
}

fn opt_float(msg: &Value, name: &str) -> Result<Option<f64>, RequestError> {
    match msg.get(name) {
        None | Some(Value::Nil) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| wrong(name, "a number", v)),
    }
}

/// `set_metadata {keys, value}`
pub fn set_metadata(msg: &Value) -> Result<AnyRpc, RequestError> {
    Ok(AnyRpc::Cluster(Rpc::SetMetadata {
        keys: path(msg)?,
        value: msg.get("value").cloned().unwrap_or(Value::Nil),
    }))
}

/// `get_metadata {keys, default}`: a missing `default`, or `dask.typing.no_default` (which
/// msgpack carries as `{"__Enum__": True, "name": "no_default", ...}`), means "raise
/// `KeyError`".
pub fn get_metadata(msg: &Value) -> Result<AnyRpc, RequestError> {
    let no_default = |d: &Value| {
        d.get("__Enum__").is_some_and(Value::truthy)
            && d.get("name").and_then(Value::as_str) == Some("no_default")
    };
    Ok(AnyRpc::Cluster(Rpc::GetMetadata {
        keys: path(msg)?,
        default: msg.get("default").filter(|d| !no_default(d)).cloned(),
    }))
}

/// `adaptive_target {target_duration}`
pub fn adaptive_target(msg: &Value) -> Result<AnyRpc, RequestError> {
    let target_duration = match msg.get("target_duration") {
        None | Some(Value::Nil) => None,
        Some(v) => Some(
            rask_comm::fields::parse_timedelta(v)
                .ok_or_else(|| Invalid::Timedelta(format!("{v:?}")))?,
        ),
    };
    Ok(AnyRpc::Cluster(Rpc::AdaptiveTarget { target_duration }))
}

/// `workers_to_close {memory_ratio, n, key, minimum, target, attribute}`. `key` is a
/// pickled Python function of a `WorkerState`: rask has no Python `WorkerState` to call it
/// on, so a request with one is refused with the reason.
pub fn workers_to_close(msg: &Value) -> Result<AnyRpc, RequestError> {
    if msg.get("key").is_some_and(|k| !k.is_nil()) {
        return Err(RequestError::NotSupported {
            op: "workers_to_close",
            reason: "key= (a Python function grouping WorkerState objects, e.g. \
                     Adaptive(worker_key=...)) cannot run inside rask's Rust scheduler; \
                     workers are considered one by one",
        });
    }
    Ok(AnyRpc::Cluster(Rpc::WorkersToClose(WorkersToClose {
        memory_ratio: opt_float(msg, "memory_ratio")?,
        n: opt_int(msg, "n")?,
        minimum: opt_int(msg, "minimum")?,
        target: opt_int(msg, "target")?,
        attribute: opt_str(msg, "attribute")?.unwrap_or_else(|| "address".into()),
    })))
}

/// `check_idle`
pub fn check_idle(_msg: &Value) -> Result<AnyRpc, RequestError> {
    Ok(AnyRpc::Cluster(Rpc::CheckIdle))
}

/// `terminate` (`Client.shutdown`)
pub fn terminate(_msg: &Value) -> Result<AnyRpc, RequestError> {
    Ok(AnyRpc::Cluster(Rpc::Terminate))
}

/// `set_resources {worker, resources}`
pub fn set_resources(msg: &Value) -> Result<AnyRpc, RequestError> {
    let resources = match msg.get("resources") {
        None | Some(Value::Nil) => Vec::new(),
        Some(Value::Map(entries)) => entries
            .iter()
            .map(|(k, v)| match (k.as_str(), v.as_f64()) {
                (Some(name), Some(amount)) => Ok((Arc::from(name), amount)),
                _ => Err(wrong("resources", "a dict of str to number", v)),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(wrong("resources", "a dict", other)),
    };
    Ok(AnyRpc::Cluster(Rpc::SetResources {
        worker: str_field(msg, "worker")?,
        resources,
    }))
}

/// `set_restrictions {worker: {key: [address] | address | None}}`
pub fn set_restrictions(msg: &Value) -> Result<AnyRpc, RequestError> {
    let entries = match field(msg, "worker")? {
        Value::Map(entries) => entries,
        other => return Err(wrong("worker", "a dict of key to addresses", other)),
    };
    let restrictions = entries
        .iter()
        .map(|(k, v)| {
            let key = Key::from_value(k).ok_or_else(|| wrong("worker", "a task key", k))?;
            let addrs = match v {
                Value::Nil => None,
                Value::Str(s) => Some(vec![s.clone()]),
                Value::Array(items) => Some(
                    items
                        .iter()
                        .map(|a| {
                            a.as_str()
                                .map(Arc::from)
                                .ok_or_else(|| wrong("worker", "worker addresses", a))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                other => return Err(wrong("worker", "worker addresses", other)),
            };
            // `set(restrictions) if restrictions else None`
            Ok((key, addrs.filter(|a| !a.is_empty())))
        })
        .collect::<Result<_, RequestError>>()?;
    Ok(AnyRpc::Cluster(Rpc::SetRestrictions { restrictions }))
}

/// `add_keys {worker, keys, stimulus_id}`
pub fn add_keys(msg: &Value) -> Result<AnyRpc, RequestError> {
    Ok(AnyRpc::Cluster(Rpc::AddKeys {
        worker: str_field(msg, "worker")?,
        keys: keys_field(msg, "keys")?,
        stimulus_id: super::stimulus_id(msg, "add-keys"),
    }))
}

/// `replicate {keys, n, workers, branching_factor, delete}`
pub fn replicate(msg: &Value) -> Result<AnyRpc, RequestError> {
    let keys = list_field(msg, "keys")?
        .iter()
        .map(|k| Key::from_value(k).ok_or_else(|| wrong("keys", "a list of task keys", k)))
        .collect::<Result<_, _>>()?;
    let branching_factor = opt_int(msg, "branching_factor")?.unwrap_or(2);
    if branching_factor <= 0 {
        // `assert branching_factor > 0`
        return Err(Invalid::OutOfRange {
            field: "branching_factor",
            range: "1..".into(),
            got: branching_factor,
        }
        .into());
    }
    Ok(AnyRpc::Cluster(Rpc::Replicate(Box::new(Replicate {
        keys,
        n: opt_int(msg, "n")?,
        workers: name_list(msg, "workers")?,
        branching_factor,
        delete: flag(msg, "delete", true),
        stimulus_id: super::stimulus_id(msg, "replicate"),
        started: false,
    }))))
}

/// `rebalance {keys, workers}`
pub fn rebalance(msg: &Value) -> Result<AnyRpc, RequestError> {
    let keys = match msg.get("keys") {
        None | Some(Value::Nil) => None,
        Some(v) => Some(rask_comm::fields::keys_of(v, "keys")?),
    };
    Ok(AnyRpc::Cluster(Rpc::Rebalance(Box::new(Rebalance {
        keys,
        workers: rask_comm::fields::opt_str_list(msg, "workers")?,
        stimulus_id: super::stimulus_id(msg, "rebalance"),
        moving: None,
    }))))
}

/// `{"status": "OK"}`
pub fn status_ok() -> Value {
    Value::map([("status", Value::from("OK"))])
}

/// `rebalance`'s event on the `all` topic (scheduler.py:7172).
pub fn rebalance_event(moved_keys: usize) -> Value {
    Value::map([
        ("action", Value::from("rebalance")),
        ("moved_keys", Value::from(moved_keys)),
    ])
}

/// A worker-status feed message on the wire: `[op, msg]`, as `Cluster._watch_worker_status`
/// unpacks it.
pub fn to_status(m: WorkerStatusMsg) -> Value {
    match m {
        WorkerStatusMsg::Add { address, identity } => Value::Array(vec![
            Value::from("add"),
            Value::map([("workers", Value::Map(vec![(Value::Str(address), identity)]))]),
        ]),
        WorkerStatusMsg::Remove { address } => {
            Value::Array(vec![Value::from("remove"), Value::Str(address)])
        }
    }
}

/// `replicate`'s answer when some keys have no copy anywhere.
pub fn partial_fail(missing: &[Key]) -> Value {
    Value::map([
        ("status", Value::from("partial-fail")),
        (
            "keys",
            Value::Array(missing.iter().map(Key::to_value).collect()),
        ),
    ])
}

/// The `replicate` event on the `all` topic (scheduler.py:7294).
pub fn replicate_event(workers: &[Arc<str>], key_count: usize, branching_factor: i64) -> Value {
    Value::map([
        ("action", Value::from("replicate")),
        (
            "workers",
            Value::Array(workers.iter().map(|w| Value::Str(w.clone())).collect()),
        ),
        ("key-count", Value::from(key_count)),
        ("branching-factor", Value::from(branching_factor)),
    ])
}
