//! [`SchedulerState::handle`]: one function per stimulus, each mirroring the Dask handler
//! named in its comment.

use crate::command::{Command, ToClient, ToWorker};
use crate::state::{Client, SchedulerState, Task, Worker};
use crate::stimulus::{NewTask, Stimulus, WorkerSpec};
use crate::transitions::{Recs, Report, FIRE_AND_FORGET};
use crate::types::{ClientId, Exception, TaskId, TaskStatus, WorkerId, WorkerStatus};
use rask_protocol::{Key, Value};
use rustc_hash::FxHashSet;
use std::sync::Arc;

impl SchedulerState {
    /// Applies one stimulus at time `now` (seconds since the epoch) and returns what to send.
    /// While a big graph is being taken in ([`Self::ingest_step`]), a client's stimulus that
    /// could meet its half-made tasks waits until it is in (see `ingest.rs`).
    pub fn handle(&mut self, now: f64, stimulus: Stimulus) -> Vec<Command> {
        self.now = now;
        if self.must_wait(&stimulus) {
            self.deferred.push_back(stimulus);
        } else {
            self.apply(stimulus);
        }
        self.end_of_turn()
    }

    /// What every turn ends with: queued tasks for slots that opened, the invariants (in
    /// tests), and the commands to send.
    pub(crate) fn end_of_turn(&mut self) -> Vec<Command> {
        self.queue_slots_maybe_opened();
        if self.config.validate {
            self.validate();
        }
        std::mem::take(&mut self.out)
    }

