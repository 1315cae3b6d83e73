//! `Queue` (`queues.py`): a FIFO of msgpack values and futures per name, with an optional
//! `maxsize` (puts wait while full), shared by reference count between `Queue` objects.

use super::{reply_of, Cx};
use crate::event::Replier;
use crate::messages::coordination::{Batch, Record};
use crate::translate::coordination::{key_error, stringify};
use rask_comm::reply::raised;
use rask_core::{ClientId, Stimulus};
use rask_protocol::{Key, Value};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;

#[derive(Default)]
pub(super) struct State {
    queues: FxHashMap<Key, Queue>,
    /// (name, key) -> how many times the future sits in the queue or is in flight to a getter
    future_refcount: FxHashMap<(Key, Key), i64>,
}

/// A parked `queue_get`: it wants one item (`want: None`) or a batch of `n`.
struct Getter {
    wait: u64,
    want: Option<usize>,
    got: Vec<Value>,
    reply: Replier,
}

/// A parked `queue_put` on a full queue.
struct Putter {
    wait: u64,
    record: Record,
    reply: Replier,
}

struct Queue {
    /// 0: unbounded
    maxsize: usize,
    items: VecDeque<Record>,
    getters: VecDeque<Getter>,
    putters: VecDeque<Putter>,
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

impl State {
    /// `queue_create {name, maxsize}`
    pub(super) fn create(&mut self, name: Key, maxsize: usize) {
        self.queues
            .entry(name)
            .and_modify(|q| q.refcount += 1)
            .or_insert_with(|| Queue {
                maxsize,
                items: VecDeque::new(),
                getters: VecDeque::new(),
                putters: VecDeque::new(),
                refcount: 1,
            });
    }

    /// Stream op `queue_release {name}`: the last user gone, the queue and its futures go;
    /// requests still waiting on it are answered as if it never existed.
    pub(super) fn release(&mut self, cx: &mut Cx<'_>, name: Key) {
        let Some(q) = self.queues.get_mut(&name) else {
            return;
        };
        q.refcount -= 1;
        if q.refcount > 0 {
            return;
        }
        let Some(q) = self.queues.remove(&name) else {
            return;
        };
        for g in q.getters {
            cx.reply(g.reply, Ok(key_error(&name)));
        }
        for p in q.putters {
            cx.reply(p.reply, Ok(Value::Nil));
        }
        let keys: Vec<Key> = q
            .items
            .into_iter()
            .filter_map(|r| match r {
                Record::Future(k) => Some(k),
                Record::Msgpack(_) => None,
            })
            .collect();
        if !keys.is_empty() {
            cx.release(pseudo(&name), keys, "queue-release");
        }
    }

    /// Gives `record` to the first live getter, else stores it; gives it back if the queue
    /// is full.
    fn offer(&mut self, cx: &mut Cx<'_>, name: &Key, record: Record) -> Result<(), Record> {
        let Some(q) = self.queues.get_mut(name) else {
            return Err(record);
        };
        if q.items.is_empty() {
            while let Some(mut g) = q.getters.pop_front() {
                if g.reply.is_closed() {
                    continue;
                }
                g.got.push(reply_of(cx, &record, None));
                match g.want {
                    None => {
                        let v = g.got.pop().unwrap_or_default();
                        cx.reply(g.reply, Ok(v));
                    }
                    Some(n) if g.got.len() >= n => cx.reply(g.reply, Ok(Value::Array(g.got))),
                    Some(_) => q.getters.push_front(g),
                }
                return Ok(());
            }
        }
        if q.full() {
            return Err(record);
        }
        q.items.push_back(record);
        Ok(())
    }

    /// `queue_put {name, data | key}`: stored or handed over now, else the record and the
    /// reply come back to wait for room.
    pub(super) fn put(
        &mut self,
        cx: &mut Cx<'_>,
        name: &Key,
        record: Record,
        reply: Replier,
    ) -> Option<(Record, Replier)> {
        if !self.queues.contains_key(name) {
            cx.reply(reply, Ok(key_error(name)));
            return None;
        }
        if let Record::Future(k) = &record {
            *self
                .future_refcount
                .entry((name.clone(), k.clone()))
                .or_insert(0) += 1;
            cx.desire(pseudo(name), vec![k.clone()]);
        }
        match self.offer(cx, name, record) {
            Ok(()) => {
                cx.reply(reply, Ok(Value::Nil));
                None
            }
            Err(record) => Some((record, reply)),
        }
    }

    /// Parks a put until there is room.
    pub(super) fn wait_to_put(&mut self, name: Key, wait: u64, record: Record, reply: Replier) {
        if let Some(q) = self.queues.get_mut(&name) {
            q.putters.retain(|p| !p.reply.is_closed());
            q.putters.push_back(Putter {
                wait,
                record,
                reply,
            });
        }
    }

