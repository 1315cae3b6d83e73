//! The data model of a decoded message.

use bytes::Bytes;
use std::fmt;
use std::sync::Arc;

/// A msgpack value from frame 0, with opaque payloads resolved to [`Opaque`].
///
/// Arrays decode to `Array` whether Python sent a list or a tuple (Dask's decoder turns both
/// into tuples); maps keep their entries in order and may have any key type, because Dask
/// keys maps by tuple keys (`who_has`, `nbytes`).
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    /// `None`
    #[default]
    Nil,
    /// `bool`
    Bool(bool),
    /// any integer that fits in `i64`
    Int(i64),
    /// integers in `(i64::MAX, u64::MAX]`
    UInt(u64),
    /// `float` (f32 on the wire is widened)
    Float(f64),
    /// `str`
    Str(Arc<str>),
    /// `bytes`; a zero-copy slice of the frame it arrived in
    Bin(Bytes),
    /// `list` / `tuple` (and decoded `__Set__`s)
    Array(Vec<Value>),
    /// `dict`, in wire order
    Map(Vec<(Value, Value)>),
    /// a `Serialize`d / `ToPickle`d object the scheduler forwards without looking inside
    Opaque(Opaque),
}

/// Which marker an opaque payload travels under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpaqueKind {
    /// `{"__Serialized__": i}`: data, results, exceptions; deserialized only by Python peers
    Serialized,
    /// `{"__Pickled__": i}`: a pickle the receiver always unpickles (`run_spec`, annotations)
    Pickled,
}

impl OpaqueKind {
    /// The marker's name on the wire.
    pub fn marker(self) -> &'static str {
        match self {
            OpaqueKind::Serialized => "__Serialized__",
            OpaqueKind::Pickled => "__Pickled__",
        }
    }
}

/// A payload kept exactly as it arrived: its msgpack sub-header and its payload frames.
/// Re-encoding writes the same header (with `num-sub-frames` reset) and the same frames.
#[derive(Clone, Debug, PartialEq)]
pub struct Opaque {
    /// marker used on the wire
    pub kind: OpaqueKind,
    /// the decoded sub-header map (`serializer`, `compression`, `pickled-obj`, ...)
    pub header: Vec<(Value, Value)>,
    /// payload frames, forwarded by reference
    pub frames: Vec<Bytes>,
}

impl Opaque {
    /// A `ToPickle` of bytes that are already a pickle (e.g. a task's `run_spec`):
    /// sub-header `{"pickled-obj": bytes, "compression": (), "num-sub-frames": 0}`.
    pub fn pickled(pickle: Bytes) -> Opaque {
        Opaque {
            kind: OpaqueKind::Pickled,
            header: vec![
                (Value::from("pickled-obj"), Value::Bin(pickle)),
                (Value::from("compression"), Value::Array(Vec::new())),
            ],
            frames: Vec::new(),
        }
    }

    /// Total payload size, for `nbytes`-style accounting.
    pub fn payload_len(&self) -> usize {
        self.frames.iter().map(|f| f.len()).sum()
    }

    /// A header field by name.
    pub fn header_get(&self, name: &str) -> Option<&Value> {
        self.header
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v)
    }
}

