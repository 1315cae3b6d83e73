//! The messages a stock `distributed` 2026.8.0 worker writes, field for field and in the same
//! order (worker.py:1093-1117 register, 1161-1180 heartbeat, worker_state_machine.py:420-560
//! stream messages), with the values a worker that computes nothing would report.

use bytes::Bytes;
use rask_protocol::{Opaque, OpaqueKind, Value};

/// `pickle.dumps(int, protocol=5)`: the `type` of every result (task-finished → the scheduler
/// forwards it to clients in `key-in-memory`).
pub const INT_TYPE_PICKLE: &[u8] =
    b"\x80\x05\x95\x14\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x03int\x94\x93\x94.";

/// `pickle.dumps(0, protocol=5)`: the placeholder value `get_data` returns for every key.
pub const ZERO_PICKLE: &[u8] = b"\x80\x05K\x00.";

/// `sizeof(0)` as a worker measures it (`sys.getsizeof(0)`).
pub const RESULT_NBYTES: i64 = 28;

/// The compute time every `task-finished` reports, in seconds. It must not be zero: the stock
/// scheduler averages it into the task prefix's duration, and work stealing asserts that a
/// zero duration belongs to a long-running task (`stealing.py:284-289`, "Plugin failed with
/// exception ... AssertionError" on every dependent task). 10 µs is below what a real worker
/// measures for a trivial function (40-80 µs in the traces), so the estimate stays "fast".
pub const REPORTED_COMPUTE_S: f64 = 1e-5;

/// What a fake worker says about itself at registration.
#[derive(Clone, Debug)]
pub struct Identity {
    /// `tcp://ip:port` of its listener
    pub address: String,
    /// unique within the scheduler (`aliases`)
    pub name: String,
    /// `Worker-<uuid4>`
    pub server_id: String,
    /// threads the scheduler may fill
    pub nthreads: u32,
    /// bytes, as `--memory-limit`
    pub memory_limit: u64,
    /// reported `pid`
    pub pid: u32,
    /// reported `local_directory` (nothing is written there)
    pub local_directory: String,
}

fn s(v: &str) -> Value {
    Value::from(v)
}

fn empty_map() -> Value {
    Value::Map(Vec::new())
}

/// A stimulus id as the worker builds them: `f"{prefix}-{time()}"`.
pub fn stimulus_id(prefix: &str, now: f64) -> Value {
    Value::from(format!("{prefix}-{now}"))
}

/// `get_versions()` of the stock worker this imitates, used only when the scheduler does not
/// answer the `versions` RPC (normally its own answer is echoed, so no version mismatch
/// warning reaches clients).
pub fn default_versions() -> Value {
    let python = "3.11.7.final.0";
    Value::map([
        (
            "host",
            Value::map([
                ("python", s(python)),
                ("python-bits", Value::Int(64)),
                ("OS", s(std::env::consts::OS)),
                ("OS-release", s("")),
                ("machine", s(std::env::consts::ARCH)),
                ("processor", s("")),
                ("byteorder", s("little")),
                ("LC_ALL", s("None")),
                ("LANG", s("C.UTF-8")),
            ]),
        ),
        (
            "packages",
            Value::map([
                ("python", s(python)),
                ("dask", s("2026.8.0")),
                ("distributed", s("2026.8.0")),
                ("msgpack", s("1.2.4")),
                ("cloudpickle", s("3.1.3")),
                ("tornado", s("6.6.1")),
                ("toolz", s("1.2.0")),
                ("numpy", Value::Nil),
                ("pandas", Value::Nil),
                ("lz4", Value::Nil),
            ]),
        ),
    ])
}

/// `Worker.get_metrics()` of an idle worker. The stock scheduler reads `bandwidth`,
/// `digests_total_since_heartbeat`, `memory` and `spilled_bytes.memory`
/// (scheduler.py:4579-4631), so all of them must be present.
pub fn metrics(now: f64) -> Value {
    let zero = || Value::Int(0);
    Value::map([
        ("task_counts", empty_map()),
        (
            "bandwidth",
            Value::map([
                ("total", Value::Int(100_000_000)),
                ("workers", empty_map()),
                ("types", empty_map()),
            ]),
        ),
        ("digests_total_since_heartbeat", empty_map()),
        ("managed_bytes", zero()),
        (
            "spilled_bytes",
            Value::map([("memory", zero()), ("disk", zero())]),
        ),
        (
            "transfer",
            Value::map([
                ("incoming_bytes", zero()),
                ("incoming_count", zero()),
                ("incoming_count_total", zero()),
                ("outgoing_bytes", zero()),
                ("outgoing_count", zero()),
                ("outgoing_count_total", zero()),
            ]),
        ),
        ("event_loop_interval", Value::Float(0.02)),
        ("cpu", Value::Float(0.0)),
        ("memory", Value::Int(64 << 20)),
        ("time", Value::Float(now)),
        (
            "host_net_io",
            Value::map([
                ("read_bps", Value::Float(0.0)),
                ("write_bps", Value::Float(0.0)),
            ]),
        ),
        (
            "host_disk_io",
            Value::map([
                ("read_bps", Value::Float(0.0)),
                ("write_bps", Value::Float(0.0)),
            ]),
        ),
        ("num_fds", Value::Int(3)),
    ])
}

