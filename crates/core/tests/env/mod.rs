//! Test harness for `rask-core`, in the style of HyperQueue's tako: a [`TestEnv`] owns the
//! state and a fixed clock, builders describe workers and tasks, and every stimulus returns
//! an [`Out`] whose commands the test must consume one by one. Dropping an `Out` that still
//! holds commands fails the test, so "stimulus in, exact commands out" is the default.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use rask_core::{
    ClientId, Command, ComputeTask, CoreConfig, Exception, NewTask, SchedulerState, Stimulus, Task,
    TaskStatus, ToClient, ToWorker, WorkerId, WorkerSpec, WorkerStatus,
};
use rask_protocol::{Key, Value};
use std::sync::Arc;

/// The fixed clock every test starts at (seconds since the epoch).
pub const T0: f64 = 1_000.0;

// ---- values ------------------------------------------------------------------------------

/// A string key.
pub fn k(s: &str) -> Key {
    Key::str(s)
}

/// Several string keys.
pub fn ks(s: &[&str]) -> Vec<Key> {
    s.iter().map(|s| k(s)).collect()
}

/// The default `run_spec` bytes of a task built by [`task`].
pub fn spec_of(key: &str) -> Bytes {
    Bytes::from(format!("pickled-graph-node:{key}"))
}

/// The pickled result type [`TestEnv::finish`] reports for a key.
pub fn typ(key: &Key) -> Value {
    Value::Bin(Bytes::from(format!("pickled-type:{key}")))
}

/// The opaque exception [`TestEnv::err`] reports for a key.
pub fn exc(key: &Key) -> Value {
    Value::Bin(Bytes::from(format!("pickled-exception:{key}")))
}

/// The opaque traceback [`TestEnv::err`] reports for a key.
pub fn tb(key: &Key) -> Value {
    Value::Bin(Bytes::from(format!("pickled-traceback:{key}")))
}

/// The `nbytes` [`TestEnv::finish`] reports: distinct per key so `nbytes` maps can be checked.
pub fn nbytes_of(key: &Key) -> i64 {
    100 + key.to_string().len() as i64
}

fn sid(s: &str) -> Arc<str> {
    Arc::from(s)
}

// ---- builders ----------------------------------------------------------------------------

/// A worker registration.
#[derive(Clone, Debug)]
pub struct WorkerBuilder {
    spec: WorkerSpec,
}

/// A running worker with one thread at `address`, named after its address.
pub fn worker(address: &str) -> WorkerBuilder {
    WorkerBuilder {
        spec: WorkerSpec {
            address: address.into(),
            name: address.into(),
            nthreads: 1,
            memory_limit: 0,
            resources: Vec::new(),
            status: WorkerStatus::Running,
        },
    }
}

impl WorkerBuilder {
    /// `--name`
    pub fn name(mut self, name: &str) -> Self {
        self.spec.name = name.into();
        self
    }
    /// `--nthreads`
    pub fn nthreads(mut self, n: u32) -> Self {
        self.spec.nthreads = n;
        self
    }
    /// `--resources NAME=amount`
    pub fn resource(mut self, name: &str, amount: f64) -> Self {
        self.spec.resources.push((name.into(), amount));
        self
    }
    /// registers with status `init` (a stock worker), running only after a status change
    pub fn init(mut self) -> Self {
        self.spec.status = WorkerStatus::Init;
        self
    }
    /// The registration as the server hands it to the core.
    pub fn spec(self) -> WorkerSpec {
        self.spec
    }
}

/// One task of a graph.
#[derive(Clone, Debug)]
pub struct TaskBuilder {
    key: Key,
    deps: Vec<Key>,
    run_spec: Option<Bytes>,
    order: Option<i64>,
    prefix: Option<Arc<str>>,
    annotations: Value,
    workers: Vec<Arc<str>>,
    allow_other_workers: bool,
    resources: Vec<(Arc<str>, f64)>,
    retries: u32,
    user_priority: i64,
    watch: bool,
    data_producer: bool,
}

/// A task with a string key, no dependencies and default everything.
pub fn task(key: &str) -> TaskBuilder {
    task_k(k(key))
}

