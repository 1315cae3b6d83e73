//! Golden tests: real messages captured from stock Dask 2026.8.0 (scheduler, client, workers;
//! see `tests/data/README.md`) must frame, decode, and re-encode exactly like Python does.

mod common;

use bytes::{Bytes, BytesMut};
use common::{first_diff, frames, msg, raw, wire, ALL, PARTIAL_NOSPLIT, SET_MARKER, WITH_SET};
use rask_protocol::handshake::{check_peer_handshake, handshake};
use rask_protocol::msgpack::{decode_value, encode_value};
use rask_protocol::{
    decode_message, encode_message, FrameCodec, Frames, Key, Opaque, OpaqueKind, Value,
};
use tokio_util::codec::{Decoder, Encoder};

// ---------------------------------------------------------------------------------------
// small accessors that panic with a useful message

fn get<'a>(v: &'a Value, name: &str) -> &'a Value {
    v.get(name)
        .unwrap_or_else(|| panic!("no field {name:?} in {}", short(v)))
}

fn short(v: &Value) -> String {
    let s = format!("{v:?}");
    s.chars().take(300).collect()
}

fn str_of<'a>(v: &'a Value, name: &str) -> &'a str {
    get(v, name)
        .as_str()
        .unwrap_or_else(|| panic!("{name:?} is not a str: {}", short(v)))
}

fn int_of(v: &Value, name: &str) -> i64 {
    get(v, name)
        .as_i64()
        .unwrap_or_else(|| panic!("{name:?} is not an int: {}", short(v)))
}

fn float_of(v: &Value, name: &str) -> f64 {
    match get(v, name) {
        Value::Float(f) => *f,
        other => panic!("{name:?} is not a float: {}", short(other)),
    }
}

fn arr(v: &Value) -> &[Value] {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {}", short(v)))
}

fn map(v: &Value) -> &[(Value, Value)] {
    v.as_map()
        .unwrap_or_else(|| panic!("not a map: {}", short(v)))
}

fn opaque(v: &Value) -> &Opaque {
    match v {
        Value::Opaque(o) => o,
        other => panic!("not an opaque payload: {}", short(other)),
    }
}

fn header<'a>(o: &'a Opaque, name: &str) -> &'a Value {
    o.header_get(name)
        .unwrap_or_else(|| panic!("sub-header has no {name:?}: {:?}", o.header))
}

fn header_keys(o: &Opaque) -> Vec<&str> {
    o.header
        .iter()
        .map(|(k, _)| k.as_str().unwrap_or("<non-str>"))
        .collect()
}

/// A batched-stream message (`BatchedSend` writes a tuple of ops) holding exactly one op.
fn only_op<'a>(m: &'a Value, op: &str) -> &'a Value {
    let items = arr(m);
    assert_eq!(items.len(), 1, "expected one batched op, got {}", short(m));
    assert_eq!(str_of(&items[0], "op"), op);
    &items[0]
}

fn key(v: &Value) -> Key {
    Key::from_value(v).unwrap_or_else(|| panic!("not a dask key: {}", short(v)))
}

/// `('prefix-<hash>', i, ...)` with a str head and int tail.
fn assert_tuple_key(k: &Key, prefix: &str, ints: &[i64]) {
    let Key::Tuple(items) = k else {
        panic!("{k} is not a tuple key")
    };
    assert_eq!(items.len(), 1 + ints.len(), "{k}");
    assert!(
        matches!(&items[0], Key::Str(s) if s.starts_with(prefix)),
        "{k} does not start with {prefix:?}"
    );
    for (item, want) in items[1..].iter().zip(ints) {
        assert_eq!(item, &Key::Int(*want), "{k}");
    }
}

fn nils(n: usize) -> Value {
    Value::Array(vec![Value::Nil; n])
}

fn ints(xs: &[i64]) -> Value {
    Value::Array(xs.iter().map(|x| Value::Int(*x)).collect())
}

fn assert_frames_eq(name: &str, got: &[Bytes], want: &[Bytes]) {
    assert_eq!(
        got.len(),
        want.len(),
        "{name}: {} frames re-encoded, {} captured",
        got.len(),
        want.len()
    );
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if let Some(at) = first_diff(g, w) {
            let lo = at.saturating_sub(8);
            panic!(
                "{name}: frame {i} differs at byte {at} (len {} vs captured {}): \
                 re-encoded {:02x?} vs captured {:02x?}",
                g.len(),
                w.len(),
                &g[lo..(at + 8).min(g.len())],
                &w[lo..(at + 8).min(w.len())],
            );
        }
    }
}

