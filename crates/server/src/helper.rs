//! The pool of Python graph helpers (PROTOCOL.md §4).
//!
//! Each helper is a long-lived `PYTHON -u -c <source> serve` process speaking
//! length-prefixed msgpack on stdin/stdout. The source ships inside the binary, so any
//! environment with `distributed` installed is enough. Helpers take jobs from one shared
//! queue; while one materializes a big graph, the others (and the whole scheduler) keep
//! going. A helper that dies fails only the job it held and is started again.

use crate::error::{HelperError, StartupError};
use bytes::Bytes;
use rask_protocol::msgpack::{decode_value, encode_value};
use rask_protocol::Value;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot, Mutex, Notify};

/// The helper's Python source.
pub const HELPER_SOURCE: &str = include_str!("../../../python/rask_graph_helper.py");

/// How long the first helper stays unstarted when nobody waits for it yet: a cluster's
/// workers start in that time, and on two CPUs even an interpreter's start-up beside them
/// slows theirs.
const BACKGROUND_START_DELAY: Duration = Duration::from_secs(1);

/// How long a helper works on one request before the next helper is started, so that other
/// graphs need not wait long behind a big one. Most graphs take milliseconds (a first
/// `dask.array` graph 0.16 s with its imports), and a spare interpreter starting beside a
/// running computation takes a core from its workers for most of a second: on two CPUs the
/// random-array case took 1.42 s with a second helper starting in the background against
/// 1.18 s without.
const SPARE_AFTER: Duration = Duration::from_secs(1);

/// A graph whose pickled expression is at least this large is "big": it goes to a spare
/// helper, started at once if need be, so the first helper stays free for everyone else's
/// small graphs. A 1M-task graph is hundreds of MB and keeps a helper for tens of seconds;
/// with it in the only running helper, another client's `submit` waited for the spare's
/// start (a second at least) behind it.
pub const BIG_GRAPH_BYTES: usize = 16 << 20;

/// When a helper starts, and when it does its imports (`RASK_HELPER_WARM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// at once: the scheduler waits for its `ready`; the imports after it, while it is idle
    Now,
    /// when the first request arrives (which then waits for it: no imports but what that
    /// request needs), or after [`BACKGROUND_START_DELAY`] (imports after `ready`)
    OnDemand,
    /// a spare: when a helper has worked on one request for [`SPARE_AFTER`]
    Spare,
}

/// A helper reply larger than this is refused (a 1M-task graph is a few GB at most).
const MAX_REPLY_BYTES: u64 = 32 << 30;

struct Job {
    request: Value,
    reply: oneshot::Sender<Result<Value, HelperError>>,
    /// where `{"chunk": [...]}` messages go, for requests that ask for them
    chunks: Option<mpsc::UnboundedSender<Value>>,
}

/// Handle to the pool; cheap to clone.
#[derive(Clone)]
pub struct HelperPool {
    tx: mpsc::UnboundedSender<Job>,
    /// big requests, which only spares take (`None` with a single helper)
    big_tx: Option<mpsc::UnboundedSender<Job>>,
    triggers: Triggers,
}

type Queue = Arc<Mutex<mpsc::UnboundedReceiver<Job>>>;

/// What starts helpers that are not running yet.
#[derive(Clone, Default)]
struct Triggers {
    /// a request arrived ([`Start::OnDemand`])
    wanted: Arc<Notify>,
    /// a helper is busy with a long request ([`Start::Spare`]); one permit per spare
    spare: Arc<Notify>,
}

impl HelperPool {
    /// Starts `n` helpers with `python`. Returns once the first one is ready, with its
    /// `ready` message: `versions` (`distributed.versions.get_versions()`) and `config`
    /// (the user's Dask scheduler settings rask honours).
    pub async fn start(
        python: &str,
        n: usize,
        start_timeout: Duration,
    ) -> Result<(HelperPool, Value), HelperError> {
        let (pool, ready) = HelperPool::spawn(python, n, start_timeout, false);
        let ready = ready.await.map_err(|_| HelperError::Gone)??;
        Ok((pool, ready))
    }

