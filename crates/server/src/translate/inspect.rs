//! The inspection RPCs (logs, profiles, call stacks, benchmarks, state dumps, proxy), parsed
//! from their request dicts, and the combination of the workers' answers
//! ([`merge_profiles`], [`mean_bandwidths`]).

use crate::error::RequestError;
use crate::messages::inspect::{Profile, Rpc};
use crate::messages::Rpc as Any;
use rask_comm::fields::{field, flag, keys_field, map_field, opt_str_list, str_field};
use rask_comm::FieldError;
use rask_protocol::Value;
use std::fmt::Write as _;
use std::sync::Arc;

fn inspect(r: Rpc) -> Result<Any, RequestError> {
    Ok(Any::Inspect(r))
}

/// `get_logs` / `logs {start=0, n=None, timestamps=False}` (node.py:104)
pub fn get_logs(msg: &Value) -> Result<Any, RequestError> {
    let start = match msg.get("start") {
        None | Some(Value::Nil) => 0.0,
        Some(v) => v.as_f64().ok_or_else(|| wrong("start", "a number", v))?,
    };
    let n = match msg.get("n") {
        None | Some(Value::Nil) => None,
        // Python's `if n and count >= n`: 0 means all, a negative n stops before the
        // first line
        Some(v) => match v.as_i64().ok_or_else(|| wrong("n", "an int", v))? {
            0 => None,
            n => Some(usize::try_from(n).unwrap_or(0)),
        },
    };
    inspect(Rpc::Logs {
        start,
        n,
        timestamps: flag(msg, "timestamps", false),
    })
}

/// `worker_logs {n=None, workers=None, nanny=False}` (scheduler.py:8572)
pub fn worker_logs(msg: &Value) -> Result<Any, RequestError> {
    inspect(Rpc::WorkerLogs {
        n: msg.get("n").cloned().unwrap_or(Value::Nil),
        workers: opt_str_list(msg, "workers")?,
        nanny: flag(msg, "nanny", false),
    })
}

/// `profile {workers, scheduler, server, merge_workers, start, stop, key}`
/// (scheduler.py:8331)
pub fn profile(msg: &Value) -> Result<Any, RequestError> {
    let passed = |name| msg.get(name).cloned().unwrap_or(Value::Nil);
    inspect(Rpc::Profile(Box::new(Profile {
        workers: opt_str_list(msg, "workers")?,
        scheduler: flag(msg, "scheduler", false),
        server: flag(msg, "server", false),
        merge_workers: flag(msg, "merge_workers", true),
        start: passed("start"),
        stop: passed("stop"),
        key: passed("key"),
    })))
}

/// `call_stack {keys=None}` (scheduler.py:7902)
pub fn call_stack(msg: &Value) -> Result<Any, RequestError> {
    inspect(Rpc::CallStack {
        keys: match msg.get("keys") {
            None | Some(Value::Nil) => None,
            Some(_) => Some(keys_field(msg, "keys")?),
        },
    })
}

/// `benchmark_hardware` (scheduler.py:7933)
pub fn benchmark_hardware(_msg: &Value) -> Result<Any, RequestError> {
    inspect(Rpc::BenchmarkHardware)
}

fn exclude(msg: &Value, required: bool) -> Result<Vec<Arc<str>>, RequestError> {
    if required {
        field(msg, "exclude")?;
    }
    Ok(opt_str_list(msg, "exclude")?.unwrap_or_default())
}

/// `get_cluster_state {exclude}` (scheduler.py:4327); `exclude` has no default there.
pub fn get_cluster_state(msg: &Value) -> Result<Any, RequestError> {
    inspect(Rpc::ClusterState {
        exclude: exclude(msg, true)?,
    })
}

/// `dump_cluster_state_to_url {url, exclude, format, **storage_options}`
/// (scheduler.py:4364): every other field is a storage option.
pub fn dump_cluster_state_to_url(msg: &Value) -> Result<Any, RequestError> {
    let storage_options = msg
        .as_map()
        .unwrap_or_default()
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                Some("op" | "reply" | "close" | "serializers" | "url" | "exclude" | "format")
            )
        })
        .cloned()
        .collect();
    inspect(Rpc::DumpToUrl {
        url: str_field(msg, "url")?,
        exclude: exclude(msg, true)?,
        format: field(msg, "format")?.clone(),
        storage_options,
    })
}

/// The graph helper's `write_cluster_dump` request, without its `state`.
pub fn write_cluster_dump(url: &str, format: Value, storage_options: Vec<(Value, Value)>) -> Value {
    Value::map([
        ("op", Value::from("write_cluster_dump")),
        ("url", Value::from(url)),
        ("format", format),
        ("storage_options", Value::Map(storage_options)),
    ])
}

/// `dump_state {exclude=()}` (scheduler.py:4300)
pub fn dump_state(msg: &Value) -> Result<Any, RequestError> {
    inspect(Rpc::DumpState {
        exclude: exclude(msg, false)?,
    })
}

/// `proxy {msg, worker}` (scheduler.py:6723): the request goes on as `broadcast` sends
/// it, `reply` set. Actors use it for every call and attribute read from a client.
pub fn proxy(msg: &Value) -> Result<Any, RequestError> {
    let mut inner = Value::Map(map_field(msg, "msg")?.to_vec());
    inner.set("reply", Value::Bool(true));
    inspect(Rpc::Proxy {
        msg: inner,
        worker: str_field(msg, "worker")?,
    })
}

fn wrong(name: &str, expected: &'static str, got: &Value) -> RequestError {
    RequestError::Field(FieldError::Wrong {
        field: name.into(),
        expected,
        got: got.type_name(),
    })
}

// ---- requests to workers -------------------------------------------------------------------