fn codec_bytes(frames: Frames) -> Vec<u8> {
    let mut out = BytesMut::new();
    FrameCodec::default()
        .encode(frames, &mut out)
        .expect("encoding frames cannot fail");
    out.to_vec()
}

/// Indices of the frames referenced as sub-headers by `{"__Serialized__"|"__Pickled__": i}`
/// in a plain (unresolved) decode of frame 0.
fn sub_header_indices(v: &Value, out: &mut Vec<usize>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| sub_header_indices(i, out)),
        Value::Map(entries) => {
            if entries.len() == 1 {
                if let Some("__Serialized__" | "__Pickled__") = entries[0].0.as_str() {
                    out.push(entries[0].1.as_i64().expect("payload index") as usize);
                }
            }
            for (k, v) in entries {
                sub_header_indices(k, out);
                sub_header_indices(v, out);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// properties every capture must have

#[test]
fn every_capture_is_exactly_one_codec_message() {
    for name in ALL {
        let w = wire(name);
        let mut src = BytesMut::from(&w.raw[..]);
        let mut codec = FrameCodec::default();
        let got = codec
            .decode(&mut src)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .unwrap_or_else(|| panic!("{name}: codec wants more bytes"));
        assert!(src.is_empty(), "{name}: {} bytes left over", src.len());
        assert_eq!(
            got, w.frames,
            "{name}: codec frames differ from the capture"
        );
        assert!(
            matches!(codec.decode(&mut src), Ok(None)),
            "{name}: a second message out of nothing"
        );
        assert!(
            matches!(codec.decode_eof(&mut src), Ok(None)),
            "{name}: clean EOF after one message"
        );

        // Python's nosplit always ends on a frame boundary and includes frame 0.
        let n = w.frames.len();
        let body = w.nosplit as usize - 8 - 8 * n;
        let mut boundaries = w.frames.iter().scan(0, |acc, f| {
            *acc += f.len();
            Some(*acc)
        });
        assert!(
            boundaries.any(|b| b == body),
            "{name}: nosplit {} is not on a frame boundary",
            w.nosplit
        );
        assert_eq!(
            !w.nosplit_is_whole(),
            PARTIAL_NOSPLIT.contains(name),
            "{name}: PARTIAL_NOSPLIT is out of date"
        );
    }
}

#[test]
fn all_captures_back_to_back_decode_in_any_chunking() {
    let stream: Vec<u8> = ALL.iter().flat_map(|n| raw(n)).collect();
    let want: Vec<Frames> = ALL.iter().map(|n| frames(n)).collect();
    for chunk in [1, 7, 16, 17, 100, 4096, stream.len()] {
        let mut codec = FrameCodec::default();
        let mut src = BytesMut::new();
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            src.extend_from_slice(piece);
            while let Some(f) = codec.decode(&mut src).expect("valid stream") {
                got.push(f);
            }
        }
        assert!(src.is_empty(), "chunk {chunk}: bytes left over");
        assert_eq!(got, want, "chunk {chunk}");
    }
}

#[test]
fn every_capture_round_trips_as_a_value() {
    for name in ALL {
        let v = msg(name);
        let again = decode_message(&encode_message(&v))
            .unwrap_or_else(|e| panic!("{name}: re-encoded message does not decode: {e}"));
        assert_eq!(again, v, "{name}: value changed through encode/decode");
    }
}

#[test]
fn set_list_is_exact() {
    for name in ALL {
        let has_set = frames(name)[0]
            .windows(SET_MARKER.len())
            .any(|w| w == SET_MARKER);
        assert_eq!(
            has_set,
            WITH_SET.contains(name),
            "{name}: WITH_SET is out of date"
        );
    }
}

#[test]
fn captures_without_sets_re_encode_byte_identically() {
    for name in ALL.iter().filter(|n| !WITH_SET.contains(n)) {
        assert_frames_eq(name, &encode_message(&msg(name)), &frames(name));
    }
}

#[test]
fn captures_with_sets_differ_only_by_the_set_marker() {
    // `{"__Set__": True, "as-list": [k]}` decodes to `[k]`; everything else is unchanged.
    for name in WITH_SET {
        let captured = frames(name);
        let re = encode_message(&msg(name));
        let f0 = &captured[0];
        let at = f0
            .windows(SET_MARKER.len())
            .position(|w| w == SET_MARKER)
            .expect("set marker");
        let mut want0 = f0[..at].to_vec();
        want0.extend_from_slice(&f0[at + SET_MARKER.len()..]);
        let mut want = vec![Bytes::from(want0)];
        want.extend(captured[1..].iter().cloned());
        assert_frames_eq(name, &re, &want);
    }
}

#[test]
fn plain_msgpack_of_frame0_and_sub_headers_is_byte_identical() {
    // Without payload resolution (`decode_value`), every frame 0 (sets included) and every
    // sub-header must re-encode to Python's bytes: rask's msgpack writer picks the same
    // (smallest) encodings as Python's msgpack.
    for name in ALL {
        let fr = frames(name);
        let v0 = decode_value(fr[0].clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            first_diff(&encode_value(&v0), &fr[0]),
            None,
            "{name}: frame 0"
        );
        let mut subs = Vec::new();
        sub_header_indices(&v0, &mut subs);
        for i in subs {
            let h = decode_value(fr[i].clone()).unwrap_or_else(|e| panic!("{name}[{i}]: {e}"));
            assert_eq!(
                first_diff(&encode_value(&h), &fr[i]),
                None,
                "{name}: sub-header frame {i}"
            );
        }
    }
}

#[test]
fn codec_encoding_reproduces_the_capture() {
    for name in ALL {
        let w = wire(name);
        let out = codec_bytes(w.frames.clone());
        if w.nosplit_is_whole() {
            assert_eq!(first_diff(&out, &w.raw), None, "{name}");
        } else {
            // rask always writes one nosplit block (legal, PROTOCOL.md §1.1); the rest of
            // the bytes are Python's.
            assert_eq!(out.len(), w.raw.len(), "{name}");
            assert_eq!(&out[..8], &(w.raw.len() as u64 - 8).to_le_bytes(), "{name}");
            assert_eq!(first_diff(&out[8..], &w.raw[8..]), None, "{name}");
        }
    }
}

#[test]
fn bytes_to_value_to_bytes_end_to_end() {
    // The full scheduler path: socket bytes -> FrameCodec -> Value -> frames -> socket bytes.
    for name in ALL.iter().filter(|n| !WITH_SET.contains(n)) {
        let w = wire(name);
        let mut src = BytesMut::from(&w.raw[..]);
        let fr = FrameCodec::default()
            .decode(&mut src)
            .expect("decodes")
            .expect("complete");
        let out = codec_bytes(encode_message(&decode_message(&fr).expect("decodes")));
        assert_eq!(
            first_diff(&out[8..], &w.raw[8..]),
            None,
            "{name}: bytes after nosplit"
        );
        if w.nosplit_is_whole() {
            assert_eq!(&out[..8], &w.raw[..8], "{name}: nosplit");
        }
    }
}

// ---------------------------------------------------------------------------------------
// handshake

#[test]
fn handshake_from_stock_scheduler() {
    let m = msg("handshake");
    let keys: Vec<_> = map(&m).iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [Some("compression"), Some("python"), Some("pickle-protocol")]
    );
    assert!(get(&m, "compression").is_nil());
    assert_eq!(get(&m, "python"), &ints(&[3, 11, 7]));
    assert_eq!(int_of(&m, "pickle-protocol"), 5);
    assert!(check_peer_handshake(&m).is_ok());
    assert_eq!(frames("handshake")[0].len(), 42);
    assert_eq!(raw("handshake").len(), 66);
}

