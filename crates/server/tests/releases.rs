//! Messages of the older `distributed` releases rask serves (2025.12.0 .. 2026.3.0), whose
//! shapes 2026.8.0 changed: the publish extension of those releases (`publish.py` there)
//! takes one dataset per `publish_put {keys, data, name, override, client}` and answers
//! `{"status": "OK", "name"}`; `publish_get {name, client}` answers one dataset or None;
//! `publish_delete {name}` does not wait; and `publish_dataset` first awaits
//! `publish_wait_flush {uid}`, which answers once the client's `publish_flush_batched_send`
//! (sent before, on its stream) is in. Their clients send a hex str uid.
//!
//! And the version check of `register-worker`/`register-client` (scheduler.py:4790, 5929):
//! the newcomer's packages against the scheduler's and the workers', as Dask's table.

mod common;

use common::*;
use rask_protocol::Value;
use std::time::Duration;

/// Long enough for anything in flight to be handled, short of every timeout.
const A_WHILE: Duration = Duration::from_secs(5);

/// `publish_put` as `Client._publish_dataset` of 2026.3.0 sends it (client.py:2878 there).
fn put_one(c: &Client, name: &str, ks: &[&str], data: Value, override_: bool) -> Value {
    msg(
        "publish_put",
        [
            ("keys", keys(ks)),
            ("name", s(name)),
            ("data", data),
            ("override", Value::Bool(override_)),
            ("client", s(&c.name)),
        ],
    )
}

fn get_one(c: &Client, name: &str) -> Value {
    msg("publish_get", [("name", s(name)), ("client", s(&c.name))])
}

async fn flush(c: &mut Client, uid: &str) {
    let m = msg("publish_flush_batched_send", [("uid", s(uid))]);
    c.stream.send(vec![m]).await;
}

fn ok(name: &str) -> Value {
    Value::map([("status", s("OK")), ("name", s(name))])
}

#[tokio::test(start_paused = true)]
async fn publish_wait_flush_answers_once_the_flush_of_its_uid_is_in() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server.address).await;
    let uid = "0123456789abcdef0123456789abcdef";
    // two datasets of one publish_dataset call: two waits on one uid
    let first = Pending::send(
        &server.address,
        msg("publish_wait_flush", [("uid", s(uid))]),
    )
    .await;
    let second = Pending::send(
        &server.address,
        msg("publish_wait_flush", [("uid", s(uid))]),
    )
    .await;
    // no 30 s give-up in these releases: the wait lasts until the flush
    advance(Duration::from_secs(45)).await;
    assert!(!first.is_answered() && !second.is_answered());
    flush(&mut c, "another-uid").await;
    advance(A_WHILE).await;
    assert!(
        !first.is_answered(),
        "another uid's flush released the wait"
    );
    flush(&mut c, uid).await;
    assert_eq!(first.answer().await, Value::Nil);
    assert_eq!(second.answer().await, Value::Nil);
    // a wait after the flush answers at once, however often
    for _ in 0..2 {
        let r = rpc(
            &server.address,
            msg("publish_wait_flush", [("uid", s(uid))]),
        )
        .await;
        assert_eq!(r, Value::Nil);
    }
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_older_publish_ops_put_get_list_and_delete_one_dataset() {
    let server = TestServer::start().await;
    let c = Client::connect(&server.address).await;
    let r = rpc(&server.address, put_one(&c, "ds", &[], s("v1"), false)).await;
    assert_eq!(r, ok("ds"));
    let again = rpc(&server.address, put_one(&c, "ds", &[], s("v2"), false)).await;
    assert!(is_error(&again), "{again:?}");
    assert!(
        error_text(&again).starts_with("KeyError('Dataset ds already exists"),
        "{again:?}"
    );
    let r = rpc(&server.address, put_one(&c, "ds", &[], s("v3"), true)).await;
    assert_eq!(r, ok("ds"));
    let got = rpc(&server.address, get_one(&c, "ds")).await;
    assert_eq!(got, Value::map([("data", s("v3")), ("keys", keys(&[]))]));
    assert_eq!(rpc(&server.address, get_one(&c, "nope")).await, Value::Nil);
    // publish_list(*args) takes the same (empty) request in every release
    assert_eq!(
        rpc(&server.address, msg("publish_list", [])).await,
        keys(&["ds"])
    );
    let r = rpc(&server.address, msg("publish_delete", [("name", s("ds"))])).await;
    assert_eq!(r, Value::Nil);
    assert_eq!(rpc(&server.address, get_one(&c, "ds")).await, Value::Nil);
    assert_eq!(
        rpc(&server.address, msg("publish_list", [])).await,
        keys(&[])
    );
    server.stop().await.unwrap();
}

/// `{"packages": {"distributed": release}}`, as `get_versions()` (trimmed).
fn versions(release: &str) -> Value {
    Value::map([(
        "packages",
        Value::map([("distributed", Value::from(release))]),
    )])
}

/// The `| distributed | ... |` row of a mismatch table, its cells trimmed.
fn distributed_row(warning: &str) -> Vec<String> {
    let row = warning
        .lines()
        .find(|l| l.starts_with("| distributed "))
        .unwrap_or_else(|| panic!("no distributed row in {warning:?}"));
    row.trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

#[tokio::test]
async fn register_worker_and_client_get_the_version_mismatch_table() {
    // the test server's own versions (its "graph helper") name no distributed: "MISSING"
    let server = TestServer::start().await;
    let mut comm = connect(&server.address).await;
    let register = msg(
        "register-worker",
        [
            ("address", s("tcp://127.0.0.1:1")),
            ("name", s("old")),
            ("nthreads", Value::Int(1)),
            ("memory_limit", Value::Int(1 << 30)),
            ("status", s("running")),
            ("versions", versions("2025.12.0")),
            ("server_id", s("Worker-old")),
            ("reply", Value::Bool(false)),
        ],
    );
    let reply = comm.request(&register).await.unwrap();
    let warning = reply.get("warning").and_then(Value::as_str).unwrap_or("");
    assert!(
        warning.starts_with("Mismatched versions found\n\n+"),
        "{reply:?}"
    );
    assert!(warning.contains("| Package     | Worker-old | Scheduler | Workers   |"));
    // Package, the worker, Scheduler, Workers (itself among them, scheduler.py:4790)
    assert_eq!(
        distributed_row(warning),
        ["distributed", "2025.12.0", "MISSING", "2025.12.0"]
    );

    let mut client = connect(&server.address).await;
    let register = msg(
        "register-client",
        [
            ("client", s("Client-old")),
            ("versions", versions("2026.3.0")),
            ("reply", Value::Bool(false)),
        ],
    );
    client.writer.write(&register).await.unwrap();
    // the batched stream's first batch opens with stream-start
    let batch = client.reader.read().await.unwrap().expect("a batch");
    let start = match batch {
        Value::Array(msgs) => msgs.into_iter().next().expect("stream-start"),
        other => other,
    };
    assert_eq!(
        start.get("op").and_then(Value::as_str),
        Some("stream-start")
    );
    let warning = start.get("warning").and_then(Value::as_str).unwrap_or("");
    assert_eq!(
        distributed_row(warning),
        ["distributed", "2026.3.0", "MISSING", "2025.12.0"]
    );
    server.stop().await.unwrap();
}