    /// Starts up to `n` helpers; the receiver gets the first one's `ready` message (or its
    /// start-up error). The first starts at once, or with `background` (the scheduler
    /// already serves) when the first request arrives or a second has passed; each of the
    /// others once a request has kept a helper busy for [`SPARE_AFTER`], or a big one
    /// arrives (which only the others take).
    pub fn spawn(
        python: &str,
        n: usize,
        start_timeout: Duration,
        background: bool,
    ) -> (HelperPool, oneshot::Receiver<Result<Value, HelperError>>) {
        let (tx, rx) = mpsc::unbounded_channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let (big_tx, big_rx) = mpsc::unbounded_channel::<Job>();
        let big_rx = Arc::new(Mutex::new(big_rx));
        let triggers = Triggers::default();
        let (ready_tx, ready_rx) = oneshot::channel::<Result<Value, HelperError>>();
        let mut ready_tx = Some(ready_tx);
        for i in 0..n.max(1) {
            let first = ready_tx.take();
            let python = python.to_string();
            let queues = Queues {
                jobs: rx.clone(),
                big: (i > 0).then(|| big_rx.clone()),
            };
            let start = match (i, background) {
                (0, false) => Start::Now,
                (0, true) => Start::OnDemand,
                _ => Start::Spare,
            };
            let triggers = triggers.clone();
            tokio::spawn(async move {
                let warm = match start {
                    Start::Now => "after-ready",
                    Start::OnDemand => tokio::select! {
                        _ = tokio::time::sleep(BACKGROUND_START_DELAY) => "after-ready",
                        _ = triggers.wanted.notified() => "never",
                    },
                    Start::Spare => {
                        triggers.spare.notified().await;
                        "after-ready"
                    }
                };
                helper_loop(
                    i,
                    python,
                    queues,
                    start_timeout,
                    warm,
                    first,
                    triggers.spare,
                )
                .await
            });
        }
        let big_tx = (n > 1).then_some(big_tx);
        (
            HelperPool {
                tx,
                big_tx,
                triggers,
            },
            ready_rx,
        )
    }

    /// A pool whose "helper" is `answer`, called in-process for every request: the
    /// server's tests build task records in Rust instead of running Python.
    pub fn in_process(
        answer: impl Fn(Value) -> Result<Value, HelperError> + Send + Sync + 'static,
    ) -> HelperPool {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                let _ = job.reply.send(answer(job.request));
            }
        });
        HelperPool {
            tx,
            big_tx: None,
            triggers: Triggers::default(),
        }
    }

    /// Sends one request to the next free helper and waits for its reply.
    pub async fn call(&self, request: Value) -> Result<Value, HelperError> {
        self.submit(request, None, false).await
    }

    /// Like [`HelperPool::call`] for a request with a `chunk_size`: each
    /// `{"chunk": [...]}` message that precedes the reply is decoded and sent to `chunks`
    /// as it arrives, so the caller works on it while the helper makes the next one. A
    /// `big` request goes to a spare (see [`BIG_GRAPH_BYTES`]).
    pub async fn call_chunked(
        &self,
        request: Value,
        chunks: mpsc::UnboundedSender<Value>,
        big: bool,
    ) -> Result<Value, HelperError> {
        self.submit(request, Some(chunks), big).await
    }

    async fn submit(
        &self,
        request: Value,
        chunks: Option<mpsc::UnboundedSender<Value>>,
        big: bool,
    ) -> Result<Value, HelperError> {
        let (tx, rx) = oneshot::channel();
        self.triggers.wanted.notify_one();
        let queue = match &self.big_tx {
            Some(big_tx) if big => {
                self.triggers.spare.notify_one();
                big_tx
            }
            _ => &self.tx,
        };
        queue
            .send(Job {
                request,
                reply: tx,
                chunks,
            })
            .map_err(|_| HelperError::Gone)?;
        rx.await.map_err(|_| HelperError::Gone)?
    }
}