#[test]
fn rask_handshake_is_byte_identical_to_the_stock_listener() {
    assert_eq!(handshake(), msg("handshake"));
    assert_eq!(codec_bytes(encode_message(&handshake())), raw("handshake"));
}

#[test]
fn scheduler_outgoing_handshake_says_pickle_protocol_4() {
    let m = msg("handshake_scheduler_outgoing");
    assert_eq!(int_of(&m, "pickle-protocol"), 4);
    assert!(get(&m, "compression").is_nil());
    assert!(check_peer_handshake(&m).is_ok());
}

// ---------------------------------------------------------------------------------------
// worker and client registration, heartbeats, identity

#[test]
fn register_worker() {
    let m = msg("register_worker");
    assert_eq!(str_of(&m, "op"), "register-worker");
    assert_eq!(get(&m, "reply"), &Value::Bool(false));
    assert!(str_of(&m, "address").starts_with("tcp://127.0.0.1:910"));
    assert_eq!(str_of(&m, "status"), "init");
    assert_eq!(int_of(&m, "nthreads"), 1);
    assert!(str_of(&m, "name").starts_with('w'));
    assert!(float_of(&m, "now") > 1.7e9);
    assert_eq!(int_of(&m, "memory_limit"), 1_000_000_000);
    assert!(get(&m, "nanny").is_nil());
    assert_eq!(map(get(&m, "resources")), &[]);
    assert!(int_of(&m, "pid") > 0);
    let packages = get(get(&m, "versions"), "packages");
    assert_eq!(str_of(packages, "dask"), "2026.8.0");
    assert_eq!(str_of(packages, "distributed"), "2026.8.0");
    assert!(get(packages, "lz4").is_nil());
    let metrics = get(&m, "metrics");
    assert_eq!(int_of(get(metrics, "bandwidth"), "total"), 100_000_000);
    assert_eq!(float_of(get(metrics, "host_net_io"), "read_bps"), 0.0);
    assert!(str_of(&m, "stimulus_id").starts_with("worker-connect-"));
    assert!(str_of(&m, "server_id").starts_with("Worker-"));
    let keys: Vec<_> = map(&m).iter().filter_map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), 18, "{keys:?}");
}

