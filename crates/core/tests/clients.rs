//! Client-driven and bookkeeping stimuli: cancel, several clients sharing keys, report-key,
//! client-desires-keys, fire-and-forget, scatter, add-keys, release-worker-data,
//! refresh-who-has, reschedule, and graphs on top of forgotten or erred keys.
#![allow(clippy::unwrap_used)]

mod env;

use env::*;
use rask_core::{Stimulus, TaskStatus::*, ToClient, FIRE_AND_FORGET};
use rask_protocol::Value;

// ---- cancel-keys --------------------------------------------------------------------------

#[test]
fn cancel_frees_the_running_task_and_tells_every_client() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c1 = env.client();
    let _c2 = env.client();
    let mut out = env.submit(c1, vec![task("a")], &["a"]);
    let ca = out.take_compute(w);
    out.assert_empty();
    let mut out = env.handle(Stimulus::CancelKeys {
        client: c1,
        keys: ks(&["a"]),
        force: false,
        reason: Some("cancelled by user".into()),
        msg: Some("because".into()),
    });
    out.assert_free_keys(w, &["a"]);
    assert_eq!(
        out.take_broadcasts(),
        vec![ToClient::CancelledKeys {
            keys: ks(&["a"]),
            reason: Some("cancelled by user".into()),
            msg: Some("because".into()),
        }]
    );
    out.assert_empty();
    env.assert_idle();
    // the worker's answer comes too late
    let mut out = env.finish(w, &ca);
    out.assert_free_keys(w, &["a"]);
    out.assert_empty();
}

#[test]
fn cancel_takes_the_clients_dependents_along() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    env.submit(c, vec![task("a"), task("b").deps(&["a"])], &["a", "b"])
        .discard();
    let mut out = env.cancel(c, &["a"], false);
    out.assert_free_keys(w, &["a"]);
    let b = out.take_broadcasts();
    out.assert_empty();
    assert_eq!(b.len(), 1);
    let ToClient::CancelledKeys { mut keys, .. } = b[0].clone() else {
        panic!("{b:?}")
    };
    keys.sort();
    assert_eq!(keys, ks(&["a", "b"]));
    env.assert_idle();
}

#[test]
fn cancel_does_not_take_a_key_another_client_wants_unless_forced() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c1 = env.client();
    let c2 = env.client();
    env.submit(c1, vec![task("a")], &["a"]).discard();
    env.submit(c2, vec![task("a")], &["a"]).assert_empty();

    let mut out = env.cancel(c1, &["a"], false);
    assert_eq!(out.take_broadcasts(), vec![cancelled(&[])]);
    out.assert_empty();
    env.assert_states(&[("a", Processing)]);
    assert_eq!(env.task("a").who_wants.len(), 2);

    let mut out = env.cancel(c1, &["a"], true);
    out.assert_free_keys(w, &["a"]);
    assert_eq!(out.take_broadcasts(), vec![cancelled(&["a"])]);
    out.assert_empty();
    env.assert_idle();
    assert!(env.wants_what(c2).is_empty());
}

#[test]
fn cancel_from_an_unknown_client_or_of_unknown_keys() {
    let mut env = TestEnv::new();
    let c = env.client();
    env.submit(c, vec![task("a")], &["a"]).assert_empty();
    env.remove_client(c).assert_empty();
    env.cancel(c, &["a"], true).assert_empty();
    let c2 = env.client();
    let mut out = env.cancel(c2, &["ghost"], false);
    assert_eq!(out.take_broadcasts(), vec![cancelled(&[])]);
    out.assert_empty();
}

// ---- several clients ----------------------------------------------------------------------

