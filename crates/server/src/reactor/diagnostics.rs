//! Diagnostics: the task stream (`TaskStreamPlugin`, `diagnostics/task_stream.py`), task
//! prefix states, stories (the core's transition log), task metadata collectors
//! (`CollectTaskMetaDataPlugin`, scheduler.py:9351), the memory sampler
//! (`MemorySamplerExtension`, `diagnostics/memory_sampler.py`) and the two requests of
//! `recreate_error_locally` (`ReplayTaskScheduler`, `recreate_tasks.py`).
//!
//! The task stream and the collectors need to know when a task reaches memory or erred,
//! which the core reports (`Command::Done`) only while one of them runs, as Dask's plugins
//! only see transitions once added. As in Dask, the task stream starts on the first
//! `get_task_stream`/`get_task_stream_index` (`Scheduler._task_stream_plugin`) and then
//! keeps recording.

use super::Scheduler;
use crate::event::{Replier, Timer};
use crate::messages::diagnostics::{Bound, DoneRecord, Rpc, TaskDone};
use crate::outbox::Outbox;
use crate::translate::diagnostics as reply;
use crate::translate::worker::done_record;
use rask_core::{TaskStatus, WorkerId};
use rask_protocol::{Key, Value};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// The task stream: one record per task a worker finished or failed, oldest first.
struct TaskStream {
    /// `(max(startstop["stop"]), record)`
    records: VecDeque<(f64, Value)>,
    /// records appended so far (`TaskStreamPlugin.index`)
    index: i64,
}

/// A `start_task_metadata` collector.
struct Collector {
    name: Option<Arc<str>>,
    /// requested keys of graphs submitted since it started, not yet done
    keys: FxHashSet<Key>,
    /// `{key: TaskState.metadata}`, in the order the keys were done
    metadata: Vec<(Key, Value)>,
    /// `{key: "memory" | "erred"}`
    state: Vec<(Key, TaskStatus)>,
    /// position of each key in `metadata`/`state`
    at: FxHashMap<Key, usize>,
}

/// A `memory_sampler_start` sampler.
struct Sampler {
    client: Arc<str>,
    measure: Measure,
    interval: Duration,
    samples: Vec<(f64, i64)>,
}

/// The `MemoryState` measures (scheduler.py:266) rask can compute from what workers report.
#[derive(Clone, Copy, Debug)]
enum Measure {
    Process,
    Managed,
    Spilled,
    ManagedTotal,
    Unmanaged,
    UnmanagedOld,
    UnmanagedRecent,
    Optimistic,
}

impl Measure {
    fn parse(name: &str) -> Result<Measure, Value> {
        Ok(match name {
            "process" => Measure::Process,
            "managed" => Measure::Managed,
            "spilled" => Measure::Spilled,
            "managed_total" => Measure::ManagedTotal,
            "unmanaged" => Measure::Unmanaged,
            "unmanaged_old" => Measure::UnmanagedOld,
            "unmanaged_recent" => Measure::UnmanagedRecent,
            "optimistic" => Measure::Optimistic,
            // `assert not measure.startswith("_")`
            _ if name.starts_with('_') => {
                return Err(rask_comm::reply::raised("AssertionError", ""));
            }
            _ => {
                return Err(rask_comm::reply::raised(
                    "AttributeError",
                    &format!("'MemoryState' object has no attribute '{name}'"),
                ));
            }
        })
    }
}

/// A worker's unmanaged memory over the last `recent-to-old-time`
/// (`WorkerState._memory_unmanaged_history` and `_memory_unmanaged_old`).
#[derive(Default)]
struct Unmanaged {
    history: VecDeque<(f64, i64)>,
    old: i64,
}

