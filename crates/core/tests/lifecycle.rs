//! The happy path: workers and clients register, graphs are submitted, tasks run, results
//! reach the client and intermediate results are released.
#![allow(clippy::unwrap_used)]

mod env;

use env::*;
use rask_core::{Command, Exception, Stimulus, TaskStatus::*, ToWorker};
use rask_protocol::Value;

#[test]
fn running_worker_registers_without_commands() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let ws = env.state.worker(w).unwrap();
    assert_eq!(&*ws.address, A);
    assert_eq!(&*ws.host, "10.0.0.1");
    assert_eq!(env.state.worker_id(A), Some(w));
}

#[test]
fn init_worker_takes_tasks_only_once_running() {
    let mut env = TestEnv::new();
    let c = env.client();
    let w = env.worker(worker(A).init());
    env.submit(c, vec![task("a")], &["a"]).assert_empty();
    env.assert_states(&[("a", NoWorker)]);

    // a status other than running changes nothing
    env.set_status(w, "paused").assert_empty();
    let mut out = env.set_status(w, "running");
    let ct = out.take_compute(w);
    out.assert_empty();
    assert_eq!(ct.key, k("a"));
    env.assert_states(&[("a", Processing)]);
    assert_eq!(env.processing_on("a"), Some(w));

    // a second "running" is not a transition: nothing is dispatched twice
    env.set_status(w, "running").assert_empty();
}

#[test]
fn init_worker_registering_while_tasks_wait_gets_nothing() {
    let mut env = TestEnv::new();
    let c = env.client();
    env.submit(c, vec![task("a")], &["a"]).assert_empty();
    let (_, out) = env.add_worker(worker(A).init());
    out.assert_empty();
    // submitted with no threads in the cluster, `a` was root-ish and queued
    env.assert_states(&[("a", Queued)]);
}

#[test]
fn add_client_registers_it() {
    let mut env = TestEnv::new();
    let c = env.client();
    assert!(env.state.client(c).unwrap().wants_what.is_empty());
    let c2 = env.client();
    assert_ne!(c, c2);
}

#[test]
fn chain_runs_in_order_and_releases_intermediates() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(
        c,
        vec![task("a"), task("b").deps(&["a"]), task("c").deps(&["b"])],
        &["c"],
    );
    let ca = out.take_compute(w);
    out.assert_empty();
    env.assert_states(&[("a", Processing), ("b", Waiting), ("c", Waiting)]);
    assert_eq!(ca.key, k("a"));
    assert!(ca.who_has.is_empty() && ca.nbytes.is_empty());

    // a done: b runs with a's location and size; nobody wants a, no client message
    let mut out = env.finish(w, &ca);
    let cb = out.take_compute(w);
    out.assert_empty();
    assert_eq!(cb.key, k("b"));
    assert_eq!(who_has_of(&cb), vec![holders("a", &[A])]);
    assert_eq!(cb.nbytes, vec![(k("a"), nbytes_of(&k("a")))]);
    env.assert_states(&[("a", Memory), ("b", Processing), ("c", Waiting)]);
    assert_eq!(env.task("a").nbytes, nbytes_of(&k("a")));

    // b done: c runs, a is no longer needed and is freed on the worker
    let mut out = env.finish(w, &cb);
    let cc = out.take_compute(w);
    out.assert_free_keys(w, &["a"]);
    out.assert_empty();
    assert_eq!(who_has_of(&cc), vec![holders("b", &[A])]);
    env.assert_states(&[("a", Released), ("b", Memory), ("c", Processing)]);
    assert!(env.task("a").who_has.is_empty());

    // c done: the client hears about it with the worker's type; b is freed
    let mut out = env.finish(w, &cc);
    out.assert_client(c, vec![key_in_memory("c")]);
    out.assert_free_keys(w, &["b"]);
    out.assert_empty();
    env.assert_states(&[("a", Released), ("b", Released), ("c", Memory)]);
    assert_eq!(env.has_what(w), ks(&["c"]));

    // run ids increase with every dispatch
    assert!(ca.run_id < cb.run_id && cb.run_id < cc.run_id);

    // the client lets go: c is freed and the whole chain forgotten
    let mut out = env.release(c, &["c"]);
    out.assert_free_keys(w, &["c"]);
    out.assert_empty();
    env.assert_idle();
}