#[test]
fn two_clients_share_a_key_until_both_release_it() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c1 = env.client();
    let c2 = env.client();
    let mut out = env.submit(c1, vec![task("a")], &["a"]);
    let ca = out.take_compute(w);
    out.assert_empty();
    // the same key again: nothing new runs
    env.submit(c2, vec![task("a")], &["a"]).assert_empty();
    let mut out = env.finish(w, &ca);
    out.assert_key_in_memory(c1, "a");
    out.assert_key_in_memory(c2, "a");
    out.assert_empty();

    env.release(c1, &["a"]).assert_empty();
    env.assert_states(&[("a", Memory)]);
    let mut out = env.release(c2, &["a"]);
    out.assert_free_keys(w, &["a"]);
    out.assert_empty();
    env.assert_idle();
}

#[test]
fn a_second_client_arriving_after_the_result_is_told_at_once() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c1 = env.client();
    let c2 = env.client();
    let mut out = env.submit(c1, vec![task("a")], &["a"]);
    let ca = out.take_compute(w);
    out.assert_empty();
    let mut out = env.finish(w, &ca);
    out.assert_client(c1, vec![key_in_memory("a")]);
    out.assert_empty();
    let mut out = env.submit(c2, vec![task("a")], &["a"]);
    out.assert_client(c2, vec![key_in_memory("a")]);
    out.assert_empty();
}

#[test]
fn client_desires_keys_on_a_finished_key_reports_it() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c1 = env.client();
    let c2 = env.client();
    let mut out = env.submit(c1, vec![task("a")], &["a"]);
    let ca = out.take_compute(w);
    out.assert_empty();
    env.finish(w, &ca).discard();

    let mut out = env.desire(c2, &["a", "ghost"]);
    out.assert_client(c2, vec![key_in_memory("a")]);
    out.assert_empty();
    // unknown keys create nothing
    assert!(env.state.task(&k("ghost")).is_none());
    // c2 now holds a on its own
    env.release(c1, &["a"]).assert_empty();
    env.assert_states(&[("a", Memory)]);
}

#[test]
fn client_desires_keys_on_a_running_key_reports_later() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c1 = env.client();
    let c2 = env.client();
    let mut out = env.submit(c1, vec![task("a")], &["a"]);
    let ca = out.take_compute(w);
    out.assert_empty();
    env.desire(c2, &["a"]).assert_empty();
    let mut out = env.finish(w, &ca);
    out.assert_key_in_memory(c1, "a");
    out.assert_key_in_memory(c2, "a");
    out.assert_empty();
}

#[test]
fn report_key_in_every_state() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a"), task("e")], &["a", "e"]);
    let ca = out.take_compute_of("a").1;
    // rask does not queue: both go to the one-thread worker
    out.take_compute_of("e");
    out.assert_empty();
    // processing: nothing to say yet
    env.report_key(c, "a").assert_empty();
    env.finish(w, &ca).discard();
    let mut out = env.report_key(c, "a");
    out.assert_client(c, vec![key_in_memory("a")]);
    out.assert_empty();

    let ce = env.computing("e");
    env.err(w, &ce).discard();
    let mut out = env.report_key(c, "e");
    out.assert_client(c, vec![task_erred("e", "e")]);
    out.assert_empty();

    // forgotten / unknown: cancelled
    let mut out = env.report_key(c, "ghost");
    out.assert_client(c, vec![cancelled(&["ghost"])]);
    out.assert_empty();
}

// ---- fire and forget ----------------------------------------------------------------------

#[test]
fn fire_and_forget_task_is_forgotten_once_done() {
    let mut env = TestEnv::new();
    env.state.ensure_fire_and_forget();
    env.state.ensure_fire_and_forget();
    assert!(env.state.client(FIRE_AND_FORGET).is_some());
    let w = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a"), task("b").deps(&["a"])], &["b"]);
    let ca = out.take_compute(w);
    out.assert_empty();
    env.desire(FIRE_AND_FORGET, &["b"]).assert_empty();
    // the client goes away; the fire-and-forget client keeps b alive
    env.release(c, &["b"]).assert_empty();
    env.assert_states(&[("a", Processing), ("b", Waiting)]);

    let mut out = env.finish(w, &ca);
    let cb = out.take_compute(w);
    out.assert_empty();
    let mut out = env.finish(w, &cb);
    // key-in-memory goes to the pseudo-client (the server drops it, as Dask's send_all does)
    out.assert_client(FIRE_AND_FORGET, vec![key_in_memory("b")]);
    out.assert_free_keys(w, &["a", "b"]);
    out.assert_empty();
    env.assert_idle();
}

