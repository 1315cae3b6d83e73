//! The RPCs the scheduler serves itself (`Scheduler.handlers`); the extensions' go to them.

use super::Scheduler;
use crate::error::{HelperError, RequestError};
use crate::event::{AfterHelper, Gathering, Job, Replier, Timer};
use crate::extensions::Extension;
use crate::messages::{Broadcast, Placement, Rpc, Scatter};
use crate::outbox::Outbox;
use crate::translate::{events, reply};
use rask_core::{ClientId, Stimulus, TaskStatus};
use rask_protocol::{Key, Value};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::Duration;

/// How often a `scatter` with no worker to go to looks again.
const SCATTER_POLL: Duration = Duration::from_millis(100);

/// Rounds of `gather` (a key a worker did not deliver is tried at its other holders).
const GATHER_ROUNDS: u32 = 3;

impl Scheduler {
    /// Serves one RPC.
    pub(super) fn rpc(&mut self, now: f64, request: Rpc, to: Replier, out: &mut dyn Outbox) {
        let answer = match request {
            Rpc::Identity { n_workers } => Ok(self.identity_value(n_workers)),
            Rpc::HeartbeatWorker { address, metrics } => {
                Ok(self.heartbeat_worker(now, &address, metrics))
            }
            Rpc::Gather { keys, serializers } => {
                return self.gather(now, keys, serializers, to, out)
            }
            Rpc::Scatter(s) => return self.scatter(now, *s, to, out),
            Rpc::UpdateData { placement, client } => {
                let client = self.client_named(client);
                self.update_data(now, client, placement, out);
                Ok(Value::Nil)
            }
            Rpc::Ncores {
                workers,
                running_only,
            } => Ok(self.ncores(workers, running_only)),
            Rpc::WhoHas { keys } => Ok(self.who_has(keys)),
            Rpc::HasWhat { workers } => self.keys_per_worker(workers, false),
            Rpc::Processing { workers } => self.keys_per_worker(workers, true),
            Rpc::Nbytes { keys, summary } => Ok(self.nbytes(keys, summary)),
            Rpc::GetTaskStatus { keys } => Ok(reply::by_key(
                keys.into_iter()
                    .map(|k| {
                        let st = self
                            .core
                            .task(&k)
                            .map_or(Value::Nil, |t| Value::from(t.state.as_str()));
                        (k, st)
                    })
                    .collect(),
            )),
            Rpc::Versions => Ok(self.identity.versions.clone()),
            Rpc::Unregister {
                address,
                close,
                expected,
            } => Ok(match self.core.worker_id(&address) {
                None => Value::from("already-removed"),
                Some(w) => {
                    if close {
                        let reason = super::admin::REMOVE_WORKER.into();
                        out.to_worker(w, rask_core::ToWorker::Close { reason }.into());
                    }
                    let sid = format!("unregister-{now}").into();
                    self.remove_worker(now, w, expected, sid, out);
                    Value::from("OK")
                }
            }),
            Rpc::Retry { keys } => Ok(reply::keys(&self.core.retry_plan(&keys).1)),
            Rpc::RunRetry { keys } => {
                let s = Stimulus::Retry {
                    keys,
                    stimulus_id: format!("retry-{now}").into(),
                };
                self.stimulus(now, s, out);
                Ok(Value::Nil)
            }
            Rpc::Broadcast(b) => return self.broadcast(*b, to, out),
            Rpc::Echo { data } => Ok(data),
            Rpc::Restart {
                timeout,
                wait_for_workers,
                stimulus_id,
            } => return self.restart(now, timeout, wait_for_workers, stimulus_id, to, out),
            Rpc::RestartWorkers {
                workers,
                timeout,
                raise,
                stimulus_id,
            } => {
                return self.restart_workers_rpc(now, workers, timeout, raise, stimulus_id, to, out)
            }
            Rpc::RetireWorkers {
                workers,
                names,
                n,
                close_workers,
                remove,
                stimulus_id,
            } => {
                return self.retire_workers(
                    now,
                    workers,
                    names,
                    n,
                    close_workers,
                    remove,
                    stimulus_id,
                    to,
                    out,
                )
            }
            Rpc::RunFunction { request, function } => {
                // scheduler.py:8022 logs every call, function pickle included.
                let event = reply::run_function_event(function);
                self.with_ext(now, out, |ext, cx| {
                    ext.events.publish(cx, &[Arc::from("all")], event)
                });
                out.start(Job::Helper {
                    request: request.clone(),
                    then: AfterHelper::RunFunction { request, reply: to },
                });
                return;
            }
            Rpc::FeedOpen { request, responses } => {
                return self.feed_open(request, responses, to, out)
            }
            Rpc::FeedClose { feed } => {
                self.feed_closed(feed, out);
                Ok(Value::Nil)
            }
            Rpc::PerformanceReport { request } => return self.performance_report(request, to, out),
            Rpc::RegisterSchedulerPlugin {
                plugin,
                name,
                idempotent,
            } => return self.register_scheduler_plugin(plugin, name, idempotent, to, out),
            Rpc::UnregisterSchedulerPlugin { name } => {
                return self.unregister_scheduler_plugin(name, to, out)
            }
            Rpc::Events(r) => {
                return self.with_ext(now, out, |ext, cx| ext.events.rpc(cx, r, to));
            }
            Rpc::Coordination(r) => {
                return self.with_ext(now, out, |ext, cx| ext.coordination.rpc(cx, r, to));
            }
            Rpc::Cluster(r) => return self.cluster_rpc(now, r, to, out),
            Rpc::Shuffle(r) => {
                return self.with_ext(now, out, |ext, cx| ext.shuffle.rpc(cx, r, to));
            }
            Rpc::Plugins(r) => return self.plugins_rpc(r, to, out),
            Rpc::Inspect(r) => return self.inspect(r, to, out),
            Rpc::Diagnostics(r) => return self.diagnostics_rpc(now, r, to, out),
        };
        out.reply(to, answer);
    }