    /// A parked put timed out: `TimeoutError`.
    pub(super) fn put_timed_out(&mut self, cx: &mut Cx<'_>, name: &Key, wait: u64) {
        let Some(q) = self.queues.get_mut(name) else {
            return;
        };
        if let Some(i) = q.putters.iter().position(|p| p.wait == wait) {
            if let Some(p) = q.putters.remove(i) {
                cx.reply(p.reply, Ok(raised("TimeoutError", "")));
            }
        }
    }

    /// Takes the next item if there is one, letting a waiting putter in.
    fn take(&mut self, cx: &mut Cx<'_>, name: &Key) -> Option<Record> {
        let q = self.queues.get_mut(name)?;
        let item = q.items.pop_front()?;
        while let Some(p) = q.putters.pop_front() {
            if !p.reply.is_closed() {
                q.items.push_back(p.record);
                cx.reply(p.reply, Ok(Value::Nil));
                break;
            }
        }
        Some(item)
    }

    /// `queue_get {name, batch}`: answered now, or it comes back to wait for more items.
    pub(super) fn get(
        &mut self,
        cx: &mut Cx<'_>,
        name: &Key,
        timeout: Option<f64>,
        batch: Batch,
        reply: Replier,
    ) -> Option<GetWait> {
        if !self.queues.contains_key(name) {
            cx.reply(reply, Ok(key_error(name)));
            return None;
        }
        match batch {
            Batch::All => {
                let mut out = Vec::new();
                while let Some(r) = self.take(cx, name) {
                    out.push(reply_of(cx, &r, None));
                }
                cx.reply(reply, Ok(Value::Array(out)));
                None
            }
            Batch::N(_) if timeout.is_some() => {
                let e = raised(
                    "NotImplementedError",
                    "Dask queues don't support simultaneous use of integer batch sizes and timeouts",
                );
                cx.reply(reply, Ok(e));
                None
            }
            Batch::N(n) => {
                let n = n.max(0) as usize;
                let mut got = Vec::new();
                while got.len() < n {
                    match self.take(cx, name) {
                        Some(r) => got.push(reply_of(cx, &r, None)),
                        None => break,
                    }
                }
                if got.len() == n {
                    cx.reply(reply, Ok(Value::Array(got)));
                    return None;
                }
                // the rest are waited for, one at a time, in order
                Some(GetWait {
                    want: Some(n),
                    got,
                    reply,
                })
            }
            Batch::One => match self.take(cx, name) {
                Some(r) => {
                    let v = reply_of(cx, &r, None);
                    cx.reply(reply, Ok(v));
                    None
                }
                None => Some(GetWait {
                    want: None,
                    got: Vec::new(),
                    reply,
                }),
            },
        }
    }

    /// Parks a get until items arrive.
    pub(super) fn wait_to_get(&mut self, name: Key, wait: u64, g: GetWait) {
        if let Some(q) = self.queues.get_mut(&name) {
            q.getters.retain(|g| !g.reply.is_closed());
            q.getters.push_back(Getter {
                wait,
                want: g.want,
                got: g.got,
                reply: g.reply,
            });
        }
    }

    /// A parked get timed out: `TimeoutError`.
    pub(super) fn get_timed_out(&mut self, cx: &mut Cx<'_>, name: &Key, wait: u64) {
        let Some(q) = self.queues.get_mut(name) else {
            return;
        };
        if let Some(i) = q.getters.iter().position(|g| g.wait == wait) {
            if let Some(g) = q.getters.remove(i) {
                cx.reply(g.reply, Ok(raised("TimeoutError", "")));
            }
        }
    }

    /// `queue_qsize {name}`
    pub(super) fn qsize(&self, name: &Key) -> Value {
        match self.queues.get(name) {
            Some(q) => Value::from(q.items.len()),
            None => key_error(name),
        }
    }

    /// Stream op `queue-future-release {name, key}`: a getter took its own hold on the key.
    pub(super) fn future_release(
        &mut self,
        cx: &mut Cx<'_>,
        client: ClientId,
        name: Key,
        key: Key,
    ) {
        cx.stimulus(Stimulus::ClientDesiresKeys {
            client,
            keys: vec![key.clone()],
        });
        let id = (name, key);
        let rc = self.future_refcount.entry(id.clone()).or_insert(0);
        *rc -= 1;
        if *rc <= 0 {
            self.future_refcount.remove(&id);
            let (name, key) = id;
            cx.release(pseudo(&name), vec![key], "queue-future-release");
        }
    }
}

/// A `queue_get` that must wait: for one item (`want: None`) or for the rest of a batch.
pub(super) struct GetWait {
    want: Option<usize>,
    got: Vec<Value>,
    reply: Replier,
}
