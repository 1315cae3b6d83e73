//! Cluster administration that spans other processes (scheduler.py:6423-6640, 7410-7700,
//! 8632-8660): restarting workers through their nannies (`Client.restart`,
//! `restart_workers`, the worker-ttl check), and `retire_workers` (unique data moved off
//! first). The nanny calls are jobs; waiting for workers to come back and for data to move
//! are timers, so the state task never waits on a peer.

use super::Scheduler;
use crate::error::{RequestError, RestartTimeout};
use crate::event::{AfterKill, Job, Replier, Timer};
use crate::messages::{ToClientMsg, ToWorkerMsg};
use crate::outbox::Outbox;
use crate::translate::reply;
use rask_core::{Stimulus, TaskId, TaskStatus, WorkerId, WorkerStatus};
use rask_protocol::{Key, Value};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long retiring workers may take to hand over their data.
const RETIRE_TIMEOUT: Duration = Duration::from_secs(300);

/// How often a retirement looks at its workers' data again.
const RETIRE_STEP: Duration = Duration::from_millis(100);

/// How long a requested copy may take before it is asked for again.
const REASK_AFTER: f64 = 2.0;

/// The reason of the `close` a removed worker is sent (`remove_worker(close=True)`).
pub(super) const REMOVE_WORKER: &str = "scheduler-remove-worker";

/// Administration in progress.
#[derive(Default)]
pub(super) struct Admin {
    /// restarts waiting for their workers to come back, by id
    waits: FxHashMap<u64, WorkersBack>,
    /// `retire_workers` calls in progress, by id
    retirements: FxHashMap<u64, Retirement>,
}

/// A restart waiting until as many workers as before are connected.
struct WorkersBack {
    n_workers: usize,
    restarted: usize,
    /// how many of them had no nanny and were only shut down
    no_nanny: usize,
    timeout: Duration,
    reply: Replier,
    /// `restart_workers`' reply, once the workers are back (`restart`'s is None)
    answer: Value,
    /// `restart_workers(on_error="return")`: (worker, nanny) of the workers killed through
    /// their nanny; when time runs out, the reply is still `answer`, with those whose nanny
    /// brought no worker back marked "timed out" (an error otherwise)
    report: Option<Vec<(Arc<str>, Arc<str>)>>,
}

/// One `retire_workers` call.
struct Retirement {
    /// (worker, address, its identity when retirement began)
    chosen: Vec<(WorkerId, Arc<str>, Value)>,
    /// when copies were last asked for, per worker
    last_ask: Vec<f64>,
    done: Vec<bool>,
    close: bool,
    remove: bool,
    stimulus_id: Arc<str>,
    deadline: f64,
    /// `{address: identity}` of the retired workers
    retired: Vec<(Arc<str>, Value)>,
    reply: Replier,
}

/// What retiring one worker is waiting for.
enum Move {
    /// nothing unique left on it
    Done,
    /// its unique results have nowhere to go
    Stuck,
    /// copies were just requested
    Asked,
    /// copies requested earlier are on their way
    Pending,
}

impl Scheduler {
    // ---- restart -----------------------------------------------------------------------------

    /// `Scheduler.restart`: forget every task, tell the clients, restart every worker, and
    /// (by default) wait until as many workers are back.
    pub(super) fn restart(
        &mut self,
        now: f64,
        timeout: Duration,
        wait: bool,
        sid: Arc<str>,
        to: Replier,
        out: &mut dyn Outbox,
    ) {
        tracing::info!("Restarting workers and releasing all keys (stimulus_id={sid})");
        self.stimulus(now, Stimulus::ClearTasks, out);
        self.host_event(|_| crate::translate::host::restart());
        self.with_ext(now, out, |ext, cx| {
            for e in ext.all() {
                e.on_restart(cx);
            }
        });
        for c in self.clients.keys() {
            out.to_client(*c, ToClientMsg::Restart);
        }
        let n_workers = self.workers.len();
        self.restart_workers(now, None, timeout, sid, out, |removed, _| {
            AfterKill::Restart {
                reply: to,
                n_workers,
                wait,
                timeout,
                removed,
            }
        });
    }

