//! The op table: every op `distributed` 2026.8.0's scheduler answers (`Scheduler.handlers`,
//! `Scheduler.stream_handlers` and its extensions'), once, with what rask does with it.
//!
//! Look an op up here to find its handler: an RPC is parsed by the named `translate`
//! function into a [`Rpc`] variant, which the state task serves in `reactor`; a stream op
//! becomes a [`ClientMsg`] or [`WorkerMsg`] the same way. An op rask does not serve has a
//! [`Serve::NotSupported`] entry with the reason its user reads. `tests/ops.rs` checks the
//! tables against the stock scheduler's handler list, so no op is forgotten silently.
//!
//! rask also serves clients and workers of older releases (`rask_protocol::TESTED_OLDER`):
//! an op that 2026.8.0 lacks has an entry too, its comment naming the releases that send it,
//! and `tests/ops.rs` checks the tables against every tested release's handler list. An op
//! whose message shape changed between releases reads both shapes in its `translate`
//! function (the publish ops).

use crate::error::RequestError;
use crate::messages::{ClientMsg, Rpc, WorkerMsg};
use crate::translate::worker::WorkerStream;
use crate::translate::{
    client, cluster, coordination, diagnostics, events, inspect, plugins, rpc, shuffle, worker,
};
use rask_protocol::Value;

/// What rask does with an op.
#[derive(Clone, Copy)]
pub enum Serve {
    /// An RPC: parsed into a request for the state task.
    Rpc(fn(&Value) -> Result<Rpc, RequestError>),
    /// A client stream op: parsed into a message for the state task.
    Client(fn(&Value) -> Result<ClientMsg, RequestError>),
    /// A worker stream op: parsed into a message for the state task, which may keep the
    /// message itself (a finished task's record is made of it).
    Worker(fn(&mut Value, &mut WorkerStream) -> Result<WorkerMsg, RequestError>),
    /// Handled by the connection itself: it becomes a stream, or ends.
    Connection(ConnectionOp),
    /// Refused: the client gets "rask scheduler does not support the operation ... yet"
    /// with this reason.
    NotSupported(&'static str),
}

/// The ops a connection handles itself (`Server._handle_comm`, `handle_stream`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionOp {
    /// `register-client`: the connection becomes the client's stream.
    RegisterClient,
    /// `register-worker`: the connection becomes the worker's stream.
    RegisterWorker,
    /// `register_nanny`: a stock nanny announces itself and gets the nanny plugins.
    RegisterNanny,
    /// `close`: the peer is done with the connection (protocol-level, not a handler).
    Close,
    /// `close-stream`: the peer ends its stream (protocol-level, not a handler).
    CloseStream,
    /// `subscribe_worker_status`: answered with the identity, then the connection becomes
    /// a feed of workers arriving and leaving (`WorkerStatusPlugin`).
    SubscribeWorkerStatus,
    /// `feed`: a function of the scheduler's, run every interval in the plugin host; the
    /// connection carries its results until the peer closes it (progress bars).
    Feed,
}

/// One entry of a table.
#[derive(Clone, Copy)]
pub struct Op {
    /// Dask's name
    pub name: &'static str,
    /// what rask does with it
    pub serve: Serve,
}

impl Op {
    /// Whether rask serves it (everything but [`Serve::NotSupported`]).
    pub fn supported(&self) -> bool {
        !matches!(self.serve, Serve::NotSupported(_))
    }
}

const fn rpc(name: &'static str, parse: fn(&Value) -> Result<Rpc, RequestError>) -> Op {
    Op {
        name,
        serve: Serve::Rpc(parse),
    }
}

const fn client(name: &'static str, parse: fn(&Value) -> Result<ClientMsg, RequestError>) -> Op {
    Op {
        name,
        serve: Serve::Client(parse),
    }
}

const fn worker(
    name: &'static str,
    parse: fn(&mut Value, &mut WorkerStream) -> Result<WorkerMsg, RequestError>,
) -> Op {
    Op {
        name,
        serve: Serve::Worker(parse),
    }
}

const fn connection(name: &'static str, op: ConnectionOp) -> Op {
    Op {
        name,
        serve: Serve::Connection(op),
    }
}

const fn refused(name: &'static str, reason: &'static str) -> Op {
    Op {
        name,
        serve: Serve::NotSupported(reason),
    }
}

