//! Actors (`actor=True`): the worker keeps the object, so the task is placed by the number
//! of actors a worker has, never queued, and errs (not recomputed) when its worker is lost.
#![allow(clippy::unwrap_used)]

mod env;

use env::*;
use rask_core::{Exception, TaskStatus::*, ToClient};
use rask_protocol::Value;

#[test]
fn actor_flag_reaches_the_worker_and_the_actor_counts_against_it() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit_actors(c, vec![task("counter")], ks(&["counter"]), ks(&["counter"]));
    let ct = out.take_compute(wa);
    out.assert_empty();
    assert!(ct.actor, "compute-task must say actor=True");
    assert!(env.task("counter").actor);
    let mut out = env.finish(wa, &ct);
    out.assert_client(c, vec![key_in_memory("counter")]);
    out.assert_empty();
    assert!(env.state.worker(wa).unwrap().actors.len() == 1);
}

#[test]
fn plain_tasks_are_not_actors() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit(c, vec![task("x")], &["x"]);
    assert!(!out.take_compute(wa).actor);
    out.assert_empty();
}

#[test]
fn actors_spread_over_workers_by_how_many_they_hold() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let wb = env.worker_at(B);
    let c = env.client();
    let mut placed = Vec::new();
    for name in ["a1", "a2"] {
        let mut out = env.submit_actors(c, vec![task(name)], ks(&[name]), ks(&[name]));
        let (w, ct) = out.take_compute_of(name);
        out.assert_empty();
        env.finish(w, &ct).discard();
        placed.push(w);
    }
    placed.sort();
    assert_eq!(placed, vec![wa, wb], "one actor per worker");
}

#[test]
fn an_actor_whose_worker_is_lost_errs_instead_of_being_recomputed() {
    let mut env = TestEnv::new();
    let wa = env.worker_at(A);
    let c = env.client();
    let mut out = env.submit_actors(
        c,
        vec![task("counter"), task("use").deps(&["counter"])],
        ks(&["counter", "use"]),
        ks(&["counter"]),
    );
    let ct = out.take_compute(wa);
    out.assert_empty();
    let mut out = env.finish(wa, &ct);
    out.assert_client(c, vec![key_in_memory("counter")]);
    let cu = out.take_compute(wa);
    out.assert_empty();
    let wb = env.worker_at(B);
    let mut out = env.kill_worker(wa);
    out.assert_remove_worker(wb, A);
    let lost = ToClient::TaskErred {
        key: k("counter"),
        exception: Exception::ActorLost,
        traceback: Value::Nil,
    };
    let to_client = out.take_client(c);
    let use_erred = ToClient::TaskErred {
        key: k("use"),
        exception: Exception::ActorLost,
        traceback: Value::Nil,
    };
    assert!(to_client.contains(&lost), "{to_client:?}");
    assert!(to_client.contains(&use_erred), "{to_client:?}");
    assert!(
        to_client
            .iter()
            .all(|m| !matches!(m, ToClient::LostData { .. })),
        "an actor is not reported lost and recomputed: {to_client:?}"
    );
    out.assert_empty();
    assert_eq!(env.state_of("counter"), Some(Erred));
    assert_eq!(env.state_of("use"), Some(Erred), "{:?}", cu.key);
    assert!(env.state.worker(wb).unwrap().processing.is_empty());
}
