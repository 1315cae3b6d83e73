//! Work stealing (`distributed/stealing.py`), simplified.
//!
//! Every `work-stealing-interval` the server sends [`Stimulus::Balance`]: while a running
//! worker has a free thread and another worker holds more tasks than threads, the scheduler
//! asks the busy one (`steal-request`) to give back a task it has not started, choosing one
//! that runs last there and whose inputs are cheap to move. The victim answers with the
//! task's state (`steal-response`); if it had not started it, the task goes to the thief.
//! Dask's cost levels are reduced to its two rules that matter: tiny tasks (< 5 ms) are not
//! worth a round trip, and the move must finish the task sooner.
//!
//! [`Stimulus::Balance`]: crate::Stimulus::Balance

use crate::command::{Command, ToWorker};
use crate::counters::COST_LEVELS;
use crate::state::{SchedulerState, Steal};
use crate::types::{TaskId, TaskStatus, WorkerId, WorkerStatus};
use std::sync::Arc;

/// Tasks shorter than this are not stolen (stealing.py: "don't steal tiny tasks").
const TINY_TASK: f64 = 0.005;

/// Tasks of a victim looked at per steal: enough to find a late one without walking a
/// worker's whole backlog on every balance.
const SAMPLE: usize = 64;

/// `stealing.LATENCY`: what any transfer costs, in seconds.
const LATENCY: f64 = 0.1;

/// The worker states in which a task can still be moved (`_WORKER_STATE_CONFIRM`).
const CONFIRM: [&str; 3] = ["ready", "constrained", "waiting"];

impl SchedulerState {
    /// `WorkStealing.balance`: pairs idle workers with overloaded ones and sends steal
    /// requests.
    pub(crate) fn balance(&mut self) {
        if !self.config.work_stealing || self.idle.is_empty() {
            return;
        }
        let mut thieves: Vec<(WorkerId, i64)> = Vec::new();
        for &w in self.idle.as_slice() {
            let ws = &self.workers[&w];
            let incoming = self.steals.values().filter(|s| s.thief == w).count() as i64;
            let free = i64::from(ws.nthreads) - ws.processing.len() as i64 - incoming;
            if free > 0 {
                thieves.push((w, free));
            }
        }
        // victims: more tasks than threads, most loaded first
        let mut victims: Vec<(WorkerId, i64)> = self
            .workers
            .iter()
            .filter_map(|(&w, ws)| {
                let outgoing = self.steals.values().filter(|s| s.victim == w).count() as i64;
                let excess = ws.processing.len() as i64 - outgoing - i64::from(ws.nthreads);
                (excess > 0).then_some((w, excess))
            })
            .collect();
        if thieves.is_empty() || victims.is_empty() {
            return;
        }
        victims.sort_by(|a, b| {
            let load = |w: WorkerId| {
                let ws = &self.workers[&w];
                ws.occupancy / f64::from(ws.nthreads.max(1))
            };
            load(b.0).total_cmp(&load(a.0)).then(a.0.cmp(&b.0))
        });
        thieves.sort();
        let sid: Arc<str> = Arc::from(format!("steal-{}", self.now));
        for (thief, mut free) in thieves {
            for victim in victims.iter_mut() {
                while free > 0 && victim.1 > 0 {
                    let Some(id) = self.steal_candidate(victim.0, thief) else {
                        break;
                    };
                    self.count_steal(id);
                    self.steals.insert(
                        id,
                        Steal {
                            victim: victim.0,
                            thief,
                            stimulus_id: sid.clone(),
                        },
                    );
                    let key = self.expect_task(id).key.clone();
                    self.emit(Command::Worker(
                        victim.0,
                        ToWorker::StealRequest {
                            key,
                            stimulus_id: sid.clone(),
                        },
                    ));
                    free -= 1;
                    victim.1 -= 1;
                }
            }
        }
    }

