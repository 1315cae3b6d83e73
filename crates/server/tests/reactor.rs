//! The state task without tokio or sockets: typed events into [`Scheduler::handle`], every
//! effect recorded by a fake [`Outbox`]. What HyperQueue's reactor tests do with a
//! `TestComm`: a handler's effects are checked one by one, and a sequence of events can be
//! replayed.

use bytes::Bytes;
use rask_core::{ClientId, NewTask, Stimulus, WorkerId, WorkerStatus};
use rask_protocol::{Key, Value};
use rask_server::dask_config::DaskConfig;
use rask_server::event::{
    AfterKill, ClientTx, Done, Event, Job, Joined, Replier, RpcResult, Timer, WorkerTx,
};
use rask_server::messages::{ClientMsg, GraphRequest, Registration, Rpc, ToClientMsg, ToWorkerMsg};
use rask_server::outbox::Outbox;
use rask_server::reactor::{Identity, Scheduler};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// One recorded effect (RPC replies are also delivered to their receiver). Fields some
/// tests do not match on still show in failure messages.
#[derive(Debug)]
#[allow(dead_code)]
enum Effect {
    Worker(WorkerId, ToWorkerMsg),
    Client(ClientId, ToClientMsg),
    Reply,
    Start(Job),
    After(Duration, Timer),
    OpenWorker(WorkerId),
    CloseWorker(WorkerId),
    OpenClient(ClientId),
    CloseClient(ClientId),
    Host(rask_server::plugin_host::ToHost),
    Stop,
}

/// The fake outbox: records everything, in order.
#[derive(Default)]
struct Recorder {
    effects: Vec<Effect>,
}

impl Outbox for Recorder {
    fn to_worker(&mut self, worker: WorkerId, msg: ToWorkerMsg) {
        self.effects.push(Effect::Worker(worker, msg));
    }
    fn to_client(&mut self, client: ClientId, msg: ToClientMsg) {
        self.effects.push(Effect::Client(client, msg));
    }
    fn reply(&mut self, to: Replier, result: RpcResult) {
        self.effects.push(Effect::Reply);
        to.send(result);
    }
    fn start(&mut self, job: Job) {
        self.effects.push(Effect::Start(job));
    }
    fn after(&mut self, delay: Duration, timer: Timer) {
        self.effects.push(Effect::After(delay, timer));
    }
    fn open_worker(&mut self, worker: WorkerId, _stream: WorkerTx) {
        self.effects.push(Effect::OpenWorker(worker));
    }
    fn close_worker(&mut self, worker: WorkerId) {
        self.effects.push(Effect::CloseWorker(worker));
    }
    fn open_client(&mut self, client: ClientId, _stream: ClientTx) {
        self.effects.push(Effect::OpenClient(client));
    }
    fn close_client(&mut self, client: ClientId) {
        self.effects.push(Effect::CloseClient(client));
    }
    fn open_watcher(&mut self, _stream: rask_server::messages::cluster::StatusTx) {}
    fn to_watchers(&mut self, _msg: rask_server::messages::cluster::WorkerStatusMsg) {}
    fn to_host(&mut self, msg: rask_server::plugin_host::ToHost) {
        self.effects.push(Effect::Host(msg));
    }
    fn stop(&mut self) {
        self.effects.push(Effect::Stop);
    }
}

/// A scheduler, its fake outbox and a clock the test moves.
struct Env {
    s: Scheduler,
    out: Recorder,
    now: f64,
}

impl Env {
    fn new() -> Env {
        let identity = Identity {
            address: "tcp://127.0.0.1:8786".into(),
            dashboard_port: None,
            versions: Value::Nil,
            worker_plugins: Value::Map(Vec::new()),
        };
        let mut s = Scheduler::new(identity, DaskConfig::default(), None, 1000.0);
        s.set_validate(true);
        Env {
            s,
            out: Recorder::default(),
            now: 1000.0,
        }
    }

