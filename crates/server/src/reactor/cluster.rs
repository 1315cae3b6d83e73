//! What cluster managers (`distributed.deploy.Cluster`, `SpecCluster`, `Adaptive`) ask of
//! the scheduler, and the data-placement requests that go with them: the metadata store,
//! the worker-status feed, adaptive scaling's questions (`adaptive_target`,
//! `workers_to_close`, `check_idle`), `terminate`, `set_resources`, `set_restrictions`,
//! `add_keys` and `replicate`.

use super::Scheduler;
use crate::event::{Replier, RpcResult, Timer};
use crate::messages::cluster::{
    Moving, Rebalance, Replicate, Rpc, WorkerStatusMsg, WorkersToClose,
};
use crate::messages::{Rpc as AnyRpc, ToWorkerMsg};
use crate::outbox::Outbox;
use crate::translate::cluster as wire;
use rask_comm::reply::raised;
use rask_core::{Stimulus, TaskStatus, ToWorker, WorkerId, WorkerStatus};
use rask_protocol::{Key, Value};
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;
use std::time::Duration;

/// `distributed.adaptive.target-duration`'s default (`distributed.yaml`), for a request
/// that names none (`Adaptive` always sends its own).
pub(super) const DEFAULT_TARGET_DURATION: f64 = 5.0;

/// How often a `replicate` looks at where its keys are and asks for the copies still
/// missing.
const REPLICATE_POLL: Duration = Duration::from_millis(100);

/// `distributed.worker.memory.rebalance.*` at their `distributed.yaml` defaults (rask does
/// not read these keys): half of `sender-recipient-gap`, `sender-min`, `recipient-max`.
const REBALANCE_HALF_GAP: f64 = 0.05;
const REBALANCE_SENDER_MIN: f64 = 0.30;
const REBALANCE_RECIPIENT_MAX: f64 = 0.60;

/// How long a `rebalance` waits for recipients to fetch their copies before it reports the
/// keys that did not move.
const REBALANCE_TIMEOUT: f64 = 30.0;

/// A sender's or recipient's place in `rebalance`'s heaps: (bytes max, bytes min, worker),
/// smallest first.
type Slot = std::cmp::Reverse<(i64, i64, WorkerId)>;

/// This family's state in the scheduler.
pub(super) struct ClusterState {
    /// `Scheduler.task_metadata`: the nested dict of `set_metadata`/`get_metadata`
    metadata: Value,
    /// `idle_since` of `check_idle`
    idle_since: Option<f64>,
    /// the transition counter `check_idle` saw last (`_idle_transition_counter`)
    idle_counter: u64,
}

impl Default for ClusterState {
    fn default() -> Self {
        ClusterState {
            metadata: Value::Map(Vec::new()),
            idle_since: None,
            idle_counter: 0,
        }
    }
}

/// Python's `==` on dict keys, so `1` sent as a signed or an unsigned msgpack int is the
/// same key.
fn same_key(a: &Value, b: &Value) -> bool {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) if !matches!(a, Value::Float(_)) && !matches!(b, Value::Float(_)) => {
            x == y
        }
        _ => a == b,
    }
}

/// The repr-ish text of a missing key, for `KeyError`.
fn key_text(k: &Value) -> String {
    match Key::from_value(k) {
        Some(Key::Str(s)) => s.to_string(),
        Some(other) => other.to_string(),
        None => format!("{k:?}"),
    }
}

/// `metadata[key]` of a dict or a list (`list[int]`), as Python indexes them.
fn child_mut<'a>(node: &'a mut Value, key: &Value) -> Option<&'a mut Value> {
    match node {
        Value::Map(entries) => entries
            .iter_mut()
            .find(|(k, _)| same_key(k, key))
            .map(|(_, v)| v),
        Value::Array(items) => {
            let len = items.len() as i64;
            let i = key.as_i64()?;
            let i = if i < 0 { i + len } else { i };
            items.get_mut(usize::try_from(i).ok()?)
        }
        _ => None,
    }
}

fn child<'a>(node: &'a Value, key: &Value) -> Result<&'a Value, RpcResult> {
    match node {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| same_key(k, key))
            .map(|(_, v)| v)
            .ok_or_else(|| Ok(raised("KeyError", &key_text(key)))),
        Value::Array(items) => {
            let len = items.len() as i64;
            let i = key.as_i64().ok_or_else(|| {
                Ok(raised(
                    "TypeError",
                    "list indices must be integers or slices",
                ))
            })?;
            let i = if i < 0 { i + len } else { i };
            usize::try_from(i)
                .ok()
                .and_then(|i| items.get(i))
                .ok_or_else(|| Ok(raised("IndexError", "list index out of range")))
        }
        other => Err(Ok(raised(
            "TypeError",
            &format!("'{}' object is not subscriptable", other.type_name()),
        ))),
    }
}