    /// A client by name (`client=` of an RPC).
    fn client_named(&self, name: Option<Arc<str>>) -> Option<ClientId> {
        name.and_then(|c| self.client_ids.get(&c).copied())
    }

    /// `identity` (scheduler.py:4280-4298); `n_workers < 0` lists every worker.
    pub(super) fn identity_value(&self, n_workers: i64) -> Value {
        let mut ids: Vec<_> = self.workers.keys().copied().collect();
        ids.sort();
        let limit = usize::try_from(n_workers).unwrap_or(usize::MAX);
        let listed = ids
            .into_iter()
            .take(limit)
            .filter_map(|id| {
                let w = self.core.worker(id)?;
                Some((w.address.clone(), self.worker_identity(id)))
            })
            .collect();
        reply::identity(reply::SchedulerIdentity {
            id: &self.id,
            address: &self.identity.address,
            services: reply::services(self.identity.dashboard_port),
            started: self.started,
            n_workers: self.workers.len(),
            total_threads: self
                .workers
                .values()
                .map(|w| u64::from(w.registration.nthreads))
                .sum(),
            total_memory: self
                .workers
                .values()
                .map(|w| w.registration.memory_limit)
                .sum(),
            workers: listed,
        })
    }

    /// One worker's entry of `identity().workers` (Nil if it is gone).
    pub(super) fn worker_identity(&self, id: rask_core::WorkerId) -> Value {
        match (self.core.worker(id), self.workers.get(&id)) {
            (Some(w), Some(info)) => reply::worker_identity(
                &info.registration,
                &w.host,
                info.last_seen,
                &info.metrics,
                w.status.as_str(),
            ),
            _ => Value::Nil,
        }
    }

    fn heartbeat_worker(&mut self, now: f64, address: &str, metrics: Option<Value>) -> Value {
        let Some(w) = self.core.worker_id(address) else {
            return reply::heartbeat_missing();
        };
        let interval = self.heartbeat_interval();
        if let Some(info) = self.workers.get_mut(&w) {
            info.last_seen = now;
            if let Some(m) = metrics {
                let nbytes = self.core.worker(w).map_or(0, |ws| ws.nbytes);
                self.diag.on_heartbeat(w, now, &m, nbytes);
                info.metrics = m;
            }
        }
        reply::heartbeat(interval)
    }

