//! Things going wrong: stale and unexpected worker reports, task errors, retries, workers
//! dying.
#![allow(clippy::unwrap_used)]

mod env;

use env::*;
use rask_core::{CoreConfig, Exception, TaskStatus, TaskStatus::*, ToClient};
use rask_protocol::Value;

/// One worker at `A`, one client, a submitted graph; returns the first dispatch.
fn setup(
    tasks: Vec<TaskBuilder>,
    wanted: &[&str],
) -> (TestEnv, rask_core::WorkerId, rask_core::ClientId) {
    setup_with(CoreConfig::default(), tasks, wanted)
}

fn setup_with(
    config: CoreConfig,
    tasks: Vec<TaskBuilder>,
    wanted: &[&str],
) -> (TestEnv, rask_core::WorkerId, rask_core::ClientId) {
    let mut env = TestEnv::with_config(config);
    let w = env.worker_at(A);
    let c = env.client();
    env.submit(c, tasks, wanted).discard();
    (env, w, c)
}

// ---- stale and unexpected reports ---------------------------------------------------------

#[test]
fn stale_task_finished_from_the_running_worker_restarts_the_task() {
    let (mut env, w, c) = setup(vec![task("a")], &["a"]);
    let ct = env.computing("a");
    let mut out = env.finish_run(w, &k("a"), ct.run_id + 100);
    out.assert_free_keys(w, &["a"]);
    let again = out.take_compute(w);
    out.assert_empty();
    assert!(again.run_id > ct.run_id);
    env.assert_states(&[("a", Processing)]);
    // the old run's answer is now stale too
    let mut out = env.finish(w, &ct);
    out.assert_free_keys(w, &["a"]);
    let third = out.take_compute(w);
    out.assert_empty();
    // the current run completes normally
    let mut out = env.finish(w, &third);
    out.assert_client(c, vec![key_in_memory("a")]);
    out.assert_empty();
}

#[test]
fn stale_task_finished_from_another_worker_is_freed_there() {
    let (mut env, w, _c) = setup(vec![task("a")], &["a"]);
    let other = env.worker_at(B);
    let ct = env.computing("a");
    let mut out = env.finish_run(other, &k("a"), ct.run_id + 1);
    out.assert_free_keys(other, &["a"]);
    out.assert_empty();
    env.assert_states(&[("a", Processing)]);
    assert_eq!(env.processing_on("a"), Some(w));
}

#[test]
fn duplicate_task_finished_with_the_current_run_adds_a_replica() {
    let (mut env, w, c) = setup(vec![task("a")], &["a"]);
    let other = env.worker_at(B);
    let ct = env.computing("a");
    let mut out = env.finish(w, &ct);
    out.assert_client(c, vec![key_in_memory("a")]);
    out.assert_empty();
    // same run reported from a worker that fetched a copy
    env.finish(other, &ct).assert_empty();
    assert_eq!(env.who_has("a"), vec![A, B]);
    // a stale run id for a finished task is freed on the sender
    let mut out = env.finish_run(other, &k("a"), ct.run_id + 5);
    out.assert_free_keys(other, &["a"]);
    out.assert_empty();
}

#[test]
fn task_finished_for_an_unknown_key_frees_it() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let mut out = env.finish_run(w, &k("ghost"), 7);
    out.assert_free_keys(w, &["ghost"]);
    out.assert_empty();
    assert_eq!(env.state.n_tasks(), 0);
}

#[test]
fn task_finished_from_an_unknown_worker_is_ignored() {
    let (mut env, w, _c) = setup(vec![task("a")], &["a"]);
    let ct = env.computing("a");
    env.retire_worker(w).discard();
    env.finish(w, &ct).assert_empty();
}

