//! The inspection RPCs' requests to workers, and how their answers combine: what the stock
//! handlers do after their `await`s (scheduler.py:4327, 6723, 7902, 7933, 8331).

use super::{request, JobContext};
use crate::event::RpcResult;
use crate::messages::inspect::Ask;
use crate::translate::inspect::{
    is_raised, mean_bandwidths, merge_profiles, raised_repr, request as req,
};
use crate::translate::reply::by_address;
use futures::future::join_all;
use rask_comm::reply::raised;
use rask_protocol::Value;
use std::sync::Arc;

/// Runs one inspection job; its value is the RPC's reply.
pub async fn run(ask: Ask, cx: &JobContext) -> RpcResult {
    Ok(match ask {
        Ask::Profile {
            workers,
            msg,
            merge,
        } => profile(workers, &msg, merge, cx).await,
        Ask::CallStack { targets } => call_stack(targets, cx).await,
        Ask::Benchmark { workers } => benchmark(workers, cx).await,
        Ask::ClusterState {
            workers,
            exclude,
            scheduler,
            versions,
            write,
        } => {
            let state = cluster_state(workers, exclude, scheduler, versions, cx).await;
            match write {
                None => state,
                Some(mut write) => {
                    write.set("state", state);
                    let mut reply = cx.helpers.call(write).await?;
                    reply.take("id");
                    // `dump_cluster_state_to_url` returns None; the helper's error (fsspec,
                    // a bad format) is raised by the client, as the handler's exception
                    // is in `send_recv` ("uncaught-error", core.py)
                    match reply.get("status").and_then(Value::as_str) {
                        Some("OK") => Value::Nil,
                        _ => {
                            reply.set("status", Value::from("uncaught-error"));
                            reply
                        }
                    }
                }
            }
        }
        Ask::Proxy { worker, msg } => ask_one(&worker, &msg, cx).await.unwrap_or_else(|e| e),
    })
}

/// One request; a worker that cannot be reached, or that raised, is `Err` with the reply
/// that makes the client raise it (an `OSError` for the connection, as `rpc()` raises).
async fn ask_one(address: &str, msg: &Value, cx: &JobContext) -> Result<Value, Value> {
    match request(address, msg, cx).await {
        Ok(v) if is_raised(&v) => Err(v),
        Ok(v) => Ok(v),
        Err(e) => Err(raised("OSError", &format!("{address}: {e}"))),
    }
}

/// The same request to each worker, answers in the workers' order.
async fn ask_all(
    workers: &[Arc<str>],
    msg: &Value,
    cx: &JobContext,
) -> Vec<(Arc<str>, Result<Value, Value>)> {
    join_all(
        workers
            .iter()
            .map(|w| async move { (w.clone(), ask_one(w, msg, cx).await) }),
    )
    .await
}

/// `get_profile` (scheduler.py:8331): failed workers are left out
/// (`return_exceptions=True`); one merged tree, or `{worker: tree}`.
async fn profile(workers: Vec<Arc<str>>, msg: &Value, merge: bool, cx: &JobContext) -> Value {
    let answers: Vec<(Arc<str>, Value)> = ask_all(&workers, msg, cx)
        .await
        .into_iter()
        .filter_map(|(w, r)| Some((w, r.ok()?)))
        .collect();
    if merge {
        let trees: Vec<&Value> = answers.iter().map(|(_, v)| v).collect();
        merge_profiles(&trees)
    } else {
        by_address(answers)
    }
}

/// `get_call_stack` (scheduler.py:7902): the first failure is raised (`asyncio.gather`);
/// workers with nothing running are left out.
async fn call_stack(targets: Vec<(Arc<str>, Value)>, cx: &JobContext) -> Value {
    let results = join_all(
        targets
            .iter()
            .map(|(w, msg)| async move { (w.clone(), ask_one(w, msg, cx).await) }),
    )
    .await;
    let mut out = Vec::new();
    for (w, r) in results {
        match r {
            Ok(v) if v.truthy() => out.push((w, v)),
            Ok(_) => {}
            Err(raised) => return raised,
        }
    }
    by_address(out)
}

/// `benchmark_hardware` (scheduler.py:7933): `benchmark_disk` then `benchmark_memory` on
/// every worker, then `benchmark_network` from each worker of a pair to the other (pairs
/// of the shuffled list; an odd one out sits out, as `toolz.partition(2, ...)` drops it);
/// each size's bandwidths averaged.
async fn benchmark(workers: Vec<Arc<str>>, cx: &JobContext) -> Value {
    let mut modes = Vec::new();
    for (mode, op) in [("disk", "benchmark_disk"), ("memory", "benchmark_memory")] {
        let mut answers = Vec::new();
        for (_, r) in ask_all(&workers, &req(op, []), cx).await {
            match r {
                Ok(v) => answers.push(v),
                Err(raised) => return raised,
            }
        }
        modes.push((mode, mean_bandwidths(&answers)));
    }
    let pairs = workers.chunks_exact(2).map(|p| {
        let msg = req("benchmark_network", [("address", Value::Str(p[1].clone()))]);
        let from = p[0].clone();
        async move { ask_one(&from, &msg, cx).await }
    });
    let mut answers = Vec::new();
    for r in join_all(pairs).await {
        match r {
            Ok(v) => answers.push(v),
            Err(raised) => return raised,
        }
    }
    modes.push(("network", mean_bandwidths(&answers)));
    Value::map(modes)
}

/// `get_cluster_state` (scheduler.py:4327): `dump_state` on every worker (a failure
/// becomes its repr), `versions` on every worker (a failure is left out), and the
/// scheduler's part.
async fn cluster_state(
    workers: Vec<Arc<str>>,
    exclude: Value,
    scheduler: Value,
    versions: Value,
    cx: &JobContext,
) -> Value {
    let dump = req("dump_state", [("exclude", exclude)]);
    let asked_versions = req("versions", []);
    let (states, worker_versions) = futures::join!(
        ask_all(&workers, &dump, cx),
        ask_all(&workers, &asked_versions, cx)
    );
    let states = states
        .into_iter()
        .map(|(w, r)| {
            let v = r.unwrap_or_else(|e| Value::from(raised_repr(&e)));
            (w, v)
        })
        .collect();
    let worker_versions = worker_versions
        .into_iter()
        .filter_map(|(w, r)| Some((w, r.ok()?)))
        .collect();
    Value::map([
        ("scheduler", scheduler),
        ("workers", by_address(states)),
        (
            "versions",
            Value::map([
                ("scheduler", versions),
                ("workers", by_address(worker_versions)),
            ]),
        ),
    ])
}
