//! Seceded (`long-running`) tasks and root-task queuing, the shape of Dask's
//! `test_client.py::test_dynamic_workloads_sync`: a task secedes and waits for sub-tasks
//! of its own group that a worker's client submits. Its group soon counts as root-ish, so
//! the sub-tasks are queued; they can only run if a seceded task gives its slot back
//! (`_task_slots_available`, scheduler.py:9216: `len(ws.processing) - len(ws.long_running)`).
//! When it did not, every slot was held by a task waiting on the queue: a hang.
#![allow(clippy::unwrap_used)]

mod env;

use env::*;
use rask_core::{Stimulus, TaskStatus::*};

fn keys_of(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

#[test]
fn seceded_tasks_give_their_slots_to_queued_subtasks() {
    let mut env = TestEnv::new();
    let w = env.worker(worker(A)); // 1 thread: ceil(1.1 * 1) = 2 slots
    let c = env.client();
    let outer = keys_of("work", 0..2);
    let wanted: Vec<&str> = outer.iter().map(String::as_str).collect();
    let mut out = env.submit(c, outer.iter().map(|k| task(k)).collect(), &wanted);
    let running = out.take_computes(w);
    assert_eq!(running.len(), 2);
    out.assert_empty();

    // the worker's client submits sub-tasks of the same group: with 10 tasks in a group on
    // 1 thread the group is root-ish, and both slots are taken, so they wait in the queue
    let wc = env.client();
    let inner = keys_of("work", 2..10);
    let wanted: Vec<&str> = inner.iter().map(String::as_str).collect();
    let out = env.submit(wc, inner.iter().map(|k| task(k)).collect(), &wanted);
    out.assert_empty();
    env.assert_states(&[("work-2", Queued), ("work-9", Queued)]);

    // each running task secedes (`long-running`): its slot goes to the front of the queue
    let mut next = Vec::new();
    for key in &outer {
        let mut out = env.handle(Stimulus::LongRunning {
            worker: w,
            key: k(key),
        });
        next.extend(out.take_computes(w));
        out.assert_empty();
    }
    assert_eq!(
        next.len(),
        2,
        "the seceded tasks' slots went to queued sub-tasks"
    );
    env.assert_states(&[
        ("work-0", Processing),
        ("work-2", Processing),
        ("work-3", Processing),
    ]);
    assert_eq!(env.state.worker(w).unwrap().long_running, 2);

    // the queue drains as sub-tasks secede or finish
    let mut after = Vec::new();
    for ct in next {
        let mut out = env.finish(w, &ct);
        out.take_client(wc);
        after.extend(out.take_computes(w));
        out.assert_empty();
    }
    assert_eq!(after.len(), 2);
    env.assert_states(&[
        ("work-4", Processing),
        ("work-5", Processing),
        ("work-6", Queued),
    ]);
}
