//! Dask keys as Python sees them: `str()` (dask.order's tie-break) and `hash()` (which
//! decides Python's set iteration order, see [`crate::pyset`]).

use std::fmt::Write as _;

use crate::printable::NON_PRINTABLE;

/// A Dask key: `str`, `bytes`, `int`, `float`, or a (possibly nested) `tuple` of those.
///
/// Only two things about a key matter to `dask.order.order`:
///
/// * `str(key)`: the last element of its `sort_key` tuple; Python compares these strings by
///   code point. [`Key::py_str`] reproduces CPython 3.11's `str()` exactly (including the
///   `repr()` of tuple elements, quote choice and escapes, float formatting).
/// * `hash(key)`: it decides the iteration order of Python sets, which dask.order's result
///   depends on. [`Key::py_hash`] reproduces CPython 3.11's `hash()` for a given
///   `PYTHONHASHSEED` (see [`HashSecret`]).
///
/// Python `str` values containing lone surrogates cannot be represented (Rust `String`).
#[derive(Clone, Debug, PartialEq)]
pub enum Key {
    Str(String),
    Bytes(Vec<u8>),
    /// Python `int` (msgpack gives i64/u64; i128 covers both).
    Int(i128),
    Float(f64),
    Tuple(Vec<Key>),
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Key::Str(s.to_owned())
    }
}
impl From<String> for Key {
    fn from(s: String) -> Self {
        Key::Str(s)
    }
}
impl From<i64> for Key {
    fn from(v: i64) -> Self {
        Key::Int(v as i128)
    }
}

impl Key {
    /// `str(key)` exactly as CPython 3.11 renders it.
    pub fn py_str(&self) -> String {
        let mut s = String::new();
        self.write_py_str(&mut s);
        s
    }

    /// Append `str(key)` to `out`.
    pub fn write_py_str(&self, out: &mut String) {
        match self {
            Key::Str(s) => out.push_str(s),
            _ => self.write_repr(out),
        }
    }

    /// Append `repr(key)` to `out`.
    pub fn write_repr(&self, out: &mut String) {
        match self {
            Key::Str(s) => repr_str(s, out),
            Key::Bytes(b) => repr_bytes(b, out),
            Key::Int(v) => write_int(*v, out),
            Key::Float(f) => repr_float(*f, out),
            Key::Tuple(items) => {
                out.push('(');
                for (n, item) in items.iter().enumerate() {
                    if n > 0 {
                        out.push_str(", ");
                    }
                    item.write_repr(out);
                }
                if items.len() == 1 {
                    out.push(',');
                }
                out.push(')');
            }
        }
    }

    /// `hash(key)` as CPython 3.11 (64-bit, siphash13) computes it under `secret`.
    ///
    /// `float('nan')` hashes by object identity in Python; it gets 0 here.
    pub fn py_hash(&self, secret: &HashSecret) -> i64 {
        match self {
            Key::Str(s) => hash_str(s, secret),
            Key::Bytes(b) => hash_bytes(b, secret),
            Key::Int(v) => hash_int(*v),
            Key::Float(f) => hash_float(*f),
            Key::Tuple(items) => {
                // Objects/tupleobject.c tuplehash (xxHash based, 64-bit lanes)
                const P1: u64 = 11400714785074694791;
                const P2: u64 = 14029467366897019727;
                const P5: u64 = 2870177450012600261;
                let mut acc: u64 = P5;
                for item in items {
                    let lane = item.py_hash(secret) as u64;
                    acc = acc.wrapping_add(lane.wrapping_mul(P2));
                    acc = acc.rotate_left(31);
                    acc = acc.wrapping_mul(P1);
                }
                acc = acc.wrapping_add((items.len() as u64) ^ (P5 ^ 3527539));
                if acc == u64::MAX {
                    return 1546275796;
                }
                acc as i64
            }
        }
    }
}

