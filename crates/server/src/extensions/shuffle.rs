//! The scheduler side of Dask's P2P shuffle (`ShuffleSchedulerPlugin`,
//! `distributed/shuffle/_scheduler_plugin.py`), used by dataframe merges, `set_index`,
//! `sort_values`, split-output groupbys and P2P rechunks.
//!
//! Workers do the data exchange among themselves. The scheduler hands out one run per
//! shuffle (`shuffle_get_or_create` / `shuffle_get`: the pickled `ShuffleRunSpec` that says
//! which worker owns which output partition), tells all participants when every input has
//! been sent (`shuffle_barrier` -> `shuffle_inputs_done`), pins output tasks to their
//! owners (`shuffle_restrict_task`; the worker then raises `Reschedule`), and fails or
//! restarts a run when its barrier task is released or a participant leaves.
//!
//! What needs Python (reading the pickled `ShuffleSpec`, `pick_worker`, building the
//! `ShuffleRunSpec`) runs in a graph helper (`shuffle_create_run`); run ids, participants,
//! restrictions, broadcasts and clean-up are here.

use crate::connection::Ctx;
use crate::error::ServerError;
use crate::runtime::Scheduler;
use crate::translate::{field, int_field, key_field, str_field};
use bytes::Bytes;
use rask_comm::Comm;
use rask_core::{Stimulus, TaskStatus};
use rask_protocol::{Key, Opaque, Value};
use rustc_hash::FxHashMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Barrier tasks are named `shuffle-barrier-<id>` (`barrier_key`, shuffle/_core.py:432).
const BARRIER_PREFIX: &str = "shuffle-barrier-";

/// One run of one shuffle (`SchedulerShuffleState`).
struct Run {
    run_id: i64,
    /// pickled `ShuffleRunSpec`
    run_spec: Bytes,
    /// `{partition: worker}` as the helper computed it (aligns later shuffles)
    worker_for: Value,
    participating: BTreeSet<Arc<str>>,
}

/// The plugin's state.
#[derive(Default)]
pub struct State {
    active: FxHashMap<Arc<str>, Run>,
    /// shuffles whose run is being created; later callers wait for it
    creating: FxHashMap<Arc<str>, Vec<oneshot::Sender<()>>>,
    /// deactivated shuffles by the stimulus that deactivated them, to restart them when
    /// that stimulus was a worker leaving (`_archived_by_stimulus`)
    archived_by: FxHashMap<Arc<str>, Vec<Arc<str>>>,
    /// output tasks' restrictions before `shuffle_restrict_task` pinned them
    original_restrictions: FxHashMap<Key, Option<Vec<Arc<str>>>>,
    shift: usize,
    next_run_id: i64,
}

fn barrier_key(id: &str) -> Key {
    Key::Str(format!("{BARRIER_PREFIX}{id}").into())
}

/// `error_message(P2PConsistencyError(...))`: what workers pass to `clean_exception`.
fn consistency_error(message: &str) -> Value {
    let exc = rask_protocol::pickle::exception(
        "distributed.shuffle._exceptions",
        "P2PConsistencyError",
        message,
    );
    let mut v =
        crate::translate::error_message("error", exc, format!("P2PConsistencyError('{message}')"));
    // `shuffle_restrict_task`'s caller reads `message` (shuffle/_core.py:341)
    v.set("message", Value::from(message));
    v
}

fn run_spec_reply(run_spec: Bytes) -> Value {
    Value::map([
        ("status", Value::from("OK")),
        ("run_spec", Value::Opaque(Opaque::pickled(run_spec))),
    ])
}

/// RPC ops of the plugin.
pub async fn rpc(op: &str, msg: &Value, ctx: &Arc<Ctx>) -> Option<Result<Value, ServerError>> {
    Some(match op {
        "shuffle_get_or_create" => get_or_create(msg, ctx).await,
        "shuffle_get" => get(msg, ctx).await,
        "shuffle_barrier" => barrier(msg, ctx).await,
        "shuffle_restrict_task" => restrict_task(msg, ctx).await,
        _ => return None,
    })
}