#[test]
fn diamond_on_one_worker() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(
        c,
        vec![
            task("a"),
            task("b").deps(&["a"]),
            task("c").deps(&["a"]),
            task("d").deps(&["b", "c"]),
        ],
        &["d"],
    );
    let ca = out.take_compute(w);
    out.assert_empty();

    // both dependents of a are dispatched, higher priority (lower order) first
    let mut out = env.finish(w, &ca);
    let cts = out.assert_computes(w, &["b", "c"]);
    out.assert_empty();
    for ct in &cts {
        assert_eq!(who_has_of(ct), vec![holders("a", &[A])]);
    }

    // b done: d still waits for c, and a is still needed by c
    env.finish(w, &cts[0]).assert_empty();
    env.assert_states(&[
        ("a", Memory),
        ("b", Memory),
        ("c", Processing),
        ("d", Waiting),
    ]);

    // c done: d runs with both inputs; a is freed
    let mut out = env.finish(w, &cts[1]);
    let cd = out.take_compute(w);
    out.assert_free_keys(w, &["a"]);
    out.assert_empty();
    assert_eq!(
        who_has_of(&cd),
        vec![holders("b", &[A]), holders("c", &[A])]
    );
    let mut nb = cd.nbytes.clone();
    nb.sort();
    assert_eq!(
        nb,
        vec![(k("b"), nbytes_of(&k("b"))), (k("c"), nbytes_of(&k("c")))]
    );

    let mut out = env.finish(w, &cd);
    out.assert_client(c, vec![key_in_memory("d")]);
    out.assert_free_keys(w, &["b", "c"]);
    out.assert_empty();

    let mut out = env.release(c, &["d"]);
    out.assert_free_keys(w, &["d"]);
    out.assert_empty();
    env.assert_idle();
}

#[test]
fn diamond_across_two_workers_reports_every_holder() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let wb = env.worker_at(B);
    let c = env.client();
    let mut out = env.submit(
        c,
        vec![
            task("a"),
            task("b").deps(&["a"]),
            task("c").deps(&["a"]),
            task("d").deps(&["b", "c"]),
        ],
        &["d"],
    );
    let (w_a, ca) = out.take_compute_of("a");
    out.assert_empty();
    let mut out = env.finish(w_a, &ca);
    let (w_b, cb) = out.take_compute_of("b");
    let (w_c, cc) = out.take_compute_of("c");
    out.assert_empty();
    // both run somewhere that is registered
    for w in [w_b, w_c] {
        assert!(w == wa || w == wb);
    }
    env.finish(w_b, &cb).assert_empty();
    let mut out = env.finish(w_c, &cc);
    let (w_d, cd) = out.take_compute_of("d");
    out.assert_free_keys(w_a, &["a"]);
    out.assert_empty();
    let addr = |w| env.state.worker(w).unwrap().address.to_string();
    assert_eq!(
        who_has_of(&cd),
        vec![(k("b"), vec![addr(w_b)]), (k("c"), vec![addr(w_c)])]
    );
    let mut out = env.finish(w_d, &cd);
    out.assert_client(c, vec![key_in_memory("d")]);
    if w_b == w_c {
        out.assert_free_keys(w_b, &["b", "c"]);
    } else {
        out.assert_free_keys(w_b, &["b"]);
        out.assert_free_keys(w_c, &["c"]);
    }
    out.assert_empty();
}

#[test]
fn compute_task_forwards_run_spec_annotations_resources_and_priority() {
    let mut env = TestEnv::new();
    let w = env.worker(worker(A).resource("GPU", 2.0));
    let c = env.client();
    let ann = Value::map([("retries", Value::Int(0)), ("custom", Value::from("x"))]);
    let mut out = env.submit(
        c,
        vec![task("a")
            .run_spec(b"\x80\x05opaque-pickle")
            .annotations(ann.clone())
            .resource("GPU", 1.0)
            .priority(5)
            .order(7)],
        &["a"],
    );
    let ct = out.take_compute(w);
    out.assert_empty();
    assert_eq!(&ct.run_spec[..], b"\x80\x05opaque-pickle");
    assert_eq!(ct.annotations, ann);
    assert_eq!(ct.resource_restrictions, Some(vec![("GPU".into(), 1.0)]));
    // (-user_priority, generation, order); the first graph opens generation 1
    assert_eq!(ct.priority, [-5, 1, 7]);
    assert_eq!(ct.run_id, 1);
}

