//! Frames ⇄ [`Value`]: Dask's `protocol.dumps`/`loads` (`distributed/protocol/core.py:26-181`)
//! minus deserialization. Opaque payloads are resolved to [`Opaque`] on decode and written
//! back as sub-header + payload frames on encode.

use crate::error::ProtocolError;
use crate::value::{Key, Opaque, OpaqueKind, Value};
use bytes::{Buf, Bytes};
use rmp::Marker;

/// Deeper nesting than this is not something Dask sends; refusing it keeps the recursive
/// decoder's stack bounded on hostile input.
pub const MAX_DEPTH: usize = 128;

/// Decodes one message (frame 0 plus any payload frames) into a [`Value`].
pub fn decode_message(frames: &[Bytes]) -> Result<Value, ProtocolError> {
    let first = frames.first().ok_or(ProtocolError::NoFrames)?;
    let mut dec = Decoder {
        buf: first.clone(),
        frames: Some(frames),
    };
    let v = dec.value(0)?;
    if dec.buf.has_remaining() {
        return Err(ProtocolError::TrailingBytes(dec.buf.remaining()));
    }
    Ok(v)
}

/// Decodes a single msgpack value with no payload frames (sub-headers, helper replies).
pub fn decode_value(bytes: Bytes) -> Result<Value, ProtocolError> {
    let mut dec = Decoder {
        buf: bytes,
        frames: None,
    };
    let v = dec.value(0)?;
    if dec.buf.has_remaining() {
        return Err(ProtocolError::TrailingBytes(dec.buf.remaining()));
    }
    Ok(v)
}

/// A pull reader over one message, for the message worth reading without a [`Value`] tree:
/// a worker's `task-finished`, one per task, whose tree cost more to build and drop than
/// the scheduler's work on the task. The typed reads take the next value only if it has
/// that type (and leave it otherwise); [`Self::value`] decodes it as [`decode_message`]
/// would, and [`Self::skip`] passes over it with the same errors for bad input.
#[derive(Clone)]
pub struct MessageReader<'a> {
    dec: Decoder<'a>,
}

impl<'a> MessageReader<'a> {
    /// A reader at the start of the message in `frames`.
    pub fn new(frames: &'a [Bytes]) -> Result<Self, ProtocolError> {
        let first = frames.first().ok_or(ProtocolError::NoFrames)?;
        Ok(MessageReader {
            dec: Decoder {
                buf: first.clone(),
                frames: Some(frames),
            },
        })
    }

    /// Whether the message has more than one frame (payloads that values may refer to).
    pub fn has_payloads(&self) -> bool {
        self.dec.frames.is_some_and(|f| f.len() > 1)
    }

    /// The bytes not read yet; with [`Self::since`], the bytes of what was read in between.
    pub fn mark(&self) -> Bytes {
        self.dec.buf.clone()
    }

    /// The bytes read since `mark` was taken.
    pub fn since(&self, mark: &Bytes) -> Bytes {
        mark.slice(..mark.len() - self.dec.buf.len())
    }

    /// Fails if anything is left after the message's one value.
    pub fn finish(&self) -> Result<(), ProtocolError> {
        match self.dec.buf.remaining() {
            0 => Ok(()),
            n => Err(ProtocolError::TrailingBytes(n)),
        }
    }

    fn peek(&self) -> Result<Marker, ProtocolError> {
        self.dec.need(1)?;
        Ok(Marker::from_u8(self.dec.buf[0]))
    }

    /// The length a list, dict or str header announces, if the next value is of `kind`
    /// (its header is then taken).
    fn header(&mut self, kind: Kind) -> Result<Option<usize>, ProtocolError> {
        use Marker as M;
        let n = match (kind, self.peek()?) {
            (Kind::Array, M::FixArray(n))
            | (Kind::Map, M::FixMap(n))
            | (Kind::Str, M::FixStr(n)) => {
                self.dec.buf.advance(1);
                n as usize
            }
            (Kind::Str, M::Str8) => {
                self.dec.buf.advance(1);
                self.dec.len8()?
            }
            (Kind::Array, M::Array16) | (Kind::Map, M::Map16) | (Kind::Str, M::Str16) => {
                self.dec.buf.advance(1);
                self.dec.len16()?
            }
            (Kind::Array, M::Array32) | (Kind::Map, M::Map32) | (Kind::Str, M::Str32) => {
                self.dec.buf.advance(1);
                self.dec.len32()?
            }
            _ => return Ok(None),
        };
        Ok(Some(n))
    }

