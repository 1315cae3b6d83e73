//! Behaviours Dask's own `test_client.py` showed to differ from the stock scheduler: worker
//! names that are ints in `workers=` lists, a gone worker in `has_what` / `ncores` /
//! `processing`, `broadcast` to an address nobody listens on, `restart`'s timeout text, and
//! the scheduler's own events on the `all` topic.

mod common;

use bytes::Bytes;
use common::*;
use rask_protocol::{Opaque, OpaqueKind, Value};

/// Data as a client's `scatter` sends it.
fn serialized(payload: &'static [u8]) -> Value {
    Value::Opaque(Opaque {
        kind: OpaqueKind::Serialized,
        header: vec![(s("serializer"), s("pickle"))],
        frames: vec![Bytes::from_static(payload)],
    })
}

/// Waits until the scheduler no longer lists `address`.
async fn removed(scheduler: &str, address: &str) {
    bounded("the worker to be removed", async {
        while worker_addresses(scheduler)
            .await
            .iter()
            .any(|a| a == address)
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// A Python set on the wire (`{"__Set__": True, "as-list": [...]}`), as this harness's
/// decoder reads it: a list (`test_conformance.py` checks that a client gets a `set`).
fn py_set(items: Vec<Value>) -> Value {
    Value::Array(items)
}

/// The messages of a topic's events whose `action` is `action`.
async fn actions(scheduler: &str, topic: &str, action: &str) -> Vec<Value> {
    let events = rpc(scheduler, msg("events", [("topic", s(topic))])).await;
    events
        .as_array()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.as_array().and_then(|e| e.get(1)).cloned())
        .filter(|m| m.get("action").and_then(Value::as_str) == Some(action))
        .collect()
}

#[tokio::test]
async fn workers_lists_accept_int_worker_names() {
    let server = TestServer::start().await;
    // `dask worker --name 0` registers the int 0
    let w = Worker::join_with(&server.address, "0", 1, &[("name", Value::Int(0))]).await;
    let _other = Worker::join(&server.address, "w1", 1).await;
    let c = Client::connect(&server.address).await;
    let by_name = Value::Array(vec![Value::Int(0)]);
    for key in ["x", "y", "z"] {
        let reply = rpc(
            &server.address,
            msg(
                "scatter",
                [
                    ("data", Value::map([(key, serialized(b"pickled"))])),
                    ("workers", by_name.clone()),
                    ("client", s(&c.name)),
                ],
            ),
        )
        .await;
        assert_eq!(reply, keys(&[key]), "{reply:?}");
        let who_has = rpc(&server.address, msg("who_has", [("keys", keys(&[key]))])).await;
        assert_eq!(who_has.get(key), Some(&keys(&[&w.address])));
    }
    let ncores = rpc(
        &server.address,
        msg("ncores", [("workers", by_name.clone())]),
    )
    .await;
    assert_eq!(entries(&ncores), vec![(w.address.clone(), Value::Int(1))]);
    let has_what = rpc(
        &server.address,
        msg("has_what", [("workers", by_name.clone())]),
    )
    .await;
    let (held, keys_held) = entries(&has_what).remove(0);
    assert_eq!(held, w.address);
    assert_eq!(keys_held.as_array().map(<[Value]>::len), Some(3));
    let processing = rpc(&server.address, msg("processing", [("workers", by_name)])).await;
    assert_eq!(entries(&processing), vec![(w.address.clone(), keys(&[]))]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_gone_worker_has_no_keys_no_threads_and_no_processing() {
    let server = TestServer::start().await;
    let w0 = Worker::join(&server.address, "w0", 1).await;
    let w1 = Worker::join(&server.address, "w1", 2).await;
    let gone = w0.address.clone();
    w0.die();
    removed(&server.address, &gone).await;
    let both = keys(&[&gone, &w1.address]);
    // scheduler.py:7876-7883: listed with no keys
    let has_what = rpc(
        &server.address,
        msg("has_what", [("workers", both.clone())]),
    )
    .await;
    let mut expected = vec![(gone.clone(), keys(&[])), (w1.address.clone(), keys(&[]))];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(entries(&has_what), expected);
    // scheduler.py:7890: left out
    let ncores = rpc(&server.address, msg("ncores", [("workers", both)])).await;
    assert_eq!(entries(&ncores), vec![(w1.address.clone(), Value::Int(2))]);
    // scheduler.py:7849: `self.workers[w]` raises KeyError
    let processing = rpc(
        &server.address,
        msg("processing", [("workers", keys(&[&gone]))]),
    )
    .await;
    assert!(is_error(&processing), "{processing:?}");
    assert!(
        error_text(&processing).starts_with("KeyError("),
        "{processing:?}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn broadcast_dials_unregistered_addresses_until_the_connect_timeout() {
    let server = TestServer::with(Settings {
        config: vec![("connect-timeout", Value::Float(0.3))],
        ..Settings::default()
    })
    .await;
    let w = Worker::join(&server.address, "w0", 1).await;
    let nobody = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("tcp://{}", l.local_addr().unwrap())
    };
    let expected = format!("Timed out trying to connect to {nobody} after 0.3 s");
    // on_error="raise": the OSError itself
    let raised = rpc(
        &server.address,
        msg(
            "broadcast",
            [("msg", msg("ping", [])), ("workers", keys(&[&nobody]))],
        ),
    )
    .await;
    assert!(is_error(&raised), "{raised:?}");
    assert_eq!(error_text(&raised), format!("OSError('{expected}')"));
    // on_error="return_pickle" (Client.run): the pickled OSError next to the live reply
    let returned = rpc(
        &server.address,
        msg(
            "broadcast",
            [
                ("msg", msg("ping", [])),
                ("workers", keys(&[&nobody, &w.address])),
                ("on_error", s("return_pickle")),
            ],
        ),
    )
    .await;
    let got = entries(&returned);
    assert_eq!(got.len(), 2, "{returned:?}");
    let pickled = returned.get(nobody.as_str()).unwrap();
    let Value::Bin(bytes) = pickled else {
        panic!("not a pickle: {pickled:?}")
    };
    let text = String::from_utf8_lossy(bytes);
    assert!(
        text.contains("OSError") && text.contains(&expected),
        "{text}"
    );
    // on_error="ignore": only the live worker
    let ignored = rpc(
        &server.address,
        msg(
            "broadcast",
            [
                ("msg", msg("ping", [])),
                ("workers", keys(&[&nobody, &w.address])),
                ("on_error", s("ignore")),
            ],
        ),
    )
    .await;
    assert_eq!(
        entries(&ignored),
        vec![(w.address.clone(), Value::map([("worker-got", s("ping"))]))]
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn restart_timeout_is_the_stock_timeout_error() {
    let server = TestServer::start().await;
    let w = Worker::join(&server.address, "w0", 1).await;
    let reply = rpc(
        &server.address,
        msg(
            "restart",
            [
                ("timeout", Value::Float(0.25)),
                ("wait_for_workers", Value::Bool(true)),
                ("stimulus_id", s("test-restart")),
            ],
        ),
    )
    .await;
    assert!(is_error(&reply), "{reply:?}");
    let text = error_text(&reply);
    assert!(
        text.starts_with(
            "TimeoutError('Waited for 1 worker(s) to reconnect after restarting but, after \
             0.25s, 1 have not returned."
        ),
        "{text}"
    );
    assert!(text.contains("The 1 worker(s) not using Nannies"), "{text}");
    let restarted = actions(&server.address, "all", "restart-workers").await;
    assert_eq!(
        restarted,
        vec![Value::map([
            ("action", s("restart-workers")),
            ("workers", keys(&[&w.address])),
            ("client", Value::Nil),
        ])]
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn worker_and_client_arrivals_and_departures_are_events_on_all() {
    let server = TestServer::start().await;
    let w = Worker::join(&server.address, "w0", 1).await;
    let address = w.address.clone();
    let c = Client::connect(&server.address).await;
    let client = c.name.clone();
    let added = actions(&server.address, "all", "add-worker").await;
    assert_eq!(
        added,
        vec![Value::map([
            ("action", s("add-worker")),
            ("worker", s(&address))
        ])]
    );
    let own = actions(&server.address, &address, "add-worker").await;
    assert_eq!(own, vec![Value::map([("action", s("add-worker"))])]);
    let add_client = Value::map([("action", s("add-client")), ("client", s(&client))]);
    assert!(actions(&server.address, "all", "add-client")
        .await
        .contains(&add_client));
    assert_eq!(
        actions(&server.address, &client, "add-client").await,
        vec![add_client]
    );

    // scattered data only this worker holds is lost with it
    let scattered = rpc(
        &server.address,
        msg(
            "scatter",
            [
                ("data", Value::map([("s", serialized(b"pickled"))])),
                ("client", s(&client)),
            ],
        ),
    )
    .await;
    assert_eq!(scattered, keys(&["s"]));
    let scatter = Value::map([
        ("action", s("scatter")),
        ("client", s(&client)),
        ("count", Value::Int(1)),
    ]);
    assert_eq!(
        actions(&server.address, "all", "scatter").await,
        vec![scatter]
    );
    w.die();
    removed(&server.address, &address).await;
    let gone = actions(&server.address, "all", "remove-worker").await;
    assert_eq!(gone.len(), 1, "{gone:?}");
    let e = &gone[0];
    assert_eq!(e.get("worker"), Some(&s(&address)));
    assert_eq!(e.get("lost-scattered-tasks"), Some(&py_set(vec![s("s")])));
    assert_eq!(e.get("lost-computed-tasks"), Some(&py_set(vec![])));
    assert_eq!(e.get("processing-tasks"), Some(&py_set(vec![])));
    assert_eq!(e.get("expected"), Some(&Value::Bool(false)));
    assert!(e.get("stimulus_id").and_then(Value::as_str).is_some());
    let own = actions(&server.address, &address, "remove-worker").await;
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].get("worker"), None);

    c.close().await;
    let remove_client = Value::map([("action", s("remove-client")), ("client", s(&client))]);
    bounded("the remove-client event", async {
        while !actions(&server.address, "all", "remove-client")
            .await
            .contains(&remove_client)
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    server.stop().await.unwrap();
}
