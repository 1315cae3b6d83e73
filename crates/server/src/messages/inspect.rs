//! Looking inside the cluster: logs, profiles, call stacks, hardware benchmarks, state
//! dumps, and proxied requests (`Scheduler.get_logs`, `get_worker_logs`, `get_profile`,
//! `get_call_stack`, `benchmark_hardware`, `get_cluster_state`, `_to_dict`, `proxy`).
//! Most ask the workers something; [`Ask`] is that job, run outside the state task.

use rask_protocol::{Key, Value};
use std::sync::Arc;

/// The inspection RPCs.
#[derive(Debug, Clone)]
pub enum Rpc {
    /// `get_logs` / `logs {start, n, timestamps}`: the scheduler's own log lines.
    Logs {
        /// no line older than this (seconds since the epoch)
        start: f64,
        /// at most this many (all when `None`, which a request's 0 also means)
        n: Option<usize>,
        /// `[created, level, text]` rather than `[level, text]`
        timestamps: bool,
    },
    /// `worker_logs {n, workers, nanny}`: `get_logs` broadcast to workers (or nannies).
    WorkerLogs {
        /// passed on to each worker
        n: Value,
        /// only these worker addresses
        workers: Option<Vec<Arc<str>>>,
        /// ask their nannies
        nanny: bool,
    },
    /// `profile {workers, scheduler, server, merge_workers, start, stop, key}`
    Profile(Box<Profile>),
    /// `call_stack {keys}`: what the workers running these keys (or all) are doing.
    CallStack {
        /// the keys; every worker when `None`
        keys: Option<Vec<Key>>,
    },
    /// `benchmark_hardware`: disk, memory and network bandwidths, averaged over workers.
    BenchmarkHardware,
    /// `get_cluster_state {exclude}`: the scheduler's state, the workers' and versions.
    ClusterState {
        /// attribute names left out
        exclude: Vec<Arc<str>>,
    },
    /// `dump_cluster_state_to_url {url, exclude, format, **storage_options}`: the same
    /// state, written by a graph helper with `cluster_dump.write_state` (fsspec).
    DumpToUrl {
        /// where to
        url: Arc<str>,
        /// attribute names left out
        exclude: Vec<Arc<str>>,
        /// `"msgpack"` or `"yaml"` (checked by `write_state`)
        format: Value,
        /// passed on to `fsspec.open`
        storage_options: Vec<(Value, Value)>,
    },
    /// `dump_state {exclude}`: the scheduler's state alone.
    DumpState {
        /// attribute names left out
        exclude: Vec<Arc<str>>,
    },
    /// `proxy {msg, worker}`: one request to one worker, its reply.
    Proxy {
        /// the request (`reply` set)
        msg: Value,
        /// where to
        worker: Arc<str>,
    },
}

/// `profile`'s arguments.
#[derive(Debug, Clone)]
pub struct Profile {
    /// only these worker addresses
    pub workers: Option<Vec<Arc<str>>>,
    /// the scheduler's own event loop profile
    pub scheduler: bool,
    /// passed on: the workers' event loop profile instead of their tasks'
    pub server: bool,
    /// one merged tree rather than one per worker
    pub merge_workers: bool,
    /// passed on
    pub start: Value,
    /// passed on
    pub stop: Value,
    /// passed on
    pub key: Value,
}

/// A wait on workers for an inspection RPC (a job); its answer needs nothing more from
/// the state task.
#[derive(Debug)]
pub enum Ask {
    /// `profile` to each worker; failures are left out (scheduler.py:8353,
    /// `return_exceptions=True`).
    Profile {
        /// worker addresses
        workers: Vec<Arc<str>>,
        /// the request
        msg: Value,
        /// merge the trees (`profile.merge`)
        merge: bool,
    },
    /// `call_stack` to each worker; empty answers are left out.
    CallStack {
        /// (worker, its request)
        targets: Vec<(Arc<str>, Value)>,
    },
    /// `benchmark_disk`, `benchmark_memory`, then `benchmark_network` between pairs.
    Benchmark {
        /// worker addresses, in the (shuffled) order the network pairs are made
        workers: Vec<Arc<str>>,
    },
    /// `dump_state` and `versions` to every worker, with the scheduler's part.
    ClusterState {
        /// worker addresses
        workers: Vec<Arc<str>>,
        /// passed on to `dump_state`
        exclude: Value,
        /// the scheduler's `_to_dict`
        scheduler: Value,
        /// the scheduler's `versions()`
        versions: Value,
        /// `dump_cluster_state_to_url`: the graph helper request that writes the state
        /// (its `state` filled in by the job); the reply is then `None`
        write: Option<Value>,
    },
    /// One request to one address.
    Proxy {
        /// where to
        worker: Arc<str>,
        /// the request
        msg: Value,
    },
}
