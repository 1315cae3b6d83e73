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
