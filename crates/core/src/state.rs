//! The records: tasks, workers, clients, and the state that owns them.

use crate::command::Command;
use crate::error::CoreError;
use crate::group::Group;
use crate::table::Table;
use crate::types::{ClientId, Exception, TaskId, TaskStatus, WorkerId, WorkerStatus};
use bytes::Bytes;
use rask_protocol::{Key, Value};
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::{Arc, LazyLock};

/// `TaskState` (`scheduler.py:1200-1900`), minus what rask does not use yet.
#[derive(Debug, Clone)]
pub struct Task {
    /// the key
    pub key: Key,
    /// `key_split(key)`
    pub prefix: Arc<str>,
    /// `key_split_group(key)`: its task group, for the root-ish test
    pub group: Arc<str>,
    /// the prefix whose counters it moves: its group's (Dask's `ts.prefix`)
    pub(crate) prefix_ix: u32,
    /// current state
    pub state: TaskStatus,
    /// pickled `GraphNode`; `None` for scattered data, which cannot be recomputed
    pub run_spec: Option<Bytes>,
    /// `(-user_priority, generation, order)`
    pub priority: [i64; 3],
    /// tasks whose results this one needs
    pub dependencies: Vec<TaskId>,
    /// tasks that need this one's result
    pub dependents: FxHashSet<TaskId>,
    /// dependencies not yet in memory (only while waiting)
    pub waiting_on: FxHashSet<TaskId>,
    /// dependents that still need this result to run
    pub waiters: FxHashSet<TaskId>,
    /// clients holding a future for this key
    pub who_wants: FxHashSet<ClientId>,
    /// workers holding the result
    pub who_has: FxHashSet<WorkerId>,
    /// worker running it
    pub processing_on: Option<WorkerId>,
    /// dispatch counter of the current attempt
    pub run_id: Option<u64>,
    /// result size reported by the worker
    pub nbytes: i64,
    /// pickled result type reported by the worker
    pub type_: Value,
    /// the task whose failure this one reports
    pub exception_blame: Option<TaskId>,
    /// annotations, restrictions and failure: see [`Task::rare`]
    rare: Option<Box<Rare>>,
    /// retries left
    pub retries: u32,
    /// times a worker died while running it
    pub suspicious: u32,
    /// a dependency was forgotten: this task can never run
    pub has_lost_dependencies: bool,
    /// `allow_other_workers=`
    pub loose_restrictions: bool,
    /// seceded (`long-running`): does not count against the worker's slots
    pub long_running: bool,
    /// report released/erred/forgotten transitions (`Command::Transitioned`)
    pub watch: bool,
    /// an actor (`actor=True`): its worker keeps the object and serves calls on it
    pub actor: bool,
    /// `run_spec.data_producer`: root-ish whatever the size of its group (`is_rootish`)
    pub data_producer: bool,
    /// new in a big graph still being taken in, not yet sorted out (`ingest.rs`)
    pub(crate) ingesting: bool,
}

impl Task {
    pub(crate) fn new(key: Key, prefix: Arc<str>, run_spec: Option<Bytes>) -> Task {
        Task {
            group: crate::group::key_split_group(&key, &prefix),
            prefix_ix: 0,
            key,
            prefix,
            state: TaskStatus::Released,
            run_spec,
            priority: [0, 0, 0],
            dependencies: Vec::new(),
            dependents: FxHashSet::default(),
            waiting_on: FxHashSet::default(),
            waiters: FxHashSet::default(),
            who_wants: FxHashSet::default(),
            who_has: FxHashSet::default(),
            processing_on: None,
            run_id: None,
            nbytes: 0,
            type_: Value::Nil,
            exception_blame: None,
            rare: None,
            retries: 0,
            suspicious: 0,
            has_lost_dependencies: false,
            loose_restrictions: false,
            long_running: false,
            watch: false,
            actor: false,
            data_producer: false,
            ingesting: false,
        }
    }

