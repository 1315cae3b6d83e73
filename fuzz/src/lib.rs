//! What the fuzz targets share: the oracles (what must hold for any input besides "no
//! panic") and the input formats, so `examples/seeds.rs` writes seeds the targets read.
//!
//! Inputs are plain bytes with a few leading control bytes rather than `arbitrary`
//! structures, so that real captured messages (`crates/protocol/tests/data`) make good seeds
//! and a crash file is readable in a hex dump.

use bytes::{Bytes, BytesMut};
use rask_protocol::msgpack::{decode_value, encode_value};
use rask_protocol::{decode_message, encode_message, FrameCodec, Frames, Value};
use tokio_util::codec::{Decoder, Encoder};

#[allow(unsafe_code)]
mod alloc;
pub mod helper;

pub use alloc::MAX_ALLOC;

/// Largest buffer capacity tolerated after feeding the codec `fed` bytes: what arrived with
/// room for amortized growth, plus 1 MiB. Nothing proportional to what a header merely
/// announces (the same bound as `crates/protocol/tests/hostile.rs`).
pub fn capacity_bound(fed: usize) -> usize {
    2 * fed + (1 << 20)
}

/// `frame_decode` input: `[limits][chunking] stream…`.
///
/// * `limits` with the high bit set: the server's default codec (16 GiB, 2^20 frames), where
///   only the buffer-capacity oracle stops a hostile header; otherwise
///   `max_frames = 1 + (limits & 7)` and `max_message_bytes = 64 << ((limits >> 3) & 15)`
///   (64 B to 2 MiB), small enough that the limit checks themselves are exercised.
/// * `chunking` 0: the whole stream in one read; otherwise the reads the socket delivers
///   have sizes `1 + (chunking * (i + 1)) % 61`, i.e. a message is split at many places.
pub struct FrameInput<'a> {
    pub codec: FrameCodec,
    pub max_message_bytes: u64,
    pub max_frames: u64,
    pub chunking: u8,
    pub stream: &'a [u8],
}

impl<'a> FrameInput<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let (&limits, rest) = data.split_first()?;
        let (&chunking, stream) = rest.split_first()?;
        let codec = if limits & 0x80 != 0 {
            FrameCodec::default()
        } else {
            FrameCodec::with_limits(64 << ((limits >> 3) & 15), 1 + u64::from(limits & 7))
        };
        Some(FrameInput {
            max_message_bytes: codec.max_message_bytes,
            max_frames: codec.max_frames,
            codec,
            chunking,
            stream,
        })
    }

    /// The sizes of successive socket reads.
    pub fn chunks(&self) -> impl Iterator<Item = &'a [u8]> {
        let step = self.chunking as usize;
        let mut rest = self.stream;
        let mut i = 0usize;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let n = if step == 0 {
                rest.len()
            } else {
                1 + (step * (i + 1)) % 61
            };
            i += 1;
            let (head, tail) = rest.split_at(n.min(rest.len()));
            rest = tail;
            Some(head)
        })
    }
}

/// Feeds `input` to its codec read by read, as `FramedRead` does, and checks every message
/// that comes out. Returns the messages decoded.
pub fn drive_frames(mut input: FrameInput<'_>) -> usize {
    let mut src = BytesMut::new();
    let mut fed = 0usize;
    let mut messages = 0usize;
    let chunks: Vec<&[u8]> = input.chunks().collect();
    for chunk in chunks {
        src.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            match input.codec.decode(&mut src) {
                Ok(Some(frames)) => {
                    check_frames(&input, &frames);
                    messages += 1;
                }
                Ok(None) => break,
                // the connection is closed on the first error; nothing more is read
                Err(_) => return messages,
            }
            check_capacity(&src, fed);
        }
        check_capacity(&src, fed);
    }
    if let Ok(Some(frames)) = input.codec.decode_eof(&mut src) {
        check_frames(&input, &frames);
        messages += 1;
    }
    messages
}

fn check_capacity(src: &BytesMut, fed: usize) {
    assert!(
        src.capacity() <= capacity_bound(fed),
        "buffer capacity {} after {fed} bytes arrived: reserved from a header",
        src.capacity()
    );
}

