//! Looking inside the cluster, against a real server: the scheduler's log lines
//! (`get_logs`, `logs`), the workers' (`worker_logs`), `profile`, `call_stack`,
//! `benchmark_hardware`, `get_cluster_state`, `dump_state` and `proxy`. The workers are
//! hand-made here: a stream that registers like a stock worker and a listener whose answers
//! each test chooses, so the scheduler's combination of the answers can be checked
//! (`scheduler.py` lines in `src/reactor/inspect.rs` and `src/jobs/inspect.rs`).

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use rask_comm::Comm;
use rask_protocol::Value;
use std::sync::{Arc, Mutex, Once};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A registered worker whose listener answers with `answers`.
struct FakeWorker {
    address: String,
    /// its stream to the scheduler
    stream: Comm,
    /// the requests its listener got
    requests: Arc<Mutex<Vec<Value>>>,
    listener: JoinHandle<()>,
}

impl Drop for FakeWorker {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl FakeWorker {
    async fn join(scheduler: &str, name: &str, answers: Answers) -> FakeWorker {
        FakeWorker::join_with(scheduler, name, answers, Value::Nil).await
    }

    async fn join_with(scheduler: &str, name: &str, answers: Answers, nanny: Value) -> FakeWorker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("tcp://{}", listener.local_addr().unwrap());
        let requests: Arc<Mutex<Vec<Value>>> = Arc::default();
        let recorded = requests.clone();
        let listener = tokio::spawn(serve_answering(listener, answers, recorded));
        let mut comm = connect(scheduler).await;
        let m = msg(
            "register-worker",
            [
                ("address", Value::from(address.as_str())),
                ("name", Value::from(name)),
                ("nthreads", Value::Int(1)),
                ("memory_limit", Value::Int(1 << 30)),
                ("status", Value::from("running")),
                ("resources", Value::Map(Vec::new())),
                ("local_directory", Value::from("/tmp")),
                ("services", Value::Map(Vec::new())),
                ("nanny", nanny),
                (
                    "metrics",
                    // a tuple-keyed dict, as a stock worker's digests are
                    Value::map([(
                        "digests_total_since_heartbeat",
                        Value::Map(vec![(
                            Value::Array(vec![s("execute"), s("x"), s("seconds")]),
                            Value::Float(1.5),
                        )]),
                    )]),
                ),
                ("reply", Value::Bool(false)),
            ],
        );
        let reply = bounded("register-worker's reply", comm.request(&m))
            .await
            .unwrap();
        assert_eq!(reply.get("status").and_then(Value::as_str), Some("OK"));
        FakeWorker {
            address,
            stream: comm,
            requests,
            listener,
        }
    }

    /// The next message of `op` on its stream.
    async fn next_op(&mut self, op: &str) -> Value {
        loop {
            let batch = bounded(op, self.stream.reader.read())
                .await
                .unwrap()
                .expect("the worker's stream closed");
            let msgs = match batch {
                Value::Array(m) => m,
                other => vec![other],
            };
            if let Some(m) = msgs.into_iter().find(|m| op_of(m) == op) {
                return m;
            }
        }
    }

    /// The requests of `op` its listener got.
    fn got(&self, op: &str) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| op_of(r) == op)
            .cloned()
            .collect()
    }
}

/// A worker that answers every request with `{"got": op}`.
fn echoing() -> Answers {
    Arc::new(|r| Some(Value::map([("got", s(op_of(r)))])))
}

/// A worker that answers `op` with `answer`, and every other request like [`echoing`].
fn answering(op: &'static str, answer: Value) -> Answers {
    Arc::new(move |r| {
        Some(if op_of(r) == op {
            answer.clone()
        } else {
            Value::map([("got", s(op_of(r)))])
        })
    })
}

// ---- logs ------------------------------------------------------------------------------------

/// The scheduler's log lines reach `get_logs` through the layer the binary installs.
fn install_log_layer() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use tracing_subscriber::layer::SubscriberExt as _;
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::INFO)
            .with(rask_server::logs::recent().layer());
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}

fn lines(v: &Value) -> Vec<Vec<Value>> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(|l| l.as_array().unwrap_or_default().to_vec())
        .collect()
}

