//! Start-up and shutdown of `rask scheduler`: bind, start helpers, write the scheduler
//! file, accept connections, stop on a signal or idle timeout.

use crate::config::ServerConfig;
use crate::connection::{handle_connection, Ctx};
use crate::dask_config::DaskConfig;
use crate::error::ServerError;
use crate::helper::HelperPool;
use crate::runtime::{self, now, Scheduler};
use rask_comm::CommConfig;
use rask_protocol::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};

pub use crate::helper::check_python;

/// What `run` reports once it is listening.
#[derive(Debug, Clone)]
pub struct Started {
    /// `tcp://host:port` or `tls://host:port` as advertised
    pub address: String,
    /// the HTTP port
    pub dashboard_port: u16,
}

/// Runs the scheduler until `shutdown` resolves (or the idle timeout passes). `on_start` is
/// called once the listener is bound and the scheduler file written.
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
    on_start: impl FnOnce(&Started),
) -> Result<(), ServerError> {
    let bind = format!("{}:{}", config.bind_host, config.port);
    let listener = bind_listener(&config.bind_host, config.port)
        .await
        .map_err(|e| {
            ServerError::Startup(format!(
                "cannot listen on {bind}: {e} (is another scheduler running on that port?)"
            ))
        })?;
    let port = listener.local_addr()?.port();

    let http_listener = crate::http::bind(&config.bind_host, config.dashboard_port)
        .await
        .map_err(|e| {
            ServerError::Startup(format!(
                "cannot listen for HTTP on port {}: {e}",
                config.dashboard_port
            ))
        })?;
    let dashboard_port = http_listener.local_addr()?.port();

    let (helpers, ready) = HelperPool::start(
        &config.python,
        config.graph_helpers,
        config.helper_start_timeout,
    )
    .await?;
    let (handle, rx) = runtime::channel();
    let dask_config = DaskConfig::from_helper(&ready)?;
    let security =
        rask_comm::tls::resolve(config.protocol.as_deref(), &config.tls, &dask_config.tls)
            .map_err(|e| ServerError::Startup(e.to_string()))?;
    let address = format!("{}://{}:{}", security.scheme, config.advertise_host, port);
    let comm = CommConfig {
        max_message_bytes: config.max_message_bytes,
        max_frames: config.max_frames,
        connect_timeout: dask_config.connect_timeout,
        tcp_timeout: dask_config.tcp_timeout,
        listen_tls: security.scheme == "tls",
        tls: security.tls,
        require_encryption: security.require_encryption,
    };
    let idle_timeout = config.idle_timeout.or(dask_config.idle_timeout);
    let comm = Arc::new(comm);
    let scheduler = Scheduler::new(
        address.clone(),
        Some(dashboard_port),
        &ready,
        dask_config,
        comm.clone(),
    );
    let mut state_task = tokio::spawn(runtime::run_state(scheduler, rx));
    let http_task = tokio::spawn(crate::http::serve(http_listener, handle.clone()));
    let ctx = Arc::new(Ctx {
        handle: handle.clone(),
        helpers,
        comm,
    });

    if let Some(path) = &config.scheduler_file {
        let identity = handle.call(|s| s.identity(-1)).await?;
        let json = serde_json::to_string_pretty(&to_json(&identity)).unwrap_or_default();
        std::fs::write(path, json).map_err(|e| {
            ServerError::Startup(format!(
                "cannot write scheduler file {}: {e}",
                path.display()
            ))
        })?;
    }
    if let Some(path) = &config.pid_file {
        std::fs::write(path, std::process::id().to_string()).map_err(|e| {
            ServerError::Startup(format!("cannot write pid file {}: {e}", path.display()))
        })?;
    }
    on_start(&Started {
        address: address.clone(),
        dashboard_port,
    });

    let idle = idle_watch(handle.clone(), idle_timeout);
    tokio::pin!(shutdown);
    tokio::pin!(idle);
    let mut backoff = Duration::from_millis(5);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            // The state task only ends early if it panicked (a bug in rask): exit loudly
            // rather than keep accepting connections nobody can serve.
            ended = &mut state_task => {
                return Err(ServerError::Startup(format!("the scheduler state task stopped: {ended:?}")));
            }
            _ = &mut idle => {
                tracing::info!("Scheduler closing due to idle timeout");
                break;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    backoff = Duration::from_millis(5);
                    tokio::spawn(handle_connection(stream, ctx.clone()));
                }
                Err(e) => {
                    // e.g. EMFILE: wait instead of spinning, then keep serving
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            },
        }
    }
    tracing::info!("Scheduler closing...");
    let _ = handle
        .call(|s| {
            s.close_workers("scheduler-close");
            for c in s.clients.values() {
                let _ =
                    c.tx.send(Value::map([("op", Value::from("stream-closed"))]).into());
            }
        })
        .await;
    // Give the stream writers a moment to flush the close messages.
    tokio::time::sleep(Duration::from_millis(200)).await;
    if let Some(path) = &config.pid_file {
        let _ = std::fs::remove_file(path);
    }
    drop(ctx);
    drop(handle);
    http_task.abort();
    state_task.abort();
    tracing::info!("End scheduler");
    Ok(())
}

/// Connections the kernel queues while the accept loop is busy: Dask's
/// `distributed.comm.socket-backlog` default. tokio's own (1024) overflows when a burst of
/// workers or clients connects at once, and each overflow costs that peer a 1 s SYN retry.
const SOCKET_BACKLOG: u32 = 2048;

async fn bind_listener(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let sock = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // as TcpListener::bind: a restarted scheduler can take its port back at once
        sock.set_reuseaddr(true)?;
        match sock.bind(addr).and_then(|()| sock.listen(SOCKET_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the host resolves to no address",
        )
    }))
}

/// Resolves once the scheduler has had no clients and no work for `timeout`.
async fn idle_watch(handle: runtime::Handle, timeout: Option<Duration>) {
    let Some(timeout) = timeout else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(Duration::from_millis(500).min(timeout)).await;
        let idle_for = handle
            .call(|s| {
                let busy = !s.clients.is_empty() || s.core.n_tasks() > 0;
                if busy {
                    s.last_busy = now();
                }
                now() - s.last_busy
            })
            .await;
        match idle_for {
            Ok(t) if t >= timeout.as_secs_f64() => return,
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// The identity message as JSON, for `--scheduler-file` (`json.dump(self.identity())`).
fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Nil => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::UInt(u) => J::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Str(s) => J::String(s.to_string()),
        Value::Bin(b) => J::String(String::from_utf8_lossy(b).into_owned()),
        Value::Array(a) => J::Array(a.iter().map(to_json).collect()),
        Value::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::Str(s) => s.to_string(),
                        other => format!("{other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Value::Opaque(_) => J::Null,
    }
}