/// A message the codec let through respects its limits, frames round-trip through the
/// encoder, and frame 0 decodes (or fails) without panicking.
fn check_frames(input: &FrameInput<'_>, frames: &Frames) {
    assert!(!frames.is_empty(), "a message with no frames came out");
    assert!(
        frames.len() as u64 <= input.max_frames,
        "frame limit ignored"
    );
    let total: u64 = frames.iter().map(|f| f.len() as u64).sum();
    assert!(total <= input.max_message_bytes, "size limit ignored");

    let mut codec = FrameCodec::with_limits(input.max_message_bytes, input.max_frames);
    let mut wire = BytesMut::new();
    codec
        .encode(frames.clone(), &mut wire)
        .unwrap_or_else(|e| panic!("encoding decoded frames failed: {e}"));
    let again = codec
        .decode(&mut wire)
        .unwrap_or_else(|e| panic!("re-decoding encoded frames failed: {e}"));
    assert_eq!(again.as_ref(), Some(frames), "frames do not round-trip");
    assert!(wire.is_empty(), "encoder wrote more than one message");

    check_message(frames);
}

/// `message_decode` input: `[k] len_1 … len_k (u16 LE each) frame0 frame1 … frame_k`:
/// `k = first & 7` payload frames with the given lengths at the end, frame 0 is what lies
/// before them. Lengths past the end are cut to what is there.
pub fn split_message(data: &[u8]) -> Option<Vec<Bytes>> {
    let (&first, rest) = data.split_first()?;
    let k = usize::from(first & 7);
    let header = rest.get(..2 * k)?;
    let mut body = &rest[2 * k..];
    let lens: Vec<usize> = header
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])))
        .collect();
    // cut payload frames from the end, last one first
    let mut tail = Vec::with_capacity(k);
    for len in lens.iter().rev() {
        let at = body.len() - (*len).min(body.len());
        tail.push(Bytes::copy_from_slice(&body[at..]));
        body = &body[..at];
    }
    let mut frames = vec![Bytes::copy_from_slice(body)];
    frames.extend(tail.into_iter().rev());
    Some(frames)
}

/// The inverse of [`split_message`], for seeds (payload frames of at most 65,535 bytes).
pub fn join_message(frames: &[Bytes]) -> Option<Vec<u8>> {
    let (first, payload) = frames.split_first()?;
    if payload.len() > 7 {
        return None;
    }
    let mut out = vec![payload.len() as u8];
    for f in payload {
        out.extend_from_slice(&u16::try_from(f.len()).ok()?.to_le_bytes());
    }
    out.extend_from_slice(first);
    for f in payload {
        out.extend_from_slice(f);
    }
    Some(out)
}

/// Decodes a message as the server does; whatever decodes must survive a round trip.
pub fn check_message(frames: &[Bytes]) {
    if let Ok(v) = decode_message(frames) {
        assert_reencode_is_stable(&v);
    }
}

/// Whatever decoded must encode, decode again, and then encode to the same bytes. Values are
/// compared through their encoding so a NaN from mutated float bytes compares equal.
/// (Not `decode → encode == input`: `{"__Set__"}` markers, str8-for-fixstr and f32 are
/// legal on the wire but never written by rask.)
pub fn assert_reencode_is_stable(v: &Value) {
    let once = encode_message(v);
    let back = decode_message(&once)
        .unwrap_or_else(|e| panic!("rask's own encoding of {v:?} does not decode: {e}"));
    assert_eq!(encode_message(&back), once, "re-encoding is not stable");
}

/// A single value (a sub-header, a helper reply): decode, and round-trip what decodes.
pub fn check_value(bytes: &[u8]) {
    if let Ok(v) = decode_value(Bytes::copy_from_slice(bytes)) {
        let once = encode_value(&v);
        let back = decode_value(Bytes::from(once.clone()))
            .unwrap_or_else(|e| panic!("rask's own encoding of {v:?} does not decode: {e}"));
        assert_eq!(encode_value(&back), once, "re-encoding is not stable");
    }
}