#[tokio::test]
async fn get_logs_has_the_scheduler_log_lines_newest_first() {
    install_log_layer();
    let server = TestServer::start().await;
    let w = FakeWorker::join(&server.address, "w0", echoing()).await;
    let logs = rpc(&server.address, msg("get_logs", [])).await;
    let logs = lines(&logs);
    assert!(!logs.is_empty());
    for l in &logs {
        assert_eq!(l.len(), 2, "{l:?}");
        assert!(matches!(l[0].as_str(), Some("INFO" | "WARNING" | "ERROR")));
    }
    // the worker's registration, in the stock format `asctime - name - level - message`
    let register = logs
        .iter()
        .filter_map(|l| l[1].as_str())
        .find(|t| t.contains("Register worker") && t.contains(&w.address))
        .expect("the worker's registration is logged");
    assert!(register.contains(" - INFO - Register worker"), "{register}");
    assert!(register.starts_with("20"), "{register}");

    // `logs` is the same handler; n bounds it, timestamps add the time first
    let _w1 = FakeWorker::join(&server.address, "w1", echoing()).await;
    let one = rpc(&server.address, msg("logs", [("n", Value::Int(1))])).await;
    assert_eq!(lines(&one).len(), 1);
    let stamped = rpc(
        &server.address,
        msg(
            "get_logs",
            [("n", Value::Int(2)), ("timestamps", Value::Bool(true))],
        ),
    )
    .await;
    let stamped = lines(&stamped);
    assert_eq!(stamped.len(), 2, "{stamped:?}");
    let (t0, t1) = (
        stamped[0][0].as_f64().unwrap(),
        stamped[1][0].as_f64().unwrap(),
    );
    assert!(t0 >= t1, "newest first");
    // nothing is newer than the future
    let none = rpc(
        &server.address,
        msg("get_logs", [("start", Value::Float(t0 + 3600.0))]),
    )
    .await;
    assert!(lines(&none).is_empty());
    // Python's `if n and count >= n`: 0 is all, a negative n nothing
    let all = lines(&rpc(&server.address, msg("get_logs", [])).await).len();
    let zero = rpc(&server.address, msg("get_logs", [("n", Value::Int(0))])).await;
    assert!(lines(&zero).len() >= all);
    let negative = rpc(&server.address, msg("get_logs", [("n", Value::Int(-1))])).await;
    assert!(lines(&negative).is_empty());
    let bad = rpc(&server.address, msg("get_logs", [("n", s("many"))])).await;
    assert!(is_error(&bad), "{bad:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn worker_logs_asks_every_worker_or_their_nannies() {
    let server = TestServer::start().await;
    let line = Value::Array(vec![Value::Array(vec![s("INFO"), s("hello")])]);
    let w0 = FakeWorker::join(&server.address, "w0", answering("get_logs", line.clone())).await;
    let w1 = FakeWorker::join(&server.address, "w1", answering("get_logs", line.clone())).await;
    let reply = rpc(&server.address, msg("worker_logs", [("n", Value::Int(5))])).await;
    let mut expected = vec![
        (w0.address.clone(), line.clone()),
        (w1.address.clone(), line.clone()),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(entries(&reply), expected);
    assert_eq!(w0.got("get_logs")[0].get("n"), Some(&Value::Int(5)));

    let only = rpc(
        &server.address,
        msg("worker_logs", [("workers", keys(&[&w1.address]))]),
    )
    .await;
    assert_eq!(entries(&only), vec![(w1.address.clone(), line.clone())]);

    // a nanny answers for its worker; a worker without one is not asked
    let nanny = FakeWorker::join(&server.address, "nanny-of-w2", echoing()).await;
    let w2 = FakeWorker::join_with(
        &server.address,
        "w2",
        echoing(),
        Value::from(nanny.address.as_str()),
    )
    .await;
    let by_nanny = rpc(
        &server.address,
        msg("worker_logs", [("nanny", Value::Bool(true))]),
    )
    .await;
    assert_eq!(
        entries(&by_nanny),
        vec![(w2.address.clone(), Value::map([("got", s("get_logs"))]))]
    );
    assert!(w2.got("get_logs").is_empty());
    server.stop().await.unwrap();
}

// ---- profile ---------------------------------------------------------------------------------

fn frame(id: &str, count: i64, children: Vec<Value>) -> Value {
    Value::map([
        (
            "description",
            Value::map([
                ("filename", s(id)),
                ("name", s(id)),
                ("line_number", Value::Int(1)),
                ("line", s("")),
            ]),
        ),
        (
            "children",
            Value::Map(
                children
                    .into_iter()
                    .map(|c| (c.get("identifier").unwrap().clone(), c))
                    .collect(),
            ),
        ),
        ("count", Value::Int(count)),
        ("identifier", s(id)),
    ])
}

fn child<'a>(tree: &'a Value, id: &str) -> &'a Value {
    tree.get("children")
        .and_then(|c| c.get(id))
        .unwrap_or_else(|| panic!("no child {id} in {tree:?}"))
}

