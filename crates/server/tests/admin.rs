//! Cluster administration over real wire messages: `restart` (`Client.restart`),
//! `restart_workers` and `retire_workers`, with hand-driven workers and nannies.
//!
//! A restarted worker with a nanny goes away as a stock one does: its nanny gets `kill`,
//! unregisters the worker and answers ([`Nanny::restarting`]); the test starts the
//! replacement. Tests whose only wait is a timeout run on a paused clock.

mod common;

use common::*;
use rask_protocol::Value;
use std::time::Duration;

fn restart(timeout: f64, wait_for_workers: bool) -> Value {
    msg(
        "restart",
        [
            ("timeout", Value::Float(timeout)),
            ("wait_for_workers", Value::Bool(wait_for_workers)),
            ("stimulus_id", s("client-restart-test")),
        ],
    )
}

fn restart_workers(workers: &[&str], timeout: f64, on_error: &str) -> Value {
    msg(
        "restart_workers",
        [
            ("workers", keys(workers)),
            ("timeout", Value::Float(timeout)),
            ("on_error", s(on_error)),
            ("stimulus_id", s("client-restart-workers-test")),
        ],
    )
}

fn with_nanny(nanny: &Nanny) -> [(&'static str, Value); 1] {
    [("nanny", s(&nanny.address))]
}

/// `{"status": "OK"}`-less replies of a map: the value at `key`.
fn at<'a>(reply: &'a Value, key: &str) -> Option<&'a Value> {
    reply.get(key)
}

// ---- restart ---------------------------------------------------------------------------------

