//! What the HTTP pages read: `/metrics` (the families of `distributed/http/scheduler/
//! prometheus/`, plus rask's own), `/json/counts.json` and the dashboard's picture. All of it
//! comes from counters kept anyway (the core's prefixes, the peer counts, the state task's
//! turns), so building a page costs O(workers + prefixes), never O(tasks), except for the
//! counts Dask itself computes by walking the tasks.

use super::Scheduler;
use crate::event::Watch;
use crate::monitor::{Family, Kind, Turns, HELPERS, HELPER_STAGES};
use rask_core::counters::{state_index, STATES};
use rask_core::{TaskStatus, WorkerStatus};
use serde_json::json;
use std::sync::atomic::Ordering;

/// The counters the core does not keep.
#[derive(Default)]
pub(super) struct Monitor {
    pub(super) turns: Turns,
    pub(super) clients_added: u64,
    pub(super) clients_removed: u64,
    pub(super) workers_added: u64,
    pub(super) workers_removed: u64,
    /// tasks finished per second, as the dashboard last measured it, and when and at which
    /// total it did
    rate: (f64, f64, u64),
}

/// The shortest time over which the dashboard's tasks per second is measured.
const RATE_WINDOW: f64 = 1.0;

/// Dask's `dask_scheduler_tasks` states, in the order the stock scheduler lists them.
const TASK_GAUGE_STATES: [TaskStatus; 7] = [
    TaskStatus::Waiting,
    TaskStatus::Queued,
    TaskStatus::Processing,
    TaskStatus::NoWorker,
    TaskStatus::Erred,
    TaskStatus::Released,
    TaskStatus::Memory,
];

/// `WorkStealing.cost_multipliers` as the stock labels write them (`str(float)`).
const COST_MULTIPLIERS: [&str; 15] = [
    "1.0", "1.03125", "1.0625", "1.125", "1.25", "1.5", "2", "3", "5", "9", "17", "33", "65",
    "129", "257",
];

impl Scheduler {
    /// Answers a page's question.
    pub(super) fn watch(&mut self, now: f64, w: Watch) {
        match w {
            Watch::Metrics(tx) => {
                let _ = tx.send(self.metric_families());
            }
            Watch::Counts(tx) => {
                let _ = tx.send(self.counts());
            }
            Watch::Dashboard { since, reply } => {
                let _ = reply.send(self.dashboard(now, since));
            }
            Watch::Task { key, reply } => {
                let _ = reply.send(self.task_info(&key));
            }
        }
    }

    /// `check_idle_saturated` (scheduler.py) over the running workers: how many are idle
    /// and how many saturated, by Dask's occupancy rule.
    fn idle_saturated(&self) -> (usize, usize) {
        let workers: Vec<&rask_core::Worker> = self.core.workers().map(|(_, w)| w).collect();
        let threads: f64 = workers.iter().map(|w| f64::from(w.nthreads)).sum();
        if threads == 0.0 {
            return (0, 0);
        }
        let avg = workers.iter().map(|w| w.occupancy).sum::<f64>() / threads;
        let (mut idle, mut saturated) = (0, 0);
        for w in workers.iter().filter(|w| w.status == WorkerStatus::Running) {
            let (p, nc, occ) = (
                w.processing.len() as f64,
                f64::from(w.nthreads),
                w.occupancy,
            );
            if p < nc || occ < nc * avg / 2.0 {
                idle += 1;
            } else {
                let pending = occ * (p - nc) / (p * nc);
                if pending > 0.4 && pending > 1.9 * avg {
                    saturated += 1;
                }
            }
        }
        (idle, saturated)
    }

    /// Clients connected, without the fire-and-forget pseudo-client (as Dask counts them).
    fn n_clients(&self) -> usize {
        self.clients
            .keys()
            .filter(|c| **c != rask_core::FIRE_AND_FORGET)
            .count()
    }