struct Process {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    next_id: i64,
}

async fn spawn(
    index: usize,
    python: &str,
    start_timeout: Duration,
    warm: &str,
) -> Result<(Process, Value), HelperError> {
    let mut child = Command::new(python)
        .env("RASK_HELPER_WARM", warm)
        .arg("-u")
        .arg("-c")
        .arg(HELPER_SOURCE)
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| HelperError::Spawn {
            python: python.to_string(),
            source,
        })?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(HelperError::Protocol("the helper's pipes are missing"));
    };
    // The helper's stderr (warnings, tracebacks) goes to our log, one line per event.
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::warn!(helper = index, "{line}");
        }
    });
    let mut p = Process {
        child,
        stdin,
        stdout,
        next_id: 0,
    };
    let ready = tokio::time::timeout(start_timeout, read_frame(&mut p.stdout))
        .await
        .map_err(|_| HelperError::StartTimeout(start_timeout))??;
    match ready.get("op").and_then(Value::as_str) {
        Some("ready") => {}
        // e.g. a malformed Dask config value: the helper names the key and the value
        Some("fatal") => {
            let error = ready.get("error").and_then(Value::as_str).unwrap_or("?");
            return Err(HelperError::Fatal {
                python: python.to_string(),
                message: error.to_string(),
            });
        }
        _ => {
            return Err(HelperError::Protocol(
                "the helper's first message is not `ready`",
            ))
        }
    }
    tracing::debug!(helper = index, pid = ?p.child.id(), "graph helper ready");
    Ok((p, ready))
}

/// Reads one length-prefixed msgpack message (the helpers' and the plugin host's framing).
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Value, HelperError> {
    let mut len = [0u8; 8];
    r.read_exact(&mut len).await?;
    let n = u64::from_le_bytes(len);
    if n > MAX_REPLY_BYTES {
        return Err(HelperError::Protocol(
            "the helper announced a reply over 32 GiB",
        ));
    }
    let mut body = Vec::new();
    (&mut *r).take(n).read_to_end(&mut body).await?;
    if body.len() as u64 != n {
        return Err(HelperError::Protocol("the helper's reply ended early"));
    }
    let body = Bytes::from(body);
    if body.len() < BLOCKING_DECODE_BYTES {
        return Ok(decode_value(body)?);
    }
    // A big graph's chunk of records: tens of milliseconds of decoding (100+ for the first),
    // which on a runtime thread would hold up every connection that thread serves.
    let decoded = tokio::task::spawn_blocking(move || decode_value(body))
        .await
        .map_err(|_| HelperError::Protocol("decoding a helper reply panicked"))?;
    Ok(decoded?)
}

/// A reply at least this big is decoded off the async runtime.
const BLOCKING_DECODE_BYTES: usize = 1 << 20;

/// Writes one message `body` with its length prefix.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    body: &[u8],
) -> std::io::Result<()> {
    let mut framed = Vec::with_capacity(8 + body.len());
    framed.extend_from_slice(&(body.len() as u64).to_le_bytes());
    framed.extend_from_slice(body);
    w.write_all(&framed).await?;
    w.flush().await
}

async fn exchange(
    p: &mut Process,
    mut request: Value,
    chunks: Option<&mpsc::UnboundedSender<Value>>,
) -> Result<Value, HelperError> {
    p.next_id += 1;
    let id = p.next_id;
    request.set("id", Value::Int(id));
    write_frame(&mut p.stdin, &encode_value(&request)).await?;
    loop {
        let reply = read_frame(&mut p.stdout).await?;
        if reply.get("id").and_then(Value::as_i64) != Some(id) {
            return Err(HelperError::Protocol("a helper reply out of order"));
        }
        match (reply.get("chunk").is_some(), chunks) {
            (false, _) => return Ok(reply),
            // the caller may have gone; the helper's output must still be read to its end
            (true, Some(tx)) => {
                let _ = tx.send(reply);
            }
            (true, None) => {
                return Err(HelperError::Protocol(
                    "a helper chunk for a request that asked for none",
                ))
            }
        }
    }
}