    /// Whether anything still needs this task's result.
    pub fn is_needed(&self) -> bool {
        !self.who_wants.is_empty() || !self.waiters.is_empty()
    }

    /// Its annotations, restrictions and failure (all empty for most tasks).
    pub fn rare(&self) -> &Rare {
        static NONE: LazyLock<Rare> = LazyLock::new(Rare::default);
        self.rare.as_deref().unwrap_or(&NONE)
    }

    /// Whether it may run only on some workers (`workers=`, `resources=`).
    pub fn is_restricted(&self) -> bool {
        self.rare.as_deref().is_some_and(|r| {
            !r.worker_restrictions.is_empty()
                || !r.host_restrictions.is_empty()
                || !r.resource_restrictions.is_empty()
        })
    }

    /// [`Task::rare`] to change: the task gets a [`Rare`] of its own if it had none.
    pub(crate) fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Forgets its own failure (exception, traceback); returns the workers it failed on.
    pub(crate) fn clear_failure(&mut self) -> Vec<WorkerId> {
        let Some(r) = self.rare.as_mut() else {
            return Vec::new();
        };
        r.exception = Exception::Pickled(Value::Nil);
        r.traceback = Value::Nil;
        r.erred_on.drain().collect()
    }
}

/// What few tasks carry: annotations, restrictions, and what a failure left. Behind one
/// pointer in [`Task`], so a task without any does not pay for them: inline they made a
/// task 736 bytes instead of 448, on a 1M-task graph 288 MB.
#[derive(Debug, Clone)]
pub struct Rare {
    /// forwarded to workers in `compute-task`
    pub annotations: Value,
    /// `workers=` entries that are worker addresses
    pub worker_restrictions: FxHashSet<Arc<str>>,
    /// `workers=` entries that are host names
    pub host_restrictions: FxHashSet<Arc<str>>,
    /// `resources=`
    pub resource_restrictions: Vec<(Arc<str>, f64)>,
    /// exception if this task itself failed
    pub exception: Exception,
    /// traceback if this task itself failed
    pub traceback: Value,
    /// workers where it failed (they get `free-keys` on retry)
    pub erred_on: FxHashSet<WorkerId>,
}

impl Default for Rare {
    fn default() -> Self {
        Rare {
            annotations: Value::Map(Vec::new()),
            worker_restrictions: FxHashSet::default(),
            host_restrictions: FxHashSet::default(),
            resource_restrictions: Vec::new(),
            exception: Exception::Pickled(Value::Nil),
            traceback: Value::Nil,
            erred_on: FxHashSet::default(),
        }
    }
}

/// `WorkerState`, reduced to scheduling.
#[derive(Debug, Clone)]
pub struct Worker {
    /// contact address
    pub address: Arc<str>,
    /// host part of the address, for host restrictions
    pub host: Arc<str>,
    /// name (alias)
    pub name: Arc<str>,
    /// task slots
    pub nthreads: u32,
    /// bytes
    pub memory_limit: u64,
    /// abstract resources offered
    pub resources: Vec<(Arc<str>, f64)>,
    /// running or not
    pub status: WorkerStatus,
    /// tasks sent to it and not finished
    pub processing: FxHashSet<TaskId>,
    /// how many of `processing` seceded (`long-running`): they hold no task slot
    pub long_running: usize,
    /// results it holds
    pub has_what: FxHashSet<TaskId>,
    /// sum of the expected durations of `processing` (seconds)
    pub occupancy: f64,
    /// sum of `nbytes` of `has_what`
    pub nbytes: i64,
    /// actor tasks running on it or held by it (`WorkerState.actors`)
    pub actors: FxHashSet<TaskId>,
}

/// A connected client.
#[derive(Debug, Clone)]
pub struct Client {
    /// `Client-<uuid>`
    pub name: Arc<str>,
    /// tasks it holds futures for
    pub wants_what: FxHashSet<TaskId>,
}

