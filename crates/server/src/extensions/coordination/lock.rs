//! `Event` (`event.py`), `Semaphore`/`Lock` (`semaphore.py`; a `Lock` is a semaphore with
//! `max_leases=1`) and `MultiLock` (`multi_lock.py`).

use super::Cx;
use crate::error::Invalid;
use crate::event::Replier;
use crate::translate::coordination::stringify;
use rask_comm::reply::raised;
use rask_protocol::{Key, Value};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::VecDeque;
use std::sync::Arc;

#[derive(Default)]
pub(super) struct State {
    events: FxHashMap<Key, Event>,
    semaphores: FxHashMap<Key, Semaphore>,
    /// when leases are next checked for expiry (set by the first `semaphore_register`)
    next_lease_check: Option<f64>,
    /// lock name -> MultiLock ids queued on it; the first holds it
    locks: FxHashMap<Arc<str>, VecDeque<Arc<str>>>,
    /// id -> locks it requested (and still holds or waits for)
    requests: FxHashMap<Arc<str>, FxHashSet<Arc<str>>>,
    /// id -> how many more locks it needs
    requests_left: FxHashMap<Arc<str>, i64>,
    /// id -> its waiting `multi_lock_acquire`
    ml_waiters: FxHashMap<Arc<str>, MultiLockWait>,
}

/// A parked `multi_lock_acquire`.
struct MultiLockWait {
    wait: u64,
    locks: Vec<Arc<str>>,
    reply: Replier,
}

// ---- Event ---------------------------------------------------------------------------------

/// An event exists while it is set or has waiters (`event.py:33-42`).
#[derive(Default)]
struct Event {
    set: bool,
    waiters: Vec<(u64, Replier)>,
}

impl State {
    /// `event_set {name}`: every waiter returns true.
    pub(super) fn event_set(&mut self, cx: &mut Cx<'_>, name: Key) {
        let e = self.events.entry(name).or_default();
        e.set = true;
        for (_, reply) in e.waiters.drain(..) {
            cx.reply(reply, Ok(Value::Bool(true)));
        }
    }

    /// `event_clear {name}`
    pub(super) fn event_clear(&mut self, name: &Key) {
        if let Some(e) = self.events.get_mut(name) {
            e.waiters.retain(|(_, r)| !r.is_closed());
            if e.waiters.is_empty() {
                self.events.remove(name);
            } else {
                e.set = false;
            }
        }
    }

    /// `event_is_set {name}`
    pub(super) fn event_is_set(&self, name: &Key) -> bool {
        self.events.get(name).is_some_and(|e| e.set)
    }

    /// `event_wait {name}`: true now if set, else the reply comes back to park.
    pub(super) fn event_wait(
        &mut self,
        cx: &mut Cx<'_>,
        name: &Key,
        reply: Replier,
    ) -> Option<Replier> {
        if self.event_is_set(name) {
            cx.reply(reply, Ok(Value::Bool(true)));
            return None;
        }
        Some(reply)
    }

    /// Parks an `event_wait`.
    pub(super) fn event_park(&mut self, name: Key, wait: u64, reply: Replier) {
        let e = self.events.entry(name).or_default();
        e.waiters.retain(|(_, r)| !r.is_closed());
        e.waiters.push((wait, reply));
    }

    /// A parked `event_wait` timed out: false.
    pub(super) fn event_timed_out(&mut self, cx: &mut Cx<'_>, name: &Key, wait: u64) {
        let Some(e) = self.events.get_mut(name) else {
            return;
        };
        if let Some(i) = e.waiters.iter().position(|(id, _)| *id == wait) {
            let (_, reply) = e.waiters.remove(i);
            cx.reply(reply, Ok(Value::Bool(false)));
        }
        e.waiters.retain(|(_, r)| !r.is_closed());
        if e.waiters.is_empty() && !e.set {
            self.events.remove(name);
        }
    }
}

// ---- Semaphore -----------------------------------------------------------------------------

