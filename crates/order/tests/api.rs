//! Small hand-checked cases and the error paths of the public API.

use rask_order::{order, Graph, Key, NodeKind, OrderError, NO_PRIORITY};

fn t(name: &str, i: i64) -> Key {
    Key::Tuple(vec![Key::from(name), Key::from(i)])
}

#[test]
fn empty_graph() {
    assert_eq!(order(&Graph::new()), Ok(vec![]));
}

#[test]
fn only_externals() {
    let mut g = Graph::new();
    g.push(Key::from("future"), NodeKind::External, &[]);
    assert_eq!(order(&g), Ok(vec![NO_PRIORITY]));
}

/// The docstring example of dask.order.order (legacy values):
/// `{'a': 1, 'b': 2, 'c': (inc, 'a'), 'd': (add, 'b', 'c')}` -> `{'a': 0, 'c': 1, 'b': 2, 'd': 3}`
#[test]
fn docstring_example() {
    let mut g = Graph::new();
    let a = g.push(Key::from("a"), NodeKind::Data, &[]);
    let b = g.push(Key::from("b"), NodeKind::Data, &[]);
    let c = g.push(Key::from("c"), NodeKind::Task, &[a]);
    let d = g.push(Key::from("d"), NodeKind::Task, &[b, c]);
    g.set_legacy_args(c, &[a]);
    g.set_legacy_args(d, &[b, c]);
    assert_eq!(order(&g), Ok(vec![0, 2, 1, 3]));
}

/// A DataNode shared by three tasks (dask.order takes it out of the graph and orders it
/// right before the first task needing it) and an external future (no priority).
/// Python (PYTHONHASHSEED=0): {'data': 0, ('x', 0): 1, ('x', 2): 2, ('x', 1): 3, 'sum': 4}
#[test]
fn data_root_and_external() {
    let mut g = Graph::new();
    let data = g.push(Key::from("data"), NodeKind::Data, &[]);
    let future = 5; // pushed last
    let x0 = g.push(t("x", 0), NodeKind::Task, &[future, data]);
    let x1 = g.push(t("x", 1), NodeKind::Task, &[data]);
    let x2 = g.push(t("x", 2), NodeKind::Task, &[data]);
    g.push(Key::from("sum"), NodeKind::Task, &[x1, x2, x0]);
    assert_eq!(g.push(Key::from("future"), NodeKind::External, &[]), future);
    assert_eq!(order(&g), Ok(vec![0, 1, 3, 2, 4, NO_PRIORITY]));
}

#[test]
fn cycles() {
    let mut g = Graph::new();
    g.push(Key::from("a"), NodeKind::Task, &[1]);
    g.push(Key::from("b"), NodeKind::Task, &[2]);
    g.push(Key::from("c"), NodeKind::Task, &[0, 3]);
    g.push(Key::from("d"), NodeKind::Task, &[]);
    match order(&g) {
        Err(OrderError::Cycle { mut nodes }) => {
            nodes.sort_unstable();
            assert_eq!(nodes, vec![0, 1, 2]);
        }
        other => panic!("expected a cycle, got {other:?}"),
    }
    let mut g = Graph::new();
    g.push(Key::from("a"), NodeKind::Task, &[0]);
    assert_eq!(order(&g), Err(OrderError::Cycle { nodes: vec![0] }));
}

/// A cycle beside a node nothing depends on (found by `fuzz/`'s helper_reply target: a
/// record `"x"` listing `"x"` in its own deps, next to an independent `"a"`). Ranking the
/// leaves of the unusable graph used to index with `u32::MAX`: a panic, or in an optimized
/// build a 16 GiB allocation. Python raises "Cycle detected" for such a graph.
#[test]
fn cycle_beside_a_leaf() {
    let mut g = Graph::new();
    g.push(Key::from("x"), NodeKind::Task, &[0]);
    g.push(Key::from("a"), NodeKind::Task, &[]);
    assert_eq!(order(&g), Err(OrderError::Cycle { nodes: vec![0] }));
    // {'x': (f, 'y'), 'y': (f, 'x'), 'z': (f, 'x')}
    let mut g = Graph::new();
    g.push(Key::from("x"), NodeKind::Task, &[1]);
    g.push(Key::from("y"), NodeKind::Task, &[0]);
    g.push(Key::from("z"), NodeKind::Task, &[0]);
    assert!(matches!(order(&g), Err(OrderError::Cycle { .. })));
}

#[test]
fn invalid_input() {
    let invalid = |g: &Graph| matches!(order(g), Err(OrderError::Invalid(_)));
    let mut g = Graph::new();
    g.push(Key::from("a"), NodeKind::Task, &[7]);
    assert!(invalid(&g), "dependency out of range");
    let mut g = Graph::new();
    g.push(Key::from("a"), NodeKind::Task, &[]);
    g.push(Key::from("b"), NodeKind::Task, &[0, 0]);
    assert!(invalid(&g), "duplicate dependency");
    let mut g = Graph::new();
    g.push(Key::from("a"), NodeKind::Task, &[]);
    g.push(Key::from("b"), NodeKind::External, &[0]);
    assert!(invalid(&g), "external with dependencies");
    let mut g = Graph::new();
    g.push(Key::from("a"), NodeKind::Task, &[]);
    g.set_deps_table_size(0, 12);
    assert!(invalid(&g), "table size not a power of two");
    let mut g = Graph::new();
    g.push(Key::from("a"), NodeKind::Task, &[]);
    g.set_hashes(vec![1, 2]);
    assert!(invalid(&g), "hashes of the wrong length");
}

/// Python ints are unbounded: total_dependencies of a deep lattice exceeds u128.
#[test]
fn huge_total_dependencies() {
    let mut g = Graph::new();
    let (mut a, mut b) = (
        g.push(t("a", 0), NodeKind::Task, &[]),
        g.push(t("b", 0), NodeKind::Task, &[]),
    );
    for i in 1..200 {
        let a2 = g.push(t("a", i), NodeKind::Task, &[a, b]);
        let b2 = g.push(t("b", i), NodeKind::Task, &[a, b]);
        a = a2;
        b = b2;
    }
    g.push(Key::from("end"), NodeKind::Task, &[a, b]);
    let o = order(&g).expect("order");
    let mut sorted = o.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..g.len() as i64).collect::<Vec<_>>());
}
