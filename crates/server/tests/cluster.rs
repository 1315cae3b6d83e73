//! What cluster managers ask of the scheduler, over real wire messages: the metadata store
//! (`set_metadata`/`get_metadata`), the worker-status feed (`subscribe_worker_status`),
//! adaptive scaling's questions (`adaptive_target`, `workers_to_close`, `check_idle`),
//! `terminate`, `set_resources`, `set_restrictions`, `add_keys` and `replicate`.

mod common;

use common::*;
use rask_protocol::Value;

fn path(ks: &[&str]) -> Value {
    keys(ks)
}

fn addresses(reply: &Value) -> Vec<String> {
    reply
        .as_array()
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect()
}

fn holders(who_has: &Value, key: &str) -> usize {
    who_has
        .get(key)
        .and_then(Value::as_array)
        .map_or(0, <[Value]>::len)
}

// ---- metadata ----------------------------------------------------------------------------------

#[tokio::test]
async fn metadata_round_trips_through_nested_keys() {
    let server = TestServer::start().await;
    let set = rpc(
        &server.address,
        msg(
            "set_metadata",
            [("keys", path(&["a", "b"])), ("value", Value::Int(1))],
        ),
    )
    .await;
    assert!(set.is_nil(), "{set:?}");
    let got = rpc(
        &server.address,
        msg("get_metadata", [("keys", path(&["a", "b"]))]),
    )
    .await;
    assert_eq!(got, Value::Int(1));
    let parent = rpc(
        &server.address,
        msg("get_metadata", [("keys", path(&["a"]))]),
    )
    .await;
    assert_eq!(parent, Value::map([("b", Value::Int(1))]));

    // a value that is not a dict is replaced by one on the way down
    rpc(
        &server.address,
        msg(
            "set_metadata",
            [("keys", path(&["a", "b", "c"])), ("value", s("deep"))],
        ),
    )
    .await;
    let deep = rpc(
        &server.address,
        msg("get_metadata", [("keys", path(&["a", "b", "c"]))]),
    )
    .await;
    assert_eq!(deep, s("deep"));

    let missing = rpc(
        &server.address,
        msg("get_metadata", [("keys", path(&["x"]))]),
    )
    .await;
    assert!(is_error(&missing), "{missing:?}");
    assert!(error_text(&missing).starts_with("KeyError"), "{missing:?}");
    // what `Client.get_metadata` sends without a default: `dask.typing.no_default`
    let no_default = Value::map([
        ("__Enum__", Value::Bool(true)),
        ("name", s("no_default")),
        ("__module__", s("dask.typing")),
        ("__name__", s("_NoDefault")),
    ]);
    let raised = rpc(
        &server.address,
        msg(
            "get_metadata",
            [("keys", path(&["x"])), ("default", no_default)],
        ),
    )
    .await;
    assert!(error_text(&raised).starts_with("KeyError"), "{raised:?}");
    let defaulted = rpc(
        &server.address,
        msg(
            "get_metadata",
            [("keys", path(&["x", "y"])), ("default", Value::Int(7))],
        ),
    )
    .await;
    assert_eq!(defaulted, Value::Int(7));
}

// ---- worker-status feed ------------------------------------------------------------------------

