//! The plugin host (docs/plugin-host.md): one Python process beside the scheduler where
//! scheduler plugins, `run_on_scheduler` functions that take `dask_scheduler`, progress-bar
//! feeds and preload scripts run against a facade of the scheduler.
//!
//! A manager task owns the process: it starts it when first needed, writes what the state
//! task sends ([`ToHost`]) in that order, routes the host's replies and feed messages, and
//! when the host dies fails what was in flight and tells the state task, which sends the
//! whole state again and registers its plugins again.

use crate::error::HelperError;
use crate::helper::{read_frame, write_frame};
use rask_protocol::Value;
use rustc_hash::FxHashMap;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

/// The host's Python source.
pub const HOST_SOURCE: &str = include_str!("../../../python/rask_plugin_host.py");

/// How long the host may take to run its `close` hooks when the scheduler stops.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A reply of the host, or why there is none.
pub type HostReply = Result<Value, HelperError>;

/// What the state task sends the host, in the order it must arrive.
#[derive(Debug)]
pub enum ToHost {
    /// `{"op": "events"}`: changes for the host's mirror (the first after the host
    /// (re)starts is a `reset`)
    Events(Vec<Value>),
    /// a request; its reply goes to `reply`
    Request {
        /// the request (`"id"` is set here)
        request: Value,
        /// where its reply goes
        reply: oneshot::Sender<HostReply>,
    },
    /// `feed_start`: like a request, and the feed's responses go to `responses` until the
    /// feed ends (its sender dropped)
    Feed {
        /// the request, with its `"feed"` number
        request: Value,
        /// where its reply goes
        reply: oneshot::Sender<HostReply>,
        /// where the feed's responses go
        responses: mpsc::UnboundedSender<Value>,
    },
}

/// What the host tells the state task.
#[derive(Debug)]
pub enum HostNote {
    /// the host holds this many plugins now
    Plugins(usize),
    /// the host died (what it held in flight has failed)
    Died {
        /// its exit status
        status: String,
    },
}

/// Where the host's news goes (the state task's own channel, as `Event::Host`).
pub type Notify = std::sync::Arc<dyn Fn(HostNote) + Send + Sync>;

/// How to start the host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// the Python interpreter
    pub python: String,
    /// the scheduler's address, which the facade calls for what it does to the scheduler
    pub address: String,
    /// the scheduler's id (`Scheduler.id`)
    pub id: String,
    /// `--preload` modules, files or URLs, run when the host starts
    pub preload: Vec<String>,
    /// `--preload-argv`
    pub preload_argv: Vec<String>,
    /// how long the host may take to import Dask and run its preloads
    pub start_timeout: Duration,
}

/// Handle to the plugin host; cheap to clone.
#[derive(Clone, Debug)]
pub struct HostHandle {
    tx: mpsc::UnboundedSender<Managed>,
}

#[derive(Debug)]
enum Managed {
    Send(ToHost),
    /// start the host now if it is not running (its preloads run)
    Start(oneshot::Sender<Result<(), HelperError>>),
    /// stop the host after its `close` hooks; answered when it is gone
    Close(oneshot::Sender<()>),
}

impl HostHandle {
    /// Starts the manager; the host process starts with the first request or `reset`.
    /// Its news goes to `notes`.
    pub fn new(config: HostConfig, notes: Notify) -> HostHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(manage(config, rx, notes));
        HostHandle { tx }
    }

    /// Starts the host now, if it is not running, and waits until it is ready (its
    /// preloads ran).
    pub async fn start_now(&self) -> Result<(), HelperError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Managed::Start(tx))
            .map_err(|_| HelperError::Gone)?;
        rx.await.map_err(|_| HelperError::Gone)?
    }

    /// Queues a message for the host (dropped if the manager is gone).
    pub fn send(&self, msg: ToHost) {
        if let Err(mpsc::error::SendError(Managed::Send(msg))) = self.tx.send(Managed::Send(msg)) {
            fail(msg, HelperError::Gone);
        }
    }

    /// Runs the plugins' `close` hooks and stops the host, within a few seconds.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Managed::Close(tx)).is_ok() {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT + Duration::from_secs(1), rx).await;
        }
    }
}

