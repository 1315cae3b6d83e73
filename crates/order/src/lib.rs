//! `dask.order.order` (dask 2026.8.0, `dask/order.py`) reimplemented in Rust, with output
//! identical to what Python computes for the same graph.
//!
//! ```
//! use rask_order::{order, Graph, Key, NodeKind};
//!
//! // {'a': DataNode, ('b', 0): Task(a), 'c': Task(a, ('b', 0))}
//! let mut g = Graph::new();
//! let a = g.push(Key::from("a"), NodeKind::Data, &[]);
//! let b = g.push(Key::Tuple(vec![Key::from("b"), Key::from(0)]), NodeKind::Task, &[a]);
//! g.push(Key::from("c"), NodeKind::Task, &[a, b]);
//! assert_eq!(order(&g), Ok(vec![0, 1, 2]));
//! ```
//!
//! # What dask.order looks at
//!
//! Per node: its dependencies, whether it is a task (`dask.core.istask`: every `GraphNode`
//! except `DataNode`), and its key, through exactly two things:
//!
//! * `str(key)`, the last element of `sort_key` (`(total_dependencies, len(dependencies),
//!   len(roots_connected), -max_dependents, str(key))`), compared as Python compares `str`.
//!   No `key_split`, no comparison of keys of mixed types: only their `str()`, which
//!   [`Key::py_str`] reproduces (tuple elements' `repr()`, quotes, escapes, float format).
//! * `hash(key)`, through the iteration order of Python sets (below).
//!
//! It treats specially: non-task roots with more than one dependent (taken out of the graph
//! and ordered right before the first task that needs them: e.g. a `DataNode` shared by many
//! tasks, or an external key), non-task leaves with more than one dependency (taken out and
//! given the last priorities; only possible with legacy, non-`GraphNode` values, since a
//! `DataNode` has no dependencies) and keys that are dependencies but not in `dsk`.
//!
//! # Why Python's hashes are part of the input
//!
//! `dask.order.order` iterates Python `set`s in several places where the iteration order
//! changes the result: the dependents of a finished task are pushed onto the `runnable`
//! stack in set order, `dependencies[k].difference(result)` is pushed onto the critical path
//! in set order, `use_longest_path` walks `root_nodes` in set order, data roots are popped
//! from `requires_data_task` sets, non-task leaves are removed in `leaf_nodes` order. CPython's
//! set order follows the keys' `hash()`, which for `str`/`bytes` (and tuples of them) is
//! salted per process (`PYTHONHASHSEED`). So `dask.order.order` is **not** deterministic
//! across Python processes: for most dask.array/dataframe/bag/delayed graphs, two runs with
//! different hash seeds give different priorities.
//!
//! This crate therefore emulates CPython 3.11's set hash tables (insertion, deletion, dummy
//! reuse, resizing, copies, `difference`, `pop`) from the keys' hashes, and reproduces
//! Python's result for a given hash secret exactly:
//!
//! * by default it computes `hash(key)` itself as a Python started with `PYTHONHASHSEED=0`
//!   would ([`Options::hash_seed`] selects another seed);
//! * or the caller passes the hashes Python computed ([`Graph::set_hashes`]): then the
//!   output is identical to `dask.order.order(dsk)` run in that very process (e.g. the graph
//!   helper, whatever its hash seed).
//!
//! As far as scheduling goes both are equally good (the stock scheduler's ordering depends on
//! a random seed anyway); passing hashes is what makes the output bit-identical to a given
//! Python process.
//!
//! # Input: what the graph helper provides, per node of `dsk`
//!
//! Nodes are indexed `0..n`. Push them with [`Graph::push`] **in `dsk` iteration order**
//! (`for key, node in dsk.items()`, after `_materialize_graph` and `_cull`, i.e. the dict
//! `dask.order.order` would receive): dsk order is the insertion order of several Python
//! sets and dicts. For each node:
//!
//! * `key`: the key as a [`Key`].
//! * `kind`: [`NodeKind::Data`] if `isinstance(node, DataNode)` (the helper's `"kind"` is
//!   `"DataNode"`), else [`NodeKind::Task`] (`Task`, `Alias`, `List`, `Dict`, ...).
//! * `deps`: indices of `node.dependencies` **in the frozenset's iteration order**, i.e.
//!   `list(node.dependencies)` mapped to indices.
//! * [`Graph::set_deps_table_size`] (optional): the hash-table size of that frozenset. Only
//!   needed when it has >= 5 elements and was not built by `Task.__init__` in this process:
//!   `Task`s created client-side (`delayed`, `client.submit`) arrive pickled, and unpickling
//!   rebuilds the frozenset with a larger table. Without it, the size `frozenset(set)` gives
//!   is assumed.
//! * [`Graph::set_hashes`] (optional): `hash(key)` for every node, externals included.
//!
//! ```python
//! empty = sys.getsizeof(frozenset())
//! for key, node in dsk.items():
//!     deps = node.dependencies
//!     kind = "Data" if isinstance(node, DataNode) else "Task"
//!     deps_order = list(deps)                      # -> indices
//!     table_size = ((sys.getsizeof(deps) - empty) // 16 or 8) if len(deps) >= 5 else 0
//!     h = hash(key)                                # and hash(d) for external deps d
//! ```
//!
//! Dependencies on keys that are not in `dsk` (futures already in memory: dask.order adds a
//! `DataNode` for them and drops them from its result) are pushed as extra nodes of kind
//! [`NodeKind::External`] with no deps, at any position; they get [`NO_PRIORITY`].
//! Legacy (non-`GraphNode`) values, which the scheduler never orders, are supported through
//! [`Graph::set_legacy_args`].
//!
//! [`order`] returns one `i64` per node: exactly `dask.order.order(dsk)[key]`. (Removed
//! non-task leaves get priorities counted down from `len(dsk) - 1` while `dsk` shrinks, as in
//! Python; they can collide with other priorities or be negative. Reproduced, not fixed.)
//! Where Python raises, [`order`] returns an error: [`OrderError::Cycle`] for
//! `RuntimeError("Cycle detected ...")`, [`OrderError::DaskFailure`] for dask's own failures.
//!
//! # Verification
//!
//! `tests/gen_cases.py` builds graphs the way the scheduler receives them and records what
//! `dask.order.order` returns; `tests/identical.rs` requires identical output on all of
//! them: dask.array/dataframe (incl. task and P2P shuffles)/bag/delayed graphs, merge-N,
//! tree-N, `client.map` graphs, every graph of dask's own `test_order.py`, thousands of random
//! DAGs, several hash seeds, and (ignored tests) a 1M-task and a 100k-task graph.
//!
//! # Known limits of the equivalence
//!
//! * `get_target` picks `min(candidates, key=sort_key)` from an intermediate set this crate
//!   does not emulate: if two *different* keys have the same `str()` (e.g. `1` and `"1"`) and
//!   tie on the whole sort key there, Python's pick depends on that set's order; this crate
//!   picks the lower node index. Everywhere else ties follow the emulated set order.
//! * `float('nan')` in a key (hashed by identity in Python) and `str` keys with lone
//!   surrogates are not supported.
//! * The emulated set internals and `hash()` are CPython 3.11's (64-bit), the pinned
//!   interpreter's.
//!
//! # Cost
//!
//! Index-based (Vec/CSR), O(n log n) plus what Python's algorithm itself does (e.g.
//! `_connecting_to_roots` builds per-node root sets as Python does). About 0.35 s for a
//! million independent tasks (Python: 19 s) and 45 ms for a 100k-task array reduction
//! (Python: 2.5 s).