    /// The length of the list that comes next, its items to be read in turn.
    pub fn array_len(&mut self) -> Result<Option<usize>, ProtocolError> {
        let n = self.header(Kind::Array)?;
        // every item takes a byte at least: a longer list is a lie (as in the decoder)
        self.dec.need(n.unwrap_or(0))?;
        Ok(n)
    }

    /// The number of entries of the dict that comes next, each a key and a value.
    pub fn map_len(&mut self) -> Result<Option<usize>, ProtocolError> {
        let n = self.header(Kind::Map)?;
        self.dec.need(n.unwrap_or(0).saturating_mul(2))?;
        Ok(n)
    }

    /// The `str` that comes next, as its UTF-8 bytes (checked, as the decoder checks them).
    pub fn str_bytes(&mut self) -> Result<Option<Bytes>, ProtocolError> {
        let Some(n) = self.header(Kind::Str)? else {
            return Ok(None);
        };
        let b = self.dec.take(n)?;
        std::str::from_utf8(&b).map_err(|_| ProtocolError::InvalidUtf8)?;
        Ok(Some(b))
    }

    /// The `str` that comes next.
    pub fn str(&mut self) -> Result<Option<std::sync::Arc<str>>, ProtocolError> {
        Ok(self.str_bytes()?.map(|b| {
            // checked by `str_bytes`
            crate::value::intern(std::str::from_utf8(&b).unwrap_or_default())
        }))
    }

    /// Whether the next value is an int.
    fn int_next(&self) -> Result<bool, ProtocolError> {
        use Marker as M;
        Ok(matches!(
            self.peek()?,
            M::FixPos(_)
                | M::FixNeg(_)
                | M::U8
                | M::U16
                | M::U32
                | M::U64
                | M::I8
                | M::I16
                | M::I32
                | M::I64
        ))
    }

    /// The number that comes next (an int or a float), as [`Value::as_f64`] reads it.
    pub fn f64(&mut self) -> Result<Option<f64>, ProtocolError> {
        if self.int_next()? || matches!(self.peek()?, Marker::F32 | Marker::F64) {
            return Ok(self.value()?.as_f64());
        }
        Ok(None)
    }

    /// The int that comes next, if it fits in `i64`, as [`Value::as_i64`] reads it.
    pub fn i64(&mut self) -> Result<Option<i64>, ProtocolError> {
        if !self.int_next()? {
            return Ok(None);
        }
        let mark = self.clone();
        let v = self.value()?.as_i64();
        if v.is_none() {
            *self = mark; // an int beyond i64 stays for the caller to read
        }
        Ok(v)
    }

    /// The task key that comes next, as [`Key::from_value`] reads its value; a value that
    /// is not a key stays.
    pub fn key(&mut self) -> Result<Option<Key>, ProtocolError> {
        let mark = self.clone();
        let key = self.key_at(1)?;
        if key.is_none() {
            *self = mark;
        }
        Ok(key)
    }

    fn key_at(&mut self, depth: usize) -> Result<Option<Key>, ProtocolError> {
        if depth > MAX_DEPTH {
            return Err(ProtocolError::TooDeep(MAX_DEPTH));
        }
        match self.peek()? {
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
                let n = self.array_len()?.unwrap_or(0);
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    match self.key_at(depth + 1)? {
                        Some(k) => items.push(k),
                        None => return Ok(None),
                    }
                }
                Ok(Some(Key::Tuple(items.into())))
            }
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => {
                Ok(self.str()?.map(Key::Str))
            }
            // scalars and bytes (nothing to build), and dicts, which may be references
            _ => Ok(Key::from_value(&self.dec.value(depth)?)),
        }
    }

    /// The value that comes next, decoded as [`decode_message`] decodes it.
    pub fn value(&mut self) -> Result<Value, ProtocolError> {
        self.dec.value(1)
    }

    /// Passes over the value that comes next. Small dicts, which may be payload references
    /// (`{"__Serialized__": i}`, `{"__Set__": ..., "as-list": ...}`), are decoded so that a
    /// bad one fails here as it would in [`decode_message`].
    pub fn skip(&mut self) -> Result<(), ProtocolError> {
        self.skip_at(1)
    }

    fn skip_at(&mut self, depth: usize) -> Result<(), ProtocolError> {
        if depth > MAX_DEPTH {
            return Err(ProtocolError::TooDeep(MAX_DEPTH));
        }
        let n = match self.peek()? {
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
                let n = self.array_len()?.unwrap_or(0);
                for _ in 0..n {
                    self.skip_at(depth + 1)?;
                }
                return Ok(());
            }
            Marker::FixMap(n) if n > 2 => self.map_len()?.unwrap_or(0) * 2,
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => {
                self.str_bytes()?;
                return Ok(());
            }
            // scalars and bytes (decoding them allocates nothing), and the dicts that may be
            // references or are too long to be common
            _ => return self.dec.value(depth).map(drop),
        };
        for _ in 0..n {
            self.skip_at(depth + 1)?;
        }
        Ok(())
    }
}