/// Fails a message's reply (a request the host will not answer).
fn fail(msg: ToHost, error: HelperError) {
    match msg {
        ToHost::Events(_) => {}
        ToHost::Request { reply, .. } | ToHost::Feed { reply, .. } => {
            let _ = reply.send(Err(error));
        }
    }
}

/// A running host: its stdin's writer and the messages read from its stdout.
struct Running {
    child: Child,
    stdin: mpsc::UnboundedSender<Vec<u8>>,
    incoming: mpsc::UnboundedReceiver<Result<Value, HelperError>>,
}

async fn spawn(config: &HostConfig) -> Result<Running, HelperError> {
    let mut command = Command::new(&config.python);
    command
        .arg("-u")
        .arg("-c")
        .arg(HOST_SOURCE)
        .arg("serve")
        .arg("--address")
        .arg(&config.address)
        .arg("--id")
        .arg(&config.id);
    for p in &config.preload {
        command.arg("--preload").arg(p);
    }
    for a in &config.preload_argv {
        command.arg("--preload-argv").arg(a);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| HelperError::Spawn {
            python: config.python.clone(),
            source,
        })?;
    let (Some(mut stdin), Some(mut stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(HelperError::Protocol("the plugin host's pipes are missing"));
    };
    // The host's log (plugins' own logging included) goes to ours, a line per record.
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(target: "rask::plugin_host", "{line}");
        }
    });
    let ready = tokio::time::timeout(config.start_timeout, read_frame(&mut stdout))
        .await
        .map_err(|_| HelperError::StartTimeout(config.start_timeout))??;
    match ready.get("op").and_then(Value::as_str) {
        Some("ready") => {}
        Some("fatal") => {
            let error = ready.get("error").and_then(Value::as_str).unwrap_or("?");
            return Err(HelperError::HostFatal(error.to_string()));
        }
        _ => {
            return Err(HelperError::Protocol(
                "the plugin host's first message is not `ready`",
            ))
        }
    }
    tracing::info!(pid = ?child.id(), "plugin host ready");
    let (in_tx, incoming) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let msg = read_frame(&mut stdout).await;
            let end = msg.is_err();
            if in_tx.send(msg).is_err() || end {
                return;
            }
        }
    });
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    // A host busy in a plugin stops reading; its pipe fills and only this task waits.
    tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if write_frame(&mut stdin, &frame).await.is_err() {
                return;
            }
        }
    });
    Ok(Running {
        child,
        stdin: out_tx,
        incoming,
    })
}

/// What the manager keeps about the running host.
#[derive(Default)]
struct Routes {
    next_id: i64,
    pending: FxHashMap<i64, oneshot::Sender<HostReply>>,
    feeds: FxHashMap<i64, mpsc::UnboundedSender<Value>>,
}

async fn manage(config: HostConfig, mut rx: mpsc::UnboundedReceiver<Managed>, notes: Notify) {
    let mut host: Option<Running> = None;
    let mut routes = Routes::default();
    let mut failures = 0u32;
    loop {
        let incoming = async {
            match host.as_mut() {
                Some(h) => h.incoming.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Managed::Send(msg)) => {
                    if host.is_none() {
                        // Events are for a host that has the state: after a death, only a
                        // `reset` (which the state task sends once it heard) starts one.
                        if let ToHost::Events(events) = &msg {
                            if !starts_with_reset(events) {
                                continue;
                            }
                        }
                        if let Err(e) = ensure(&config, &mut host, &mut failures).await {
                            fail(msg, e);
                            continue;
                        }
                    }
                    if let Some(h) = &host {
                        write(h, &mut routes, msg);
                    }
                }
                Some(Managed::Start(done)) => {
                    let _ = done.send(ensure(&config, &mut host, &mut failures).await);
                }
                Some(Managed::Close(done)) => {
                    if let Some(mut h) = host.take() {
                        close(&mut h, &mut routes, &notes).await;
                    }
                    let _ = done.send(());
                    return;
                }
                None => return,
            },
            Some(msg) = incoming => match msg {
                Ok(msg) => route(msg, &mut routes, &notes),
                Err(e) => {
                    let Some(mut h) = host.take() else { continue };
                    let _ = h.child.kill().await;
                    let status = h.child.wait().await.map(|s| s.to_string()).unwrap_or_default();
                    tracing::error!(
                        "the plugin host died ({status}): {e}; its plugins are registered \
                         again in a new one"
                    );
                    for (_, reply) in routes.pending.drain() {
                        let _ = reply.send(Err(HelperError::HostDied { status: status.clone() }));
                    }
                    routes.feeds.clear();
                    notes(HostNote::Died { status });
                }
            },
        }
    }
}

