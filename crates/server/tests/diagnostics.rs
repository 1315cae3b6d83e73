//! Diagnostics against a real server with hand-driven workers: the task stream
//! (`get_task_stream`, `get_task_stream_index`), `get_task_prefix_states`, `get_story`,
//! `start_task_metadata`/`stop_task_metadata`, `get_error_cause`/`get_runspec` and the
//! memory sampler (`memory_sampler_start`/`memory_sampler_stop`), with the replies the
//! stock handlers give (scheduler.py:8053-8128, 8232; task_stream.py; memory_sampler.py;
//! recreate_tasks.py).

mod common;

use bytes::Bytes;
use common::*;
use rask_protocol::{OpaqueKind, Value};

/// `task-finished` as a stock worker sends it (`TaskFinishedMsg.to_dict`), computed from
/// `start` to `stop`.
fn finished(compute: &Value, start: f64, stop: f64, metadata: Value) -> Value {
    msg(
        "task-finished",
        [
            ("key", compute.get("key").cloned().unwrap_or(Value::Nil)),
            (
                "run_id",
                compute.get("run_id").cloned().unwrap_or(Value::Int(0)),
            ),
            ("nbytes", Value::Int(28)),
            ("type", Value::Bin(Bytes::from_static(b"pickled-int"))),
            ("typename", s("int")),
            ("metadata", metadata),
            ("thread", Value::Int(140_001)),
            (
                "startstops",
                Value::Array(vec![Value::map([
                    ("action", s("compute")),
                    ("start", Value::Float(start)),
                    ("stop", Value::Float(stop)),
                ])]),
            ),
            ("status", s("OK")),
            ("stimulus_id", s("task-finished-1")),
        ],
    )
}

/// `task-erred` as a stock worker sends it (`TaskErredMsg.to_dict`).
fn erred(compute: &Value, start: f64, stop: f64) -> Value {
    msg(
        "task-erred",
        [
            ("key", compute.get("key").cloned().unwrap_or(Value::Nil)),
            (
                "run_id",
                compute.get("run_id").cloned().unwrap_or(Value::Int(0)),
            ),
            ("exception", Value::Bin(Bytes::from_static(b"pickled-exc"))),
            ("traceback", Value::Bin(Bytes::from_static(b"pickled-tb"))),
            ("exception_text", s("ZeroDivisionError('division by zero')")),
            ("traceback_text", s("")),
            ("thread", Value::Int(140_001)),
            (
                "startstops",
                Value::Array(vec![Value::map([
                    ("action", s("compute")),
                    ("start", Value::Float(start)),
                    ("stop", Value::Float(stop)),
                ])]),
            ),
            ("status", s("error")),
            ("stimulus_id", s("task-erred-1")),
        ],
    )
}

fn key_of(v: &Value) -> &str {
    v.get("key").and_then(Value::as_str).unwrap_or("?")
}

fn keys_of(records: &Value) -> Vec<&str> {
    records
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {records:?}"))
        .iter()
        .map(key_of)
        .collect()
}