/// A steal request awaiting its answer (`InFlightInfo`).
#[derive(Debug, Clone)]
pub struct Steal {
    /// the busy worker asked to give the task back
    pub victim: WorkerId,
    /// the idle worker that gets it
    pub thief: WorkerId,
    /// the request's id; a stale answer is ignored
    pub stimulus_id: Arc<str>,
}

/// Tunables, with Dask's defaults.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// `distributed.scheduler.allowed-failures`
    pub allowed_failures: u32,
    /// `distributed.scheduler.default-task-durations` fallback: `unknown-task-duration`
    pub unknown_task_duration: f64,
    /// `distributed.scheduler.bandwidth` (bytes/s), to weigh transfers against waiting
    pub bandwidth: f64,
    /// check invariants after every stimulus (tests, debug builds)
    pub validate: bool,
    /// `distributed.scheduler.work-stealing`: move tasks a busy worker has not started to
    /// idle workers
    pub work_stealing: bool,
    /// `distributed.scheduler.worker-saturation`: root-ish tasks are sent to a worker
    /// only while it runs fewer than `ceil(saturation * nthreads)`; the rest wait in the
    /// scheduler's queue. Infinite turns queuing off.
    pub worker_saturation: f64,
    /// `distributed.admin.low-level-log-length`: transitions kept in the transition log
    /// (`get_story`); `None`: no limit, `Some(0)`: none.
    pub transition_log_length: Option<usize>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            allowed_failures: 3,
            unknown_task_duration: 0.5,
            bandwidth: 100e6,
            validate: cfg!(debug_assertions),
            worker_saturation: 1.1,
            work_stealing: true,
            transition_log_length: Some(1000),
        }
    }
}

/// The whole scheduler state. One owner (the server's state task) drives it through
/// [`SchedulerState::handle`].
#[derive(Debug)]
pub struct SchedulerState {
    pub(crate) config: CoreConfig,
    pub(crate) tasks: Table<Task>,
    pub(crate) free_task_slots: Vec<u32>,
    pub(crate) task_index: FxHashMap<Key, TaskId>,
    pub(crate) workers: FxHashMap<WorkerId, Worker>,
    pub(crate) worker_by_addr: FxHashMap<Arc<str>, WorkerId>,
    pub(crate) clients: FxHashMap<ClientId, Client>,
    pub(crate) next_worker_id: u64,
    pub(crate) next_client_id: u64,
    pub(crate) next_run_id: u64,
    /// priority generation (`scheduler.py:5312-5359`)
    pub(crate) generation: i64,
    pub(crate) last_generation_time: f64,
    /// mean compute duration per task prefix: (sum, count)
    pub(crate) prefix_durations: FxHashMap<Arc<str>, (f64, u32)>,
    /// rotates the starting point when several workers tie
    pub(crate) round_robin: usize,
    /// workers with status running
    pub(crate) running: WorkerSet,
    /// running workers with a free thread (`processing < nthreads`)
    pub(crate) idle: WorkerSet,
    /// running workers that may take another root-ish task (`idle_task_count`)
    pub(crate) open_slots: WorkerSet,
    /// tasks in `no-worker`, retried when workers arrive or resume
    pub(crate) unrunnable: FxHashSet<TaskId>,
    /// tasks in `queued`, by priority (`scheduler.queued`)
    pub(crate) queued: std::collections::BTreeSet<([i64; 3], TaskId)>,
    /// a worker may have gained a free slot since the queue was last looked at
    pub(crate) slots_maybe_opened: bool,
    /// root-ish tasks a worker may hold per thread beyond `worker-saturation`, while the
    /// roots being queued are short (see `queue.rs`)
    pub(crate) extra_roots_per_thread: u32,
    /// task groups by name (`scheduler.task_groups`)
    pub(crate) groups: FxHashMap<Arc<str>, Group>,
    /// threads of all workers, running or not (`total_nthreads`)
    pub(crate) total_nthreads: u64,
    /// steal requests awaiting the victim's answer (`WorkStealing.in_flight`)
    pub(crate) steals: FxHashMap<TaskId, Steal>,
    /// commands produced by the current stimulus
    pub(crate) out: Vec<Command>,
    /// current time, set at the start of each stimulus
    pub(crate) now: f64,
    /// the latest transitions (`transition_log`), at most `transition_log_length`
    pub(crate) transition_log: std::collections::VecDeque<crate::types::Transition>,
    /// emit [`Command::Done`] when a task reaches memory or erred
    pub(crate) report_done: bool,
    /// emit [`Command::Transition`] for every transition
    pub(crate) report_transitions: bool,
    /// transitions made so far (`transition_counter`): `check_idle` compares it
    pub(crate) transition_counter: u64,
    /// task prefixes and their counters (`scheduler.task_prefixes`)
    pub(crate) prefixes: crate::counters::Prefixes,
    /// steal requests sent, by cost level
    pub(crate) steal_metrics: crate::counters::StealMetrics,
    /// the big graph being taken in over several turns (`ingest.rs`)
    pub(crate) ingest: Option<Box<Ingest>>,
    /// tasks of a big graph taken in per turn
    pub(crate) ingest_batch: usize,
    /// client stimuli waiting for the big graph, in arrival order
    pub(crate) deferred: std::collections::VecDeque<crate::stimulus::Stimulus>,
    /// clients whose graphs are in, for [`Self::take_graphs_taken`]
    pub(crate) graphs_taken: Vec<ClientId>,
    /// a big graph's tasks are known by id across turns: freed slots wait until it is in
    pub(crate) keep_task_slots: bool,
    /// while a big graph's tasks move to `waiting`: the ready ones, to dispatch after
    pub(crate) ready_later: Option<Vec<TaskId>>,
}

