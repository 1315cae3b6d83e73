//! The scheduler side of the P2P shuffle over real wire messages, as
//! `distributed/shuffle/_scheduler_plugin.py` answers workers: `shuffle_get_or_create`,
//! `shuffle_get`, `shuffle_barrier` (and the `shuffle_inputs_done` it sends every
//! participant), `shuffle_restrict_task`, `shuffle-fail` when a participant leaves, and the
//! `P2PConsistencyError` replies.
//!
//! Every test submits the graph of one shuffle: `transfer-x` -> `shuffle-barrier-x` ->
//! `unpack-x`, with `transfer-x` (and the barrier) pinned to `w0`, and asks for the run while
//! `transfer-x` runs there. The fake graph helper makes run `n`'s spec `b"run-spec-n"`, with
//! every output partition on the first of the workers it is given.

mod common;

use bytes::Bytes;
use common::*;
use rask_protocol::Value;
use rask_server::error::HelperError;

/// The graph is submitted and `transfer-x` is running on `w0`.
struct Running {
    server: TestServer,
    w0: Worker,
    w1: Worker,
    client: Client,
    /// `transfer-x`'s `compute-task`
    transfer: Value,
}

async fn running() -> Running {
    let server = TestServer::start().await;
    let mut w0 = Worker::join(&server.address, "w0", 1).await;
    let w1 = Worker::join(&server.address, "w1", 1).await;
    let mut c = Client::connect(&server.address).await;
    let on_w0: &[&str] = &[&w0.address];
    c.submit(
        &[
            task("transfer-x", &[]).on(on_w0),
            task("shuffle-barrier-x", &["transfer-x"]).on(on_w0),
            task("unpack-x", &["shuffle-barrier-x"]),
        ],
        &["unpack-x"],
    )
    .await;
    let transfer = w0.compute_task().await;
    assert_eq!(transfer.get("key"), Some(&s("transfer-x")));
    Running {
        server,
        w0,
        w1,
        client: c,
        transfer,
    }
}

fn get_or_create(id: &str, key: &str, worker: &str) -> Value {
    msg(
        "shuffle_get_or_create",
        [
            ("shuffle_id", s(id)),
            ("key", s(key)),
            ("worker", s(worker)),
        ],
    )
}

fn get(id: &str, worker: &str) -> Value {
    msg("shuffle_get", [("id", s(id)), ("worker", s(worker))])
}

fn barrier(id: &str, run_id: i64, consistent: bool) -> Value {
    msg(
        "shuffle_barrier",
        [
            ("id", s(id)),
            ("run_id", Value::Int(run_id)),
            ("consistent", Value::Bool(consistent)),
        ],
    )
}

fn restrict(id: &str, run_id: i64, key: &str, worker: &str) -> Value {
    msg(
        "shuffle_restrict_task",
        [
            ("id", s(id)),
            ("run_id", Value::Int(run_id)),
            ("key", s(key)),
            ("worker", s(worker)),
        ],
    )
}

/// The pickled `ShuffleRunSpec` of a `{"status": "OK", "run_spec": ToPickle(...)}` reply.
fn run_spec(reply: &Value) -> Bytes {
    assert_eq!(reply.get("status"), Some(&s("OK")), "{reply:?}");
    match reply.get("run_spec") {
        Some(Value::Opaque(o)) => match o.header_get("pickled-obj") {
            Some(Value::Bin(b)) => b.clone(),
            other => panic!("no pickle in the run_spec: {other:?}"),
        },
        other => panic!("no run_spec: {other:?}"),
    }
}