fn is_printable(c: char) -> bool {
    let c = c as u32;
    if c < 0x80 {
        return (0x20..0x7f).contains(&c);
    }
    // binary search in the sorted, disjoint ranges
    let idx = NON_PRINTABLE.partition_point(|&(_, hi)| hi < c);
    !(idx < NON_PRINTABLE.len() && NON_PRINTABLE[idx].0 <= c)
}

fn write_int(v: i128, out: &mut String) {
    let mut buf = [0u8; 40];
    let mut i = buf.len();
    let mut x = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (x % 10) as u8;
        x /= 10;
        if x == 0 {
            break;
        }
    }
    if v < 0 {
        out.push('-');
    }
    for &b in &buf[i..] {
        out.push(b as char);
    }
}

/// Objects/unicodeobject.c unicode_repr
fn repr_str(s: &str, out: &mut String) {
    // fast path: printable ASCII without quotes or backslashes
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'\\' && b != b'\'' && b != b'"')
    {
        out.push('\'');
        out.push_str(s);
        out.push('\'');
        return;
    }
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for ch in s.chars() {
        let c = ch as u32;
        if ch == quote || ch == '\\' {
            out.push('\\');
            out.push(ch);
        } else if ch == '\t' {
            out.push_str("\\t");
        } else if ch == '\n' {
            out.push_str("\\n");
        } else if ch == '\r' {
            out.push_str("\\r");
        } else if c < 0x20 || c == 0x7f {
            let _ = write!(out, "\\x{c:02x}");
        } else if c < 0x7f || is_printable(ch) {
            out.push(ch);
        } else if c <= 0xff {
            let _ = write!(out, "\\x{c:02x}");
        } else if c <= 0xffff {
            let _ = write!(out, "\\u{c:04x}");
        } else {
            let _ = write!(out, "\\U{c:08x}");
        }
    }
    out.push(quote);
}

/// Objects/bytesobject.c PyBytes_Repr (smartquotes)
fn repr_bytes(b: &[u8], out: &mut String) {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    out.push('b');
    out.push(quote as char);
    for &c in b {
        if c == quote || c == b'\\' {
            out.push('\\');
            out.push(c as char);
        } else if c == b'\t' {
            out.push_str("\\t");
        } else if c == b'\n' {
            out.push_str("\\n");
        } else if c == b'\r' {
            out.push_str("\\r");
        } else if !(0x20..0x7f).contains(&c) {
            let _ = write!(out, "\\x{c:02x}");
        } else {
            out.push(c as char);
        }
    }
    out.push(quote as char);
}

/// `repr(float)`: shortest round-trip digits, CPython's 'r' format rules.
fn repr_float(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("nan");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f < 0.0 { "-inf" } else { "inf" });
        return;
    }
    // Rust's `{:e}` gives the shortest round-tripping digits, like Python's repr.
    let e = format!("{:e}", f.abs());
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    if f.is_sign_negative() {
        out.push('-');
    }
    // decpt: position of the decimal point relative to the digit string
    let decpt = exp + 1;
    if f == 0.0 {
        out.push_str("0.0");
        return;
    }
    if -4 < decpt && decpt <= 16 {
        let nd = digits.len() as i32;
        if decpt <= 0 {
            out.push_str("0.");
            for _ in 0..(-decpt) {
                out.push('0');
            }
            out.push_str(&digits);
        } else if decpt >= nd {
            out.push_str(&digits);
            for _ in 0..(decpt - nd) {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let x = decpt - 1;
        let _ = write!(out, "e{}{:02}", if x < 0 { '-' } else { '+' }, x.abs());
    }
}

/// The siphash13 key CPython derives from `PYTHONHASHSEED` (Python/bootstrap_hash.c).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashSecret {
    pub k0: u64,
    pub k1: u64,
}

