//! One worker process and its nanny: what `distributed.Nanny` does for one worker.
//!
//! A slot owns at most one process at a time. It restarts a process that exits while the
//! slot is running (a crash, the scheduler's `kill`, a memory overrun), and stops for good
//! once the worker said it is closing (`close_gracefully`, as `Worker.close` tells its
//! nanny), the scheduler sent `terminate`, or `rask worker` is retiring. All of this is
//! one task reading one channel, so a restart and an exit can never race.

use crate::launcher::{Child, ChildEvent, Probe};
use rask_comm::reply::{error_message, pickled_exception, raised};
use rask_comm::{Comm, CommConfig};
use rask_protocol::Value;
use serde_json::{json, Value as Json};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// How long a retiring worker may take to hand its results to others before it is killed.
pub const RETIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a slot is told.
pub enum Command {
    /// a nanny call from the scheduler, a client or the worker itself
    Call {
        op: String,
        msg: Value,
        reply: oneshot::Sender<Value>,
    },
    /// `rask worker` got SIGINT/SIGTERM: retire the worker, do not restart it
    Retire,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Status {
    /// restart the process whenever it exits
    Running,
    /// the worker is closing on purpose; the slot ends when it exits
    ClosingGracefully,
    /// `terminate`: stop the process; the slot ends when it exits
    Closing,
}

/// Everything the slots share.
pub struct Shared {
    pub probe: Probe,
    pub scheduler: String,
}

struct Process {
    child: Child,
    /// the worker's address once it registered with the scheduler
    address: Option<String>,
    start_error: Option<String>,
}

pub struct Slot {
    index: usize,
    shared: Arc<Shared>,
    nanny: String,
    /// `Worker(**kwargs)` for this slot
    kwargs: Json,
    status: Status,
    generation: u64,
    process: Option<Process>,
    /// replies due when the next process has started (`restart`, `instantiate`)
    on_start: Vec<(oneshot::Sender<Value>, Value)>,
    /// replies due when the current process has exited (`kill`, `terminate`)
    on_exit: Vec<(oneshot::Sender<Value>, Value)>,
    events_tx: mpsc::UnboundedSender<(u64, ChildEvent)>,
    events: mpsc::UnboundedReceiver<(u64, ChildEvent)>,
    /// generations whose process must be SIGKILLed if it is still alive
    kill_tx: mpsc::UnboundedSender<u64>,
    kills: mpsc::UnboundedReceiver<u64>,
}

impl Slot {
    pub fn new(index: usize, shared: Arc<Shared>, nanny: String, kwargs: Json) -> Slot {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (kill_tx, kills) = mpsc::unbounded_channel();
        Slot {
            index,
            shared,
            nanny,
            kwargs,
            status: Status::Running,
            generation: 0,
            process: None,
            on_start: Vec::new(),
            on_exit: Vec::new(),
            events_tx,
            events,
            kill_tx,
            kills,
        }
    }

