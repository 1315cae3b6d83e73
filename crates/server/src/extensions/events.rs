//! Dask's event log (`EventExtension` + `distributed/broker.py`).
//!
//! Events are `(timestamp, msg)` pairs kept per topic, at most
//! `distributed.admin.low-level-log-length` of them (the oldest drop out, like the stock
//! `deque(maxlen=...)`). Clients subscribed to a topic get every new event on their stream as
//! `{"op": "event", "topic": t, "event": (ts, msg)}`; a stock client subscribes to `print` and
//! `warn` on start, which is how `distributed.print`/`warn` inside tasks reach the user.
//!
//! `msg` is opaque to rask: it is stored and forwarded exactly as it arrived, except that a
//! dict logged by a worker gets a `"worker"` entry, as `Scheduler.log_worker_event` does.

use super::{Cx, Extension, Hooks, Peer};
use crate::event::Replier;
use crate::messages::events::{Rpc, StreamOp, WorkerEvent};
use crate::messages::ToClientMsg;
use crate::translate;
use rask_core::ClientId;
use rask_protocol::Value;
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

/// The event log.
pub struct Events {
    topics: FxHashMap<Arc<str>, Topic>,
    /// events kept per topic (`None`: no limit)
    pub max_events: Option<usize>,
    /// while the plugin host mirrors the scheduler: what was published since the state
    /// task last took it, `(topic, msg)` (its plugins' `log_event` hooks)
    pub mirror: bool,
    /// see `mirror`
    pub published: Vec<(Arc<str>, Value)>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            topics: FxHashMap::default(),
            max_events: Some(DEFAULT_MAX_EVENTS),
            mirror: false,
            published: Vec::new(),
        }
    }
}

impl Events {
    /// Events of one topic as Dask's `get_events(topic)` returns them.
    fn topic_events(&self, topic: &str) -> Value {
        Value::Array(
            self.topics
                .get(topic)
                .map(|t| t.events.iter().cloned().collect())
                .unwrap_or_default(),
        )
    }

    /// `get_events()`: every topic that has events.
    pub fn all_events(&self) -> Value {
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
                .map(|n| (Value::Str(n.clone()), self.topic_events(n)))
                .collect(),
        )
    }

    /// `Broker.publish`: stores `msg` under each topic and sends it to their subscribers.
    pub fn publish(&mut self, cx: &mut Cx<'_>, topics: &[Arc<str>], msg: Value) {
        if self.mirror {
            for name in topics {
                self.published.push((name.clone(), msg.clone()));
            }
        }
        let event = translate::events::event(cx.now, msg);
        for name in topics {
            let topic = self.topics.entry(name.clone()).or_default();
            if let Some(max) = self.max_events {
                while topic.events.len() >= max.max(1) {
                    topic.events.pop_front();
                }
            }
            topic.events.push_back(event.clone());
            for client in &topic.subscribers {
                cx.to_client(
                    *client,
                    ToClientMsg::Event {
                        topic: name.clone(),
                        event: event.clone(),
                    },
                );
            }
        }
    }

    /// `log_worker_event` (scheduler.py:7829): dicts learn which worker logged them, unless
    /// the topic is the worker's own address.
    fn log_worker_event(&mut self, cx: &mut Cx<'_>, from: Peer, e: WorkerEvent) {
        let WorkerEvent {
            topics,
            mut msg,
            single_topic,
        } = e;
        let address = match from {
            Peer::Worker(w) => cx.core.worker(w).map(|w| w.address.clone()),
            Peer::Client(_) => None,
        };
        if let (Value::Map(_), Some(a)) = (&msg, address) {
            if single_topic.as_deref() != Some(&*a) {
                msg.set("worker", Value::Str(a));
            }
        }
        self.publish(cx, &topics, msg);
    }
}

impl Extension for Events {
    type Rpc = Rpc;
    type StreamOp = StreamOp;

    fn rpc(&mut self, cx: &mut Cx<'_>, rpc: Rpc, reply: Replier) {
        let answer = match rpc {
            // `log_event {topic, msg}` (scheduler.py:8580): returns None.
            Rpc::LogEvent { topics, msg } => {
                self.publish(cx, &topics, msg);
                Value::Nil
            }
            // `events {topic}` (scheduler.py:8609)
            Rpc::Events { topic } => match topic {
                Some(t) => self.topic_events(&t),
                None => self.all_events(),
            },
        };
        cx.reply(reply, Ok(answer));
    }

    fn stream_op(&mut self, cx: &mut Cx<'_>, from: Peer, op: StreamOp) {
        match (op, from) {
            (StreamOp::Subscribe { topic }, Peer::Client(c)) => {
                self.topics.entry(topic).or_default().subscribers.insert(c);
            }
            (StreamOp::Unsubscribe { topic }, Peer::Client(c)) => {
                if let Some(t) = self.topics.get_mut(&topic) {
                    t.subscribers.remove(&c);
                }
            }
            (StreamOp::Log(e), from) => self.log_worker_event(cx, from, e),
            // the op table routes subscriptions from client streams only
            (StreamOp::Subscribe { .. } | StreamOp::Unsubscribe { .. }, Peer::Worker(_)) => {}
        }
    }
}

impl Hooks for Events {
    /// A client that went away gets no more events.
    fn on_client_removed(&mut self, _cx: &mut Cx<'_>, client: ClientId) {
        for topic in self.topics.values_mut() {
            topic.subscribers.remove(&client);
        }
    }
}
