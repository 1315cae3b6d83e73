//! The coordination extensions over real wire messages, as `distributed`'s `publish.py`,
//! `variable.py`, `queues.py`, `event.py`, `semaphore.py` and `multi_lock.py` answer them:
//! published datasets (`publish_*` and the client's `publish_flush_batched_send`),
//! `Variable` (`variable_set`/`variable_get`, `variable-future-received-confirm`,
//! `variable_delete`), `Queue` (`queue_*`, `queue-future-release`, `queue_release`),
//! `Event`, `Semaphore`/`Lock` and `MultiLock`.
//!
//! A test that shows a request *waits* runs on a paused clock: [`advance`] returns only
//! once everything sent before it was handled, so "not answered yet" is exact there. Futures
//! are keys put in memory with `update_data` (as `Client.scatter` ends), so those tests need
//! no graph; one test submits a graph after the request that names its key.

mod common;

use common::*;
use rask_protocol::Value;
use std::time::Duration;

/// Long enough for anything in flight to be handled, short of every timeout.
const A_WHILE: Duration = Duration::from_secs(5);

fn name(v: &str) -> (&'static str, Value) {
    ("name", s(v))
}

/// `{"type": "msgpack", "value": v}`: a stored plain value, as `variable_get` and
/// `queue_get` return it.
fn msgpack(v: Value) -> Value {
    Value::map([("type", s("msgpack")), ("value", v)])
}

/// A worker holding `key`, which `client` wants (`update_data`, as `Client.scatter` ends).
async fn in_memory(server: &TestServer, client: &Client, key: &str) -> Worker {
    let w = Worker::join(&server.address, &format!("holder-of-{key}"), 1).await;
    let reply = rpc(
        &server.address,
        msg(
            "update_data",
            [
                ("who_has", Value::map([(key, keys(&[&w.address]))])),
                ("nbytes", Value::map([(key, Value::Int(8))])),
                ("client", s(&client.name)),
            ],
        ),
    )
    .await;
    assert_eq!(reply, Value::Nil, "{reply:?}");
    assert_eq!(state(server, key).await, s("memory"));
    w
}

/// The scheduler's state of `key` (`get_task_status`), Nil once forgotten.
async fn state(server: &TestServer, key: &str) -> Value {
    let r = rpc(
        &server.address,
        msg("get_task_status", [("keys", keys(&[key]))]),
    )
    .await;
    r.get(key).cloned().unwrap_or(Value::Nil)
}

/// The client lets go of `key` (`client-releases-keys`).
async fn release(c: &mut Client, key: &str) {
    let m = msg(
        "client-releases-keys",
        [("keys", keys(&[key])), ("client", s(&c.name))],
    );
    c.stream.send(vec![m]).await;
}

/// Waits for the worker to be told to drop `key`: nobody holds it any more.
async fn freed(w: &mut Worker, key: &str) {
    let free = w.stream.next_op("free-keys").await;
    assert_eq!(free.get("keys"), Some(&keys(&[key])), "{free:?}");
}

// ---- published datasets ----------------------------------------------------------------------

fn publish_put(c: &Client, uid: &str, dataset: &str, ks: &[&str], data: Value) -> Value {
    msg(
        "publish_put",
        [
            ("names", keys(&[dataset])),
            ("keys", Value::Array(vec![keys(ks)])),
            ("data", Value::Array(vec![data])),
            ("override", Value::Bool(false)),
            ("client", s(&c.name)),
            ("uid", s(uid)),
        ],
    )
}

fn publish_delete(c: &Client, uid: &str, dataset: &str) -> Value {
    msg(
        "publish_delete",
        [
            ("names", keys(&[dataset])),
            ("client", s(&c.name)),
            ("uid", s(uid)),
        ],
    )
}

async fn flush(c: &mut Client, uid: &str) {
    let m = msg("publish_flush_batched_send", [("uid", s(uid))]);
    c.stream.send(vec![m]).await;
}

fn published(data: Value, ks: &[&str]) -> Value {
    Value::map([("data", data), ("keys", keys(ks))])
}

