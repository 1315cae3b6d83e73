//! Behaviour Dask's own `test_client.py` checks that rask got wrong: the `serializers` a
//! client sends with `gather` and `broadcast` (`send_recv` adds the caller's deserializers,
//! core.py:976) reach the workers, so a client that does not accept pickle is never handed
//! a pickle (`test_turn_off_pickle`).

mod common;

use common::*;
use rask_protocol::Value;

/// The requests `w`'s listener got for `op`.
fn requests_for(w: &Worker, op: &str) -> Vec<Value> {
    w.requests
        .lock()
        .expect("the worker's request log")
        .iter()
        .filter(|r| op_of(r) == op)
        .cloned()
        .collect()
}

fn msgpack_only() -> Value {
    keys(&["dask", "msgpack"])
}

#[tokio::test]
async fn gather_passes_the_clients_serializers_to_get_data() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("x-1", &[])], &["x-1"]).await;
    w.run_tasks(1).await;
    assert_eq!(op_of(&c.outcome("x-1").await), "key-in-memory");
    // scheduler.py:6404: `gather_from_workers(..., serializers=serializers)`
    let reply = rpc(
        &server.address,
        msg(
            "gather",
            [("keys", keys(&["x-1"])), ("serializers", msgpack_only())],
        ),
    )
    .await;
    assert_eq!(reply.get("status"), Some(&s("OK")), "{reply:?}");
    let asked = requests_for(&w, "get_data");
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].get("serializers"), Some(&msgpack_only()));
    // without serializers the worker uses its own (no field, as stock's rpc sends none)
    let reply = rpc(&server.address, msg("gather", [("keys", keys(&["x-1"]))])).await;
    assert_eq!(reply.get("status"), Some(&s("OK")), "{reply:?}");
    let asked = requests_for(&w, "get_data");
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[1].get("serializers"), None);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn broadcast_passes_the_clients_serializers_to_the_workers() {
    let server = TestServer::start().await;
    let w = Worker::join(&server.address, "w0", 1).await;
    // scheduler.py:6699: `send_recv(comm, serializers=serializers, **msg)`
    let reply = rpc(
        &server.address,
        msg(
            "broadcast",
            [("msg", msg("ping", [])), ("serializers", msgpack_only())],
        ),
    )
    .await;
    assert!(!is_error(&reply), "{reply:?}");
    let asked = requests_for(&w, "ping");
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].get("serializers"), Some(&msgpack_only()));
    server.stop().await.unwrap();
}
