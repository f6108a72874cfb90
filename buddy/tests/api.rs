//! Scenarios of the public API: the errors a hypervisor meets, zones, the
//! two-heap manager, recovery by claims, metadata size.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use nvirt_buddy::{
    AddError, AllocError, BlockError, ClaimError, Constraints, FrameCache, FrameState, FreeError,
    Heap, Heaps, HeapsAddError, LockedHeap, MemKind, Mfn, MfnRange, NewError, Order, ReserveError,
    Zone, metadata_bytes,
};

fn range(s: u64, e: u64) -> MfnRange {
    MfnRange::from_numbers(s, e).unwrap()
}

fn pfn(n: u64) -> Mfn {
    Mfn::new(n).unwrap()
}

fn order(n: u8) -> Order {
    Order::new(n).unwrap()
}

#[test]
fn metadata_is_under_four_bits_per_frame() {
    // Each order's bitmap takes at least a word: tiny heaps pay more.
    for frames in [1u64 << 16, 1 << 20, 1 << 28, 3 << 29] {
        let bytes = metadata_bytes(range(1 << 28, (1 << 28) + frames), Order::MAX);
        let bits = bytes as f64 * 8.0 / frames as f64;
        assert!(bits <= 4.0, "{bits} bits per frame for {frames} frames");
    }
    let bytes = metadata_bytes(range(0, 1 << 20), Order::MAX);
    assert!(bytes * 8 < (1 << 20) * 36 / 10);
    let span = range(0, 100);
    let mut small = vec![0u8; 16];
    let err = Heap::new(MemKind::Volatile, span, Order::MAX, &mut small).unwrap_err();
    assert!(matches!(err, NewError::TooSmall { .. }));
    let mut buf = vec![0u8; 64];
    assert_eq!(
        Heap::new(MemKind::Volatile, range(5, 5), Order::MAX, &mut buf).unwrap_err(),
        NewError::EmptySpan
    );
}

#[test]
fn unaligned_metadata_buffers_work() {
    let span = range(0, 1000);
    let mut buf = vec![0u8; metadata_bytes(span, Order::MAX) + 8];
    let mut heap = Heap::new(MemKind::Volatile, span, Order::MAX, &mut buf[1..]).unwrap();
    heap.add(span).unwrap();
    assert_eq!(heap.free_frames(), 1000);
    heap.check_invariants().unwrap();
}

#[test]
fn every_misuse_is_a_typed_error_and_changes_nothing() {
    let span = range(0x100, 0x300);
    let mut buf = vec![0u8; metadata_bytes(span, order(9)) + 8];
    let mut heap = Heap::new(MemKind::NonVolatile, span, order(9), &mut buf).unwrap();
    heap.add(range(0x100, 0x280)).unwrap();
    assert_eq!(
        heap.add(range(0x27f, 0x281)),
        Err(AddError::AlreadyManaged { pfn: pfn(0x27f) })
    );
    assert!(matches!(
        heap.add(range(0x2f0, 0x310)),
        Err(AddError::OutsideSpan { .. })
    ));
    let before = heap.stats();

    let b = heap.alloc(order(3), Constraints::ANY).unwrap();
    assert_eq!(
        heap.free(b.start(), order(2)),
        Err(FreeError::WrongOrder {
            block: nvirt_buddy::Block::new(b.start(), order(2)).unwrap(),
            allocated: order(3),
        })
    );
    let larger = heap.free(b.start(), order(4)).unwrap_err();
    if b.start().is_aligned(order(4)) {
        assert!(matches!(larger, FreeError::WrongOrder { allocated, .. } if allocated == order(3)));
    } else {
        assert_eq!(
            larger,
            FreeError::Invalid(BlockError::Misaligned {
                pfn: b.start(),
                order: order(4)
            })
        );
    }
    assert_eq!(
        heap.free(b.start().checked_add(1).unwrap(), order(0)),
        Err(FreeError::NotBlockStart {
            pfn: b.start().checked_add(1).unwrap()
        })
    );
    assert_eq!(
        heap.free(pfn(0x290), order(0)),
        Err(FreeError::NotManaged { pfn: pfn(0x290) })
    );
    assert!(matches!(
        heap.free(pfn(0x300), order(0)),
        Err(FreeError::Invalid(BlockError::OutsideSpan { .. }))
    ));
    assert_eq!(
        heap.free(b.start(), order(10)),
        Err(FreeError::Invalid(BlockError::OrderTooLarge {
            order: order(10),
            max: order(9)
        }))
    );
    heap.free_block(b).unwrap();
    assert_eq!(
        heap.free_block(b),
        Err(FreeError::AlreadyFree { pfn: b.start() })
    );
    assert_eq!(heap.stats(), before);
    heap.check_invariants().unwrap();
    assert_eq!(
        heap.alloc(order(10), Constraints::ANY),
        Err(AllocError::OrderTooLarge {
            order: order(10),
            max: order(9)
        })
    );
}