/// `metrics["memory"]` and `metrics["spilled_bytes"]["memory"|"disk"]` of a heartbeat.
fn memory_metrics(m: &Value) -> (i64, i64, i64) {
    let int = |v: Option<&Value>| v.and_then(Value::as_i64).unwrap_or(0);
    let sb = m.get("spilled_bytes");
    (
        int(m.get("memory")).max(0),
        int(sb.and_then(|s| s.get("memory"))),
        int(sb.and_then(|s| s.get("disk"))),
    )
}

/// The `task-finished`/`task-erred` being handled, for the records its `Done` makes.
struct Current {
    key: Key,
    worker: Option<Arc<str>>,
    record: Value,
    last_stop: f64,
    metadata: Option<Value>,
}

/// The diagnostics' state.
pub(super) struct Diagnostics {
    /// started on first request
    stream: Option<TaskStream>,
    /// records kept; `None`: no limit
    stream_length: Option<usize>,
    collectors: Vec<Collector>,
    samplers: FxHashMap<Arc<str>, Sampler>,
    current: Option<Current>,
    /// per worker, for the memory measures that tell old from recent unmanaged memory
    unmanaged: FxHashMap<WorkerId, Unmanaged>,
    /// `distributed.worker.memory.recent-to-old-time`, seconds
    recent_to_old: f64,
}

impl Diagnostics {
    /// Nothing running yet; the task stream will keep `stream_length` records.
    pub(super) fn new(stream_length: Option<usize>, recent_to_old: Duration) -> Self {
        Diagnostics {
            stream: None,
            stream_length,
            collectors: Vec::new(),
            samplers: FxHashMap::default(),
            current: None,
            unmanaged: FxHashMap::default(),
            recent_to_old: recent_to_old.as_secs_f64(),
        }
    }

    /// A worker's heartbeat: its unmanaged memory joins the history, and its old unmanaged
    /// memory is the least of the last `recent-to-old-time` (scheduler.py:4615-4641).
    pub(super) fn on_heartbeat(
        &mut self,
        worker: WorkerId,
        now: f64,
        metrics: &Value,
        nbytes: i64,
    ) {
        let u = self.unmanaged.entry(worker).or_default();
        let oldest_kept = now - self.recent_to_old;
        let mut old = u.old;
        while let Some(&(t, size)) = u.history.front() {
            if t >= oldest_kept {
                break;
            }
            u.history.pop_front();
            if size == old {
                old = 0; // recalculate the minimum
            }
        }
        let (process, spilled_memory, _) = memory_metrics(metrics);
        let size = (process - nbytes + spilled_memory).max(0);
        u.history.push_back((now, size));
        if old == 0 {
            u.old = u.history.iter().map(|(_, s)| *s).min().unwrap_or(0);
        } else if size < old {
            u.old = size;
        }
    }

    /// A worker left.
    pub(super) fn worker_removed(&mut self, worker: WorkerId) {
        self.unmanaged.remove(&worker);
    }
}

impl Diagnostics {
    /// Whether anything records finished tasks (the core's `Done` is needed).
    fn wants_done(&self) -> bool {
        self.stream.is_some() || !self.collectors.is_empty()
    }

    /// `_task_stream_plugin()`: the task stream, started if it was not.
    fn stream(&mut self) -> &mut TaskStream {
        self.stream.get_or_insert_with(|| TaskStream {
            records: VecDeque::new(),
            index: 0,
        })
    }

