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

/// The tasks in priority order (`(-user_priority, order)`; ties keep their order): the
/// order in which the core sorts a graph's runnable tasks, so that on a big graph its sort,
/// a turn of the state task, finds them sorted (hundreds of milliseconds for 1M tasks
/// otherwise). The indices are sorted, then the tasks are moved in place.
pub fn by_priority(mut tasks: Vec<NewTask>) -> Vec<NewTask> {
    let key = |t: &NewTask| (-t.user_priority, t.order);
    if tasks.is_sorted_by_key(key) {
        return tasks;
    }
    let mut perm: Vec<u32> = (0..tasks.len() as u32).collect();
    perm.sort_by_key(|&i| key(&tasks[i as usize]));
    // In place, one cycle of the permutation at a time: the task that belongs at `j` is
    // at `perm[j]`. A done place is marked with `u32::MAX`.
    for i in 0..perm.len() {
        let mut j = i;
        while perm[j] != u32::MAX {
            let k = perm[j] as usize;
            perm[j] = u32::MAX;
            if k == i {
                break;
            }
            tasks.swap(j, k);
            j = k;
        }
    }
    tasks
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rask_protocol::Value;
    use std::sync::Arc;

    fn task(name: &str, user_priority: i64, order: i64) -> NewTask {
        NewTask {
            key: Key::Str(name.into()),
            deps: Vec::new(),
            run_spec: Bytes::new(),
            order,
            prefix: Arc::from(name),
            annotations: Value::Nil,
            workers: Vec::new(),
            allow_other_workers: false,
            resources: Vec::new(),
            retries: 0,
            user_priority,
            watch: false,
            data_producer: false,
        }
    }

    fn names(tasks: &[NewTask]) -> Vec<String> {
        tasks
            .iter()
            .map(|t| match &t.key {
                Key::Str(s) => s.to_string(),
                other => panic!("not a test key: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn by_priority_puts_the_user_priority_first_then_the_order_and_keeps_ties() {
        let tasks = vec![
            task("c", 0, 2),
            task("a", 0, 0),
            task("hi", 5, 9),
            task("tie-1", 0, 1),
            task("tie-2", 0, 1),
            task("low", -1, 0),
        ];
        let sorted = by_priority(tasks);
        assert_eq!(names(&sorted), ["hi", "a", "tie-1", "tie-2", "c", "low"]);
    }

    #[test]
    fn by_priority_moves_every_task_to_its_place_on_long_cycles() {
        // orders reversed, rotated and interleaved: permutations of many cycles
        for n in [0, 1, 2, 7, 100, 1001] {
            for step in [1, 3, 7] {
                let tasks: Vec<NewTask> = (0..n)
                    .map(|i| {
                        let order = (i * step + 5) % n.max(1) + (i * step + 5) / n.max(1) * n;
                        task(&format!("t{order}"), 0, order as i64)
                    })
                    .collect();
                let mut want = names(&tasks);
                want.sort_by_key(|s| s[1..].parse::<usize>().unwrap());
                assert_eq!(names(&by_priority(tasks)), want, "n={n} step={step}");
            }
        }
    }
}