#[test]
fn compute_task_without_resources_has_none() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a")], &["a"]);
    let ct = out.take_compute(w);
    out.assert_empty();
    assert_eq!(ct.resource_restrictions, None);
    assert_eq!(ct.annotations, Value::Map(Vec::new()));
    assert_eq!(ct.run_spec, spec_of("a"));
}

#[test]
fn priority_generation_advances_only_after_fifo_timeout() {
    let mut env = TestEnv::new();
    let w = env.worker(worker(A).nthreads(4));
    let c = env.client();
    let mut out = env.submit(c, vec![task("a").order(3)], &["a"]);
    assert_eq!(out.take_compute(w).priority, [0, 1, 3]);
    out.assert_empty();

    // within fifo_timeout: same generation
    env.advance(0.05);
    let mut out = env.submit(c, vec![task("b").order(0)], &["b"]);
    assert_eq!(out.take_compute(w).priority, [0, 1, 0]);
    out.assert_empty();

    // later: a new, lower-priority generation
    env.advance(1.0);
    let mut out = env.submit(c, vec![task("c").order(0).priority(-2)], &["c"]);
    assert_eq!(out.take_compute(w).priority, [2, 2, 0]);
    out.assert_empty();
}

#[test]
fn ready_tasks_are_dispatched_in_priority_order() {
    let mut env = TestEnv::new();
    let w = env.worker(worker(A).nthreads(8));
    let c = env.client();
    let mut out = env.submit(
        c,
        vec![
            task("x").order(2),
            task("y").order(0),
            task("z").order(1),
            task("u").order(9).priority(1),
        ],
        &["x", "y", "z", "u"],
    );
    out.assert_computes(w, &["u", "y", "z", "x"]);
    out.assert_empty();
}

#[test]
fn run_ids_are_unique_per_dispatch() {
    let mut env = TestEnv::new();
    let w = env.worker(worker(A).nthreads(4));
    let c = env.client();
    let mut out = env.submit(c, vec![task("a"), task("b"), task("c")], &["a", "b", "c"]);
    let cts = out.take_computes(w);
    out.assert_empty();
    let mut ids: Vec<u64> = cts.iter().map(|c| c.run_id).collect();
    assert_eq!(ids.len(), 3);
    ids.dedup();
    assert_eq!(ids.len(), 3);
    for ct in &cts {
        assert_eq!(env.state.task(&ct.key).unwrap().run_id, Some(ct.run_id));
    }
}

#[test]
fn client_wanting_an_intermediate_keeps_it() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a"), task("b").deps(&["a"])], &["a", "b"]);
    let ca = out.take_compute(w);
    out.assert_empty();
    let mut out = env.finish(w, &ca);
    out.assert_client(c, vec![key_in_memory("a")]);
    let cb = out.take_compute(w);
    out.assert_empty();
    let mut out = env.finish(w, &cb);
    out.assert_client(c, vec![key_in_memory("b")]);
    out.assert_empty();
    env.assert_states(&[("a", Memory), ("b", Memory)]);

    // releasing b: b is forgotten, a still wanted
    let mut out = env.release(c, &["b"]);
    out.assert_free_keys(w, &["b"]);
    out.assert_empty();
    env.assert_forgotten(&["b"]);
    env.assert_states(&[("a", Memory)]);

    let mut out = env.release(c, &["a"]);
    out.assert_free_keys(w, &["a"]);
    out.assert_empty();
    env.assert_idle();
}

#[test]
fn releasing_a_processing_key_frees_it_on_the_worker() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a"), task("b").deps(&["a"])], &["b"]);
    let ca = out.take_compute(w);
    out.assert_empty();
    let mut out = env.release(c, &["b"]);
    out.assert_free_keys(w, &["a"]);
    out.assert_empty();
    env.assert_idle();
    // the worker's late answer is told to go away
    let mut out = env.finish(w, &ca);
    out.assert_free_keys(w, &["a"]);
    out.assert_empty();
}

#[test]
fn releasing_unknown_or_unwanted_keys_is_a_no_op() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    let c2 = env.client();
    let mut out = env.submit(c, vec![task("a")], &["a"]);
    out.take_compute(w);
    out.assert_empty();
    env.release(c, &["nope"]).assert_empty();
    env.release(c2, &["a"]).assert_empty();
    env.assert_states(&[("a", Processing)]);
}

