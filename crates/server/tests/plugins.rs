//! Worker and nanny plugins: `register_worker_plugin`, `unregister_worker_plugin`,
//! `register_nanny_plugin`, `unregister_nanny_plugin` and the plugins a later worker
//! (`register-worker`) or nanny (`register_nanny`) gets, compared with
//! `distributed/scheduler.py:8130-8190, 4787, 4806`.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use rask_protocol::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

fn pickled(b: &'static [u8]) -> Value {
    Value::Bin(Bytes::from_static(b))
}

fn register(op: &str, name: &str, plugin: &'static [u8], idempotent: bool) -> Value {
    let mut m = msg(op, []);
    m.set("plugin", pickled(plugin));
    m.set("name", s(name));
    m.set("idempotent", Value::Bool(idempotent));
    m
}

fn unregister(op: &str, name: &str) -> Value {
    let mut m = msg(op, []);
    m.set("name", s(name));
    m
}

/// The requests of `ops` a worker's listener got, in order.
fn got(w: &Worker, ops: &[&str]) -> Vec<Value> {
    w.requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| ops.contains(&op_of(r)))
        .cloned()
        .collect()
}

/// The reply a worker registering now gets (its address is never dialled in these tests).
async fn registration_reply(scheduler: &str, name: &str) -> Value {
    let mut comm = connect(scheduler).await;
    let m = msg(
        "register-worker",
        [
            ("address", Value::from(format!("tcp://127.0.0.1:1/{name}"))),
            ("name", Value::from(name)),
            ("nthreads", Value::Int(1)),
            ("memory_limit", Value::Int(1 << 30)),
            ("status", Value::from("running")),
            ("nanny", Value::Nil),
            ("reply", Value::Bool(false)),
        ],
    );
    bounded("register-worker's reply", comm.request(&m))
        .await
        .unwrap()
}

/// A nanny's listener: answers every request `{"status": "OK"}` and records it.
struct NannyListener {
    address: String,
    requests: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl NannyListener {
    async fn start() -> NannyListener {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("tcp://{}", listener.local_addr().unwrap());
        let requests: Arc<Mutex<Vec<Value>>> = Arc::default();
        let ok: Answers = Arc::new(|_| Some(Value::map([("status", s("OK"))])));
        let task = tokio::spawn(serve_answering(listener, ok, requests.clone()));
        NannyListener {
            address,
            requests,
            task,
        }
    }

    fn ops(&self) -> Vec<String> {
        let requests = self.requests.lock().unwrap();
        requests.iter().map(|r| op_of(r).to_string()).collect()
    }
}

impl Drop for NannyListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn register_worker_plugin_reaches_every_worker_and_later_ones() {
    let server = TestServer::start().await;
    let w0 = Worker::join(&server.address, "w0", 1).await;
    let w1 = Worker::join(&server.address, "w1", 1).await;

    // scheduler.py:8140: `{worker: its plugin_add reply}`
    let reply = rpc(
        &server.address,
        register("register_worker_plugin", "p", b"pickled-p", false),
    )
    .await;
    let added = Value::map([("worker-got", s("plugin-add"))]);
    assert_eq!(reply.get(&w0.address), Some(&added), "{reply:?}");
    assert_eq!(reply.get(&w1.address), Some(&added), "{reply:?}");
    assert_eq!(reply.as_map().map(<[_]>::len), Some(2));
    for w in [&w0, &w1] {
        let adds = got(w, &["plugin-add"]);
        assert_eq!(adds.len(), 1);
        assert_eq!(adds[0].get("name"), Some(&s("p")));
        assert_eq!(adds[0].get("plugin"), Some(&pickled(b"pickled-p")));
    }

