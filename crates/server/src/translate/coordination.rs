//! The coordination extensions' messages (`publish.py`, `variable.py`, `queues.py`,
//! `event.py`, `semaphore.py`, `multi_lock.py`) and their replies.

use crate::error::{Invalid, RequestError};
use crate::messages::coordination::{Batch, ClientOp, Record, Rpc};
use crate::messages::{ClientMsg, Rpc as AnyRpc};
use rask_comm::fields::{int_field, key_field, keys_of, list_field, opt_str, str_field};
use rask_comm::FieldError;
use rask_protocol::{Key, Value};
use std::sync::Arc;

// ---- fields ----------------------------------------------------------------------------------

/// A name field (`name`, dataset names, lock names): any key-like value, lists read as
/// tuples as Dask's `_normalize_name` does.
fn name_field(msg: &Value, name: &str) -> Result<Key, RequestError> {
    name_of(msg.get(name).unwrap_or(&Value::Nil), name)
}

fn name_of(v: &Value, what: &str) -> Result<Key, RequestError> {
    match v {
        // `name=None` is a valid (if odd) name in Dask; give it a spelling of its own.
        Value::Nil => Ok(Key::Str("None".into())),
        v => Key::from_value(v).ok_or_else(|| {
            FieldError::Wrong {
                field: what.into(),
                expected: "a name",
                got: v.type_name(),
            }
            .into()
        }),
    }
}

fn names_field(msg: &Value, name: &str) -> Result<Vec<Key>, RequestError> {
    list_field(msg, name)?
        .iter()
        .map(|n| name_of(n, name))
        .collect()
}

/// Dask's `stringify(name)`, for pseudo-client and lock names: a str as is, anything else
/// its repr.
pub fn stringify(k: &Key) -> String {
    match k {
        Key::Str(s) => s.to_string(),
        other => other.to_string(),
    }
}

/// A `timeout` field in seconds: None/missing -> no deadline.
fn timeout_field(msg: &Value) -> Result<Option<f64>, RequestError> {
    match msg.get("timeout") {
        None | Some(Value::Nil) => Ok(None),
        Some(v) => {
            let secs = rask_comm::fields::parse_timedelta(v)
                .ok_or_else(|| Invalid::Timedelta(format!("{v:?}")))?;
            Ok(Some(secs.clamp(0.0, 1e9)))
        }
    }
}

/// From a request with `key` (a future) or `data`.
fn record(msg: &Value) -> Result<Record, RequestError> {
    match msg.get("key") {
        Some(Value::Nil) | None => Ok(Record::Msgpack(
            msg.get("data").cloned().unwrap_or_default(),
        )),
        Some(_) => Ok(Record::Future(key_field(msg, "key")?)),
    }
}

fn rpc(r: Rpc) -> Result<AnyRpc, RequestError> {
    Ok(AnyRpc::Coordination(r))
}

fn op(o: ClientOp) -> Result<ClientMsg, RequestError> {
    Ok(ClientMsg::Coordination(o))
}

// ---- datasets --------------------------------------------------------------------------------

/// `publish_put {names, keys, data, override, client, uid}`; distributed <= 2026.3.0 sends
/// `{keys, data, name, override, client}` (one dataset, no `names`).
pub fn publish_put(msg: &Value) -> Result<AnyRpc, RequestError> {
    if msg.get("names").is_none() {
        return rpc(Rpc::PublishPutOne {
            name: name_field(msg, "name")?,
            keys: match msg.get("keys") {
                None | Some(Value::Nil) => Vec::new(),
                Some(ks) => keys_of(ks, "keys")?,
            },
            data: msg.get("data").cloned().unwrap_or_default(),
            override_: msg.get("override").is_some_and(Value::truthy),
        });
    }
    let names = names_field(msg, "names")?;
    let keys = list_field(msg, "keys")?
        .iter()
        .map(|ks| keys_of(ks, "keys"))
        .collect::<Result<Vec<_>, _>>()?;
    let data = list_field(msg, "data")?.to_vec();
    if names.len() != keys.len() || names.len() != data.len() {
        return Err(Invalid::Lengths("publish_put: names, keys and data").into());
    }
    rpc(Rpc::PublishPut {
        names,
        keys,
        data,
        override_: msg.get("override").is_some_and(Value::truthy),
        client: opt_str(msg, "client")?,
        uid: name_field(msg, "uid")?,
    })
}

