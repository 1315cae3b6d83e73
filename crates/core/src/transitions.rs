//! Task state transitions, one function per edge of Dask's `_TRANSITIONS_TABLE`
//! (`scheduler.py:3060-3086`). Each takes a task and pushes follow-up recommendations;
//! messages go to the outbox. Recommendations are a stack, like Dask's `dict.popitem()`.
//!
//! Every change of a task's state goes through `SchedulerState::transition`
//! (`Scheduler._transition`): a table edge, or two hops via `released`; anything else is a
//! [`CoreError`] and is not made. (A stolen task moves between workers without changing
//! state, as in Dask's `move_task_confirm`; `ClearTasks` drops every task at once.)
//!
//! What a stimulus reported with a transition (Dask's `**kwargs`: the worker, result size
//! and type of `task-finished`; the worker, cause and exception of `task-erred`) travels as
//! a `Report`, which only the edges that take it accept. The table differs from Dask's in
//! these edges:
//! - `(released|waiting|no-worker|queued|processing|erred) -> memory` for scattered data
//!   (`Report::Scattered`): Dask's `update_data` sets `ts.state = "memory"` itself.
//! - no `waiting -> memory` (a `task-finished` for a waiting task is answered with
//!   `free-keys` by the handler), no `queued -> erred` (it goes via released) and no
//!   `memory -> erred` only for actors, as in Dask.

use crate::command::{Command, ComputeTask, ToClient, ToWorker, TransitionNote};
use crate::error::CoreError;
use crate::state::SchedulerState;
use crate::types::{ClientId, Exception, TaskId, TaskStatus, Transition, WorkerId};
use rask_protocol::{Key, Value};
use std::sync::Arc;

/// Pending recommendations with the semantics of Dask's `dict` + `popitem()`: the most
/// recently inserted task is handled first, and a recommendation for a task that already has
/// one pending replaces its target in place instead of queueing a second, stale one.
#[derive(Debug, Default)]
pub(crate) struct Recs {
    order: Vec<TaskId>,
    target: rustc_hash::FxHashMap<TaskId, TaskStatus>,
    /// While a transition is logged: every recommendation it made, in order (Dask's
    /// per-transition `recommendations` dict, which the transition log keeps).
    journal: Vec<(TaskId, TaskStatus)>,
    /// whether `push` journals (the buffer is reused from one transition to the next)
    journaling: bool,
}

impl Recs {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// `recommendations[key] = finish`, except that a pending `forgotten` is never
    /// replaced: nothing can make a task needed again within one stimulus.
    pub(crate) fn push(&mut self, (id, finish): (TaskId, TaskStatus)) {
        if self.journaling {
            self.journal.push((id, finish));
        }
        match self.target.get_mut(&id) {
            Some(TaskStatus::Forgotten) => {}
            Some(pending) => *pending = finish,
            None => {
                self.target.insert(id, finish);
                self.order.push(id);
            }
        }
    }

    /// `recommendations.popitem()`
    pub(crate) fn pop(&mut self) -> Option<(TaskId, TaskStatus)> {
        while let Some(id) = self.order.pop() {
            if let Some(finish) = self.target.remove(&id) {
                return Some((id, finish));
            }
        }
        None
    }

    /// `recommendations.pop(key, None)`
    pub(crate) fn take(&mut self, id: TaskId) -> Option<TaskStatus> {
        let finish = self.target.remove(&id)?;
        if let Some(p) = self.order.iter().rposition(|t| *t == id) {
            self.order.remove(p);
        }
        Some(finish)
    }

    /// Starts journaling the recommendations of one transition (transitions never nest).
    fn journal_start(&mut self) {
        self.journal.clear();
        self.journaling = true;
    }

    /// The recommendations journaled since [`Self::journal_start`]; journaling stops.
    fn journal_stop(&mut self) -> &[(TaskId, TaskStatus)] {
        self.journaling = false;
        &self.journal
    }

    /// Moves the pending recommendations into `other`, oldest first, so `other` sees
    /// them in the order they were made.
    fn drain_into(mut self, other: &mut Recs) {
        let order = std::mem::take(&mut self.order);
        for id in order {
            if let Some(f) = self.target.remove(&id) {
                other.push((id, f));
            }
        }
    }
}

impl Extend<(TaskId, TaskStatus)> for Recs {
    fn extend<I: IntoIterator<Item = (TaskId, TaskStatus)>>(&mut self, iter: I) {
        for r in iter {
            self.push(r);
        }
    }
}

impl FromIterator<(TaskId, TaskStatus)> for Recs {
    fn from_iter<I: IntoIterator<Item = (TaskId, TaskStatus)>>(iter: I) -> Self {
        let mut recs = Recs::new();
        recs.extend(iter);
        recs
    }
}

impl From<Vec<(TaskId, TaskStatus)>> for Recs {
    fn from(v: Vec<(TaskId, TaskStatus)>) -> Self {
        v.into_iter().collect()
    }
}

/// What a stimulus reported along with a transition: the `**kwargs` Dask's handlers pass to
/// `_transition`. Only the edges that take a report accept one.
#[derive(Debug)]
pub(crate) enum Report {
    /// `task-finished` (`stimulus_task_finished`) -> `processing -> memory`
    Finished {
        /// the worker that ran it and holds the result
        worker: WorkerId,
        /// the result's size
        nbytes: i64,
        /// its pickled type, forwarded to clients
        type_: Value,
        /// seconds computing (Dask's `startstops`), for the prefix's duration estimate
        compute_duration: Option<f64>,
        /// seconds fetching dependencies (Dask's `startstops`), for the prefix's total
        transfer_duration: f64,
    },
    /// `task-erred` (`stimulus_task_erred`), or `KilledWorker` (`remove_worker`) ->
    /// `processing -> erred`
    Erred {
        /// the worker it failed on (it gets `free-keys` on retry)
        worker: WorkerId,
        /// the failed task (the task itself)
        cause: TaskId,
        /// what clients are told
        exception: Exception,
        /// pickled traceback, or Nil
        traceback: Value,
    },
    /// scatter (`update_data`) -> `... -> memory`
    Scattered {
        /// connected workers that received the data
        workers: Vec<WorkerId>,
        /// its size
        nbytes: i64,
    },
}

