//! `Event` (`event.py`), `Semaphore`/`Lock` (`semaphore.py`; a `Lock` is a semaphore with
//! `max_leases=1`) and `MultiLock` (`multi_lock.py`).

use super::{deadline_field, name_field, name_of, raise, wait, Waited};
use crate::connection::Ctx;
use crate::error::ServerError;
use crate::runtime::{now, Scheduler};
use crate::translate::{field, opt_str, parse_timedelta, str_field};
use rask_protocol::{Key, Value};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::oneshot;

#[derive(Default)]
pub(super) struct State {
    events: FxHashMap<Key, Event>,
    semaphores: FxHashMap<Key, Semaphore>,
    /// the lease-expiry task runs (started by the first `semaphore_register`)
    validation_started: bool,
    /// lock name -> MultiLock ids queued on it; the first holds it
    locks: FxHashMap<Arc<str>, VecDeque<Arc<str>>>,
    /// id -> locks it requested (and still holds or waits for)
    requests: FxHashMap<Arc<str>, FxHashSet<Arc<str>>>,
    /// id -> how many more locks it needs
    requests_left: FxHashMap<Arc<str>, i64>,
    /// id -> its waiting `multi_lock_acquire`
    ml_waiters: FxHashMap<Arc<str>, oneshot::Sender<()>>,
}

// ---- Event ---------------------------------------------------------------------------------

/// An event exists while it is set or has waiters (`event.py:33-42`).
#[derive(Default)]
struct Event {
    set: bool,
    waiters: Vec<oneshot::Sender<()>>,
}

/// `event_set/clear/is_set/wait{name[, timeout]}`.
pub(super) async fn event_op(op: &str, msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let name = name_field(msg, "name")?;
    let h = &ctx.handle;
    match op {
        "event_set" => {
            h.call(move |s| {
                let e = s.ext.coordination.lock.events.entry(name).or_default();
                e.set = true;
                for tx in e.waiters.drain(..) {
                    let _ = tx.send(());
                }
                Value::Nil
            })
            .await
        }
        "event_clear" => {
            h.call(move |s| {
                let events = &mut s.ext.coordination.lock.events;
                if let Some(e) = events.get_mut(&name) {
                    e.waiters.retain(|t| !t.is_closed());
                    if e.waiters.is_empty() {
                        events.remove(&name);
                    } else {
                        e.set = false;
                    }
                }
                Value::Nil
            })
            .await
        }
        "event_is_set" => {
            h.call(move |s| {
                Value::Bool(
                    s.ext
                        .coordination
                        .lock
                        .events
                        .get(&name)
                        .is_some_and(|e| e.set),
                )
            })
            .await
        }
        _ => {
            let deadline = deadline_field(msg)?;
            let n = name.clone();
            let rx = h
                .call(move |s| {
                    let e = s.ext.coordination.lock.events.entry(n).or_default();
                    if e.set {
                        return None;
                    }
                    let (tx, rx) = oneshot::channel();
                    e.waiters.retain(|t| !t.is_closed());
                    e.waiters.push(tx);
                    Some(rx)
                })
                .await?;
            let Some(rx) = rx else {
                return Ok(Value::Bool(true));
            };
            match wait(rx, deadline).await {
                Waited::Got(()) => Ok(Value::Bool(true)),
                _ => {
                    h.call(move |s| {
                        let events = &mut s.ext.coordination.lock.events;
                        if let Some(e) = events.get_mut(&name) {
                            e.waiters.retain(|t| !t.is_closed());
                            if e.waiters.is_empty() && !e.set {
                                events.remove(&name);
                            }
                        }
                    })
                    .await?;
                    Ok(Value::Bool(false))
                }
            }
        }
    }
}

// ---- Semaphore -----------------------------------------------------------------------------

struct Semaphore {
    max_leases: i64,
    /// seconds without a refresh after which a lease expires; None: never
    lease_timeout: Option<f64>,
    /// lease id -> last refresh (epoch seconds)
    leases: FxHashMap<Arc<str>, f64>,
    /// `semaphore_acquire`s waiting for a release
    waiters: Vec<oneshot::Sender<()>>,
}

impl Semaphore {
    /// `_release_value`: frees a lease and wakes every waiter to retry.
    fn release(&mut self, lease_id: &str) {
        self.leases.remove(lease_id);
        for tx in self.waiters.drain(..) {
            let _ = tx.send(());
        }
    }
}

/// `_check_lease_timeout`: expires leases not refreshed within their semaphore's timeout.
fn check_lease_timeout(s: &mut Scheduler) {
    let t = now();
    for (name, sem) in s.ext.coordination.lock.semaphores.iter_mut() {
        let Some(timeout) = sem.lease_timeout else {
            continue;
        };
        let expired: Vec<Arc<str>> = sem
            .leases
            .iter()
            .filter(|(_, seen)| t - **seen > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            tracing::info!(semaphore = %name, lease = %id, "lease timed out");
            sem.release(&id);
        }
    }
}

