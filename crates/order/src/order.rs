//! The algorithm: a line-by-line port of `dask.order.order` (dask 2026.8.0), with every
//! Python set whose iteration order matters replaced by an emulated CPython set.
//! Comments quote the Python they mirror.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rustc_hash::FxHashMap;

use crate::connect::{connecting_to_roots, Connected};
use crate::key::HashSecret;
use crate::pyset::{copy_mask, PySet, Scratch, SetShape};
use crate::{Graph, NodeKind, Options, OrderError, NO_PRIORITY};

const NONE: u32 = u32::MAX;
/// "not in result" marker (removed-leaf priorities are >= -len(dsk), never this)
const UNSET: i64 = i64::MIN + 1;

/// `dask.order.order(dsk)` for `graph`, hashing keys as `PYTHONHASHSEED=0` would unless the
/// graph carries hashes. Returns `order[i]` for every node ([`NO_PRIORITY`] for externals).
pub fn order(graph: &Graph) -> Result<Vec<i64>, OrderError> {
    order_with(graph, &Options::default())
}

/// [`order`] with options.
pub fn order_with(graph: &Graph, opts: &Options) -> Result<Vec<i64>, OrderError> {
    let n = graph.len();
    if n >= NONE as usize - 2 {
        return Err(OrderError::Invalid("too many nodes".into()));
    }
    validate(graph)?;
    let mut hashes = Hashes::new(graph, opts)?;
    let mut out = vec![NO_PRIORITY; n];
    if graph.kinds.iter().all(|k| *k == NodeKind::External) {
        // `if not dsk: return {}`
        return Ok(out);
    }
    let pre = prepare(graph, &mut hashes)?;
    let mut run = Run::new(graph, &mut hashes, pre);
    if let Some(e) = run.error.take() {
        return Err(e);
    }
    let result = run.run()?;
    for (i, r) in result.into_iter().enumerate() {
        if graph.kinds[i] != NodeKind::External && r != UNSET {
            out[i] = r;
        }
    }
    Ok(out)
}

/// Python's `hash(key)` per node, computed lazily for isolated nodes (no dependencies, no
/// dependents): they only ever enter the `leaf_nodes`/`root_nodes` sets, whose order is
/// often irrelevant (e.g. a million independent tasks).
struct Hashes {
    h: Vec<u64>,
    /// isolated nodes not hashed yet
    pending: Vec<u32>,
    secret: HashSecret,
}

impl Hashes {
    fn new(g: &Graph, opts: &Options) -> Result<Self, OrderError> {
        let n = g.len();
        if let Some(h) = &g.hashes {
            if h.len() != n {
                return Err(OrderError::Invalid(format!(
                    "{} hashes for {} nodes",
                    h.len(),
                    n
                )));
            }
            return Ok(Hashes {
                h: h.iter().map(|&x| x as u64).collect(),
                pending: Vec::new(),
                secret: HashSecret::default(),
            });
        }
        let secret = HashSecret::from_seed(opts.hash_seed);
        let mut linked = vec![false; n];
        for &d in &g.dep_idx {
            linked[d as usize] = true;
        }
        let mut pending = Vec::new();
        let h = (0..n)
            .map(|i| {
                if linked[i] || !g.deps(i as u32).is_empty() {
                    g.keys[i].py_hash(&secret) as u64
                } else {
                    pending.push(i as u32);
                    0
                }
            })
            .collect();
        Ok(Hashes { h, pending, secret })
    }

    /// Hash every node.
    fn complete(&mut self, g: &Graph) -> &[u64] {
        for &i in &self.pending {
            self.h[i as usize] = g.keys[i as usize].py_hash(&self.secret) as u64;
        }
        self.pending.clear();
        &self.h
    }
}

fn validate(g: &Graph) -> Result<(), OrderError> {
    let n = g.len();
    if g.dep_off.len() != n + 1 || g.table_size.len() != n || g.kinds.len() != n {
        return Err(OrderError::Invalid("inconsistent graph arrays".into()));
    }
    let mut stamp = vec![NONE; n];
    for i in 0..n as u32 {
        let deps = g.deps(i);
        if g.kinds[i as usize] == NodeKind::External && !deps.is_empty() {
            return Err(OrderError::Invalid(format!(
                "external node {i} has dependencies"
            )));
        }
        for &d in deps {
            if d as usize >= n {
                return Err(OrderError::Invalid(format!(
                    "node {i} depends on {d}, out of range"
                )));
            }
            if stamp[d as usize] == i {
                return Err(OrderError::Invalid(format!(
                    "node {i} lists dependency {d} twice"
                )));
            }
            stamp[d as usize] = i;
        }
        if let Some(args) = g.legacy.as_ref().and_then(|l| l.get(&i)) {
            if args.iter().any(|&d| d as usize >= n) {
                return Err(OrderError::Invalid(format!(
                    "node {i}: legacy arg out of range"
                )));
            }
        }
        let ts = g.table_size[i as usize];
        if ts != 0 && (!ts.is_power_of_two() || ts < 8 || (ts as usize) <= deps.len()) {
            return Err(OrderError::Invalid(format!(
                "node {i}: bad dependencies table size {ts}"
            )));
        }
    }
    Ok(())
}

/// Compressed adjacency: row `i` is `idx[off[i]..off[i + 1]]`.
#[derive(Default, Clone)]
struct Csr {
    off: Vec<u32>,
    idx: Vec<u32>,
}

impl Csr {
    #[inline]
    fn row(&self, i: u32) -> &[u32] {
        &self.idx[self.off[i as usize] as usize..self.off[i as usize + 1] as usize]
    }
}

