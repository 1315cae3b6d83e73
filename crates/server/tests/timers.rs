//! What the scheduler does when time passes, on a paused clock: `worker-ttl` (a silent
//! worker is removed, or restarted through its nanny, and the `scheduler` topic hears of
//! it), semaphore leases that expire, the timeouts of the long polls (`event_wait`,
//! `variable_get`, `variable_set` of an unknown key, `queue_get`, `queue_put`,
//! `semaphore_acquire`, `multi_lock_acquire`, `publish_put` whose client left), `scatter`
//! with no worker, and the idle timeout.
//!
//! tokio moves a paused clock only when every task is idle, so [`advance`] (a sleep) returns
//! after everything in flight was handled, and a wait for a reply moves the clock to the
//! timer that produces it. No graph is submitted here (see `common`'s notes).

mod common;

use common::*;
use rask_protocol::Value;
use std::time::Duration;
use tokio::time::Instant;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// At least `d` of the clock passed since `start`.
fn took_at_least(start: Instant, d: Duration) {
    let took = start.elapsed();
    assert!(took >= d, "answered after {took:?}, before {d:?}");
}

fn name(v: &str) -> (&'static str, Value) {
    ("name", s(v))
}

fn timeout(secs: f64) -> (&'static str, Value) {
    ("timeout", Value::Float(secs))
}

// ---- worker-ttl ------------------------------------------------------------------------------

/// `worker-ttl` of 1 s; the scheduler waits at least ten heartbeat intervals (5 s).
async fn ttl_server() -> TestServer {
    TestServer::with(Settings {
        config: vec![("worker-ttl", Value::Float(1.0))],
        ..Settings::default()
    })
    .await
}