/// The client id reserved for `fire_and_forget` futures (`scheduler.py:1739`).
pub const FIRE_AND_FORGET: ClientId = ClientId(0);

impl SchedulerState {
    /// Runs recommendations until none are left (`Scheduler._transitions`).
    pub(crate) fn transitions(&mut self, recs: impl Into<Recs>, sid: &Arc<str>) {
        let mut recs = recs.into();
        while let Some((id, finish)) = recs.pop() {
            // A recommendation may outlive its task (forgotten earlier in this loop).
            if self.tasks.get(id).is_none() {
                continue;
            }
            // a big graph's ready tasks start once all of it waits (`ingest.rs`)
            if let (TaskStatus::Processing, Some(ready)) = (finish, &mut self.ready_later) {
                ready.push(id);
                continue;
            }
            self.transition(id, finish, None, &mut recs, sid);
        }
    }

    /// One transition (`Scheduler._transition`): a table edge, or two hops via `released`.
    /// `report` is what the stimulus reported with it (Dask's `**kwargs`); its
    /// recommendations go to `recs`.
    pub(crate) fn transition(
        &mut self,
        id: TaskId,
        finish: TaskStatus,
        report: Option<Report>,
        recs: &mut Recs,
        sid: &Arc<str>,
    ) {
        let ts = self.expect_task(id);
        if ts.state == finish {
            return;
        }
        let log = self.config.transition_log_length != Some(0);
        let watch = ts.watch;
        self.transition_counter += 1;
        if !watch && !log && !self.report_done && !self.report_transitions {
            self.transition_inner(id, finish, report, recs, sid);
            return;
        }
        let key = self.expect_task(id).key.clone();
        let mark = self.out.len();
        if log {
            recs.journal_start();
        }
        let logged_start = self.transition_inner(id, finish, report, recs, sid);
        let now = match self.tasks.get(id) {
            Some(t) => t.state,
            _ => TaskStatus::Forgotten,
        };
        if log {
            let made = recs.journal_stop();
            if let Some(start) = logged_start {
                self.log_transition(key.clone(), start, now, made, sid);
            }
        }
        if let Some(start) = logged_start.filter(|_| self.report_transitions) {
            self.note_transition(&key, start, now, sid);
        }
        if self.report_done && logged_start.is_some_and(|s| s != now) {
            if let TaskStatus::Memory | TaskStatus::Erred = now {
                self.emit(Command::Done {
                    key: key.clone(),
                    start: logged_start.unwrap_or(now),
                    finish: now,
                    stimulus_id: sid.clone(),
                });
            }
        }
        if watch
            && matches!(
                now,
                TaskStatus::Released | TaskStatus::Erred | TaskStatus::Forgotten
            )
        {
            // Dask's plugin hook sends its messages before the transition's own.
            let note = Command::Transitioned {
                key,
                finish: now,
                stimulus_id: sid.clone(),
            };
            self.out.insert(mark.min(self.out.len()), note);
        }
    }

