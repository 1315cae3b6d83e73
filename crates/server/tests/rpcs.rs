//! The RPCs the scheduler serves itself, each on a fresh connection as
//! `Client.scheduler.<op>()` sends it, against a real server with hand-driven workers:
//! `identity`, `versions`, `echo`, `heartbeat_worker`, `ncores`, `ncores_running`,
//! `who_has`, `has_what`, `processing`, `nbytes`, `get_task_status`, `unregister`, `retry`,
//! `gather`, `scatter`, `update_data`, `broadcast`, `proxy`, `run_function`,
//! `unregister_scheduler_plugin`, `log_event` and `events`.
//!
//! The replies are compared with what `distributed/scheduler.py` returns for the same
//! request (the line of each handler is in `src/translate/rpc.rs`).

mod common;

use bytes::Bytes;
use common::*;
use rask_protocol::{Opaque, OpaqueKind, Value};

/// A sorted list of strings, for order-free comparison of key and address lists.
fn strs(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(|s| s.as_str().unwrap_or("?").to_string())
        .collect();
    out.sort();
    out
}

/// The entry of `worker` in `identity()["workers"]`.
fn listed<'a>(identity: &'a Value, worker: &str) -> Option<&'a Value> {
    identity.get("workers").and_then(|ws| ws.get(worker))
}

/// Data as a client's `scatter` sends it: a `Serialize`d object the scheduler never opens.
fn serialized(payload: &'static [u8]) -> Value {
    Value::Opaque(Opaque {
        kind: OpaqueKind::Serialized,
        header: vec![(s("serializer"), s("pickle"))],
        frames: vec![Bytes::from_static(payload)],
    })
}

/// The payload frames of a serialized value.
fn frames(v: &Value) -> Vec<Bytes> {
    match v {
        Value::Opaque(o) => o.frames.clone(),
        other => panic!("not a serialized object: {other:?}"),
    }
}

/// What worker `w` holds under `key`.
fn held(w: &Worker, key: &str) -> Option<Value> {
    w.data
        .lock()
        .expect("the worker's store")
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v.clone())
}

/// Submits `tasks` wanting `wanted`, lets `w` run `n` of them and waits for `last` in memory.
async fn compute(c: &mut Client, w: &mut Worker, tasks: &[TaskSpec], wanted: &[&str], last: &str) {
    c.submit(tasks, wanted).await;
    w.run_tasks(tasks.len()).await;
    let done = c.outcome(last).await;
    assert_eq!(op_of(&done), "key-in-memory", "{done:?}");
}

// ---- identity, versions, echo, heartbeats ----------------------------------------------------