#[test]
fn fire_and_forget_task_that_errs_is_forgotten() {
    let mut env = TestEnv::new();
    env.state.ensure_fire_and_forget();
    let w = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a")], &["a"]);
    let ca = out.take_compute(w);
    out.assert_empty();
    env.desire(FIRE_AND_FORGET, &["a"]).assert_empty();
    env.release(c, &["a"]).assert_empty();
    let mut out = env.err(w, &ca);
    out.assert_client(FIRE_AND_FORGET, vec![task_erred("a", "a")]);
    out.assert_free_keys(w, &["a"]);
    out.assert_empty();
    env.assert_idle();
}

// ---- scatter ------------------------------------------------------------------------------

#[test]
fn scattered_data_feeds_tasks_and_is_forgotten_when_released() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let wb = env.worker_at(B);
    let c = env.client();
    let mut out = env.scatter(Some(c), "x", &[wa, wb]);
    out.assert_client(
        c,
        vec![ToClient::KeyInMemory {
            key: k("x"),
            type_: Value::Nil,
        }],
    );
    out.assert_empty();
    assert_eq!(env.who_has("x"), vec![A, B]);
    assert!(env.task("x").run_spec.is_none());

    let mut out = env.submit(c, vec![task("y").deps(&["x"])], &["y"]);
    let (w, cy) = out.take_compute_of("y");
    out.assert_empty();
    assert_eq!(who_has_of(&cy), vec![holders("x", &[A, B])]);
    assert_eq!(cy.nbytes, vec![(k("x"), 42)]);
    let mut out = env.finish(w, &cy);
    out.assert_client(c, vec![key_in_memory("y")]);
    out.assert_empty();

    // releasing pure data frees it at once, even under a held result (Dask's
    // _client_releases_keys -> released -> forgotten for data without run_spec)
    let mut out = env.release(c, &["x"]);
    out.assert_free_keys(wa, &["x"]);
    out.assert_free_keys(wb, &["x"]);
    out.assert_empty();
    env.assert_forgotten(&["x"]);
    assert!(env.task("y").has_lost_dependencies);
    env.assert_states(&[("y", Memory)]);

    // y cannot be recomputed any more: losing it cancels it (lost-data first, as Dask's
    // memory->released->forgotten reports both)
    let (other, gone) = if w == wa { (wb, A) } else { (wa, B) };
    let mut out = env.kill_worker(w);
    out.assert_client(c, vec![lost_data("y"), forgotten(&["y"])]);
    out.assert_remove_worker(other, gone);
    out.assert_empty();
    env.assert_idle();
}

#[test]
fn scatter_on_unknown_workers_is_ignored() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let c = env.client();
    env.retire_worker(wa).assert_empty();
    env.scatter(Some(c), "x", &[wa]).assert_empty();
    assert_eq!(env.state.n_tasks(), 0);
}

#[test]
fn scatter_of_a_known_memory_key_adds_replicas_and_reports() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let wb = env.worker_at(B);
    let c = env.client();
    env.scatter(Some(c), "x", &[wa]).discard();
    let mut out = env.scatter(Some(c), "x", &[wb]);
    out.assert_client(
        c,
        vec![ToClient::KeyInMemory {
            key: k("x"),
            type_: Value::Nil,
        }],
    );
    out.assert_empty();
    assert_eq!(env.who_has("x"), vec![A, B]);
}