#[test]
fn register_worker_reply() {
    let m = msg("register_worker_reply");
    assert_eq!(str_of(&m, "status"), "OK");
    assert!(float_of(&m, "time") > 1.7e9);
    assert_eq!(float_of(&m, "heartbeat-interval"), 0.5);
    let plugins = map(get(&m, "worker-plugins"));
    assert_eq!(plugins.len(), 1);
    assert_eq!(plugins[0].0.as_str(), Some("shuffle"));
    let pickle = plugins[0].1.as_bin().expect("plugin is raw pickle bytes");
    assert!(pickle.starts_with(b"\x80\x05"));
    assert!(pickle
        .windows(b"distributed.shuffle._worker_plugin".len())
        .any(|w| w == b"distributed.shuffle._worker_plugin"));
    assert_eq!(str_of(&m, "warning"), "");
    assert_eq!(str_of(&m, "error"), "");
}

#[test]
fn register_client_and_stream_start() {
    let m = msg("register_client");
    assert_eq!(str_of(&m, "op"), "register-client");
    assert!(str_of(&m, "client").starts_with("Client-"));
    assert_eq!(get(&m, "reply"), &Value::Bool(false));
    let host = get(get(&m, "versions"), "host");
    assert_eq!(int_of(host, "python-bits"), 64);

    // the reply is the first message of the client's batched stream: a tuple of one op
    let s = msg("stream_start");
    let op = only_op(&s, "stream-start");
    assert_eq!(str_of(op, "warning"), "");
    assert_eq!(str_of(op, "error"), "");
    let built = Value::Array(vec![Value::map([
        ("op", Value::from("stream-start")),
        ("warning", Value::from("")),
        ("error", Value::from("")),
    ])]);
    assert_eq!(encode_message(&built), frames("stream_start"));
}

#[test]
fn heartbeat_worker_and_reply() {
    let m = msg("heartbeat_worker");
    assert_eq!(str_of(&m, "op"), "heartbeat_worker");
    assert_eq!(get(&m, "reply"), &Value::Bool(true));
    assert!(str_of(&m, "address").starts_with("tcp://127.0.0.1:910"));
    assert!(float_of(&m, "now") > 1.7e9);
    assert_eq!(map(get(&m, "executing")), &[]);
    let ext = get(&m, "extensions");
    assert_eq!(map(get(ext, "spans")), &[]);
    assert_eq!(map(get(ext, "shuffle")), &[]);
    let metrics = get(&m, "metrics");
    assert_eq!(float_of(metrics, "event_loop_interval"), 0.02);
    assert!(int_of(metrics, "memory") > 0);
    assert!(float_of(
        get(metrics, "digests_total_since_heartbeat"),
        "tick-duration"
    )
    .is_finite());

    let r = msg("heartbeat_worker_reply");
    assert_eq!(map(&r).len(), 3);
    assert_eq!(str_of(&r, "status"), "OK");
    assert!(float_of(&r, "time") >= float_of(&m, "now"));
    assert_eq!(float_of(&r, "heartbeat-interval"), 0.5);
    // rebuilt field by field: floats are f64 on the wire, like Python's
    let built = Value::map([
        ("status", Value::from("OK")),
        ("time", Value::Float(float_of(&r, "time"))),
        ("heartbeat-interval", Value::Float(0.5)),
    ]);
    assert_eq!(encode_message(&built), frames("heartbeat_worker_reply"));
}

