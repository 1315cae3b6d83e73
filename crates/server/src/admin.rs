//! Cluster administration that spans the state task and other processes
//! (scheduler.py:6423-6640, 7410-7700, 8632-8660): restarting workers through their
//! nannies, `Client.restart`, `retire_workers` (unique data moved off first), and the
//! worker-ttl check.

use crate::error::ServerError;
use crate::runtime::{now, Handle, Scheduler};
use crate::translate::{opt_str, opt_str_list, stimulus_id};
use futures::future::join_all;
use rask_comm::{Comm, CommConfig};
use rask_core::{Stimulus, TaskStatus, WorkerId, WorkerStatus};
use rask_protocol::Value;
use std::sync::Arc;
use std::time::Duration;

/// Runs an admin op, or `None` if `op` is not one.
pub async fn dispatch(
    op: &str,
    msg: &Value,
    handle: &Handle,
    comm: &CommConfig,
) -> Option<Result<Value, ServerError>> {
    Some(match op {
        "restart" => restart(msg, handle, comm).await,
        "restart_workers" => restart_workers_rpc(msg, handle, comm).await,
        "retire_workers" => retire_workers(msg, handle).await,
        _ => return None,
    })
}

fn timeout_of(msg: &Value, default: f64) -> Duration {
    let secs = msg
        .get("timeout")
        .and_then(Value::as_f64)
        .unwrap_or(default);
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::from_secs(30))
}

/// `Scheduler.restart`: forget every task, tell the clients, restart every worker, and
/// (by default) wait until as many workers are back.
async fn restart(msg: &Value, handle: &Handle, comm: &CommConfig) -> Result<Value, ServerError> {
    let timeout = timeout_of(msg, 30.0);
    let wait = msg.get("wait_for_workers").is_none_or(Value::truthy);
    let sid = stimulus_id(msg, "restart");
    tracing::info!("Restarting workers and releasing all keys (stimulus_id={sid})");
    let n_workers = handle
        .call(|s| {
            s.stimulus(Stimulus::ClearTasks);
            crate::extensions::shuffle::on_restart(s);
            for c in s.clients.values() {
                let _ =
                    c.tx.send(Value::map([("op", Value::from("restart"))]).into());
            }
            s.workers.len()
        })
        .await?;
    let statuses = restart_workers(handle, None, timeout, &sid, comm).await?;
    let bad: Vec<&Arc<str>> = statuses
        .iter()
        .filter(|(_, st)| *st == "timed out")
        .map(|(a, _)| a)
        .collect();
    if !bad.is_empty() {
        return Err(ServerError::Worker(
            format!("{bad:?}"),
            format!(
                "{}/{} nanny worker(s) did not shut down within {timeout:?}",
                bad.len(),
                statuses.len()
            ),
        ));
    }
    if wait {
        wait_for_workers(handle, n_workers, timeout, statuses.len()).await?;
    }
    Ok(Value::Nil)
}

/// `Scheduler.restart_workers {workers, timeout, on_error}` → `{address: status}`.
async fn restart_workers_rpc(
    msg: &Value,
    handle: &Handle,
    comm: &CommConfig,
) -> Result<Value, ServerError> {
    let timeout = timeout_of(msg, 30.0);
    let sid = stimulus_id(msg, "restart-workers");
    let workers = opt_str_list(msg, "workers")?;
    let raise = opt_str(msg, "on_error")?.is_none_or(|e| &*e == "raise");
    let n_workers = handle.call(|s| s.workers.len()).await?;
    let statuses = restart_workers(handle, workers, timeout, &sid, comm).await?;
    if raise && statuses.iter().any(|(_, st)| *st == "timed out") {
        return Err(ServerError::Worker(
            "restart_workers".into(),
            format!("a nanny did not shut its worker down within {timeout:?}"),
        ));
    }
    wait_for_workers(handle, n_workers, timeout, statuses.len()).await?;
    Ok(Value::Map(
        statuses
            .into_iter()
            .map(|(a, st)| (Value::Str(a), Value::from(st)))
            .collect(),
    ))
}