async fn get(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let id = str_field(msg, "id")?;
    let worker = str_field(msg, "worker")?;
    ctx.handle
        .call(move |s| {
            if s.worker_by_address(&worker).is_none() {
                return consistency_error(&format!(
                    "Scheduler is unaware of this worker {worker:?}"
                ));
            }
            match s.ext.shuffle.active.get_mut(&id) {
                Some(run) => {
                    run.participating.insert(worker);
                    run_spec_reply(run.run_spec.clone())
                }
                None => consistency_error(&format!("No active shuffle with id={id:?} found")),
            }
        })
        .await
}

/// What `shuffle_get_or_create` decides on the state task.
enum Step {
    Reply(Value),
    Wait(oneshot::Receiver<()>),
    /// ask a helper to build the run with this id
    Create(Value, i64),
}

async fn get_or_create(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let id = str_field(msg, "shuffle_id")?;
    let key = key_field(msg, "key")?;
    let worker = str_field(msg, "worker")?;
    loop {
        let (id2, key2, worker2) = (id.clone(), key.clone(), worker.clone());
        let step = ctx
            .handle
            .call(move |s| decide_get_or_create(s, id2, &key2, worker2))
            .await?;
        let (request, run_id) = match step {
            Step::Reply(v) => return Ok(v),
            Step::Wait(rx) => {
                // another transfer task is creating the run: ask again once it is there
                let _ = tokio::time::timeout(Duration::from_secs(300), rx).await;
                continue;
            }
            Step::Create(request, run_id) => (request, run_id),
        };
        let reply = ctx.helpers.call(request).await;
        let (id2, worker2) = (id.clone(), worker.clone());
        return ctx
            .handle
            .call(move |s| finish_create(s, id2, run_id, worker2, reply))
            .await;
    }
}

fn decide_get_or_create(s: &mut Scheduler, id: Arc<str>, key: &Key, worker: Arc<str>) -> Step {
    if s.worker_by_address(&worker).is_none() {
        return Step::Reply(consistency_error(&format!(
            "Scheduler is unaware of this worker {worker:?}"
        )));
    }
    let st = &mut s.ext.shuffle;
    if let Some(run) = st.active.get_mut(&id) {
        run.participating.insert(worker);
        return Step::Reply(run_spec_reply(run.run_spec.clone()));
    }
    if let Some(waiters) = st.creating.get_mut(&id) {
        let (tx, rx) = oneshot::channel();
        waiters.push(tx);
        return Step::Wait(rx);
    }
    // `_create`: the barrier must be known and the calling task processing.
    let bkey = barrier_key(&id);
    let Some(barrier) = s.core.task(&bkey) else {
        return Step::Reply(consistency_error(&format!(
            "Barrier task with key {bkey} does not exist. This may be caused by task fusion during graph generation."
        )));
    };
    match s.core.task(key) {
        Some(t) if t.state == TaskStatus::Processing => {}
        Some(t) => {
            return Step::Reply(consistency_error(&format!(
                "Expected {key} to be processing, is {}.",
                t.state.as_str()
            )))
        }
        None => {
            return Step::Reply(consistency_error(&format!(
                "Task {key} is not known to the scheduler"
            )))
        }
    }
    let Some(barrier_run_spec) = barrier.run_spec.clone() else {
        return Step::Reply(consistency_error(&format!(
            "Barrier task {bkey} has no run_spec"
        )));
    };
    // `_calculate_worker_for`: the barrier's restricted workers or all, in registration
    // order, rotated so concurrent small shuffles spread out.
    let mut workers: Vec<Arc<str>> = if barrier.worker_restrictions.is_empty() {
        let mut ws: Vec<_> = s
            .core
            .workers()
            .map(|(wid, w)| (wid, w.address.clone()))
            .collect();
        ws.sort();
        ws.into_iter().map(|(_, a)| a).collect()
    } else {
        let mut ws: Vec<Arc<str>> = barrier.worker_restrictions.iter().cloned().collect();
        ws.sort();
        ws
    };
    if workers.is_empty() {
        return Step::Reply(consistency_error("No workers to run the shuffle on"));
    }
    // Shuffles sharing output tasks (hash joins) must agree on where each output lives.
    let mut existing: Vec<(Value, Value)> = Vec::new();
    for dep in barrier
        .dependents
        .iter()
        .filter_map(|d| s.core.task_by_id(*d))
    {
        for other in dep
            .dependencies
            .iter()
            .filter_map(|d| s.core.task_by_id(*d))
        {
            let Key::Str(k) = &other.key else { continue };
            let Some(other_id) = k.strip_prefix(BARRIER_PREFIX) else {
                continue;
            };
            if other_id == &*id {
                continue;
            }
            if let Some(run) = s.ext.shuffle.active.get(other_id) {
                if let Some(m) = run.worker_for.as_map() {
                    existing.extend(m.iter().cloned());
                }
            }
        }
    }
    let st = &mut s.ext.shuffle;
    let shift = st.shift % workers.len();
    st.shift = st.shift.wrapping_add(1);
    workers.rotate_left(shift);
    st.next_run_id += 1;
    let run_id = st.next_run_id;
    st.creating.insert(id, Vec::new());
    Step::Create(
        Value::map([
            ("op", Value::from("shuffle_create_run")),
            ("barrier_run_spec", Value::Bin(barrier_run_spec)),
            (
                "workers",
                Value::Array(workers.into_iter().map(Value::Str).collect()),
            ),
            ("existing", Value::Map(existing)),
            ("run_id", Value::Int(run_id)),
            ("span_id", Value::Nil),
        ]),
        run_id,
    )
}