async fn subscribe(c: &mut Client, topic: &str) {
    let m = msg("subscribe-topic", [("topic", s(topic))]);
    c.stream.send(vec![m]).await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_worker_without_a_nanny_is_closed_and_removed_after_worker_ttl() {
    let server = ttl_server().await;
    let mut c = Client::connect(&server.address).await;
    subscribe(&mut c, "scheduler").await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let start = Instant::now();
    advance(secs(4)).await;
    assert_eq!(
        worker_addresses(&server.address).await,
        vec![w.address.clone()]
    );

    let close = w.stream.next_op("close").await;
    took_at_least(start, secs(5));
    assert_eq!(close.get("reason"), Some(&s("scheduler-remove-worker")));
    assert!(worker_addresses(&server.address).await.is_empty());

    let event = c.stream.next_op("event").await;
    assert_eq!(event.get("topic"), Some(&s("scheduler")));
    let logged = event
        .get("event")
        .and_then(Value::as_array)
        .and_then(|e| e.get(1))
        .cloned()
        .unwrap_or(Value::Nil);
    assert_eq!(
        logged,
        Value::map([
            ("action", s("worker-ttl-timed-out")),
            ("workers", keys(&[&w.address])),
            ("ttl", Value::Float(5.0)),
        ])
    );
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_heartbeats_outlives_worker_ttl() {
    let server = ttl_server().await;
    let mut w = Worker::join(&server.address, "w0", 1).await;
    let heartbeat = msg("heartbeat_worker", [("address", s(&w.address))]);
    for _ in 0..20 {
        advance(secs(1)).await;
        let reply = rpc(&server.address, heartbeat.clone()).await;
        assert_eq!(reply.get("status"), Some(&s("OK")), "{reply:?}");
    }
    assert_eq!(
        worker_addresses(&server.address).await,
        vec![w.address.clone()]
    );
    // silent from now on
    let start = Instant::now();
    w.stream.next_op("close").await;
    took_at_least(start, secs(5));
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_silent_worker_with_a_nanny_is_restarted_through_its_nanny() {
    let server = ttl_server().await;
    let mut c = Client::connect(&server.address).await;
    subscribe(&mut c, "scheduler").await;
    let nanny = Nanny::start(Duration::ZERO).await;
    let w = Worker::join_with(&server.address, "w0", 1, &[("nanny", s(&nanny.address))]).await;
    let start = Instant::now();
    nanny.wait_for_kills(1).await;
    took_at_least(start, secs(5));
    let kill = nanny.kills.lock().unwrap()[0].clone();
    assert_eq!(op_of(&kill), "kill");
    let reason = kill.get("reason").and_then(Value::as_str).unwrap_or("");
    assert!(reason.starts_with("check-worker-ttl"), "{kill:?}");
    let event = c.stream.next_op("event").await;
    let logged = event.get("event").and_then(Value::as_array);
    let workers = logged.and_then(|e| e.get(1)?.get("workers").cloned());
    assert_eq!(workers, Some(keys(&[&w.address])), "{event:?}");
    server.stop().await.unwrap();
}

// ---- semaphore leases ------------------------------------------------------------------------

/// Leases are checked every second.
async fn lease_server() -> TestServer {
    TestServer::with(Settings {
        config: vec![("lease-validation-interval", Value::Float(1.0))],
        ..Settings::default()
    })
    .await
}

fn register(sem: &str, lease_timeout: f64) -> Value {
    msg(
        "semaphore_register",
        [
            name(sem),
            ("max_leases", Value::Int(1)),
            ("lease_timeout", Value::Float(lease_timeout)),
        ],
    )
}

fn acquire(sem: &str, lease: &str) -> Value {
    msg("semaphore_acquire", [name(sem), ("lease_id", s(lease))])
}

#[tokio::test(start_paused = true)]
async fn a_lease_not_refreshed_in_time_expires_and_lets_a_waiting_acquire_in() {
    let server = lease_server().await;
    rpc(&server.address, register("s", 5.0)).await;
    let start = Instant::now();
    assert_eq!(
        rpc(&server.address, acquire("s", "a")).await,
        Value::Bool(true)
    );
    let b = Pending::send(&server.address, acquire("s", "b")).await;
    advance(secs(4)).await;
    assert!(!b.is_answered(), "a live lease was taken away");
    assert_eq!(b.answer().await, Value::Bool(true));
    took_at_least(start, secs(5));
    let value = rpc(&server.address, msg("semaphore_value", [name("s")])).await;
    assert_eq!(value, Value::Int(1));
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_refreshed_lease_does_not_expire() {
    let server = lease_server().await;
    rpc(&server.address, register("s", 5.0)).await;
    rpc(&server.address, acquire("s", "a")).await;
    let b = Pending::send(&server.address, acquire("s", "b")).await;
    let refresh = msg(
        "semaphore_refresh_leases",
        [name("s"), ("lease_ids", keys(&["a"]))],
    );
    for _ in 0..15 {
        advance(secs(2)).await;
        assert_eq!(rpc(&server.address, refresh.clone()).await, Value::Nil);
    }
    assert!(!b.is_answered(), "a refreshed lease expired");
    // the holder stops refreshing
    let start = Instant::now();
    assert_eq!(b.answer().await, Value::Bool(true));
    took_at_least(start, secs(5));
    server.stop().await.unwrap();
}

// ---- long polls with a timeout ---------------------------------------------------------------

/// Sends `request`, checks it is still waiting just before `secs`, and returns its reply.
async fn answered_after(server: &TestServer, request: Value, secs: u64) -> Value {
    let start = Instant::now();
    let pending = Pending::send(&server.address, request).await;
    advance(Duration::from_secs(secs) - Duration::from_millis(500)).await;
    assert!(!pending.is_answered(), "answered before its timeout");
    let reply = pending.answer().await;
    took_at_least(start, Duration::from_secs(secs));
    reply
}

#[tokio::test(start_paused = true)]
async fn event_wait_with_a_timeout_answers_false() {
    let server = TestServer::start().await;
    let wait = msg("event_wait", [name("e"), timeout(5.0)]);
    assert_eq!(answered_after(&server, wait, 5).await, Value::Bool(false));
    // the waiter is gone: a later set wakes nobody, and the event is set
    rpc(&server.address, msg("event_set", [name("e")])).await;
    let is_set = rpc(&server.address, msg("event_is_set", [name("e")])).await;
    assert_eq!(is_set, Value::Bool(true));
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn variable_get_with_a_timeout_raises_timeout_error() {
    let server = TestServer::start().await;
    let get = msg("variable_get", [name("v"), timeout(5.0)]);
    let reply = answered_after(&server, get, 5).await;
    assert!(is_error(&reply), "{reply:?}");
    assert!(error_text(&reply).starts_with("TimeoutError("), "{reply:?}");
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn variable_set_of_a_key_never_known_raises_timeout_error() {
    let server = TestServer::start().await;
    let set = msg(
        "variable_set",
        [name("v"), ("key", s("never-1")), timeout(5.0)],
    );
    let reply = answered_after(&server, set, 5).await;
    assert_eq!(
        error_text(&reply),
        "TimeoutError('Task never-1 unknown to scheduler.')"
    );
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn queue_get_with_a_timeout_raises_timeout_error() {
    let server = TestServer::start().await;
    rpc(&server.address, msg("queue_create", [name("q")])).await;
    let get = msg("queue_get", [name("q"), timeout(5.0)]);
    let reply = answered_after(&server, get, 5).await;
    assert!(error_text(&reply).starts_with("TimeoutError("), "{reply:?}");
    // the getter is gone: a later item stays in the queue
    rpc(
        &server.address,
        msg("queue_put", [name("q"), ("data", Value::Int(1))]),
    )
    .await;
    let size = rpc(&server.address, msg("queue_qsize", [name("q")])).await;
    assert_eq!(size, Value::Int(1));
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn queue_put_on_a_full_queue_with_a_timeout_raises_timeout_error() {
    let server = TestServer::start().await;
    let create = msg("queue_create", [name("q"), ("maxsize", Value::Int(1))]);
    rpc(&server.address, create).await;
    rpc(
        &server.address,
        msg("queue_put", [name("q"), ("data", Value::Int(1))]),
    )
    .await;
    let put = msg(
        "queue_put",
        [name("q"), ("data", Value::Int(2)), timeout(5.0)],
    );
    let reply = answered_after(&server, put, 5).await;
    assert!(error_text(&reply).starts_with("TimeoutError("), "{reply:?}");
    let size = rpc(&server.address, msg("queue_qsize", [name("q")])).await;
    assert_eq!(size, Value::Int(1), "the timed-out item went in");
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn semaphore_acquire_with_a_timeout_answers_false() {
    let server = TestServer::start().await;
    rpc(&server.address, register("s", 60.0)).await;
    rpc(&server.address, acquire("s", "a")).await;
    let mut late = acquire("s", "b");
    late.set("timeout", Value::Float(5.0));
    assert_eq!(answered_after(&server, late, 5).await, Value::Bool(false));
    let value = rpc(&server.address, msg("semaphore_value", [name("s")])).await;
    assert_eq!(value, Value::Int(1));
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn multi_lock_acquire_with_a_timeout_answers_false_and_leaves_the_queue() {
    let server = TestServer::start().await;
    let acquire = |id: &str, timeout: Value| {
        msg(
            "multi_lock_acquire",
            [
                ("locks", keys(&["l1"])),
                ("id", s(id)),
                ("num_locks", Value::Int(1)),
                ("timeout", timeout),
            ],
        )
    };
    let first = rpc(&server.address, acquire("a", Value::Nil)).await;
    assert_eq!(first, Value::Bool(true));
    let timed_out = answered_after(&server, acquire("b", Value::Float(5.0)), 5).await;
    assert_eq!(timed_out, Value::Bool(false));
    rpc(&server.address, msg("multi_lock_release", [("id", s("a"))])).await;
    // `b` gave up: the lock is free for the next one at once
    let next = rpc(&server.address, acquire("c", Value::Float(1.0))).await;
    assert_eq!(next, Value::Bool(true));
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn publish_put_whose_client_left_fails_at_the_flush_check() {
    let server = TestServer::start().await;
    let c = Client::connect(&server.address).await;
    let put = msg(
        "publish_put",
        [
            ("names", keys(&["ds"])),
            ("keys", Value::Array(vec![keys(&[])])),
            ("data", Value::Array(vec![s("v")])),
            ("override", Value::Bool(false)),
            ("client", s(&c.name)),
            ("uid", s("u1")),
        ],
    );
    c.close().await;
    // the flush never comes; every 30 s the request checks that its client is still there
    let reply = answered_after(&server, put, 30).await;
    assert!(is_error(&reply), "{reply:?}");
    assert!(error_text(&reply).starts_with("TimeoutError("), "{reply:?}");
    let names = rpc(&server.address, msg("publish_list", [])).await;
    assert_eq!(names, Value::Array(Vec::new()));
    server.stop().await.unwrap();
}

// ---- scatter ---------------------------------------------------------------------------------

/// `Client.scatter`'s request for one key.
fn scatter(client: &Client, timeout: f64) -> Value {
    msg(
        "scatter",
        [
            ("data", Value::map([("x-1", Value::Int(1))])),
            ("workers", Value::Nil),
            ("client", s(&client.name)),
            ("broadcast", Value::Bool(false)),
            ("timeout", Value::Float(timeout)),
        ],
    )
}

#[tokio::test(start_paused = true)]
async fn scatter_with_no_worker_fails_with_a_timeout() {
    let server = TestServer::start().await;
    let c = Client::connect(&server.address).await;
    let reply = answered_after(&server, scatter(&c, 3.0), 3).await;
    assert!(is_error(&reply), "{reply:?}");
    let text = error_text(&reply);
    assert!(text.starts_with("TimeoutError("), "{text}");
    assert!(text.contains("No valid workers found"), "{text}");
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn scatter_waits_for_a_worker_that_joins_in_time() {
    let server = TestServer::start().await;
    let c = Client::connect(&server.address).await;
    let scattering = Pending::send(&server.address, scatter(&c, 3.0)).await;
    advance(secs(1)).await;
    assert!(!scattering.is_answered());
    let w = Worker::join(&server.address, "w0", 1).await;
    assert_eq!(scattering.answer().await, keys(&["x-1"]));
    let who = rpc(&server.address, msg("who_has", [("keys", keys(&["x-1"]))])).await;
    assert_eq!(who.get("x-1"), Some(&keys(&[&w.address])), "{who:?}");
    server.stop().await.unwrap();
}

// ---- idle timeout ----------------------------------------------------------------------------

fn idle_after(d: Duration) -> Settings {
    Settings {
        idle_timeout: Some(d),
        ..Settings::default()
    }
}

/// Moves the clock until the scheduler ended by itself.
async fn until_ended(server: &TestServer) {
    bounded("the scheduler to end by itself", async {
        while server.is_running() {
            advance(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_scheduler_stops_by_itself_after_the_idle_timeout() {
    let server = TestServer::with(idle_after(secs(10))).await;
    let start = Instant::now();
    advance(secs(9)).await;
    assert!(server.is_running(), "stopped before the idle timeout");
    until_ended(&server).await;
    took_at_least(start, secs(10));
    server.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_connected_client_keeps_the_scheduler_from_idling_out() {
    let server = TestServer::with(idle_after(secs(10))).await;
    let c = Client::connect(&server.address).await;
    advance(secs(30)).await;
    assert!(server.is_running(), "stopped with a client connected");
    c.close().await;
    let start = Instant::now();
    server.ended().await.unwrap();
    took_at_least(start, secs(9));
}