#[test]
fn task_finished_for_a_released_dependency_frees_it() {
    let (mut env, w, _c) = setup(vec![task("a"), task("b").deps(&["a"])], &["b"]);
    let ca = env.computing("a");
    env.finish(w, &ca).discard();
    let cb = env.computing("b");
    let mut out = env.finish(w, &cb);
    out.assert_free_keys(w, &["a"]);
    out.discard();
    env.assert_states(&[("a", Released)]);
    let mut out = env.finish(w, &ca);
    out.assert_free_keys(w, &["a"]);
    out.assert_empty();
}

#[test]
fn stale_task_erred_from_the_running_worker_restarts_the_task() {
    let (mut env, w, _c) = setup(vec![task("a")], &["a"]);
    let ct = env.computing("a");
    let mut out = env.err_run(w, &k("a"), ct.run_id + 100);
    out.assert_free_keys(w, &["a"]);
    let again = out.take_compute(w);
    out.assert_empty();
    assert!(again.run_id > ct.run_id);
}

#[test]
fn stale_or_misplaced_task_erred_is_ignored() {
    let (mut env, w, _c) = setup(vec![task("a")], &["a"]);
    let other = env.worker_at(B);
    let ct = env.computing("a");
    env.err_run(other, &k("a"), ct.run_id + 1).assert_empty();
    env.err_run(w, &k("ghost"), 1).assert_empty();
    env.assert_states(&[("a", Processing)]);
}

#[test]
fn task_erred_for_a_finished_task_is_ignored() {
    let (mut env, w, c) = setup(vec![task("a")], &["a"]);
    let ct = env.computing("a");
    let mut out = env.finish(w, &ct);
    out.assert_client(c, vec![key_in_memory("a")]);
    out.assert_empty();
    env.err(w, &ct).assert_empty();
    env.assert_states(&[("a", Memory)]);
}

// ---- errors -------------------------------------------------------------------------------

#[test]
fn task_erred_reaches_the_client_and_dependents_inherit_the_blame() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c1 = env.client();
    let c2 = env.client();
    env.submit(
        c1,
        vec![task("a"), task("b").deps(&["a"]), task("c").deps(&["b"])],
        &["c"],
    )
    .discard();
    env.desire(c2, &["b"]).assert_empty();
    let ca = env.computing("a");
    let mut out = env.err(w, &ca);
    // each client hears about its own key with a's exception and traceback, verbatim
    out.assert_client(c1, vec![task_erred("c", "a")]);
    out.assert_client(c2, vec![task_erred("b", "a")]);
    out.assert_empty();
    env.assert_states(&[("a", Erred), ("b", Erred), ("c", Erred)]);
    let a = env.state.task_id(&k("a"));
    assert_eq!(env.task("b").exception_blame, a);
    assert_eq!(env.task("c").exception_blame, a);
    assert_eq!(
        env.task("a").rare().exception,
        Exception::Pickled(exc(&k("a")))
    );
    assert_eq!(env.task("a").rare().traceback, tb(&k("a")));
    assert!(env.task("a").rare().erred_on.contains(&w));
    assert!(env.state.worker(w).unwrap().processing.is_empty());

    // report-key repeats the blamed exception
    let mut out = env.report_key(c1, "c");
    out.assert_client(c1, vec![task_erred("c", "a")]);
    out.assert_empty();

    // releasing everything forgets the graph; a is freed where it failed
    env.release(c2, &["b"]).assert_empty();
    let mut out = env.release(c1, &["c"]);
    out.assert_free_keys(w, &["a"]);
    out.assert_empty();
    env.assert_idle();
}

#[test]
fn error_in_a_diamond_reaches_the_client_once_and_cancels_the_useless_sibling() {
    let (mut env, w, c) = setup(
        vec![
            task("a"),
            task("b").deps(&["a"]),
            task("c").deps(&["a"]),
            task("d").deps(&["b", "c"]),
        ],
        &["d"],
    );
    let ca = env.computing("a");
    env.finish(w, &ca).discard();
    let cb = env.computing("b");
    let cc = env.computing("c");
    let mut out = env.err(w, &cb);
    out.assert_client(c, vec![task_erred("d", "b")]);
    // d can never run, so c (running only for d) is cancelled and a released, as Dask's
    // waiting->released does
    out.assert_free_keys(w, &["a", "c"]);
    out.assert_empty();
    env.assert_states(&[("a", Released), ("b", Erred), ("c", Released), ("d", Erred)]);
    // c's late answer is freed
    let mut out = env.finish(w, &cc);
    out.assert_free_keys(w, &["c"]);
    out.assert_empty();
}

