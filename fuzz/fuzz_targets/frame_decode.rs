//! Bytes from a socket, in arbitrary reads, through `FrameCodec` (with small limits, or the
//! server's defaults), and every message it yields through `decode_message`. No panic, no
//! buffer grown from what a header merely announces, limits respected, and what decodes
//! round-trips. Input format: `rask_fuzz::FrameInput`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(input) = rask_fuzz::FrameInput::parse(data) {
        rask_fuzz::drive_frames(input);
    }
});