fn finish_create(
    s: &mut Scheduler,
    id: Arc<str>,
    run_id: i64,
    worker: Arc<str>,
    reply: Result<Value, ServerError>,
) -> Value {
    let waiters = s.ext.shuffle.creating.remove(&id).unwrap_or_default();
    let result = match reply {
        Ok(r) if r.get("status").and_then(Value::as_str) == Some("OK") => {
            match (r.get("run_spec"), r.get("worker_for")) {
                (Some(Value::Bin(run_spec)), Some(worker_for)) => {
                    let mut participating: BTreeSet<Arc<str>> = worker_for
                        .as_map()
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|(_, w)| w.as_str().map(Arc::from))
                        .collect();
                    participating.insert(worker.clone());
                    tracing::info!(shuffle = %id, run_id, %worker, "Shuffle initialized");
                    s.ext.shuffle.active.insert(
                        id.clone(),
                        Run {
                            run_id,
                            run_spec: run_spec.clone(),
                            worker_for: worker_for.clone(),
                            participating,
                        },
                    );
                    run_spec_reply(run_spec.clone())
                }
                _ => consistency_error("graph helper returned no run_spec"),
            }
        }
        Ok(r) => {
            let text = r
                .get("exception_text")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let mut v = Value::map([
                ("status", Value::from("error")),
                (
                    "exception",
                    r.get("exception").cloned().unwrap_or(Value::Nil),
                ),
                (
                    "traceback",
                    r.get("traceback").cloned().unwrap_or(Value::Nil),
                ),
                ("exception_text", Value::from(text.as_str())),
                (
                    "traceback_text",
                    r.get("traceback_text").cloned().unwrap_or(Value::from("")),
                ),
            ]);
            v.set("message", Value::from(text));
            v
        }
        Err(e) => consistency_error(&format!("could not create the shuffle run: {e}")),
    };
    for w in waiters {
        let _ = w.send(());
    }
    result
}