/// Everything computed before the main loop.
struct Prepared {
    /// `dependencies[k]` after normalization, in emulated iteration order, and its shape
    deps: Csr,
    shape: Vec<SetShape>,
    /// `dependents[k]` after normalization, in emulated iteration order
    dependents: Csr,
    /// node still in `dsk` after normalization
    alive: Vec<bool>,
    /// priorities already assigned to removed non-task leaves
    result: Vec<i64>,
    result_len: usize,
    /// `len(dsk)` after normalization
    dsk_len: usize,
    expected_len: usize,
    is_external: Vec<bool>,
    /// final `root_nodes` / `leaf_nodes` members: in Python's iteration order if
    /// `*_ordered`, else in insertion order (the sets were not emulated: no node was
    /// removed, so the sets are the initial comprehensions and can be emulated later)
    roots: Vec<u32>,
    roots_ordered: bool,
    leaves: Vec<u32>,
    leaves_ordered: bool,
    /// `requires_data_task[k]` in pop order
    rdt: FxHashMap<u32, Vec<u32>>,
}

fn prepare(g: &Graph, hashes: &mut Hashes) -> Result<Prepared, OrderError> {
    let n = g.len();
    let is_ext: Vec<bool> = g.kinds.iter().map(|k| *k == NodeKind::External).collect();
    let is_task: Vec<bool> = g.kinds.iter().map(|k| *k == NodeKind::Task).collect();
    let shape0: Vec<SetShape> = (0..n)
        .map(|i| {
            let ts = g.table_size[i] as usize;
            SetShape {
                mask: if ts == 0 {
                    copy_mask(g.deps(i as u32).len())
                } else {
                    ts - 1
                },
                dummies: false,
            }
        })
        .collect();

    // dependents = reverse_dict(dependencies): its dict order (keys first touched by
    // `result[k]` then `result[val]`) and, per key, a set built by adding dependents in dsk
    // order.
    let mut touched = vec![false; n];
    let mut touch_order: Vec<u32> = Vec::with_capacity(n);
    let mut cnt = vec![0u32; n + 1];
    for k in 0..n as u32 {
        if is_ext[k as usize] {
            continue;
        }
        if !touched[k as usize] {
            touched[k as usize] = true;
            touch_order.push(k);
        }
        for &v in g.deps(k) {
            if !touched[v as usize] {
                touched[v as usize] = true;
                touch_order.push(v);
            }
            cnt[v as usize + 1] += 1;
        }
    }
    for i in 0..n {
        cnt[i + 1] += cnt[i];
    }
    let mut dependents0 = Csr {
        off: cnt.clone(),
        idx: vec![0; cnt[n] as usize],
    };
    {
        let mut fillp = cnt;
        for k in 0..n as u32 {
            if is_ext[k as usize] {
                continue;
            }
            for &v in g.deps(k) {
                dependents0.idx[fillp[v as usize] as usize] = k;
                fillp[v as usize] += 1;
            }
        }
    }
    let h: &[u64] = &hashes.h;
    let mut scratch = Scratch::new();
    let mut buf: Vec<u32> = Vec::new();
    for v in 0..n {
        let (a, b) = (dependents0.off[v] as usize, dependents0.off[v + 1] as usize);
        if b - a > 1 {
            buf.clear();
            scratch.fresh_adds(dependents0.idx[a..b].iter().copied(), h, &mut buf);
            dependents0.idx[a..b].copy_from_slice(&buf);
        }
    }

    // External keys get a DataNode appended to dsk, in dependents-dict order.
    let mut dsk_order: Vec<u32> = (0..n as u32).filter(|&k| !is_ext[k as usize]).collect();
    dsk_order.extend(touch_order.iter().copied().filter(|&k| is_ext[k as usize]));
    let expected_len = dsk_order.len();
    let mut dsk_len = expected_len;

    // leaf_nodes = {k for k, v in dependents.items() if not v}
    // root_nodes = {k for k, v in dependencies.items() if not v}
    let leaves0: Vec<u32> = touch_order
        .iter()
        .copied()
        .filter(|&k| dependents0.row(k).is_empty())
        .collect();
    let roots0: Vec<u32> = dsk_order
        .iter()
        .copied()
        .filter(|&k| g.deps(k).is_empty())
        .collect();

    // Normalization: drop non-task leaves with > 1 dependencies and non-task roots with > 1
    // dependents.
    let mut result = vec![UNSET; n];
    let mut result_len = 0usize;
    let mut removed = vec![false; n];
    let mut removed_count = 0usize;
    let mut dependents_len: Vec<u32> = (0..n as u32)
        .map(|v| dependents0.row(v).len() as u32)
        .collect();
    let mut rdt_sets: FxHashMap<u32, PySet> = FxHashMap::default();
    let any_candidate = dsk_order.iter().any(|&k| {
        !is_task[k as usize]
            && (g.deps(k).len() > 1 || (g.deps(k).is_empty() && dependents_len[k as usize] > 1))
    });
    let mut sets: Option<(PySet, PySet)> = None;
    if any_candidate {
        let h = hashes.complete(g);
        let mut leaf_set = PySet::new();
        for &k in &leaves0 {
            leaf_set.add(k, h);
        }
        let mut root_set = PySet::new();
        for &k in &roots0 {
            root_set.add(k, h);
        }
        let mut n_removed_leaves: i64 = 0;
        loop {
            let mut all_tasks = true;
            for leaf in leaf_set.to_vec() {
                if root_set.contains(leaf, h) {
                    continue;
                }
                if is_task[leaf as usize] {
                    continue;
                }
                let ndeps = count_deps_at(g, leaf, &removed);
                if ndeps <= 1 {
                    continue;
                }
                all_tasks = false;
                // prio = len(dsk) - 1 - n_removed_leaves
                result[leaf as usize] = dsk_len as i64 - 1 - n_removed_leaves;
                result_len += 1;
                n_removed_leaves += 1;
                leaf_set.discard(leaf, h);
                buf.clear();
                dependencies_at(
                    g,
                    leaf,
                    shape0[leaf as usize],
                    removed_count,
                    &removed,
                    h,
                    &mut scratch,
                    &mut buf,
                );
                for &dep in &buf {
                    // dependents[dep].remove(leaf)
                    dependents_len[dep as usize] -= 1;
                    if dependents_len[dep as usize] == 0 {
                        leaf_set.add(dep, h);
                    }
                }
                dsk_len -= 1;
                removed[leaf as usize] = true;
                removed_count += 1;
            }
            for root in root_set.to_vec() {
                if leaf_set.contains(root, h) {
                    continue;
                }
                if is_task[root as usize] || dependents_len[root as usize] <= 1 {
                    continue;
                }
                dsk_len -= 1;
                removed[root as usize] = true;
                removed_count += 1;
                root_set.discard(root, h);
                for &dep in dependents0.row(root) {
                    if removed[dep as usize] {
                        continue; // a removed leaf, no longer in dependents[root]
                    }
                    rdt_sets.entry(dep).or_default().add(root, h);
                    if count_deps_at(g, dep, &removed) == 0 {
                        root_set.add(dep, h);
                    }
                }
            }
            if all_tasks {
                break;
            }
        }
        sets = Some((leaf_set, root_set));
    }
    let h: &[u64] = &hashes.h;
    let alive: Vec<bool> = (0..n).map(|k| touched[k] && !removed[k]).collect();

    // Final dependencies (DependenciesMapping: `v.dependencies - _removed` once anything was
    // removed) and dependents (alive entries of the emulated sets).
    let mut deps = Csr {
        off: Vec::with_capacity(n + 1),
        idx: Vec::with_capacity(g.dep_idx.len()),
    };
    let mut shape = shape0.clone();
    deps.off.push(0);
    for k in 0..n {
        if alive[k] {
            if removed_count == 0 {
                deps.idx.extend_from_slice(g.deps(k as u32));
            } else {
                shape[k] = dependencies_at(
                    g,
                    k as u32,
                    shape0[k],
                    removed_count,
                    &removed,
                    h,
                    &mut scratch,
                    &mut deps.idx,
                );
            }
        }
        deps.off.push(deps.idx.len() as u32);
    }
    let dependents = if removed_count == 0 {
        dependents0
    } else {
        let mut d = Csr {
            off: Vec::with_capacity(n + 1),
            idx: Vec::with_capacity(dependents0.idx.len()),
        };
        d.off.push(0);
        for k in 0..n as u32 {
            if alive[k as usize] {
                d.idx.extend(
                    dependents0
                        .row(k)
                        .iter()
                        .copied()
                        .filter(|&x| !removed[x as usize]),
                );
            }
            d.off.push(d.idx.len() as u32);
        }
        d
    };
    let rdt = rdt_sets
        .into_iter()
        .map(|(k, mut s)| {
            let mut v = Vec::with_capacity(s.len());
            while let Some(x) = s.pop() {
                v.push(x);
            }
            (k, v)
        })
        .collect();
    Ok(Prepared {
        deps,
        shape,
        dependents,
        alive,
        result,
        result_len,
        dsk_len,
        expected_len,
        is_external: is_ext,
        roots_ordered: sets.is_some(),
        leaves_ordered: sets.is_some(),
        roots: match &sets {
            Some((_, r)) => r.to_vec(),
            None => roots0,
        },
        leaves: match &sets {
            Some((l, _)) => l.to_vec(),
            None => leaves0,
        },
        rdt,
    })
}

