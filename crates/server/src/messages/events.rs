//! The event log's messages (`EventExtension`, `distributed/broker.py`).

use rask_protocol::Value;
use std::sync::Arc;

/// The event log's RPCs.
#[derive(Debug, Clone)]
pub enum Rpc {
    /// `log_event {topic, msg}`
    LogEvent {
        /// one or more topics
        topics: Vec<Arc<str>>,
        /// the event, opaque
        msg: Value,
    },
    /// `events {topic}`: one topic's events, or every topic's
    Events {
        /// the topic, or all
        topic: Option<Arc<str>>,
    },
}

/// The event log's stream ops.
#[derive(Debug, Clone)]
pub enum StreamOp {
    /// `subscribe-topic {topic}` (clients)
    Subscribe {
        /// the topic
        topic: Arc<str>,
    },
    /// `unsubscribe-topic {topic}` (clients)
    Unsubscribe {
        /// the topic
        topic: Arc<str>,
    },
    /// `log-event {topic, msg}` (workers)
    Log(WorkerEvent),
}

/// `log-event {topic, msg}` from a worker.
#[derive(Debug, Clone)]
pub struct WorkerEvent {
    /// one or more topics
    pub topics: Vec<Arc<str>>,
    /// the event, opaque (a dict gets a `"worker"` entry)
    pub msg: Value,
    /// the topic when a single one was given (a worker logging to its own address is not
    /// tagged with it)
    pub single_topic: Option<Arc<str>>,
}
