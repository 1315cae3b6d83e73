//! The user's Dask configuration, as the scheduler uses it.
//!
//! A graph helper reads it with `dask.config` in the user's environment (so YAML under
//! `/etc/dask`, `~/.config/dask` or `$DASK_CONFIG`, `DASK_*` variables and
//! `DASK_INTERNAL_INHERIT_CONFIG` all count, over distributed's defaults) and sends the keys
//! rask honours, already parsed, in its `ready` message (`scheduler_config()` in
//! `python/rask_graph_helper.py`). A value that does not parse stops the helper, and so the
//! scheduler, with a message naming the key.

pub use rask_comm::tls::TlsSettings;
use rask_protocol::Value;
use std::path::PathBuf;
use std::time::Duration;

/// The scheduler's settings from the Dask configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DaskConfig {
    /// `distributed.scheduler.allowed-failures`
    pub allowed_failures: u32,
    /// `distributed.admin.low-level-log-length`: events kept per topic, transitions kept
    /// in the transition log; `None` (a `null` in the config) is no limit, as Dask's
    /// `deque(maxlen=None)`
    pub low_level_log_length: Option<usize>,
    /// the larger of `distributed.scheduler.dashboard.{status,tasks}.task-stream-length`:
    /// records the task stream keeps (`None`: no limit)
    pub task_stream_length: Option<usize>,
    /// `distributed.worker.memory.recent-to-old-time`: unmanaged memory older than this is
    /// "old" (the memory sampler's `unmanaged_old` and `optimistic` measures)
    pub recent_to_old_time: Duration,
    /// `distributed.admin.log-length`: the scheduler's log lines kept for `get_logs`
    pub log_length: usize,
    /// `distributed.scheduler.locks.lease-validation-interval`
    pub lease_validation_interval: Duration,
    /// `distributed.scheduler.worker-ttl`: a worker silent this long is removed
    pub worker_ttl: Option<Duration>,
    /// `distributed.scheduler.worker-saturation`: root tasks sent per thread; infinite
    /// turns root-task queuing off
    pub worker_saturation: f64,
    /// `distributed.scheduler.work-stealing`
    pub work_stealing: bool,
    /// `distributed.scheduler.work-stealing-interval`
    pub work_stealing_interval: Duration,
    /// `distributed.scheduler.idle-timeout` (`--idle-timeout` wins)
    pub idle_timeout: Option<Duration>,
    /// `distributed.comm.timeouts.connect`
    pub connect_timeout: Duration,
    /// `distributed.comm.timeouts.tcp`: an unresponsive connection is dead after this
    pub tcp_timeout: Duration,
    /// `distributed.comm.require-encryption` and `distributed.comm.tls.*`
    pub tls: TlsSettings,
}

impl Default for DaskConfig {
    /// distributed 2026.8.0's `distributed.yaml` defaults.
    fn default() -> Self {
        DaskConfig {
            allowed_failures: 3,
            low_level_log_length: Some(1000),
            task_stream_length: Some(100_000),
            recent_to_old_time: Duration::from_secs(30),
            log_length: crate::logs::DEFAULT_LENGTH,
            lease_validation_interval: Duration::from_secs(10),
            worker_ttl: Some(Duration::from_secs(300)),
            worker_saturation: 1.1,
            work_stealing: true,
            work_stealing_interval: Duration::from_secs(1),
            idle_timeout: None,
            connect_timeout: Duration::from_secs(30),
            tcp_timeout: Duration::from_secs(30),
            tls: TlsSettings {
                min_version: Some("1.2".into()),
                ..TlsSettings::default()
            },
        }
    }
}

