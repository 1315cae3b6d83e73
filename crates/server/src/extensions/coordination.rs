//! Dask's coordination extensions: published datasets (`publish.py`), `Variable`
//! (`variable.py`), `Queue` (`queues.py`), `Event` (`event.py`), `Semaphore`/`Lock`
//! (`semaphore.py`) and `MultiLock` (`multi_lock.py`), ported op by op.
//!
//! All state is in [`State`], on the state task. The long-polls (`variable_get`, `queue_get`,
//! `queue_put` on a full queue, `event_wait`, `semaphore_acquire`, `multi_lock_acquire`) try
//! their op in one state closure and, if they must wait, leave a oneshot sender there in the
//! same closure (so no wake-up can be missed); the connection task awaits the receiver with
//! the request's deadline. A waiter that timed out is simply a closed sender, skipped or
//! removed by whoever would have woken it.
//!
//! Futures held by an extension are kept alive by pseudo-clients, as in Dask:
//! `published-<name>`, `variable-<name>`, `queue-<name>`.

mod lock;
mod publish;
mod queue;
mod variable;

use crate::connection::Ctx;
use crate::error::ServerError;
use crate::runtime::Scheduler;
use crate::translate::{field, parse_timedelta};
use rask_core::{ClientId, Stimulus, WorkerId};
use rask_protocol::{Key, Value};
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// This extension's state.
#[derive(Default)]
pub struct State {
    publish: publish::State,
    variable: variable::State,
    queue: queue::State,
    lock: lock::State,
}

/// RPC ops of this extension.
pub async fn rpc(op: &str, msg: &Value, ctx: &Arc<Ctx>) -> Option<Result<Value, ServerError>> {
    Some(match op {
        "publish_put" => publish::put(msg, ctx).await,
        "publish_get" => publish::get(msg, ctx).await,
        "publish_list" => publish::list(ctx).await,
        "publish_delete" => publish::delete(msg, ctx).await,
        "variable_set" => variable::set(msg, ctx).await,
        "variable_get" => variable::get(msg, ctx).await,
        "queue_create" => queue::create(msg, ctx).await,
        "queue_put" => queue::put(msg, ctx).await,
        "queue_get" => queue::get(msg, ctx).await,
        "queue_qsize" => queue::qsize(msg, ctx).await,
        "event_set" | "event_clear" | "event_is_set" | "event_wait" => {
            lock::event_op(op, msg, ctx).await
        }
        "semaphore_register" => lock::semaphore_register(msg, ctx).await,
        "semaphore_acquire" => lock::semaphore_acquire(msg, ctx).await,
        "semaphore_release" => lock::semaphore_release(msg, ctx).await,
        "semaphore_refresh_leases" => lock::semaphore_refresh_leases(msg, ctx).await,
        "semaphore_value" => lock::semaphore_value(msg, ctx).await,
        "semaphore_close" => lock::semaphore_close(msg, ctx).await,
        "multi_lock_acquire" => lock::multi_lock_acquire(msg, ctx).await,
        "multi_lock_release" => lock::multi_lock_release(msg, ctx).await,
        _ => return None,
    })
}

/// Client stream ops of this extension.
pub fn client_stream_op(
    op: &str,
    msg: &Value,
    client: ClientId,
    ctx: &Arc<Ctx>,
) -> Option<Result<(), ServerError>> {
    Some(match op {
        "publish_flush_batched_send" => publish::flush_batched_send(msg, ctx),
        "variable-future-received-confirm" => variable::future_received_confirm(msg, client, ctx),
        "variable_delete" => variable::delete(msg, ctx),
        "queue-future-release" => queue::future_release(msg, client, ctx),
        "queue_release" => queue::release(msg, ctx),
        _ => return None,
    })
}

/// Worker stream ops of this extension (none: tasks reach these extensions through their
/// worker's client or by RPC).
pub fn worker_stream_op(
    _op: &str,
    _msg: &Value,
    _worker: WorkerId,
    _ctx: &Arc<Ctx>,
) -> Option<Result<(), ServerError>> {
    None
}

/// A client went away. As in Dask, nothing held by these extensions belongs to a client:
/// leases expire by themselves, datasets and variables outlive their writers.
pub fn on_client_removed(_s: &mut Scheduler, _client: ClientId, _name: &str) {}

// ---- shared helpers -------------------------------------------------------------------------

/// A name field (`name`, dataset names, lock names): any key-like value, lists read as
/// tuples as Dask's `_normalize_name` does.
fn name_field(msg: &Value, name: &str) -> Result<Key, ServerError> {
    let v = msg.get(name).unwrap_or(&Value::Nil);
    name_of(v, name)
}

fn name_of(v: &Value, what: &str) -> Result<Key, ServerError> {
    match v {
        // `name=None` is a valid (if odd) name in Dask; give it a spelling of its own.
        Value::Nil => Ok(Key::Str("None".into())),
        v => Key::from_value(v).ok_or_else(|| {
            ServerError::BadMessage(format!("{what} must be a name, not {}", v.type_name()))
        }),
    }
}

/// Dask's `stringify(name)`, for pseudo-client names: a str as is, anything else its repr.
fn stringify(k: &Key) -> String {
    match k {
        Key::Str(s) => s.to_string(),
        other => other.to_string(),
    }
}

