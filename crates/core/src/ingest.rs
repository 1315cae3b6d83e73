//! A big graph taken in over several turns.
//!
//! `update_graph` of a million tasks is seconds of work, and nothing else happens on the
//! state task meanwhile: another client's one-task `submit` waited for all of it. A graph of
//! more than `ingest_batch` tasks is therefore taken in by [`SchedulerState::ingest_step`],
//! about `ingest_batch` tasks per turn, in `update_graph`'s own steps: insert the new tasks,
//! link them to their dependencies, record the wanted keys, sort out the erred and the
//! runnable, move the runnable to `waiting` in priority order, then dispatch (or queue) the
//! ready ones in the order they became ready, which is the order one turn would have used.
//!
//! Between turns other stimuli run, so half-made tasks must not meet them. Until it is
//! sorted out, a new task may be unlinked and wanted by nobody (`Task::ingesting`):
//! - a client stimulus that names one (a graph that has it as a key or a dependency, a
//!   release, a cancel, a scatter of its key, a leaving client that wants it) waits until
//!   the graph is in ([`SchedulerState::must_wait`]), as does every client stimulus after
//!   it, to keep their order; so do a restart (`ClearTasks`), any other big graph and
//!   whatever the graph's own client says next (the server holds that back anyway);
//!   everything else goes on, and other clients' small graphs are the point;
//! - workers' stimuli concern tasks on workers, which no half-made task is;
//! - the graph's tasks are remembered by id across turns, so a forgotten task's slot is not
//!   reused until the graph is in, and every step skips a task that is gone (a dependency
//!   that is gone when its dependent is linked is a lost dependency, as in Dask);
//! - the ready tasks are dispatched only once every task of the graph is `waiting`: a root
//!   that finished before its dependents were waiting would be released and run again.
//!
//! The graph's client's own messages wait in the server until the graph is in
//! ([`SchedulerState::take_graphs_taken`]).

use crate::command::Command;
use crate::state::{Ingest, SchedulerState, Stage, Task};
use crate::stimulus::{NewTask, Stimulus};
use crate::transitions::Recs;
use crate::types::{ClientId, TaskId, TaskStatus};
use rask_protocol::Key;
use rustc_hash::FxHashSet;
use std::sync::Arc;

impl SchedulerState {
    /// Sets how many tasks of a big graph are taken in per turn (tests take small graphs
    /// in several turns with a small number).
    pub fn set_ingest_batch(&mut self, tasks: usize) {
        self.ingest_batch = tasks.max(1);
    }

    /// Whether a big graph is being taken in: the server calls [`Self::ingest_step`] when
    /// nothing else is waiting.
    pub fn ingesting(&self) -> bool {
        self.ingest.is_some()
    }

    /// The clients whose graphs are in since the last call: their held messages may go on.
    pub fn take_graphs_taken(&mut self) -> Vec<ClientId> {
        std::mem::take(&mut self.graphs_taken)
    }

    /// One turn's share of the big graph being taken in; when it is in, the stimuli that
    /// waited for it run.
    pub fn ingest_step(&mut self, now: f64) -> Vec<Command> {
        self.now = now;
        if let Some(mut ingest) = self.ingest.take() {
            if self.ingest_work(&mut ingest, self.ingest_batch) {
                self.keep_task_slots = false;
                while let Some(s) = self.deferred.pop_front() {
                    if self.must_wait_now(&s) {
                        self.deferred.push_front(s);
                        break;
                    }
                    self.apply(s);
                }
            } else {
                self.ingest = Some(ingest);
            }
        }
        self.end_of_turn()
    }

    /// Starts taking in a big graph (the lost-dependency check and the priority generation
    /// are done), with its first turn's share.
    pub(crate) fn start_ingest(
        &mut self,
        client: ClientId,
        tasks: Vec<NewTask>,
        keys: Vec<Key>,
        actors: Vec<Key>,
        sid: Arc<str>,
    ) {
        // Room in the key index for the whole graph now, while it is small: grown by
        // doubling, a share would rehash what the graph has already filled (with the task
        // table's copies, which chunks now avoid (`table.rs`), such shares took 0.1-0.4 s
        // on the 1M graph, against 35 ms for the others).
        self.task_index.reserve(tasks.len());
        let mut ingest = Box::new(Ingest {
            client,
            keys,
            actors,
            sid,
            stage: Stage::Insert,
            touched: Vec::with_capacity(tasks.len()),
            fresh: Vec::with_capacity(tasks.len()),
            new: tasks.into_iter(),
            erred: Vec::new(),
            runnable: Vec::new(),
            runnable_last: Some([i64::MIN; 3]),
            ready: Vec::new(),
            pos: 0,
        });
        self.keep_task_slots = true;
        if self.ingest_work(&mut ingest, self.ingest_batch) {
            self.keep_task_slots = false;
        } else {
            self.ingest = Some(ingest);
        }
    }