/// A task with any key.
pub fn task_k(key: Key) -> TaskBuilder {
    TaskBuilder {
        key,
        deps: Vec::new(),
        run_spec: None,
        order: None,
        prefix: None,
        annotations: Value::Map(Vec::new()),
        workers: Vec::new(),
        allow_other_workers: false,
        resources: Vec::new(),
        retries: 0,
        user_priority: 0,
        watch: false,
        data_producer: false,
    }
}

impl TaskBuilder {
    /// dependencies by string key
    pub fn deps(mut self, deps: &[&str]) -> Self {
        self.deps.extend(deps.iter().map(|d| k(d)));
        self
    }
    /// dependencies by key
    pub fn deps_k(mut self, deps: impl IntoIterator<Item = Key>) -> Self {
        self.deps.extend(deps);
        self
    }
    /// `run_spec` bytes (default: [`spec_of`] the key)
    pub fn run_spec(mut self, b: &'static [u8]) -> Self {
        self.run_spec = Some(Bytes::from_static(b));
        self
    }
    /// `dask.order` position (default: position in the submitted list)
    pub fn order(mut self, o: i64) -> Self {
        self.order = Some(o);
        self
    }
    /// task prefix (default: the key text before the first '-')
    pub fn prefix(mut self, p: &str) -> Self {
        self.prefix = Some(p.into());
        self
    }
    /// annotations forwarded to the worker
    pub fn annotations(mut self, a: Value) -> Self {
        self.annotations = a;
        self
    }
    /// `workers=`
    pub fn workers(mut self, w: &[&str]) -> Self {
        self.workers.extend(w.iter().map(|w| Arc::from(*w)));
        self
    }
    /// `allow_other_workers=True`
    pub fn allow_other_workers(mut self) -> Self {
        self.allow_other_workers = true;
        self
    }
    /// `resources={name: amount}`
    pub fn resource(mut self, name: &str, amount: f64) -> Self {
        self.resources.push((name.into(), amount));
        self
    }
    /// `retries=`
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }
    /// `priority=`
    /// Report the task's released/erred/forgotten transitions (`Command::Transitioned`).
    pub fn watched(mut self) -> Self {
        self.watch = true;
        self
    }

    /// `run_spec.data_producer` (a `DataNode`, a task that reads data)
    pub fn data_producer(mut self) -> Self {
        self.data_producer = true;
        self
    }

    pub fn priority(mut self, p: i64) -> Self {
        self.user_priority = p;
        self
    }

    /// The `NewTask` the graph helper would produce; `position` is the default order.
    pub fn build(self, position: usize) -> NewTask {
        let text = self.key.first_str().unwrap_or("task").to_string();
        let prefix = self
            .prefix
            .unwrap_or_else(|| text.split('-').next().unwrap_or("task").into());
        NewTask {
            run_spec: self.run_spec.unwrap_or_else(|| spec_of(&text)),
            key: self.key,
            deps: self.deps,
            order: self.order.unwrap_or(position as i64),
            prefix,
            annotations: self.annotations,
            workers: self.workers,
            allow_other_workers: self.allow_other_workers,
            resources: self.resources,
            retries: self.retries,
            user_priority: self.user_priority,
            watch: self.watch,
            data_producer: self.data_producer,
        }
    }
}

// ---- the environment ---------------------------------------------------------------------

/// The scheduler under test and a fixed clock.
pub struct TestEnv {
    /// the state machine
    pub state: SchedulerState,
    /// the clock passed to every stimulus
    pub now: f64,
    /// `fifo_timeout` of [`TestEnv::submit`]
    pub fifo_timeout: f64,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    /// Dask's defaults, with validation after every stimulus.
    pub fn new() -> Self {
        Self::with_config(CoreConfig {
            validate: true,
            ..CoreConfig::default()
        })
    }

    /// A custom configuration (validation forced on).
    pub fn with_config(config: CoreConfig) -> Self {
        TestEnv {
            state: SchedulerState::new(CoreConfig {
                validate: true,
                ..config
            }),
            now: T0,
            fifo_timeout: 0.1,
        }
    }

    /// Moves the clock forward.
    pub fn advance(&mut self, seconds: f64) {
        self.now += seconds;
    }

    /// Applies a stimulus; the returned commands must all be consumed.
    pub fn handle(&mut self, s: Stimulus) -> Out {
        Out::new(self.state.handle(self.now, s))
    }