/// Tasks per turn by default: 20-30 ms of the state task's time, so that another client's
/// request (which meets a turn on each of its hops) waits well under 200 ms.
pub const INGEST_BATCH: usize = 10_000;

/// A big graph being taken in over several turns (`ingest.rs`).
#[derive(Debug)]
pub(crate) struct Ingest {
    pub(crate) client: ClientId,
    pub(crate) keys: Vec<Key>,
    pub(crate) actors: Vec<Key>,
    pub(crate) sid: Arc<str>,
    pub(crate) stage: Stage,
    /// the records not inserted yet
    pub(crate) new: std::vec::IntoIter<crate::stimulus::NewTask>,
    /// every task of the graph, new or known
    pub(crate) touched: Vec<TaskId>,
    /// new tasks and their dependencies' keys, to link
    pub(crate) fresh: Vec<(TaskId, Vec<Key>)>,
    /// released tasks with an erred dependency
    pub(crate) erred: Vec<TaskId>,
    /// released tasks to move to `waiting`, by priority
    pub(crate) runnable: Vec<TaskId>,
    /// the priority of the last of `runnable` while they are sorted out, `None` once one
    /// came out of order: then they are sorted at the end
    pub(crate) runnable_last: Option<[i64; 3]>,
    /// tasks that became ready in `waiting`, in that order
    pub(crate) ready: Vec<TaskId>,
    /// the next item of the current stage
    pub(crate) pos: usize,
}

/// The steps of `update_graph`, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Insert,
    Link,
    Want,
    SortOut,
    Erred,
    Wait,
    Run,
}

