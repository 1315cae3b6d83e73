//! Background jobs: the waits on other processes the state task starts ([`Job`]) and
//! whose results come back to it ([`Done`]). Each runs in a task of its own and reads no
//! scheduler state; every dial is bounded by a timeout.

use crate::error::{HelperError, RequestError, WorkerFailure};
use crate::event::{DataFor, Done, Gathering, Job, RpcResult};
use crate::helper::HelperPool;
use crate::messages::{OnError, Placement};
use crate::translate::{reply, shuffle};
use futures::future::join_all;
use rask_comm::reply::pickled_exception;
use rask_comm::{Comm, CommConfig, CommError};
use rask_protocol::{Key, Value};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::Duration;

mod inspect;

/// How long the scheduler waits to reach a worker for `get_data`/`update_data`/`run`.
const WORKER_RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// What jobs need: the scheduler's connection settings and its graph helpers.
pub struct JobContext {
    /// caps, timeouts and TLS of the scheduler's own dials
    pub comm: Arc<CommConfig>,
    /// the graph helpers
    pub helpers: HelperPool,
}

/// Runs a job to its end.
pub async fn run(job: Job, cx: &JobContext) -> Done {
    match job {
        Job::Materialize { client, request } => Done::Graph {
            client,
            stimulus: Box::new(crate::graph::materialize(client, *request, &cx.helpers).await),
        },
        Job::Gather(g) => Done::Gathered(Box::new(gather(*g, cx).await)),
        Job::Scatter {
            per_worker,
            keys,
            client,
            reply,
        } => Done::Scattered {
            result: scatter(per_worker, &keys, cx).await,
            keys,
            client,
            reply,
        },
        Job::Broadcast {
            targets,
            msg,
            on_error,
            reply,
        } => Done::Reply {
            result: broadcast(targets, msg, on_error, cx).await,
            reply,
        },
        Job::KillNannies {
            nannies,
            timeout,
            stimulus_id,
            then,
        } => Done::Killed {
            outcomes: kill(nannies, timeout, &stimulus_id, cx).await,
            then,
        },
        Job::Helper { request, then } => Done::Helper {
            result: cx.helpers.call(request).await,
            then,
        },
        Job::Host { reply, then } => Done::Host {
            result: reply.await.unwrap_or(Err(HelperError::Gone)),
            then,
        },
        Job::Inspect { ask, reply } => Done::Reply {
            result: inspect::run(ask, cx).await,
            reply,
        },
        Job::InputsDone {
            shuffle_id,
            run_id,
            participants,
            reply,
        } => Done::Reply {
            result: inputs_done(&shuffle_id, run_id, participants, cx).await,
            reply,
        },
    }
}

/// One request to `address`, on a connection of its own. The reply may take as long as
/// the work it asks for (`Client.run` of a slow function), as in Dask; a peer that stops
/// reading or vanishes is dropped by the connection's own `timeouts.tcp`.
async fn request(address: &str, msg: &Value, cx: &JobContext) -> Result<Value, RequestError> {
    let mut comm = Comm::connect(address, WORKER_RPC_TIMEOUT, &cx.comm).await?;
    let reply = comm.request(msg).await?;
    comm.close().await;
    Ok(reply)
}

/// Dials `address` as `distributed.comm.core.connect` does (core.py:285-370): a refused
/// or timed-out attempt is retried with jittered backoff until
/// `distributed.comm.timeouts.connect` runs out, then it is the stock `OSError` "Timed out
/// trying to connect to ADDR after N s".
async fn dial(address: &str, cx: &JobContext) -> Result<Comm, RequestError> {
    let timeout = cx.comm.connect_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let unreachable = || RequestError::Unreachable {
        address: address.to_string(),
        timeout,
    };
    for attempt in 0u32.. {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, Comm::connect(address, left, &cx.comm)).await {
            Ok(Ok(comm)) => return Ok(comm),
            Ok(Err(CommError::Io(_) | CommError::Timeout(..) | CommError::Closed)) | Err(_) => {
                // FullJitter backoff, 10 ms doubling, as core.py:345
                let cap = Duration::from_millis(10u64.saturating_mul(1 << attempt.min(16)));
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let jitter = rand_fraction();
                tokio::time::sleep(cap.min(left).mul_f64(jitter)).await;
            }
            Ok(Err(e)) => return Err(e.into()),
        }
    }
    Err(unreachable())
}

