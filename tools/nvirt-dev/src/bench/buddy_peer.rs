//! The two allocators behind one small interface for the `buddy` workloads,
//! the two-thread workload (g), and the metadata measurement.

use std::hint::black_box;
use std::time::Instant;

use buddy_system_allocator::{FrameAllocator, LockedFrameAllocator};
use nvirt_buddy::{
    Constraints, FrameCache, Heap, LockedHeap, MemKind, Mfn, Order, PerCpuHeap, ShardedHeap,
    metadata_bytes,
};

use super::alloc_count;
use super::buddy::{FRAMES, Mix, Rng, Sizes, fragment, mixed_state, span};
use super::elapsed_ns;

/// What every workload needs from an allocator: frame numbers and orders as
/// plain numbers, so both sides run the same code.
pub(super) trait Alloc {
    fn alloc(&mut self, order: u8) -> Option<u64>;
    fn free(&mut self, pfn: u64, order: u8);
    /// Share of the free frames that lie in blocks of 2 MiB or more.
    fn large_free_share(&mut self) -> f64;
}

/// nvirt-buddy over the 4 GiB range.
pub(super) struct Nvirt<'m>(Heap<'m>);

impl<'m> Nvirt<'m> {
    pub(super) fn new(metadata: &'m mut [u8]) -> Result<Self, String> {
        let mut heap = Heap::new(MemKind::Volatile, span(), Order::MAX, metadata)
            .map_err(|e| e.to_string())?;
        heap.add(span()).map_err(|e| e.to_string())?;
        Ok(Self(heap))
    }
}

fn order(o: u8) -> Order {
    Order::new(o).unwrap_or(Order::MAX)
}

impl Alloc for Nvirt<'_> {
    #[inline]
    fn alloc(&mut self, o: u8) -> Option<u64> {
        self.0
            .alloc(order(o), Constraints::ANY)
            .ok()
            .map(|b| b.start().get())
    }

    #[inline]
    fn free(&mut self, pfn: u64, o: u8) {
        let p = Mfn::new(pfn).unwrap_or(Mfn::MAX);
        if let Err(e) = self.0.free(p, order(o)) {
            panic!("benchmark freed a block it does not own: {e}");
        }
    }

    fn large_free_share(&mut self) -> f64 {
        let stats = self.0.stats();
        stats.free_frames_at_least(Order::SIZE_2M) as f64 / stats.free_frames.max(1) as f64
    }
}

/// The peer, tracking its free frames (it has no accessor for them).
pub(super) struct Peer {
    inner: FrameAllocator<19>,
    free: u64,
}

impl Peer {
    pub(super) fn new() -> Self {
        let mut inner = FrameAllocator::<19>::new();
        let (start, end) = (span().start().get(), span().end().get());
        inner.add_frame(start as usize, end as usize);
        Self {
            inner,
            free: FRAMES,
        }
    }
}

impl Alloc for Peer {
    #[inline]
    fn alloc(&mut self, o: u8) -> Option<u64> {
        let p = self.inner.alloc(1 << o)?;
        self.free -= 1 << o;
        Some(p as u64)
    }

    #[inline]
    fn free(&mut self, pfn: u64, o: u8) {
        self.inner.dealloc(pfn as usize, 1 << o);
        self.free += 1 << o;
    }

    /// Allocates 2 MiB blocks until none is left: each comes from a free
    /// block of 2 MiB or more, so their total is the memory in such blocks.
    fn large_free_share(&mut self) -> f64 {
        let free = self.free;
        let mut large = 0;
        while self.inner.alloc(512).is_some() {
            large += 512;
        }
        large as f64 / free.max(1) as f64
    }
}

/// No allocator at all: hands out distinct numbers, up to as many frames as
/// the range has, and forgets which were freed. A workload timed with it is
/// its own cost (its loop, random orders and picks, the list of allocated
/// blocks), which every line prints as `harness=` and which bounds any
/// ratio from above.
pub(super) struct Harness {
    next: u64,
    free: u64,
}

impl Harness {
    pub(super) fn new() -> Self {
        Self {
            next: 0,
            free: FRAMES,
        }
    }
}

impl Alloc for Harness {
    #[inline]
    fn alloc(&mut self, o: u8) -> Option<u64> {
        self.free = self.free.checked_sub(1 << o)?;
        self.next = self.next.wrapping_add(1 << o);
        Some(black_box(self.next))
    }

    #[inline]
    fn free(&mut self, pfn: u64, o: u8) {
        black_box(pfn);
        self.free += 1 << o;
    }

    fn large_free_share(&mut self) -> f64 {
        0.0
    }
}

/// nvirt through a per-CPU [`FrameCache`] of 64 frames in front of a
/// [`LockedHeap`], used by one thread: what a free or an allocation of one
/// frame costs a CPU that has a cache. Other orders go to the heap.
pub(super) struct Cached<'m> {
    heap: LockedHeap<'m>,
    cache: FrameCache<64>,
}