    /// A task reached memory or erred (the core's `Done`): the task stream records a worker's
    /// `task-finished`/`task-erred` of a processing task (`TaskStreamPlugin.transition`), and
    /// the collectors a requested key (`CollectTaskMetaDataPlugin.transition`).
    pub(super) fn on_done(&mut self, key: &Key, start: TaskStatus, finish: TaskStatus) {
        let current = self.current.as_ref().filter(|c| c.key == *key);
        if start == TaskStatus::Processing {
            if let (Some(c), Some(stream)) = (current, self.stream.as_mut()) {
                // `assert kwargs["startstops"]`: a report without timings is not recorded
                if c.last_stop.is_finite() {
                    if let Some(max) = self.stream_length {
                        while stream.records.len() >= max.max(1) {
                            stream.records.pop_front();
                        }
                    }
                    if self.stream_length != Some(0) {
                        let worker = c.worker.clone().unwrap_or_else(|| "".into());
                        let record = reply::stream_record(c.record.clone(), worker);
                        stream.records.push_back((c.last_stop, record));
                    }
                    stream.index += 1;
                }
            }
        }
        // `ts.metadata`: what the worker reported with the task's result (Dask merges the
        // reports of every run; rask keeps the one of the run that finished)
        let metadata = current
            .filter(|_| finish == TaskStatus::Memory)
            .and_then(|c| c.metadata.clone())
            .unwrap_or(Value::Nil);
        for col in &mut self.collectors {
            if !col.keys.remove(key) {
                continue;
            }
            match col.at.get(key) {
                Some(&i) => {
                    col.metadata[i].1 = metadata.clone();
                    col.state[i].1 = finish;
                }
                None => {
                    col.at.insert(key.clone(), col.metadata.len());
                    col.metadata.push((key.clone(), metadata.clone()));
                    col.state.push((key.clone(), finish));
                }
            }
        }
    }

    /// `CollectTaskMetaDataPlugin.update_graph`: the keys a graph asks for.
    pub(super) fn graph_keys(&mut self, keys: &[Key]) {
        for col in &mut self.collectors {
            col.keys.extend(keys.iter().cloned());
        }
    }

    /// The task stream's records from index `since` on, at most the last `max` of them, and
    /// the stream's index; starts the stream, as opening Dask's dashboard does.
    pub(super) fn stream_since(&mut self, since: i64, max: usize) -> (i64, Vec<&Value>) {
        let stream = self.stream();
        let len = stream.records.len() as i64;
        let first = stream.index - len; // the index of the oldest record kept
        let from = (since.max(first) - first)
            .max(len - max as i64)
            .clamp(0, len) as usize;
        let records = stream.records.range(from..).map(|(_, r)| r).collect();
        (stream.index, records)
    }

    /// `TaskStreamPlugin.collect` (task_stream.py:42).
    fn collect(
        &mut self,
        now: f64,
        start: Option<Bound>,
        stop: Option<Bound>,
        count: Option<i64>,
        start_index: Option<i64>,
    ) -> Value {
        let stream = self.stream();
        let len = stream.records.len() as i64;
        let take = |from: i64, to: i64| {
            let (from, to) = (from.clamp(0, len) as usize, to.clamp(0, len) as usize);
            Value::Array(
                (from..to.max(from))
                    .map(|i| stream.records[i].1.clone())
                    .collect(),
            )
        };
        if let Some(i) = start_index {
            let from = i.saturating_sub(stream.index - len).clamp(0, len);
            return take(from, len);
        }
        // the first record whose last stop is not before `target` (a bisection, as Dask's)
        let bisect = |target: f64| {
            let (mut left, mut right) = (0usize, stream.records.len());
            while left != right {
                let mid = (left + right) / 2;
                if stream.records[mid].0 < target {
                    left = mid + 1;
                } else {
                    right = mid;
                }
            }
            left as i64
        };
        let at = |b: Bound| match b {
            Bound::At(t) => t,
            Bound::Ago(d) => now - d,
        };
        let mut start = start.map(|b| bisect(at(b)));
        let mut stop = stop.map(|b| bisect(at(b)));
        if let Some(count) = count {
            match (start, stop) {
                (None, None) => {
                    stop = Some(len);
                    start = Some(len.saturating_sub(count));
                }
                (None, Some(s)) => start = Some(s.saturating_sub(count)),
                (Some(s), None) => stop = Some(s.saturating_add(count)),
                (Some(_), Some(_)) => {}
            }
        }
        let start = start.unwrap_or(0).max(0);
        let stop = stop.unwrap_or(len).min(len);
        take(start, stop)
    }
}