    /// Every family `/metrics` serves.
    fn metric_families(&mut self) -> Vec<Family> {
        use Kind::{Counter, Gauge};
        let mut f = Vec::new();
        let clients = self.n_clients();
        let m = &self.monitor;
        f.push(Family::single(
            "dask_scheduler_clients",
            Gauge,
            "Number of clients connected",
            clients as f64,
        ));
        f.push(Family::single(
            "dask_scheduler_client_connections_added_total",
            Counter,
            "Total number of client connections added",
            m.clients_added as f64,
        ));
        f.push(Family::single(
            "dask_scheduler_client_connections_removed_total",
            Counter,
            "Total number of client connections removed",
            m.clients_removed as f64,
        ));
        let desired = self.adaptive_target(super::cluster::DEFAULT_TARGET_DURATION);
        f.push(Family::single(
            "dask_scheduler_desired_workers",
            Gauge,
            "Number of workers scheduler needs for task graph",
            desired as f64,
        ));
        let (idle, saturated) = self.idle_saturated();
        let count = |s: WorkerStatus| self.core.workers().filter(|(_, w)| w.status == s).count();
        let (running, paused) = (count(WorkerStatus::Running), count(WorkerStatus::Paused));
        let all = self.core.workers().count();
        let mut workers = Family::new(
            "dask_scheduler_workers",
            Gauge,
            "Number of workers known by scheduler",
        );
        for (state, n) in [
            ("idle", idle),
            ("partially_saturated", running - idle - saturated),
            ("saturated", saturated),
            ("paused", paused),
            ("retiring", all - paused - running),
        ] {
            workers.push(vec![("state", state.into())], n as f64);
        }
        f.push(workers);
        let m = &self.monitor;
        f.push(Family::single(
            "dask_scheduler_workers_added_total",
            Counter,
            "Total number of workers added",
            m.workers_added as f64,
        ));
        f.push(Family::single(
            "dask_scheduler_workers_removed_total",
            Counter,
            "Total number of workers removed",
            m.workers_removed as f64,
        ));
        // rask has no garbage collector: no time is spent in one
        f.push(Family::single(
            "dask_scheduler_gc_collection_seconds_total",
            Counter,
            "Total time spent on garbage collection",
            0.0,
        ));
        f.push(Family::single(
            "dask_scheduler_last_time_total",
            Counter,
            "SystemMonitor last time",
            crate::translate::now(),
        ));
        let prefixes = self.core.prefixes();
        let per_prefix = |name: &str,
                          help: &'static str,
                          kind: Kind,
                          unit_value: &dyn Fn(&rask_core::Prefix) -> f64| {
            let mut fam = Family::new(name, kind, help);
            for p in prefixes.iter() {
                fam.push(
                    vec![("task_prefix_name", p.name.to_string())],
                    unit_value(p),
                );
            }
            fam
        };
        f.push(per_prefix(
            "dask_scheduler_tasks_suspicious_total",
            "Total number of times a task has been marked suspicious",
            Counter,
            &|p| p.suspicious as f64,
        ));
        let total = |s: TaskStatus| -> f64 {
            prefixes
                .iter()
                .map(|p| p.states[state_index(s)])
                .sum::<i64>() as f64
        };
        f.push(Family::single(
            "dask_scheduler_tasks_forgotten_total",
            Counter,
            "Total number of processed tasks no longer in memory and already removed from the \
             scheduler job queue\nNote: Task groups on the scheduler which have all tasks in \
             the forgotten state are not included.",
            total(TaskStatus::Forgotten),
        ));
        let mut tasks = Family::new(
            "dask_scheduler_tasks",
            Gauge,
            "Number of tasks known by scheduler",
        );
        for s in TASK_GAUGE_STATES {
            tasks.push(vec![("state", s.as_str().into())], total(s));
        }
        f.push(tasks);
        f.push(Family::single(
            "dask_scheduler_task_groups",
            Gauge,
            "Number of task groups known by scheduler",
            self.core.n_groups() as f64,
        ));
        f.push(per_prefix(
            "dask_scheduler_tasks_compute_seconds_total",
            "Total amount of compute time spent in each prefix",
            Counter,
            &|p| p.compute_us as f64 / 1e6,
        ));
        f.push(per_prefix(
            "dask_scheduler_tasks_transfer_seconds_total",
            "Total amount of transfer time spent in each prefix",
            Counter,
            &|p| p.transfer_us as f64 / 1e6,
        ));
        f.push(per_prefix(
            "dask_scheduler_tasks_output_bytes",
            "Current number of bytes in memory (without duplicates) for each prefix",
            Gauge,
            &|p| p.nbytes_total as f64,
        ));
        let mut totals = Family::new(
            "dask_scheduler_prefix_state_totals_total",
            Counter,
            "Accumulated count of task prefix in each state",
        );
        for p in prefixes.iter() {
            for s in STATES {
                let n = p.state_counts[state_index(s)];
                if n > 0 {
                    totals.push(
                        vec![
                            ("state", s.as_str().into()),
                            ("task_prefix_name", p.name.to_string()),
                        ],
                        n as f64,
                    );
                }
            }
        }
        f.push(totals);
        let turns = &mut self.monitor.turns;
        f.push(Family::single(
            "dask_scheduler_tick_duration_maximum_seconds",
            Gauge,
            "Maximum tick duration observed since Prometheus last scraped metrics",
            std::mem::take(&mut turns.max_since_scrape),
        ));
        f.push(Family::single(
            "dask_scheduler_tick_count_total",
            Counter,
            "Total number of ticks observed since the server started",
            turns.count as f64,
        ));
        f.extend(self.semaphore_families());
        f.extend(self.stealing_families());
        f.extend(self.rask_families());
        f.extend(process_families());
        f
    }