    /// The next share of a big graph being taken in.
    pub fn ingest_step(&mut self) -> Out {
        Out::new(self.state.ingest_step(self.now))
    }

    // ---- peers ---------------------------------------------------------------------------

    /// Registers a worker.
    pub fn add_worker(&mut self, w: WorkerBuilder) -> (WorkerId, Out) {
        let id = self.state.new_worker_id();
        let out = self.handle(Stimulus::AddWorker { id, spec: w.spec() });
        (id, out)
    }

    /// Registers a worker, expecting no commands.
    pub fn worker(&mut self, w: WorkerBuilder) -> WorkerId {
        let (id, out) = self.add_worker(w);
        out.assert_empty();
        id
    }

    /// Registers a plain running one-thread worker at `address`, expecting no commands.
    pub fn worker_at(&mut self, address: &str) -> WorkerId {
        self.worker(worker(address))
    }

    /// `worker-status-change`
    pub fn set_status(&mut self, w: WorkerId, status: &str) -> Out {
        self.handle(Stimulus::WorkerStatusChange {
            worker: w,
            status: status.into(),
        })
    }

    /// Removes a worker (`expected=False`: a crash).
    pub fn kill_worker(&mut self, w: WorkerId) -> Out {
        self.handle(Stimulus::RemoveWorker {
            worker: w,
            expected: false,
            stimulus_id: sid("worker-died"),
        })
    }

    /// Removes a worker cleanly (`expected=True`).
    pub fn retire_worker(&mut self, w: WorkerId) -> Out {
        self.handle(Stimulus::RemoveWorker {
            worker: w,
            expected: true,
            stimulus_id: sid("worker-retired"),
        })
    }

    /// Registers a client, expecting no commands.
    pub fn client(&mut self) -> ClientId {
        let id = self.state.new_client_id();
        self.handle(Stimulus::AddClient {
            id,
            name: format!("Client-{}", id.0).into(),
        })
        .assert_empty();
        id
    }

    /// `close-client`
    pub fn remove_client(&mut self, c: ClientId) -> Out {
        self.handle(Stimulus::RemoveClient { client: c })
    }

    // ---- client requests -----------------------------------------------------------------

    /// `update-graph` of `tasks`, wanting `wanted`.
    pub fn submit(&mut self, c: ClientId, tasks: Vec<TaskBuilder>, wanted: &[&str]) -> Out {
        self.submit_k(c, tasks, ks(wanted))
    }

    /// `update-graph` with arbitrary wanted keys.
    pub fn submit_k(&mut self, c: ClientId, tasks: Vec<TaskBuilder>, wanted: Vec<Key>) -> Out {
        self.submit_actors(c, tasks, wanted, Vec::new())
    }

    /// `update-graph` with `actors=`.
    pub fn submit_actors(
        &mut self,
        c: ClientId,
        tasks: Vec<TaskBuilder>,
        wanted: Vec<Key>,
        actors: Vec<Key>,
    ) -> Out {
        let tasks = tasks
            .into_iter()
            .enumerate()
            .map(|(i, t)| t.build(i))
            .collect();
        self.handle(Stimulus::UpdateGraph {
            client: c,
            tasks,
            keys: wanted,
            fifo_timeout: self.fifo_timeout,
            actors,
            outside: None,
            stimulus_id: sid("update-graph"),
        })
    }

    /// `client-desires-keys`
    pub fn desire(&mut self, c: ClientId, keys: &[&str]) -> Out {
        self.handle(Stimulus::ClientDesiresKeys {
            client: c,
            keys: ks(keys),
        })
    }

    /// `client-releases-keys`
    pub fn release(&mut self, c: ClientId, keys: &[&str]) -> Out {
        self.handle(Stimulus::ClientReleasesKeys {
            client: c,
            keys: ks(keys),
            stimulus_id: sid("client-releases-keys"),
        })
    }

    /// `cancel-keys` with no reason/msg
    pub fn cancel(&mut self, c: ClientId, keys: &[&str], force: bool) -> Out {
        self.handle(Stimulus::CancelKeys {
            client: c,
            keys: ks(keys),
            force,
            reason: None,
            msg: None,
        })
    }

    /// the `retry` RPC
    pub fn retry(&mut self, keys: &[&str]) -> Out {
        self.handle(Stimulus::Retry {
            keys: ks(keys),
            stimulus_id: sid("retry"),
        })
    }

