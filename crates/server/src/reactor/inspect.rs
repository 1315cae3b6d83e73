//! Looking inside the cluster: the scheduler's log lines, the workers' logs, profiles and
//! call stacks, hardware benchmarks, state dumps and proxied requests. What waits on
//! workers is a job ([`Ask`]) whose answer goes to the client as it is; the state task only
//! decides whom to ask and, for a dump, writes down its own state.

use super::Scheduler;
use crate::error::RequestError;
use crate::event::{Job, Replier};
use crate::messages::inspect::{Ask, Profile, Rpc};
use crate::messages::{Broadcast, OnError};
use crate::outbox::Outbox;
use crate::translate::inspect::{request, to_plain, write_cluster_dump};
use rask_comm::reply::raised;
use rask_core::{TaskId, TaskStatus, WorkerId};
use rask_protocol::{Key, Value};
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;

impl Scheduler {
    /// Serves one inspection RPC.
    pub(super) fn inspect(&mut self, request: Rpc, to: Replier, out: &mut dyn Outbox) {
        let answer = match request {
            // node.py:104: the lines the `DequeHandler` kept, here the tracing layer's.
            Rpc::Logs {
                start,
                n,
                timestamps,
            } => Ok(crate::logs::recent().get_logs(start, n, timestamps)),
            // scheduler.py:8572: `get_logs` broadcast, errors raised.
            Rpc::WorkerLogs { n, workers, nanny } => {
                let msg = request_with_close("get_logs", [("n", n)]);
                return self.broadcast(
                    Broadcast {
                        msg,
                        workers,
                        hosts: None,
                        nanny,
                        on_error: OnError::Raise,
                    },
                    to,
                    out,
                );
            }
            Rpc::Profile(p) => return self.profile(*p, to, out),
            Rpc::CallStack { keys } => return self.call_stack(keys, to, out),
            Rpc::BenchmarkHardware => {
                let mut workers = self.worker_addresses();
                shuffle(&mut workers);
                return out.start(Job::Inspect {
                    ask: Ask::Benchmark { workers },
                    reply: to,
                });
            }
            Rpc::ClusterState { exclude } => {
                let ask = self.cluster_state(&exclude, None);
                return out.start(Job::Inspect { ask, reply: to });
            }
            // scheduler.py:4364: `cluster_dump.write_state` of `get_cluster_state`, run in
            // a graph helper (the Python with fsspec).
            Rpc::DumpToUrl {
                url,
                exclude,
                format,
                storage_options,
            } => {
                let write = write_cluster_dump(&url, format, storage_options);
                let ask = self.cluster_state(&exclude, Some(write));
                return out.start(Job::Inspect { ask, reply: to });
            }
            Rpc::DumpState { exclude } => Ok(self.state_dict(&exclude)),
            // scheduler.py:6723: `broadcast(msg, workers=[worker])[worker]`; the stock
            // broadcast dials the address it is given, known worker or not.
            Rpc::Proxy { msg, worker } => {
                return out.start(Job::Inspect {
                    ask: Ask::Proxy { worker, msg },
                    reply: to,
                })
            }
        };
        out.reply(to, answer);
    }

    /// `get_cluster_state` (scheduler.py:4327): the scheduler's part now, the workers' by
    /// the job.
    fn cluster_state(&self, exclude: &[Arc<str>], write: Option<Value>) -> Ask {
        Ask::ClusterState {
            workers: self.worker_addresses(),
            exclude: Value::Array(exclude.iter().map(|e| Value::Str(e.clone())).collect()),
            scheduler: self.state_dict(exclude),
            versions: self.identity.versions.clone(),
            write,
        }
    }

    /// Every worker's address, sorted.
    fn worker_addresses(&self) -> Vec<Arc<str>> {
        let mut ws: Vec<Arc<str>> = self
            .core
            .workers()
            .map(|(_, w)| w.address.clone())
            .collect();
        ws.sort();
        ws
    }