    /// `SemaphoreMetricCollector`.
    fn semaphore_families(&self) -> Vec<Family> {
        let sems = self.ext.coordination.semaphore_metrics();
        let mut fams = [
            Family::new(
                "dask_semaphore_max_leases",
                Kind::Gauge,
                "Maximum leases allowed per semaphore\nNote: This will be constant for each \
                 semaphore during its lifetime.",
            ),
            Family::new(
                "dask_semaphore_active_leases",
                Kind::Gauge,
                "Amount of currently active leases per semaphore",
            ),
            Family::new(
                "dask_semaphore_pending_leases",
                Kind::Gauge,
                "Amount of currently pending leases per semaphore",
            ),
            Family::new(
                "dask_semaphore_acquire_total",
                Kind::Counter,
                "Total number of leases acquired per semaphore",
            ),
            Family::new(
                "dask_semaphore_release_total",
                Kind::Counter,
                "Total number of leases released per semaphore\nNote: If a semaphore is \
                 closed while there are still leases active, this count will not equal \
                 `semaphore_acquire_total` after execution.",
            ),
            Family::new(
                "dask_semaphore_average_pending_lease_time_s",
                Kind::Gauge,
                "Exponential moving average of the time it took to acquire a lease per \
                 semaphore\nNote: This only includes time spent on scheduler side, it does \
                 not include time spent on communication.\nNote: This average is calculated \
                 based on order of leases instead of time of lease acquisition.",
            ),
        ];
        for s in sems {
            let values = [
                s.max_leases as f64,
                s.active as f64,
                s.pending as f64,
                s.acquire_total as f64,
                s.release_total as f64,
                s.average_pending,
            ];
            for (fam, v) in fams.iter_mut().zip(values) {
                fam.push(vec![("name", s.name.clone())], v);
            }
        }
        fams.into()
    }

    /// `WorkStealingMetricCollector` (only while stealing is on, as the extension).
    fn stealing_families(&self) -> Vec<Family> {
        if !self.config.work_stealing {
            return Vec::new();
        }
        let m = self.core.steal_metrics();
        let mut count = Family::new(
            "dask_stealing_request_count_total",
            Kind::Counter,
            "Total number of stealing requests per cost multiplier.",
        );
        let mut cost = Family::new(
            "dask_stealing_request_cost_total",
            Kind::Counter,
            "Total cost of stealing requests per cost multiplier.",
        );
        for (level, label) in COST_MULTIPLIERS.iter().enumerate() {
            count.push(
                vec![("cost_multiplier", (*label).into())],
                m.count[level] as f64,
            );
            cost.push(vec![("cost_multiplier", (*label).into())], m.cost[level]);
        }
        vec![count, cost]
    }