/// A `timeout` field: None/missing -> no deadline.
fn deadline_field(msg: &Value) -> Result<Option<Instant>, ServerError> {
    match msg.get("timeout") {
        None | Some(Value::Nil) => Ok(None),
        Some(v) => {
            let secs = parse_timedelta(v)
                .ok_or_else(|| ServerError::BadMessage(format!("bad timeout {v:?}")))?;
            let secs = secs.clamp(0.0, 1e9);
            Ok(Some(
                Instant::now() + std::time::Duration::from_secs_f64(secs),
            ))
        }
    }
}

/// Dask's `error_message` reply for a raised builtin exception (`translate::raised`).
use crate::translate::raised as raise;

/// Python's `str(KeyError(name))`: the repr of the key in quotes.
fn key_error(k: &Key) -> Value {
    raise("KeyError", &k.to_string())
}

/// What a wait for a oneshot came to.
enum Waited<T> {
    Got(T),
    /// the sender was dropped (state changed underneath: retry)
    Dropped,
    TimedOut,
}

/// Awaits `rx` until `deadline`. After a timeout the receiver is closed and drained, so a
/// value sent at the last moment is still seen, never lost.
async fn wait<T>(mut rx: oneshot::Receiver<T>, deadline: Option<Instant>) -> Waited<T> {
    let r = match deadline {
        None => (&mut rx).await,
        Some(d) => match tokio::time::timeout_at(d, &mut rx).await {
            Ok(r) => r,
            Err(_) => {
                rx.close();
                return match rx.try_recv() {
                    Ok(v) => Waited::Got(v),
                    Err(_) => Waited::TimedOut,
                };
            }
        },
    };
    match r {
        Ok(v) => Waited::Got(v),
        Err(_) => Waited::Dropped,
    }
}

fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// `client_desires_keys(keys, pseudo)`.
fn desire(s: &mut Scheduler, pseudo: &str, keys: Vec<Key>) {
    let client = s.pseudo_client(pseudo);
    s.stimulus(Stimulus::ClientDesiresKeys { client, keys });
}

/// `client_releases_keys(keys, pseudo)`.
fn release_keys(s: &mut Scheduler, pseudo: &str, keys: Vec<Key>, why: &str) {
    let Some(client) = s.client_ids.get(pseudo).copied() else {
        return;
    };
    s.stimulus(Stimulus::ClientReleasesKeys {
        client,
        keys,
        stimulus_id: format!("{why}-{}", crate::runtime::now()).into(),
    });
}

/// `remove_client(pseudo)`: forgets a pseudo-client and everything it wanted.
fn remove_pseudo_client(s: &mut Scheduler, pseudo: &str) {
    if let Some(client) = s.client_ids.remove(pseudo) {
        s.stimulus(Stimulus::RemoveClient { client });
    }
}

/// For a future being stored: waits (polling, as Dask does every 10 ms) until the scheduler
/// knows its key, since a client may set a future into a Variable/Queue over RPC before its
/// `update-graph` arrived. Returns Dask's `TimeoutError` reply if the deadline passes first.
async fn wait_for_task(
    record: &Record,
    deadline: Option<Instant>,
    ctx: &Arc<Ctx>,
) -> Result<Option<Value>, ServerError> {
    let Record::Future(key) = record else {
        return Ok(None);
    };
    loop {
        let k = key.clone();
        if ctx.handle.call(move |s| s.core.task(&k).is_some()).await? {
            return Ok(None);
        }
        if expired(deadline) {
            return Ok(Some(raise(
                "TimeoutError",
                &format!("Task {key} unknown to scheduler."),
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A stored value: msgpack data or a future's key.
#[derive(Clone, Debug)]
enum Record {
    Msgpack(Value),
    Future(Key),
}

impl Record {
    /// From a request with `key` (a future) or `data`.
    fn from_msg(msg: &Value) -> Result<Record, ServerError> {
        match msg.get("key") {
            Some(Value::Nil) | None => Ok(Record::Msgpack(
                msg.get("data").cloned().unwrap_or_default(),
            )),
            Some(k) => Ok(Record::Future(Key::from_value(k).ok_or_else(|| {
                ServerError::BadMessage(format!("key must be a task key, not {}", k.type_name()))
            })?)),
        }
    }

    /// The reply: `{"type": "msgpack", "value": ...}` or, for a future,
    /// `{"type": "Future", "value": key, <extra>..., "state": ...}` with the exception and
    /// traceback of an erred task (`variable.py:106-118`, `queues.py:92-105`).
    fn to_reply(&self, s: &Scheduler, token: Option<&str>) -> Value {
        match self {
            Record::Msgpack(v) => {
                Value::map([("type", Value::from("msgpack")), ("value", v.clone())])
            }
            Record::Future(key) => {
                let mut out = vec![("type", Value::from("Future")), ("value", key.to_value())];
                if let Some(t) = token {
                    out.push(("token", Value::from(t)));
                }
                match s.core.task(key) {
                    None => out.push(("state", Value::from("lost"))),
                    Some(t) => {
                        out.push(("state", Value::from(t.state.as_str())));
                        if t.state == rask_core::TaskStatus::Erred {
                            let blame = t
                                .exception_blame
                                .and_then(|b| s.core.task_by_id(b))
                                .unwrap_or(t);
                            out.push(("exception", blame.exception.clone()));
                            out.push(("traceback", blame.traceback.clone()));
                        }
                    }
                }
                Value::map(out)
            }
        }
    }
}

/// A required field that must be a list.
fn list_field<'a>(msg: &'a Value, name: &str) -> Result<&'a [Value], ServerError> {
    match field(msg, name)? {
        Value::Array(items) => Ok(items),
        other => Err(ServerError::BadMessage(format!(
            "field {name:?} must be a list, not {}",
            other.type_name()
        ))),
    }
}