#[test]
fn zones_limit_allocations_and_low_memory_goes_last() {
    // 8 GiB from 0 with frame 0 free: the block at frame 0 spans zones.
    let span = range(0, 0x20_0000);
    let mut buf = vec![0u8; metadata_bytes(span, Order::MAX) + 8];
    let mut heap = Heap::new(MemKind::Volatile, span, Order::MAX, &mut buf).unwrap();
    heap.add(span).unwrap();
    let high = heap.alloc(Order::SIZE_2M, Constraints::ANY).unwrap();
    assert!(high.start().get() >= 0x10_0000, "top-down: {high}");
    let dma = heap
        .alloc(Order::SIZE_2M, Constraints::max_address_bits(32))
        .unwrap();
    assert!(dma.end().get() <= 0x10_0000);
    // Below 1 MiB (zone 8) the only free memory is inside the 1 GiB block
    // at frame 0, which reaches far above: it is split for it.
    let low = heap
        .alloc(Order::SIZE_4K, Constraints::max_zone(Zone::new(8).unwrap()))
        .unwrap();
    assert_eq!(low.start(), pfn(0xff));
    assert_eq!(
        heap.alloc(order(9), Constraints::max_zone(Zone::new(8).unwrap())),
        Err(AllocError::OutOfMemory {
            order: order(9),
            constraints: Constraints::max_zone(Zone::new(8).unwrap())
        })
    );
    assert_eq!(heap.free_frames_in_zone(Zone::new(0).unwrap()), 1);
    assert_eq!(heap.free_frames_in_zone(Zone::new(8).unwrap()), 127);
    let total: u64 = (0..=Zone::MAX.get())
        .map(|z| heap.free_frames_in_zone(Zone::new(z).unwrap()))
        .sum();
    assert_eq!(total, heap.free_frames());
    heap.check_invariants().unwrap();
}

#[test]
fn alloc_at_most_prefers_the_largest_block() {
    let span = range(0, 0x1000);
    let mut buf = vec![0u8; metadata_bytes(span, Order::MAX) + 8];
    let mut heap = Heap::new(MemKind::NonVolatile, span, Order::MAX, &mut buf).unwrap();
    heap.add(range(0x200, 0x200 + 0x200 + 0x40 + 3)).unwrap();
    let sizes: Vec<u8> =
        std::iter::from_fn(|| heap.alloc_at_most(Order::SIZE_2M, Constraints::ANY).ok())
            .map(|b| b.order().get())
            .collect();
    assert_eq!(sizes, [9, 6, 1, 0]);
    assert_eq!(heap.free_frames(), 0);
}

#[test]
fn recovery_claims_arbitrary_blocks_and_ranges() {
    let span = range(0x4_0000, 0xc_0000);
    let mut buf = vec![0u8; metadata_bytes(span, Order::MAX) + 8];
    let mut heap = Heap::new(MemKind::NonVolatile, span, Order::MAX, &mut buf).unwrap();
    heap.add(span).unwrap();
    let log = [(0x4_0003, 0), (0x7_fe00, 9), (0x8_0000, 18), (0x4_0010, 4)];
    for (p, o) in log {
        heap.claim(pfn(p), order(o)).unwrap();
    }
    assert_eq!(
        heap.claim(pfn(0x4_0003), order(0)),
        Err(ClaimError::NotFree { pfn: pfn(0x4_0003) })
    );
    assert_eq!(
        heap.claim(pfn(0x4_0000), order(2)),
        Err(ClaimError::NotFree { pfn: pfn(0x4_0003) })
    );
    assert_eq!(heap.claim_range(range(0x4_0100, 0x4_0105)).unwrap(), 2);
    assert_eq!(heap.frame_state(pfn(0x4_0104)), FrameState::Allocated);
    heap.free_range(range(0x4_0100, 0x4_0105)).unwrap();
    let allocated: u64 = log.iter().map(|&(_, o)| 1u64 << o).sum();
    assert_eq!(heap.allocated_frames(), allocated);
    for (p, o) in log {
        heap.free(pfn(p), order(o)).unwrap();
    }
    assert_eq!(heap.free_blocks(Order::MAX), 2);
    heap.check_invariants().unwrap();
}