#[test]
fn retries_redispatch_after_free_keys_then_err() {
    let (mut env, w, c) = setup(vec![task("a").retries(1)], &["a"]);
    let first = env.computing("a");
    let mut out = env.err(w, &first);
    out.assert_free_keys(w, &["a"]);
    let second = out.take_compute(w);
    out.assert_empty();
    assert!(second.run_id > first.run_id);
    assert_eq!(env.task("a").retries, 0);
    // the retries are used up: the next error is final
    let mut out = env.err(w, &second);
    out.assert_client(c, vec![task_erred("a", "a")]);
    out.assert_empty();
    env.assert_states(&[("a", Erred)]);
}

#[test]
fn retried_dependency_keeps_its_dependents_waiting() {
    let (mut env, w, c) = setup(vec![task("a").retries(2), task("b").deps(&["a"])], &["b"]);
    let first = env.computing("a");
    let mut out = env.err(w, &first);
    out.assert_free_keys(w, &["a"]);
    let second = out.take_compute(w);
    out.assert_empty();
    env.assert_states(&[("b", Waiting)]);
    let mut out = env.finish(w, &second);
    let cb = out.take_compute(w);
    out.assert_empty();
    let mut out = env.finish(w, &cb);
    out.assert_client(c, vec![key_in_memory("b")]);
    out.assert_free_keys(w, &["a"]);
    out.assert_empty();
}

#[test]
fn retry_of_an_erred_dependent_restarts_the_failed_root() {
    let (mut env, w, c) = setup(vec![task("a"), task("b").deps(&["a"])], &["b"]);
    let ca = env.computing("a");
    let mut out = env.err(w, &ca);
    out.assert_client(c, vec![task_erred("b", "a")]);
    out.assert_empty();

    let mut out = env.retry(&["b"]);
    // a is freed where it failed and dispatched again; the client's b is retried
    out.assert_free_keys(w, &["a"]);
    let again = out.take_compute(w);
    out.assert_client(c, vec![task_retried("b")]);
    out.assert_empty();
    assert_eq!(again.key, k("a"));
    assert!(again.run_id > ca.run_id);
    env.assert_states(&[("a", Processing), ("b", Waiting)]);
    assert_eq!(
        env.task("a").rare().exception,
        Exception::Pickled(Value::Nil)
    );
    assert_eq!(env.task("b").exception_blame, None);

    let mut out = env.finish(w, &again);
    let cb = out.take_compute(w);
    out.assert_empty();
    let mut out = env.finish(w, &cb);
    out.assert_client(c, vec![key_in_memory("b")]);
    out.assert_free_keys(w, &["a"]);
    out.assert_empty();
}

#[test]
fn retry_of_an_erred_wanted_key() {
    let (mut env, w, c) = setup(vec![task("a")], &["a"]);
    let ca = env.computing("a");
    env.err(w, &ca).discard();
    let mut out = env.retry(&["a"]);
    out.assert_free_keys(w, &["a"]);
    out.take_compute(w);
    out.assert_client(c, vec![task_retried("a")]);
    out.assert_empty();
    // retrying an unknown key does nothing
    env.retry(&["ghost"]).assert_empty();
}

#[test]
fn releasing_an_erred_key_forgets_it() {
    let (mut env, w, c) = setup(vec![task("a")], &["a"]);
    let ca = env.computing("a");
    env.err(w, &ca).discard();
    let mut out = env.release(c, &["a"]);
    out.assert_free_keys(w, &["a"]);
    out.assert_empty();
    env.assert_idle();
}