/// `publish_get {names}`; distributed <= 2026.3.0 sends `{name, client}` and gets one
/// dataset (or None) back.
pub fn publish_get(msg: &Value) -> Result<AnyRpc, RequestError> {
    if msg.get("names").is_none() {
        return rpc(Rpc::PublishGetOne {
            name: name_field(msg, "name")?,
        });
    }
    rpc(Rpc::PublishGet {
        names: names_field(msg, "names")?,
    })
}

/// `publish_list`
pub fn publish_list(_msg: &Value) -> Result<AnyRpc, RequestError> {
    rpc(Rpc::PublishList)
}

/// `publish_delete {names, client, uid}`; distributed <= 2026.3.0 sends `{name}`.
pub fn publish_delete(msg: &Value) -> Result<AnyRpc, RequestError> {
    if msg.get("names").is_none() {
        return rpc(Rpc::PublishDeleteOne {
            name: name_field(msg, "name")?,
        });
    }
    rpc(Rpc::PublishDelete {
        names: names_field(msg, "names")?,
        client: opt_str(msg, "client")?,
        uid: name_field(msg, "uid")?,
    })
}

/// `publish_wait_flush {uid}` (distributed <= 2026.3.0)
pub fn publish_wait_flush(msg: &Value) -> Result<AnyRpc, RequestError> {
    rpc(Rpc::PublishWaitFlush {
        uid: name_field(msg, "uid")?,
    })
}

/// Stream op `publish_flush_batched_send {uid}` (the same in every tested release; older
/// ones send a hex str uid, 2026.8.0 bytes)
pub fn publish_flush(msg: &Value) -> Result<ClientMsg, RequestError> {
    op(ClientOp::PublishFlush {
        uid: name_field(msg, "uid")?,
    })
}

/// `publish_get`'s entry for one dataset: `{"data", "keys"}`, or None.
pub fn dataset(found: Option<(&Value, &[Key])>) -> Value {
    match found {
        None => Value::Nil,
        Some((data, keys)) => {
            Value::map([("data", data.clone()), ("keys", super::keys_value(keys))])
        }
    }
}

// ---- Variable --------------------------------------------------------------------------------

/// `variable_set {name, data | key, timeout}`
pub fn variable_set(msg: &Value) -> Result<AnyRpc, RequestError> {
    rpc(Rpc::VariableSet {
        name: name_field(msg, "name")?,
        record: record(msg)?,
        timeout: timeout_field(msg)?,
        since: None,
    })
}

/// `variable_get {name, timeout}`
pub fn variable_get(msg: &Value) -> Result<AnyRpc, RequestError> {
    rpc(Rpc::VariableGet {
        name: name_field(msg, "name")?,
        timeout: timeout_field(msg)?,
    })
}

/// Stream op `variable-future-received-confirm {name, key, token}`
pub fn variable_confirm(msg: &Value) -> Result<ClientMsg, RequestError> {
    op(ClientOp::VariableConfirm {
        name: name_field(msg, "name")?,
        key: key_field(msg, "key")?,
        token: opt_str(msg, "token")?,
    })
}

/// Stream op `variable_delete {name}`
pub fn variable_delete(msg: &Value) -> Result<ClientMsg, RequestError> {
    op(ClientOp::VariableDelete {
        name: name_field(msg, "name")?,
    })
}

// ---- Queue -----------------------------------------------------------------------------------

/// `queue_create {name, maxsize}`
pub fn queue_create(msg: &Value) -> Result<AnyRpc, RequestError> {
    rpc(Rpc::QueueCreate {
        name: name_field(msg, "name")?,
        maxsize: msg
            .get("maxsize")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .max(0) as usize,
    })
}

