//! `rask scheduler`: the flags of `dask scheduler --help`, validated into a `ServerConfig`.

use anyhow::{bail, Context, Result};
use clap::Args;
use rask_server::ServerConfig;
use std::net::{IpAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

/// Flags, named as `dask scheduler` names them.
#[derive(Args, Debug)]
pub struct SchedulerArgs {
    /// URI, IP or hostname of this server [default: all interfaces, advertising this host's IP]
    #[arg(long)]
    host: Option<String>,
    /// Serving port; 0 picks a free one
    #[arg(long, default_value_t = 8786)]
    port: u16,
    /// Preferred network interface like 'eth0' or 'ib0'
    #[arg(long)]
    interface: Option<String>,
    /// Protocol like tcp; only tcp is supported
    #[arg(long)]
    protocol: Option<String>,
    /// File to write connection information (the same JSON as `dask scheduler`)
    #[arg(long, env = "DASK_SCHEDULER_FILE")]
    scheduler_file: Option<PathBuf>,
    /// File to write the process PID
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Address on which to listen for diagnostics dashboard
    #[arg(long, default_value = ":8787")]
    dashboard_address: String,
    /// Launch the dashboard [default: on] (rask serves no dashboard yet; the port is advertised)
    #[arg(long, overrides_with = "no_dashboard")]
    dashboard: bool,
    /// Do not launch the dashboard
    #[arg(long)]
    no_dashboard: bool,
    /// Prefix for the dashboard app
    #[arg(long)]
    dashboard_prefix: Option<String>,
    /// Shut down after this long without clients or tasks, e.g. '1h' or '300s'
    #[arg(long)]
    idle_timeout: Option<String>,
    /// Python interpreter for rask's graph helpers: it must import distributed (the same
    /// environment as the workers)
    #[arg(long, env = "RASK_PYTHON", default_value = "python3")]
    python: String,
    /// Number of graph helper processes
    #[arg(long, default_value_t = 2)]
    graph_helpers: usize,
    /// Not supported by rask: preloads run Python inside the scheduler
    #[arg(long, num_args = 1)]
    preload: Vec<String>,
    /// Not supported by rask
    #[arg(long)]
    jupyter: bool,
    /// Not supported by rask yet
    #[arg(long)]
    tls_ca_file: Option<String>,
    /// Not supported by rask yet
    #[arg(long)]
    tls_cert: Option<String>,
    /// Not supported by rask yet
    #[arg(long)]
    tls_key: Option<String>,
}

fn refuse(args: &SchedulerArgs) -> Result<()> {
    if !args.preload.is_empty() {
        bail!("--preload is not supported by rask: the scheduler runs no Python of yours. Use a worker preload (`dask worker --preload`) or a worker plugin instead.");
    }
    if args.jupyter {
        bail!("--jupyter is not supported by rask: the scheduler runs no Python kernel.");
    }
    if args.tls_ca_file.is_some() || args.tls_cert.is_some() || args.tls_key.is_some() {
        bail!("TLS (--tls-*) is not supported by rask yet; use tcp on a trusted network.");
    }
    if let Some(p) = &args.protocol {
        if p != "tcp" && p != "tcp://" {
            bail!("--protocol {p} is not supported by rask; only tcp is.");
        }
    }
    Ok(())
}

/// This host's outward IP: the address the OS would use to reach a public IP (no packet is
/// sent), as Dask's `get_ip()` does; loopback if there is no route.
fn default_ip() -> String {
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("8.8.8.8:80")?;
            s.local_addr()
        })
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into())
}

fn interface_ip(name: &str) -> Result<String> {
    let addrs = if_addrs::get_if_addrs().context("cannot list network interfaces")?;
    let mut names: Vec<String> = addrs.iter().map(|a| a.name.clone()).collect();
    names.dedup();
    addrs
        .iter()
        .filter(|a| a.name == name)
        .map(|a| a.ip())
        .find(IpAddr::is_ipv4)
        .map(|ip| ip.to_string())
        .with_context(|| {
            format!(
                "no IPv4 address on interface {name:?}; interfaces here: {}",
                names.join(", ")
            )
        })
}

fn parse_duration(s: &str) -> Result<Duration> {
    let secs = rask_server::translate::parse_timedelta(&s.into())
        .with_context(|| format!("cannot parse duration {s:?}"))?;
    Ok(Duration::from_secs_f64(secs.max(0.0)))
}

fn config(args: &SchedulerArgs) -> Result<ServerConfig> {
    refuse(args)?;
    let (bind_host, advertise_host) = match (&args.host, &args.interface) {
        (Some(_), Some(_)) => bail!("--host and --interface are mutually exclusive"),
        (Some(h), None) => {
            let h = h.trim_start_matches("tcp://");
            let h = h.rsplit_once(':').map_or(h, |(host, _)| host).to_string();
            (h.clone(), h)
        }
        (None, Some(i)) => {
            let ip = interface_ip(i)?;
            (ip.clone(), ip)
        }
        (None, None) => ("0.0.0.0".into(), default_ip()),
    };
    // Like the stock scheduler, --no-dashboard still serves HTTP (/health), on a free port.
    let dashboard_port = if args.no_dashboard && !args.dashboard {
        0
    } else {
        let port = args.dashboard_address.rsplit(':').next().unwrap_or("8787");
        port.parse::<u16>()
            .with_context(|| format!("bad --dashboard-address {:?}", args.dashboard_address))?
    };
    Ok(ServerConfig {
        bind_host,
        advertise_host,
        port: args.port,
        scheduler_file: args.scheduler_file.clone(),
        pid_file: args.pid_file.clone(),
        dashboard_port,
        idle_timeout: args
            .idle_timeout
            .as_deref()
            .map(parse_duration)
            .transpose()?,
        python: args.python.clone(),
        graph_helpers: args.graph_helpers.max(1),
        ..ServerConfig::default()
    })
}

/// Runs `rask scheduler`.
pub fn main(args: SchedulerArgs) -> Result<()> {
    let config = config(&args)?;
    crate::process::raise_nofile();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let report = rask_server::check_python(&config.python).await?;
        tracing::info!(
            "graph helpers: {} (distributed {})",
            report
                .get("python")
                .and_then(|v| v.as_str())
                .unwrap_or(&config.python),
            report
                .get("distributed")
                .and_then(|v| v.as_str())
                .unwrap_or("?")
        );
        if let Some(d) = report.get("distributed").and_then(|v| v.as_str()) {
            if d != rask_server::helper::TESTED_DISTRIBUTED {
                tracing::warn!(
                    "distributed {d} found; rask is tested with {}",
                    rask_server::helper::TESTED_DISTRIBUTED
                );
            }
        }
        rask_server::run(config, crate::process::shutdown_signal(), |started| {
            tracing::info!("-----------------------------------------------");
            tracing::info!("  Scheduler at:   {}", started.address);
            tracing::info!(
                "  dashboard at:   :{} (status page and /health)",
                started.dashboard_port
            );
            tracing::info!("-----------------------------------------------");
        })
        .await?;
        Ok(())
    })
}