/// The kinds of header [`MessageReader`] reads lengths from.
#[derive(Clone, Copy)]
enum Kind {
    Array,
    Map,
    Str,
}

#[derive(Clone)]
struct Decoder<'a> {
    buf: Bytes,
    /// All frames of the message, to resolve payload references; `None` inside sub-headers.
    frames: Option<&'a [Bytes]>,
}

impl Decoder<'_> {
    fn need(&self, n: usize) -> Result<(), ProtocolError> {
        if self.buf.remaining() < n {
            Err(ProtocolError::Truncated)
        } else {
            Ok(())
        }
    }

    fn take(&mut self, n: usize) -> Result<Bytes, ProtocolError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }

    fn len8(&mut self) -> Result<usize, ProtocolError> {
        self.need(1)?;
        Ok(self.buf.get_u8() as usize)
    }
    fn len16(&mut self) -> Result<usize, ProtocolError> {
        self.need(2)?;
        Ok(self.buf.get_u16() as usize)
    }
    fn len32(&mut self) -> Result<usize, ProtocolError> {
        self.need(4)?;
        Ok(self.buf.get_u32() as usize)
    }

    fn str(&mut self, n: usize) -> Result<Value, ProtocolError> {
        self.need(n)?;
        let s = std::str::from_utf8(&self.buf[..n]).map_err(|_| ProtocolError::InvalidUtf8)?;
        let v = Value::Str(crate::value::intern(s));
        self.buf.advance(n);
        Ok(v)
    }

    fn array(&mut self, n: usize, depth: usize) -> Result<Value, ProtocolError> {
        // Every element takes at least one byte: a count beyond the remaining bytes is a lie,
        // and checking it first keeps `with_capacity` from trusting the peer.
        self.need(n)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, n: usize, depth: usize) -> Result<Value, ProtocolError> {
        self.need(n.saturating_mul(2))?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            entries.push((k, v));
        }
        if let Some(frames) = self.frames {
            return resolve_special(entries, frames);
        }
        Ok(Value::Map(entries))
    }

    fn value(&mut self, depth: usize) -> Result<Value, ProtocolError> {
        if depth > MAX_DEPTH {
            return Err(ProtocolError::TooDeep(MAX_DEPTH));
        }
        self.need(1)?;
        let marker = Marker::from_u8(self.buf.get_u8());
        Ok(match marker {
            Marker::Null => Value::Nil,
            Marker::True => Value::Bool(true),
            Marker::False => Value::Bool(false),
            Marker::FixPos(n) => Value::Int(n as i64),
            Marker::FixNeg(n) => Value::Int(n as i64),
            Marker::U8 => Value::Int(self.len8()? as i64),
            Marker::U16 => Value::Int(self.len16()? as i64),
            Marker::U32 => Value::Int(self.len32()? as i64),
            Marker::U64 => {
                self.need(8)?;
                Value::from(self.buf.get_u64())
            }
            Marker::I8 => {
                self.need(1)?;
                Value::Int(self.buf.get_i8() as i64)
            }
            Marker::I16 => {
                self.need(2)?;
                Value::Int(self.buf.get_i16() as i64)
            }
            Marker::I32 => {
                self.need(4)?;
                Value::Int(self.buf.get_i32() as i64)
            }
            Marker::I64 => {
                self.need(8)?;
                Value::Int(self.buf.get_i64())
            }
            Marker::F32 => {
                self.need(4)?;
                Value::Float(self.buf.get_f32() as f64)
            }
            Marker::F64 => {
                self.need(8)?;
                Value::Float(self.buf.get_f64())
            }
            Marker::FixStr(n) => self.str(n as usize)?,
            Marker::Str8 => {
                let n = self.len8()?;
                self.str(n)?
            }
            Marker::Str16 => {
                let n = self.len16()?;
                self.str(n)?
            }
            Marker::Str32 => {
                let n = self.len32()?;
                self.str(n)?
            }
            Marker::Bin8 => {
                let n = self.len8()?;
                Value::Bin(self.take(n)?)
            }
            Marker::Bin16 => {
                let n = self.len16()?;
                Value::Bin(self.take(n)?)
            }
            Marker::Bin32 => {
                let n = self.len32()?;
                Value::Bin(self.take(n)?)
            }
            Marker::FixArray(n) => self.array(n as usize, depth)?,
            Marker::Array16 => {
                let n = self.len16()?;
                self.array(n, depth)?
            }
            Marker::Array32 => {
                let n = self.len32()?;
                self.array(n, depth)?
            }
            Marker::FixMap(n) => self.map(n as usize, depth)?,
            Marker::Map16 => {
                let n = self.len16()?;
                self.map(n, depth)?
            }
            Marker::Map32 => {
                let n = self.len32()?;
                self.map(n, depth)?
            }
            Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16
            | Marker::Ext8
            | Marker::Ext16
            | Marker::Ext32 => {
                return Err(ProtocolError::InvalidMsgpack(
                    "ext types are not used by Dask",
                ))
            }
            Marker::Reserved => return Err(ProtocolError::InvalidMsgpack("reserved marker 0xc1")),
        })
    }
}

