//! Dask's coordination extensions: published datasets (`publish.py`), `Variable`
//! (`variable.py`), `Queue` (`queues.py`), `Event` (`event.py`), `Semaphore`/`Lock`
//! (`semaphore.py`) and `MultiLock` (`multi_lock.py`), ported op by op.
//!
//! The long polls (`variable_get`, `queue_get`, `queue_put` on a full queue, `event_wait`,
//! `semaphore_acquire`, `multi_lock_acquire`, and `publish_put`/`publish_delete` waiting
//! for the client's stream to catch up) park their reply here and answer it when the state
//! changes; a wait with a timeout also sets a timer ([`Timer::Coordination`]) that answers
//! it (`False`, `TimeoutError`, ...) if it is still parked then. A parked reply whose
//! connection went away is skipped, never handed an item.
//!
//! Futures held by an extension are kept alive by pseudo-clients, as in Dask:
//! `published-<name>`, `variable-<name>`, `queue-<name>`.

pub mod lock;
mod publish;
mod queue;
mod variable;

use super::{Cx, Extension, Hooks, Peer};
use crate::event::{Replier, Timer};
use crate::messages::coordination::{ClientOp, Record, Rpc};
use crate::messages::Rpc as AnyRpc;
use crate::translate::coordination::{record_reply, stringify, FutureState};
use rask_comm::reply::raised;
use rask_protocol::{Key, Value};
use rustc_hash::FxHashMap;
use std::time::Duration;

/// How often a request holding a future polls for its key (Dask's `wait_for` loop).
const KEY_POLL: Duration = Duration::from_millis(10);

/// The coordination extensions' state.
#[derive(Default)]
pub struct Coordination {
    publish: publish::State,
    variable: variable::State,
    queue: queue::State,
    lock: lock::State,
    /// parked waits with a deadline, by wait id: where to find them when it passes
    deadlines: FxHashMap<u64, Parked>,
}

/// Where a parked wait is, so its deadline can find it.
#[derive(Debug, Clone)]
enum Parked {
    EventWait(Key),
    VariableGet(Key),
    QueueGet(Key),
    QueuePut(Key),
    SemaphoreAcquire(Key),
    MultiLock(std::sync::Arc<str>),
    PublishFlush(Key),
}

impl Coordination {
    /// Every semaphore's (and lock's) numbers, for `/metrics`.
    pub fn semaphore_metrics(&self) -> Vec<lock::SemaphoreMetrics> {
        self.lock.semaphore_metrics()
    }
}

impl Coordination {
    /// A timer of this extension went off: the parked wait it guards, if still parked,
    /// is answered as timed out.
    pub fn on_timer(&mut self, cx: &mut Cx<'_>, wait: u64) {
        let Some(parked) = self.deadlines.remove(&wait) else {
            return;
        };
        match parked {
            Parked::EventWait(name) => self.lock.event_timed_out(cx, &name, wait),
            Parked::SemaphoreAcquire(name) => self.lock.acquire_timed_out(cx, &name, wait),
            Parked::MultiLock(id) => self.lock.multi_lock_timed_out(cx, &id, wait),
            Parked::VariableGet(name) => self.variable.get_timed_out(cx, &name, wait),
            Parked::QueueGet(name) => self.queue.get_timed_out(cx, &name, wait),
            Parked::QueuePut(name) => self.queue.put_timed_out(cx, &name, wait),
            Parked::PublishFlush(uid) => {
                if let Some(again) = self.publish.flush_check(cx, &uid, wait) {
                    self.deadlines.insert(wait, Parked::PublishFlush(uid));
                    cx.after(again, Timer::Coordination(wait));
                }
            }
        }
    }

    /// Parks a wait: a fresh id, and a timer if it has a deadline (seconds from now).
    fn park(&mut self, cx: &mut Cx<'_>, timeout: Option<f64>, parked: Parked) -> u64 {
        let id = cx.new_id();
        if let Some(secs) = timeout {
            self.deadlines.insert(id, parked);
            cx.after(
                Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO),
                Timer::Coordination(id),
            );
        }
        id
    }
}

impl Extension for Coordination {
    type Rpc = Rpc;
    type StreamOp = ClientOp;

