//! Every op of a client's and a worker's stream, sent as real batched stream messages:
//!
//! - clients: `client-desires-keys` (for itself and on behalf of another client by name),
//!   `client-releases-keys`, `cancel-keys`, `report-key`, `update-data`,
//!   `heartbeat-client`, `close-client`, `close-stream`, `subscribe-topic` and
//!   `unsubscribe-topic`;
//! - workers: `task-erred`, `release-worker-data`, `add-keys`, `reschedule`,
//!   `long-running`, `request-refresh-who-has`, `steal-response` (work stealing between
//!   two workers, and an unsolicited one), `worker-status-change`, `keep-alive` and
//!   `log-event`;
//! - a client's messages held behind its graph: `client-releases-keys`, a fire-and-forget
//!   `client-desires-keys` and `close-stream` sent right after `update-graph` apply after
//!   the graph, in stream order.
//!
//! A message whose effect is not a reply is followed by a round trip on the same stream
//! (`barrier()`), after which the scheduler has handled it.

mod common;

use common::*;
use rask_protocol::Value;
use std::time::Duration;

/// `get_task_status` of one key (`None` for a key the scheduler does not know).
async fn status(server: &TestServer, key: &str) -> Value {
    let reply = rpc(
        &server.address,
        msg("get_task_status", [("keys", keys(&[key]))]),
    )
    .await;
    reply.get(key).cloned().unwrap_or(Value::Nil)
}