    /// rask's own: the state task's turns, messages, and the graph helpers.
    fn rask_families(&self) -> Vec<Family> {
        let t = &self.monitor.turns;
        let mut f = vec![
            t.durations.family(
                "rask_state_task_turn_seconds",
                "Time the state task spent on one event (a message, an RPC, a job's result, \
                 a timer): what every other peer waits for meanwhile",
            ),
            Family::single(
                "rask_state_task_busy_seconds_total",
                Kind::Counter,
                "Time the state task spent handling events",
                t.busy,
            ),
            Family::single(
                "rask_messages_total",
                Kind::Counter,
                "Messages from clients and workers (stream messages and RPCs) the state task \
                 handled",
                t.messages as f64,
            ),
            Family::single(
                "rask_graphs_total",
                Kind::Counter,
                "Graphs the graph helpers materialized",
                HELPERS.graphs.load(Ordering::Relaxed) as f64,
            ),
            Family::single(
                "rask_graph_helpers",
                Kind::Gauge,
                "Graph helper processes running",
                HELPERS.alive.load(Ordering::Relaxed) as f64,
            ),
            Family::single(
                "rask_graph_helpers_busy",
                Kind::Gauge,
                "Graph helpers working on a request",
                HELPERS.busy.load(Ordering::Relaxed) as f64,
            ),
        ];
        let mut stages = Family::new(
            "rask_graph_helper_seconds_total",
            Kind::Counter,
            "Time graph helpers spent per stage (round_trip: the whole request as the \
             scheduler saw it)",
        );
        for (name, s) in HELPER_STAGES.iter().zip(HELPERS.stage_seconds()) {
            stages.push(vec![("stage", (*name).into())], s);
        }
        f.push(stages);
        f
    }

    /// `/json/counts.json` (json.py `CountsJSON`).
    fn counts(&self) -> serde_json::Value {
        let (mut erred, mut released, mut waiting, mut waiting_data) = (0, 0, 0, 0);
        for (_, ts) in self.core.tasks() {
            if ts.exception_blame.is_some() {
                erred += 1;
            } else if ts.state == TaskStatus::Released {
                released += 1;
            }
            if !ts.waiting_on.is_empty() {
                waiting += 1;
            }
            if !ts.waiters.is_empty() {
                waiting_data += 1;
            }
        }
        let (mut nthreads, mut memory, mut nbytes, mut processing) = (0u64, 0, 0i64, 0);
        let mut hosts = rustc_hash::FxHashSet::default();
        for (_, ws) in self.core.workers() {
            nthreads += u64::from(ws.nthreads);
            memory += ws.has_what.len();
            nbytes += ws.nbytes;
            processing += ws.processing.len();
            hosts.insert(ws.host.clone());
        }
        let (idle, saturated) = self.idle_saturated();
        json!({
            "bytes": nbytes,
            "clients": self.clients.len(),
            "cores": nthreads,
            "erred": erred,
            "hosts": hosts.len(),
            "idle": idle,
            "memory": memory,
            "processing": processing,
            "released": released,
            "saturated": saturated,
            "tasks": self.core.n_tasks(),
            "unrunnable": self.core.unrunnable_len(),
            "waiting": waiting,
            "waiting_data": waiting_data,
            "workers": self.core.workers().count(),
            "desired_workers": self.adaptive_target(super::cluster::DEFAULT_TARGET_DURATION),
        })
    }
}