/// Turns `{"__Serialized__": i}`, `{"__Pickled__": i}` and `{"__Set__": …, "as-list": …}` maps
/// into their values (`_decode_default`, `protocol/core.py:140-181`).
fn resolve_special(entries: Vec<(Value, Value)>, frames: &[Bytes]) -> Result<Value, ProtocolError> {
    if entries.len() == 1 {
        let kind = match entries[0].0.as_str() {
            Some("__Serialized__") => Some(OpaqueKind::Serialized),
            Some("__Pickled__") => Some(OpaqueKind::Pickled),
            _ => None,
        };
        if let Some(kind) = kind {
            let idx =
                entries[0].1.as_i64().filter(|i| *i > 0).ok_or_else(|| {
                    ProtocolError::BadPayloadRef("index is not a positive int".into())
                })? as usize;
            let sub = frames.get(idx).ok_or_else(|| {
                ProtocolError::BadPayloadRef(format!("frame {idx} does not exist"))
            })?;
            let header = match decode_value(sub.clone())? {
                Value::Map(h) => h,
                other => {
                    return Err(ProtocolError::BadPayloadRef(format!(
                        "sub-header is a {}, not a dict",
                        other.type_name()
                    )))
                }
            };
            let n = header
                .iter()
                .find(|(k, _)| k.as_str() == Some("num-sub-frames"))
                .and_then(|(_, v)| v.as_i64())
                .ok_or_else(|| {
                    ProtocolError::BadPayloadRef("sub-header lacks num-sub-frames".into())
                })?;
            let n = usize::try_from(n)
                .map_err(|_| ProtocolError::BadPayloadRef("negative num-sub-frames".into()))?;
            let end = idx
                .checked_add(1)
                .and_then(|s| s.checked_add(n))
                .filter(|e| *e <= frames.len())
                .ok_or_else(|| {
                    ProtocolError::BadPayloadRef("payload frames out of range".into())
                })?;
            let header = header
                .into_iter()
                .filter(|(k, _)| k.as_str() != Some("num-sub-frames"))
                .collect();
            return Ok(Value::Opaque(Opaque {
                kind,
                header,
                frames: frames[idx + 1..end].to_vec(),
            }));
        }
    }
    if entries.iter().any(|(k, _)| k.as_str() == Some("__Set__")) {
        return match entries
            .into_iter()
            .find(|(k, _)| k.as_str() == Some("as-list"))
        {
            Some((_, Value::Array(items))) => Ok(Value::Array(items)),
            _ => Err(ProtocolError::InvalidMsgpack(
                "__Set__ marker without an as-list array",
            )),
        };
    }
    Ok(Value::Map(entries))
}