impl DaskConfig {
    /// Reads the `config` map of a helper's `ready` message.
    pub fn from_helper(ready: &Value) -> Result<DaskConfig, ConfigError> {
        let c = ready
            .get("config")
            .ok_or_else(|| bad("config", "missing from the graph helper's ready message"))?;
        Ok(DaskConfig {
            allowed_failures: u32::try_from(int(c, "allowed-failures")?)
                .map_err(|_| bad("allowed-failures", "too large"))?,
            low_level_log_length: optional(c, "low-level-log-length", length)?,
            // absent from an older helper's map: distributed's default
            log_length: match optional(c, "log-length", int)? {
                None => crate::logs::DEFAULT_LENGTH,
                Some(n) => usize::try_from(n).map_err(|_| bad("log-length", "too large"))?,
            },
            task_stream_length: optional(c, "task-stream-length", length)?,
            recent_to_old_time: optional(c, "recent-to-old-time", seconds)?
                .unwrap_or(DaskConfig::default().recent_to_old_time),
            lease_validation_interval: interval(c, "lease-validation-interval")?,
            worker_ttl: optional(c, "worker-ttl", seconds)?,
            worker_saturation: float(c, "worker-saturation")?,
            work_stealing: boolean(c, "work-stealing")?,
            work_stealing_interval: interval(c, "work-stealing-interval")?,
            idle_timeout: optional(c, "idle-timeout", seconds)?,
            connect_timeout: interval(c, "connect-timeout")?,
            tcp_timeout: interval(c, "tcp-timeout")?,
            tls: TlsSettings {
                require_encryption: optional(c, "require-encryption", boolean)?.unwrap_or(false),
                ca_file: optional(c, "tls-ca-file", text)?.map(PathBuf::from),
                cert: optional(c, "tls-cert", text)?.map(PathBuf::from),
                key: optional(c, "tls-key", text)?.map(PathBuf::from),
                ciphers: optional(c, "tls-ciphers", text)?,
                min_version: optional(c, "tls-min-version", text)?,
                max_version: optional(c, "tls-max-version", text)?,
            },
        })
    }

    /// The `config` map a helper sends for this configuration: what [`Self::from_helper`]
    /// reads back (tests of the layers above start a scheduler from it).
    pub fn to_helper_map(&self) -> Value {
        let secs = |d: Duration| Value::Float(d.as_secs_f64());
        let opt_secs = |d: Option<Duration>| d.map_or(Value::Nil, secs);
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or(Value::Nil, |p| Value::from(p.to_string_lossy().as_ref()))
        };
        let text = |t: &Option<String>| t.as_deref().map_or(Value::Nil, Value::from);
        let tls = &self.tls;
        Value::map([
            (
                "allowed-failures",
                Value::from(u64::from(self.allowed_failures)),
            ),
            (
                "low-level-log-length",
                self.low_level_log_length.map_or(Value::Nil, Value::from),
            ),
            ("log-length", Value::from(self.log_length)),
            (
                "task-stream-length",
                self.task_stream_length.map_or(Value::Nil, Value::from),
            ),
            ("recent-to-old-time", secs(self.recent_to_old_time)),
            (
                "lease-validation-interval",
                secs(self.lease_validation_interval),
            ),
            ("worker-ttl", opt_secs(self.worker_ttl)),
            ("worker-saturation", Value::Float(self.worker_saturation)),
            ("work-stealing", Value::Bool(self.work_stealing)),
            ("work-stealing-interval", secs(self.work_stealing_interval)),
            ("idle-timeout", opt_secs(self.idle_timeout)),
            ("connect-timeout", secs(self.connect_timeout)),
            ("tcp-timeout", secs(self.tcp_timeout)),
            ("require-encryption", Value::Bool(tls.require_encryption)),
            ("tls-ca-file", path(&tls.ca_file)),
            ("tls-cert", path(&tls.cert)),
            ("tls-key", path(&tls.key)),
            ("tls-ciphers", text(&tls.ciphers)),
            ("tls-min-version", text(&tls.min_version)),
            ("tls-max-version", text(&tls.max_version)),
        ])
    }
}

/// A Dask configuration value rask cannot use (the scheduler does not start).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("Dask config {key}: {why}")]
pub struct ConfigError {
    /// the key, as the graph helper names it
    pub key: String,
    /// what is wrong with its value
    pub why: &'static str,
}

fn bad(key: &str, why: &'static str) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        why,
    }
}