#[test]
fn identity_reply() {
    let m = msg("identity_reply");
    assert_eq!(str_of(&m, "type"), "Scheduler");
    assert!(str_of(&m, "id").starts_with("Scheduler-"));
    assert_eq!(str_of(&m, "address"), "tcp://127.0.0.1:8786");
    assert_eq!(int_of(get(&m, "services"), "dashboard"), 8787);
    assert!(float_of(&m, "started") > 1.7e9);
    assert_eq!(int_of(&m, "n_workers"), 2);
    assert_eq!(int_of(&m, "total_threads"), 2);
    assert_eq!(int_of(&m, "total_memory"), 2_000_000_000);
    assert_eq!(map(get(&m, "workers")), &[]);
}

// ---------------------------------------------------------------------------------------
// update-graph

/// Checks the fields every 2026.8.0 `update-graph` has and returns (op, expr_ser, keys).
fn update_graph(name: &str) -> (Value, Opaque, Vec<Key>) {
    let m = msg(name);
    let op = only_op(&m, "update-graph").clone();
    let fr = frames(name);
    let n = fr.len();

    let expr = opaque(get(&op, "expr_ser")).clone();
    assert_eq!(expr.kind, OpaqueKind::Serialized);
    // a client-built Serialized: no split-*/compression keys; num-sub-frames stripped
    assert_eq!(header_keys(&expr), ["serializer", "writeable"]);
    assert_eq!(
        str_of(&Value::Map(expr.header.clone()), "serializer"),
        "pickle"
    );
    // frame 1 is the sub-header, then the pickle and its out-of-band buffers, then the
    // three ToPickle sub-headers (code, annotations, span_metadata)
    assert_eq!(expr.frames.len(), n - 5);
    assert_eq!(&expr.frames[..], &fr[2..n - 3]);
    assert!(expr.frames[0].starts_with(b"\x80\x05"), "protocol-5 pickle");
    let writeable = arr(header(&expr, "writeable"));
    assert_eq!(
        writeable.len(),
        expr.frames.len() - 1,
        "one flag per buffer"
    );
    assert!(writeable.iter().all(|w| w == &Value::Bool(true)));

    // `keys` travels as {"__Set__": True, "as-list": [...]} and decodes to an array
    let keys: Vec<Key> = arr(get(&op, "keys")).iter().map(key).collect();

    for (field, pickle, frame) in [
        ("code", &b"\x80\x05)."[..], n - 3),
        ("annotations", &b"\x80\x05}\x94."[..], n - 2),
        ("span_metadata", &b""[..], n - 1),
    ] {
        let o = opaque(get(&op, field));
        assert_eq!(o.kind, OpaqueKind::Pickled, "{field}");
        assert_eq!(header_keys(o), ["pickled-obj", "compression"], "{field}");
        assert_eq!(header(o, "compression"), &Value::Array(vec![]), "{field}");
        assert!(o.frames.is_empty(), "{field}");
        let p = header(o, "pickled-obj").as_bin().expect("pickle bytes");
        if !pickle.is_empty() {
            assert_eq!(&p[..], pickle, "{field}");
        }
        // the sub-header frame is exactly Opaque::pickled of the same bytes
        let rebuilt = encode_message(&Value::Opaque(Opaque::pickled(p.clone())));
        assert_eq!(rebuilt[1], fr[frame], "{field}: Opaque::pickled layout");
    }
    let span = header(opaque(get(&op, "span_metadata")), "pickled-obj")
        .as_bin()
        .expect("bytes");
    assert!(span.windows(15).any(|w| w == b"low-level-graph"));

    assert!(get(&op, "internal_priority").is_nil());
    assert!(get(&op, "submitting_task").is_nil());
    assert!(get(&op, "actors").is_nil());
    assert_eq!(str_of(&op, "fifo_timeout"), "60s");
    (op, expr, keys)
}

#[test]
fn update_graph_delayed() {
    let (_, expr, keys) = update_graph("update_graph_delayed");
    assert_eq!(expr.frames.len(), 1);
    assert_eq!(keys.len(), 1);
    assert!(matches!(&keys[0], Key::Str(s) if s.starts_with("sum-")));
    assert!(expr.frames[0]
        .windows(b"_HLGExprSequence".len())
        .any(|w| w == b"_HLGExprSequence"));
}

#[test]
fn update_graph_array() {
    let (_, expr, keys) = update_graph("update_graph_array");
    assert_eq!(expr.frames.len(), 1);
    assert_eq!(keys.len(), 1);
    assert!(matches!(&keys[0], Key::Str(s) if s.starts_with("finalize-hlgfinalizecompute-")));
    assert!(expr.frames[0].windows(9).any(|w| w == b"ones_like"));
}