struct Semaphore {
    max_leases: i64,
    /// seconds without a refresh after which a lease expires; None: never
    lease_timeout: Option<f64>,
    /// lease id -> last refresh (state-task clock)
    leases: FxHashMap<Arc<str>, f64>,
    /// `semaphore_acquire`s waiting for a release: (wait id, lease id, reply, since when)
    waiters: VecDeque<(u64, Arc<str>, Replier, f64)>,
    /// leases granted (`metrics["acquire_total"]`)
    acquire_total: u64,
    /// leases released (`metrics["release_total"]`)
    release_total: u64,
    /// `metrics["average_pending_lease_time"]`: each acquire's wait halves the old average
    average_pending: f64,
}

/// One semaphore's numbers for `/metrics` (`SemaphoreMetricCollector`).
#[derive(Debug, Clone)]
pub struct SemaphoreMetrics {
    pub name: String,
    pub max_leases: i64,
    pub active: usize,
    pub pending: usize,
    pub acquire_total: u64,
    pub release_total: u64,
    pub average_pending: f64,
}

impl Semaphore {
    /// Leases `lease_id` if it already holds one or there is room.
    fn try_lease(&mut self, lease_id: &Arc<str>, now: f64) -> bool {
        if self.leases.contains_key(lease_id) || (self.leases.len() as i64) < self.max_leases {
            self.leases.insert(lease_id.clone(), now);
            self.acquire_total += 1;
            return true;
        }
        false
    }

    /// An acquire returned after waiting `waited` seconds.
    fn answered(&mut self, waited: f64) {
        self.average_pending = (self.average_pending + waited.max(0.0)) / 2.0;
    }

    /// `_release_value`: frees a lease and lets waiters in, in the order they came.
    fn release(&mut self, cx: &mut Cx<'_>, lease_id: &str) {
        self.leases.remove(lease_id);
        self.release_total += 1;
        let mut still = VecDeque::new();
        while let Some((wait, id, reply, since)) = self.waiters.pop_front() {
            if reply.is_closed() {
                continue;
            }
            if self.try_lease(&id, cx.now) {
                self.answered(cx.now - since);
                cx.reply(reply, Ok(Value::Bool(true)));
            } else {
                still.push_back((wait, id, reply, since));
            }
        }
        self.waiters = still;
    }
}

impl State {
    /// `semaphore_register {name, max_leases, lease_timeout}`; the first one starts the
    /// lease expiry check (`distributed.scheduler.locks.lease-validation-interval`).
    pub(super) fn semaphore_register(
        &mut self,
        cx: &mut Cx<'_>,
        name: Key,
        max_leases: i64,
        lease_timeout: Option<f64>,
    ) -> Value {
        if self.next_lease_check.is_none() {
            self.next_lease_check =
                Some(cx.now + cx.config.lease_validation_interval.as_secs_f64());
        }
        match self.semaphores.get(&name) {
            Some(sem) if sem.max_leases != max_leases => raised(
                "ValueError",
                &format!(
                    "Inconsistent max leases: {max_leases}, expected: {}",
                    sem.max_leases
                ),
            ),
            Some(_) => Value::Nil,
            None => {
                self.semaphores.insert(
                    name,
                    Semaphore {
                        max_leases,
                        lease_timeout,
                        leases: FxHashMap::default(),
                        waiters: VecDeque::new(),
                        acquire_total: 0,
                        release_total: 0,
                        average_pending: 0.0,
                    },
                );
                Value::Nil
            }
        }
    }

    /// `semaphore_acquire {name, lease_id}`: true now, an error for an unknown semaphore,
    /// or the reply comes back to wait for a release.
    pub(super) fn semaphore_acquire(
        &mut self,
        cx: &mut Cx<'_>,
        name: &Key,
        lease_id: &Arc<str>,
        reply: Replier,
    ) -> Option<Replier> {
        let Some(sem) = self.semaphores.get_mut(name) else {
            let e = raised(
                "RuntimeError",
                &format!("Semaphore or Lock `{}` not known.", stringify(name)),
            );
            cx.reply(reply, Ok(e));
            return None;
        };
        if sem.try_lease(lease_id, cx.now) {
            sem.answered(0.0);
            cx.reply(reply, Ok(Value::Bool(true)));
            return None;
        }
        Some(reply)
    }