    /// `coerce_address` (scheduler.py:8291) without DNS: a worker's name (`aliases`) is
    /// its address; anything else is taken as an address.
    pub(super) fn coerce_address(&self, w: &Arc<str>) -> Arc<str> {
        self.core
            .workers()
            .find(|(_, ws)| ws.name == *w)
            .map_or_else(|| w.clone(), |(_, ws)| ws.address.clone())
    }

    /// `ncores` / `ncores_running {workers}` (scheduler.py:7887-7900): a named worker that
    /// is not in the cluster is left out.
    fn ncores(&self, only: Option<Vec<Arc<str>>>, running_only: bool) -> Value {
        let only: Option<Vec<Arc<str>>> =
            only.map(|o| o.iter().map(|w| self.coerce_address(w)).collect());
        let mut out: Vec<(Arc<str>, Value)> = self
            .core
            .workers()
            .filter(|(_, w)| !running_only || w.status == rask_core::WorkerStatus::Running)
            .filter(|(_, w)| only.as_ref().is_none_or(|f| f.contains(&w.address)))
            .map(|(_, w)| (w.address.clone(), Value::from(u64::from(w.nthreads))))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        reply::by_address(out)
    }

    /// Current holders of each key (empty for unknown keys).
    fn holders(&self, keys: Vec<Key>) -> Vec<(Key, Vec<Arc<str>>)> {
        keys.into_iter()
            .map(|k| {
                let addrs = self
                    .core
                    .task_id(&k)
                    .map(|id| self.core.who_has_addrs(id))
                    .unwrap_or_default();
                (k, addrs)
            })
            .collect()
    }

    /// `who_has {keys}` (scheduler.py:7855); no keys: every key.
    fn who_has(&self, keys: Option<Vec<Key>>) -> Value {
        let keys = keys.unwrap_or_else(|| self.core.tasks().map(|(_, t)| t.key.clone()).collect());
        reply::who_has(&self.holders(keys))
    }

    /// `has_what` / `processing {workers}`: keys held (or running) per worker. A named
    /// worker that is not (or no longer) in the cluster has no keys in `has_what`
    /// (scheduler.py:7876-7883) and is a `KeyError` in `processing` (scheduler.py:7849).
    fn keys_per_worker(
        &self,
        only: Option<Vec<Arc<str>>>,
        processing: bool,
    ) -> Result<Value, RequestError> {
        let keys_of = |w: &rask_core::Worker| {
            let ids = if processing {
                &w.processing
            } else {
                &w.has_what
            };
            let keys: Vec<Key> = ids
                .iter()
                .filter_map(|id| self.core.task_by_id(*id).map(|t| t.key.clone()))
                .collect();
            reply::keys(&keys)
        };
        let mut out: Vec<(Arc<str>, Value)> = match only {
            None => self
                .core
                .workers()
                .map(|(_, w)| (w.address.clone(), keys_of(w)))
                .collect(),
            Some(only) => {
                let mut out = Vec::with_capacity(only.len());
                for a in only.iter().map(|w| self.coerce_address(w)) {
                    let found = self.core.worker_id(&a).and_then(|id| self.core.worker(id));
                    match found {
                        Some(w) => out.push((a, keys_of(w))),
                        None if processing => {
                            return Err(RequestError::UnknownWorker(a.to_string()))
                        }
                        None => out.push((a, reply::keys(&[]))),
                    }
                }
                out
            }
        };
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        Ok(reply::by_address(out))
    }

    /// `nbytes {keys, summary}` (scheduler.py:7988): bytes in memory per key, or per key
    /// prefix; of the given keys only (a key not in memory is left out, where the stock
    /// scheduler raises `KeyError` for an unknown one).
    fn nbytes(&self, keys: Option<Vec<Key>>, summary: bool) -> Value {
        let mut totals: FxHashMap<Key, i64> = FxHashMap::default();
        let mut order = Vec::new();
        let tasks: Vec<&rask_core::Task> = match keys {
            Some(keys) => keys.iter().filter_map(|k| self.core.task(k)).collect(),
            None => self.core.tasks().map(|(_, t)| t).collect(),
        };
        for t in tasks.into_iter().filter(|t| t.state == TaskStatus::Memory) {
            let k = if summary {
                Key::Str(t.prefix.clone())
            } else {
                t.key.clone()
            };
            let e = totals.entry(k.clone()).or_insert_with(|| {
                order.push(k);
                0
            });
            *e += t.nbytes;
        }
        reply::by_key(
            order
                .into_iter()
                .map(|k| {
                    let n = totals.get(&k).copied().unwrap_or(0);
                    (k, Value::Int(n))
                })
                .collect(),
        )
    }