fn field<'a>(c: &'a Value, key: &str) -> Result<&'a Value, ConfigError> {
    c.get(key).ok_or_else(|| bad(key, "missing"))
}

fn optional<T>(
    c: &Value,
    key: &str,
    read: fn(&Value, &str) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    match c.get(key) {
        None | Some(Value::Nil) => Ok(None),
        Some(_) => read(c, key).map(Some),
    }
}

fn int(c: &Value, key: &str) -> Result<u64, ConfigError> {
    field(c, key)?
        .as_i64()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| bad(key, "expected a whole number >= 0"))
}

fn length(c: &Value, key: &str) -> Result<usize, ConfigError> {
    usize::try_from(int(c, key)?).map_err(|_| bad(key, "too large"))
}

fn float(c: &Value, key: &str) -> Result<f64, ConfigError> {
    field(c, key)?
        .as_f64()
        .filter(|x| !x.is_nan())
        .ok_or_else(|| bad(key, "expected a number"))
}

fn seconds(c: &Value, key: &str) -> Result<Duration, ConfigError> {
    let s = float(c, key)?;
    Duration::try_from_secs_f64(s).map_err(|_| bad(key, "expected a time interval >= 0"))
}

/// A period something repeats at: zero would spin, so it must be positive.
fn interval(c: &Value, key: &str) -> Result<Duration, ConfigError> {
    let d = seconds(c, key)?;
    if d.is_zero() {
        return Err(bad(key, "must be longer than 0"));
    }
    Ok(d)
}

fn boolean(c: &Value, key: &str) -> Result<bool, ConfigError> {
    match field(c, key)? {
        Value::Bool(b) => Ok(*b),
        _ => Err(bad(key, "expected True or False")),
    }
}

fn text(c: &Value, key: &str) -> Result<String, ConfigError> {
    field(c, key)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| bad(key, "expected a string"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(config: Value) -> Value {
        Value::map([("op", Value::from("ready")), ("config", config)])
    }

    fn with(key: &str, value: Value) -> Value {
        let mut c = DaskConfig::default().to_helper_map();
        c.set(key, value);
        ready(c)
    }

    #[test]
    fn distributed_defaults_read_back_as_the_default() {
        let c = DaskConfig::from_helper(&ready(DaskConfig::default().to_helper_map())).unwrap();
        assert_eq!(c, DaskConfig::default());
    }

    #[test]
    fn infinite_saturation_and_a_user_ttl_are_kept() {
        let c = DaskConfig::from_helper(&with("worker-saturation", Value::Float(f64::INFINITY)))
            .unwrap();
        assert!(c.worker_saturation.is_infinite());
        let c = DaskConfig::from_helper(&with("worker-ttl", Value::Float(2.5))).unwrap();
        assert_eq!(c.worker_ttl, Some(Duration::from_millis(2500)));
        let c = DaskConfig::from_helper(&with("worker-ttl", Value::Nil)).unwrap();
        assert_eq!(c.worker_ttl, None);
        // `low-level-log-length: null` is Dask's deque(maxlen=None): no limit, not an error
        let c = DaskConfig::from_helper(&with("low-level-log-length", Value::Nil)).unwrap();
        assert_eq!(c.low_level_log_length, None);
        let c = DaskConfig::from_helper(&with("task-stream-length", Value::Int(5))).unwrap();
        assert_eq!(c.task_stream_length, Some(5));
    }

    #[test]
    fn wrong_types_name_the_key() {
        for (key, value) in [
            ("allowed-failures", Value::Int(-1)),
            ("work-stealing", Value::from("yes")),
            ("worker-ttl", Value::Float(-3.0)),
            ("work-stealing-interval", Value::Float(0.0)),
            ("tls-cert", Value::Int(3)),
        ] {
            let e = DaskConfig::from_helper(&with(key, value)).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
        let e =
            DaskConfig::from_helper(&ready(Value::map([("worker-ttl", Value::Nil)]))).unwrap_err();
        assert!(e.to_string().contains("allowed-failures"), "{e}");
    }
}