    /// One stimulus, now.
    pub(crate) fn apply(&mut self, stimulus: Stimulus) {
        match stimulus {
            Stimulus::AddWorker { id, spec } => self.add_worker(id, spec),
            Stimulus::RemoveWorker {
                worker,
                expected,
                stimulus_id,
            } => self.remove_worker(worker, expected, &stimulus_id),
            Stimulus::WorkerStatusChange { worker, status } => {
                self.worker_status_change(worker, status)
            }
            Stimulus::AddClient { id, name } => {
                self.clients.insert(
                    id,
                    Client {
                        name,
                        wants_what: FxHashSet::default(),
                    },
                );
            }
            Stimulus::RemoveClient { client } => self.remove_client(client),
            Stimulus::UpdateGraph {
                client,
                tasks,
                keys,
                fifo_timeout,
                actors,
                outside,
                stimulus_id,
            } => {
                let (tasks, outside) = match outside {
                    Some(outside) => (tasks, outside),
                    None => reachable(tasks, &keys),
                };
                self.update_graph(
                    client,
                    tasks,
                    outside,
                    keys,
                    fifo_timeout,
                    actors,
                    stimulus_id,
                )
            }
            Stimulus::ClientDesiresKeys { client, keys } => self.client_desires_keys(client, &keys),
            Stimulus::ClientReleasesKeys {
                client,
                keys,
                stimulus_id,
            } => {
                let ids: Vec<TaskId> = keys.iter().filter_map(|k| self.task_id(k)).collect();
                let mut recs = Recs::new();
                self.client_releases_keys(client, &ids, &mut recs);
                self.transitions(recs, &stimulus_id);
            }
            Stimulus::CancelKeys {
                client,
                keys,
                force,
                reason,
                msg,
            } => self.cancel_keys(client, &keys, force, reason, msg),
            Stimulus::Retry { keys, stimulus_id } => self.retry(&keys, &stimulus_id),
            Stimulus::ReportKey { client, key } => self.report_on_key(client, &key),
            Stimulus::TaskFinished {
                worker,
                key,
                run_id,
                nbytes,
                type_,
                compute_duration,
                transfer_duration,
                stimulus_id,
            } => self.task_finished(
                worker,
                key,
                run_id,
                nbytes,
                type_,
                (compute_duration, transfer_duration),
                &stimulus_id,
            ),
            Stimulus::TaskErred {
                worker,
                key,
                run_id,
                exception,
                traceback,
                stimulus_id,
            } => self.task_erred(worker, key, run_id, exception, traceback, &stimulus_id),
            Stimulus::ReleaseWorkerData {
                worker,
                key,
                stimulus_id,
            } => {
                // `release_worker_data` (scheduler.py:6033)
                if let Some(id) = self.task_id(&key) {
                    if self.expect_task(id).who_has.contains(&worker) {
                        self.remove_replica(id, worker);
                        if self.expect_task(id).who_has.is_empty() {
                            self.transitions(vec![(id, TaskStatus::Released)], &stimulus_id);
                        }
                    }
                }
            }
            Stimulus::AddKeys {
                worker,
                keys,
                stimulus_id,
            } => self.add_keys(worker, keys, &stimulus_id),
            Stimulus::Reschedule {
                worker,
                key,
                stimulus_id,
            } => {
                // `reschedule` (scheduler.py:8240): only the worker running it may give it back
                if let Some(id) = self.task_id(&key) {
                    let ts = self.expect_task(id);
                    if ts.state == TaskStatus::Processing && ts.processing_on == Some(worker) {
                        self.transitions(vec![(id, TaskStatus::Released)], &stimulus_id);
                    }
                }
            }
            Stimulus::LongRunning { worker, key } => {
                // `handle_long_running`: the task no longer occupies a thread slot, so a
                // queued task may take it (`_task_slots_available`, scheduler.py:9216)
                if let Some(id) = self.task_id(&key) {
                    if self.expect_task(id).processing_on == Some(worker)
                        && !self.expect_task(id).long_running
                    {
                        let d = self.expected_duration(id);
                        self.expect_task_mut(id).long_running = true;
                        if let Some(ws) = self.workers.get_mut(&worker) {
                            ws.occupancy = (ws.occupancy - d).max(0.0);
                            ws.long_running += 1;
                        }
                        self.refresh_worker(worker);
                        self.slots_maybe_opened = true;
                    }
                }
            }
            Stimulus::RequestRefreshWhoHas {
                worker,
                keys,
                stimulus_id,
            } => self.request_refresh_who_has(worker, keys, &stimulus_id),
            Stimulus::UpdateData {
                client,
                data,
                stimulus_id,
            } => self.update_data(client, data, &stimulus_id),
            Stimulus::SetRestrictions { key, workers } => {
                // `set_restrictions` (scheduler.py): takes effect at the next dispatch
                if let Some(id) = self.task_id(&key) {
                    let ts = self.expect_task_mut(id);
                    ts.rare_mut().worker_restrictions =
                        workers.unwrap_or_default().into_iter().collect();
                    ts.loose_restrictions = false;
                }
            }
            Stimulus::SetResources { worker, resources } => {
                // `add_resources` (scheduler.py:8270): `ws.resources.update(resources)`;
                // resources only decide which workers a task may go to, at its next
                // dispatch, as in Dask
                if let Some(ws) = self.workers.get_mut(&worker) {
                    for (name, amount) in resources {
                        match ws.resources.iter_mut().find(|(n, _)| *n == name) {
                            Some(slot) => slot.1 = amount,
                            None => ws.resources.push((name, amount)),
                        }
                    }
                }
            }
            Stimulus::Release { keys, stimulus_id } => {
                let recs: Recs = keys
                    .iter()
                    .filter_map(|k| self.task_id(k))
                    .map(|id| (id, TaskStatus::Released))
                    .collect();
                self.transitions(recs, &stimulus_id);
            }
            Stimulus::ClearTasks => self.clear_tasks(),
            Stimulus::Balance => self.balance(),
            Stimulus::StealResponse {
                worker,
                key,
                state,
                stimulus_id,
            } => self.steal_response(worker, &key, state.as_deref(), &stimulus_id),
            Stimulus::GraphFailed {
                client,
                keys,
                exception,
                traceback,
            } => {
                // scheduler.py:5118-5138: every requested key errs for this client
                for key in keys {
                    self.emit(Command::Client(
                        client,
                        ToClient::TaskErred {
                            key,
                            exception: Exception::Pickled(exception.clone()),
                            traceback: traceback.clone(),
                        },
                    ));
                }
            }
        }
    }