#[test]
fn reserve_removes_free_frames_for_good() {
    let span = range(0, 0x400);
    let mut buf = vec![0u8; metadata_bytes(span, order(9)) + 8];
    let mut heap = Heap::new(MemKind::Volatile, span, order(9), &mut buf).unwrap();
    heap.add(range(0, 0x300)).unwrap();
    let b = heap.alloc(order(0), Constraints::ANY).unwrap();
    assert_eq!(
        heap.reserve(range(0x100, 0x380)),
        Err(ReserveError::Allocated { pfn: b.start() })
    );
    heap.free_block(b).unwrap();
    assert_eq!(heap.reserve(range(0x101, 0x380)).unwrap(), 0x1ff);
    assert_eq!(heap.managed_frames(), 0x101);
    assert_eq!(heap.kind_of(pfn(0x101)), None);
    assert_eq!(heap.kind_of(pfn(0x100)), Some(MemKind::Volatile));
    heap.check_invariants().unwrap();
    heap.add(range(0x101, 0x200)).unwrap();
    heap.check_invariants().unwrap();
}

#[test]
fn two_heaps_share_one_interface() {
    // RAM at 0..16 GiB with NVRAM interleaved at 4..8 GiB.
    let v_span = range(0, 0x40_0000);
    let n_span = range(0x10_0000, 0x20_0000);
    let mut v_buf = vec![0u8; metadata_bytes(v_span, Order::MAX) + 8];
    let mut n_buf = vec![0u8; metadata_bytes(n_span, Order::MAX) + 8];
    let mut heaps = Heaps::new((v_span, &mut v_buf), (n_span, &mut n_buf), Order::MAX).unwrap();
    heaps
        .add(MemKind::Volatile, range(0x100, 0x10_0000))
        .unwrap();
    heaps
        .add(MemKind::Volatile, range(0x20_0000, 0x40_0000))
        .unwrap();
    heaps
        .add(MemKind::NonVolatile, range(0x10_0000, 0x20_0000))
        .unwrap();
    assert_eq!(
        heaps.add(MemKind::NonVolatile, range(0xf_ffff, 0x10_0001)),
        Err(HeapsAddError::OtherKind {
            pfn: pfn(0xf_ffff),
            kind: MemKind::Volatile
        })
    );
    let nv = heaps
        .alloc(MemKind::NonVolatile, Order::SIZE_1G, Constraints::ANY)
        .unwrap();
    let v = heaps
        .alloc(MemKind::Volatile, Order::SIZE_2M, Constraints::ANY)
        .unwrap();
    assert_eq!(heaps.kind_of(nv.start()), Some(MemKind::NonVolatile));
    assert_eq!(heaps.kind_of(v.start()), Some(MemKind::Volatile));
    assert_eq!(heaps.kind_of(pfn(0x50)), None);
    assert_eq!(heaps.free(nv.start(), nv.order()), Ok(MemKind::NonVolatile));
    assert_eq!(heaps.free(v.start(), v.order()), Ok(MemKind::Volatile));
    assert_eq!(
        heaps.free(pfn(0x50), Order::SIZE_4K),
        Err(FreeError::NotManaged { pfn: pfn(0x50) })
    );
    let (kind, claimed) = heaps.claim(pfn(0x10_0200), Order::SIZE_2M).unwrap();
    assert_eq!(
        (kind, claimed.start()),
        (MemKind::NonVolatile, pfn(0x10_0200))
    );
    let (v_heap, n_heap) = heaps.into_heaps();
    v_heap.check_invariants().unwrap();
    n_heap.check_invariants().unwrap();
    assert_eq!(n_heap.allocated_frames(), 512);
    // Pairing refuses heaps that share a frame.
    let heaps = Heaps::from_heaps(v_heap, n_heap);
    assert!(heaps.is_ok());
}