    /// Whether `s` must wait for the graph being taken in (see the module's comment).
    pub(crate) fn must_wait(&self, s: &Stimulus) -> bool {
        // a scatter is an RPC of its own: no message of a stream comes before it
        let in_order = is_clients(s) && !matches!(s, Stimulus::UpdateData { .. });
        self.ingest.is_some() && ((in_order && !self.deferred.is_empty()) || self.must_wait_now(s))
    }

    /// [`Self::must_wait`] without the rule that keeps the client stimuli in order.
    fn must_wait_now(&self, s: &Stimulus) -> bool {
        let Some(ingest) = &self.ingest else {
            return false;
        };
        // the graph's own client goes on once it is in (the server holds its messages too)
        if client_of(s) == Some(ingest.client) {
            return true;
        }
        let half_made = |k: &Key| {
            self.task_id(k)
                .is_some_and(|id| self.expect_task(id).ingesting)
        };
        match s {
            Stimulus::ClearTasks => true,
            Stimulus::UpdateGraph { tasks, .. } => {
                tasks.len() > self.ingest_batch
                    || tasks
                        .iter()
                        .any(|t| half_made(&t.key) || t.deps.iter().any(half_made))
            }
            Stimulus::ClientDesiresKeys { keys, .. }
            | Stimulus::ClientReleasesKeys { keys, .. }
            | Stimulus::CancelKeys { keys, .. }
            | Stimulus::Retry { keys, .. }
            | Stimulus::Release { keys, .. } => keys.iter().any(half_made),
            Stimulus::ReportKey { key, .. } | Stimulus::SetRestrictions { key, .. } => {
                half_made(key)
            }
            Stimulus::UpdateData { data, .. } => data.iter().any(|(k, _, _)| half_made(k)),
            Stimulus::RemoveClient { client } => self.clients.get(client).is_some_and(|cs| {
                cs.wants_what
                    .iter()
                    .any(|id| self.expect_task(*id).ingesting)
            }),
            _ => false,
        }
    }

    /// Works on `ingest` for up to `budget` (tasks, and the dependencies the steps walk);
    /// whether it is in.
    fn ingest_work(&mut self, ingest: &mut Ingest, mut budget: usize) -> bool {
        let mut seen = FxHashSet::default();
        while budget > 0 {
            let pos = ingest.pos;
            match ingest.stage {
                Stage::Insert => {
                    for nt in ingest.new.by_ref().take(budget) {
                        budget -= 1;
                        self.take_task(nt, &mut ingest.touched, &mut ingest.fresh);
                    }
                    if ingest.new.len() == 0 {
                        ingest.stage = Stage::Link;
                    }
                }
                Stage::Link => {
                    let mut end = pos;
                    while end < ingest.fresh.len() && budget > 0 {
                        let (id, deps) = &mut ingest.fresh[end];
                        budget = budget.saturating_sub(1 + deps.len());
                        self.link(*id, std::mem::take(deps), &mut seen);
                        end += 1;
                    }
                    ingest.pos = end;
                    if end == ingest.fresh.len() {
                        ingest.fresh = Vec::new();
                        ingest.stage = Stage::Want;
                    }
                }
                Stage::Want => {
                    // The wanted keys already done are reported now rather than at the
                    // end (as in one turn), so that no client wants a key in memory without
                    // having heard of it between turns.
                    self.want(ingest.client, &ingest.keys, &ingest.actors);
                    self.report_wanted(ingest.client, &ingest.keys);
                    budget = budget.saturating_sub(ingest.keys.len() + ingest.actors.len());
                    ingest.pos = 0;
                    ingest.stage = Stage::SortOut;
                }
                Stage::SortOut => {
                    let end = self.share(&ingest.touched, pos, &mut budget);
                    let before = ingest.runnable.len();
                    for &id in &ingest.touched[pos..end] {
                        self.sort_out(id, &mut ingest.erred, &mut ingest.runnable);
                    }
                    for &id in &ingest.runnable[before..] {
                        let p = self.expect_task(id).priority;
                        ingest.runnable_last = match ingest.runnable_last {
                            Some(last) if last <= p => Some(p),
                            _ => None,
                        };
                    }
                    ingest.pos = end;
                    if end == ingest.touched.len() {
                        // A graph comes in priority order (the server sorts it), so its
                        // runnable tasks usually are too: sorting them again would take a
                        // turn of its own on a big graph (0.1-0.2 s for 1M tasks).
                        if ingest.runnable_last.is_none() {
                            // by priority; a task forgotten meanwhile is left out
                            let mut by_priority: Vec<([i64; 3], TaskId)> = ingest
                                .runnable
                                .iter()
                                .filter_map(|&id| self.task_by_id(id).map(|t| (t.priority, id)))
                                .collect();
                            by_priority.sort_unstable();
                            budget = budget.saturating_sub(by_priority.len() / 8);
                            ingest.runnable = by_priority.into_iter().map(|(_, id)| id).collect();
                        }
                        ingest.touched = Vec::new();
                        ingest.stage = Stage::Erred;
                    }
                }
                Stage::Erred => {
                    // as in one turn, the erred go first
                    let recs: Recs = ingest
                        .erred
                        .iter()
                        .map(|&id| (id, TaskStatus::Erred))
                        .collect();
                    budget = budget.saturating_sub(ingest.erred.len());
                    self.transitions(recs, &ingest.sid);
                    ingest.pos = 0;
                    ingest.stage = Stage::Wait;
                }
                Stage::Wait => {
                    let end = self.share(&ingest.runnable, pos, &mut budget);
                    // A task sorted out as runnable that is no longer released had its
                    // recommendation replaced in the one-turn version (an erred or a waiting
                    // dependent made it erred or waiting): nothing left to do for it.
                    let recs = self.recs(&ingest.runnable[pos..end], TaskStatus::Waiting, |t| {
                        t.state == TaskStatus::Released
                    });
                    self.ready_later = Some(std::mem::take(&mut ingest.ready));
                    self.transitions(recs, &ingest.sid);
                    ingest.ready = self.ready_later.take().unwrap_or_default();
                    ingest.pos = end;
                    if end == ingest.runnable.len() {
                        ingest.runnable = Vec::new();
                        ingest.pos = 0;
                        ingest.stage = Stage::Run;
                    }
                }
                Stage::Run => {
                    let end = self.share(&ingest.ready, pos, &mut budget);
                    // still waiting on nothing: a dependency lost meanwhile makes it wait
                    let recs = self.recs(&ingest.ready[pos..end], TaskStatus::Processing, |t| {
                        t.state == TaskStatus::Waiting && t.waiting_on.is_empty()
                    });
                    self.transitions(recs, &ingest.sid);
                    ingest.pos = end;
                    if end == ingest.ready.len() {
                        self.graphs_taken.push(ingest.client);
                        return true;
                    }
                }
            }
        }
        false
    }