#[test]
fn remove_client_releases_everything_it_wanted() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a"), task("b")], &["a", "b"]);
    let ca = out.take_compute(w);
    out.take_compute(w);
    out.assert_empty();
    let mut out = env.finish(w, &ca);
    out.assert_client(c, vec![key_in_memory("a")]);
    out.assert_empty();
    let mut out = env.remove_client(c);
    out.assert_free_keys(w, &["a", "b"]);
    out.assert_empty();
    env.assert_idle();
    assert!(env.state.client(c).is_none());
}

#[test]
fn resubmitting_a_finished_key_reports_it_at_once() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a")], &["a"]);
    let ca = out.take_compute(w);
    out.assert_empty();
    let mut out = env.finish(w, &ca);
    out.assert_client(c, vec![key_in_memory("a")]);
    out.assert_empty();
    let mut out = env.submit(c, vec![task("a")], &["a"]);
    out.assert_client(c, vec![key_in_memory("a")]);
    out.assert_empty();
}

#[test]
fn graph_on_top_of_a_held_result_starts_immediately() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a")], &["a"]);
    let ca = out.take_compute(w);
    out.assert_empty();
    let mut out = env.finish(w, &ca);
    out.assert_client(c, vec![key_in_memory("a")]);
    out.assert_empty();

    // the new graph names a only as a dependency
    let mut out = env.submit(c, vec![task("b").deps(&["a"])], &["b"]);
    let cb = out.take_compute(w);
    out.assert_empty();
    assert_eq!(who_has_of(&cb), vec![holders("a", &[A])]);
    let mut out = env.finish(w, &cb);
    out.assert_client(c, vec![key_in_memory("b")]);
    out.assert_empty();
    // a is still wanted by the client
    env.assert_states(&[("a", Memory), ("b", Memory)]);
}

#[test]
fn long_running_frees_occupancy() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a")], &["a"]);
    out.take_compute(w);
    out.assert_empty();
    assert!(env.state.worker(w).unwrap().occupancy > 0.0);
    env.handle(Stimulus::LongRunning {
        worker: w,
        key: k("a"),
    })
    .assert_empty();
    assert_eq!(env.state.worker(w).unwrap().occupancy, 0.0);
    assert!(env.task("a").long_running);
}

#[test]
fn graph_failed_errs_every_requested_key() {
    let mut env = TestEnv::new();
    let c = env.client();
    let e = Value::Bin("pickled-exc".into());
    let mut out = env.handle(Stimulus::GraphFailed {
        client: c,
        keys: ks(&["x", "y"]),
        exception: e.clone(),
        traceback: Value::Nil,
    });
    out.assert_client(
        c,
        vec![
            rask_core::ToClient::TaskErred {
                key: k("x"),
                exception: Exception::Pickled(e.clone()),
                traceback: Value::Nil,
            },
            rask_core::ToClient::TaskErred {
                key: k("y"),
                exception: Exception::Pickled(e),
                traceback: Value::Nil,
            },
        ],
    );
    out.assert_empty();
    assert_eq!(env.state.n_tasks(), 0);
}

#[test]
fn tuple_keys_round_trip() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    let key = rask_protocol::Key::Tuple(vec![k("x"), rask_protocol::Key::Int(0)].into());
    let mut out = env.submit_k(c, vec![task_k(key.clone())], vec![key.clone()]);
    let ct = out.take_compute(w);
    out.assert_empty();
    assert_eq!(ct.key, key);
    let mut out = env.finish(w, &ct);
    assert_eq!(
        out.take_client(c),
        vec![rask_core::ToClient::KeyInMemory {
            key: key.clone(),
            type_: typ(&key)
        }]
    );
    out.assert_empty();
    assert_eq!(env.state.task(&key).unwrap().prefix.as_ref(), "x");
}

