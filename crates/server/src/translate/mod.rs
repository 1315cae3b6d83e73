//! Wire values ⇄ typed messages: the only module that knows the shape of Dask's messages.
//!
//! Incoming, each op of the op table (`ops.rs`) names a parser here that turns the
//! message's msgpack dict into a typed request ([`crate::messages`]); a field that is missing
//! or of the wrong type becomes a [`crate::error::RequestError`] naming it. Outgoing, the
//! batched writers turn [`crate::messages::ToWorkerMsg`] and
//! [`crate::messages::ToClientMsg`] into wire values here, and the handlers build their
//! RPC replies with the functions of [`reply`].
//!
//! - [`rpc`]: the scheduler's own RPCs; [`reply`]: their replies.
//! - [`client`], [`worker`]: the two kinds of stream, both ways.
//! - [`events`], [`coordination`], [`shuffle`]: the extensions' messages.
//! - [`plugins`]: worker and nanny plugins.
//! - [`inspect`]: logs, profiles, call stacks, benchmarks, state dumps, proxy.
//! - [`records`]: a graph helper's task records -> the core's `NewTask`s.

pub mod client;
pub mod cluster;
pub mod coordination;
pub mod diagnostics;
pub mod events;
pub mod host;
pub mod inspect;
pub mod plugins;
pub mod records;
pub mod reply;
pub mod rpc;
pub mod shuffle;
pub mod versions;
pub mod worker;

use crate::error::RequestError;
use crate::messages::Placement;
use rask_comm::fields::field;
use rask_protocol::{Key, Value};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock seconds since the epoch, as Dask's `time()`: for the timestamps that go on
/// the wire (the state task has its own clock for its decisions).
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The message's `stimulus_id`, or `<default>-<now>` as Dask names its own stimuli.
pub fn stimulus_id(msg: &Value, default: &str) -> Arc<str> {
    msg.get("stimulus_id")
        .and_then(Value::as_str)
        .map_or_else(|| format!("{default}-{}", now()).into(), Arc::from)
}

fn keys_value(keys: &[Key]) -> Value {
    Value::Array(keys.iter().map(Key::to_value).collect())
}

fn addrs_value(addrs: &[Arc<str>]) -> Value {
    Value::Array(addrs.iter().map(|a| Value::Str(a.clone())).collect())
}

fn who_has_value(who_has: &[(Key, Vec<Arc<str>>)]) -> Value {
    Value::Map(
        who_has
            .iter()
            .map(|(k, a)| (k.to_value(), addrs_value(a)))
            .collect(),
    )
}

/// `who_has: {key: [address]}` and `nbytes: {key: int}` of `update_data` / `update-data`.
/// Entries that are not a key with a list of addresses are skipped, as the stock
/// scheduler's dict comprehension would fail on them only later, per key.
fn placement(msg: &Value) -> Result<Placement, RequestError> {
    let who_has = field(msg, "who_has")?
        .as_map()
        .unwrap_or_default()
        .iter()
        .filter_map(|(k, addrs)| {
            let key = Key::from_value(k)?;
            let addrs = addrs
                .as_array()
                .unwrap_or_default()
                .iter()
                .filter_map(|a| a.as_str().map(Arc::from))
                .collect();
            Some((key, addrs))
        })
        .collect();
    let nbytes = msg
        .get("nbytes")
        .and_then(Value::as_map)
        .unwrap_or_default()
        .iter()
        .filter_map(|(k, v)| Some((Key::from_value(k)?, v.as_i64()?)))
        .collect();
    Ok(Placement { who_has, nbytes })
}
