//! A global allocator that aborts on any single allocation above [`MAX_ALLOC`].
//!
//! libFuzzer's `-malloc_limit_mb` needs a sanitizer's malloc hooks, and the targets are built
//! with `--sanitizer none` (stable Rust). Without this, a decoder that trusts a length from
//! its input would only be caught if the allocation were so large that it failed outright;
//! a few hundred MB reserved and never touched would pass unnoticed. Inputs are a few KB, so
//! no honest code path comes near the limit. The abort is a crash to libFuzzer, which saves
//! the input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;

/// Largest single allocation allowed while fuzzing: 64 MiB.
pub const MAX_ALLOC: usize = 64 << 20;

pub struct CappedAlloc;

fn too_big(size: usize) -> ! {
    // no formatting: it could allocate, inside the allocator
    let _ = std::io::stderr().write_all(b"rask-fuzz: single allocation above 64 MiB (");
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = size;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let _ = std::io::stderr().write_all(&digits[i..]);
    let _ = std::io::stderr().write_all(b" bytes): a size taken from the input?\n");
    std::process::abort()
}

// SAFETY: every call is forwarded to `System` unchanged; the only addition is a size check
// that aborts before allocating.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOC {
            too_big(layout.size());
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOC {
            too_big(layout.size());
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOC {
            too_big(new_size);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: CappedAlloc = CappedAlloc;
