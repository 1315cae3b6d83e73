//! Per-task cost of the scheduler's core transitions, through the public API only
//! (`SchedulerState::handle`), with validation off as in a release server.
//!
//! Run: `cargo bench -p rask-core --bench transitions -- --measurement-time 3 --warm-up-time 1`
//!
//! - `update-graph`: one `update-graph` of 10k independent tasks onto 4 / 1,000 workers,
//!   through to every task dispatched (rask sends ready tasks straight to workers).
//! - `task-finished`: a `task-finished` for each of them (processing → memory, and a
//!   `key-in-memory` to the client).
//! - `release`: the client releasing each key (memory → released → forgotten, `free-keys`).
//! - `simulate`: a merge-10k graph (10k independent tasks + 1 reducer) and a binary tree
//!   reduction with 2^15 leaves (65,535 tasks), run to completion by "zero workers" that
//!   finish every task the moment it is dispatched, then released: submit, dispatch,
//!   finish, release, forget, all in-process.
//!
//! Throughput is in tasks, so criterion's `elem/s` inverted is the per-task cost.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use rask_core::{
    ClientId, Command, CoreConfig, NewTask, SchedulerState, Stimulus, ToClient, ToWorker, WorkerId,
    WorkerSpec,
};
use rask_protocol::{Key, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

const NOW: f64 = 1_795_538_426.0;
const N_INDEPENDENT: usize = 10_000;
const TREE_DEPTH: u32 = 15;
const WORKER_COUNTS: [usize; 2] = [4, 1_000];

// ---- graph builders ----------------------------------------------------------------------

/// 32 deterministic hex digits, like a Dask token.
fn token(i: usize, salt: u64) -> String {
    let mut x = (i as u64 ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut s = String::with_capacity(32);
    for _ in 0..2 {
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 32;
        s.push_str(&format!("{x:016x}"));
    }
    s
}

/// A ~200-byte stand-in for a pickled `GraphNode` (the core only stores and forwards it).
fn run_spec() -> Bytes {
    Bytes::from(vec![b'N'; 200])
}

fn new_task(key: Key, prefix: &Arc<str>, deps: Vec<Key>, order: usize, spec: &Bytes) -> NewTask {
    NewTask {
        key,
        deps,
        run_spec: spec.clone(),
        order: order as i64,
        prefix: prefix.clone(),
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

/// A submitted graph: its tasks and the keys the client wants.
#[derive(Clone)]
struct Graph {
    tasks: Vec<NewTask>,
    wanted: Vec<Key>,
}

/// `client.map(inc, range(n))`: n independent tasks, all wanted.
fn independent(n: usize) -> Graph {
    let spec = run_spec();
    let prefix: Arc<str> = "inc".into();
    let tasks: Vec<NewTask> = (0..n)
        .map(|i| {
            let key = Key::Str(format!("inc-{}", token(i, 1)).into());
            new_task(key, &prefix, Vec::new(), i, &spec)
        })
        .collect();
    let wanted = tasks.iter().map(|t| t.key.clone()).collect();
    Graph { tasks, wanted }
}

/// n independent tasks and one reducer taking all of them; only the reducer is wanted.
fn merge(n: usize) -> Graph {
    let mut g = independent(n);
    let deps: Vec<Key> = g.tasks.iter().map(|t| t.key.clone()).collect();
    let sum = Key::Str(format!("sum-{}", token(0, 3)).into());
    g.tasks
        .push(new_task(sum.clone(), &"sum".into(), deps, n, &run_spec()));
    g.wanted = vec![sum];
    g
}

/// A binary reduction tree with 2^depth leaves `("inc-…", i)` and internal nodes
/// `("add-…", level, i)`; only the root is wanted. Tuple keys, as array graphs have.
fn tree(depth: u32) -> Graph {
    let spec = run_spec();
    let inc: Arc<str> = "inc".into();
    let add: Arc<str> = "add".into();
    let inc_name = Key::Str(format!("inc-{}", token(0, 4)).into());
    let add_name = Key::Str(format!("add-{}", token(0, 5)).into());
    let mut tasks = Vec::with_capacity((2usize << depth) - 1);
    let mut level: Vec<Key> = (0..1usize << depth)
        .map(|i| Key::Tuple(vec![inc_name.clone(), Key::Int(i as i64)].into()))
        .collect();
    for k in &level {
        let order = tasks.len();
        tasks.push(new_task(k.clone(), &inc, Vec::new(), order, &spec));
    }
    for l in 1..=depth {
        let next: Vec<Key> = level
            .chunks(2)
            .enumerate()
            .map(|(i, pair)| {
                let key = Key::Tuple(
                    vec![add_name.clone(), Key::Int(l as i64), Key::Int(i as i64)].into(),
                );
                let order = tasks.len();
                tasks.push(new_task(key.clone(), &add, pair.to_vec(), order, &spec));
                key
            })
            .collect();
        level = next;
    }
    Graph {
        tasks,
        wanted: level,
    }
}

// ---- the scheduler -----------------------------------------------------------------------

/// A scheduler with `n_workers` running two-thread workers and one client.
fn scheduler(n_workers: usize) -> (SchedulerState, ClientId) {
    let mut s = SchedulerState::new(CoreConfig {
        validate: false,
        ..CoreConfig::default()
    });
    for i in 0..n_workers {
        let id = s.new_worker_id();
        let address: Arc<str> = format!("tcp://10.0.{}.{}:40123", i / 250, i % 250 + 1).into();
        let cmds = s.handle(
            NOW,
            Stimulus::AddWorker {
                id,
                spec: WorkerSpec {
                    address: address.clone(),
                    name: address,
                    nthreads: 2,
                    memory_limit: 8 << 30,
                    resources: Vec::new(),
                    status: rask_core::WorkerStatus::Running,
                },
            },
        );
        assert!(cmds.is_empty(), "adding a worker sent {cmds:?}");
    }
    let client = s.new_client_id();
    let cmds = s.handle(
        NOW,
        Stimulus::AddClient {
            id: client,
            name: "Client-bench".into(),
        },
    );
    assert!(cmds.is_empty(), "adding a client sent {cmds:?}");
    (s, client)
}

fn update_graph(s: &mut SchedulerState, client: ClientId, g: Graph) -> Vec<Command> {
    s.handle(
        NOW,
        Stimulus::UpdateGraph {
            client,
            tasks: g.tasks,
            keys: g.wanted,
            fifo_timeout: 0.1,
            actors: Vec::new(),
            outside: None,
            stimulus_id: "update-graph-1795538426.0".into(),
        },
    )
}

/// A `compute-task` the scheduler sent, as the worker will answer it.
struct Dispatch {
    worker: WorkerId,
    key: Key,
    run_id: u64,
}

/// Appends the `compute-task`s among `cmds` to `out`; returns how many keys reached the
/// client as `key-in-memory`.
fn collect(cmds: Vec<Command>, out: &mut VecDeque<Dispatch>) -> usize {
    let mut in_memory = 0;
    for c in cmds {
        match c {
            Command::Worker(worker, ToWorker::ComputeTask(ct)) => out.push_back(Dispatch {
                worker,
                key: ct.key,
                run_id: ct.run_id,
            }),
            Command::Client(_, ToClient::KeyInMemory { .. }) => in_memory += 1,
            _ => {}
        }
    }
    in_memory
}

/// The stimulus a zero-duration worker sends for a dispatch.
fn finished(d: Dispatch, type_: &Value, sid: &Arc<str>) -> Stimulus {
    Stimulus::TaskFinished {
        worker: d.worker,
        key: d.key,
        run_id: d.run_id,
        nbytes: 28,
        type_: type_.clone(),
        compute_duration: Some(0.001),
        transfer_duration: 0.0,
        stimulus_id: sid.clone(),
    }
}

/// The pickled `int` type a worker reports.
fn int_type() -> Value {
    Value::Bin(Bytes::from_static(
        b"\x80\x05\x95\x14\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x03int\x94\x93\x94.",
    ))
}

/// Finishes every dispatch, and every task those results make ready, until nothing is left
/// to run. Returns (tasks finished, keys reported to the client).
fn run_to_completion(s: &mut SchedulerState, mut queue: VecDeque<Dispatch>) -> (usize, usize) {
    let type_ = int_type();
    let sid: Arc<str> = "task-finished-1795538426.0727503".into();
    let (mut done, mut reported) = (0, 0);
    while let Some(d) = queue.pop_front() {
        let cmds = s.handle(NOW, finished(d, &type_, &sid));
        reported += collect(cmds, &mut queue);
        done += 1;
    }
    (done, reported)
}

/// `client-releases-keys`, one message per key as `Client._release_key` sends them.
fn release_all(s: &mut SchedulerState, client: ClientId, keys: &[Key]) {
    let sid: Arc<str> = "client-releases-keys-1795538427.0".into();
    for k in keys {
        s.handle(
            NOW,
            Stimulus::ClientReleasesKeys {
                client,
                keys: vec![k.clone()],
                stimulus_id: sid.clone(),
            },
        );
    }
}

/// A scheduler with the graph submitted and every ready task dispatched.
fn dispatched(n_workers: usize, g: &Graph) -> (SchedulerState, ClientId, VecDeque<Dispatch>) {
    let (mut s, client) = scheduler(n_workers);
    let mut queue = VecDeque::new();
    collect(update_graph(&mut s, client, g.clone()), &mut queue);
    (s, client, queue)
}

/// Checks once, outside the measurements, that a graph runs through and leaves nothing.
fn check_simulation(n_workers: usize, g: &Graph) {
    let (mut s, client, queue) = dispatched(n_workers, g);
    let (done, reported) = run_to_completion(&mut s, queue);
    assert_eq!(done, g.tasks.len(), "not every task ran");
    assert_eq!(
        reported,
        g.wanted.len(),
        "not every wanted key was reported"
    );
    release_all(&mut s, client, &g.wanted);
    assert_eq!(s.n_tasks(), 0, "tasks left after releasing");
}

// ---- benchmarks --------------------------------------------------------------------------

fn bench_independent(c: &mut Criterion) {
    let g = independent(N_INDEPENDENT);
    let n = g.tasks.len() as u64;

    let mut grp = c.benchmark_group("update-graph");
    grp.sample_size(10);
    grp.throughput(Throughput::Elements(n));
    for w in WORKER_COUNTS {
        grp.bench_function(
            BenchmarkId::new("independent-10k", format!("{w}-workers")),
            |b| {
                // checked here: criterion only calls this closure when the id is selected
                let (_, _, queue) = dispatched(w, &g);
                assert_eq!(queue.len(), g.tasks.len(), "not every task was dispatched");
                b.iter_batched(
                    || {
                        let (s, client) = scheduler(w);
                        (s, client, g.clone())
                    },
                    |(mut s, client, g)| {
                        let cmds = update_graph(&mut s, client, g);
                        (s, cmds)
                    },
                    BatchSize::PerIteration,
                )
            },
        );
    }
    grp.finish();

    let mut grp = c.benchmark_group("task-finished");
    grp.sample_size(10);
    grp.throughput(Throughput::Elements(n));
    for w in WORKER_COUNTS {
        grp.bench_function(
            BenchmarkId::new("independent-10k", format!("{w}-workers")),
            |b| {
                b.iter_batched(
                    || dispatched(w, &g),
                    |(mut s, _, queue)| {
                        let (done, reported) = run_to_completion(&mut s, queue);
                        assert_eq!((done, reported), (N_INDEPENDENT, N_INDEPENDENT));
                        s
                    },
                    BatchSize::PerIteration,
                )
            },
        );
    }
    grp.finish();

    let mut grp = c.benchmark_group("release");
    grp.sample_size(10);
    grp.throughput(Throughput::Elements(n));
    for w in WORKER_COUNTS {
        grp.bench_function(
            BenchmarkId::new("independent-10k", format!("{w}-workers")),
            |b| {
                b.iter_batched(
                    || {
                        let (mut s, client, queue) = dispatched(w, &g);
                        run_to_completion(&mut s, queue);
                        (s, client)
                    },
                    |(mut s, client)| {
                        release_all(&mut s, client, &g.wanted);
                        assert_eq!(s.n_tasks(), 0, "tasks left after releasing");
                        s
                    },
                    BatchSize::PerIteration,
                )
            },
        );
    }
    grp.finish();
}

fn bench_simulate(c: &mut Criterion) {
    let mut grp = c.benchmark_group("simulate");
    grp.sample_size(10);
    for (name, g) in [
        ("merge-10k", merge(N_INDEPENDENT)),
        ("tree-15", tree(TREE_DEPTH)),
    ] {
        grp.throughput(Throughput::Elements(g.tasks.len() as u64));
        for w in WORKER_COUNTS {
            grp.bench_function(BenchmarkId::new(name, format!("{w}-workers")), |b| {
                // checked here: criterion only calls this closure when the id is selected
                check_simulation(w, &g);
                b.iter_batched(
                    || {
                        let (s, client) = scheduler(w);
                        (s, client, g.clone())
                    },
                    |(mut s, client, graph)| {
                        let mut queue = VecDeque::new();
                        collect(update_graph(&mut s, client, graph), &mut queue);
                        run_to_completion(&mut s, queue);
                        release_all(&mut s, client, &g.wanted);
                        s
                    },
                    BatchSize::PerIteration,
                )
            });
        }
    }
    grp.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_independent, bench_simulate
}
criterion_main!(benches);