// ---- workers dying ------------------------------------------------------------------------

#[test]
fn processing_task_moves_to_the_remaining_worker() {
    let (mut env, wa, c) = setup(vec![task("a")], &["a"]);
    let wb = env.worker_at(B);
    let mut out = env.kill_worker(wa);
    let ct = out.take_compute(wb);
    out.assert_remove_worker(wb, A);
    out.assert_empty();
    assert_eq!(ct.key, k("a"));
    assert_eq!(env.task("a").suspicious, 1);
    let mut out = env.finish(wb, &ct);
    out.assert_client(c, vec![key_in_memory("a")]);
    out.assert_empty();
}

#[test]
fn expected_removal_is_not_suspicious() {
    let (mut env, wa, _c) = setup(vec![task("a")], &["a"]);
    let wb = env.worker_at(B);
    let mut out = env.retire_worker(wa);
    out.take_compute(wb);
    out.assert_remove_worker(wb, A);
    out.assert_empty();
    assert_eq!(env.task("a").suspicious, 0);
}

#[test]
fn lost_result_is_recomputed_and_the_client_told() {
    let (mut env, wa, c) = setup(vec![task("a")], &["a"]);
    let ca = env.computing("a");
    env.finish(wa, &ca).discard();
    let wb = env.worker_at(B);
    let mut out = env.kill_worker(wa);
    out.assert_client(c, vec![lost_data("a")]);
    let again = out.take_compute(wb);
    out.assert_remove_worker(wb, A);
    out.assert_empty();
    assert!(again.run_id > ca.run_id);
    let mut out = env.finish(wb, &again);
    out.assert_client(c, vec![key_in_memory("a")]);
    out.assert_empty();
}

#[test]
fn lost_input_of_a_task_running_elsewhere_restarts_both() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let wb = env.worker_at(B);
    let c = env.client();
    let mut out = env.submit(
        c,
        vec![
            task("a").workers(&[A]),
            task("b").deps(&["a"]).workers(&[B]),
        ],
        &["b"],
    );
    let ca = out.take_compute(wa);
    out.assert_empty();
    let mut out = env.finish(wa, &ca);
    out.take_compute(wb);
    out.assert_empty();
    // A dies with the only copy of a: b cannot continue; a waits for A to come back
    let mut out = env.kill_worker(wa);
    out.assert_free_keys(wb, &["b"]);
    out.assert_remove_worker(wb, A);
    out.assert_empty();
    env.assert_states(&[("a", NoWorker), ("b", Waiting)]);
    let (wa2, mut out) = env.add_worker(worker(A));
    let ca2 = out.take_compute(wa2);
    out.assert_empty();
    let mut out = env.finish(wa2, &ca2);
    let cb = out.take_compute(wb);
    out.assert_empty();
    assert_eq!(who_has_of(&cb), vec![holders("a", &[A])]);
}

/// Dask's `remove_worker` (scheduler.py:5680-5720) turns the dead worker's processing tasks
/// and lost results into one recommendation dict; `a` is recomputed exactly once and `b`,
/// whose worker is gone, gets no `free-keys`.
#[test]
fn worker_dying_with_a_result_and_its_running_dependent_recomputes_once() {
    let (mut env, wa, c) = setup(vec![task("a"), task("b").deps(&["a"])], &["b"]);
    let ca = env.computing("a");
    env.finish(wa, &ca).discard();
    env.assert_states(&[("a", Memory), ("b", Processing)]);
    let wb = env.worker_at(B);
    let mut out = env.kill_worker(wa);
    let again = out.take_compute(wb);
    out.assert_remove_worker(wb, A);
    out.assert_empty();
    assert_eq!(again.key, k("a"));
    env.assert_states(&[("a", Processing), ("b", Waiting)]);
    let mut out = env.finish(wb, &again);
    let cb = out.take_compute(wb);
    out.assert_empty();
    let mut out = env.finish(wb, &cb);
    out.assert_client(c, vec![key_in_memory("b")]);
    out.assert_free_keys(wb, &["a"]);
    out.assert_empty();
}