    // ---- gather ------------------------------------------------------------------------------

    /// `gather` (scheduler.py:6380-6420): fetch from holders with `get_data` (a job), ack
    /// with `"OK"`, relay the serialized values untouched.
    fn gather(
        &mut self,
        now: f64,
        keys: Vec<Key>,
        serializers: Option<Value>,
        to: Replier,
        out: &mut dyn Outbox,
    ) {
        let g = Gathering {
            round: 0,
            serializers,
            plan: Vec::new(),
            data: Vec::with_capacity(keys.len()),
            missing: Vec::new(),
            retry: keys,
            reply: to,
        };
        self.gather_round(now, g, out);
    }

    /// Plans a round for the keys still to fetch: each at one of its holders (another one
    /// each round); a key nobody holds is missing.
    fn gather_round(&mut self, now: f64, mut g: Gathering, out: &mut dyn Outbox) {
        let mut plan: FxHashMap<Arc<str>, Vec<Key>> = FxHashMap::default();
        let round = g.round as usize;
        for (k, addrs) in self.holders(std::mem::take(&mut g.retry)) {
            match addrs.get(round % addrs.len().max(1)) {
                Some(a) => plan.entry(a.clone()).or_default().push(k),
                None => g.missing.push(k),
            }
        }
        if plan.is_empty() {
            let count = g.data.len() + g.missing.len();
            self.log_event(now, &[&Arc::from("all")], events::gather(count), out);
            return out.reply(g.reply, Ok(gather_reply(g.data, &g.missing)));
        }
        g.plan = plan.into_iter().collect();
        out.start(Job::Gather(Box::new(g)));
    }

    /// A round of `gather` ended: another round for what it did not get, or the answer.
    pub(super) fn gathered(&mut self, now: f64, mut g: Gathering, out: &mut dyn Outbox) {
        if g.retry.is_empty() || g.round + 1 >= GATHER_ROUNDS {
            let mut missing = std::mem::take(&mut g.missing);
            missing.append(&mut g.retry);
            // scheduler.py:6410
            let count = g.data.len() + missing.len();
            self.log_event(now, &[&Arc::from("all")], events::gather(count), out);
            return out.reply(g.reply, Ok(gather_reply(g.data, &missing)));
        }
        g.round += 1;
        self.gather_round(now, g, out);
    }

    // ---- scatter -----------------------------------------------------------------------------

    /// `scatter` (scheduler.py:6335-6378): put client data on running workers with
    /// `update_data` (a job), waiting up to `timeout` for a worker to exist.
    fn scatter(&mut self, now: f64, mut s: Scatter, to: Replier, out: &mut dyn Outbox) {
        let deadline = *s.deadline.get_or_insert(now + s.timeout);
        let mut targets: Vec<Arc<str>> = self
            .core
            .workers()
            .filter(|(_, w)| w.status == rask_core::WorkerStatus::Running)
            .filter(|(_, w)| {
                s.workers
                    .as_ref()
                    .is_none_or(|o| o.contains(&w.address) || o.contains(&w.name))
            })
            .map(|(_, w)| w.address.clone())
            .collect();
        if targets.is_empty() {
            if now >= deadline {
                let e = RequestError::Timeout(
                    Duration::from_secs_f64(s.timeout),
                    "workers to scatter to (No valid workers found)",
                );
                return out.reply(to, Err(e));
            }
            let request = Rpc::Scatter(Box::new(s));
            return out.after(SCATTER_POLL, Timer::Again { request, reply: to });
        }
        targets.sort();
        let mut per_worker: Vec<Vec<(Value, Value)>> = vec![Vec::new(); targets.len()];
        for (i, (k, v)) in s.data.iter().enumerate() {
            if s.broadcast {
                for w in per_worker.iter_mut() {
                    w.push((k.clone(), v.clone()));
                }
            } else {
                per_worker[i % targets.len()].push((k.clone(), v.clone()));
            }
        }
        let keys = s.data.iter().map(|(k, _)| k.clone()).collect();
        out.start(Job::Scatter {
            per_worker: targets
                .into_iter()
                .zip(per_worker)
                .filter(|(_, d)| !d.is_empty())
                .collect(),
            keys,
            client: s.client,
            reply: to,
        });
    }

