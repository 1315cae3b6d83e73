//! The plugin host's messages (docs/plugin-host.md): the events that keep its mirror of
//! the scheduler, its requests, and its replies.

use crate::error::RequestError;
use rask_core::{SchedulerState, Task, TaskId, TransitionNote, Worker};
use rask_protocol::{Key, Value};
use std::sync::Arc;

fn event(kind: &str, args: impl IntoIterator<Item = Value>) -> Value {
    let mut items = vec![Value::from(kind)];
    items.extend(args);
    Value::Array(items)
}

fn strs<'a>(items: impl IntoIterator<Item = &'a Arc<str>>) -> Value {
    Value::Array(items.into_iter().map(|s| Value::Str(s.clone())).collect())
}

/// A task as the host's mirror takes it.
pub fn task(core: &SchedulerState, id: TaskId, t: &Task) -> Value {
    let address = |w| core.worker(w).map(|w| Value::Str(w.address.clone()));
    let clients = t
        .who_wants
        .iter()
        .filter_map(|c| core.client(*c).map(|c| Value::Str(c.name.clone())));
    Value::map([
        ("key", t.key.to_value()),
        ("state", Value::from(t.state.as_str())),
        (
            "dependencies",
            Value::Array(
                t.dependencies
                    .iter()
                    .filter_map(|d| core.task_by_id(*d).map(|d| d.key.to_value()))
                    .collect(),
            ),
        ),
        ("who_has", strs(&core.who_has_addrs(id))),
        (
            "processing_on",
            t.processing_on.and_then(address).unwrap_or(Value::Nil),
        ),
        ("nbytes", Value::Int(t.nbytes)),
        ("type", t.type_.clone()),
        (
            "priority",
            Value::Array(t.priority.iter().map(|p| Value::Int(*p)).collect()),
        ),
        ("annotations", t.rare().annotations.clone()),
        ("who_wants", Value::Array(clients.collect())),
        ("group", Value::Str(t.group.clone())),
        ("prefix", Value::Str(t.prefix.clone())),
        ("retries", Value::Int(i64::from(t.retries))),
        // pickled, as the client gets them (an erred task's, or its blamed dependency's)
        (
            "exception",
            super::client::exception_value(&t.rare().exception),
        ),
        ("traceback", t.rare().traceback.clone()),
        (
            "exception_blame",
            t.exception_blame
                .and_then(|b| core.task_by_id(b))
                .map_or(Value::Nil, |b| b.key.to_value()),
        ),
    ])
}

/// A worker as the host's mirror takes it.
pub fn worker(w: &Worker, nanny: Option<&str>) -> Value {
    Value::map([
        ("address", Value::Str(w.address.clone())),
        ("name", Value::Str(w.name.clone())),
        ("nthreads", Value::Int(i64::from(w.nthreads))),
        (
            "memory_limit",
            Value::Int(i64::try_from(w.memory_limit).unwrap_or(i64::MAX)),
        ),
        ("host", Value::Str(w.host.clone())),
        ("nanny", nanny.map_or(Value::Nil, Value::from)),
        (
            "resources",
            Value::Map(
                w.resources
                    .iter()
                    .map(|(r, n)| (Value::Str(r.clone()), Value::Float(*n)))
                    .collect(),
            ),
        ),
        ("status", Value::from(w.status.as_str())),
    ])
}

/// `reset`: the whole state.
pub fn reset(tasks: Vec<Value>, workers: Vec<Value>, clients: Vec<Arc<str>>) -> Value {
    event(
        "reset",
        [Value::map([
            ("tasks", Value::Array(tasks)),
            ("workers", Value::Array(workers)),
            ("clients", strs(&clients)),
        ])],
    )
}

/// `graph`: an `update_graph`'s tasks (records of [`task`]) and the keys the client asked
/// for; `annotations` as the stock hook gets them, `{name: {key: value}}`.
pub fn graph(client: &Arc<str>, keys: &[Key], tasks: Vec<Value>, sid: &Arc<str>) -> Value {
    let mut annotations: Vec<(Value, Vec<(Value, Value)>)> = Vec::new();
    for t in &tasks {
        let (Some(key), Some(ann)) = (t.get("key"), t.get("annotations").and_then(Value::as_map))
        else {
            continue;
        };
        for (name, value) in ann {
            match annotations.iter_mut().find(|(n, _)| n == name) {
                Some((_, by_key)) => by_key.push((key.clone(), value.clone())),
                None => annotations.push((name.clone(), vec![(key.clone(), value.clone())])),
            }
        }
    }
    let annotations = annotations
        .into_iter()
        .map(|(n, by_key)| (n, Value::Map(by_key)))
        .collect();
    event(
        "graph",
        [Value::map([
            ("client", Value::Str(client.clone())),
            (
                "keys",
                Value::Array(keys.iter().map(Key::to_value).collect()),
            ),
            ("tasks", Value::Array(tasks)),
            ("annotations", Value::Map(annotations)),
            ("stimulus_id", Value::Str(sid.clone())),
        ])],
    )
}

