//! Dask's event log (`EventExtension` + `distributed/broker.py`) and the scheduler-side
//! Python entry points (`run_function`, `register_scheduler_plugin`).
//!
//! Events are `(timestamp, msg)` pairs kept per topic, at most
//! `distributed.admin.low-level-log-length` of them (the oldest drop out, like the stock
//! `deque(maxlen=...)`). Clients subscribed to a topic get every new event on their stream as
//! `{"op": "event", "topic": t, "event": (ts, msg)}`; a stock client subscribes to `print` and
//! `warn` on start, which is how `distributed.print`/`warn` inside tasks reach the user.
//!
//! `msg` is opaque to rask: it is stored and forwarded exactly as it arrived, except that a
//! dict logged by a worker gets a `"worker"` entry, as `Scheduler.log_worker_event` does.

use crate::connection::Ctx;
use crate::error::ServerError;
use crate::runtime::{now, Scheduler};
use crate::translate::{field, opt_str, str_field};
use rask_core::{ClientId, WorkerId};
use rask_protocol::{Opaque, Value};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::VecDeque;
use std::sync::Arc;

/// `distributed.admin.low-level-log-length` in the stock `distributed.yaml`.
pub const DEFAULT_MAX_EVENTS: usize = 1000;

/// One topic: its recent events and who is subscribed (`broker.Topic`).
#[derive(Default)]
struct Topic {
    /// `(timestamp, msg)` arrays, oldest first
    events: VecDeque<Value>,
    subscribers: FxHashSet<ClientId>,
}

/// This extension's state.
pub struct State {
    topics: FxHashMap<Arc<str>, Topic>,
    /// events kept per topic
    pub max_events: usize,
}

impl Default for State {
    fn default() -> Self {
        State {
            topics: FxHashMap::default(),
            max_events: DEFAULT_MAX_EVENTS,
        }
    }
}

impl State {
    /// Events of one topic as Dask's `get_events(topic)` returns them.
    fn events(&self, topic: &str) -> Value {
        Value::Array(
            self.topics
                .get(topic)
                .map(|t| t.events.iter().cloned().collect())
                .unwrap_or_default(),
        )
    }

    /// `get_events()`: every topic that has events.
    fn all_events(&self) -> Value {
        let mut names: Vec<&Arc<str>> = self
            .topics
            .iter()
            .filter(|(_, t)| !t.events.is_empty())
            .map(|(n, _)| n)
            .collect();
        names.sort();
        Value::Map(
            names
                .into_iter()
                .map(|n| (Value::Str(n.clone()), self.events(n)))
                .collect(),
        )
    }
}

/// `Broker.publish`: stores `msg` under each topic and sends it to their subscribers.
pub fn publish(s: &mut Scheduler, topics: &[Arc<str>], msg: Value) {
    let event = Value::Array(vec![Value::Float(now()), msg]);
    let max = s.ext.events.max_events.max(1);
    for name in topics {
        let topic = s.ext.events.topics.entry(name.clone()).or_default();
        if topic.events.len() >= max {
            topic.events.pop_front();
        }
        topic.events.push_back(event.clone());
        for client in &topic.subscribers {
            if let Some(info) = s.clients.get(client) {
                let _ = info.tx.send(
                    Value::map([
                        ("op", Value::from("event")),
                        ("topic", Value::Str(name.clone())),
                        ("event", event.clone()),
                    ])
                    .into(),
                );
            }
        }
    }
}

/// `topic`: one name or a list of names (`str | Collection[str]`).
fn topics_field(msg: &Value) -> Result<Vec<Arc<str>>, ServerError> {
    match field(msg, "topic")? {
        Value::Str(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|t| match t {
                Value::Str(s) => Ok(s.clone()),
                other => Err(ServerError::BadMessage(format!(
                    "event topics must be str, not {}",
                    other.type_name()
                ))),
            })
            .collect(),
        other => Err(ServerError::BadMessage(format!(
            "field \"topic\" must be a str or a list of str, not {}",
            other.type_name()
        ))),
    }
}

/// Why rask cannot take scheduler plugins; the client raises this as `NotImplementedError`.
const NO_SCHEDULER_PLUGINS: &str = "rask does not run scheduler plugins: it is a Rust scheduler \
     with no Python Scheduler object whose hooks (transition, add_worker, update_graph, ...) a \
     SchedulerPlugin could observe or change. Use a WorkerPlugin \
     (client.register_plugin(WorkerPlugin())) or the event log (client.subscribe_topic / \
     get_events) instead, or run the stock `dask scheduler` if you need scheduler plugins.";

/// Dask's `error_message` reply for a raised builtin exception (`translate::raised`).
use crate::translate::raised as refusal;

