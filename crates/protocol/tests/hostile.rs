//! Hostile input: whatever bytes a peer sends, the codec and the message decoder return
//! `Ok(None)` or an error — never a panic — and never reserve memory a peer merely
//! announced. Real captures from `tests/data` are truncated and mutated; the PRNG is a fixed
//! splitmix64 so every failure reproduces.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::{frames, raw, Rng, ALL};
use rask_protocol::msgpack::{decode_value, encode_value, MAX_DEPTH};
use rask_protocol::{decode_message, encode_message, FrameCodec, ProtocolError, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};
use tokio_util::codec::Decoder;

/// Largest buffer capacity we accept after feeding the codec `fed` bytes: what arrived,
/// with room for amortized growth, plus 1 MiB — nothing proportional to what a header
/// merely announces.
fn capacity_bound(fed: usize) -> usize {
    2 * fed + (1 << 20)
}

fn prelude(nosplit: u64, lens: &[u64]) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_u64_le(nosplit);
    b.put_u64_le(lens.len() as u64);
    for l in lens {
        b.put_u64_le(*l);
    }
    b
}

/// Runs the codec over `bytes` until it needs more input or fails; decodes every message
/// it yields. Returns how many messages came out. Panics only through the assertions;
/// `slack` is extra buffer capacity tolerated on top of [`capacity_bound`].
fn drive(codec: &mut FrameCodec, bytes: &[u8], slack: usize) -> usize {
    let mut src = BytesMut::from(bytes);
    let mut n = 0;
    while let Ok(Some(fr)) = codec.decode(&mut src) {
        n += 1;
        if let Ok(v) = decode_message(&fr) {
            assert_reencode_is_stable(&v);
        }
    }
    assert!(
        src.capacity() <= capacity_bound(bytes.len()) + slack,
        "capacity {} after {} bytes",
        src.capacity(),
        bytes.len()
    );
    n
}

/// Whatever decoded must encode, decode again, and then encode to the same bytes (values
/// compare through their bytes so NaNs from mutated floats don't matter).
fn assert_reencode_is_stable(v: &Value) {
    let once = encode_message(v);
    let back = decode_message(&once).expect("rask's own encoding must decode");
    assert_eq!(encode_message(&back), once, "re-encoding is not stable");
}

fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| panic!("panicked on {what}"))
}

// ---------------------------------------------------------------------------------------
// the frame codec

#[test]
fn garbage_bytes_never_panic() {
    let mut rng = Rng(1);
    for i in 0..3000 {
        let len = rng.below(400);
        let mut bytes = rng.bytes(len);
        // most iterations get a plausible prelude so the garbage reaches msgpack decoding
        if i % 4 != 0 && len >= 40 {
            let nframes = 1 + rng.below(3) as u64;
            bytes[8..16].copy_from_slice(&nframes.to_le_bytes());
            let body = (len as u64 - 16 - 8 * nframes) / nframes;
            for f in 0..nframes as usize {
                let l = rng.next_u64() % (body + 1);
                bytes[16 + 8 * f..24 + 8 * f].copy_from_slice(&l.to_le_bytes());
            }
        }
        no_panic(&format!("garbage iteration {i}"), || {
            drive(&mut FrameCodec::default(), &bytes, 0);
            let _ = decode_message(&[Bytes::from(bytes.clone())]);
            let _ = decode_value(Bytes::from(bytes.clone()));
        });
    }
}

#[test]
fn zero_frames_is_an_error() {
    let mut src = prelude(8, &[]);
    assert!(matches!(
        FrameCodec::default().decode(&mut src),
        Err(ProtocolError::NoFrames)
    ));
}

#[test]
fn frame_of_2_pow_62_bytes_is_refused_without_allocating() {
    for lens in [&[1u64 << 62][..], &[8, 1 << 62], &[u64::MAX, u64::MAX]] {
        let mut src = prelude(u64::MAX, lens);
        let fed = src.len();
        let r = FrameCodec::default().decode(&mut src);
        assert!(
            matches!(r, Err(ProtocolError::MessageTooLarge { .. })),
            "{lens:?}: {r:?}"
        );
        assert!(src.capacity() <= capacity_bound(fed));
    }
}