impl Scheduler {
    /// Serves one RPC of this family.
    pub(super) fn cluster_rpc(&mut self, now: f64, rpc: Rpc, to: Replier, out: &mut dyn Outbox) {
        let answer = match rpc {
            Rpc::SetMetadata { keys, value } => self.set_metadata(keys, value),
            Rpc::GetMetadata { keys, default } => self.get_metadata(&keys, default),
            Rpc::SubscribeWorkerStatus { stream } => {
                out.open_watcher(stream);
                Ok(self.subscribe_worker_status())
            }
            Rpc::AdaptiveTarget { target_duration } => Ok(Value::from(
                self.adaptive_target(target_duration.unwrap_or(DEFAULT_TARGET_DURATION)) as i64,
            )),
            Rpc::WorkersToClose(args) => self.workers_to_close(&args),
            Rpc::CheckIdle => Ok(self.check_idle(now).map_or(Value::Nil, Value::Float)),
            Rpc::Terminate => {
                // `Scheduler.close` (scheduler.py:4479): the server's shutdown tells every
                // worker to close (`Event::Shutdown`) and ends the process.
                tracing::info!("Closing scheduler. Reason: terminate (Client.shutdown)");
                out.reply(to, Ok(Value::Nil));
                out.stop();
                return;
            }
            Rpc::SetResources { worker, resources } => {
                self.set_resources(now, &worker, resources, out)
            }
            Rpc::SetRestrictions { restrictions } => self.set_restrictions(now, restrictions, out),
            Rpc::AddKeys {
                worker,
                keys,
                stimulus_id,
            } => {
                // scheduler.py:7694: an unknown worker is "not found"; else the stream
                // op's handling
                match self.core.worker_id(&worker) {
                    None => Ok(Value::from("not found")),
                    Some(worker) => {
                        let s = Stimulus::AddKeys {
                            worker,
                            keys,
                            stimulus_id,
                        };
                        self.stimulus(now, s, out);
                        Ok(Value::from("OK"))
                    }
                }
            }
            Rpc::Replicate(r) => return self.replicate(now, *r, to, out),
            Rpc::Rebalance(r) => return self.rebalance(now, *r, to, out),
        };
        out.reply(to, answer);
    }

    // ---- metadata --------------------------------------------------------------------------

    /// `set_metadata` (scheduler.py:8025): missing or non-container levels become dicts.
    fn set_metadata(&mut self, keys: Vec<Value>, value: Value) -> RpcResult {
        let Some((last, path)) = keys.split_last() else {
            return Ok(raised("IndexError", "list index out of range"));
        };
        let mut node = &mut self.cluster.metadata;
        for key in path {
            let is_container =
                child_mut(node, key).is_some_and(|c| matches!(c, Value::Map(_) | Value::Array(_)));
            if !is_container {
                if let Err(e) = put(node, key.clone(), Value::Map(Vec::new())) {
                    return e;
                }
            }
            node = match child_mut(node, key) {
                Some(c) => c,
                None => return Ok(raised("KeyError", &key_text(key))),
            };
        }
        if let Err(e) = put(node, last.clone(), value) {
            return e;
        }
        Ok(Value::Nil)
    }

    /// `get_metadata` (scheduler.py:8033): a missing key is `default`, or `KeyError`.
    fn get_metadata(&self, keys: &[Value], default: Option<Value>) -> RpcResult {
        let mut node = &self.cluster.metadata;
        for key in keys {
            match child(node, key) {
                Ok(c) => node = c,
                Err(e) => {
                    // only a KeyError falls back to the default, as in the stock handler
                    let is_key_error = matches!(node, Value::Map(_));
                    return match default {
                        Some(d) if is_key_error => Ok(d),
                        _ => e,
                    };
                }
            }
        }
        Ok(node.clone())
    }

    // ---- worker-status feed ----------------------------------------------------------------

    /// `subscribe_worker_status` (scheduler.py:7836): the identity without the workers'
    /// `metrics` and `last_seen`; the feed follows on the same connection.
    fn subscribe_worker_status(&self) -> Value {
        let mut ident = self.identity_value(-1);
        if let Some(Value::Map(workers)) = ident.get("workers").cloned() {
            let stripped = workers
                .into_iter()
                .map(|(addr, w)| (addr, status_identity(w)))
                .collect();
            ident.set("workers", Value::Map(stripped));
        }
        ident
    }