/// A number in [0, 1) for backoff jitter (no need for a good generator).
fn rand_fraction() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}

// ---- gather ----------------------------------------------------------------------------------

/// One round of `gather`: `get_data` at each planned holder; what a worker did not deliver
/// goes to `retry`.
async fn gather(mut g: Gathering, cx: &JobContext) -> Gathering {
    if g.round > 0 {
        tokio::time::sleep(Duration::from_millis(100 * u64::from(g.round))).await;
    }
    let plan = std::mem::take(&mut g.plan);
    let serializers = g.serializers.as_ref();
    let results = join_all(plan.into_iter().map(|(addr, ks)| async move {
        let r = get_data(&addr, &ks, serializers, cx).await;
        (addr, ks, r)
    }))
    .await;
    for (addr, ks, r) in results {
        match r {
            Ok(found) => {
                let mut found: FxHashMap<Key, Value> = found
                    .into_iter()
                    .filter_map(|(k, v)| Some((Key::from_value(&k)?, v)))
                    .collect();
                for k in ks {
                    match found.remove(&k) {
                        Some(v) => g.data.push((k.to_value(), v)),
                        None => g.retry.push(k),
                    }
                }
            }
            Err(e) => {
                tracing::warn!(worker = %addr, "get_data failed: {e}");
                g.retry.extend(ks);
            }
        }
    }
    g
}

/// Worker `get_data`; retries while the worker answers `busy`.
async fn get_data(
    addr: &str,
    keys: &[Key],
    serializers: Option<&Value>,
    cx: &JobContext,
) -> Result<Vec<(Value, Value)>, RequestError> {
    let mut comm = Comm::connect(addr, WORKER_RPC_TIMEOUT, &cx.comm).await?;
    let req = reply::get_data(keys, serializers);
    for attempt in 0..20u64 {
        let answer = tokio::time::timeout(WORKER_RPC_TIMEOUT, comm.request(&req))
            .await
            .map_err(|_| RequestError::Timeout(WORKER_RPC_TIMEOUT, "get_data"))??;
        match answer.get("status").and_then(Value::as_str) {
            Some("OK") => {
                // The worker holds the data for us until it sees this ack (worker.py:1690).
                comm.writer.write(&Value::from("OK")).await?;
                let data = answer
                    .get("data")
                    .and_then(Value::as_map)
                    .unwrap_or_default()
                    .to_vec();
                comm.close().await;
                return Ok(data);
            }
            Some("busy") => tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await,
            _ => {
                return Err(RequestError::Worker {
                    address: addr.into(),
                    failure: WorkerFailure::Reply {
                        op: "get_data",
                        reply: format!("{answer:?}"),
                    },
                })
            }
        }
    }
    Err(RequestError::Worker {
        address: addr.into(),
        failure: WorkerFailure::Busy,
    })
}

// ---- scatter ---------------------------------------------------------------------------------

/// `update_data` on each chosen worker; where every key now is, with the sizes the
/// workers reported.
async fn scatter(
    per_worker: Vec<DataFor>,
    keys: &[Value],
    cx: &JobContext,
) -> Result<Placement, RequestError> {
    let results = join_all(per_worker.into_iter().map(|(addr, d)| async move {
        let ks: Vec<Value> = d.iter().map(|(k, _)| k.clone()).collect();
        let r = request(&addr, &reply::update_data(d), cx).await;
        (addr, ks, r)
    }))
    .await;
    // Holders per key, in the order of `keys` (a key sits on one worker, or on all of them
    // for a broadcast); sizes as the workers reported them.
    let position: FxHashMap<Key, usize> = keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| Some((Key::from_value(k)?, i)))
        .collect();
    let mut holders: Vec<Vec<Arc<str>>> = vec![Vec::new(); keys.len()];
    let mut nbytes: FxHashMap<Key, i64> = FxHashMap::default();
    for (addr, ks, r) in results {
        let answer = r?;
        if answer.get("status").and_then(Value::as_str) != Some("OK") {
            return Err(RequestError::Worker {
                address: addr.to_string(),
                failure: WorkerFailure::Reply {
                    op: "update_data",
                    reply: format!("{answer:?}"),
                },
            });
        }
        // a broadcast key is reported by every worker; one size is kept
        for (k, n) in answer
            .get("nbytes")
            .and_then(Value::as_map)
            .unwrap_or_default()
        {
            if let (Some(k), Some(n)) = (Key::from_value(k), n.as_i64()) {
                nbytes.insert(k, n);
            }
        }
        for k in ks {
            if let Some(i) = Key::from_value(&k).and_then(|k| position.get(&k).copied()) {
                holders[i].push(addr.clone());
            }
        }
    }
    let who_has = keys
        .iter()
        .zip(holders)
        .filter_map(|(k, h)| Some((Key::from_value(k)?, h)))
        .collect();
    Ok(Placement { who_has, nbytes })
}