#[test]
fn message_of_2_pow_62_frames_is_refused_without_allocating() {
    for n in [1u64 << 62, u64::MAX, (1 << 20) + 1] {
        let mut src = BytesMut::new();
        src.put_u64_le(0);
        src.put_u64_le(n);
        let r = FrameCodec::default().decode(&mut src);
        assert!(
            matches!(r, Err(ProtocolError::TooManyFrames { .. })),
            "{n}: {r:?}"
        );
        assert!(src.capacity() <= capacity_bound(16));
    }
}

/// FINDING: `FrameCodec::decode` reserves `min(announced body, 64 MiB)` as soon as a prelude
/// announces a body under `max_message_bytes` (16 GiB by default), before any of it has
/// arrived: 24 bytes from a peer pin 64 MiB per connection. The doc comment says the decoder
/// "never reserves memory from a header".
#[test]
fn announced_body_is_not_reserved_before_it_arrives() {
    let mut codec = FrameCodec::default();
    let mut src = prelude(0, &[(16 << 30) - 1]);
    let fed = src.len();
    assert!(matches!(codec.decode(&mut src), Ok(None)));
    assert!(
        src.capacity() <= capacity_bound(fed),
        "24 header bytes made the decoder reserve {} bytes",
        src.capacity()
    );
}

/// FINDING: same for the prelude: a 16-byte header announcing `max_frames` (2^20) frames
/// makes the decoder reserve 8 MiB for frame lengths that have not arrived.
#[test]
fn announced_prelude_is_not_reserved_before_it_arrives() {
    let mut codec = FrameCodec::default();
    let mut src = BytesMut::new();
    src.put_u64_le(0);
    src.put_u64_le(1 << 20);
    assert!(matches!(codec.decode(&mut src), Ok(None)));
    assert!(
        src.capacity() <= capacity_bound(16),
        "16 header bytes made the decoder reserve {} bytes",
        src.capacity()
    );
}

/// FINDING: the limits are the only thing between peer-controlled lengths and unchecked
/// arithmetic: with limits raised to `u64::MAX`, `16 + 8 * n` and the `usize` sum of frame
/// lengths overflow (panic in debug builds; in release, `Vec::with_capacity(2^62)` or an
/// out-of-bounds `split_to` panics).
#[test]
fn codec_without_limits_still_never_panics() {
    let cases: [(&str, BytesMut); 2] = [
        ("2^62 frames", {
            let mut b = BytesMut::new();
            b.put_u64_le(0);
            b.put_u64_le(1 << 62);
            b
        }),
        ("two frames of 2^63 bytes", prelude(0, &[1 << 63, 1 << 63])),
    ];
    for (what, mut src) in cases {
        let mut codec = FrameCodec::with_limits(u64::MAX, u64::MAX);
        let r = catch_unwind(AssertUnwindSafe(|| {
            codec.decode(&mut src).map(|f| f.is_some())
        }));
        assert!(r.is_ok(), "{what}: FrameCodec::decode panicked");
    }
}

#[test]
fn truncated_captures_wait_for_more_at_every_byte() {
    for name in ALL {
        let bytes = raw(name);
        for k in 0..bytes.len() {
            let mut codec = FrameCodec::default();
            let mut src = BytesMut::from(&bytes[..k]);
            let r = no_panic(&format!("{name} cut at {k}"), || codec.decode(&mut src));
            assert!(matches!(r, Ok(None)), "{name} cut at {k}: {r:?}");
            assert!(src.capacity() <= capacity_bound(bytes.len()));
            // the rest arrives: exactly the captured message comes out
            src.extend_from_slice(&bytes[k..]);
            let fr = codec.decode(&mut src).expect("valid").expect("complete");
            assert_eq!(fr, frames(name), "{name} resumed at {k}");
            assert!(src.is_empty());
        }
    }
}