    /// `WorkerStatusPlugin.add_worker` (scheduler.py:9333): every feed hears of a worker
    /// that registered.
    pub(super) fn tell_watchers_added(&mut self, id: WorkerId, out: &mut dyn Outbox) {
        let Some(address) = self.core.worker(id).map(|w| w.address.clone()) else {
            return;
        };
        let identity = status_identity(self.worker_identity(id));
        out.to_watchers(WorkerStatusMsg::Add { address, identity });
    }

    /// `WorkerStatusPlugin.remove_worker`: every feed hears of a worker that left.
    pub(super) fn tell_watchers_removed(&mut self, address: Arc<str>, out: &mut dyn Outbox) {
        out.to_watchers(WorkerStatusMsg::Remove { address });
    }

    // ---- adaptive scaling ------------------------------------------------------------------

    /// Workers in registration order (the stock scheduler's `self.workers` dict order).
    pub(super) fn workers_in_order(&self) -> Vec<(WorkerId, &rask_core::Worker)> {
        let mut ws: Vec<_> = self.core.workers().collect();
        ws.sort_by_key(|(id, _)| *id);
        ws
    }

    /// `adaptive_target` (scheduler.py:8838-8898): workers wanted for the queued and
    /// running work to take `target_duration`, or for the data to use under 60% of memory.
    pub(super) fn adaptive_target(&self, target_duration: f64) -> usize {
        let workers = self.workers_in_order();
        // CPU
        let queued = self.core.waiting_for_workers(100);
        let mut queued_occupancy: f64 = queued.iter().map(|id| self.core.task_duration(*id)).sum();
        let mut tasks_ready = self.core.queued_len() + self.core.unrunnable_len();
        if tasks_ready > 100 {
            queued_occupancy *= tasks_ready as f64 / 100.0;
        }
        let total_occupancy: f64 = workers.iter().map(|(_, w)| w.occupancy).sum();
        let mut cpu = ((total_occupancy + queued_occupancy) / target_duration).ceil() as usize;
        // Avoid a few long tasks from asking for many cores
        let mut broke = false;
        for (_, w) in &workers {
            if tasks_ready > cpu {
                broke = true;
                break;
            }
            tasks_ready += w.processing.len();
        }
        if !broke {
            cpu = cpu.min(tasks_ready);
        }
        // Divide by average nthreads per worker
        if !workers.is_empty() {
            let nthreads: u64 = workers.iter().map(|(_, w)| u64::from(w.nthreads)).sum();
            if nthreads > 0 {
                cpu = (cpu as f64 / nthreads as f64 * workers.len() as f64).ceil() as usize;
            }
        }
        let waiting = self.core.queued_len() + self.core.unrunnable_len() > 0;
        if waiting && workers.is_empty() {
            cpu = cpu.max(1);
        }
        // add more workers if more than 60% of memory is used
        let limit: u64 = workers.iter().map(|(_, w)| w.memory_limit).sum();
        let used: i64 = workers.iter().map(|(_, w)| w.nbytes).sum();
        let memory = if limit > 0 && used as f64 > 0.6 * limit as f64 {
            2 * workers.len()
        } else {
            0
        };
        let target = memory.max(cpu);
        if target >= workers.len() {
            target
        } else {
            let to_close = self.close_candidates(&WorkersToClose::default());
            workers.len() - to_close.len()
        }
    }

    /// `workers_to_close`, answered with the attribute asked for.
    fn workers_to_close(&self, args: &WorkersToClose) -> RpcResult {
        let ids = self.close_candidates(args);
        let attribute = args.attribute.as_ref();
        if !matches!(attribute, "address" | "name" | "host") {
            return Ok(raised(
                "AttributeError",
                &format!("'WorkerState' object has no attribute '{attribute}'"),
            ));
        }
        let listed = ids
            .into_iter()
            .filter_map(|id| {
                let w = self.core.worker(id)?;
                Some(match attribute {
                    "name" => self.workers.get(&id).map_or_else(
                        || Value::Str(w.name.clone()),
                        |i| i.registration.name_value.clone(),
                    ),
                    "host" => Value::Str(w.host.clone()),
                    _ => Value::Str(w.address.clone()),
                })
            })
            .collect();
        Ok(Value::Array(listed))
    }

