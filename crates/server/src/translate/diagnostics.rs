//! The diagnostics' messages (task stream, prefix states, stories, task metadata, memory
//! sampler, `recreate_error_locally`), both ways.

use crate::error::RequestError;
use crate::messages::diagnostics::{Bound, Rpc};
use crate::messages::Rpc as AnyRpc;
use rask_comm::fields::{field, key_field, keys_of, opt_str, parse_timedelta, str_field};
use rask_comm::FieldError;
use rask_core::{TaskStatus, Transition};
use rask_protocol::{Key, Opaque, Value};
use std::sync::Arc;

/// `start`/`stop` of `get_task_stream`: a time, or a duration before now as a string.
fn bound(msg: &Value, name: &str) -> Result<Option<Bound>, RequestError> {
    match msg.get(name) {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::Str(s)) => parse_timedelta(&Value::Str(s.clone()))
            .map(|d| Some(Bound::Ago(d)))
            .ok_or_else(|| {
                RequestError::from(FieldError::Wrong {
                    field: name.into(),
                    expected: "a time or a duration such as '10s'",
                    got: "str",
                })
            }),
        Some(v) => v.as_f64().map(|t| Some(Bound::At(t))).ok_or_else(|| {
            FieldError::Wrong {
                field: name.into(),
                expected: "a time or a duration such as '10s'",
                got: v.type_name(),
            }
            .into()
        }),
    }
}

fn opt_int(msg: &Value, name: &str) -> Result<Option<i64>, RequestError> {
    match msg.get(name) {
        None | Some(Value::Nil) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            FieldError::Wrong {
                field: name.into(),
                expected: "an int",
                got: v.type_name(),
            }
            .into()
        }),
    }
}

/// `get_task_stream {start, stop, count, start_index}`
pub fn get_task_stream(msg: &Value) -> Result<AnyRpc, RequestError> {
    Ok(AnyRpc::Diagnostics(Rpc::GetTaskStream {
        start: bound(msg, "start")?,
        stop: bound(msg, "stop")?,
        count: opt_int(msg, "count")?,
        start_index: opt_int(msg, "start_index")?,
    }))
}

/// `get_task_stream_index`
pub fn get_task_stream_index(_msg: &Value) -> Result<AnyRpc, RequestError> {
    Ok(AnyRpc::Diagnostics(Rpc::GetTaskStreamIndex))
}

/// `get_task_prefix_states`
pub fn get_task_prefix_states(_msg: &Value) -> Result<AnyRpc, RequestError> {
    Ok(AnyRpc::Diagnostics(Rpc::GetTaskPrefixStates))
}

/// `get_story {keys_or_stimuli}`
pub fn get_story(msg: &Value) -> Result<AnyRpc, RequestError> {
    Ok(AnyRpc::Diagnostics(Rpc::GetStory {
        keys_or_stimuli: keys_of(field(msg, "keys_or_stimuli")?, "keys_or_stimuli")?,
    }))
}

/// `start_task_metadata {name}`
pub fn start_task_metadata(msg: &Value) -> Result<AnyRpc, RequestError> {
    Ok(AnyRpc::Diagnostics(Rpc::StartTaskMetadata {
        name: opt_str(msg, "name")?,
    }))
}

/// `stop_task_metadata {name}`
pub fn stop_task_metadata(msg: &Value) -> Result<AnyRpc, RequestError> {
    Ok(AnyRpc::Diagnostics(Rpc::StopTaskMetadata {
        name: opt_str(msg, "name")?,
    }))
}

/// `get_error_cause {keys}`
pub fn get_error_cause(msg: &Value) -> Result<AnyRpc, RequestError> {
    let keys = match msg.get("keys") {
        None | Some(Value::Nil) => Vec::new(),
        Some(v) => keys_of(v, "keys")?,
    };
    Ok(AnyRpc::Diagnostics(Rpc::GetErrorCause { keys }))
}