    /// The table (`_TRANSITIONS_TABLE`): the edge for `start -> finish` with this report.
    /// Returns the start state as Dask's transition log records it (`released` after two
    /// hops via released, whose first hop is logged here), or `None` if nothing was done.
    fn transition_inner(
        &mut self,
        id: TaskId,
        finish: TaskStatus,
        report: Option<Report>,
        recs: &mut Recs,
        sid: &Arc<str>,
    ) -> Option<TaskStatus> {
        use TaskStatus::*;
        let ts = self.expect_task(id);
        let (start, pix) = (ts.state, ts.prefix_ix);
        if start == finish {
            return None;
        }
        let group = (finish == Forgotten).then(|| ts.group.clone());
        match (start, finish, report) {
            (Released, Waiting, None) => self.released_waiting(id, recs),
            (Waiting, Released, None) => self.waiting_released(id, recs),
            (Waiting, Processing, None) => self.waiting_processing(id, recs, sid),
            (Waiting, NoWorker, None) => self.waiting_no_worker(id),
            (Waiting, Queued, None) => self.waiting_queued(id),
            (Queued, Released, None) => self.queued_released(id, recs),
            (Queued, Processing, None) => self.queued_processing(id, sid),
            (Processing, Released, None) => self.processing_released(id, recs, sid),
            (
                Processing,
                Memory,
                Some(Report::Finished {
                    worker,
                    nbytes,
                    type_,
                    compute_duration,
                    transfer_duration,
                }),
            ) => self.processing_memory(
                id,
                worker,
                nbytes,
                type_,
                (compute_duration, transfer_duration),
                recs,
            ),
            // Without a report (a dependency's failure blamed on it) processing -> erred
            // takes the way via released below, which also tells the worker to drop the run.
            (
                Processing,
                Erred,
                Some(Report::Erred {
                    worker,
                    cause,
                    exception,
                    traceback,
                }),
            ) => self.processing_erred(id, worker, cause, exception, traceback, recs),
            (NoWorker, Released, None) => self.no_worker_released(id, recs),
            (NoWorker, Processing, None) => self.no_worker_processing(id, sid),
            (NoWorker, Erred, None) => self.no_worker_erred(id, recs),
            (Released, Forgotten, None) | (Memory, Forgotten, None) => self.forget(id, recs, sid),
            (Memory, Released, None) => self.memory_released(id, recs, sid),
            (Memory, Erred, None) => self.memory_erred(id, recs, sid),
            (Erred, Released, None) => self.erred_released(id, recs, sid),
            (Released, Erred, None) => self.released_erred(id, recs, sid),
            // Not in Dask's table: its `update_data` sets `ts.state = "memory"` itself, from
            // any state. As edges, scattered data takes the one way every change takes.
            (
                Released | Waiting | NoWorker | Queued | Processing | Erred,
                Memory,
                Some(Report::Scattered { workers, nbytes }),
            ) => self.scattered_memory(id, workers, nbytes, recs, sid),
            // Not an edge, and no way round through released: a report belongs to its edge
            // (Dask: `assert not kwargs` before going via released), and only a report says
            // where a result is, so nothing else leads to memory.
            (_, Released, _) | (Released, _, _) | (_, Memory, _) | (_, _, Some(_)) => {
                let key = self.expect_task(id).key.clone();
                self.report_error(CoreError::ImpossibleTransition {
                    key,
                    start,
                    finish,
                    stimulus_id: sid.clone(),
                });
                return None;
            }
            (_, _, None) => {
                // Via released; if that hop recommends something for this task, that wins
                // over `finish` (`scheduler.py` `_transition`: `a_recs.get(key, finish)`).
                // Dask logs the first hop as a transition of its own, and the second as
                // starting from released.
                let log = self.config.transition_log_length != Some(0);
                let note = self.report_transitions;
                let key = (log || note).then(|| self.expect_task(id).key.clone());
                let mut sub = Recs::new();
                if log {
                    sub.journal_start();
                }
                self.transition_inner(id, Released, None, &mut sub, sid);
                if let Some(key) = key {
                    let now = match self.tasks.get(id) {
                        Some(t) => t.state,
                        _ => Forgotten,
                    };
                    if note {
                        self.note_transition(&key, start, now, sid);
                    }
                    if log {
                        let made = sub.journal_stop();
                        self.log_transition(key, start, now, made, sid);
                    }
                }
                let next = sub.take(id).unwrap_or(finish);
                sub.drain_into(recs);
                if matches!(self.tasks.get(id), Some(t) if t.state == Released) {
                    self.transition_inner(id, next, None, recs, sid);
                }
                return Some(Released);
            }
        }
        // the edge is made: the prefix counts it (Dask's `TaskState.state` setter)
        let now = match self.tasks.get(id) {
            Some(t) => t.state,
            _ => Forgotten,
        };
        if now != start {
            self.prefixes.moved(pix, start, now);
            if start.is_runnable() != now.is_runnable() {
                let name = match (&group, self.tasks.get(id)) {
                    (Some(g), _) => Some(g),
                    (None, Some(t)) => Some(&t.group),
                    _ => None,
                };
                if let Some(g) = name.and_then(|n| self.groups.get_mut(n)) {
                    g.runnable += if now.is_runnable() { 1 } else { -1 };
                }
            }
            if let (Forgotten, Some(group)) = (now, group) {
                self.forgotten_in_group(&group);
            }
        }
        Some(start)
    }

    /// [`Command::Transition`] for the plugin host, with the task's placement as the
    /// transition left it.
    fn note_transition(
        &mut self,
        key: &Key,
        start: TaskStatus,
        finish: TaskStatus,
        sid: &Arc<str>,
    ) {
        let (mut worker, mut nbytes) = (None, 0);
        if let Some(id) = self.task_id(key) {
            let t = self.expect_task(id);
            let at = match finish {
                TaskStatus::Processing => t.processing_on,
                TaskStatus::Memory => t.who_has.iter().next().copied(),
                _ => None,
            };
            worker = at.and_then(|w| self.worker(w)).map(|w| w.address.clone());
            if finish == TaskStatus::Memory {
                nbytes = t.nbytes;
            }
        }
        self.emit(Command::Transition(Box::new(TransitionNote {
            key: key.clone(),
            start,
            finish,
            stimulus_id: sid.clone(),
            worker,
            nbytes,
        })));
    }

    /// Appends to the transition log (`SchedulerState.transition_log`, scheduler.py:2039),
    /// dropping the oldest entry past `transition_log_length`.
    fn log_transition(
        &mut self,
        key: Key,
        start: TaskStatus,
        finish: TaskStatus,
        made: &[(TaskId, TaskStatus)],
        sid: &Arc<str>,
    ) {
        // Dask's recommendations are a dict: one entry per task, its last target, in the
        // order the tasks were first recommended. Most transitions recommend a task or two,
        // so duplicates are looked for by scanning unless there are many.
        const SCAN: usize = 8;
        let mut recommendations: Vec<(TaskId, TaskStatus)> = Vec::with_capacity(made.len());
        let mut seen: rustc_hash::FxHashMap<TaskId, usize> = Default::default();
        for &(rid, target) in made {
            let at = if made.len() <= SCAN {
                recommendations.iter().position(|(r, _)| *r == rid)
            } else {
                seen.get(&rid).copied()
            };
            match at {
                Some(i) => recommendations[i].1 = target,
                None => {
                    if made.len() > SCAN {
                        seen.insert(rid, recommendations.len());
                    }
                    recommendations.push((rid, target));
                }
            }
        }
        let recommendations = recommendations
            .into_iter()
            .filter_map(|(rid, target)| Some((self.task_by_id(rid)?.key.clone(), target)))
            .collect();
        if let Some(max) = self.config.transition_log_length {
            while self.transition_log.len() >= max {
                self.transition_log.pop_front();
            }
        }
        self.transition_log.push_back(Transition {
            key,
            start,
            finish,
            recommendations,
            stimulus_id: sid.clone(),
            timestamp: self.now,
        });
    }

