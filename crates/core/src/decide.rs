//! Choosing a worker for a ready task (`decide_worker`, `scheduler.py:8985`, and
//! `valid_workers`).
//!
//! Dask's objective: the earliest estimated start time, i.e. the worker's queued work
//! (`occupancy / nthreads`) plus the time to fetch the dependencies it does not hold
//! (`bytes / bandwidth`). Dask only considers workers holding a dependency and leaves the
//! imbalance to work stealing. rask also lets an idle worker or two compete with the holders
//! and lets the objective weigh the transfer, so a chain of tasks does not pile onto the one
//! worker that holds its inputs; work stealing ([`crate::steal`]) then fixes what remains.

use crate::state::SchedulerState;
use crate::types::{TaskId, WorkerId, WorkerStatus};
use rustc_hash::FxHashMap;

impl SchedulerState {
    /// Workers allowed to run the task, or `None` if it has no restrictions.
    pub(crate) fn valid_workers(&self, id: TaskId) -> Option<Vec<WorkerId>> {
        let task = self.expect_task(id);
        let ts = task.rare();
        let restricted = !ts.worker_restrictions.is_empty() || !ts.host_restrictions.is_empty();
        if !restricted && ts.resource_restrictions.is_empty() {
            return None;
        }
        let fits_resources = |w: &crate::state::Worker| {
            ts.resource_restrictions.iter().all(|(name, need)| {
                w.resources
                    .iter()
                    .any(|(have_name, have)| have_name == name && have >= need)
            })
        };
        let mut valid: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.status == WorkerStatus::Running && fits_resources(w))
            .filter(|(_, w)| {
                !restricted
                    || ts.worker_restrictions.contains(&w.address)
                    || ts.host_restrictions.contains(&w.host)
                    || ts.host_restrictions.contains(&w.name)
            })
            .map(|(id, _)| *id)
            .collect();
        if valid.is_empty() && task.loose_restrictions && restricted {
            valid = self
                .workers
                .iter()
                .filter(|(_, w)| w.status == WorkerStatus::Running && fits_resources(w))
                .map(|(id, _)| *id)
                .collect();
        }
        valid.sort();
        Some(valid)
    }

    /// The worker to run a ready task, or `None` (-> `no-worker`).
    ///
    /// Like Dask's `decide_worker_non_rootish`, the cost stays independent of the cluster
    /// size: the objective is evaluated over the holders of the task's dependencies (plus
    /// an idle worker or two), or over a pool of fewer than [`SMALL_POOL`] workers; a
    /// larger pool is served round robin.
    pub(crate) fn decide_worker(&mut self, id: TaskId) -> Option<WorkerId> {
        if self.expect_task(id).actor {
            return self.decide_actor_worker(id);
        }
        if let Some(valid) = self.valid_workers(id) {
            if valid.len() <= 1 {
                return valid.first().copied();
            }
            let (local, total) = self.dependency_bytes(id);
            return self.best_of(&valid, &local, total);
        }
        let (local, total) = self.dependency_bytes(id);
        let mut holders: Vec<WorkerId> = local
            .keys()
            .copied()
            .filter(|w| self.running.contains(*w))
            .collect();
        self.round_robin = self.round_robin.wrapping_add(1);
        let rr = self.round_robin;
        let pool = self.idle_or_running();
        if pool.is_empty() {
            return None;
        }
        if holders.is_empty() {
            if pool.len() >= SMALL_POOL {
                return Some(pool[rr % pool.len()]);
            }
            let pool = pool.to_vec();
            return self.best_of(&pool, &local, total);
        }
        // Idle workers compete with the holders so a chain of tasks does not pile onto one
        // worker and wait for stealing to spread it; any idle worker is as good as another
        // here.
        let idle = self.idle.as_slice();
        for i in 0..idle.len().min(IDLE_SAMPLE) {
            let w = idle[(rr + i) % idle.len()];
            if !holders.contains(&w) {
                holders.push(w);
            }
        }
        holders.sort();
        self.best_of(&holders, &local, total)
    }

    /// The workers a task without dependencies may go to: the idle ones, else every running
    /// one (Dask's `self.idle.values() if self.idle else self.running`).
    pub(crate) fn idle_or_running(&self) -> &[WorkerId] {
        if self.idle.is_empty() {
            self.running.as_slice()
        } else {
            self.idle.as_slice()
        }
    }

    /// An actor goes to the allowed worker with the fewest actors, then the earliest start,
    /// then the fewest stored bytes (`worker_objective` with `ts.actor`, scheduler.py:3299;
    /// every worker is a candidate, scheduler.py:9007).
    fn decide_actor_worker(&self, id: TaskId) -> Option<WorkerId> {
        let candidates = self
            .valid_workers(id)
            .unwrap_or_else(|| self.running.as_slice().to_vec());
        let (local, total) = self.dependency_bytes(id);
        let objective = |w: &WorkerId| {
            let ws = &self.workers[w];
            let held = local.get(w).copied().unwrap_or(0);
            let start = ws.occupancy / f64::from(ws.nthreads.max(1))
                + (total - held).max(0) as f64 / self.config.bandwidth;
            (ws.actors.len(), start, ws.nbytes, *w)
        };
        candidates
            .iter()
            .filter(|w| self.workers.contains_key(w))
            .min_by(|a, b| {
                objective(a)
                    .partial_cmp(&objective(b))
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .copied()
    }

    /// Bytes of the task's dependencies already on each worker that holds one, and the
    /// bytes of all its dependencies.
    pub(crate) fn dependency_bytes(&self, id: TaskId) -> (FxHashMap<WorkerId, i64>, i64) {
        let mut local: FxHashMap<WorkerId, i64> = FxHashMap::default();
        let mut total: i64 = 0;
        for &d in &self.expect_task(id).dependencies {
            let dts = self.expect_task(d);
            total += dts.nbytes;
            for w in &dts.who_has {
                *local.entry(*w).or_default() += dts.nbytes;
            }
        }
        (local, total)
    }

    /// The candidate with the earliest estimated start: queued work per thread plus the
    /// time to fetch the dependencies it lacks (`local`, `total`: see
    /// [`Self::dependency_bytes`]). `candidates` must be distinct.
    pub(crate) fn best_of(
        &mut self,
        candidates: &[WorkerId],
        local: &FxHashMap<WorkerId, i64>,
        total: i64,
    ) -> Option<WorkerId> {
        if candidates.len() <= 1 {
            return candidates.first().copied();
        }
        let n = candidates.len();
        self.round_robin = self.round_robin.wrapping_add(1);
        let start = self.round_robin % n;
        let mut best: Option<(f64, i64, WorkerId)> = None;
        for i in 0..n {
            let w = candidates[(start + i) % n];
            let Some(ws) = self.workers.get(&w) else {
                continue;
            };
            let held = local.get(&w).copied().unwrap_or(0);
            let stack = ws.occupancy / ws.nthreads.max(1) as f64;
            let transfer = (total - held).max(0) as f64 / self.config.bandwidth;
            let cost = stack + transfer;
            // ties: fewer processing tasks per thread, then fewer stored bytes
            let better = match best {
                None => true,
                Some((c, nb, bw)) => {
                    let bws = &self.workers[&bw];
                    let load = |x: &crate::state::Worker| {
                        x.processing.len() as f64 / x.nthreads.max(1) as f64
                    };
                    cost < c - 1e-12
                        || ((cost - c).abs() <= 1e-12
                            && (load(ws) < load(bws) || (load(ws) == load(bws) && ws.nbytes < nb)))
                }
            };
            if better {
                best = Some((cost, ws.nbytes, w));
            }
        }
        best.map(|(_, _, w)| w)
            .or_else(|| candidates.first().copied())
    }
}

/// Below this many candidates the objective is evaluated on each (Dask uses 20 too).
pub(crate) const SMALL_POOL: usize = 20;

/// Idle workers added to the holders of a task's dependencies.
const IDLE_SAMPLE: usize = 2;