    /// `workers_to_close` (scheduler.py:7305-7437) with each worker its own group (no
    /// `key=`): idle workers holding the least data first, while enough memory is left for
    /// `memory_ratio` times the data held, or until `n` are chosen.
    fn close_candidates(&self, args: &WorkersToClose) -> Vec<WorkerId> {
        let workers = self.workers_in_order();
        let n_workers = workers.len() as i64;
        let mut n = args.n;
        let mut target = args.target;
        let mut memory_ratio = args.memory_ratio;
        if target.is_some() && n.is_none() {
            n = target.map(|t| n_workers - t);
        }
        if let Some(k) = n {
            let k = k.max(0);
            n = Some(k);
            target = Some(n_workers - k);
        }
        if n.is_none() && memory_ratio.is_none() {
            memory_ratio = Some(2.0);
        }
        if n.unwrap_or(0) == 0 && workers.iter().all(|(_, w)| !w.processing.is_empty()) {
            return Vec::new();
        }
        // Long running tasks typically use a worker_client: never close their worker.
        let valid: Vec<_> = workers
            .iter()
            .filter(|(_, w)| w.long_running == 0)
            .collect();
        let mut limit: f64 = valid.iter().map(|(_, w)| w.memory_limit as f64).sum();
        let total: f64 = valid.iter().map(|(_, w)| w.nbytes as f64).sum();
        // sorted by (is_idle, -bytes), stable; candidates are popped from the end
        let mut idle = valid.clone();
        idle.sort_by_key(|(_, w)| (w.processing.is_empty(), -w.nbytes));
        let mut to_close = Vec::new();
        let mut n_remain = n_workers;
        let minimum = args.minimum.unwrap_or(0);
        while let Some((id, w)) = idle.pop() {
            if n.is_none() && !w.processing.is_empty() {
                break;
            }
            if minimum != 0 && n_remain - 1 < minimum {
                break;
            }
            limit -= w.memory_limit as f64;
            let by_count = n.is_some() && n_remain > target.unwrap_or(0);
            let by_memory = memory_ratio.is_some_and(|r| limit >= r * total);
            if by_count || by_memory {
                to_close.push(*id);
                n_remain -= 1;
            } else {
                break;
            }
        }
        to_close
    }

    /// `check_idle` (scheduler.py:8663): since when nothing has happened and nothing is
    /// running or waiting for a worker; `None` while busy, or on the first look after a
    /// transition.
    fn check_idle(&mut self, now: f64) -> Option<f64> {
        let counter = self.core.transition_counter();
        if counter != self.cluster.idle_counter {
            self.cluster.idle_counter = counter;
            self.cluster.idle_since = None;
            return None;
        }
        // a graph being materialized is `_active_graph_updates`
        let updating = self.clients.values().any(|c| c.held.is_some());
        let busy = self.core.queued_len() > 0
            || self.core.unrunnable_len() > 0
            || self.core.workers().any(|(_, w)| !w.processing.is_empty());
        if updating || busy {
            self.cluster.idle_since = None;
            return None;
        }
        Some(*self.cluster.idle_since.get_or_insert(now))
    }

    // ---- resources and restrictions --------------------------------------------------------

    /// `set_resources` (`add_resources`, scheduler.py:8270): `ws.resources.update(...)`.
    fn set_resources(
        &mut self,
        now: f64,
        worker: &str,
        resources: Vec<(Arc<str>, f64)>,
        out: &mut dyn Outbox,
    ) -> RpcResult {
        let Some(id) = self.core.worker_id(worker) else {
            return Ok(raised("KeyError", worker));
        };
        self.stimulus(
            now,
            Stimulus::SetResources {
                worker: id,
                resources,
            },
            out,
        );
        // `identity()` reports `ws.resources`
        if let (Some(w), Some(info)) = (self.core.worker(id), self.workers.get_mut(&id)) {
            info.registration.resources = w.resources.clone();
            info.registration.resources_value = Value::Map(
                w.resources
                    .iter()
                    .map(|(n, a)| (Value::Str(n.clone()), Value::Float(*a)))
                    .collect(),
            );
        }
        Ok(Value::from("OK"))
    }

    /// `set_restrictions` (scheduler.py:8045): an unknown key raises `KeyError`, after the
    /// keys before it were changed, as the stock loop does.
    fn set_restrictions(
        &mut self,
        now: f64,
        restrictions: Vec<(Key, Option<Vec<Arc<str>>>)>,
        out: &mut dyn Outbox,
    ) -> RpcResult {
        for (key, workers) in restrictions {
            if self.core.task_id(&key).is_none() {
                return Ok(raised("KeyError", &key.to_string()));
            }
            self.stimulus(now, Stimulus::SetRestrictions { key, workers }, out);
        }
        Ok(Value::Nil)
    }