    fn released_waiting(&mut self, id: TaskId, recs: &mut Recs) {
        let ts = self.expect_task(id);
        if ts.has_lost_dependencies || ts.run_spec.is_none() {
            recs.push((id, TaskStatus::Forgotten));
            return;
        }
        // A dependency is still erred (e.g. only one of two failed roots was retried):
        // waiting on it would wait forever, so inherit its blame instead.
        let blame = ts.dependencies.iter().find_map(|d| {
            let dts = self.expect_task(*d);
            (dts.state == TaskStatus::Erred)
                .then_some(dts.exception_blame)
                .flatten()
        });
        if let Some(b) = blame {
            self.expect_task_mut(id).exception_blame = Some(b);
            recs.push((id, TaskStatus::Erred));
            return;
        }
        let ts = self.expect_task(id);
        let deps = ts.dependencies.clone();
        let mut waiting_on = Vec::new();
        for &d in &deps {
            let dts = self.expect_task_mut(d);
            if dts.who_has.is_empty() {
                waiting_on.push(d);
            }
            if dts.state == TaskStatus::Released {
                recs.push((d, TaskStatus::Waiting));
            } else {
                dts.waiters.insert(id);
            }
        }
        let waiters = self
            .expect_task(id)
            .dependents
            .iter()
            .copied()
            .filter(|d| self.expect_task(*d).state == TaskStatus::Waiting)
            .collect();
        let ts = self.expect_task_mut(id);
        ts.state = TaskStatus::Waiting;
        ts.waiting_on.extend(waiting_on);
        ts.waiters = waiters;
        if ts.waiting_on.is_empty() {
            recs.push((id, TaskStatus::Processing));
        }
    }

    fn waiting_released(&mut self, id: TaskId, recs: &mut Recs) {
        for d in self.expect_task(id).dependencies.clone() {
            let dts = self.expect_task_mut(d);
            if dts.waiters.remove(&id) && dts.waiters.is_empty() && dts.who_wants.is_empty() {
                recs.push((d, TaskStatus::Released));
            }
        }
        let ts = self.expect_task_mut(id);
        ts.waiting_on.clear();
        ts.state = TaskStatus::Released;
        if ts.has_lost_dependencies {
            recs.push((id, TaskStatus::Forgotten));
        } else if ts.exception_blame.is_none() && ts.is_needed() {
            recs.push((id, TaskStatus::Waiting));
        } else {
            ts.waiters.clear();
        }
    }

    /// `_transition_waiting_processing`: the dispatch of a ready task. Without a worker for
    /// it, it recommends `queued` (root-ish with queuing on: every worker is saturated) or
    /// `no-worker` (no running worker may run it).
    fn waiting_processing(&mut self, id: TaskId, recs: &mut Recs, sid: &Arc<str>) {
        let rootish = self.is_rootish(id);
        let queue = rootish && self.queuing();
        let choice = if queue {
            self.decide_worker_rootish()
        } else if rootish {
            self.decide_worker_rootish_queuing_disabled(id)
        } else {
            self.decide_worker(id)
        };
        match choice {
            Some(w) => self.start_processing(id, w, sid),
            None if queue => recs.push((id, TaskStatus::Queued)),
            None => recs.push((id, TaskStatus::NoWorker)),
        }
    }

    /// `_transition_waiting_queued`: held back until a worker has a free slot.
    fn waiting_queued(&mut self, id: TaskId) {
        let ts = self.expect_task_mut(id);
        ts.state = TaskStatus::Queued;
        let priority = ts.priority;
        self.queued.insert((priority, id));
    }

    /// `_transition_waiting_no_worker`: retried when a worker arrives or resumes.
    fn waiting_no_worker(&mut self, id: TaskId) {
        self.expect_task_mut(id).state = TaskStatus::NoWorker;
        self.unrunnable.insert(id);
    }

    /// `_transition_queued_processing`: the root-ish placement only (a queued task was
    /// root-ish when it was queued). Without a worker with a free slot it stays queued.
    fn queued_processing(&mut self, id: TaskId, sid: &Arc<str>) {
        if let Some(w) = self.decide_worker_rootish() {
            self.dequeue(id);
            self.start_processing(id, w, sid);
        }
    }

    /// `_transition_no_worker_processing`: without a worker that may run it, it stays in
    /// `no-worker`.
    fn no_worker_processing(&mut self, id: TaskId, sid: &Arc<str>) {
        if let Some(w) = self.decide_worker(id) {
            self.unrunnable.remove(&id);
            self.start_processing(id, w, sid);
        }
    }

    /// Assigns the task to `w` with a new run id and sends it there.
    pub(crate) fn start_processing(&mut self, id: TaskId, w: WorkerId, sid: &Arc<str>) {
        let duration = self.expected_duration(id);
        let run_id = self.next_run_id;
        self.next_run_id += 1;
        let actor = self.expect_task(id).actor;
        if let Some(ws) = self.workers.get_mut(&w) {
            ws.processing.insert(id);
            ws.occupancy += duration;
            if actor {
                ws.actors.insert(id);
            }
        }
        self.refresh_worker(w);
        let ts = self.expect_task_mut(id);
        ts.state = TaskStatus::Processing;
        ts.processing_on = Some(w);
        ts.run_id = Some(run_id);
        let msg = self.compute_task_msg(id, run_id, sid);
        self.emit(Command::Worker(w, ToWorker::ComputeTask(Box::new(msg))));
    }

    /// `_task_to_msg` (`scheduler.py:3576-3600`).
    fn compute_task_msg(&self, id: TaskId, run_id: u64, sid: &Arc<str>) -> ComputeTask {
        let ts = self.expect_task(id);
        let mut who_has = Vec::with_capacity(ts.dependencies.len());
        let mut nbytes = Vec::with_capacity(ts.dependencies.len());
        for &d in &ts.dependencies {
            let dts = self.expect_task(d);
            who_has.push((dts.key.clone(), self.who_has_addrs(d)));
            nbytes.push((dts.key.clone(), dts.nbytes));
        }
        ComputeTask {
            key: ts.key.clone(),
            run_id,
            priority: ts.priority,
            who_has,
            nbytes,
            run_spec: ts.run_spec.clone().unwrap_or_default(),
            actor: ts.actor,
            resource_restrictions: (!ts.rare().resource_restrictions.is_empty())
                .then(|| ts.rare().resource_restrictions.clone()),
            annotations: ts.rare().annotations.clone(),
            stimulus_id: sid.clone(),
        }
    }