impl Value {
    /// Builds a map with string keys, in the given order.
    pub fn map<K: AsRef<str>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::Str(intern(k.as_ref())), v))
                .collect(),
        )
    }

    /// Looks up a string key in a map; `None` for other types or a missing key.
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(name))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Removes and returns a string key from a map.
    pub fn take(&mut self, name: &str) -> Option<Value> {
        match self {
            Value::Map(entries) => {
                let idx = entries.iter().position(|(k, _)| k.as_str() == Some(name))?;
                Some(entries.remove(idx).1)
            }
            _ => None,
        }
    }

    /// Sets a string key in a map (appending it if new). No effect on non-maps.
    pub fn set(&mut self, name: &str, value: Value) {
        if let Value::Map(entries) = self {
            if let Some(slot) = entries.iter_mut().find(|(k, _)| k.as_str() == Some(name)) {
                slot.1 = value;
            } else {
                entries.push((Value::from(name), value));
            }
        }
    }

    /// `str` contents.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Integer value (also accepts an integral float, as Python would).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(i) => Some(i),
            Value::UInt(u) => i64::try_from(u).ok(),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
            _ => None,
        }
    }

    /// Numeric value as a float.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Int(i) => Some(i as f64),
            Value::UInt(u) => Some(u as f64),
            Value::Float(f) => Some(f),
            _ => None,
        }
    }

    /// Python truthiness of the common cases (`None`, `False`, `0`, empty containers).
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::UInt(u) => *u != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Bin(b) => !b.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::Opaque(_) => true,
        }
    }

    /// Array elements.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Map entries.
    pub fn as_map(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// `bytes` contents.
    pub fn as_bin(&self) -> Option<&Bytes> {
        match self {
            Value::Bin(b) => Some(b),
            _ => None,
        }
    }

    /// `true` for `None`.
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    /// Python-ish type name, for error messages about wrong field types.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::UInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bin(_) => "bytes",
            Value::Array(_) => "tuple",
            Value::Map(_) => "dict",
            Value::Opaque(_) => "serialized object",
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(intern(s))
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s.into())
    }
}
impl From<Arc<str>> for Value {
    fn from(s: Arc<str>) -> Self {
        Value::Str(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<u64> for Value {
    fn from(u: u64) -> Self {
        match i64::try_from(u) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::UInt(u),
        }
    }
}
impl From<usize> for Value {
    fn from(u: usize) -> Self {
        Value::from(u as u64)
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<Bytes> for Value {
    fn from(b: Bytes) -> Self {
        Value::Bin(b)
    }
}
impl From<Vec<Value>> for Value {
    fn from(a: Vec<Value>) -> Self {
        Value::Array(a)
    }
}
impl From<Opaque> for Value {
    fn from(o: Opaque) -> Self {
        Value::Opaque(o)
    }
}
impl From<&Key> for Value {
    fn from(k: &Key) -> Self {
        k.to_value()
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(o: Option<T>) -> Self {
        o.map_or(Value::Nil, Into::into)
    }
}

/// A Dask task key (`dask.core.iskey`): `str | bytes | int | float | tuple[Key, ...]`.
///
/// Keys must go back to Python with the shape they came in (a tuple key is a msgpack array,
/// also when it is a map key). Floats compare by bit pattern so `Key` can be hashed; Dask
/// itself never mixes `1` and `1.0` in one graph.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// `'inc-8db2…'`
    Str(Arc<str>),
    /// `b'…'` (legal, rare)
    Bytes(Bytes),
    /// `1`
    Int(i64),
    /// `1.5`, stored as its bits
    Float(u64),
    /// `('x', 0, 1)`
    Tuple(Arc<[Key]>),
}

impl Key {
    /// Reads a key from a msgpack value; `None` if the value cannot be a Dask key.
    pub fn from_value(v: &Value) -> Option<Key> {
        Some(match v {
            Value::Str(s) => Key::Str(s.clone()),
            Value::Bin(b) => Key::Bytes(b.clone()),
            Value::Int(i) => Key::Int(*i),
            Value::UInt(u) => Key::Int(i64::try_from(*u).ok()?),
            Value::Float(f) => Key::Float(f.to_bits()),
            Value::Array(items) => Key::Tuple(
                items
                    .iter()
                    .map(Key::from_value)
                    .collect::<Option<Vec<_>>>()?
                    .into(),
            ),
            _ => return None,
        })
    }

    /// The wire form of the key.
    pub fn to_value(&self) -> Value {
        match self {
            Key::Str(s) => Value::Str(s.clone()),
            Key::Bytes(b) => Value::Bin(b.clone()),
            Key::Int(i) => Value::Int(*i),
            Key::Float(bits) => Value::Float(f64::from_bits(*bits)),
            Key::Tuple(items) => Value::Array(items.iter().map(Key::to_value).collect()),
        }
    }

    /// A plain string key.
    pub fn str(s: &str) -> Key {
        Key::Str(s.into())
    }

    /// `dask.utils.key_split`-like prefix, used for log lines and task prefixes when the
    /// graph helper did not supply one.
    pub fn first_str(&self) -> Option<&str> {
        match self {
            Key::Str(s) => Some(s),
            Key::Tuple(items) => items.first().and_then(Key::first_str),
            _ => None,
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Python `repr` of the key, as Dask prints it in logs and error messages.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Str(s) => write!(f, "'{s}'"),
            Key::Bytes(b) => write!(f, "b{:?}", String::from_utf8_lossy(b)),
            Key::Int(i) => write!(f, "{i}"),
            Key::Float(bits) => write!(f, "{:?}", f64::from_bits(*bits)),
            Key::Tuple(items) => {
                f.write_str("(")?;
                for (i, k) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}")?;
                }
                if items.len() == 1 {
                    f.write_str(",")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// Field names and op names that are in nearly every message. Making them clones of one
/// shared `Arc<str>` saves a malloc and a free per string, decoded or built: a
/// `task-finished` has about fifteen, and they were a fifth of the decoder's time.
#[rustfmt::skip]
const COMMON: [&str; 64] = [
    "op", "key", "keys", "status", "stimulus_id", "nbytes", "type", "typename", "metadata",
    "thread", "startstops", "action", "start", "stop", "run_id", "task-finished", "OK",
    "compute", "transfer", "disk-read", "source", "add-keys", "worker", "release-worker-data",
    "reply", "keep-alive", "heartbeat_worker", "now", "metrics", "executing", "memory",
    "long-running", "task-erred", "exception", "traceback", "exception_text", "traceback_text",
    "worker-status-change", "who_has", "priority", "run_spec", "resource_restrictions",
    "annotations", "span_id", "duration", "compute-duration", "deps", "chunk", "prefix",
    "group", "kind", "order", "Task", "id", "client", "tasks", "steal-response", "state",
    "compute-task", "free-keys", "key-in-memory", "close", "batched_stream", "error",
];

static INTERNED: std::sync::LazyLock<rustc_hash::FxHashMap<&'static str, Arc<str>>> =
    std::sync::LazyLock::new(|| COMMON.iter().map(|s| (*s, Arc::from(*s))).collect());

/// `s` as an `Arc<str>`, shared if it is one of the common names.
pub fn intern(s: &str) -> Arc<str> {
    if s.len() <= 24 {
        if let Some(a) = INTERNED.get(s) {
            return a.clone();
        }
    }
    s.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_values() {
        let k = Key::Tuple(vec![Key::str("x"), Key::Int(1), Key::Float(2.5f64.to_bits())].into());
        assert_eq!(Key::from_value(&k.to_value()), Some(k.clone()));
        assert_eq!(k.to_string(), "('x', 1, 2.5)");
        assert_eq!(Key::from_value(&Value::Nil), None);
        assert_eq!(Key::from_value(&Value::Bool(true)), None);
    }

    #[test]
    fn map_helpers() {
        let mut m = Value::map([("op", Value::from("x")), ("n", Value::Int(2))]);
        assert_eq!(m.get("op").and_then(Value::as_str), Some("x"));
        m.set("n", Value::Int(3));
        assert_eq!(m.take("n"), Some(Value::Int(3)));
        assert_eq!(m.get("n"), None);
    }
}
