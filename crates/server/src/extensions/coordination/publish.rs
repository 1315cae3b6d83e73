//! Published datasets (`publish.py`): named `(data, keys)` pairs whose keys stay alive
//! through the pseudo-client `published-<name>`.
//!
//! `publish_put` and `publish_delete` arrive by RPC while the futures they name may still
//! be on their way on the client's stream; Dask makes them wait for the client's
//! `publish_flush_batched_send` with the same `uid` (`_sync_batched_send`), checking every
//! 30 s that the client is still connected. Here the request is parked until the flush.

use super::Cx;
use crate::error::RequestError;
use crate::event::{Replier, Timer};
use crate::translate::coordination::{dataset, stringify};
use rask_comm::reply::raised;
use rask_protocol::{Key, Value};
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;
use std::time::Duration;

/// How long `publish_put`/`publish_delete` wait for the client's flush before checking the
/// client is still there (`publish.py:67`).
const FLUSH_WAIT: Duration = Duration::from_secs(30);

/// A parked `publish_put` or `publish_delete`.
#[derive(Debug)]
pub(super) enum Op {
    Put {
        names: Vec<Key>,
        keys: Vec<Vec<Key>>,
        data: Vec<Value>,
        override_: bool,
    },
    Delete {
        names: Vec<Key>,
    },
}

struct Pending {
    op: Op,
    client: Option<Arc<str>>,
    reply: Replier,
    wait: u64,
}

#[derive(Default)]
pub(super) struct State {
    /// name -> dataset
    datasets: FxHashMap<Key, Dataset>,
    /// `publish_flush_batched_send` uids that arrived before their RPC
    flushed: FxHashSet<Key>,
    /// RPCs waiting for their uid's flush
    pending: FxHashMap<Key, Pending>,
    /// `publish_wait_flush` calls (distributed <= 2026.3.0) waiting for their uid's flush
    flush_waiters: FxHashMap<Key, Vec<Replier>>,
}

struct Dataset {
    data: Value,
    keys: Vec<Key>,
}

fn pseudo(name: &Key) -> String {
    format!("published-{}", stringify(name))
}

impl State {
    /// Runs `op` once the client's flush for `uid` is in (at once if it already is);
    /// returns the wait id if it had to park.
    pub(super) fn sync(
        &mut self,
        cx: &mut Cx<'_>,
        op: Op,
        client: Option<Arc<str>>,
        uid: Key,
        reply: Replier,
    ) -> Option<u64> {
        if self.flushed.remove(&uid) {
            let v = self.apply(cx, op);
            cx.reply(reply, Ok(v));
            return None;
        }
        let wait = cx.new_id();
        self.pending.insert(
            uid,
            Pending {
                op,
                client,
                reply,
                wait,
            },
        );
        cx.after(FLUSH_WAIT, Timer::Coordination(wait));
        Some(wait)
    }

    /// Stream op: the client's batched stream caught up to the RPC with this uid. Returns
    /// the wait id of the request it released, if one was parked.
    pub(super) fn flushed(&mut self, cx: &mut Cx<'_>, uid: Key) -> Option<u64> {
        for waiter in self.flush_waiters.remove(&uid).unwrap_or_default() {
            cx.reply(waiter, Ok(Value::Nil));
        }
        match self.pending.remove(&uid) {
            Some(p) => {
                let v = self.apply(cx, p.op);
                cx.reply(p.reply, Ok(v));
                Some(p.wait)
            }
            None => {
                self.flushed.insert(uid);
                None
            }
        }
    }

    /// A parked request's 30 s check: keep waiting while its client is connected (returns
    /// when to look again), else fail it.
    pub(super) fn flush_check(
        &mut self,
        cx: &mut Cx<'_>,
        uid: &Key,
        wait: u64,
    ) -> Option<Duration> {
        let p = self.pending.get(uid).filter(|p| p.wait == wait)?;
        let connected = p
            .client
            .as_ref()
            .is_some_and(|c| cx.client_ids.contains_key(c));
        if connected {
            return Some(FLUSH_WAIT);
        }
        if let Some(p) = self.pending.remove(uid) {
            let e = RequestError::Timeout(FLUSH_WAIT, "publish_flush_batched_send");
            cx.reply(p.reply, Err(e));
        }
        None
    }

