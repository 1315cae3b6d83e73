//! What `rask scheduler`'s flags become: a plain struct, no global state.

use std::path::PathBuf;
use std::time::Duration;

/// Tasks of a big graph the state task takes in per turn, unless told otherwise.
pub use rask_core::state::INGEST_BATCH;

/// Validated scheduler configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// address to bind, e.g. `0.0.0.0` or `127.0.0.1`
    pub bind_host: String,
    /// host or IP advertised to peers (`Scheduler at: tcp://HOST:PORT`)
    pub advertise_host: String,
    /// port; 0 picks a free one
    pub port: u16,
    /// where to write the identity JSON, like `dask scheduler --scheduler-file`
    pub scheduler_file: Option<PathBuf>,
    /// where to write our pid
    pub pid_file: Option<PathBuf>,
    /// HTTP (dashboard) port advertised as `identity().services.dashboard`; 0 picks a
    /// free one (what `--no-dashboard` does, like the stock scheduler)
    pub dashboard_port: u16,
    /// serve the dashboard's pages (`--no-dashboard` leaves them out; `/health`,
    /// `/metrics`, the JSON and API routes stay, as in Dask)
    pub dashboard: bool,
    /// `--dashboard-prefix`: every HTTP route under it, e.g. `/proxy/8787` behind a
    /// Jupyter server proxy; empty or `/...` without a trailing slash
    pub dashboard_prefix: String,
    /// shut down after this long without clients or work
    pub idle_timeout: Option<Duration>,
    /// interpreter for the graph helpers
    pub python: String,
    /// number of graph helper processes
    pub graph_helpers: usize,
    /// start-up wait for a helper's imports
    pub helper_start_timeout: Duration,
    /// tasks of a big graph the state task takes in per turn (`rask_core::ingest`)
    pub ingest_batch: usize,
    /// `--preload`: modules or files whose `dask_setup(scheduler)` runs in the plugin host
    pub preload: Vec<String>,
    /// arguments for the preloads
    pub preload_argv: Vec<String>,
    /// `--protocol` or the scheme of `--host` (`tcp`, `tls`); `None`: decided by the TLS
    /// flags and `distributed.comm.require-encryption`, as `dask scheduler` does
    pub protocol: Option<String>,
    /// `--tls-ca-file`, `--tls-cert`, `--tls-key` (each wins over its Dask config key)
    pub tls: rask_comm::tls::TlsFlags,
    /// largest message a peer may send, in bytes (the sum of its frames)
    pub max_message_bytes: u64,
    /// most frames a peer may send in one message
    pub max_frames: u64,
    /// What a graph helper's `ready` message would say (msgpack: `versions`, `config`,
    /// `worker_plugins`, `python`), computed by the Python process that started this
    /// scheduler (`rask.Scheduler`, in the same environment): the scheduler then serves at
    /// once and its helpers start in the background.
    pub ready: Option<Vec<u8>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind_host: "127.0.0.1".into(),
            advertise_host: "127.0.0.1".into(),
            port: 0,
            scheduler_file: None,
            pid_file: None,
            dashboard_port: 0,
            dashboard: true,
            dashboard_prefix: String::new(),
            idle_timeout: None,
            python: "python3".into(),
            graph_helpers: 2,
            helper_start_timeout: Duration::from_secs(120),
            ingest_batch: INGEST_BATCH,
            preload: Vec::new(),
            preload_argv: Vec::new(),
            protocol: None,
            tls: rask_comm::tls::TlsFlags::default(),
            max_message_bytes: rask_comm::CommConfig::default().max_message_bytes,
            max_frames: rask_comm::CommConfig::default().max_frames,
            ready: None,
        }
    }
}