    /// The task of `victim` best moved to `thief`: among a sample, the one that runs last
    /// there (largest priority), if moving it lets it finish sooner.
    fn steal_candidate(&self, victim: WorkerId, thief: WorkerId) -> Option<TaskId> {
        let vws = &self.workers[&victim];
        let tws = &self.workers[&thief];
        let victim_wait = vws.occupancy / f64::from(vws.nthreads.max(1));
        let thief_wait = tws.occupancy / f64::from(tws.nthreads.max(1));
        let mut best: Option<(TaskId, [i64; 3])> = None;
        for &id in vws.processing.iter().take(SAMPLE) {
            let ts = self.expect_task(id);
            if self.steals.contains_key(&id) || ts.long_running || ts.is_restricted() {
                continue;
            }
            let duration = self.expected_duration(id);
            if duration < TINY_TASK {
                continue;
            }
            let missing: i64 = ts
                .dependencies
                .iter()
                .map(|d| self.expect_task(*d))
                .filter(|d| !d.who_has.contains(&thief))
                .map(|d| d.nbytes)
                .sum();
            let transfer = missing as f64 / self.config.bandwidth;
            // it would start on the victim after the victim's backlog; on the thief after
            // the thief's (short) backlog plus the transfer
            if thief_wait + transfer + duration >= victim_wait {
                continue;
            }
            if best.is_none_or(|(_, p)| ts.priority > p) {
                best = Some((id, ts.priority));
            }
        }
        best.map(|(id, _)| id)
    }

    /// Counts a steal request at its Dask cost level (`WorkStealing.steal_time_ratio`:
    /// the transfer of all its inputs against its compute time).
    fn count_steal(&mut self, id: TaskId) {
        let compute = self.expected_duration(id);
        let ts = self.expect_task(id);
        let level = if ts.dependencies.is_empty() {
            0
        } else {
            let nbytes: i64 = ts
                .dependencies
                .iter()
                .map(|d| self.expect_task(*d).nbytes.max(0))
                .sum();
            let ratio = (nbytes as f64 / self.config.bandwidth + LATENCY) / compute;
            // Dask would not steal above the last level; rask's simpler test may
            (ratio.log2() + 6.0)
                .round()
                .clamp(1.0, (COST_LEVELS - 1) as f64) as usize
        };
        let transfer = if level == 0 { 0.0 } else { LATENCY };
        self.steal_metrics.count[level] += 1;
        self.steal_metrics.cost[level] += compute + transfer;
    }

    /// `move_task_confirm`: the victim says what state the task was in when asked.
    pub(crate) fn steal_response(
        &mut self,
        worker: WorkerId,
        key: &rask_protocol::Key,
        state: Option<&str>,
        sid: &Arc<str>,
    ) {
        let Some(id) = self.task_id(key) else {
            return;
        };
        match self.steals.get(&id) {
            Some(s) if s.stimulus_id == *sid && s.victim == worker => {}
            _ => return, // stale, or the task left the victim meanwhile
        }
        let Some(steal) = self.steals.remove(&id) else {
            return;
        };
        if self.expect_task(id).state != TaskStatus::Processing
            || self.expect_task(id).processing_on != Some(steal.victim)
        {
            return;
        }
        let thief_running = self
            .workers
            .get(&steal.thief)
            .is_some_and(|w| w.status == WorkerStatus::Running);
        match state {
            // the victim no longer has it, or the thief is gone: schedule it afresh
            None | Some("released") => self.reschedule(id, sid),
            Some(s) if CONFIRM.contains(&s) && !thief_running => self.reschedule(id, sid),
            Some(s) if CONFIRM.contains(&s) => {
                // the victim released it; it runs on the thief with a new run id
                self.exit_processing(id);
                self.start_processing(id, steal.thief, sid);
            }
            // executing, in memory, ...: too late
            Some(_) => {}
        }
    }

    /// `_reschedule`: back to released, and from there wherever it fits now.
    fn reschedule(&mut self, id: TaskId, sid: &Arc<str>) {
        self.transitions(vec![(id, TaskStatus::Released)], sid);
    }
}
