//! The replies of the scheduler's own RPCs, as the stock scheduler shapes them.

use super::{addrs_value, keys_value, now, who_has_value};
use crate::error::RequestError;
use crate::messages::Registration;
use rask_protocol::{Key, Value};
use std::sync::Arc;

/// What Dask's `error_message` makes of a failed request (`core.py:1596-1640`): a pickled
/// exception of [`RequestError::python_type`], so the client raises that type.
pub fn error(e: &RequestError) -> Value {
    rask_comm::reply::raised(e.python_type(), &e.to_string())
}

/// `{"dashboard": port}` or `{}`.
pub fn services(dashboard_port: Option<u16>) -> Value {
    match dashboard_port {
        Some(p) => Value::map([("dashboard", Value::from(u64::from(p)))]),
        None => Value::Map(Vec::new()),
    }
}

/// One worker as `identity().workers` lists it (`WorkerState.identity`).
pub fn worker_identity(
    reg: &Registration,
    host: &str,
    last_seen: f64,
    metrics: &Value,
    status: &str,
) -> Value {
    Value::map([
        ("type", Value::from("Worker")),
        ("id", reg.name_value.clone()),
        ("host", Value::from(host)),
        ("resources", reg.resources_value.clone()),
        ("local_directory", reg.local_directory.clone()),
        ("name", reg.name_value.clone()),
        ("nthreads", Value::from(u64::from(reg.nthreads))),
        ("memory_limit", Value::from(reg.memory_limit)),
        ("last_seen", Value::Float(last_seen)),
        ("services", reg.services.clone()),
        ("metrics", metrics.clone()),
        ("status", Value::from(status)),
        ("nanny", reg.nanny.clone()),
    ])
}

/// The scheduler's side of `identity` (scheduler.py:4280-4298).
pub struct SchedulerIdentity<'a> {
    /// `Scheduler-<uuid>`
    pub id: &'a str,
    /// its address
    pub address: &'a str,
    /// `{"dashboard": port}`
    pub services: Value,
    /// start time, epoch seconds
    pub started: f64,
    /// workers connected
    pub n_workers: usize,
    /// their threads
    pub total_threads: u64,
    /// their memory limits
    pub total_memory: u64,
    /// the workers listed, by address
    pub workers: Vec<(Arc<str>, Value)>,
}

/// `identity`'s reply.
pub fn identity(s: SchedulerIdentity<'_>) -> Value {
    Value::map([
        ("type", Value::from("Scheduler")),
        ("id", Value::from(s.id)),
        ("address", Value::from(s.address)),
        ("services", s.services),
        ("started", Value::Float(s.started)),
        ("n_workers", Value::from(s.n_workers)),
        ("total_threads", Value::from(s.total_threads)),
        ("total_memory", Value::from(s.total_memory)),
        ("workers", by_address(s.workers)),
    ])
}

/// `register_nanny`'s reply (scheduler.py:4806): accepted, with the nanny plugins to run
/// (`{name: pickled NannyPlugin}`).
pub fn nanny_registered(nanny_plugins: Value) -> Value {
    Value::map([
        ("status", Value::from("OK")),
        ("nanny-plugins", nanny_plugins),
    ])
}

/// `heartbeat_worker`'s reply to a known worker.
pub fn heartbeat(interval: f64) -> Value {
    Value::map([
        ("status", Value::from("OK")),
        ("time", Value::Float(now())),
        ("heartbeat-interval", Value::Float(interval)),
    ])
}

/// `heartbeat_worker`'s reply to a worker the scheduler does not know: it re-registers.
pub fn heartbeat_missing() -> Value {
    Value::map([("status", Value::from("missing"))])
}

/// `{address: value}`, in the given order.
pub fn by_address(entries: Vec<(Arc<str>, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(a, v)| (Value::Str(a), v))
            .collect(),
    )
}

/// A list of keys.
pub fn keys(keys: &[Key]) -> Value {
    keys_value(keys)
}

/// A list of worker addresses.
pub fn addresses(addrs: &[Arc<str>]) -> Value {
    addrs_value(addrs)
}

