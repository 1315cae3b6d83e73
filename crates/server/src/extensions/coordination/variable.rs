//! `Variable` (`variable.py`): one msgpack value or future per name. A future handed out by
//! `variable_get` carries a token; the variable's hold on the key is released (after a
//! `set` replaced it or a `variable_delete`) only once every reader confirmed it took its own
//! hold (`variable-future-received-confirm`), so the key never drops out of memory between.

use super::{reply_of, Cx};
use crate::event::Replier;
use crate::messages::coordination::Record;
use crate::translate::coordination::stringify;
use rask_comm::reply::raised;
use rask_core::{ClientId, Stimulus};
use rask_protocol::Key;
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;

#[derive(Default)]
pub(super) struct State {
    variables: FxHashMap<Key, Record>,
    /// `variable_get`s waiting for a name to be set: (wait id, reply)
    waiters: FxHashMap<Key, Vec<(u64, Replier)>>,
    /// (name, key) -> tokens handed out and not yet confirmed
    tokens: FxHashMap<(Key, Key), FxHashSet<Arc<str>>>,
    /// (name, key) -> release once its tokens are confirmed; `true`: then also remove the
    /// pseudo-client (a `variable_delete` was waiting)
    pending_release: FxHashMap<(Key, Key), bool>,
}

fn pseudo(name: &Key) -> String {
    format!("variable-{}", stringify(name))
}

impl State {
    /// `release(key, name)`: drops the variable's hold on `key` now, or once its outstanding
    /// tokens are confirmed.
    fn release(&mut self, cx: &mut Cx<'_>, name: Key, key: Key, then_remove_client: bool) {
        let id = (name, key);
        if self.tokens.get(&id).is_some_and(|t| !t.is_empty()) {
            let e = self.pending_release.entry(id).or_insert(false);
            *e |= then_remove_client;
            return;
        }
        self.tokens.remove(&id);
        let (name, key) = id;
        cx.release(pseudo(&name), vec![key], "variable-release");
        if then_remove_client {
            cx.remove_pseudo(pseudo(&name));
        }
    }

    /// `variable_set {name, data | key}` (the future's key is known by now).
    pub(super) fn set(&mut self, cx: &mut Cx<'_>, name: Key, record: Record) {
        let new_key = match &record {
            Record::Future(k) => {
                cx.desire(pseudo(&name), vec![k.clone()]);
                Some(k.clone())
            }
            Record::Msgpack(_) => None,
        };
        let old = self.variables.insert(name.clone(), record);
        if old.is_none() {
            for (_, reply) in self.waiters.remove(&name).unwrap_or_default() {
                // the name is set, so each reader is answered (with a token of its own)
                let _answered = self.get(cx, &name, reply);
            }
        }
        if let Some(Record::Future(old_key)) = old {
            if Some(&old_key) != new_key.as_ref() {
                self.release(cx, name, old_key, false);
            }
        }
    }

    /// `variable_get {name}`: answers if the name is set, else gives the reply back to park.
    pub(super) fn get(&mut self, cx: &mut Cx<'_>, name: &Key, reply: Replier) -> Option<Replier> {
        let Some(record) = self.variables.get(name).cloned() else {
            return Some(reply);
        };
        let token = match &record {
            Record::Future(k) => {
                let token: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
                self.tokens
                    .entry((name.clone(), k.clone()))
                    .or_default()
                    .insert(token.clone());
                Some(token)
            }
            Record::Msgpack(_) => None,
        };
        let v = reply_of(cx, &record, token.as_deref());
        cx.reply(reply, Ok(v));
        None
    }

    /// Parks a `variable_get` until the name is set.
    pub(super) fn wait(&mut self, name: Key, wait: u64, reply: Replier) {
        let w = self.waiters.entry(name).or_default();
        w.retain(|(_, r)| !r.is_closed());
        w.push((wait, reply));
    }

    /// A parked `variable_get` timed out: `TimeoutError`.
    pub(super) fn get_timed_out(&mut self, cx: &mut Cx<'_>, name: &Key, wait: u64) {
        let Some(w) = self.waiters.get_mut(name) else {
            return;
        };
        if let Some(i) = w.iter().position(|(id, _)| *id == wait) {
            let (_, reply) = w.remove(i);
            cx.reply(reply, Ok(raised("TimeoutError", "")));
        }
        if w.is_empty() {
            self.waiters.remove(name);
        }
    }

    /// Stream op `variable-future-received-confirm`: the reader now holds the key itself.
    pub(super) fn confirm(
        &mut self,
        cx: &mut Cx<'_>,
        client: ClientId,
        name: Key,
        key: Key,
        token: Option<Arc<str>>,
    ) {
        cx.stimulus(Stimulus::ClientDesiresKeys {
            client,
            keys: vec![key.clone()],
        });
        let id = (name, key);
        let empty = match self.tokens.get_mut(&id) {
            Some(t) => {
                if let Some(token) = &token {
                    t.remove(token);
                }
                t.is_empty()
            }
            None => true,
        };
        if empty {
            if let Some(then_remove) = self.pending_release.remove(&id) {
                let (name, key) = id;
                self.release(cx, name, key, then_remove);
            }
        }
    }

    /// Stream op `variable_delete {name}`.
    pub(super) fn delete(&mut self, cx: &mut Cx<'_>, name: Key) {
        match self.variables.remove(&name) {
            Some(Record::Future(key)) => self.release(cx, name, key, true),
            _ => cx.remove_pseudo(pseudo(&name)),
        }
    }
}