    fn rpc(&mut self, cx: &mut Cx<'_>, rpc: Rpc, reply: Replier) {
        let Some((rpc, reply)) = key_known(cx, rpc, reply) else {
            return; // it asks again once the key is known, or it timed out
        };
        match rpc {
            Rpc::PublishPut {
                names,
                keys,
                data,
                override_,
                client,
                uid,
            } => {
                let op = publish::Op::Put {
                    names,
                    keys,
                    data,
                    override_,
                };
                if let Some(wait) = self.publish.sync(cx, op, client, uid.clone(), reply) {
                    self.deadlines.insert(wait, Parked::PublishFlush(uid));
                }
            }
            Rpc::PublishDelete { names, client, uid } => {
                let op = publish::Op::Delete { names };
                if let Some(wait) = self.publish.sync(cx, op, client, uid.clone(), reply) {
                    self.deadlines.insert(wait, Parked::PublishFlush(uid));
                }
            }
            Rpc::PublishPutOne {
                name,
                keys,
                data,
                override_,
            } => {
                let v = self.publish.put_one(cx, name, keys, data, override_);
                cx.reply(reply, Ok(v));
            }
            Rpc::PublishGetOne { name } => {
                let v = self.publish.get_one(&name);
                cx.reply(reply, Ok(v));
            }
            Rpc::PublishDeleteOne { name } => {
                let v = self.publish.delete_one(cx, name);
                cx.reply(reply, Ok(v));
            }
            Rpc::PublishWaitFlush { uid } => self.publish.wait_flush(cx, uid, reply),
            Rpc::PublishGet { names } => {
                let v = self.publish.get(&names);
                cx.reply(reply, Ok(v));
            }
            Rpc::PublishList => {
                let v = self.publish.list();
                cx.reply(reply, Ok(v));
            }
            Rpc::VariableSet { name, record, .. } => {
                self.variable.set(cx, name, record);
                cx.reply(reply, Ok(Value::Nil));
            }
            Rpc::VariableGet { name, timeout } => {
                if let Some(reply) = self.variable.get(cx, &name, reply) {
                    let wait = self.park(cx, timeout, Parked::VariableGet(name.clone()));
                    self.variable.wait(name, wait, reply);
                }
            }
            Rpc::QueueCreate { name, maxsize } => {
                self.queue.create(name, maxsize);
                cx.reply(reply, Ok(Value::Nil));
            }
            Rpc::QueuePut {
                name,
                record,
                timeout,
                ..
            } => {
                if let Some((record, reply)) = self.queue.put(cx, &name, record, reply) {
                    let wait = self.park(cx, timeout, Parked::QueuePut(name.clone()));
                    self.queue.wait_to_put(name, wait, record, reply);
                }
            }
            Rpc::QueueGet {
                name,
                timeout,
                batch,
            } => {
                if let Some(g) = self.queue.get(cx, &name, timeout, batch, reply) {
                    let wait = self.park(cx, timeout, Parked::QueueGet(name.clone()));
                    self.queue.wait_to_get(name, wait, g);
                }
            }
            Rpc::QueueQsize { name } => {
                let v = self.queue.qsize(&name);
                cx.reply(reply, Ok(v));
            }
            Rpc::EventSet { name } => {
                self.lock.event_set(cx, name);
                cx.reply(reply, Ok(Value::Nil));
            }
            Rpc::EventClear { name } => {
                self.lock.event_clear(&name);
                cx.reply(reply, Ok(Value::Nil));
            }
            Rpc::EventIsSet { name } => {
                let v = Value::Bool(self.lock.event_is_set(&name));
                cx.reply(reply, Ok(v));
            }
            Rpc::EventWait { name, timeout } => {
                if let Some(reply) = self.lock.event_wait(cx, &name, reply) {
                    let wait = self.park(cx, timeout, Parked::EventWait(name.clone()));
                    self.lock.event_park(name, wait, reply);
                }
            }
            Rpc::SemaphoreRegister {
                name,
                max_leases,
                lease_timeout,
            } => {
                let v = self
                    .lock
                    .semaphore_register(cx, name, max_leases, lease_timeout);
                cx.reply(reply, Ok(v));
            }
            Rpc::SemaphoreAcquire {
                name,
                lease_id,
                timeout,
            } => {
                if let Some(reply) = self.lock.semaphore_acquire(cx, &name, &lease_id, reply) {
                    let wait = self.park(cx, timeout, Parked::SemaphoreAcquire(name.clone()));
                    self.lock
                        .semaphore_park(name, lease_id, wait, reply, cx.now);
                }
            }
            Rpc::SemaphoreRelease { name, lease_id } => {
                self.lock.semaphore_release(cx, &name, &lease_id);
                cx.reply(reply, Ok(Value::Nil));
            }
            Rpc::SemaphoreRefreshLeases { name, lease_ids } => {
                self.lock.semaphore_refresh(cx, &name, lease_ids);
                cx.reply(reply, Ok(Value::Nil));
            }
            Rpc::SemaphoreValue { name } => {
                let v = self.lock.semaphore_value(&name);
                cx.reply(reply, Ok(v));
            }
            Rpc::SemaphoreClose { name } => {
                self.lock.semaphore_close(cx, &name);
                cx.reply(reply, Ok(Value::Nil));
            }
            Rpc::MultiLockAcquire {
                locks,
                id,
                num_locks,
                timeout,
            } => {
                if let Some(reply) = self
                    .lock
                    .multi_lock_acquire(cx, &locks, &id, num_locks, reply)
                {
                    let wait = self.park(cx, timeout, Parked::MultiLock(id.clone()));
                    self.lock.multi_lock_park(id, locks, wait, reply);
                }
            }
            Rpc::MultiLockRelease { id } => {
                let v = self.lock.multi_lock_release(cx, &id);
                cx.reply(reply, Ok(v));
            }
        }
    }

