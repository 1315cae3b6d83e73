//! The P2P shuffle's messages (`shuffle/_scheduler_plugin.py`) and its replies.

use crate::error::RequestError;
use crate::messages::shuffle::Rpc;
use crate::messages::Rpc as AnyRpc;
use bytes::Bytes;
use rask_comm::fields::{field, int_field, key_field, str_field};
use rask_protocol::{Opaque, Value};

/// `shuffle_get_or_create {shuffle_id, key, worker}`
pub fn get_or_create(msg: &Value) -> Result<AnyRpc, RequestError> {
    Ok(AnyRpc::Shuffle(Rpc::GetOrCreate {
        id: str_field(msg, "shuffle_id")?,
        key: key_field(msg, "key")?,
        worker: str_field(msg, "worker")?,
    }))
}

/// `shuffle_get {id, worker}`
pub fn get(msg: &Value) -> Result<AnyRpc, RequestError> {
    Ok(AnyRpc::Shuffle(Rpc::Get {
        id: str_field(msg, "id")?,
        worker: str_field(msg, "worker")?,
    }))
}

/// `shuffle_barrier {id, run_id, consistent}`
pub fn barrier(msg: &Value) -> Result<AnyRpc, RequestError> {
    Ok(AnyRpc::Shuffle(Rpc::Barrier {
        id: str_field(msg, "id")?,
        run_id: int_field(msg, "run_id")?,
        consistent: field(msg, "consistent")?.truthy(),
    }))
}

/// `shuffle_restrict_task {id, run_id, key, worker}`
pub fn restrict_task(msg: &Value) -> Result<AnyRpc, RequestError> {
    Ok(AnyRpc::Shuffle(Rpc::RestrictTask {
        id: str_field(msg, "id")?,
        run_id: int_field(msg, "run_id")?,
        key: key_field(msg, "key")?,
        worker: str_field(msg, "worker")?,
    }))
}

/// `error_message(P2PConsistencyError(...))`: what workers pass to `clean_exception`.
pub fn consistency_error(message: &str) -> Value {
    let exc = rask_protocol::pickle::exception(
        "distributed.shuffle._exceptions",
        "P2PConsistencyError",
        message,
    );
    let mut v =
        rask_comm::reply::error_message("error", exc, format!("P2PConsistencyError('{message}')"));
    // `shuffle_restrict_task`'s caller reads `message` (shuffle/_core.py:341)
    v.set("message", Value::from(message));
    v
}

/// A run's pickled `ShuffleRunSpec`.
pub fn run_spec(run_spec: Bytes) -> Value {
    Value::map([
        ("status", Value::from("OK")),
        ("run_spec", Value::Opaque(Opaque::pickled(run_spec))),
    ])
}

/// `shuffle_restrict_task` done.
pub fn ok() -> Value {
    Value::map([("status", Value::from("OK"))])
}

/// `shuffle_inputs_done {shuffle_id, run_id}`, sent to every participant.
pub fn inputs_done(shuffle_id: &str, run_id: i64) -> Value {
    Value::map([
        ("op", Value::from("shuffle_inputs_done")),
        ("shuffle_id", Value::from(shuffle_id)),
        ("run_id", Value::Int(run_id)),
        ("reply", Value::Bool(true)),
    ])
}

/// The request a graph helper builds a run from (`shuffle_create_run`): the barrier's
/// pickled spec, the workers in order, the partitions of shuffles sharing its outputs.
pub fn create_run(
    barrier_run_spec: Bytes,
    workers: Vec<std::sync::Arc<str>>,
    existing: Vec<(Value, Value)>,
    run_id: i64,
) -> Value {
    Value::map([
        ("op", Value::from("shuffle_create_run")),
        ("barrier_run_spec", Value::Bin(barrier_run_spec)),
        (
            "workers",
            Value::Array(workers.into_iter().map(Value::Str).collect()),
        ),
        ("existing", Value::Map(existing)),
        ("run_id", Value::Int(run_id)),
        ("span_id", Value::Nil),
    ])
}

/// A helper's error reply for `shuffle_create_run`, as the worker gets it.
pub fn helper_error(r: &Value) -> Value {
    let text = r
        .get("exception_text")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut v = Value::map([
        ("status", Value::from("error")),
        (
            "exception",
            r.get("exception").cloned().unwrap_or(Value::Nil),
        ),
        (
            "traceback",
            r.get("traceback").cloned().unwrap_or(Value::Nil),
        ),
        ("exception_text", Value::from(text.as_str())),
        (
            "traceback_text",
            r.get("traceback_text").cloned().unwrap_or(Value::from("")),
        ),
    ]);
    v.set("message", Value::from(text));
    v
}