#[test]
fn scatter_over_a_waiting_key_satisfies_it() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a"), task("b").deps(&["a"])], &["b"]);
    let ca = out.take_compute(wa);
    out.assert_empty();
    // b's value arrives by scatter: it no longer waits on a, a is released
    let mut out = env.scatter(Some(c), "b", &[wa]);
    out.assert_free_keys(wa, &["a"]);
    out.assert_client(
        c,
        vec![ToClient::KeyInMemory {
            key: k("b"),
            type_: Value::Nil,
        }],
    );
    out.assert_empty();
    env.assert_states(&[("a", Released), ("b", Memory)]);
    let mut out = env.finish(wa, &ca);
    out.assert_free_keys(wa, &["a"]);
    out.assert_empty();
}

/// A scattered value replacing a running task must cancel the run and leave the task in
/// memory, not processing and in memory at once.
#[test]
fn scatter_over_a_processing_key_replaces_the_run() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let wb = env.worker_at(B);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a").workers(&[A])], &["a"]);
    let ca = out.take_compute(wa);
    out.assert_empty();
    let mut out = env.scatter(Some(c), "a", &[wb]);
    out.assert_free_keys(wa, &["a"]);
    out.assert_client(
        c,
        vec![ToClient::KeyInMemory {
            key: k("a"),
            type_: Value::Nil,
        }],
    );
    out.assert_empty();
    env.assert_states(&[("a", Memory)]);
    assert_eq!(env.who_has("a"), vec![B]);
    assert!(env.state.worker(wa).unwrap().processing.is_empty());
    // the cancelled run's answer is a stale duplicate
    env.finish(wa, &ca).discard();
}

/// Scattered data takes a task out of `no-worker` (rask's `no-worker -> memory` edge).
#[test]
fn scatter_over_a_no_worker_key_puts_it_in_memory() {
    let mut env = TestEnv::new();
    let wb = env.worker_at(B);
    let c = env.client();
    env.submit(c, vec![task("a").workers(&[A])], &["a"])
        .assert_empty();
    env.assert_states(&[("a", NoWorker)]);
    let mut out = env.scatter(Some(c), "a", &[wb]);
    out.assert_client(
        c,
        vec![ToClient::KeyInMemory {
            key: k("a"),
            type_: Value::Nil,
        }],
    );
    out.assert_empty();
    env.assert_states(&[("a", Memory)]);
    assert_eq!(env.who_has("a"), vec![B]);
}

/// Scattered data replaces a failure too (rask's `erred -> memory` edge; Dask's
/// `update_data` sets any state to memory).
#[test]
fn scatter_over_an_erred_key_puts_it_in_memory() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a")], &["a"]);
    let ca = out.take_compute(wa);
    out.assert_empty();
    let mut out = env.err(wa, &ca);
    out.assert_client(c, vec![task_erred("a", "a")]);
    out.assert_empty();
    let mut out = env.scatter(Some(c), "a", &[wa]);
    out.assert_client(
        c,
        vec![ToClient::KeyInMemory {
            key: k("a"),
            type_: Value::Nil,
        }],
    );
    out.assert_empty();
    env.assert_states(&[("a", Memory)]);
}

// ---- worker bookkeeping -------------------------------------------------------------------

#[test]
fn add_keys_registers_replicas_of_memory_keys_only() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let wb = env.worker_at(B);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a"), task("b")], &["a", "b"]);
    let (w_a, ca) = out.take_compute_of("a");
    out.take_compute_of("b");
    out.assert_empty();
    env.finish(w_a, &ca).discard();
    let other = if w_a == wa { wb } else { wa };

    // a is in memory: a new replica. b is processing and ghost unknown: drop them.
    let mut out = env.add_keys(other, &["a", "b", "ghost"]);
    out.assert_remove_replicas(other, &["b", "ghost"]);
    out.assert_empty();
    assert_eq!(env.who_has("a"), vec![A, B]);
    assert_eq!(env.state.worker(other).unwrap().nbytes, nbytes_of(&k("a")));
}

