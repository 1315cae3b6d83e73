//! The plugin host (docs/plugin-host.md) with its real Python, the venv `scripts/setup`
//! makes (`RASK_TEST_PYTHON` names another): `register_scheduler_plugin`, the plugin's
//! hooks fed from the state task, `feed`, `run_function` of a function that takes
//! `dask_scheduler`, `unregister_scheduler_plugin`, and a host that dies.
//!
//! The plugin and the functions are pickled by value (cloudpickle, as a client in a
//! notebook pickles what it defines), so the host needs no module of the test's.

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use rask_protocol::Value;

fn python() -> String {
    if let Ok(p) = std::env::var("RASK_TEST_PYTHON") {
        return p;
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python");
    assert!(
        std::path::Path::new(venv).exists(),
        "the plugin host tests need the venv with distributed: run scripts/setup \
         (or set RASK_TEST_PYTHON)"
    );
    venv.to_string()
}

/// What the tests send, pickled by the venv's Python: name -> pickle.
fn pickles() -> std::collections::HashMap<String, Bytes> {
    const SOURCE: &str = r#"
import os
import cloudpickle
from distributed.diagnostics.plugin import SchedulerPlugin

class Recording(SchedulerPlugin):
    name = "recording"
    def __init__(self):
        self.seen = []
        self.workers = []
    def transition(self, key, start, finish, *args, **kwargs):
        self.seen.append([key, start, finish, sorted(kwargs)])
    def add_worker(self, scheduler, worker):
        self.workers.append(worker)

class Blocking(SchedulerPlugin):
    name = "blocking"
    def transition(self, key, start, finish, *args, **kwargs):
        import time
        time.sleep(60)

def seen(scheduler):
    p = scheduler.plugins.get("recording")
    return {"seen": p.seen if p else None, "plugins": sorted(scheduler.plugins),
            "states": {k: ts.state for k, ts in scheduler.tasks.items()}}

def address(dask_scheduler):
    return "at " + dask_scheduler.address

def crash(dask_scheduler):
    os._exit(3)

for name, obj in [("plugin", Recording()), ("seen", seen), ("address", address),
                  ("crash", crash), ("blocking", Blocking())]:
    print(name, cloudpickle.dumps(obj).hex())
"#;
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(SOURCE)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (name, hex) = l.split_once(' ').unwrap();
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>();
            (name.to_string(), Bytes::from(bytes))
        })
        .collect()
}

async fn host_server() -> TestServer {
    TestServer::with(Settings {
        python: python(),
        ..Settings::default()
    })
    .await
}

fn register(plugin: &Bytes) -> Value {
    msg(
        "register_scheduler_plugin",
        [
            ("plugin", Value::Bin(plugin.clone())),
            ("name", Value::Nil),
            ("idempotent", Value::Bool(false)),
        ],
    )
}

fn run_function(function: &Bytes) -> Value {
    msg(
        "run_function",
        [
            ("function", Value::Bin(function.clone())),
            ("args", Value::Nil),
            ("kwargs", Value::Nil),
            ("wait", Value::Bool(true)),
        ],
    )
}

/// Opens a feed of `function` and reads its responses until one satisfies `done`.
async fn feed_until(address: &str, function: &Bytes, done: impl Fn(&Value) -> bool) -> Value {
    let mut comm = connect(address).await;
    comm.writer
        .write(&msg(
            "feed",
            [
                ("function", Value::Bin(function.clone())),
                ("interval", s("20ms")),
            ],
        ))
        .await
        .unwrap();
    let response = bounded("a feed response that shows it", async {
        loop {
            let r = comm.reader.read().await.unwrap().expect("the feed closed");
            if done(&r) {
                return r;
            }
        }
    })
    .await;
    comm.close().await;
    response
}