#[test]
fn free_blocks_iterate_and_count() {
    let span = range(3, 40);
    let mut buf = vec![0u8; metadata_bytes(span, order(4)) + 8];
    let mut heap = Heap::new(MemKind::Volatile, span, order(4), &mut buf).unwrap();
    heap.add(span).unwrap();
    let blocks: Vec<(u64, u8)> = heap
        .free_blocks_iter()
        .map(|b| (b.start().get(), b.order().get()))
        .collect();
    assert_eq!(blocks, [(3, 0), (4, 2), (8, 3), (32, 3), (16, 4)]);
    let stats = heap.stats();
    assert_eq!(stats.free_frames, 37);
    assert_eq!(stats.free_frames_at_least(order(3)), 32);
    assert_eq!(heap.free_blocks(order(3)), 2);
    assert_eq!(
        heap.free_block_at(pfn(20)).map(|b| b.start()),
        Some(pfn(16))
    );
}

/// (Under `--cfg loom` the lock is loom's, usable only inside a loom model:
/// `tests/loom.rs` covers caches there.)
#[cfg(not(loom))]
#[test]
fn frame_caches_batch_and_check_frees() {
    let span = range(0x1000, 0x1100);
    let mut buf = vec![0u8; metadata_bytes(span, Order::MAX) + 8];
    let mut heap = Heap::new(MemKind::Volatile, span, Order::MAX, &mut buf).unwrap();
    heap.add(span).unwrap();
    let locked = LockedHeap::new(heap);
    let mut cache = FrameCache::<8>::new(&locked);
    let a = cache.alloc(&locked).unwrap();
    // The refill took half the capacity from the heap at once.
    assert_eq!(cache.len(), 3);
    assert_eq!(locked.free_frames(), 0x100 - 4);
    cache.free(&locked, a).unwrap();
    assert_eq!(
        cache.free(&locked, a),
        Err(FreeError::AlreadyFree { pfn: a })
    );
    assert_eq!(
        cache.free(&locked, pfn(0x2000)),
        Err(FreeError::NotManaged { pfn: pfn(0x2000) })
    );
    // A frame the heap never handed out is refused when it is flushed.
    let bogus = pfn(0x1000);
    assert_eq!(locked.lock().frame_state(bogus), FrameState::Free);
    cache.free(&locked, bogus).unwrap();
    assert_eq!(
        cache.drain(&locked),
        Err(FreeError::AlreadyFree { pfn: bogus })
    );
    assert!(cache.is_empty());
    assert_eq!(locked.free_frames(), 0x100);
    locked.lock().check_invariants().unwrap();
    // A cache of no frames goes straight to the heap.
    let mut none = FrameCache::<0>::new(&locked);
    let b = none.alloc(&locked).unwrap();
    none.free(&locked, b).unwrap();
    assert_eq!(locked.free_frames(), 0x100);
}

/// A frame freed next to a free buddy stays a block of its own until an
/// operation other than a one-frame allocation needs the merge; it is the
/// next one-frame allocation, and no larger allocation fails for it.
#[test]
fn merging_a_freed_frame_waits_for_the_next_operation_that_needs_it() {
    let span = range(0x2000, 0x2010);
    let mut buf = vec![0u8; metadata_bytes(span, order(4)) + 8];
    let mut heap = Heap::new(MemKind::Volatile, span, order(4), &mut buf).unwrap();
    heap.add(span).unwrap();
    let a = heap.alloc(Order::SIZE_4K, Constraints::ANY).unwrap();
    assert_eq!(a.start(), pfn(0x200f));
    heap.free_block(a).unwrap();
    // Not merged yet: the frame and its buddy are both order-0 blocks.
    assert_eq!(heap.free_blocks(Order::SIZE_4K), 2);
    assert_eq!(heap.free_frames(), 0x10);
    heap.check_invariants().unwrap();
    // Still a wrong free of the frame is refused.
    assert_eq!(
        heap.free(a.start(), Order::SIZE_4K),
        Err(FreeError::AlreadyFree { pfn: a.start() })
    );
    // That free merged it: one block of order 4.
    assert_eq!(heap.free_blocks(Order::SIZE_4K), 0);
    assert_eq!(heap.free_blocks(order(4)), 1);
    // The next one-frame allocation takes the deferred frame again.
    let b = heap.alloc(Order::SIZE_4K, Constraints::ANY).unwrap();
    heap.free_block(b).unwrap();
    let c = heap.alloc(Order::SIZE_4K, Constraints::ANY).unwrap();
    assert_eq!(c, b);
    heap.free_block(c).unwrap();
    // A whole-heap allocation merges first and succeeds.
    let all = heap.alloc(order(4), Constraints::ANY).unwrap();
    assert_eq!(all.start(), pfn(0x2000));
    heap.free_block(all).unwrap();
    heap.check_invariants().unwrap();
}