#[tokio::test]
async fn restart_forgets_every_task_tells_clients_and_waits_for_the_worker_to_come_back() {
    let server = TestServer::start().await;
    let nanny = Nanny::restarting(&server.address).await;
    let mut w = Worker::join_with(&server.address, "w0", 1, &with_nanny(&nanny)).await;
    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("inc-1", &[])], &["inc-1"]).await;
    w.run_tasks(1).await;
    assert_eq!(op_of(&c.outcome("inc-1").await), "key-in-memory");

    let restarting = Pending::send(&server.address, restart(20.0, true)).await;
    c.stream.next_op("restart").await;
    nanny.wait_for_kills(1).await;
    let kill = nanny.kills.lock().unwrap()[0].clone();
    assert_eq!(op_of(&kill), "kill", "{kill:?}");
    // the nanny unregistered the old worker before it answered: nobody is back yet
    bounded("the old worker to be gone", async {
        while !worker_addresses(&server.address).await.is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        !restarting.is_answered(),
        "restart answered with no worker back"
    );
    let status = rpc(
        &server.address,
        msg("get_task_status", [("keys", keys(&["inc-1"]))]),
    )
    .await;
    assert_eq!(status.get("inc-1"), Some(&Value::Nil), "{status:?}");

    let _back = Worker::join_with(&server.address, "w0-again", 1, &with_nanny(&nanny)).await;
    let reply = restarting.answer().await;
    assert_eq!(reply, Value::Nil, "{reply:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn restart_without_waiting_answers_once_the_nannies_killed_their_workers() {
    let server = TestServer::start().await;
    let nanny = Nanny::restarting(&server.address).await;
    let _w = Worker::join_with(&server.address, "w0", 1, &with_nanny(&nanny)).await;
    let reply = rpc(&server.address, restart(20.0, false)).await;
    assert_eq!(reply, Value::Nil, "{reply:?}");
    assert_eq!(nanny.kills.lock().unwrap().len(), 1);
    assert!(worker_addresses(&server.address).await.is_empty());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn restart_closes_and_removes_a_worker_without_a_nanny() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let restarting = Pending::send(&server.address, restart(20.0, true)).await;
    let close = w.stream.next_op("close").await;
    assert_eq!(close.get("reason"), Some(&s("scheduler-remove-worker")));
    bounded("the worker to be removed", async {
        while !worker_addresses(&server.address).await.is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // as many workers as before the restart must be back
    assert!(!restarting.is_answered());
    let _other = Worker::join(&server.address, "w1", 1).await;
    assert_eq!(restarting.answer().await, Value::Nil);
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn restart_fails_with_a_timeout_when_a_nanny_does_not_kill_its_worker_in_time() {
    let server = TestServer::start().await;
    let nanny = Nanny::start(Duration::from_secs(600)).await;
    let mut w = Worker::join_with(&server.address, "w0", 1, &with_nanny(&nanny)).await;
    let reply = rpc(&server.address, restart(2.0, true)).await;
    assert!(is_error(&reply), "{reply:?}");
    let text = error_text(&reply);
    assert!(text.starts_with("TimeoutError("), "{text}");
    assert!(
        text.contains("1/1 nanny worker(s) did not shut down"),
        "{text}"
    );
    // the worker its nanny did not kill is closed and removed
    w.stream.next_op("close").await;
    assert!(worker_addresses(&server.address).await.is_empty());
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn restart_fails_with_a_timeout_when_workers_do_not_come_back() {
    let server = TestServer::start().await;
    let nanny = Nanny::restarting(&server.address).await;
    let _w = Worker::join_with(&server.address, "w0", 1, &with_nanny(&nanny)).await;
    let reply = rpc(&server.address, restart(5.0, true)).await;
    assert!(is_error(&reply), "{reply:?}");
    let text = error_text(&reply);
    assert!(text.starts_with("TimeoutError("), "{text}");
    assert!(
        text.contains("Waited for 1 worker(s) to reconnect after restarting"),
        "{text}"
    );
    server.stop().await.unwrap();
}

// ---- restart_workers -------------------------------------------------------------------------

#[tokio::test]
async fn restart_workers_reports_ok_for_a_nanny_and_removed_for_a_worker_without_one() {
    let server = TestServer::start().await;
    let nanny = Nanny::restarting(&server.address).await;
    let w0 = Worker::join_with(&server.address, "w0", 1, &with_nanny(&nanny)).await;
    let mut w1 = Worker::join(&server.address, "w1", 1).await;
    let restarting = Pending::send(
        &server.address,
        restart_workers(&[&w0.address, &w1.address], 20.0, "return"),
    )
    .await;
    w1.stream.next_op("close").await;
    nanny.wait_for_kills(1).await;
    let _a = Worker::join_with(&server.address, "w0-again", 1, &with_nanny(&nanny)).await;
    let _b = Worker::join(&server.address, "w1-again", 1).await;
    let reply = restarting.answer().await;
    assert_eq!(at(&reply, &w0.address), Some(&s("OK")), "{reply:?}");
    assert_eq!(at(&reply, &w1.address), Some(&s("removed")), "{reply:?}");
    assert_eq!(reply.as_map().map(<[_]>::len), Some(2), "{reply:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn restart_workers_restarts_only_the_workers_named() {
    let server = TestServer::start().await;
    let nanny = Nanny::restarting(&server.address).await;
    let other_nanny = Nanny::restarting(&server.address).await;
    let w0 = Worker::join_with(&server.address, "w0", 1, &with_nanny(&nanny)).await;
    let w1 = Worker::join_with(&server.address, "w1", 1, &with_nanny(&other_nanny)).await;
    let restarting = Pending::send(
        &server.address,
        restart_workers(&[&w0.address], 20.0, "raise"),
    )
    .await;
    nanny.wait_for_kills(1).await;
    let _a = Worker::join_with(&server.address, "w0-again", 1, &with_nanny(&nanny)).await;
    let reply = restarting.answer().await;
    assert_eq!(reply, Value::map([(w0.address.as_str(), s("OK"))]));
    assert!(other_nanny.kills.lock().unwrap().is_empty());
    assert!(worker_addresses(&server.address)
        .await
        .contains(&w1.address));
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn restart_workers_reports_timed_out_for_a_nanny_that_does_not_answer() {
    let server = TestServer::start().await;
    let nanny = Nanny::start(Duration::from_secs(600)).await;
    let mut w = Worker::join_with(&server.address, "w0", 1, &with_nanny(&nanny)).await;
    let reply = rpc(
        &server.address,
        restart_workers(&[&w.address], 2.0, "return"),
    )
    .await;
    assert_eq!(reply, Value::map([(w.address.as_str(), s("timed out"))]));
    w.stream.next_op("close").await;
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn restart_workers_raises_a_timeout_for_a_nanny_that_does_not_answer() {
    let server = TestServer::start().await;
    let nanny = Nanny::start(Duration::from_secs(600)).await;
    let w = Worker::join_with(&server.address, "w0", 1, &with_nanny(&nanny)).await;
    let reply = rpc(
        &server.address,
        restart_workers(&[&w.address], 2.0, "raise"),
    )
    .await;
    assert!(is_error(&reply), "{reply:?}");
    assert!(error_text(&reply).starts_with("TimeoutError("), "{reply:?}");
    server.stop().await.unwrap();
}

// ---- retire_workers --------------------------------------------------------------------------

/// Two workers, and `x-1` in memory on `w0` only, wanted by the client.
async fn unique_result_on_w0(server: &TestServer) -> (Worker, Worker, Client) {
    let mut w0 = Worker::join(&server.address, "w0", 1).await;
    let w1 = Worker::join(&server.address, "w1", 1).await;
    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("x-1", &[]).on(&[&w0.address])], &["x-1"])
        .await;
    w0.run_tasks(1).await;
    assert_eq!(op_of(&c.outcome("x-1").await), "key-in-memory");
    (w0, w1, c)
}

#[tokio::test]
async fn retire_workers_copies_unique_results_then_removes_and_closes_the_worker() {
    let server = TestServer::start().await;
    let (mut w0, mut w1, _c) = unique_result_on_w0(&server).await;
    let retiring = Pending::send(
        &server.address,
        msg(
            "retire_workers",
            [
                ("workers", keys(&[&w0.address])),
                ("close_workers", Value::Bool(true)),
            ],
        ),
    )
    .await;
    let status = w0.stream.next_op("worker-status-change").await;
    assert_eq!(status.get("status"), Some(&s("closing_gracefully")));
    let acquire = w1.stream.next_op("acquire-replicas").await;
    let who_has = acquire.get("who_has").and_then(|w| w.get("x-1"));
    assert_eq!(who_has, Some(&keys(&[&w0.address])), "{acquire:?}");
    assert!(!retiring.is_answered(), "retired before the data moved");

    w1.stream
        .send(vec![msg(
            "add-keys",
            [
                ("keys", keys(&["x-1"])),
                ("stimulus_id", s("test-add-keys")),
            ],
        )])
        .await;
    let reply = retiring.answer().await;
    let info = at(&reply, &w0.address).unwrap_or_else(|| panic!("{reply:?}"));
    assert_eq!(info.get("name"), Some(&s("w0")), "{info:?}");
    assert_eq!(reply.as_map().map(<[_]>::len), Some(1), "{reply:?}");
    let close = w0.stream.next_op("close").await;
    assert_eq!(close.get("reason"), Some(&s("scheduler-remove-worker")));
    assert_eq!(
        worker_addresses(&server.address).await,
        vec![w1.address.clone()]
    );
    let who = rpc(&server.address, msg("who_has", [("keys", keys(&["x-1"]))])).await;
    assert_eq!(who.get("x-1"), Some(&keys(&[&w1.address])), "{who:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn retire_workers_with_close_and_not_remove_closes_the_worker_but_keeps_it_listed() {
    let server = TestServer::start().await;
    let mut w0 = Worker::join(&server.address, "w0", 1).await;
    let _w1 = Worker::join(&server.address, "w1", 1).await;
    let reply = rpc(
        &server.address,
        msg(
            "retire_workers",
            [
                ("workers", keys(&[&w0.address])),
                ("close_workers", Value::Bool(true)),
                ("remove", Value::Bool(false)),
            ],
        ),
    )
    .await;
    assert!(at(&reply, &w0.address).is_some(), "{reply:?}");
    let close = w0.stream.next_op("close").await;
    assert_eq!(close.get("reason"), Some(&s("scheduler-close-worker")));
    // listed until it leaves, taking no more tasks
    assert!(worker_addresses(&server.address)
        .await
        .contains(&w0.address));
    let ncores = rpc(&server.address, msg("ncores_running", [])).await;
    assert_eq!(ncores.get(w0.address.as_str()), None, "{ncores:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn retire_workers_does_not_retire_a_worker_whose_data_has_nowhere_to_go() {
    let server = TestServer::start().await;
    let mut w0 = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("x-1", &[])], &["x-1"]).await;
    w0.run_tasks(1).await;
    assert_eq!(op_of(&c.outcome("x-1").await), "key-in-memory");
    let reply = rpc(
        &server.address,
        msg("retire_workers", [("workers", keys(&[&w0.address]))]),
    )
    .await;
    assert_eq!(reply, Value::Map(Vec::new()));
    let closing = w0.stream.next_op("worker-status-change").await;
    assert_eq!(closing.get("status"), Some(&s("closing_gracefully")));
    let back = w0.stream.next_op("worker-status-change").await;
    assert_eq!(back.get("status"), Some(&s("running")));
    assert_eq!(
        worker_addresses(&server.address).await,
        vec![w0.address.clone()]
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn retire_workers_with_n_retires_the_worker_holding_least_data() {
    let server = TestServer::start().await;
    let (w0, w1, _c) = unique_result_on_w0(&server).await;
    let reply = rpc(
        &server.address,
        msg("retire_workers", [("n", Value::Int(1))]),
    )
    .await;
    assert!(at(&reply, &w1.address).is_some(), "{reply:?}");
    assert_eq!(reply.as_map().map(<[_]>::len), Some(1), "{reply:?}");
    assert_eq!(
        worker_addresses(&server.address).await,
        vec![w0.address.clone()]
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn retire_workers_by_name_retires_that_worker() {
    let server = TestServer::start().await;
    let w0 = Worker::join(&server.address, "w0", 1).await;
    let w1 = Worker::join(&server.address, "w1", 1).await;
    let reply = rpc(
        &server.address,
        msg("retire_workers", [("names", keys(&["w1"]))]),
    )
    .await;
    assert_eq!(
        at(&reply, &w1.address).and_then(|i| i.get("name")),
        Some(&s("w1"))
    );
    assert_eq!(
        worker_addresses(&server.address).await,
        vec![w0.address.clone()]
    );
    server.stop().await.unwrap();
}