/// The same with no other worker: `a` parks (queued, or no-worker without queuing), `b`
/// waits on it, and a new worker must pick `a` up. The stale `(b, released)`
/// recommendation releases `a` out of no-worker and, since `no-worker -> released` skips
/// `_propagate_released`, nothing ever recommends `a` again: the graph deadlocks.
#[test]
fn only_worker_dying_with_a_result_and_its_running_dependent_recovers() {
    for (saturation, parked) in [(1.1, Queued), (f64::INFINITY, NoWorker)] {
        only_worker_dying_with_a_result(saturation, parked);
    }
}

fn only_worker_dying_with_a_result(saturation: f64, parked: TaskStatus) {
    let (mut env, wa, c) = setup_with(
        CoreConfig {
            worker_saturation: saturation,
            ..CoreConfig::default()
        },
        vec![task("a"), task("b").deps(&["a"])],
        &["b"],
    );
    let ca = env.computing("a");
    env.finish(wa, &ca).discard();
    env.kill_worker(wa).assert_empty();
    env.assert_states(&[("a", parked), ("b", Waiting)]);
    let (wb, mut out) = env.add_worker(worker(B));
    let again = out.take_compute(wb);
    out.assert_empty();
    let mut out = env.finish(wb, &again);
    let cb = out.take_compute(wb);
    out.assert_empty();
    let mut out = env.finish(wb, &cb);
    out.assert_client(c, vec![key_in_memory("b")]);
    out.assert_free_keys(wb, &["a"]);
    out.assert_empty();
}

#[test]
fn lost_scattered_data_is_forgotten_and_cancelled() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let wb = env.worker_at(B);
    let c = env.client();
    let mut out = env.scatter(Some(c), "x", &[wa]);
    out.assert_client(
        c,
        vec![ToClient::KeyInMemory {
            key: k("x"),
            type_: Value::Nil,
        }],
    );
    out.assert_empty();
    env.assert_states(&[("x", Memory)]);
    assert_eq!(env.task("x").nbytes, 42);

    let mut out = env.kill_worker(wa);
    out.assert_client(c, vec![forgotten(&["x"])]);
    out.assert_remove_worker(wb, A);
    out.assert_empty();
    env.assert_forgotten(&["x"]);
    assert!(env.wants_what(c).is_empty());
}

#[test]
fn dependents_of_lost_scattered_data_are_forgotten() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let wb = env.worker_at(B);
    let c = env.client();
    env.scatter(Some(c), "x", &[wa]).discard();
    let mut out = env.submit(c, vec![task("y").deps(&["x"]).workers(&[B])], &["y"]);
    let cy = out.take_compute(wb);
    out.assert_empty();
    assert_eq!(who_has_of(&cy), vec![holders("x", &[A])]);
    let mut out = env.kill_worker(wa);
    out.assert_client(c, vec![forgotten(&["x"]), forgotten(&["y"])]);
    out.assert_free_keys(wb, &["y"]);
    out.assert_remove_worker(wb, A);
    out.assert_empty();
    env.assert_idle();
}

#[test]
fn replica_on_a_surviving_worker_keeps_the_result() {
    let (mut env, wa, _c) = setup(vec![task("a")], &["a"]);
    let ca = env.computing("a");
    env.finish(wa, &ca).discard();
    let wb = env.worker_at(B);
    env.add_keys(wb, &["a"]).assert_empty();
    let mut out = env.kill_worker(wa);
    out.assert_remove_worker(wb, A);
    out.assert_empty();
    env.assert_states(&[("a", Memory)]);
    assert_eq!(env.who_has("a"), vec![B]);
}

