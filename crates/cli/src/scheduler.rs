//! `rask scheduler`: the flags of `dask scheduler --help`, validated into a `ServerConfig`.

use anyhow::{bail, Context, Result};
use clap::Args;
use rask_server::ServerConfig;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::Duration;

/// Flags, named as `dask scheduler` names them.
#[derive(Args, Debug)]
pub struct SchedulerArgs {
    /// URI, IP or hostname of this server, e.g. 10.0.0.5, tls://10.0.0.5 or
    /// tcp://10.0.0.5:8786 [default: all interfaces, advertising this host's IP]
    #[arg(long)]
    host: Option<String>,
    /// Serving port; 0 picks a free one [default: 8786, or the port in --host]
    #[arg(long)]
    port: Option<u16>,
    /// Preferred network interface like 'eth0' or 'ib0'
    #[arg(long)]
    interface: Option<String>,
    /// Protocol: tcp or tls [default: tls if a --tls-* flag is given or
    /// distributed.comm.require-encryption is set, else tcp]
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
    /// Launch the dashboard [default: on]
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
    #[arg(long, env = "RASK_PYTHON", default_value_t = crate::process::default_python())]
    python: String,
    /// Number of graph helper processes
    #[arg(long, default_value_t = 2)]
    graph_helpers: usize,
    /// Tasks of a big graph taken in per turn of the state task (other clients' work goes on
    /// between turns); a small number makes every test graph a big one
    #[arg(long, hide = true, env = "RASK_INGEST_BATCH", default_value_t = rask_server::config::INGEST_BATCH)]
    ingest_batch: usize,
    /// Module that should be loaded by the scheduler process, like "foo.bar" or
    /// "/path/to/foo.py" (its `dask_setup(scheduler)` runs in rask's plugin host)
    #[arg(long, num_args = 1)]
    preload: Vec<String>,
    /// Arguments for the preloads (after `--`), as `dask scheduler` takes them
    #[arg(last = true)]
    preload_argv: Vec<String>,
    /// Not supported by rask
    #[arg(long)]
    jupyter: bool,
    /// Shut down when standard input closes: `rask.Scheduler` holds the other end, so the
    /// scheduler ends with the Python process that started it, however that process ends
    #[arg(long, hide = true)]
    exit_on_stdin_eof: bool,
    /// A graph helper's `ready` message (msgpack) that `rask.Scheduler` wrote from the same
    /// environment: the scheduler serves without waiting for its helpers' imports
    #[arg(long, hide = true)]
    ready_file: Option<PathBuf>,
    /// TLS and connection limits (boxed: they would make every `rask` subcommand's
    /// arguments as large as the scheduler's)
    #[command(flatten)]
    conn: Box<ConnectionArgs>,
}

/// `--tls-*` (as `dask scheduler`) and rask's caps on what a peer may send.
#[derive(Args, Debug)]
struct ConnectionArgs {
    /// CA cert(s) file for TLS (in PEM format); clients and workers must present a
    /// certificate it signed
    #[arg(long)]
    tls_ca_file: Option<PathBuf>,
    /// Certificate file for TLS (in PEM format), possibly with the key appended
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// Private key file for TLS (in PEM format)
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Largest message a peer may send, e.g. 2GiB or 500MB; a peer announcing more has its
    /// connection closed
    #[arg(long, default_value = "16GiB")]
    max_message_bytes: String,
    /// Most frames a peer may send in one message
    #[arg(long, default_value_t = 1 << 20)]
    max_frames: u64,
}

fn refuse(args: &SchedulerArgs) -> Result<()> {
    if args.jupyter {
        bail!("--jupyter is not supported by rask: the scheduler runs no Python kernel.");
    }
    if let Some(p) = &args.protocol {
        let p = p.trim_end_matches("://");
        if p != "tcp" && p != "tls" {
            bail!("--protocol {p} is not supported by rask; use tcp or tls.");
        }
    }
    Ok(())
}

/// `--host`: `[scheme://]host[:port]` (an IPv6 host in brackets).
fn split_host(h: &str) -> (Option<&str>, &str, Option<&str>) {
    let (scheme, rest) = match h.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, h),
    };
    let rest = rest.trim_end_matches('/');
    if let Some(inner) = rest.strip_prefix('[') {
        // [v6]:port or [v6]
        return match inner.split_once(']') {
            Some((host, tail)) => (scheme, host, tail.strip_prefix(':')),
            None => (scheme, inner, None),
        };
    }
    match rest.rsplit_once(':') {
        // a bare IPv6 address has more than one colon and no port
        Some((host, port)) if !host.contains(':') => (scheme, host, Some(port)),
        _ => (scheme, rest, None),
    }
}

/// A Dask byte string (`dask.utils.parse_bytes`): `2GiB`, `500 MB`, `1e9`, `100`; units
/// are case-insensitive, `kB`/`k` = 1000 and `KiB` = 1024.
fn parse_bytes(s: &str) -> Result<u64> {
    let t: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if t.is_empty() {
        bail!("empty byte size");
    }
    let split = t
        .rfind(|c: char| !c.is_ascii_alphabetic())
        .map_or(0, |i| i + 1);
    let (number, unit) = t.split_at(split);
    let n: f64 = if number.is_empty() {
        1.0
    } else {
        number
            .parse()
            .with_context(|| format!("cannot parse byte size {s:?}"))?
    };
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "p" | "pb" => 1e15,
        "kib" => 1024.0,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        "tib" => 1024f64.powi(4),
        "pib" => 1024f64.powi(5),
        other => bail!("cannot parse byte size {s:?}: unknown unit {other:?}"),
    };
    let bytes = n * mult;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        bail!("byte size {s:?} is out of range");
    }
    Ok(bytes as u64)
}