/// `semaphore_register{name, max_leases, lease_timeout}`.
pub(super) async fn semaphore_register(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let name = name_field(msg, "name")?;
    let max_leases_v = field(msg, "max_leases")?;
    let Some(max_leases) = max_leases_v.as_i64() else {
        return Err(ServerError::BadMessage(format!(
            "max_leases must be an int, not {}",
            max_leases_v.type_name()
        )));
    };
    let lease_timeout = msg
        .get("lease_timeout")
        .and_then(parse_timedelta)
        .filter(|t| *t > 0.0);
    let (reply, start) = ctx
        .handle
        .call(move |s| {
            let st = &mut s.ext.coordination.lock;
            let start = !st.validation_started;
            st.validation_started = true;
            let reply = match st.semaphores.get(&name) {
                Some(sem) if sem.max_leases != max_leases => raise(
                    "ValueError",
                    &format!(
                        "Inconsistent max leases: {max_leases}, expected: {}",
                        sem.max_leases
                    ),
                ),
                Some(_) => Value::Nil,
                None => {
                    st.semaphores.insert(
                        name,
                        Semaphore {
                            max_leases,
                            lease_timeout,
                            leases: FxHashMap::default(),
                            waiters: Vec::new(),
                        },
                    );
                    Value::Nil
                }
            };
            (reply, start.then_some(s.config.lease_validation_interval))
        })
        .await?;
    if let Some(every) = start {
        let handle = ctx.handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if handle.call(check_lease_timeout).await.is_err() {
                    return;
                }
            }
        });
    }
    Ok(reply)
}

/// `semaphore_acquire{name, timeout, lease_id}`: true once leased, false on timeout.
pub(super) async fn semaphore_acquire(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let name = name_field(msg, "name")?;
    let lease_id = str_field(msg, "lease_id")?;
    let deadline = deadline_field(msg)?;
    loop {
        let n = name.clone();
        let id = lease_id.clone();
        let r = ctx
            .handle
            .call(move |s| {
                let Some(sem) = s.ext.coordination.lock.semaphores.get_mut(&n) else {
                    return Err(None);
                };
                if sem.leases.contains_key(&id) || (sem.leases.len() as i64) < sem.max_leases {
                    sem.leases.insert(id, now());
                    return Ok(());
                }
                let (tx, rx) = oneshot::channel();
                sem.waiters.retain(|t| !t.is_closed());
                sem.waiters.push(tx);
                Err(Some(rx))
            })
            .await?;
        match r {
            Ok(()) => return Ok(Value::Bool(true)),
            Err(None) => {
                return Ok(raise(
                    "RuntimeError",
                    &format!("Semaphore or Lock `{}` not known.", super::stringify(&name)),
                ))
            }
            Err(Some(rx)) => {
                if let Waited::TimedOut = wait(rx, deadline).await {
                    return Ok(Value::Bool(false));
                }
            }
        }
    }
}

/// `semaphore_release{name, lease_id}`.
pub(super) async fn semaphore_release(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let name = name_field(msg, "name")?;
    let lease_id = str_field(msg, "lease_id")?;
    ctx.handle
        .call(move |s| {
            match s.ext.coordination.lock.semaphores.get_mut(&name) {
                None => tracing::warn!(
                    "Tried to release Lock or Semaphore `{name}` but it is not known."
                ),
                Some(sem) if sem.leases.contains_key(&lease_id) => sem.release(&lease_id),
                Some(_) => tracing::warn!(
                    "Tried to release Lock or Semaphore but it was already released: \
                     name={name}, lease_id={lease_id}. This can happen if the Lock or \
                     Semaphore timed out before."
                ),
            }
            Value::Nil
        })
        .await
}

/// `semaphore_refresh_leases{name, lease_ids}`.
pub(super) async fn semaphore_refresh_leases(
    msg: &Value,
    ctx: &Arc<Ctx>,
) -> Result<Value, ServerError> {
    let name = name_field(msg, "name")?;
    let ids = crate::translate::opt_str_list(msg, "lease_ids")?.unwrap_or_default();
    ctx.handle
        .call(move |s| {
            let t = now();
            if let Some(sem) = s.ext.coordination.lock.semaphores.get_mut(&name) {
                for id in ids {
                    if !sem.leases.contains_key(&id) {
                        tracing::error!(
                            "Refreshing an unknown lease ID {id} for {name}. This might be due \
                             to leases timing out and may cause overbooking of the semaphore!"
                        );
                    }
                    sem.leases.insert(id, t);
                }
            }
            Value::Nil
        })
        .await
}

/// `semaphore_value{name}`: leases held.
pub(super) async fn semaphore_value(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let name = name_field(msg, "name")?;
    ctx.handle
        .call(move |s| {
            Value::from(
                s.ext
                    .coordination
                    .lock
                    .semaphores
                    .get(&name)
                    .map_or(0, |sem| sem.leases.len()),
            )
        })
        .await
}

/// `semaphore_close{name}`: hard close; waiters retry and find it unknown.
pub(super) async fn semaphore_close(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let name = name_field(msg, "name")?;
    ctx.handle
        .call(move |s| {
            if let Some(sem) = s.ext.coordination.lock.semaphores.remove(&name) {
                if !sem.leases.is_empty() {
                    tracing::warn!("Closing semaphore {name} but there remain unreleased leases");
                }
            }
            Value::Nil
        })
        .await
}