    // ---- replicate -------------------------------------------------------------------------

    /// `replicate` (scheduler.py:7185-7303): `n` copies of each key on the chosen running
    /// workers. Extra copies are dropped first (`delete`); then each pass asks workers
    /// without a copy to fetch one (`acquire-replicas`, at most `branching_factor` new
    /// copies per existing one, as the stock tree copy does with `gather`) until every key
    /// has its `n` copies; the answer comes then.
    fn replicate(&mut self, now: f64, mut r: Replicate, to: Replier, out: &mut dyn Outbox) {
        if to.is_closed() {
            return;
        }
        let chosen: Vec<WorkerId> = match &r.workers {
            Some(names) => {
                let mut ids = Vec::new();
                for name in names {
                    let found = self
                        .core
                        .workers()
                        .find(|(_, w)| w.address == *name || w.name == *name);
                    match found {
                        Some((id, _)) => ids.push(id),
                        None => return out.reply(to, Ok(raised("KeyError", name))),
                    }
                }
                ids
            }
            None => self.core.workers().map(|(id, _)| id).collect(),
        };
        let mut workers: Vec<WorkerId> = chosen
            .into_iter()
            .filter(|id| {
                self.core
                    .worker(*id)
                    .is_some_and(|w| w.status == WorkerStatus::Running)
            })
            .collect();
        workers.sort();
        workers.dedup();
        let n = r.n.map_or(workers.len(), |n| {
            usize::try_from(n).unwrap_or(0).min(workers.len())
        });
        if n == 0 {
            return out.reply(
                to,
                Ok(raised("ValueError", "Can not use replicate to delete data")),
            );
        }
        let mut tasks = Vec::new();
        for k in &r.keys {
            match self.core.task_id(k) {
                Some(id) => tasks.push(id),
                None if !r.started => return out.reply(to, Ok(raised("KeyError", &k.to_string()))),
                // forgotten since: no longer needed by anyone
                None => {}
            }
        }
        let in_set: FxHashSet<WorkerId> = workers.iter().copied().collect();
        if !r.started {
            let missing: Vec<Key> = tasks
                .iter()
                .filter_map(|id| self.core.task_by_id(*id))
                .filter(|t| t.who_has.is_empty())
                .map(|t| t.key.clone())
                .collect();
            if !missing.is_empty() {
                return out.reply(to, Ok(wire::partial_fail(&missing)));
            }
            if r.delete {
                self.drop_extra_copies(now, &tasks, &workers, n, &r.stimulus_id, out);
            }
            r.started = true;
            let event =
                wire::replicate_event(&self.addresses(&workers), r.keys.len(), r.branching_factor);
            self.with_ext(now, out, |ext, cx| {
                ext.events.publish(cx, &[Arc::from("all")], event)
            });
        }
        // Copy not-yet-filled data
        let mut asks: FxHashMap<WorkerId, Ask> = FxHashMap::default();
        for id in &tasks {
            let Some(t) = self.core.task_by_id(*id) else {
                continue;
            };
            if t.state != TaskStatus::Memory || t.who_has.is_empty() {
                continue;
            }
            let have = t.who_has.iter().filter(|w| in_set.contains(w)).count();
            let n_missing = n.saturating_sub(have);
            if n_missing == 0 {
                continue;
            }
            let bf = usize::try_from(r.branching_factor).unwrap_or(1);
            let count = n_missing.min(bf * t.who_has.len());
            let holders = self.core.who_has_addrs(*id);
            for w in workers
                .iter()
                .filter(|w| !t.who_has.contains(w))
                .take(count)
            {
                let entry = asks.entry(*w).or_default();
                entry.0.push((t.key.clone(), holders.clone()));
                entry.1.push((t.key.clone(), t.nbytes));
            }
        }
        if asks.is_empty() {
            return out.reply(to, Ok(Value::Nil));
        }
        acquire_replicas(asks, &r.stimulus_id, out);
        let request = AnyRpc::Cluster(Rpc::Replicate(Box::new(r)));
        out.after(REPLICATE_POLL, Timer::Again { request, reply: to });
    }