/// `dependencies[k]` while `_removed` holds `removed_count` keys (DependenciesMapping):
/// `v.dependencies - _removed` (a `frozenset - set`), or for a legacy value
/// `set(keys found in it that are still in dsk) - _removed`.
#[allow(clippy::too_many_arguments)]
fn dependencies_at(
    g: &Graph,
    k: u32,
    shape0: SetShape,
    removed_count: usize,
    removed: &[bool],
    h: &[u64],
    scratch: &mut Scratch,
    out: &mut Vec<u32>,
) -> SetShape {
    let d0 = g.deps(k);
    if let Some(args) = g.legacy.as_ref().and_then(|l| l.get(&k)) {
        if removed_count == 0 {
            out.extend_from_slice(d0);
            return shape0;
        }
        // set(ret): sequential adds (duplicates are no-ops), then `- _removed`
        let mut seen: Vec<u32> = Vec::with_capacity(args.len());
        for &a in args {
            if !removed[a as usize] && !seen.contains(&a) {
                seen.push(a);
            }
        }
        let mut first = Vec::with_capacity(seen.len());
        let mask = scratch.fresh_adds(seen.into_iter(), h, &mut first);
        let shape = SetShape {
            mask,
            dummies: false,
        };
        return scratch.difference(
            &first,
            shape,
            removed_count,
            |x| removed[x as usize],
            h,
            out,
        );
    }
    if removed_count == 0 {
        out.extend_from_slice(d0);
        return shape0;
    }
    scratch.difference(d0, shape0, removed_count, |x| removed[x as usize], h, out)
}