    /// `finish` for each of `ids` still there and `due`, the first handled first (pushed
    /// last).
    fn recs(&self, ids: &[TaskId], finish: TaskStatus, due: impl Fn(&Task) -> bool) -> Recs {
        ids.iter()
            .rev()
            .filter(|&&id| self.task_by_id(id).is_some_and(&due))
            .map(|&id| (id, finish))
            .collect()
    }

    /// Where this turn's share of `ids` from `pos` ends: a task costs one plus its
    /// dependencies and dependents (the steps walk them; a reducer of 1,000 inputs weighs
    /// as much as 1,000 tasks), taken from `budget`; at least one task.
    fn share(&self, ids: &[TaskId], pos: usize, budget: &mut usize) -> usize {
        let mut end = pos;
        while end < ids.len() && *budget > 0 {
            let cost = self
                .task_by_id(ids[end])
                .map_or(1, |t| 1 + t.dependencies.len() + t.dependents.len());
            *budget = budget.saturating_sub(cost);
            end += 1;
        }
        end
    }
}

/// The client whose stream a stimulus comes from.
fn client_of(s: &Stimulus) -> Option<ClientId> {
    match s {
        Stimulus::RemoveClient { client }
        | Stimulus::UpdateGraph { client, .. }
        | Stimulus::ClientDesiresKeys { client, .. }
        | Stimulus::ClientReleasesKeys { client, .. }
        | Stimulus::CancelKeys { client, .. }
        | Stimulus::ReportKey { client, .. }
        | Stimulus::GraphFailed { client, .. } => Some(*client),
        // a scatter is an RPC of its own, not behind the client's graph
        _ => None,
    }
}

/// A client's stimulus, or one made for clients (P2P's restarts, `Client.restart`).
fn is_clients(s: &Stimulus) -> bool {
    matches!(
        s,
        Stimulus::RemoveClient { .. }
            | Stimulus::UpdateGraph { .. }
            | Stimulus::ClientDesiresKeys { .. }
            | Stimulus::ClientReleasesKeys { .. }
            | Stimulus::CancelKeys { .. }
            | Stimulus::Retry { .. }
            | Stimulus::ReportKey { .. }
            | Stimulus::UpdateData { .. }
            | Stimulus::SetRestrictions { .. }
            | Stimulus::Release { .. }
            | Stimulus::ClearTasks
            | Stimulus::GraphFailed { .. }
    )
}
