//! Root-task queuing (`distributed.scheduler.worker-saturation`, scheduler.py:2309-2360,
//! 3103-3122, 5361-5400).
//!
//! A graph's root tasks (large groups with few dependencies, such as the chunks an array
//! is made of) are sent to a worker only while it runs fewer than
//! `ceil(saturation * nthreads)` tasks; the rest wait in the scheduler's `queued` set, by
//! priority. Workers then finish the downstream tasks of the roots they hold before they
//! load new roots, so a huge graph does not flood their memory; a worker that joins
//! later takes from the same queue.

use crate::decide::SMALL_POOL;
use crate::state::{SchedulerState, Worker};
use crate::types::{TaskId, TaskStatus, WorkerId};
use std::sync::Arc;

/// `distributed.scheduler.rootish-taskgroup` and `rootish-taskgroup-dependencies`.
const ROOTISH_TG_THRESHOLD: usize = 5;
const ROOTISH_TG_DEPENDENCIES_THRESHOLD: usize = 5;

impl SchedulerState {
    /// Whether root-task queuing is on (a finite `worker-saturation`).
    pub(crate) fn queuing(&self) -> bool {
        self.config.worker_saturation.is_finite()
    }

    /// `is_rootish`: part of a group much larger than the cluster, with few dependencies.
    pub(crate) fn is_rootish(&self, id: TaskId) -> bool {
        let ts = self.expect_task(id);
        if !ts.resource_restrictions.is_empty()
            || !ts.worker_restrictions.is_empty()
            || !ts.host_restrictions.is_empty()
            || ts.actor
        {
            return false;
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
    /// (long-running) task holds no slot.
    pub(crate) fn slots_available(&self, ws: &Worker) -> i64 {
        let cap = (self.config.worker_saturation * f64::from(ws.nthreads)).ceil();
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

    /// `stimulus_queue_slots_maybe_opened`: after a stimulus that may have freed slots
    /// (a task left a worker, a worker arrived or resumed), move the front of the queue
    /// to the workers with room.
    pub(crate) fn queue_slots_maybe_opened(&mut self) {
        if !std::mem::take(&mut self.slots_maybe_opened) || self.queued.is_empty() {
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