/// FINDING: a stream that ends right after a complete prelude is reported as a clean EOF
/// (`decode_eof` → `Ok(None)`), because the prelude bytes were already consumed and the
/// buffer is empty; every other cut inside a message is an error. `FramedRead` then ends the
/// stream silently instead of reporting the truncated message.
#[test]
fn eof_inside_a_message_is_an_error() {
    for name in ALL {
        let bytes = raw(name);
        let mut clean_eofs = Vec::new();
        for k in 1..bytes.len() {
            let mut codec = FrameCodec::default();
            let mut src = BytesMut::from(&bytes[..k]);
            let _ = codec.decode(&mut src);
            match no_panic(&format!("{name} eof at {k}"), || codec.decode_eof(&mut src)) {
                Err(_) => {}
                Ok(None) => clean_eofs.push(k),
                Ok(Some(_)) => panic!("{name}: a message out of {k} of {} bytes", bytes.len()),
            }
        }
        assert!(
            clean_eofs.is_empty(),
            "{name}: EOF after {clean_eofs:?} bytes (of {}) is treated as a clean end of stream",
            bytes.len()
        );
    }
}

#[test]
fn random_byte_flips_of_captures_never_panic() {
    let mut rng = Rng(2);
    for name in ALL {
        let bytes = raw(name);
        for i in 0..300 {
            let mut m = bytes.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(m.len());
                m[at] ^= 1 + rng.below(255) as u8;
            }
            no_panic(&format!("{name} flip iteration {i}"), || {
                // Small limits, and their worth of slack: a flipped length byte can announce
                // up to the limit, which the codec reserves (see
                // announced_body_is_not_reserved_before_it_arrives). This test is about
                // parsing; memory has its own tests.
                drive(
                    &mut FrameCodec::with_limits(1 << 20, 1 << 10),
                    &m,
                    (1 << 20) + 8 * (1 << 10),
                );
            });
        }
    }
}

// ---------------------------------------------------------------------------------------
// the message decoder

#[test]
fn random_byte_flips_inside_frames_never_panic() {
    // Mutate frame 0 and sub-headers directly, so nearly every iteration reaches msgpack
    // and payload resolution (flips in the prelude mostly stop at the codec).
    let mut rng = Rng(3);
    for name in ALL {
        let fr = frames(name);
        for i in 0..500 {
            let mut fr2 = fr.clone();
            for _ in 0..1 + rng.below(3) {
                // frame 0 most of the time, otherwise any frame
                let f = if rng.below(3) > 0 {
                    0
                } else {
                    rng.below(fr.len())
                };
                if fr2[f].is_empty() {
                    continue;
                }
                let mut b = fr2[f].to_vec();
                let at = rng.below(b.len());
                b[at] ^= 1 + rng.below(255) as u8;
                fr2[f] = Bytes::from(b);
            }
            no_panic(&format!("{name} frame flip iteration {i}"), || {
                if let Ok(v) = decode_message(&fr2) {
                    assert_reencode_is_stable(&v);
                }
            });
        }
    }
}

#[test]
fn truncated_frame0_and_sub_headers_are_errors() {
    // msgpack is prefix-free: no strict prefix of a value is a value
    for name in ALL {
        let fr = frames(name);
        for k in 0..fr[0].len() {
            let mut cut = fr.clone();
            cut[0] = fr[0].slice(..k);
            let r = no_panic(&format!("{name} frame 0 cut at {k}"), || {
                decode_message(&cut)
            });
            assert!(r.is_err(), "{name}: frame 0 cut at {k} decoded");
        }
        // frames after frame 0 are all referenced; dropping any tail is an error
        for j in 1..fr.len() {
            let r = no_panic(&format!("{name} first {j} frames"), || {
                decode_message(&fr[..j])
            });
            assert!(
                matches!(r, Err(ProtocolError::BadPayloadRef(_))),
                "{name}: only {j} of {} frames: {r:?}",
                fr.len()
            );
        }
    }
    // a truncated sub-header
    let fr = frames("update_data_scatter");
    for k in 0..fr[1].len() {
        let mut cut = fr.clone();
        cut[1] = fr[1].slice(..k);
        assert!(
            decode_message(&cut).is_err(),
            "sub-header cut at {k} decoded"
        );
    }
}

