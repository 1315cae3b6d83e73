//! Where tasks go: no workers, restrictions (address, name, host), loose restrictions,
//! resources, paused workers.
#![allow(clippy::unwrap_used)]

mod env;

use env::*;
use rask_core::TaskStatus::*;

#[test]
fn no_workers_parks_tasks_until_one_arrives() {
    let mut env = TestEnv::new();
    let c = env.client();
    env.submit(c, vec![task("a"), task("b").deps(&["a"])], &["b"])
        .assert_empty();
    // with no threads at all, `a` counts as root-ish and waits in the queue, as in Dask
    env.assert_states(&[("a", Queued), ("b", Waiting)]);
    let (w, mut out) = env.add_worker(worker(A));
    let ca = out.take_compute(w);
    out.assert_empty();
    assert_eq!(ca.key, k("a"));
    let mut out = env.finish(w, &ca);
    let cb = out.take_compute(w);
    out.assert_empty();
    let mut out = env.finish(w, &cb);
    out.assert_client(c, vec![key_in_memory("b")]);
    out.assert_free_keys(w, &["a"]);
    out.assert_empty();
}

#[test]
fn no_worker_tasks_are_dispatched_in_priority_order_when_a_worker_arrives() {
    let mut env = TestEnv::new();
    let c = env.client();
    env.submit(
        c,
        vec![task("x").order(2), task("y").order(0), task("z").order(1)],
        &["x", "y", "z"],
    )
    .assert_empty();
    let (w, mut out) = env.add_worker(worker(A).nthreads(3));
    out.assert_computes(w, &["y", "z", "x"]);
    out.assert_empty();
}

#[test]
fn releasing_a_no_worker_task_forgets_it() {
    let mut env = TestEnv::new();
    let c = env.client();
    env.submit(c, vec![task("a")], &["a"]).assert_empty();
    env.release(c, &["a"]).assert_empty();
    env.assert_idle();
    env.worker_at(A);
}

#[test]
fn restriction_to_a_worker_address() {
    let mut env = TestEnv::new();
    env.worker_at(A);
    let wb = env.worker_at(B);
    env.worker_at(C);
    let c = env.client();
    for i in 0..4 {
        let key = format!("t-{i}");
        let mut out = env.submit(c, vec![task(&key).workers(&[B])], &[key.as_str()]);
        out.take_compute(wb);
        out.assert_empty();
    }
}

#[test]
fn restriction_to_an_address_without_scheme() {
    let mut env = TestEnv::new();
    env.worker_at(A);
    let wb = env.worker_at(B);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a").workers(&["10.0.0.2:40002"])], &["a"]);
    out.take_compute(wb);
    out.assert_empty();
}

#[test]
fn restriction_to_a_worker_name() {
    let mut env = TestEnv::new();
    env.worker(worker(A).name("alice"));
    let wb = env.worker(worker(B).name("bob"));
    let c = env.client();
    for i in 0..3 {
        let key = format!("t-{i}");
        let mut out = env.submit(c, vec![task(&key).workers(&["bob"])], &[key.as_str()]);
        out.take_compute(wb);
        out.assert_empty();
    }
}

/// Dask resolves a `workers=` name that is not registered yet at decision time
/// (`valid_workers` -> `coerce_hostname` through `aliases`), so the task runs once the
/// named worker arrives.
#[test]
fn restriction_to_a_worker_name_registered_later() {
    let mut env = TestEnv::new();
    env.worker(worker(A).name("alice"));
    let c = env.client();
    env.submit(c, vec![task("a").workers(&["bob"])], &["a"])
        .assert_empty();
    env.assert_states(&[("a", NoWorker)]);
    let (wb, mut out) = env.add_worker(worker(B).name("bob"));
    out.take_compute(wb);
    out.assert_empty();
}

#[test]
fn restriction_to_a_host() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let c = env.client();
    env.submit(c, vec![task("a").workers(&["10.0.0.2"])], &["a"])
        .assert_empty();
    env.assert_states(&[("a", NoWorker)]);
    let t = env.task("a");
    assert!(t.rare().worker_restrictions.is_empty());
    assert!(t.rare().host_restrictions.contains("10.0.0.2"));
    // B and C live on 10.0.0.2; A does not
    let (wb, mut out) = env.add_worker(worker(B));
    out.take_compute(wb);
    out.assert_empty();
    let wc = env.worker_at(C);
    for i in 0..4 {
        let key = format!("h-{i}");
        let mut out = env.submit(c, vec![task(&key).workers(&["10.0.0.2"])], &[key.as_str()]);
        let (w, _) = out.take_compute_of(&key);
        out.assert_empty();
        assert!(
            w == wb || w == wc,
            "{key} ran on {w:?}, not on host 10.0.0.2"
        );
        assert_ne!(w, wa);
    }
}

#[test]
fn unsatisfiable_restriction_waits_without_allow_other_workers() {
    let mut env = TestEnv::new();
    env.worker_at(A);
    let c = env.client();
    env.submit(c, vec![task("a").workers(&[B])], &["a"])
        .assert_empty();
    env.assert_states(&[("a", NoWorker)]);
    // a third party arriving does not help
    env.worker_at(C);
    env.assert_states(&[("a", NoWorker)]);
    let (wb, mut out) = env.add_worker(worker(B));
    out.take_compute(wb);
    out.assert_empty();
}

#[test]
fn allow_other_workers_falls_back_to_any_worker() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(
        c,
        vec![task("a")
            .workers(&["tcp://10.9.9.9:1"])
            .allow_other_workers()],
        &["a"],
    );
    out.take_compute(wa);
    out.assert_empty();
}

