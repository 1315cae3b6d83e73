//! The scheduler's own RPCs (`Scheduler.handlers`), parsed from their request dicts. The
//! extensions' RPCs are in [`super::events`], [`super::coordination`], [`super::shuffle`].

use super::{placement, stimulus_id};
use crate::error::RequestError;
use crate::messages::{Broadcast, OnError, Rpc, Scatter};
use rask_comm::fields::{
    bytes_field, flag, keys_field, map_field, opt_str, opt_str_list, parse_timedelta, str_field,
};
use rask_protocol::Value;
use std::time::Duration;

/// `identity {n_workers}` (scheduler.py:4280)
pub fn identity(msg: &Value) -> Result<Rpc, RequestError> {
    Ok(Rpc::Identity {
        n_workers: msg.get("n_workers").and_then(Value::as_i64).unwrap_or(-1),
    })
}

/// `heartbeat_worker {address, metrics}` (scheduler.py:4553)
pub fn heartbeat_worker(msg: &Value) -> Result<Rpc, RequestError> {
    Ok(Rpc::HeartbeatWorker {
        address: str_field(msg, "address")?,
        metrics: msg.get("metrics").cloned(),
    })
}

/// `gather {keys, serializers}` (scheduler.py:6380)
pub fn gather(msg: &Value) -> Result<Rpc, RequestError> {
    Ok(Rpc::Gather {
        keys: keys_field(msg, "keys")?,
        serializers: serializers_of(msg),
    })
}

/// `scatter {data, workers, client, broadcast, timeout}` (scheduler.py:6335)
pub fn scatter(msg: &Value) -> Result<Rpc, RequestError> {
    Ok(Rpc::Scatter(Box::new(Scatter {
        data: map_field(msg, "data")?.to_vec(),
        // names or addresses; `coerce_address` (scheduler.py:6353) finds a worker by its
        // name, whatever its type (`dask worker --name 0` registers the int 0)
        workers: super::cluster::name_list(msg, "workers")?,
        client: opt_str(msg, "client")?,
        broadcast: flag(msg, "broadcast", false),
        timeout: msg
            .get("timeout")
            .and_then(parse_timedelta)
            .unwrap_or(2.0)
            .max(0.0),
        deadline: None,
    })))
}

/// `update_data {who_has, nbytes, client}` (scheduler.py:7728)
pub fn update_data(msg: &Value) -> Result<Rpc, RequestError> {
    Ok(Rpc::UpdateData {
        placement: placement(msg)?,
        client: opt_str(msg, "client")?,
    })
}

/// `ncores {workers}` (scheduler.py:7887)
pub fn ncores(msg: &Value) -> Result<Rpc, RequestError> {
    Ok(Rpc::Ncores {
        workers: super::cluster::name_list(msg, "workers")?,
        running_only: false,
    })
}

/// `ncores_running {workers}` (scheduler.py:7894)
pub fn ncores_running(msg: &Value) -> Result<Rpc, RequestError> {
    Ok(Rpc::Ncores {
        workers: super::cluster::name_list(msg, "workers")?,
        running_only: true,
    })
}

/// `who_has {keys}` (scheduler.py:7855); no keys: every key.
pub fn who_has(msg: &Value) -> Result<Rpc, RequestError> {
    Ok(Rpc::WhoHas {
        keys: match msg.get("keys") {
            None | Some(Value::Nil) => None,
            Some(_) => Some(keys_field(msg, "keys")?),
        },
    })
}

/// `has_what {workers}` (scheduler.py:7871)
pub fn has_what(msg: &Value) -> Result<Rpc, RequestError> {
    Ok(Rpc::HasWhat {
        workers: super::cluster::name_list(msg, "workers")?,
    })
}

/// `processing {workers}` (scheduler.py:7844)
pub fn processing(msg: &Value) -> Result<Rpc, RequestError> {
    Ok(Rpc::Processing {
        workers: super::cluster::name_list(msg, "workers")?,
    })
}

/// `nbytes {keys, summary}` (scheduler.py:7988)
pub fn nbytes(msg: &Value) -> Result<Rpc, RequestError> {
    Ok(Rpc::Nbytes {
        keys: match msg.get("keys") {
            None | Some(Value::Nil) => None,
            Some(_) => Some(keys_field(msg, "keys")?),
        },
        summary: flag(msg, "summary", true),
    })
}

/// `get_task_status {keys}` (scheduler.py:8076)
pub fn get_task_status(msg: &Value) -> Result<Rpc, RequestError> {
    Ok(Rpc::GetTaskStatus {
        keys: keys_field(msg, "keys")?,
    })
}

/// `versions` (node.py:31)
pub fn versions(_msg: &Value) -> Result<Rpc, RequestError> {
    Ok(Rpc::Versions)
}

/// `unregister {address, close, expected}` (scheduler.py:5567)
pub fn unregister(msg: &Value) -> Result<Rpc, RequestError> {
    Ok(Rpc::Unregister {
        address: str_field(msg, "address")?,
        close: flag(msg, "close", true),
        expected: flag(msg, "expected", false),
    })
}

/// `retry {keys}` (scheduler.py:5519)
pub fn retry(msg: &Value) -> Result<Rpc, RequestError> {
    Ok(Rpc::Retry {
        keys: keys_field(msg, "keys")?,
    })
}

