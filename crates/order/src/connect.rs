//! `dask.order._connecting_to_roots`: for every node, the set of root nodes it is connected
//! to (its root ancestors; or, on the reversed graph, its leaf descendants), plus
//! `max_dependents`.
//!
//! Python shares one frozenset object between nodes whose sets are equal (a node with a
//! single distinct child set reuses it; unions are deduplicated by value). Object identity
//! therefore coincides with set equality, and `max_dependents[k]` is the max over the
//! *first* child (in iteration order) of each distinct child set -- reproduced here with set
//! ids that are equal exactly when the contents are equal.

use rustc_hash::FxHashMap;

const NONE: u32 = u32::MAX;

pub(crate) struct Connected {
    /// set id per node (NONE for nodes outside the graph)
    pub set_of: Vec<u32>,
    /// contents of set `s`: `data[off[s]..off[s + 1]]`, sorted node indices
    off: Vec<usize>,
    data: Vec<u32>,
    /// `max_dependents` per node (only meaningful for the forward direction)
    pub max_dependents: Vec<u32>,
}

impl Connected {
    #[inline]
    pub fn set(&self, s: u32) -> &[u32] {
        &self.data[self.off[s as usize]..self.off[s as usize + 1]]
    }

    /// `len(result[k])`, with roots reported as empty (Python resets them at the end).
    #[inline]
    pub fn len_of(&self, k: u32, is_root: bool) -> usize {
        if is_root {
            0
        } else {
            let s = self.set_of[k as usize];
            self.off[s as usize + 1] - self.off[s as usize]
        }
    }

    /// The connected set of node `k` (roots: empty).
    #[inline]
    pub fn of(&self, k: u32, is_root: bool) -> &[u32] {
        if is_root {
            &[]
        } else {
            self.set(self.set_of[k as usize])
        }
    }
}

/// `children(k)` are the nodes `k` points to (dependencies for the forward direction),
/// `parents(k)` the reverse. `nodes` lists the live nodes; `n` is the index space size.
/// `nparents(k)` is used for the roots' `max_dependents` (`len(dependents[root])`).
pub(crate) fn connecting_to_roots<'a, C, P>(
    n: usize,
    nodes: &[u32],
    children: C,
    parents: P,
) -> Connected
where
    C: Fn(u32) -> &'a [u32],
    P: Fn(u32) -> &'a [u32],
{
    let mut set_of = vec![NONE; n];
    let mut max_dependents = vec![0u32; n];
    let mut off: Vec<usize> = vec![0];
    let mut data: Vec<u32> = Vec::new();
    let mut num_needed: Vec<u32> = vec![0; n];
    let mut stack: Vec<u32> = Vec::new();
    for &k in nodes {
        let c = children(k);
        num_needed[k as usize] = c.len() as u32;
        if c.is_empty() {
            data.push(k);
            off.push(data.len());
            set_of[k as usize] = (off.len() - 2) as u32;
            max_dependents[k as usize] = parents(k).len() as u32;
        }
    }
    for &k in nodes {
        if children(k).is_empty() {
            for &p in parents(k) {
                num_needed[p as usize] -= 1;
                if num_needed[p as usize] == 0 {
                    stack.push(p);
                }
            }
        }
    }
    let mut dedup: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
    let mut seen_stamp: Vec<u32> = Vec::new(); // per set id: last node that saw it
    let mut distinct: Vec<u32> = Vec::new();
    let mut merged: Vec<u32> = Vec::new();
    while let Some(k) = stack.pop() {
        if set_of[k as usize] != NONE {
            continue;
        }
        for &p in parents(k) {
            num_needed[p as usize] -= 1;
            if num_needed[p as usize] == 0 {
                stack.push(p);
            }
        }
        if seen_stamp.len() < off.len() {
            seen_stamp.resize(off.len() + 1024, NONE);
        }
        distinct.clear();
        let mut maxdep = 0u32;
        for &c in children(k) {
            let s = set_of[c as usize];
            if seen_stamp[s as usize] == k {
                continue;
            }
            seen_stamp[s as usize] = k;
            distinct.push(s);
            maxdep = maxdep.max(max_dependents[c as usize]);
        }
        max_dependents[k as usize] = maxdep;
        let first = distinct[0];
        if distinct.len() == 1 {
            set_of[k as usize] = first;
            continue;
        }
        // all others subsets of the first? (sorted contents: binary search)
        let d = (off[first as usize], off[first as usize + 1]);
        let all_sub = distinct[1..].iter().all(|&s| {
            let (a, b) = (off[s as usize], off[s as usize + 1]);
            let dset = &data[d.0..d.1];
            b - a <= dset.len() && data[a..b].iter().all(|x| dset.binary_search(x).is_ok())
        });
        if all_sub {
            set_of[k as usize] = first;
            continue;
        }
        merged.clear();
        for &s in &distinct {
            merged.extend_from_slice(&data[off[s as usize]..off[s as usize + 1]]);
        }
        merged.sort_unstable();
        merged.dedup();
        let h = content_hash(&merged);
        let bucket = dedup.entry(h).or_default();
        let mut found = NONE;
        for &s in bucket.iter() {
            if data[off[s as usize]..off[s as usize + 1]] == merged[..] {
                found = s;
                break;
            }
        }
        if found == NONE {
            data.extend_from_slice(&merged);
            off.push(data.len());
            found = (off.len() - 2) as u32;
            bucket.push(found);
        }
        set_of[k as usize] = found;
    }
    Connected {
        set_of,
        off,
        data,
        max_dependents,
    }
}

fn content_hash(v: &[u32]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325 ^ (v.len() as u64);
    for &x in v {
        h = (h ^ x as u64).wrapping_mul(0x100000001b3);
        h ^= h >> 29;
    }
    h
}