/// `len(dependencies[k])` given the removed keys.
fn count_deps_at(g: &Graph, k: u32, removed: &[bool]) -> usize {
    match g.legacy.as_ref().and_then(|l| l.get(&k)) {
        Some(args) => {
            let mut seen: Vec<u32> = Vec::new();
            for &a in args {
                if !removed[a as usize] && !seen.contains(&a) {
                    seen.push(a);
                }
            }
            seen.len()
        }
        None => g.deps(k).iter().filter(|&&d| !removed[d as usize]).count(),
    }
}

/// `sort_key(x)` as a dense rank: equal ranks iff equal sort keys.
fn sort_ranks(g: &Graph, nodes: &[u32], key_of: impl Fn(u32) -> (u128, u32, u32, u32)) -> Vec<u32> {
    let n = g.len();
    let mut rank = vec![NONE; n];
    let mut items: Vec<((u128, u32, u32, u32), u32)> =
        nodes.iter().map(|&k| (key_of(k), k)).collect();
    items.sort_unstable_by_key(|a| a.0);
    let mut r: u32 = 0;
    let mut i = 0;
    let mut strs = StrSorter::default();
    while i < items.len() {
        let mut j = i + 1;
        while j < items.len() && items[j].0 == items[i].0 {
            j += 1;
        }
        if j - i == 1 {
            rank[items[i].1 as usize] = r;
            r += 1;
        } else {
            // tie on the numeric part: compare str(key)
            r = strs.rank(g, items[i..j].iter().map(|&(_, k)| k), r, &mut rank);
        }
        i = j;
    }
    rank
}

/// Sorts nodes by `str(key)` (code point order = UTF-8 byte order).
#[derive(Default)]
struct StrSorter {
    buf: Vec<u8>,
    s: String,
    /// (8 bytes after the common prefix, big endian; node; start; end)
    items: Vec<(u64, u32, u32, u32)>,
}

impl StrSorter {
    /// Assign dense ranks from `r` to `nodes` by their `str()`; returns the next rank.
    fn rank(
        &mut self,
        g: &Graph,
        nodes: impl Iterator<Item = u32>,
        mut r: u32,
        rank: &mut [u32],
    ) -> u32 {
        self.buf.clear();
        self.items.clear();
        for k in nodes {
            let start = self.buf.len() as u32;
            match &g.keys[k as usize] {
                crate::Key::Str(s) => self.buf.extend_from_slice(s.as_bytes()),
                key => {
                    self.s.clear();
                    key.write_py_str(&mut self.s);
                    self.buf.extend_from_slice(self.s.as_bytes());
                }
            }
            self.items.push((0, k, start, self.buf.len() as u32));
        }
        let buf = &self.buf;
        let st = |it: &(u64, u32, u32, u32)| &buf[it.2 as usize..it.3 as usize];
        // common prefix of all strings
        let first = st(&self.items[0]);
        let mut lcp = first.len();
        for it in &self.items[1..] {
            let s = st(it);
            lcp = lcp.min(s.iter().zip(first).take_while(|(a, b)| a == b).count());
        }
        for it in self.items.iter_mut() {
            let s = &buf[it.2 as usize + lcp..it.3 as usize];
            let mut w = [0u8; 8];
            let m = s.len().min(8);
            w[..m].copy_from_slice(&s[..m]);
            it.0 = u64::from_be_bytes(w);
        }
        // zero padding keeps "prefix a < prefix b => a < b"; equal prefixes compare fully
        self.items
            .sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| st(a).cmp(st(b))));
        for t in 0..self.items.len() {
            if t > 0 && st(&self.items[t]) != st(&self.items[t - 1]) {
                r += 1;
            }
            rank[self.items[t].1 as usize] = r;
        }
        r + 1
    }
}

/// Python ints are unbounded: `total_dependencies` can exceed u128 in deep lattices.
/// Returns a per-node value with the same order (the total itself, or its dense rank).
fn total_dependencies(
    nodes: &[u32],
    deps: &Csr,
    dependents: &Csr,
    n: usize,
) -> Result<Vec<u128>, Vec<u32>> {
    // Returns Err(unresolved nodes) on a cycle.
    let mut num_needed: Vec<u32> = vec![0; n];
    let mut order: Vec<u32> = Vec::with_capacity(nodes.len());
    let mut stack: Vec<u32> = Vec::new();
    for &k in nodes {
        num_needed[k as usize] = deps.row(k).len() as u32;
        if deps.row(k).is_empty() {
            stack.push(k);
        }
    }
    while let Some(k) = stack.pop() {
        order.push(k);
        for &p in dependents.row(k) {
            num_needed[p as usize] -= 1;
            if num_needed[p as usize] == 0 {
                stack.push(p);
            }
        }
    }
    if order.len() != nodes.len() {
        return Err(nodes
            .iter()
            .copied()
            .filter(|&k| num_needed[k as usize] > 0)
            .collect());
    }
    let mut total: Vec<u128> = vec![0; n];
    let mut overflow = false;
    for &k in &order {
        let mut t: u128 = 1;
        for &c in deps.row(k) {
            match t.checked_add(total[c as usize]) {
                Some(x) => t = x,
                None => {
                    overflow = true;
                    break;
                }
            }
        }
        if overflow {
            break;
        }
        total[k as usize] = t;
    }
    if !overflow {
        return Ok(total);
    }
    // Arbitrary precision fallback (little-endian u64 limbs), then dense ranks.
    let mut big: Vec<Vec<u64>> = vec![Vec::new(); n];
    for &k in &order {
        let mut t: Vec<u64> = vec![1];
        for &c in deps.row(k) {
            big_add(&mut t, &big[c as usize]);
        }
        big[k as usize] = t;
    }
    let mut sorted: Vec<u32> = nodes.to_vec();
    sorted.sort_unstable_by(|&a, &b| big_cmp(&big[a as usize], &big[b as usize]));
    let mut r: u128 = 0;
    for w in 0..sorted.len() {
        if w > 0 && big_cmp(&big[sorted[w - 1] as usize], &big[sorted[w] as usize]).is_ne() {
            r += 1;
        }
        total[sorted[w] as usize] = r;
    }
    Ok(total)
}