/// A watched task (P2P barriers) reports its released/forgotten transitions, once each and
/// ahead of the messages of the transition itself (Dask's plugin `transition` hook).
#[test]
fn watched_task_reports_released_and_forgotten() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a").watched(), task("b").deps(&["a"])], &["b"]);
    let ca = out.take_compute(w);
    out.assert_empty();
    let mut out = env.finish(w, &ca);
    let cb = out.take_compute(w);
    out.assert_empty();

    // b done: a is released; the note comes before a's free-keys
    let cmds = env.finish(w, &cb).take_all();
    let note = cmds
        .iter()
        .position(
            |c| matches!(c, Command::Transitioned { key, finish: Released, .. } if *key == k("a")),
        )
        .unwrap_or_else(|| panic!("no released note in {cmds:#?}"));
    let free = cmds
        .iter()
        .position(|c| matches!(c, Command::Worker(_, ToWorker::FreeKeys { keys, .. }) if keys == &ks(&["a"])))
        .unwrap_or_else(|| panic!("no free-keys in {cmds:#?}"));
    assert!(note < free, "{cmds:#?}");
    assert_eq!(
        cmds.iter()
            .filter(|c| matches!(c, Command::Transitioned { .. }))
            .count(),
        1
    );

    // the client lets go: a is forgotten, reported once
    let cmds = env.release(c, &["b"]).take_all();
    let notes: Vec<&Command> = cmds
        .iter()
        .filter(|c| matches!(c, Command::Transitioned { .. }))
        .collect();
    assert!(
        matches!(notes.as_slice(), [Command::Transitioned { key, finish: Forgotten, .. }] if *key == k("a")),
        "{cmds:#?}"
    );
}

/// A watched task that fails on its worker reports `erred`, before the client hears of it:
/// `task-erred` takes the one transition entry point, where Dask calls the plugin hook.
#[test]
fn watched_task_reports_erred() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a").watched()], &["a"]);
    let ca = out.take_compute(w);
    out.assert_empty();
    assert_eq!(
        env.err(w, &ca).take_all(),
        vec![
            Command::Transitioned {
                key: k("a"),
                finish: Erred,
                stimulus_id: "task-erred".into(),
            },
            Command::Client(c, task_erred("a", "a")),
        ]
    );
}

#[test]
fn clear_tasks_forgets_everything_and_the_next_graph_runs() {
    let mut env = TestEnv::new();
    let w = env.worker(worker(A).nthreads(2));
    let c = env.client();
    let mut out = env.submit(c, vec![task("a"), task("b").deps(&["a"])], &["b"]);
    let ca = out.take_compute(w);
    out.assert_empty();
    env.finish(w, &ca).discard();
    env.handle(Stimulus::ClearTasks).assert_empty();
    env.assert_idle();
    assert!(env.wants_what(c).is_empty());
    let mut out = env.submit(c, vec![task("a")], &["a"]);
    let ca = out.take_compute(w);
    out.assert_empty();
    let mut out = env.finish(w, &ca);
    assert_eq!(out.take_client(c).len(), 1);
    out.assert_empty();
}

/// The transition log (`get_story`) has one entry per transition with what it recommended.
#[test]
fn transition_log_records_each_transition_with_its_recommendations() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a"), task("b").deps(&["a"])], &["b"]);
    let ca = out.take_compute(w);
    out.assert_empty();
    let mut out = env.finish(w, &ca);
    let cb = out.take_compute(w);
    out.assert_empty();
    let story = |env: &TestEnv, key: &str| -> Vec<(rask_core::TaskStatus, rask_core::TaskStatus)> {
        env.state
            .transition_log()
            .filter(|t| t.key == k(key))
            .map(|t| (t.start, t.finish))
            .collect()
    };
    assert_eq!(
        story(&env, "a"),
        vec![
            (Released, Waiting),
            (Waiting, Processing),
            (Processing, Memory)
        ]
    );
    let done = env
        .state
        .transition_log()
        .find(|t| t.key == k("a") && t.finish == Memory)
        .unwrap();
    assert_eq!(done.recommendations, vec![(k("b"), Processing)]);
    assert_eq!(&*done.stimulus_id, "task-finished");
    env.err(w, &cb).take_all();
    assert_eq!(
        story(&env, "b"),
        vec![
            (Released, Waiting),
            (Waiting, Processing),
            (Processing, Erred)
        ]
    );
}

#[test]
fn transition_log_is_bounded_and_can_be_off() {
    for (length, kept) in [(Some(2), 2), (Some(0), 0), (None, 5)] {
        let mut env = TestEnv::with_config(rask_core::CoreConfig {
            transition_log_length: length,
            ..rask_core::CoreConfig::default()
        });
        let w = env.worker_at(A);
        let c = env.client();
        let mut out = env.submit(c, vec![task("a"), task("b").deps(&["a"])], &["b"]);
        let ca = out.take_compute(w);
        out.assert_empty();
        let mut out = env.finish(w, &ca);
        out.take_compute(w);
        out.assert_empty();
        assert_eq!(env.state.transition_log().count(), kept, "{length:?}");
    }
}