    /// Every semaphore's numbers, by name.
    pub(super) fn semaphore_metrics(&self) -> Vec<SemaphoreMetrics> {
        let mut all: Vec<SemaphoreMetrics> = self
            .semaphores
            .iter()
            .map(|(name, s)| SemaphoreMetrics {
                name: stringify(name),
                max_leases: s.max_leases,
                active: s.leases.len(),
                pending: s.waiters.len(),
                acquire_total: s.acquire_total,
                release_total: s.release_total,
                average_pending: s.average_pending,
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Parks a `semaphore_acquire`.
    pub(super) fn semaphore_park(
        &mut self,
        name: Key,
        lease_id: Arc<str>,
        wait: u64,
        reply: Replier,
        now: f64,
    ) {
        if let Some(sem) = self.semaphores.get_mut(&name) {
            sem.waiters.retain(|(_, _, r, _)| !r.is_closed());
            sem.waiters.push_back((wait, lease_id, reply, now));
        }
    }

    /// A parked `semaphore_acquire` timed out: false.
    pub(super) fn acquire_timed_out(&mut self, cx: &mut Cx<'_>, name: &Key, wait: u64) {
        let Some(sem) = self.semaphores.get_mut(name) else {
            return;
        };
        if let Some(i) = sem.waiters.iter().position(|(id, _, _, _)| *id == wait) {
            if let Some((_, _, reply, since)) = sem.waiters.remove(i) {
                sem.answered(cx.now - since);
                cx.reply(reply, Ok(Value::Bool(false)));
            }
        }
    }

    /// `semaphore_release {name, lease_id}`
    pub(super) fn semaphore_release(&mut self, cx: &mut Cx<'_>, name: &Key, lease_id: &str) {
        match self.semaphores.get_mut(name) {
            None => {
                tracing::warn!("Tried to release Lock or Semaphore `{name}` but it is not known.")
            }
            Some(sem) if sem.leases.contains_key(lease_id) => sem.release(cx, lease_id),
            Some(_) => tracing::warn!(
                "Tried to release Lock or Semaphore but it was already released: \
                 name={name}, lease_id={lease_id}. This can happen if the Lock or \
                 Semaphore timed out before."
            ),
        }
    }

    /// `semaphore_refresh_leases {name, lease_ids}`
    pub(super) fn semaphore_refresh(&mut self, cx: &mut Cx<'_>, name: &Key, ids: Vec<Arc<str>>) {
        if let Some(sem) = self.semaphores.get_mut(name) {
            for id in ids {
                if !sem.leases.contains_key(&id) {
                    tracing::error!(
                        "Refreshing an unknown lease ID {id} for {name}. This might be due \
                         to leases timing out and may cause overbooking of the semaphore!"
                    );
                }
                sem.leases.insert(id, cx.now);
            }
        }
    }

    /// `semaphore_value {name}`: leases held.
    pub(super) fn semaphore_value(&self, name: &Key) -> Value {
        Value::from(self.semaphores.get(name).map_or(0, |s| s.leases.len()))
    }

    /// `semaphore_close {name}`: hard close; waiters find it unknown.
    pub(super) fn semaphore_close(&mut self, cx: &mut Cx<'_>, name: &Key) {
        if let Some(sem) = self.semaphores.remove(name) {
            if !sem.leases.is_empty() {
                tracing::warn!("Closing semaphore {name} but there remain unreleased leases");
            }
            for (_, _, reply, _) in sem.waiters {
                let e = raised(
                    "RuntimeError",
                    &format!("Semaphore or Lock `{}` not known.", stringify(name)),
                );
                cx.reply(reply, Ok(e));
            }
        }
    }

    /// `_check_lease_timeout`, every `lease-validation-interval`: expires leases not
    /// refreshed within their semaphore's timeout.
    pub(super) fn check_leases(&mut self, cx: &mut Cx<'_>) {
        match self.next_lease_check {
            Some(t) if cx.now >= t => {}
            _ => return,
        }
        self.next_lease_check = Some(cx.now + cx.config.lease_validation_interval.as_secs_f64());
        for (name, sem) in self.semaphores.iter_mut() {
            let Some(timeout) = sem.lease_timeout else {
                continue;
            };
            let expired: Vec<Arc<str>> = sem
                .leases
                .iter()
                .filter(|(_, seen)| cx.now - **seen > timeout)
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                tracing::info!(semaphore = %name, lease = %id, "lease timed out");
                sem.release(cx, &id);
            }
        }
    }
}

// ---- MultiLock -----------------------------------------------------------------------------

impl State {
    /// `_request_locks`: queues `id` on each lock (emptiest first); true if it got
    /// `num_locks` of them at once.
    fn request_locks(&mut self, locks: &[Arc<str>], id: &Arc<str>, num_locks: i64) -> bool {
        self.requests
            .insert(id.clone(), locks.iter().cloned().collect());
        self.requests_left.insert(id.clone(), num_locks);
        let mut sorted: Vec<Arc<str>> = locks.to_vec();
        sorted.sort_by_key(|l| self.locks.get(l).map_or(0, VecDeque::len));
        for (i, lock) in sorted.iter().enumerate() {
            let q = self.locks.entry(lock.clone()).or_default();
            q.push_back(id.clone());
            if q.len() == 1 {
                let left = self.requests_left.entry(id.clone()).or_insert(0);
                *left -= 1;
                if *left == 0 {
                    if let Some(req) = self.requests.get_mut(id) {
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

    /// `_retain_locks`: leaves the queues of `locks`, handing each held one to the next in
    /// line; a waiter that now has all it needs is answered.
    fn retain_locks(&mut self, cx: &mut Cx<'_>, locks: &[Arc<str>], id: &Arc<str>) {
        let mut ready = Vec::new();
        for lock in locks {
            let Some(q) = self.locks.get_mut(lock) else {
                continue;
            };
            if q.front() == Some(id) {
                q.pop_front();
                if let Some(next) = q.front() {
                    let left = self.requests_left.entry(next.clone()).or_insert(0);
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
                self.locks.remove(lock);
            }
        }
        self.requests.remove(id);
        self.requests_left.remove(id);
        for w in ready {
            if let Some(w) = self.ml_waiters.remove(&w) {
                cx.reply(w.reply, Ok(Value::Bool(true)));
            }
        }
    }

    /// `multi_lock_acquire {locks, id, num_locks}`: true now, or the reply comes back to
    /// wait.
    pub(super) fn multi_lock_acquire(
        &mut self,
        cx: &mut Cx<'_>,
        locks: &[Arc<str>],
        id: &Arc<str>,
        num_locks: i64,
        reply: Replier,
    ) -> Option<Replier> {
        if self.requests.contains_key(id) {
            cx.reply(reply, Err(Invalid::MultiLockBusy(id.to_string()).into()));
            return None;
        }
        if self.request_locks(locks, id, num_locks) {
            cx.reply(reply, Ok(Value::Bool(true)));
            return None;
        }
        Some(reply)
    }

    /// Parks a `multi_lock_acquire`.
    pub(super) fn multi_lock_park(
        &mut self,
        id: Arc<str>,
        locks: Vec<Arc<str>>,
        wait: u64,
        reply: Replier,
    ) {
        self.ml_waiters
            .insert(id, MultiLockWait { wait, locks, reply });
    }

    /// A parked `multi_lock_acquire` timed out: it leaves the queues, false.
    pub(super) fn multi_lock_timed_out(&mut self, cx: &mut Cx<'_>, id: &Arc<str>, wait: u64) {
        if self.ml_waiters.get(id).is_none_or(|w| w.wait != wait) {
            return;
        }
        let Some(w) = self.ml_waiters.remove(id) else {
            return;
        };
        if self.requests.contains_key(id) {
            self.retain_locks(cx, &w.locks, id);
        }
        cx.reply(w.reply, Ok(Value::Bool(false)));
    }

    /// `multi_lock_release {id}`
    pub(super) fn multi_lock_release(&mut self, cx: &mut Cx<'_>, id: &Arc<str>) -> Value {
        match self.requests.get(id) {
            Some(req) => {
                let locks: Vec<Arc<str>> = req.iter().cloned().collect();
                self.retain_locks(cx, &locks, id);
                Value::Nil
            }
            // `self.requests[id]` raising `KeyError(id)`
            None => raised("KeyError", id),
        }
    }
}