    /// `add_worker` (scheduler.py:4663). A worker registering with status `init` takes tasks
    /// once it reports `running`.
    fn add_worker(&mut self, id: WorkerId, spec: WorkerSpec) {
        let host: Arc<str> = host_of(&spec.address).into();
        self.worker_by_addr.insert(spec.address.clone(), id);
        self.workers.insert(
            id,
            Worker {
                address: spec.address,
                host,
                name: spec.name,
                nthreads: spec.nthreads,
                memory_limit: spec.memory_limit,
                resources: spec.resources,
                status: spec.status,
                processing: FxHashSet::default(),
                long_running: 0,
                has_what: FxHashSet::default(),
                occupancy: 0.0,
                nbytes: 0,
                actors: FxHashSet::default(),
            },
        );
        self.total_nthreads += u64::from(spec.nthreads);
        self.refresh_worker(id);
        if spec.status == WorkerStatus::Running {
            self.slots_maybe_opened = true;
            self.schedule_unrunnable("add-worker");
        }
    }

    fn schedule_unrunnable(&mut self, sid: &str) {
        let mut ids: Vec<TaskId> = self.unrunnable.iter().copied().collect();
        ids.sort_by_key(|id| std::cmp::Reverse(self.expect_task(*id).priority));
        let recs: Recs = ids
            .into_iter()
            .map(|id| (id, TaskStatus::Processing))
            .collect();
        self.transitions(recs, &Arc::from(sid));
    }

    fn worker_status_change(&mut self, worker: WorkerId, status: WorkerStatus) {
        let Some(ws) = self.workers.get_mut(&worker) else {
            return;
        };
        let running = status == WorkerStatus::Running;
        let was = ws.status;
        ws.status = status;
        self.refresh_worker(worker);
        if running && was != WorkerStatus::Running {
            self.slots_maybe_opened = true;
            self.schedule_unrunnable("worker-status-change");
        }
    }

    /// `remove_worker` (scheduler.py:5568-5756).
    fn remove_worker(&mut self, worker: WorkerId, expected: bool, sid: &Arc<str>) {
        let Some(ws) = self.workers.remove(&worker) else {
            return;
        };
        self.total_nthreads = self.total_nthreads.saturating_sub(u64::from(ws.nthreads));
        self.refresh_worker(worker);
        self.worker_by_addr.remove(&ws.address);
        let mut recs = Recs::new();
        let mut processing: Vec<TaskId> = ws.processing.iter().copied().collect();
        processing.sort();
        let allowed_failures = self.config.allowed_failures;
        for id in processing {
            if !expected {
                let pix = self.expect_task(id).prefix_ix;
                self.prefixes.get_mut(pix).suspicious += 1;
                let ts = self.expect_task_mut(id);
                ts.suspicious += 1;
                if ts.suspicious > allowed_failures {
                    // `KilledWorker` (scheduler.py:5634-5663); the server pickles it as the
                    // stock scheduler does
                    let exception = Exception::KilledWorker {
                        key: ts.key.clone(),
                        last_worker: ws.address.clone(),
                        allowed_failures,
                    };
                    let report = Report::Erred {
                        worker,
                        cause: id,
                        exception,
                        traceback: Value::Nil,
                    };
                    self.transition(id, TaskStatus::Erred, Some(report), &mut recs, sid);
                    continue;
                }
            }
            recs.push((id, TaskStatus::Released));
        }
        let mut held: Vec<TaskId> = ws.has_what.iter().copied().collect();
        held.sort();
        for id in held {
            self.expect_task_mut(id).who_has.remove(&worker);
            if self.expect_task(id).actor {
                // scheduler.py:5670: an actor's state is gone with its worker
                recs.push((id, TaskStatus::Erred));
            } else if self.expect_task(id).who_has.is_empty() {
                let finish = if self.expect_task(id).run_spec.is_some() {
                    TaskStatus::Released
                } else {
                    TaskStatus::Forgotten
                };
                recs.push((id, finish));
            }
        }
        let others: Vec<WorkerId> = self.workers.keys().copied().collect();
        for w in others {
            self.emit(Command::Worker(
                w,
                ToWorker::RemoveWorker {
                    worker: ws.address.clone(),
                    stimulus_id: sid.clone(),
                },
            ));
        }
        // Released tasks whose worker is gone: `exit_processing` finds no worker, so
        // processing->released sends nothing to it.
        self.transitions(recs, sid);
    }