    /// Takes the task out of the queue (if it is there).
    pub(crate) fn dequeue(&mut self, id: TaskId) {
        let priority = self.expect_task(id).priority;
        self.queued.remove(&(priority, id));
    }

    /// `_exit_processing_common`: returns the worker if it is still connected.
    pub(crate) fn exit_processing(&mut self, id: TaskId) -> Option<WorkerId> {
        self.slots_maybe_opened = true;
        self.steals.remove(&id);
        let duration = self.expected_duration(id);
        let ts = self.expect_task_mut(id);
        let w = ts.processing_on.take()?;
        let long_running = std::mem::replace(&mut ts.long_running, false);
        let ws = self.workers.get_mut(&w)?;
        ws.processing.remove(&id);
        ws.actors.remove(&id);
        if long_running {
            ws.long_running = ws.long_running.saturating_sub(1);
        } else {
            ws.occupancy = (ws.occupancy - duration).max(0.0);
        }
        if ws.processing.is_empty() {
            ws.occupancy = 0.0;
        }
        self.refresh_worker(w);
        Some(w)
    }

    fn processing_released(&mut self, id: TaskId, recs: &mut Recs, sid: &Arc<str>) {
        if let Some(w) = self.exit_processing(id) {
            let key = self.expect_task(id).key.clone();
            self.free_keys(w, vec![key], sid);
        }
        self.propagate_released(id, recs);
    }

    fn queued_released(&mut self, id: TaskId, recs: &mut Recs) {
        self.dequeue(id);
        self.propagate_released(id, recs);
    }

    fn no_worker_released(&mut self, id: TaskId, recs: &mut Recs) {
        self.unrunnable.remove(&id);
        self.propagate_released(id, recs);
    }

    fn propagate_released(&mut self, id: TaskId, recs: &mut Recs) {
        let ts = self.expect_task_mut(id);
        ts.state = TaskStatus::Released;
        let rec = if ts.has_lost_dependencies {
            Some(TaskStatus::Forgotten)
        } else if ts.is_needed() {
            Some(TaskStatus::Waiting)
        } else {
            None
        };
        if let Some(r) = rec {
            recs.push((id, r));
        }
        if rec != Some(TaskStatus::Waiting) {
            for d in self.expect_task(id).dependencies.clone() {
                let dts = self.expect_task_mut(d);
                if dts.state != TaskStatus::Released {
                    dts.waiters.remove(&id);
                    if dts.waiters.is_empty() && dts.who_wants.is_empty() {
                        recs.push((d, TaskStatus::Released));
                    }
                }
            }
            self.expect_task_mut(id).waiters.clear();
        }
    }

    /// `_transition_processing_memory` + `_add_to_memory`: the worker's result.
    fn processing_memory(
        &mut self,
        id: TaskId,
        w: WorkerId,
        nbytes: i64,
        type_: Value,
        (compute_duration, transfer_duration): (Option<f64>, f64),
        recs: &mut Recs,
    ) {
        // before `exit_processing`, which takes the updated estimate off the worker's
        // occupancy, as Dask's `add_duration` comes first
        let micros = |d: f64| (d * 1e6).round().max(0.0) as u64;
        let pix = self.expect_task(id).prefix_ix;
        let p = self.prefixes.get_mut(pix);
        p.transfer_us += micros(transfer_duration);
        if let Some(d) = compute_duration.filter(|d| d.is_finite() && *d >= 0.0) {
            p.compute_us += micros(d);
            let prefix = self.expect_task(id).prefix.clone();
            let e = self.prefix_durations.entry(prefix).or_insert((0.0, 0));
            e.0 += d;
            e.1 += 1;
            let mean = e.0 / f64::from(e.1);
            if self.queuing() && self.is_rootish(id) {
                self.root_finished(mean, nbytes);
            }
        }
        self.exit_processing(id);
        self.set_nbytes(id, nbytes);
        self.add_replica(id, w);
        self.add_to_memory(id, type_, recs);
    }

    /// `(released|waiting|no-worker|queued|processing|erred) -> memory`: data put on
    /// `workers` (all connected) by scatter, whatever the task was doing (Dask's
    /// `update_data`). What it was doing stops; it no longer needs its dependencies.
    fn scattered_memory(
        &mut self,
        id: TaskId,
        workers: Vec<WorkerId>,
        nbytes: i64,
        recs: &mut Recs,
        sid: &Arc<str>,
    ) {
        match self.expect_task(id).state {
            TaskStatus::Processing => {
                // cancel the run, but not on a worker that just received the value
                if let Some(w) = self.exit_processing(id) {
                    if !workers.contains(&w) {
                        let key = self.expect_task(id).key.clone();
                        self.free_keys(w, vec![key], sid);
                    }
                }
            }
            TaskStatus::NoWorker => {
                self.unrunnable.remove(&id);
            }
            TaskStatus::Queued => self.dequeue(id),
            TaskStatus::Waiting => {
                for d in self.expect_task(id).dependencies.clone() {
                    self.expect_task_mut(d).waiters.remove(&id);
                }
                self.expect_task_mut(id).waiting_on.clear();
            }
            // (an erred task keeps its exception and blame, as in Dask)
            TaskStatus::Released
            | TaskStatus::Erred
            | TaskStatus::Memory
            | TaskStatus::Forgotten => {}
        }
        self.set_nbytes(id, nbytes);
        for w in workers {
            self.add_replica(id, w);
        }
        self.add_to_memory(id, Value::Nil, recs);
    }

