//! A big graph taken in over several turns (`ingest.rs`): the same decisions as one turn,
//! other clients' small graphs in between, and what could meet its half-made tasks waits.
#![allow(clippy::unwrap_used)]

mod env;

use env::*;
use rask_core::{Command, CoreConfig, Stimulus};

const A: &str = "tcp://10.0.0.1:1";
const B: &str = "tcp://10.0.0.2:1";

/// 24 roots in pairs, each pair summed, the sums summed: 37 tasks in `dask.order` order.
fn tree() -> (Vec<TaskBuilder>, Vec<String>) {
    let mut tasks = Vec::new();
    let mut sums = Vec::new();
    for i in 0..12 {
        tasks.push(task(&format!("x-{}", 2 * i)));
        tasks.push(task(&format!("x-{}", 2 * i + 1)));
        let s = format!("s-{i}");
        tasks.push(task(&s).deps(&[&format!("x-{}", 2 * i), &format!("x-{}", 2 * i + 1)]));
        sums.push(s);
    }
    let deps: Vec<&str> = sums.iter().map(String::as_str).collect();
    tasks.push(task("total").deps(&deps));
    (tasks, sums)
}

/// Every command of taking in `tree()`, with the given tasks per turn, on two workers
/// with two threads each; and how many turns it took.
fn take_in(batch: usize, config: CoreConfig) -> (Vec<Command>, usize) {
    let mut env = TestEnv::with_config(config);
    env.state.set_ingest_batch(batch);
    env.worker(worker(A).nthreads(2));
    env.worker(worker(B).nthreads(2));
    let c = env.client();
    let mut commands = env.submit(c, tree().0, &["total"]).take_all();
    let mut turns = 1;
    while env.state.ingesting() {
        assert!(env.state.take_graphs_taken().is_empty());
        commands.extend(env.ingest_step().take_all());
        turns += 1;
    }
    assert_eq!(env.state.take_graphs_taken(), vec![c]);
    (commands, turns)
}

#[test]
fn a_graph_in_turns_is_dispatched_as_in_one_turn() {
    for config in [
        CoreConfig::default(),
        // without queuing every root is placed at once
        CoreConfig {
            worker_saturation: f64::INFINITY,
            ..CoreConfig::default()
        },
    ] {
        let (one, turns) = take_in(1000, config.clone());
        assert_eq!(turns, 1);
        let (several, turns) = take_in(3, config);
        assert!(turns > 10, "{turns} turns");
        assert!(one
            .iter()
            .any(|c| matches!(c, Command::Worker(_, rask_core::ToWorker::ComputeTask(_)))));
        assert_eq!(one, several);
    }
}

#[test]
fn another_clients_small_graph_goes_between_the_turns() {
    let mut env = TestEnv::new();
    env.state.set_ingest_batch(3);
    let w = env.worker(worker(A));
    let (c1, c2) = (env.client(), env.client());
    env.submit(c1, tree().0, &["total"]).assert_empty();
    assert!(env.state.ingesting());
    let mut out = env.submit(c2, vec![task("probe")], &["probe"]);
    let ct = out.take_compute(w);
    out.assert_empty();
    let mut out = env.finish(w, &ct);
    assert_eq!(out.take_client(c2).len(), 1);
    out.assert_empty();
    assert_eq!(env.state.take_graphs_taken(), vec![c2]);
    assert!(env.state.ingesting());
    while env.state.ingesting() {
        env.ingest_step().discard();
    }
    assert_eq!(env.state.take_graphs_taken(), vec![c1]);
}

#[test]
fn a_graph_that_names_a_half_made_task_waits_for_it() {
    let mut env = TestEnv::new();
    env.state.set_ingest_batch(3);
    env.worker(worker(A));
    let (c1, c2) = (env.client(), env.client());
    env.submit(c1, tree().0, &["total"]).assert_empty();
    // `x-0` is in, not yet linked or wanted: c2's graph on it waits, and so does what c2
    // says next
    assert!(env.state.task(&k("x-0")).is_some());
    env.submit(c2, vec![task("y").deps(&["x-0"])], &["y"])
        .assert_empty();
    env.release(c2, &["y"]).assert_empty();
    assert!(env.state.task(&k("y")).is_none());
    while env.state.ingesting() {
        env.ingest_step().discard();
    }
    assert_eq!(env.state.take_graphs_taken(), vec![c1, c2]);
    // c2's graph went in, then its release: `y` is forgotten, c1's graph stays
    assert!(env.state.task(&k("y")).is_none());
    assert!(env.state.task(&k("x-0")).is_some());
    assert!(env.wants_what(c2).is_empty());
}

#[test]
fn a_restart_waits_for_the_graph_being_taken_in() {
    let mut env = TestEnv::new();
    env.state.set_ingest_batch(3);
    env.worker(worker(A));
    let c = env.client();
    env.submit(c, tree().0, &["total"]).assert_empty();
    env.handle(Stimulus::ClearTasks).assert_empty();
    assert!(env.state.task(&k("x-0")).is_some());
    while env.state.ingesting() {
        env.ingest_step().discard();
    }
    env.assert_idle();
    assert!(env.wants_what(c).is_empty());
}

/// Its tasks start once all of it waits: a root that finished before its dependent waited
/// would be released at once and computed again.
#[test]
fn a_root_that_finishes_between_turns_keeps_its_result() {
    let mut env = TestEnv::new();
    env.state.set_ingest_batch(1);
    let w = env.worker(worker(A));
    let c = env.client();
    env.submit(c, tree().0, &["total"]).assert_empty();
    let ct = loop {
        assert!(env.state.ingesting(), "no task was dispatched");
        let mut out = env.ingest_step();
        if out
            .commands()
            .iter()
            .any(|c| matches!(c, Command::Worker(_, rask_core::ToWorker::ComputeTask(_))))
        {
            let ct = out.take_compute(w);
            out.discard();
            break ct;
        }
        out.assert_empty();
    };
    assert_eq!(ct.key, k("x-0"));
    env.finish(w, &ct).discard();
    let x0 = env.state.task(&k("x-0")).unwrap();
    assert_eq!(x0.state, rask_core::TaskStatus::Memory);
}