/// Waits until `n` workers are connected again (`restart_workers`' last step).
async fn wait_for_workers(
    handle: &Handle,
    n: usize,
    timeout: Duration,
    restarted: usize,
) -> Result<(), ServerError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let have = handle.call(|s| s.workers.len()).await?;
        if have >= n {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ServerError::Worker(
                "restart".into(),
                format!(
                    "Waited for {restarted} worker(s) to reconnect after restarting but, after \
                     {timeout:?}, {} have not returned. Consider a longer timeout, or \
                     `wait_for_workers=False`.",
                    n - have
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `Scheduler.restart_workers`: workers with a nanny are killed through it (the nanny
/// starts a new one); workers without one are closed and removed. A nanny that does not
/// answer in time has its worker removed. Returns each worker's outcome: `"OK"`,
/// `"removed"` or `"timed out"`.
pub async fn restart_workers(
    handle: &Handle,
    only: Option<Vec<Arc<str>>>,
    timeout: Duration,
    sid: &Arc<str>,
    comm: &CommConfig,
) -> Result<Vec<(Arc<str>, &'static str)>, ServerError> {
    let sid2 = sid.clone();
    let (nannies, removed) = handle
        .call(move |s| {
            let mut nannies: Vec<(Arc<str>, Arc<str>)> = Vec::new();
            let mut removed: Vec<Arc<str>> = Vec::new();
            let mut ids: Vec<(WorkerId, Arc<str>)> = s
                .core
                .workers()
                .filter(|(_, w)| only.as_ref().is_none_or(|o| o.contains(&w.address)))
                .map(|(id, w)| (id, w.address.clone()))
                .collect();
            ids.sort();
            for (id, address) in ids {
                match s.workers.get(&id).and_then(|i| i.nanny.as_str()) {
                    Some(nanny) => nannies.push((address, nanny.into())),
                    None => {
                        close_and_remove(s, id, &sid2);
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
            (nannies, removed)
        })
        .await?;
    let kills = join_all(nannies.into_iter().map(|(address, nanny)| {
        let msg = Value::map([
            ("op", Value::from("kill")),
            ("reason", Value::Str(sid.clone())),
            ("timeout", Value::Float(timeout.as_secs_f64())),
        ]);
        async move {
            let r = tokio::time::timeout(timeout, async {
                let mut comm = Comm::connect(&nanny, timeout, comm).await?;
                let reply = comm.request(&msg).await?;
                comm.close().await;
                Ok::<Value, ServerError>(reply)
            })
            .await;
            match r {
                Ok(Ok(_)) => (address, "OK"),
                Ok(Err(e)) => {
                    tracing::error!("nanny {nanny} of {address} did not kill it: {e}");
                    (address, "timed out")
                }
                Err(_) => (address, "timed out"),
            }
        }
    }))
    .await;
    let bad: Vec<Arc<str>> = kills
        .iter()
        .filter(|(_, st)| *st != "OK")
        .map(|(a, _)| a.clone())
        .collect();
    if !bad.is_empty() {
        tracing::error!("Workers {bad:?} did not shut down within {timeout:?}; force closing");
        let sid = sid.clone();
        handle
            .call(move |s| {
                for a in bad {
                    if let Some(id) = s.worker_by_address(&a) {
                        close_and_remove(s, id, &sid);
                    }
                }
            })
            .await?;
    }
    let mut out: Vec<(Arc<str>, &'static str)> =
        removed.into_iter().map(|a| (a, "removed")).collect();
    out.extend(kills);
    Ok(out)
}

/// `remove_worker(close=True)`: tells the worker to close, then forgets it.
fn close_and_remove(s: &mut Scheduler, id: WorkerId, sid: &Arc<str>) {
    s.close_worker(id, sid.clone());
    s.remove_worker(id, false, sid.clone());
}

/// `check_worker_ttl`: workers that have not sent a heartbeat for `ttl` (at least ten
/// heartbeat intervals) are restarted through their nanny, or removed.
pub fn check_worker_ttl(s: &mut Scheduler, ttl: Duration) {
    let t = now();
    let ttl = ttl.as_secs_f64().max(10.0 * s.heartbeat_interval());
    let mut stale: Vec<Arc<str>> = Vec::new();
    for (id, info) in s.workers.iter_mut() {
        let silent = t - info.last_seen;
        let Some(w) = s.core.worker(*id) else {
            continue;
        };
        if silent > ttl {
            let what = if info.nanny.is_nil() {
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
            info.last_seen = t;
        }
    }
    if stale.is_empty() {
        return;
    }
    let event = Value::map([
        ("action", Value::from("worker-ttl-timed-out")),
        (
            "workers",
            Value::Array(stale.iter().cloned().map(Value::Str).collect()),
        ),
        ("ttl", Value::Float(ttl)),
    ]);
    crate::extensions::events::publish(s, &[Arc::from("scheduler")], event);
    let Some(handle) = s.internal.clone() else {
        return;
    };
    // the nanny calls must not hold up the state task
    let sid: Arc<str> = format!("check-worker-ttl-{t}").into();
    let timeout = s.config.connect_timeout;
    let comm = s.comm.clone();
    tokio::spawn(async move {
        if let Err(e) = restart_workers(&handle, Some(stale), timeout, &sid, &comm).await {
            tracing::warn!("worker-ttl restart failed: {e}");
        }
    });
}

/// `retire_workers {workers | names | n, close_workers, remove}` (scheduler.py:7410):
/// each worker stops taking tasks, its unique results are copied to other running
/// workers (`acquire-replicas`), then it is removed (and closed if asked). A worker whose
/// data cannot go anywhere is not retired. Returns `{address: worker info}` of the
/// retired workers.
async fn retire_workers(msg: &Value, handle: &Handle) -> Result<Value, ServerError> {
    let addresses = opt_str_list(msg, "workers")?;
    let names = opt_str_list(msg, "names")?;
    let n = msg.get("n").and_then(Value::as_i64);
    let close = msg.get("close_workers").is_some_and(Value::truthy);
    let remove = msg.get("remove").is_none_or(Value::truthy);
    let sid = stimulus_id(msg, "retire-workers");
    // which workers, and their identity now (the reply describes them)
    let chosen: Vec<(WorkerId, Arc<str>, Value)> = handle
        .call(move |s| {
            let mut v: Vec<(WorkerId, Arc<str>, Value)> = s
                .core
                .workers()
                .filter(|(_, w)| {
                    let by_addr = addresses.as_ref().is_some_and(|a| a.contains(&w.address));
                    let by_name = names.as_ref().is_some_and(|n| n.contains(&w.name));
                    by_addr || by_name || (addresses.is_none() && names.is_none())
                })
                .map(|(id, w)| (id, w.address.clone(), s.worker_identity_of(id)))
                .collect();
            v.sort_by(|a, b| a.1.cmp(&b.1));
            if addresses.is_none() && names.is_none() {
                // `workers_to_close(n)`: without a selection, only `n` workers (the ones
                // holding least data) are retired; with neither, none
                let n = n.unwrap_or(0).max(0) as usize;
                v.sort_by_key(|(id, _, _)| s.core.worker(*id).map_or(0, |w| w.nbytes));
                v.truncate(n);
            }
            v
        })
        .await?;
    let retiring: Vec<WorkerId> = chosen.iter().map(|(id, _, _)| *id).collect();
    {
        let retiring = retiring.clone();
        handle
            .call(move |s| {
                for id in retiring {
                    set_status(s, id, "closing_gracefully");
                }
            })
            .await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let mut out = Vec::new();
    let mut last_ask = vec![f64::NEG_INFINITY; chosen.len()];
    let mut done = vec![false; chosen.len()];
    loop {
        // only the workers still retiring are looked at (a given-up one is left alone)
        let pending: Vec<(usize, WorkerId, f64)> = (0..chosen.len())
            .filter(|i| !done[*i])
            .map(|i| (i, retiring[i], last_ask[i]))
            .collect();
        let all = retiring.clone();
        let progress = handle
            .call(move |s| {
                pending
                    .into_iter()
                    .map(|(i, id, asked)| (i, move_unique_data(s, id, &all, asked)))
                    .collect::<Vec<_>>()
            })
            .await?;
        let mut waiting = false;
        for (i, p) in progress {
            if matches!(p, Move::Asked) {
                last_ask[i] = now();
            }
            match p {
                Move::Done => {
                    done[i] = true;
                    let (id, address, info) = chosen[i].clone();
                    let sid = sid.clone();
                    handle
                        .call(move |s| {
                            if close {
                                s.close_worker(id, sid.clone());
                            }
                            if remove || close {
                                s.remove_worker(id, true, sid);
                            }
                        })
                        .await?;
                    tracing::info!("Retired worker {address}");
                    out.push((Value::Str(address), info));
                }
                Move::Stuck => {
                    done[i] = true;
                    let (id, address, _) = chosen[i].clone();
                    tracing::warn!(
                        "Could not retire worker {address}: unique data could not be moved \
                         to any other worker"
                    );
                    handle.call(move |s| set_status(s, id, "running")).await?;
                }
                Move::Asked | Move::Pending => waiting = true,
            }
        }
        if !waiting {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ServerError::Timeout(
                Duration::from_secs(300),
                "retiring workers to hand over their data",
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Value::Map(out))
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

/// How long a requested copy may take before it is asked for again.
const REASK_AFTER: f64 = 2.0;

/// Asks other running workers for copies of the results only `w` holds (the
/// `RetireWorker` policy of the active memory manager, reduced to its essence).
fn move_unique_data(s: &mut Scheduler, w: WorkerId, retiring: &[WorkerId], asked: f64) -> Move {
    let Some(ws) = s.core.worker(w) else {
        return Move::Done; // it left on its own
    };
    let unique: Vec<rask_core::TaskId> = ws
        .has_what
        .iter()
        .copied()
        .filter(|t| {
            s.core.task_by_id(*t).is_some_and(|ts| {
                ts.state == TaskStatus::Memory && ts.who_has.len() == 1 && ts.is_needed()
            })
        })
        .collect();
    if unique.is_empty() {
        return Move::Done;
    }
    if now() - asked < REASK_AFTER {
        return Move::Pending;
    }
    let mut targets: Vec<(i64, WorkerId)> = s
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
    type Entries = Vec<(Value, Value)>;
    let mut per_target: Vec<(Entries, Entries)> = vec![Default::default(); targets.len()];
    for (i, t) in unique.iter().enumerate() {
        if let Some(ts) = s.core.task_by_id(*t) {
            let (who_has, nbytes) = &mut per_target[i % targets.len()];
            who_has.push((
                ts.key.to_value(),
                Value::Array(vec![Value::Str(source.clone())]),
            ));
            nbytes.push((ts.key.to_value(), Value::Int(ts.nbytes)));
        }
    }
    let sid = format!("retire-workers-{}", now());
    for ((_, target), (who_has, nbytes)) in targets.iter().zip(per_target) {
        if who_has.is_empty() {
            continue;
        }
        if let Some(info) = s.workers.get(target) {
            // `AcquireReplicasEvent` (worker_state_machine.py)
            let _ = info.tx.send(
                Value::map([
                    ("op", Value::from("acquire-replicas")),
                    ("who_has", Value::Map(who_has)),
                    ("nbytes", Value::Map(nbytes)),
                    ("stimulus_id", Value::from(sid.as_str())),
                ])
                .into(),
            );
        }
    }
    Move::Asked
}

/// A status change made by the scheduler (`worker-status-change` to the worker too).
fn set_status(s: &mut Scheduler, id: WorkerId, status: &str) {
    if let Some(info) = s.workers.get_mut(&id) {
        info.status = status.into();
        let _ = info.tx.send(
            Value::map([
                ("op", Value::from("worker-status-change")),
                ("status", Value::from(status)),
                (
                    "stimulus_id",
                    Value::from(format!("retire-workers-{}", now())),
                ),
            ])
            .into(),
        );
    }
    s.stimulus(Stimulus::WorkerStatusChange {
        worker: id,
        status: status.into(),
    });
}