/// (Under `--cfg loom` the locks are loom's: `tests/loom.rs` covers shards
/// there.)
#[cfg(not(loom))]
#[test]
fn sharded_heaps_route_by_address_and_fall_back_to_other_shards() {
    use nvirt_buddy::ShardedHeap;
    // 4 blocks of order 4 from 0x1008 (aligned down to 0x1000): two shards
    // of 32 frames, the first starting at the span's first frame.
    let span = range(0x1008, 0x1040);
    let max = order(4);
    let bytes = ShardedHeap::<2>::metadata_bytes(span, max);
    assert_eq!(
        bytes,
        metadata_bytes(range(0x1008, 0x1020), max) + metadata_bytes(range(0x1020, 0x1040), max)
    );
    let mut small = vec![0u8; bytes];
    assert!(matches!(
        ShardedHeap::<2>::new(MemKind::Volatile, span, max, &mut small[1..]),
        Err(NewError::TooSmall { .. })
    ));
    let mut buf = vec![0u8; bytes + 8];
    let heap = ShardedHeap::<2>::new(MemKind::Volatile, span, max, &mut buf).unwrap();
    assert_eq!(heap.shards().len(), 2);
    heap.add(range(0x1010, 0x1040)).unwrap();
    // All or nothing: 0x1030 is managed already, so 0x1008.. stays out.
    assert_eq!(
        heap.add(range(0x1008, 0x1038)),
        Err(AddError::AlreadyManaged { pfn: pfn(0x1010) })
    );
    assert_eq!(heap.free_frames(), 0x30);
    // CPU 0's shard holds 0x1010..0x1020 (16 frames), CPU 1's 32 frames.
    let a = heap.alloc(0, order(4), Constraints::ANY).unwrap();
    assert_eq!(a.start(), pfn(0x1010));
    let b = heap.alloc(1, order(4), Constraints::ANY).unwrap();
    assert_eq!(b.start(), pfn(0x1030));
    // CPU 0's shard is empty: the allocation comes from CPU 1's.
    let c = heap.alloc(2, order(4), Constraints::ANY).unwrap();
    assert_eq!(c.start(), pfn(0x1020));
    assert_eq!(
        heap.alloc(0, Order::SIZE_4K, Constraints::ANY),
        Err(AllocError::OutOfMemory {
            order: Order::SIZE_4K,
            constraints: Constraints::ANY
        })
    );
    assert_eq!(
        heap.alloc(0, order(5), Constraints::ANY),
        Err(AllocError::OrderTooLarge {
            order: order(5),
            max
        })
    );
    // Frees go to the shard that holds the frame, with the heap's checks.
    assert_eq!(
        heap.free(c.start(), Order::SIZE_4K),
        Err(FreeError::WrongOrder {
            block: nvirt_buddy::Block::new(c.start(), Order::SIZE_4K).unwrap(),
            allocated: order(4)
        })
    );
    assert_eq!(
        heap.free(pfn(0x2000), Order::SIZE_4K),
        Err(FreeError::NotManaged { pfn: pfn(0x2000) })
    );
    for block in [a, b, c] {
        heap.free_block(block).unwrap();
    }
    assert_eq!(
        heap.claim(pfn(0x1030), order(3)).unwrap().start(),
        pfn(0x1030)
    );
    heap.free(pfn(0x1030), order(3)).unwrap();
    assert_eq!(heap.free_frames(), 0x30);
    for shard in heap.shards().iter().flatten() {
        shard.lock().check_invariants().unwrap();
    }
}
