//! `Queue` (`queues.py`): a FIFO of msgpack values and futures per name, with an optional
//! `maxsize` (puts wait while full), shared by reference count between `Queue` objects.

use super::{
    deadline_field, desire, key_error, name_field, raise, release_keys, stringify, wait,
    wait_for_task, Record, Waited,
};
use crate::connection::Ctx;
use crate::error::ServerError;
use crate::runtime::Scheduler;
use rask_core::{ClientId, Stimulus};
use rask_protocol::{Key, Value};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::oneshot;

#[derive(Default)]
pub(super) struct State {
    queues: FxHashMap<Key, Queue>,
    /// (name, key) -> how many times the future sits in the queue or is in flight to a getter
    future_refcount: FxHashMap<(Key, Key), i64>,
}

struct Queue {
    /// 0: unbounded
    maxsize: usize,
    items: VecDeque<Record>,
    /// `queue_get`s waiting for an item; they get the record and its reply
    getters: VecDeque<oneshot::Sender<(Record, Value)>>,
    /// `queue_put`s waiting for room
    putters: VecDeque<(Record, oneshot::Sender<()>)>,
    /// `Queue` objects using it (`queue_create` count minus `queue_release`s)
    refcount: i64,
}

impl Queue {
    fn full(&self) -> bool {
        self.maxsize > 0 && self.items.len() >= self.maxsize
    }
}

fn pseudo(name: &Key) -> String {
    format!("queue-{}", stringify(name))
}

/// `queue_create{name, maxsize}`.
pub(super) async fn create(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let name = name_field(msg, "name")?;
    let maxsize = msg
        .get("maxsize")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .max(0) as usize;
    ctx.handle
        .call(move |s| {
            s.ext
                .coordination
                .queue
                .queues
                .entry(name)
                .and_modify(|q| q.refcount += 1)
                .or_insert_with(|| Queue {
                    maxsize,
                    items: VecDeque::new(),
                    getters: VecDeque::new(),
                    putters: VecDeque::new(),
                    refcount: 1,
                });
            Value::Nil
        })
        .await
}

/// Stream op `queue_release{name}`: the last user gone, the queue and its futures go.
pub(super) fn release(msg: &Value, ctx: &Arc<Ctx>) -> Result<(), ServerError> {
    let name = name_field(msg, "name")?;
    ctx.handle.send(move |s| {
        let st = &mut s.ext.coordination.queue;
        let Some(q) = st.queues.get_mut(&name) else {
            return;
        };
        q.refcount -= 1;
        if q.refcount > 0 {
            return;
        }
        let Some(q) = st.queues.remove(&name) else {
            return;
        };
        let keys: Vec<Key> = q
            .items
            .into_iter()
            .filter_map(|r| match r {
                Record::Future(k) => Some(k),
                Record::Msgpack(_) => None,
            })
            .collect();
        if !keys.is_empty() {
            release_keys(s, &pseudo(&name), keys, "queue-release");
        }
    });
    Ok(())
}

/// Offers `record` to the first live getter, else stores it. Returns `false` if the queue is
/// full (the caller waits).
fn offer(s: &mut Scheduler, name: &Key, mut record: Record) -> Result<bool, Record> {
    loop {
        let Some(q) = s.ext.coordination.queue.queues.get_mut(name) else {
            return Err(record);
        };
        if q.items.is_empty() {
            if let Some(tx) = q.getters.pop_front() {
                if tx.is_closed() {
                    continue;
                }
                let reply = record.to_reply(s, None);
                match tx.send((record, reply)) {
                    Ok(()) => return Ok(true),
                    Err((r, _)) => {
                        record = r;
                        continue;
                    }
                }
            }
        }
        if q.full() {
            return Err(record);
        }
        q.items.push_back(record);
        return Ok(true);
    }
}

/// `queue_put{name, data | key, timeout}`.
pub(super) async fn put(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let name = name_field(msg, "name")?;
    let record = Record::from_msg(msg)?;
    let deadline = deadline_field(msg)?;
    if let Some(timed_out) = wait_for_task(&record, deadline, ctx).await? {
        return Ok(timed_out);
    }
    let n = name.clone();
    let r = ctx
        .handle
        .call(move |s| {
            if !s.ext.coordination.queue.queues.contains_key(&n) {
                return Err(None);
            }
            if let Record::Future(k) = &record {
                *s.ext
                    .coordination
                    .queue
                    .future_refcount
                    .entry((n.clone(), k.clone()))
                    .or_insert(0) += 1;
                desire(s, &pseudo(&n), vec![k.clone()]);
            }
            match offer(s, &n, record) {
                Ok(_) => Ok(()),
                Err(record) => {
                    let (tx, rx) = oneshot::channel();
                    if let Some(q) = s.ext.coordination.queue.queues.get_mut(&n) {
                        q.putters.retain(|(_, t)| !t.is_closed());
                        q.putters.push_back((record, tx));
                    }
                    Err(Some(rx))
                }
            }
        })
        .await?;
    match r {
        Ok(()) => Ok(Value::Nil),
        Err(None) => Ok(key_error(&name)),
        Err(Some(rx)) => match wait(rx, deadline).await {
            Waited::Got(()) => Ok(Value::Nil),
            Waited::Dropped => Ok(Value::Nil),
            Waited::TimedOut => Ok(raise("TimeoutError", "")),
        },
    }
}