mod connect;
mod key;
mod order;
mod printable;
mod pyset;

pub use key::{HashSecret, Key};
pub use order::{order, order_with};

/// Priority reported for [`NodeKind::External`] nodes (dask.order drops them).
pub const NO_PRIORITY: i64 = i64::MIN;

/// What `dask.order` needs to know about a node beyond its key and dependencies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A node of `dsk` for which `dask.core.istask(node)` is true: any `GraphNode` that is not
    /// a `DataNode` (`Task`, `Alias`, `List`, `Dict`, `P2PBarrierTask`, ...).
    Task,
    /// A `DataNode` in `dsk` (or a legacy value that is not a task, such as a list of keys).
    Data,
    /// A key that some node depends on but that is not in `dsk` (a future already held by
    /// the scheduler). dask.order appends a `DataNode` for it to `dsk` (in the order the keys
    /// are first seen as dependencies, which this crate works out itself) and drops it from
    /// its result: such nodes get [`NO_PRIORITY`]. An external node nothing depends on is
    /// ignored.
    External,
}

/// Errors of [`order`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum OrderError {
    /// The graph has a cycle (Python raises `RuntimeError("Cycle detected ...")`). `nodes`
    /// are the indices of one cycle, in dependency order.
    #[error("cycle detected between nodes {nodes:?}")]
    Cycle { nodes: Vec<u32> },
    /// The input is malformed (index out of range, duplicate dependency, external with deps).
    #[error("invalid graph: {0}")]
    Invalid(String),
    /// `dask.order.order` itself raises on this graph (the message names Python's
    /// exception). Only seen with legacy (non-`GraphNode`) values: a `DataNode`-like root
    /// required only by non-task leaves is never ordered and Python runs out of targets.
    #[error("dask.order.order fails on this graph: {0}")]
    DaskFailure(String),
}