#[test]
fn deep_nesting_is_refused_at_max_depth() {
    // `n` nested one-element arrays around a nil
    let nested = |n: usize, open: &[u8]| {
        let mut b: Vec<u8> = open.repeat(n);
        b.push(0xc0);
        Bytes::from(b)
    };
    for open in [
        &[0x91u8][..],
        &[0x81, 0x00],
        &[0x81, 0xc0],
        &[0xdc, 0x00, 0x01],
    ] {
        let ok = decode_message(&[nested(MAX_DEPTH, open)]);
        assert!(ok.is_ok(), "{open:02x?}: depth {MAX_DEPTH}: {ok:?}");
        let v = ok.expect("checked");
        assert_eq!(decode_message(&encode_message(&v)).ok(), Some(v));
        for n in [MAX_DEPTH + 1, 10_000, 1_000_000] {
            let r = no_panic(&format!("{open:02x?} x {n}"), || {
                decode_message(&[nested(n, open)])
            });
            assert!(
                matches!(r, Err(ProtocolError::TooDeep(_))),
                "{open:02x?} x {n}: {r:?}"
            );
        }
    }
    // nesting as map keys: {{{...: nil}: nil}: nil}
    let mut b = vec![0x81u8; 100_000];
    b.extend(std::iter::repeat_n(0xc0, 100_001));
    assert!(matches!(
        decode_message(&[Bytes::from(b)]),
        Err(ProtocolError::TooDeep(_))
    ));
    // deep nesting inside a sub-header
    let f0 = Bytes::from(encode_value(&Value::map([(
        "__Serialized__",
        Value::Int(1),
    )])));
    let r = decode_message(&[f0, nested(100_000, &[0x91])]);
    assert!(matches!(r, Err(ProtocolError::TooDeep(_))), "{r:?}");
}

fn payload_ref(marker: &str, index: Value) -> Bytes {
    Bytes::from(encode_value(&Value::Array(vec![
        Value::from("x"),
        Value::map([(marker, index)]),
    ])))
}

#[test]
fn payload_index_out_of_range_is_an_error() {
    let sub = Bytes::from(encode_value(&Value::map([
        ("serializer", Value::from("pickle")),
        ("num-sub-frames", Value::Int(1)),
    ])));
    let payload = Bytes::from_static(b"\x80\x05K\n.");
    for marker in ["__Serialized__", "__Pickled__"] {
        for index in [
            Value::Int(0),
            Value::Int(-1),
            Value::Int(3),
            Value::Int(7),
            Value::Int(i64::MAX),
            Value::UInt(u64::MAX),
            Value::Float(1.5),
            Value::Nil,
            Value::from("1"),
        ] {
            let f0 = payload_ref(marker, index.clone());
            for fr in [
                vec![f0.clone()],
                vec![f0.clone(), sub.clone(), payload.clone()],
            ] {
                let r = no_panic(&format!("{marker} {index:?}"), || decode_message(&fr));
                assert!(
                    matches!(r, Err(ProtocolError::BadPayloadRef(_))),
                    "{marker}: {index:?} with {} frames: {r:?}",
                    fr.len()
                );
            }
        }
        // and the in-range reference decodes
        let r = decode_message(&[
            payload_ref(marker, Value::Int(1)),
            sub.clone(),
            payload.clone(),
        ]);
        assert!(r.is_ok(), "{marker}: {r:?}");
    }
    // a real message whose payload frame went missing
    let fr = frames("update_data_scatter");
    assert!(matches!(
        decode_message(&fr[..2]),
        Err(ProtocolError::BadPayloadRef(_))
    ));
}

/// Builds a one-reference message whose sub-header is `sub`, followed by `extra` frames.
fn with_sub_header(sub: Vec<u8>, extra: usize) -> Vec<Bytes> {
    let mut fr = vec![
        payload_ref("__Serialized__", Value::Int(1)),
        Bytes::from(sub),
    ];
    fr.extend((0..extra).map(|_| Bytes::from_static(b"xx")));
    fr
}