/// The next `[op, msg]` of a worker-status feed.
async fn next_status(feed: &mut rask_comm::Comm) -> Value {
    loop {
        match bounded("a worker-status message", feed.reader.read()).await {
            Ok(Some(Value::Array(batch))) if !batch.is_empty() => return batch[0].clone(),
            Ok(Some(_)) => {}
            other => panic!("the feed ended: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_subscriber_gets_the_identity_then_hears_workers_arrive_and_leave() {
    let server = TestServer::start().await;
    let w0 = Worker::join(&server.address, "w0", 1).await;
    let mut feed = connect(&server.address).await;
    feed.writer
        .write(&msg("subscribe_worker_status", []))
        .await
        .unwrap();
    let ident = bounded("the identity", feed.reader.read())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ident.get("type").and_then(Value::as_str), Some("Scheduler"));
    let listed = ident
        .get("workers")
        .and_then(|w| w.get(&w0.address))
        .expect("w0 in the identity");
    assert!(listed.get("metrics").is_none() && listed.get("last_seen").is_none());
    assert_eq!(listed.get("name").and_then(Value::as_str), Some("w0"));

    let w1 = Worker::join(&server.address, "w1", 2).await;
    let added = next_status(&mut feed).await;
    let added = added.as_array().unwrap();
    assert_eq!(added[0], s("add"));
    let entry = added[1]
        .get("workers")
        .and_then(|w| w.get(&w1.address))
        .expect("w1 in the add message");
    assert_eq!(entry.get("nthreads").and_then(Value::as_i64), Some(2));
    assert!(entry.get("metrics").is_none());

    let gone = w1.address.clone();
    w1.die();
    let removed = next_status(&mut feed).await;
    assert_eq!(removed, Value::Array(vec![s("remove"), s(&gone)]));
    drop(w0);
}

// ---- adaptive scaling --------------------------------------------------------------------------

#[tokio::test]
async fn adaptive_target_asks_for_a_worker_when_work_waits_and_none_when_idle() {
    let server = TestServer::start().await;
    let target = |d: f64| msg("adaptive_target", [("target_duration", Value::Float(d))]);
    assert_eq!(rpc(&server.address, target(5.0)).await, Value::Int(0));

    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("inc-1", &[])], &["inc-1"]).await;
    c.barrier().await;
    assert_eq!(rpc(&server.address, target(5.0)).await, Value::Int(1));

    let mut w = Worker::join(&server.address, "w0", 1).await;
    w.run_tasks(1).await;
    assert_eq!(op_of(&c.outcome("inc-1").await), "key-in-memory");
    // the only worker holds the data: it stays
    assert_eq!(rpc(&server.address, target(5.0)).await, Value::Int(1));
    // released, nothing left: it may go
    c.stream
        .send(vec![msg(
            "client-releases-keys",
            [("keys", keys(&["inc-1"])), ("client", s(&c.name))],
        )])
        .await;
    c.barrier().await;
    assert_eq!(rpc(&server.address, target(5.0)).await, Value::Int(0));
    // the default duration when none is named
    assert_eq!(
        rpc(&server.address, msg("adaptive_target", [])).await,
        Value::Int(0)
    );
}

#[tokio::test]
async fn workers_to_close_picks_idle_workers_with_the_least_data_first() {
    let server = TestServer::start().await;
    let mut w0 = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("inc-1", &[])], &["inc-1"]).await;
    w0.run_tasks(1).await;
    c.outcome("inc-1").await;
    let w1 = Worker::join(&server.address, "w1", 1).await;

    // room for twice the data without w1 (the one holding nothing), not without both
    let by_memory = rpc(&server.address, msg("workers_to_close", [])).await;
    assert_eq!(addresses(&by_memory), vec![w1.address.clone()]);
    let by_name = rpc(
        &server.address,
        msg("workers_to_close", [("attribute", s("name"))]),
    )
    .await;
    assert_eq!(by_name, Value::Array(vec![s("w1")]));
    let both = rpc(
        &server.address,
        msg("workers_to_close", [("n", Value::Int(2))]),
    )
    .await;
    assert_eq!(
        addresses(&both),
        vec![w1.address.clone(), w0.address.clone()]
    );
    let keep_one = rpc(
        &server.address,
        msg("workers_to_close", [("target", Value::Int(1))]),
    )
    .await;
    assert_eq!(addresses(&keep_one), vec![w1.address.clone()]);
    let at_least_two = rpc(
        &server.address,
        msg(
            "workers_to_close",
            [("n", Value::Int(2)), ("minimum", Value::Int(2))],
        ),
    )
    .await;
    assert_eq!(at_least_two, Value::Array(Vec::new()));

    let grouped = rpc(
        &server.address,
        msg(
            "workers_to_close",
            [("key", Value::Bin(bytes::Bytes::from_static(b"pickled")))],
        ),
    )
    .await;
    assert!(is_error(&grouped), "{grouped:?}");
    let bad = rpc(
        &server.address,
        msg("workers_to_close", [("attribute", s("nope"))]),
    )
    .await;
    assert!(error_text(&bad).starts_with("AttributeError"), "{bad:?}");
}