#[test]
fn killed_worker_after_allowed_failures_errs_the_task() {
    let mut env = TestEnv::with_config(CoreConfig {
        allowed_failures: 1,
        ..CoreConfig::default()
    });
    let w1 = env.worker_at(A);
    let c = env.client();
    env.submit(c, vec![task("a"), task("b").deps(&["a"])], &["b"])
        .discard();
    let w2 = env.worker_at(B);
    let w3 = env.worker_at(C);

    // first death: one suspicious strike, rescheduled
    let mut out = env.kill_worker(w1);
    let (next, _) = out.take_compute_of("a");
    out.assert_remove_worker(w2, A);
    out.assert_remove_worker(w3, A);
    out.assert_empty();
    assert_eq!(env.task("a").suspicious, 1);
    let survivor = if next == w2 { w3 } else { w2 };
    let next_addr = env.state.worker(next).unwrap().address.to_string();

    // second death: allowed_failures + 1 = 2 workers died running it -> erred
    let mut out = env.kill_worker(next);
    let msgs = out.take_client(c);
    out.assert_remove_worker(survivor, &next_addr);
    out.assert_empty();
    env.assert_states(&[("a", Erred), ("b", Erred)]);
    assert_eq!(env.task("a").suspicious, 2);
    assert_eq!(msgs.len(), 1);
    let ToClient::TaskErred {
        key,
        exception,
        traceback,
    } = &msgs[0]
    else {
        panic!("{msgs:?}")
    };
    assert_eq!(key, &k("b"));
    assert_eq!(traceback, &Value::Nil);
    // what the stock scheduler raises, KilledWorker('a', <the last worker>, 1), for the
    // server to pickle
    assert_eq!(
        exception,
        &Exception::KilledWorker {
            key: k("a"),
            last_worker: next_addr.as_str().into(),
            allowed_failures: 1,
        }
    );
}

#[test]
fn losing_the_last_worker_parks_tasks_until_a_worker_comes() {
    for (saturation, parked) in [(1.1, Queued), (f64::INFINITY, NoWorker)] {
        losing_the_last_worker(saturation, parked);
    }
}

/// With no threads left every group is "much larger than the cluster": root-ish tasks wait
/// in the queue (as in Dask), or in no-worker without queuing.
fn losing_the_last_worker(saturation: f64, parked: TaskStatus) {
    let (mut env, wa, c) = setup_with(
        CoreConfig {
            worker_saturation: saturation,
            ..CoreConfig::default()
        },
        vec![task("a"), task("b")],
        &["a", "b"],
    );
    env.kill_worker(wa).assert_empty();
    env.assert_states(&[("a", parked), ("b", parked)]);
    let (wb, mut out) = env.add_worker(worker(B).nthreads(2));
    let cts = out.assert_computes(wb, &["a", "b"]);
    out.assert_empty();
    for ct in &cts {
        let mut out = env.finish(wb, ct);
        assert_eq!(out.take_client(c).len(), 1);
        out.assert_empty();
    }
}

#[test]
fn removing_an_unknown_worker_does_nothing() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    env.retire_worker(w).assert_empty();
    env.retire_worker(w).assert_empty();
    assert!(env.state.worker(w).is_none());
    assert_eq!(env.state.worker_id(A), None);
}