#[tokio::test]
async fn profile_merges_the_workers_trees() {
    let server = TestServer::start().await;
    let a = frame(
        "root",
        3,
        vec![
            frame("f", 2, vec![frame("g", 2, vec![])]),
            frame("h", 1, vec![]),
        ],
    );
    let b = frame("root", 4, vec![frame("f", 4, vec![frame("k", 4, vec![])])]);
    let w0 = FakeWorker::join(&server.address, "w0", answering("profile", a.clone())).await;
    let w1 = FakeWorker::join(&server.address, "w1", answering("profile", b.clone())).await;
    // a worker that fails is left out
    let _broken = FakeWorker::join(&server.address, "w2", Arc::new(|_| None)).await;

    let merged = rpc(
        &server.address,
        msg("profile", [("start", Value::Float(1.0)), ("key", s("inc"))]),
    )
    .await;
    assert_eq!(merged.get("count"), Some(&Value::Int(7)));
    assert_eq!(merged.get("identifier"), Some(&s("root")));
    let f = child(&merged, "f");
    assert_eq!(f.get("count"), Some(&Value::Int(6)));
    assert_eq!(child(f, "g").get("count"), Some(&Value::Int(2)));
    assert_eq!(child(f, "k").get("count"), Some(&Value::Int(4)));
    assert_eq!(child(&merged, "h").get("count"), Some(&Value::Int(1)));
    // the workers got the window and the key
    let asked = &w0.got("profile")[0];
    assert_eq!(asked.get("start"), Some(&Value::Float(1.0)));
    assert_eq!(asked.get("key"), Some(&s("inc")));
    assert_eq!(asked.get("server"), Some(&Value::Bool(false)));

    let per_worker = rpc(
        &server.address,
        msg("profile", [("merge_workers", Value::Bool(false))]),
    )
    .await;
    let mut expected = vec![(w0.address.clone(), a), (w1.address.clone(), b)];
    expected.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(entries(&per_worker), expected);

    // no worker: `profile.create()`
    let empty = rpc(
        &server.address,
        msg("profile", [("workers", keys(&["tcp://127.0.0.1:1"]))]),
    )
    .await;
    assert_eq!(empty, rask_server::translate::inspect::empty_profile());

    let scheduler = rpc(
        &server.address,
        msg("profile", [("scheduler", Value::Bool(true))]),
    )
    .await;
    assert!(is_error(&scheduler), "{scheduler:?}");
    assert!(error_text(&scheduler).contains("ValueError"));
    server.stop().await.unwrap();
}

// ---- call stack ------------------------------------------------------------------------------