#[test]
fn update_graph_dataframe_with_out_of_band_buffers() {
    let (_, expr, keys) = update_graph("update_graph_dataframe");
    // dask-expr pickles pandas/arrow data with 22 out-of-band pickle-5 buffers, 10 of
    // them empty
    assert_eq!(expr.frames.len(), 23);
    assert_eq!(expr.frames.iter().filter(|f| f.is_empty()).count(), 10);
    assert_eq!(
        expr.payload_len(),
        frames("update_graph_dataframe")[2..25]
            .iter()
            .map(Bytes::len)
            .sum::<usize>()
    );
    // a tuple key inside the __Set__
    assert_eq!(keys.len(), 1);
    assert_tuple_key(&keys[0], "sum-tree-", &[0]);
    assert_eq!(keys[0].to_string().split(", ").last(), Some("0)"));
}

// ---------------------------------------------------------------------------------------
// scheduler -> worker: compute-task

fn assert_compute_task_common(t: &Value) {
    assert!(int_of(t, "run_id") >= 0);
    assert!(arr(get(t, "priority")).iter().all(|p| p.as_i64().is_some()));
    assert!(str_of(t, "stimulus_id").starts_with("compute-task-"));
    assert!(get(t, "resource_restrictions").is_nil());
    assert_eq!(get(t, "actor"), &Value::Bool(false));
    assert_eq!(map(get(t, "annotations")), &[]);
    assert_eq!(str_of(t, "span_id").len(), 36);
    let keys: Vec<_> = map(t).iter().filter_map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "op",
            "key",
            "run_id",
            "priority",
            "stimulus_id",
            "who_has",
            "nbytes",
            "run_spec",
            "resource_restrictions",
            "actor",
            "annotations",
            "span_id"
        ]
    );
}

#[test]
fn compute_task_with_tuple_keys_as_map_keys() {
    let m = msg("compute_task_tuple_keys");
    let t = only_op(&m, "compute-task");
    assert_compute_task_common(t);
    assert_tuple_key(&key(get(t, "key")), "gt-", &[1]);

    // who_has / nbytes are keyed by tuple keys (msgpack arrays as map keys)
    let who_has = map(get(t, "who_has"));
    assert_eq!(who_has.len(), 1);
    let dep = key(&who_has[0].0);
    assert_tuple_key(&dep, "getitem-", &[1]);
    let addrs = arr(&who_has[0].1);
    assert_eq!(addrs.len(), 1);
    assert!(addrs[0]
        .as_str()
        .is_some_and(|a| a.starts_with("tcp://127.0.0.1:910")));
    let nbytes = map(get(t, "nbytes"));
    assert_eq!(nbytes.len(), 1);
    assert_eq!(key(&nbytes[0].0), dep);
    assert!(nbytes[0].1.as_i64().is_some_and(|n| n > 0));

    // run_spec: ToPickle(GraphNode), no buffers
    let fr = frames("compute_task_tuple_keys");
    assert_eq!(fr.len(), 2);
    let spec = opaque(get(t, "run_spec"));
    assert_eq!(spec.kind, OpaqueKind::Pickled);
    assert_eq!(header_keys(spec), ["pickled-obj", "compression"]);
    assert_eq!(header(spec, "compression"), &Value::Array(vec![]));
    assert!(spec.frames.is_empty());
    let pickle = header(spec, "pickled-obj").as_bin().expect("bytes").clone();
    assert!(pickle.starts_with(b"\x80\x05\x95"));
    assert!(pickle.windows(15).any(|w| w == b"dask._task_spec"));

    // The scheduler side: a compute-task built with Opaque::pickled(helper bytes) is
    // byte-identical to what the stock scheduler sends.
    let mut rebuilt = t.clone();
    rebuilt.set("run_spec", Value::Opaque(Opaque::pickled(pickle)));
    assert_eq!(encode_message(&Value::Array(vec![rebuilt])), fr);
}

