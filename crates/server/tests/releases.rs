//! Messages of the older `distributed` releases rask serves (2025.12.0 .. 2026.3.0), whose
//! shapes 2026.8.0 changed: the publish extension of those releases (`publish.py` there)
//! takes one dataset per `publish_put {keys, data, name, override, client}` and answers
//! `{"status": "OK", "name"}`; `publish_get {name, client}` answers one dataset or None;
//! `publish_delete {name}` does not wait; and `publish_dataset` first awaits
//! `publish_wait_flush {uid}`, which answers once the client's `publish_flush_batched_send`
//! (sent before, on its stream) is in. Their clients send a hex str uid.

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