#[tokio::test]
async fn call_stack_asks_the_workers_running_the_keys() {
    let server = TestServer::start().await;
    let stack = Value::map([("x", Value::Array(vec![s("frame 1"), s("frame 2")]))]);
    let mut w0 = FakeWorker::join(
        &server.address,
        "w0",
        answering("call_stack", stack.clone()),
    )
    .await;
    let w1 = FakeWorker::join(
        &server.address,
        "w1",
        answering("call_stack", Value::Map(Vec::new())),
    )
    .await;
    let mut client = Client::connect(&server.address).await;
    client
        .submit(
            &[task("x", &[]).on(&[&w0.address]), task("y", &["x"])],
            &["y"],
        )
        .await;
    w0.next_op("compute-task").await;

    // every worker; one with nothing running is left out
    let all = rpc(&server.address, msg("call_stack", [])).await;
    assert_eq!(entries(&all), vec![(w0.address.clone(), stack.clone())]);
    assert_eq!(w1.got("call_stack")[0].get("keys"), Some(&Value::Nil));

    // a waiting key leads to the worker running its dependency, asked about that one
    let by_key = rpc(&server.address, msg("call_stack", [("keys", keys(&["y"]))])).await;
    assert_eq!(entries(&by_key), vec![(w0.address.clone(), stack)]);
    assert_eq!(
        w0.got("call_stack").last().unwrap().get("keys"),
        Some(&keys(&["x"]))
    );
    assert_eq!(w1.got("call_stack").len(), 1);

    let unknown = rpc(
        &server.address,
        msg("call_stack", [("keys", keys(&["nope"]))]),
    )
    .await;
    assert!(error_text(&unknown).contains("KeyError"), "{unknown:?}");
    server.stop().await.unwrap();
}

// ---- benchmark -------------------------------------------------------------------------------

#[tokio::test]
async fn benchmark_hardware_averages_each_mode() {
    let server = TestServer::start().await;
    let bench = |disk: f64, memory: f64, network: f64| -> Answers {
        Arc::new(move |r| {
            let bw = match op_of(r) {
                "benchmark_disk" => disk,
                "benchmark_memory" => memory,
                "benchmark_network" => network,
                _ => return Some(Value::Nil),
            };
            Some(Value::map([
                ("1 kiB", Value::Float(bw)),
                ("1 MiB", Value::Float(bw * 2.0)),
            ]))
        })
    };
    let w0 = FakeWorker::join(&server.address, "w0", bench(1.0, 10.0, 100.0)).await;
    let w1 = FakeWorker::join(&server.address, "w1", bench(3.0, 30.0, 300.0)).await;
    let result = rpc(&server.address, msg("benchmark_hardware", [])).await;
    let mode = |m: &str, size: &str| {
        result
            .get(m)
            .and_then(|d| d.get(size))
            .and_then(Value::as_f64)
    };
    assert_eq!(mode("disk", "1 kiB"), Some(2.0));
    assert_eq!(mode("disk", "1 MiB"), Some(4.0));
    assert_eq!(mode("memory", "1 kiB"), Some(20.0));
    // one pair: one of the two measures the network to the other
    let net = mode("network", "1 kiB").unwrap();
    assert!(net == 100.0 || net == 300.0, "{result:?}");
    let asked: Vec<Value> = [&w0, &w1]
        .iter()
        .flat_map(|w| w.got("benchmark_network"))
        .collect();
    assert_eq!(asked.len(), 1);
    let to = asked[0].get("address").and_then(Value::as_str).unwrap();
    assert!(to == w0.address || to == w1.address);
    server.stop().await.unwrap();
}

// ---- state dumps -----------------------------------------------------------------------------