/// `process_*` of `prometheus_client`'s process collector, for the rask process (Linux:
/// read from /proc; elsewhere none).
fn process_families() -> Vec<Family> {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Vec::new();
    };
    // the fields after the command name, which may hold spaces, in parentheses
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return Vec::new();
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // `man proc`: utime 14, stime 15, starttime 22, vsize 23, rss 24 (1-based, counting
    // pid and comm); here 0 is field 3
    let ticks = 100.0; // USER_HZ, 100 on every Linux platform
    let page = 4096.0;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("btime ")
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
        })
        .unwrap_or(0.0);
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as f64;
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(3)
                        .and_then(|v| v.parse::<f64>().ok())
                })
        })
        .unwrap_or(0.0);
    vec![
        Family::single(
            "process_virtual_memory_bytes",
            Kind::Gauge,
            "Virtual memory size in bytes.",
            field(20),
        ),
        Family::single(
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes.",
            field(21) * page,
        ),
        Family::single(
            "process_start_time_seconds",
            Kind::Gauge,
            "Start time of the process since unix epoch in seconds.",
            boot + field(19) / ticks,
        ),
        Family::single(
            "process_cpu_seconds_total",
            Kind::Counter,
            "Total user and system CPU time spent in seconds.",
            (field(11) + field(12)) / ticks,
        ),
        Family::single(
            "process_open_fds",
            Kind::Gauge,
            "Number of open file descriptors.",
            open_fds,
        ),
        Family::single(
            "process_max_fds",
            Kind::Gauge,
            "Maximum number of open file descriptors.",
            max_fds,
        ),
    ]
}

/// Task-stream records a dashboard gets at most per update (the latest): the page keeps
/// at most 20,000 rectangles over its 20 s window, 500 per update at two updates a second,
/// so more would only cost the state task time.
const MAX_RECTS: usize = 1_000;

impl Scheduler {
    /// The dashboard's picture (see `crates/server/assets/dashboard/`): counters, task
    /// prefixes, workers, and the task stream from index `since` on.
    fn dashboard(&mut self, now: f64, since: Option<i64>) -> serde_json::Value {
        let prefixes = self.core.prefixes();
        let mut by_state = [0i64; 8];
        let completed: u64 = prefixes
            .iter()
            .map(|p| {
                p.state_counts[state_index(TaskStatus::Memory)]
                    + p.state_counts[state_index(TaskStatus::Erred)]
            })
            .sum();
        let mut rows: Vec<serde_json::Value> = prefixes
            .iter()
            // a prefix whose groups were all forgotten has nothing to show
            .filter(|p| p.states.iter().any(|n| *n != 0))
            .map(|p| {
                let mut row = serde_json::Map::new();
                row.insert("name".into(), json!(&*p.name));
                for s in STATES {
                    let n = p.states[state_index(s)];
                    by_state[state_index(s)] += n;
                    row.insert(s.as_str().into(), json!(n));
                }
                row.insert("nbytes".into(), json!(p.nbytes_total));
                serde_json::Value::Object(row)
            })
            .collect();
        rows.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let n = |s: TaskStatus| by_state[state_index(s)];
        let mut bytes = 0i64;
        let mut threads = 0u64;
        let workers: Vec<serde_json::Value> = self
            .workers_in_order()
            .into_iter()
            .map(|(id, ws)| {
                bytes += ws.nbytes;
                threads += u64::from(ws.nthreads);
                let metrics = self.workers.get(&id).map(|i| &i.metrics);
                let metric = |k: &str| {
                    metrics
                        .and_then(|m| m.get(k))
                        .and_then(rask_protocol::Value::as_f64)
                        .unwrap_or(0.0)
                };
                json!({
                    "address": &*ws.address,
                    "name": &*ws.name,
                    "nthreads": ws.nthreads,
                    "status": ws.status.as_str(),
                    "memory": metric("memory"),
                    "memory_limit": ws.memory_limit,
                    "cpu": metric("cpu"),
                    "processing": ws.processing.len(),
                    "stored": ws.has_what.len(),
                    "nbytes": ws.nbytes,
                })
            })
            .collect();
        let (rate, since_t, since_n) = self.monitor.rate;
        let rate = if now - since_t >= RATE_WINDOW {
            let r = if since_t > 0.0 {
                completed.saturating_sub(since_n) as f64 / (now - since_t)
            } else {
                0.0
            };
            self.monitor.rate = (r, now, completed);
            r
        } else {
            rate
        };
        let counters = json!({
            "workers": workers.len(),
            "threads": threads,
            "clients": self.n_clients(),
            "tasks": self.core.n_tasks(),
            "processing": n(TaskStatus::Processing),
            "queued": n(TaskStatus::Queued),
            "no_worker": n(TaskStatus::NoWorker),
            "memory_tasks": n(TaskStatus::Memory),
            "erred": n(TaskStatus::Erred),
            "bytes": bytes,
            "completed": completed,
            "tasks_per_second": rate,
            "helpers_busy": HELPERS.busy.load(Ordering::Relaxed),
            "helpers": HELPERS.alive.load(Ordering::Relaxed),
            "transitions": self.core.transition_counter(),
        });
        let (mut index, mut rects) = (0, Vec::new());
        if let Some(since) = since {
            let (i, records) = self.diag.stream_since(since, MAX_RECTS);
            index = i;
            for r in records {
                rects_of(r, &self.core, &mut rects);
            }
            // the stream records finished tasks from now on
            self.core.set_report_done(true);
        }
        json!({
            "time": now,
            "address": self.identity.address,
            "counters": counters,
            "prefixes": rows,
            "workers": workers,
            "stream": {"index": index, "rects": rects},
        })
    }