impl Scheduler {
    /// Serves one diagnostics RPC.
    pub(super) fn diagnostics_rpc(
        &mut self,
        now: f64,
        rpc: Rpc,
        to: Replier,
        out: &mut dyn Outbox,
    ) {
        let answer = match rpc {
            Rpc::GetTaskStream {
                start,
                stop,
                count,
                start_index,
            } => self.diag.collect(now, start, stop, count, start_index),
            Rpc::GetTaskStreamIndex => Value::Int(self.diag.stream().index),
            Rpc::GetTaskPrefixStates => self.prefix_states(),
            Rpc::GetStory { keys_or_stimuli } => {
                // `scheduler_story` (_stories.py:13) matches a transition's key and the keys
                // it recommended; stimulus ids are compared with those keys too.
                let wanted: FxHashSet<Key> = keys_or_stimuli.into_iter().collect();
                Value::Array(
                    self.core
                        .transition_log()
                        .filter(|t| {
                            wanted.contains(&t.key)
                                || t.recommendations.iter().any(|(k, _)| wanted.contains(k))
                        })
                        .map(reply::transition)
                        .collect(),
                )
            }
            Rpc::StartTaskMetadata { name } => {
                // `add_plugin` replaces a plugin of the same name
                self.diag.collectors.retain(|c| c.name != name);
                self.diag.collectors.push(Collector {
                    name,
                    keys: FxHashSet::default(),
                    metadata: Vec::new(),
                    state: Vec::new(),
                    at: FxHashMap::default(),
                });
                Value::Nil
            }
            Rpc::StopTaskMetadata { name } => {
                match self.diag.collectors.iter().position(|c| c.name == name) {
                    Some(i) => {
                        let c = self.diag.collectors.remove(i);
                        reply::task_metadata(c.metadata, c.state)
                    }
                    None => {
                        let name = name.as_deref().unwrap_or("None");
                        rask_comm::reply::raised(
                            "ValueError",
                            &format!(
                                "Expected to find exactly one CollectTaskMetaDataPlugin with \
                                 name {name} but found 0."
                            ),
                        )
                    }
                }
            }
            Rpc::GetErrorCause { keys } => keys
                .iter()
                .find_map(|k| {
                    let blame = self.core.task(k)?.exception_blame?;
                    self.core.task_by_id(blame).map(|t| t.key.to_value())
                })
                .unwrap_or(Value::Nil),
            Rpc::GetRunspec { key } => match self.core.task(&key) {
                Some(t) => reply::runspec(t.run_spec.clone()),
                None => rask_comm::reply::raised("KeyError", &key.to_string()),
            },
            Rpc::MemorySamplerStart {
                client,
                measure,
                interval,
            } => match Measure::parse(&measure) {
                Ok(measure) => {
                    let key: Arc<str> = uuid::Uuid::new_v4().to_string().into();
                    let interval = Duration::try_from_secs_f64(interval.max(0.001))
                        .unwrap_or(Duration::from_secs(1));
                    self.diag.samplers.insert(
                        key.clone(),
                        Sampler {
                            client,
                            measure,
                            interval,
                            samples: Vec::new(),
                        },
                    );
                    // the first sample now: there is always at least one
                    self.memory_sample(now, key.clone(), out);
                    Value::Str(key)
                }
                Err(e) => e,
            },
            Rpc::MemorySamplerStop { key } => match self.diag.samplers.remove(&key) {
                Some(s) => reply::memory_samples(&s.samples),
                None => rask_comm::reply::raised("KeyError", &format!("'{key}'")),
            },
        };
        self.core.set_report_done(self.diag.wants_done());
        out.reply(to, Ok(answer));
    }