    fn add_to_memory(&mut self, id: TaskId, type_: Value, recs: &mut Recs) {
        let mut dependents: Vec<TaskId> = self.expect_task(id).dependents.iter().copied().collect();
        // Highest priority (smallest tuple) pushed last, so it is dispatched first.
        dependents.sort_by_key(|d| std::cmp::Reverse(self.expect_task(*d).priority));
        for d in dependents {
            let dts = self.expect_task_mut(d);
            if dts.waiting_on.remove(&id) && dts.waiting_on.is_empty() {
                recs.push((d, TaskStatus::Processing));
            }
        }
        for d in self.expect_task(id).dependencies.clone() {
            let dts = self.expect_task_mut(d);
            dts.waiters.remove(&id);
            if dts.waiters.is_empty() && dts.who_wants.is_empty() {
                recs.push((d, TaskStatus::Released));
            }
        }
        let ts = self.expect_task_mut(id);
        ts.state = TaskStatus::Memory;
        ts.type_ = type_.clone();
        if !ts.is_needed() {
            recs.push((id, TaskStatus::Released));
        } else {
            let key = ts.key.clone();
            let clients: Vec<ClientId> = ts.who_wants.iter().copied().collect();
            for c in clients {
                self.emit(Command::Client(
                    c,
                    ToClient::KeyInMemory {
                        key: key.clone(),
                        type_: type_.clone(),
                    },
                ));
            }
        }
        if self.expect_task(id).who_wants.contains(&FIRE_AND_FORGET) {
            self.client_releases_keys(FIRE_AND_FORGET, &[id], recs);
        }
    }

    fn memory_released(&mut self, id: TaskId, recs: &mut Recs, sid: &Arc<str>) {
        let ts = self.expect_task_mut(id);
        if ts.actor && !ts.who_wants.is_empty() {
            // scheduler.py:2554-2562: an actor's state cannot be recreated; its futures err
            ts.exception_blame = Some(id);
            ts.rare_mut().exception = Exception::ActorLost;
            recs.push((id, TaskStatus::Erred));
            return;
        }
        let key = self.expect_task(id).key.clone();
        let holders: Vec<WorkerId> = self.expect_task(id).who_has.iter().copied().collect();
        for w in holders {
            self.free_keys(w, vec![key.clone()], sid);
            self.remove_replica(id, w);
        }
        let clients: Vec<ClientId> = self.expect_task(id).who_wants.iter().copied().collect();
        for c in clients {
            self.emit(Command::Client(c, ToClient::LostData { key: key.clone() }));
        }
        let ts = self.expect_task_mut(id);
        ts.state = TaskStatus::Released;
        if ts.run_spec.is_none() || ts.has_lost_dependencies {
            recs.push((id, TaskStatus::Forgotten));
        } else if ts.is_needed() {
            // (an erred input makes released -> waiting err it instead)
            recs.push((id, TaskStatus::Waiting));
        }
        for d in self.expect_task(id).waiters.clone() {
            let dts = self.expect_task_mut(d);
            match dts.state {
                TaskStatus::NoWorker | TaskStatus::Queued | TaskStatus::Processing => {
                    recs.push((d, TaskStatus::Waiting))
                }
                TaskStatus::Waiting => {
                    dts.waiting_on.insert(id);
                }
                _ => {}
            }
        }
    }

    /// `_transition_memory_erred` (scheduler.py:2952): the worker holding an actor was lost.
    fn memory_erred(&mut self, id: TaskId, recs: &mut Recs, sid: &Arc<str>) {
        let key = self.expect_task(id).key.clone();
        let holders: Vec<WorkerId> = self.expect_task(id).who_has.iter().copied().collect();
        for w in holders {
            self.free_keys(w, vec![key.clone()], sid);
            self.remove_replica(id, w);
        }
        for d in self.expect_task(id).dependents.clone() {
            let dts = self.expect_task_mut(d);
            if dts.who_has.is_empty() {
                dts.exception_blame = Some(id);
                recs.push((d, TaskStatus::Erred));
            }
        }
        let ts = self.expect_task_mut(id);
        ts.exception_blame = Some(id);
        ts.rare_mut().exception = Exception::ActorLost;
        ts.state = TaskStatus::Erred;
        self.report_erred(id, id);
    }

    fn released_erred(&mut self, id: TaskId, recs: &mut Recs, sid: &Arc<str>) {
        let Some(failing) = self.expect_task(id).exception_blame else {
            // nothing to report to its clients: it stays released
            let key = self.expect_task(id).key.clone();
            self.report_error(CoreError::ErredWithoutBlame {
                key,
                stimulus_id: sid.clone(),
            });
            return;
        };
        for d in self.expect_task(id).dependents.clone() {
            let dts = self.expect_task_mut(d);
            if dts.who_has.is_empty() {
                dts.exception_blame = Some(failing);
                recs.push((d, TaskStatus::Erred));
            }
        }
        self.report_erred(id, failing);
        self.expect_task_mut(id).state = TaskStatus::Erred;
    }

    fn erred_released(&mut self, id: TaskId, recs: &mut Recs, sid: &Arc<str>) {
        let ts = self.expect_task_mut(id);
        let erred_on = ts.clear_failure();
        ts.exception_blame = None;
        ts.state = TaskStatus::Released;
        let key = ts.key.clone();
        for d in self.expect_task(id).dependents.clone() {
            if self.expect_task(d).state == TaskStatus::Erred {
                recs.push((d, TaskStatus::Waiting));
            }
        }
        for w in erred_on {
            if self.workers.contains_key(&w) {
                self.free_keys(w, vec![key.clone()], sid);
            }
        }
        let clients: Vec<ClientId> = self.expect_task(id).who_wants.iter().copied().collect();
        for c in clients {
            self.emit(Command::Client(
                c,
                ToClient::TaskRetried { key: key.clone() },
            ));
        }
    }

    /// `_transition_processing_erred`: the worker's failure (`cause` = the task itself).
    fn processing_erred(
        &mut self,
        id: TaskId,
        worker: WorkerId,
        cause: TaskId,
        exception: Exception,
        traceback: Value,
        recs: &mut Recs,
    ) {
        self.exit_processing(id);
        self.propagate_erred(id, Some(worker), Some(cause), exception, traceback, recs);
    }

    /// `_transition_no_worker_erred`: it inherits the blame already set on it.
    fn no_worker_erred(&mut self, id: TaskId, recs: &mut Recs) {
        self.unrunnable.remove(&id);
        let nil = Exception::Pickled(Value::Nil);
        self.propagate_erred(id, None, None, nil, Value::Nil, recs);
    }

