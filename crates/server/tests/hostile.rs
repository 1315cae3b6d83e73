//! Input no well-behaved Dask peer sends, over real sockets: a message that is not a dict,
//! a dict without `op`, an unknown op, an op rask refuses, a field of the wrong type,
//! garbage bytes before and after the handshake, an absurd frame length, an unknown or
//! malformed op on a client's or a worker's stream, a `register-worker` under a name
//! already taken; and the connection-level ops `register_nanny` and `close`.
//!
//! The peer at fault gets an error it can raise (where there is a reply at all) and loses
//! its connection or stream; everyone else is served as before.

mod common;

use common::*;
use rask_comm::Comm;
use rask_protocol::Value;
use rask_server::ops::{self, Serve};

/// Waits until the scheduler closes `comm` (end of stream, or an error reading it).
async fn assert_closed(comm: &mut Comm) {
    let next = bounded("the scheduler to close the connection", comm.reader.read()).await;
    assert!(
        !matches!(next, Ok(Some(_))),
        "the connection is still served: {next:?}"
    );
}

/// A fresh connection gets its `identity`: the scheduler is still serving.
async fn still_serving(server: &TestServer) {
    let id = server.identity().await;
    assert_eq!(id.get("type"), Some(&s("Scheduler")), "{id:?}");
}

/// The Python exception type of an error reply (`TypeError` from `"TypeError('...')"`).
fn raised_type(reply: &Value) -> String {
    error_text(reply)
        .split('(')
        .next()
        .unwrap_or("")
        .to_string()
}

// ---- requests --------------------------------------------------------------------------------