    /// `get_profile` (scheduler.py:8331): `profile` on the given workers (that exist), or
    /// all.
    fn profile(&mut self, p: Profile, to: Replier, out: &mut dyn Outbox) {
        if p.scheduler {
            return out.reply(
                to,
                Err(RequestError::NotSupported {
                    op: "profile",
                    reason: "profile(scheduler=True) samples the stock scheduler's Python \
                             event loop; rask's scheduler runs no Python to profile (the \
                             workers' profiles are served)",
                }),
            );
        }
        let workers: Vec<Arc<str>> = self
            .worker_addresses()
            .into_iter()
            .filter(|w| p.workers.as_ref().is_none_or(|o| o.contains(w)))
            .collect();
        let msg = request(
            "profile",
            [
                ("start", p.start),
                ("stop", p.stop),
                ("key", p.key),
                ("server", Value::Bool(p.server)),
            ],
        );
        out.start(Job::Inspect {
            ask: Ask::Profile {
                workers,
                msg,
                merge: p.merge_workers,
            },
            reply: to,
        });
    }

    /// `get_call_stack` (scheduler.py:7902): with keys, the workers processing them or,
    /// for a waiting key, its dependencies (transitively), each asked about its keys;
    /// without, every worker about everything.
    fn call_stack(&mut self, keys: Option<Vec<Key>>, to: Replier, out: &mut dyn Outbox) {
        let targets: Vec<(Arc<str>, Value)> = match keys {
            None => self
                .worker_addresses()
                .into_iter()
                .map(|w| (w, request("call_stack", [("keys", Value::Nil)])))
                .collect(),
            Some(keys) => {
                let mut stack = Vec::with_capacity(keys.len());
                for k in &keys {
                    match self.core.task_id(k) {
                        Some(id) => stack.push(id),
                        // `self.tasks[key]`
                        None => return out.reply(to, Ok(raised("KeyError", &k.to_string()))),
                    }
                }
                let mut seen: FxHashSet<TaskId> = FxHashSet::default();
                let mut per_worker: FxHashMap<WorkerId, Vec<Value>> = FxHashMap::default();
                while let Some(id) = stack.pop() {
                    if !seen.insert(id) {
                        continue;
                    }
                    let Some(t) = self.core.task_by_id(id) else {
                        continue;
                    };
                    match t.state {
                        TaskStatus::Waiting => stack.extend(t.dependencies.iter().copied()),
                        TaskStatus::Processing => {
                            if let Some(w) = t.processing_on {
                                per_worker.entry(w).or_default().push(t.key.to_value());
                            }
                        }
                        _ => {}
                    }
                }
                let mut targets: Vec<(Arc<str>, Value)> = per_worker
                    .into_iter()
                    .filter_map(|(w, ks)| {
                        let address = self.core.worker(w)?.address.clone();
                        Some((address, request("call_stack", [("keys", Value::Array(ks))])))
                    })
                    .collect();
                targets.sort_by(|a, b| a.0.cmp(&b.0));
                targets
            }
        };
        if targets.is_empty() {
            return out.reply(to, Ok(Value::Map(Vec::new())));
        }
        out.start(Job::Inspect {
            ask: Ask::CallStack { targets },
            reply: to,
        });
    }