fn big_add(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    let mut carry = 0u64;
    for i in 0..a.len() {
        let bi = if i < b.len() { b[i] } else { 0 };
        let (s1, c1) = a[i].overflowing_add(bi);
        let (s2, c2) = s1.overflowing_add(carry);
        a[i] = s2;
        carry = (c1 as u64) + (c2 as u64);
        if carry == 0 && i >= b.len() {
            break;
        }
    }
    if carry > 0 {
        a.push(carry);
    }
}

fn big_cmp(a: &[u64], b: &[u64]) -> std::cmp::Ordering {
    let la = a.iter().rposition(|&x| x != 0).map_or(0, |p| p + 1);
    let lb = b.iter().rposition(|&x| x != 0).map_or(0, |p| p + 1);
    la.cmp(&lb)
        .then_with(|| a[..la].iter().rev().cmp(b[..lb].iter().rev()))
}

fn find_cycle(unresolved: &[u32], deps: &Csr, n: usize) -> Vec<u32> {
    // Walk dependencies among unresolved nodes until a node repeats.
    let mut in_set = vec![false; n];
    for &k in unresolved {
        in_set[k as usize] = true;
    }
    let mut pos = vec![NONE; n];
    let mut path: Vec<u32> = Vec::new();
    let Some(&start) = unresolved.first() else {
        return Vec::new();
    };
    let mut cur = start;
    loop {
        if pos[cur as usize] != NONE {
            let mut cyc = path[pos[cur as usize] as usize..].to_vec();
            cyc.reverse();
            return cyc;
        }
        pos[cur as usize] = path.len() as u32;
        path.push(cur);
        match deps.row(cur).iter().find(|&&d| in_set[d as usize]) {
            Some(&d) => cur = d,
            None => return path,
        }
    }
}

/// Iteration order of a fresh Python set after adding `items` in order.
fn emulated_order(items: &[u32], h: &[u64]) -> Vec<u32> {
    let mut set = PySet::new();
    for &k in items {
        set.add(k, h);
    }
    set.to_vec()
}

/// `sorted(items, key=sort_key, reverse=reverse)` (stable, also when reversed) as a
/// counting sort over the dense ranks.
fn stable_sort_by_rank(
    items: impl Iterator<Item = u32> + Clone,
    rank: &[u32],
    reverse: bool,
) -> Vec<u32> {
    let nr = items
        .clone()
        .map(|k| rank[k as usize] as usize + 1)
        .max()
        .unwrap_or(0);
    let mut start = vec![0u32; nr + 1];
    let mut len = 0usize;
    for k in items.clone() {
        let r = rank[k as usize] as usize;
        let b = if reverse { nr - 1 - r } else { r };
        start[b + 1] += 1;
        len += 1;
    }
    for b in 0..nr {
        start[b + 1] += start[b];
    }
    let mut out = vec![0u32; len];
    for k in items {
        let r = rank[k as usize] as usize;
        let b = if reverse { nr - 1 - r } else { r };
        out[start[b] as usize] = k;
        start[b] += 1;
    }
    out
}

/// Python set with O(1) add/discard/contains and iteration (order irrelevant where used).
struct IndexSet {
    items: Vec<u32>,
    pos: Vec<u32>,
}

impl IndexSet {
    fn new(n: usize) -> Self {
        IndexSet {
            items: Vec::new(),
            pos: vec![NONE; n],
        }
    }
    #[inline]
    fn add(&mut self, k: u32) {
        if self.pos[k as usize] == NONE {
            self.pos[k as usize] = self.items.len() as u32;
            self.items.push(k);
        }
    }
    #[inline]
    fn discard(&mut self, k: u32) {
        let p = self.pos[k as usize];
        if p != NONE {
            let last = self.items.pop().unwrap_or(k);
            if last != k {
                self.items[p as usize] = last;
                self.pos[last as usize] = p;
            }
            self.pos[k as usize] = NONE;
        }
    }
    #[inline]
    fn contains(&self, k: u32) -> bool {
        self.pos[k as usize] != NONE
    }
}

struct Run<'a> {
    h: &'a [u64],
    deps: Csr,
    shape: Vec<SetShape>,
    dependents: Csr,
    rank: Vec<u32>,
    result: Vec<i64>,
    result_len: usize,
    expected_len: usize,
    i: i64,
    is_external: Vec<bool>,
    num_needed: Vec<u32>,
    runnable_hull: Vec<bool>,
    reachable_hull: IndexSet,
    leaf_nodes: Vec<bool>,
    root_nodes: Vec<bool>,
    leafs_connected: Connected,
    is_leaf_root: Vec<bool>,
    leafs_degree: Vec<u32>,
    leafs_per_degree: BTreeMap<usize, BTreeSet<(u32, u32)>>,
    in_degree_set: Vec<u32>,
    min_leaf_degree: usize,
    max_leaf_degree: usize,
    leaf_nodes_sorted: Vec<u32>,
    runnable: Vec<u32>,
    known_runnable_paths: FxHashMap<u32, Vec<Vec<u32>>>,
    rdt: FxHashMap<u32, Vec<u32>>,
    next_items: Vec<u32>,
    critical_path: Vec<u32>,
    scratch: Scratch,
    /// graph is non-empty but unusable (cycle)
    error: Option<OrderError>,
}