/// `Scheduler.handlers` (with the extensions'), sorted by name.
pub static RPC: &[Op] = &[
    rpc("adaptive_target", cluster::adaptive_target),
    rpc("add_keys", cluster::add_keys),
    refused(
        "amm_handler",
        "the active memory manager is a framework of Python policy objects (ReduceReplicas, \
         RetireWorker, user policies) run inside the stock scheduler against its Python \
         TaskState/WorkerState objects; rask's scheduler is Rust and runs no Python policies. \
         retire_workers moves data off retiring workers, and replicate makes copies",
    ),
    rpc("benchmark_hardware", inspect::benchmark_hardware),
    rpc("broadcast", rpc::broadcast),
    rpc("call_stack", inspect::call_stack),
    rpc("check_idle", cluster::check_idle),
    refused(
        "connection_stream",
        "bare connection streams are not served by rask",
    ),
    rpc(
        "dump_cluster_state_to_url",
        inspect::dump_cluster_state_to_url,
    ),
    rpc("dump_state", inspect::dump_state),
    rpc("echo", rpc::echo),
    rpc("event_clear", coordination::event_clear),
    rpc("event_is_set", coordination::event_is_set),
    rpc("event_set", coordination::event_set),
    rpc("event_wait", coordination::event_wait),
    rpc("events", events::events),
    // run in the plugin host; the connection carries the feed's responses
    connection("feed", ConnectionOp::Feed),
    rpc("gather", rpc::gather),
    rpc("get_cluster_state", inspect::get_cluster_state),
    rpc("get_error_cause", diagnostics::get_error_cause),
    rpc("get_logs", inspect::get_logs),
    rpc("get_metadata", cluster::get_metadata),
    rpc("get_runspec", diagnostics::get_runspec),
    rpc("get_story", diagnostics::get_story),
    rpc(
        "get_task_prefix_states",
        diagnostics::get_task_prefix_states,
    ),
    rpc("get_task_status", rpc::get_task_status),
    rpc("get_task_stream", diagnostics::get_task_stream),
    // distributed 2026.6.0 and later (older clients never send it, nor `start_index`)
    rpc("get_task_stream_index", diagnostics::get_task_stream_index),
    rpc("has_what", rpc::has_what),
    rpc("heartbeat_worker", rpc::heartbeat_worker),
    rpc("identity", rpc::identity),
    rpc("log_event", events::log_event),
    rpc("logs", inspect::get_logs),
    rpc("memory_sampler_start", diagnostics::memory_sampler_start),
    rpc("memory_sampler_stop", diagnostics::memory_sampler_stop),
    rpc("multi_lock_acquire", coordination::multi_lock_acquire),
    rpc("multi_lock_release", coordination::multi_lock_release),
    rpc("nbytes", rpc::nbytes),
    rpc("ncores", rpc::ncores),
    rpc("ncores_running", rpc::ncores_running),
    rpc("performance_report", rpc::performance_report),
    rpc("processing", rpc::processing),
    rpc("profile", inspect::profile),
    rpc("proxy", inspect::proxy),
    // publish_put/get/delete: every release, but up to 2026.3.0 they carry one `name`, not
    // `names` (and put/delete do not wait for the flush); translate reads both shapes
    rpc("publish_delete", coordination::publish_delete),
    rpc("publish_get", coordination::publish_get),
    rpc("publish_list", coordination::publish_list),
    rpc("publish_put", coordination::publish_put),
    // distributed 2025.12.0 .. 2026.3.0 (gone in 2026.6.0): publish_dataset waits on it
    rpc("publish_wait_flush", coordination::publish_wait_flush),
    rpc("queue_create", coordination::queue_create),
    rpc("queue_get", coordination::queue_get),
    rpc("queue_put", coordination::queue_put),
    rpc("queue_qsize", coordination::queue_qsize),
    rpc("rebalance", cluster::rebalance),
    connection("register-client", ConnectionOp::RegisterClient),
    connection("register-worker", ConnectionOp::RegisterWorker),
    connection("register_nanny", ConnectionOp::RegisterNanny),
    rpc("register_nanny_plugin", plugins::register_nanny_plugin),
    rpc("register_scheduler_plugin", rpc::register_scheduler_plugin),
    rpc("register_worker_plugin", plugins::register_worker_plugin),
    rpc("replicate", cluster::replicate),
    rpc("restart", rpc::restart),
    rpc("restart_workers", rpc::restart_workers),
    rpc("retire_workers", rpc::retire_workers),
    rpc("retry", rpc::retry),
    rpc("run_function", rpc::run_function),
    rpc("scatter", rpc::scatter),
    rpc("semaphore_acquire", coordination::semaphore_acquire),
    rpc("semaphore_close", coordination::semaphore_close),
    rpc(
        "semaphore_refresh_leases",
        coordination::semaphore_refresh_leases,
    ),
    rpc("semaphore_register", coordination::semaphore_register),
    rpc("semaphore_release", coordination::semaphore_release),
    rpc("semaphore_value", coordination::semaphore_value),
    rpc("set_metadata", cluster::set_metadata),
    rpc("set_resources", cluster::set_resources),
    rpc("set_restrictions", cluster::set_restrictions),
    rpc("shuffle_barrier", shuffle::barrier),
    rpc("shuffle_get", shuffle::get),
    rpc("shuffle_get_or_create", shuffle::get_or_create),
    rpc("shuffle_restrict_task", shuffle::restrict_task),
    rpc("start_task_metadata", diagnostics::start_task_metadata),
    rpc("stop_task_metadata", diagnostics::stop_task_metadata),
    connection(
        "subscribe_worker_status",
        ConnectionOp::SubscribeWorkerStatus,
    ),
    rpc("terminate", cluster::terminate),
    rpc("unregister", rpc::unregister),
    rpc("unregister_nanny_plugin", plugins::unregister_nanny_plugin),
    rpc(
        "unregister_scheduler_plugin",
        rpc::unregister_scheduler_plugin,
    ),
    rpc(
        "unregister_worker_plugin",
        plugins::unregister_worker_plugin,
    ),
    rpc("update_data", rpc::update_data),
    rpc("variable_get", coordination::variable_get),
    rpc("variable_set", coordination::variable_set),
    rpc("versions", rpc::versions),
    rpc("who_has", rpc::who_has),
    rpc("worker_logs", inspect::worker_logs),
    rpc("workers_to_close", cluster::workers_to_close),
];

