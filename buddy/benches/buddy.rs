//! Criterion benchmarks of nvirt-buddy beside `buddy_system_allocator`'s
//! `FrameAllocator` on a 4 GiB range: one-frame alloc + free on an empty
//! heap (workload (a) of `nvirt bench buddy`), order-0 churn at 50 % fill,
//! and rebuilding a heap from recorded allocations (recovery) by claiming
//! them. `nvirt bench buddy` runs the full set of workloads and prints
//! ratios.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::hint::black_box;

use buddy_system_allocator::FrameAllocator;
use criterion::{Criterion, criterion_group, criterion_main};
use nvirt_buddy::{Constraints, Heap, MemKind, Mfn, MfnRange, Order, metadata_bytes};

const BASE: u64 = 0x10_0000;
const FRAMES: u64 = 0x10_0000;

fn span() -> MfnRange {
    MfnRange::from_numbers(BASE, BASE + FRAMES).unwrap()
}

/// A deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn new_heap(metadata: &mut [u8]) -> Heap<'_> {
    let mut heap = Heap::new(MemKind::Volatile, span(), Order::MAX, metadata).unwrap();
    heap.add(span()).unwrap();
    heap
}

fn new_peer() -> FrameAllocator<19> {
    let mut peer = FrameAllocator::<19>::new();
    peer.add_frame(BASE as usize, (BASE + FRAMES) as usize);
    peer
}

fn alloc_free_empty(c: &mut Criterion) {
    let mut metadata = vec![0u8; metadata_bytes(span(), Order::MAX) + 8];
    let mut group = c.benchmark_group("alloc_free_empty");
    let mut heap = new_heap(&mut metadata);
    group.bench_function("nvirt", |b| {
        b.iter(|| {
            let block = heap.alloc(Order::SIZE_4K, Constraints::ANY).unwrap();
            heap.free_block(black_box(block)).unwrap();
        });
    });
    let mut peer = new_peer();
    group.bench_function("peer", |b| {
        b.iter(|| {
            let p = peer.alloc(1).unwrap();
            peer.dealloc(black_box(p), 1);
        });
    });
    group.finish();
}

fn churn_half_full(c: &mut Criterion) {
    let mut metadata = vec![0u8; metadata_bytes(span(), Order::MAX) + 8];
    let mut group = c.benchmark_group("churn_order0_half_full");
    let mut heap = new_heap(&mut metadata);
    let mut frames: Vec<Mfn> = (0..FRAMES / 2)
        .map(|_| {
            heap.alloc(Order::SIZE_4K, Constraints::ANY)
                .unwrap()
                .start()
        })
        .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    group.bench_function("nvirt", |b| {
        b.iter(|| {
            let i = rng.below(frames.len());
            heap.free(frames[i], Order::SIZE_4K).unwrap();
            frames[i] = heap
                .alloc(Order::SIZE_4K, Constraints::ANY)
                .unwrap()
                .start();
        });
    });
    let mut peer = new_peer();
    let mut frames: Vec<usize> = (0..FRAMES / 2).map(|_| peer.alloc(1).unwrap()).collect();
    group.bench_function("peer", |b| {
        b.iter(|| {
            let i = rng.below(frames.len());
            peer.dealloc(frames[i], 1);
            frames[i] = peer.alloc(1).unwrap();
        });
    });
    group.finish();
}

/// Recovery: 4096 blocks of mixed orders, recorded by address, claimed
/// again in a fresh heap (the peer's equivalent is `alloc_at`).
fn rebuild_by_claims(c: &mut Criterion) {
    let mut metadata = vec![0u8; metadata_bytes(span(), Order::MAX) + 8];
    let mut log = Vec::new();
    {
        let mut heap = new_heap(&mut metadata);
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..4096 {
            let order = Order::new([0, 0, 0, 1, 2, 9][rng.below(6)]).unwrap();
            log.push(heap.alloc(order, Constraints::ANY).unwrap());
        }
    }
    let mut group = c.benchmark_group("rebuild_4096_claims");
    group.bench_function("nvirt", |b| {
        b.iter(|| {
            let mut heap = new_heap(&mut metadata);
            for block in &log {
                heap.claim(block.start(), block.order()).unwrap();
            }
            black_box(heap.free_frames())
        });
    });
    group.bench_function("peer", |b| {
        b.iter(|| {
            let mut peer = new_peer();
            for block in &log {
                let start = block.start().get() as usize;
                peer.alloc_at(start, block.frames() as usize).unwrap();
            }
            black_box(&peer);
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    alloc_free_empty,
    churn_half_full,
    rebuild_by_claims
);
criterion_main!(benches);
