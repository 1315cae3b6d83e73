//! The event log's messages (`EventExtension`, scheduler.py:8580-8610).

use crate::error::RequestError;
use crate::messages::events::{Rpc, StreamOp};
use crate::messages::{ClientMsg, Rpc as AnyRpc};
use rask_comm::fields::{field, opt_str, str_field};
use rask_comm::FieldError;
use rask_protocol::Value;
use std::sync::Arc;

/// `topic`: one name or a list of names (`str | Collection[str]`).
pub fn topics(msg: &Value) -> Result<Vec<Arc<str>>, RequestError> {
    let wrong = |got: &Value| FieldError::Wrong {
        field: "topic".into(),
        expected: "a str or a list of str",
        got: got.type_name(),
    };
    match field(msg, "topic")? {
        Value::Str(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|t| match t {
                Value::Str(s) => Ok(s.clone()),
                other => Err(wrong(other).into()),
            })
            .collect(),
        other => Err(wrong(other).into()),
    }
}

/// `log_event {topic, msg}`
pub fn log_event(msg: &Value) -> Result<AnyRpc, RequestError> {
    Ok(AnyRpc::Events(Rpc::LogEvent {
        topics: topics(msg)?,
        msg: msg.get("msg").cloned().unwrap_or(Value::Nil),
    }))
}

/// `events {topic}`
pub fn events(msg: &Value) -> Result<AnyRpc, RequestError> {
    Ok(AnyRpc::Events(Rpc::Events {
        topic: opt_str(msg, "topic")?,
    }))
}

/// `subscribe-topic {topic}`
pub fn subscribe(msg: &Value) -> Result<ClientMsg, RequestError> {
    Ok(ClientMsg::Events(StreamOp::Subscribe {
        topic: str_field(msg, "topic")?,
    }))
}

/// `unsubscribe-topic {topic}`
pub fn unsubscribe(msg: &Value) -> Result<ClientMsg, RequestError> {
    Ok(ClientMsg::Events(StreamOp::Unsubscribe {
        topic: str_field(msg, "topic")?,
    }))
}

/// An event as it is stored and sent: `(timestamp, msg)`.
pub fn event(timestamp: f64, msg: Value) -> Value {
    Value::Array(vec![Value::Float(timestamp), msg])
}

/// A Python `set` on the wire (`distributed.protocol.serialize.msgpack_encode_default`):
/// the client decodes `{"__Set__": True, "as-list": [...]}` into a set.
fn py_set(items: Vec<Value>) -> Value {
    Value::map([
        ("__Set__", Value::Bool(true)),
        ("as-list", Value::Array(items)),
    ])
}

/// The scheduler's own `{"action": "add-worker"}` (scheduler.py:4706-4707): without
/// `worker` on the worker's topic, with it on `all`.
pub fn add_worker(address: Option<&Arc<str>>) -> Value {
    let mut msg = Value::map([("action", Value::from("add-worker"))]);
    if let Some(a) = address {
        msg.set("worker", Value::Str(a.clone()));
    }
    msg
}

/// What a worker's departure cost (scheduler.py:5631-5693), for its `remove-worker` event.
pub struct WorkerRemoval {
    /// keys it was running
    pub processing: Vec<Value>,
    /// keys only it held that can be computed again
    pub lost_computed: Vec<Value>,
    /// keys only it held that were scattered (no run_spec): gone
    pub lost_scattered: Vec<Value>,
    /// why
    pub stimulus_id: Arc<str>,
    /// a deliberate close
    pub expected: bool,
}

/// `{"action": "remove-worker", ...}` (scheduler.py:5692-5702): without `worker` on the
/// worker's topic, with it on `all`.
pub fn remove_worker(r: &WorkerRemoval, address: Option<&Arc<str>>) -> Value {
    let mut msg = Value::map([
        ("action", Value::from("remove-worker")),
        ("processing-tasks", py_set(r.processing.clone())),
        ("lost-computed-tasks", py_set(r.lost_computed.clone())),
        ("lost-scattered-tasks", py_set(r.lost_scattered.clone())),
        ("stimulus_id", Value::Str(r.stimulus_id.clone())),
        ("expected", Value::Bool(r.expected)),
    ]);
    if let Some(a) = address {
        msg.set("worker", Value::Str(a.clone()));
    }
    msg
}

/// `{"action": "add-client" | "remove-client", "client": id}` (scheduler.py:5914, 5959).
pub fn client_event(action: &'static str, client: &Arc<str>) -> Value {
    Value::map([
        ("action", Value::from(action)),
        ("client", Value::Str(client.clone())),
    ])
}

/// `{"action": "scatter", "client": id, "count": n}` (scheduler.py:6374-6376).
pub fn scatter(client: Option<&Arc<str>>, count: usize) -> Value {
    Value::map([
        ("action", Value::from("scatter")),
        (
            "client",
            client.map_or(Value::Nil, |c| Value::Str(c.clone())),
        ),
        ("count", Value::from(count as u64)),
    ])
}

/// `{"action": "gather", "count": n}` (scheduler.py:6410).
pub fn gather(count: usize) -> Value {
    Value::map([
        ("action", Value::from("gather")),
        ("count", Value::from(count as u64)),
    ])
}