#[tokio::test]
async fn get_cluster_state_has_the_scheduler_the_workers_and_versions() {
    let server = TestServer::start().await;
    let worker_state = Value::map([("id", s("Worker-0")), ("status", s("running"))]);
    let mut w0 = FakeWorker::join(
        &server.address,
        "w0",
        Arc::new({
            let worker_state = worker_state.clone();
            move |r| {
                Some(match op_of(r) {
                    "dump_state" => worker_state.clone(),
                    "versions" => Value::map([("packages", Value::Map(Vec::new()))]),
                    _ => Value::Nil,
                })
            }
        }),
    )
    .await;
    let broken = FakeWorker::join(
        &server.address,
        "w1",
        Arc::new(|_| Some(rask_comm::reply::raised("ValueError", "cannot dump"))),
    )
    .await;
    let mut client = Client::connect(&server.address).await;
    client
        .submit(&[task("x", &[]).on(&[&w0.address])], &["x"])
        .await;
    let compute = w0.next_op("compute-task").await;
    w0.stream
        .writer
        .write(&Value::Array(vec![msg(
            "task-finished",
            [
                ("key", s("x")),
                ("run_id", compute.get("run_id").cloned().unwrap()),
                ("nbytes", Value::Int(8)),
                ("type", Value::Bin(bytes::Bytes::from_static(b"int"))),
                ("stimulus_id", s("test")),
            ],
        )]))
        .await
        .unwrap();
    client.outcome("x").await;

    let state = rpc(
        &server.address,
        msg("get_cluster_state", [("exclude", keys(&["run_spec"]))]),
    )
    .await;
    assert_eq!(
        entries(&state)
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>(),
        ["scheduler", "versions", "workers"]
    );
    let workers = state.get("workers").unwrap();
    assert_eq!(workers.get(&w0.address), Some(&worker_state));
    // a worker's failure is its repr
    let failed = workers
        .get(&broken.address)
        .and_then(Value::as_str)
        .unwrap();
    assert!(failed.contains("cannot dump"), "{failed}");
    assert_eq!(
        w0.got("dump_state")[0].get("exclude"),
        Some(&keys(&["run_spec"]))
    );
    let versions = state.get("versions").unwrap();
    assert!(versions.get("scheduler").unwrap().get("packages").is_some());
    assert!(versions.get("workers").unwrap().get(&w0.address).is_some());

    let scheduler = state.get("scheduler").unwrap();
    assert_eq!(scheduler.get("type"), Some(&s("Scheduler")));
    assert_eq!(scheduler.get("address"), Some(&s(&server.address)));
    let x = scheduler.get("tasks").and_then(|t| t.get("x")).unwrap();
    assert_eq!(x.get("state"), Some(&s("memory")));
    assert!(x.get("run_spec").is_none(), "excluded");
    let who_has = x.get("who_has").and_then(Value::as_array).unwrap();
    assert!(who_has[0]
        .as_str()
        .unwrap()
        .starts_with("<WorkerState 'tcp://"));
    let w = scheduler
        .get("workers")
        .and_then(|ws| ws.get(&w0.address))
        .unwrap();
    assert_eq!(w.get("name"), Some(&s("w0")));
    // a tuple key of a worker's metrics is written as str(list), as recursive_to_dict does
    let digests = w
        .get("metrics")
        .and_then(|m| m.get("digests_total_since_heartbeat"))
        .unwrap();
    assert_eq!(
        digests.get("['execute', 'x', 'seconds']"),
        Some(&Value::Float(1.5))
    );
    assert!(scheduler
        .get("clients")
        .and_then(|c| c.get(&client.name))
        .is_some());
    assert_eq!(
        scheduler
            .get("task_groups")
            .and_then(|g| g.get("x"))
            .and_then(|g| g.get("states"))
            .and_then(|s| s.get("memory")),
        Some(&Value::Int(1))
    );

    // `dump_state`: the scheduler's part alone
    let own = rpc(
        &server.address,
        msg("dump_state", [("exclude", keys(&["tasks"]))]),
    )
    .await;
    assert_eq!(own.get("id"), scheduler.get("id"));
    assert!(own.get("tasks").is_none() && own.get("workers").is_some());
    // `exclude` is required
    let missing = rpc(&server.address, msg("get_cluster_state", [])).await;
    assert!(error_text(&missing).contains("exclude"), "{missing:?}");
    server.stop().await.unwrap();
}

/// The `write_cluster_dump` requests the graph helper got.
static WRITTEN: Mutex<Vec<Value>> = Mutex::new(Vec::new());

/// A graph helper that takes `write_cluster_dump` (and fails it for a bad format, as
/// `cluster_dump.write_state` raises ValueError).
fn dumping_helper(request: Value) -> Result<Value, rask_server::error::HelperError> {
    if op_of(&request) != "write_cluster_dump" {
        return fake_helper(request);
    }
    let bad = request.get("format") != Some(&s("msgpack"));
    WRITTEN.lock().unwrap().push(request);
    Ok(if bad {
        // the helper's error replies say "error" (`run_on_scheduler` reads them)
        let mut e = rask_comm::reply::raised("ValueError", "Unsupported format");
        e.set("status", s("error"));
        e
    } else {
        Value::map([("status", s("OK"))])
    })
}

