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
//! `ShuffleRunSpec`) runs in a graph helper (`shuffle_create_run`, a [`Job::Helper`]); run
//! ids, participants, restrictions, broadcasts and clean-up are here.

use super::{Cx, Extension, Hooks, Peer};
use crate::error::HelperError;
use crate::event::{AfterHelper, Job, Replier};
use crate::messages::shuffle::Rpc;
use crate::messages::ToWorkerMsg;
use crate::translate::shuffle::{
    consistency_error, create_run, helper_error, ok, run_spec as run_spec_reply,
};
use bytes::Bytes;
use rask_comm::reply::raised;
use rask_core::{Stimulus, TaskStatus};
use rask_protocol::{Key, Value};
use rustc_hash::FxHashMap;
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;

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

/// A `shuffle_get_or_create` waiting for another transfer task's run to be created.
struct Waiting {
    key: Key,
    worker: Arc<str>,
    reply: Replier,
}

/// The plugin's state.
#[derive(Default)]
pub struct Shuffle {
    active: FxHashMap<Arc<str>, Run>,
    /// shuffles whose run is being created, with the requests that wait for it
    creating: FxHashMap<Arc<str>, Vec<Waiting>>,
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

impl Shuffle {
    fn get(&mut self, cx: &Cx<'_>, id: Arc<str>, worker: Arc<str>) -> Value {
        if cx.core.worker_id(&worker).is_none() {
            return consistency_error(&format!("Scheduler is unaware of this worker '{worker}'"));
        }
        match self.active.get_mut(&id) {
            Some(run) => {
                run.participating.insert(worker);
                run_spec_reply(run.run_spec.clone())
            }
            None => consistency_error(&format!("No active shuffle with id='{id}' found")),
        }
    }

    fn get_or_create(
        &mut self,
        cx: &mut Cx<'_>,
        id: Arc<str>,
        key: Key,
        worker: Arc<str>,
        reply: Replier,
    ) {
        if cx.core.worker_id(&worker).is_none() {
            let v = consistency_error(&format!("Scheduler is unaware of this worker '{worker}'"));
            return cx.reply(reply, Ok(v));
        }
        if let Some(run) = self.active.get_mut(&id) {
            run.participating.insert(worker);
            return cx.reply(reply, Ok(run_spec_reply(run.run_spec.clone())));
        }
        if let Some(waiting) = self.creating.get_mut(&id) {
            // another transfer task is creating the run: answer once it is there
            waiting.push(Waiting { key, worker, reply });
            return;
        }
        match self.create(cx, &id, &key) {
            Ok((request, run_id)) => {
                self.creating.insert(id.clone(), Vec::new());
                cx.start(Job::Helper {
                    request,
                    then: AfterHelper::ShuffleRun {
                        id,
                        run_id,
                        key,
                        worker,
                        reply,
                    },
                });
            }
            Err(v) => cx.reply(reply, Ok(v)),
        }
    }