#[tokio::test]
async fn identity_lists_workers_with_their_status_threads_memory_and_nanny() {
    let server = TestServer::start().await;
    let nanny = Nanny::start(std::time::Duration::ZERO).await;
    let w0 = Worker::join_with(&server.address, "w0", 2, &[("nanny", s(&nanny.address))]).await;
    let w1 = Worker::join_with(&server.address, "w1", 1, &[("status", s("paused"))]).await;
    let id = server.identity().await;
    assert_eq!(id.get("type"), Some(&s("Scheduler")));
    assert_eq!(id.get("address"), Some(&s(&server.address)));
    assert_eq!(id.get("n_workers"), Some(&Value::Int(2)));
    assert_eq!(id.get("total_threads"), Some(&Value::Int(3)));
    assert_eq!(id.get("total_memory"), Some(&Value::Int(2 << 30)));
    let e0 = listed(&id, &w0.address).expect("w0 is listed");
    assert_eq!(e0.get("type"), Some(&s("Worker")));
    assert_eq!(e0.get("name"), Some(&s("w0")));
    assert_eq!(e0.get("id"), Some(&s("w0")));
    assert_eq!(e0.get("host"), Some(&s("127.0.0.1")));
    assert_eq!(e0.get("status"), Some(&s("running")));
    assert_eq!(e0.get("nthreads"), Some(&Value::Int(2)));
    assert_eq!(e0.get("memory_limit"), Some(&Value::Int(1 << 30)));
    assert_eq!(e0.get("nanny"), Some(&s(&nanny.address)));
    let e1 = listed(&id, &w1.address).expect("w1 is listed");
    assert_eq!(e1.get("status"), Some(&s("paused")));
    assert_eq!(e1.get("nanny"), Some(&Value::Nil));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn identity_with_n_workers_lists_only_the_first_that_registered() {
    let server = TestServer::start().await;
    let w0 = Worker::join(&server.address, "w0", 1).await;
    let w1 = Worker::join(&server.address, "w1", 1).await;
    let id = rpc(
        &server.address,
        msg("identity", [("n_workers", Value::Int(1))]),
    )
    .await;
    // n_workers still counts every worker; only the listing is cut
    assert_eq!(id.get("n_workers"), Some(&Value::Int(2)));
    let listed_addresses: Vec<String> = entries(id.get("workers").unwrap())
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    assert_eq!(listed_addresses, vec![w0.address.clone()]);
    assert!(listed(&id, &w1.address).is_none());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn versions_are_the_graph_helpers_report() {
    let server = TestServer::start().await;
    let v = rpc(&server.address, msg("versions", [])).await;
    let expected = Value::map([("packages", Value::map([("rask-test", s("1"))]))]);
    assert_eq!(v, expected);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn echo_returns_its_data() {
    let server = TestServer::start().await;
    let data = Value::map([("x", Value::Array(vec![Value::Int(1), s("two")]))]);
    let reply = rpc(&server.address, msg("echo", [("data", data.clone())])).await;
    assert_eq!(reply, data);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn heartbeat_of_a_known_worker_is_acknowledged_and_its_metrics_kept() {
    let server = TestServer::start().await;
    let w = Worker::join(&server.address, "w0", 1).await;
    let metrics = Value::map([("cpu", Value::Float(12.5)), ("memory", Value::Int(4096))]);
    let reply = rpc(
        &server.address,
        msg(
            "heartbeat_worker",
            [("address", s(&w.address)), ("metrics", metrics.clone())],
        ),
    )
    .await;
    assert_eq!(reply.get("status"), Some(&s("OK")), "{reply:?}");
    // heartbeat_interval(1 worker) (scheduler.py:9203)
    assert_eq!(reply.get("heartbeat-interval"), Some(&Value::Float(0.5)));
    assert!(reply.get("time").and_then(Value::as_f64).is_some());
    let id = server.identity().await;
    assert_eq!(
        listed(&id, &w.address).and_then(|e| e.get("metrics")),
        Some(&metrics)
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn heartbeat_of_an_unknown_worker_says_missing() {
    let server = TestServer::start().await;
    let reply = rpc(
        &server.address,
        msg(
            "heartbeat_worker",
            [
                ("address", s("tcp://127.0.0.1:1")),
                ("metrics", Value::Map(Vec::new())),
            ],
        ),
    )
    .await;
    assert_eq!(reply, Value::map([("status", s("missing"))]));
    server.stop().await.unwrap();
}

// ---- cluster queries -------------------------------------------------------------------------

#[tokio::test]
async fn ncores_lists_threads_per_worker() {
    let server = TestServer::start().await;
    let w0 = Worker::join(&server.address, "w0", 2).await;
    let w1 = Worker::join(&server.address, "w1", 3).await;
    let all = rpc(&server.address, msg("ncores", [])).await;
    let mut expected = vec![
        (w0.address.clone(), Value::Int(2)),
        (w1.address.clone(), Value::Int(3)),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(entries(&all), expected);
    let one = rpc(
        &server.address,
        msg("ncores", [("workers", keys(&[&w1.address]))]),
    )
    .await;
    assert_eq!(entries(&one), vec![(w1.address.clone(), Value::Int(3))]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn ncores_running_leaves_out_a_paused_worker() {
    let server = TestServer::start().await;
    let running = Worker::join(&server.address, "w0", 2).await;
    let mut paused = Worker::join(&server.address, "w1", 4).await;
    paused
        .stream
        .send(vec![msg("worker-status-change", [("status", s("paused"))])])
        .await;
    paused.barrier().await;
    let reply = rpc(&server.address, msg("ncores_running", [])).await;
    assert_eq!(
        entries(&reply),
        vec![(running.address.clone(), Value::Int(2))]
    );
    // ncores still counts it
    let all = rpc(&server.address, msg("ncores", [])).await;
    assert_eq!(entries(&all).len(), 2);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn who_has_lists_the_holders_of_given_keys_or_of_every_key() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    compute(&mut c, &mut w, &[task("x-1", &[])], &["x-1"], "x-1").await;
    let here = Value::Array(vec![s(&w.address)]);
    let some = rpc(
        &server.address,
        msg("who_has", [("keys", keys(&["x-1", "nope"]))]),
    )
    .await;
    assert_eq!(
        entries(&some),
        vec![
            ("nope".to_string(), Value::Array(Vec::new())),
            ("x-1".to_string(), here.clone()),
        ]
    );
    let all = rpc(&server.address, msg("who_has", [])).await;
    assert_eq!(entries(&all), vec![("x-1".to_string(), here)]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn has_what_lists_the_keys_each_worker_holds() {
    let server = TestServer::start().await;
    let mut w0 = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    compute(&mut c, &mut w0, &[task("x-1", &[])], &["x-1"], "x-1").await;
    let w1 = Worker::join(&server.address, "w1", 1).await;
    let reply = rpc(&server.address, msg("has_what", [])).await;
    let mut expected = vec![
        (w0.address.clone(), keys(&["x-1"])),
        (w1.address.clone(), keys(&[])),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(entries(&reply), expected);
    let one = rpc(
        &server.address,
        msg("has_what", [("workers", keys(&[&w1.address]))]),
    )
    .await;
    assert_eq!(entries(&one), vec![(w1.address.clone(), keys(&[]))]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn processing_lists_the_tasks_each_worker_runs() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("slow-1", &[])], &["slow-1"]).await;
    let t = w.compute_task().await;
    let reply = rpc(&server.address, msg("processing", [])).await;
    assert_eq!(
        entries(&reply),
        vec![(w.address.clone(), keys(&["slow-1"]))]
    );
    w.finish(&t).await;
    c.outcome("slow-1").await;
    let after = rpc(&server.address, msg("processing", [])).await;
    assert_eq!(entries(&after), vec![(w.address.clone(), keys(&[]))]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn nbytes_sums_by_key_prefix_or_lists_each_key() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    let tasks = [
        task("inc-1", &[]),
        task("inc-2", &[]),
        task("sum-1", &["inc-1", "inc-2"]),
    ];
    // every key is wanted, so every result stays in memory (8 bytes each, as reported)
    compute(
        &mut c,
        &mut w,
        &tasks,
        &["inc-1", "inc-2", "sum-1"],
        "sum-1",
    )
    .await;
    let summary = rpc(&server.address, msg("nbytes", [])).await;
    assert_eq!(
        entries(&summary),
        vec![
            ("inc".to_string(), Value::Int(16)),
            ("sum".to_string(), Value::Int(8)),
        ]
    );
    let per_key = rpc(
        &server.address,
        msg("nbytes", [("summary", Value::Bool(false))]),
    )
    .await;
    assert_eq!(
        entries(&per_key),
        vec![
            ("inc-1".to_string(), Value::Int(8)),
            ("inc-2".to_string(), Value::Int(8)),
            ("sum-1".to_string(), Value::Int(8)),
        ]
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn nbytes_of_given_keys_lists_only_those() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    let tasks = [task("inc-1", &[]), task("inc-2", &[])];
    compute(&mut c, &mut w, &tasks, &["inc-1", "inc-2"], "inc-2").await;
    // `Client.nbytes(keys=[...], summary=False)` (scheduler.py:7988)
    let reply = rpc(
        &server.address,
        msg(
            "nbytes",
            [("keys", keys(&["inc-2"])), ("summary", Value::Bool(false))],
        ),
    )
    .await;
    assert_eq!(entries(&reply), vec![("inc-2".to_string(), Value::Int(8))]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn get_task_status_gives_each_state_and_none_for_unknown_keys() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    compute(
        &mut c,
        &mut w,
        &[task("done-1", &[])],
        &["done-1"],
        "done-1",
    )
    .await;
    c.submit(&[task("slow-1", &[])], &["slow-1"]).await;
    w.compute_task().await;
    let reply = rpc(
        &server.address,
        msg(
            "get_task_status",
            [("keys", keys(&["done-1", "slow-1", "nope"]))],
        ),
    )
    .await;
    assert_eq!(
        entries(&reply),
        vec![
            ("done-1".to_string(), s("memory")),
            ("nope".to_string(), Value::Nil),
            ("slow-1".to_string(), s("processing")),
        ]
    );
    server.stop().await.unwrap();
}

// ---- workers leaving -------------------------------------------------------------------------

#[tokio::test]
async fn unregister_closes_the_worker_and_forgets_it() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let request = msg(
        "unregister",
        [
            ("address", s(&w.address)),
            ("stimulus_id", s("test-unregister")),
        ],
    );
    let reply = rpc(&server.address, request.clone()).await;
    assert_eq!(reply, s("OK"));
    let close = w.stream.next_op("close").await;
    assert!(close.get("reason").and_then(Value::as_str).is_some());
    let id = server.identity().await;
    assert_eq!(id.get("n_workers"), Some(&Value::Int(0)));
    assert!(listed(&id, &w.address).is_none());
    let again = rpc(&server.address, request).await;
    assert_eq!(again, s("already-removed"));
    server.stop().await.unwrap();
}

// ---- tasks -----------------------------------------------------------------------------------

#[tokio::test]
async fn retry_runs_an_erred_task_again() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("boom-1", &[])], &["boom-1"]).await;
    let first = w.compute_task().await;
    w.fail(&first, b"pickled-ZeroDivisionError", b"pickled-traceback")
        .await;
    assert_eq!(op_of(&c.outcome("boom-1").await), "task-erred");
    let reply = rpc(&server.address, msg("retry", [("keys", keys(&["boom-1"]))])).await;
    assert_eq!(strs(&reply), vec!["boom-1".to_string()]);
    let again = w.compute_task().await;
    assert_eq!(again.get("key"), Some(&s("boom-1")));
    assert_ne!(again.get("run_id"), first.get("run_id"));
    w.finish(&again).await;
    assert_eq!(op_of(&c.outcome("boom-1").await), "key-in-memory");
    server.stop().await.unwrap();
}

// ---- data: gather, scatter, update_data ------------------------------------------------------

#[tokio::test]
async fn gather_fetches_values_from_the_worker_that_holds_them() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    compute(&mut c, &mut w, &[task("x-1", &[])], &["x-1"], "x-1").await;
    let value = held(&w, "x-1").expect("the worker stored its result");
    let reply = rpc(&server.address, msg("gather", [("keys", keys(&["x-1"]))])).await;
    assert_eq!(reply.get("status"), Some(&s("OK")), "{reply:?}");
    assert_eq!(
        reply.get("data").map(entries),
        Some(vec![("x-1".to_string(), value)])
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn gather_of_a_key_nobody_holds_names_it() {
    let server = TestServer::start().await;
    let _w = Worker::join(&server.address, "w0", 1).await;
    let reply = rpc(&server.address, msg("gather", [("keys", keys(&["nope"]))])).await;
    assert_eq!(
        reply,
        Value::map([("status", s("error")), ("keys", keys(&["nope"]))])
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn gather_of_a_key_its_holder_lost_names_it() {
    let server = TestServer::start().await;
    let w = Worker::join(&server.address, "w0", 1).await;
    let c = Client::connect(&server.address).await;
    // the scheduler is told w holds "ghost" for c, but w's store does not have it
    let placed = rpc(
        &server.address,
        msg(
            "update_data",
            [
                ("who_has", Value::map([("ghost", keys(&[&w.address]))])),
                ("nbytes", Value::map([("ghost", Value::Int(8))])),
                ("client", s(&c.name)),
            ],
        ),
    )
    .await;
    assert_eq!(placed, Value::Nil);
    let reply = rpc(&server.address, msg("gather", [("keys", keys(&["ghost"]))])).await;
    assert_eq!(
        reply,
        Value::map([("status", s("error")), ("keys", keys(&["ghost"]))])
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn scatter_puts_data_on_a_worker_and_who_has_shows_it() {
    let server = TestServer::start().await;
    let w = Worker::join(&server.address, "w0", 1).await;
    let c = Client::connect(&server.address).await;
    let reply = rpc(
        &server.address,
        msg(
            "scatter",
            [
                ("data", Value::map([("x", serialized(b"pickled-x"))])),
                ("client", s(&c.name)),
                ("broadcast", Value::Bool(false)),
                ("timeout", Value::Int(2)),
            ],
        ),
    )
    .await;
    assert_eq!(reply, keys(&["x"]));
    let stored = held(&w, "x").expect("update_data reached the worker");
    assert_eq!(frames(&stored), vec![Bytes::from_static(b"pickled-x")]);
    let who_has = rpc(&server.address, msg("who_has", [("keys", keys(&["x"]))])).await;
    assert_eq!(who_has.get("x"), Some(&keys(&[&w.address])));
    let status = rpc(
        &server.address,
        msg("get_task_status", [("keys", keys(&["x"]))]),
    )
    .await;
    assert_eq!(status.get("x"), Some(&s("memory")));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn scatter_with_broadcast_puts_data_on_every_worker() {
    let server = TestServer::start().await;
    let w0 = Worker::join(&server.address, "w0", 1).await;
    let w1 = Worker::join(&server.address, "w1", 1).await;
    let c = Client::connect(&server.address).await;
    let reply = rpc(
        &server.address,
        msg(
            "scatter",
            [
                (
                    "data",
                    Value::map([("x", serialized(b"px")), ("y", serialized(b"py"))]),
                ),
                ("client", s(&c.name)),
                ("broadcast", Value::Bool(true)),
            ],
        ),
    )
    .await;
    assert_eq!(strs(&reply), vec!["x".to_string(), "y".to_string()]);
    for w in [&w0, &w1] {
        assert_eq!(
            held(w, "x").map(|v| frames(&v)),
            Some(vec![Bytes::from_static(b"px")])
        );
        assert_eq!(
            held(w, "y").map(|v| frames(&v)),
            Some(vec![Bytes::from_static(b"py")])
        );
    }
    let who_has = rpc(
        &server.address,
        msg("who_has", [("keys", keys(&["x", "y"]))]),
    )
    .await;
    let mut both = vec![w0.address.clone(), w1.address.clone()];
    both.sort();
    assert_eq!(who_has.get("x").map(strs), Some(both.clone()));
    assert_eq!(who_has.get("y").map(strs), Some(both));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn update_data_makes_a_key_known_in_memory_where_it_is() {
    let server = TestServer::start().await;
    let w = Worker::join(&server.address, "w0", 1).await;
    let c = Client::connect(&server.address).await;
    let reply = rpc(
        &server.address,
        msg(
            "update_data",
            [
                ("who_has", Value::map([("y", keys(&[&w.address]))])),
                ("nbytes", Value::map([("y", Value::Int(100))])),
                ("client", s(&c.name)),
            ],
        ),
    )
    .await;
    assert_eq!(reply, Value::Nil);
    let who_has = rpc(&server.address, msg("who_has", [("keys", keys(&["y"]))])).await;
    assert_eq!(who_has.get("y"), Some(&keys(&[&w.address])));
    let nbytes = rpc(
        &server.address,
        msg("nbytes", [("summary", Value::Bool(false))]),
    )
    .await;
    assert_eq!(nbytes.get("y"), Some(&Value::Int(100)));
    let has_what = rpc(&server.address, msg("has_what", [])).await;
    assert_eq!(has_what.get(&w.address), Some(&keys(&["y"])));
    server.stop().await.unwrap();
}

// ---- broadcast -------------------------------------------------------------------------------

#[tokio::test]
async fn broadcast_sends_the_message_to_every_worker_and_collects_the_replies() {
    let server = TestServer::start().await;
    let w0 = Worker::join(&server.address, "w0", 1).await;
    let w1 = Worker::join(&server.address, "w1", 1).await;
    let reply = rpc(
        &server.address,
        msg("broadcast", [("msg", msg("ping", []))]),
    )
    .await;
    let got = Value::map([("worker-got", s("ping"))]);
    let mut expected = vec![
        (w0.address.clone(), got.clone()),
        (w1.address.clone(), got.clone()),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(entries(&reply), expected);
    // workers= picks some
    let one = rpc(
        &server.address,
        msg(
            "broadcast",
            [("msg", msg("ping", [])), ("workers", keys(&[&w1.address]))],
        ),
    )
    .await;
    assert_eq!(entries(&one), vec![(w1.address.clone(), got)]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn proxy_returns_one_workers_reply() {
    let server = TestServer::start().await;
    let _w0 = Worker::join(&server.address, "w0", 1).await;
    let w1 = Worker::join(&server.address, "w1", 1).await;
    let reply = rpc(
        &server.address,
        msg(
            "proxy",
            [("msg", msg("ping", [])), ("worker", s(&w1.address))],
        ),
    )
    .await;
    // the worker's reply itself, not a dict keyed by address
    assert_eq!(reply, Value::map([("worker-got", s("ping"))]));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn broadcast_with_nanny_goes_to_the_nannies() {
    let server = TestServer::start().await;
    let n0 = Nanny::start(std::time::Duration::ZERO).await;
    let n1 = Nanny::start(std::time::Duration::ZERO).await;
    let w0 = Worker::join_with(&server.address, "w0", 1, &[("nanny", s(&n0.address))]).await;
    let w1 = Worker::join_with(&server.address, "w1", 1, &[("nanny", s(&n1.address))]).await;
    let reply = rpc(
        &server.address,
        msg(
            "broadcast",
            [("msg", msg("ping", [])), ("nanny", Value::Bool(true))],
        ),
    )
    .await;
    // keyed by worker address; the nannies answer None where a worker would say
    // {"worker-got": ...}
    let mut expected = vec![
        (w0.address.clone(), Value::Nil),
        (w1.address.clone(), Value::Nil),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(entries(&reply), expected);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn broadcast_with_on_error_ignore_leaves_out_a_worker_that_does_not_answer() {
    // a worker that does not answer is dialled until `connect-timeout` (as
    // `distributed.comm.core.connect` retries), so keep it short
    let server = TestServer::with(Settings {
        config: vec![("connect-timeout", Value::Float(0.3))],
        ..Settings::default()
    })
    .await;
    let alive = Worker::join(&server.address, "w0", 1).await;
    let mut dead = Worker::join(&server.address, "w1", 1).await;
    dead.stop_listening();
    let reply = rpc(
        &server.address,
        msg(
            "broadcast",
            [("msg", msg("ping", [])), ("on_error", s("ignore"))],
        ),
    )
    .await;
    assert_eq!(
        entries(&reply),
        vec![(
            alive.address.clone(),
            Value::map([("worker-got", s("ping"))])
        )]
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn broadcast_to_a_worker_that_does_not_answer_fails_by_default() {
    // a worker that does not answer is dialled until `connect-timeout` (as
    // `distributed.comm.core.connect` retries), so keep it short
    let server = TestServer::with(Settings {
        config: vec![("connect-timeout", Value::Float(0.3))],
        ..Settings::default()
    })
    .await;
    let _alive = Worker::join(&server.address, "w0", 1).await;
    let mut dead = Worker::join(&server.address, "w1", 1).await;
    dead.stop_listening();
    let reply = rpc(
        &server.address,
        msg("broadcast", [("msg", msg("ping", []))]),
    )
    .await;
    assert!(is_error(&reply), "{reply:?}");
    server.stop().await.unwrap();
}

// ---- run_function, plugins, the event log ----------------------------------------------------

#[tokio::test]
async fn run_function_returns_the_helpers_result_and_logs_a_run_function_event() {
    let server = TestServer::start().await;
    let function = Bytes::from_static(b"pickled-function");
    let reply = rpc(
        &server.address,
        msg(
            "run_function",
            [
                ("function", Value::Bin(function.clone())),
                ("args", Value::Bin(Bytes::from_static(b"pickled-args"))),
                ("kwargs", Value::Bin(Bytes::from_static(b"pickled-kwargs"))),
                ("wait", Value::Bool(true)),
            ],
        ),
    )
    .await;
    assert_eq!(reply.get("status"), Some(&s("OK")), "{reply:?}");
    // the fake helper's result is the function's pickle; it comes back as a ToPickle
    match reply.get("result") {
        Some(Value::Opaque(o)) => {
            assert_eq!(o.kind, OpaqueKind::Pickled);
            assert_eq!(
                o.header_get("pickled-obj"),
                Some(&Value::Bin(function.clone()))
            );
        }
        other => panic!("no pickled result: {other:?}"),
    }
    let events = rpc(&server.address, msg("events", [("topic", s("all"))])).await;
    let logged = events.as_array().and_then(|e| e.last()).cloned();
    let event = logged
        .as_ref()
        .and_then(Value::as_array)
        .and_then(|pair| pair.get(1))
        .unwrap_or_else(|| panic!("no event in {events:?}"));
    assert_eq!(
        event,
        &Value::map([
            ("action", s("run-function")),
            ("function", Value::Bin(function)),
        ])
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn unregister_scheduler_plugin_says_there_is_no_such_plugin() {
    let server = TestServer::start().await;
    let reply = rpc(
        &server.address,
        msg("unregister_scheduler_plugin", [("name", s("my-plugin"))]),
    )
    .await;
    assert_eq!(reply.get("status"), Some(&s("uncaught-error")), "{reply:?}");
    let text = error_text(&reply);
    assert!(text.starts_with("ValueError("), "{text}");
    assert!(
        text.contains("Could not find plugin 'my-plugin' among the current scheduler plugins"),
        "{text}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn log_event_stores_events_that_events_returns_per_topic_and_for_all_topics() {
    let server = TestServer::start().await;
    let first = Value::map([("x", Value::Int(1))]);
    let second = s("plain text");
    let r = rpc(
        &server.address,
        msg("log_event", [("topic", s("mine")), ("msg", first.clone())]),
    )
    .await;
    assert_eq!(r, Value::Nil);
    // a list of topics logs the message under each
    let r = rpc(
        &server.address,
        msg(
            "log_event",
            [("topic", keys(&["mine", "other"])), ("msg", second.clone())],
        ),
    )
    .await;
    assert_eq!(r, Value::Nil);
    let msgs_of = |events: &Value| -> Vec<Value> {
        events
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {events:?}"))
            .iter()
            .map(|pair| {
                let pair = pair.as_array().expect("(timestamp, msg)");
                assert!(pair[0].as_f64().is_some(), "{pair:?}");
                pair[1].clone()
            })
            .collect()
    };
    let mine = rpc(&server.address, msg("events", [("topic", s("mine"))])).await;
    assert_eq!(msgs_of(&mine), vec![first.clone(), second.clone()]);
    let all = rpc(&server.address, msg("events", [])).await;
    let by_topic = entries(&all);
    let names: Vec<&str> = by_topic.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(names, vec!["mine", "other"]);
    assert_eq!(msgs_of(&by_topic[0].1), vec![first, second.clone()]);
    assert_eq!(msgs_of(&by_topic[1].1), vec![second]);
    let none = rpc(&server.address, msg("events", [("topic", s("quiet"))])).await;
    assert_eq!(none, Value::Array(Vec::new()));
    server.stop().await.unwrap();
}