#[test]
fn compute_task_with_pickle5_buffers() {
    let m = msg("compute_task_buffers");
    let t = only_op(&m, "compute-task");
    assert_compute_task_common(t);
    assert_tuple_key(&key(get(t, "key")), "read-csv-", &[1]);
    assert_eq!(map(get(t, "who_has")), &[]);
    assert_eq!(map(get(t, "nbytes")), &[]);

    let fr = frames("compute_task_buffers");
    let spec = opaque(get(t, "run_spec"));
    assert_eq!(spec.kind, OpaqueKind::Pickled);
    assert_eq!(header_keys(spec), ["pickled-obj", "compression"]);
    assert_eq!(header(spec, "compression"), &nils(6));
    let lens: Vec<usize> = spec.frames.iter().map(Bytes::len).collect();
    assert_eq!(lens, [40, 4, 32, 32, 32, 3]);
    assert_eq!(&spec.frames[..], &fr[2..]);
    // Python's nosplit takes the first out-of-band buffer (the pickle before it is under
    // 2048 bytes) and stops before the second one (tcp.py `_add_frames_header`)
    let w = wire("compute_task_buffers");
    assert_eq!(
        w.nosplit as usize,
        8 + 8 * fr.len() + fr[0].len() + fr[1].len() + fr[2].len()
    );
}

// ---------------------------------------------------------------------------------------
// worker -> scheduler: task-finished, task-erred

#[test]
fn task_finished_with_tuple_key() {
    let m = msg("task_finished_tuple_key");
    let t = only_op(&m, "task-finished");
    assert_eq!(
        key(get(t, "key")),
        Key::Tuple(vec![Key::str("tuple-key"), Key::Int(0)].into())
    );
    assert_eq!(
        get(t, "key"),
        &Value::Array(vec!["tuple-key".into(), 0i64.into()])
    );
    assert_eq!(str_of(t, "status"), "OK");
    assert_eq!(int_of(t, "nbytes"), 28);
    assert_eq!(str_of(t, "typename"), "int");
    // `type` is a raw pickle of the result's type (forwarded as key-in-memory.type)
    assert_eq!(
        get(t, "type").as_bin().map(|b| &b[..]),
        Some(&b"\x80\x05\x95\x14\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x03int\x94\x93\x94."[..])
    );
    assert_eq!(map(get(t, "metadata")), &[]);
    assert!(int_of(t, "thread") > 0);
    let ss = arr(get(t, "startstops"));
    assert_eq!(ss.len(), 1);
    assert_eq!(str_of(&ss[0], "action"), "compute");
    assert!(float_of(&ss[0], "stop") >= float_of(&ss[0], "start"));
    assert!(str_of(t, "stimulus_id").starts_with("task-finished-"));
}

/// The `Serialize(pickled exception bytes)` of `task-erred`: serializer "dask", type bytes.
fn assert_error_payload(o: &Opaque, frame: &Bytes) {
    assert_eq!(o.kind, OpaqueKind::Serialized);
    assert_eq!(
        header_keys(o),
        [
            "sub-header",
            "type",
            "type-serialized",
            "serializer",
            "split-num-sub-frames",
            "split-offsets",
            "compression"
        ]
    );
    assert_eq!(header(o, "sub-header"), &Value::Map(vec![]));
    assert_eq!(header(o, "type").as_str(), Some("bytes"));
    assert_eq!(header(o, "serializer").as_str(), Some("dask"));
    assert!(header(o, "type-serialized")
        .as_bin()
        .is_some_and(|b| b.windows(8).any(|w| w == b"builtins")));
    assert_eq!(header(o, "split-num-sub-frames"), &ints(&[1]));
    assert_eq!(header(o, "split-offsets"), &ints(&[0]));
    assert_eq!(header(o, "compression"), &nils(1));
    assert_eq!(o.frames, std::slice::from_ref(frame));
}

#[test]
fn task_erred_from_worker() {
    let m = msg("task_erred");
    let t = only_op(&m, "task-erred");
    let fr = frames("task_erred");
    assert_eq!(fr.len(), 5);
    assert!(str_of(t, "key").starts_with("fail-"));
    assert_eq!(str_of(t, "status"), "error");
    assert_eq!(str_of(t, "exception_text"), "ValueError('boom 1')");
    assert!(str_of(t, "traceback_text").contains("in fail"));
    let exc = opaque(get(t, "exception"));
    assert_error_payload(exc, &fr[2]);
    assert!(exc.frames[0].windows(6).any(|w| w == b"boom 1"));
    assert!(exc.frames[0].windows(10).any(|w| w == b"ValueError"));
    assert_error_payload(opaque(get(t, "traceback")), &fr[4]);
    let ss = arr(get(t, "startstops"));
    assert_eq!(str_of(&ss[0], "action"), "compute");
}