fn seen(r: &Value) -> Vec<(String, String, String)> {
    r.get("seen")
        .and_then(Value::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(|t| {
            let t = t.as_array()?;
            let s = |i: usize| t.get(i)?.as_str().map(str::to_string);
            Some((s(0)?, s(1)?, s(2)?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduler_plugin_sees_every_transition_and_a_feed_reads_it() {
    let p = pickles();
    let mut server = host_server().await;
    server.zero_workers(1, 2).await;
    assert_eq!(
        rpc(&server.address, register(&p["plugin"])).await,
        Value::Nil
    );

    let mut client = Client::connect(&server.address).await;
    client
        .submit(&[task("a", &[]), task("b", &["a"])], &["b"])
        .await;
    assert_eq!(op_of(&client.outcome("b").await), "key-in-memory");

    // the hooks ran in the order the core made the transitions
    let r = feed_until(&server.address, &p["seen"], |r| {
        seen(r).iter().any(|(k, _, f)| k == "b" && f == "memory")
    })
    .await;
    let hops: Vec<(String, String, String)> =
        seen(&r).into_iter().filter(|(k, _, _)| k == "b").collect();
    let hop = |s: &str, f: &str| ("b".to_string(), s.to_string(), f.to_string());
    assert_eq!(
        hops,
        [
            hop("released", "waiting"),
            hop("waiting", "processing"),
            hop("processing", "memory")
        ],
        "{r:?}"
    );
    // keyword arguments as the stock scheduler passes them: the worker's message for the
    // task that finished, nothing but the stimulus otherwise
    let kwargs: Vec<Vec<Value>> = r
        .get("seen")
        .and_then(Value::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_array)
        .filter(|t| t.first() == Some(&s("b")))
        .map(|t| t[3].as_array().unwrap_or_default().to_vec())
        .collect();
    assert_eq!(kwargs[0], [s("stimulus_id")]);
    assert_eq!(kwargs[1], [s("stimulus_id")]);
    assert!(kwargs[2].contains(&s("worker")), "{kwargs:?}");
    assert!(!kwargs[2].contains(&s("key")), "{kwargs:?}");
    let state_of_b = r.get("states").and_then(|s| s.get("b")).cloned();
    assert_eq!(state_of_b, Some(s("memory")), "{r:?}");

    // a function taking `dask_scheduler` runs on the facade
    let reply = rpc(&server.address, run_function(&p["address"])).await;
    assert_eq!(reply.get("status"), Some(&s("OK")), "{reply:?}");
    // the result, pickled (a short str shows in the pickle as it is)
    let expected = format!("at {}", server.address);
    assert!(format!("{reply:?}").contains(&expected), "{reply:?}");

    let unregister = msg("unregister_scheduler_plugin", [("name", s("recording"))]);
    assert_eq!(rpc(&server.address, unregister.clone()).await, Value::Nil);
    let again = rpc(&server.address, unregister).await;
    assert!(
        error_text(&again).contains("Could not find plugin 'recording'"),
        "{again:?}"
    );
    client.close().await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_host_that_dies_is_replaced_with_its_plugins() {
    let p = pickles();
    let mut server = host_server().await;
    server.zero_workers(1, 1).await;
    assert_eq!(
        rpc(&server.address, register(&p["plugin"])).await,
        Value::Nil
    );

    let died = rpc(&server.address, run_function(&p["crash"])).await;
    assert!(is_error(&died), "{died:?}");
    assert!(
        error_text(&died).contains("plugin host"),
        "{}",
        error_text(&died)
    );

    // the new host has the plugin again, and the state: later transitions reach it
    let mut client = Client::connect(&server.address).await;
    client.submit(&[task("after", &[])], &["after"]).await;
    assert_eq!(op_of(&client.outcome("after").await), "key-in-memory");
    let r = feed_until(&server.address, &p["seen"], |r| {
        seen(r)
            .iter()
            .any(|(k, _, f)| k == "after" && f == "memory")
    })
    .await;
    assert_eq!(
        r.get("plugins"),
        Some(&Value::Array(vec![s("recording")])),
        "{r:?}"
    );
    client.close().await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_blocks_does_not_stall_the_scheduler() {
    let p = pickles();
    let mut server = host_server().await;
    server.zero_workers(1, 1).await;
    assert_eq!(
        rpc(&server.address, register(&p["blocking"])).await,
        Value::Nil
    );
    // its first hook sleeps for a minute; the graph is done long before (bounded wait)
    let mut client = Client::connect(&server.address).await;
    client
        .submit(&[task("x", &[]), task("y", &["x"])], &["y"])
        .await;
    assert_eq!(op_of(&client.outcome("y").await), "key-in-memory");
    client.close().await;
    // stopping does not wait for the plugin either (its `close` gets a few seconds)
    bounded("the scheduler to stop", server.stop())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn performance_report_is_made_by_the_host() {
    let server = host_server().await;
    let reply = rpc(
        &server.address,
        msg(
            "performance_report",
            [
                ("start", Value::Float(0.0)),
                ("last_count", Value::Int(0)),
                ("code", s("x = 1")),
                ("mode", Value::Nil),
            ],
        ),
    )
    .await;
    // the stock page (bokeh is in the venv, as the stock scheduler needs it)
    match &reply {
        Value::Str(html) => assert!(html.contains("Dask Performance Report"), "{html}"),
        other => panic!("no report: {other:?}"),
    }
    server.stop().await.unwrap();
}