#[tokio::test]
async fn dump_cluster_state_to_url_has_a_graph_helper_write_the_state() {
    let server = TestServer::with(Settings {
        helper: dumping_helper,
        ..Settings::default()
    })
    .await;
    let w0 = FakeWorker::join(
        &server.address,
        "w0",
        answering("dump_state", Value::map([("id", s("W"))])),
    )
    .await;
    let url = format!("memory://dump-{}", w0.address);
    let reply = rpc(
        &server.address,
        msg(
            "dump_cluster_state_to_url",
            [
                ("url", s(&url)),
                ("exclude", keys(&["run_spec"])),
                ("format", s("msgpack")),
                ("anon", Value::Bool(true)),
            ],
        ),
    )
    .await;
    assert_eq!(reply, Value::Nil);
    let written = WRITTEN
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.get("url") == Some(&s(&url)))
        .cloned()
        .expect("the helper was asked to write");
    assert_eq!(written.get("format"), Some(&s("msgpack")));
    // every other field is a storage option for fsspec
    assert_eq!(
        written.get("storage_options"),
        Some(&Value::map([("anon", Value::Bool(true))]))
    );
    let state = written.get("state").unwrap();
    assert_eq!(
        state.get("workers").and_then(|w| w.get(&w0.address)),
        Some(&Value::map([("id", s("W"))]))
    );
    assert_eq!(
        state.get("scheduler").and_then(|s| s.get("type")),
        Some(&s("Scheduler"))
    );

    let bad = rpc(
        &server.address,
        msg(
            "dump_cluster_state_to_url",
            [
                ("url", s(&format!("{url}-2"))),
                ("exclude", Value::Array(Vec::new())),
                ("format", s("json")),
            ],
        ),
    )
    .await;
    assert!(error_text(&bad).contains("Unsupported format"), "{bad:?}");
    assert_eq!(
        bad.get("status"),
        Some(&s("uncaught-error")),
        "raised by the client"
    );
    server.stop().await.unwrap();
}

// ---- proxy -----------------------------------------------------------------------------------

#[tokio::test]
async fn proxy_forwards_one_request_and_its_reply() {
    let server = TestServer::start().await;
    let w0 = FakeWorker::join(&server.address, "w0", echoing()).await;
    let reply = rpc(
        &server.address,
        msg(
            "proxy",
            [("msg", msg("identity", [])), ("worker", s(&w0.address))],
        ),
    )
    .await;
    assert_eq!(reply, Value::map([("got", s("identity"))]));
    assert_eq!(w0.got("identity")[0].get("reply"), Some(&Value::Bool(true)));

    let raising = FakeWorker::join(
        &server.address,
        "w1",
        Arc::new(|_| Some(rask_comm::reply::raised("KeyError", "'k'"))),
    )
    .await;
    let raised = rpc(
        &server.address,
        msg(
            "proxy",
            [
                ("msg", msg("get_data", [])),
                ("worker", s(&raising.address)),
            ],
        ),
    )
    .await;
    assert!(error_text(&raised).contains("KeyError"), "{raised:?}");

    let nobody = rpc(
        &server.address,
        msg(
            "proxy",
            [
                ("msg", msg("identity", [])),
                ("worker", s("tcp://127.0.0.1:1")),
            ],
        ),
    )
    .await;
    assert!(error_text(&nobody).contains("OSError"), "{nobody:?}");
    server.stop().await.unwrap();
}

#[test]
fn profile_merge_is_pythons() {
    use rask_server::translate::inspect::merge_profiles;
    let a = frame("root", 1, vec![frame("f", 1, vec![])]);
    let b = frame(
        "root",
        2,
        vec![frame("g", 2, vec![]), frame("f", 0, vec![])],
    );
    let m = merge_profiles(&[&a, &b]);
    let order: Vec<&str> = m
        .get("children")
        .and_then(Value::as_map)
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str().unwrap())
        .collect();
    assert_eq!(order, ["f", "g"], "first seen first");
    assert_eq!(m.get("count"), Some(&Value::Int(3)));
    assert_eq!(
        merge_profiles(&[]),
        rask_server::translate::inspect::empty_profile()
    );
}