/// Takes the next item if there is one, letting a waiting putter in.
fn take(s: &mut Scheduler, name: &Key) -> Option<Record> {
    let q = s.ext.coordination.queue.queues.get_mut(name)?;
    let item = q.items.pop_front()?;
    while let Some((record, tx)) = q.putters.pop_front() {
        if tx.send(()).is_ok() {
            q.items.push_back(record);
            break;
        }
    }
    Some(item)
}

/// One `q.get()`: an item now, or a receiver to wait on.
fn get_one(
    s: &mut Scheduler,
    name: &Key,
) -> Result<Result<Value, oneshot::Receiver<(Record, Value)>>, Value> {
    if !s.ext.coordination.queue.queues.contains_key(name) {
        return Err(key_error(name));
    }
    if let Some(r) = take(s, name) {
        return Ok(Ok(r.to_reply(s, None)));
    }
    let (tx, rx) = oneshot::channel();
    if let Some(q) = s.ext.coordination.queue.queues.get_mut(name) {
        q.getters.retain(|t| !t.is_closed());
        q.getters.push_back(tx);
    }
    Ok(Err(rx))
}

/// `queue_get{name, timeout, batch}`.
pub(super) async fn get(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let name = name_field(msg, "name")?;
    let deadline = deadline_field(msg)?;
    let batch = msg.get("batch").cloned().unwrap_or(Value::Bool(false));
    match batch {
        Value::Bool(false) | Value::Nil => get_single(name, deadline, ctx).await,
        Value::Bool(true) => {
            ctx.handle
                .call(move |s| {
                    if !s.ext.coordination.queue.queues.contains_key(&name) {
                        return key_error(&name);
                    }
                    let mut out = Vec::new();
                    let n = s
                        .ext
                        .coordination
                        .queue
                        .queues
                        .get(&name)
                        .map_or(0, |q| q.items.len());
                    for _ in 0..n {
                        if let Some(r) = take(s, &name) {
                            out.push(r.to_reply(s, None));
                        }
                    }
                    Value::Array(out)
                })
                .await
        }
        other => {
            let Some(n) = other.as_i64() else {
                return Err(ServerError::BadMessage(format!(
                    "batch must be a bool or an int, not {}",
                    other.type_name()
                )));
            };
            if deadline.is_some() {
                return Ok(raise(
                    "NotImplementedError",
                    "Dask queues don't support simultaneous use of integer batch sizes and timeouts",
                ));
            }
            let mut out = Vec::new();
            for _ in 0..n.max(0) {
                let v = get_single(name.clone(), None, ctx).await?;
                if v.get("status").and_then(Value::as_str) == Some("uncaught-error") {
                    return Ok(v);
                }
                out.push(v);
            }
            Ok(Value::Array(out))
        }
    }
}

async fn get_single(
    name: Key,
    deadline: Option<tokio::time::Instant>,
    ctx: &Arc<Ctx>,
) -> Result<Value, ServerError> {
    loop {
        let n = name.clone();
        match ctx.handle.call(move |s| get_one(s, &n)).await? {
            Err(e) => return Ok(e),
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(rx)) => match wait(rx, deadline).await {
                Waited::Got((_, v)) => return Ok(v),
                // the queue went away under us: the next try reports it
                Waited::Dropped => continue,
                Waited::TimedOut => return Ok(raise("TimeoutError", "")),
            },
        }
    }
}

/// `queue_qsize{name}`.
pub(super) async fn qsize(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let name = name_field(msg, "name")?;
    ctx.handle
        .call(move |s| match s.ext.coordination.queue.queues.get(&name) {
            Some(q) => Value::from(q.items.len()),
            None => key_error(&name),
        })
        .await
}

/// Stream op `queue-future-release{name, key}`: a getter took its own hold on the key.
pub(super) fn future_release(
    msg: &Value,
    client: ClientId,
    ctx: &Arc<Ctx>,
) -> Result<(), ServerError> {
    let name = name_field(msg, "name")?;
    let key = crate::translate::key_field(msg, "key")?;
    ctx.handle.send(move |s| {
        s.stimulus(Stimulus::ClientDesiresKeys {
            client,
            keys: vec![key.clone()],
        });
        let id = (name, key);
        let rc = s
            .ext
            .coordination
            .queue
            .future_refcount
            .entry(id.clone())
            .or_insert(0);
        *rc -= 1;
        if *rc <= 0 {
            s.ext.coordination.queue.future_refcount.remove(&id);
            let (name, key) = id;
            release_keys(s, &pseudo(&name), vec![key], "queue-future-release");
        }
    });
    Ok(())
}