    /// `_clear_task_state`: forget every task; workers and clients stay.
    fn clear_tasks(&mut self) {
        self.tasks.clear();
        self.free_task_slots.clear();
        self.task_index.clear();
        self.unrunnable.clear();
        self.queued.clear();
        self.groups.clear();
        self.prefixes.clear();
        self.steals.clear();
        for ws in self.workers.values_mut() {
            ws.processing.clear();
            ws.long_running = 0;
            ws.has_what.clear();
            ws.nbytes = 0;
            ws.occupancy = 0.0;
        }
        let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
        for w in ids {
            self.refresh_worker(w);
        }
        for cs in self.clients.values_mut() {
            cs.wants_what.clear();
        }
    }

    fn remove_client(&mut self, client: ClientId) {
        let Some(cs) = self.clients.get(&client) else {
            return;
        };
        let ids: Vec<TaskId> = cs.wants_what.iter().copied().collect();
        let mut recs = Recs::new();
        self.client_releases_keys(client, &ids, &mut recs);
        self.clients.remove(&client);
        self.transitions(recs, &Arc::from("remove-client"));
    }

    /// `update_graph` after materialization (scheduler.py:4817-5143). A graph of more than
    /// `ingest_batch` tasks is taken in over several turns instead (`ingest.rs`), in the
    /// same steps as here.
    #[allow(clippy::too_many_arguments)] // the fields of `Stimulus::UpdateGraph`
    fn update_graph(
        &mut self,
        client: ClientId,
        tasks: Vec<NewTask>,
        outside: Vec<Key>,
        keys: Vec<Key>,
        fifo_timeout: f64,
        actors: Vec<Key>,
        sid: Arc<str>,
    ) {
        // Lost dependencies: a dependency neither in this graph nor known to the scheduler
        // (a future released meanwhile) (scheduler.py:4817-4846, 5061-5079).
        // Only what the requested keys reach becomes state (`_generate_taskstates` walks
        // from `keys`; the helper returns every node of the materialized graph): `tasks`
        // are those, `outside` the keys they depend on outside the graph.
        if outside.iter().any(|d| !self.task_index.contains_key(d)) {
            // scheduler.py:5061-5079: report, then release the keys for this client
            let ids: Vec<TaskId> = keys.iter().filter_map(|k| self.task_id(k)).collect();
            self.emit(Command::Client(
                client,
                ToClient::CancelledKeys {
                    keys,
                    reason: Some("lost dependencies".into()),
                    msg: None,
                },
            ));
            let mut recs = Recs::new();
            self.client_releases_keys(client, &ids, &mut recs);
            self.transitions(recs, &sid);
            self.graphs_taken.push(client);
            return;
        }
        // Priority generation (`_set_priorities`, scheduler.py:5312-5359).
        if self.now > self.last_generation_time + fifo_timeout {
            self.generation += 1;
            self.last_generation_time = self.now;
        }
        if tasks.len() > self.ingest_batch {
            self.start_ingest(client, tasks, keys, actors, sid);
            return;
        }
        let mut touched: Vec<TaskId> = Vec::with_capacity(tasks.len());
        let mut fresh: Vec<(TaskId, Vec<Key>)> = Vec::new();
        for nt in tasks {
            self.take_task(nt, &mut touched, &mut fresh);
        }
        let mut seen: FxHashSet<TaskId> = FxHashSet::default();
        for (id, deps) in fresh {
            self.link(id, deps, &mut seen);
        }
        self.want(client, &keys, &actors);
        let mut recs = Recs::new();
        let (mut erred, mut runnable) = (Vec::new(), Vec::new());
        for &id in &touched {
            self.sort_out(id, &mut erred, &mut runnable);
        }
        // released -> waiting in priority order: the smallest priority is pushed last and so
        // handled first; as in Dask, the erred recommendations come after (handled first).
        runnable.sort_by_key(|id| std::cmp::Reverse(self.expect_task(*id).priority));
        recs.extend(runnable.into_iter().map(|id| (id, TaskStatus::Waiting)));
        recs.extend(erred.into_iter().map(|id| (id, TaskStatus::Erred)));
        self.transitions(recs, &sid);
        self.report_wanted(client, &keys);
        self.graphs_taken.push(client);
    }