    /// The scheduler's part of a cluster dump (`Scheduler._to_dict`, scheduler.py:4300,
    /// over `Server._to_dict`, core.py:656), with the stock top-level keys where rask has
    /// the data: `type`, `id`, `address`, `status`, `tasks`, `task_groups`, `workers`,
    /// `clients`, `events`. Tasks, workers and clients are dicts of their stock attribute
    /// names; a task, worker or client named inside another is its stock `repr`, as
    /// `_to_dict_no_nest` writes it.
    ///
    /// Not there, because rask does not have them: `thread_id` (no Python thread),
    /// `transition_log` and `transition_counter` (the core keeps no transition log),
    /// `memory` (the stock `MemoryState` of process readings; the workers' own readings
    /// are in their `metrics`), `extensions` (Python objects); per task, `exception` and
    /// `traceback` (pickles rask does not unpickle; `exception_blame` is there) and
    /// `run_spec` is a size, not the object; task-group durations and types.
    /// `exclude` drops attributes of those names at every level, as stock does.
    pub(super) fn state_dict(&self, exclude: &[Arc<str>]) -> Value {
        let keep = |name: &str| !exclude.iter().any(|e| &**e == name);
        let fields = |entries: Vec<(&'static str, Value)>| {
            Value::Map(
                entries
                    .into_iter()
                    .filter(|(k, _)| keep(k))
                    .map(|(k, v)| (Value::from(k), v))
                    .collect(),
            )
        };
        let task_repr = |id: &TaskId| -> Value {
            self.core.task_by_id(*id).map_or(Value::Nil, |t| {
                Value::from(format!("<TaskState {} {}>", t.key, t.state.as_str()))
            })
        };
        let tasks_repr = |ids: &mut dyn Iterator<Item = &TaskId>| -> Value {
            Value::Array(ids.map(task_repr).collect())
        };
        let worker_repr = |id: &WorkerId| -> Value {
            self.core.worker(*id).map_or(Value::Nil, |w| {
                let name = if *w.name == *w.address {
                    String::new()
                } else {
                    format!(", name: {}", w.name)
                };
                Value::from(format!(
                    "<WorkerState '{}'{name}, status: {}, memory: {}, processing: {}>",
                    w.address,
                    w.status.as_str(),
                    w.has_what.len(),
                    w.processing.len()
                ))
            })
        };
        let client_repr = |id: &rask_core::ClientId| -> Value {
            self.core.client(*id).map_or(Value::Nil, |c| {
                Value::from(format!("<Client '{}'>", c.name))
            })
        };
        let strs = |s: &FxHashSet<Arc<str>>| {
            let mut v: Vec<&Arc<str>> = s.iter().collect();
            v.sort();
            Value::Array(v.into_iter().map(|a| Value::Str(a.clone())).collect())
        };
        let resources = |r: &[(Arc<str>, f64)]| {
            Value::Map(
                r.iter()
                    .map(|(n, a)| (Value::Str(n.clone()), Value::Float(*a)))
                    .collect(),
            )
        };

        let mut tasks = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut group_index: FxHashMap<Arc<str>, usize> = FxHashMap::default();
        for (_, t) in self.core.tasks() {
            let gi = *group_index.entry(t.group.clone()).or_insert_with(|| {
                groups.push((t.group.clone(), t.prefix.clone(), FxHashMap::default(), 0));
                groups.len() - 1
            });
            *groups[gi].2.entry(t.state.as_str()).or_default() += 1;
            if t.state == TaskStatus::Memory {
                groups[gi].3 += t.nbytes;
            }
            let entry = fields(vec![
                ("key", t.key.to_value()),
                ("state", Value::from(t.state.as_str())),
                ("prefix", Value::Str(t.prefix.clone())),
                ("group", Value::Str(t.group.clone())),
                (
                    "run_spec",
                    t.run_spec.as_ref().map_or(Value::Nil, |b| {
                        Value::from(format!("<pickled run_spec: {} bytes>", b.len()))
                    }),
                ),
                (
                    "priority",
                    Value::Array(t.priority.iter().map(|p| Value::Int(*p)).collect()),
                ),
                ("dependencies", tasks_repr(&mut t.dependencies.iter())),
                ("dependents", tasks_repr(&mut t.dependents.iter())),
                ("waiting_on", tasks_repr(&mut t.waiting_on.iter())),
                ("waiters", tasks_repr(&mut t.waiters.iter())),
                (
                    "who_wants",
                    Value::Array(t.who_wants.iter().map(client_repr).collect()),
                ),
                (
                    "who_has",
                    Value::Array(t.who_has.iter().map(worker_repr).collect()),
                ),
                (
                    "processing_on",
                    t.processing_on.as_ref().map_or(Value::Nil, worker_repr),
                ),
                ("run_id", t.run_id.map_or(Value::Nil, Value::from)),
                ("nbytes", Value::Int(t.nbytes)),
                (
                    "exception_blame",
                    t.exception_blame.as_ref().map_or(Value::Nil, task_repr),
                ),
                (
                    "erred_on",
                    Value::Array(t.rare().erred_on.iter().map(worker_repr).collect()),
                ),
                ("retries", Value::from(u64::from(t.retries))),
                ("suspicious", Value::from(u64::from(t.suspicious))),
                (
                    "has_lost_dependencies",
                    Value::Bool(t.has_lost_dependencies),
                ),
                ("annotations", to_plain(&t.rare().annotations)),
                ("worker_restrictions", strs(&t.rare().worker_restrictions)),
                ("host_restrictions", strs(&t.rare().host_restrictions)),
                ("loose_restrictions", Value::Bool(t.loose_restrictions)),
                (
                    "resource_restrictions",
                    resources(&t.rare().resource_restrictions),
                ),
                ("actor", Value::Bool(false)),
            ]);
            tasks.push((t.key.to_value(), entry));
        }
        let task_groups = groups
            .into_iter()
            .map(|(name, prefix, states, nbytes)| {
                let mut states: Vec<(&'static str, i64)> = states.into_iter().collect();
                states.sort();
                let entry = fields(vec![
                    ("name", Value::Str(name.clone())),
                    ("prefix", Value::Str(prefix)),
                    (
                        "states",
                        Value::Map(
                            states
                                .into_iter()
                                .map(|(s, n)| (Value::from(s), Value::Int(n)))
                                .collect(),
                        ),
                    ),
                    ("nbytes_total", Value::Int(nbytes)),
                ]);
                (Value::Str(name), entry)
            })
            .collect();

        let mut worker_ids: Vec<(Arc<str>, WorkerId)> = self
            .core
            .workers()
            .map(|(id, w)| (w.address.clone(), id))
            .collect();
        worker_ids.sort();
        let workers = worker_ids
            .into_iter()
            .filter_map(|(address, id)| {
                let w = self.core.worker(id)?;
                let info = self.workers.get(&id)?;
                let r = &info.registration;
                let entry = fields(vec![
                    ("address", Value::Str(w.address.clone())),
                    ("name", to_plain(&r.name_value)),
                    ("host", Value::Str(w.host.clone())),
                    ("nthreads", Value::from(u64::from(w.nthreads))),
                    ("memory_limit", Value::from(w.memory_limit)),
                    ("resources", to_plain(&r.resources_value)),
                    ("status", Value::from(w.status.as_str())),
                    ("processing", tasks_repr(&mut w.processing.iter())),
                    ("long_running", Value::from(w.long_running)),
                    ("has_what", tasks_repr(&mut w.has_what.iter())),
                    ("nbytes", Value::Int(w.nbytes)),
                    ("occupancy", Value::Float(w.occupancy)),
                    ("local_directory", to_plain(&r.local_directory)),
                    ("services", to_plain(&r.services)),
                    ("nanny", to_plain(&r.nanny)),
                    ("metrics", to_plain(&info.metrics)),
                    ("last_seen", Value::Float(info.last_seen)),
                ]);
                Some((Value::Str(address), entry))
            })
            .collect();

        let mut client_names: Vec<(&Arc<str>, &rask_core::ClientId)> =
            self.client_ids.iter().collect();
        client_names.sort();
        let clients = client_names
            .into_iter()
            .filter_map(|(name, id)| {
                let c = self.core.client(*id)?;
                let entry = fields(vec![
                    ("client_key", Value::Str(name.clone())),
                    ("wants_what", tasks_repr(&mut c.wants_what.iter())),
                ]);
                Some((Value::Str(name.clone()), entry))
            })
            .collect();

        fields(vec![
            ("type", Value::from("Scheduler")),
            ("id", Value::from(self.id.as_str())),
            ("address", Value::from(self.identity.address.as_str())),
            ("status", Value::from("running")),
            ("tasks", Value::Map(tasks)),
            ("task_groups", Value::Map(task_groups)),
            ("workers", Value::Map(workers)),
            ("clients", Value::Map(clients)),
            ("events", to_plain(&self.ext.events.all_events())),
        ])
    }
}

/// A task group in a dump: name, prefix, tasks per state, bytes in memory.
type Group = (Arc<str>, Arc<str>, FxHashMap<&'static str, i64>, i64);

/// A request as `broadcast` sends it (`reply` and `close` set).
fn request_with_close(op: &str, fields: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    let mut m = request(op, fields);
    m.set("close", Value::Bool(false));
    m
}

/// `random.shuffle` (scheduler.py:7968): workers started together on one host tend to be
/// neighbours in the list, so pairs are drawn at random to even out the network means.
fn shuffle(v: &mut [Arc<str>]) {
    for i in (1..v.len()).rev() {
        let r = uuid::Uuid::new_v4().as_u128();
        let j = (r % (i as u128 + 1)) as usize;
        v.swap(i, j);
    }
}
