//! `dask.order.order` (dask 2026.8.0, `dask/order.py`) reimplemented in Rust, with output
//! identical to what Python computes for the same graph.
//!
//! # Why Python's hashes are part of the input
//!
//! `dask.order.order` iterates Python `set`s in several places where the iteration order
//! changes the result: the dependents of a finished task are pushed onto the `runnable` stack
//! in set order, `dependencies[k].difference(result)` is pushed onto the critical path in set
//! order, `use_longest_path` walks `root_nodes` in set order, data-only roots are popped from
//! `requires_data_task` sets, non-task leaves are removed in `leaf_nodes` order. CPython's set
//! order follows the keys' `hash()`, which for `str`/`bytes` (and tuples of them) is salted
//! per process (`PYTHONHASHSEED`). So `dask.order.order` is **not** deterministic across
//! Python processes: for typical dask.array/dataframe/bag/delayed graphs, two runs with
//! different hash seeds give different priorities.
//!
//! This crate therefore emulates CPython 3.11's set tables ([`pyset`](crate)) from the keys'
//! hashes, and reproduces Python's result for a given hash secret exactly:
//!
//! * by default it computes `hash(key)` itself as a Python started with
//!   `PYTHONHASHSEED=0` would ([`Options::hash_seed`], any seed works);
//! * or the caller passes the hashes Python computed ([`Graph::set_hashes`]): then the output
//!   is identical to `dask.order.order(dsk)` run in that very process (e.g. the graph helper,
//!   whatever its hash seed).
//!
//! Both are equally "correct" as far as scheduling goes (the stock scheduler's ordering
//! depends on a random seed anyway); passing hashes is what makes the output bit-identical to
//! a given Python process.
//!
//! # Input: what the graph helper must provide, per node of `dsk`
//!
//! Nodes are indexed `0..n`. Push them with [`Graph::push`] **in `dsk` iteration order**
//! (`for key, node in dsk.items()`, after materialization and culling, i.e. the dict
//! `dask.order.order` would receive); dsk order matters because it is the insertion order of
//! several Python sets and dicts. For each node:
//!
//! * `key`: the key as a [`Key`] (`str`/`bytes`/`int`/`float`/nested `tuple`).
//! * `kind`: [`NodeKind::Task`] unless `isinstance(node, dask._task_spec.DataNode)`, then
//!   [`NodeKind::Data`] (this is `dask.core.istask`; `Alias`, `List`, `Dict`, ... are tasks).
//!   The helper already sends `kind` (class name): `Data` iff it is `"DataNode"`.
//! * `deps`: indices of `node.dependencies` **in the frozenset's iteration order**, i.e.
//!   `list(node.dependencies)` (what the helper already sends as `"deps"`), mapped to indices.
//! * optionally ([`Graph::set_deps_table_size`]) the hash-table size of that frozenset, only
//!   needed when it has >= 5 elements and was not built by `Task.__init__` in the same
//!   process (e.g. unpickled Tasks created client-side by `delayed`/`client.submit`, whose
//!   frozensets come out of pickle with a larger table):
//!   `(sys.getsizeof(fs) - sys.getsizeof(frozenset())) // 16`, or 8 if that is 0.
//!   Without it the size `frozenset(set)` gives is assumed.
//! * optionally ([`Graph::set_hashes`]) `hash(key)` for every node.
//!
//! Dependencies on keys that are not in `dsk` (futures already in memory: dask.order turns
//! them into `DataNode`s and drops them from its result) are pushed as extra nodes of kind
//! [`NodeKind::External`] with no deps, at any position; they get [`NO_PRIORITY`].
//!
//! [`order`] returns one `i64` per node: exactly the value `dask.order.order(dsk)[key]`.
//! Non-task leaves with several dependencies (e.g. a `da.store` alias) get priorities counted
//! down from `len(dsk) - 1` as in Python, which can collide with other priorities or even be
//! negative in exotic graphs; that is reproduced, not fixed.
//!
//! # Known limits of the equivalence
//!
//! * `get_target` picks `min(candidates, key=sort_key)`; if two *different* keys have the same
//!   `str()` (e.g. `1` and `"1"`) and tie on the whole sort key, Python picks whichever comes
//!   first in an intermediate set this crate does not emulate. Everywhere else, ties follow
//!   the emulated set order exactly.
//! * `float('nan')` in a key (hashed by identity in Python) and `str` keys with lone
//!   surrogates are not supported.
//! * The emulated set internals are CPython 3.11's (64-bit), the interpreter the pinned
//!   environment uses.
//!
//! # Cost
//!
//! Index-based (Vec/CSR), O(n log n) plus what Python's algorithm itself does (e.g.
//! `_connecting_to_roots` builds per-node root sets, like Python).

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
    /// A `DataNode` in `dsk` (not runnable: dask.order may drop it from the main algorithm).
    Data,
    /// A key that some node depends on but that is not in `dsk`.
    External,
}

/// Errors of [`order`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
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

    /// The hash-table size (a power of two >= 8) of `node.dependencies` of node `i`.
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

    /// Python's `hash(key)` for every node (same length as the graph when ordering).
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