/// `d` depends on two failed roots, `a` and `b`. Retrying `b` alone (another client's
/// future) makes Dask's `erred -> released` recommend `d` to `waiting` although `a` is still
/// erred: `d` then waits on an erred task forever. It must err again instead, blamed on `a`.
#[test]
fn retrying_one_of_two_failed_inputs_keeps_the_dependent_erred() {
    let mut env = TestEnv::new();
    let w = env.worker(worker(A).nthreads(2));
    let c1 = env.client();
    let c2 = env.client();
    let mut out = env.submit(
        c1,
        vec![task("a"), task("b"), task("d").deps(&["a", "b"])],
        &["d"],
    );
    let ca = out.take_compute_of("a").1;
    let cb = out.take_compute_of("b").1;
    out.assert_empty();
    env.desire(c2, &["b"]).assert_empty();
    let mut out = env.err(w, &ca);
    out.assert_client(c1, vec![task_erred("d", "a")]);
    out.assert_empty();
    let mut out = env.err(w, &cb);
    out.assert_client(c2, vec![task_erred("b", "b")]);
    out.assert_empty();

    let mut out = env.retry(&["b"]);
    out.assert_free_keys(w, &["b"]);
    let cb2 = out.take_compute(w);
    out.assert_client(c2, vec![task_retried("b")]);
    // d is retried with b, but a is still erred: d errs again, blamed on a
    out.assert_client(c1, vec![task_retried("d"), task_erred("d", "a")]);
    out.assert_empty();
    env.assert_states(&[("a", Erred), ("b", Processing), ("d", Erred)]);

    let mut out = env.finish(w, &cb2);
    out.assert_client(c2, vec![key_in_memory("b")]);
    out.assert_empty();
    let mut out = env.report_key(c1, "d");
    out.assert_client(c1, vec![task_erred("d", "a")]);
    out.assert_empty();
}

/// When `a` fails, `c` errs and `b` (needed only by `c`) may be released instead of erred,
/// keeping the `exception_blame` it was given on the way (Dask does the same when its
/// recommendation dict replaces `b: erred` by `b: released`). After a retry everything runs;
/// a later graph wanting `b` must still run it. Dask recommends `waiting` for every released
/// wanted key (scheduler.py:4932-4940); rask's `update_graph` skips released tasks with an
/// `exception_blame`, so once recommendations replace each other as in Dask, a stale blame
/// leaves `b` released forever. Passes today only because the `Recs` stack keeps both
/// recommendations for `b`; a regression test for that fix.
#[test]
fn stale_blame_does_not_block_a_later_graph() {
    let (mut env, w, c) = setup(
        vec![
            task("a"),
            task("c").deps(&["a", "b"]),
            task("b").deps(&["a"]),
        ],
        &["c"],
    );
    let ca = env.computing("a");
    let mut out = env.err(w, &ca);
    out.assert_client(c, vec![task_erred("c", "a")]);
    out.discard();
    env.assert_states(&[("a", Erred), ("c", Erred)]);
    // b is released (nothing needs it any more) or erred, depending on the order
    let b_state = env.state_of("b").unwrap();
    assert!(b_state == Released || b_state == Erred, "{b_state:?}");

    // retry: everything recomputes
    env.retry(&["c"]).discard();
    for key in ["a", "b", "c"] {
        let ct = env.computing(key);
        env.finish(w, &ct).discard();
    }
    env.assert_states(&[("b", Released), ("c", Memory)]);

    // another graph wants b: it must run
    let c2 = env.client();
    let mut out = env.submit(c2, vec![task("b").deps(&["a"])], &["b"]);
    let (_, ca2) = out.take_compute_of("a");
    out.assert_empty();
    let mut out = env.finish(w, &ca2);
    out.take_compute_of("b");
    out.assert_empty();
}

/// A worker dies holding scattered `x`, the result `a` and running `b`; `d` needs `b` and
/// `x`. Losing `x` forgets `d`, after which nothing needs `a` or `b` any more: they must be
/// forgotten too, not recomputed and left behind. With Dask's dict semantics for
/// recommendations, `a`'s memory->released recommends its waiter `b` to `waiting`, replacing
/// `b`'s pending `forgotten`; released->waiting must then notice nobody needs `b`.
/// (Passes today by the luck of the `Recs` stack order; a regression test for that fix.)
#[test]
fn worker_death_that_orphans_a_running_task_forgets_it() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let wb = env.worker_at(B);
    let c = env.client();
    let mut out = env.submit(
        c,
        vec![
            task("a").workers(&[A]),
            task("b").deps(&["a"]).workers(&[A]),
        ],
        &["b"],
    );
    let ca = out.take_compute(wa);
    out.assert_empty();
    let mut out = env.scatter(Some(c), "x", &[wa]);
    out.take_client(c);
    out.assert_empty();
    env.submit(c, vec![task("d").deps(&["b", "x"])], &["d"])
        .assert_empty();
    env.release(c, &["b"]).assert_empty();
    let mut out = env.finish(wa, &ca);
    out.take_compute(wa);
    out.assert_empty();
    env.assert_states(&[
        ("a", Memory),
        ("b", Processing),
        ("d", Waiting),
        ("x", Memory),
    ]);

    let mut out = env.kill_worker(wa);
    out.assert_client(c, vec![forgotten(&["x"]), forgotten(&["d"])]);
    out.assert_remove_worker(wb, A);
    out.assert_empty();
    env.assert_idle();
}