/// `broadcast {msg, workers, hosts, nanny, on_error}` (scheduler.py:6657)
pub fn broadcast(msg: &Value) -> Result<Rpc, RequestError> {
    let mut inner = Value::Map(map_field(msg, "msg")?.to_vec());
    inner.set("close", Value::Bool(false));
    inner.set("reply", Value::Bool(true));
    let on_error = match opt_str(msg, "on_error")?.as_deref() {
        Some("ignore") => OnError::Ignore,
        Some("return" | "return_pickle") => OnError::Return,
        _ => OnError::Raise,
    };
    // `send_recv(comm, serializers=serializers, **msg)` (scheduler.py:6699, core.py:976):
    // the workers serialize their answers only with what the client can read.
    if let Some(s) = serializers_of(msg) {
        inner.set("serializers", s);
    }
    Ok(Rpc::Broadcast(Box::new(Broadcast {
        msg: inner,
        workers: opt_str_list(msg, "workers")?,
        hosts: opt_str_list(msg, "hosts")?,
        nanny: flag(msg, "nanny", false),
        on_error,
    })))
}

/// `echo {data}` (core.py:676)
pub fn echo(msg: &Value) -> Result<Rpc, RequestError> {
    Ok(Rpc::Echo {
        data: msg.get("data").cloned().unwrap_or(Value::Nil),
    })
}

/// A request's `serializers` (what `send_recv` adds from the caller's deserializers,
/// core.py:976), if it has them.
fn serializers_of(msg: &Value) -> Option<Value> {
    msg.get("serializers")
        .filter(|v| !matches!(v, Value::Nil))
        .cloned()
}

fn timeout_of(msg: &Value, default: f64) -> Duration {
    let secs = msg
        .get("timeout")
        .and_then(Value::as_f64)
        .unwrap_or(default);
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::from_secs(30))
}

/// `restart {timeout, wait_for_workers}` (scheduler.py:6422)
pub fn restart(msg: &Value) -> Result<Rpc, RequestError> {
    Ok(Rpc::Restart {
        timeout: timeout_of(msg, 30.0),
        wait_for_workers: flag(msg, "wait_for_workers", true),
        stimulus_id: stimulus_id(msg, "restart"),
    })
}

/// `restart_workers {workers, timeout, on_error}` (scheduler.py:6471)
pub fn restart_workers(msg: &Value) -> Result<Rpc, RequestError> {
    Ok(Rpc::RestartWorkers {
        workers: opt_str_list(msg, "workers")?,
        timeout: timeout_of(msg, 30.0),
        raise: opt_str(msg, "on_error")?.is_none_or(|e| &*e == "raise"),
        stimulus_id: stimulus_id(msg, "restart-workers"),
    })
}

/// `retire_workers {workers | names | n, close_workers, remove}` (scheduler.py:7476)
pub fn retire_workers(msg: &Value) -> Result<Rpc, RequestError> {
    Ok(Rpc::RetireWorkers {
        // `str(name)` as the stock scheduler compares names; a cluster manager passes its
        // worker names (ints for `SpecCluster`) in both fields
        workers: super::cluster::name_list(msg, "workers")?,
        names: super::cluster::name_list(msg, "names")?,
        n: msg.get("n").and_then(Value::as_i64),
        close_workers: flag(msg, "close_workers", false),
        remove: flag(msg, "remove", true),
        stimulus_id: stimulus_id(msg, "retire-workers"),
    })
}

/// `run_function {function, args, kwargs, wait}` (scheduler.py:8005): the graph helper's
/// request.
pub fn run_function(msg: &Value) -> Result<Rpc, RequestError> {
    let function = bytes_field(msg, "function")?;
    let arg = |name: &str| match msg.get(name) {
        Some(Value::Bin(b)) => Value::Bin(b.clone()),
        _ => Value::Nil,
    };
    let request = Value::map([
        ("op", Value::from("run_function")),
        ("function", Value::Bin(function.clone())),
        ("args", arg("args")),
        ("kwargs", arg("kwargs")),
        ("wait", Value::Bool(flag(msg, "wait", true))),
        // the client's deserializers: the result is serialized with only these, as the
        // stock scheduler's reply is (core.py:816)
        ("serializers", serializers_of(msg).unwrap_or(Value::Nil)),
    ]);
    Ok(Rpc::RunFunction { request, function })
}

/// The fields of `msg` named, as they came (absent ones left out): a request the plugin
/// host reads as the stock handler's arguments.
fn pass_on(op: &str, msg: &Value, fields: &[&str]) -> Value {
    let mut request = Value::map([("op", Value::from(op))]);
    for f in fields {
        if let Some(v) = msg.get(f) {
            request.set(f, v.clone());
        }
    }
    request
}

/// `feed {function, setup, teardown, interval}` (scheduler.py:7788)
pub fn feed(msg: &Value) -> Value {
    pass_on(
        "feed_start",
        msg,
        &["function", "setup", "teardown", "interval"],
    )
}

/// `performance_report {start, last_count, code, mode}` (scheduler.py:8270)
pub fn performance_report(msg: &Value) -> Result<Rpc, RequestError> {
    let request = pass_on(
        "performance_report",
        msg,
        &["start", "last_count", "code", "mode"],
    );
    Ok(Rpc::PerformanceReport { request })
}

/// `register_scheduler_plugin {plugin, name, idempotent}` (scheduler.py:6242)
pub fn register_scheduler_plugin(msg: &Value) -> Result<Rpc, RequestError> {
    Ok(Rpc::RegisterSchedulerPlugin {
        plugin: rask_comm::fields::field(msg, "plugin")?.clone(),
        name: opt_str(msg, "name")?,
        idempotent: flag(msg, "idempotent", false),
    })
}

/// `unregister_scheduler_plugin {name}` (scheduler.py:6267)
pub fn unregister_scheduler_plugin(msg: &Value) -> Result<Rpc, RequestError> {
    Ok(Rpc::UnregisterSchedulerPlugin {
        name: match msg.get("name") {
            Some(Value::Str(n)) => Some(n.clone()),
            _ => None,
        },
    })
}