#[tokio::test]
async fn check_idle_is_none_after_activity_and_then_since_when() {
    let server = TestServer::start().await;
    let first = rpc(&server.address, msg("check_idle", [])).await;
    let since = first.as_f64().expect("idle since start");
    let again = rpc(&server.address, msg("check_idle", [])).await;
    assert_eq!(again.as_f64(), Some(since), "idle_since stays");

    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("inc-1", &[])], &["inc-1"]).await;
    c.barrier().await;
    // waiting for a worker: busy
    assert!(rpc(&server.address, msg("check_idle", [])).await.is_nil());
    let mut w = Worker::join(&server.address, "w0", 1).await;
    w.run_tasks(1).await;
    c.outcome("inc-1").await;
    // the first look after transitions resets it
    assert!(rpc(&server.address, msg("check_idle", [])).await.is_nil());
    let later = rpc(&server.address, msg("check_idle", [])).await;
    assert!(later.as_f64().expect("idle again") >= since);
}

// ---- terminate ---------------------------------------------------------------------------------

#[tokio::test]
async fn terminate_tells_workers_to_close_and_stops_the_scheduler() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let reply = rpc(&server.address, msg("terminate", [])).await;
    assert!(reply.is_nil(), "{reply:?}");
    let close = w.stream.next_op("close").await;
    assert_eq!(
        close.get("reason").and_then(Value::as_str),
        Some("scheduler-close")
    );
    server.ended().await.expect("a clean exit");
}

// ---- resources, restrictions, add_keys ---------------------------------------------------------

#[tokio::test]
async fn set_resources_changes_what_identity_reports() {
    let server = TestServer::start().await;
    let w = Worker::join(&server.address, "w0", 1).await;
    let reply = rpc(
        &server.address,
        msg(
            "set_resources",
            [
                ("worker", s(&w.address)),
                ("resources", Value::map([("GPU", Value::Int(2))])),
            ],
        ),
    )
    .await;
    assert_eq!(reply, s("OK"));
    let ident = server.identity().await;
    let resources = ident
        .get("workers")
        .and_then(|ws| ws.get(&w.address))
        .and_then(|e| e.get("resources"))
        .cloned();
    assert_eq!(resources, Some(Value::map([("GPU", Value::Float(2.0))])));

    let unknown = rpc(
        &server.address,
        msg(
            "set_resources",
            [
                ("worker", s("tcp://127.0.0.1:1")),
                ("resources", Value::Nil),
            ],
        ),
    )
    .await;
    assert!(error_text(&unknown).starts_with("KeyError"), "{unknown:?}");
}

#[tokio::test]
async fn set_restrictions_sends_a_waiting_task_to_the_named_worker() {
    let server = TestServer::start().await;
    let mut w0 = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("a", &[]), task("b", &["a"])], &["b"]).await;
    let a = w0.compute_task().await;
    let mut w1 = Worker::join(&server.address, "w1", 1).await;
    let reply = rpc(
        &server.address,
        msg(
            "set_restrictions",
            [("worker", Value::map([("b", s(&w1.address))]))],
        ),
    )
    .await;
    assert!(reply.is_nil(), "{reply:?}");
    w0.finish(&a).await;
    let b = w1.compute_task().await;
    assert_eq!(b.get("key"), Some(&s("b")));

    let unknown = rpc(
        &server.address,
        msg(
            "set_restrictions",
            [("worker", Value::map([("zzz", Value::Nil)]))],
        ),
    )
    .await;
    assert!(error_text(&unknown).starts_with("KeyError"), "{unknown:?}");
}