    /// `replicate(delete=True)`: copies beyond `n` on the chosen workers are removed, the
    /// ones on the last workers in address order first (the stock scheduler picks them at
    /// random); the workers are told with `remove-replicas`, as the active memory manager
    /// does, and the scheduler forgets those copies at once.
    fn drop_extra_copies(
        &mut self,
        now: f64,
        tasks: &[rask_core::TaskId],
        workers: &[WorkerId],
        n: usize,
        sid: &Arc<str>,
        out: &mut dyn Outbox,
    ) {
        let mut drops: FxHashMap<WorkerId, Vec<Key>> = FxHashMap::default();
        for id in tasks {
            let Some(t) = self.core.task_by_id(*id) else {
                continue;
            };
            let mut holders: Vec<(Arc<str>, WorkerId)> = t
                .who_has
                .iter()
                .filter(|w| workers.contains(w))
                .filter_map(|w| self.core.worker(*w).map(|ws| (ws.address.clone(), *w)))
                .collect();
            holders.sort();
            for (_, w) in holders.into_iter().skip(n) {
                drops.entry(w).or_default().push(t.key.clone());
            }
        }
        let mut drops: Vec<_> = drops.into_iter().collect();
        drops.sort_by_key(|(w, _)| *w);
        for (w, keys) in drops {
            self.drop_copies(now, w, keys, sid, out);
        }
    }

    // ---- rebalance -------------------------------------------------------------------------

    /// `rebalance` (scheduler.py:6832-7183): keys move from workers holding more than the
    /// mean memory to workers holding less, until all are within 5% of it; nothing moves
    /// while every worker is under 30% of its memory limit. A recipient fetches its copy
    /// (`acquire-replicas`); only once the scheduler knows it holds it is the sender's copy
    /// dropped (`remove-replicas`), so no key is ever left without a copy.
    ///
    /// Differences from the stock scheduler: memory is measured as the bytes of the keys a
    /// worker holds (the `managed` measure of `distributed.worker.memory.rebalance.measure`;
    /// the stock default, `optimistic`, adds unmanaged process memory older than 30 s, which
    /// rask does not track), and keys are taken in rask's order, not least recently
    /// inserted first.
    fn rebalance(&mut self, now: f64, mut r: Rebalance, to: Replier, out: &mut dyn Outbox) {
        if to.is_closed() {
            return;
        }
        let Some(mut moving) = r.moving.take() else {
            return self.rebalance_start(now, r, to, out);
        };
        let mut drops: FxHashMap<WorkerId, Vec<Key>> = FxHashMap::default();
        let mut still = Vec::new();
        for (sender, recipient, key) in std::mem::take(&mut moving.pending) {
            let ids = (
                self.core.worker_id(&sender),
                self.core.worker_id(&recipient),
                self.core.task(&key),
            );
            let (Some(s), Some(rw), Some(t)) = ids else {
                moving.failed.push(key);
                continue;
            };
            if t.who_has.contains(&rw) {
                if t.who_has.contains(&s) {
                    drops.entry(s).or_default().push(key);
                }
                moving.moved += 1;
            } else if t.state != TaskStatus::Memory || now >= moving.deadline {
                moving.failed.push(key);
            } else {
                still.push((sender, recipient, key));
            }
        }
        let mut drops: Vec<_> = drops.into_iter().collect();
        drops.sort_by_key(|(w, _)| *w);
        for (w, keys) in drops {
            self.drop_copies(now, w, keys, &r.stimulus_id, out);
        }
        if !still.is_empty() {
            moving.pending = still;
            r.moving = Some(moving);
            let request = AnyRpc::Cluster(Rpc::Rebalance(Box::new(r)));
            return out.after(REPLICATE_POLL, Timer::Again { request, reply: to });
        }
        let event = wire::rebalance_event(moving.moved);
        self.with_ext(now, out, |ext, cx| {
            ext.events.publish(cx, &[Arc::from("all")], event)
        });
        // scheduler.py:6925: keys that did not move fail the request only when the
        // caller named keys
        let answer = if moving.failed.is_empty() || r.keys.is_none() {
            wire::status_ok()
        } else {
            wire::partial_fail(&moving.failed)
        };
        out.reply(to, Ok(answer));
    }