#[test]
fn allow_other_workers_still_prefers_the_named_worker() {
    let mut env = TestEnv::new();
    env.worker_at(A);
    let wb = env.worker_at(B);
    env.worker_at(C);
    let c = env.client();
    for i in 0..3 {
        let key = format!("t-{i}");
        let mut out = env.submit(
            c,
            vec![task(&key).workers(&[B]).allow_other_workers()],
            &[key.as_str()],
        );
        out.take_compute(wb);
        out.assert_empty();
    }
}

#[test]
fn resources_are_never_given_to_a_worker_without_them() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let c = env.client();
    env.submit(c, vec![task("a").resource("GPU", 1.0)], &["a"])
        .assert_empty();
    env.assert_states(&[("a", NoWorker)]);
    // not enough of it
    env.worker(worker(C).resource("GPU", 0.5));
    // the wrong one
    env.worker(worker("tcp://10.0.0.3:1").resource("MEM", 4.0));
    env.assert_states(&[("a", NoWorker)]);
    let (wb, mut out) = env.add_worker(worker(B).resource("GPU", 2.0));
    let ct = out.take_compute(wb);
    out.assert_empty();
    assert_eq!(ct.resource_restrictions, Some(vec![("GPU".into(), 1.0)]));
    // later GPU tasks keep going to B, plain ones may go anywhere
    let mut out = env.submit(c, vec![task("g").resource("GPU", 1.0)], &["g"]);
    out.take_compute(wb);
    out.assert_empty();
    let _ = wa;
}

#[test]
fn resources_with_allow_other_workers_still_need_the_resource() {
    let mut env = TestEnv::new();
    env.worker_at(A);
    let c = env.client();
    env.submit(
        c,
        vec![task("a")
            .resource("GPU", 1.0)
            .workers(&[A])
            .allow_other_workers()],
        &["a"],
    )
    .assert_empty();
    env.assert_states(&[("a", NoWorker)]);
    let (wb, mut out) = env.add_worker(worker(B).resource("GPU", 1.0));
    out.take_compute(wb);
    out.assert_empty();
}

#[test]
fn paused_worker_takes_no_new_tasks_but_keeps_serving_data() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a")], &["a"]);
    let ca = out.take_compute(wa);
    out.assert_empty();
    let mut out = env.finish(wa, &ca);
    out.assert_client(c, vec![key_in_memory("a")]);
    out.assert_empty();

    env.set_status(wa, "paused").assert_empty();
    env.submit(c, vec![task("b").deps(&["a"])], &["b"])
        .assert_empty();
    env.assert_states(&[("b", NoWorker)]);

    // another worker takes it, fetching a from the paused one
    let (wb, mut out) = env.add_worker(worker(B));
    let cb = out.take_compute(wb);
    out.assert_empty();
    assert_eq!(who_has_of(&cb), vec![holders("a", &[A])]);
    env.set_status(wa, "running").assert_empty();
}

#[test]
fn paused_worker_resuming_picks_up_waiting_tasks() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    env.set_status(wa, "paused").assert_empty();
    let c = env.client();
    env.submit(c, vec![task("a")], &["a"]).assert_empty();
    env.assert_states(&[("a", NoWorker)]);
    let mut out = env.set_status(wa, "running");
    out.take_compute(wa);
    out.assert_empty();
}

#[test]
fn tasks_are_spread_over_idle_workers() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let wb = env.worker_at(B);
    let c = env.client();
    let mut out = env.submit(c, vec![task("x"), task("y")], &["x", "y"]);
    let xs = out.take_computes(wa);
    let ys = out.take_computes(wb);
    out.assert_empty();
    assert_eq!(xs.len(), 1, "one task per one-thread worker");
    assert_eq!(ys.len(), 1, "one task per one-thread worker");
}

#[test]
fn dependent_goes_where_its_input_is_when_that_worker_is_free() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a"), task("b").deps(&["a"])], &["b"]);
    let ca = out.take_compute(wa);
    out.assert_empty();
    env.worker_at(B);
    // a lives on A, which is idle after finishing it: no transfer needed
    let mut out = env.finish(wa, &ca);
    out.take_compute(wa);
    out.assert_empty();
}

/// Dask's `_transition_no_worker_released` goes through `_propagate_released`, which
/// releases dependencies nothing needs any more (scheduler.py:2950-2963, 3492-3512).
#[test]
fn releasing_a_no_worker_task_releases_its_unneeded_inputs() {
    let mut env = TestEnv::new();
    let w = env.worker(worker(A).nthreads(2));
    let c = env.client();
    let mut out = env.submit(
        c,
        vec![
            task("a"),
            task("e"),
            task("b").deps(&["a"]).workers(&["tcp://10.9.9.9:1"]),
            task("c").deps(&["b", "e"]),
        ],
        &["b", "c"],
    );
    let ca = out.take_compute_of("a").1;
    let ce = out.take_compute_of("e").1;
    out.assert_empty();
    env.finish(w, &ca).assert_empty();
    env.assert_states(&[("a", Memory), ("b", NoWorker)]);
    let mut out = env.err(w, &ce);
    out.assert_client(c, vec![task_erred("c", "e")]);
    out.assert_empty();

    // b is released (c still names it), so nothing needs a any more
    let mut out = env.release(c, &["b"]);
    out.assert_free_keys(w, &["a"]);
    out.assert_empty();
    env.assert_states(&[("a", Released), ("b", Released), ("c", Erred)]);
}