#[tokio::test]
async fn add_keys_records_a_copy_and_refuses_unknown_workers() {
    let server = TestServer::start().await;
    let mut w0 = Worker::join(&server.address, "w0", 1).await;
    let mut w1 = Worker::join(&server.address, "w1", 1).await;
    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("a", &[]).on(&[&w0.address])], &["a"]).await;
    w0.run_tasks(1).await;
    c.outcome("a").await;

    let added = rpc(
        &server.address,
        msg(
            "add_keys",
            [("worker", s(&w1.address)), ("keys", keys(&["a", "ghost"]))],
        ),
    )
    .await;
    assert_eq!(added, s("OK"));
    let who_has = rpc(&server.address, msg("who_has", [("keys", keys(&["a"]))])).await;
    assert_eq!(holders(&who_has, "a"), 2);
    // a key the scheduler does not hold in memory: the worker is told to drop it
    let removal = w1.stream.next_op("remove-replicas").await;
    assert_eq!(removal.get("keys"), Some(&keys(&["ghost"])));

    let nobody = rpc(
        &server.address,
        msg(
            "add_keys",
            [("worker", s("tcp://127.0.0.1:1")), ("keys", keys(&["a"]))],
        ),
    )
    .await;
    assert_eq!(nobody, s("not found"));
}

// ---- replicate ---------------------------------------------------------------------------------

#[tokio::test]
async fn replicate_asks_a_second_worker_for_a_copy_and_answers_once_it_has_one() {
    let server = TestServer::start().await;
    let mut w0 = Worker::join(&server.address, "w0", 1).await;
    let mut w1 = Worker::join(&server.address, "w1", 1).await;
    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("a", &[]).on(&[&w0.address])], &["a"]).await;
    w0.run_tasks(1).await;
    c.outcome("a").await;

    let replicating = Pending::send(
        &server.address,
        msg("replicate", [("keys", keys(&["a"])), ("n", Value::Int(2))]),
    )
    .await;
    let ask = w1.stream.next_op("acquire-replicas").await;
    let from = ask
        .get("who_has")
        .and_then(|w| w.get("a"))
        .cloned()
        .expect("who_has of a");
    assert_eq!(from, Value::Array(vec![s(&w0.address)]));
    assert!(!replicating.is_answered());
    w1.stream
        .send(vec![msg(
            "add-keys",
            [("keys", keys(&["a"])), ("stimulus_id", s("fetched"))],
        )])
        .await;
    let answer = bounded("replicate's answer", replicating.answer()).await;
    assert!(answer.is_nil(), "{answer:?}");
    let who_has = rpc(&server.address, msg("who_has", [("keys", keys(&["a"]))])).await;
    assert_eq!(holders(&who_has, "a"), 2);

    // n=1 with two copies: one is dropped (`delete=True`)
    let fewer = rpc(
        &server.address,
        msg("replicate", [("keys", keys(&["a"])), ("n", Value::Int(1))]),
    )
    .await;
    assert!(fewer.is_nil(), "{fewer:?}");
    let who_has = rpc(&server.address, msg("who_has", [("keys", keys(&["a"]))])).await;
    assert_eq!(holders(&who_has, "a"), 1);
    let keeper = who_has.get("a").and_then(Value::as_array).unwrap()[0].clone();
    let dropped = if keeper == s(&w0.address) {
        &mut w1
    } else {
        &mut w0
    };
    let removal = dropped.stream.next_op("remove-replicas").await;
    assert_eq!(removal.get("keys"), Some(&keys(&["a"])));
}