    /// `rebalance`'s checks and plan (`_rebalance_find_msgs`), and the recipients asked to
    /// fetch their copies.
    fn rebalance_start(&mut self, now: f64, mut r: Rebalance, to: Replier, out: &mut dyn Outbox) {
        let wss: Vec<WorkerId> = match &r.workers {
            Some(addrs) => {
                let mut ids = Vec::new();
                for a in addrs {
                    match self.core.worker_id(a) {
                        Some(id) => ids.push(id),
                        None => return out.reply(to, Ok(raised("KeyError", a))),
                    }
                }
                ids
            }
            None => self
                .workers_in_order()
                .into_iter()
                .map(|(id, _)| id)
                .collect(),
        };
        if wss.is_empty() {
            return out.reply(to, Ok(wire::status_ok()));
        }
        if let Some(keys) = &r.keys {
            if keys.is_empty() {
                return out.reply(to, Ok(wire::status_ok()));
            }
            let missing: Vec<Key> = keys
                .iter()
                .filter(|k| self.core.task(k).is_none_or(|t| t.who_has.is_empty()))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return out.reply(to, Ok(wire::partial_fail(&missing)));
            }
        }
        let moves = self.rebalance_moves(r.keys.as_deref(), &wss);
        if moves.is_empty() {
            let event = wire::rebalance_event(0);
            self.with_ext(now, out, |ext, cx| {
                ext.events.publish(cx, &[Arc::from("all")], event)
            });
            return out.reply(to, Ok(wire::status_ok()));
        }
        let mut asks: FxHashMap<WorkerId, Ask> = FxHashMap::default();
        let mut pending = Vec::with_capacity(moves.len());
        for (sender, recipient, tid) in moves {
            let (Some(t), Some(s), Some(rw)) = (
                self.core.task_by_id(tid),
                self.core.worker(sender),
                self.core.worker(recipient),
            ) else {
                continue;
            };
            let entry = asks.entry(recipient).or_default();
            entry.0.push((t.key.clone(), vec![s.address.clone()]));
            entry.1.push((t.key.clone(), t.nbytes));
            pending.push((s.address.clone(), rw.address.clone(), t.key.clone()));
        }
        acquire_replicas(asks, &r.stimulus_id, out);
        r.moving = Some(Moving {
            pending,
            moved: 0,
            failed: Vec::new(),
            deadline: now + REBALANCE_TIMEOUT,
        });
        let request = AnyRpc::Cluster(Rpc::Rebalance(Box::new(r)));
        out.after(REPLICATE_POLL, Timer::Again { request, reply: to });
    }

    /// `_rebalance_find_msgs` (scheduler.py:6936-7124): (sender, recipient, task) pairs. A
    /// recipient that holds the key (or is already getting it) is skipped, so replication
    /// never degrades.
    fn rebalance_moves(
        &self,
        keys: Option<&[Key]>,
        wss: &[WorkerId],
    ) -> Vec<(WorkerId, WorkerId, rask_core::TaskId)> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let memory: Vec<(WorkerId, &rask_core::Worker)> = wss
            .iter()
            .filter_map(|id| self.core.worker(*id).map(|w| (*id, w)))
            .collect();
        if memory.is_empty() {
            return Vec::new();
        }
        let mean = memory.iter().map(|(_, w)| w.nbytes).sum::<i64>() / memory.len() as i64;
        let allowed: Option<FxHashSet<&Key>> = keys.map(|ks| ks.iter().collect());
        let mut senders: BinaryHeap<Slot> = BinaryHeap::new();
        let mut recipients: BinaryHeap<Slot> = BinaryHeap::new();
        // each sender's keys, and how far it has been looked through
        let mut holdings: FxHashMap<WorkerId, (Vec<rask_core::TaskId>, usize)> =
            FxHashMap::default();
        for (id, w) in &memory {
            let m = w.nbytes;
            let (half_gap, sender_min, recipient_max) = if w.memory_limit > 0 {
                let limit = w.memory_limit as f64;
                (
                    (REBALANCE_HALF_GAP * limit) as i64,
                    REBALANCE_SENDER_MIN * limit,
                    REBALANCE_RECIPIENT_MAX * limit,
                )
            } else {
                (0, 0.0, f64::INFINITY)
            };
            if !w.has_what.is_empty() && m >= mean + half_gap && m as f64 >= sender_min {
                let max = mean - m;
                senders.push(Reverse((max, max + half_gap, *id)));
                let mut held: Vec<_> = w.has_what.iter().copied().collect();
                held.sort();
                holdings.insert(*id, (held, 0));
            } else if m < mean - half_gap && (m as f64) < recipient_max {
                let max = m - mean;
                recipients.push(Reverse((max, max + half_gap, *id)));
            }
        }
        let mut moves = Vec::new();
        let mut planned: FxHashSet<(rask_core::TaskId, WorkerId)> = FxHashSet::default();
        while let Some(&Reverse((mut smax, mut smin, sid))) = senders.peek() {
            if recipients.is_empty() {
                break;
            }
            let Some((held, cursor)) = holdings.get_mut(&sid) else {
                senders.pop();
                continue;
            };
            let mut moved = false;
            while *cursor < held.len() {
                let tid = held[*cursor];
                *cursor += 1;
                let Some(t) = self.core.task_by_id(tid) else {
                    continue;
                };
                if allowed.as_ref().is_some_and(|a| !a.contains(&t.key)) {
                    continue;
                }
                let nbytes = t.nbytes;
                if nbytes + smax > 0 {
                    continue;
                }
                let mut skipped = Vec::new();
                let mut chosen = None;
                while let Some(&Reverse((rmax, rmin, rid))) = recipients.peek() {
                    if nbytes + rmax > 0 {
                        break;
                    }
                    recipients.pop();
                    if t.who_has.contains(&rid) || planned.contains(&(tid, rid)) {
                        skipped.push(Reverse((rmax, rmin, rid)));
                    } else {
                        chosen = Some((rmax, rmin, rid));
                        break;
                    }
                }
                recipients.extend(skipped);
                let Some((mut rmax, mut rmin, rid)) = chosen else {
                    continue;
                };
                moves.push((sid, rid, tid));
                planned.insert((tid, rid));
                smax += nbytes;
                smin += nbytes;
                rmax += nbytes;
                rmin += nbytes;
                senders.pop();
                if smin < 0 {
                    senders.push(Reverse((smax, smin, sid)));
                }
                if rmin < 0 {
                    recipients.push(Reverse((rmax, rmin, rid)));
                }
                moved = true;
                break;
            }
            if !moved {
                senders.pop();
            }
        }
        moves
    }

    /// A worker's copies of `keys` are dropped: the scheduler forgets them now and the
    /// worker is told (`remove-replicas`), as the active memory manager does.
    fn drop_copies(
        &mut self,
        now: f64,
        w: WorkerId,
        keys: Vec<Key>,
        sid: &Arc<str>,
        out: &mut dyn Outbox,
    ) {
        for key in &keys {
            let s = Stimulus::ReleaseWorkerData {
                worker: w,
                key: key.clone(),
                stimulus_id: sid.clone(),
            };
            self.stimulus(now, s, out);
        }
        out.to_worker(
            w,
            ToWorkerMsg::Core(ToWorker::RemoveReplicas {
                keys,
                stimulus_id: sid.clone(),
            }),
        );
    }

    fn addresses(&self, ids: &[WorkerId]) -> Vec<Arc<str>> {
        ids.iter()
            .filter_map(|id| self.core.worker(*id).map(|w| w.address.clone()))
            .collect()
    }
}

