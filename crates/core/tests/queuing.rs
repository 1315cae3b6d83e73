//! Root-task queuing (`worker-saturation`): root-ish tasks go to a worker only while it has
//! a free slot; downstream tasks run before new roots; joining and resuming workers take
//! from the queue.
#![allow(clippy::unwrap_used)]

mod env;

use env::*;
use rask_core::{CoreConfig, Stimulus, TaskStatus::*};
use rask_protocol::Key;

/// `n` root tasks `x-0..` (one group, `x`), each with a dependent `y-i`, all wanted.
fn roots_with_dependents(n: usize) -> (Vec<TaskBuilder>, Vec<String>) {
    let mut tasks = Vec::new();
    let mut wanted = Vec::new();
    for i in 0..n {
        tasks.push(task(&format!("x-{i}")).order(2 * i as i64));
        tasks.push(
            task(&format!("y-{i}"))
                .deps(&[&format!("x-{i}")])
                .order(2 * i as i64 + 1),
        );
        wanted.push(format!("y-{i}"));
    }
    (tasks, wanted)
}

/// Submits `n` independent tasks `x-0..` (one group, `x`), all wanted.
fn submit_roots(env: &mut TestEnv, c: rask_core::ClientId, n: usize) -> Out {
    let names: Vec<String> = (0..n).map(|i| format!("x-{i}")).collect();
    let tasks = names.iter().map(|n| task(n)).collect();
    let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
    env.submit(c, tasks, &wanted)
}

#[test]
fn only_saturation_many_roots_go_out_and_dependents_run_before_new_roots() {
    let mut env = TestEnv::new();
    let w = env.worker(worker(A).nthreads(2));
    let c = env.client();
    let (tasks, wanted) = roots_with_dependents(10);
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let mut out = env.submit(c, tasks, &wanted);
    // ceil(1.1 * 2) = 3 slots, filled in priority order
    let first = out.assert_computes(w, &["x-0", "x-1", "x-2"]);
    out.assert_empty();
    env.assert_states(&[("x-3", Queued), ("x-9", Queued), ("y-0", Waiting)]);

    // x-0 done: its dependent takes the freed slot, no new root goes out
    let mut out = env.finish(w, &first[0]);
    let y0 = out.assert_computes(w, &["y-0"]).remove(0);
    out.assert_empty();
    env.assert_states(&[("x-3", Queued)]);

    // y-0 done: the slot goes to the next root, and x-0 is released
    let mut out = env.finish(w, &y0);
    out.take_client(c);
    out.assert_free_keys(w, &["x-0"]);
    out.assert_computes(w, &["x-3"]);
    out.assert_empty();
}

#[test]
fn a_joining_worker_takes_from_the_queue() {
    let mut env = TestEnv::new();
    let wa = env.worker(worker(A));
    let c = env.client();
    let mut out = submit_roots(&mut env, c, 10);
    assert_eq!(out.take_computes(wa).len(), 2); // ceil(1.1 * 1)
    out.assert_empty();
    let (wb, mut out) = env.add_worker(worker(B).nthreads(4));
    // ceil(1.1 * 4) = 5; with 1 + 4 threads the group (10) is no longer > 2 * 5, but
    // tasks already queued still leave through the queue
    assert_eq!(out.take_computes(wb).len(), 5);
    out.assert_empty();
    assert_eq!(env.state.queued_len(), 3);
}

#[test]
fn a_paused_worker_gets_no_roots_until_it_resumes() {
    let mut env = TestEnv::new();
    let w = env.worker(worker(A));
    let c = env.client();
    let mut out = submit_roots(&mut env, c, 6);
    let cts = out.take_computes(w);
    out.assert_empty();
    env.set_status(w, "paused").assert_empty();
    let mut out = env.finish(w, &cts[0]);
    out.take_client(c);
    out.assert_empty();
    let mut out = env.set_status(w, "running");
    out.assert_computes(w, &["x-2"]);
    out.assert_empty();
}