// ---- broadcast -------------------------------------------------------------------------------

/// `broadcast`: the request to each target, `{address: reply}`.
async fn broadcast(
    targets: Vec<(Arc<str>, Arc<str>)>,
    msg: Value,
    on_error: OnError,
    cx: &JobContext,
) -> RpcResult {
    let results = join_all(targets.into_iter().map(|(addr, dest)| {
        let msg = &msg;
        async move {
            let r = async {
                let mut comm = dial(&dest, cx).await?;
                let reply = comm.request(msg).await?;
                comm.close().await;
                Ok::<Value, RequestError>(reply)
            };
            (addr, r.await)
        }
    }))
    .await;
    let mut answers = Vec::new();
    for (addr, r) in results {
        match r {
            Ok(v) => answers.push((addr, v)),
            Err(e) => match on_error {
                OnError::Ignore => {}
                // the exception the stock handler pickles (scheduler.py:6705): the
                // connect's `OSError`, or what went wrong after it
                OnError::Return => {
                    let kind = match e.python_type() {
                        "RuntimeError" => "OSError",
                        other => other,
                    };
                    answers.push((addr, Value::Bin(pickled_exception(kind, &e.to_string()))))
                }
                OnError::Raise => return Err(e),
            },
        }
    }
    Ok(reply::by_address(answers))
}

// ---- restarting through nannies --------------------------------------------------------------

/// Asks each nanny to kill its worker (it starts a new one): whether each did in time.
async fn kill(
    nannies: Vec<(Arc<str>, Arc<str>)>,
    timeout: Duration,
    sid: &Arc<str>,
    cx: &JobContext,
) -> Vec<(Arc<str>, bool)> {
    let msg = reply::kill(sid, timeout.as_secs_f64());
    join_all(nannies.into_iter().map(|(address, nanny)| {
        let msg = &msg;
        async move {
            let r = tokio::time::timeout(timeout, async {
                let mut comm = Comm::connect(&nanny, timeout, &cx.comm).await?;
                let reply = comm.request(msg).await?;
                comm.close().await;
                Ok::<Value, RequestError>(reply)
            })
            .await;
            match r {
                Ok(Ok(_)) => (address, true),
                Ok(Err(e)) => {
                    tracing::error!("nanny {nanny} of {address} did not kill it: {e}");
                    (address, false)
                }
                Err(_) => (address, false),
            }
        }
    }))
    .await
}

// ---- shuffle barrier -------------------------------------------------------------------------

/// `shuffle_inputs_done` to every participant, retried a few times for a participant that
/// cannot be reached.
async fn inputs_done(
    shuffle_id: &str,
    run_id: i64,
    participants: Vec<Arc<str>>,
    cx: &JobContext,
) -> RpcResult {
    let done = shuffle::inputs_done(shuffle_id, run_id);
    let mut pending = participants;
    for attempt in 0..5u64 {
        if pending.is_empty() {
            break;
        }
        let results = join_all(pending.iter().map(|w| {
            let done = &done;
            async move { (w.clone(), request(w, done, cx).await) }
        }))
        .await;
        pending = Vec::new();
        for (w, r) in results {
            match r {
                Ok(Value::Nil) => {}
                Ok(other) => {
                    return Err(RequestError::Worker {
                        address: w.to_string(),
                        failure: WorkerFailure::Barrier(format!("{other:?}")),
                    })
                }
                Err(e) => {
                    tracing::warn!(worker = %w, "Failure during broadcast of shuffle {shuffle_id}, retrying: {e}");
                    pending.push(w);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
    }
    if !pending.is_empty() {
        return Err(RequestError::Worker {
            address: format!("{pending:?}"),
            failure: WorkerFailure::BarrierUnreachable(shuffle_id.to_string()),
        });
    }
    Ok(Value::Nil)
}