impl<'a> Run<'a> {
    fn new(g: &Graph, hashes: &'a mut Hashes, mut p: Prepared) -> Self {
        let n = g.len();
        let nodes: Vec<u32> = (0..n as u32).filter(|&k| p.alive[k as usize]).collect();
        let mut error = None;
        let totals = match total_dependencies(&nodes, &p.deps, &p.dependents, n) {
            Ok(t) => t,
            Err(unresolved) => {
                error = Some(OrderError::Cycle {
                    nodes: find_cycle(&unresolved, &p.deps, n),
                });
                vec![0; n]
            }
        };
        let mut run_nodes = nodes.clone();
        if error.is_some() {
            run_nodes.clear();
            // Nothing gets a rank then: sorting the leaves by rank would index with NONE (a
            // panic, or a 16 GiB counting-sort table) when a cycle sits beside a leaf.
            p.leaves.clear();
        }
        let deps = p.deps;
        let dependents = p.dependents;
        let roots_connected =
            connecting_to_roots(n, &run_nodes, |k| deps.row(k), |k| dependents.row(k));
        let leafs_connected =
            connecting_to_roots(n, &run_nodes, |k| dependents.row(k), |k| deps.row(k));
        let is_root = |k: u32| deps.row(k).is_empty();
        let is_leaf = |k: u32| dependents.row(k).is_empty();
        let rc_len: Vec<u32> = (0..n as u32)
            .map(|k| {
                if p.alive[k as usize] && error.is_none() {
                    roots_connected.len_of(k, is_root(k)) as u32
                } else {
                    0
                }
            })
            .collect();
        let rank = sort_ranks(g, &run_nodes, |k| {
            (
                totals[k as usize],
                deps.row(k).len() as u32,
                rc_len[k as usize],
                u32::MAX - roots_connected.max_dependents[k as usize],
            )
        });
        let is_leaf_root: Vec<bool> = (0..n as u32)
            .map(|k| p.alive[k as usize] && is_leaf(k))
            .collect();
        let num_needed: Vec<u32> = (0..n as u32).map(|k| deps.row(k).len() as u32).collect();
        let mut leaf_nodes = vec![false; n];
        for &k in &p.leaves {
            leaf_nodes[k as usize] = true;
        }
        let mut root_nodes = vec![false; n];
        for &k in &p.roots {
            root_nodes[k as usize] = true;
        }

        // leafs_degree / leafs_per_degree over leaf_nodes - root_nodes
        let mut min_leaf_degree = p.dsk_len;
        let mut max_leaf_degree = p.dsk_len;
        let mut leafs_degree = vec![NONE; n];
        let mut in_degree_set = vec![NONE; n];
        let mut leafs_per_degree: BTreeMap<usize, BTreeSet<(u32, u32)>> = BTreeMap::new();
        for &leaf in &p.leaves {
            if root_nodes[leaf as usize] {
                continue;
            }
            let degree = rc_len[leaf as usize] as usize;
            min_leaf_degree = min_leaf_degree.min(degree);
            max_leaf_degree = max_leaf_degree.max(degree);
            leafs_degree[leaf as usize] = degree as u32;
            in_degree_set[leaf as usize] = degree as u32;
            leafs_per_degree
                .entry(degree)
                .or_default()
                .insert((rank[leaf as usize], leaf));
        }

        // use_longest_path
        let nroots = p.roots.len();
        let nleaves = p.leaves.len();
        let lc_len = |r: u32| leafs_connected.len_of(r, is_leaf(r));
        let mut longest_path = true;
        if nroots > 0 && error.is_none() {
            let ratio = (nroots as f64 - nleaves as f64).abs() / nroots as f64;
            if ratio < 0.8 {
                // The walk depends on the order of root_nodes only if some roots reach no
                // leaf (size 0) and the others all reach the same number.
                let mut nonzero = p.roots.iter().map(|&r| lc_len(r)).filter(|&l| l > 0);
                let first = nonzero.next();
                let uniform = nonzero.all(|l| Some(l) == first);
                if !p.roots_ordered
                    && first.is_some()
                    && uniform
                    && p.roots.iter().any(|&r| lc_len(r) == 0)
                {
                    p.roots = emulated_order(&p.roots, hashes.complete(g));
                }
                let mut size = 0usize;
                for &r in &p.roots {
                    let l = lc_len(r);
                    if size == 0 {
                        size = l;
                    } else if size != l {
                        longest_path = false;
                        break;
                    }
                }
            }
        }
        // sorted(leaf_nodes, key=sort_key, reverse=not longest_path): stable, so the set's
        // order matters only between leaves with equal sort keys
        if !p.leaves_ordered {
            let mut seen = vec![false; rank.len()];
            let tie = p.leaves.iter().any(|&k| {
                let r = rank[k as usize] as usize;
                std::mem::replace(&mut seen[r], true)
            });
            if tie {
                p.leaves = emulated_order(&p.leaves, hashes.complete(g));
            }
        }
        let leaf_nodes_sorted = stable_sort_by_rank(p.leaves.iter().copied(), &rank, !longest_path);
        let h: &'a [u64] = &hashes.h;

        Run {
            h,
            deps,
            shape: p.shape,
            dependents,
            rank,
            result: p.result,
            result_len: p.result_len,
            expected_len: p.expected_len,
            i: 0,
            is_external: p.is_external,
            num_needed,
            runnable_hull: vec![false; n],
            reachable_hull: IndexSet::new(n),
            leaf_nodes,
            root_nodes,
            leafs_connected,
            is_leaf_root,
            leafs_degree,
            leafs_per_degree,
            in_degree_set,
            min_leaf_degree,
            max_leaf_degree,
            leaf_nodes_sorted,
            runnable: Vec::new(),
            known_runnable_paths: FxHashMap::default(),
            rdt: p.rdt,
            next_items: Vec::new(),
            critical_path: Vec::new(),
            scratch: Scratch::new(),
            error,
        }
    }