    fn handle(&mut self, e: Event) {
        self.s.handle(self.now, e, &mut self.out);
    }

    /// Takes the effects recorded so far.
    fn take(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.out.effects)
    }

    fn worker(&mut self, name: &str, nanny: Option<&str>) -> (WorkerId, Joined) {
        let (tx, _rx) = mpsc::unbounded_channel();
        let (reply, rx) = oneshot::channel();
        self.handle(Event::WorkerJoined {
            registration: Box::new(registration(name, nanny)),
            stream: tx,
            reply,
        });
        let joined = rx.answered();
        let id = match &joined {
            Joined::Accepted { worker, .. } => *worker,
            Joined::Refused { .. } => WorkerId(0),
        };
        (id, joined)
    }

    fn client(&mut self, name: &str) -> ClientId {
        let (tx, _rx) = mpsc::unbounded_channel();
        let (reply, rx) = oneshot::channel();
        self.handle(Event::ClientJoined {
            name: name.into(),
            versions: Value::Nil,
            stream: tx,
            reply,
        });
        rx.answered()
    }

    fn rpc(&mut self, request: Rpc) -> oneshot::Receiver<RpcResult> {
        let (reply, rx) = Replier::new();
        self.handle(Event::Rpc { request, reply });
        rx
    }
}

/// A oneshot the state task has already answered (handlers are synchronous).
trait Answered<T> {
    fn answered(self) -> T;
}

impl<T> Answered<T> for oneshot::Receiver<T> {
    fn answered(mut self) -> T {
        self.try_recv()
            .expect("the state task answered synchronously")
    }
}

fn registration(name: &str, nanny: Option<&str>) -> Registration {
    Registration {
        address: format!("tcp://10.0.0.1:{}", 9000 + name.len()).into(),
        name_value: Value::from(name),
        name: name.into(),
        nthreads: 1,
        memory_limit: 1 << 30,
        resources_value: Value::Map(Vec::new()),
        resources: Vec::new(),
        status: WorkerStatus::Running,
        local_directory: Value::Nil,
        services: Value::Map(Vec::new()),
        nanny: nanny.map_or(Value::Nil, Value::from),
        metrics: Value::Map(Vec::new()),
        versions: Value::Nil,
        server_id: name.into(),
    }
}

fn graph_request(keys: &[&str]) -> ClientMsg {
    ClientMsg::UpdateGraph(Box::new(GraphRequest {
        keys: keys.iter().map(|k| Key::str(k)).collect(),
        fifo_timeout: 0.1,
        actors: Vec::new(),
        helper_request: Value::Nil,
        big: false,
    }))
}

fn materialized(client: ClientId, key: &str) -> Done {
    Done::Graph {
        client,
        stimulus: Box::new(Stimulus::UpdateGraph {
            client,
            tasks: vec![NewTask {
                key: Key::str(key),
                deps: Vec::new(),
                run_spec: Bytes::from_static(b"spec"),
                order: 0,
                prefix: "t".into(),
                annotations: Value::Map(Vec::new()),
                workers: Vec::new(),
                allow_other_workers: false,
                resources: Vec::new(),
                retries: 0,
                user_priority: 0,
                watch: false,
                data_producer: false,
            }],
            keys: vec![Key::str(key)],
            fifo_timeout: 0.1,
            actors: Vec::new(),
            outside: None,
            stimulus_id: "update-graph-test".into(),
        }),
    }
}

#[test]
fn a_worker_name_already_taken_is_refused_with_dasks_message() {
    let mut env = Env::new();
    let (w, joined) = env.worker("alice", None);
    assert!(matches!(joined, Joined::Accepted { .. }));
    let effects = env.take();
    assert!(matches!(effects.first(), Some(Effect::OpenWorker(id)) if *id == w));
    let (_, again) = env.worker("alice", None);
    let Joined::Refused { reply } = again else {
        panic!("a second alice was accepted")
    };
    assert_eq!(
        reply.get("message"),
        Some(&Value::from("name taken, alice"))
    );
    assert!(env.take().is_empty(), "a refused worker has no effect");
}