/// `queue_put {name, data | key, timeout}`
pub fn queue_put(msg: &Value) -> Result<AnyRpc, RequestError> {
    rpc(Rpc::QueuePut {
        name: name_field(msg, "name")?,
        record: record(msg)?,
        timeout: timeout_field(msg)?,
        since: None,
    })
}

/// `queue_get {name, timeout, batch}`
pub fn queue_get(msg: &Value) -> Result<AnyRpc, RequestError> {
    let batch = match msg.get("batch").unwrap_or(&Value::Bool(false)) {
        Value::Bool(false) | Value::Nil => Batch::One,
        Value::Bool(true) => Batch::All,
        other => Batch::N(other.as_i64().ok_or_else(|| FieldError::Wrong {
            field: "batch".into(),
            expected: "a bool or an int",
            got: other.type_name(),
        })?),
    };
    rpc(Rpc::QueueGet {
        name: name_field(msg, "name")?,
        timeout: timeout_field(msg)?,
        batch,
    })
}

/// `queue_qsize {name}`
pub fn queue_qsize(msg: &Value) -> Result<AnyRpc, RequestError> {
    rpc(Rpc::QueueQsize {
        name: name_field(msg, "name")?,
    })
}

/// Stream op `queue-future-release {name, key}`
pub fn queue_future_release(msg: &Value) -> Result<ClientMsg, RequestError> {
    op(ClientOp::QueueFutureRelease {
        name: name_field(msg, "name")?,
        key: key_field(msg, "key")?,
    })
}

/// Stream op `queue_release {name}`
pub fn queue_release(msg: &Value) -> Result<ClientMsg, RequestError> {
    op(ClientOp::QueueRelease {
        name: name_field(msg, "name")?,
    })
}

// ---- Event -----------------------------------------------------------------------------------

/// `event_set {name}`
pub fn event_set(msg: &Value) -> Result<AnyRpc, RequestError> {
    rpc(Rpc::EventSet {
        name: name_field(msg, "name")?,
    })
}

/// `event_clear {name}`
pub fn event_clear(msg: &Value) -> Result<AnyRpc, RequestError> {
    rpc(Rpc::EventClear {
        name: name_field(msg, "name")?,
    })
}

/// `event_is_set {name}`
pub fn event_is_set(msg: &Value) -> Result<AnyRpc, RequestError> {
    rpc(Rpc::EventIsSet {
        name: name_field(msg, "name")?,
    })
}

/// `event_wait {name, timeout}`
pub fn event_wait(msg: &Value) -> Result<AnyRpc, RequestError> {
    rpc(Rpc::EventWait {
        name: name_field(msg, "name")?,
        timeout: timeout_field(msg)?,
    })
}

// ---- Semaphore / Lock ------------------------------------------------------------------------

/// `semaphore_register {name, max_leases, lease_timeout}`
pub fn semaphore_register(msg: &Value) -> Result<AnyRpc, RequestError> {
    rpc(Rpc::SemaphoreRegister {
        name: name_field(msg, "name")?,
        max_leases: int_field(msg, "max_leases")?,
        lease_timeout: msg
            .get("lease_timeout")
            .and_then(rask_comm::fields::parse_timedelta)
            .filter(|t| *t > 0.0),
    })
}

/// `semaphore_acquire {name, lease_id, timeout}`
pub fn semaphore_acquire(msg: &Value) -> Result<AnyRpc, RequestError> {
    rpc(Rpc::SemaphoreAcquire {
        name: name_field(msg, "name")?,
        lease_id: str_field(msg, "lease_id")?,
        timeout: timeout_field(msg)?,
    })
}

/// `semaphore_release {name, lease_id}`
pub fn semaphore_release(msg: &Value) -> Result<AnyRpc, RequestError> {
    rpc(Rpc::SemaphoreRelease {
        name: name_field(msg, "name")?,
        lease_id: str_field(msg, "lease_id")?,
    })
}