    /// One task of a new graph: a known key is only touched (stock: "Detected different
    /// `run_spec`" is only a warning, the task keeps its run_spec and state); a new one
    /// becomes a released task, its dependencies to be linked by [`Self::link`].
    pub(crate) fn take_task(
        &mut self,
        nt: NewTask,
        touched: &mut Vec<TaskId>,
        fresh: &mut Vec<(TaskId, Vec<Key>)>,
    ) {
        if let Some(id) = self.task_id(&nt.key) {
            touched.push(id);
            return;
        }
        let mut ts = Task::new(nt.key, nt.prefix, Some(nt.run_spec));
        ts.priority = [-nt.user_priority, self.generation, nt.order];
        ts.retries = nt.retries;
        if !matches!(&nt.annotations, Value::Map(m) if m.is_empty()) {
            ts.rare_mut().annotations = nt.annotations;
        }
        ts.loose_restrictions = nt.allow_other_workers;
        ts.watch = nt.watch;
        ts.data_producer = nt.data_producer;
        ts.ingesting = true;
        if !nt.resources.is_empty() {
            ts.rare_mut().resource_restrictions = nt.resources;
        }
        for w in nt.workers {
            match self.coerce_address(&w) {
                Some(addr) => ts.rare_mut().worker_restrictions.insert(addr),
                None => ts.rare_mut().host_restrictions.insert(w),
            };
        }
        let id = self.insert_task(ts);
        touched.push(id);
        fresh.push((id, nt.deps));
    }

    /// Links a new task to its dependencies. One that is no longer known was forgotten
    /// while a big graph was being taken in (a worker holding the only copy of scattered
    /// data died): the task has lost a dependency, as in Dask when that happens later.
    pub(crate) fn link(&mut self, id: TaskId, deps: Vec<Key>, seen: &mut FxHashSet<TaskId>) {
        // A reducer may take 1e4+ dependencies: dedupe through a set, not a scan.
        seen.clear();
        let mut dep_ids = Vec::with_capacity(deps.len());
        let mut lost = false;
        for d in deps {
            match self.task_id(&d) {
                Some(did) => {
                    if seen.insert(did) {
                        dep_ids.push(did);
                        self.expect_task_mut(did).dependents.insert(id);
                        self.add_group_dependency(id, did);
                    }
                }
                None => lost = true,
            }
        }
        let ts = self.expect_task_mut(id);
        ts.dependencies = dep_ids;
        ts.has_lost_dependencies |= lost;
    }

    /// The graph's actors (scheduler.py:4923-4928: known keys become actors too) and its
    /// wanted keys (`client_desires_keys`).
    pub(crate) fn want(&mut self, client: ClientId, keys: &[Key], actors: &[Key]) {
        for key in actors {
            if let Some(id) = self.task_id(key) {
                self.expect_task_mut(id).actor = true;
            }
        }
        for key in keys {
            if let Some(id) = self.task_id(key) {
                self.expect_task_mut(id).who_wants.insert(client);
                if let Some(cs) = self.clients.get_mut(&client) {
                    cs.wants_what.insert(id);
                }
            }
        }
    }