#[test]
fn a_clients_messages_and_its_leaving_wait_behind_its_graph() {
    let mut env = Env::new();
    let c = env.client("Client-1");
    env.take();
    env.handle(Event::Client {
        client: c,
        msgs: vec![graph_request(&["x"]), ClientMsg::HeartbeatClient],
    });
    env.handle(Event::ClientLeft { client: c });
    let effects = env.take();
    assert_eq!(effects.len(), 1, "{effects:?}");
    assert!(matches!(&effects[0], Effect::Start(Job::Materialize { client, .. }) if *client == c));
    // the graph lands: then the heartbeat is answered, then the client leaves
    env.handle(Event::Done(materialized(c, "x")));
    let effects = env.take();
    let heartbeat = effects.iter().position(
        |e| matches!(e, Effect::Client(id, ToClientMsg::AdjustHeartbeat { .. }) if *id == c),
    );
    let left = effects
        .iter()
        .position(|e| matches!(e, Effect::CloseClient(id) if *id == c));
    assert!(heartbeat.is_some() && left.is_some(), "{effects:?}");
    assert!(heartbeat < left, "{effects:?}");
    // the client is gone and so are its keys
    assert_eq!(env.s.core().n_tasks(), 0);
}

#[test]
fn a_second_graph_holds_what_follows_it_again() {
    let mut env = Env::new();
    let c = env.client("Client-1");
    env.handle(Event::Client {
        client: c,
        msgs: vec![
            graph_request(&["x"]),
            graph_request(&["y"]),
            ClientMsg::HeartbeatClient,
        ],
    });
    env.take();
    env.handle(Event::Done(materialized(c, "x")));
    let effects = env.take();
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Start(Job::Materialize { .. }))),
        "the second graph starts: {effects:?}"
    );
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Client(_, ToClientMsg::AdjustHeartbeat { .. }))),
        "the heartbeat waits for the second graph: {effects:?}"
    );
    env.handle(Event::Done(materialized(c, "y")));
    assert!(env
        .take()
        .iter()
        .any(|e| matches!(e, Effect::Client(_, ToClientMsg::AdjustHeartbeat { .. }))));
}

#[test]
fn restart_answers_once_as_many_workers_are_back() {
    let mut env = Env::new();
    let (w, _) = env.worker("w0", Some("tcp://10.0.0.1:7000"));
    let c = env.client("Client-1");
    env.take();
    let mut rx = env.rpc(Rpc::Restart {
        timeout: Duration::from_secs(30),
        wait_for_workers: true,
        stimulus_id: "restart-test".into(),
    });
    let effects = env.take();
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Client(id, ToClientMsg::Restart) if *id == c)));
    let then = effects
        .into_iter()
        .find_map(|e| match e {
            Effect::Start(Job::KillNannies { nannies, then, .. }) => {
                assert_eq!(nannies.len(), 1);
                Some(then)
            }
            _ => None,
        })
        .expect("the nanny is asked to kill its worker");
    // the killed worker's stream ends, then its nanny answers
    env.handle(Event::WorkerLeft {
        worker: w,
        expected: false,
    });
    let address: Arc<str> = registration("w0", None).address;
    env.handle(Event::Done(Done::Killed {
        outcomes: vec![(address, true)],
        then,
    }));
    assert!(rx.try_recv().is_err(), "no answer while the worker is away");
    let after: Vec<_> = env.take();
    assert!(
        after
            .iter()
            .any(|e| matches!(e, Effect::After(_, Timer::WorkersBack(_)))),
        "{after:?}"
    );
    // the nanny's new worker registers: the restart is done
    env.worker("w0-again", None);
    assert_eq!(rx.try_recv().expect("answered").expect("ok"), Value::Nil);
}