/// Where a helper takes its jobs: the shared queue, and for a spare also the big requests'
/// queue, which it serves first.
struct Queues {
    jobs: Queue,
    big: Option<Queue>,
}

impl Queues {
    async fn next(&self) -> Option<Job> {
        let any = async { self.jobs.lock().await.recv().await };
        match &self.big {
            Some(big) => tokio::select! {
                biased;
                job = async { big.lock().await.recv().await } => job,
                job = any => job,
            },
            None => any.await,
        }
    }
}

async fn helper_loop(
    index: usize,
    python: String,
    queues: Queues,
    start_timeout: Duration,
    warm: &'static str,
    mut first: Option<oneshot::Sender<Result<Value, HelperError>>>,
    spare: Arc<Notify>,
) {
    let mut failures = 0u32;
    loop {
        let mut proc = match spawn(index, &python, start_timeout, warm).await {
            Ok((p, versions)) => {
                if let Some(tx) = first.take() {
                    let _ = tx.send(Ok(versions));
                }
                failures = 0;
                p
            }
            Err(e) => {
                tracing::error!(helper = index, "graph helper failed to start: {e}");
                if let Some(tx) = first.take() {
                    let _ = tx.send(Err(e));
                    return;
                }
                failures += 1;
                tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(25)))).await;
                continue;
            }
        };
        let _alive = crate::monitor::Held::new(&crate::monitor::HELPERS.alive);
        loop {
            let Some(job) = queues.next().await else {
                let _ = proc.child.kill().await;
                return;
            };
            let busy = crate::monitor::Held::new(&crate::monitor::HELPERS.busy);
            let answer = {
                let exchange = exchange(&mut proc, job.request, job.chunks.as_ref());
                tokio::pin!(exchange);
                tokio::select! {
                    answer = &mut exchange => answer,
                    () = tokio::time::sleep(SPARE_AFTER) => {
                        // a long one: the next unstarted helper (if any) starts
                        spare.notify_one();
                        exchange.await
                    }
                }
            };
            drop(busy);
            match answer {
                Ok(reply) => {
                    let _ = job.reply.send(Ok(reply));
                }
                Err(e) => {
                    let status = proc.child.try_wait().ok().flatten();
                    let _ = proc.child.kill().await;
                    let status = match status {
                        Some(s) => s.to_string(),
                        None => proc
                            .child
                            .wait()
                            .await
                            .map(|s| s.to_string())
                            .unwrap_or_default(),
                    };
                    tracing::error!(
                        helper = index,
                        "graph helper died ({status}): {e}; starting a new one"
                    );
                    let _ = job.reply.send(Err(HelperError::Died { status }));
                    break;
                }
            }
        }
    }
}

/// Runs `python -c <source> check`: the interpreter must import `distributed`.
/// Returns the helper's JSON report.
pub async fn check_python(python: &str) -> Result<serde_json::Value, StartupError> {
    let out = Command::new(python)
        .arg("-c")
        .arg(HELPER_SOURCE)
        .arg("check")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| StartupError::Python {
            python: python.to_string(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Option<serde_json::Value> = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok());
    match report {
        Some(r) if out.status.success() && r.get("distributed").is_some() => Ok(r),
        other => {
            let found = other
                .as_ref()
                .and_then(|r| r.get("error"))
                .and_then(|e| e.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| {
                    let err = String::from_utf8_lossy(&out.stderr);
                    err.lines().last().unwrap_or("no output").to_string()
                });
            Err(StartupError::NoDistributed {
                python: python.to_string(),
                found,
            })
        }
    }
}