/// A `P2PConsistencyError` reply (`error_message(e)`, with the `message` the worker reads).
fn consistency_error(reply: &Value) -> String {
    assert_eq!(reply.get("status"), Some(&s("error")), "{reply:?}");
    assert!(
        error_text(reply).starts_with("P2PConsistencyError("),
        "{reply:?}"
    );
    reply
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// The `shuffle_inputs_done` requests a worker's listener got.
fn inputs_done(w: &Worker) -> Vec<Value> {
    w.requests
        .lock()
        .expect("the listener's record")
        .iter()
        .filter(|r| op_of(r) == "shuffle_inputs_done")
        .cloned()
        .collect()
}

// ---- runs ------------------------------------------------------------------------------------

#[tokio::test]
async fn get_or_create_makes_one_run_and_every_caller_gets_it() {
    let r = running().await;
    let first = rpc(
        &r.server.address,
        get_or_create("x", "transfer-x", &r.w0.address),
    )
    .await;
    assert_eq!(run_spec(&first), Bytes::from_static(b"run-spec-1"));
    let second = rpc(
        &r.server.address,
        get_or_create("x", "transfer-x", &r.w1.address),
    )
    .await;
    assert_eq!(run_spec(&second), Bytes::from_static(b"run-spec-1"));
    r.server.stop().await.unwrap();
}

#[tokio::test]
async fn shuffle_get_answers_the_active_run_and_an_error_for_an_unknown_one() {
    let r = running().await;
    rpc(
        &r.server.address,
        get_or_create("x", "transfer-x", &r.w0.address),
    )
    .await;
    let got = rpc(&r.server.address, get("x", &r.w1.address)).await;
    assert_eq!(run_spec(&got), Bytes::from_static(b"run-spec-1"));
    let unknown = rpc(&r.server.address, get("nope", &r.w1.address)).await;
    assert_eq!(
        consistency_error(&unknown),
        "No active shuffle with id='nope' found"
    );
    r.server.stop().await.unwrap();
}

#[tokio::test]
async fn get_or_create_from_a_worker_the_scheduler_does_not_know_is_an_error() {
    let r = running().await;
    let reply = rpc(
        &r.server.address,
        get_or_create("x", "transfer-x", "tcp://127.0.0.1:1"),
    )
    .await;
    assert_eq!(
        consistency_error(&reply),
        "Scheduler is unaware of this worker 'tcp://127.0.0.1:1'"
    );
    r.server.stop().await.unwrap();
}

#[tokio::test]
async fn get_or_create_without_a_barrier_task_is_an_error() {
    let r = running().await;
    let reply = rpc(
        &r.server.address,
        get_or_create("nope", "transfer-x", &r.w0.address),
    )
    .await;
    let message = consistency_error(&reply);
    assert!(
        message.starts_with("Barrier task with key 'shuffle-barrier-nope' does not exist."),
        "{message}"
    );
    r.server.stop().await.unwrap();
}

#[tokio::test]
async fn get_or_create_for_a_task_that_is_not_processing_is_an_error() {
    let r = running().await;
    let reply = rpc(
        &r.server.address,
        get_or_create("x", "unpack-x", &r.w0.address),
    )
    .await;
    let message = consistency_error(&reply);
    assert!(
        message.contains("to be processing, is waiting"),
        "{message}"
    );
    r.server.stop().await.unwrap();
}

// ---- barrier ---------------------------------------------------------------------------------

#[tokio::test]
async fn shuffle_barrier_tells_every_participant_and_no_one_else() {
    let r = running().await;
    let w2 = Worker::join(&r.server.address, "w2", 1).await;
    rpc(
        &r.server.address,
        get_or_create("x", "transfer-x", &r.w0.address),
    )
    .await;
    rpc(&r.server.address, get("x", &r.w1.address)).await;
    let reply = rpc(&r.server.address, barrier("x", 1, true)).await;
    assert_eq!(reply, Value::Nil, "{reply:?}");
    for w in [&r.w0, &r.w1] {
        let done = inputs_done(w);
        assert_eq!(done.len(), 1, "{}: {done:?}", w.address);
        assert_eq!(done[0].get("shuffle_id"), Some(&s("x")));
        assert_eq!(done[0].get("run_id"), Some(&Value::Int(1)));
    }
    assert!(
        inputs_done(&w2).is_empty(),
        "a worker outside the shuffle was told"
    );
    r.server.stop().await.unwrap();
}

#[tokio::test]
async fn shuffle_barrier_of_another_run_or_shuffle_is_an_error() {
    let r = running().await;
    rpc(
        &r.server.address,
        get_or_create("x", "transfer-x", &r.w0.address),
    )
    .await;
    let stale = rpc(&r.server.address, barrier("x", 7, true)).await;
    assert!(is_error(&stale), "{stale:?}");
    assert_eq!(
        error_text(&stale),
        "ValueError('run_id=7 does not match SchedulerShuffleState<x[1]>')"
    );
    let unknown = rpc(&r.server.address, barrier("nope", 1, true)).await;
    assert!(is_error(&unknown), "{unknown:?}");
    assert_eq!(error_text(&unknown), "KeyError('nope')");
    assert!(inputs_done(&r.w0).is_empty());
    r.server.stop().await.unwrap();
}

#[tokio::test]
async fn an_inconsistent_barrier_fails_the_run_and_runs_the_transfer_again() {
    let mut r = running().await;
    rpc(
        &r.server.address,
        get_or_create("x", "transfer-x", &r.w0.address),
    )
    .await;
    let reply = rpc(&r.server.address, barrier("x", 1, false)).await;
    assert_eq!(reply, Value::Nil, "{reply:?}");
    let fail = r.w0.stream.next_op("shuffle-fail").await;
    assert_eq!(fail.get("shuffle_id"), Some(&s("x")));
    assert_eq!(fail.get("run_id"), Some(&Value::Int(1)));
    let again = r.w0.compute_task().await;
    assert_eq!(again.get("key"), Some(&s("transfer-x")));
    assert!(inputs_done(&r.w0).is_empty());
    // the old run is gone; the transfer running again makes a new one
    let old = rpc(&r.server.address, get("x", &r.w0.address)).await;
    consistency_error(&old);
    let new = rpc(
        &r.server.address,
        get_or_create("x", "transfer-x", &r.w0.address),
    )
    .await;
    assert_eq!(run_spec(&new), Bytes::from_static(b"run-spec-2"));
    r.server.stop().await.unwrap();
}

// ---- restrictions ----------------------------------------------------------------------------

#[tokio::test]
async fn shuffle_restrict_task_pins_an_output_task_to_its_worker() {
    let mut r = running().await;
    rpc(
        &r.server.address,
        get_or_create("x", "transfer-x", &r.w0.address),
    )
    .await;
    let reply = rpc(
        &r.server.address,
        restrict("x", 1, "unpack-x", &r.w1.address),
    )
    .await;
    assert_eq!(reply, Value::map([("status", s("OK"))]));
    // unpack-x's input is on w0, yet it runs where the shuffle put its partition
    let transfer = r.transfer.clone();
    r.w0.finish(&transfer).await;
    let barrier_task = r.w0.compute_task().await;
    assert_eq!(barrier_task.get("key"), Some(&s("shuffle-barrier-x")));
    r.w0.finish(&barrier_task).await;
    let unpack = r.w1.compute_task().await;
    assert_eq!(unpack.get("key"), Some(&s("unpack-x")));
    r.server.stop().await.unwrap();
}

#[tokio::test]
async fn shuffle_restrict_task_of_another_run_is_an_error() {
    let r = running().await;
    rpc(
        &r.server.address,
        get_or_create("x", "transfer-x", &r.w0.address),
    )
    .await;
    let stale = rpc(
        &r.server.address,
        restrict("x", 0, "unpack-x", &r.w1.address),
    )
    .await;
    assert_eq!(
        consistency_error(&stale),
        "Request stale, expected run_id=0 for SchedulerShuffleState<x[1]>"
    );
    let ahead = rpc(
        &r.server.address,
        restrict("x", 2, "unpack-x", &r.w1.address),
    )
    .await;
    assert_eq!(
        consistency_error(&ahead),
        "Request invalid, expected run_id=2 for SchedulerShuffleState<x[1]>"
    );
    let unknown = rpc(
        &r.server.address,
        restrict("nope", 1, "unpack-x", &r.w1.address),
    )
    .await;
    consistency_error(&unknown);
    r.server.stop().await.unwrap();
}

// ---- participants leaving --------------------------------------------------------------------

#[tokio::test]
async fn a_participant_leaving_fails_the_run_on_the_others() {
    let mut r = running().await;
    rpc(
        &r.server.address,
        get_or_create("x", "transfer-x", &r.w0.address),
    )
    .await;
    rpc(&r.server.address, get("x", &r.w1.address)).await;
    let gone = r.w1.address.clone();
    r.w1.die();
    let fail = r.w0.stream.next_op("shuffle-fail").await;
    assert_eq!(fail.get("shuffle_id"), Some(&s("x")));
    assert_eq!(fail.get("run_id"), Some(&Value::Int(1)));
    let message = fail.get("message").and_then(Value::as_str).unwrap_or("");
    assert_eq!(
        message,
        format!("Worker {gone} left during active SchedulerShuffleState<x[1]>")
    );
    // the shuffle starts over
    let again = r.w0.compute_task().await;
    assert_eq!(again.get("key"), Some(&s("transfer-x")));
    r.server.stop().await.unwrap();
}

/// Run 1 pins its output to a worker that has left (it left while the helper made the
/// run); later runs are the fake helper's.
fn helper_pinning_run_1_to_a_departed_worker(request: Value) -> Result<Value, HelperError> {
    let run = request.get("run_id").and_then(Value::as_i64);
    if op_of(&request) == "shuffle_create_run" && run == Some(1) {
        return Ok(Value::map([
            ("status", s("OK")),
            ("run_spec", Value::Bin(Bytes::from_static(b"run-spec-1"))),
            (
                "worker_for",
                Value::Map(vec![(Value::Int(0), s("tcp://127.0.0.1:9"))]),
            ),
        ]));
    }
    fake_helper(request)
}

#[tokio::test]
async fn a_run_made_for_a_worker_that_left_meanwhile_is_made_again() {
    let server = TestServer::with(Settings {
        helper: helper_pinning_run_1_to_a_departed_worker,
        ..Settings::default()
    })
    .await;
    let mut w0 = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    let on_w0: &[&str] = &[&w0.address];
    c.submit(
        &[
            task("transfer-x", &[]).on(on_w0),
            task("shuffle-barrier-x", &["transfer-x"]).on(on_w0),
            task("unpack-x", &["shuffle-barrier-x"]),
        ],
        &["unpack-x"],
    )
    .await;
    w0.compute_task().await;
    // a run whose outputs live on a departed worker would never finish: the caller gets
    // the next run, made for the workers there are
    let reply = rpc(
        &server.address,
        get_or_create("x", "transfer-x", &w0.address),
    )
    .await;
    assert_eq!(run_spec(&reply), Bytes::from_static(b"run-spec-2"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn releasing_the_shuffles_outputs_fails_the_run_on_its_participants() {
    let mut r = running().await;
    rpc(
        &r.server.address,
        get_or_create("x", "transfer-x", &r.w0.address),
    )
    .await;
    let name = r.client.name.clone();
    let m = msg(
        "client-releases-keys",
        [("keys", keys(&["unpack-x"])), ("client", s(&name))],
    );
    r.client.stream.send(vec![m]).await;
    let fail = r.w0.stream.next_op("shuffle-fail").await;
    assert_eq!(fail.get("shuffle_id"), Some(&s("x")));
    assert_eq!(
        fail.get("message"),
        Some(&s("SchedulerShuffleState<x[1]> forgotten"))
    );
    let gone = rpc(&r.server.address, get("x", &r.w0.address)).await;
    assert_eq!(
        consistency_error(&gone),
        "No active shuffle with id='x' found"
    );
    r.server.stop().await.unwrap();
}

#[tokio::test]
async fn restart_forgets_every_shuffle() {
    let r = running().await;
    rpc(
        &r.server.address,
        get_or_create("x", "transfer-x", &r.w0.address),
    )
    .await;
    let restart = msg(
        "restart",
        [
            ("timeout", Value::Float(20.0)),
            ("wait_for_workers", Value::Bool(false)),
        ],
    );
    assert_eq!(rpc(&r.server.address, restart).await, Value::Nil);
    let w2 = Worker::join(&r.server.address, "w2", 1).await;
    let gone = rpc(&r.server.address, get("x", &w2.address)).await;
    assert_eq!(
        consistency_error(&gone),
        "No active shuffle with id='x' found"
    );
    r.server.stop().await.unwrap();
}