impl HashSecret {
    /// The secret of a process started with `PYTHONHASHSEED=seed`; 0 disables randomization
    /// (all-zero secret). A process without PYTHONHASHSEED has a random secret that cannot be
    /// known from outside: pass its `hash(key)` values instead (see [`crate::Graph::set_hashes`]).
    pub fn from_seed(seed: u32) -> Self {
        if seed == 0 {
            return HashSecret { k0: 0, k1: 0 };
        }
        // lcg_urandom
        let mut buf = [0u8; 16];
        let mut x: u32 = seed;
        for b in buf.iter_mut() {
            x = x.wrapping_mul(214013).wrapping_add(2531011);
            *b = ((x >> 16) & 0xff) as u8;
        }
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(&buf[..8]);
        k1.copy_from_slice(&buf[8..]);
        HashSecret {
            k0: u64::from_le_bytes(k0),
            k1: u64::from_le_bytes(k1),
        }
    }
}

impl Default for HashSecret {
    fn default() -> Self {
        HashSecret::from_seed(0)
    }
}

/// Python/pyhash.c siphash13 (the "modified" finalization CPython uses).
fn siphash13(k0: u64, k1: u64, data: &[u8]) -> u64 {
    let mut v0 = k0 ^ 0x736f6d6570736575;
    let mut v1 = k1 ^ 0x646f72616e646f6d;
    let mut v2 = k0 ^ 0x6c7967656e657261;
    let mut v3 = k1 ^ 0x7465646279746573;
    #[inline(always)]
    fn round(v0: &mut u64, v1: &mut u64, v2: &mut u64, v3: &mut u64) {
        *v0 = v0.wrapping_add(*v1);
        *v2 = v2.wrapping_add(*v3);
        *v1 = v1.rotate_left(13) ^ *v0;
        *v3 = v3.rotate_left(16) ^ *v2;
        *v0 = v0.rotate_left(32);
        *v2 = v2.wrapping_add(*v1);
        *v0 = v0.wrapping_add(*v3);
        *v1 = v1.rotate_left(17) ^ *v2;
        *v3 = v3.rotate_left(21) ^ *v0;
        *v2 = v2.rotate_left(32);
    }
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let mi = u64::from_le_bytes(w);
        v3 ^= mi;
        round(&mut v0, &mut v1, &mut v2, &mut v3);
        v0 ^= mi;
    }
    let rest = chunks.remainder();
    let mut t = [0u8; 8];
    t[..rest.len()].copy_from_slice(rest);
    let b = ((data.len() as u64) << 56) | u64::from_le_bytes(t);
    v3 ^= b;
    round(&mut v0, &mut v1, &mut v2, &mut v3);
    v0 ^= b;
    v2 ^= 0xff;
    round(&mut v0, &mut v1, &mut v2, &mut v3);
    round(&mut v0, &mut v1, &mut v2, &mut v3);
    round(&mut v0, &mut v1, &mut v2, &mut v3);
    (v0 ^ v1) ^ (v2 ^ v3)
}

/// _Py_HashBytes
fn hash_raw(data: &[u8], secret: &HashSecret) -> i64 {
    if data.is_empty() {
        return 0;
    }
    let x = siphash13(secret.k0, secret.k1, data) as i64;
    if x == -1 {
        -2
    } else {
        x
    }
}

fn hash_bytes(b: &[u8], secret: &HashSecret) -> i64 {
    hash_raw(b, secret)
}

/// str hash: siphash13 over the PEP 393 representation (1, 2 or 4 bytes per code point,
/// chosen by the largest code point; little endian).
fn hash_str(s: &str, secret: &HashSecret) -> i64 {
    let max = s.chars().map(|c| c as u32).max().unwrap_or(0);
    if max < 0x80 {
        return hash_raw(s.as_bytes(), secret);
    }
    let mut buf: Vec<u8> = Vec::with_capacity(s.len() * 4);
    if max < 0x100 {
        buf.extend(s.chars().map(|c| c as u32 as u8));
    } else if max < 0x10000 {
        for c in s.chars() {
            buf.extend_from_slice(&(c as u32 as u16).to_le_bytes());
        }
    } else {
        for c in s.chars() {
            buf.extend_from_slice(&(c as u32).to_le_bytes());
        }
    }
    hash_raw(&buf, secret)
}

