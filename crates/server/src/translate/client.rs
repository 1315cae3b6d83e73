//! Client streams, both ways: `register-client`, the messages a client sends on its stream
//! and the reports it gets (`Client._handle_report`).

use super::{keys_value, placement, stimulus_id};
use crate::error::RequestError;
use crate::messages::{ClientMsg, GraphRequest, ToClientMsg};
use rask_comm::fields::{field, key_field, keys_field, opt_str, parse_timedelta};
use rask_core::{Exception, ToClient};
use rask_protocol::{OpaqueKind, Value};

/// Records per chunk of a helper's `update_graph` reply.
pub const GRAPH_CHUNK: i64 = 20_000;

/// `close-client`
pub fn close_client(_msg: &Value) -> Result<ClientMsg, RequestError> {
    Ok(ClientMsg::CloseClient)
}

/// `heartbeat-client`
pub fn heartbeat_client(_msg: &Value) -> Result<ClientMsg, RequestError> {
    Ok(ClientMsg::HeartbeatClient)
}

/// `client-desires-keys {keys, client}`
pub fn desires_keys(msg: &Value) -> Result<ClientMsg, RequestError> {
    Ok(ClientMsg::DesiresKeys {
        keys: keys_field(msg, "keys")?,
        client: opt_str(msg, "client")?,
    })
}

/// `client-releases-keys {keys, client}`
pub fn releases_keys(msg: &Value) -> Result<ClientMsg, RequestError> {
    Ok(ClientMsg::ReleasesKeys {
        keys: keys_field(msg, "keys")?,
        client: opt_str(msg, "client")?,
        stimulus_id: stimulus_id(msg, "client-releases-keys"),
    })
}

/// `cancel-keys {keys, force, reason, msg}`
pub fn cancel_keys(msg: &Value) -> Result<ClientMsg, RequestError> {
    Ok(ClientMsg::CancelKeys {
        keys: keys_field(msg, "keys")?,
        force: msg.get("force").is_some_and(Value::truthy),
        reason: opt_str(msg, "reason")?,
        msg: opt_str(msg, "msg")?,
    })
}

/// `report-key {key}`
pub fn report_key(msg: &Value) -> Result<ClientMsg, RequestError> {
    Ok(ClientMsg::ReportKey {
        key: key_field(msg, "key")?,
    })
}

/// `update-data {who_has, nbytes}`
pub fn update_data(msg: &Value) -> Result<ClientMsg, RequestError> {
    Ok(ClientMsg::UpdateData(placement(msg)?))
}

/// `update-graph` (scheduler.py:4996): the pickled expression and its annotations become
/// the graph helper's request (PROTOCOL.md §4).
pub fn update_graph(msg: &Value) -> Result<ClientMsg, RequestError> {
    let keys = keys_field(msg, "keys")?;
    let expr = match field(msg, "expr_ser")? {
        Value::Opaque(o) if o.kind == OpaqueKind::Serialized => o.clone(),
        other => {
            return Err(rask_comm::FieldError::Wrong {
                field: "expr_ser".into(),
                expected: "a serialized expression",
                got: other.type_name(),
            }
            .into())
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
        .and_then(parse_timedelta)
        .unwrap_or(60.0);
    let helper_request = Value::map([
        ("op", Value::from("update_graph")),
        ("expr_header", Value::Map(expr.header.clone())),
        (
            "expr_frames",
            Value::Array(expr.frames.iter().cloned().map(Value::Bin).collect()),
        ),
        ("keys", keys_value(&keys)),
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
    // `actors=True` makes every requested key an actor (scheduler.py:4924)
    let actors = match msg.get("actors") {
        Some(Value::Bool(true)) => keys.clone(),
        None | Some(Value::Nil | Value::Bool(false)) => Vec::new(),
        Some(_) => keys_field(msg, "actors")?,
    };
    let size: usize = expr.frames.iter().map(|f| f.len()).sum();
    Ok(ClientMsg::UpdateGraph(Box::new(GraphRequest {
        keys,
        fifo_timeout,
        actors,
        helper_request,
        big: size >= crate::helper::BIG_GRAPH_BYTES,
    })))
}

/// Whether a message ends a stream (`handle_stream`, core.py:865: `close-stream` is not a
/// handler, it ends the loop).
pub fn is_close_stream(msg: &Value) -> bool {
    msg.get("op").and_then(Value::as_str) == Some("close-stream")
}

/// The first thing a client stream says; anything else and `Client._ensure_connected`
/// raises this `error`. A `warning` (the version mismatch, scheduler.py:5929) becomes the
/// client's `VersionMismatchWarning`.
pub fn stream_start(warning: &str, error: &str) -> Value {
    Value::map([
        ("op", Value::from("stream-start")),
        ("warning", Value::from(warning)),
        ("error", Value::from(error)),
    ])
}

/// A scheduler → client stream message.
pub fn to_client(msg: ToClientMsg) -> Value {
    match msg {
        ToClientMsg::Core(m) => core(m),
        ToClientMsg::StreamStart { warning } => stream_start(&warning, ""),
        ToClientMsg::AdjustHeartbeat { interval } => Value::map([
            ("op", Value::from("adjust-heartbeat-interval")),
            ("interval", Value::Float(interval)),
        ]),
        ToClientMsg::Restart => Value::map([("op", Value::from("restart"))]),
        ToClientMsg::StreamClosed => Value::map([("op", Value::from("stream-closed"))]),
        ToClientMsg::Event { topic, event } => Value::map([
            ("op", Value::from("event")),
            ("topic", Value::Str(topic)),
            ("event", event),
        ]),
    }
}

fn core(msg: ToClient) -> Value {
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
            ("exception", exception_value(&exception)),
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

/// A task's exception as the client gets it: the worker's pickle as it came, or the
/// scheduler's own `KilledWorker` (scheduler.py:5634-5663) or lost actor
/// (scheduler.py:2560), pickled as the stock scheduler does.
pub fn exception_value(e: &Exception) -> Value {
    match e {
        Exception::Pickled(v) => v.clone(),
        Exception::KilledWorker {
            key,
            last_worker,
            allowed_failures,
        } => Value::Bin(rask_protocol::pickle::killed_worker(
            key,
            last_worker,
            *allowed_failures,
        )),
        Exception::ActorLost => Value::Bin(rask_comm::reply::pickled_exception(
            "RuntimeError",
            "Worker holding Actor was lost",
        )),
    }
}