/// `register-worker` (worker.py:1093-1117): sent with `reply: False` on the connection that
/// then becomes the worker's stream. `status` is "init": the worker announces "running" with
/// a `worker-status-change` right after the reply, as the stock one does.
pub fn register_worker(id: &Identity, versions: &Value, now: f64) -> Value {
    Value::map([
        ("op", s("register-worker")),
        ("reply", Value::Bool(false)),
        ("address", s(&id.address)),
        ("status", s("init")),
        ("nthreads", Value::from(u64::from(id.nthreads))),
        ("name", s(&id.name)),
        ("now", Value::Float(now)),
        ("resources", empty_map()),
        ("memory_limit", Value::from(id.memory_limit)),
        ("local_directory", s(&id.local_directory)),
        ("services", empty_map()),
        ("nanny", Value::Nil),
        ("pid", Value::from(u64::from(id.pid))),
        ("versions", versions.clone()),
        ("metrics", metrics(now)),
        ("extra", empty_map()),
        ("stimulus_id", stimulus_id("worker-connect", now)),
        ("server_id", s(&id.server_id)),
    ])
}

/// `heartbeat_worker` RPC (worker.py:1161-1180; `retry_operation` adds `reply: True`).
pub fn heartbeat(address: &str, now: f64) -> Value {
    Value::map([
        ("op", s("heartbeat_worker")),
        ("address", s(address)),
        ("now", Value::Float(now)),
        ("metrics", metrics(now)),
        ("executing", empty_map()),
        (
            "extensions",
            Value::map([("spans", empty_map()), ("shuffle", empty_map())]),
        ),
        ("reply", Value::Bool(true)),
    ])
}

/// `worker-status-change` (worker.py:929-936).
pub fn worker_status_change(status: &str, stimulus: Value) -> Value {
    Value::map([
        ("op", s("worker-status-change")),
        ("status", s(status)),
        ("stimulus_id", stimulus),
    ])
}

/// `task-finished` for a result of type `int` (TaskFinishedMsg.to_dict, in the order a stock
/// worker writes its fields), computed in [`REPORTED_COMPUTE_S`] ending `now`.
pub fn task_finished(key: &Value, run_id: &Value, thread: i64, now: f64) -> Value {
    Value::map([
        ("key", key.clone()),
        ("run_id", run_id.clone()),
        ("nbytes", Value::Int(RESULT_NBYTES)),
        ("type", Value::Bin(Bytes::from_static(INT_TYPE_PICKLE))),
        ("typename", s("int")),
        ("metadata", empty_map()),
        ("thread", Value::Int(thread)),
        (
            "startstops",
            Value::Array(vec![Value::map([
                ("action", s("compute")),
                ("start", Value::Float(now - REPORTED_COMPUTE_S)),
                ("stop", Value::Float(now)),
            ])]),
        ),
        ("op", s("task-finished")),
        ("stimulus_id", stimulus_id("task-finished", now)),
        ("status", s("OK")),
    ])
}

/// `add-keys` for one key (a stock worker sends one per key it fetched, `keys=[ts.key]`).
pub fn add_keys(key: &Value, stimulus: Value) -> Value {
    Value::map([
        ("keys", Value::Array(vec![key.clone()])),
        ("op", s("add-keys")),
        ("stimulus_id", stimulus),
    ])
}

/// `release-worker-data`: a key in memory was released (memory → released transition).
pub fn release_worker_data(key: &Value, stimulus: Value) -> Value {
    Value::map([
        ("key", key.clone()),
        ("op", s("release-worker-data")),
        ("stimulus_id", stimulus),
    ])
}

/// `steal-response` with the worker's state of the key (`None` if unknown).
pub fn steal_response(key: &Value, state: Option<&str>, stimulus: Value) -> Value {
    Value::map([
        ("key", key.clone()),
        ("state", state.map_or(Value::Nil, s)),
        ("op", s("steal-response")),
        ("stimulus_id", stimulus),
    ])
}

/// `log-event` a closing worker sends first (worker.py:1446).
pub fn closing_event(address: &str, reason: &str) -> Value {
    Value::map([
        ("op", s("log-event")),
        ("topic", s(address)),
        (
            "msg",
            Value::map([("action", s("closing-worker")), ("reason", s(reason))]),
        ),
    ])
}

/// `{"op": "<name>"}`: `keep-alive`, `close-stream`.
pub fn bare(op: &str) -> Value {
    Value::map([("op", s(op))])
}