    /// `report-key`
    pub fn report_key(&mut self, c: ClientId, key: &str) -> Out {
        self.handle(Stimulus::ReportKey {
            client: c,
            key: k(key),
        })
    }

    // ---- worker reports ------------------------------------------------------------------

    /// `task-finished` for a dispatch, with [`typ`] and [`nbytes_of`] the key.
    pub fn finish(&mut self, w: WorkerId, ct: &ComputeTask) -> Out {
        self.finish_run(w, &ct.key, ct.run_id)
    }

    /// `task-finished` for an explicit key and run id.
    pub fn finish_run(&mut self, w: WorkerId, key: &Key, run_id: u64) -> Out {
        self.finish_measured(w, key, run_id, 0.25, nbytes_of(key))
    }

    /// `task-finished` that took `compute_duration` seconds and gave `nbytes`.
    pub fn finish_measured(
        &mut self,
        w: WorkerId,
        key: &Key,
        run_id: u64,
        compute_duration: f64,
        nbytes: i64,
    ) -> Out {
        self.handle(Stimulus::TaskFinished {
            worker: w,
            key: key.clone(),
            run_id,
            nbytes,
            type_: typ(key),
            compute_duration: Some(compute_duration),
            transfer_duration: 0.0,
            stimulus_id: sid("task-finished"),
        })
    }

    /// `task-erred` for a dispatch, with [`exc`] and [`tb`] the key.
    pub fn err(&mut self, w: WorkerId, ct: &ComputeTask) -> Out {
        self.err_run(w, &ct.key, ct.run_id)
    }

    /// `task-erred` for an explicit key and run id.
    pub fn err_run(&mut self, w: WorkerId, key: &Key, run_id: u64) -> Out {
        self.handle(Stimulus::TaskErred {
            worker: w,
            key: key.clone(),
            run_id,
            exception: exc(key),
            traceback: tb(key),
            stimulus_id: sid("task-erred"),
        })
    }

    /// Runs a dispatch to completion on `w`, expecting no commands but those returned.
    pub fn compute_on(&mut self, w: WorkerId, key: &str) -> Out {
        let ct = self.computing(key);
        assert_eq!(self.processing_on(key), Some(w), "{key} runs elsewhere");
        self.finish(w, &ct)
    }

    /// `add-keys`
    pub fn add_keys(&mut self, w: WorkerId, keys: &[&str]) -> Out {
        self.handle(Stimulus::AddKeys {
            worker: w,
            keys: ks(keys),
            stimulus_id: sid("add-keys"),
        })
    }

    /// `release-worker-data`
    pub fn release_worker_data(&mut self, w: WorkerId, key: &str) -> Out {
        self.handle(Stimulus::ReleaseWorkerData {
            worker: w,
            key: k(key),
            stimulus_id: sid("release-worker-data"),
        })
    }

    /// `reschedule`
    pub fn reschedule(&mut self, w: WorkerId, key: &str) -> Out {
        self.handle(Stimulus::Reschedule {
            worker: w,
            key: k(key),
            stimulus_id: sid("reschedule"),
        })
    }

    /// `request-refresh-who-has`
    pub fn refresh_who_has(&mut self, w: WorkerId, keys: &[&str]) -> Out {
        self.handle(Stimulus::RequestRefreshWhoHas {
            worker: w,
            keys: ks(keys),
            stimulus_id: sid("refresh-who-has"),
        })
    }

    /// `scatter`: `key` placed on `workers` for `client`.
    pub fn scatter(&mut self, c: Option<ClientId>, key: &str, workers: &[WorkerId]) -> Out {
        self.handle(Stimulus::UpdateData {
            client: c,
            data: vec![(k(key), workers.to_vec(), 42)],
            stimulus_id: sid("scatter"),
        })
    }

    // ---- state inspection ----------------------------------------------------------------

    /// The task of a key (panics if forgotten).
    pub fn task(&self, key: &str) -> &Task {
        self.state
            .task(&k(key))
            .unwrap_or_else(|| panic!("{key} is not known to the scheduler"))
    }

    /// The state of a key, `None` if forgotten.
    pub fn state_of(&self, key: &str) -> Option<TaskStatus> {
        self.state.task(&k(key)).map(|t| t.state)
    }

