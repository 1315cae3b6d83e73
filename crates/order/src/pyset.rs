//! Emulation of CPython 3.11 `set`/`frozenset` hash tables (Objects/setobject.c), enough to
//! predict the iteration order of every Python set whose order dask.order's result depends on.
//!
//! Elements are node indices; their Python hashes come from a slice passed to each call. The
//! emulation was checked against the real interpreter (slot-for-slot, with `ctypes`) over
//! thousands of random add/discard/pop/difference/copy sequences; one non-obvious detail:
//! `set_add_entry` reuses the *last* dummy slot seen on the probe sequence, not the first.

pub(crate) const EMPTY: u32 = u32::MAX;
pub(crate) const DUMMY: u32 = u32::MAX - 1;
const LINEAR_PROBES: usize = 9;
const PERTURB_SHIFT: u32 = 5;
pub(crate) const MINSIZE: usize = 8;

#[inline]
fn next_probe(i: usize, perturb: &mut u64, mask: usize) -> usize {
    *perturb >>= PERTURB_SHIFT;
    ((i as u64)
        .wrapping_mul(5)
        .wrapping_add(1)
        .wrapping_add(*perturb) as usize)
        & mask
}

/// `set_insert_clean`: place `key` in a table known to have no dummies and not to hold it.
#[inline]
pub(crate) fn insert_clean(table: &mut [u32], mask: usize, key: u32, hash: u64) {
    let mut perturb = hash;
    let mut i = (hash as usize) & mask;
    loop {
        if table[i] == EMPTY {
            table[i] = key;
            return;
        }
        if i + LINEAR_PROBES <= mask {
            if let Some(off) = table[i + 1..=i + LINEAR_PROBES]
                .iter()
                .position(|&e| e == EMPTY)
            {
                table[i + 1 + off] = key;
                return;
            }
        }
        i = next_probe(i, &mut perturb, mask);
    }
}

/// Smallest table size > minused (set_table_resize).
#[inline]
pub(crate) fn size_for(minused: usize) -> usize {
    let mut n = MINSIZE;
    while n <= minused {
        n <<= 1;
    }
    n
}

/// The mask of `frozenset(s)` for a set `s` of `n` elements (make_new_set + set_merge):
/// how dask builds `Task.dependencies`.
#[inline]
pub(crate) fn copy_mask(n: usize) -> usize {
    if n * 5 >= (MINSIZE - 1) * 3 {
        size_for(n * 2) - 1
    } else {
        MINSIZE - 1
    }
}

/// A Python set of node indices with its full slot layout.
#[derive(Clone, Debug)]
pub(crate) struct PySet {
    pub table: Vec<u32>,
    pub mask: usize,
    pub fill: usize,
    pub used: usize,
    pub finger: usize,
}

impl Default for PySet {
    fn default() -> Self {
        Self::new()
    }
}

impl PySet {
    pub fn new() -> Self {
        PySet {
            table: vec![EMPTY; MINSIZE],
            mask: MINSIZE - 1,
            fill: 0,
            used: 0,
            finger: 0,
        }
    }

    /// Reset to a fresh empty set, keeping the allocation small.
    pub fn clear_fresh(&mut self) {
        self.table.truncate(MINSIZE);
        self.table.fill(EMPTY);
        self.table.resize(MINSIZE, EMPTY);
        self.mask = MINSIZE - 1;
        self.fill = 0;
        self.used = 0;
        self.finger = 0;
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.used
    }

    /// Elements in iteration order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + Clone + '_ {
        self.table
            .iter()
            .copied()
            .filter(|&e| e != EMPTY && e != DUMMY)
    }

    pub fn to_vec(&self) -> Vec<u32> {
        self.iter().collect()
    }

    pub fn resize(&mut self, minused: usize, hashes: &[u64]) {
        let newsize = size_for(minused);
        if newsize == MINSIZE && self.mask == MINSIZE - 1 && self.fill == self.used {
            return;
        }
        let old = std::mem::replace(&mut self.table, vec![EMPTY; newsize]);
        self.mask = newsize - 1;
        self.fill = self.used;
        for e in old {
            if e != EMPTY && e != DUMMY {
                insert_clean(&mut self.table, self.mask, e, hashes[e as usize]);
            }
        }
    }

    /// `set.add` (set_add_entry).
    pub fn add(&mut self, key: u32, hashes: &[u64]) {
        let h = hashes[key as usize];
        let mask = self.mask;
        let mut perturb = h;
        let mut i = (h as usize) & mask;
        let mut freeslot: Option<usize> = None;
        loop {
            let probes = if i + LINEAR_PROBES <= mask {
                LINEAR_PROBES
            } else {
                0
            };
            for j in i..=i + probes {
                let e = self.table[j];
                if e == EMPTY {
                    if let Some(fs) = freeslot {
                        self.used += 1;
                        self.table[fs] = key;
                        return;
                    }
                    self.fill += 1;
                    self.used += 1;
                    self.table[j] = key;
                    if self.fill * 5 < mask * 3 {
                        return;
                    }
                    let minused = if self.used > 50000 {
                        self.used * 2
                    } else {
                        self.used * 4
                    };
                    self.resize(minused, hashes);
                    return;
                }
                if e == DUMMY {
                    freeslot = Some(j);
                } else if e == key {
                    return;
                }
            }
            i = next_probe(i, &mut perturb, mask);
        }
    }

    fn lookup(&self, key: u32, h: u64) -> Option<usize> {
        let mask = self.mask;
        let mut perturb = h;
        let mut i = (h as usize) & mask;
        loop {
            let probes = if i + LINEAR_PROBES <= mask {
                LINEAR_PROBES
            } else {
                0
            };
            for j in i..=i + probes {
                let e = self.table[j];
                if e == EMPTY {
                    return None;
                }
                if e == key {
                    return Some(j);
                }
            }
            i = next_probe(i, &mut perturb, mask);
        }
    }

    /// `set.discard`; returns whether the key was present.
    pub fn discard(&mut self, key: u32, hashes: &[u64]) -> bool {
        match self.lookup(key, hashes[key as usize]) {
            Some(j) => {
                self.table[j] = DUMMY;
                self.used -= 1;
                true
            }
            None => false,
        }
    }

    pub fn contains(&self, key: u32, hashes: &[u64]) -> bool {
        self.lookup(key, hashes[key as usize]).is_some()
    }

    /// `set.pop`
    #[allow(dead_code)]
    pub fn pop(&mut self) -> Option<u32> {
        if self.used == 0 {
            return None;
        }
        let mut i = self.finger & self.mask;
        while self.table[i] == EMPTY || self.table[i] == DUMMY {
            i += 1;
            if i > self.mask {
                i = 0;
            }
        }
        let key = self.table[i];
        self.table[i] = DUMMY;
        self.used -= 1;
        self.finger = i + 1;
        Some(key)
    }
}