impl SchedulerState {
    /// An empty scheduler.
    pub fn new(config: CoreConfig) -> Self {
        SchedulerState {
            config,
            tasks: Table::default(),
            free_task_slots: Vec::new(),
            task_index: FxHashMap::default(),
            workers: FxHashMap::default(),
            worker_by_addr: FxHashMap::default(),
            clients: FxHashMap::default(),
            next_worker_id: 1,
            next_client_id: 1,
            next_run_id: 1,
            generation: 0,
            last_generation_time: f64::NEG_INFINITY,
            prefix_durations: FxHashMap::default(),
            round_robin: 0,
            running: WorkerSet::default(),
            idle: WorkerSet::default(),
            open_slots: WorkerSet::default(),
            unrunnable: FxHashSet::default(),
            queued: Default::default(),
            slots_maybe_opened: false,
            extra_roots_per_thread: 0,
            groups: FxHashMap::default(),
            total_nthreads: 0,
            steals: FxHashMap::default(),
            out: Vec::new(),
            now: 0.0,
            transition_log: Default::default(),
            report_done: false,
            report_transitions: false,
            transition_counter: 0,
            prefixes: Default::default(),
            steal_metrics: Default::default(),
            ingest: None,
            ingest_batch: INGEST_BATCH,
            deferred: Default::default(),
            graphs_taken: Vec::new(),
            keep_task_slots: false,
            ready_later: None,
        }
    }

    /// Turns the invariant checks after every stimulus on or off (tests of the layers
    /// above, which build the state with the server's settings).
    pub fn set_validate(&mut self, on: bool) {
        self.config.validate = on;
    }

    /// Turns [`Command::Done`] on or off: the server's task stream and task-metadata
    /// collectors (Dask's `TaskStreamPlugin`, `CollectTaskMetaDataPlugin`) need it while
    /// they run, and nothing else does.
    pub fn set_report_done(&mut self, on: bool) {
        self.report_done = on;
    }

    /// Turns [`Command::Transition`] on or off: the plugin host needs every transition
    /// while a scheduler plugin or a feed runs there, and nothing else does.
    pub fn set_report_transitions(&mut self, on: bool) {
        self.report_transitions = on;
    }

    /// The transition log, oldest first (`SchedulerState.transition_log`).
    pub fn transition_log(&self) -> impl Iterator<Item = &crate::types::Transition> {
        self.transition_log.iter()
    }

    /// Reserves an id for a worker about to register.
    pub fn new_worker_id(&mut self) -> WorkerId {
        let id = WorkerId(self.next_worker_id);
        self.next_worker_id += 1;
        id
    }

    /// Reserves an id for a client about to register.
    pub fn new_client_id(&mut self) -> ClientId {
        let id = ClientId(self.next_client_id);
        self.next_client_id += 1;
        id
    }

    // ---- lookups --------------------------------------------------------------------------

    /// The task with this id.
    ///
    /// Panics on a dangling id (a forgotten task's): ids come only from the core's own
    /// records, never from peers (they name tasks by key, looked up with [`Self::task_id`]),
    /// so a dangling one is a bug in the core.
    pub(crate) fn expect_task(&self, id: TaskId) -> &Task {
        match self.tasks.get(id) {
            Some(t) => t,
            None => panic!("dangling task id {id:?}"),
        }
    }

    /// The task with this id, mutably. Panics on a dangling id, like [`Self::expect_task`]:
    /// a core bug, never peer input.
    pub(crate) fn expect_task_mut(&mut self, id: TaskId) -> &mut Task {
        match self.tasks.get_mut(id) {
            Some(t) => t,
            None => panic!("dangling task id {id:?}"),
        }
    }

    /// The id of a key, if the scheduler knows it.
    pub fn task_id(&self, key: &Key) -> Option<TaskId> {
        self.task_index.get(key).copied()
    }

    /// A task by key.
    pub fn task(&self, key: &Key) -> Option<&Task> {
        self.task_id(key).map(|id| self.expect_task(id))
    }

    /// A task by id (`None` once it is forgotten).
    pub fn task_by_id(&self, id: TaskId) -> Option<&Task> {
        self.tasks.get(id)
    }

    /// All live tasks.
    pub fn tasks(&self) -> impl Iterator<Item = (TaskId, &Task)> {
        self.tasks.iter()
    }

    /// Number of live tasks.
    pub fn n_tasks(&self) -> usize {
        self.task_index.len()
    }