#[test]
fn releasing_queued_tasks_empties_the_queue() {
    let mut env = TestEnv::new();
    let w = env.worker(worker(A));
    let c = env.client();
    submit_roots(&mut env, c, 6).discard();
    assert_eq!(env.state.queued_len(), 4);
    let mut out = env.release(c, &["x-0", "x-1", "x-2", "x-3", "x-4", "x-5"]);
    out.assert_free_keys(w, &["x-0", "x-1"]);
    out.assert_empty();
    assert_eq!(env.state.queued_len(), 0);
    env.assert_idle();
}

#[test]
fn infinite_saturation_sends_every_root_at_once() {
    let mut env = TestEnv::with_config(CoreConfig {
        worker_saturation: f64::INFINITY,
        ..CoreConfig::default()
    });
    let w = env.worker(worker(A));
    let c = env.client();
    let mut out = submit_roots(&mut env, c, 6);
    assert_eq!(out.take_computes(w).len(), 6);
    out.assert_empty();
}

/// Without queuing, sibling roots go out in priority order in runs, one worker's share of
/// the group each (`decide_worker_rootish_queuing_disabled`): 8 roots on two one-thread
/// workers are two runs of 4, so neighbours meet on one worker.
#[test]
fn without_queuing_sibling_roots_go_to_one_worker_in_runs() {
    let mut env = TestEnv::with_config(CoreConfig {
        worker_saturation: f64::INFINITY,
        ..CoreConfig::default()
    });
    let wa = env.worker(worker(A));
    let wb = env.worker(worker(B));
    let c = env.client();
    let mut out = submit_roots(&mut env, c, 8);
    let keys = |cts: Vec<rask_core::ComputeTask>| -> Vec<Key> {
        cts.into_iter().map(|ct| ct.key).collect()
    };
    let (on_a, on_b) = (keys(out.take_computes(wa)), keys(out.take_computes(wb)));
    out.assert_empty();
    let (first, second) = (
        ks(&["x-0", "x-1", "x-2", "x-3"]),
        ks(&["x-4", "x-5", "x-6", "x-7"]),
    );
    assert!(
        (on_a == first && on_b == second) || (on_a == second && on_b == first),
        "runs of 4: {on_a:?} {on_b:?}"
    );
}

/// A data producer (a `DataNode`, a reader's task) is root-ish whatever the size of its
/// group, so it is queued: of three on one thread, two go out.
#[test]
fn data_producers_are_queued_in_a_small_group() {
    let mut env = TestEnv::new();
    let w = env.worker(worker(A));
    let c = env.client();
    let tasks = vec![
        task("read-0").data_producer(),
        task("read-1").data_producer(),
        task("read-2").data_producer(),
    ];
    let mut out = env.submit(c, tasks, &["read-0", "read-1", "read-2"]);
    out.assert_computes(w, &["read-0", "read-1"]);
    out.assert_empty();
    env.assert_states(&[("read-2", Queued)]);
}

#[test]
fn restricted_tasks_are_never_queued() {
    let mut env = TestEnv::new();
    let w = env.worker(worker(A));
    let c = env.client();
    let names: Vec<String> = (0..6).map(|i| format!("x-{i}")).collect();
    let tasks = names.iter().map(|n| task(n).workers(&[A])).collect();
    let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut out = env.submit(c, tasks, &wanted);
    assert_eq!(out.take_computes(w).len(), 6);
    out.assert_empty();
}

/// `no-worker -> processing` is Dask's `_transition_no_worker_processing`: the task goes
/// wherever `decide_worker` puts it, never to the queue (`no-worker -> queued` is no edge),
/// even if it has become root-ish meanwhile: here its restriction was lifted.
#[test]
fn a_task_leaving_no_worker_is_not_queued() {
    let mut env = TestEnv::new();
    let c = env.client();
    let names: Vec<String> = (0..6).map(|i| format!("x-{i}")).collect();
    let tasks = names.iter().map(|n| task(n).workers(&[A])).collect();
    let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
    env.submit(c, tasks, &wanted).assert_empty();
    env.assert_states(&[("x-0", NoWorker), ("x-5", NoWorker)]);
    for n in &names {
        env.handle(Stimulus::SetRestrictions {
            key: k(n),
            workers: None,
        })
        .assert_empty();
    }
    let (w, mut out) = env.add_worker(worker(B));
    assert_eq!(out.take_computes(w).len(), 6);
    out.assert_empty();
    assert_eq!(env.state.queued_len(), 0);
}