    // a worker joining later gets it in its registration reply (scheduler.py:4787)
    let late = registration_reply(&server.address, "late").await;
    assert_eq!(
        late.get("worker-plugins"),
        Some(&Value::map([("p", pickled(b"pickled-p"))]))
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_idempotent_plugin_already_registered_is_kept_and_others_are_replaced() {
    let server = TestServer::start().await;
    let w = Worker::join(&server.address, "w0", 1).await;
    rpc(
        &server.address,
        register("register_worker_plugin", "p", b"first", true),
    )
    .await;
    rpc(
        &server.address,
        register("register_worker_plugin", "q", b"other", false),
    )
    .await;

    // scheduler.py:8135: nothing is sent, the answer is {}
    let again = rpc(
        &server.address,
        register("register_worker_plugin", "p", b"second", true),
    )
    .await;
    assert_eq!(again, Value::Map(Vec::new()));
    assert_eq!(got(&w, &["plugin-add"]).len(), 2);

    // not idempotent: the new plugin replaces the old one, in the same place
    let replaced = rpc(
        &server.address,
        register("register_worker_plugin", "p", b"third", false),
    )
    .await;
    assert!(replaced.get(&w.address).is_some(), "{replaced:?}");
    assert_eq!(
        got(&w, &["plugin-add"])
            .last()
            .and_then(|m| m.get("plugin")),
        Some(&pickled(b"third"))
    );
    let late = registration_reply(&server.address, "late").await;
    assert_eq!(
        late.get("worker-plugins"),
        Some(&Value::map([
            ("p", pickled(b"third")),
            ("q", pickled(b"other"))
        ]))
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn unregister_worker_plugin_tears_it_down_and_an_unknown_name_is_a_value_error() {
    let server = TestServer::start().await;
    let w = Worker::join(&server.address, "w0", 1).await;
    rpc(
        &server.address,
        register("register_worker_plugin", "p", b"pickled-p", false),
    )
    .await;

    let reply = rpc(&server.address, unregister("unregister_worker_plugin", "p")).await;
    assert_eq!(
        reply.get(&w.address),
        Some(&Value::map([("worker-got", s("plugin-remove"))]))
    );
    let removes = got(&w, &["plugin-remove"]);
    assert_eq!(removes.len(), 1);
    assert_eq!(removes[0].get("name"), Some(&s("p")));

    // scheduler.py:8152
    let unknown = rpc(&server.address, unregister("unregister_worker_plugin", "p")).await;
    assert!(is_error(&unknown), "{unknown:?}");
    assert_eq!(
        error_text(&unknown),
        "ValueError('The worker plugin p does not exist')"
    );
    assert_eq!(got(&w, &["plugin-remove"]).len(), 1);

    let late = registration_reply(&server.address, "late").await;
    assert_eq!(late.get("worker-plugins"), Some(&Value::Map(Vec::new())));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn nanny_plugins_go_to_the_nannies_and_to_nannies_registering_later() {
    let server = TestServer::start().await;
    let nanny = NannyListener::start().await;
    let with_nanny = Worker::join_with(
        &server.address,
        "w0",
        1,
        &[("nanny", Value::from(nanny.address.as_str()))],
    )
    .await;
    let without = Worker::join(&server.address, "w1", 1).await;

    // scheduler.py:8172: only workers with a nanny, keyed by the worker's address
    let reply = rpc(
        &server.address,
        register("register_nanny_plugin", "n", b"pickled-n", false),
    )
    .await;
    assert_eq!(
        reply,
        Value::map([(
            with_nanny.address.as_str(),
            Value::map([("status", s("OK"))])
        )])
    );
    assert_eq!(nanny.ops(), vec!["plugin_add".to_string()]);
    let add = nanny.requests.lock().unwrap()[0].clone();
    assert_eq!(add.get("plugin"), Some(&pickled(b"pickled-n")));
    assert_eq!(add.get("name"), Some(&s("n")));
    assert!(got(&without, &["plugin_add", "plugin-add"]).is_empty());
    assert!(got(&with_nanny, &["plugin_add", "plugin-add"]).is_empty());

    // a nanny starting later gets it in its `register_nanny` reply (scheduler.py:4806)
    let mut starting = connect(&server.address).await;
    let announce = msg("register_nanny", [("address", s("tcp://127.0.0.1:9"))]);
    let registered = bounded("register_nanny's reply", starting.request(&announce))
        .await
        .unwrap();
    assert_eq!(
        registered,
        Value::map([
            ("status", s("OK")),
            ("nanny-plugins", Value::map([("n", pickled(b"pickled-n"))])),
        ])
    );
    starting
        .writer
        .write(&Value::map([("status", s("ok"))]))
        .await
        .unwrap();

    let removed = rpc(&server.address, unregister("unregister_nanny_plugin", "n")).await;
    assert_eq!(
        removed,
        Value::map([(
            with_nanny.address.as_str(),
            Value::map([("status", s("OK"))])
        )])
    );
    assert_eq!(
        nanny.ops(),
        vec!["plugin_add".to_string(), "plugin_remove".to_string()]
    );
    // scheduler.py:8186
    let unknown = rpc(&server.address, unregister("unregister_nanny_plugin", "n")).await;
    assert_eq!(
        error_text(&unknown),
        "ValueError('The nanny plugin n does not exist')"
    );
    // worker plugins and nanny plugins are kept apart
    let unknown = rpc(&server.address, unregister("unregister_worker_plugin", "n")).await;
    assert_eq!(
        error_text(&unknown),
        "ValueError('The worker plugin n does not exist')"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn register_nanny_plugin_waits_for_a_nanny_that_is_starting() {
    let server = TestServer::start().await;
    // a nanny got its (empty) plugins and is starting its worker
    let mut starting = connect(&server.address).await;
    let announce = msg("register_nanny", [("address", s("tcp://127.0.0.1:9"))]);
    let registered = bounded("register_nanny's reply", starting.request(&announce))
        .await
        .unwrap();
    assert_eq!(
        registered.get("nanny-plugins"),
        Some(&Value::Map(Vec::new()))
    );

    // scheduler.py:8167: the registration waits until that nanny has started
    let pending = Pending::send(
        &server.address,
        register("register_nanny_plugin", "n", b"pickled-n", false),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!pending.is_answered());
    starting
        .writer
        .write(&Value::map([("status", s("ok"))]))
        .await
        .unwrap();
    assert_eq!(pending.answer().await, Value::Map(Vec::new()));
    server.stop().await.unwrap();
}