    /// Where a task of the graph goes: a released one with an erred dependency errs at once
    /// (scheduler.py:4942-4947), one with a `run_spec` waits; the others stay. Only an
    /// erred dependency blames: a released task may carry a stale blame from an earlier
    /// failure, which is cleared here.
    pub(crate) fn sort_out(
        &mut self,
        id: TaskId,
        erred: &mut Vec<TaskId>,
        runnable: &mut Vec<TaskId>,
    ) {
        // a task of a big graph may have been forgotten between its turns
        let Some(ts) = self.tasks.get_mut(id) else {
            return;
        };
        ts.ingesting = false;
        if ts.state != TaskStatus::Released {
            return;
        }
        let blame = self.expect_task(id).dependencies.iter().find_map(|d| {
            let dts = self.expect_task(*d);
            (dts.state == TaskStatus::Erred)
                .then_some(dts.exception_blame)
                .flatten()
        });
        let ts = self.expect_task_mut(id);
        ts.exception_blame = blame;
        if blame.is_some() {
            erred.push(id);
        } else if ts.run_spec.is_some() {
            runnable.push(id);
        }
    }

    /// The wanted keys already done are reported at once.
    pub(crate) fn report_wanted(&mut self, client: ClientId, keys: &[Key]) {
        for key in keys {
            if let Some(id) = self.task_id(key) {
                if matches!(
                    self.expect_task(id).state,
                    TaskStatus::Memory | TaskStatus::Erred
                ) {
                    self.report_on_key(client, key);
                }
            }
        }
    }

