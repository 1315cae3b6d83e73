//! The in-process test harness of the server (HyperQueue's tako integration tests are the
//! model): a real `rask_server::serve` on `127.0.0.1:0` in the test's runtime, with an
//! in-process "graph helper" that builds task records in Rust, and peers that speak the
//! real wire protocol:
//! - [`Client`]: a client's stream (`register-client`), which submits graphs
//!   ([`Client::submit`]) whose tasks the fake helper turns into records;
//! - [`Worker`]: a worker's stream the test drives message by message (it can also die
//!   abruptly), with its own listener answering `get_data`, `update_data` and the rest;
//! - [`rpc`]: one request on a fresh connection, as `Client.scheduler.<op>()` does;
//! - zero workers ([`TestServer::zero_workers`]) that finish every task at once.
//!
//! Every wait is bounded ([`WAIT`]); a test that hangs fails with what it waited for.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use rask_comm::{Comm, CommConfig};
use rask_protocol::{Key, Opaque, OpaqueKind, Value};
use rask_server::dask_config::DaskConfig;
use rask_server::error::{HelperError, StartupError};
use rask_server::helper::HelperPool;
use rask_server::{Ports, ServerConfig};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The longest any single wait of a test may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// Awaits `f` for at most [`WAIT`], failing the test with `what` if it takes longer.
pub async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

// ---- values ----------------------------------------------------------------------------------

