//! Loom model checking of the shared heap: two threads allocating and
//! freeing through the lock, through per-CPU [`FrameCache`]s, on a
//! [`ShardedHeap`] (each from its own shard, and from the other's when its
//! own is used up), and on a [`PerCpuHeap`] (from their reservations,
//! freeing into each other's, handing reservations back while the other
//! frees into them, and draining the other's reservation when the heap
//! runs dry), never hold the same frame at once, and every frame comes
//! back. Run with
//! `RUSTFLAGS="--cfg loom" cargo test --release -p nvirt-buddy --test loom`.

#![cfg(loom)]
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use nvirt_buddy::{
    Constraints, FrameCache, Heap, LockedHeap, MemKind, Mfn, MfnRange, Order, PerCpuHeap,
    ShardedHeap, metadata_bytes,
};

const FRAMES: u64 = 8;

/// A heap of 8 frames at frame 16 (metadata leaked: loom closures are
/// `'static`), and one ownership flag per frame.
fn setup() -> (Arc<LockedHeap<'static>>, Arc<Vec<AtomicBool>>) {
    let span = MfnRange::from_numbers(16, 16 + FRAMES).unwrap();
    let metadata =
        Box::leak(vec![0u8; metadata_bytes(span, Order::new(3).unwrap()) + 8].into_boxed_slice());
    let mut heap = Heap::new(MemKind::NonVolatile, span, Order::new(3).unwrap(), metadata).unwrap();
    heap.add(span).unwrap();
    let owned = (0..FRAMES).map(|_| AtomicBool::new(false)).collect();
    (Arc::new(LockedHeap::new(heap)), Arc::new(owned))
}

fn take(owned: &[AtomicBool], pfn: Mfn, frames: u64) {
    for f in pfn.get()..pfn.get() + frames {
        let was = owned[(f - 16) as usize].swap(true, Ordering::SeqCst);
        assert!(!was, "frame {f:#x} handed out twice");
    }
}

fn give(owned: &[AtomicBool], pfn: Mfn, frames: u64) {
    for f in pfn.get()..pfn.get() + frames {
        owned[(f - 16) as usize].store(false, Ordering::SeqCst);
    }
}

fn finish(heap: Arc<LockedHeap<'static>>) {
    let mut heap = Arc::try_unwrap(heap).ok().unwrap().into_inner();
    assert_eq!(heap.free_frames(), FRAMES);
    heap.check_invariants().unwrap();
    // Everything is free again: any free now is a double free.
    assert!(heap.free(Mfn::new(16).unwrap(), Order::SIZE_4K).is_err());
}

