//! A graph helper's `update_graph` messages (chunks and final reply) through what the
//! server does with them: `streams::add_records` (records -> tasks, `translate::new_task`,
//! `OrderInfo::of`) and `ordering::assign` (rask-order). No panic, no unbounded allocation,
//! bad records become an error. Input format: `rask_fuzz::helper::messages`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rask_fuzz::helper::process(rask_fuzz::helper::messages(data));
});