    /// `dependencies[k].difference(result)` in Python's iteration order.
    fn deps_not_in_result(&mut self, k: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let (a, b) = (
            self.deps.off[k as usize] as usize,
            self.deps.off[k as usize + 1] as usize,
        );
        let result = &self.result;
        self.scratch.difference(
            &self.deps.idx[a..b],
            self.shape[k as usize],
            self.result_len,
            |x| result[x as usize] != UNSET,
            self.h,
            &mut out,
        );
        out
    }

    #[inline]
    fn in_result(&self, k: u32) -> bool {
        self.result[k as usize] != UNSET
    }

    fn add_to_result(&mut self, item: u32) {
        // next_items is a stack shared with the (depth-1) recursion for data tasks
        let base = self.next_items.len();
        self.next_items.push(item);
        while self.next_items.len() > base {
            let item = self.next_items.pop().unwrap_or(NONE);
            self.runnable_hull[item as usize] = false;
            self.reachable_hull.discard(item);
            self.leaf_nodes[item as usize] = false;
            if self.in_result(item) {
                continue;
            }
            // while requires_data_task[item]: add_to_result(requires_data_task[item].pop())
            if let Some(data) = self.rdt.remove(&item) {
                for d in data {
                    self.add_to_result(d);
                }
            }
            self.result[item as usize] = self.i;
            self.result_len += 1;
            if !self.is_external[item as usize] {
                self.i += 1;
            }
            if self.root_nodes[item as usize] {
                let is_leaf = self.is_leaf_root[item as usize];
                let leafs = self.leafs_connected.of(item, is_leaf);
                for &leaf in leafs {
                    if !self.leaf_nodes[leaf as usize] {
                        continue;
                    }
                    let degree = self.leafs_degree[leaf as usize] as usize;
                    self.leafs_degree[leaf as usize] = NONE;
                    let r = self.rank[leaf as usize];
                    if let Some(s) = self.leafs_per_degree.get_mut(&degree) {
                        s.remove(&(r, leaf));
                    }
                    self.in_degree_set[leaf as usize] = NONE;
                    let new_degree = degree - 1;
                    if new_degree > 0 {
                        if new_degree < self.min_leaf_degree {
                            self.min_leaf_degree = new_degree;
                        }
                        self.leafs_per_degree
                            .entry(new_degree)
                            .or_default()
                            .insert((r, leaf));
                        self.in_degree_set[leaf as usize] = new_degree as u32;
                        self.leafs_degree[leaf as usize] = new_degree as u32;
                    } else if self
                        .leafs_per_degree
                        .get(&degree)
                        .is_none_or(|s| s.is_empty())
                    {
                        debug_assert_eq!(degree, self.min_leaf_degree);
                        // advance to the next non-empty degree (or max_leaf_degree)
                        let next = self
                            .leafs_per_degree
                            .range(self.min_leaf_degree..self.max_leaf_degree)
                            .find(|(_, s)| !s.is_empty())
                            .map(|(&d, _)| d);
                        self.min_leaf_degree = next.unwrap_or(self.max_leaf_degree);
                    }
                }
            }
            let (a, b) = (
                self.dependents.off[item as usize] as usize,
                self.dependents.off[item as usize + 1] as usize,
            );
            let single = b - a == 1;
            for t in a..b {
                let dep = self.dependents.idx[t];
                self.num_needed[dep as usize] -= 1;
                self.reachable_hull.add(dep);
                if self.num_needed[dep as usize] == 0 {
                    if single {
                        self.next_items.push(dep);
                    } else {
                        self.runnable.push(dep);
                    }
                }
            }
        }
    }

