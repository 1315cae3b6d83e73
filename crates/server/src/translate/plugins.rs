//! Worker and nanny plugins: the four RPCs (scheduler.py:8130-8190), the messages the
//! scheduler sends workers and nannies for them, and the plugin maps of the registration
//! replies.

use crate::error::RequestError;
use crate::messages::plugins::{Kind, Rpc};
use crate::messages::Rpc as AnyRpc;
use rask_comm::fields::{field, flag, str_field};
use rask_protocol::Value;
use std::sync::Arc;

fn register(kind: Kind, msg: &Value) -> Result<AnyRpc, RequestError> {
    Ok(AnyRpc::Plugins(Rpc::Register {
        kind,
        plugin: field(msg, "plugin")?.clone(),
        name: str_field(msg, "name")?,
        idempotent: flag(msg, "idempotent", false),
    }))
}

fn unregister(kind: Kind, msg: &Value) -> Result<AnyRpc, RequestError> {
    Ok(AnyRpc::Plugins(Rpc::Unregister {
        kind,
        name: str_field(msg, "name")?,
    }))
}

/// `register_worker_plugin {plugin, name, idempotent}` (scheduler.py:8130)
pub fn register_worker_plugin(msg: &Value) -> Result<AnyRpc, RequestError> {
    register(Kind::Worker, msg)
}

/// `unregister_worker_plugin {name}` (scheduler.py:8145)
pub fn unregister_worker_plugin(msg: &Value) -> Result<AnyRpc, RequestError> {
    unregister(Kind::Worker, msg)
}

/// `register_nanny_plugin {plugin, name, idempotent}` (scheduler.py:8157)
pub fn register_nanny_plugin(msg: &Value) -> Result<AnyRpc, RequestError> {
    register(Kind::Nanny, msg)
}

/// `unregister_nanny_plugin {name}` (scheduler.py:8179)
pub fn unregister_nanny_plugin(msg: &Value) -> Result<AnyRpc, RequestError> {
    unregister(Kind::Nanny, msg)
}

/// What the scheduler asks each worker (`Worker.plugin_add`, op `plugin-add`) or nanny
/// (`Nanny.plugin_add`, op `plugin_add`) to do with a newly registered plugin.
pub fn plugin_add(kind: Kind, name: &Arc<str>, plugin: &Value) -> Value {
    let op = match kind {
        Kind::Worker => "plugin-add",
        Kind::Nanny => "plugin_add",
    };
    Value::map([
        ("op", Value::from(op)),
        ("plugin", plugin.clone()),
        ("name", Value::Str(name.clone())),
        ("reply", Value::Bool(true)),
    ])
}

/// The request to tear a plugin down (`plugin-remove` on workers, `plugin_remove` on
/// nannies).
pub fn plugin_remove(kind: Kind, name: &Arc<str>) -> Value {
    let op = match kind {
        Kind::Worker => "plugin-remove",
        Kind::Nanny => "plugin_remove",
    };
    Value::map([
        ("op", Value::from(op)),
        ("name", Value::Str(name.clone())),
        ("reply", Value::Bool(true)),
    ])
}

/// `{name: pickled plugin}` in registration order, as `worker-plugins` of the
/// `register-worker` reply and `nanny-plugins` of the `register_nanny` reply carry it.
pub fn plugin_map(plugins: &[(Arc<str>, Value)]) -> Value {
    Value::Map(
        plugins
            .iter()
            .map(|(n, p)| (Value::Str(n.clone()), p.clone()))
            .collect(),
    )
}

/// Unregistering a name that was never registered: the stock `ValueError`
/// (scheduler.py:8152, 8186).
pub fn unknown_plugin(kind: Kind, name: &str) -> Value {
    let kind = match kind {
        Kind::Worker => "worker",
        Kind::Nanny => "nanny",
    };
    rask_comm::reply::raised(
        "ValueError",
        &format!("The {kind} plugin {name} does not exist"),
    )
}