#[tokio::test]
async fn a_message_that_is_not_a_dict_gets_a_type_error_and_loses_its_connection() {
    let server = TestServer::start().await;
    let mut comm = connect(&server.address).await;
    let reply = bounded("the reply", comm.request(&s("hello")))
        .await
        .unwrap();
    assert!(is_error(&reply), "{reply:?}");
    assert_eq!(raised_type(&reply), "TypeError", "{reply:?}");
    assert!(error_text(&reply).contains("expected a dict"), "{reply:?}");
    assert_closed(&mut comm).await;
    still_serving(&server).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_dict_without_op_gets_an_error_and_loses_its_connection() {
    let server = TestServer::start().await;
    let mut comm = connect(&server.address).await;
    let request = Value::map([("keys", keys(&["x"]))]);
    let reply = bounded("the reply", comm.request(&request)).await.unwrap();
    assert!(is_error(&reply), "{reply:?}");
    assert!(error_text(&reply).contains("no 'op'"), "{reply:?}");
    assert_closed(&mut comm).await;
    still_serving(&server).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_unknown_op_is_named_in_the_error_and_the_connection_closed() {
    let server = TestServer::start().await;
    let mut comm = connect(&server.address).await;
    let reply = bounded("the reply", comm.request(&msg("frobnicate", [])))
        .await
        .unwrap();
    assert!(is_error(&reply), "{reply:?}");
    assert_eq!(raised_type(&reply), "ValueError", "{reply:?}");
    assert!(error_text(&reply).contains("frobnicate"), "{reply:?}");
    assert_closed(&mut comm).await;
    still_serving(&server).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_refused_op_says_rask_does_not_support_it_and_why() {
    let server = TestServer::start().await;
    let Some(Serve::NotSupported(reason)) = ops::rpc_op("amm_handler").map(|o| o.serve) else {
        panic!("amm_handler is refused in ops.rs");
    };
    let reply = rpc(
        &server.address,
        msg("amm_handler", [("method", s("adaptive_target"))]),
    )
    .await;
    assert!(is_error(&reply), "{reply:?}");
    assert_eq!(raised_type(&reply), "ValueError", "{reply:?}");
    let text = error_text(&reply);
    assert!(text.contains("does not support the operation"), "{text}");
    assert!(text.contains("amm_handler"), "{text}");
    assert!(
        text.contains(reason),
        "{text} does not give the reason {reason:?}"
    );
    still_serving(&server).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_field_of_the_wrong_type_gets_a_type_error_naming_it() {
    let server = TestServer::start().await;
    let mut comm = connect(&server.address).await;
    let request = msg("gather", [("keys", Value::Int(5))]);
    let reply = bounded("the reply", comm.request(&request)).await.unwrap();
    assert!(is_error(&reply), "{reply:?}");
    assert_eq!(raised_type(&reply), "TypeError", "{reply:?}");
    let text = error_text(&reply);
    assert!(text.contains("\"keys\""), "{text}");
    assert!(text.contains("not int"), "{text}");
    assert_closed(&mut comm).await;
    still_serving(&server).await;
    server.stop().await.unwrap();
}

// ---- bytes -----------------------------------------------------------------------------------

#[tokio::test]
async fn garbage_instead_of_a_handshake_closes_the_connection() {
    let server = TestServer::start().await;
    let mut raw = Raw::connect(&server.address).await;
    raw.send(b"GET / HTTP/1.1\r\nHost: scheduler\r\n\r\n").await;
    raw.wait_closed().await;
    still_serving(&server).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_frame_that_is_not_msgpack_closes_the_connection() {
    let server = TestServer::start().await;
    let mut raw = Raw::handshaken(&server.address).await;
    // 0xc1 is the one byte msgpack never uses
    raw.send(&framed(vec![bytes::Bytes::from_static(b"\xc1\xc1\xc1")]))
        .await;
    raw.wait_closed().await;
    still_serving(&server).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_absurd_frame_length_closes_the_connection_before_any_body_arrives() {
    let server = TestServer::start().await;
    for (nframes, len) in [(1u64, u64::MAX - 7), (u64::MAX, 8)] {
        let mut raw = Raw::handshaken(&server.address).await;
        let mut prelude = Vec::new();
        prelude.extend_from_slice(&24u64.to_le_bytes());
        prelude.extend_from_slice(&nframes.to_le_bytes());
        prelude.extend_from_slice(&len.to_le_bytes());
        raw.send(&prelude).await;
        raw.wait_closed().await;
    }
    still_serving(&server).await;
    server.stop().await.unwrap();
}

// ---- streams ---------------------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_op_on_a_client_stream_ends_that_stream_only() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut bad = Client::connect(&server.address).await;
    let mut good = Client::connect(&server.address).await;
    bad.stream.send(vec![msg("frobnicate", [])]).await;
    bad.stream.wait_closed().await;
    good.submit(&[task("x-1", &[])], &["x-1"]).await;
    w.run_tasks(1).await;
    assert_eq!(op_of(&good.outcome("x-1").await), "key-in-memory");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_malformed_message_on_a_client_stream_ends_that_stream_only() {
    let server = TestServer::start().await;
    let mut bad = Client::connect(&server.address).await;
    let mut good = Client::connect(&server.address).await;
    bad.stream
        .send(vec![msg("client-desires-keys", [("keys", Value::Int(5))])])
        .await;
    bad.stream.wait_closed().await;
    good.barrier().await;
    still_serving(&server).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_unknown_op_on_a_worker_stream_removes_that_worker_only() {
    let server = TestServer::start().await;
    let mut bad = Worker::join(&server.address, "bad", 1).await;
    let mut good = Worker::join(&server.address, "good", 1).await;
    bad.stream.send(vec![msg("frobnicate", [])]).await;
    bad.stream.wait_closed().await;
    let id = server.identity().await;
    assert_eq!(id.get("n_workers"), Some(&Value::Int(1)), "{id:?}");
    assert!(id
        .get("workers")
        .and_then(|ws| ws.get(&good.address))
        .is_some());
    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("x-1", &[])], &["x-1"]).await;
    good.run_tasks(1).await;
    assert_eq!(op_of(&c.outcome("x-1").await), "key-in-memory");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn register_worker_under_a_name_already_taken_is_refused() {
    let server = TestServer::start().await;
    let first = Worker::join(&server.address, "w0", 1).await;
    let mut comm = connect(&server.address).await;
    let request = msg(
        "register-worker",
        [
            ("address", s("tcp://127.0.0.1:9")),
            ("name", s("w0")),
            ("nthreads", Value::Int(1)),
            ("memory_limit", Value::Int(1 << 30)),
            ("status", s("running")),
            ("nanny", Value::Nil),
        ],
    );
    let reply = bounded("the reply", comm.request(&request)).await.unwrap();
    assert_eq!(reply.get("status"), Some(&s("error")), "{reply:?}");
    assert_eq!(
        reply.get("message"),
        Some(&s("name taken, w0")),
        "{reply:?}"
    );
    let id = server.identity().await;
    assert_eq!(id.get("n_workers"), Some(&Value::Int(1)));
    assert!(id
        .get("workers")
        .and_then(|ws| ws.get(&first.address))
        .is_some());
    server.stop().await.unwrap();
}

// ---- connection-level ops --------------------------------------------------------------------

#[tokio::test]
async fn register_nanny_is_answered_ok_with_no_nanny_plugins() {
    let server = TestServer::start().await;
    let mut comm = connect(&server.address).await;
    let request = msg("register_nanny", [("address", s("tcp://127.0.0.1:9"))]);
    let reply = bounded("the reply", comm.request(&request)).await.unwrap();
    assert_eq!(
        reply,
        Value::map([
            ("status", s("OK")),
            ("nanny-plugins", Value::Map(Vec::new())),
        ])
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn close_is_answered_ok_and_ends_the_connection() {
    let server = TestServer::start().await;
    let mut comm = connect(&server.address).await;
    let reply = bounded("the reply", comm.request(&msg("close", [])))
        .await
        .unwrap();
    assert_eq!(reply, s("OK"));
    assert_closed(&mut comm).await;
    server.stop().await.unwrap();
}
