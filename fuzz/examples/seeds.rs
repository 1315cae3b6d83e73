//! Writes the committed seed corpus, `fuzz/seeds/<target>/`: the captured Dask messages of
//! `crates/protocol/tests/data` in each target's input format, and helper replies shaped like
//! `python/rask_graph_helper.py`'s. Run from `fuzz/`: `cargo run --example seeds`.

use bytes::{Bytes, BytesMut};
use rask_protocol::msgpack::encode_value;
use rask_protocol::{FrameCodec, Value};
use std::path::Path;
use tokio_util::codec::Decoder;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("../crates/protocol/tests/data");
    let seeds = root.join("seeds");
    for t in ["frame_decode", "message_decode", "helper_reply"] {
        std::fs::create_dir_all(seeds.join(t))?;
    }
    let mut names: Vec<_> = std::fs::read_dir(&data)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    names.sort();
    for path in &names {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("x");
        let wire = std::fs::read(path)?;
        // default limits, the stream in one read
        let mut seed = vec![0x80, 0];
        seed.extend_from_slice(&wire);
        std::fs::write(seeds.join("frame_decode").join(name), seed)?;
        let mut src = BytesMut::from(&wire[..]);
        if let Ok(Some(frames)) = FrameCodec::default().decode(&mut src) {
            if let Some(seed) = rask_fuzz::join_message(&frames) {
                std::fs::write(seeds.join("message_decode").join(name), seed)?;
            }
        }
    }
    // two messages back to back, read in small pieces, with small limits (8 frames, 2 MiB)
    let mut two = vec![0x7f, 13];
    for n in ["handshake", "register_worker"] {
        two.extend(std::fs::read(data.join(format!("{n}.bin")))?);
    }
    std::fs::write(seeds.join("frame_decode").join("two_messages_chunked"), two)?;

    for (name, msgs) in helper_replies() {
        let mut seed = vec![1];
        seed.extend(encode_value(&Value::Array(msgs)));
        std::fs::write(seeds.join("helper_reply").join(name), seed)?;
    }
    Ok(())
}

fn rec(key: Value, deps: Vec<Value>, hash: i64) -> Vec<(&'static str, Value)> {
    vec![
        ("key", key),
        ("deps", Value::Array(deps)),
        ("run_spec", Value::Bin(Bytes::from_static(b"\x80\x05N."))),
        ("kind", Value::from("Task")),
        ("prefix", Value::from("inc")),
        ("group", Value::from("inc")),
        ("hash", Value::Int(hash)),
    ]
}

fn tuple(name: &str, i: i64) -> Value {
    Value::Array(vec![Value::from(name), Value::Int(i)])
}

/// An unordered graph in a chunk and a final reply (a data node, a wide task with a
/// `deps_table`, annotations and restrictions, a dependency on an external key), an ordered
/// graph, and an error reply.
fn helper_replies() -> Vec<(&'static str, Vec<Value>)> {
    let mut data = rec(Value::from("data-1"), vec![], -3);
    data[3] = ("kind", Value::from("DataNode"));
    let leaves: Vec<Value> = (0..6).map(|i| tuple("inc-1", i)).collect();
    let mut chunk: Vec<Value> = (0..6)
        .map(|i| Value::map(rec(tuple("inc-1", i), vec![Value::from("data-1")], 17 * i)))
        .collect();
    chunk.insert(0, Value::map(data));
    let mut sum = rec(Value::from("sum-2"), leaves, 99);
    sum.push(("deps_table", Value::Int(32)));
    sum.push((
        "annotations",
        Value::map([("retries", Value::Int(2)), ("priority", Value::Int(1))]),
    ));
    sum.push((
        "restrictions",
        Value::map([
            (
                "workers",
                Value::Array(vec![Value::from("tcp://127.0.0.1:9001")]),
            ),
            ("allow_other_workers", Value::Bool(true)),
            ("resources", Value::map([("GPU", Value::Float(1.0))])),
            ("retries", Value::Int(2)),
            ("priority", Value::Int(1)),
        ]),
    ));
    let ext = rec(
        Value::from("after-3"),
        vec![Value::from("sum-2"), Value::from("old-future")],
        5,
    );
    let unordered = vec![
        Value::map([("id", Value::Int(1)), ("chunk", Value::Array(chunk))]),
        Value::map([
            ("id", Value::Int(1)),
            ("status", Value::from("OK")),
            ("expr_type", Value::from("LLGExpr")),
            ("culled", Value::Bool(false)),
            (
                "tasks",
                Value::Array(vec![Value::map(sum), Value::map(ext)]),
            ),
            ("chunks", Value::Int(1)),
            ("timings", Value::map([("total_s", Value::Float(0.01))])),
        ]),
    ];
    let mut a = rec(Value::from("a"), vec![], 1);
    a.push(("order", Value::Int(0)));
    a.push((
        "annotations_pickled",
        Value::Bin(Bytes::from_static(b"\x80\x05}.")),
    ));
    let mut b = rec(Value::from("shuffle-barrier-x"), vec![Value::from("a")], 2);
    b.push(("order", Value::Int(1)));
    let ordered = vec![Value::map([
        ("id", Value::Int(2)),
        ("status", Value::from("OK")),
        ("tasks", Value::Array(vec![Value::map(a), Value::map(b)])),
    ])];
    let error = vec![Value::map([
        ("id", Value::Int(3)),
        ("status", Value::from("error")),
        ("exception", Value::Bin(Bytes::from_static(b"\x80\x05."))),
        ("traceback", Value::Nil),
        ("exception_text", Value::from("ValueError('x')")),
        ("traceback_text", Value::from("")),
    ])];
    vec![
        ("unordered_chunked", unordered),
        ("ordered", ordered),
        ("error", error),
    ]
}