/// The entries of a map reply by their string keys, sorted, for order-free comparison.
pub fn entries(v: &Value) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = v
        .as_map()
        .unwrap_or_else(|| panic!("not a map: {v:?}"))
        .iter()
        .map(|(k, v)| (k.as_str().unwrap_or("?").to_string(), v.clone()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A string value.
pub fn s(v: &str) -> Value {
    Value::from(v)
}

/// A list of string keys as a wire value.
pub fn keys(ks: &[&str]) -> Value {
    Value::Array(ks.iter().map(|k| Value::from(*k)).collect())
}

/// A `{"op": op, ...}` message.
pub fn msg(op: &str, fields: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    let mut m = Value::map([("op", Value::from(op))]);
    for (k, v) in fields {
        m.set(k, v);
    }
    m
}

/// The op of a message.
pub fn op_of(m: &Value) -> &str {
    m.get("op").and_then(Value::as_str).unwrap_or("")
}

// ---- the fake graph helper -------------------------------------------------------------------

/// One task of a test graph, as [`Client::submit`] sends it and the fake helper reads it.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    /// the key
    pub key: String,
    /// keys it depends on
    pub deps: Vec<String>,
    /// `retries=`
    pub retries: i64,
    /// `workers=` restriction
    pub workers: Vec<String>,
}

/// A task with dependencies.
pub fn task(key: &str, deps: &[&str]) -> TaskSpec {
    TaskSpec {
        key: key.into(),
        deps: deps.iter().map(|d| d.to_string()).collect(),
        retries: 0,
        workers: Vec::new(),
    }
}

impl TaskSpec {
    /// `retries=n`
    pub fn retries(mut self, n: i64) -> Self {
        self.retries = n;
        self
    }
    /// `workers=[...]`
    pub fn on(mut self, workers: &[&str]) -> Self {
        self.workers = workers.iter().map(|w| w.to_string()).collect();
        self
    }
}

/// The marker a test graph's expression carries instead of a pickle: the fake helper
/// answers an expression whose first task is this key with a graph error.
pub const UNPICKLABLE: &str = "unpicklable";

fn graph_frame(tasks: &[TaskSpec]) -> Bytes {
    let v = Value::Array(
        tasks
            .iter()
            .map(|t| {
                Value::map([
                    ("key", Value::from(t.key.as_str())),
                    (
                        "deps",
                        Value::Array(t.deps.iter().map(|d| Value::from(d.as_str())).collect()),
                    ),
                    ("retries", Value::Int(t.retries)),
                    (
                        "workers",
                        Value::Array(t.workers.iter().map(|w| Value::from(w.as_str())).collect()),
                    ),
                ])
            })
            .collect(),
    );
    Bytes::from(rask_protocol::msgpack::encode_value(&v))
}

/// The records of a test graph (PROTOCOL.md §4.3), as the Python helper would send them.
fn records(expr_frames: &Value) -> Result<Vec<Value>, String> {
    let frame = expr_frames
        .as_array()
        .and_then(|f| f.first())
        .and_then(Value::as_bin)
        .ok_or("no expression frame")?;
    let tasks = rask_protocol::msgpack::decode_value(frame.clone()).map_err(|e| e.to_string())?;
    let tasks = tasks.as_array().ok_or("the expression is not a list")?;
    let mut out = Vec::new();
    for t in tasks {
        let key = t
            .get("key")
            .and_then(Value::as_str)
            .ok_or("a task without key")?;
        if key == UNPICKLABLE {
            return Err(format!("cannot unpickle the graph of {key}"));
        }
        let workers = t
            .get("workers")
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        let mut restrictions = Value::map([(
            "retries",
            t.get("retries").cloned().unwrap_or(Value::Int(0)),
        )]);
        if workers.as_array().is_some_and(|w| !w.is_empty()) {
            restrictions.set("workers", workers);
        }
        out.push(Value::map([
            ("key", Value::from(key)),
            (
                "deps",
                t.get("deps").cloned().unwrap_or(Value::Array(Vec::new())),
            ),
            (
                "run_spec",
                Value::Bin(Bytes::from(format!("run-spec:{key}"))),
            ),
            ("prefix", Value::from(key.split('-').next().unwrap_or(key))),
            ("kind", Value::from("Task")),
            ("restrictions", restrictions),
        ]));
    }
    Ok(out)
}

/// The Python error reply of a helper (`distributed.core.error_message`).
fn helper_error(text: &str) -> Value {
    Value::map([
        ("status", Value::from("error")),
        (
            "exception",
            Value::Bin(rask_protocol::pickle::builtin_exception(
                "RuntimeError",
                text,
            )),
        ),
        ("traceback", Value::Nil),
        ("exception_text", Value::from(text)),
        ("traceback_text", Value::from("")),
    ])
}

/// The in-process graph helper: `update_graph` from the test graph in the expression,
/// `run_function` echoes the function's bytes as the pickled result (a function whose
/// pickle names `dask_scheduler` is left to the plugin host, as the real helper does), and
/// `shuffle_create_run` makes a run owned by the first worker.
pub fn fake_helper(request: Value) -> Result<Value, HelperError> {
    let op = request.get("op").and_then(Value::as_str).unwrap_or("");
    Ok(match op {
        "update_graph" => match records(request.get("expr_frames").unwrap_or(&Value::Nil)) {
            Ok(tasks) => Value::map([
                ("status", Value::from("OK")),
                ("tasks", Value::Array(tasks)),
            ]),
            Err(text) => helper_error(&text),
        },
        "run_function"
            if request
                .get("function")
                .and_then(Value::as_bin)
                .is_some_and(|f| f.windows(14).any(|w| w == b"dask_scheduler")) =>
        {
            Value::map([("status", Value::from("need-scheduler"))])
        }
        "run_function" => Value::map([
            ("status", Value::from("OK")),
            (
                "result",
                request.get("function").cloned().unwrap_or(Value::Nil),
            ),
        ]),
        "shuffle_create_run" => {
            let first = request
                .get("workers")
                .and_then(Value::as_array)
                .and_then(|w| w.first())
                .cloned()
                .unwrap_or(Value::Nil);
            Value::map([
                ("status", Value::from("OK")),
                (
                    "run_spec",
                    Value::Bin(Bytes::from(format!(
                        "run-spec-{}",
                        request.get("run_id").and_then(Value::as_i64).unwrap_or(0)
                    ))),
                ),
                ("worker_for", Value::Map(vec![(Value::Int(0), first)])),
            ])
        }
        _ => helper_error(&format!("the fake helper does not serve {op:?}")),
    })
}

// ---- the server ------------------------------------------------------------------------------

/// How a test server is started.
pub struct Settings {
    /// Dask configuration values that differ from the defaults
    pub config: Vec<(&'static str, Value)>,
    /// the graph helper
    pub helper: fn(Value) -> Result<Value, HelperError>,
    /// `--idle-timeout`
    pub idle_timeout: Option<Duration>,
    /// the Python of the plugin host (none is started unless a test needs it)
    pub python: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            config: Vec::new(),
            helper: fake_helper,
            idle_timeout: None,
            python: "python3".into(),
        }
    }
}