    /// `_create`: the helper's request for a new run, or the consistency error.
    fn create(&mut self, cx: &Cx<'_>, id: &Arc<str>, key: &Key) -> Result<(Value, i64), Value> {
        // the barrier must be known and the calling task processing
        let bkey = barrier_key(id);
        let Some(barrier) = cx.core.task(&bkey) else {
            return Err(consistency_error(&format!(
                "Barrier task with key {bkey} does not exist. This may be caused by task fusion during graph generation."
            )));
        };
        match cx.core.task(key) {
            Some(t) if t.state == TaskStatus::Processing => {}
            Some(t) => {
                return Err(consistency_error(&format!(
                    "Expected {key} to be processing, is {}.",
                    t.state.as_str()
                )))
            }
            None => {
                return Err(consistency_error(&format!(
                    "Task {key} is not known to the scheduler"
                )))
            }
        }
        let Some(barrier_run_spec) = barrier.run_spec.clone() else {
            return Err(consistency_error(&format!(
                "Barrier task {bkey} has no run_spec"
            )));
        };
        // `_calculate_worker_for`: the barrier's restricted workers or all, in registration
        // order, rotated so concurrent small shuffles spread out.
        let mut workers: Vec<Arc<str>> = if barrier.rare().worker_restrictions.is_empty() {
            let mut ws: Vec<_> = cx
                .core
                .workers()
                .map(|(wid, w)| (wid, w.address.clone()))
                .collect();
            ws.sort();
            ws.into_iter().map(|(_, a)| a).collect()
        } else {
            let mut ws: Vec<Arc<str>> =
                barrier.rare().worker_restrictions.iter().cloned().collect();
            ws.sort();
            ws
        };
        if workers.is_empty() {
            return Err(consistency_error("No workers to run the shuffle on"));
        }
        // Shuffles sharing output tasks (hash joins) must agree on where each output lives.
        let mut existing: Vec<(Value, Value)> = Vec::new();
        for dep in barrier
            .dependents
            .iter()
            .filter_map(|d| cx.core.task_by_id(*d))
        {
            for other in dep
                .dependencies
                .iter()
                .filter_map(|d| cx.core.task_by_id(*d))
            {
                let Key::Str(k) = &other.key else { continue };
                let Some(other_id) = k.strip_prefix(BARRIER_PREFIX) else {
                    continue;
                };
                if other_id == &**id {
                    continue;
                }
                if let Some(run) = self.active.get(other_id) {
                    if let Some(m) = run.worker_for.as_map() {
                        existing.extend(m.iter().cloned());
                    }
                }
            }
        }
        let shift = self.shift % workers.len();
        self.shift = self.shift.wrapping_add(1);
        workers.rotate_left(shift);
        self.next_run_id += 1;
        let run_id = self.next_run_id;
        Ok((
            create_run(barrier_run_spec, workers, existing, run_id),
            run_id,
        ))
    }