#[test]
fn release_worker_data_of_a_replica_and_of_the_last_copy() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let wb = env.worker_at(B);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a").workers(&[A])], &["a"]);
    let ca = out.take_compute(wa);
    out.assert_empty();
    env.finish(wa, &ca).discard();
    env.add_keys(wb, &["a"]).assert_empty();

    // one of two copies: just bookkeeping
    env.release_worker_data(wb, "a").assert_empty();
    assert_eq!(env.who_has("a"), vec![A]);
    // a worker that does not hold it: nothing
    env.release_worker_data(wb, "a").assert_empty();
    env.release_worker_data(wb, "ghost").assert_empty();

    // the last copy: the result is lost and recomputed
    let mut out = env.release_worker_data(wa, "a");
    out.assert_client(c, vec![lost_data("a")]);
    let again = out.take_compute(wa);
    out.assert_empty();
    assert!(again.run_id > ca.run_id);
    env.assert_states(&[("a", Processing)]);
}

#[test]
fn request_refresh_who_has_answers_known_keys_and_frees_unknown_ones() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let wb = env.worker_at(B);
    let c = env.client();
    let mut out = env.submit(
        c,
        vec![task("a").workers(&[A]), task("p").workers(&[A])],
        &["a", "p"],
    );
    let cts = out.assert_computes(wa, &["a", "p"]);
    let ca = cts[0].clone();
    out.assert_empty();
    env.finish(wa, &ca).discard();
    env.add_keys(wb, &["a"]).assert_empty();

    let mut out = env.refresh_who_has(wb, &["a", "p", "ghost"]);
    let mut who_has: Vec<(rask_protocol::Key, Vec<String>)> = out
        .take_refresh_who_has(wb)
        .into_iter()
        .map(|(k, a)| (k, a.iter().map(|a| a.to_string()).collect()))
        .collect();
    who_has.sort();
    assert_eq!(who_has, vec![holders("a", &[A, B]), holders("p", &[])]);
    out.assert_free_keys(wb, &["ghost"]);
    out.assert_empty();

    env.refresh_who_has(wb, &[]).assert_empty();
}

#[test]
fn reschedule_from_the_running_worker_restarts_the_task() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a")], &["a"]);
    let ca = out.take_compute(wa);
    out.assert_empty();
    let wb = env.worker_at(B);
    // only the worker running it may give it back
    env.reschedule(wb, "a").assert_empty();
    env.reschedule(wa, "ghost").assert_empty();

    let mut out = env.reschedule(wa, "a");
    out.assert_free_keys(wa, &["a"]);
    let (_, again) = out.take_compute_of("a");
    out.assert_empty();
    assert!(again.run_id > ca.run_id);
    assert_eq!(env.task("a").suspicious, 0);

    // not processing any more: ignored
    let w = env.processing_on("a").unwrap();
    env.finish(w, &again).discard();
    env.reschedule(w, "a").assert_empty();
}

// ---- graphs on top of forgotten or erred keys ---------------------------------------------

#[test]
fn graph_depending_on_a_forgotten_key_is_cancelled_for_lost_dependencies() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a")], &["a"]);
    let ca = out.take_compute(w);
    out.assert_empty();
    env.finish(w, &ca).discard();
    let mut out = env.release(c, &["a"]);
    out.assert_free_keys(w, &["a"]);
    out.assert_empty();

    let mut out = env.submit(c, vec![task("b").deps(&["a"]), task("d")], &["b", "d"]);
    out.assert_client(
        c,
        vec![ToClient::CancelledKeys {
            keys: ks(&["b", "d"]),
            reason: Some("lost dependencies".into()),
            msg: None,
        }],
    );
    out.assert_empty();
    assert_eq!(env.state.n_tasks(), 0);
}