    /// Runs the slot until its worker is closed for good. An error is a worker process
    /// that could not start.
    pub async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) -> Result<(), String> {
        self.start()?;
        let mut tick = tokio::time::interval(self.shared.probe.monitor_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(cmd) = commands.recv() => self.command(cmd).await,
                Some((generation, event)) = self.events.recv() => {
                    if generation == self.generation && self.child_event(event)? {
                        return Ok(());
                    }
                }
                Some(generation) = self.kills.recv() => {
                    if let (true, Some(p)) = (generation == self.generation, &self.process) {
                        tracing::warn!("worker process {} did not stop in time; killing it", p.child.pid);
                        p.child.kill();
                    }
                }
                _ = tick.tick() => self.check_memory(),
            }
        }
    }

    fn start(&mut self) -> Result<(), String> {
        self.generation += 1;
        let child = Child::spawn(
            &self.shared.probe,
            &self.kwargs,
            self.generation,
            self.events_tx.clone(),
        )
        .map_err(|e| e.to_string())?;
        tracing::info!(
            "worker {}: started process {} (nanny at {})",
            self.index,
            child.pid,
            self.nanny
        );
        self.process = Some(Process {
            child,
            address: None,
            start_error: None,
        });
        Ok(())
    }

    /// Asks the process to close within `timeout`, and kills it if it has not by then.
    async fn stop(&mut self, timeout: f64, reason: &str) {
        let Some(p) = &mut self.process else { return };
        let grace = Duration::from_secs_f64((timeout * 0.8).clamp(0.1, 3600.0));
        let asked = p
            .child
            .command(json!({"op": "stop", "timeout": grace.as_secs_f64(), "reason": reason}))
            .await;
        if !asked {
            p.child.kill();
        }
        self.kill_after(grace);
    }

    fn kill_after(&self, delay: Duration) {
        let (tx, generation) = (self.kill_tx.clone(), self.generation);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(generation);
        });
    }

    /// `Ok(true)`: the slot is done.
    fn child_event(&mut self, event: ChildEvent) -> Result<bool, String> {
        match event {
            ChildEvent::Started(address) => {
                tracing::info!("worker {}: {address} is up", self.index);
                if let Some(p) = &mut self.process {
                    p.address = Some(address);
                }
                for (tx, v) in self.on_start.drain(..) {
                    let _ = tx.send(v);
                }
            }
            ChildEvent::StartFailed(e) => {
                if let Some(p) = &mut self.process {
                    p.start_error = Some(e);
                }
            }
            ChildEvent::Exited(status) => {
                let Some(p) = self.process.take() else {
                    return Ok(false);
                };
                for (tx, v) in self.on_exit.drain(..) {
                    let _ = tx.send(v);
                }
                let how = describe(status);
                if self.status != Status::Running {
                    tracing::info!("worker {}: process {} {how}", self.index, p.child.pid);
                    return Ok(true);
                }
                match (&p.address, p.start_error) {
                    (Some(address), _) => {
                        tracing::warn!(
                            "worker {}: process {} ({address}) {how}; restarting it",
                            self.index,
                            p.child.pid
                        );
                        self.start()?;
                    }
                    (None, Some(e)) => {
                        let port = match self.kwargs.get("port") {
                            Some(p) => format!(" on worker port {p}"),
                            None => String::new(),
                        };
                        return Err(format!(
                            "worker process {} could not start{port}: {e}",
                            p.child.pid
                        ));
                    }
                    (None, None) => {
                        return Err(format!(
                            "worker process {} {how} before it reached the scheduler at {} \
                             (its log is above)",
                            p.child.pid, self.shared.scheduler
                        ))
                    }
                }
            }
        }
        Ok(false)
    }

    async fn command(&mut self, cmd: Command) {
        let (op, msg, reply) = match cmd {
            Command::Retire => {
                self.status = Status::ClosingGracefully;
                match &mut self.process {
                    Some(p) if p.address.is_some() => {
                        if !p.child.command(json!({"op": "retire"})).await {
                            p.child.kill();
                        }
                        self.kill_after(RETIRE_TIMEOUT);
                    }
                    Some(_) => self.stop(5.0, "rask-worker-retire").await,
                    None => {}
                }
                return;
            }
            Command::Call { op, msg, reply } => (op, msg, reply),
        };
        let timeout = msg.get("timeout").and_then(Value::as_f64).unwrap_or(5.0);
        let reason = msg
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or(&op)
            .to_string();
        match op.as_str() {
            // The process exits and, the slot still running, comes back (the scheduler's
            // `restart` relies on this, as with Dask's nanny).
            "kill" => {
                tracing::info!("worker {}: kill ({reason})", self.index);
                if self.process.is_some() {
                    self.on_exit.push((reply, Value::Nil));
                    self.stop(timeout, &reason).await;
                } else {
                    let _ = reply.send(Value::Nil);
                }
            }
            "restart" => {
                tracing::info!("worker {}: restart ({reason})", self.index);
                self.on_start.push((reply, Value::from("OK")));
                if self.process.is_some() {
                    self.stop(timeout, &reason).await;
                }
            }
            "instantiate" => match &self.process {
                Some(Process {
                    address: Some(_), ..
                }) => {
                    let _ = reply.send(Value::from("running"));
                }
                _ => self.on_start.push((reply, Value::from("running"))),
            },
            "terminate" => {
                self.status = Status::Closing;
                if self.process.is_some() {
                    self.on_exit.push((reply, Value::from("OK")));
                    self.stop(timeout, &reason).await;
                } else {
                    let _ = reply.send(Value::from("OK"));
                }
            }
            "close_gracefully" => {
                tracing::info!("worker {}: closing gracefully ({reason})", self.index);
                self.status = Status::ClosingGracefully;
                let _ = reply.send(Value::Nil);
            }
            "get_logs" => {
                let _ = reply.send(Value::Array(Vec::new()));
            }
            "identity" => {
                let _ = reply.send(Value::map([
                    ("type", Value::from("Nanny")),
                    ("id", Value::from(format!("rask-nanny-{}", self.index))),
                    ("address", Value::from(self.nanny.as_str())),
                ]));
            }
            "plugin_remove" => {
                let _ = reply.send(Value::map([("status", Value::from("OK"))]));
            }
            "run" => {
                let _ = reply.send(raised(
                    "RuntimeError",
                    "rask worker's nanny runs no Python, so it cannot run functions \
                     (Client.run(..., nanny=True)); run it on the workers instead",
                ));
            }
            // The scheduler sends a `NannyPlugin` to every worker's nanny; its `setup` gets
            // the Python `Nanny` object, which rask worker does not have. Answered as
            // `Nanny.plugin_add` answers a failed setup (nanny.py:463, status "error"), which
            // either scheduler passes on and the client raises.
            "plugin_add" => {
                let text = "rask worker's nanny runs no Python, so it cannot run nanny plugins \
                     (NannyPlugin, Environ, UploadDirectory, PipInstall(restart_workers=True)); \
                     use a WorkerPlugin, or start the workers with `dask worker --nanny`";
                let _ = reply.send(error_message(
                    "error",
                    pickled_exception("RuntimeError", text),
                    format!("RuntimeError('{text}')"),
                ));
            }
            other => {
                let _ = reply.send(raised(
                    "ValueError",
                    &format!("unknown operation {other:?} for rask worker's nanny"),
                ));
            }
        }
    }

    fn check_memory(&mut self) {
        let (limit, Some(fraction)) = (self.shared.probe.memory_limit, self.shared.probe.terminate)
        else {
            return;
        };
        let Some(p) = &self.process else { return };
        if limit == 0 || self.status != Status::Running {
            return;
        }
        let Some(rss) = p.child.rss() else { return };
        if rss as f64 > fraction * limit as f64 {
            // Dask's nanny words it so (worker_memory.py).
            tracing::warn!(
                "Worker {} (pid={}) exceeded {:.0}% memory budget. Restarting...",
                p.address.as_deref().unwrap_or("(starting)"),
                p.child.pid,
                fraction * 100.0
            );
            p.child.kill();
        }
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => format!("ended ({status})"),
    }
}