#[tokio::test(start_paused = true)]
async fn publish_put_waits_for_the_clients_flush_of_the_same_uid() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server.address).await;
    let put = Pending::send(&server.address, publish_put(&c, "u1", "ds", &[], s("v1"))).await;
    // past the 30 s check that the client is still connected
    advance(Duration::from_secs(45)).await;
    assert!(!put.is_answered(), "publish_put did not wait for the flush");
    flush(&mut c, "other-uid").await;
    advance(A_WHILE).await;
    assert!(
        !put.is_answered(),
        "another uid's flush released publish_put"
    );
    flush(&mut c, "u1").await;
    assert_eq!(put.answer().await, Value::Nil);
    let got = rpc(
        &server.address,
        msg("publish_get", [("names", keys(&["ds"]))]),
    )
    .await;
    assert_eq!(got, Value::Array(vec![published(s("v1"), &[])]));
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn publish_put_after_its_flush_answers_at_once() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server.address).await;
    flush(&mut c, "u1").await;
    advance(A_WHILE).await;
    let reply = rpc(&server.address, publish_put(&c, "u1", "ds", &[], s("v1"))).await;
    assert_eq!(reply, Value::Nil);
    let names = rpc(&server.address, msg("publish_list", [])).await;
    assert_eq!(names, keys(&["ds"]));
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn publish_put_of_an_existing_name_is_a_key_error_unless_override() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server.address).await;
    for uid in ["u1", "u2", "u3"] {
        flush(&mut c, uid).await;
    }
    advance(A_WHILE).await;
    assert_eq!(
        rpc(&server.address, publish_put(&c, "u1", "ds", &[], s("v1"))).await,
        Value::Nil
    );
    let again = rpc(&server.address, publish_put(&c, "u2", "ds", &[], s("v2"))).await;
    assert!(is_error(&again), "{again:?}");
    assert!(
        error_text(&again).starts_with("KeyError('Dataset ds already exists"),
        "{again:?}"
    );
    let mut replace = publish_put(&c, "u3", "ds", &[], s("v3"));
    replace.set("override", Value::Bool(true));
    assert_eq!(rpc(&server.address, replace).await, Value::Nil);
    let got = rpc(
        &server.address,
        msg("publish_get", [("names", keys(&["ds"]))]),
    )
    .await;
    assert_eq!(got, Value::Array(vec![published(s("v3"), &[])]));
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn publish_list_is_sorted_and_publish_get_answers_none_for_unknown_names() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server.address).await;
    for (uid, ds) in [("u1", "zeta"), ("u2", "alpha")] {
        flush(&mut c, uid).await;
        advance(A_WHILE).await;
        let r = rpc(&server.address, publish_put(&c, uid, ds, &[], s(ds))).await;
        assert_eq!(r, Value::Nil);
    }
    let names = rpc(&server.address, msg("publish_list", [])).await;
    assert_eq!(names, keys(&["alpha", "zeta"]));
    let got = rpc(
        &server.address,
        msg("publish_get", [("names", keys(&["zeta", "nope"]))]),
    )
    .await;
    assert_eq!(
        got,
        Value::Array(vec![published(s("zeta"), &[]), Value::Nil])
    );
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_published_key_outlives_its_client_until_publish_delete() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server.address).await;
    let mut w = in_memory(&server, &c, "x-1").await;
    flush(&mut c, "u1").await;
    let put = publish_put(&c, "u1", "ds", &["x-1"], s("meta"));
    assert_eq!(rpc(&server.address, put).await, Value::Nil);
    release(&mut c, "x-1").await;
    advance(A_WHILE).await;
    assert_eq!(
        state(&server, "x-1").await,
        s("memory"),
        "the dataset keeps it"
    );

    // publish_delete waits for its flush too
    let delete = Pending::send(&server.address, publish_delete(&c, "u2", "ds")).await;
    advance(A_WHILE).await;
    assert!(!delete.is_answered());
    flush(&mut c, "u2").await;
    assert_eq!(delete.answer().await, Value::Nil);
    freed(&mut w, "x-1").await;
    assert_eq!(
        rpc(&server.address, msg("publish_list", [])).await,
        Value::Array(Vec::new())
    );
    server.stop().await.unwrap();
}

// ---- Variable --------------------------------------------------------------------------------