/// Encodes a message: frame 0 is the msgpack of `msg`, every [`Opaque`] inside it becomes a
/// sub-header frame followed by its payload frames.
pub fn encode_message(msg: &Value) -> Vec<Bytes> {
    let mut enc = MessageEncoder::new();
    enc.value(msg);
    enc.finish()
}

/// Encodes a plain value (no payload frames allowed: opaque values become `None`).
pub fn encode_value(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let mut sink = Vec::new();
    write_value(&mut out, v, &mut sink);
    out
}

/// One message written piece by piece, for a sender that writes its own types straight to
/// msgpack rather than building a [`Value`] first (the scheduler's `compute-task`s: a `Value`
/// tree per task, built and dropped, was a large part of the cost of sending them). The
/// pieces must make one msgpack object; [`Self::finish`] gives the frames
/// [`encode_message`] would give for the same object.
pub struct MessageEncoder {
    first: Vec<u8>,
    frames: Vec<Bytes>,
}

impl Default for MessageEncoder {
    fn default() -> Self {
        Self::new()
    }
}

// Writes into a Vec<u8> cannot fail, so the results of rmp's writers are ignored here.
impl MessageEncoder {
    /// An empty message.
    pub fn new() -> Self {
        MessageEncoder {
            first: Vec::with_capacity(256),
            frames: vec![Bytes::new()],
        }
    }

    /// A whole value (its opaque payloads become frames of their own).
    pub fn value(&mut self, v: &Value) {
        write_value(&mut self.first, v, &mut self.frames);
    }

    /// The header of a list of `len` items, which follow.
    pub fn array_len(&mut self, len: usize) {
        let _ = rmp::encode::write_array_len(&mut self.first, len as u32);
    }

    /// The header of a dict of `len` entries, whose keys and values follow in turn.
    pub fn map_len(&mut self, len: usize) {
        let _ = rmp::encode::write_map_len(&mut self.first, len as u32);
    }

    /// A `str`.
    pub fn str(&mut self, s: &str) {
        let _ = rmp::encode::write_str(&mut self.first, s);
    }

    /// An `int`.
    pub fn int(&mut self, i: i64) {
        let _ = rmp::encode::write_sint(&mut self.first, i);
    }

    /// A `float`.
    pub fn float(&mut self, f: f64) {
        let _ = rmp::encode::write_f64(&mut self.first, f);
    }

    /// A `bool`.
    pub fn bool(&mut self, b: bool) {
        let _ = rmp::encode::write_bool(&mut self.first, b);
    }

    /// `None`.
    pub fn nil(&mut self) {
        let _ = rmp::encode::write_nil(&mut self.first);
    }

    /// A key, as [`Key::to_value`] would write it.
    pub fn key(&mut self, k: &Key) {
        use rmp::encode as e;
        let out = &mut self.first;
        match k {
            Key::Str(s) => {
                let _ = e::write_str(out, s);
            }
            Key::Bytes(b) => {
                let _ = e::write_bin(out, b);
            }
            Key::Int(i) => {
                let _ = e::write_sint(out, *i);
            }
            Key::Float(bits) => {
                let _ = e::write_f64(out, f64::from_bits(*bits));
            }
            Key::Tuple(items) => {
                let _ = e::write_array_len(out, items.len() as u32);
                for it in items.iter() {
                    self.key(it);
                }
            }
        }
    }

    /// `Value::Opaque(Opaque::pickled(pickle))` without building it: the `__Pickled__`
    /// reference here and its sub-header frame.
    pub fn pickled(&mut self, pickle: &Bytes) {
        use rmp::encode as e;
        let mut header = Vec::with_capacity(pickle.len() + 48);
        let _ = e::write_map_len(&mut header, 3);
        let _ = e::write_str(&mut header, "pickled-obj");
        let _ = e::write_bin(&mut header, pickle);
        let _ = e::write_str(&mut header, "compression");
        let _ = e::write_array_len(&mut header, 0);
        let _ = e::write_str(&mut header, "num-sub-frames");
        let _ = e::write_uint(&mut header, 0);
        let idx = self.frames.len();
        self.frames.push(Bytes::from(header));
        let _ = e::write_map_len(&mut self.first, 1);
        let _ = e::write_str(&mut self.first, OpaqueKind::Pickled.marker());
        let _ = e::write_uint(&mut self.first, idx as u64);
    }

