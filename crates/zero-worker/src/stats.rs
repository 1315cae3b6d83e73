//! The "scheduling phase" across all fake workers: from the first `compute-task` received to
//! the last `task-finished` sent. Every fake worker updates the same counters, so they are
//! atomics rather than a lock (1,000 workers finish tasks concurrently).

use crate::error::ZeroWorkerError;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Unix time in seconds, as Python's `time.time()`.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Shared counters. Times are stored as `f64` bits: for positive floats the bit patterns sort
/// like the numbers, so `fetch_min`/`fetch_max` on the bits are min/max on the times.
#[derive(Debug)]
pub struct Stats {
    /// unix time of the first compute-task (bits); 0 = none yet
    first_compute: AtomicU64,
    /// unix time of the last task-finished write (bits); 0 = none yet
    last_finished: AtomicU64,
    tasks: AtomicU64,
    /// nanoseconds since `origin` of the last compute-task or task-finished, for idleness
    last_activity_ns: AtomicU64,
    origin: Instant,
}

/// One reading of [`Stats`], as written to `--report`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Report {
    /// unix time of the first compute-task received
    pub first_compute: Option<f64>,
    /// unix time of the last task-finished sent
    pub last_finished: Option<f64>,
    /// task-finished messages sent
    pub tasks: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            first_compute: AtomicU64::new(0),
            last_finished: AtomicU64::new(0),
            tasks: AtomicU64::new(0),
            last_activity_ns: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }
}

impl Stats {
    fn touch(&self) {
        let ns = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_activity_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// A batch holding at least one compute-task arrived at `t`.
    pub fn compute_received(&self, t: f64) {
        self.touch();
        if t > 0.0 {
            // min, with 0 meaning "unset": `fetch_update` keeps it in one atomic step
            let bits = t.to_bits();
            let _ = self
                .first_compute
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                    (old == 0 || bits < old).then_some(bits)
                });
        }
    }

    /// `n` task-finished messages were written at `t`.
    pub fn finished_sent(&self, n: u64, t: f64) {
        self.touch();
        self.tasks.fetch_add(n, Ordering::Relaxed);
        if t > 0.0 {
            self.last_finished.fetch_max(t.to_bits(), Ordering::Relaxed);
        }
    }

    /// How long since the last compute-task / task-finished.
    pub fn idle_for(&self) -> std::time::Duration {
        let last = self.last_activity_ns.load(Ordering::Relaxed);
        self.origin
            .elapsed()
            .saturating_sub(std::time::Duration::from_nanos(last))
    }

    /// The current values.
    pub fn report(&self) -> Report {
        let time = |a: &AtomicU64| match a.load(Ordering::Relaxed) {
            0 => None,
            bits => Some(f64::from_bits(bits)),
        };
        Report {
            first_compute: time(&self.first_compute),
            last_finished: time(&self.last_finished),
            tasks: self.tasks.load(Ordering::Relaxed),
        }
    }
}

impl Report {
    /// `last_finished - first_compute`, when both exist.
    pub fn span_s(&self) -> Option<f64> {
        Some((self.last_finished? - self.first_compute?).max(0.0))
    }

    /// `{"first_compute": t, "last_finished": t, "tasks": n, "span_s": s, "nworkers": w}`;
    /// times are `null` before the first task.
    pub fn to_json(&self, nworkers: usize) -> serde_json::Value {
        serde_json::json!({
            "first_compute": self.first_compute,
            "last_finished": self.last_finished,
            "tasks": self.tasks,
            "span_s": self.span_s(),
            "nworkers": nworkers,
        })
    }

    /// Writes the JSON to `path` through a temporary file and a rename, so a benchmark driver
    /// polling the file never reads half of it.
    pub fn write(&self, path: &Path, nworkers: usize) -> Result<(), ZeroWorkerError> {
        let err = |error| ZeroWorkerError::Report {
            path: path.to_path_buf(),
            error,
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let text = format!("{}\n", self.to_json(nworkers));
        std::fs::write(&tmp, text).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_is_min_and_last_is_max() {
        let s = Stats::default();
        assert_eq!(
            s.report(),
            Report {
                first_compute: None,
                last_finished: None,
                tasks: 0
            }
        );
        s.compute_received(10.5);
        s.compute_received(9.25);
        s.compute_received(11.0);
        s.finished_sent(3, 12.0);
        s.finished_sent(2, 11.5);
        let r = s.report();
        assert_eq!(r.first_compute, Some(9.25));
        assert_eq!(r.last_finished, Some(12.0));
        assert_eq!(r.tasks, 5);
        assert_eq!(r.span_s(), Some(2.75));
    }

    #[test]
    fn json_shape_and_atomic_write() {
        let r = Report {
            first_compute: Some(1.0),
            last_finished: Some(3.5),
            tasks: 7,
        };
        let dir = std::env::temp_dir().join(format!("rask-zw-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("report.json");
        r.write(&path, 4).expect("write");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        assert_eq!(v["tasks"], 7);
        assert_eq!(v["span_s"], 2.5);
        assert_eq!(v["first_compute"], 1.0);
        assert_eq!(v["nworkers"], 4);
        assert!(!dir.join("report.json.tmp").exists());
        let _ = std::fs::remove_dir_all(&dir);

        let empty = Report {
            first_compute: None,
            last_finished: None,
            tasks: 0,
        }
        .to_json(1);
        assert!(empty["span_s"].is_null() && empty["first_compute"].is_null());
    }
}
