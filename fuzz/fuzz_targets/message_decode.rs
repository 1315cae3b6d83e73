//! Frames of one message through `decode_message` (payload references, sub-headers,
//! `__Set__` markers) and frame 0 alone through `decode_value`. No panic, and whatever
//! decodes encodes and decodes again to the same thing. Input format:
//! `rask_fuzz::split_message`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(frames) = rask_fuzz::split_message(data) {
        rask_fuzz::check_message(&frames);
        rask_fuzz::check_value(&frames[0]);
    }
});
