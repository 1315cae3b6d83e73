//! What the scheduler measures about itself, and the Prometheus text format `/metrics`
//! serves it in.
//!
//! The state task keeps [`Turns`] (how long each event kept it busy: Dask's "ticks") and
//! the peer counters; graph helpers, which run outside it, add their stage timings to
//! [`HELPERS`]. Nothing here costs more than a few additions per event; the families are
//! only built when somebody scrapes.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric family: its samples and what it means. `name` is the full sample name
/// (a counter's ends in `_total`, as `prometheus_client` writes them).
#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

/// One sample: label pairs and a value; `suffix` is appended to the family name (a
/// histogram's `_bucket`, `_sum`, `_count`).
#[derive(Debug, Clone)]
pub struct Sample {
    pub suffix: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl Family {
    /// A family without samples yet.
    pub fn new(name: impl Into<String>, kind: Kind, help: &'static str) -> Family {
        Family {
            name: name.into(),
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// A family of one unlabelled sample.
    pub fn single(name: impl Into<String>, kind: Kind, help: &'static str, value: f64) -> Family {
        Family::new(name, kind, help).with(vec![], value)
    }

    /// Adds a sample.
    pub fn with(mut self, labels: Vec<(&'static str, String)>, value: f64) -> Family {
        self.push(labels, value);
        self
    }

    /// Adds a sample.
    pub fn push(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push(Sample {
            suffix: "",
            labels,
            value,
        });
    }
}

/// The text exposition format 0.0.4, as `prometheus_client.generate_latest` writes it.
pub fn encode(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families {
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        // the `# HELP` line escapes backslashes and newlines
        let help = f.help.replace('\\', r"\\").replace('\n', r"\n");
        let _ = writeln!(out, "# HELP {} {help}", f.name);
        let _ = writeln!(out, "# TYPE {} {kind}", f.name);
        for s in &f.samples {
            out.push_str(&f.name);
            out.push_str(s.suffix);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let v = v
                        .replace('\\', r"\\")
                        .replace('\n', r"\n")
                        .replace('"', "\\\"");
                    let _ = write!(out, "{k}=\"{v}\"");
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", number(s.value));
        }
    }
    out
}

/// A value as Python's `floatToGoString` writes it (`1.0`, `+Inf`).
fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.is_nan() {
        "NaN".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// A histogram with fixed bucket bounds (seconds).
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    /// observations per bucket (not cumulative); above the last bound: only in `total`
    counts: Vec<u64>,
    total: u64,
    sum: f64,
}

/// Bounds for the state task's turns: from 10 µs to 10 s.
pub const TURN_BOUNDS: &[f64] = &[
    1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            total: 0,
            sum: 0.0,
        }
    }

    /// One observation; the `+Inf` bucket is the total count.
    pub fn observe(&mut self, v: f64) {
        self.sum += v;
        self.total += 1;
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
    }

    /// The family, cumulative buckets as Prometheus wants them.
    pub fn family(&self, name: &str, help: &'static str) -> Family {
        let total = self.total;
        let mut f = Family::new(name, Kind::Histogram, help);
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c;
            f.samples.push(Sample {
                suffix: "_bucket",
                labels: vec![("le", number(*b))],
                value: cumulative as f64,
            });
        }
        for (suffix, labels, value) in [
            ("_bucket", vec![("le", "+Inf".to_string())], total as f64),
            ("_count", vec![], total as f64),
            ("_sum", vec![], self.sum),
        ] {
            f.samples.push(Sample {
                suffix,
                labels,
                value,
            });
        }
        f
    }
}

/// How the state task spends its time: one turn per event it handles (Dask's event-loop
/// "ticks" are the nearest thing the stock scheduler measures).
#[derive(Debug, Clone)]
pub struct Turns {
    /// turns since start (`tick_count_total`)
    pub count: u64,
    /// the longest turn since the last scrape (`tick_duration_maximum_seconds`)
    pub max_since_scrape: f64,
    /// time spent in turns (`rask_state_task_busy_seconds_total`)
    pub busy: f64,
    /// per-turn durations
    pub durations: Histogram,
    /// messages from peers handled (client and worker stream messages and RPCs)
    pub messages: u64,
}

impl Default for Turns {
    fn default() -> Turns {
        Turns {
            count: 0,
            max_since_scrape: 0.0,
            busy: 0.0,
            durations: Histogram::new(TURN_BOUNDS),
            messages: 0,
        }
    }
}

impl Turns {
    /// One turn took `d`.
    pub fn record(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        self.count += 1;
        self.busy += s;
        self.max_since_scrape = self.max_since_scrape.max(s);
        self.durations.observe(s);
    }
}

/// The graph helpers' counters, shared by every pool of the process: helpers run outside
/// the state task, in jobs that only report their result.
pub struct HelperCounters {
    /// graphs materialized (successfully or not)
    pub graphs: AtomicU64,
    /// helpers working on a request now
    pub busy: AtomicU64,
    /// helpers started and not dead
    pub alive: AtomicU64,
    /// microseconds per stage: deserialize, materialize, order, per-task records, and the
    /// whole round trip as the scheduler saw it
    pub stage_us: [AtomicU64; 5],
}

/// The helper stages, in the order of [`HelperCounters::stage_us`], as the helper's
/// `timings` name them (`<stage>_s`).
pub const HELPER_STAGES: [&str; 5] = ["deserialize", "materialize", "order", "tasks", "round_trip"];

/// The process's graph helper counters.
pub static HELPERS: HelperCounters = HelperCounters {
    graphs: AtomicU64::new(0),
    busy: AtomicU64::new(0),
    alive: AtomicU64::new(0),
    stage_us: [
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    ],
};

impl HelperCounters {
    /// Adds one graph's stage timings (seconds; NaN when the helper did not report one).
    pub fn add_graph(&self, stages: [f64; 5]) {
        self.graphs.fetch_add(1, Ordering::Relaxed);
        for (slot, s) in self.stage_us.iter().zip(stages) {
            if s.is_finite() && s > 0.0 {
                slot.fetch_add((s * 1e6) as u64, Ordering::Relaxed);
            }
        }
    }

    /// Seconds spent in each stage so far.
    pub fn stage_seconds(&self) -> [f64; 5] {
        std::array::from_fn(|i| self.stage_us[i].load(Ordering::Relaxed) as f64 / 1e6)
    }
}

/// Counts one in a gauge of [`HELPERS`] while it lives (a helper alive, a request in its
/// hands), whichever way its holder ends.
pub struct Held(&'static AtomicU64);

impl Held {
    pub fn new(gauge: &'static AtomicU64) -> Held {
        gauge.fetch_add(1, Ordering::Relaxed);
        Held(gauge)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_as_prometheus_client_writes_it() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(5.0);
        let families = [
            Family::single("a_total", Kind::Counter, "A\nB", 3.0),
            Family::new("g", Kind::Gauge, "G").with(vec![("state", "x\"y".into())], 0.5),
            h.family("h", "H"),
        ];
        assert_eq!(
            encode(&families),
            "# HELP a_total A\\nB\n# TYPE a_total counter\na_total 3.0\n\
             # HELP g G\n# TYPE g gauge\ng{state=\"x\\\"y\"} 0.5\n\
             # HELP h H\n# TYPE h histogram\nh_bucket{le=\"0.1\"} 1.0\nh_bucket{le=\"1.0\"} 1.0\n\
             h_bucket{le=\"+Inf\"} 2.0\nh_count 2.0\nh_sum 5.05\n"
        );
    }
}