#[test]
fn bad_sub_headers_are_errors() {
    let hdr = |n: Option<Value>| {
        let mut h = vec![(Value::from("serializer"), Value::from("pickle"))];
        if let Some(n) = n {
            h.push((Value::from("num-sub-frames"), n));
        }
        encode_value(&Value::Map(h))
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no num-sub-frames", hdr(None)),
        ("num-sub-frames is a str", hdr(Some(Value::from("1")))),
        ("num-sub-frames is nil", hdr(Some(Value::Nil))),
        ("negative num-sub-frames", hdr(Some(Value::Int(-1)))),
        ("num-sub-frames past the end", hdr(Some(Value::Int(3)))),
        ("num-sub-frames 2^62", hdr(Some(Value::Int(1 << 62)))),
        ("num-sub-frames i64::MAX", hdr(Some(Value::Int(i64::MAX)))),
        ("num-sub-frames u64::MAX", hdr(Some(Value::UInt(u64::MAX)))),
        (
            "sub-header is an array",
            encode_value(&Value::Array(vec![])),
        ),
        ("sub-header is nil", vec![0xc0]),
        ("sub-header is empty", vec![]),
        (
            "sub-header truncated",
            hdr(Some(Value::Int(1)))[..5].to_vec(),
        ),
        ("sub-header has trailing bytes", {
            let mut h = hdr(Some(Value::Int(1)));
            h.push(0xc0);
            h
        }),
        ("sub-header uses a reserved marker", vec![0x81, 0xc1, 0xc0]),
    ];
    for (what, sub) in cases {
        let fr = with_sub_header(sub, 2);
        let r = no_panic(what, || decode_message(&fr));
        assert!(r.is_err(), "{what}: {r:?}");
    }
    // the real sub-header of a capture with num-sub-frames removed
    let fr = frames("update_data_scatter");
    let Value::Map(h) = decode_value(fr[1].clone()).expect("sub-header") else {
        panic!("sub-header is not a map")
    };
    let stripped: Vec<_> = h
        .into_iter()
        .filter(|(k, _)| k.as_str() != Some("num-sub-frames"))
        .collect();
    let mut fr2 = fr.clone();
    fr2[1] = Bytes::from(encode_value(&Value::Map(stripped)));
    assert!(matches!(
        decode_message(&fr2),
        Err(ProtocolError::BadPayloadRef(_))
    ));
}

#[test]
fn hostile_msgpack_is_an_error_without_allocating() {
    let cases: &[(&str, &[u8])] = &[
        ("empty frame 0", b""),
        ("reserved marker", b"\xc1"),
        ("fixext", b"\xd4\x01\x00"),
        ("ext32", b"\xc9\x00\x00\x00\x01\x01\x00"),
        ("invalid utf-8 str", b"\xa2\xff\xfe"),
        ("trailing bytes", b"\xc0\xc0"),
        ("str32 of 4 GiB", b"\xdb\xff\xff\xff\xff"),
        ("bin32 of 4 GiB", b"\xc6\xff\xff\xff\xff"),
        ("array32 of 2^32-1", b"\xdd\xff\xff\xff\xff\xc0"),
        ("map32 of 2^32-1", b"\xdf\xff\xff\xff\xff\xc0\xc0"),
        ("array16 short", b"\xdc\xff\xff"),
        ("u64 short", b"\xcf\x00\x00"),
        ("f64 short", b"\xcb\x00"),
        ("str8 short", b"\xd9\x10abc"),
        ("map key missing its value", b"\x81\xa1k"),
    ];
    for (what, b) in cases {
        let r = no_panic(what, || decode_message(&[Bytes::from_static(b)]));
        assert!(r.is_err(), "{what}: {r:?}");
    }
    assert!(matches!(decode_message(&[]), Err(ProtocolError::NoFrames)));
}

/// FINDING: `{"__Set__": True, "as-list": <not a list>}` and a `__Set__` map without
/// `as-list` decode silently (the first to an empty array, losing the value; the second
/// stays a map). Python's `msgpack_decode_default` raises on both, so the stock scheduler
/// closes the comm; rask should report an error too.
#[test]
fn malformed_set_marker_is_an_error() {
    for (what, set) in [
        (
            "as-list is an int",
            Value::map([("__Set__", Value::Bool(true)), ("as-list", Value::Int(5))]),
        ),
        ("no as-list", Value::map([("__Set__", Value::Bool(true))])),
    ] {
        let fr = [Bytes::from(encode_value(&Value::map([("keys", set)])))];
        let r = decode_message(&fr);
        assert!(r.is_err(), "{what}: decoded as {r:?}");
    }
}