    /// The message's frames: the msgpack frame, then each payload's sub-header and frames.
    pub fn finish(mut self) -> Vec<Bytes> {
        self.frames[0] = Bytes::from(self.first);
        self.frames
    }
}

// Writes into a Vec<u8> cannot fail, so the results of rmp's writers are infallible here.
fn write_value(out: &mut Vec<u8>, v: &Value, frames: &mut Vec<Bytes>) {
    use rmp::encode as e;
    match v {
        Value::Nil => e::write_nil(out).unwrap_or(()),
        Value::Bool(b) => e::write_bool(out, *b).unwrap_or(()),
        Value::Int(i) => {
            let _ = e::write_sint(out, *i);
        }
        Value::UInt(u) => {
            let _ = e::write_uint(out, *u);
        }
        Value::Float(f) => {
            let _ = e::write_f64(out, *f);
        }
        Value::Str(s) => {
            let _ = e::write_str(out, s);
        }
        Value::Bin(b) => {
            let _ = e::write_bin(out, b);
        }
        Value::Array(items) => {
            let _ = e::write_array_len(out, items.len() as u32);
            for it in items {
                write_value(out, it, frames);
            }
        }
        Value::Map(entries) => {
            let _ = e::write_map_len(out, entries.len() as u32);
            for (k, v) in entries {
                write_value(out, k, frames);
                write_value(out, v, frames);
            }
        }
        Value::Opaque(o) => {
            if frames.is_empty() {
                // A sub-header cannot itself carry payload frames.
                let _ = e::write_nil(out);
                return;
            }
            let idx = frames.len();
            let mut header = o.header.clone();
            header.push((Value::from("num-sub-frames"), Value::from(o.frames.len())));
            let mut hbuf = Vec::with_capacity(64);
            let mut no_frames = Vec::new();
            write_value(&mut hbuf, &Value::Map(header), &mut no_frames);
            frames.push(Bytes::from(hbuf));
            frames.extend(o.frames.iter().cloned());
            let _ = e::write_map_len(out, 1);
            let _ = e::write_str(out, o.kind.marker());
            let _ = e::write_uint(out, idx as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_round_trip() {
        let o = Opaque {
            kind: OpaqueKind::Serialized,
            header: vec![(Value::from("serializer"), Value::from("pickle"))],
            frames: vec![Bytes::from_static(b"abc"), Bytes::from_static(b"de")],
        };
        let msg = Value::map([
            ("op", Value::from("x")),
            (
                "data",
                Value::Map(vec![(Value::from("k"), Value::Opaque(o.clone()))]),
            ),
            (
                "run_spec",
                Value::Opaque(Opaque::pickled(Bytes::from_static(b"\x80\x05."))),
            ),
        ]);
        let frames = encode_message(&msg);
        assert_eq!(frames.len(), 5);
        assert_eq!(decode_message(&frames).ok(), Some(msg));
    }

    #[test]
    fn pieces_make_the_frames_of_the_same_value() {
        let key =
            Key::Tuple(vec![Key::str("x"), Key::Int(-3), Key::Float(2.5f64.to_bits())].into());
        let pickle = Bytes::from_static(b"\x80\x05K\x01.");
        let value = Value::Array(vec![Value::map([
            ("key", key.to_value()),
            ("run_spec", Value::Opaque(Opaque::pickled(pickle.clone()))),
            ("n", Value::Int(7)),
            ("f", Value::Float(0.5)),
            ("yes", Value::Bool(true)),
            ("none", Value::Nil),
            ("more", Value::Array(vec![Value::from("a")])),
        ])]);
        let mut enc = MessageEncoder::new();
        enc.array_len(1);
        enc.map_len(7);
        enc.str("key");
        enc.key(&key);
        enc.str("run_spec");
        enc.pickled(&pickle);
        enc.str("n");
        enc.int(7);
        enc.str("f");
        enc.float(0.5);
        enc.str("yes");
        enc.bool(true);
        enc.str("none");
        enc.nil();
        enc.str("more");
        enc.value(&Value::Array(vec![Value::from("a")]));
        assert_eq!(enc.finish(), encode_message(&value));
    }

    /// Read piece by piece, a batch gives what decoding it gives; skipping fails where
    /// decoding fails.
    #[test]
    fn reader_reads_what_the_decoder_decodes() {
        let first = Value::map([
            ("op", Value::from("x")),
            ("n", Value::Int(-5)),
            ("f", Value::Float(0.5)),
            ("big", Value::UInt(u64::MAX)),
            (
                "m",
                Value::map([
                    ("a", Value::Int(1)),
                    ("b", Value::Nil),
                    ("c", Value::from("s")),
                ]),
            ),
            (
                "data",
                Value::Opaque(Opaque::pickled(Bytes::from_static(b"\x80\x05N."))),
            ),
        ]);
        let second = Value::map([("op", Value::from("y"))]);
        let frames = encode_message(&Value::Array(vec![first.clone(), second.clone()]));
        let mut r = MessageReader::new(&frames).unwrap();
        assert!(r.has_payloads());
        assert_eq!(r.map_len().unwrap(), None, "a list comes first, and stays");
        assert_eq!(r.array_len().unwrap(), Some(2));
        let mark = r.mark();
        assert_eq!(r.map_len().unwrap(), Some(6));
        assert_eq!(r.str_bytes().unwrap().as_deref(), Some(&b"op"[..]));
        assert_eq!(r.i64().unwrap(), None, "a str is not an int, and stays");
        assert_eq!(r.str().unwrap().as_deref(), Some("x"));
        r.skip().unwrap();
        assert_eq!(r.i64().unwrap(), Some(-5));
        r.skip().unwrap();
        assert_eq!(r.f64().unwrap(), Some(0.5));
        r.skip().unwrap();
        assert_eq!(r.i64().unwrap(), None, "beyond i64, and stays");
        assert_eq!(r.value().unwrap(), Value::UInt(u64::MAX));
        r.skip().unwrap();
        r.skip().unwrap();
        r.skip().unwrap();
        assert_eq!(r.value().unwrap(), first.get("data").cloned().unwrap());
        // the bytes of the first message, decoded alone (its payload is in its own frame)
        let one = r.since(&mark);
        assert_eq!(decode_value(one).unwrap().get("n"), Some(&Value::Int(-5)));
        r.skip().unwrap();
        r.finish().unwrap();

        // keys as `Key::from_value` reads them; a value that is not one stays
        let key = Key::Tuple(vec![Key::str("x"), Key::Int(-1), Key::Tuple(vec![].into())].into());
        let not_key = Value::Array(vec![Value::Int(1), Value::Nil]);
        let frames = [Bytes::from(encode_value(&Value::Array(vec![
            key.to_value(),
            not_key.clone(),
        ])))];
        let mut r = MessageReader::new(&frames).unwrap();
        assert_eq!(r.array_len().unwrap(), Some(2));
        assert_eq!(r.key().unwrap(), Some(key));
        assert_eq!(r.key().unwrap(), None);
        assert_eq!(r.value().unwrap(), not_key);
        r.finish().unwrap();

        // a reference to a frame that is not there fails skipped as it fails decoded
        let bad = Value::Array(vec![Value::map([("__Serialized__", Value::Int(3))])]);
        let frames = [Bytes::from(encode_value(&bad))];
        assert!(decode_message(&frames).is_err());
        let mut r = MessageReader::new(&frames).unwrap();
        assert_eq!(r.array_len().unwrap(), Some(1));
        assert!(matches!(r.skip(), Err(ProtocolError::BadPayloadRef(_))));
    }

    #[test]
    fn hostile_lengths_do_not_allocate() {
        // array32 claiming 2^32-1 elements with 0 bytes behind it
        let frames = [Bytes::from_static(b"\xdd\xff\xff\xff\xff")];
        assert!(matches!(
            decode_message(&frames),
            Err(ProtocolError::Truncated)
        ));
        let frames = [Bytes::from_static(b"\xdf\xff\xff\xff\xff")];
        assert!(matches!(
            decode_message(&frames),
            Err(ProtocolError::Truncated)
        ));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let frames = [Bytes::from(vec![0x91u8; 10_000])];
        assert!(matches!(
            decode_message(&frames),
            Err(ProtocolError::TooDeep(_))
        ));
    }

    #[test]
    fn bad_payload_ref_is_an_error() {
        let msg = Value::map([("__Serialized__", Value::Int(7))]);
        let frames = [Bytes::from(encode_value(&msg))];
        assert!(matches!(
            decode_message(&frames),
            Err(ProtocolError::BadPayloadRef(_))
        ));
    }
}