    /// The helper's answer to `shuffle_create_run`: the run is active (or not), the caller
    /// and every request that waited for it are answered.
    #[allow(clippy::too_many_arguments)]
    pub fn run_created(
        &mut self,
        cx: &mut Cx<'_>,
        result: Result<Value, HelperError>,
        id: Arc<str>,
        run_id: i64,
        key: Key,
        worker: Arc<str>,
        reply: Replier,
    ) {
        let waiting = self.creating.remove(&id).unwrap_or_default();
        let answer = match result {
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
                        // Stock makes a run in one step; rask's helper takes a moment, in
                        // which a worker may leave. A run pinning outputs to a departed
                        // worker would never finish (no restart covers a run that was not
                        // active when the worker left), so it is made again for the
                        // workers there are now.
                        if let Some(gone) = participating
                            .iter()
                            .find(|w| cx.core.worker_id(w).is_none())
                        {
                            tracing::warn!(shuffle = %id, run_id, worker = %gone, "a worker left while the shuffle run was made; making it again");
                            self.get_or_create(cx, id.clone(), key, worker, reply);
                            for w in waiting {
                                self.get_or_create(cx, id.clone(), w.key, w.worker, w.reply);
                            }
                            return;
                        }
                        tracing::info!(shuffle = %id, run_id, %worker, "Shuffle initialized");
                        self.active.insert(
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
            Ok(r) => helper_error(&r),
            Err(e) => consistency_error(&format!("could not create the shuffle run: {e}")),
        };
        cx.reply(reply, Ok(answer));
        // they ask again: the run is there now (or they try to create it themselves)
        for w in waiting {
            self.get_or_create(cx, id.clone(), w.key, w.worker, w.reply);
        }
    }

    /// `shuffle_barrier`: all inputs were sent; tell every participant.
    fn barrier(
        &mut self,
        cx: &mut Cx<'_>,
        id: Arc<str>,
        run_id: i64,
        consistent: bool,
        reply: Replier,
    ) {
        // `self.active_shuffles[id]` raising KeyError, and the ValueError of another run
        let Some(run) = self.active.get(&id) else {
            return cx.reply(reply, Ok(raised("KeyError", &id)));
        };
        if run.run_id != run_id {
            let e = format!(
                "run_id={run_id} does not match SchedulerShuffleState<{id}[{}]>",
                run.run_id
            );
            return cx.reply(reply, Ok(raised("ValueError", &e)));
        }
        if !consistent {
            tracing::warn!(shuffle = %id, "Shuffle restarted due to data inconsistency during barrier");
            let sid: Arc<str> = format!("p2p-barrier-inconsistent-{}", cx.now).into();
            self.restart(cx, &id, &sid);
            return cx.reply(reply, Ok(Value::Nil));
        }
        cx.start(Job::InputsDone {
            shuffle_id: id,
            run_id,
            participants: run.participating.iter().cloned().collect(),
            reply,
        });
    }

    /// `shuffle_restrict_task`: pin an output task to the worker that owns its partition.
    fn restrict_task(
        &mut self,
        cx: &mut Cx<'_>,
        id: Arc<str>,
        run_id: i64,
        key: Key,
        worker: Arc<str>,
    ) -> Value {
        let current = match self.active.get(&id) {
            Some(run) => run.run_id,
            None => return consistency_error(&format!("No active shuffle with id='{id}' found")),
        };
        let run = format!("SchedulerShuffleState<{id}[{current}]>");
        if current > run_id {
            return consistency_error(&format!(
                "Request stale, expected run_id={run_id} for {run}"
            ));
        }
        if current < run_id {
            return consistency_error(&format!(
                "Request invalid, expected run_id={run_id} for {run}"
            ));
        }
        let Some(task) = cx.core.task(&key) else {
            return consistency_error(&format!("Task {key} is not known to the scheduler"));
        };
        // Hash joins pin an output task once per side: keep the first original.
        if !self.original_restrictions.contains_key(&key) {
            let original = (!task.rare().worker_restrictions.is_empty())
                .then(|| task.rare().worker_restrictions.iter().cloned().collect());
            self.original_restrictions.insert(key.clone(), original);
            cx.stimulus(Stimulus::SetRestrictions {
                key,
                workers: Some(vec![worker]),
            });
        }
        ok()
    }

    /// `_fail_on_workers`: `shuffle-fail` to every participant.
    fn fail_on_workers(&self, cx: &mut Cx<'_>, id: &Arc<str>, message: &str) {
        let Some(run) = self.active.get(id) else {
            return;
        };
        for w in &run.participating {
            cx.to_worker_at(
                w,
                ToWorkerMsg::ShuffleFail {
                    shuffle_id: id.clone(),
                    run_id: run.run_id,
                    message: message.to_string(),
                },
            );
        }
    }

    /// `_clean_on_scheduler`: deactivate, remember why, unpin the output tasks.
    fn clean(&mut self, cx: &mut Cx<'_>, id: &Arc<str>, stimulus_id: &Arc<str>) {
        if self.active.remove(id).is_none() {
            return;
        }
        tracing::warn!(shuffle = %id, %stimulus_id, "Shuffle deactivated");
        self.archived_by
            .entry(stimulus_id.clone())
            .or_default()
            .push(id.clone());
        let dependents: Vec<Key> = cx
            .core
            .task(&barrier_key(id))
            .map(|b| {
                b.dependents
                    .iter()
                    .filter_map(|d| cx.core.task_by_id(*d))
                    .map(|t| t.key.clone())
                    .collect()
            })
            .unwrap_or_default();
        for key in dependents {
            if let Some(original) = self.original_restrictions.remove(&key) {
                cx.stimulus(Stimulus::SetRestrictions {
                    key,
                    workers: original,
                });
            }
        }
    }

    /// `_restart_shuffle`: release the barrier, its dependents and its dependencies, so they
    /// run again (unless an output already erred).
    fn restart(&mut self, cx: &mut Cx<'_>, id: &Arc<str>, stimulus_id: &Arc<str>) {
        let bkey = barrier_key(id);
        let Some(barrier) = cx.core.task(&bkey) else {
            return;
        };
        let dependents: Vec<&rask_core::Task> = barrier
            .dependents
            .iter()
            .filter_map(|d| cx.core.task_by_id(*d))
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
                .filter_map(|d| cx.core.task_by_id(*d))
                .map(|t| t.key.clone()),
        );
        tracing::warn!(shuffle = %id, %stimulus_id, "Shuffle restarted");
        cx.stimulus(Stimulus::Release {
            keys,
            stimulus_id: stimulus_id.clone(),
        });
    }
}

impl Extension for Shuffle {
    type Rpc = Rpc;
    type StreamOp = Infallible;

