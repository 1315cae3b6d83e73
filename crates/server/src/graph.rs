//! Materializing a client's graph (`update-graph`): a graph helper unpickles and
//! materializes the expression exactly as `Scheduler.update_graph` would, its task records
//! become the core's tasks while it makes the next chunk, and `rask-order` gives them their
//! priorities off the async runtime. The result is the core's stimulus: the graph, or the
//! error its keys get.

use crate::error::HelperError;
use crate::helper::HelperPool;
use crate::messages::GraphRequest;
use crate::ordering;
use crate::translate::records::{add_records, Records};
use rask_comm::reply::pickled_exception;
use rask_core::{ClientId, NewTask, Stimulus};
use rask_protocol::{Key, Value};
use tokio::sync::mpsc;

/// The graph of `request`, ready for the core.
pub async fn materialize(
    client: ClientId,
    request: GraphRequest,
    helpers: &HelperPool,
) -> Stimulus {
    let GraphRequest {
        keys,
        fifo_timeout,
        actors,
        helper_request,
        big,
    } = request;
    let started = std::time::Instant::now();
    // Records arrive in chunks and become tasks while the helper pickles the next chunk.
    // A chunk is tens of milliseconds of work (and the growing list of tasks is copied
    // now and then): on a blocking thread, not on a runtime thread, where it would hold up
    // the connections that thread serves.
    let (chunk_tx, mut chunk_rx) = mpsc::unbounded_channel::<Value>();
    let call = helpers.call_chunked(helper_request, chunk_tx, big);
    tokio::pin!(call);
    let mut streamed: Result<Records, HelperError> = Ok(Records::default());
    let result = loop {
        tokio::select! {
            Some(chunk) = chunk_rx.recv() => streamed = add_chunk(streamed, chunk).await,
            result = &mut call => break result,
        }
    };
    while let Ok(chunk) = chunk_rx.try_recv() {
        streamed = add_chunk(streamed, chunk).await;
    }
    match result {
        Ok(reply) if reply.get("status").and_then(Value::as_str) == Some("OK") => {
            let helper_s = started.elapsed().as_secs_f64();
            add_records(&mut streamed, reply.get("tasks"));
            let n = streamed.as_ref().map_or(0, |r| r.tasks.len());
            report_helper_timings(&reply, n, helper_s);
            let ordering = std::time::Instant::now();
            let ordered = match streamed {
                Ok(r) => order_off_runtime(r, keys.clone()).await,
                Err(e) => Err(e),
            };
            if n >= BIG_GRAPH_LOG {
                let s = ordering.elapsed().as_secs_f64();
                tracing::info!(
                    tasks = n,
                    "graph ordered (rask-order, reachable keys, priority order) in {s:.3}s"
                );
            }
            match ordered {
                Ok((tasks, outside)) => Stimulus::UpdateGraph {
                    client,
                    tasks,
                    keys,
                    fifo_timeout,
                    actors,
                    outside: Some(outside),
                    stimulus_id: format!("update-graph-{}", crate::translate::now()).into(),
                },
                Err(e) => failed(client, keys, &e.to_string()),
            }
        }
        // The helper's own error (an unpicklable graph, ...): the stock scheduler's
        // message, built by the helper with `distributed.core.error_message`.
        Ok(reply) => {
            let text = reply
                .get("exception_text")
                .and_then(Value::as_str)
                .unwrap_or("");
            tracing::warn!(%text, "graph failed to materialize");
            let exception = match reply.get("exception") {
                Some(Value::Bin(b)) => Value::Bin(b.clone()),
                _ => Value::Bin(pickled_exception("RuntimeError", text)),
            };
            Stimulus::GraphFailed {
                client,
                keys,
                exception,
                traceback: match reply.get("traceback") {
                    Some(Value::Bin(b)) => Value::Bin(b.clone()),
                    _ => Value::Nil,
                },
            }
        }
        Err(e) => failed(client, keys, &e.to_string()),
    }
}

/// A graph of this many tasks or more has its stages' times logged at info level.
const BIG_GRAPH_LOG: usize = 10_000;

/// Where a graph's time went, per stage: the helper's own timings (unpickle, materialize,
/// order, per-task pickling) and the round trip as rask saw it (adds the pipe transfer and
/// decoding the reply). Added to `/metrics`; logged at debug level unless the graph is big.
fn report_helper_timings(reply: &Value, n: usize, helper_s: f64) {
    let stage = |name: &str| {
        reply
            .get("timings")
            .and_then(|t| t.get(name))
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN)
    };
    let (de, mat, order, tasks, total) = (
        stage("deserialize_s"),
        stage("materialize_s"),
        stage("order_s"),
        stage("tasks_s"),
        stage("total_s"),
    );
    crate::monitor::HELPERS.add_graph([de, mat, order, tasks, helper_s]);
    // A big graph's records are made in several processes (the helper's forked children)
    let processes = stage("processes");
    let in_processes = if processes > 1.0 {
        let child = stage("largest_child_mib");
        format!(" in {processes} processes, the largest child's peak RSS {child:.0} MiB")
    } else {
        String::new()
    };
    let line = format!(
        "graph helper: deserialize {de:.3}s, materialize {mat:.3}s, order {order:.3}s, \
         per-task records {tasks:.3}s{in_processes} (helper total {total:.3}s; with transfer and decoding {helper_s:.3}s)"
    );
    if n >= BIG_GRAPH_LOG || processes > 1.0 {
        tracing::info!(tasks = n, "{line}");
    } else {
        tracing::debug!(tasks = n, "{line}");
    }
}

/// [`add_records`] of a `{"chunk": [...]}` message, on a blocking thread.
async fn add_chunk(
    mut streamed: Result<Records, HelperError>,
    chunk: Value,
) -> Result<Records, HelperError> {
    tokio::task::spawn_blocking(move || {
        add_records(&mut streamed, chunk.get("chunk"));
        streamed
    })
    .await
    .unwrap_or(Err(HelperError::Protocol(
        "turning a chunk of records into tasks panicked",
    )))
}

/// Gives the tasks their priorities (rask-order), keeps those the keys reach and puts them
/// in priority order, on a blocking thread: on a million-task graph that is about a second
/// the state task need not spend. Returns the tasks and their dependencies outside the
/// graph.
async fn order_off_runtime(
    r: Records,
    keys: Vec<Key>,
) -> Result<(Vec<NewTask>, Vec<Key>), HelperError> {
    let Records { mut tasks, order } = r;
    tokio::task::spawn_blocking(move || {
        ordering::assign(&mut tasks, &order)?;
        let (tasks, outside) = rask_core::handlers::reachable(tasks, &keys);
        Ok((ordering::by_priority(tasks), outside))
    })
    .await
    .map_err(|e| HelperError::Order(format!("ordering the graph panicked: {e}")))?
}

fn failed(client: ClientId, keys: Vec<Key>, text: &str) -> Stimulus {
    tracing::error!("graph failed: {text}");
    Stimulus::GraphFailed {
        client,
        keys,
        exception: Value::Bin(pickled_exception("RuntimeError", text)),
        traceback: Value::Nil,
    }
}
