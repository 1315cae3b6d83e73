//! `Variable` (`variable.py`): one msgpack value or future per name. A future handed out by
//! `variable_get` carries a token; the variable's hold on the key is released (after a
//! `set` replaced it or a `variable_delete`) only once every reader confirmed it took its own
//! hold (`variable-future-received-confirm`), so the key never drops out of memory between.

use super::{
    deadline_field, desire, name_field, raise, release_keys, remove_pseudo_client, stringify, wait,
    wait_for_task, Record, Waited,
};
use crate::connection::Ctx;
use crate::error::ServerError;
use crate::runtime::Scheduler;
use rask_core::{ClientId, Stimulus};
use rask_protocol::{Key, Value};
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;
use tokio::sync::oneshot;

#[derive(Default)]
pub(super) struct State {
    variables: FxHashMap<Key, Record>,
    /// `variable_get`s waiting for a name to be set
    waiters: FxHashMap<Key, Vec<oneshot::Sender<()>>>,
    /// (name, key) -> tokens handed out and not yet confirmed
    tokens: FxHashMap<(Key, Key), FxHashSet<Arc<str>>>,
    /// (name, key) -> release once its tokens are confirmed; `true`: then also remove the
    /// pseudo-client (a `variable_delete` was waiting)
    pending_release: FxHashMap<(Key, Key), bool>,
}

fn pseudo(name: &Key) -> String {
    format!("variable-{}", stringify(name))
}

/// `release(key, name)`: drops the variable's hold on `key` now, or once its outstanding
/// tokens are confirmed.
fn release(s: &mut Scheduler, name: Key, key: Key, then_remove_client: bool) {
    let st = &mut s.ext.coordination.variable;
    let id = (name, key);
    if st.tokens.get(&id).is_some_and(|t| !t.is_empty()) {
        let e = st.pending_release.entry(id).or_insert(false);
        *e |= then_remove_client;
        return;
    }
    st.tokens.remove(&id);
    let (name, key) = id;
    release_keys(s, &pseudo(&name), vec![key], "variable-release");
    if then_remove_client {
        remove_pseudo_client(s, &pseudo(&name));
    }
}

/// `variable_set{name, data | key, timeout}`.
pub(super) async fn set(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let name = name_field(msg, "name")?;
    let record = Record::from_msg(msg)?;
    let deadline = deadline_field(msg)?;
    if let Some(timed_out) = wait_for_task(&record, deadline, ctx).await? {
        return Ok(timed_out);
    }
    ctx.handle
        .call(move |s| {
            let new_key = match &record {
                Record::Future(k) => {
                    desire(s, &pseudo(&name), vec![k.clone()]);
                    Some(k.clone())
                }
                Record::Msgpack(_) => None,
            };
            let st = &mut s.ext.coordination.variable;
            let old = st.variables.insert(name.clone(), record);
            if old.is_none() {
                for tx in st.waiters.remove(&name).unwrap_or_default() {
                    let _ = tx.send(());
                }
            }
            if let Some(Record::Future(old_key)) = old {
                if Some(&old_key) != new_key.as_ref() {
                    release(s, name, old_key, false);
                }
            }
            Value::Nil
        })
        .await
}

/// `variable_get{name, client, timeout}`: waits until the name is set.
pub(super) async fn get(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let name = name_field(msg, "name")?;
    let deadline = deadline_field(msg)?;
    loop {
        let n = name.clone();
        let r = ctx
            .handle
            .call(move |s| {
                let Some(record) = s.ext.coordination.variable.variables.get(&n).cloned() else {
                    let (tx, rx) = oneshot::channel();
                    let w = s.ext.coordination.variable.waiters.entry(n).or_default();
                    w.retain(|t| !t.is_closed());
                    w.push(tx);
                    return Err(rx);
                };
                let token = match &record {
                    Record::Future(k) => {
                        let token: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
                        s.ext
                            .coordination
                            .variable
                            .tokens
                            .entry((n, k.clone()))
                            .or_default()
                            .insert(token.clone());
                        Some(token)
                    }
                    Record::Msgpack(_) => None,
                };
                Ok(record.to_reply(s, token.as_deref()))
            })
            .await?;
        match r {
            Ok(v) => return Ok(v),
            Err(rx) => {
                if let Waited::TimedOut = wait(rx, deadline).await {
                    return Ok(raise("TimeoutError", ""));
                }
            }
        }
    }
}

/// Stream op `variable-future-received-confirm{name, key, token}`: the reader now holds the
/// key itself.
pub(super) fn future_received_confirm(
    msg: &Value,
    client: ClientId,
    ctx: &Arc<Ctx>,
) -> Result<(), ServerError> {
    let name = name_field(msg, "name")?;
    let key = crate::translate::key_field(msg, "key")?;
    let token = crate::translate::opt_str(msg, "token")?;
    ctx.handle.send(move |s| {
        s.stimulus(Stimulus::ClientDesiresKeys {
            client,
            keys: vec![key.clone()],
        });
        let st = &mut s.ext.coordination.variable;
        let id = (name, key);
        let empty = match st.tokens.get_mut(&id) {
            Some(t) => {
                if let Some(token) = &token {
                    t.remove(token);
                }
                t.is_empty()
            }
            None => true,
        };
        if empty {
            if let Some(then_remove) = st.pending_release.remove(&id) {
                let (name, key) = id;
                release(s, name, key, then_remove);
            }
        }
    });
    Ok(())
}

/// Stream op `variable_delete{name}`.
pub(super) fn delete(msg: &Value, ctx: &Arc<Ctx>) -> Result<(), ServerError> {
    let name = name_field(msg, "name")?;
    ctx.handle.send(move |s| {
        let st = &mut s.ext.coordination.variable;
        match st.variables.remove(&name) {
            Some(Record::Future(key)) => release(s, name, key, true),
            _ => remove_pseudo_client(s, &pseudo(&name)),
        }
    });
    Ok(())
}
