//! Graph submission and dispatch over real wire messages: `update-graph` through the graph
//! helper pool to `compute-task`, `task-finished` to `key-in-memory`, a worker dying
//! mid-graph, a graph the helper cannot materialize.

mod common;

use common::*;
use rask_protocol::Value;

#[tokio::test]
async fn a_chain_runs_on_a_worker_and_the_client_hears_of_its_result() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("a-1", &[]), task("b-1", &["a-1"])], &["b-1"])
        .await;
    let first = w.compute_task().await;
    assert_eq!(first.get("key"), Some(&s("a-1")));
    w.finish(&first).await;
    let second = w.compute_task().await;
    assert_eq!(second.get("key"), Some(&s("b-1")));
    // the dependency is on this worker, and the run_spec is the helper's, untouched
    let who_has = second.get("who_has").and_then(|w| w.get("a-1"));
    assert_eq!(who_has, Some(&Value::Array(vec![s(&w.address)])));
    w.finish(&second).await;
    let done = c.outcome("b-1").await;
    assert_eq!(op_of(&done), "key-in-memory", "{done:?}");
    // a-1 is released once b-1 no longer needs it
    let free = w.stream.next_op("free-keys").await;
    assert_eq!(free.get("keys"), Some(&keys(&["a-1"])));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn zero_workers_finish_a_wide_graph() {
    let mut server = TestServer::start().await;
    server.zero_workers(4, 2).await;
    let mut c = Client::connect(&server.address).await;
    let mut tasks: Vec<TaskSpec> = Vec::new();
    let mut inputs = Vec::new();
    for i in 0..500 {
        let k = format!("inc-{i}");
        tasks.push(task(&k, &[]));
        inputs.push(k);
    }
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    tasks.push(task("sum-0", &refs));
    c.submit(&tasks, &["sum-0"]).await;
    let done = c.outcome("sum-0").await;
    assert_eq!(op_of(&done), "key-in-memory", "{done:?}");
    let status = rpc(
        &server.address,
        msg("get_task_status", [("keys", keys(&["sum-0", "inc-0"]))]),
    )
    .await;
    assert_eq!(status.get("sum-0"), Some(&s("memory")));
    // inc-0's result was dropped once sum-0 had it; the task stays known (released) while
    // its dependent is, as in Dask
    assert_eq!(status.get("inc-0"), Some(&s("released")));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_task_whose_worker_dies_runs_elsewhere() {
    let server = TestServer::start().await;
    let mut w0 = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    c.submit(&[task("slow-1", &[])], &["slow-1"]).await;
    let t = w0.compute_task().await;
    assert_eq!(t.get("key"), Some(&s("slow-1")));
    let mut w1 = Worker::join(&server.address, "w1", 1).await;
    w0.die();
    let again = w1.compute_task().await;
    assert_eq!(again.get("key"), Some(&s("slow-1")));
    w1.finish(&again).await;
    assert_eq!(op_of(&c.outcome("slow-1").await), "key-in-memory");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_graph_the_helper_cannot_materialize_errs_its_keys_only() {
    let server = TestServer::start().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let mut c = Client::connect(&server.address).await;
    c.submit(&[task(UNPICKLABLE, &[])], &[UNPICKLABLE]).await;
    let erred = c.outcome(UNPICKLABLE).await;
    assert_eq!(op_of(&erred), "task-erred", "{erred:?}");
    // the client's next graph runs
    c.submit(&[task("ok-1", &[])], &["ok-1"]).await;
    w.run_tasks(1).await;
    assert_eq!(op_of(&c.outcome("ok-1").await), "key-in-memory");
    server.stop().await.unwrap();
}
