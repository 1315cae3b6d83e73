//! Shared helpers for the golden and hostile tests: loading the captured wire messages in
//! `tests/data` (see `tests/data/README.md`) and parsing their framing independently of
//! `FrameCodec`.
#![allow(dead_code)]

use bytes::Bytes;
use rask_protocol::Value;

/// Every captured message, one complete wire message per file.
pub const ALL: &[&str] = &[
    "handshake",
    "handshake_scheduler_outgoing",
    "register_worker",
    "register_worker_reply",
    "register_client",
    "stream_start",
    "heartbeat_worker",
    "heartbeat_worker_reply",
    "identity_reply",
    "update_graph_delayed",
    "update_graph_array",
    "update_graph_dataframe",
    "compute_task_tuple_keys",
    "compute_task_buffers",
    "task_finished_tuple_key",
    "task_erred",
    "task_erred_to_client",
    "get_data_reply",
    "get_data_reply_buffers",
    "gather_reply_tuple_key",
    "update_data_scatter",
];

/// Captures whose frame 0 holds a `{"__Set__": True, "as-list": [...]}` marker (rask decodes
/// it to an array, so these cannot re-encode byte-identically).
pub const WITH_SET: &[&str] = &[
    "update_graph_delayed",
    "update_graph_array",
    "update_graph_dataframe",
];

/// Captures whose `nosplit` prefix stops before the end of the message (Python cuts it
/// before out-of-band buffers, `distributed/comm/tcp.py:_add_frames_header`).
pub const PARTIAL_NOSPLIT: &[&str] = &[
    "update_graph_dataframe",
    "compute_task_buffers",
    "get_data_reply_buffers",
];

/// msgpack bytes of the `{"__Set__": True, "as-list": ` prefix that Python writes before
/// the set's items: fixmap(2), fixstr "__Set__", true, fixstr "as-list".
pub const SET_MARKER: &[u8] = b"\x82\xa7__Set__\xc3\xa7as-list";

/// The raw bytes of one capture.
pub fn raw(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}.bin", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// A capture split by hand (not by `FrameCodec`), asserting the layout is consistent.
pub struct Wire {
    /// the complete message
    pub raw: Bytes,
    /// first u64: prelude + the frames Python put in one read
    pub nosplit: u64,
    /// the frames, in order
    pub frames: Vec<Bytes>,
}

impl Wire {
    /// `true` when `nosplit` covers the whole message.
    pub fn nosplit_is_whole(&self) -> bool {
        self.nosplit as usize == self.raw.len() - 8
    }
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Parses a capture with a minimal, independent implementation of the framing.
pub fn wire(name: &str) -> Wire {
    let raw = Bytes::from(raw(name));
    let nosplit = u64_at(&raw, 0);
    let n = u64_at(&raw, 8) as usize;
    let mut off = 16 + 8 * n;
    let mut frames = Vec::with_capacity(n);
    for i in 0..n {
        let len = u64_at(&raw, 16 + 8 * i) as usize;
        frames.push(raw.slice(off..off + len));
        off += len;
    }
    assert_eq!(
        off,
        raw.len(),
        "{name}: frames do not end where the file ends"
    );
    Wire {
        raw,
        nosplit,
        frames,
    }
}

/// The frames of a capture.
pub fn frames(name: &str) -> Vec<Bytes> {
    wire(name).frames
}

/// The decoded message of a capture.
pub fn msg(name: &str) -> Value {
    rask_protocol::decode_message(&frames(name))
        .unwrap_or_else(|e| panic!("{name}: decode_message failed: {e}"))
}

/// A small deterministic PRNG (splitmix64), so the hostile tests need no dependencies and
/// every failure reproduces.
pub struct Rng(pub u64);

impl Rng {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// Index of the first byte where `a` and `b` differ (or the shorter length).
pub fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    if a == b {
        return None;
    }
    Some(
        a.iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len())),
    )
}