impl<'m> Cached<'m> {
    pub(super) fn new(metadata: &'m mut [u8]) -> Result<Self, String> {
        let heap = LockedHeap::new(Nvirt::new(metadata)?.0);
        let cache = FrameCache::new(&heap);
        Ok(Self { heap, cache })
    }
}

impl Alloc for Cached<'_> {
    #[inline]
    fn alloc(&mut self, o: u8) -> Option<u64> {
        if o == 0 {
            self.cache.alloc(&self.heap).ok().map(|p| p.get())
        } else {
            let block = self.heap.alloc(order(o), Constraints::ANY).ok()?;
            Some(block.start().get())
        }
    }

    #[inline]
    fn free(&mut self, pfn: u64, o: u8) {
        let p = Mfn::new(pfn).unwrap_or(Mfn::MAX);
        let freed = if o == 0 {
            self.cache.free(&self.heap, p)
        } else {
            self.heap.free(p, order(o))
        };
        if let Err(e) = freed {
            panic!("benchmark freed a block it does not own: {e}");
        }
    }

    fn large_free_share(&mut self) -> f64 {
        0.0
    }
}

/// What (g) measured, in ns per call.
pub(super) struct Threads {
    pub(super) locked: f64,
    pub(super) cached: f64,
    pub(super) sharded: f64,
    pub(super) per_cpu: f64,
    pub(super) peer: f64,
    pub(super) harness: f64,
}

/// (g): ns per call (wall time over both threads' calls) with two threads
/// each allocating 16 frames and freeing them: nvirt through the lock on
/// every call, nvirt through per-CPU caches, nvirt on a [`ShardedHeap`] of
/// two shards (each thread naming its own CPU), nvirt on a [`PerCpuHeap`]
/// (each thread naming its own CPU, so allocating from its own
/// reservation), and the peer through its lock; best of `runs`.
pub(super) fn threads(
    metadata: &mut [u8],
    ops_per_thread: u64,
    runs: u32,
) -> Result<Threads, String> {
    let mut heap =
        Heap::new(MemKind::Volatile, span(), Order::MAX, metadata).map_err(|e| e.to_string())?;
    heap.add(span()).map_err(|e| e.to_string())?;
    let locked = LockedHeap::new(heap);
    let rounds = ops_per_thread / 32;
    let ops = (2 * rounds * 32) as f64;
    let (mut nv, mut cached, mut pe) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..runs {
        nv = nv.min(two_threads(|| {
            let mut held = [Mfn::MAX; 16];
            for _ in 0..rounds {
                for h in &mut held {
                    *h = locked
                        .alloc(Order::SIZE_4K, Constraints::ANY)
                        .map(|b| b.start())
                        .unwrap_or(Mfn::MAX);
                }
                for &h in &held {
                    black_box(locked.free(h, Order::SIZE_4K).is_ok());
                }
            }
        }));
        cached = cached.min(two_threads(|| {
            let mut cache = FrameCache::<64>::new(&locked);
            let mut held = [Mfn::MAX; 16];
            for _ in 0..rounds {
                for h in &mut held {
                    *h = cache.alloc(&locked).unwrap_or(Mfn::MAX);
                }
                for &h in &held {
                    black_box(cache.free(&locked, h).is_ok());
                }
            }
            black_box(cache.drain(&locked).is_ok());
        }));
    }
    let heap = locked.into_inner();
    if heap.free_frames() != FRAMES {
        return Err("nvirt lost frames in the two-thread runs".into());
    }

    let mut sharded = f64::MAX;
    {
        let bytes = ShardedHeap::<2>::metadata_bytes(span(), Order::MAX);
        let mut buf = vec![0u8; bytes + 8];
        let heap = ShardedHeap::<2>::new(MemKind::Volatile, span(), Order::MAX, &mut buf)
            .map_err(|e| e.to_string())?;
        heap.add(span()).map_err(|e| e.to_string())?;
        let cpu = std::sync::atomic::AtomicUsize::new(0);
        for _ in 0..runs {
            sharded = sharded.min(two_threads(|| {
                let me = cpu.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut held = [Mfn::MAX; 16];
                for _ in 0..rounds {
                    for h in &mut held {
                        *h = heap
                            .alloc(me, Order::SIZE_4K, Constraints::ANY)
                            .map(|b| b.start())
                            .unwrap_or(Mfn::MAX);
                    }
                    for &h in &held {
                        black_box(heap.free(h, Order::SIZE_4K).is_ok());
                    }
                }
            }));
        }
        if heap.free_frames() != FRAMES {
            return Err("nvirt lost frames in the sharded two-thread runs".into());
        }
    }

    let mut per_cpu = f64::MAX;
    {
        let mut heap = Heap::new(MemKind::Volatile, span(), Order::MAX, metadata)
            .map_err(|e| e.to_string())?;
        heap.add(span()).map_err(|e| e.to_string())?;
        let heap = PerCpuHeap::<2>::new(heap);
        let cpu = std::sync::atomic::AtomicUsize::new(0);
        for _ in 0..runs {
            per_cpu = per_cpu.min(two_threads(|| {
                let me = cpu.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut held = [Mfn::MAX; 16];
                for _ in 0..rounds {
                    for h in &mut held {
                        *h = heap
                            .alloc(me, Order::SIZE_4K, Constraints::ANY)
                            .map(|b| b.start())
                            .unwrap_or(Mfn::MAX);
                    }
                    for &h in &held {
                        black_box(heap.free(h, Order::SIZE_4K).is_ok());
                    }
                }
            }));
        }
        if heap.free_frames() != FRAMES || heap.into_inner().free_frames() != FRAMES {
            return Err("nvirt lost frames in the per-CPU two-thread runs".into());
        }
    }

    let peer = LockedFrameAllocator::<19>::new();
    peer.lock()
        .add_frame(span().start().get() as usize, span().end().get() as usize);
    for _ in 0..runs {
        pe = pe.min(two_threads(|| {
            let mut held = [0usize; 16];
            for _ in 0..rounds {
                for h in &mut held {
                    *h = peer.lock().alloc(1).unwrap_or(usize::MAX);
                }
                for &h in &held {
                    peer.lock().dealloc(h, 1);
                }
            }
        }));
    }
    let mut harness = f64::MAX;
    for _ in 0..runs {
        harness = harness.min(two_threads(|| {
            let mut held = [0u64; 16];
            for _ in 0..rounds {
                for (i, h) in held.iter_mut().enumerate() {
                    *h = black_box(i as u64);
                }
                for &h in &held {
                    black_box(h);
                }
            }
        }));
    }
    Ok(Threads {
        locked: nv / ops,
        cached: cached / ops,
        sharded: sharded / ops,
        per_cpu: per_cpu / ops,
        peer: pe / ops,
        harness: harness / ops,
    })
}