async fn stream(server: &TestServer, fields: Vec<(&'static str, Value)>) -> Value {
    rpc(&server.address, msg("get_task_stream", fields)).await
}

/// Runs `keys` (independent tasks) on `w`, the i-th to finish computing from `1000 + i` to
/// `1000 + i + 0.5`, waits for each in memory and returns them in the order they finished.
async fn run(c: &mut Client, w: &mut Worker, keys: &[&str]) -> Vec<String> {
    let tasks: Vec<TaskSpec> = keys.iter().map(|k| task(k, &[])).collect();
    c.submit(&tasks, keys).await;
    let mut order = Vec::new();
    for n in 0..keys.len() {
        let ct = w.compute_task().await;
        order.push(key_of(&ct).to_string());
        let i = n as f64;
        w.stream
            .send(vec![finished(
                &ct,
                1000.0 + i,
                1000.5 + i,
                Value::Map(Vec::new()),
            )])
            .await;
        let done = c.outcome(key_of(&ct)).await;
        assert_eq!(op_of(&done), "key-in-memory", "{done:?}");
    }
    order
}

#[tokio::test]
async fn the_task_stream_records_each_task_a_worker_finished_once_it_was_asked_for() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server.address).await;
    let mut w = Worker::join(&server.address, "w0", 1).await;

    // not recording yet (stock: the plugin is added by the first request)
    run(&mut c, &mut w, &["early"]).await;
    let index = rpc(&server.address, msg("get_task_stream_index", [])).await;
    assert_eq!(index, Value::Int(0));

    let order = run(&mut c, &mut w, &["x-1", "x-2", "x-3"]).await;
    let o: Vec<&str> = order.iter().map(String::as_str).collect();
    assert_eq!(
        rpc(&server.address, msg("get_task_stream_index", [])).await,
        Value::Int(3)
    );
    let all = stream(&server, vec![("start_index", Value::Int(0))]).await;
    assert_eq!(keys_of(&all), o);
    let first = &all.as_array().unwrap()[0];
    // the worker's message as the plugin gets it: no op, no run_id; the worker added
    assert_eq!(first.get("worker"), Some(&Value::from(w.address.as_str())));
    assert_eq!(first.get("status"), Some(&s("OK")));
    assert_eq!(first.get("nbytes"), Some(&Value::Int(28)));
    assert_eq!(first.get("thread"), Some(&Value::Int(140_001)));
    assert_eq!(first.get("typename"), Some(&s("int")));
    assert_eq!(first.get("stimulus_id"), Some(&s("task-finished-1")));
    assert_eq!(
        first.get("type"),
        Some(&Value::Bin(Bytes::from_static(b"pickled-int")))
    );
    let ss = first.get("startstops").and_then(Value::as_array).unwrap();
    assert_eq!(ss[0].get("stop"), Some(&Value::Float(1000.5)));
    assert!(first.get("op").is_none() && first.get("run_id").is_none());

    // start_index, as the context manager uses it
    let later = stream(&server, vec![("start_index", Value::Int(2))]).await;
    assert_eq!(keys_of(&later), o[2..]);
    // start/stop bisect on the records' last stop; count counts from the end
    let t = |v: f64| Value::Float(v);
    assert_eq!(
        keys_of(&stream(&server, vec![("start", t(1001.2))]).await),
        o[1..]
    );
    assert_eq!(
        keys_of(&stream(&server, vec![("stop", t(1001.2))]).await),
        o[..1]
    );
    assert_eq!(
        keys_of(&stream(&server, vec![("count", Value::Int(2))]).await),
        o[1..]
    );
    assert_eq!(
        keys_of(&stream(&server, vec![("start", t(0.0)), ("count", Value::Int(1))]).await),
        o[..1]
    );
    // a duration before now: every record (their stops are in 1970)
    assert_eq!(
        keys_of(&stream(&server, vec![("start", s("10s"))]).await),
        Vec::<&str>::new()
    );
    assert_eq!(keys_of(&stream(&server, vec![]).await), o);
    // absurd numbers are empty or everything, never a failure
    for (k, v) in [
        ("count", i64::MIN),
        ("count", i64::MAX),
        ("start_index", i64::MIN),
    ] {
        let r = stream(&server, vec![(k, Value::Int(v))]).await;
        assert!(r.as_array().is_some(), "{k}={v}: {r:?}");
    }
}