#[tokio::test]
async fn replicate_reports_keys_without_data_and_refuses_unknown_ones() {
    let server = TestServer::start().await;
    let mut w0 = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("a", &[])], &["a"]).await;
    let _running = w0.compute_task().await;
    let partial = rpc(&server.address, msg("replicate", [("keys", keys(&["a"]))])).await;
    assert_eq!(partial.get("status"), Some(&s("partial-fail")));
    assert_eq!(partial.get("keys"), Some(&keys(&["a"])));
    let unknown = rpc(
        &server.address,
        msg("replicate", [("keys", keys(&["zzz"]))]),
    )
    .await;
    assert!(error_text(&unknown).starts_with("KeyError"), "{unknown:?}");
    let none = rpc(
        &server.address,
        msg("replicate", [("keys", keys(&["a"])), ("n", Value::Int(0))]),
    )
    .await;
    assert!(error_text(&none).starts_with("ValueError"), "{none:?}");
}

// ---- rebalance ---------------------------------------------------------------------------------

#[tokio::test]
async fn rebalance_moves_keys_to_the_emptier_worker_and_drops_the_senders_copies_after() {
    let server = TestServer::start().await;
    // 100-byte memory limits: four 8-byte keys are over the 30% a sender needs
    let small = [("memory_limit", Value::Int(100))];
    let mut w0 = Worker::join_with(&server.address, "w0", 1, &small).await;
    let mut w1 = Worker::join_with(&server.address, "w1", 1, &small).await;
    let mut c = Client::connect(&server.address).await;
    let names = ["k0", "k1", "k2", "k3"];
    let tasks: Vec<_> = names
        .iter()
        .map(|k| task(k, &[]).on(&[&w0.address]))
        .collect();
    c.submit(&tasks, &names).await;
    w0.run_tasks(4).await;
    w0.barrier().await;

    let rebalancing = Pending::send(&server.address, msg("rebalance", [])).await;
    let ask = w1.stream.next_op("acquire-replicas").await;
    let asked: Vec<Value> = ask
        .get("who_has")
        .and_then(Value::as_map)
        .unwrap()
        .iter()
        .map(|(k, from)| {
            assert_eq!(from, &Value::Array(vec![s(&w0.address)]));
            k.clone()
        })
        .collect();
    // to the mean: 16 bytes each
    assert_eq!(asked.len(), 2, "{ask:?}");
    assert!(!rebalancing.is_answered());
    w1.stream
        .send(vec![msg(
            "add-keys",
            [
                ("keys", Value::Array(asked.clone())),
                ("stimulus_id", s("fetched")),
            ],
        )])
        .await;
    let answer = bounded("rebalance's answer", rebalancing.answer()).await;
    assert_eq!(answer, Value::map([("status", s("OK"))]));
    let removal = w0.stream.next_op("remove-replicas").await;
    assert_eq!(removal.get("keys"), Some(&Value::Array(asked)));
    let has_what = rpc(&server.address, msg("has_what", [])).await;
    for w in [&w0.address, &w1.address] {
        let held = has_what
            .get(w)
            .and_then(Value::as_array)
            .map_or(0, <[Value]>::len);
        assert_eq!(held, 2, "{has_what:?}");
    }

    // balanced now: nothing moves
    let again = rpc(&server.address, msg("rebalance", [])).await;
    assert_eq!(again, Value::map([("status", s("OK"))]));
    let unknown_key = rpc(
        &server.address,
        msg("rebalance", [("keys", keys(&["zzz"]))]),
    )
    .await;
    assert_eq!(unknown_key.get("status"), Some(&s("partial-fail")));
    let unknown_worker = rpc(
        &server.address,
        msg("rebalance", [("workers", keys(&["tcp://127.0.0.1:1"]))]),
    )
    .await;
    assert!(
        error_text(&unknown_worker).starts_with("KeyError"),
        "{unknown_worker:?}"
    );
}