/// Polls `get_task_status` until `key` is in state `want`.
async fn wait_status(server: &TestServer, key: &str, want: &str) {
    bounded(&format!("{key} to be {want}"), async {
        loop {
            if status(server, key).await == s(want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// `who_has` of one key, sorted.
async fn holders(server: &TestServer, key: &str) -> Vec<String> {
    let reply = rpc(&server.address, msg("who_has", [("keys", keys(&[key]))])).await;
    let mut out: Vec<String> = reply
        .get(key)
        .and_then(Value::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

/// Submits one task wanted by `c`, runs it on `w`, waits for `key-in-memory`.
async fn compute(c: &mut Client, w: &mut Worker, key: &str) {
    c.submit(&[task(key, &[])], &[key]).await;
    w.run_tasks(1).await;
    let done = c.outcome(key).await;
    assert_eq!(op_of(&done), "key-in-memory", "{done:?}");
}

/// Whether a message is about `key` (a `key` field, or `keys` containing it).
fn about(m: &Value, key: &str) -> bool {
    m.get("key").and_then(Value::as_str) == Some(key)
        || m.get("keys")
            .and_then(Value::as_array)
            .is_some_and(|ks| ks.contains(&s(key)))
}

/// The next `op` message about `key`; others are skipped.
async fn next_about(stream: &mut Stream, op: &str, key: &str) -> Value {
    loop {
        let m = stream.next_op(op).await;
        if about(&m, key) {
            return m;
        }
    }
}

fn status_change(status: &str) -> Value {
    msg(
        "worker-status-change",
        [
            ("status", s(status)),
            ("stimulus_id", s(&format!("test-{status}"))),
        ],
    )
}

// ---- client streams --------------------------------------------------------------------------

#[tokio::test]
async fn client_desires_keys_reports_a_key_already_in_memory() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut a = Client::connect(&server.address).await;
    compute(&mut a, &mut w, "x-1").await;
    let mut b = Client::connect(&server.address).await;
    b.stream
        .send(vec![msg(
            "client-desires-keys",
            [("keys", keys(&["x-1"])), ("client", s(&b.name))],
        )])
        .await;
    let m = b.outcome("x-1").await;
    assert_eq!(op_of(&m), "key-in-memory", "{m:?}");
    // b wants it now: a releasing it does not free it
    a.stream
        .send(vec![msg(
            "client-releases-keys",
            [("keys", keys(&["x-1"])), ("client", s(&a.name))],
        )])
        .await;
    a.barrier().await;
    assert_eq!(status(&server, "x-1").await, s("memory"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn client_desires_keys_on_behalf_of_another_client_reports_to_that_client() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut a = Client::connect(&server.address).await;
    compute(&mut a, &mut w, "x-1").await;
    let mut b = Client::connect(&server.address).await;
    b.stream
        .send(vec![msg(
            "client-desires-keys",
            [("keys", keys(&["x-1"])), ("client", s(&a.name))],
        )])
        .await;
    // a hears of it again; b, which only asked, does not
    let m = a.outcome("x-1").await;
    assert_eq!(op_of(&m), "key-in-memory", "{m:?}");
    b.barrier().await;
    let to_b: Vec<Value> = b.stream.drain();
    assert!(
        !to_b.iter().any(|m| op_of(m) == "key-in-memory"),
        "{to_b:?}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_key_wanted_by_fire_and_forget_outlives_its_clients_release() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut a = Client::connect(&server.address).await;
    compute(&mut a, &mut w, "x-1").await;
    let mut b = Client::connect(&server.address).await;
    b.stream
        .send(vec![msg(
            "client-desires-keys",
            [("keys", keys(&["x-1"])), ("client", s("fire-and-forget"))],
        )])
        .await;
    b.barrier().await;
    a.stream
        .send(vec![msg(
            "client-releases-keys",
            [("keys", keys(&["x-1"])), ("client", s(&a.name))],
        )])
        .await;
    a.barrier().await;
    assert_eq!(status(&server, "x-1").await, s("memory"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn client_releases_keys_forgets_a_key_nobody_else_wants() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    compute(&mut c, &mut w, "x-1").await;
    c.stream
        .send(vec![msg(
            "client-releases-keys",
            [("keys", keys(&["x-1"])), ("client", s(&c.name))],
        )])
        .await;
    next_about(&mut w.stream, "free-keys", "x-1").await;
    assert_eq!(status(&server, "x-1").await, Value::Nil);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn cancel_keys_tells_every_client_and_forgets_the_keys() {
    let server = TestServer::start().await;
    let mut a = Client::connect(&server.address).await;
    let mut b = Client::connect(&server.address).await;
    // no worker: the task waits in the queue
    a.submit(&[task("x-1", &[])], &["x-1"]).await;
    wait_status(&server, "x-1", "queued").await;
    a.stream
        .send(vec![msg(
            "cancel-keys",
            [
                ("keys", keys(&["x-1"])),
                ("client", s(&a.name)),
                ("force", Value::Bool(false)),
                ("reason", s("test-cancel")),
                ("msg", s("cancelled by the test")),
            ],
        )])
        .await;
    for c in [&mut a, &mut b] {
        let m = c.stream.next_op("cancelled-keys").await;
        assert_eq!(m.get("keys"), Some(&keys(&["x-1"])), "{m:?}");
        assert_eq!(m.get("reason"), Some(&s("test-cancel")));
        assert_eq!(m.get("msg"), Some(&s("cancelled by the test")));
    }
    assert_eq!(status(&server, "x-1").await, Value::Nil);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn report_key_says_what_the_scheduler_knows_of_a_key() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    compute(&mut c, &mut w, "x-1").await;
    c.stream
        .send(vec![msg("report-key", [("key", s("x-1"))])])
        .await;
    assert_eq!(op_of(&c.outcome("x-1").await), "key-in-memory");
    // an unknown key is reported cancelled (scheduler.py:7782)
    c.stream
        .send(vec![msg("report-key", [("key", s("nope"))])])
        .await;
    let m = c.stream.next_op("cancelled-keys").await;
    assert_eq!(m.get("keys"), Some(&keys(&["nope"])), "{m:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn update_data_on_a_client_stream_puts_a_key_in_memory_for_that_client() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    c.stream
        .send(vec![msg(
            "update-data",
            [
                ("who_has", Value::map([("y-1", keys(&[&w.address]))])),
                ("nbytes", Value::map([("y-1", Value::Int(10))])),
            ],
        )])
        .await;
    c.barrier().await;
    assert_eq!(holders(&server, "y-1").await, vec![w.address.clone()]);
    assert_eq!(status(&server, "y-1").await, s("memory"));
    // the client holds it: its release frees the worker's copy
    c.stream
        .send(vec![msg(
            "client-releases-keys",
            [("keys", keys(&["y-1"])), ("client", s(&c.name))],
        )])
        .await;
    next_about(&mut w.stream, "free-keys", "y-1").await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn heartbeat_client_is_answered_with_an_interval_from_the_number_of_clients() {
    let server = TestServer::start().await;
    // eleven workers would make a worker's heartbeat interval 1 s (scheduler.py:9203); a
    // client's is from the number of clients (scheduler.py:5848): 0.5 s * 10
    let mut workers = Vec::new();
    for i in 0..11 {
        workers.push(Worker::join(&server.address, &format!("w{i}"), 1).await);
    }
    let mut c = Client::connect(&server.address).await;
    c.stream.send(vec![msg("heartbeat-client", [])]).await;
    let m = c.stream.next_op("adjust-heartbeat-interval").await;
    assert_eq!(m.get("interval"), Some(&Value::Float(5.0)), "{m:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn close_client_and_close_stream_end_the_stream_and_release_its_keys() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    compute(&mut c, &mut w, "x-1").await;
    c.stream
        .send(vec![msg("close-client", []), msg("close-stream", [])])
        .await;
    c.stream.wait_closed().await;
    next_about(&mut w.stream, "free-keys", "x-1").await;
    assert_eq!(status(&server, "x-1").await, Value::Nil);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn close_stream_alone_ends_the_clients_stream() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    compute(&mut c, &mut w, "x-1").await;
    c.stream.send(vec![msg("close-stream", [])]).await;
    c.stream.wait_closed().await;
    next_about(&mut w.stream, "free-keys", "x-1").await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn subscribed_clients_get_events_and_unsubscribed_ones_do_not() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server.address).await;
    c.stream
        .send(vec![msg("subscribe-topic", [("topic", s("news"))])])
        .await;
    c.barrier().await;
    let first = Value::map([("n", Value::Int(1))]);
    rpc(
        &server.address,
        msg("log_event", [("topic", s("news")), ("msg", first.clone())]),
    )
    .await;
    let m = c.stream.next_op("event").await;
    assert_eq!(m.get("topic"), Some(&s("news")), "{m:?}");
    let event = m.get("event").and_then(Value::as_array).expect("(ts, msg)");
    assert!(event[0].as_f64().is_some(), "{m:?}");
    assert_eq!(event[1], first);
    // unsubscribed from "news"; "other" is the sentinel: its event comes after the one
    // "news" would have sent
    c.stream
        .send(vec![
            msg("unsubscribe-topic", [("topic", s("news"))]),
            msg("subscribe-topic", [("topic", s("other"))]),
        ])
        .await;
    c.barrier().await;
    for topic in ["news", "other"] {
        rpc(
            &server.address,
            msg("log_event", [("topic", s(topic)), ("msg", s(topic))]),
        )
        .await;
    }
    let m = c.stream.next_op("event").await;
    assert_eq!(m.get("topic"), Some(&s("other")), "{m:?}");
    server.stop().await.unwrap();
}

// ---- worker streams --------------------------------------------------------------------------

#[tokio::test]
async fn task_erred_reaches_the_client_with_the_workers_exception_untouched() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("boom-1", &[])], &["boom-1"]).await;
    let t = w.compute_task().await;
    let exception = b"\x80\x04\x95pickled ZeroDivisionError\x00\xff";
    let traceback = b"\x80\x04\x95pickled traceback";
    w.fail(&t, exception, traceback).await;
    let m = c.outcome("boom-1").await;
    assert_eq!(op_of(&m), "task-erred", "{m:?}");
    assert_eq!(
        m.get("exception"),
        Some(&Value::Bin(bytes::Bytes::from_static(exception)))
    );
    assert_eq!(
        m.get("traceback"),
        Some(&Value::Bin(bytes::Bytes::from_static(traceback)))
    );
    assert_eq!(status(&server, "boom-1").await, s("erred"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn add_keys_adds_a_replica_and_an_unknown_key_gets_remove_replicas() {
    let server = TestServer::start().await;
    let mut w0 = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    compute(&mut c, &mut w0, "x-1").await;
    let mut w1 = Worker::join(&server.address, "w1", 1).await;
    w1.stream
        .send(vec![msg(
            "add-keys",
            [
                ("keys", keys(&["x-1"])),
                ("stimulus_id", s("test-add-keys")),
            ],
        )])
        .await;
    w1.barrier().await;
    let mut both = vec![w0.address.clone(), w1.address.clone()];
    both.sort();
    assert_eq!(holders(&server, "x-1").await, both);
    w1.stream
        .send(vec![msg(
            "add-keys",
            [
                ("keys", keys(&["nope"])),
                ("stimulus_id", s("test-add-keys")),
            ],
        )])
        .await;
    let m = w1.stream.next_op("remove-replicas").await;
    assert_eq!(m.get("keys"), Some(&keys(&["nope"])), "{m:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn release_worker_data_drops_that_workers_replica() {
    let server = TestServer::start().await;
    let mut w0 = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    compute(&mut c, &mut w0, "x-1").await;
    let mut w1 = Worker::join(&server.address, "w1", 1).await;
    w1.stream
        .send(vec![msg("add-keys", [("keys", keys(&["x-1"]))])])
        .await;
    w1.barrier().await;
    assert_eq!(holders(&server, "x-1").await.len(), 2);
    w1.stream
        .send(vec![msg(
            "release-worker-data",
            [("key", s("x-1")), ("stimulus_id", s("test-release"))],
        )])
        .await;
    w1.barrier().await;
    assert_eq!(holders(&server, "x-1").await, vec![w0.address.clone()]);
    assert_eq!(status(&server, "x-1").await, s("memory"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn reschedule_gives_a_task_back_and_it_is_sent_again() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("x-1", &[])], &["x-1"]).await;
    let first = w.compute_task().await;
    w.stream
        .send(vec![msg(
            "reschedule",
            [("key", s("x-1")), ("stimulus_id", s("test-reschedule"))],
        )])
        .await;
    next_about(&mut w.stream, "free-keys", "x-1").await;
    let again = w.compute_task().await;
    assert_eq!(again.get("key"), Some(&s("x-1")));
    assert_ne!(again.get("run_id"), first.get("run_id"));
    w.finish(&again).await;
    assert_eq!(op_of(&c.outcome("x-1").await), "key-in-memory");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn long_running_frees_the_tasks_slot_for_a_queued_task() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    // four root tasks on one thread: ceil(1.1 * 1) = 2 are sent, the others queue
    let roots: Vec<String> = (0..4).map(|i| format!("r-{i}")).collect();
    let tasks: Vec<TaskSpec> = roots.iter().map(|k| task(k, &[])).collect();
    let wanted: Vec<&str> = roots.iter().map(String::as_str).collect();
    c.submit(&tasks, &wanted).await;
    let a = w.compute_task().await;
    let b = w.compute_task().await;
    w.barrier().await;
    let mut queued = 0;
    for k in &roots {
        if status(&server, k).await == s("queued") {
            queued += 1;
        }
    }
    assert_eq!(queued, 2, "two tasks wait in the queue");
    // the first seceded (`secede()`, `worker_client`): it no longer counts against the
    // worker's slots (scheduler.py:9219)
    w.stream
        .send(vec![msg(
            "long-running",
            [
                ("key", a.get("key").cloned().unwrap()),
                ("run_id", a.get("run_id").cloned().unwrap()),
                ("compute_duration", Value::Float(0.1)),
                ("stimulus_id", s("test-long-running")),
            ],
        )])
        .await;
    let third = w.compute_task().await;
    assert!(third.get("key") != a.get("key") && third.get("key") != b.get("key"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn request_refresh_who_has_is_answered_with_refresh_who_has() {
    let server = TestServer::start().await;
    let mut w0 = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    compute(&mut c, &mut w0, "x-1").await;
    let mut w1 = Worker::join(&server.address, "w1", 1).await;
    w1.stream
        .send(vec![msg(
            "request-refresh-who-has",
            [("keys", keys(&["x-1"])), ("stimulus_id", s("test-refresh"))],
        )])
        .await;
    let m = w1.stream.next_op("refresh-who-has").await;
    assert_eq!(
        m.get("who_has"),
        Some(&Value::map([("x-1", keys(&[&w0.address]))])),
        "{m:?}"
    );
    assert_eq!(m.get("stimulus_id"), Some(&s("test-refresh")));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_idle_worker_steals_a_task_its_busy_peer_has_not_started() {
    // stealing every 100 ms; no root-task queuing, so every task goes to the only worker
    let server = TestServer::with(Settings {
        config: vec![
            ("work-stealing-interval", Value::Float(0.1)),
            ("worker-saturation", Value::Float(f64::INFINITY)),
        ],
        ..Settings::default()
    })
    .await;
    let mut busy = Worker::join(&server.address, "busy", 1).await;
    let mut c = Client::connect(&server.address).await;
    // the scheduler learns that a "slow" task takes 1 s
    c.submit(&[task("slow-0", &[])], &["slow-0"]).await;
    let t = busy.compute_task().await;
    busy.finish_in(&t, 1.0).await;
    c.outcome("slow-0").await;
    let keys_: Vec<String> = (1..=6).map(|i| format!("slow-{i}")).collect();
    let tasks: Vec<TaskSpec> = keys_.iter().map(|k| task(k, &[])).collect();
    let wanted: Vec<&str> = keys_.iter().map(String::as_str).collect();
    c.submit(&tasks, &wanted).await;
    for _ in 0..6 {
        busy.compute_task().await;
    }
    // six seconds of work on one thread; an idle worker joins
    let mut idle = Worker::join(&server.address, "idle", 1).await;
    let request = busy.stream.next_op("steal-request").await;
    let key = request.get("key").cloned().unwrap();
    busy.stream
        .send(vec![msg(
            "steal-response",
            [
                ("key", key.clone()),
                ("state", s("ready")),
                ("stimulus_id", request.get("stimulus_id").cloned().unwrap()),
            ],
        )])
        .await;
    let stolen = idle.compute_task().await;
    assert_eq!(stolen.get("key"), Some(&key));
    let processing = rpc(&server.address, msg("processing", [])).await;
    assert_eq!(
        processing.get(&idle.address),
        Some(&Value::Array(vec![key]))
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_unsolicited_steal_response_is_ignored() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("x-1", &[])], &["x-1"]).await;
    let t = w.compute_task().await;
    w.stream
        .send(vec![msg(
            "steal-response",
            [
                ("key", s("x-1")),
                ("state", s("ready")),
                ("stimulus_id", s("steal-never-asked")),
            ],
        )])
        .await;
    w.barrier().await;
    let processing = rpc(&server.address, msg("processing", [])).await;
    assert_eq!(processing.get(&w.address), Some(&keys(&["x-1"])));
    // the run it was sent is still the one that counts
    w.finish(&t).await;
    assert_eq!(op_of(&c.outcome("x-1").await), "key-in-memory");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_paused_worker_gets_no_tasks_until_it_runs_again() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    w.stream.send(vec![status_change("paused")]).await;
    w.barrier().await;
    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("x-1", &[])], &["x-1"]).await;
    wait_status(&server, "x-1", "no-worker").await;
    let processing = rpc(&server.address, msg("processing", [])).await;
    assert_eq!(processing.get(&w.address), Some(&keys(&[])));
    let id = server.identity().await;
    let listed = id.get("workers").and_then(|ws| ws.get(&w.address)).unwrap();
    assert_eq!(listed.get("status"), Some(&s("paused")));
    w.stream.send(vec![status_change("running")]).await;
    let t = w.compute_task().await;
    assert_eq!(t.get("key"), Some(&s("x-1")));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn keep_alive_keeps_the_stream_and_changes_nothing() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    w.stream.send(vec![msg("keep-alive", [])]).await;
    w.barrier().await;
    let id = server.identity().await;
    assert_eq!(id.get("n_workers"), Some(&Value::Int(1)));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_worker_logging_a_dict_event_is_named_in_it() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    w.stream
        .send(vec![
            msg(
                "log-event",
                [
                    ("topic", s("news")),
                    ("msg", Value::map([("a", Value::Int(1))])),
                ],
            ),
            // not a dict: as it came
            msg("log-event", [("topic", s("news")), ("msg", s("text"))]),
            // under its own address: no "worker" entry (scheduler.py:7832)
            msg(
                "log-event",
                [
                    ("topic", s(&w.address)),
                    ("msg", Value::map([("b", Value::Int(2))])),
                ],
            ),
        ])
        .await;
    w.barrier().await;
    let msgs = |events: Value| -> Vec<Value> {
        events
            .as_array()
            .unwrap_or_default()
            .iter()
            .filter_map(|pair| pair.as_array().and_then(|p| p.get(1)).cloned())
            .collect()
    };
    let news = rpc(&server.address, msg("events", [("topic", s("news"))])).await;
    assert_eq!(
        msgs(news),
        vec![
            Value::map([("a", Value::Int(1)), ("worker", s(&w.address))]),
            s("text"),
        ]
    );
    let own = rpc(&server.address, msg("events", [("topic", s(&w.address))])).await;
    // after the scheduler's own add-worker event on that topic (scheduler.py:4706)
    assert_eq!(
        msgs(own),
        vec![
            Value::map([("action", s("add-worker"))]),
            Value::map([("b", Value::Int(2))])
        ]
    );
    server.stop().await.unwrap();
}

// ---- messages held behind a graph ------------------------------------------------------------

#[tokio::test]
async fn a_release_sent_right_after_update_graph_applies_after_the_graph() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("x-1", &[])], &["x-1"]).await;
    c.stream
        .send(vec![msg(
            "client-releases-keys",
            [("keys", keys(&["x-1"])), ("client", s(&c.name))],
        )])
        .await;
    // the graph first (the task is sent), then the release (it is taken back)
    let t = w.compute_task().await;
    assert_eq!(t.get("key"), Some(&s("x-1")));
    next_about(&mut w.stream, "free-keys", "x-1").await;
    assert_eq!(status(&server, "x-1").await, Value::Nil);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn fire_and_forget_then_close_stream_right_after_update_graph_still_runs_the_task() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    // `fire_and_forget(client.submit(...))` then `client.close()`
    c.submit(&[task("ff-1", &[])], &["ff-1"]).await;
    c.stream
        .send(vec![
            msg(
                "client-desires-keys",
                [("keys", keys(&["ff-1"])), ("client", s("fire-and-forget"))],
            ),
            msg("close-client", []),
            msg("close-stream", []),
        ])
        .await;
    c.stream.wait_closed().await;
    let t = w.compute_task().await;
    assert_eq!(t.get("key"), Some(&s("ff-1")));
    // the client left, but the task is still wanted: it is not taken back
    w.barrier().await;
    assert_eq!(status(&server, "ff-1").await, s("processing"));
    w.finish(&t).await;
    // done, and wanted by nobody any more: its result is released
    next_about(&mut w.stream, "free-keys", "ff-1").await;
    assert_eq!(status(&server, "ff-1").await, Value::Nil);
    server.stop().await.unwrap();
}
