//! Work stealing: an idle worker takes tasks a busy worker has not started.
#![allow(clippy::unwrap_used)]

mod env;

use env::*;
use rask_core::{Command, CoreConfig, Stimulus, ToWorker, WorkerId};
use rask_protocol::Key;
use std::sync::Arc;

/// Six tasks all on A (queuing off so they go out at once), then B joins idle.
fn backlog_on_a(config: CoreConfig) -> (TestEnv, WorkerId, WorkerId) {
    let mut env = TestEnv::with_config(CoreConfig {
        worker_saturation: f64::INFINITY,
        ..config
    });
    let wa = env.worker_at(A);
    let c = env.client();
    let names: Vec<String> = (0..6).map(|i| format!("t-{i}")).collect();
    let tasks = names.iter().map(|n| task(n)).collect();
    let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut out = env.submit(c, tasks, &wanted);
    assert_eq!(out.take_computes(wa).len(), 6);
    out.assert_empty();
    let wb = env.worker_at(B);
    (env, wa, wb)
}

/// The steal requests of one balance: (victim, key, stimulus id).
fn balance(env: &mut TestEnv) -> Vec<(WorkerId, Key, Arc<str>)> {
    env.handle(Stimulus::Balance)
        .take_all()
        .into_iter()
        .map(|c| match c {
            Command::Worker(w, ToWorker::StealRequest { key, stimulus_id }) => {
                (w, key, stimulus_id)
            }
            other => panic!("not a steal request: {other:?}"),
        })
        .collect()
}

fn respond(env: &mut TestEnv, w: WorkerId, key: &Key, state: &str, sid: &Arc<str>) -> Out {
    env.handle(Stimulus::StealResponse {
        worker: w,
        key: key.clone(),
        state: Some(state.into()),
        stimulus_id: sid.clone(),
    })
}

#[test]
fn an_idle_worker_takes_the_task_that_would_run_last() {
    let (mut env, wa, wb) = backlog_on_a(CoreConfig::default());
    let steals = balance(&mut env);
    assert_eq!(steals.len(), 1, "one free thread on B");
    let (victim, key, sid) = &steals[0];
    assert_eq!(*victim, wa);
    assert_eq!(*key, k("t-5"));
    // nothing more is asked while the request is out
    assert!(balance(&mut env).is_empty());
    let mut out = respond(&mut env, wa, key, "ready", sid);
    out.assert_computes(wb, &["t-5"]);
    out.assert_empty();
    assert_eq!(env.processing_on("t-5"), Some(wb));
    // the thief's report completes it
    let ct = env.computing("t-5");
    let mut out = env.finish(wb, &ct);
    out.take_client(rask_core::ClientId(1));
    out.assert_empty();
}

#[test]
fn a_task_already_running_stays() {
    let (mut env, wa, _) = backlog_on_a(CoreConfig::default());
    let (victim, key, sid) = balance(&mut env).remove(0);
    respond(&mut env, victim, &key, "executing", &sid).assert_empty();
    assert_eq!(env.processing_on("t-5"), Some(wa));
    // and a later balance may try again
    assert_eq!(balance(&mut env).len(), 1);
}

#[test]
fn stale_answers_are_ignored() {
    let (mut env, wa, _) = backlog_on_a(CoreConfig::default());
    let (victim, key, _) = balance(&mut env).remove(0);
    respond(&mut env, victim, &key, "ready", &Arc::from("other")).assert_empty();
    assert_eq!(env.processing_on("t-5"), Some(wa));
}

#[test]
fn a_task_that_finishes_meanwhile_is_not_moved() {
    let (mut env, wa, _) = backlog_on_a(CoreConfig::default());
    let (victim, key, sid) = balance(&mut env).remove(0);
    let ct = env.computing("t-5");
    env.finish(wa, &ct).discard();
    respond(&mut env, victim, &key, "memory", &sid).assert_empty();
    env.assert_states(&[("t-5", rask_core::TaskStatus::Memory)]);
}

#[test]
fn a_thief_that_left_gets_nothing_and_the_task_is_rescheduled() {
    let (mut env, wa, wb) = backlog_on_a(CoreConfig::default());
    let (victim, key, sid) = balance(&mut env).remove(0);
    env.kill_worker(wb).discard();
    let mut out = respond(&mut env, victim, &key, "ready", &sid);
    out.assert_free_keys(wa, &["t-5"]);
    out.assert_computes(wa, &["t-5"]);
    out.assert_empty();
}

#[test]
fn no_stealing_when_it_is_off() {
    let (mut env, _, _) = backlog_on_a(CoreConfig {
        work_stealing: false,
        ..CoreConfig::default()
    });
    assert!(balance(&mut env).is_empty());
}
