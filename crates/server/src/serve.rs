//! Start-up and shutdown of `rask scheduler`: bind, start helpers, write the scheduler
//! file, accept connections, stop on a signal or the idle timeout.

use crate::channels::Channels;
use crate::config::ServerConfig;
use crate::connection::handle_connection;
use crate::dask_config::DaskConfig;
use crate::error::StartupError;
use crate::event::{Event, Handle};
use crate::helper::HelperPool;
use crate::jobs::JobContext;
use crate::messages::Rpc;
use crate::plugin_host::{HostConfig, HostHandle};
use crate::reactor::{self, Identity, Scheduler};
use crate::session::Ctx;
use rask_comm::CommConfig;
use rask_protocol::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};

/// What `run` reports once it is listening.
#[derive(Debug, Clone)]
pub struct Started {
    /// `tcp://host:port` or `tls://host:port` as advertised
    pub address: String,
    /// the HTTP port
    pub dashboard_port: u16,
}

/// The scheduler's listening sockets, bound before anything slow starts so a port that is
/// taken is reported at once.
pub struct Ports {
    listener: TcpListener,
    http: TcpListener,
}

impl Ports {
    /// Binds the scheduler port and the dashboard port of `config`.
    pub async fn bind(config: &ServerConfig) -> Result<Ports, StartupError> {
        let listener = bind_listener(&config.bind_host, config.port)
            .await
            .map_err(|source| StartupError::Listen {
                addr: format!("{}:{}", config.bind_host, config.port),
                source,
            })?;
        let http = crate::http::bind(&config.bind_host, config.dashboard_port)
            .await
            .map_err(|source| StartupError::Http {
                port: config.dashboard_port,
                source,
            })?;
        Ok(Ports { listener, http })
    }
}

/// Runs the scheduler, with Python graph helpers, until `shutdown` resolves (or the idle
/// timeout passes). `on_start` is called once the listener is bound and the scheduler file
/// written.
pub async fn run(
    mut config: ServerConfig,
    shutdown: impl Future<Output = ()>,
    on_start: impl FnOnce(&Started),
) -> Result<(), StartupError> {
    let ports = Ports::bind(&config).await?;
    if let Some(ready) = config.ready.take() {
        // The process that started us said what the helpers will: serve now, and start the
        // helpers when a graph needs one or once the cluster's workers have started.
        let ready = rask_protocol::msgpack::decode_value(bytes::Bytes::from(ready))
            .map_err(|e| StartupError::Ready(e.to_string()))?;
        let (helpers, first) = HelperPool::spawn(
            &config.python,
            config.graph_helpers,
            config.helper_start_timeout,
            true,
        );
        let python = config.python.clone();
        tokio::spawn(async move {
            match first.await {
                Ok(Ok(ready)) => log_environment(&python, &ready),
                Ok(Err(e)) => tracing::error!("graph helpers cannot start: {e}"),
                Err(_) => {}
            }
        });
        return serve(ports, config, helpers, ready, shutdown, on_start).await;
    }
    // No separate environment check before the helpers start (it would cost another
    // interpreter's imports on the way to listening): the first helper's `ready` says which
    // Python and distributed it found, and only a helper that fails is followed by the
    // check, for its clearer message.
    let (helpers, ready) = match HelperPool::start(
        &config.python,
        config.graph_helpers,
        config.helper_start_timeout,
    )
    .await
    {
        Ok(started) => started,
        Err(e) => {
            crate::helper::check_python(&config.python).await?;
            return Err(e.into());
        }
    };
    log_environment(&config.python, &ready);
    serve(ports, config, helpers, ready, shutdown, on_start).await
}

/// Logs the helpers' Python and distributed, with a warning for an untested release.
fn log_environment(python: &str, ready: &Value) {
    let python = ready
        .get("python")
        .and_then(Value::as_str)
        .unwrap_or(python);
    let distributed = ready
        .get("versions")
        .and_then(|v| v.get("packages"))
        .and_then(|p| p.get("distributed"))
        .and_then(Value::as_str)
        .unwrap_or("?");
    tracing::info!("graph helpers: {python} (distributed {distributed})");
    if !rask_protocol::is_tested_distributed(distributed) {
        tracing::warn!(
            "distributed {distributed} found; rask is tested with {}",
            rask_protocol::tested_distributed_releases()
        );
    }
}