/// Knobs of [`order_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// The `PYTHONHASHSEED` whose `hash()` to emulate when the graph carries no hashes.
    /// 0 (default) = hash randomization disabled.
    pub hash_seed: u32,
}

/// A task graph in index form. See the crate docs for what each field must contain.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub(crate) keys: Vec<Key>,
    pub(crate) kinds: Vec<NodeKind>,
    /// CSR: deps of node i are `dep_idx[dep_off[i]..dep_off[i + 1]]`
    pub(crate) dep_off: Vec<u32>,
    pub(crate) dep_idx: Vec<u32>,
    /// table size of `node.dependencies` (0 = assume `frozenset(set)` construction)
    pub(crate) table_size: Vec<u32>,
    pub(crate) hashes: Option<Vec<i64>>,
    /// legacy (non-GraphNode) values: the keys found in the value, in `keys_in_tasks` order
    pub(crate) legacy: Option<rustc_hash::FxHashMap<u32, Vec<u32>>>,
}

impl Graph {
    pub fn new() -> Self {
        Self::with_capacity(0, 0)
    }

    pub fn with_capacity(nodes: usize, edges: usize) -> Self {
        let mut dep_off = Vec::with_capacity(nodes + 1);
        dep_off.push(0);
        Graph {
            keys: Vec::with_capacity(nodes),
            kinds: Vec::with_capacity(nodes),
            dep_off,
            dep_idx: Vec::with_capacity(edges),
            table_size: Vec::with_capacity(nodes),
            hashes: None,
            legacy: None,
        }
    }

    /// Append a node; returns its index. `deps` are node indices (earlier or later nodes) in
    /// the iteration order of `node.dependencies`.
    pub fn push(&mut self, key: Key, kind: NodeKind, deps: &[u32]) -> u32 {
        let i = self.keys.len() as u32;
        self.keys.push(key);
        self.kinds.push(kind);
        self.dep_idx.extend_from_slice(deps);
        self.dep_off.push(self.dep_idx.len() as u32);
        self.table_size.push(0);
        i
    }

    /// The hash-table size (a power of two >= 8, larger than the number of deps) of
    /// `node.dependencies` of node `i`: `(sys.getsizeof(deps) - sys.getsizeof(frozenset()))
    /// // 16`, or 8 if that is 0. Unset (or 0): the size `frozenset(set)` gives, which is what
    /// `Task.__init__` builds; an unpickled frozenset of >= 5 elements has a larger table.
    /// It changes the result only through `dependencies[k].difference(result)` early in the
    /// run, so a missing size costs exactness, never validity.
    pub fn set_deps_table_size(&mut self, i: u32, size: u32) {
        self.table_size[i as usize] = size;
    }

    /// Mark node `i` as a legacy (non-`GraphNode`) value such as `(func, "a", "b")` or a list
    /// of keys. Never needed for graphs the scheduler orders (`_materialize_graph` converts
    /// legacy values). dask computes such a value's dependencies afresh on every lookup, as
    /// `set(keys_in_tasks(dsk, [value], as_list=True))` against the *current* `dsk`, which
    /// dask.order shrinks while normalizing; `args` is that list (in order, duplicates
    /// allowed, node indices). The node's `deps` must be the set built from it.
    pub fn set_legacy_args(&mut self, i: u32, args: &[u32]) {
        self.legacy
            .get_or_insert_with(Default::default)
            .insert(i, args.to_vec());
    }

    /// Python's `hash(key)` for every node, [`NodeKind::External`] ones included (same
    /// length as the graph when ordering). Without them the hashes of a `PYTHONHASHSEED`
    /// ([`Options::hash_seed`]) are computed from the keys.
    pub fn set_hashes(&mut self, hashes: Vec<i64>) {
        self.hashes = Some(hashes);
    }

    /// Forget hashes set with [`Graph::set_hashes`] (they will be computed from the keys).
    pub fn clear_hashes(&mut self) {
        self.hashes = None;
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn key(&self, i: u32) -> &Key {
        &self.keys[i as usize]
    }

    pub fn kind(&self, i: u32) -> NodeKind {
        self.kinds[i as usize]
    }

    pub fn deps(&self, i: u32) -> &[u32] {
        &self.dep_idx[self.dep_off[i as usize] as usize..self.dep_off[i as usize + 1] as usize]
    }
}