    /// `Scheduler.restart_workers {workers, timeout, on_error}` → `{address: status}`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn restart_workers_rpc(
        &mut self,
        now: f64,
        only: Option<Vec<Arc<str>>>,
        timeout: Duration,
        raise: bool,
        sid: Arc<str>,
        to: Replier,
        out: &mut dyn Outbox,
    ) {
        let n_workers = self.workers.len();
        self.restart_workers(now, only, timeout, sid, out, |removed, nannies| {
            AfterKill::RestartWorkers {
                reply: to,
                n_workers,
                raise,
                timeout,
                removed,
                nannies,
            }
        });
    }

    /// Workers with a nanny are killed through it (the nanny starts a new one: a job);
    /// workers without one are closed and removed now. `then` gets the workers removed and
    /// the (worker, nanny) pairs killed.
    fn restart_workers(
        &mut self,
        now: f64,
        only: Option<Vec<Arc<str>>>,
        timeout: Duration,
        sid: Arc<str>,
        out: &mut dyn Outbox,
        then: impl FnOnce(Vec<Arc<str>>, Vec<(Arc<str>, Arc<str>)>) -> AfterKill,
    ) {
        let mut ids: Vec<(WorkerId, Arc<str>)> = self
            .core
            .workers()
            .filter(|(_, w)| only.as_ref().is_none_or(|o| o.contains(&w.address)))
            .map(|(id, w)| (id, w.address.clone()))
            .collect();
        ids.sort();
        let mut nannies: Vec<(Arc<str>, Arc<str>)> = Vec::new();
        let mut removed: Vec<Arc<str>> = Vec::new();
        for (id, address) in ids {
            let nanny = self
                .workers
                .get(&id)
                .and_then(|i| i.registration.nanny.as_str().map(Arc::from));
            match nanny {
                Some(nanny) => nannies.push((address, nanny)),
                None => {
                    self.close_and_remove(now, id, &sid, out);
                    removed.push(address);
                }
            }
        }
        if !removed.is_empty() {
            tracing::warn!(
                "Workers {removed:?} do not use a nanny and will be terminated without \
                 restarting them"
            );
        }
        if nannies.is_empty() {
            return self.killed(now, Vec::new(), then(removed, Vec::new()), out);
        }
        let then = then(removed, nannies.clone());
        out.start(Job::KillNannies {
            nannies,
            timeout,
            stimulus_id: sid,
            then,
        });
    }

    /// The nannies answered (or did not in time): workers whose nanny failed are removed;
    /// then the restart waits for workers to come back, or is done.
    pub(super) fn killed(
        &mut self,
        now: f64,
        outcomes: Vec<(Arc<str>, bool)>,
        then: AfterKill,
        out: &mut dyn Outbox,
    ) {
        let bad: Vec<Arc<str>> = outcomes
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(a, _)| a.clone())
            .collect();
        if !bad.is_empty() {
            tracing::error!("Workers {bad:?} did not shut down in time; force closing");
            let sid: Arc<str> = format!("restart-force-close-{now}").into();
            for a in &bad {
                if let Some(id) = self.core.worker_id(a) {
                    self.close_and_remove(now, id, &sid, out);
                }
            }
        }
        match then {
            AfterKill::WorkerTtl => {}
            AfterKill::Restart {
                reply: to,
                n_workers,
                wait,
                timeout,
                removed,
            } => {
                let restarted = removed.len() + outcomes.len();
                if !bad.is_empty() {
                    let e = RestartTimeout::NotShutDown {
                        bad,
                        of: outcomes.len(),
                        timeout,
                    };
                    return out.reply(to, Err(e.into()));
                }
                self.log_restart_workers(now, &removed, &outcomes, out);
                if !wait {
                    return out.reply(to, Ok(Value::Nil));
                }
                let waiting = WorkersBack {
                    n_workers,
                    restarted,
                    no_nanny: removed.len(),
                    timeout,
                    reply: to,
                    answer: Value::Nil,
                    report: None,
                };
                self.wait_for_workers(waiting, out);
            }
            AfterKill::RestartWorkers {
                reply: to,
                n_workers,
                raise,
                timeout,
                removed,
                nannies,
            } => {
                let restarted = removed.len() + outcomes.len();
                if raise && !bad.is_empty() {
                    let e = RestartTimeout::NotShutDown {
                        bad,
                        of: outcomes.len(),
                        timeout,
                    };
                    return out.reply(to, Err(e.into()));
                }
                self.log_restart_workers(now, &removed, &outcomes, out);
                let no_nanny = removed.len();
                let mut statuses: Vec<(Arc<str>, Value)> = removed
                    .into_iter()
                    .map(|a| (a, Value::from("removed")))
                    .collect();
                statuses.extend(outcomes.into_iter().map(|(a, ok)| {
                    let st = if ok { "OK" } else { "timed out" };
                    (a, Value::from(st))
                }));
                let waiting = WorkersBack {
                    n_workers,
                    restarted,
                    no_nanny,
                    timeout,
                    reply: to,
                    answer: reply::by_address(statuses),
                    report: (!raise).then_some(nannies),
                };
                self.wait_for_workers(waiting, out);
            }
        }
    }

    /// `{"action": "restart-workers", "workers": [...], "client": None}` on `all`
    /// (scheduler.py:6606-6609; `Client.restart` and `restart_workers` pass no client).
    fn log_restart_workers(
        &mut self,
        now: f64,
        removed: &[Arc<str>],
        killed: &[(Arc<str>, bool)],
        out: &mut dyn Outbox,
    ) {
        let workers = removed
            .iter()
            .chain(killed.iter().map(|(a, _)| a))
            .map(|a| Value::Str(a.clone()))
            .collect();
        let event = Value::map([
            ("action", Value::from("restart-workers")),
            ("workers", Value::Array(workers)),
            ("client", Value::Nil),
        ]);
        self.log_event(now, &[&Arc::from("all")], event, out);
    }

    /// Answers once as many workers as before are connected again (now, when one
    /// arrives, or when its `timeout` passes).
    fn wait_for_workers(&mut self, w: WorkersBack, out: &mut dyn Outbox) {
        if self.workers.len() >= w.n_workers {
            return out.reply(w.reply, Ok(w.answer));
        }
        self.next_id += 1;
        let id = self.next_id;
        let timeout = w.timeout;
        self.admin.waits.insert(id, w);
        out.after(timeout, Timer::WorkersBack(id));
    }

    /// A worker registered: restarts waiting for it may be done.
    pub(super) fn worker_arrived(&mut self, _now: f64, out: &mut dyn Outbox) {
        let have = self.workers.len();
        let ready: Vec<u64> = self
            .admin
            .waits
            .iter()
            .filter(|(_, w)| have >= w.n_workers)
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            if let Some(w) = self.admin.waits.remove(&id) {
                out.reply(w.reply, Ok(w.answer));
            }
        }
    }

    /// A restart's wait for its workers ran out: an error, or for
    /// `restart_workers(on_error="return")` the statuses, each worker whose nanny brought
    /// none back "timed out" (scheduler.py:6634-6640).
    pub(super) fn workers_back_deadline(&mut self, _now: f64, id: u64, out: &mut dyn Outbox) {
        let Some(mut w) = self.admin.waits.remove(&id) else {
            return;
        };
        if let Some(nannies) = &w.report {
            let back: Vec<&str> = self
                .workers
                .values()
                .filter_map(|i| i.registration.nanny.as_str())
                .collect();
            for (worker, nanny) in nannies {
                if !back.contains(&&**nanny) {
                    w.answer.set(worker, Value::from("timed out"));
                }
            }
            return out.reply(w.reply, Ok(w.answer));
        }
        let e = RestartTimeout::NotBack {
            restarted: w.restarted,
            missing: w.n_workers.saturating_sub(self.workers.len()),
            timeout: w.timeout,
            no_nanny: w.no_nanny,
        };
        out.reply(w.reply, Err(e.into()));
    }

    // ---- worker-ttl --------------------------------------------------------------------------

    /// `check_worker_ttl`: workers that have not sent a heartbeat for `ttl` (at least ten
    /// heartbeat intervals) are restarted through their nanny, or removed.
    pub(super) fn check_worker_ttl(&mut self, now: f64, ttl: Duration, out: &mut dyn Outbox) {
        let ttl = ttl.as_secs_f64().max(10.0 * self.heartbeat_interval());
        let mut stale: Vec<Arc<str>> = Vec::new();
        for (id, info) in self.workers.iter_mut() {
            let silent = now - info.last_seen;
            let Some(w) = self.core.worker(*id) else {
                continue;
            };
            if silent > ttl {
                let what = if info.registration.nanny.is_nil() {
                    "removing"
                } else {
                    "attempting restart"
                };
                tracing::warn!(
                    "Worker failed to heartbeat for {silent:.0}s; {what}: {}",
                    w.address
                );
                stale.push(w.address.clone());
                // not again until the restart below had its chance
                info.last_seen = now;
            }
        }
        if stale.is_empty() {
            return;
        }
        let event = reply::worker_ttl_event(&stale, ttl);
        self.with_ext(now, out, |ext, cx| {
            ext.events.publish(cx, &[Arc::from("scheduler")], event)
        });
        let sid: Arc<str> = format!("check-worker-ttl-{now}").into();
        let timeout = self.config.connect_timeout;
        self.restart_workers(now, Some(stale), timeout, sid, out, |_, _| {
            AfterKill::WorkerTtl
        });
    }

    // ---- retire_workers ----------------------------------------------------------------------

    /// `retire_workers {workers | names | n, close_workers, remove}` (scheduler.py:7410):
    /// each worker stops taking tasks, its unique results are copied to other running
    /// workers (`acquire-replicas`), then it is removed (and closed if asked). A worker whose
    /// data cannot go anywhere is not retired. Answers `{address: worker info}` of the
    /// retired workers.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn retire_workers(
        &mut self,
        now: f64,
        addresses: Option<Vec<Arc<str>>>,
        names: Option<Vec<Arc<str>>>,
        n: Option<i64>,
        close: bool,
        remove: bool,
        sid: Arc<str>,
        to: Replier,
        out: &mut dyn Outbox,
    ) {
        let mut chosen: Vec<(WorkerId, Arc<str>, Value)> = self
            .core
            .workers()
            .filter(|(_, w)| {
                let by_addr = addresses.as_ref().is_some_and(|a| a.contains(&w.address));
                let by_name = names.as_ref().is_some_and(|n| n.contains(&w.name));
                by_addr || by_name || (addresses.is_none() && names.is_none())
            })
            .map(|(id, w)| (id, w.address.clone(), self.worker_identity(id)))
            .collect();
        chosen.sort_by(|a, b| a.1.cmp(&b.1));
        if addresses.is_none() && names.is_none() {
            // `workers_to_close(n)`: without a selection, only `n` workers (the ones holding
            // least data) are retired; with neither, none
            let n = n.unwrap_or(0).max(0) as usize;
            chosen.sort_by_key(|(id, _, _)| self.core.worker(*id).map_or(0, |w| w.nbytes));
            chosen.truncate(n);
        }
        for (id, _, _) in &chosen {
            self.set_status(now, *id, WorkerStatus::ClosingGracefully, out);
        }
        self.next_id += 1;
        let id = self.next_id;
        let k = chosen.len();
        self.admin.retirements.insert(
            id,
            Retirement {
                chosen,
                last_ask: vec![f64::NEG_INFINITY; k],
                done: vec![false; k],
                close,
                remove,
                stimulus_id: sid,
                deadline: now + RETIRE_TIMEOUT.as_secs_f64(),
                retired: Vec::new(),
                reply: to,
            },
        );
        self.retire_step(now, id, out);
    }

    /// One step of a retirement: each worker still retiring has its unique data copied,
    /// or is removed once it holds none.
    pub(super) fn retire_step(&mut self, now: f64, id: u64, out: &mut dyn Outbox) {
        let Some(mut r) = self.admin.retirements.remove(&id) else {
            return;
        };
        let retiring: Vec<WorkerId> = r.chosen.iter().map(|(w, _, _)| *w).collect();
        let mut waiting = false;
        for i in 0..r.chosen.len() {
            if r.done[i] {
                continue;
            }
            let (w, address, info) = r.chosen[i].clone();
            match self.move_unique_data(now, w, &retiring, r.last_ask[i], out) {
                Move::Done => {
                    r.done[i] = true;
                    // `remove_worker(close=...)`, or just `close_worker` with remove=False
                    // (the worker then stays listed, taking no tasks, until it leaves)
                    if r.remove {
                        if r.close {
                            let reason = REMOVE_WORKER.into();
                            out.to_worker(w, rask_core::ToWorker::Close { reason }.into());
                        }
                        self.remove_worker(now, w, true, r.stimulus_id.clone(), out);
                    } else if r.close {
                        let reason = "scheduler-close-worker".into();
                        out.to_worker(w, rask_core::ToWorker::Close { reason }.into());
                    }
                    tracing::info!("Retired worker {address}");
                    r.retired.push((address, info));
                }
                Move::Stuck => {
                    r.done[i] = true;
                    tracing::warn!(
                        "Could not retire worker {address}: unique data could not be moved \
                         to any other worker"
                    );
                    self.set_status(now, w, WorkerStatus::Running, out);
                }
                Move::Asked => {
                    r.last_ask[i] = now;
                    waiting = true;
                }
                Move::Pending => waiting = true,
            }
        }
        if !waiting {
            return out.reply(r.reply, Ok(reply::by_address(r.retired)));
        }
        if now >= r.deadline {
            let e =
                RequestError::Timeout(RETIRE_TIMEOUT, "retiring workers to hand over their data");
            return out.reply(r.reply, Err(e));
        }
        self.admin.retirements.insert(id, r);
        out.after(RETIRE_STEP, Timer::Retire(id));
    }

    /// Asks other running workers for copies of the results only `w` holds (the
    /// `RetireWorker` policy of the active memory manager, reduced to its essence).
    fn move_unique_data(
        &mut self,
        now: f64,
        w: WorkerId,
        retiring: &[WorkerId],
        asked: f64,
        out: &mut dyn Outbox,
    ) -> Move {
        let Some(ws) = self.core.worker(w) else {
            return Move::Done; // it left on its own
        };
        let unique: Vec<TaskId> = ws
            .has_what
            .iter()
            .copied()
            .filter(|t| {
                self.core.task_by_id(*t).is_some_and(|ts| {
                    ts.state == TaskStatus::Memory && ts.who_has.len() == 1 && ts.is_needed()
                })
            })
            .collect();
        if unique.is_empty() {
            return Move::Done;
        }
        if now - asked < REASK_AFTER {
            return Move::Pending;
        }
        let mut targets: Vec<(i64, WorkerId)> = self
            .core
            .workers()
            .filter(|(id, x)| x.status == WorkerStatus::Running && !retiring.contains(id))
            .map(|(id, x)| (x.nbytes, id))
            .collect();
        if targets.is_empty() {
            return Move::Stuck;
        }
        targets.sort();
        let source = ws.address.clone();
        // (who_has, nbytes) per target, spread round robin
        type Entries = (Vec<(Key, Vec<Arc<str>>)>, Vec<(Key, i64)>);
        let mut per_target: Vec<Entries> = vec![Default::default(); targets.len()];
        for (i, t) in unique.iter().enumerate() {
            if let Some(ts) = self.core.task_by_id(*t) {
                let (who_has, nbytes) = &mut per_target[i % targets.len()];
                who_has.push((ts.key.clone(), vec![source.clone()]));
                nbytes.push((ts.key.clone(), ts.nbytes));
            }
        }
        let sid: Arc<str> = format!("retire-workers-{now}").into();
        for ((_, target), (who_has, nbytes)) in targets.iter().zip(per_target) {
            if who_has.is_empty() {
                continue;
            }
            out.to_worker(
                *target,
                ToWorkerMsg::AcquireReplicas {
                    who_has,
                    nbytes,
                    stimulus_id: sid.clone(),
                },
            );
        }
        Move::Asked
    }

    /// A status the scheduler decides: the worker is told (`worker-status-change`) and the
    /// core, which owns worker status, changes it.
    fn set_status(&mut self, now: f64, w: WorkerId, status: WorkerStatus, out: &mut dyn Outbox) {
        out.to_worker(
            w,
            ToWorkerMsg::StatusChange {
                status,
                stimulus_id: format!("retire-workers-{now}").into(),
            },
        );
        self.stimulus(now, Stimulus::WorkerStatusChange { worker: w, status }, out);
    }
}
