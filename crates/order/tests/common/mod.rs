//! Reader for the case files `gen_cases.py` writes (format documented there).
#![allow(dead_code)]

use rask_order::{Graph, Key, NodeKind};

pub struct Case {
    pub name: String,
    pub graph: Graph,
    pub expected: Vec<i64>,
    pub kinds: Vec<NodeKind>,
    /// sum of Python's hash(key), mod 2^64
    pub hashsum: u64,
    pub has_hashes: bool,
    /// Python's exception type if dask.order.order raised
    pub error: Option<String>,
}

struct Rd<'a> {
    b: &'a [u8],
    p: usize,
}

impl Rd<'_> {
    fn u8(&mut self) -> u8 {
        let x = self.b[self.p];
        self.p += 1;
        x
    }
    fn uv(&mut self) -> u128 {
        let mut x: u128 = 0;
        let mut shift = 0;
        loop {
            let b = self.u8();
            x |= ((b & 0x7f) as u128) << shift;
            if b & 0x80 == 0 {
                return x;
            }
            shift += 7;
        }
    }
    fn sv(&mut self) -> i128 {
        let z = self.uv();
        if z & 1 == 0 {
            (z >> 1) as i128
        } else {
            -((z >> 1) as i128) - 1
        }
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let s = &self.b[self.p..self.p + n];
        self.p += n;
        s
    }
    fn u64(&mut self) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.bytes(8));
        u64::from_le_bytes(a)
    }
    fn key(&mut self, strings: &[String]) -> Key {
        match self.u8() {
            0 => Key::Str(strings[self.uv() as usize].clone()),
            1 => Key::Int(self.sv()),
            2 => Key::Float(f64::from_bits(self.u64())),
            3 => {
                let n = self.uv() as usize;
                Key::Bytes(self.bytes(n).to_vec())
            }
            4 => {
                let n = self.uv() as usize;
                Key::Tuple((0..n).map(|_| self.key(strings)).collect())
            }
            t => panic!("bad key tag {t}"),
        }
    }
}

pub fn parse(buf: &[u8]) -> Vec<Case> {
    const MAGIC: &[u8] = b"RKORD1\n";
    assert!(buf.starts_with(MAGIC), "not a case file");
    let mut r = Rd {
        b: buf,
        p: MAGIC.len(),
    };
    let mut cases = Vec::new();
    while r.p < buf.len() {
        let nl = r.uv() as usize;
        let name = String::from_utf8(r.bytes(nl).to_vec()).expect("utf8 name");
        let flags = r.uv();
        let has_hashes = flags & 1 == 1;
        let error = if flags & 2 == 2 {
            let l = r.uv() as usize;
            Some(String::from_utf8(r.bytes(l).to_vec()).expect("utf8 error"))
        } else {
            None
        };
        let n = r.uv() as usize;
        let ns = r.uv() as usize;
        let strings: Vec<String> = (0..ns)
            .map(|_| {
                let l = r.uv() as usize;
                String::from_utf8(r.bytes(l).to_vec()).expect("utf8 string")
            })
            .collect();
        let mut graph = Graph::with_capacity(n, 2 * n);
        let mut expected = Vec::with_capacity(n);
        let mut hashes = Vec::new();
        let mut kinds = Vec::with_capacity(n);
        let mut deps: Vec<u32> = Vec::new();
        for i in 0..n {
            let key = r.key(&strings);
            let kind = match r.u8() {
                0 => NodeKind::Task,
                1 => NodeKind::Data,
                2 => NodeKind::External,
                k => panic!("bad kind {k}"),
            };
            let nd = r.uv() as usize;
            deps.clear();
            for _ in 0..nd {
                let delta = r.sv();
                deps.push((i as i128 - delta) as u32);
            }
            let ts = r.uv() as u32;
            let nl = r.uv() as usize;
            let legacy: Vec<u32> = (0..nl).map(|_| (i as i128 - r.sv()) as u32).collect();
            if has_hashes {
                hashes.push(r.u64() as i64);
            }
            expected.push(r.sv() as i64);
            let idx = graph.push(key, kind, &deps);
            if ts != 0 {
                graph.set_deps_table_size(idx, ts);
            }
            if nl > 0 {
                graph.set_legacy_args(idx, &legacy);
            }
            kinds.push(kind);
        }
        let hashsum = r.u64();
        if has_hashes {
            graph.set_hashes(hashes);
        }
        cases.push(Case {
            name,
            graph,
            expected,
            kinds,
            hashsum,
            has_hashes,
            error,
        });
    }
    cases
}

/// Compare the outcome of rask_order::order with Python's.
pub fn check_result(
    case: &Case,
    got: &Result<Vec<i64>, rask_order::OrderError>,
) -> Result<(), String> {
    use rask_order::OrderError;
    match (&case.error, got) {
        (None, Ok(v)) => check(case, v),
        (None, Err(e)) => Err(format!("{}: python ok, rust error {e}", case.name)),
        (Some(py), Ok(_)) => Err(format!("{}: python raised {py}, rust ok", case.name)),
        (Some(py), Err(e)) => {
            let same = match e {
                OrderError::Cycle { .. } => py == "RuntimeError",
                OrderError::DaskFailure(m) => m.starts_with(py.as_str()),
                _ => false,
            };
            if same {
                Ok(())
            } else {
                Err(format!("{}: python raised {py}, rust error {e}", case.name))
            }
        }
    }
}

/// Compare; returns a description of the first differences, if any.
pub fn check(case: &Case, got: &[i64]) -> Result<(), String> {
    let mut diffs = Vec::new();
    for (i, (&want, &have)) in case.expected.iter().zip(got).enumerate() {
        if case.kinds[i] == NodeKind::External {
            if have != rask_order::NO_PRIORITY {
                diffs.push(format!("external {i} got {have}"));
            }
            continue;
        }
        if have != want {
            diffs.push(format!(
                "{} ({}): python {} rust {}",
                i,
                case.graph.key(i as u32).py_str(),
                want,
                have
            ));
        }
    }
    if got.len() != case.expected.len() {
        diffs.push(format!(
            "{} results for {} nodes",
            got.len(),
            case.expected.len()
        ));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        let n = diffs.len();
        diffs.truncate(8);
        Err(format!(
            "{}: {} of {} priorities differ, e.g.\n  {}",
            case.name,
            n,
            case.expected.len(),
            diffs.join("\n  ")
        ))
    }
}

pub fn hashsum(case: &Case) -> u64 {
    let secret = rask_order::HashSecret::from_seed(0);
    (0..case.graph.len() as u32)
        .map(|i| case.graph.key(i).py_hash(&secret) as u64)
        .fold(0u64, |a, b| a.wrapping_add(b))
}