/// A `Serialize(0)` as a worker's `get_data` writes it: the sub-header of `serialize_and_split`
/// with serializer "pickle" (traces/delayed_sum.txt, worker1 conn#6).
pub fn placeholder_value() -> Value {
    Value::Opaque(Opaque {
        kind: OpaqueKind::Serialized,
        header: vec![
            (s("serializer"), s("pickle")),
            (s("writeable"), Value::Array(Vec::new())),
            (s("split-num-sub-frames"), Value::Array(vec![Value::Int(1)])),
            (s("split-offsets"), Value::Array(vec![Value::Int(0)])),
            (s("compression"), Value::Array(vec![Value::Nil])),
        ],
        frames: vec![Bytes::from_static(ZERO_PICKLE)],
    })
}

/// `get_data` reply: `{"status": "OK", "data": {key: Serialize(0)}}` for every requested key.
pub fn get_data_reply(keys: &[Value]) -> Value {
    Value::map([
        ("status", s("OK")),
        (
            "data",
            Value::Map(
                keys.iter()
                    .map(|k| (k.clone(), placeholder_value()))
                    .collect(),
            ),
        ),
    ])
}

/// The `uncaught-error` reply of an RPC handler that raised; `clean_exception` accepts the
/// exception as text (core.py:1643-1674).
pub fn error_reply(text: &str) -> Value {
    Value::map([
        ("status", s("uncaught-error")),
        ("exception", s(text)),
        ("traceback", Value::Nil),
        ("exception_text", s(text)),
        ("traceback_text", s("")),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rask_protocol::{decode_message, encode_message};

    fn keys(v: &Value) -> Vec<&str> {
        v.as_map()
            .unwrap_or_default()
            .iter()
            .filter_map(|(k, _)| k.as_str())
            .collect()
    }

    #[test]
    fn task_finished_has_the_stock_fields() {
        let m = task_finished(&Value::from("inc-1"), &Value::Int(7), 42, 100.5);
        assert_eq!(
            keys(&m),
            [
                "key",
                "run_id",
                "nbytes",
                "type",
                "typename",
                "metadata",
                "thread",
                "startstops",
                "op",
                "stimulus_id",
                "status"
            ]
        );
        assert_eq!(m.get("run_id"), Some(&Value::Int(7)));
        assert_eq!(m.get("nbytes"), Some(&Value::Int(28)));
        assert_eq!(
            m.get("type").and_then(Value::as_bin).map(|b| b.len()),
            Some(31)
        );
        assert_eq!(
            m.get("stimulus_id").and_then(Value::as_str),
            Some("task-finished-100.5")
        );
        let span = &m
            .get("startstops")
            .and_then(Value::as_array)
            .expect("startstops")[0];
        let (start, stop) = (
            span.get("start").and_then(Value::as_f64).expect("start"),
            span.get("stop").and_then(Value::as_f64).expect("stop"),
        );
        assert!(
            stop > start,
            "a zero duration breaks the stock scheduler's stealing"
        );
    }

    #[test]
    fn register_worker_has_every_add_worker_parameter() {
        let id = Identity {
            address: "tcp://127.0.0.1:1234".into(),
            name: "zero-1-0".into(),
            server_id: "Worker-x".into(),
            nthreads: 2,
            memory_limit: 1 << 30,
            pid: 9,
            local_directory: "/tmp".into(),
        };
        let m = register_worker(&id, &default_versions(), 1.0);
        // Scheduler.add_worker's keyword-only parameters without defaults
        for k in [
            "address",
            "status",
            "server_id",
            "nthreads",
            "name",
            "now",
            "resources",
            "memory_limit",
            "metrics",
            "services",
            "local_directory",
            "versions",
            "nanny",
            "extra",
            "stimulus_id",
        ] {
            assert!(m.get(k).is_some(), "{k} missing");
        }
        let metrics = m.get("metrics").expect("metrics");
        for k in [
            "bandwidth",
            "digests_total_since_heartbeat",
            "memory",
            "spilled_bytes",
        ] {
            assert!(metrics.get(k).is_some(), "metrics.{k} missing");
        }
    }

    #[test]
    fn get_data_reply_round_trips_as_serialized_pickle() {
        let key = Value::Array(vec![Value::from("x"), Value::Int(1)]);
        let frames = encode_message(&get_data_reply(&[key.clone(), Value::from("y")]));
        // frame 0, then per value: sub-header + one payload frame
        assert_eq!(frames.len(), 5);
        assert_eq!(&frames[2][..], ZERO_PICKLE);
        let back = decode_message(&frames).expect("decode");
        let data = back.get("data").and_then(Value::as_map).expect("data");
        assert_eq!(data[0].0, key);
        let Value::Opaque(o) = &data[1].1 else {
            panic!("not opaque: {:?}", data[1].1)
        };
        assert_eq!(o.kind, OpaqueKind::Serialized);
        assert_eq!(
            o.header_get("serializer").and_then(Value::as_str),
            Some("pickle")
        );
    }
}