#[test]
fn restarted_workers_that_do_not_come_back_fail_the_restart() {
    let mut env = Env::new();
    let (w, _) = env.worker("w0", Some("tcp://10.0.0.1:7000"));
    let mut rx = env.rpc(Rpc::Restart {
        timeout: Duration::from_secs(5),
        wait_for_workers: true,
        stimulus_id: "restart-test".into(),
    });
    let then = env
        .take()
        .into_iter()
        .find_map(|e| match e {
            Effect::Start(Job::KillNannies { then, .. }) => Some(then),
            _ => None,
        })
        .expect("kill");
    env.handle(Event::WorkerLeft {
        worker: w,
        expected: false,
    });
    env.handle(Event::Done(Done::Killed {
        outcomes: vec![(registration("w0", None).address, true)],
        then,
    }));
    let timer = env
        .take()
        .into_iter()
        .find_map(|e| match e {
            Effect::After(d, t @ Timer::WorkersBack(_)) => {
                assert_eq!(d, Duration::from_secs(5));
                Some(t)
            }
            _ => None,
        })
        .expect("a deadline");
    env.now += 5.0;
    env.handle(Event::Timer(timer));
    let e = rx.try_recv().expect("answered").expect_err("an error");
    assert!(e.to_string().contains("have not returned"), "{e}");
}

#[test]
fn the_worker_ttl_check_restarts_a_silent_worker_through_its_nanny() {
    let mut env = Env::new();
    env.worker("w0", Some("tcp://10.0.0.1:7000"));
    env.take();
    // Dask's default worker-ttl is 300 s
    env.now += 301.0;
    env.handle(Event::Tick);
    let effects = env.take();
    let kill = effects.iter().find_map(|e| match e {
        Effect::Start(Job::KillNannies { nannies, then, .. }) => Some((nannies, then)),
        _ => None,
    });
    let Some((nannies, AfterKill::WorkerTtl)) = kill else {
        panic!("no worker-ttl restart: {effects:?}")
    };
    assert_eq!(&*nannies[0].1, "tcp://10.0.0.1:7000");
}

#[test]
fn gather_of_a_key_nobody_holds_answers_at_once_without_a_job() {
    let mut env = Env::new();
    let mut rx = env.rpc(Rpc::Gather {
        keys: vec![Key::str("nobody-has-it")],
        serializers: None,
    });
    // no holder: answered at once, no job
    let reply = rx.try_recv().expect("answered").expect("ok");
    assert_eq!(reply.get("status"), Some(&Value::from("error")));
    assert!(env.take().iter().all(|e| matches!(e, Effect::Reply)));
}

/// The same events give the same stream messages: what reaches the state task is the
/// whole story, so a logged sequence can be replayed.
#[test]
fn a_sequence_of_events_replays_to_the_same_messages() {
    fn run() -> Vec<String> {
        let mut env = Env::new();
        let (w, _) = env.worker("w0", None);
        let c = env.client("Client-1");
        env.handle(Event::Client {
            client: c,
            msgs: vec![graph_request(&["x"])],
        });
        env.handle(Event::Done(materialized(c, "x")));
        env.handle(Event::Worker {
            worker: w,
            msgs: vec![rask_server::messages::WorkerMsg::Core(
                Stimulus::TaskFinished {
                    worker: w,
                    key: Key::str("x"),
                    run_id: 1,
                    nbytes: 8,
                    type_: Value::Nil,
                    compute_duration: Some(0.1),
                    transfer_duration: 0.0,
                    stimulus_id: "finished".into(),
                },
            )],
        });
        env.take()
            .into_iter()
            .filter(|e| matches!(e, Effect::Worker(..) | Effect::Client(..)))
            .map(|e| format!("{e:?}"))
            .collect()
    }
    let first = run();
    assert!(
        first.iter().any(|m| m.contains("KeyInMemory")),
        "the graph ran: {first:?}"
    );
    assert_eq!(first, run());
}
