//! Root-task queuing (`distributed.scheduler.worker-saturation`, scheduler.py:2309-2360,
//! 3103-3122, 5361-5400).
//!
//! A graph's root tasks (large groups with few dependencies, such as the chunks an array
//! is made of) are sent to a worker only while it runs fewer than
//! `ceil(saturation * nthreads)` tasks; the rest wait in the scheduler's `queued` set, by
//! priority. Workers then finish the downstream tasks of the roots they hold before they
//! load new roots, so a huge graph does not flood their memory; a worker that joins
//! later takes from the same queue.
//!
//! Unlike Dask, a worker may hold more roots while they are short: with Dask's cap a
//! one-thread worker holds two tasks, so each 100 µs task waits a whole round trip
//! (`task-finished` to the scheduler, the next `compute-task` back) and the worker idles
//! most of the time. Once a root of the queued kind has finished, a worker may hold
//! `round trip / mean duration` more per thread, at most [`MAX_EXTRA_ROOTS_PER_THREAD`],
//! and only as many as [`EXTRA_ROOT_BYTES_PER_THREAD`] of their results fit in: what
//! queuing protects, memory, stays bounded; roots that take longer than a round trip are
//! queued exactly as Dask queues them. The allowance goes back to none when the queue
//! empties, so the next graph's roots start at Dask's cap until one of them finishes.

use crate::decide::SMALL_POOL;
use crate::state::{SchedulerState, Worker};
use crate::types::{TaskId, TaskStatus, WorkerId};
use std::sync::Arc;

/// What a queued root waits between a thread finishing a task and its next task arriving:
/// the worker batches `task-finished` for up to 2 ms (distributed/worker.py:641), then
/// the scheduler answers and the worker starts the task. An estimate, not a measurement.
const ROUND_TRIP_S: f64 = 0.005;
/// The most roots a worker holds per thread beyond `worker-saturation`.
const MAX_EXTRA_ROOTS_PER_THREAD: u32 = 32;
/// The most memory the results of those extra roots may take, per thread.
const EXTRA_ROOT_BYTES_PER_THREAD: f64 = 8.0 * 1024.0 * 1024.0;

/// `distributed.scheduler.rootish-taskgroup` and `rootish-taskgroup-dependencies`.
const ROOTISH_TG_THRESHOLD: usize = 5;
const ROOTISH_TG_DEPENDENCIES_THRESHOLD: usize = 5;

impl SchedulerState {
    /// Whether root-task queuing is on (a finite `worker-saturation`).
    pub(crate) fn queuing(&self) -> bool {
        self.config.worker_saturation.is_finite()
    }

    /// `is_rootish`: a data producer, or part of a group much larger than the cluster, with
    /// few dependencies.
    pub(crate) fn is_rootish(&self, id: TaskId) -> bool {
        let ts = self.expect_task(id);
        if ts.is_restricted() || ts.actor {
            return false;
        }
        if ts.data_producer {
            return true;
        }
        let Some(g) = self.groups.get(&ts.group) else {
            return false;
        };
        g.size as u64 > self.total_nthreads * 2
            && g.dependencies.len() < ROOTISH_TG_THRESHOLD
            && g.dependencies
                .iter()
                .map(|d| self.groups.get(d).map_or(0, |g| g.size))
                .sum::<usize>()
                < ROOTISH_TG_DEPENDENCIES_THRESHOLD
    }

    /// Records that `id`'s group depends on `dep`'s (`TaskGroup.add_dependency`).
    pub(crate) fn add_group_dependency(&mut self, id: TaskId, dep: TaskId) {
        let (g, dg) = (&self.expect_task(id).group, &self.expect_task(dep).group);
        if g == dg {
            return;
        }
        let dg = dg.clone();
        let g = g.clone();
        if let Some(group) = self.groups.get_mut(&g) {
            group.dependencies.insert(dg);
        }
    }

    /// `_task_slots_available`: tasks the worker may still be sent; a seceded
    /// (long-running) task holds no slot. Plus the extra roots short tasks allow.
    pub(crate) fn slots_available(&self, ws: &Worker) -> i64 {
        let cap = (self.config.worker_saturation * f64::from(ws.nthreads)).ceil()
            + f64::from(self.extra_roots_per_thread) * f64::from(ws.nthreads);
        let busy = ws.processing.len().saturating_sub(ws.long_running);
        // an infinite saturation (no queuing) saturates to i64::MAX
        (cap as i64).max(1) - busy as i64
    }