#[test]
fn graph_depending_on_an_erred_key_errs_at_once() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c1 = env.client();
    let c2 = env.client();
    let mut out = env.submit(c1, vec![task("a")], &["a"]);
    let ca = out.take_compute(w);
    out.assert_empty();
    let mut out = env.err(w, &ca);
    out.assert_client(c1, vec![task_erred("a", "a")]);
    out.assert_empty();

    let mut out = env.submit(
        c2,
        vec![task("b").deps(&["a"]), task("c").deps(&["b"])],
        &["c"],
    );
    // Dask reports from the transition and again from update_graph's report_on_key
    // (scheduler.py:4990-4992): twice, both blaming a
    out.assert_client(c2, vec![task_erred("c", "a"), task_erred("c", "a")]);
    out.assert_empty();
    env.assert_states(&[("a", Erred), ("b", Erred), ("c", Erred)]);
    assert_eq!(env.task("c").exception_blame, env.state.task_id(&k("a")));
}

#[test]
fn graph_depending_on_a_running_key_waits_for_it() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c1 = env.client();
    let c2 = env.client();
    let mut out = env.submit(c1, vec![task("a")], &["a"]);
    let ca = out.take_compute(w);
    out.assert_empty();
    env.submit(c2, vec![task("b").deps(&["a"])], &["b"])
        .assert_empty();
    env.assert_states(&[("b", Waiting)]);
    let mut out = env.finish(w, &ca);
    out.assert_client(c1, vec![key_in_memory("a")]);
    out.take_compute(w);
    out.assert_empty();
}

/// Dask creates task states only for the requested keys and what they depend on
/// (`_generate_taskstates`, scheduler.py:5145-5219) and recommends `waiting` only for the
/// requested keys (scheduler.py:4932-4940). Other tasks in the message are never run.
#[test]
fn tasks_not_needed_by_the_wanted_keys_are_not_run() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(
        c,
        vec![task("a"), task("b").deps(&["a"]), task("z")],
        &["b"],
    );
    let ca = out.take_compute(w);
    out.assert_empty();
    assert!(env.state.task(&k("z")).is_none(), "z was created");
    let mut out = env.finish(w, &ca);
    let cb = out.take_compute(w);
    out.assert_empty();
    let mut out = env.finish(w, &cb);
    out.assert_client(c, vec![key_in_memory("b")]);
    out.assert_free_keys(w, &["a"]);
    out.assert_empty();
    let mut out = env.release(c, &["b"]);
    out.assert_free_keys(w, &["b"]);
    out.assert_empty();
    env.assert_idle();
}

/// Dask answers a graph with lost dependencies with `cancelled-keys` *and* releases the
/// requested keys for that client (`client_releases_keys`, scheduler.py:5061-5079): the
/// client marks those futures cancelled, so the scheduler must stop holding them for it.
#[test]
fn lost_dependencies_release_the_requested_keys() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("x")], &["x"]);
    let cx = out.take_compute(w);
    out.assert_empty();
    env.finish(w, &cx).discard();

    let mut out = env.submit(c, vec![task("x"), task("b").deps(&["ghost"])], &["x", "b"]);
    out.assert_client(
        c,
        vec![ToClient::CancelledKeys {
            keys: ks(&["x", "b"]),
            reason: Some("lost dependencies".into()),
            msg: None,
        }],
    );
    out.assert_free_keys(w, &["x"]);
    out.assert_empty();
    env.assert_idle();
}

/// Dask looks for lost dependencies only under the requested keys
/// (`_find_lost_dependencies` walks from `keys`, scheduler.py:4817-4846); a node of the
/// message that the keys do not need cannot cancel the graph.
#[test]
fn lost_dependency_outside_the_requested_keys_is_ignored() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a"), task("z").deps(&["ghost"])], &["a"]);
    out.take_compute(w);
    out.assert_empty();
    assert!(env.state.task(&k("z")).is_none());
}