/// A set known only by its iteration order, table mask and whether it holds dummies: enough
/// for every operation dask.order applies to `dependencies[k]` (copy, difference, iterate).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SetShape {
    pub mask: usize,
    pub dummies: bool,
}

/// Scratch space for the order-only set operations.
#[derive(Default)]
pub(crate) struct Scratch {
    set: PySet,
    table: Vec<u32>,
}

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            set: PySet::new(),
            table: Vec::new(),
        }
    }

    /// Order of a fresh set built by `add`ing `items` (distinct) in sequence.
    /// Returns the final mask; the order is appended to `out`.
    pub fn fresh_adds(
        &mut self,
        items: impl Iterator<Item = u32>,
        hashes: &[u64],
        out: &mut Vec<u32>,
    ) -> usize {
        let s = &mut self.set;
        s.clear_fresh();
        let mut count = 0usize;
        let mut last = EMPTY;
        for k in items {
            // fast path: a fresh set with no dummies, distinct keys: add == insert_clean
            s.fill += 1;
            s.used += 1;
            insert_clean(&mut s.table, s.mask, k, hashes[k as usize]);
            if s.fill * 5 >= s.mask * 3 {
                let minused = if s.used > 50000 {
                    s.used * 2
                } else {
                    s.used * 4
                };
                s.resize(minused, hashes);
            }
            count += 1;
            last = k;
        }
        if count == 1 {
            out.push(last);
        } else if count > 1 {
            out.extend(s.iter());
        }
        s.mask
    }

    /// Order after `insert_clean`ing `items` (slot order) into an empty table of `mask`.
    pub fn reinsert(
        &mut self,
        items: impl Iterator<Item = u32>,
        mask: usize,
        hashes: &[u64],
        out: &mut Vec<u32>,
    ) {
        self.table.clear();
        self.table.resize(mask + 1, EMPTY);
        for k in items {
            insert_clean(&mut self.table, mask, k, hashes[k as usize]);
        }
        out.extend(self.table.iter().copied().filter(|&e| e != EMPTY));
    }

    /// `src - other` where `src` is a set/frozenset with iteration order `order` and shape
    /// `shape`, and `other` is a set or dict of `other_len` entries (`removed(k)` tells
    /// membership). Appends the result's order to `out` and returns the result's shape.
    /// (Objects/setobject.c set_difference / set_copy_and_difference.)
    pub fn difference(
        &mut self,
        order: &[u32],
        shape: SetShape,
        other_len: usize,
        removed: impl Fn(u32) -> bool,
        hashes: &[u64],
        out: &mut Vec<u32>,
    ) -> SetShape {
        let n = order.len();
        if (n >> 2) > other_len {
            // set_copy_and_difference: copy (set_merge into a fresh set) then discard
            let mask = copy_mask(n);
            let start = out.len();
            let ndiscard = order.iter().filter(|&&k| removed(k)).count();
            if mask == shape.mask && !shape.dummies {
                // table copied slot for slot
                if ndiscard == 0 {
                    out.extend_from_slice(order);
                    return SetShape {
                        mask,
                        dummies: false,
                    };
                }
                out.extend(order.iter().copied().filter(|&k| !removed(k)));
            } else {
                self.reinsert(order.iter().copied(), mask, hashes, out);
                if ndiscard == 0 {
                    return SetShape {
                        mask,
                        dummies: false,
                    };
                }
                let mut w = start;
                for r in start..out.len() {
                    let k = out[r];
                    if !removed(k) {
                        out[w] = k;
                        w += 1;
                    }
                }
                out.truncate(w);
            }
            // set_difference_update_internal: purge dummies if more than 1/4 of the table
            let used = n - ndiscard;
            if ndiscard <= mask / 4 {
                return SetShape {
                    mask,
                    dummies: true,
                };
            }
            let minused = if used > 50000 { used * 2 } else { used * 4 };
            let newmask = size_for(minused) - 1;
            // (never the no-op case: there are dummies)
            let tmp: Vec<u32> = out.drain(start..).collect();
            self.reinsert(tmp.into_iter(), newmask, hashes, out);
            SetShape {
                mask: newmask,
                dummies: false,
            }
        } else {
            let mask = self.fresh_adds(order.iter().copied().filter(|&k| !removed(k)), hashes, out);
            SetShape {
                mask,
                dummies: false,
            }
        }
    }
}