/// `shuffle_barrier`: all inputs were sent; tell every participant (`shuffle_inputs_done`).
async fn barrier(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let id = str_field(msg, "id")?;
    let run_id = int_field(msg, "run_id")?;
    let consistent = field(msg, "consistent")?.truthy();
    let id2 = id.clone();
    let participants = ctx
        .handle
        .call(move |s| {
            let run = s.ext.shuffle.active.get(&id2).ok_or_else(|| format!("No active shuffle {id2}"))?;
            if run.run_id != run_id {
                return Err(format!("run_id={run_id} does not match SchedulerShuffleState<{id2}[{}]>", run.run_id));
            }
            if !consistent {
                tracing::warn!(shuffle = %id2, "Shuffle restarted due to data inconsistency during barrier");
                restart(s, &id2, &format!("p2p-barrier-inconsistent-{}", crate::runtime::now()).into());
                return Ok(Vec::new());
            }
            Ok(run.participating.iter().cloned().collect::<Vec<_>>())
        })
        .await?
        .map_err(ServerError::BadMessage)?;
    let done = Value::map([
        ("op", Value::from("shuffle_inputs_done")),
        ("shuffle_id", Value::Str(id.clone())),
        ("run_id", Value::Int(run_id)),
        ("reply", Value::Bool(true)),
    ]);
    let mut pending = participants;
    for attempt in 0..5u64 {
        if pending.is_empty() {
            break;
        }
        let results = futures::future::join_all(pending.iter().map(|w| {
            let done = done.clone();
            async move {
                let r = async {
                    let mut comm = Comm::connect(w, Duration::from_secs(30), &ctx.comm).await?;
                    let reply = comm.request(&done).await?;
                    comm.close().await;
                    Ok::<Value, ServerError>(reply)
                }
                .await;
                (w.clone(), r)
            }
        }))
        .await;
        pending = Vec::new();
        for (w, r) in results {
            match r {
                Ok(Value::Nil) => {}
                Ok(other) => {
                    return Err(ServerError::Worker(
                        w.to_string(),
                        format!("Unexpected error encountered during P2P barrier: {other:?}"),
                    ))
                }
                Err(e) => {
                    tracing::warn!(worker = %w, "Failure during broadcast of shuffle {id}, retrying: {e}");
                    pending.push(w);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
    }
    if !pending.is_empty() {
        return Err(ServerError::Worker(
            format!("{pending:?}"),
            format!("could not tell workers that the inputs of shuffle {id} are done"),
        ));
    }
    Ok(Value::Nil)
}

/// `shuffle_restrict_task`: pin an output task to the worker that owns its partition.
async fn restrict_task(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let id = str_field(msg, "id")?;
    let run_id = int_field(msg, "run_id")?;
    let key = key_field(msg, "key")?;
    let worker = str_field(msg, "worker")?;
    ctx.handle
        .call(move |s| {
            let current = match s.ext.shuffle.active.get(&id) {
                Some(run) => run.run_id,
                None => {
                    return consistency_error(&format!("No active shuffle with id={id:?} found"))
                }
            };
            if current > run_id {
                return consistency_error(&format!(
                    "Request stale, expected run_id={run_id} for {id}"
                ));
            }
            if current < run_id {
                return consistency_error(&format!(
                    "Request invalid, expected run_id={run_id} for {id}"
                ));
            }
            let Some(task) = s.core.task(&key) else {
                return consistency_error(&format!("Task {key} is not known to the scheduler"));
            };
            // Hash joins pin an output task once per side: keep the first original.
            if !s.ext.shuffle.original_restrictions.contains_key(&key) {
                let original = (!task.worker_restrictions.is_empty())
                    .then(|| task.worker_restrictions.iter().cloned().collect());
                s.ext
                    .shuffle
                    .original_restrictions
                    .insert(key.clone(), original);
                s.stimulus(Stimulus::SetRestrictions {
                    key,
                    workers: Some(vec![worker]),
                });
            }
            Value::map([("status", Value::from("OK"))])
        })
        .await
}

/// `transition` hook: a barrier became released, erred or forgotten.
pub fn on_transition(s: &mut Scheduler, key: &Key, finish: TaskStatus, stimulus_id: &Arc<str>) {
    let Key::Str(k) = key else { return };
    let Some(id) = k.strip_prefix(BARRIER_PREFIX) else {
        return;
    };
    let id: Arc<str> = id.into();
    if let Some(run) = s.ext.shuffle.active.get(&id) {
        let message = format!("SchedulerShuffleState<{id}[{}]> forgotten", run.run_id);
        fail_on_workers(s, &id, &message);
        clean(s, &id, stimulus_id);
    }
    if finish == TaskStatus::Forgotten {
        for ids in s.ext.shuffle.archived_by.values_mut() {
            ids.retain(|x| *x != id);
        }
        s.ext.shuffle.archived_by.retain(|_, ids| !ids.is_empty());
    }
}

/// `ShuffleSchedulerPlugin.restart` (`Client.restart`): every shuffle is forgotten.
pub fn on_restart(s: &mut Scheduler) {
    let st = &mut s.ext.shuffle;
    st.active.clear();
    st.creating.clear();
    st.archived_by.clear();
    st.original_restrictions.clear();
}

/// `remove_worker` hook: active shuffles it took part in fail and restart.
pub fn on_remove_worker(s: &mut Scheduler, worker: &str, stimulus_id: &Arc<str>) {
    let affected: Vec<(Arc<str>, i64)> = s
        .ext
        .shuffle
        .active
        .iter()
        .filter(|(_, r)| r.participating.contains(worker))
        .map(|(id, r)| (id.clone(), r.run_id))
        .collect();
    for (id, run_id) in affected {
        let message =
            format!("Worker {worker} left during active SchedulerShuffleState<{id}[{run_id}]>");
        fail_on_workers(s, &id, &message);
        clean(s, &id, stimulus_id);
    }
    for id in s
        .ext
        .shuffle
        .archived_by
        .remove(stimulus_id)
        .unwrap_or_default()
    {
        restart(s, &id, stimulus_id);
    }
}

/// `_fail_on_workers`: `shuffle-fail` to every participant.
fn fail_on_workers(s: &mut Scheduler, id: &Arc<str>, message: &str) {
    let Some(run) = s.ext.shuffle.active.get(id) else {
        return;
    };
    let msg = Value::map([
        ("op", Value::from("shuffle-fail")),
        ("shuffle_id", Value::Str(id.clone())),
        ("run_id", Value::Int(run.run_id)),
        ("message", Value::from(message)),
    ]);
    for w in &run.participating {
        if let Some(info) = s.worker_by_address(w).and_then(|wid| s.workers.get(&wid)) {
            let _ = info.tx.send(msg.clone().into());
        }
    }
}

/// `_clean_on_scheduler`: deactivate, remember why, unpin the output tasks.
fn clean(s: &mut Scheduler, id: &Arc<str>, stimulus_id: &Arc<str>) {
    if s.ext.shuffle.active.remove(id).is_none() {
        return;
    }
    tracing::warn!(shuffle = %id, %stimulus_id, "Shuffle deactivated");
    s.ext
        .shuffle
        .archived_by
        .entry(stimulus_id.clone())
        .or_default()
        .push(id.clone());
    let dependents: Vec<Key> = s
        .core
        .task(&barrier_key(id))
        .map(|b| {
            b.dependents
                .iter()
                .filter_map(|d| s.core.task_by_id(*d))
                .map(|t| t.key.clone())
                .collect()
        })
        .unwrap_or_default();
    for key in dependents {
        if let Some(original) = s.ext.shuffle.original_restrictions.remove(&key) {
            s.stimulus(Stimulus::SetRestrictions {
                key,
                workers: original,
            });
        }
    }
}

/// `_restart_shuffle`: release the barrier, its dependents and its dependencies, so they
/// run again (unless an output already erred).
fn restart(s: &mut Scheduler, id: &Arc<str>, stimulus_id: &Arc<str>) {
    let bkey = barrier_key(id);
    let Some(barrier) = s.core.task(&bkey) else {
        return;
    };
    let dependents: Vec<&rask_core::Task> = barrier
        .dependents
        .iter()
        .filter_map(|d| s.core.task_by_id(*d))
        .collect();
    if dependents.iter().any(|t| t.state == TaskStatus::Erred) {
        return;
    }
    let mut keys: Vec<Key> = dependents.iter().map(|t| t.key.clone()).collect();
    keys.push(bkey.clone());
    keys.extend(
        barrier
            .dependencies
            .iter()
            .filter_map(|d| s.core.task_by_id(*d))
            .map(|t| t.key.clone()),
    );
    tracing::warn!(shuffle = %id, %stimulus_id, "Shuffle restarted");
    s.stimulus(Stimulus::Release {
        keys,
        stimulus_id: stimulus_id.clone(),
    });
}
