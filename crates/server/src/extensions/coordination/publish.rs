//! Published datasets (`publish.py`): named `(data, keys)` pairs whose keys stay alive
//! through the pseudo-client `published-<name>`.

use super::{list_field, name_of, release_keys, stringify};
use crate::connection::Ctx;
use crate::error::ServerError;
use crate::runtime::Scheduler;
use crate::translate::{keys_field, opt_str};
use rask_protocol::{Key, Value};
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long `publish_put`/`publish_delete` wait for the client's
/// `publish_flush_batched_send` before checking the client is still there (`publish.py:67`).
const FLUSH_WAIT: Duration = Duration::from_secs(30);

#[derive(Default)]
pub(super) struct State {
    /// name -> dataset; the original name value is kept for `publish_list`
    datasets: FxHashMap<Key, Dataset>,
    /// `publish_flush_batched_send` uids that arrived before their RPC
    flushed: FxHashSet<Key>,
    /// RPCs waiting for their uid's flush
    flush_waiters: FxHashMap<Key, oneshot::Sender<()>>,
}

struct Dataset {
    data: Value,
    keys: Vec<Key>,
}

fn pseudo(name: &Key) -> String {
    format!("published-{}", stringify(name))
}

/// Stream op: the client's batched stream caught up to the RPC with this uid.
pub(super) fn flush_batched_send(msg: &Value, ctx: &Arc<Ctx>) -> Result<(), ServerError> {
    let uid = name_of(msg.get("uid").unwrap_or(&Value::Nil), "uid")?;
    ctx.handle.send(move |s| {
        let st = &mut s.ext.coordination.publish;
        let delivered = st
            .flush_waiters
            .remove(&uid)
            .is_some_and(|tx| tx.send(()).is_ok());
        if !delivered {
            st.flushed.insert(uid);
        }
    });
    Ok(())
}

/// `_sync_batched_send`: waits for the flush message of `uid`, for as long as the client is
/// connected (checked every 30 s, as Dask does).
async fn sync_batched_send(
    client: Option<Arc<str>>,
    uid: Key,
    ctx: &Arc<Ctx>,
) -> Result<(), ServerError> {
    loop {
        let u = uid.clone();
        let rx = ctx
            .handle
            .call(move |s| {
                let st = &mut s.ext.coordination.publish;
                if st.flushed.remove(&u) {
                    return None;
                }
                let (tx, rx) = oneshot::channel();
                st.flush_waiters.insert(u, tx);
                Some(rx)
            })
            .await?;
        let Some(rx) = rx else { return Ok(()) };
        match tokio::time::timeout(FLUSH_WAIT, rx).await {
            Ok(_) => return Ok(()),
            Err(_) => {
                let u = uid.clone();
                let c = client.clone();
                let connected = ctx
                    .handle
                    .call(move |s| {
                        s.ext.coordination.publish.flush_waiters.remove(&u);
                        c.is_some_and(|c| s.client_ids.contains_key(&c))
                    })
                    .await?;
                if !connected {
                    return Err(ServerError::Timeout(
                        FLUSH_WAIT,
                        "publish_flush_batched_send",
                    ));
                }
            }
        }
    }
}

/// `publish_put{names, keys, data, override, client, uid}`.
pub(super) async fn put(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let names = list_field(msg, "names")?
        .iter()
        .map(|n| name_of(n, "dataset name"))
        .collect::<Result<Vec<_>, _>>()?;
    let keys = list_field(msg, "keys")?
        .iter()
        .map(|ks| keys_field(&Value::map([("k", ks.clone())]), "k"))
        .collect::<Result<Vec<_>, _>>()?;
    let data = list_field(msg, "data")?.to_vec();
    if names.len() != keys.len() || names.len() != data.len() {
        return Err(ServerError::BadMessage(
            "publish_put: names, keys and data differ in length".into(),
        ));
    }
    let override_ = msg.get("override").is_some_and(Value::truthy);
    let client = opt_str(msg, "client")?;
    let uid = name_of(msg.get("uid").unwrap_or(&Value::Nil), "uid")?;
    sync_batched_send(client, uid, ctx).await?;
    ctx.handle
        .call(move |s| {
            for ((name, keys), data) in names.into_iter().zip(keys).zip(data) {
                if s.ext.coordination.publish.datasets.contains_key(&name) {
                    if !override_ {
                        return super::raise(
                            "KeyError",
                            &format!("Dataset {} already exists", stringify(&name)),
                        );
                    }
                    if let Some(old) = s.ext.coordination.publish.datasets.remove(&name) {
                        release_keys(s, &pseudo(&name), old.keys, "publish-override");
                    }
                }
                super::desire(s, &pseudo(&name), keys.clone());
                s.ext
                    .coordination
                    .publish
                    .datasets
                    .insert(name, Dataset { data, keys });
            }
            Value::Nil
        })
        .await
}

/// `publish_delete{names, client, uid}`.
pub(super) async fn delete(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let names = list_field(msg, "names")?
        .iter()
        .map(|n| name_of(n, "dataset name"))
        .collect::<Result<Vec<_>, _>>()?;
    let client = opt_str(msg, "client")?;
    let uid = name_of(msg.get("uid").unwrap_or(&Value::Nil), "uid")?;
    sync_batched_send(client, uid, ctx).await?;
    ctx.handle
        .call(move |s| {
            for name in names {
                if let Some(old) = s.ext.coordination.publish.datasets.remove(&name) {
                    release_keys(s, &pseudo(&name), old.keys, "publish-delete");
                }
            }
            Value::Nil
        })
        .await
}

/// `publish_list{}`: names sorted by `str`.
pub(super) async fn list(ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    ctx.handle
        .call(|s| {
            let mut names: Vec<&Key> = s.ext.coordination.publish.datasets.keys().collect();
            names.sort_by_cached_key(|k| stringify(k));
            Value::Array(names.into_iter().map(Key::to_value).collect())
        })
        .await
}

/// `publish_get{names}`: `[{"data", "keys"} or None, ...]`.
pub(super) async fn get(msg: &Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let names = list_field(msg, "names")?
        .iter()
        .map(|n| name_of(n, "dataset name"))
        .collect::<Result<Vec<_>, _>>()?;
    ctx.handle
        .call(move |s| Value::Array(names.iter().map(|n| dataset_reply(s, n)).collect()))
        .await
}

fn dataset_reply(s: &Scheduler, name: &Key) -> Value {
    match s.ext.coordination.publish.datasets.get(name) {
        None => Value::Nil,
        Some(d) => Value::map([
            ("data", d.data.clone()),
            (
                "keys",
                Value::Array(d.keys.iter().map(Key::to_value).collect()),
            ),
        ]),
    }
}
