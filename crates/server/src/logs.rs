//! The scheduler's recent log lines, as the stock scheduler keeps them for
//! `Client.get_scheduler_logs()` (`ServerNode._setup_logging`, node.py:94: a `DequeHandler`
//! of `distributed.admin.log-length` records on the `distributed` logger, read by
//! `get_logs`, node.py:104).
//!
//! rask logs with `tracing`; [`RecentLogs::layer`] is a `tracing_subscriber` layer that the
//! binary installs next to its stderr output, so the ring holds the same lines the log shows
//! (after the same `RASK_LOG` filter). The ring is process-wide ([`recent`]) because the
//! subscriber is. Memory is bounded twice: at most `log-length` lines (10,000 by default)
//! and at most [`MAX_BYTES`] of text, oldest lines dropped first; one line keeps at most
//! [`MAX_LINE`] bytes of its message.

use rask_protocol::Value;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// `distributed.admin.log-length`'s default.
pub const DEFAULT_LENGTH: usize = 10_000;

/// Text kept in all, whatever `log-length` says.
pub const MAX_BYTES: usize = 16 << 20;

/// A message longer than this is cut (a line is for reading, not for data).
pub const MAX_LINE: usize = 16 << 10;

/// One log line.
#[derive(Debug, Clone)]
struct Line {
    /// seconds since the epoch (`LogRecord.created`)
    created: f64,
    /// Python's level name (`LogRecord.levelname`)
    level: &'static str,
    /// the tracing target: the logger's name
    target: &'static str,
    /// the message with its fields
    message: String,
}

impl Line {
    fn size(&self) -> usize {
        self.message.len() + 64
    }

    /// Formatted as distributed's default `distributed.admin.log-format`,
    /// `%(asctime)s - %(name)s - %(levelname)s - %(message)s`, `asctime` in UTC.
    fn format(&self) -> String {
        format!(
            "{} - {} - {} - {}",
            asctime(self.created),
            self.target,
            self.level,
            self.message
        )
    }
}

#[derive(Debug)]
struct Ring {
    lines: VecDeque<Line>,
    bytes: usize,
    capacity: usize,
}

impl Ring {
    fn trim(&mut self) {
        while self.lines.len() > self.capacity || self.bytes > MAX_BYTES {
            match self.lines.pop_front() {
                Some(l) => self.bytes -= l.size(),
                None => break,
            }
        }
    }
}

/// The last log lines of this process.
#[derive(Debug)]
pub struct RecentLogs {
    ring: Mutex<Ring>,
}

/// The process's ring (what [`RecentLogs::layer`] feeds and `get_logs` reads).
pub fn recent() -> &'static RecentLogs {
    static RECENT: OnceLock<RecentLogs> = OnceLock::new();
    RECENT.get_or_init(|| RecentLogs::new(DEFAULT_LENGTH))
}

impl RecentLogs {
    /// An empty ring of `capacity` lines.
    pub fn new(capacity: usize) -> RecentLogs {
        RecentLogs {
            ring: Mutex::new(Ring {
                lines: VecDeque::new(),
                bytes: 0,
                capacity,
            }),
        }
    }

    /// `distributed.admin.log-length`, once the Dask configuration is read.
    pub fn set_capacity(&self, capacity: usize) {
        let mut r = self.lock();
        r.capacity = capacity;
        r.trim();
    }

    /// The layer that records every event the subscriber lets through.
    pub fn layer(&'static self) -> RecentLayer {
        RecentLayer { logs: self }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // A panic while holding the lock cannot leave the ring inconsistent (push and
        // trim keep `bytes` right at every step), so a poisoned lock is still usable.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, line: Line) {
        let mut r = self.lock();
        if r.capacity == 0 {
            return;
        }
        r.bytes += line.size();
        r.lines.push_back(line);
        r.trim();
    }

    /// `get_logs {start, n, timestamps}` (node.py:104): newest first, at most `n` (all
    /// when `None`), none older than `start`; `[level, text]` or `[created, level, text]`.
    pub fn get_logs(&self, start: f64, n: Option<usize>, timestamps: bool) -> Value {
        let r = self.lock();
        let mut out = Vec::new();
        for (count, line) in r.lines.iter().rev().enumerate() {
            if n.is_some_and(|n| count >= n) || line.created < start {
                break;
            }
            let text = Value::from(line.format());
            let level = Value::from(line.level);
            out.push(Value::Array(if timestamps {
                vec![Value::Float(line.created), level, text]
            } else {
                vec![level, text]
            }));
        }
        Value::Array(out)
    }
}

/// See [`RecentLogs::layer`].
pub struct RecentLayer {
    logs: &'static RecentLogs,
}

impl<S: Subscriber> Layer<S> for RecentLayer {
    fn on_event(&self, event: &Event<'_>, _cx: Context<'_, S>) {
        let meta = event.metadata();
        let mut v = Message::default();
        event.record(&mut v);
        let mut message = v.message;
        if !v.fields.is_empty() {
            if !message.is_empty() {
                message.push(' ');
            }
            message.push_str(&v.fields);
        }
        if message.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" ...");
        }
        self.logs.push(Line {
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            level: level_name(*meta.level()),
            target: meta.target(),
            message,
        });
    }
}

/// Python's `logging` level names; tracing's `TRACE` has none, and keeps its own.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// An event's `message` and its other fields as `name=value`, as the stderr output
/// shows them.
#[derive(Default)]
struct Message {
    message: String,
    fields: String,
}

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.field(field, format_args!("{value}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.field(field, format_args!("{value:?}"));
        }
    }
}

impl Message {
    fn field(&mut self, field: &Field, value: std::fmt::Arguments<'_>) {
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        let _ = write!(self.fields, "{}={}", field.name(), value);
    }
}

/// `YYYY-MM-DD HH:MM:SS,mmm` (Python logging's `asctime`), in UTC.
fn asctime(created: f64) -> String {
    let ms = (created * 1000.0).max(0.0) as u64;
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02},{:03}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        ms % 1000
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asctime_is_pythons() {
        // 2026-12-02 06:18:15.123 UTC
        assert_eq!(asctime(1_796_192_295.123), "2026-12-02 06:18:15,123");
        assert_eq!(asctime(0.0), "1970-01-01 00:00:00,000");
        assert_eq!(asctime(951_782_400.0), "2000-02-29 00:00:00,000");
    }

    #[test]
    fn the_ring_is_bounded_and_newest_first() {
        let logs = RecentLogs::new(3);
        for i in 0..5 {
            logs.push(Line {
                created: f64::from(i),
                level: "INFO",
                target: "t",
                message: format!("m{i}"),
            });
        }
        let got = logs.get_logs(0.0, None, false);
        let texts: Vec<String> = got
            .as_array()
            .unwrap_or_default()
            .iter()
            .map(|l| {
                l.as_array().unwrap_or_default()[1]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        assert_eq!(texts.len(), 3);
        assert!(texts[0].ends_with("t - INFO - m4"), "{texts:?}");
        assert!(texts[2].ends_with("m2"));
        assert_eq!(
            logs.get_logs(0.0, Some(1), false)
                .as_array()
                .map(<[_]>::len),
            Some(1)
        );
        assert_eq!(
            logs.get_logs(3.5, None, true).as_array().map(<[_]>::len),
            Some(1)
        );
        logs.set_capacity(1);
        assert_eq!(
            logs.get_logs(0.0, None, false).as_array().map(<[_]>::len),
            Some(1)
        );
    }
}