/// `n` roots submitted to one worker of `nthreads` threads: the env, the client, the
/// worker and the roots it was sent.
fn roots_on_one_worker(
    nthreads: u32,
    n: usize,
) -> (
    TestEnv,
    rask_core::ClientId,
    rask_core::WorkerId,
    Vec<rask_core::ComputeTask>,
) {
    let mut env = TestEnv::new();
    let w = env.worker(worker(A).nthreads(nthreads));
    let c = env.client();
    let sent = submit_roots(&mut env, c, n).take_computes(w);
    (env, c, w, sent)
}

/// Finishes `ct` as a task of `duration` seconds with an `nbytes` result, and returns the
/// roots sent to `w` after it (the client hears of the result).
fn finish_root(
    env: &mut TestEnv,
    (c, w): (rask_core::ClientId, rask_core::WorkerId),
    ct: &rask_core::ComputeTask,
    duration: f64,
    nbytes: i64,
) -> Vec<rask_core::ComputeTask> {
    let mut out = env.finish_measured(w, &ct.key, ct.run_id, duration, nbytes);
    out.take_client(c);
    let sent = out.take_computes(w);
    out.assert_empty();
    sent
}

/// Short roots: once one has finished, a worker may hold round trip (5 ms) / duration more
/// per thread, at most 32; the next graph starts again at Dask's cap.
#[test]
fn short_roots_fill_a_worker_beyond_saturation_until_the_queue_empties() {
    // ceil(1.1 * 1) = 2 at first; 100 µs tasks: 50 per round trip, capped at 32, so
    // 2 + 32 slots, one of them still busy
    let (mut env, c, w, first) = roots_on_one_worker(1, 100);
    assert_eq!(first.len(), 2);
    assert_eq!(finish_root(&mut env, (c, w), &first[0], 1e-4, 28).len(), 33);
    assert_eq!(env.state.queued_len(), 100 - 2 - 33);

    // 1 ms tasks: 5 per round trip, rounded down to 4
    let (mut env, c, w, first) = roots_on_one_worker(1, 100);
    let sent = finish_root(&mut env, (c, w), &first[0], 1e-3, 28);
    assert_eq!(sent.len(), 1 + 4);

    // the queue empties; the next graph's roots get Dask's cap until one finishes
    let (mut env, c, w, first) = roots_on_one_worker(1, 10);
    let rest = finish_root(&mut env, (c, w), &first[0], 1e-4, 28);
    assert_eq!(rest.len(), 8);
    assert_eq!(env.state.queued_len(), 0);
    for ct in first[1..].iter().chain(&rest) {
        assert!(finish_root(&mut env, (c, w), ct, 1e-4, 28).is_empty());
    }
    let names: Vec<String> = (0..10).map(|i| format!("y-{i}")).collect();
    let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut out = env.submit(c, names.iter().map(|n| task(n)).collect(), &wanted);
    assert_eq!(out.take_computes(w).len(), 2);
    out.assert_empty();
}

/// What queuing is for stays: roots with big results get only as many extra as fit in
/// 8 MiB per thread, and roots longer than a round trip none.
#[test]
fn big_or_long_roots_get_few_or_no_extra_slots() {
    // ceil(1.1 * 2) = 3 at first; 3 MiB results: 2 more per thread fit in 8 MiB
    let (mut env, c, w, first) = roots_on_one_worker(2, 100);
    assert_eq!(first.len(), 3);
    let sent = finish_root(&mut env, (c, w), &first[0], 1e-4, 3 << 20);
    assert_eq!(sent.len(), 1 + 2 * 2);

    let (mut env, c, w, first) = roots_on_one_worker(2, 100);
    assert_eq!(finish_root(&mut env, (c, w), &first[0], 0.01, 28).len(), 1);
}