/// `dask scheduler` checks that the PEM files exist (click's `Path(exists=True)`) and
/// resolves them, so a relative path means the same wherever it is opened.
fn pem_path(flag: &str, p: &Option<PathBuf>) -> Result<Option<PathBuf>> {
    p.as_ref()
        .map(|p| {
            std::fs::canonicalize(p)
                .with_context(|| format!("Invalid value for '{flag}': Path {p:?} does not exist"))
        })
        .transpose()
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

fn parse_duration(s: &str) -> Result<Duration> {
    let secs = rask_comm::fields::parse_timedelta(&s.into())
        .with_context(|| format!("cannot parse duration {s:?}"))?;
    Ok(Duration::from_secs_f64(secs.max(0.0)))
}

/// `--dashboard-prefix`: `proxy/8787`, `/proxy/8787/` and the like become `/proxy/8787`;
/// a prefix is a path, so characters that would need quoting in one are refused.
fn dashboard_prefix(p: Option<&str>) -> Result<String> {
    let p = p.unwrap_or("").trim_matches('/');
    anyhow::ensure!(
        p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-_.~".contains(c)),
        "bad --dashboard-prefix {p:?}: use letters, digits and / - _ . ~"
    );
    Ok(if p.is_empty() {
        String::new()
    } else {
        format!("/{p}")
    })
}

fn config(args: &SchedulerArgs) -> Result<ServerConfig> {
    refuse(args)?;
    let (host_scheme, host_port) = match &args.host {
        Some(h) => {
            let (scheme, _, port) = split_host(h);
            (scheme, port)
        }
        None => (None, None),
    };
    let protocol = match (args.protocol.as_deref(), host_scheme) {
        (Some(p), Some(s)) if p.trim_end_matches("://") != s => {
            bail!("--protocol {p} and --host {s}://... disagree")
        }
        (Some(p), _) => Some(p.trim_end_matches("://").to_string()),
        (None, Some(s)) => Some(s.to_string()),
        (None, None) => None,
    };
    let port = match (args.port, host_port) {
        (Some(p), _) => p,
        (None, Some(p)) => p
            .parse()
            .with_context(|| format!("bad port in --host {:?}", args.host))?,
        (None, None) => 8786,
    };
    let (bind_host, advertise_host) = match (&args.host, &args.interface) {
        (Some(_), Some(_)) => bail!("--host and --interface are mutually exclusive"),
        // `--host tls://` alone names only the protocol
        (Some(h), None) if split_host(h).1.is_empty() => ("0.0.0.0".into(), default_ip()),
        (Some(h), None) => {
            let h = split_host(h).1.to_string();
            (h.clone(), h)
        }
        (None, Some(i)) => {
            let ip = rask_comm::net::interface_ip(i)?.to_string();
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
        port,
        scheduler_file: args.scheduler_file.clone(),
        pid_file: args.pid_file.clone(),
        dashboard_port,
        dashboard: !args.no_dashboard || args.dashboard,
        dashboard_prefix: dashboard_prefix(args.dashboard_prefix.as_deref())?,
        idle_timeout: args
            .idle_timeout
            .as_deref()
            .map(parse_duration)
            .transpose()?,
        python: args.python.clone(),
        graph_helpers: args.graph_helpers.max(1),
        ingest_batch: args.ingest_batch,
        preload: args.preload.clone(),
        preload_argv: args.preload_argv.clone(),
        protocol,
        tls: rask_comm::tls::TlsFlags {
            ca_file: pem_path("--tls-ca-file", &args.conn.tls_ca_file)?,
            cert: pem_path("--tls-cert", &args.conn.tls_cert)?,
            key: pem_path("--tls-key", &args.conn.tls_key)?,
        },
        max_message_bytes: parse_bytes(&args.conn.max_message_bytes)
            .context("--max-message-bytes")?,
        max_frames: match args.conn.max_frames {
            0 => bail!("--max-frames must be at least 1"),
            n => n,
        },
        ready: match &args.ready_file {
            Some(path) => Some(
                std::fs::read(path).with_context(|| format!("--ready-file {}", path.display()))?,
            ),
            None => None,
        },
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
        let stdin_closed = crate::process::stdin_closed(args.exit_on_stdin_eof);
        let shutdown = async {
            tokio::select! {
                _ = crate::process::shutdown_signal() => {}
                _ = stdin_closed => {}
            }
        };
        rask_server::run(config, shutdown, |started| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_strings_parse_like_dask() {
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("500 MB").unwrap(), 500_000_000);
        assert_eq!(parse_bytes("1e6").unwrap(), 1_000_000);
        assert_eq!(parse_bytes("5kb").unwrap(), 5000);
        assert_eq!(parse_bytes("KiB").unwrap(), 1024);
        assert_eq!(parse_bytes("1.5 kiB").unwrap(), 1536);
        for bad in ["", "x", "5 parsecs", "-1", "0", "1e40 PB"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_split_into_scheme_host_port() {
        assert_eq!(split_host("10.0.0.5"), (None, "10.0.0.5", None));
        assert_eq!(
            split_host("tls://10.0.0.5:8786"),
            (Some("tls"), "10.0.0.5", Some("8786"))
        );
        assert_eq!(split_host("tls://"), (Some("tls"), "", None));
        assert_eq!(split_host("[::1]:9000"), (None, "::1", Some("9000")));
        assert_eq!(split_host("::1"), (None, "::1", None));
        assert_eq!(split_host("host:1"), (None, "host", Some("1")));
    }
}