    /// Asserts each key's state.
    pub fn assert_states(&self, expected: &[(&str, TaskStatus)]) {
        for (key, st) in expected {
            assert_eq!(self.state_of(key), Some(*st), "state of {key}");
        }
    }

    /// Asserts the keys are forgotten.
    pub fn assert_forgotten(&self, keys: &[&str]) {
        for key in keys {
            assert_eq!(self.state_of(key), None, "{key} should be forgotten");
        }
    }

    /// The worker running a key.
    pub fn processing_on(&self, key: &str) -> Option<WorkerId> {
        self.task(key).processing_on
    }

    /// Reconstructs the `compute-task` of a key currently processing (to finish it without
    /// having kept the message).
    pub fn computing(&self, key: &str) -> ComputeTask {
        let t = self.task(key);
        assert_eq!(t.state, TaskStatus::Processing, "{key} is not processing");
        ComputeTask {
            key: t.key.clone(),
            run_id: t.run_id.unwrap(),
            priority: t.priority,
            who_has: Vec::new(),
            nbytes: Vec::new(),
            run_spec: t.run_spec.clone().unwrap_or_default(),
            actor: t.actor,
            resource_restrictions: None,
            annotations: t.rare().annotations.clone(),
            stimulus_id: "".into(),
        }
    }

    /// Sorted addresses of the workers holding a key.
    pub fn who_has(&self, key: &str) -> Vec<String> {
        let id = self.state.task_id(&k(key)).unwrap();
        self.state
            .who_has_addrs(id)
            .iter()
            .map(|a| a.to_string())
            .collect()
    }

    /// Sorted keys a worker holds.
    pub fn has_what(&self, w: WorkerId) -> Vec<Key> {
        let ws = self.state.worker(w).unwrap();
        let mut v: Vec<Key> = self
            .state
            .tasks()
            .filter(|(id, _)| ws.has_what.contains(id))
            .map(|(_, t)| t.key.clone())
            .collect();
        v.sort();
        v
    }

    /// Sorted keys a client wants.
    pub fn wants_what(&self, c: ClientId) -> Vec<Key> {
        let cs = self.state.client(c).unwrap();
        let mut v: Vec<Key> = self
            .state
            .tasks()
            .filter(|(id, _)| cs.wants_what.contains(id))
            .map(|(_, t)| t.key.clone())
            .collect();
        v.sort();
        v
    }

    /// Asserts the scheduler holds no tasks and no worker holds or runs anything.
    pub fn assert_idle(&self) {
        let left: Vec<String> = self
            .state
            .tasks()
            .map(|(_, t)| format!("{} ({})", t.key, t.state.as_str()))
            .collect();
        assert!(left.is_empty(), "tasks left behind: {left:?}");
        for (id, ws) in self.state.workers() {
            assert!(ws.processing.is_empty(), "{id:?} still processing");
            assert!(ws.has_what.is_empty(), "{id:?} still holds data");
            assert_eq!(ws.nbytes, 0, "{id:?} nbytes");
        }
    }
}

// ---- the outbox --------------------------------------------------------------------------

/// The commands one stimulus produced. Every command must be taken by an assertion; an
/// `Out` dropped with commands left fails the test.
#[must_use = "every command must be checked; call .assert_empty() or .discard()"]
pub struct Out {
    cmds: Vec<Command>,
}

impl Drop for Out {
    fn drop(&mut self) {
        if !self.cmds.is_empty() && !std::thread::panicking() {
            panic!("unexpected commands: {:#?}", self.cmds);
        }
    }
}

impl Out {
    fn new(cmds: Vec<Command>) -> Self {
        Out { cmds }
    }

    /// The commands not yet taken.
    pub fn commands(&self) -> &[Command] {
        &self.cmds
    }

    /// Accepts whatever is left.
    pub fn discard(mut self) {
        self.cmds.clear();
    }

    /// Takes every command left.
    pub fn take_all(mut self) -> Vec<Command> {
        std::mem::take(&mut self.cmds)
    }

    /// Fails if any command is left.
    pub fn assert_empty(mut self) {
        let left = std::mem::take(&mut self.cmds);
        assert!(left.is_empty(), "unexpected commands: {left:#?}");
    }