#[tokio::test]
async fn variable_get_returns_the_msgpack_value_set() {
    let server = TestServer::start().await;
    let set = msg("variable_set", [name("v"), ("data", Value::Int(42))]);
    assert_eq!(rpc(&server.address, set).await, Value::Nil);
    let got = rpc(&server.address, msg("variable_get", [name("v")])).await;
    assert_eq!(got, msgpack(Value::Int(42)));
    let set = msg("variable_set", [name("v"), ("data", s("later"))]);
    assert_eq!(rpc(&server.address, set).await, Value::Nil);
    let got = rpc(&server.address, msg("variable_get", [name("v")])).await;
    assert_eq!(got, msgpack(s("later")));
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn variable_get_waits_until_the_variable_is_set() {
    let server = TestServer::start().await;
    let get = Pending::send(&server.address, msg("variable_get", [name("v")])).await;
    advance(A_WHILE).await;
    assert!(
        !get.is_answered(),
        "variable_get of an unset variable answered"
    );
    let set = msg("variable_set", [name("v"), ("data", Value::Int(7))]);
    assert_eq!(rpc(&server.address, set).await, Value::Nil);
    assert_eq!(get.answer().await, msgpack(Value::Int(7)));
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn variable_get_of_a_future_has_its_key_a_token_and_the_task_state() {
    let server = TestServer::start().await;
    let c = Client::connect(&server.address).await;
    let _w = in_memory(&server, &c, "x-1").await;
    let set = msg("variable_set", [name("v"), ("key", s("x-1"))]);
    assert_eq!(rpc(&server.address, set).await, Value::Nil);
    let got = rpc(&server.address, msg("variable_get", [name("v")])).await;
    assert_eq!(got.get("type"), Some(&s("Future")), "{got:?}");
    assert_eq!(got.get("value"), Some(&s("x-1")), "{got:?}");
    assert_eq!(got.get("state"), Some(&s("memory")), "{got:?}");
    let token = got.get("token").and_then(Value::as_str).unwrap_or("");
    assert!(!token.is_empty(), "{got:?}");
    let again = rpc(&server.address, msg("variable_get", [name("v")])).await;
    assert_ne!(
        again.get("token"),
        got.get("token"),
        "each reader gets its own token"
    );
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn variable_delete_releases_the_future_it_held() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server.address).await;
    let mut w = in_memory(&server, &c, "x-1").await;
    let set = msg("variable_set", [name("v"), ("key", s("x-1"))]);
    assert_eq!(rpc(&server.address, set).await, Value::Nil);
    release(&mut c, "x-1").await;
    advance(A_WHILE).await;
    assert_eq!(
        state(&server, "x-1").await,
        s("memory"),
        "the variable keeps it"
    );
    c.stream
        .send(vec![msg("variable_delete", [name("v")])])
        .await;
    freed(&mut w, "x-1").await;
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_future_handed_out_stays_until_its_reader_confirms() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server.address).await;
    let mut w = in_memory(&server, &c, "x-1").await;
    let set = msg("variable_set", [name("v"), ("key", s("x-1"))]);
    assert_eq!(rpc(&server.address, set).await, Value::Nil);
    release(&mut c, "x-1").await;
    let got = rpc(&server.address, msg("variable_get", [name("v")])).await;
    let token = got.get("token").cloned().unwrap_or(Value::Nil);

    // deleted while a reader has not confirmed: the key stays for that reader
    c.stream
        .send(vec![msg("variable_delete", [name("v")])])
        .await;
    advance(A_WHILE).await;
    assert_eq!(state(&server, "x-1").await, s("memory"));

    // the reader confirms: it holds the key itself now, the variable lets go
    let mut reader = Client::connect(&server.address).await;
    let confirm = msg(
        "variable-future-received-confirm",
        [name("v"), ("key", s("x-1")), ("token", token)],
    );
    reader.stream.send(vec![confirm]).await;
    advance(A_WHILE).await;
    assert_eq!(
        state(&server, "x-1").await,
        s("memory"),
        "the reader keeps it"
    );
    release(&mut reader, "x-1").await;
    freed(&mut w, "x-1").await;
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn variable_set_of_a_key_the_scheduler_does_not_know_yet_waits_for_its_graph() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server.address).await;
    let set = Pending::send(
        &server.address,
        msg("variable_set", [name("v"), ("key", s("late-1"))]),
    )
    .await;
    advance(A_WHILE).await;
    assert!(
        !set.is_answered(),
        "a future of an unknown key was accepted"
    );
    c.submit(&[task("late-1", &[])], &["late-1"]).await;
    assert_eq!(set.answer().await, Value::Nil);
    let got = rpc(&server.address, msg("variable_get", [name("v")])).await;
    assert_eq!(got.get("type"), Some(&s("Future")), "{got:?}");
    assert_eq!(got.get("value"), Some(&s("late-1")), "{got:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn variable_get_of_an_erred_future_carries_its_exception_and_traceback() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("bad-1", &[])], &["bad-1"]).await;
    let compute = w.compute_task().await;
    w.fail(&compute, b"pickled-exception", b"pickled-traceback")
        .await;
    let erred = c.outcome("bad-1").await;
    assert_eq!(op_of(&erred), "task-erred", "{erred:?}");
    let set = msg("variable_set", [name("v"), ("key", s("bad-1"))]);
    assert_eq!(rpc(&server.address, set).await, Value::Nil);
    let got = rpc(&server.address, msg("variable_get", [name("v")])).await;
    assert_eq!(got.get("state"), Some(&s("erred")), "{got:?}");
    // what the client's task-erred carried
    assert_eq!(got.get("exception"), erred.get("exception"), "{got:?}");
    assert_eq!(got.get("traceback"), erred.get("traceback"), "{got:?}");
    assert!(got.get("exception").is_some_and(|e| *e != Value::Nil));
    server.stop().await.unwrap();
}