/// `Scheduler.stream_handlers` that clients use, sorted by name.
pub static CLIENT_STREAM: &[Op] = &[
    client("cancel-keys", client::cancel_keys),
    client("client-desires-keys", client::desires_keys),
    client("client-releases-keys", client::releases_keys),
    client("close-client", client::close_client),
    connection("close-stream", ConnectionOp::CloseStream),
    client("heartbeat-client", client::heartbeat_client),
    client("publish_flush_batched_send", coordination::publish_flush),
    client("queue-future-release", coordination::queue_future_release),
    client("queue_release", coordination::queue_release),
    client("report-key", client::report_key),
    client("subscribe-topic", events::subscribe),
    client("unsubscribe-topic", events::unsubscribe),
    client("update-data", client::update_data),
    client("update-graph", client::update_graph),
    client(
        "variable-future-received-confirm",
        coordination::variable_confirm,
    ),
    client("variable_delete", coordination::variable_delete),
];

/// `Scheduler.stream_handlers` that workers use, sorted by name.
pub static WORKER_STREAM: &[Op] = &[
    worker("add-keys", worker::add_keys),
    connection("close-stream", ConnectionOp::CloseStream),
    worker("keep-alive", worker::keep_alive),
    worker("log-event", worker::log_event),
    worker("long-running", worker::long_running),
    worker("release-worker-data", worker::release_worker_data),
    worker("request-refresh-who-has", worker::request_refresh_who_has),
    worker("reschedule", worker::reschedule),
    worker("steal-response", worker::steal_response),
    worker("task-erred", worker::task_erred),
    worker("task-finished", worker::task_finished),
    worker("worker-status-change", worker::status_change),
];

/// Ops a connection's request loop answers besides [`RPC`] (protocol-level).
pub static CONNECTION: &[Op] = &[connection("close", ConnectionOp::Close)];

/// The entry of `name` in a sorted table.
pub fn find(table: &'static [Op], name: &str) -> Option<&'static Op> {
    table
        .binary_search_by(|op| op.name.cmp(name))
        .ok()
        .map(|i| &table[i])
}

/// The RPC (or protocol-level op) `name`.
pub fn rpc_op(name: &str) -> Option<&'static Op> {
    find(RPC, name).or_else(|| find(CONNECTION, name))
}