    /// A worker's `task-finished`/`task-erred`: the stimulus, with its record at hand for
    /// the `Done` it causes.
    pub(super) fn task_done(
        &mut self,
        now: f64,
        worker: WorkerId,
        done: TaskDone,
        out: &mut dyn Outbox,
    ) {
        let TaskDone {
            stimulus,
            key,
            msg,
            type_,
        } = done;
        let host = self.host.active();
        let diag = self.diag.wants_done();
        if host || diag {
            let DoneRecord {
                record,
                last_stop,
                metadata,
            } = done_record(&stimulus, &key, msg, type_);
            let address = self.core.worker(worker).map(|w| w.address.clone());
            if host {
                let record = reply::stream_record(
                    record.clone(),
                    address.clone().unwrap_or_else(|| "".into()),
                );
                self.host.current = Some((key.clone(), record));
            }
            if diag {
                self.diag.current = Some(Current {
                    key,
                    worker: address,
                    record,
                    last_stop,
                    metadata,
                });
            }
        }
        self.stimulus(now, stimulus, out);
        self.diag.current = None;
        self.host.current = None;
    }

    /// `get_task_prefix_states` (scheduler.py:8053): per prefix, its tasks in memory, erred,
    /// released, processing and waiting, for prefixes with any.
    fn prefix_states(&self) -> Value {
        let mut order: Vec<Arc<str>> = Vec::new();
        let mut counts: FxHashMap<Arc<str>, [i64; 5]> = FxHashMap::default();
        for (_, t) in self.core.tasks() {
            let i = match t.state {
                TaskStatus::Memory => 0,
                TaskStatus::Erred => 1,
                TaskStatus::Released => 2,
                TaskStatus::Processing => 3,
                TaskStatus::Waiting => 4,
                _ => continue,
            };
            counts.entry(t.prefix.clone()).or_insert_with(|| {
                order.push(t.prefix.clone());
                [0; 5]
            })[i] += 1;
        }
        reply::prefix_states(
            order
                .into_iter()
                .map(|p| {
                    let c = counts.get(&p).copied().unwrap_or_default();
                    (p, c)
                })
                .collect(),
        )
    }

    /// One sample of a memory sampler, and the timer for the next; a sampler whose client
    /// left stops (`MemorySamplerExtension.start.sample`).
    pub(super) fn memory_sample(&mut self, now: f64, key: Arc<str>, out: &mut dyn Outbox) {
        let Some(s) = self.diag.samplers.get(&key) else {
            return;
        };
        if !self.client_ids.contains_key(&s.client) {
            self.diag.samplers.remove(&key);
            return;
        }
        let bytes = self.cluster_memory(s.measure);
        let Some(s) = self.diag.samplers.get_mut(&key) else {
            return;
        };
        s.samples.push((now, bytes));
        out.after(s.interval, Timer::MemorySample(key));
    }

    /// A measure of `Scheduler.memory` (the sum of every worker's `WorkerState.memory`,
    /// scheduler.py:587): process memory and spilled bytes from the latest heartbeat,
    /// managed memory from the results the scheduler knows the worker holds.
    fn cluster_memory(&self, measure: Measure) -> i64 {
        let (mut process, mut managed, mut spilled, mut unmanaged_old) = (0i64, 0i64, 0, 0);
        for (id, info) in &self.workers {
            let (p, spilled_memory, disk) = memory_metrics(&info.metrics);
            let nbytes = self.core.worker(*id).map_or(0, |w| w.nbytes);
            // `MemoryState.__init__`: the parts never exceed the whole
            let m = (nbytes - spilled_memory).max(0).min(p);
            let old = self.diag.unmanaged.get(id).map_or(0, |u| u.old);
            process += p;
            managed += m;
            spilled += disk;
            unmanaged_old += old.min(p - m);
        }
        match measure {
            Measure::Process => process,
            Measure::Managed => managed,
            Measure::Spilled => spilled,
            Measure::ManagedTotal => managed + spilled,
            Measure::Unmanaged => process - managed,
            Measure::UnmanagedOld => unmanaged_old,
            Measure::UnmanagedRecent => process - managed - unmanaged_old,
            Measure::Optimistic => managed + unmanaged_old,
        }
    }
}