    fn take_where(&mut self, what: &str, f: impl Fn(&Command) -> bool) -> Command {
        match self.cmds.iter().position(f) {
            Some(i) => self.cmds.remove(i),
            None => panic!("no {what} among {:#?}", self.cmds),
        }
    }

    fn take_all_where(&mut self, f: impl Fn(&Command) -> bool) -> Vec<Command> {
        let (hit, rest) = std::mem::take(&mut self.cmds).into_iter().partition(f);
        self.cmds = rest;
        hit
    }

    // ---- worker messages -----------------------------------------------------------------

    /// Takes the first `compute-task` to `w`.
    pub fn take_compute(&mut self, w: WorkerId) -> ComputeTask {
        match self.take_where(
            &format!("compute-task for {w:?}"),
            |c| matches!(c, Command::Worker(x, ToWorker::ComputeTask(_)) if *x == w),
        ) {
            Command::Worker(_, ToWorker::ComputeTask(ct)) => *ct,
            _ => unreachable!(),
        }
    }

    /// Takes the `compute-task` of `key`, wherever it goes.
    pub fn take_compute_of(&mut self, key: &str) -> (WorkerId, ComputeTask) {
        let key = k(key);
        match self.take_where(
            &format!("compute-task of {key}"),
            |c| matches!(c, Command::Worker(_, ToWorker::ComputeTask(ct)) if ct.key == key),
        ) {
            Command::Worker(w, ToWorker::ComputeTask(ct)) => (w, *ct),
            _ => unreachable!(),
        }
    }

    /// Takes every `compute-task` to `w`, in order.
    pub fn take_computes(&mut self, w: WorkerId) -> Vec<ComputeTask> {
        self.take_all_where(
            |c| matches!(c, Command::Worker(x, ToWorker::ComputeTask(_)) if *x == w),
        )
        .into_iter()
        .map(|c| match c {
            Command::Worker(_, ToWorker::ComputeTask(ct)) => *ct,
            _ => unreachable!(),
        })
        .collect()
    }

    /// Takes every `compute-task` to `w` and checks their keys, in order.
    pub fn assert_computes(&mut self, w: WorkerId, keys: &[&str]) -> Vec<ComputeTask> {
        let cts = self.take_computes(w);
        let got: Vec<Key> = cts.iter().map(|c| c.key.clone()).collect();
        assert_eq!(got, ks(keys), "compute-task order for {w:?}");
        cts
    }

    /// Takes every `free-keys` to `w` and checks the union of their keys.
    pub fn assert_free_keys(&mut self, w: WorkerId, keys: &[&str]) {
        let mut got: Vec<Key> = self
            .take_all_where(
                |c| matches!(c, Command::Worker(x, ToWorker::FreeKeys { .. }) if *x == w),
            )
            .into_iter()
            .flat_map(|c| match c {
                Command::Worker(_, ToWorker::FreeKeys { keys, .. }) => keys,
                _ => unreachable!(),
            })
            .collect();
        got.sort();
        let mut want = ks(keys);
        want.sort();
        assert_eq!(got, want, "free-keys to {w:?}");
    }

    /// Takes every `remove-replicas` to `w` and checks the union of their keys.
    pub fn assert_remove_replicas(&mut self, w: WorkerId, keys: &[&str]) {
        let mut got: Vec<Key> = self
            .take_all_where(
                |c| matches!(c, Command::Worker(x, ToWorker::RemoveReplicas { .. }) if *x == w),
            )
            .into_iter()
            .flat_map(|c| match c {
                Command::Worker(_, ToWorker::RemoveReplicas { keys, .. }) => keys,
                _ => unreachable!(),
            })
            .collect();
        got.sort();
        let mut want = ks(keys);
        want.sort();
        assert_eq!(got, want, "remove-replicas to {w:?}");
    }

    /// Takes the `refresh-who-has` to `w`.
    pub fn take_refresh_who_has(&mut self, w: WorkerId) -> Vec<(Key, Vec<Arc<str>>)> {
        match self.take_where(
            "refresh-who-has",
            |c| matches!(c, Command::Worker(x, ToWorker::RefreshWhoHas { .. }) if *x == w),
        ) {
            Command::Worker(_, ToWorker::RefreshWhoHas { who_has, .. }) => who_has,
            _ => unreachable!(),
        }
    }