#[test]
fn task_erred_is_forwarded_to_the_client_bit_exactly() {
    let w = msg("task_erred");
    let from_worker = only_op(&w, "task-erred");
    let c = msg("task_erred_to_client");
    let to_client = only_op(&c, "task-erred");
    assert_eq!(get(to_client, "key"), get(from_worker, "key"));
    // the stock scheduler forwards the worker's Serialized payloads unchanged
    assert_eq!(get(to_client, "exception"), get(from_worker, "exception"));
    assert_eq!(get(to_client, "traceback"), get(from_worker, "traceback"));
    let fr = frames("task_erred_to_client");
    assert_eq!(&fr[1..], &frames("task_erred")[1..]);

    // rask building the client message from the worker's message gives the stock bytes
    let built = Value::Array(vec![Value::map([
        ("op", Value::from("task-erred")),
        ("key", get(from_worker, "key").clone()),
        ("exception", get(from_worker, "exception").clone()),
        ("traceback", get(from_worker, "traceback").clone()),
    ])]);
    assert_eq!(encode_message(&built), fr);
}

// ---------------------------------------------------------------------------------------
// data: get_data, gather, scatter

/// A worker-built `Serialize(obj)` with the pickle serializer.
fn assert_pickle_payload(o: &Opaque, nframes: usize) {
    assert_eq!(o.kind, OpaqueKind::Serialized);
    assert_eq!(
        header_keys(o),
        [
            "serializer",
            "writeable",
            "split-num-sub-frames",
            "split-offsets",
            "compression"
        ]
    );
    assert_eq!(header(o, "serializer").as_str(), Some("pickle"));
    assert_eq!(arr(header(o, "writeable")).len(), nframes - 1);
    assert_eq!(header(o, "split-num-sub-frames"), &ints(&vec![1; nframes]));
    let offsets: Vec<i64> = (0..nframes as i64).collect();
    assert_eq!(header(o, "split-offsets"), &ints(&offsets));
    assert_eq!(header(o, "compression"), &nils(nframes));
    assert_eq!(o.frames.len(), nframes);
}

/// `{"status": "OK", "data": {key: Serialized}}` with exactly one entry.
fn single_data(m: &Value) -> (Key, &Opaque) {
    assert_eq!(str_of(m, "status"), "OK");
    let data = map(get(m, "data"));
    assert_eq!(data.len(), 1);
    (key(&data[0].0), opaque(&data[0].1))
}

#[test]
fn get_data_reply() {
    let m = msg("get_data_reply");
    let (k, o) = single_data(&m);
    assert_eq!(
        k,
        Key::Tuple(vec![Key::str("tuple-key"), Key::Int(0)].into())
    );
    assert_pickle_payload(o, 1);
    // The scheduler's outgoing comms negotiate pickle-protocol 4 (see
    // handshake_scheduler_outgoing), so the worker pickles with protocol 4 here.
    assert_eq!(
        o.frames[0],
        &b"\x80\x04K\x06."[..],
        "protocol-4 pickle of 6"
    );
    assert_eq!(o.payload_len(), 5);
}

#[test]
fn get_data_reply_with_out_of_band_buffers() {
    let m = msg("get_data_reply_buffers");
    let (k, o) = single_data(&m);
    assert_tuple_key(&k, "chunk-", &[0]);
    assert_pickle_payload(o, 6);
    assert_eq!(
        header(o, "writeable"),
        &Value::Array(vec![Value::Bool(true); 5])
    );
    assert_eq!(&o.frames[..], &frames("get_data_reply_buffers")[2..]);
    assert!(o.frames[0].windows(6).any(|w| w == b"pandas"));
}

#[test]
fn gather_reply_keyed_by_tuple_key() {
    let m = msg("gather_reply_tuple_key");
    let (k, o) = single_data(&m);
    // the key the client asked for in update-graph's __Set__
    let (_, _, keys) = update_graph("update_graph_dataframe");
    assert_eq!(k, keys[0]);
    assert_pickle_payload(o, 1);
    assert_eq!(o.frames[0], frames("gather_reply_tuple_key")[2]);
}

#[test]
fn update_data_from_scatter() {
    let m = msg("update_data_scatter");
    assert_eq!(str_of(&m, "op"), "update_data");
    assert_eq!(get(&m, "reply"), &Value::Bool(true));
    let data = map(get(&m, "data"));
    assert_eq!(data.len(), 1);
    assert!(matches!(key(&data[0].0), Key::Str(s) if s.starts_with("int-")));
    let o = opaque(&data[0].1);
    assert_pickle_payload(o, 1);
    assert_eq!(o.frames[0], &b"\x80\x05K\n."[..], "pickle of 10");
}