const MODULUS: u64 = (1u64 << 61) - 1;

fn hash_int(v: i128) -> i64 {
    let m = v.unsigned_abs() % (MODULUS as u128);
    let mut x = m as i64;
    if v < 0 {
        x = -x;
    }
    if x == -1 {
        -2
    } else {
        x
    }
}

/// Python/pyhash.c _Py_HashDouble
fn hash_float(v: f64) -> i64 {
    if !v.is_finite() {
        if v.is_infinite() {
            return if v > 0.0 { 314159 } else { -314159 };
        }
        return 0;
    }
    let (mut m, mut e) = frexp(v);
    let mut sign: i64 = 1;
    if m < 0.0 {
        sign = -1;
        m = -m;
    }
    let mut x: u64 = 0;
    while m != 0.0 {
        x = ((x << 28) & MODULUS) | (x >> (61 - 28));
        m *= 268435456.0;
        e -= 28;
        let y = m as u64;
        m -= y as f64;
        x += y;
        if x >= MODULUS {
            x -= MODULUS;
        }
    }
    let e = if e >= 0 {
        e % 61
    } else {
        61 - 1 - ((-1 - e) % 61)
    } as u32;
    x = ((x << e) & MODULUS) | (x >> (61 - e));
    let r = (x as i64).wrapping_mul(sign);
    if r == -1 {
        -2
    } else {
        r
    }
}

/// C frexp: v = m * 2^e with 0.5 <= |m| < 1 (m = 0, e = 0 for v = 0).
fn frexp(v: f64) -> (f64, i32) {
    if v == 0.0 {
        return (v, 0);
    }
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // subnormal: scale up
        let (m, e) = frexp(v * f64::from_bits(0x4350000000000000)); // 2^54
        return (m, e - 54);
    }
    let e = exp - 1022;
    let m = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (m, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_of_keys() {
        let k = Key::Tuple(vec![Key::from("x-abc"), Key::Int(0), Key::Int(-3)]);
        assert_eq!(k.py_str(), "('x-abc', 0, -3)");
        assert_eq!(Key::Tuple(vec![Key::Int(1)]).py_str(), "(1,)");
        assert_eq!(Key::Tuple(vec![]).py_str(), "()");
        assert_eq!(Key::from("it's").py_str(), "it's");
        assert_eq!(Key::Tuple(vec![Key::from("it's")]).py_str(), "(\"it's\",)");
        assert_eq!(
            Key::Tuple(vec![Key::from("a'\"b")]).py_str(),
            "('a\\'\"b',)"
        );
        assert_eq!(Key::Bytes(b"a\x00'".to_vec()).py_str(), "b\"a\\x00'\"");
        for (f, s) in [
            (1.0, "1.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (1.5e300, "1.5e+300"),
            (0.1, "0.1"),
            (-0.0, "-0.0"),
            (123456.789, "123456.789"),
        ] {
            assert_eq!(Key::Float(f).py_str(), s);
        }
    }

    #[test]
    fn frexp_matches() {
        assert_eq!(frexp(8.0), (0.5, 4));
        assert_eq!(frexp(-3.0), (-0.75, 2));
        assert_eq!(frexp(0.1).1, -3);
    }

    #[test]
    fn int_hash() {
        assert_eq!(hash_int(-1), -2);
        assert_eq!(hash_int(5), 5);
        assert_eq!(hash_int((1 << 61) - 1), 0);
        assert_eq!(hash_float(1.0), 1);
        assert_eq!(hash_float(1.5), 1152921504606846977);
        assert_eq!(hash_float(-1.0), -2);
    }
}