    /// A task's record for its info page.
    fn task_info(&self, key: &str) -> Option<serde_json::Value> {
        // a string key is found by its index; other keys (tuples, numbers) by their text
        let ts = match self.core.task(&rask_protocol::Key::str(key)) {
            Some(ts) => ts,
            None => {
                self.core
                    .tasks()
                    .find(|(_, t)| crate::translate::coordination::stringify(&t.key) == key)?
                    .1
            }
        };
        let names = |ids: &mut dyn Iterator<Item = &rask_core::TaskId>| -> Vec<String> {
            ids.filter_map(|id| self.core.task_by_id(*id))
                .map(|t| crate::translate::coordination::stringify(&t.key))
                .collect()
        };
        let addr = |w: &rask_core::WorkerId| self.core.worker(*w).map(|w| w.address.to_string());
        Some(json!({
            "key": key,
            "prefix": &*ts.prefix,
            "group": &*ts.group,
            "state": ts.state.as_str(),
            "priority": ts.priority,
            "nbytes": ts.nbytes,
            "dependencies": names(&mut ts.dependencies.iter()),
            "dependents": names(&mut ts.dependents.iter()),
            "who_has": ts.who_has.iter().filter_map(addr).collect::<Vec<_>>(),
            "processing_on": ts.processing_on.as_ref().and_then(addr),
            "retries": ts.retries,
            "suspicious": ts.suspicious,
        }))
    }
}

/// The dashboard's rectangles of one task-stream record: one per `startstops` entry.
fn rects_of(
    r: &rask_protocol::Value,
    core: &rask_core::SchedulerState,
    out: &mut Vec<serde_json::Value>,
) {
    use rask_protocol::{Key, Value};
    let key = r.get("key").map(crate::http::to_json).unwrap_or_default();
    let key_text = match &key {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let prefix = Key::from_value(r.get("key").unwrap_or(&Value::Nil))
        .and_then(|k| core.task(&k).map(|t| t.prefix.to_string()))
        .unwrap_or_else(|| key_text.split('-').next().unwrap_or("").to_string());
    let worker = r.get("worker").and_then(Value::as_str).unwrap_or("");
    let thread = r.get("thread").and_then(Value::as_i64).unwrap_or(0);
    let erred = r.get("status").and_then(Value::as_str) == Some("error");
    for s in r
        .get("startstops")
        .and_then(Value::as_array)
        .unwrap_or_default()
    {
        let f = |k: &str| s.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        out.push(json!({
            "worker": worker,
            "thread": thread,
            "key": key_text,
            "prefix": prefix,
            "action": s.get("action").and_then(Value::as_str).unwrap_or("compute"),
            "start": f("start"),
            "stop": f("stop"),
            "erred": erred,
        }));
    }
}