    /// `decide_worker_rootish_queuing_enabled`: the least busy running worker with a free
    /// slot, or `None` (the task waits in the queue). Like `decide_worker`, a pool of
    /// [`SMALL_POOL`] or more is served round robin, so the cost per task does not grow with
    /// the cluster.
    pub(crate) fn decide_worker_rootish(&mut self) -> Option<WorkerId> {
        let pool = self.open_slots.as_slice();
        if pool.len() >= SMALL_POOL {
            self.round_robin = self.round_robin.wrapping_add(1);
            return Some(pool[self.round_robin % pool.len()]);
        }
        let mut best: Option<(f64, WorkerId)> = None;
        for &w in pool {
            let ws = &self.workers[&w];
            let load = ws.processing.len() as f64 / f64::from(ws.nthreads.max(1));
            if best.is_none_or(|(l, bw)| load < l || (load == l && w < bw)) {
                best = Some((load, w));
            }
        }
        best.map(|(_, w)| w)
    }

    /// `decide_worker_rootish_queuing_disabled` (`worker-saturation: inf`): called on a
    /// group's root-ish tasks in priority order, it gives one worker a run of them, the
    /// group's share of that worker's threads, so that neighbours, which the tasks after
    /// them combine, are made in one place. `None` without a running worker.
    pub(crate) fn decide_worker_rootish_queuing_disabled(
        &mut self,
        id: TaskId,
    ) -> Option<WorkerId> {
        let group = self.expect_task(id).group.clone();
        let g = self.groups.get(&group)?;
        let (last, left, size) = (g.last_worker, g.last_worker_tasks_left, g.size);
        let (ws, new_run) = match last {
            // Python's truth: a run that went below zero (fewer tasks than threads) goes on
            Some(w) if left != 0 && self.running.contains(w) => (w, None),
            _ => {
                let pool = self.idle_or_running().to_vec();
                let (local, total) = self.dependency_bytes(id);
                let w = self.best_of(&pool, &local, total)?;
                let share = size as f64 / self.total_nthreads as f64;
                let run = (share * f64::from(self.workers[&w].nthreads)).floor() as i64;
                (w, Some(run))
            }
        };
        let g = self.groups.get_mut(&group)?;
        if let Some(run) = new_run {
            g.last_worker_tasks_left = run;
        }
        // cleared on the group's last task, so a later batch of it picks afresh
        g.last_worker = (g.runnable > 1).then_some(ws);
        g.last_worker_tasks_left -= 1;
        Some(ws)
    }

    /// A root-ish task finished in `nbytes`, its prefix's tasks taking `mean` seconds: how
    /// many extra roots per thread its kind allows (`mean` against [`ROUND_TRIP_S`], its
    /// size against [`EXTRA_ROOT_BYTES_PER_THREAD`]), rounded down to a power of two so
    /// that the allowance, and with it every worker's slots, changes rarely. The caller
    /// takes the task off its worker next, which has the queue looked at.
    pub(crate) fn root_finished(&mut self, mean: f64, nbytes: i64) {
        let by_time = if mean > 0.0 {
            ROUND_TRIP_S / mean
        } else {
            f64::INFINITY
        };
        let by_memory = EXTRA_ROOT_BYTES_PER_THREAD / (nbytes.max(1) as f64);
        let extra = by_time
            .min(by_memory)
            .min(f64::from(MAX_EXTRA_ROOTS_PER_THREAD))
            .floor() as u32;
        let extra = if extra == 0 { 0 } else { 1 << extra.ilog2() };
        self.set_extra_roots(extra);
    }

    /// Sets the allowance and puts each worker into or out of `open_slots` by it.
    fn set_extra_roots(&mut self, extra: u32) {
        if extra == self.extra_roots_per_thread {
            return;
        }
        self.extra_roots_per_thread = extra;
        let workers: Vec<WorkerId> = self.workers.keys().copied().collect();
        for w in workers {
            self.refresh_worker(w);
        }
    }

    /// `stimulus_queue_slots_maybe_opened`: after a stimulus that may have freed slots
    /// (a task left a worker, a worker arrived or resumed), move the front of the queue
    /// to the workers with room.
    pub(crate) fn queue_slots_maybe_opened(&mut self) {
        if !std::mem::take(&mut self.slots_maybe_opened) {
            return;
        }
        if self.queued.is_empty() {
            self.set_extra_roots(0);
            return;
        }
        let sid: Arc<str> = Arc::from("queue-slots-opened");
        while let Some(&(_, id)) = self.queued.first() {
            if self.open_slots.is_empty() {
                break;
            }
            self.transitions(vec![(id, TaskStatus::Processing)], &sid);
            debug_assert_ne!(self.expect_task(id).state, TaskStatus::Queued);
        }
    }
}