/// `transition`: the hook's arguments, and where the task now runs or is held (for the
/// mirror). `kwargs` are what the stock scheduler passes the hooks: a worker's
/// `task-finished`/`task-erred` fields (scheduler.py:5477), nothing for other transitions.
pub fn transition(note: &TransitionNote, kwargs: Option<Value>) -> Value {
    let mut kwargs = kwargs.unwrap_or_else(|| Value::Map(Vec::new()));
    // the hook's own arguments
    kwargs.take("key");
    kwargs.take("stimulus_id");
    let mut placement = Value::Map(Vec::new());
    if let Some(w) = &note.worker {
        placement.set("worker", Value::Str(w.clone()));
    }
    if note.finish == rask_core::TaskStatus::Memory {
        placement.set("nbytes", Value::Int(note.nbytes));
    }
    event(
        "transition",
        [
            note.key.to_value(),
            Value::from(note.start.as_str()),
            Value::from(note.finish.as_str()),
            Value::Str(note.stimulus_id.clone()),
            kwargs,
            placement,
        ],
    )
}

/// `add_worker`
pub fn add_worker(worker: Value) -> Value {
    event("add_worker", [worker])
}

/// `remove_worker`
pub fn remove_worker(address: &Arc<str>, sid: &Arc<str>) -> Value {
    event(
        "remove_worker",
        [Value::Str(address.clone()), Value::Str(sid.clone())],
    )
}

/// `add_client` / `remove_client`
pub fn client(added: bool, name: &Arc<str>) -> Value {
    let kind = if added { "add_client" } else { "remove_client" };
    event(kind, [Value::Str(name.clone())])
}

/// `log_event`: a message logged on a topic.
pub fn log_event(topic: &Arc<str>, event_: &Value) -> Value {
    event("log_event", [Value::Str(topic.clone()), event_.clone()])
}

/// `restart`
pub fn restart() -> Value {
    event("restart", [])
}

/// `drop`: the mirror is no longer kept.
pub fn drop_state() -> Value {
    event("drop", [])
}

/// `register_plugin`
pub fn register(plugin: Value, name: Option<Arc<str>>, idempotent: bool) -> Value {
    Value::map([
        ("op", Value::from("register_plugin")),
        ("plugin", plugin),
        ("name", name.map_or(Value::Nil, Value::Str)),
        ("idempotent", Value::Bool(idempotent)),
    ])
}

/// `unregister_plugin`
pub fn unregister(name: &Arc<str>) -> Value {
    Value::map([
        ("op", Value::from("unregister_plugin")),
        ("name", Value::Str(name.clone())),
    ])
}

/// `feed_start`: the client's `feed` request (`translate::rpc::feed`) with the feed's
/// number.
pub fn feed_start(feed: i64, mut request: Value) -> Value {
    request.set("feed", Value::Int(feed));
    request
}

/// `feed_stop`
pub fn feed_stop(feed: i64) -> Value {
    Value::map([("op", Value::from("feed_stop")), ("feed", Value::Int(feed))])
}

/// A host reply for the client: `Ok(reply)` with the id gone and, for an error, the
/// status the stock handler's exception has on the wire (`send_recv` raises an
/// "uncaught-error"); `Err` if it is not a map.
pub fn for_client(mut reply: Value) -> Result<(bool, Value), RequestError> {
    if !matches!(reply, Value::Map(_)) {
        return Err(crate::error::HelperError::Protocol("a plugin host reply is not a map").into());
    }
    reply.take("id");
    reply.take("plugins");
    let ok = reply.get("status").and_then(Value::as_str) == Some("OK");
    if !ok {
        reply.set("status", Value::from("uncaught-error"));
    }
    Ok((ok, reply))
}