/// `{key: [address]}`
pub fn who_has(entries: &[(Key, Vec<Arc<str>>)]) -> Value {
    who_has_value(entries)
}

/// `{key: value}`, in the given order.
pub fn by_key(entries: Vec<(Key, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_value(), v))
            .collect(),
    )
}

/// `gather`'s reply when every key was fetched.
pub fn gathered(data: Vec<(Value, Value)>) -> Value {
    Value::map([("status", Value::from("OK")), ("data", Value::Map(data))])
}

/// `gather`'s reply when some keys could not be found (the client retries them).
pub fn gather_missing(missing: &[Key]) -> Value {
    Value::map([
        ("status", Value::from("error")),
        ("keys", keys_value(missing)),
    ])
}

/// `run_function`'s reply from the helper's: the pickled result passed through, or the
/// helper's `error_message` as it is.
pub fn run_function(mut reply: Value) -> Result<Value, RequestError> {
    reply.take("id");
    if reply.get("status").and_then(Value::as_str) != Some("OK") {
        return Ok(reply);
    }
    if let (Some(Value::Map(header)), Some(Value::Array(frames))) =
        (reply.get("header"), reply.get("frames"))
    {
        // serialized with the client's serializers: a `__Serialized__` payload, which the
        // client deserializes only with what it accepts (an "error" one raises TypeError)
        let frames: Option<Vec<bytes::Bytes>> = frames
            .iter()
            .map(|f| match f {
                Value::Bin(b) => Some(b.clone()),
                _ => None,
            })
            .collect();
        if let Some(frames) = frames {
            let header = header
                .iter()
                .filter(|(k, _)| k.as_str() != Some("num-sub-frames"))
                .cloned()
                .collect();
            return Ok(Value::map([
                ("status", Value::from("OK")),
                (
                    "result",
                    Value::Opaque(rask_protocol::Opaque {
                        kind: rask_protocol::OpaqueKind::Serialized,
                        header,
                        frames,
                    }),
                ),
            ]));
        }
    }
    match reply.take("result") {
        Some(Value::Bin(pickle)) => Ok(Value::map([
            ("status", Value::from("OK")),
            (
                "result",
                Value::Opaque(rask_protocol::Opaque::pickled(pickle)),
            ),
        ])),
        _ => Err(crate::error::HelperError::Protocol(
            "run_function reply without a pickled result",
        )
        .into()),
    }
}

/// The `run-function` event the stock scheduler logs for every call (scheduler.py:8022).
pub fn run_function_event(function: bytes::Bytes) -> Value {
    Value::map([
        ("action", Value::from("run-function")),
        ("function", Value::Bin(function)),
    ])
}

/// The `worker-ttl-timed-out` event of `check_worker_ttl`.
pub fn worker_ttl_event(workers: &[Arc<str>], ttl: f64) -> Value {
    Value::map([
        ("action", Value::from("worker-ttl-timed-out")),
        ("workers", addrs_value(workers)),
        ("ttl", Value::Float(ttl)),
    ])
}

/// The `get_data` request of `gather`; with the client's `serializers`, as
/// `get_data_from_worker` sends them (worker.py:2720, core.py:976).
pub fn get_data(keys: &[Key], serializers: Option<&Value>) -> Value {
    let mut req = Value::map([
        ("op", Value::from("get_data")),
        ("keys", keys_value(keys)),
        ("who", Value::Nil),
        ("reply", Value::Bool(true)),
    ]);
    if let Some(s) = serializers {
        req.set("serializers", s.clone());
    }
    req
}

/// The `update_data` request of `scatter`.
pub fn update_data(data: Vec<(Value, Value)>) -> Value {
    Value::map([
        ("op", Value::from("update_data")),
        ("data", Value::Map(data)),
        ("reply", Value::Bool(true)),
    ])
}

/// The nanny `kill` request of a restart.
pub fn kill(reason: &Arc<str>, timeout: f64) -> Value {
    Value::map([
        ("op", Value::from("kill")),
        ("reason", Value::Str(reason.clone())),
        ("timeout", Value::Float(timeout)),
    ])
}