    /// `coerce_address`: a worker name or address -> a registered worker address.
    fn coerce_address(&self, w: &str) -> Option<Arc<str>> {
        if let Some(ws) = self.workers.values().find(|ws| &*ws.name == w) {
            return Some(ws.address.clone());
        }
        if w.contains("://") {
            return Some(w.into());
        }
        if w.rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            return Some(format!("tcp://{w}").into());
        }
        None
    }

    fn client_desires_keys(&mut self, client: ClientId, keys: &[Key]) {
        for key in keys {
            // unknown keys only warn in Dask: no task is created
            let Some(id) = self.task_id(key) else {
                continue;
            };
            self.expect_task_mut(id).who_wants.insert(client);
            if let Some(cs) = self.clients.get_mut(&client) {
                cs.wants_what.insert(id);
            }
            if matches!(
                self.expect_task(id).state,
                TaskStatus::Memory | TaskStatus::Erred
            ) {
                self.report_on_key(client, key);
            }
        }
    }

    /// `stimulus_cancel` (scheduler.py:5758-5801).
    fn cancel_keys(
        &mut self,
        client: ClientId,
        keys: &[Key],
        force: bool,
        reason: Option<Arc<str>>,
        msg: Option<Arc<str>>,
    ) {
        if !self.clients.contains_key(&client) {
            return;
        }
        let mut cancelled = Vec::new();
        let mut releases: Vec<(ClientId, TaskId)> = Vec::new();
        let mut stack: Vec<Key> = keys.to_vec();
        let mut seen = FxHashSet::default();
        while let Some(key) = stack.pop() {
            let Some(id) = self.task_id(&key) else {
                continue;
            };
            if !seen.insert(id) {
                continue;
            }
            let ts = self.expect_task(id);
            let only_me = ts.who_wants.len() == 1 && ts.who_wants.contains(&client);
            if force || only_me {
                stack.extend(
                    ts.dependents
                        .iter()
                        .map(|d| self.expect_task(*d).key.clone()),
                );
                cancelled.push(key);
                if force {
                    releases.extend(ts.who_wants.iter().map(|c| (*c, id)));
                } else {
                    releases.push((client, id));
                }
            }
        }
        let mut recs = Recs::new();
        for (c, id) in releases {
            self.client_releases_keys(c, &[id], &mut recs);
        }
        self.transitions(recs, &Arc::from("cancel-keys"));
        self.emit(Command::AllClients(ToClient::CancelledKeys {
            keys: cancelled,
            reason,
            msg,
        }));
    }

    /// The walk of `stimulus_retry` (scheduler.py:5519): from the given keys through erred
    /// dependencies. Returns the erred roots to retry and every key touched (the RPC's reply).
    pub fn retry_plan(&self, keys: &[Key]) -> (Vec<TaskId>, Vec<Key>) {
        let mut stack: Vec<TaskId> = keys.iter().filter_map(|k| self.task_id(k)).collect();
        let mut seen = FxHashSet::default();
        let mut roots = Vec::new();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let erred: Vec<TaskId> = self
                .expect_task(id)
                .dependencies
                .iter()
                .copied()
                .filter(|d| self.expect_task(*d).state == TaskStatus::Erred)
                .collect();
            if erred.is_empty() {
                roots.push(id);
            } else {
                stack.extend(erred);
            }
        }
        let touched = seen
            .iter()
            .map(|id| self.expect_task(*id).key.clone())
            .collect();
        (roots, touched)
    }

    fn retry(&mut self, keys: &[Key], sid: &Arc<str>) {
        let (roots, _) = self.retry_plan(keys);
        let recs: Recs = roots
            .into_iter()
            .map(|id| (id, TaskStatus::Waiting))
            .collect();
        self.transitions(recs, sid);
    }

    /// `stimulus_task_finished` (scheduler.py:5403-5481).
    #[allow(clippy::too_many_arguments)]
    fn task_finished(
        &mut self,
        worker: WorkerId,
        key: Key,
        run_id: u64,
        nbytes: i64,
        type_: Value,
        (compute_duration, transfer_duration): (Option<f64>, f64),
        sid: &Arc<str>,
    ) {
        if !self.workers.contains_key(&worker) {
            return;
        }
        let Some(id) = self.task_id(&key) else {
            self.free_keys(worker, vec![key], sid);
            return;
        };
        let ts = self.expect_task(id);
        match ts.state {
            TaskStatus::Released
            | TaskStatus::NoWorker
            | TaskStatus::Queued
            | TaskStatus::Erred
            | TaskStatus::Waiting => {
                self.free_keys(worker, vec![key], sid);
            }
            _ if ts.run_id != Some(run_id) => {
                if ts.processing_on == Some(worker) {
                    self.transitions(vec![(id, TaskStatus::Released)], sid);
                } else {
                    self.free_keys(worker, vec![key], sid);
                }
            }
            TaskStatus::Memory => self.add_keys(worker, vec![key], sid),
            TaskStatus::Processing => {
                let report = Report::Finished {
                    worker,
                    nbytes,
                    type_,
                    compute_duration,
                    transfer_duration,
                };
                let mut recs = Recs::new();
                self.transition(id, TaskStatus::Memory, Some(report), &mut recs, sid);
                self.transitions(recs, sid);
            }
            TaskStatus::Forgotten => {}
        }
    }

    /// `stimulus_task_erred` (scheduler.py:5483-5517).
    fn task_erred(
        &mut self,
        worker: WorkerId,
        key: Key,
        run_id: u64,
        exception: Value,
        traceback: Value,
        sid: &Arc<str>,
    ) {
        let Some(id) = self.task_id(&key) else { return };
        let ts = self.expect_task(id);
        if ts.state != TaskStatus::Processing {
            return;
        }
        if ts.run_id != Some(run_id) {
            if ts.processing_on == Some(worker) {
                self.transitions(vec![(id, TaskStatus::Released)], sid);
            }
            return;
        }
        if ts.retries > 0 {
            self.expect_task_mut(id).retries -= 1;
            self.transitions(vec![(id, TaskStatus::Waiting)], sid);
            return;
        }
        let report = Report::Erred {
            worker,
            cause: id,
            exception: Exception::Pickled(exception),
            traceback,
        };
        let mut recs = Recs::new();
        self.transition(id, TaskStatus::Erred, Some(report), &mut recs, sid);
        self.transitions(recs, sid);
    }

    /// `add_keys` (scheduler.py:7694-7726).
    fn add_keys(&mut self, worker: WorkerId, keys: Vec<Key>, sid: &Arc<str>) {
        if !self.workers.contains_key(&worker) {
            return;
        }
        let mut redundant = Vec::new();
        for key in keys {
            match self.task_id(&key) {
                Some(id) if self.expect_task(id).state == TaskStatus::Memory => {
                    self.add_replica(id, worker)
                }
                _ => redundant.push(key),
            }
        }
        if !redundant.is_empty() {
            self.emit(Command::Worker(
                worker,
                ToWorker::RemoveReplicas {
                    keys: redundant,
                    stimulus_id: sid.clone(),
                },
            ));
        }
    }

    /// `request_refresh_who_has` (scheduler.py:6133-6163).
    fn request_refresh_who_has(&mut self, worker: WorkerId, keys: Vec<Key>, sid: &Arc<str>) {
        let mut who_has = Vec::new();
        let mut free = Vec::new();
        for key in keys {
            match self.task_id(&key) {
                Some(id) => who_has.push((key, self.who_has_addrs(id))),
                None => free.push(key),
            }
        }
        if !who_has.is_empty() {
            self.emit(Command::Worker(
                worker,
                ToWorker::RefreshWhoHas {
                    who_has,
                    stimulus_id: sid.clone(),
                },
            ));
        }
        if !free.is_empty() {
            self.free_keys(worker, free, sid);
        }
    }

    /// `update_data` (scheduler.py:7728-7755): data put on workers by scatter.
    fn update_data(
        &mut self,
        client: Option<ClientId>,
        data: Vec<(Key, Vec<WorkerId>, i64)>,
        sid: &Arc<str>,
    ) {
        let mut recs = Recs::new();
        for (key, workers, nbytes) in data {
            let workers: Vec<WorkerId> = workers
                .into_iter()
                .filter(|w| self.workers.contains_key(w))
                .collect();
            if workers.is_empty() {
                continue;
            }
            let id = match self.task_id(&key) {
                Some(id) => id,
                None => {
                    let prefix: Arc<str> = key.first_str().unwrap_or("data").into();
                    self.insert_task(Task::new(key.clone(), prefix, None))
                }
            };
            if let Some(c) = client {
                if self.clients.contains_key(&c) {
                    self.expect_task_mut(id).who_wants.insert(c);
                    if let Some(cs) = self.clients.get_mut(&c) {
                        cs.wants_what.insert(id);
                    }
                }
            }
            if self.expect_task(id).state == TaskStatus::Memory {
                // more replicas of a known result
                self.set_nbytes(id, nbytes);
                for w in workers {
                    self.add_replica(id, w);
                }
                if let Some(c) = client {
                    self.report_on_key(c, &key);
                }
            } else {
                // whatever it was doing, it is in memory now (a table edge in rask)
                let report = Report::Scattered { workers, nbytes };
                self.transition(id, TaskStatus::Memory, Some(report), &mut recs, sid);
            }
        }
        self.transitions(recs, sid);
    }

    /// Ensures the special `fire-and-forget` client exists (`scheduler.py:1739`).
    pub fn ensure_fire_and_forget(&mut self) {
        self.clients
            .entry(FIRE_AND_FORGET)
            .or_insert_with(|| Client {
                name: "fire-and-forget".into(),
                wants_what: FxHashSet::default(),
            });
    }
}

/// The tasks of a graph reachable from `keys` through dependencies, in their given order,
/// and the keys outside the graph they depend on.
pub fn reachable(tasks: Vec<NewTask>, keys: &[Key]) -> (Vec<NewTask>, Vec<Key>) {
    let index: rustc_hash::FxHashMap<&Key, usize> =
        tasks.iter().enumerate().map(|(i, t)| (&t.key, i)).collect();
    let mut keep = vec![false; tasks.len()];
    let mut outside: Vec<Key> = Vec::new();
    let mut stack: Vec<usize> = keys.iter().filter_map(|k| index.get(k).copied()).collect();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut keep[i], true) {
            continue;
        }
        for d in &tasks[i].deps {
            match index.get(d) {
                Some(&j) => stack.push(j),
                None => outside.push(d.clone()),
            }
        }
    }
    if keep.iter().all(|k| *k) {
        return (tasks, outside);
    }
    let tasks = tasks
        .into_iter()
        .zip(keep)
        .filter_map(|(t, k)| k.then_some(t))
        .collect();
    (tasks, outside)
}

/// `tcp://10.0.0.1:8786` -> `10.0.0.1`; `tcp://[::1]:1` -> `::1`.
pub fn host_of(address: &str) -> &str {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}