    /// The data is on the workers: the scheduler learns where.
    pub(super) fn scattered(
        &mut self,
        now: f64,
        result: Result<Placement, RequestError>,
        keys: Vec<Value>,
        client: Option<Arc<str>>,
        to: Replier,
        out: &mut dyn Outbox,
    ) {
        match result {
            Ok(placement) => {
                let id = self.client_named(client.clone());
                self.update_data(now, id, placement, out);
                // scheduler.py:6374-6376: on the client's topic and `all`
                let event = events::scatter(client.as_ref(), keys.len());
                let all: Arc<str> = "all".into();
                match &client {
                    Some(c) => self.log_event(now, &[c, &all], event, out),
                    None => self.log_event(now, &[&all], event, out),
                }
                out.reply(to, Ok(Value::Array(keys)));
            }
            Err(e) => out.reply(to, Err(e)),
        }
    }

    // ---- broadcast ---------------------------------------------------------------------------

    /// `broadcast` (scheduler.py:6657): one message to many workers (or their nannies),
    /// `{address: reply}`. `Client.run` uses it.
    pub(super) fn broadcast(&mut self, b: Broadcast, to: Replier, out: &mut dyn Outbox) {
        // The targets as the stock handler lists them (scheduler.py:6668-6677): `workers`
        // as given, registered or not (an address nobody listens on is dialled and fails
        // like any other), plus the workers of `hosts`; every worker when neither is given.
        let mut workers: Vec<Arc<str>> = match (&b.workers, &b.hosts) {
            (Some(w), _) => w.clone(),
            (None, Some(_)) => Vec::new(),
            (None, None) => self
                .core
                .workers()
                .map(|(_, w)| w.address.clone())
                .collect(),
        };
        if let Some(hosts) = &b.hosts {
            workers.extend(
                self.core
                    .workers()
                    .filter(|(_, w)| hosts.contains(&w.host))
                    .map(|(_, w)| w.address.clone()),
            );
        }
        let mut targets: Vec<(Arc<str>, Arc<str>)> = workers
            .into_iter()
            .filter_map(|address| {
                if !b.nanny {
                    return Some((address.clone(), address));
                }
                // With `nanny`, a worker without one is not asked (scheduler.py:6679 keeps
                // only the nannies that exist).
                let id = self.core.worker_id(&address)?;
                let nanny = self
                    .workers
                    .get(&id)
                    .and_then(|i| i.registration.nanny.as_str().map(Arc::from))?;
                Some((address, nanny))
            })
            .collect();
        targets.sort();
        targets.dedup();
        out.start(Job::Broadcast {
            targets,
            msg: b.msg,
            on_error: b.on_error,
            reply: to,
        });
    }

    // ---- graph helper answers ----------------------------------------------------------------

    pub(super) fn helper_done(
        &mut self,
        now: f64,
        result: Result<Value, HelperError>,
        then: AfterHelper,
        out: &mut dyn Outbox,
    ) {
        match then {
            // the function takes `dask_scheduler`: it runs in the plugin host
            AfterHelper::RunFunction { request, reply: to }
                if result.as_ref().is_ok_and(|r| {
                    r.get("status").and_then(Value::as_str) == Some("need-scheduler")
                }) =>
            {
                self.run_on_facade(request, to, out)
            }
            AfterHelper::RunFunction { reply: to, .. } => {
                let answer = result
                    .map_err(RequestError::from)
                    .and_then(reply::run_function);
                out.reply(to, answer);
            }
            AfterHelper::ShuffleRun {
                id,
                run_id,
                key,
                worker,
                reply: to,
            } => self.with_ext(now, out, |ext, cx| {
                ext.shuffle
                    .run_created(cx, result, id, run_id, key, worker, to)
            }),
        }
    }
}

fn gather_reply(data: Vec<(Value, Value)>, missing: &[Key]) -> Value {
    if missing.is_empty() {
        reply::gathered(data)
    } else {
        reply::gather_missing(missing)
    }
}