    /// Tasks in `queued`.
    pub fn queued_len(&self) -> usize {
        self.queued.len()
    }

    /// Tasks in `no-worker`.
    pub fn unrunnable_len(&self) -> usize {
        self.unrunnable.len()
    }

    /// Up to `n` tasks waiting for a worker: `queued` by priority, then `no-worker`
    /// (`concat([self.queued, self.unrunnable])` in `adaptive_target`).
    pub fn waiting_for_workers(&self, n: usize) -> Vec<TaskId> {
        self.queued
            .iter()
            .map(|(_, id)| *id)
            .chain(self.unrunnable.iter().copied())
            .take(n)
            .collect()
    }

    /// Task prefixes and their counters (`Scheduler.task_prefixes`).
    pub fn prefixes(&self) -> &crate::counters::Prefixes {
        &self.prefixes
    }

    /// Steal requests sent so far, by Dask's cost level.
    pub fn steal_metrics(&self) -> &crate::counters::StealMetrics {
        &self.steal_metrics
    }

    /// Task groups known (`len(Scheduler.task_groups)`).
    pub fn n_groups(&self) -> usize {
        self.groups.len()
    }

    /// Transitions made so far (`Scheduler.transition_counter`).
    pub fn transition_counter(&self) -> u64 {
        self.transition_counter
    }

    /// Expected duration of a task (`_get_prefix_duration`): its prefix's mean so far,
    /// else `unknown-task-duration`.
    pub fn task_duration(&self, id: TaskId) -> f64 {
        self.expected_duration(id)
    }

    /// A worker by id.
    pub fn worker(&self, id: WorkerId) -> Option<&Worker> {
        self.workers.get(&id)
    }

    /// A worker id by address.
    pub fn worker_id(&self, address: &str) -> Option<WorkerId> {
        self.worker_by_addr.get(address).copied()
    }

    /// All workers.
    pub fn workers(&self) -> impl Iterator<Item = (WorkerId, &Worker)> {
        self.workers.iter().map(|(id, w)| (*id, w))
    }

    /// A client by id.
    pub fn client(&self, id: ClientId) -> Option<&Client> {
        self.clients.get(&id)
    }

    /// Addresses of the workers holding a task's result.
    pub fn who_has_addrs(&self, id: TaskId) -> Vec<Arc<str>> {
        let mut v: Vec<Arc<str>> = self
            .expect_task(id)
            .who_has
            .iter()
            .filter_map(|w| self.workers.get(w).map(|w| w.address.clone()))
            .collect();
        v.sort();
        v
    }

    pub(crate) fn insert_task(&mut self, mut task: Task) -> TaskId {
        let key = task.key.clone();
        let group = match self.groups.get_mut(&task.group) {
            Some(g) => g,
            None => {
                // a new group belongs to the prefix of the task that made it (Dask's
                // `new_task`), whatever its later tasks' prefixes are
                let prefix = self.prefixes.intern(&task.prefix);
                self.groups.entry(task.group.clone()).or_insert(Group {
                    prefix,
                    ..Group::default()
                })
            }
        };
        group.size += 1;
        if task.state.is_runnable() {
            group.runnable += 1;
        }
        task.prefix_ix = group.prefix;
        self.prefixes.get_mut(task.prefix_ix).states[crate::counters::state_index(task.state)] += 1;
        let slot = if self.keep_task_slots {
            None
        } else {
            self.free_task_slots.pop()
        };
        let id = if let Some(slot) = slot {
            self.tasks.put(TaskId(slot), task);
            TaskId(slot)
        } else {
            self.tasks.push(task)
        };
        self.task_index.insert(key, id);
        id
    }