/// `get_runspec {key}`
pub fn get_runspec(msg: &Value) -> Result<AnyRpc, RequestError> {
    Ok(AnyRpc::Diagnostics(Rpc::GetRunspec {
        key: key_field(msg, "key")?,
    }))
}

/// `memory_sampler_start {client, measure, interval}`
pub fn memory_sampler_start(msg: &Value) -> Result<AnyRpc, RequestError> {
    let interval = field(msg, "interval")?;
    let interval = interval.as_f64().ok_or_else(|| FieldError::Wrong {
        field: "interval".into(),
        expected: "a number of seconds",
        got: interval.type_name(),
    })?;
    Ok(AnyRpc::Diagnostics(Rpc::MemorySamplerStart {
        client: str_field(msg, "client")?,
        measure: str_field(msg, "measure")?,
        interval,
    }))
}

/// `memory_sampler_stop {key}`
pub fn memory_sampler_stop(msg: &Value) -> Result<AnyRpc, RequestError> {
    Ok(AnyRpc::Diagnostics(Rpc::MemorySamplerStop {
        key: str_field(msg, "key")?,
    }))
}

// ---- replies ---------------------------------------------------------------------------------

/// A task-stream record as the plugin keeps it: the worker's message fields, with the
/// worker that sent it (`worker=` of `_transition`).
pub fn stream_record(mut record: Value, worker: Arc<str>) -> Value {
    record.set("worker", Value::Str(worker));
    record
}

/// `get_task_prefix_states`: `{prefix: {memory, erred, released, processing, waiting}}`.
pub fn prefix_states(prefixes: Vec<(Arc<str>, [i64; 5])>) -> Value {
    const NAMES: [&str; 5] = ["memory", "erred", "released", "processing", "waiting"];
    Value::Map(
        prefixes
            .into_iter()
            .map(|(p, counts)| {
                let states = NAMES
                    .iter()
                    .zip(counts)
                    .map(|(n, c)| (Value::from(*n), Value::Int(c)))
                    .collect();
                (Value::Str(p), Value::Map(states))
            })
            .collect(),
    )
}

/// One `Transition` of `get_story`: `(key, start, finish, recommendations, stimulus_id,
/// timestamp)`, a tuple once msgpack has carried it (scheduler.py:8232).
pub fn transition(t: &Transition) -> Value {
    Value::Array(vec![
        t.key.to_value(),
        Value::from(t.start.as_str()),
        Value::from(t.finish.as_str()),
        Value::Map(
            t.recommendations
                .iter()
                .map(|(k, s)| (k.to_value(), Value::from(s.as_str())))
                .collect(),
        ),
        Value::Str(t.stimulus_id.clone()),
        Value::Float(t.timestamp),
    ])
}

/// `stop_task_metadata`'s reply: `{"metadata": {key: metadata}, "state": {key: state}}`.
pub fn task_metadata(metadata: Vec<(Key, Value)>, state: Vec<(Key, TaskStatus)>) -> Value {
    Value::map([
        (
            "metadata",
            Value::Map(
                metadata
                    .into_iter()
                    .map(|(k, v)| (k.to_value(), v))
                    .collect(),
            ),
        ),
        (
            "state",
            Value::Map(
                state
                    .into_iter()
                    .map(|(k, s)| (k.to_value(), Value::from(s.as_str())))
                    .collect(),
            ),
        ),
    ])
}

/// `get_runspec`'s reply: the task's pickled `run_spec` as `ToPickle` sends it (None for
/// scattered data, which has none).
pub fn runspec(run_spec: Option<bytes::Bytes>) -> Value {
    run_spec.map_or(Value::Nil, |b| Value::Opaque(Opaque::pickled(b)))
}

/// `memory_sampler_stop`'s reply: `[(timestamp, bytes)]`.
pub fn memory_samples(samples: &[(f64, i64)]) -> Value {
    Value::Array(
        samples
            .iter()
            .map(|(t, n)| Value::Array(vec![Value::Float(*t), Value::Int(*n)]))
            .collect(),
    )
}