/// RPC ops of this extension.
pub async fn rpc(op: &str, msg: &Value, ctx: &Arc<Ctx>) -> Option<Result<Value, ServerError>> {
    Some(match op {
        "log_event" => log_event(msg, ctx).await,
        "events" => events(msg, ctx).await,
        "run_function" => run_function(msg, ctx).await,
        "register_scheduler_plugin" => Ok(refusal("NotImplementedError", NO_SCHEDULER_PLUGINS)),
        // No plugin is ever registered, so this is the stock "not found" error
        // (`Scheduler.remove_plugin`, scheduler.py:6238).
        "unregister_scheduler_plugin" => {
            let name = match msg.get("name") {
                Some(Value::Str(n)) => format!("'{n}'"),
                _ => "None".to_string(),
            };
            Ok(refusal(
                "ValueError",
                &format!("Could not find plugin {name} among the current scheduler plugins"),
            ))
        }
        _ => return None,
    })
}

/// `log_event {topic, msg}` (scheduler.py:8580): returns None.
async fn log_event(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let topics = topics_field(msg)?;
    let body = msg.get("msg").cloned().unwrap_or(Value::Nil);
    ctx.handle.call(move |s| publish(s, &topics, body)).await?;
    Ok(Value::Nil)
}

/// `events {topic}` (scheduler.py:8609): one topic's events, or all non-empty topics.
async fn events(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let topic = opt_str(msg, "topic")?;
    ctx.handle
        .call(move |s| match topic {
            Some(t) => s.ext.events.events(&t),
            None => s.ext.events.all_events(),
        })
        .await
}

/// `run_function {function, args, kwargs, wait}` (`Client.run_on_scheduler`). The stock
/// scheduler calls the function in its own process; rask has no Python in-process, so a
/// graph helper calls it (and refuses functions that want `dask_scheduler`).
async fn run_function(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let function = match field(msg, "function")? {
        Value::Bin(b) => b.clone(),
        other => {
            return Err(ServerError::BadMessage(format!(
                "run_function: function must be a pickle (bytes), not {}",
                other.type_name()
            )))
        }
    };
    let arg = |name: &str| match msg.get(name) {
        Some(Value::Bin(b)) => Value::Bin(b.clone()),
        _ => Value::Nil,
    };
    let request = Value::map([
        ("op", Value::from("run_function")),
        ("function", Value::Bin(function.clone())),
        ("args", arg("args")),
        ("kwargs", arg("kwargs")),
        (
            "wait",
            Value::Bool(msg.get("wait").is_none_or(Value::truthy)),
        ),
    ]);
    // scheduler.py:8022 logs every call, function pickle included.
    ctx.handle.send(move |s| {
        publish(
            s,
            &[Arc::from("all")],
            Value::map([
                ("action", Value::from("run-function")),
                ("function", Value::Bin(function)),
            ]),
        )
    });
    let mut reply = ctx.helpers.call(request).await?;
    reply.take("id");
    if reply.get("status").and_then(Value::as_str) == Some("OK") {
        let result = match reply.take("result") {
            Some(Value::Bin(pickle)) => Value::Opaque(Opaque::pickled(pickle)),
            _ => {
                return Err(ServerError::Helper(
                    "run_function reply without a pickled result".into(),
                ))
            }
        };
        return Ok(Value::map([
            ("status", Value::from("OK")),
            ("result", result),
        ]));
    }
    // `{"status": "error", exception, traceback, ...}`: what `error_message` gives the client.
    Ok(reply)
}

/// Client stream ops of this extension.
pub fn client_stream_op(
    op: &str,
    msg: &Value,
    client: ClientId,
    ctx: &Arc<Ctx>,
) -> Option<Result<(), ServerError>> {
    let subscribe = match op {
        "subscribe-topic" => true,
        "unsubscribe-topic" => false,
        _ => return None,
    };
    let topic = match str_field(msg, "topic") {
        Ok(t) => t,
        Err(e) => return Some(Err(e.into())),
    };
    ctx.handle.send(move |s| {
        let topics = &mut s.ext.events.topics;
        if subscribe {
            topics.entry(topic).or_default().subscribers.insert(client);
        } else if let Some(t) = topics.get_mut(&topic) {
            t.subscribers.remove(&client);
        }
    });
    Some(Ok(()))
}

/// Worker stream ops of this extension.
pub fn worker_stream_op(
    op: &str,
    msg: &Value,
    worker: WorkerId,
    ctx: &Arc<Ctx>,
) -> Option<Result<(), ServerError>> {
    if op != "log-event" {
        return None;
    }
    let topics = match topics_field(msg) {
        Ok(t) => t,
        Err(e) => return Some(Err(e)),
    };
    let mut body = msg.get("msg").cloned().unwrap_or(Value::Nil);
    let single = match field(msg, "topic") {
        Ok(Value::Str(t)) => Some(t.clone()),
        _ => None,
    };
    ctx.handle.send(move |s| {
        // `log_worker_event` (scheduler.py:7829): dicts learn which worker logged them,
        // unless the topic is the worker's own address.
        if let (Value::Map(_), Some(w)) = (&body, s.core.worker(worker)) {
            if single.as_deref() != Some(&*w.address) {
                body.set("worker", Value::Str(w.address.clone()));
            }
        }
        publish(s, &topics, body);
    });
    Some(Ok(()))
}

/// A client went away: it gets no more events.
pub fn on_client_removed(s: &mut Scheduler, client: ClientId, _name: &str) {
    for topic in s.ext.events.topics.values_mut() {
        topic.subscribers.remove(&client);
    }
}