    fn rpc(&mut self, cx: &mut Cx<'_>, rpc: Rpc, reply: Replier) {
        match rpc {
            Rpc::GetOrCreate { id, key, worker } => self.get_or_create(cx, id, key, worker, reply),
            Rpc::Get { id, worker } => {
                let v = self.get(cx, id, worker);
                cx.reply(reply, Ok(v));
            }
            Rpc::Barrier {
                id,
                run_id,
                consistent,
            } => self.barrier(cx, id, run_id, consistent, reply),
            Rpc::RestrictTask {
                id,
                run_id,
                key,
                worker,
            } => {
                let v = self.restrict_task(cx, id, run_id, key, worker);
                cx.reply(reply, Ok(v));
            }
        }
    }

    fn stream_op(&mut self, _cx: &mut Cx<'_>, _from: Peer, op: Infallible) {
        match op {}
    }
}

impl Hooks for Shuffle {
    /// A barrier became released, erred or forgotten: its run fails and is cleaned up.
    fn on_transition(&mut self, cx: &mut Cx<'_>, key: &Key, finish: TaskStatus, sid: &Arc<str>) {
        let Key::Str(k) = key else { return };
        let Some(id) = k.strip_prefix(BARRIER_PREFIX) else {
            return;
        };
        let id: Arc<str> = id.into();
        if let Some(run) = self.active.get(&id) {
            let message = format!("SchedulerShuffleState<{id}[{}]> forgotten", run.run_id);
            self.fail_on_workers(cx, &id, &message);
            self.clean(cx, &id, sid);
        }
        if finish == TaskStatus::Forgotten {
            for ids in self.archived_by.values_mut() {
                ids.retain(|x| *x != id);
            }
            self.archived_by.retain(|_, ids| !ids.is_empty());
        }
    }

    /// Active shuffles the worker took part in fail and restart.
    fn on_worker_removed(&mut self, cx: &mut Cx<'_>, worker: &str, sid: &Arc<str>) {
        let affected: Vec<(Arc<str>, i64)> = self
            .active
            .iter()
            .filter(|(_, r)| r.participating.contains(worker))
            .map(|(id, r)| (id.clone(), r.run_id))
            .collect();
        for (id, run_id) in affected {
            let message =
                format!("Worker {worker} left during active SchedulerShuffleState<{id}[{run_id}]>");
            self.fail_on_workers(cx, &id, &message);
            self.clean(cx, &id, sid);
        }
        for id in self.archived_by.remove(sid).unwrap_or_default() {
            self.restart(cx, &id, sid);
        }
    }

    /// `Client.restart`: every shuffle is forgotten.
    fn on_restart(&mut self, cx: &mut Cx<'_>) {
        self.active.clear();
        for (id, waiting) in self.creating.drain() {
            for w in waiting {
                let e = consistency_error(&format!("Shuffle {id} was forgotten by a restart"));
                cx.reply(w.reply, Ok(e));
            }
        }
        self.archived_by.clear();
        self.original_restrictions.clear();
    }
}