#[test]
fn locked_heap_two_threads() {
    loom::model(|| {
        let (heap, owned) = setup();
        let workers: Vec<_> = [Order::SIZE_4K, Order::new(1).unwrap()]
            .into_iter()
            .map(|order| {
                let (heap, owned) = (heap.clone(), owned.clone());
                thread::spawn(move || {
                    let a = heap.alloc(order, Constraints::ANY).unwrap();
                    take(&owned, a.start(), a.frames());
                    let b = heap
                        .alloc_at_most(Order::new(2).unwrap(), Constraints::ANY)
                        .unwrap();
                    take(&owned, b.start(), b.frames());
                    give(&owned, a.start(), a.frames());
                    heap.free_block(a).unwrap();
                    give(&owned, b.start(), b.frames());
                    heap.free_block(b).unwrap();
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        finish(heap);
    });
}

#[test]
fn frame_caches_two_threads() {
    loom::model(|| {
        let (heap, owned) = setup();
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (heap, owned) = (heap.clone(), owned.clone());
                thread::spawn(move || {
                    let mut cache = FrameCache::<2>::new(&heap);
                    let mut held = Vec::new();
                    for _ in 0..3 {
                        let p = cache.alloc(&heap).unwrap();
                        take(&owned, p, 1);
                        held.push(p);
                    }
                    for p in held {
                        give(&owned, p, 1);
                        cache.free(&heap, p).unwrap();
                    }
                    cache.drain(&heap).unwrap();
                    assert!(cache.is_empty());
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        finish(heap);
    });
}

#[test]
fn sharded_heap_two_threads() {
    loom::model(|| {
        // Two shards of 8 frames, blocks up to order 2.
        let span = MfnRange::from_numbers(16, 16 + 2 * FRAMES).unwrap();
        let max = Order::new(2).unwrap();
        let metadata = Box::leak(
            vec![0u8; ShardedHeap::<2>::metadata_bytes(span, max) + 8].into_boxed_slice(),
        );
        let heap = ShardedHeap::<2>::new(MemKind::Volatile, span, max, metadata).unwrap();
        heap.add(span).unwrap();
        let heap = Arc::new(heap);
        let owned: Arc<Vec<AtomicBool>> =
            Arc::new((0..2 * FRAMES).map(|_| AtomicBool::new(false)).collect());
        let workers: Vec<_> = (0..2)
            .map(|cpu| {
                let (heap, owned) = (heap.clone(), owned.clone());
                thread::spawn(move || {
                    // CPU 0 takes its shard's two order-2 blocks and then
                    // one more, from CPU 1's shard if that has one free.
                    let orders: &[u8] = if cpu == 0 { &[2, 2, 2] } else { &[0, 1] };
                    let mut held = Vec::new();
                    for &o in orders {
                        if let Ok(b) = heap.alloc(cpu, Order::new(o).unwrap(), Constraints::ANY) {
                            take(&owned, b.start(), b.frames());
                            held.push(b);
                        }
                    }
                    // Its own shard always has room for its first two.
                    assert!(held.len() >= 2);
                    for b in held {
                        give(&owned, b.start(), b.frames());
                        heap.free_block(b).unwrap();
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(heap.free_frames(), 2 * FRAMES);
        for shard in heap.shards().iter().flatten() {
            shard.lock().check_invariants().unwrap();
        }
    });
}

/// A [`PerCpuHeap`] of two CPUs over the 8 frames of [`setup`], blocks up
/// to order `max` (so reservations of up to 2^`max` frames).
fn per_cpu_setup(max: u8) -> (Arc<PerCpuHeap<'static, 2>>, Arc<Vec<AtomicBool>>) {
    let span = MfnRange::from_numbers(16, 16 + FRAMES).unwrap();
    let max = Order::new(max).unwrap();
    let metadata = Box::leak(vec![0u8; metadata_bytes(span, max) + 8].into_boxed_slice());
    let mut heap = Heap::new(MemKind::Volatile, span, max, metadata).unwrap();
    heap.add(span).unwrap();
    let owned = (0..FRAMES).map(|_| AtomicBool::new(false)).collect();
    (Arc::new(PerCpuHeap::new(heap)), Arc::new(owned))
}

fn per_cpu_finish(heap: Arc<PerCpuHeap<'static, 2>>) {
    let heap = Arc::try_unwrap(heap).ok().unwrap();
    let front = heap.free_frames();
    let mut heap = heap.into_inner();
    if front != FRAMES || heap.free_frames() != FRAMES {
        let states: Vec<_> = (16..16 + FRAMES)
            .map(|f| heap.frame_state(Mfn::new(f).unwrap()))
            .collect();
        panic!("front {front} heap {} {states:?}", heap.free_frames());
    }
    assert_eq!(heap.free_frames(), FRAMES);
    heap.check_invariants().unwrap();
    assert!(heap.free(Mfn::new(16).unwrap(), Order::SIZE_4K).is_err());
}

/// Each thread allocates from its own reservation, hands one frame to the
/// other thread, which frees it into the first one's reservation while the
/// first may be handing that reservation back (a drain) or using it.
#[test]
fn per_cpu_heap_cross_frees() {
    loom::model(|| {
        // Reservations of 4 frames: the two hold the whole heap.
        let (heap, owned) = per_cpu_setup(2);
        // One mailbox per thread, for the frame it passes on.
        let passed: Arc<[loom::sync::Mutex<Option<Mfn>>; 2]> =
            Arc::new([loom::sync::Mutex::new(None), loom::sync::Mutex::new(None)]);
        let workers: Vec<_> = (0..2)
            .map(|cpu| {
                let (heap, owned, passed) = (heap.clone(), owned.clone(), passed.clone());
                thread::spawn(move || {
                    let a = heap.alloc(cpu, Order::SIZE_4K, Constraints::ANY).unwrap();
                    take(&owned, a.start(), 1);
                    let b = heap.alloc(cpu, Order::SIZE_4K, Constraints::ANY).unwrap();
                    take(&owned, b.start(), 1);
                    // Give `b` to the other thread.
                    *passed[cpu].lock().unwrap() = Some(b.start());
                    give(&owned, a.start(), 1);
                    heap.free_block(a).unwrap();
                    if cpu == 0 {
                        heap.drain(0);
                    }
                    // Free what the other thread passed, if it has yet.
                    let other = passed[1 - cpu].lock().unwrap().take();
                    if let Some(p) = other {
                        give(&owned, p, 1);
                        heap.free(p, Order::SIZE_4K).unwrap();
                        // A second free is refused, wherever the frame is.
                        assert!(heap.free(p, Order::SIZE_4K).is_err());
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        for slot in passed.iter() {
            if let Some(p) = slot.lock().unwrap().take() {
                give(&owned, p, 1);
                heap.free(p, Order::SIZE_4K).unwrap();
            }
        }
        per_cpu_finish(heap);
    });
}

/// Thread 0 reserves the whole heap; thread 1 then finds the heap empty,
/// so its allocation must take the reservation back into the heap (while
/// thread 0 may be allocating from it, or reserving again what the drain
/// returned) instead of failing.
#[test]
fn per_cpu_heap_drains_when_dry() {
    loom::model(|| {
        // One reservation of 8 frames is the whole heap.
        let (heap, owned) = per_cpu_setup(3);
        let h0 = {
            let (heap, owned) = (heap.clone(), owned.clone());
            thread::spawn(move || {
                // One frame at a time: its next allocation may reserve
                // again what thread 1's drain just returned.
                for _ in 0..2 {
                    let a = heap.alloc(0, Order::SIZE_4K, Constraints::ANY).unwrap();
                    take(&owned, a.start(), 1);
                    give(&owned, a.start(), 1);
                    heap.free_block(a).unwrap();
                }
            })
        };
        let h1 = {
            let (heap, owned) = (heap.clone(), owned.clone());
            thread::spawn(move || {
                // Thread 0 holds at most one frame, so a free half of the
                // heap is always there, in the heap or in a reservation.
                let big = heap.alloc(1, Order::new(2).unwrap(), Constraints::ANY);
                let big = big.unwrap();
                take(&owned, big.start(), 4);
                give(&owned, big.start(), 4);
                heap.free_block(big).unwrap();
            })
        };
        h0.join().unwrap();
        h1.join().unwrap();
        per_cpu_finish(heap);
    });
}