#[tokio::test]
async fn an_erred_task_is_in_the_stream_with_its_cause() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server.address).await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    rpc(&server.address, msg("get_task_stream_index", [])).await;
    c.submit(&[task("boom", &[])], &["boom"]).await;
    let ct = w.compute_task().await;
    w.stream.send(vec![erred(&ct, 5.0, 6.0)]).await;
    assert_eq!(op_of(&c.outcome("boom").await), "task-erred");
    let all = stream(&server, vec![]).await;
    let r = &all.as_array().unwrap()[0];
    assert_eq!(key_of(r), "boom");
    assert_eq!(r.get("status"), Some(&s("error")));
    assert_eq!(r.get("cause"), Some(&s("boom")));
    assert_eq!(r.get("worker"), Some(&Value::from(w.address.as_str())));
    assert_eq!(
        r.get("exception_text"),
        Some(&s("ZeroDivisionError('division by zero')"))
    );
    // a task-finished without startstops is not recorded (`assert kwargs["startstops"]`)
    c.submit(&[task("plain", &[])], &["plain"]).await;
    let ct = w.compute_task().await;
    w.finish(&ct).await;
    c.outcome("plain").await;
    assert_eq!(
        rpc(&server.address, msg("get_task_stream_index", [])).await,
        Value::Int(1)
    );
}

#[tokio::test]
async fn prefix_states_count_tasks_per_prefix() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server.address).await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    c.submit(&[task("a-1", &[]), task("b-1", &["a-1"])], &["b-1"])
        .await;
    let ct = w.compute_task().await;
    assert_eq!(key_of(&ct), "a-1");
    let states = rpc(&server.address, msg("get_task_prefix_states", [])).await;
    let count = |prefix: &str, state: &str| {
        states
            .get(prefix)
            .and_then(|p| p.get(state))
            .and_then(Value::as_i64)
    };
    assert_eq!(count("a", "processing"), Some(1));
    assert_eq!(count("a", "memory"), Some(0));
    assert_eq!(count("b", "waiting"), Some(1));
    assert_eq!(
        states.get("b").and_then(Value::as_map).map(|m| m.len()),
        Some(5)
    );
    w.finish(&ct).await;
    let ct = w.compute_task().await;
    w.finish(&ct).await;
    c.outcome("b-1").await;
    let states = rpc(&server.address, msg("get_task_prefix_states", [])).await;
    assert_eq!(
        states.get("b").and_then(|p| p.get("memory")),
        Some(&Value::Int(1))
    );
    // a-1 was released (its dependent still holds on to it); nothing else of a is left
    assert_eq!(
        states.get("a"),
        Some(&Value::map([
            ("memory", Value::Int(0)),
            ("erred", Value::Int(0)),
            ("released", Value::Int(1)),
            ("processing", Value::Int(0)),
            ("waiting", Value::Int(0)),
        ])),
        "{states:?}"
    );
}

#[tokio::test]
async fn a_story_lists_the_transitions_of_a_key() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server.address).await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    c.submit(&[task("a", &[]), task("b", &["a"])], &["b"]).await;
    w.run_tasks(2).await;
    c.outcome("b").await;
    let story = rpc(
        &server.address,
        msg("get_story", [("keys_or_stimuli", keys(&["a"]))]),
    )
    .await;
    let entries = story.as_array().unwrap();
    let of_a: Vec<(&str, &str)> = entries
        .iter()
        .map(|t| t.as_array().unwrap())
        .filter(|t| t[0] == s("a"))
        .map(|t| (t[1].as_str().unwrap(), t[2].as_str().unwrap()))
        .collect();
    assert_eq!(
        of_a,
        [
            ("released", "waiting"),
            ("waiting", "processing"),
            ("processing", "memory"),
            ("memory", "released"),
        ]
    );
    // `(key, start, finish, recommendations, stimulus_id, timestamp)`
    let t = entries[0].as_array().unwrap();
    assert_eq!(t.len(), 6);
    assert!(t[3].as_map().is_some() && t[4].as_str().is_some() && t[5].as_f64().is_some());
    // an entry of b recommending a is in a's story too (`scheduler_story` looks at the
    // recommendations)
    assert!(entries.iter().any(|t| t.as_array().unwrap()[0] == s("b")));
}