    /// `_propagate_erred`: this task failed (`cause` = itself) or inherits its blame.
    fn propagate_erred(
        &mut self,
        id: TaskId,
        worker: Option<WorkerId>,
        cause: Option<TaskId>,
        exception: Exception,
        traceback: Value,
        recs: &mut Recs,
    ) {
        let ts = self.expect_task_mut(id);
        ts.state = TaskStatus::Erred;
        if let Some(w) = worker {
            ts.rare_mut().erred_on.insert(w);
        }
        if !exception.is_nil() {
            ts.rare_mut().exception = exception;
        }
        if !traceback.is_nil() {
            ts.rare_mut().traceback = traceback;
        }
        if let Some(c) = cause {
            ts.exception_blame = Some(c);
        }
        let failing = ts.exception_blame.unwrap_or(id);
        let waiters: Vec<TaskId> = ts.waiters.drain().collect();
        for d in waiters {
            self.expect_task_mut(d).exception_blame = Some(failing);
            recs.push((d, TaskStatus::Erred));
        }
        for d in self.expect_task(id).dependencies.clone() {
            let dts = self.expect_task_mut(d);
            dts.waiters.remove(&id);
            if dts.waiters.is_empty() && dts.who_wants.is_empty() {
                recs.push((d, TaskStatus::Released));
            }
        }
        self.report_erred(id, failing);
        if self.expect_task(id).who_wants.contains(&FIRE_AND_FORGET) {
            self.client_releases_keys(FIRE_AND_FORGET, &[id], recs);
        }
    }

    fn report_erred(&mut self, id: TaskId, failing: TaskId) {
        let f = self.expect_task(failing);
        let (exception, traceback) = (f.rare().exception.clone(), f.rare().traceback.clone());
        let ts = self.expect_task(id);
        let key = ts.key.clone();
        let clients: Vec<ClientId> = ts.who_wants.iter().copied().collect();
        for c in clients {
            self.emit(Command::Client(
                c,
                ToClient::TaskErred {
                    key: key.clone(),
                    exception: exception.clone(),
                    traceback: traceback.clone(),
                },
            ));
        }
    }

    /// released/memory -> forgotten (`_propagate_forgotten` + `_remove_key`).
    fn forget(&mut self, id: TaskId, recs: &mut Recs, sid: &Arc<str>) {
        self.expect_task_mut(id).state = TaskStatus::Forgotten;
        for d in self.expect_task(id).dependents.clone() {
            let dts = self.expect_task_mut(d);
            dts.has_lost_dependencies = true;
            dts.dependencies.retain(|x| *x != id);
            dts.waiting_on.remove(&id);
            if !matches!(dts.state, TaskStatus::Memory | TaskStatus::Erred) {
                recs.push((d, TaskStatus::Forgotten));
            }
        }
        let ts = self.expect_task_mut(id);
        ts.dependents.clear();
        ts.waiters.clear();
        ts.waiting_on.clear();
        let deps = std::mem::take(&mut ts.dependencies);
        for d in deps {
            let dts = self.expect_task_mut(d);
            dts.dependents.remove(&id);
            dts.waiters.remove(&id);
            if dts.dependents.is_empty() && dts.who_wants.is_empty() {
                recs.push((d, TaskStatus::Forgotten));
            }
        }
        let key = self.expect_task(id).key.clone();
        for w in self.expect_task(id).who_has.clone() {
            if self.workers.contains_key(&w) {
                self.free_keys(w, vec![key.clone()], sid);
            }
            self.remove_replica(id, w);
        }
        let clients: Vec<ClientId> = self.expect_task(id).who_wants.iter().copied().collect();
        for c in clients {
            if let Some(cs) = self.clients.get_mut(&c) {
                cs.wants_what.remove(&id);
            }
            self.emit(Command::Client(
                c,
                ToClient::CancelledKeys {
                    keys: vec![key.clone()],
                    // `_task_to_report_msg` (scheduler.py:8959)
                    reason: Some("already forgotten".into()),
                    msg: None,
                },
            ));
        }
        self.remove_task(id);
    }

    // ---- replicas and small helpers ------------------------------------------------------

    pub(crate) fn add_replica(&mut self, id: TaskId, w: WorkerId) {
        let (nbytes, actor) = (self.expect_task(id).nbytes, self.expect_task(id).actor);
        if let Some(ws) = self.workers.get_mut(&w) {
            if ws.has_what.insert(id) {
                ws.nbytes += nbytes;
            }
            if actor {
                ws.actors.insert(id);
            }
            self.expect_task_mut(id).who_has.insert(w);
        }
    }

    pub(crate) fn remove_replica(&mut self, id: TaskId, w: WorkerId) {
        let nbytes = self.expect_task(id).nbytes;
        self.expect_task_mut(id).who_has.remove(&w);
        if let Some(ws) = self.workers.get_mut(&w) {
            if ws.has_what.remove(&id) {
                ws.nbytes -= nbytes;
            }
            ws.actors.remove(&id);
        }
    }

    pub(crate) fn free_keys(&mut self, w: WorkerId, keys: Vec<Key>, sid: &Arc<str>) {
        self.emit(Command::Worker(
            w,
            ToWorker::FreeKeys {
                keys,
                stimulus_id: sid.clone(),
            },
        ));
    }

    /// `_client_releases_keys`.
    pub(crate) fn client_releases_keys(
        &mut self,
        client: ClientId,
        ids: &[TaskId],
        recs: &mut Recs,
    ) {
        for &id in ids {
            let removed = self
                .clients
                .get_mut(&client)
                .is_some_and(|cs| cs.wants_what.remove(&id));
            if !removed {
                continue;
            }
            let ts = self.expect_task_mut(id);
            ts.who_wants.remove(&client);
            if ts.who_wants.is_empty() {
                if ts.dependents.is_empty() {
                    recs.push((id, TaskStatus::Forgotten));
                } else if ts.state != TaskStatus::Erred && ts.waiters.is_empty() {
                    recs.push((id, TaskStatus::Released));
                }
            }
        }
    }