/// Starts the host if it is not running; a host that keeps failing to start is tried
/// again more and more slowly.
async fn ensure(
    config: &HostConfig,
    host: &mut Option<Running>,
    failures: &mut u32,
) -> Result<(), HelperError> {
    if host.is_some() {
        return Ok(());
    }
    if *failures > 0 {
        let pause = 200 * u64::from((*failures).min(25));
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    match spawn(config).await {
        Ok(running) => {
            *failures = 0;
            *host = Some(running);
            Ok(())
        }
        Err(e) => {
            *failures += 1;
            tracing::error!("the plugin host failed to start: {e}");
            Err(e)
        }
    }
}

fn starts_with_reset(events: &[Value]) -> bool {
    events
        .first()
        .and_then(|e| e.as_array())
        .and_then(|e| e.first())
        .and_then(Value::as_str)
        == Some("reset")
}

/// Writes one message, keeping where its reply goes.
fn write(host: &Running, routes: &mut Routes, msg: ToHost) {
    let request = match msg {
        ToHost::Events(events) => Value::Map(vec![
            (Value::from("op"), Value::from("events")),
            (Value::from("events"), Value::Array(events)),
        ]),
        ToHost::Request { request, reply } => routes.request(request, reply),
        ToHost::Feed {
            request,
            reply,
            responses,
        } => {
            if let Some(feed) = request.get("feed").and_then(Value::as_i64) {
                routes.feeds.insert(feed, responses);
            }
            routes.request(request, reply)
        }
    };
    let _ = host
        .stdin
        .send(rask_protocol::msgpack::encode_value(&request).to_vec());
}

impl Routes {
    fn request(&mut self, mut request: Value, reply: oneshot::Sender<HostReply>) -> Value {
        self.next_id += 1;
        request.set("id", Value::Int(self.next_id));
        self.pending.insert(self.next_id, reply);
        request
    }
}

/// A message from the host: a reply, a feed's response or end, a plugin count.
fn route(msg: Value, routes: &mut Routes, notes: &Notify) {
    if let Some(id) = msg.get("id").and_then(Value::as_i64) {
        if let Some(n) = msg.get("plugins").and_then(Value::as_i64) {
            notes(HostNote::Plugins(n.max(0) as usize));
        }
        match routes.pending.remove(&id) {
            Some(reply) => {
                let _ = reply.send(Ok(msg));
            }
            None => tracing::warn!(id, "a plugin host reply nobody waits for"),
        }
        return;
    }
    match msg.get("op").and_then(Value::as_str) {
        Some("feed") => {
            let Some(feed) = msg.get("feed").and_then(Value::as_i64) else {
                return;
            };
            if let Some(end) = msg.get("end") {
                tracing::warn!(feed, "a feed ended in the plugin host: {end:?}");
                routes.feeds.remove(&feed);
            } else if let Some(tx) = routes.feeds.get(&feed) {
                let response = msg.get("response").cloned().unwrap_or(Value::Nil);
                if tx.send(response).is_err() {
                    routes.feeds.remove(&feed);
                }
            }
        }
        Some("plugins") => {
            let n = msg.get("count").and_then(Value::as_i64).unwrap_or(0);
            notes(HostNote::Plugins(n.max(0) as usize));
        }
        _ => tracing::warn!("an unexpected message from the plugin host: {msg:?}"),
    }
}

/// `close`: the plugins' `before_close` and `close` hooks, then the host exits.
async fn close(host: &mut Running, routes: &mut Routes, notes: &Notify) {
    let (tx, mut rx) = oneshot::channel();
    let request = Value::Map(vec![(Value::from("op"), Value::from("close"))]);
    write(host, routes, ToHost::Request { request, reply: tx });
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        // what was in flight is still answered until the `close` reply
        while let Some(Ok(msg)) = host.incoming.recv().await {
            route(msg, routes, notes);
            if !matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
                break;
            }
        }
    })
    .await;
    let _ = host.child.kill().await;
}