    pub(crate) fn remove_task(&mut self, id: TaskId) {
        if let Some(t) = self.tasks.take(id) {
            self.task_index.remove(&t.key);
            self.unrunnable.remove(&id);
            self.queued.remove(&(t.priority, id));
            // the group itself goes once the transition has counted the task forgotten
            // (`forgotten_in_group`)
            if let Some(g) = self.groups.get_mut(&t.group) {
                g.size -= 1;
            }
            self.free_task_slots.push(id.0);
        }
    }

    /// Puts a worker into or out of `running`, `idle` and `open_slots` after its status or
    /// its processing set changed (or it left: pass an id no longer in `workers`).
    pub(crate) fn refresh_worker(&mut self, w: WorkerId) {
        let (running, idle, open) = match self.workers.get(&w) {
            Some(ws) => {
                let running = ws.status == WorkerStatus::Running;
                (
                    running,
                    running && (ws.processing.len() as u32) < ws.nthreads,
                    running && self.slots_available(ws) > 0,
                )
            }
            None => (false, false, false),
        };
        self.running.set(w, running);
        self.idle.set(w, idle);
        self.open_slots.set(w, open);
    }

    /// Reports a bug found in the core: a panic under `validate`, so tests catch it at its
    /// source; otherwise a [`Command::Error`] for the server to log, the change not made.
    pub(crate) fn report_error(&mut self, e: CoreError) {
        if self.config.validate {
            panic!("{e}");
        }
        self.emit(Command::Error(e));
    }

    pub(crate) fn emit(&mut self, c: Command) {
        self.out.push(c);
    }

    /// `TaskState.set_nbytes`: the result's size, and the change in its group's and prefix's
    /// totals.
    pub(crate) fn set_nbytes(&mut self, id: TaskId, nbytes: i64) {
        let ts = self.expect_task_mut(id);
        let diff = nbytes - ts.nbytes.max(0);
        ts.nbytes = nbytes;
        let (pix, group) = (ts.prefix_ix, ts.group.clone());
        self.prefixes.get_mut(pix).nbytes_total += diff;
        if let Some(g) = self.groups.get_mut(&group) {
            g.nbytes_total += diff;
        }
    }

    /// A task of `group` was forgotten. Once all of a group's tasks are, Dask drops the group
    /// and takes its counts off its prefix (`TaskPrefix.remove_group`).
    pub(crate) fn forgotten_in_group(&mut self, group: &Arc<str>) {
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        g.forgotten += 1;
        if g.size == 0 {
            let p = self.prefixes.get_mut(g.prefix);
            p.states[crate::counters::state_index(TaskStatus::Forgotten)] -= g.forgotten;
            p.nbytes_total -= g.nbytes_total;
            self.groups.remove(group);
        }
    }

    /// Expected duration of a task: the mean of its prefix so far, else Dask's default.
    pub(crate) fn expected_duration(&self, id: TaskId) -> f64 {
        match self.prefix_durations.get(&self.expect_task(id).prefix) {
            Some((sum, n)) if *n > 0 => sum / *n as f64,
            _ => self.config.unknown_task_duration,
        }
    }
}

/// A set of workers that can also be indexed, so picking "the n-th" one is O(1): choosing a
/// worker must not cost O(workers) per task on a 1,000-worker cluster.
#[derive(Debug, Default)]
pub(crate) struct WorkerSet {
    items: Vec<WorkerId>,
    pos: FxHashMap<WorkerId, usize>,
}

impl WorkerSet {
    pub(crate) fn set(&mut self, w: WorkerId, member: bool) {
        match (member, self.pos.get(&w).copied()) {
            (true, None) => {
                self.pos.insert(w, self.items.len());
                self.items.push(w);
            }
            (false, Some(i)) => {
                self.pos.remove(&w);
                self.items.swap_remove(i);
                if let Some(moved) = self.items.get(i) {
                    self.pos.insert(*moved, i);
                }
            }
            _ => {}
        }
    }

    pub(crate) fn contains(&self, w: WorkerId) -> bool {
        self.pos.contains_key(&w)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn as_slice(&self) -> &[WorkerId] {
        &self.items
    }
}