    /// Takes the `remove-worker` telling `w` that `gone` left.
    pub fn assert_remove_worker(&mut self, w: WorkerId, gone: &str) {
        self.take_where(&format!("remove-worker {gone} to {w:?}"), |c| {
            matches!(c, Command::Worker(x, ToWorker::RemoveWorker { worker, .. })
                if *x == w && &**worker == gone)
        });
    }

    // ---- client messages -----------------------------------------------------------------

    /// Takes every message to client `c`, in order.
    pub fn take_client(&mut self, c: ClientId) -> Vec<ToClient> {
        self.take_all_where(|x| matches!(x, Command::Client(y, _) if *y == c))
            .into_iter()
            .map(|x| match x {
                Command::Client(_, m) => m,
                _ => unreachable!(),
            })
            .collect()
    }

    /// Takes every message to client `c` and checks them, in order.
    pub fn assert_client(&mut self, c: ClientId, expected: Vec<ToClient>) {
        assert_eq!(self.take_client(c), expected, "messages to {c:?}");
    }

    /// Takes the `key-in-memory` of `key` to `c`, with the type [`TestEnv::finish`] reports.
    pub fn assert_key_in_memory(&mut self, c: ClientId, key: &str) {
        let m = key_in_memory(key);
        self.take_where(
            &format!("{m:?} to {c:?}"),
            |x| matches!(x, Command::Client(y, msg) if *y == c && *msg == m),
        );
    }

    /// Takes one message `m` to `c`.
    pub fn take_client_msg(&mut self, c: ClientId, m: ToClient) {
        self.take_where(
            &format!("{m:?} to {c:?}"),
            |x| matches!(x, Command::Client(y, msg) if *y == c && *msg == m),
        );
    }

    /// Takes every broadcast to all clients, in order.
    pub fn take_broadcasts(&mut self) -> Vec<ToClient> {
        self.take_all_where(|x| matches!(x, Command::AllClients(_)))
            .into_iter()
            .map(|x| match x {
                Command::AllClients(m) => m,
                _ => unreachable!(),
            })
            .collect()
    }
}

/// `key-in-memory` with the type [`TestEnv::finish`] reports.
pub fn key_in_memory(key: &str) -> ToClient {
    ToClient::KeyInMemory {
        key: k(key),
        type_: typ(&k(key)),
    }
}

/// `task-erred` blaming `culprit` (its [`exc`] and [`tb`]).
pub fn task_erred(key: &str, culprit: &str) -> ToClient {
    ToClient::TaskErred {
        key: k(key),
        exception: Exception::Pickled(exc(&k(culprit))),
        traceback: tb(&k(culprit)),
    }
}

/// `lost-data`
pub fn lost_data(key: &str) -> ToClient {
    ToClient::LostData { key: k(key) }
}

/// `task-retried`
pub fn task_retried(key: &str) -> ToClient {
    ToClient::TaskRetried { key: k(key) }
}

/// `cancelled-keys` without reason (forgotten while wanted).
pub fn cancelled(keys: &[&str]) -> ToClient {
    ToClient::CancelledKeys {
        keys: ks(keys),
        reason: None,
        msg: None,
    }
}

/// `cancelled-keys` for wanted keys the scheduler forgot (`_task_to_report_msg`).
pub fn forgotten(keys: &[&str]) -> ToClient {
    ToClient::CancelledKeys {
        keys: ks(keys),
        reason: Some("already forgotten".into()),
        msg: None,
    }
}

/// The `who_has` of a `compute-task`, as `(key, addresses)` strings.
pub fn who_has_of(ct: &ComputeTask) -> Vec<(Key, Vec<String>)> {
    let mut v: Vec<(Key, Vec<String>)> = ct
        .who_has
        .iter()
        .map(|(k, a)| (k.clone(), a.iter().map(|a| a.to_string()).collect()))
        .collect();
    v.sort();
    v
}

/// `(key, [addresses])` for comparing with [`who_has_of`].
pub fn holders(key: &str, addrs: &[&str]) -> (Key, Vec<String>) {
    (k(key), addrs.iter().map(|a| a.to_string()).collect())
}

/// Worker addresses used across the tests.
pub const A: &str = "tcp://10.0.0.1:40001";
/// second worker
pub const B: &str = "tcp://10.0.0.2:40002";
/// third worker (same host as `B`)
pub const C: &str = "tcp://10.0.0.2:40003";