// ---- Queue -----------------------------------------------------------------------------------

fn queue_create(q: &str, maxsize: i64) -> Value {
    msg("queue_create", [name(q), ("maxsize", Value::Int(maxsize))])
}

fn queue_put(q: &str, data: Value) -> Value {
    msg("queue_put", [name(q), ("data", data)])
}

fn queue_get(q: &str, batch: Value) -> Value {
    msg("queue_get", [name(q), ("batch", batch)])
}

async fn qsize(server: &TestServer, q: &str) -> Value {
    rpc(&server.address, msg("queue_qsize", [name(q)])).await
}

#[tokio::test]
async fn queue_items_come_out_in_the_order_they_went_in() {
    let server = TestServer::start().await;
    assert_eq!(rpc(&server.address, queue_create("q", 0)).await, Value::Nil);
    for i in 1..=3 {
        let r = rpc(&server.address, queue_put("q", Value::Int(i))).await;
        assert_eq!(r, Value::Nil);
    }
    assert_eq!(qsize(&server, "q").await, Value::Int(3));
    for i in 1..=3 {
        let got = rpc(&server.address, queue_get("q", Value::Bool(false))).await;
        assert_eq!(got, msgpack(Value::Int(i)));
    }
    assert_eq!(qsize(&server, "q").await, Value::Int(0));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn queue_get_with_batch_true_takes_every_item_there_is_without_waiting() {
    let server = TestServer::start().await;
    rpc(&server.address, queue_create("q", 0)).await;
    let none = rpc(&server.address, queue_get("q", Value::Bool(true))).await;
    assert_eq!(none, Value::Array(Vec::new()));
    for i in 1..=3 {
        rpc(&server.address, queue_put("q", Value::Int(i))).await;
    }
    let all = rpc(&server.address, queue_get("q", Value::Bool(true))).await;
    let want: Vec<Value> = (1..=3).map(|i| msgpack(Value::Int(i))).collect();
    assert_eq!(all, Value::Array(want));
    assert_eq!(qsize(&server, "q").await, Value::Int(0));
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn queue_get_with_batch_n_waits_for_n_items() {
    let server = TestServer::start().await;
    rpc(&server.address, queue_create("q", 0)).await;
    rpc(&server.address, queue_put("q", Value::Int(1))).await;
    let get = Pending::send(&server.address, queue_get("q", Value::Int(2))).await;
    advance(A_WHILE).await;
    assert!(!get.is_answered(), "a batch of 2 answered with 1 item");
    rpc(&server.address, queue_put("q", Value::Int(2))).await;
    let want = vec![msgpack(Value::Int(1)), msgpack(Value::Int(2))];
    assert_eq!(get.answer().await, Value::Array(want));
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn queue_get_waits_for_a_put() {
    let server = TestServer::start().await;
    rpc(&server.address, queue_create("q", 0)).await;
    let get = Pending::send(&server.address, queue_get("q", Value::Bool(false))).await;
    advance(A_WHILE).await;
    assert!(!get.is_answered(), "queue_get of an empty queue answered");
    rpc(&server.address, queue_put("q", s("item"))).await;
    assert_eq!(get.answer().await, msgpack(s("item")));
    assert_eq!(qsize(&server, "q").await, Value::Int(0));
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn queue_put_on_a_full_queue_waits_for_a_get() {
    let server = TestServer::start().await;
    rpc(&server.address, queue_create("q", 1)).await;
    assert_eq!(
        rpc(&server.address, queue_put("q", s("a"))).await,
        Value::Nil
    );
    let put = Pending::send(&server.address, queue_put("q", s("b"))).await;
    advance(A_WHILE).await;
    assert!(!put.is_answered(), "a put on a full queue answered");
    assert_eq!(qsize(&server, "q").await, Value::Int(1));
    let got = rpc(&server.address, queue_get("q", Value::Bool(false))).await;
    assert_eq!(got, msgpack(s("a")));
    assert_eq!(put.answer().await, Value::Nil);
    let got = rpc(&server.address, queue_get("q", Value::Bool(false))).await;
    assert_eq!(got, msgpack(s("b")));
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_future_in_a_queue_stays_until_its_getter_takes_its_own_hold() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server.address).await;
    let mut w = in_memory(&server, &c, "x-1").await;
    rpc(&server.address, queue_create("q", 0)).await;
    let put = msg("queue_put", [name("q"), ("key", s("x-1"))]);
    assert_eq!(rpc(&server.address, put).await, Value::Nil);
    release(&mut c, "x-1").await;
    advance(A_WHILE).await;
    assert_eq!(
        state(&server, "x-1").await,
        s("memory"),
        "the queue keeps it"
    );

    let got = rpc(&server.address, queue_get("q", Value::Bool(false))).await;
    assert_eq!(got.get("type"), Some(&s("Future")), "{got:?}");
    assert_eq!(got.get("value"), Some(&s("x-1")), "{got:?}");
    assert_eq!(got.get("state"), Some(&s("memory")), "{got:?}");
    advance(A_WHILE).await;
    assert_eq!(
        state(&server, "x-1").await,
        s("memory"),
        "in flight to its getter"
    );

    let mut getter = Client::connect(&server.address).await;
    let took = msg("queue-future-release", [name("q"), ("key", s("x-1"))]);
    getter.stream.send(vec![took]).await;
    advance(A_WHILE).await;
    assert_eq!(
        state(&server, "x-1").await,
        s("memory"),
        "the getter keeps it"
    );
    release(&mut getter, "x-1").await;
    freed(&mut w, "x-1").await;
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn queue_release_by_its_last_user_drops_the_queue_and_its_futures() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server.address).await;
    let mut w = in_memory(&server, &c, "x-1").await;
    // two Queue objects share it
    rpc(&server.address, queue_create("q", 0)).await;
    rpc(&server.address, queue_create("q", 0)).await;
    let put = msg("queue_put", [name("q"), ("key", s("x-1"))]);
    assert_eq!(rpc(&server.address, put).await, Value::Nil);
    release(&mut c, "x-1").await;

    c.stream.send(vec![msg("queue_release", [name("q")])]).await;
    advance(A_WHILE).await;
    assert_eq!(qsize(&server, "q").await, Value::Int(1), "one user is left");
    assert_eq!(state(&server, "x-1").await, s("memory"));

    c.stream.send(vec![msg("queue_release", [name("q")])]).await;
    freed(&mut w, "x-1").await;
    let gone = qsize(&server, "q").await;
    assert_eq!(error_text(&gone), "KeyError('q')");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn queue_ops_on_a_queue_never_created_are_key_errors() {
    let server = TestServer::start().await;
    for request in [
        msg("queue_qsize", [name("nope")]),
        queue_put("nope", Value::Int(1)),
        queue_get("nope", Value::Bool(false)),
    ] {
        let reply = rpc(&server.address, request.clone()).await;
        assert!(is_error(&reply), "{request:?}: {reply:?}");
        assert_eq!(error_text(&reply), "KeyError('nope')");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn queue_get_with_an_integer_batch_and_a_timeout_is_not_implemented() {
    let server = TestServer::start().await;
    rpc(&server.address, queue_create("q", 0)).await;
    let mut get = queue_get("q", Value::Int(2));
    get.set("timeout", Value::Float(1.0));
    let reply = rpc(&server.address, get).await;
    assert!(
        error_text(&reply).starts_with("NotImplementedError("),
        "{reply:?}"
    );
    server.stop().await.unwrap();
}

// ---- Event -----------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn event_set_wakes_every_waiter() {
    let server = TestServer::start().await;
    let a = Pending::send(&server.address, msg("event_wait", [name("e")])).await;
    let b = Pending::send(&server.address, msg("event_wait", [name("e")])).await;
    advance(A_WHILE).await;
    assert!(
        !a.is_answered() && !b.is_answered(),
        "event_wait answered unset"
    );
    let is_set = rpc(&server.address, msg("event_is_set", [name("e")])).await;
    assert_eq!(is_set, Value::Bool(false));
    assert_eq!(
        rpc(&server.address, msg("event_set", [name("e")])).await,
        Value::Nil
    );
    assert_eq!(a.answer().await, Value::Bool(true));
    assert_eq!(b.answer().await, Value::Bool(true));
    let is_set = rpc(&server.address, msg("event_is_set", [name("e")])).await;
    assert_eq!(is_set, Value::Bool(true));
    // a set event does not make anyone wait
    let now = rpc(&server.address, msg("event_wait", [name("e")])).await;
    assert_eq!(now, Value::Bool(true));
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn event_clear_makes_waiters_wait_again() {
    let server = TestServer::start().await;
    rpc(&server.address, msg("event_set", [name("e")])).await;
    assert_eq!(
        rpc(&server.address, msg("event_clear", [name("e")])).await,
        Value::Nil
    );
    let is_set = rpc(&server.address, msg("event_is_set", [name("e")])).await;
    assert_eq!(is_set, Value::Bool(false));
    let wait = Pending::send(&server.address, msg("event_wait", [name("e")])).await;
    advance(A_WHILE).await;
    assert!(!wait.is_answered(), "event_wait answered a cleared event");
    rpc(&server.address, msg("event_set", [name("e")])).await;
    assert_eq!(wait.answer().await, Value::Bool(true));
    server.stop().await.unwrap();
}

// ---- Semaphore -------------------------------------------------------------------------------

fn register(sem: &str, max_leases: i64) -> Value {
    msg(
        "semaphore_register",
        [
            name(sem),
            ("max_leases", Value::Int(max_leases)),
            ("lease_timeout", Value::Float(30.0)),
        ],
    )
}

fn acquire(sem: &str, lease: &str) -> Value {
    msg("semaphore_acquire", [name(sem), ("lease_id", s(lease))])
}

fn sem_release(sem: &str, lease: &str) -> Value {
    msg("semaphore_release", [name(sem), ("lease_id", s(lease))])
}

async fn sem_value(server: &TestServer, sem: &str) -> Value {
    rpc(&server.address, msg("semaphore_value", [name(sem)])).await
}

#[tokio::test(start_paused = true)]
async fn semaphore_acquire_waits_for_a_release() {
    let server = TestServer::start().await;
    assert_eq!(rpc(&server.address, register("s", 1)).await, Value::Nil);
    assert_eq!(
        rpc(&server.address, acquire("s", "a")).await,
        Value::Bool(true)
    );
    let b = Pending::send(&server.address, acquire("s", "b")).await;
    advance(A_WHILE).await;
    assert!(!b.is_answered(), "a second lease of a Lock was granted");
    assert_eq!(sem_value(&server, "s").await, Value::Int(1));
    assert_eq!(
        rpc(&server.address, sem_release("s", "a")).await,
        Value::Nil
    );
    assert_eq!(b.answer().await, Value::Bool(true));
    assert_eq!(sem_value(&server, "s").await, Value::Int(1));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn semaphore_leases_up_to_max_leases_and_again_to_a_lease_it_holds() {
    let server = TestServer::start().await;
    rpc(&server.address, register("s", 2)).await;
    for lease in ["a", "b", "a"] {
        let r = rpc(&server.address, acquire("s", lease)).await;
        assert_eq!(r, Value::Bool(true), "{lease}");
    }
    assert_eq!(sem_value(&server, "s").await, Value::Int(2));
    rpc(&server.address, sem_release("s", "b")).await;
    assert_eq!(sem_value(&server, "s").await, Value::Int(1));
    // releasing a lease not held changes nothing
    rpc(&server.address, sem_release("s", "b")).await;
    assert_eq!(sem_value(&server, "s").await, Value::Int(1));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn semaphore_register_with_other_max_leases_is_a_value_error() {
    let server = TestServer::start().await;
    assert_eq!(rpc(&server.address, register("s", 2)).await, Value::Nil);
    assert_eq!(rpc(&server.address, register("s", 2)).await, Value::Nil);
    let reply = rpc(&server.address, register("s", 3)).await;
    assert!(is_error(&reply), "{reply:?}");
    assert_eq!(
        error_text(&reply),
        "ValueError('Inconsistent max leases: 3, expected: 2')"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn semaphore_acquire_of_an_unknown_semaphore_is_a_runtime_error() {
    let server = TestServer::start().await;
    let reply = rpc(&server.address, acquire("nope", "a")).await;
    assert_eq!(
        error_text(&reply),
        "RuntimeError('Semaphore or Lock `nope` not known.')"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn semaphore_close_forgets_it_and_its_leases() {
    let server = TestServer::start().await;
    rpc(&server.address, register("s", 1)).await;
    rpc(&server.address, acquire("s", "a")).await;
    assert_eq!(
        rpc(&server.address, msg("semaphore_close", [name("s")])).await,
        Value::Nil
    );
    assert_eq!(sem_value(&server, "s").await, Value::Int(0));
    let reply = rpc(&server.address, acquire("s", "b")).await;
    assert_eq!(
        error_text(&reply),
        "RuntimeError('Semaphore or Lock `s` not known.')"
    );
    // registered again, it starts afresh
    rpc(&server.address, register("s", 1)).await;
    let b = rpc(&server.address, acquire("s", "b")).await;
    assert_eq!(b, Value::Bool(true));
    server.stop().await.unwrap();
}

// ---- MultiLock -------------------------------------------------------------------------------

/// `MultiLock.acquire` sends `num_locks or len(names)`.
fn multi_acquire(id: &str, locks: &[&str], num_locks: Option<i64>) -> Value {
    let n = num_locks.unwrap_or(locks.len() as i64);
    msg(
        "multi_lock_acquire",
        [
            ("locks", keys(locks)),
            ("id", s(id)),
            ("num_locks", Value::Int(n)),
            ("timeout", Value::Nil),
        ],
    )
}

fn multi_release(id: &str) -> Value {
    msg("multi_lock_release", [("id", s(id))])
}

#[tokio::test(start_paused = true)]
async fn multi_lock_acquire_waits_for_the_holder_of_a_shared_lock() {
    let server = TestServer::start().await;
    let first = rpc(&server.address, multi_acquire("a", &["l1", "l2"], None)).await;
    assert_eq!(first, Value::Bool(true));
    let second = Pending::send(&server.address, multi_acquire("b", &["l2", "l3"], None)).await;
    advance(A_WHILE).await;
    assert!(!second.is_answered(), "l2 was granted twice");
    // a MultiLock on other locks is not held up
    let other = rpc(&server.address, multi_acquire("c", &["l4"], None)).await;
    assert_eq!(other, Value::Bool(true));
    assert_eq!(rpc(&server.address, multi_release("a")).await, Value::Nil);
    assert_eq!(second.answer().await, Value::Bool(true));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn multi_lock_with_num_locks_takes_the_free_ones() {
    let server = TestServer::start().await;
    let a = rpc(&server.address, multi_acquire("a", &["l1"], None)).await;
    assert_eq!(a, Value::Bool(true));
    let b = rpc(&server.address, multi_acquire("b", &["l1", "l2"], Some(1))).await;
    assert_eq!(b, Value::Bool(true));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn multi_lock_release_of_an_id_holding_nothing_is_a_key_error() {
    let server = TestServer::start().await;
    let reply = rpc(&server.address, multi_release("nobody")).await;
    assert!(is_error(&reply), "{reply:?}");
    assert_eq!(error_text(&reply), "KeyError('nobody')");
    server.stop().await.unwrap();
}