/// `semaphore_refresh_leases {name, lease_ids}`
pub fn semaphore_refresh_leases(msg: &Value) -> Result<AnyRpc, RequestError> {
    rpc(Rpc::SemaphoreRefreshLeases {
        name: name_field(msg, "name")?,
        lease_ids: rask_comm::fields::opt_str_list(msg, "lease_ids")?.unwrap_or_default(),
    })
}

/// `semaphore_value {name}`
pub fn semaphore_value(msg: &Value) -> Result<AnyRpc, RequestError> {
    rpc(Rpc::SemaphoreValue {
        name: name_field(msg, "name")?,
    })
}

/// `semaphore_close {name}`
pub fn semaphore_close(msg: &Value) -> Result<AnyRpc, RequestError> {
    rpc(Rpc::SemaphoreClose {
        name: name_field(msg, "name")?,
    })
}

// ---- MultiLock -------------------------------------------------------------------------------

/// `multi_lock_acquire {locks, id, num_locks, timeout}`
pub fn multi_lock_acquire(msg: &Value) -> Result<AnyRpc, RequestError> {
    let locks: Vec<Arc<str>> = list_field(msg, "locks")?
        .iter()
        .map(|l| name_of(l, "locks").map(|k| Arc::from(stringify(&k))))
        .collect::<Result<_, _>>()?;
    let id: Arc<str> = stringify(&name_field(msg, "id")?).into();
    let num_locks = match msg.get("num_locks") {
        None | Some(Value::Nil) => locks.len() as i64,
        Some(_) => int_field(msg, "num_locks")?,
    };
    if num_locks <= 0 || num_locks > locks.len() as i64 {
        return Err(Invalid::OutOfRange {
            field: "num_locks",
            range: format!("1..={}", locks.len()),
            got: num_locks,
        }
        .into());
    }
    rpc(Rpc::MultiLockAcquire {
        locks,
        id,
        num_locks,
        timeout: timeout_field(msg)?,
    })
}

/// `multi_lock_release {id}`
pub fn multi_lock_release(msg: &Value) -> Result<AnyRpc, RequestError> {
    let id: Arc<str> = match opt_str(msg, "id")? {
        Some(id) => id,
        None => stringify(&name_field(msg, "id")?).into(),
    };
    rpc(Rpc::MultiLockRelease { id })
}

// ---- replies ---------------------------------------------------------------------------------

/// What the scheduler knows of a stored future's task, for [`record`]'s reply.
pub struct FutureState {
    /// Dask's state name, or None if the scheduler forgot the key
    pub state: Option<&'static str>,
    /// for an erred task: the blamed task's exception and traceback
    pub error: Option<(Value, Value)>,
}

/// A stored value as `variable_get` / `queue_get` return it: `{"type": "msgpack",
/// "value"}`, or for a future `{"type": "Future", "value": key, "token"?, "state",
/// "exception"?, "traceback"?}` (`variable.py:106-118`, `queues.py:92-105`).
pub fn record_reply(record: &Record, token: Option<&str>, future: Option<FutureState>) -> Value {
    match record {
        Record::Msgpack(v) => Value::map([("type", Value::from("msgpack")), ("value", v.clone())]),
        Record::Future(key) => {
            let mut out = vec![("type", Value::from("Future")), ("value", key.to_value())];
            if let Some(t) = token {
                out.push(("token", Value::from(t)));
            }
            let future = future.unwrap_or(FutureState {
                state: None,
                error: None,
            });
            out.push(("state", Value::from(future.state.unwrap_or("lost"))));
            if let Some((exception, traceback)) = future.error {
                out.push(("exception", exception));
                out.push(("traceback", traceback));
            }
            Value::map(out)
        }
    }
}

/// Python's `KeyError(name)`, raised: `KeyError('q')` for a str name (not the repr of its
/// repr).
pub fn key_error(k: &Key) -> Value {
    rask_comm::reply::raised("KeyError", &stringify(k))
}
