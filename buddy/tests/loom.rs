//! Loom model checking of the shared heap: two threads allocating and
//! freeing through the lock, through per-CPU [`FrameCache`]s, and on a
//! [`ShardedHeap`] (each from its own shard, and from the other's when its
//! own is used up), never hold the same frame at once, and every frame
//! comes back. Run with
//! `RUSTFLAGS="--cfg loom" cargo test --release -p nvirt-buddy --test loom`.

#![cfg(loom)]
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use nvirt_buddy::{
    Constraints, FrameCache, Heap, LockedHeap, MemKind, Mfn, MfnRange, Order, ShardedHeap,
    metadata_bytes,
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
