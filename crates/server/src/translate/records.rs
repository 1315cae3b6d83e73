//! A graph helper's `update_graph` reply (PROTOCOL.md §4.3): one record per task, in
//! chunks, becomes the core's [`NewTask`]s plus what `rask-order` needs of each.

use crate::error::HelperError;
use crate::ordering::OrderInfo;
use bytes::Bytes;
use rask_comm::fields::{bytes_field, key_field, keys_field, opt_str, opt_str_list};
use rask_comm::FieldError;
use rask_core::NewTask;
use rask_order::NodeKind;
use rask_protocol::{Key, Opaque, Value};
use std::sync::Arc;

/// One task record.
pub fn new_task(rec: &Value) -> Result<NewTask, FieldError> {
    let key = key_field(rec, "key")?;
    // The P2P plugin acts when a shuffle's barrier is released, erred or forgotten; like
    // Dask's hook (`id_from_key`, shuffle/_core.py:436) it knows barriers by their key.
    let watch = matches!(&key, Key::Str(k) if k.starts_with("shuffle-barrier-"));
    let deps = keys_field(rec, "deps")?;
    // Its own buffer: a slice would keep the helper's whole reply chunk alive for as long
    // as the task lives (about 190 bytes per task besides the pickle).
    let run_spec = Bytes::copy_from_slice(&bytes_field(rec, "run_spec")?);
    let order = rec.get("order").and_then(Value::as_i64).unwrap_or(0);
    let prefix =
        opt_str(rec, "prefix")?.unwrap_or_else(|| key.first_str().unwrap_or("task").into());
    let annotations = match (rec.get("annotations"), rec.get("annotations_pickled")) {
        (Some(a @ Value::Map(_)), _) => a.clone(),
        (_, Some(Value::Bin(p))) => Value::Opaque(Opaque::pickled(p.clone())),
        _ => Value::Map(Vec::new()),
    };
    let r = rec.get("restrictions").cloned().unwrap_or(Value::Nil);
    let workers = opt_str_list(&r, "workers")?.unwrap_or_default();
    let resources = match r.get("resources") {
        Some(Value::Map(m)) => m
            .iter()
            .filter_map(|(k, v)| Some((Arc::<str>::from(k.as_str()?), v.as_f64()?)))
            .collect(),
        _ => Vec::new(),
    };
    Ok(NewTask {
        key,
        deps,
        run_spec,
        order,
        prefix,
        annotations,
        workers,
        allow_other_workers: r.get("allow_other_workers").is_some_and(Value::truthy),
        resources,
        retries: r.get("retries").and_then(Value::as_i64).unwrap_or(0).max(0) as u32,
        user_priority: r.get("priority").and_then(Value::as_f64).unwrap_or(0.0) as i64,
        watch,
        data_producer: rec.get("data_producer").is_some_and(Value::truthy),
    })
}

/// What ordering needs of a record beyond the task: whether the helper ordered it, its
/// node kind, `hash(key)` in the helper's process, and the hash-table size of its
/// dependency set.
pub fn order_info(rec: &Value) -> OrderInfo {
    OrderInfo {
        ordered: rec.get("order").is_some(),
        kind: match rec.get("kind").and_then(Value::as_str) {
            Some("DataNode") => NodeKind::Data,
            _ => NodeKind::Task,
        },
        hash: rec.get("hash").and_then(Value::as_i64),
        deps_table: rec
            .get("deps_table")
            .and_then(Value::as_i64)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(0),
    }
}

/// A graph's tasks as they arrive from the helper, with what ordering needs of each.
/// (`pub` for the `helper_reply` fuzz target.)
#[derive(Default)]
pub struct Records {
    /// the tasks so far
    pub tasks: Vec<NewTask>,
    /// their ordering inputs, same positions
    pub order: Vec<OrderInfo>,
}

/// Turns a chunk of helper records into tasks; the first bad record fails the graph.
pub fn add_records(out: &mut Result<Records, HelperError>, records: Option<&Value>) {
    let Ok(r) = out else {
        return;
    };
    let converted = match records {
        Some(Value::Array(records)) => records.iter().try_for_each(|rec| {
            r.tasks.push(new_task(rec)?);
            r.order.push(order_info(rec));
            Ok(())
        }),
        _ => Err(HelperError::Protocol("a helper reply without tasks")),
    };
    if let Err(e) = converted {
        *out = Err(e);
    }
}