    fn apply(&mut self, cx: &mut Cx<'_>, op: Op) -> Value {
        match op {
            Op::Put {
                names,
                keys,
                data,
                override_,
            } => {
                for ((name, keys), data) in names.into_iter().zip(keys).zip(data) {
                    if let Some(old) = self.datasets.get(&name) {
                        if !override_ {
                            return raised(
                                "KeyError",
                                &format!("Dataset {} already exists", stringify(&name)),
                            );
                        }
                        let old_keys = old.keys.clone();
                        cx.release(pseudo(&name), old_keys, "publish-override");
                    }
                    cx.desire(pseudo(&name), keys.clone());
                    self.datasets.insert(name, Dataset { data, keys });
                }
                Value::Nil
            }
            Op::Delete { names } => {
                for name in names {
                    if let Some(old) = self.datasets.remove(&name) {
                        cx.release(pseudo(&name), old.keys, "publish-delete");
                    }
                }
                Value::Nil
            }
        }
    }

    /// `publish_wait_flush {uid}` (distributed <= 2026.3.0, `publish.py:43` there): answers
    /// None once the client's flush with this uid is in, at once if it already is. An
    /// older client awaits it once per dataset of one `publish_dataset` call, with one uid,
    /// so the uid stays flushed; as there (a `defaultdict` of events never emptied), it is
    /// kept for the scheduler's life.
    pub(super) fn wait_flush(&mut self, cx: &mut Cx<'_>, uid: Key, reply: Replier) {
        if self.flushed.contains(&uid) {
            cx.reply(reply, Ok(Value::Nil));
        } else {
            self.flush_waiters.entry(uid).or_default().push(reply);
        }
    }

    /// `publish_put {keys, data, name, override, client}` of distributed <= 2026.3.0
    /// (`publish.py:46` there): `{"status": "OK", "name": name}`, or the KeyError of an
    /// existing name. Unlike 2026.3.0, which kept the replaced dataset's keys desired
    /// forever, an override releases them, as 2026.8.0 does.
    pub(super) fn put_one(
        &mut self,
        cx: &mut Cx<'_>,
        name: Key,
        keys: Vec<Key>,
        data: Value,
        override_: bool,
    ) -> Value {
        let op = Op::Put {
            names: vec![name.clone()],
            keys: vec![keys],
            data: vec![data],
            override_,
        };
        match self.apply(cx, op) {
            Value::Nil => Value::map([("status", Value::from("OK")), ("name", name.to_value())]),
            raised => raised,
        }
    }

    /// `publish_delete {name}` of distributed <= 2026.3.0: None.
    pub(super) fn delete_one(&mut self, cx: &mut Cx<'_>, name: Key) -> Value {
        self.apply(cx, Op::Delete { names: vec![name] })
    }

    /// `publish_get {name, client}` of distributed <= 2026.3.0: `{"data", "keys"}` or None.
    pub(super) fn get_one(&self, name: &Key) -> Value {
        dataset(
            self.datasets
                .get(name)
                .map(|d| (&d.data, d.keys.as_slice())),
        )
    }

    /// `publish_get {names}`: `[{"data", "keys"} or None, ...]`.
    pub(super) fn get(&self, names: &[Key]) -> Value {
        Value::Array(
            names
                .iter()
                .map(|n| dataset(self.datasets.get(n).map(|d| (&d.data, d.keys.as_slice()))))
                .collect(),
        )
    }

    /// `publish_list`: names sorted by `str`.
    pub(super) fn list(&self) -> Value {
        let mut names: Vec<&Key> = self.datasets.keys().collect();
        names.sort_by_cached_key(|k| stringify(k));
        Value::Array(names.into_iter().map(Key::to_value).collect())
    }
}
