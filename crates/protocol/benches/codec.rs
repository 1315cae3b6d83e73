//! Codec micro-benchmarks: msgpack `encode_message` / `decode_message` of batched stream
//! messages shaped like the ones stock Dask 2026.8.0 sends (see `tests/data/README.md`:
//! `compute_task_tuple_keys.bin`, `task_finished_tuple_key.bin`), and the TCP frame codec.
//!
//! Run: `cargo bench -p rask-protocol --bench codec -- --measurement-time 3 --warm-up-time 1`
//!
//! Throughput is in messages (one `compute-task` / `task-finished` dict = one element; for
//! the frame codec one wire message = one element).

use bytes::{Bytes, BytesMut};
use criterion::{
    black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput,
};
use rask_protocol::{decode_message, encode_message, FrameCodec, Frames, Opaque, Value};
use tokio_util::codec::{Decoder, Encoder};

/// Messages per batched-stream write.
const BATCH: usize = 1_000;

/// 32 deterministic hex digits, like a Dask token.
fn token(i: usize, salt: u64) -> String {
    let mut x = (i as u64 ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut s = String::with_capacity(32);
    for _ in 0..2 {
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 32;
        s.push_str(&format!("{x:016x}"));
    }
    s
}

fn inc_key(i: usize) -> String {
    format!("inc-{}", token(i, 1))
}

/// A ~200-byte stand-in for a pickled `dask._task_spec.Task` (the golden one is 187 bytes:
/// module/class names, the key, the function reference, the argument refs).
fn run_spec(key: &str, dep: &str) -> Bytes {
    let mut p = Vec::with_capacity(220);
    p.extend_from_slice(b"\x80\x05\x95\xb0\x00\x00\x00\x00\x00\x00\x00\x8c\x0fdask._task_spec\x94\x8c\x04Task\x94\x93\x94)\x81\x94(\x89(\x8c(");
    p.extend_from_slice(dep.as_bytes());
    p.extend_from_slice(b"\x94\x91\x94NNNh\x00\x8c\x07TaskRef\x94\x93\x94h\x05\x85\x94R\x94\x8c\x08builtins\x94\x8c\x03inc\x94\x93\x94\x8c#");
    p.extend_from_slice(key.as_bytes());
    p.extend_from_slice(b"\x94}\x94t\x94b.");
    while p.len() < 200 {
        p.push(b'N');
    }
    Bytes::from(p)
}

/// One `compute-task`, field for field as `scheduler.py:3576-3600` sends it, with one
/// dependency (like the golden `compute_task_tuple_keys`).
fn compute_task(i: usize) -> Value {
    let key = inc_key(i);
    let dep = format!("getitem-{}", token(i, 2));
    Value::map([
        ("op", Value::from("compute-task")),
        ("key", Value::from(key.as_str())),
        ("run_id", Value::from(29 + i as i64)),
        (
            "priority",
            Value::Array(vec![Value::Int(0), Value::Int(1), Value::from(i as i64)]),
        ),
        (
            "stimulus_id",
            Value::from("compute-task-1795538426.0127406"),
        ),
        (
            "who_has",
            Value::Map(vec![(
                Value::from(dep.as_str()),
                Value::Array(vec![Value::from("tcp://127.0.0.1:9101")]),
            )]),
        ),
        (
            "nbytes",
            Value::Map(vec![(Value::from(dep.as_str()), Value::Int(1764))]),
        ),
        (
            "run_spec",
            Value::Opaque(Opaque::pickled(run_spec(&key, &dep))),
        ),
        ("resource_restrictions", Value::Nil),
        ("actor", Value::Bool(false)),
        ("annotations", Value::Map(Vec::new())),
        (
            "span_id",
            Value::from("4ead38b7-435d-475c-9615-455ae636e308"),
        ),
    ])
}

/// The pickled `int` type every `task-finished` of an `inc` carries.
const INT_TYPE: &[u8] =
    b"\x80\x05\x95\x14\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x03int\x94\x93\x94.";

/// One `task-finished`, field order as the worker's `TaskFinishedMsg.to_dict()` writes it.
fn task_finished(i: usize) -> Value {
    let start = 1_795_538_426.071_609_5 + i as f64 * 1e-3;
    Value::map([
        ("key", Value::from(inc_key(i))),
        ("run_id", Value::from(29 + i as i64)),
        ("nbytes", Value::Int(28)),
        ("type", Value::Bin(Bytes::from_static(INT_TYPE))),
        ("typename", Value::from("int")),
        ("metadata", Value::Map(Vec::new())),
        ("thread", Value::Int(140_269_466_851_008)),
        (
            "startstops",
            Value::Array(vec![Value::map([
                ("action", Value::from("compute")),
                ("start", Value::Float(start)),
                ("stop", Value::Float(start + 6e-5)),
            ])]),
        ),
        ("op", Value::from("task-finished")),
        (
            "stimulus_id",
            Value::from(format!("task-finished-{:.7}", start + 1e-3)),
        ),
        ("status", Value::from("OK")),
    ])
}

/// A batched-stream write: a list of messages (`BatchedSend`).
fn batch(f: fn(usize) -> Value) -> Value {
    Value::Array((0..BATCH).map(f).collect())
}

fn frames_len(frames: &[Bytes]) -> usize {
    frames.iter().map(Bytes::len).sum()
}

fn bench_messages(c: &mut Criterion) {
    let mut g = c.benchmark_group("msgpack");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, msg) in [
        ("compute-task", batch(compute_task)),
        ("task-finished", batch(task_finished)),
    ] {
        let frames = encode_message(&msg);
        eprintln!(
            "{name} x{BATCH}: {} frames, {} bytes",
            frames.len(),
            frames_len(&frames)
        );
        assert_eq!(
            decode_message(&frames).ok().as_ref(),
            Some(&msg),
            "{name} does not round-trip"
        );
        g.bench_with_input(BenchmarkId::new("encode", name), &msg, |b, msg| {
            b.iter(|| encode_message(black_box(msg)))
        });
        g.bench_with_input(BenchmarkId::new("decode", name), &frames, |b, frames| {
            b.iter(|| decode_message(black_box(frames)).expect("decodes"))
        });
    }
    g.finish();
}