/// `b` waits on `a`; `b`'s only dependent `d` errs through another input, so `b` is released
/// (not erred); then `a` errs. A later graph building on `b` must err at once with `a`'s
/// exception. rask moves `b` released -> waiting on the erred `a` (Dask's validate would
/// assert there), and the new key waits forever without a word to its client.
#[test]
fn graph_on_a_released_task_with_an_erred_input_errs() {
    let mut env = TestEnv::new();
    let w = env.worker(worker(A).nthreads(2));
    let c1 = env.client();
    let c2 = env.client();
    let mut out = env.submit(
        c1,
        vec![
            task("a"),
            task("b").deps(&["a"]),
            task("e"),
            task("d").deps(&["b", "e"]),
        ],
        &["d"],
    );
    let ca = out.take_compute_of("a").1;
    let ce = out.take_compute_of("e").1;
    out.assert_empty();
    env.desire(c2, &["a"]).assert_empty();
    let mut out = env.err(w, &ce);
    out.assert_client(c1, vec![task_erred("d", "e")]);
    out.assert_empty();
    env.assert_states(&[("a", Processing), ("b", Released), ("d", Erred)]);
    let mut out = env.err(w, &ca);
    out.assert_client(c2, vec![task_erred("a", "a")]);
    out.assert_empty();

    let c3 = env.client();
    let mut out = env.submit(c3, vec![task("f").deps(&["b"])], &["f"]);
    // (reported by the transition and again by update_graph, as for any erred key)
    out.assert_client(c3, vec![task_erred("f", "a"), task_erred("f", "a")]);
    out.assert_empty();
    env.assert_states(&[("b", Erred), ("f", Erred)]);
}

/// `b` is in memory; its input `a` was released, then recomputed for another client and
/// failed. When `b` is lost, it cannot be recomputed: Dask's memory->released just leaves it
/// released (scheduler.py:2590-2595), so `b`'s client hears `lost-data` and then nothing,
/// forever. It should err, blamed on `a`.
#[test]
fn lost_result_with_an_erred_input_errs() {
    let (mut env, wa, c1) = setup(vec![task("a"), task("b").deps(&["a"])], &["b"]);
    let ca = env.computing("a");
    env.finish(wa, &ca).discard();
    let cb = env.computing("b");
    let mut out = env.finish(wa, &cb);
    out.assert_client(c1, vec![key_in_memory("b")]);
    out.assert_free_keys(wa, &["a"]);
    out.assert_empty();
    env.assert_states(&[("a", Released), ("b", Memory)]);

    let c2 = env.client();
    let mut out = env.submit(c2, vec![task("a")], &["a"]);
    let ca2 = out.take_compute(wa);
    out.assert_empty();
    let mut out = env.err(wa, &ca2);
    out.assert_client(c2, vec![task_erred("a", "a")]);
    out.assert_empty();

    let wb = env.worker_at(B);
    let mut out = env.kill_worker(wa);
    out.assert_client(c1, vec![lost_data("b"), task_erred("b", "a")]);
    out.assert_remove_worker(wb, A);
    out.assert_empty();
    env.assert_states(&[("a", Erred), ("b", Erred)]);
}