#[tokio::test]
async fn an_unlimited_log_length_is_no_limit() {
    // `distributed.admin.low-level-log-length: null` is a deque without maxlen
    let server = TestServer::with(Settings {
        config: vec![("low-level-log-length", Value::Nil)],
        ..Settings::default()
    })
    .await;
    let mut c = Client::connect(&server.address).await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let keys_: Vec<String> = (0..400).map(|i| format!("t-{i}")).collect();
    let names: Vec<&str> = keys_.iter().map(String::as_str).collect();
    let tasks: Vec<TaskSpec> = names.iter().map(|k| task(k, &[])).collect();
    c.submit(&tasks, &names).await;
    w.run_tasks(names.len()).await;
    c.outcome("t-399").await;
    let story = rpc(
        &server.address,
        msg("get_story", [("keys_or_stimuli", keys(&names))]),
    )
    .await;
    // released -> waiting -> queued/processing (-> processing) -> memory: > 1000 in all
    assert!(story.as_array().unwrap().len() > 1000);
}

#[tokio::test]
async fn task_metadata_collects_the_requested_keys_until_stopped() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server.address).await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let start = rpc(
        &server.address,
        msg("start_task_metadata", [("name", s("tm-1"))]),
    )
    .await;
    assert_eq!(start, Value::Nil);
    c.submit(&[task("a", &[]), task("b", &["a"])], &["b"]).await;
    let ct = w.compute_task().await;
    w.stream
        .send(vec![finished(&ct, 1.0, 2.0, Value::Map(Vec::new()))])
        .await;
    let ct = w.compute_task().await;
    let meta = Value::map([("rows", Value::Int(3))]);
    w.stream
        .send(vec![finished(&ct, 2.0, 3.0, meta.clone())])
        .await;
    c.outcome("b").await;
    let got = rpc(
        &server.address,
        msg("stop_task_metadata", [("name", s("tm-1"))]),
    )
    .await;
    // only the requested key, with the metadata its worker reported
    assert_eq!(got.get("state"), Some(&Value::map([("b", s("memory"))])));
    assert_eq!(got.get("metadata"), Some(&Value::map([("b", meta)])));
    let again = rpc(
        &server.address,
        msg("stop_task_metadata", [("name", s("tm-1"))]),
    )
    .await;
    assert!(is_error(&again));
    assert!(
        error_text(&again).contains("exactly one CollectTaskMetaDataPlugin with name tm-1"),
        "{again:?}"
    );
}

#[tokio::test]
async fn error_cause_and_runspec_for_recreate_error_locally() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server.address).await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    c.submit(&[task("a", &[]), task("b", &["a"])], &["b"]).await;
    let ct = w.compute_task().await;
    w.fail(&ct, b"exc", b"tb").await;
    assert_eq!(op_of(&c.outcome("b").await), "task-erred");
    // b erred because of a
    let cause = rpc(
        &server.address,
        msg("get_error_cause", [("keys", keys(&["b"]))]),
    )
    .await;
    assert_eq!(cause, s("a"));
    let none = rpc(
        &server.address,
        msg("get_error_cause", [("keys", keys(&["nope"]))]),
    )
    .await;
    assert_eq!(none, Value::Nil);
    let spec = rpc(&server.address, msg("get_runspec", [("key", s("b"))])).await;
    match &spec {
        Value::Opaque(o) => {
            assert_eq!(o.kind, OpaqueKind::Pickled);
            assert!(
                format!("{:?}", o.header).contains("run-spec:b")
                    || o.frames.iter().any(|f| &f[..] == b"run-spec:b"),
                "{o:?}"
            );
        }
        other => panic!("not a pickle: {other:?}"),
    }
    let missing = rpc(&server.address, msg("get_runspec", [("key", s("nope"))])).await;
    assert!(is_error(&missing), "{missing:?}");
    assert!(error_text(&missing).contains("KeyError"), "{missing:?}");
}