/// What one worker is asked to fetch: `{key: holders}` and `{key: nbytes}`.
type Ask = (Vec<(Key, Vec<Arc<str>>)>, Vec<(Key, i64)>);

/// Asks each worker to fetch its keys from where they are (`acquire-replicas`), in worker
/// order.
fn acquire_replicas(asks: FxHashMap<WorkerId, Ask>, stimulus_id: &Arc<str>, out: &mut dyn Outbox) {
    let mut asks: Vec<_> = asks.into_iter().collect();
    asks.sort_by_key(|(w, _)| *w);
    for (w, (who_has, nbytes)) in asks {
        out.to_worker(
            w,
            ToWorkerMsg::AcquireReplicas {
                who_has,
                nbytes,
                stimulus_id: stimulus_id.clone(),
            },
        );
    }
}

/// Where `set_metadata` stores a value: a dict entry (replaced or added), or a list item.
fn put(node: &mut Value, key: Value, value: Value) -> Result<(), RpcResult> {
    match node {
        Value::Map(entries) => {
            match entries.iter_mut().find(|(k, _)| same_key(k, &key)) {
                Some(slot) => slot.1 = value,
                None => entries.push((key, value)),
            }
            Ok(())
        }
        Value::Array(_) => match child_mut(node, &key) {
            Some(slot) => {
                *slot = value;
                Ok(())
            }
            None => Err(Ok(raised(
                "IndexError",
                "list assignment index out of range",
            ))),
        },
        other => Err(Ok(raised(
            "TypeError",
            &format!(
                "'{}' object does not support item assignment",
                other.type_name()
            ),
        ))),
    }
}

/// A worker's identity as the feed sends it: without `metrics` and `last_seen`.
fn status_identity(mut ident: Value) -> Value {
    ident.take("metrics");
    ident.take("last_seen");
    ident
}