/// With `report_done`, a task reaching memory or erred is reported once, with the state it
/// came from (what the task stream and task metadata record).
#[test]
fn done_is_reported_only_when_asked() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a"), task("b")], &["a", "b"]);
    let cs = out.take_computes(w);
    out.assert_empty();
    let (ca, cb) = if cs[0].key == k("a") {
        (&cs[0], &cs[1])
    } else {
        (&cs[1], &cs[0])
    };
    let mut out = env.finish(w, ca);
    out.take_client(c);
    out.assert_empty();
    env.state.set_report_done(true);
    let cmds = env.err(w, cb).take_all();
    assert!(
        cmds.contains(&Command::Done {
            key: k("b"),
            start: Processing,
            finish: Erred,
            stimulus_id: "task-erred".into(),
        }),
        "{cmds:#?}"
    );
}

/// A transition with no edge of its own goes via released; Dask logs both hops, the second
/// as starting from released (`_transition`: `start = "released"`).
#[test]
fn a_transition_via_released_is_logged_as_two() {
    let mut env = TestEnv::new();
    let w = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("a")], &["a"]);
    out.take_compute(w);
    out.assert_empty();
    env.cancel(c, &["a"], true).take_all();
    let moves: Vec<_> = env
        .state
        .transition_log()
        .filter(|t| t.key == k("a"))
        .map(|t| (t.start, t.finish))
        .collect();
    assert_eq!(
        moves,
        vec![
            (Released, Waiting),
            (Waiting, Processing),
            (Processing, Released),
            (Released, Forgotten)
        ]
    );
}

/// The counters of a task prefix, as Dask's `TaskPrefix` keeps them for `/metrics`: tasks in
/// each state, entries into each state, compute time, bytes produced; a group's counts leave
/// its prefix once all its tasks are forgotten.
#[test]
fn task_prefix_counters_follow_the_tasks() {
    use rask_core::counters::state_index;
    let prefix = |env: &TestEnv, name: &str| env.state.prefixes().get(name).cloned().unwrap();
    let mut env = TestEnv::new();
    let c = env.client();
    let w = env.worker_at(A);
    let graph = vec![task("x-1"), task("x-2"), task("y").deps(&["x-1", "x-2"])];
    let mut out = env.submit(c, graph, &["y"]);
    let (c1, c2) = (out.take_compute(w), out.take_compute(w));
    out.assert_empty();
    let x = prefix(&env, "x");
    assert_eq!(x.states[state_index(Processing)], 2);
    assert_eq!(x.state_counts[state_index(Waiting)], 2);
    assert_eq!(x.state_counts[state_index(Processing)], 2);
    assert_eq!(prefix(&env, "y").states[state_index(Waiting)], 1);

    env.finish(w, &c1).assert_empty();
    let mut out = env.finish(w, &c2);
    let cy = out.take_compute(w);
    out.assert_empty();
    let x = prefix(&env, "x");
    assert_eq!(x.state_counts[state_index(Memory)], 2);
    assert_eq!(x.compute_us, 500_000); // 0.25 s each
    assert_eq!(x.nbytes_total, nbytes_of(&k("x-1")) + nbytes_of(&k("x-2")));

    // `y` done: `x-1` and `x-2` are not needed any more (released while `y` is known)
    let mut out = env.finish(w, &cy);
    out.assert_client(c, vec![key_in_memory("y")]);
    out.assert_free_keys(w, &["x-1", "x-2"]);
    out.assert_empty();
    let x = prefix(&env, "x");
    assert_eq!(x.states[state_index(Released)], 2);
    assert_eq!(x.state_counts[state_index(Released)], 2);
    assert_eq!(prefix(&env, "y").states[state_index(Memory)], 1);

    // the client lets go: every task is forgotten, each group with its counts
    let mut out = env.release(c, &["y"]);
    out.assert_free_keys(w, &["y"]);
    out.assert_empty();
    for name in ["x", "y"] {
        let p = prefix(&env, name);
        assert_eq!(p.states, [0; 8], "{name}'s group went, its counts with it");
        assert_eq!(p.nbytes_total, 0);
    }
    assert_eq!(prefix(&env, "x").state_counts[state_index(Forgotten)], 2);
    assert_eq!(prefix(&env, "y").state_counts[state_index(Memory)], 1);
    assert_eq!(env.state.n_groups(), 0);
}