// ---- MultiLock -----------------------------------------------------------------------------

/// `_request_locks`: queues `id` on each lock (emptiest first); true if it got `num_locks`
/// of them at once.
fn request_locks(st: &mut State, locks: &[Arc<str>], id: &Arc<str>, num_locks: i64) -> bool {
    st.requests
        .insert(id.clone(), locks.iter().cloned().collect());
    st.requests_left.insert(id.clone(), num_locks);
    let mut sorted: Vec<Arc<str>> = locks.to_vec();
    sorted.sort_by_key(|l| st.locks.get(l).map_or(0, VecDeque::len));
    for (i, lock) in sorted.iter().enumerate() {
        let q = st.locks.entry(lock.clone()).or_default();
        q.push_back(id.clone());
        if q.len() == 1 {
            let left = st.requests_left.entry(id.clone()).or_insert(0);
            *left -= 1;
            if *left == 0 {
                if let Some(req) = st.requests.get_mut(id) {
                    for l in &sorted[i + 1..] {
                        req.remove(l);
                    }
                }
                return true;
            }
        }
    }
    false
}

/// `_retain_locks`: leaves the queues of `locks`, handing each held one to the next in line.
fn retain_locks(st: &mut State, locks: &[Arc<str>], id: &Arc<str>) {
    let mut ready = Vec::new();
    for lock in locks {
        let Some(q) = st.locks.get_mut(lock) else {
            continue;
        };
        if q.front() == Some(id) {
            q.pop_front();
            if let Some(next) = q.front() {
                let left = st.requests_left.entry(next.clone()).or_insert(0);
                *left -= 1;
                if *left <= 0 {
                    *left = 0;
                    ready.push(next.clone());
                }
            }
        } else {
            q.retain(|x| x != id);
        }
        if q.is_empty() {
            st.locks.remove(lock);
        }
    }
    st.requests.remove(id);
    st.requests_left.remove(id);
    for w in ready {
        if let Some(tx) = st.ml_waiters.remove(&w) {
            let _ = tx.send(());
        }
    }
}

/// `multi_lock_acquire{locks, id, timeout, num_locks}`.
pub(super) async fn multi_lock_acquire(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let locks: Vec<Arc<str>> = super::list_field(msg, "locks")?
        .iter()
        .map(|l| name_of(l, "lock name").map(|k| Arc::from(super::stringify(&k))))
        .collect::<Result<_, _>>()?;
    let id: Arc<str> = super::stringify(&name_field(msg, "id")?).into();
    let num_locks = match msg.get("num_locks") {
        None | Some(Value::Nil) => locks.len() as i64,
        Some(v) => v.as_i64().ok_or_else(|| {
            ServerError::BadMessage(format!("num_locks must be an int, not {}", v.type_name()))
        })?,
    };
    if num_locks <= 0 || num_locks > locks.len() as i64 {
        return Err(ServerError::BadMessage(format!(
            "num_locks must be in 1..={}, not {num_locks}",
            locks.len()
        )));
    }
    let deadline = deadline_field(msg)?;
    let (l, i) = (locks.clone(), id.clone());
    let rx = ctx
        .handle
        .call(move |s| {
            let st = &mut s.ext.coordination.lock;
            if st.requests.contains_key(&i) {
                return Err(());
            }
            if request_locks(st, &l, &i, num_locks) {
                return Ok(None);
            }
            let (tx, rx) = oneshot::channel();
            st.ml_waiters.insert(i, tx);
            Ok(Some(rx))
        })
        .await?;
    let rx = match rx {
        Err(()) => {
            return Err(ServerError::BadMessage(format!(
                "MultiLock {id} is already acquiring or holding its locks"
            )))
        }
        Ok(None) => return Ok(Value::Bool(true)),
        Ok(Some(rx)) => rx,
    };
    match wait(rx, deadline).await {
        Waited::Got(()) => Ok(Value::Bool(true)),
        _ => {
            ctx.handle
                .call(move |s| {
                    let st = &mut s.ext.coordination.lock;
                    st.ml_waiters.remove(&id);
                    if st.requests.contains_key(&id) {
                        retain_locks(st, &locks, &id);
                    }
                    Value::Bool(false)
                })
                .await
        }
    }
}

/// `multi_lock_release{id}`.
pub(super) async fn multi_lock_release(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let id: Arc<str> = match opt_str(msg, "id")? {
        Some(id) => id,
        None => super::stringify(&name_field(msg, "id")?).into(),
    };
    ctx.handle
        .call(move |s| {
            let st = &mut s.ext.coordination.lock;
            match st.requests.get(&id) {
                Some(req) => {
                    let locks: Vec<Arc<str>> = req.iter().cloned().collect();
                    retain_locks(st, &locks, &id);
                    Value::Nil
                }
                None => raise("KeyError", &format!("'{id}'")),
            }
        })
        .await
}