fn wire(frames: &Frames) -> BytesMut {
    let mut buf = BytesMut::new();
    FrameCodec::default()
        .encode(frames.clone(), &mut buf)
        .expect("encodes");
    buf
}

fn bench_frames(c: &mut Criterion) {
    // A scheduler→worker batch of 1,000 compute-tasks: 1,001 frames (msgpack + one
    // sub-header per run_spec), and a small 3-frame message like the golden
    // `gather_reply_tuple_key` (msgpack, sub-header, ~1 KB payload).
    let big = encode_message(&batch(compute_task));
    let small: Frames = vec![
        Bytes::from(vec![0x81u8; 79]),
        Bytes::from(vec![0x82u8; 99]),
        Bytes::from(vec![0u8; 1012]),
    ];
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Elements(1));
    for (name, frames) in [("compute-task-batch", big), ("gather-reply", small)] {
        eprintln!(
            "{name}: {} frames, {} bytes on the wire",
            frames.len(),
            wire(&frames).len()
        );
        g.bench_with_input(BenchmarkId::new("encode", name), &frames, |b, frames| {
            let mut codec = FrameCodec::default();
            let mut dst = BytesMut::with_capacity(wire(frames).len());
            b.iter_batched_ref(
                || frames.clone(),
                |fr| {
                    dst.clear();
                    codec.encode(std::mem::take(fr), &mut dst).expect("encodes");
                    black_box(dst.len())
                },
                BatchSize::SmallInput,
            )
        });
        let bytes = wire(&frames);
        g.bench_with_input(BenchmarkId::new("decode", name), &bytes, |b, bytes| {
            let mut codec = FrameCodec::default();
            b.iter_batched(
                || bytes.clone(),
                |mut src| codec.decode(&mut src).expect("decodes").expect("complete"),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench_messages, bench_frames);
criterion_main!(benches);