/// Serves nanny calls on `listener` for one slot: each request becomes a `Command::Call`.
pub async fn serve(listener: TcpListener, slot: mpsc::UnboundedSender<Command>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let slot = slot.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, slot).await {
                tracing::debug!("nanny connection: {e}");
            }
        });
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    slot: mpsc::UnboundedSender<Command>,
) -> Result<(), rask_comm::CommError> {
    // The nanny port speaks plain TCP with Dask's default caps (rask worker refuses --tls-*).
    let mut comm = Comm::accept(stream, &CommConfig::default()).await?;
    while let Some(msg) = comm.reader.read().await? {
        let op = msg
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if op == "close" {
            break;
        }
        let wants_reply = msg.get("reply").is_none_or(Value::truthy);
        let timeout = msg.get("timeout").and_then(Value::as_f64);
        let (tx, rx) = oneshot::channel();
        let is_restart = op == "restart";
        if slot.send(Command::Call { op, msg, reply: tx }).is_err() {
            // The slot has ended: its worker is gone for good.
            comm.writer
                .write(&raised("RuntimeError", "this rask worker nanny has closed"))
                .await?;
            continue;
        }
        let reply = match (is_restart, timeout) {
            // Dask's nanny answers a restart that takes too long with "timed out".
            (true, Some(t)) if t.is_finite() && t > 0.0 => {
                match tokio::time::timeout(Duration::from_secs_f64(t), rx).await {
                    Ok(r) => r.unwrap_or(Value::Nil),
                    Err(_) => Value::from("timed out"),
                }
            }
            _ => rx.await.unwrap_or(Value::Nil),
        };
        if wants_reply {
            comm.writer.write(&reply).await?;
        }
    }
    Ok(())
}