/// Runs the scheduler on bound ports with the given graph helpers; `ready` is a helper's
/// first message (the Python environment's `versions` and the user's Dask configuration).
pub async fn serve(
    ports: Ports,
    config: ServerConfig,
    helpers: HelperPool,
    ready: Value,
    shutdown: impl Future<Output = ()>,
    on_start: impl FnOnce(&Started),
) -> Result<(), StartupError> {
    let Ports { listener, http } = ports;
    let port = listener
        .local_addr()
        .map_err(StartupError::LocalAddr)?
        .port();
    let dashboard_port = http.local_addr().map_err(StartupError::LocalAddr)?.port();
    let dask_config = DaskConfig::from_helper(&ready)?;
    crate::logs::recent().set_capacity(dask_config.log_length);
    let security =
        rask_comm::tls::resolve(config.protocol.as_deref(), &config.tls, &dask_config.tls)?;
    let address = format!("{}://{}:{}", security.scheme, config.advertise_host, port);
    let comm = Arc::new(CommConfig {
        max_message_bytes: config.max_message_bytes,
        max_frames: config.max_frames,
        connect_timeout: dask_config.connect_timeout,
        tcp_timeout: dask_config.tcp_timeout,
        listen_tls: security.scheme == "tls",
        tls: security.tls,
        require_encryption: security.require_encryption,
    });
    let idle_timeout = config.idle_timeout.or(dask_config.idle_timeout);
    let clock = reactor::Clock::start();
    let scheduler = Scheduler::new(
        Identity {
            address: address.clone(),
            dashboard_port: Some(dashboard_port),
            versions: ready.get("versions").cloned().unwrap_or(Value::Nil),
            worker_plugins: ready
                .get("worker_plugins")
                .cloned()
                .unwrap_or(Value::Map(Vec::new())),
        },
        dask_config,
        idle_timeout,
        clock.now(),
    );
    let mut scheduler = scheduler;
    scheduler.set_ingest_batch(config.ingest_batch);
    if !config.preload.is_empty() {
        scheduler.keep_host_active();
    }
    let (handle, events) = Handle::channel();
    let (internal_tx, internal) = mpsc::unbounded_channel();
    let (stop_tx, mut stop) = watch::channel(false);
    let jobs = Arc::new(JobContext {
        comm: comm.clone(),
        helpers,
    });
    let host = HostHandle::new(
        HostConfig {
            python: config.python.clone(),
            address: address.clone(),
            id: scheduler.id().to_string(),
            preload: config.preload.clone(),
            preload_argv: config.preload_argv.clone(),
            start_timeout: config.helper_start_timeout,
        },
        {
            let internal = internal_tx.clone();
            Arc::new(move |note| {
                let _ = internal.send(Event::Host(note));
            })
        },
    );
    // `dask scheduler` runs its preloads before it serves; one that fails stops it.
    if !config.preload.is_empty() {
        host.start_now().await?;
    }
    let out = Channels::new(internal_tx, jobs, host.clone(), stop_tx);
    let mut state_task = tokio::spawn(reactor::run(scheduler, clock, events, internal, out));
    let pages = crate::http::Pages {
        dashboard: config.dashboard,
        prefix: config.dashboard_prefix.clone(),
    };
    let http_task = tokio::spawn(crate::http::serve(http, handle.clone(), pages));
    let ctx = Arc::new(Ctx {
        handle: handle.clone(),
        comm,
    });

    if let Some(path) = &config.scheduler_file {
        let identity = handle
            .rpc(Rpc::Identity { n_workers: -1 })
            .await
            .map_err(|e| StartupError::StateTask(e.to_string()))?;
        let json =
            serde_json::to_string_pretty(&crate::http::to_json(&identity)).unwrap_or_default();
        std::fs::write(path, json).map_err(|source| StartupError::Write {
            what: "scheduler file",
            path: path.clone(),
            source,
        })?;
    }
    if let Some(path) = &config.pid_file {
        std::fs::write(path, std::process::id().to_string()).map_err(|source| {
            StartupError::Write {
                what: "pid file",
                path: path.clone(),
                source,
            }
        })?;
    }
    on_start(&Started {
        address: address.clone(),
        dashboard_port,
    });

    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(5);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            // The state task only ends early if it panicked (a bug in rask): exit loudly
            // rather than keep accepting connections nobody can serve.
            ended = &mut state_task => {
                return Err(StartupError::StateTask(format!("{ended:?}")));
            }
            _ = stop.changed() => break,
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
    let _ = handle.ask(Event::Shutdown).await;
    // the plugins' `close` hooks, as the stock scheduler runs them when it closes
    host.close().await;
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