#[tokio::test]
async fn the_memory_sampler_sums_the_workers_heartbeats() {
    let server = TestServer::start().await;
    let c = Client::connect(&server.address).await;
    let w = Worker::join(&server.address, "w0", 1).await;
    let metrics = Value::map([
        ("memory", Value::Int(1_000_000)),
        (
            "spilled_bytes",
            Value::map([("memory", Value::Int(0)), ("disk", Value::Int(7))]),
        ),
    ]);
    rpc(
        &server.address,
        msg(
            "heartbeat_worker",
            [
                ("address", Value::from(w.address.as_str())),
                ("metrics", metrics),
            ],
        ),
    )
    .await;
    let start = |measure: &str| {
        msg(
            "memory_sampler_start",
            [
                ("client", Value::from(c.name.as_str())),
                ("measure", s(measure)),
                ("interval", Value::Float(0.01)),
            ],
        )
    };
    let key = rpc(&server.address, start("process")).await;
    assert!(key.as_str().is_some(), "{key:?}");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let samples = rpc(&server.address, msg("memory_sampler_stop", [("key", key)])).await;
    let samples = samples.as_array().unwrap();
    assert!(!samples.is_empty());
    for sample in samples {
        let pair = sample.as_array().unwrap();
        assert!(pair[0].as_f64().is_some());
        assert_eq!(pair[1], Value::Int(1_000_000));
    }
    let key = rpc(&server.address, start("spilled")).await;
    let samples = rpc(&server.address, msg("memory_sampler_stop", [("key", key)])).await;
    assert_eq!(
        samples.as_array().unwrap()[0].as_array().unwrap()[1],
        Value::Int(7)
    );
    // unmanaged memory (process - managed) seen at the one heartbeat is the "old" one
    for (measure, expected) in [
        ("optimistic", 1_000_000),
        ("unmanaged_old", 1_000_000),
        ("unmanaged_recent", 0),
        ("managed_total", 7),
    ] {
        let key = rpc(&server.address, start(measure)).await;
        let samples = rpc(&server.address, msg("memory_sampler_stop", [("key", key)])).await;
        let first = &samples.as_array().unwrap()[0].as_array().unwrap()[1];
        assert_eq!(first, &Value::Int(expected), "{measure}");
    }
    // stock: `getattr(MemoryState, measure)` and its AttributeError
    let bad = rpc(&server.address, start("nonsense")).await;
    assert!(error_text(&bad).contains("AttributeError"), "{bad:?}");
    // an unknown sampler: `self.samples.pop(key)`
    let gone = rpc(
        &server.address,
        msg("memory_sampler_stop", [("key", s("nope"))]),
    )
    .await;
    assert!(error_text(&gone).contains("KeyError"), "{gone:?}");
}

#[tokio::test(start_paused = true)]
async fn a_sampler_samples_every_interval_and_stops_when_its_client_leaves() {
    let server = TestServer::start().await;
    let c = Client::connect(&server.address).await;
    let _w = Worker::join(&server.address, "w0", 1).await;
    let start = msg(
        "memory_sampler_start",
        [
            ("client", Value::from(c.name.as_str())),
            ("measure", s("process")),
            ("interval", Value::Float(1.0)),
        ],
    );
    let key = rpc(&server.address, start.clone()).await;
    advance(std::time::Duration::from_millis(3500)).await;
    let samples = rpc(&server.address, msg("memory_sampler_stop", [("key", key)])).await;
    // one at start, then one a second
    assert_eq!(samples.as_array().unwrap().len(), 4, "{samples:?}");

    let key = rpc(&server.address, start).await;
    c.close().await;
    advance(std::time::Duration::from_secs(2)).await;
    // the next sample found the client gone and dropped the sampler (`self.stop(key)`)
    let gone = rpc(&server.address, msg("memory_sampler_stop", [("key", key)])).await;
    assert!(error_text(&gone).contains("KeyError"), "{gone:?}");
}