    /// `report_on_key` for one client: the key's outcome, if it has one.
    pub(crate) fn report_on_key(&mut self, client: ClientId, key: &Key) {
        let Some(id) = self.task_id(key) else {
            self.emit(Command::Client(
                client,
                ToClient::CancelledKeys {
                    keys: vec![key.clone()],
                    reason: None,
                    msg: None,
                },
            ));
            return;
        };
        let ts = self.expect_task(id);
        match ts.state {
            TaskStatus::Memory => {
                let msg = ToClient::KeyInMemory {
                    key: key.clone(),
                    type_: ts.type_.clone(),
                };
                self.emit(Command::Client(client, msg));
            }
            TaskStatus::Erred => {
                let f = self.expect_task(ts.exception_blame.unwrap_or(id));
                let msg = ToClient::TaskErred {
                    key: key.clone(),
                    exception: f.rare().exception.clone(),
                    traceback: f.rare().traceback.clone(),
                };
                self.emit(Command::Client(client, msg));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    //! No stimulus reaches a missing edge (the handlers check a task's state first, and the
    //! randomized simulator in `tests/random.rs` looks for one), so these ask for one
    //! directly.
    use super::*;
    use crate::error::CoreError;
    use crate::state::{CoreConfig, Task};

    fn state(validate: bool) -> (SchedulerState, TaskId) {
        let mut s = SchedulerState::new(CoreConfig {
            validate,
            ..CoreConfig::default()
        });
        let id = s.insert_task(Task::new(Key::str("x"), "x".into(), Some("spec".into())));
        (s, id)
    }

    #[test]
    fn two_hops_via_released_are_logged_as_dask_logs_them() {
        let (mut s, id) = state(false);
        let sid: Arc<str> = "test".into();
        s.expect_task_mut(id).state = TaskStatus::Waiting;
        s.transitions(vec![(id, TaskStatus::Forgotten)], &sid);
        assert!(s.task_by_id(id).is_none());
        let log: Vec<_> = s
            .transition_log()
            .map(|t| (t.start, t.finish, t.recommendations.clone()))
            .collect();
        assert_eq!(
            log,
            vec![
                (TaskStatus::Waiting, TaskStatus::Released, vec![]),
                (TaskStatus::Released, TaskStatus::Forgotten, vec![]),
            ]
        );
    }

    #[test]
    fn a_missing_edge_is_reported_and_not_made() {
        let (mut s, id) = state(false);
        let sid: Arc<str> = "test".into();
        s.transitions(vec![(id, TaskStatus::Processing)], &sid);
        assert_eq!(
            std::mem::take(&mut s.out),
            vec![Command::Error(CoreError::ImpossibleTransition {
                key: Key::str("x"),
                start: TaskStatus::Released,
                finish: TaskStatus::Processing,
                stimulus_id: sid,
            })]
        );
        assert_eq!(s.expect_task(id).state, TaskStatus::Released);
        s.validate();
    }

    #[test]
    fn erring_without_blame_is_reported_and_not_made() {
        let (mut s, id) = state(false);
        let sid: Arc<str> = "test".into();
        s.transitions(vec![(id, TaskStatus::Erred)], &sid);
        assert_eq!(
            std::mem::take(&mut s.out),
            vec![Command::Error(CoreError::ErredWithoutBlame {
                key: Key::str("x"),
                stimulus_id: sid,
            })]
        );
        assert_eq!(s.expect_task(id).state, TaskStatus::Released);
        s.validate();
    }

    #[test]
    fn memory_needs_a_report_and_a_report_its_edge() {
        let (mut s, id) = state(false);
        let sid: Arc<str> = "test".into();
        let impossible = |start, finish| {
            Command::Error(CoreError::ImpossibleTransition {
                key: Key::str("x"),
                start,
                finish,
                stimulus_id: sid.clone(),
            })
        };
        let mut recs = Recs::new();
        s.transition(id, TaskStatus::Memory, None, &mut recs, &sid);
        // a worker's result for a task that is not processing (the handler checks first)
        let finished = Report::Finished {
            worker: WorkerId(1),
            nbytes: 8,
            type_: Value::Nil,
            compute_duration: None,
            transfer_duration: 0.0,
        };
        s.transition(id, TaskStatus::Memory, Some(finished), &mut recs, &sid);
        assert_eq!(
            std::mem::take(&mut s.out),
            vec![
                impossible(TaskStatus::Released, TaskStatus::Memory),
                impossible(TaskStatus::Released, TaskStatus::Memory),
            ]
        );
        assert_eq!(s.expect_task(id).state, TaskStatus::Released);

        // a report cannot go the way via released (erred -> released -> waiting)
        s.expect_task_mut(id).exception_blame = Some(id);
        s.transitions(vec![(id, TaskStatus::Erred)], &sid);
        assert_eq!(s.expect_task(id).state, TaskStatus::Erred);
        let erred = Report::Erred {
            worker: WorkerId(1),
            cause: id,
            exception: Exception::Pickled(Value::Nil),
            traceback: Value::Nil,
        };
        s.transition(id, TaskStatus::Waiting, Some(erred), &mut recs, &sid);
        assert_eq!(
            std::mem::take(&mut s.out),
            vec![impossible(TaskStatus::Erred, TaskStatus::Waiting)]
        );
        assert_eq!(s.expect_task(id).state, TaskStatus::Erred);
        assert!(recs.pop().is_none());
        s.validate();
    }

    #[test]
    #[should_panic(expected = "Impossible transition from released to processing for 'x'")]
    fn a_missing_edge_panics_under_validate() {
        let (mut s, id) = state(true);
        s.transitions(vec![(id, TaskStatus::Processing)], &"test".into());
    }
}