/// Wall-clock ns for two threads running `work` at once.
fn two_threads(work: impl Fn() + Sync) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(&work);
        s.spawn(&work);
    });
    elapsed_ns(start.elapsed())
}

/// `metadata bits/frame nvirt=<x> peer=<y>`: nvirt's buffer plus its heap
/// struct; the peer's live heap bytes (counted by the global allocator) plus
/// its struct, at the state (e) with orders 0–9 leaves. Other states go to
/// stderr.
pub(super) fn metadata_line(metadata: &mut [u8], sizes: Sizes) -> Result<String, String> {
    let frames = FRAMES as f64;
    let nvirt_bytes = metadata_bytes(span(), Order::MAX) + size_of::<Heap<'_>>();
    let nvirt = nvirt_bytes as f64 * 8.0 / frames;
    // Our own numbers hold no heap memory: check, to trust the peer's count.
    let (_, ours) = alloc_count::count(|| {
        let mut heap = Nvirt::new(metadata).map(|h| h.0).ok();
        if let Some(h) = heap.as_mut() {
            black_box(h.alloc(Order::SIZE_4K, Constraints::ANY).is_ok());
        }
        heap.map(|h| h.free_frames())
    });
    let peer_struct = size_of::<FrameAllocator<19>>() as u64;
    let mut states = Vec::new();
    let mut measure = |name: &str, build: &dyn Fn(&mut Peer)| {
        let (peer, live) = alloc_count::count(|| {
            let mut peer = Peer::new();
            build(&mut peer);
            peer
        });
        let bits = (live.bytes + peer_struct) as f64 * 8.0 / frames;
        eprintln!(
            "nvirt bench buddy: peer metadata after {name}: {} bytes in {} heap blocks = {bits:.2} bits/frame",
            live.bytes + peer_struct,
            live.blocks
        );
        drop(peer);
        states.push(bits);
    };
    measure("adding the range", &|_| {});
    measure("(d) setup: a random half of all frames freed", &|p| {
        fragment(p, &mut Rng::new(0xd00d));
    });
    measure("(e) orders 0-9 at 50% fill", &|p| {
        mixed_state(p, Mix::Uniform, sizes.churn, false);
    });
    eprintln!(
        "nvirt bench buddy: nvirt metadata: {nvirt_bytes} bytes ({} buffer + {} struct), {} bytes of heap",
        metadata_bytes(span(), Order::MAX),
        size_of::<Heap<'_>>(),
        ours.bytes
    );
    let peer = states.last().copied().unwrap_or(0.0);
    Ok(format!(
        "metadata bits/frame nvirt={nvirt:.2} peer={peer:.2}"
    ))
}