/// A request dict.
pub fn request(op: &str, fields: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    let mut m = Value::map([("op", Value::from(op)), ("reply", Value::Bool(true))]);
    for (k, v) in fields {
        m.set(k, v);
    }
    m
}

/// A worker's reply that is a raised exception (`{"status": "uncaught-error" | "error",
/// "exception": ...}`), which the stock scheduler's `send_recv` would have re-raised.
pub fn is_raised(v: &Value) -> bool {
    matches!(
        v.get("status").and_then(Value::as_str),
        Some("uncaught-error" | "error")
    ) && v.get("exception").is_some()
}

/// `repr()` of what a raised reply carries, for `get_cluster_state`'s "Convert any RPC
/// errors to strings" (scheduler.py:4353).
pub fn raised_repr(v: &Value) -> String {
    v.get("exception_text")
        .and_then(Value::as_str)
        .unwrap_or("Exception()")
        .to_string()
}

// ---- profile.merge ---------------------------------------------------------------------------

/// `profile.create()` (profile.py:246): an empty tree.
pub fn empty_profile() -> Value {
    Value::map([
        ("count", Value::Int(0)),
        ("children", Value::Map(Vec::new())),
        ("identifier", Value::from("root")),
        (
            "description",
            Value::map([
                ("filename", Value::from("")),
                ("name", Value::from("")),
                ("line_number", Value::Int(0)),
                ("line", Value::from("")),
            ]),
        ),
    ])
}

/// `profile.merge(*trees)` (profile.py:221): children merged by identifier, in first-seen
/// order, counts summed, description and identifier of the first tree.
pub fn merge_profiles(trees: &[&Value]) -> Value {
    let Some(first) = trees.first() else {
        return empty_profile();
    };
    let mut order: Vec<&Value> = Vec::new();
    let mut children: Vec<Vec<&Value>> = Vec::new();
    let mut count: i64 = 0;
    for t in trees {
        count += t.get("count").and_then(Value::as_i64).unwrap_or(0);
        for (id, child) in t
            .get("children")
            .and_then(Value::as_map)
            .unwrap_or_default()
        {
            match order.iter().position(|o| *o == id) {
                Some(i) => children[i].push(child),
                None => {
                    order.push(id);
                    children.push(vec![child]);
                }
            }
        }
    }
    let merged = order
        .into_iter()
        .zip(children)
        .map(|(id, c)| (id.clone(), merge_profiles(&c)))
        .collect();
    let nil = Value::Nil;
    Value::map([
        (
            "description",
            first.get("description").unwrap_or(&nil).clone(),
        ),
        ("children", Value::Map(merged)),
        ("count", Value::Int(count)),
        (
            "identifier",
            first.get("identifier").unwrap_or(&nil).clone(),
        ),
    ])
}

// ---- benchmark_hardware ----------------------------------------------------------------------

/// Bandwidths per size, averaged over the answers (scheduler.py:7982: `{size:
/// sum(durations) / len(durations)}`), sizes in first-seen order.
pub fn mean_bandwidths<'a>(answers: impl IntoIterator<Item = &'a Value>) -> Value {
    let mut sums: Vec<(Value, f64, u32)> = Vec::new();
    for a in answers {
        for (size, d) in a.as_map().unwrap_or_default() {
            let Some(d) = d.as_f64() else { continue };
            match sums.iter_mut().find(|(s, _, _)| s == size) {
                Some(e) => {
                    e.1 += d;
                    e.2 += 1;
                }
                None => sums.push((size.clone(), d, 1)),
            }
        }
    }
    Value::Map(
        sums.into_iter()
            .map(|(s, total, n)| (s, Value::Float(total / f64::from(n))))
            .collect(),
    )
}

// ---- recursive_to_dict -----------------------------------------------------------------------

/// A value as `distributed.utils.recursive_to_dict` (utils.py:1567) leaves it in a dump:
/// sequences as lists, bytes as their `repr`, and a dict key that is not hashable once
/// converted (a tuple becomes a list) as its `str`. Used on what peers sent and rask keeps
/// as it came (a worker's metrics, a task's annotations).
pub fn to_plain(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(to_plain).collect()),
        Value::Map(entries) => Value::Map(
            entries
                .iter()
                .map(|(k, v)| {
                    let k = match to_plain(k) {
                        k @ (Value::Array(_) | Value::Map(_)) => Value::from(py_repr(&k)),
                        k => k,
                    };
                    (k, to_plain(v))
                })
                .collect(),
        ),
        Value::Bin(_) => Value::from(py_repr(v)),
        other => other.clone(),
    }
}

/// Python's `repr()` of a plain value.
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Nil => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Str(s) => quoted(s.chars(), ""),
        Value::Bin(b) => quoted(b.iter().map(|&c| char::from(c)), "b"),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(py_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Map(entries) => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|(k, v)| format!("{}: {}", py_repr(k), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Float(f) if f.is_nan() => "nan".into(),
        Value::Float(f) if f.is_infinite() => if *f > 0.0 { "inf" } else { "-inf" }.into(),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e16 => format!("{f:.1}"),
        Value::Float(f) => format!("{f}"),
        Value::Int(n) => n.to_string(),
        Value::UInt(n) => n.to_string(),
        Value::Opaque(_) => "<serialized object>".into(),
    }
}

/// A quoted str (or, with prefix `b`, bytes given as chars 0..=255) as Python writes it.
fn quoted(chars: impl Iterator<Item = char> + Clone, prefix: &str) -> String {
    let bytes = prefix == "b";
    let quote = if chars.clone().any(|c| c == '\'') && !chars.clone().any(|c| c == '"') {
        '"'
    } else {
        '\''
    };
    let mut out = format!("{prefix}{quote}");
    for c in chars {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f || (bytes && c as u32 > 0x7f) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}