/// A scheduler running in the test's runtime.
pub struct TestServer {
    /// `tcp://127.0.0.1:PORT`
    pub address: String,
    /// the HTTP port
    pub dashboard_port: u16,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), StartupError>>>,
    zero: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl TestServer {
    /// A scheduler with Dask's default configuration.
    pub async fn start() -> TestServer {
        TestServer::with(Settings::default()).await
    }

    /// A scheduler with these settings.
    pub async fn with(settings: Settings) -> TestServer {
        let mut config = DaskConfig::default().to_helper_map();
        for (k, v) in settings.config {
            config.set(k, v);
        }
        let ready = Value::map([
            ("op", Value::from("ready")),
            (
                "versions",
                Value::map([("packages", Value::map([("rask-test", Value::from("1"))]))]),
            ),
            ("config", config),
            ("worker_plugins", Value::Map(Vec::new())),
        ]);
        let server_config = ServerConfig {
            bind_host: "127.0.0.1".into(),
            advertise_host: "127.0.0.1".into(),
            port: 0,
            dashboard_port: 0,
            idle_timeout: settings.idle_timeout,
            python: settings.python,
            ..ServerConfig::default()
        };
        let ports = Ports::bind(&server_config).await.unwrap();
        let helpers = HelperPool::in_process(settings.helper);
        let (stop, stopped) = oneshot::channel::<()>();
        let (started_tx, started_rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            rask_server::serve(
                ports,
                server_config,
                helpers,
                ready,
                async {
                    let _ = stopped.await;
                },
                move |started| {
                    let _ = started_tx.send(started.clone());
                },
            )
            .await
        });
        let started = bounded("the server to start", started_rx).await.unwrap();
        TestServer {
            address: started.address,
            dashboard_port: started.dashboard_port,
            stop: Some(stop),
            task: Some(task),
            zero: Vec::new(),
        }
    }

    /// Starts `n` zero workers (`rask zero-worker`) with `nthreads` each.
    pub async fn zero_workers(&mut self, n: usize, nthreads: u32) {
        let mut config = rask_zero_worker::Config::new(self.address.clone());
        config.nworkers = n;
        config.nthreads = nthreads;
        config.host = Some("127.0.0.1".into());
        config.name_prefix = Some(format!("zero{}", self.zero.len()));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = rask_zero_worker::run(config, async {
                let _ = stopped.await;
            })
            .await;
        });
        self.zero.push((stop, task));
        let address = self.address.clone();
        bounded("the zero workers to register", async {
            loop {
                let id = rpc(&address, msg("identity", [])).await;
                if id.get("n_workers").and_then(Value::as_i64).unwrap_or(0) as usize >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    /// Stops the scheduler (as SIGTERM does) and waits for it to end.
    pub async fn stop(mut self) -> Result<(), StartupError> {
        for (stop, task) in self.zero.drain(..) {
            let _ = stop.send(());
            let _ = bounded("the zero workers to stop", task).await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(t) => bounded("the server to stop", t).await.unwrap(),
            None => Ok(()),
        }
    }

    /// `identity()` of the scheduler.
    pub async fn identity(&self) -> Value {
        rpc(&self.address, msg("identity", [])).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
        for (_, t) in &self.zero {
            t.abort();
        }
    }
}

// ---- peers -----------------------------------------------------------------------------------

/// Dials the scheduler with Dask's handshake.
pub async fn connect(address: &str) -> Comm {
    bounded(
        "a connection to the scheduler",
        Comm::connect(address, WAIT, &CommConfig::default()),
    )
    .await
    .unwrap()
}

/// One request on a fresh connection, and its reply.
pub async fn rpc(address: &str, request: Value) -> Value {
    let mut comm = connect(address).await;
    let reply = bounded(
        &format!("the reply to {}", op_of(&request)),
        comm.request(&request),
    )
    .await
    .unwrap();
    comm.close().await;
    reply
}

/// Whether a reply is Dask's `error_message` of a raised exception.
pub fn is_error(reply: &Value) -> bool {
    matches!(
        reply.get("status").and_then(Value::as_str),
        Some("uncaught-error" | "error")
    )
}

/// The text of an error reply.
pub fn error_text(reply: &Value) -> String {
    reply
        .get("exception_text")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// A stream of messages (a client's or a worker's), read one at a time out of batches.
pub struct Stream {
    /// the connection
    pub comm: Comm,
    inbox: VecDeque<Value>,
}

impl Stream {
    fn new(comm: Comm) -> Stream {
        Stream {
            comm,
            inbox: VecDeque::new(),
        }
    }

    /// Writes messages as one batch.
    pub async fn send(&mut self, msgs: Vec<Value>) {
        self.comm.writer.write(&Value::Array(msgs)).await.unwrap();
    }

    /// The next message, or `None` once the scheduler closed the stream.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(m) = self.inbox.pop_front() {
                return Some(m);
            }
            match bounded("a stream message", self.comm.reader.read()).await {
                Ok(Some(Value::Array(batch))) => self.inbox.extend(batch),
                Ok(Some(other)) => return Some(other),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next message with this op; others are skipped.
    pub async fn next_op(&mut self, op: &str) -> Value {
        loop {
            match self.next().await {
                Some(m) if op_of(&m) == op => return m,
                Some(_) => {}
                None => panic!("the stream closed while waiting for {op:?}"),
            }
        }
    }

    /// Messages already received, without waiting for more.
    pub fn drain(&mut self) -> Vec<Value> {
        self.inbox.drain(..).collect()
    }
}

/// A client's stream.
pub struct Client {
    /// `Client-test-N`
    pub name: String,
    /// its stream
    pub stream: Stream,
}

static CLIENTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Client {
    /// `register-client`; the scheduler's `stream-start` is read.
    pub async fn connect(address: &str) -> Client {
        let n = CLIENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("Client-test-{n}");
        let mut comm = connect(address).await;
        comm.writer
            .write(&msg(
                "register-client",
                [
                    ("client", Value::from(name.as_str())),
                    ("reply", Value::Bool(false)),
                ],
            ))
            .await
            .unwrap();
        let mut stream = Stream::new(comm);
        let start = stream.next().await.expect("stream-start");
        assert_eq!(op_of(&start), "stream-start", "{start:?}");
        Client { name, stream }
    }

    /// `update-graph` of a test graph, wanting `wanted`.
    pub async fn submit(&mut self, tasks: &[TaskSpec], wanted: &[&str]) {
        let expr = Opaque {
            kind: OpaqueKind::Serialized,
            header: vec![(Value::from("serializer"), Value::from("pickle"))],
            frames: vec![graph_frame(tasks)],
        };
        let m = msg(
            "update-graph",
            [
                ("expr_ser", Value::Opaque(expr)),
                ("keys", keys(wanted)),
                ("fifo_timeout", Value::from("100 ms")),
            ],
        );
        self.stream.send(vec![m]).await;
    }

    /// Waits for `key-in-memory` or `task-erred` of `key` and returns it.
    pub async fn outcome(&mut self, key: &str) -> Value {
        loop {
            let m = self.stream.next().await.expect("the client stream closed");
            let about = m.get("key").and_then(Value::as_str) == Some(key);
            if about && matches!(op_of(&m), "key-in-memory" | "task-erred") {
                return m;
            }
        }
    }

    /// Closes the stream as a stock client does.
    pub async fn close(mut self) {
        self.stream
            .send(vec![msg("close-client", []), msg("close-stream", [])])
            .await;
    }
}

/// A worker the test drives by hand: its scheduler stream, plus a listener (its contact
/// address) that answers `get_data` from [`Worker::data`], stores `update_data`, and
/// answers any other request with `{"worker-got": op}`; it records every request it gets
/// ([`Worker::requests`]).
pub struct Worker {
    /// its contact address
    pub address: String,
    /// its stream
    pub stream: Stream,
    /// `{key: value}` it holds
    pub data: Arc<Mutex<Vec<(Value, Value)>>>,
    /// every request its listener got, in order (`get_data`, `shuffle_inputs_done`, ...)
    pub requests: Arc<Mutex<Vec<Value>>>,
    listener: JoinHandle<()>,
}

impl Worker {
    /// `register-worker` with `nthreads`, status `running`.
    pub async fn join(scheduler: &str, name: &str, nthreads: i64) -> Worker {
        Worker::join_with(scheduler, name, nthreads, &[]).await
    }

    /// `register-worker` with extra fields (`nanny`, `resources`, `status`, ...).
    pub async fn join_with(
        scheduler: &str,
        name: &str,
        nthreads: i64,
        extra: &[(&'static str, Value)],
    ) -> Worker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("tcp://{}", listener.local_addr().unwrap());
        let data: Arc<Mutex<Vec<(Value, Value)>>> = Arc::default();
        let requests: Arc<Mutex<Vec<Value>>> = Arc::default();
        let served = data.clone();
        let recorded = requests.clone();
        let listener = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let data = served.clone();
                let requests = recorded.clone();
                tokio::spawn(async move {
                    if let Ok(mut comm) = Comm::accept(stream, &CommConfig::default()).await {
                        serve_worker_rpc(&mut comm, &data, &requests).await;
                    }
                });
            }
        });
        let mut comm = connect(scheduler).await;
        let mut m = msg(
            "register-worker",
            [
                ("address", Value::from(address.as_str())),
                ("name", Value::from(name)),
                ("nthreads", Value::Int(nthreads)),
                ("memory_limit", Value::Int(1 << 30)),
                ("status", Value::from("running")),
                ("resources", Value::Map(Vec::new())),
                ("local_directory", Value::from("/tmp")),
                ("services", Value::Map(Vec::new())),
                ("nanny", Value::Nil),
                ("metrics", Value::Map(Vec::new())),
                ("reply", Value::Bool(false)),
            ],
        );
        for (k, v) in extra {
            m.set(k, v.clone());
        }
        let reply = bounded("register-worker's reply", comm.request(&m))
            .await
            .unwrap();
        assert_eq!(
            reply.get("status").and_then(Value::as_str),
            Some("OK"),
            "registration refused: {reply:?}"
        );
        Worker {
            address,
            stream: Stream::new(comm),
            data,
            requests,
            listener,
        }
    }

    /// The next `compute-task`.
    pub async fn compute_task(&mut self) -> Value {
        self.stream.next_op("compute-task").await
    }

    /// `task-finished` for a `compute-task` message, with its result stored here.
    pub async fn finish(&mut self, compute: &Value) {
        self.report_finished(compute, None).await;
    }

    /// `task-finished` for `compute`, its result stored here; `startstops` if given.
    async fn report_finished(&mut self, compute: &Value, startstops: Option<Value>) {
        let key = compute.get("key").cloned().unwrap_or(Value::Nil);
        self.data
            .lock()
            .unwrap()
            .push((key.clone(), Value::from(format!("value-of-{key:?}"))));
        let mut m = msg(
            "task-finished",
            [
                ("key", key),
                (
                    "run_id",
                    compute.get("run_id").cloned().unwrap_or(Value::Int(0)),
                ),
                ("nbytes", Value::Int(8)),
                ("type", Value::Bin(Bytes::from_static(b"pickled-int"))),
                ("stimulus_id", Value::from("test-finished")),
            ],
        );
        if let Some(startstops) = startstops {
            m.set("startstops", startstops);
        }
        self.stream.send(vec![m]).await;
    }

    /// Runs every task it is sent until `until` of them finished.
    pub async fn run_tasks(&mut self, until: usize) {
        for _ in 0..until {
            let t = self.compute_task().await;
            self.finish(&t).await;
        }
    }

    /// The worker vanishes: its connections drop without a goodbye.
    pub fn die(self) {
        drop(self);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

async fn serve_worker_rpc(
    comm: &mut Comm,
    data: &Mutex<Vec<(Value, Value)>>,
    requests: &Mutex<Vec<Value>>,
) {
    while let Ok(Some(req)) = comm.reader.read().await {
        requests.lock().unwrap().push(req.clone());
        let op = op_of(&req).to_string();
        let reply = match op.as_str() {
            "close" => return,
            "get_data" => {
                let wanted: Vec<Key> = req
                    .get("keys")
                    .and_then(Value::as_array)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(Key::from_value)
                    .collect();
                let found: Vec<(Value, Value)> = data
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| Key::from_value(k).is_some_and(|k| wanted.contains(&k)))
                    .cloned()
                    .collect();
                let r = Value::map([("status", Value::from("OK")), ("data", Value::Map(found))]);
                if comm.writer.write(&r).await.is_err() {
                    return;
                }
                // the requester's "OK"
                let _ = comm.reader.read().await;
                continue;
            }
            "update_data" => {
                let entries = req
                    .get("data")
                    .and_then(Value::as_map)
                    .unwrap_or_default()
                    .to_vec();
                let nbytes = entries
                    .iter()
                    .map(|(k, _)| (k.clone(), Value::Int(8)))
                    .collect();
                data.lock().unwrap().extend(entries);
                Value::map([
                    ("status", Value::from("OK")),
                    ("nbytes", Value::Map(nbytes)),
                ])
            }
            "shuffle_inputs_done" => Value::Nil,
            _ => Value::map([("worker-got", Value::from(op.as_str()))]),
        };
        if req.get("reply").is_none_or(Value::truthy) && comm.writer.write(&reply).await.is_err() {
            return;
        }
    }
}

/// A nanny's listener that answers `kill` (and records who asked); the worker it
/// supervises is the test's to restart.
pub struct Nanny {
    /// its address
    pub address: String,
    /// the `kill` requests it got
    pub kills: Arc<Mutex<Vec<Value>>>,
    task: JoinHandle<()>,
}

/// How a hand-made peer answers a request (`None`: it closes the connection).
pub type Answers = Arc<dyn Fn(&Value) -> Option<Value> + Send + Sync>;

/// A hand-made peer's listener: every request (but `close`) is recorded and answered with
/// `answers`.
pub async fn serve_answering(
    listener: TcpListener,
    answers: Answers,
    requests: Arc<Mutex<Vec<Value>>>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let answers = answers.clone();
        let requests = requests.clone();
        tokio::spawn(async move {
            let Ok(mut comm) = Comm::accept(stream, &CommConfig::default()).await else {
                return;
            };
            while let Ok(Some(req)) = comm.reader.read().await {
                if op_of(&req) == "close" {
                    return;
                }
                requests.lock().unwrap().push(req.clone());
                let Some(reply) = answers(&req) else { return };
                if comm.writer.write(&reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

impl Nanny {
    /// A nanny that answers `kill` after `delay`.
    pub async fn start(delay: Duration) -> Nanny {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("tcp://{}", listener.local_addr().unwrap());
        let kills: Arc<Mutex<Vec<Value>>> = Arc::default();
        let got = kills.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let got = got.clone();
                tokio::spawn(async move {
                    let Ok(mut comm) = Comm::accept(stream, &CommConfig::default()).await else {
                        return;
                    };
                    while let Ok(Some(req)) = comm.reader.read().await {
                        if op_of(&req) == "close" {
                            return;
                        }
                        if op_of(&req) == "kill" {
                            got.lock().unwrap().push(req.clone());
                            tokio::time::sleep(delay).await;
                        }
                        if comm.writer.write(&Value::Nil).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Nanny {
            address,
            kills,
            task,
        }
    }
}

impl Drop for Nanny {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---- round trips, hand-made replies, raw bytes -----------------------------------------------
//
// For tests of single ops (`rpcs.rs`, `streams.rs`, `hostile.rs`): a stream message that
// changes nothing visible is followed by a round trip on the same stream (a barrier), after
// which the scheduler has handled it; raw connections send what no Dask peer would.

static BARRIERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn barrier_key() -> String {
    let n = BARRIERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("barrier-{n}")
}

impl Stream {
    /// The first message for which `pred` holds; the messages before it stay queued, in
    /// order, for later reads.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut skipped = Vec::new();
        loop {
            match self.next().await {
                Some(m) if pred(&m) => {
                    for s in skipped.into_iter().rev() {
                        self.inbox.push_front(s);
                    }
                    return m;
                }
                Some(m) => skipped.push(m),
                None => panic!("the stream closed while waiting for {what}; got {skipped:?}"),
            }
        }
    }

    /// Waits until the scheduler closes the stream, dropping whatever it still sends.
    pub async fn wait_closed(&mut self) {
        while self.next().await.is_some() {}
    }
}

impl Client {
    /// A round trip on the client's stream (`heartbeat-client` and its
    /// `adjust-heartbeat-interval`): every message sent before it has been handled once
    /// this returns. Other messages stay queued.
    pub async fn barrier(&mut self) {
        self.stream.send(vec![msg("heartbeat-client", [])]).await;
        self.stream
            .wait_for("adjust-heartbeat-interval", |m| {
                op_of(m) == "adjust-heartbeat-interval"
            })
            .await;
    }
}

impl Worker {
    /// A round trip on the worker's stream (`request-refresh-who-has` for a key nobody
    /// knows, answered with `free-keys` of it): every message sent before it has been
    /// handled once this returns. Other messages stay queued.
    pub async fn barrier(&mut self) {
        let key = barrier_key();
        self.stream
            .send(vec![msg(
                "request-refresh-who-has",
                [
                    ("keys", keys(&[&key])),
                    ("stimulus_id", Value::from(key.as_str())),
                ],
            )])
            .await;
        let k = Value::from(key.as_str());
        self.stream
            .wait_for("the barrier's free-keys", |m| {
                op_of(m) == "free-keys"
                    && m.get("keys")
                        .and_then(Value::as_array)
                        .is_some_and(|ks| ks.contains(&k))
            })
            .await;
    }

    /// `task-finished` for a `compute-task` message whose `startstops` say it computed for
    /// `seconds` (the scheduler learns the task prefix's duration from it); the result is
    /// stored here.
    pub async fn finish_in(&mut self, compute: &Value, seconds: f64) {
        let startstops = Value::Array(vec![Value::map([
            ("action", Value::from("compute")),
            ("start", Value::Float(1000.0)),
            ("stop", Value::Float(1000.0 + seconds)),
        ])]);
        self.report_finished(compute, Some(startstops)).await;
    }

    /// `task-erred` for a `compute-task` message, with these bytes as the pickled
    /// exception and traceback.
    pub async fn fail(&mut self, compute: &Value, exception: &[u8], traceback: &[u8]) {
        let m = msg(
            "task-erred",
            [
                ("key", compute.get("key").cloned().unwrap_or(Value::Nil)),
                (
                    "run_id",
                    compute.get("run_id").cloned().unwrap_or(Value::Int(0)),
                ),
                ("exception", Value::Bin(Bytes::copy_from_slice(exception))),
                ("traceback", Value::Bin(Bytes::copy_from_slice(traceback))),
                ("exception_text", Value::from("ZeroDivisionError()")),
                ("traceback_text", Value::from("")),
                ("thread", Value::Int(1)),
                ("stimulus_id", Value::from("test-erred")),
            ],
        );
        self.stream.send(vec![m]).await;
    }

    /// Its listener stops: its address refuses connections while its stream stays open
    /// (a worker process that no longer answers, not yet noticed).
    pub fn stop_listening(&mut self) {
        self.listener.abort();
    }
}

/// A plain TCP connection to the scheduler for bytes no Dask peer sends.
pub struct Raw {
    /// the socket
    pub stream: tokio::net::TcpStream,
}

/// Dask's TCP framing (`u64 total | u64 nframes | u64 len × n | frames`) around frames.
pub fn framed(frames: Vec<Bytes>) -> Vec<u8> {
    use tokio_util::codec::Encoder;
    let mut buf = bytes::BytesMut::new();
    rask_protocol::FrameCodec::default()
        .encode(frames, &mut buf)
        .unwrap();
    buf.to_vec()
}

impl Raw {
    /// A TCP connection that has sent nothing yet.
    pub async fn connect(address: &str) -> Raw {
        let hostport = address.trim_start_matches("tcp://");
        let stream = bounded("a TCP connection", tokio::net::TcpStream::connect(hostport))
            .await
            .unwrap();
        Raw { stream }
    }

    /// A TCP connection that has sent Dask's handshake: what follows is read as requests.
    pub async fn handshaken(address: &str) -> Raw {
        let mut raw = Raw::connect(address).await;
        let hello = rask_protocol::encode_message(&rask_protocol::handshake::handshake());
        raw.send(&framed(hello)).await;
        raw
    }

    /// Writes bytes as they are.
    pub async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// Waits until the scheduler closes the connection (end of stream or a reset),
    /// dropping what it sent before.
    pub async fn wait_closed(&mut self) {
        use tokio::io::AsyncReadExt;
        bounded("the scheduler to close the connection", async {
            let mut buf = [0u8; 4096];
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
}

// ---- long polls, restarts, the server's own end, a paused clock ------------------------------
//
// For `admin.rs`, `coordination.rs`, `shuffle.rs` and `timers.rs`: an RPC answered later
// ([`Pending`]), a nanny that restarts its worker as a stock one does
// ([`Nanny::restarting`]), a scheduler that stops by itself ([`TestServer::ended`]), and a
// paused clock moved by hand ([`advance`]).

/// An RPC on a connection of its own whose reply comes later: a long poll (`event_wait`,
/// `queue_get`, `semaphore_acquire`, ...) or a request that waits on peers (`restart`,
/// `retire_workers`, `shuffle_barrier`).
pub struct Pending {
    what: String,
    task: JoinHandle<Value>,
}

impl Pending {
    /// Sends `request`; once this returns, the request is written.
    pub async fn send(address: &str, request: Value) -> Pending {
        let what = format!("the reply to {}", op_of(&request));
        let mut comm = connect(address).await;
        comm.writer.write(&request).await.unwrap();
        let task = tokio::spawn(async move {
            let reply = comm.reader.read().await.unwrap();
            comm.close().await;
            reply.expect("the scheduler closed the connection without a reply")
        });
        Pending { what, task }
    }

    /// Whether the reply is in (without waiting for it).
    pub fn is_answered(&self) -> bool {
        self.task.is_finished()
    }

    /// The reply, within [`WAIT`].
    pub async fn answer(mut self) -> Value {
        bounded(&self.what, &mut self.task).await.unwrap()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// With a paused clock (`#[tokio::test(start_paused = true)]`), lets `d` of the scheduler's
/// time pass. tokio moves a paused clock only once every task is idle, so whatever was sent
/// before this call has been handled (and its replies received) before time moves.
pub async fn advance(d: Duration) {
    tokio::time::sleep(d).await;
}

impl TestServer {
    /// Whether the scheduler is still serving (it ends by itself on an idle timeout).
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Waits for the scheduler to end by itself (an idle timeout), without asking it to.
    pub async fn ended(mut self) -> Result<(), StartupError> {
        match self.task.take() {
            Some(t) => bounded("the server to end by itself", t).await.unwrap(),
            None => Ok(()),
        }
    }
}

impl Nanny {
    /// A nanny that, on `kill`, does what a stock nanny does when its worker process
    /// exits: it unregisters that worker from `scheduler` (the worker that registered with
    /// this nanny's address), then answers. The test starts the replacement worker.
    pub async fn restarting(scheduler: &str) -> Nanny {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("tcp://{}", listener.local_addr().unwrap());
        let kills: Arc<Mutex<Vec<Value>>> = Arc::default();
        let got = kills.clone();
        let scheduler = scheduler.to_string();
        let own = address.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let got = got.clone();
                let scheduler = scheduler.clone();
                let own = own.clone();
                tokio::spawn(async move {
                    let Ok(mut comm) = Comm::accept(stream, &CommConfig::default()).await else {
                        return;
                    };
                    while let Ok(Some(req)) = comm.reader.read().await {
                        if op_of(&req) == "close" {
                            return;
                        }
                        if op_of(&req) == "kill" {
                            got.lock().unwrap().push(req.clone());
                            if let Some(worker) = worker_of_nanny(&scheduler, &own).await {
                                let bye = msg(
                                    "unregister",
                                    [
                                        ("address", Value::from(worker.as_str())),
                                        ("stimulus_id", Value::from("nanny-close-test")),
                                    ],
                                );
                                rpc(&scheduler, bye).await;
                            }
                        }
                        if comm.writer.write(&Value::Nil).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Nanny {
            address,
            kills,
            task,
        }
    }

    /// Waits until it got `n` `kill` requests.
    pub async fn wait_for_kills(&self, n: usize) {
        bounded(&format!("{n} kill request(s)"), async {
            while self.kills.lock().unwrap().len() < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
}

/// The address of the worker that registered with this nanny, as `identity` lists it.
async fn worker_of_nanny(scheduler: &str, nanny: &str) -> Option<String> {
    let id = rpc(scheduler, msg("identity", [("n_workers", Value::Int(-1))])).await;
    id.get("workers")?
        .as_map()?
        .iter()
        .find(|(_, w)| w.get("nanny").and_then(Value::as_str) == Some(nanny))
        .and_then(|(a, _)| a.as_str().map(str::to_string))
}

/// The addresses of the workers the scheduler lists, sorted.
pub async fn worker_addresses(scheduler: &str) -> Vec<String> {
    let id = rpc(scheduler, msg("identity", [("n_workers", Value::Int(-1))])).await;
    let mut out: Vec<String> = id
        .get("workers")
        .and_then(Value::as_map)
        .unwrap_or_default()
        .iter()
        .filter_map(|(a, _)| a.as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}