    fn stream_op(&mut self, cx: &mut Cx<'_>, from: Peer, op: ClientOp) {
        let Peer::Client(client) = from else {
            return; // the op table routes these from client streams only
        };
        match op {
            ClientOp::PublishFlush { uid } => {
                if let Some(wait) = self.publish.flushed(cx, uid) {
                    self.deadlines.remove(&wait);
                }
            }
            ClientOp::VariableConfirm { name, key, token } => {
                self.variable.confirm(cx, client, name, key, token)
            }
            ClientOp::VariableDelete { name } => self.variable.delete(cx, name),
            ClientOp::QueueFutureRelease { name, key } => {
                self.queue.future_release(cx, client, name, key)
            }
            ClientOp::QueueRelease { name } => self.queue.release(cx, name),
        }
    }
}

impl Hooks for Coordination {
    /// Expired semaphore leases are released (`_check_lease_timeout`).
    fn on_tick(&mut self, cx: &mut Cx<'_>) {
        self.lock.check_leases(cx);
    }
}

// ---- shared helpers -------------------------------------------------------------------------

/// For a request storing a future (`variable_set`, `queue_put`): whether the scheduler
/// knows its key yet. A client may set a future into a Variable or a Queue over RPC before
/// its `update-graph` arrived, so Dask polls (every 10 ms) until it does; this does the same
/// by asking for the request again ([`Timer::Again`]), and answers Dask's `TimeoutError` once
/// the deadline passes. Returns the request and its reply when they can go on.
fn key_known(cx: &mut Cx<'_>, mut request: Rpc, reply: Replier) -> Option<(Rpc, Replier)> {
    let (key, timeout, since) = match &mut request {
        Rpc::VariableSet {
            record: Record::Future(key),
            timeout,
            since,
            ..
        }
        | Rpc::QueuePut {
            record: Record::Future(key),
            timeout,
            since,
            ..
        } => (key, *timeout, since),
        _ => return Some((request, reply)),
    };
    if cx.core.task(key).is_some() {
        return Some((request, reply));
    }
    let started = *since.get_or_insert(cx.now);
    if timeout.is_some_and(|t| cx.now >= started + t) {
        // `f"Task {key} unknown to scheduler."`: the key's str, not its repr
        let e = raised(
            "TimeoutError",
            &format!("Task {} unknown to scheduler.", stringify(key)),
        );
        cx.reply(reply, Ok(e));
        return None;
    }
    let request = AnyRpc::Coordination(request);
    cx.after(KEY_POLL, Timer::Again { request, reply });
    None
}

/// A stored value's reply, with the state of a future's task (and the blamed task's
/// exception if it erred).
fn reply_of(cx: &Cx<'_>, record: &Record, token: Option<&str>) -> Value {
    let future = match record {
        Record::Msgpack(_) => None,
        Record::Future(key) => Some(match cx.core.task(key) {
            None => FutureState {
                state: None,
                error: None,
            },
            Some(t) => FutureState {
                state: Some(t.state.as_str()),
                error: (t.state == rask_core::TaskStatus::Erred).then(|| {
                    let blame = t
                        .exception_blame
                        .and_then(|b| cx.core.task_by_id(b))
                        .unwrap_or(t);
                    (
                        crate::translate::client::exception_value(&blame.rare().exception),
                        blame.rare().traceback.clone(),
                    )
                }),
            },
        }),
    };
    record_reply(record, token, future)
}