    fn process_runnables(&mut self) {
        while !self.runnable.is_empty() {
            let mut candidates = std::mem::take(&mut self.runnable);
            while let Some(key) = candidates.pop() {
                if self.runnable_hull[key as usize] || self.in_result(key) {
                    continue;
                }
                if self.leaf_nodes[key as usize] {
                    self.add_to_result(key);
                    continue;
                }
                let mut branches: VecDeque<(u32, Vec<u32>)> = VecDeque::new();
                branches.push_back((0, vec![key]));
                while let Some((mut nsplits, mut path)) = branches.pop_front() {
                    loop {
                        let current = *path.last().unwrap_or(&NONE);
                        self.runnable_hull[current as usize] = true;
                        let down = self.dependents.row(current);
                        let n_down = down.len();
                        let n_up = self.deps.row(current).len();
                        if n_down == 0 {
                            if self.num_needed[current as usize] <= 1 {
                                for &k in &path {
                                    self.add_to_result(k);
                                }
                            } else {
                                self.runnable_hull[current as usize] = false;
                            }
                        } else if path.len() == 1 || n_up == 1 {
                            if n_down > 1 {
                                nsplits += 1;
                                let mut sorted: Vec<u32> = down.to_vec();
                                sorted.sort_by_key(|&d| self.rank[d as usize]);
                                for d in sorted {
                                    if self.deps.row(d).len() == 1 {
                                        let mut branch = path.clone();
                                        branch.push(d);
                                        branches.push_back((nsplits, branch));
                                    }
                                }
                                break;
                            }
                            path.push(down[0]);
                            continue;
                        } else if self.known_runnable_paths.contains_key(&current) {
                            let nn = self.num_needed[current as usize] as usize;
                            let paths = self
                                .known_runnable_paths
                                .get_mut(&current)
                                .map(|v| {
                                    v.push(std::mem::take(&mut path));
                                    v.len()
                                })
                                .unwrap_or(0);
                            self.runnable_hull[current as usize] = false;
                            if paths >= nn {
                                let popped = self
                                    .known_runnable_paths
                                    .remove(&current)
                                    .unwrap_or_default();
                                let mut pruned: VecDeque<Vec<u32>> = VecDeque::new();
                                for p in popped {
                                    if !self.in_result(p[p.len() - 2]) {
                                        pruned.push_back(p);
                                    }
                                }
                                if pruned.len() < nn {
                                    self.known_runnable_paths
                                        .insert(current, pruned.into_iter().collect());
                                } else {
                                    if nsplits > 1 {
                                        let mut joined = Vec::new();
                                        for p in pruned {
                                            joined.extend_from_slice(&p);
                                        }
                                        branches.push_back((nsplits - 1, joined));
                                        break;
                                    }
                                    while let Some(p) = pruned.pop_front() {
                                        let mut requeue = false;
                                        for &k in &p {
                                            if self.num_needed[k as usize] > 0 {
                                                requeue = true;
                                                break;
                                            }
                                            self.add_to_result(k);
                                        }
                                        if requeue {
                                            pruned.push_back(p);
                                        }
                                    }
                                }
                            }
                        } else if n_up > 1 && self.num_needed[current as usize] <= 1 {
                            for &k in &path {
                                self.add_to_result(k);
                            }
                        } else {
                            self.known_runnable_paths.insert(current, vec![path]);
                            self.runnable_hull[current as usize] = false;
                        }
                        break;
                    }
                }
            }
        }
    }

    fn get_target(&mut self) -> Result<u32, OrderError> {
        let all_leafs_accessible = self.min_leaf_degree == self.max_leaf_degree;
        let is_trivial_lookup = self.reachable_hull.items.is_empty() || all_leafs_accessible;
        if !is_trivial_lookup {
            let min = self.min_leaf_degree;
            let empty = BTreeSet::new();
            let set = self.leafs_per_degree.get(&min).unwrap_or(&empty);
            // min(reachable_hull & leafs_per_degree[min], key=sort_key), else min over the set
            let mut best: Option<(u32, u32)> = None;
            if self.reachable_hull.items.len() <= set.len() {
                for &x in &self.reachable_hull.items {
                    if self.in_degree_set[x as usize] == min as u32 {
                        let c = (self.rank[x as usize], x);
                        if best.is_none_or(|b| c < b) {
                            best = Some(c);
                        }
                    }
                }
            } else {
                best = set
                    .iter()
                    .find(|(_, x)| self.reachable_hull.contains(*x))
                    .copied();
            }
            if best.is_none() {
                best = set.iter().next().copied();
            }
            best.map(|b| b.1).ok_or_else(|| {
                OrderError::DaskFailure("ValueError: min() arg is an empty sequence".into())
            })
        } else {
            // Python raises when no leaf is left while nodes are still unordered; this
            // happens when a removed data root is required only by removed non-task leaves
            // (legacy graphs only)
            self.leaf_nodes_sorted
                .pop()
                .ok_or_else(|| OrderError::DaskFailure("IndexError: pop from empty list".into()))
        }
    }

    fn run(mut self) -> Result<Vec<i64>, OrderError> {
        while self.result_len < self.expected_len {
            // A. Build the critical path
            let target = self.get_target()?;
            self.critical_path.push(target);
            // next_deps = dependencies[target]
            let mut next_deps: Vec<u32> = self.deps.row(target).to_vec();
            while !next_deps.is_empty() {
                // item = max(next_deps, key=sort_key): first maximal in iteration order
                let mut item = next_deps[0];
                for &d in &next_deps[1..] {
                    if self.rank[d as usize] > self.rank[item as usize] {
                        item = d;
                    }
                }
                self.critical_path.push(item);
                next_deps = self.deps_not_in_result(item);
                self.critical_path.extend_from_slice(&next_deps);
            }
            // B. Walk the critical path
            let mut walked_back = false;
            while let Some(item) = self.critical_path.pop() {
                if self.in_result(item) {
                    continue;
                }
                if self.num_needed[item as usize] > 0 {
                    self.critical_path.push(item);
                    let mut deps = self.deps_not_in_result(item);
                    deps.sort_by_key(|&d| self.rank[d as usize]);
                    let mut unknown: Vec<u32> = Vec::new();
                    let mut known: Vec<u32> = Vec::new();
                    for d in deps {
                        if self.known_runnable_paths.contains_key(&d) {
                            known.push(d);
                        } else {
                            unknown.push(d);
                        }
                    }
                    if unknown.len() > 1 {
                        walked_back = true;
                    }
                    self.critical_path.extend_from_slice(&unknown);
                    for d in known {
                        if let Some(paths) = self.known_runnable_paths.remove(&d) {
                            for p in paths {
                                self.critical_path.extend(p.iter().rev());
                            }
                        }
                    }
                    continue;
                } else {
                    if walked_back && self.runnable.len() < self.critical_path.len() {
                        self.process_runnables();
                    }
                    self.add_to_result(item);
                }
            }
            self.process_runnables();
        }
        Ok(self.result)
    }
}
