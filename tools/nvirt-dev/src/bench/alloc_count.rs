//! A global allocator that can count the heap bytes live in the process, so
//! `nvirt bench buddy` can measure how much memory the peer allocator's
//! B-trees hold instead of guessing.
//!
//! Counting is off unless switched on, and only ever on for the thread
//! inside [`count`]; checking costs each allocation one thread-local load,
//! so the timed benchmarks run at the system allocator's speed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

/// The system allocator, counting while [`count`] runs.
#[derive(Debug)]
pub(crate) struct Counting;

thread_local! {
    // Const-initialized and without a destructor: reading it never
    // allocates (which would recurse into the allocator) and works until
    // the thread is gone.
    static ENABLED: Cell<bool> = const { Cell::new(false) };
}
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are ours; counting touches only atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if enabled() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which
        // is `System::alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if enabled() {
            LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
            LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
        }
        // SAFETY: `ptr` came from `System` (every allocation goes there) with
        // this layout, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if enabled() {
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        // SAFETY: as for `dealloc`, and the caller upholds `realloc`'s
        // contract on `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Whether this thread is inside [`count`].
fn enabled() -> bool {
    ENABLED.try_with(Cell::get).unwrap_or(false)
}

/// Heap bytes and allocations that `build` leaves live, counting the
/// allocations and frees of this thread while it runs (other threads' do
/// not count; one `count` at a time, as the totals are shared). The value
/// `build` returns is dropped after the count.
pub(crate) fn count<T>(build: impl FnOnce() -> T) -> (T, Live) {
    LIVE_BYTES.store(0, Ordering::Relaxed);
    LIVE_BLOCKS.store(0, Ordering::Relaxed);
    ENABLED.set(true);
    let value = build();
    ENABLED.set(false);
    let live = Live {
        bytes: LIVE_BYTES.load(Ordering::Relaxed).max(0) as u64,
        blocks: LIVE_BLOCKS.load(Ordering::Relaxed).max(0) as u64,
    };
    (value, live)
}

/// What [`count`] measured.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Live {
    /// Bytes requested and not freed (the allocator's own per-block
    /// overhead not included).
    pub(crate) bytes: u64,
    /// Allocations not freed.
    pub(crate) blocks: u64,
}

#[cfg(test)]
mod tests {
    use std::hint::black_box;

    use super::*;

    // The crate's global allocator is `Counting`, so these run through it.
    #[test]
    fn counts_what_the_build_leaves_live() {
        let (kept, live) = count(|| {
            let gone = black_box(vec![1u8; 1000]);
            drop(gone);
            let mut kept = black_box(Vec::<u64>::with_capacity(4));
            kept.extend([1, 2, 3, 4, 5]);
            black_box(kept)
        });
        assert_eq!(kept, [1, 2, 3, 4, 5]);
        assert_eq!(live.blocks, 1);
        assert_eq!(live.bytes, kept.capacity() as u64 * 8);
    }
}
