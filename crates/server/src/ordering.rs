//! Priorities for a graph the graph helper left unordered: `dask.order.order` in Rust
//! (`rask-order`), which gives the same result as Python for the same key hashes. On a big
//! graph this was the helper's largest stage (38 s of 62 s for 1M tasks).

use crate::error::HelperError;
use rask_core::NewTask;
use rask_order::{Graph, NodeKind};
use rask_protocol::Key;
use rustc_hash::FxHashMap;

/// What ordering needs of one task beyond the task itself (read from the helper's record
/// by `translate::records`).
#[derive(Clone, Copy, Debug)]
pub struct OrderInfo {
    /// the helper already gave the task its `order` (the client's priorities, or Python's)
    pub ordered: bool,
    /// task, data or external node
    pub kind: NodeKind,
    /// `hash(key)` in the helper's process
    pub hash: Option<i64>,
    /// hash-table size of `node.dependencies`; 0 = what `frozenset(set)` gives
    pub deps_table: u32,
}

/// Sets every task's `order` with rask-order unless the helper already did. CPU-bound
/// (about a second per million tasks): call it off the async runtime.
pub fn assign(tasks: &mut [NewTask], info: &[OrderInfo]) -> Result<(), HelperError> {
    if info.len() != tasks.len() {
        return Err(HelperError::Protocol("ordering: records and tasks differ"));
    }
    if info.iter().all(|i| i.ordered) {
        return Ok(());
    }
    let n = tasks.len();
    let index: FxHashMap<&Key, u32> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (&t.key, i as u32))
        .collect();
    // Dependencies outside the graph (futures the client already holds) are extra nodes.
    let mut external: Vec<&Key> = Vec::new();
    let mut external_index: FxHashMap<&Key, u32> = FxHashMap::default();
    let mut edges = 0;
    for t in tasks.iter() {
        edges += t.deps.len();
        for d in &t.deps {
            if !index.contains_key(d) && !external_index.contains_key(d) {
                external_index.insert(d, (n + external.len()) as u32);
                external.push(d);
            }
        }
    }
    let mut graph = Graph::with_capacity(n + external.len(), edges);
    let mut deps: Vec<u32> = Vec::new();
    for (i, (t, inf)) in tasks.iter().zip(info).enumerate() {
        deps.clear();
        deps.extend(
            t.deps
                .iter()
                .filter_map(|d| index.get(d).or_else(|| external_index.get(d)).copied()),
        );
        graph.push(order_key(&t.key), inf.kind, &deps);
        if inf.deps_table > 0 {
            graph.set_deps_table_size(i as u32, inf.deps_table);
        }
    }
    for e in &external {
        graph.push(order_key(e), NodeKind::External, &[]);
    }
    // The helper's hashes make the result identical to dask.order in that process; an
    // external key's hash is not known, so then rask-order's own (PYTHONHASHSEED=0) is used.
    if external.is_empty() {
        if let Some(hashes) = info.iter().map(|i| i.hash).collect::<Option<Vec<i64>>>() {
            graph.set_hashes(hashes);
        }
    }
    let priorities = rask_order::order(&graph).map_err(|e| HelperError::Order(e.to_string()))?;
    for (t, p) in tasks.iter_mut().zip(priorities) {
        t.order = p;
    }
    Ok(())
}

fn order_key(k: &Key) -> rask_order::Key {
    match k {
        Key::Str(s) => rask_order::Key::Str(s.to_string()),
        Key::Bytes(b) => rask_order::Key::Bytes(b.to_vec()),
        Key::Int(i) => rask_order::Key::Int(i128::from(*i)),
        Key::Float(bits) => rask_order::Key::Float(f64::from_bits(*bits)),
        Key::Tuple(items) => rask_order::Key::Tuple(items.iter().map(order_key).collect()),
    }
}
