//! `nvirt bench buddy [--quick]`: nvirt-buddy against
//! `buddy_system_allocator::FrameAllocator` (free lists in `BTreeSet`s on
//! the global heap), the frame allocator Rust kernels pick today.
//!
//! Workloads, on a 4 GiB range (1 Mi frames at 4 GiB) unless said:
//! (a) alloc + free of one frame on an empty heap (a buddy heap that merges
//! at once splits and merges through every order; one op = the pair); (b) allocate all frames one at a time;
//! (c) free them in random order; (d) order-0 churn at 50 % fill on a heap
//! fragmented by freeing a random half (each timed part of 40 000 calls,
//! after as many untimed ones, on a freshly fragmented heap, so it stays
//! fragmented while timed; the end of one long churn is printed beside
//! it); (e) churn at 50 % fill with orders
//! 0–9, and with the VM-like mix of orders 0, 9, 18 (90/9/1), each followed
//! by the share of free memory still in blocks of ≥ 2 MiB; (f) adding 1 TiB
//! (256 Mi frames) as one range and as 2 MiB ranges each missing one frame,
//! including creating the allocator (for nvirt: initialising its metadata
//! buffer, which is allocated and faulted in beforehand, as a hypervisor's
//! reserved frames would be); (g) two threads each allocating and freeing
//! order-0 frames on one locked heap, each call taking the lock; the
//! same with a per-CPU [`nvirt_buddy::FrameCache`] of 64 frames per thread
//! in front of the lock; on a [`nvirt_buddy::ShardedHeap`] of two
//! shards, each thread naming its own CPU; and on a
//! [`nvirt_buddy::PerCpuHeap`] of two CPUs, each thread naming its own, so
//! allocating from its own 2 MiB reservation (the peer has none of these;
//! its line is the same). (a)–(d) also print `cached=`: nvirt through a
//! `FrameCache` used by one thread.
//!
//! Single-threaded workloads are timed in the thread's CPU time, so time
//! spent waiting for a CPU on a shared machine does not count; (g) is timed
//! on the wall clock. Timed loops are cut into five parts and each workload
//! reports its fastest part (best of several runs for (b), (c), (d), (f),
//! (g)), so other processes disturb the ratios less. Every line also gives
//! `harness=`, the same loop run on an "allocator" that only hands out
//! numbers, and `ratio_without_harness=`, the ratio of what is left; the
//! mixed churns (e) give the allocations each side refused, per order
//! (`failed_nvirt=<order>:<refused>/<tried>,…`).
//!
//! The peer's times depend on where its code lands in the binary: with the
//! same instructions (counted under callgrind), its one-frame alloc + free
//! took 300 ns in a build with one codegen unit and 380–970 ns in default
//! builds that differed only in unrelated code, and its frame-by-frame fill
//! 21 ns against 25–48 ns. So `nvirt bench buddy` builds itself again with
//! one codegen unit (in `target/cgu1`) and runs that build.
//!
//! Output: one line per workload, `<workload> nvirt=<ns/op> peer=<ns/op>
//! ratio=<peer/nvirt>` and extra fields, then `metadata bits/frame
//! nvirt=<x> peer=<y>`. Notes on method go to stderr.

use std::hint::black_box;
use std::process::ExitCode;

use buddy_system_allocator::FrameAllocator;
use nvirt_buddy::{Heap, MemKind, MfnRange, Order, metadata_bytes};

use super::buddy_peer::{Alloc, Cached, Harness, Nvirt, Peer, metadata_line, threads};
use super::cpu_time::CpuInstant as Instant;
use super::line;

/// The 4 GiB range: frames 4 GiB .. 8 GiB.
pub(super) const BASE: u64 = 0x10_0000;
pub(super) const FRAMES: u64 = 0x10_0000;

/// A deterministic xorshift64* generator: both allocators see the same
/// random choices.
#[derive(Clone, Debug)]
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }

    pub(super) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

pub(super) fn span() -> MfnRange {
    MfnRange::from_numbers(BASE, BASE + FRAMES).unwrap_or_default()
}

/// How much work each workload does.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sizes {
    pub(super) runs: u32,
    pub(super) pairs: u64,
    pub(super) churn: u64,
    pub(super) thread_ops: u64,
}

pub(crate) fn run(quick: bool) -> Result<ExitCode, String> {
    if let Some(done) = super::in_one_codegen_unit("buddy", quick) {
        return done;
    }
    let sizes = if quick {
        Sizes {
            runs: 2,
            pairs: 50_000,
            churn: 200_000,
            thread_ops: 200_000,
        }
    } else {
        Sizes {
            runs: 5,
            pairs: 200_000,
            churn: 2_000_000,
            thread_ops: 2_000_000,
        }
    };
    eprintln!(
        "nvirt bench buddy: {} mode, peer buddy_system_allocator::FrameAllocator<19> (max order 18)",
        if quick { "quick" } else { "full" }
    );
    let mut metadata = vec![0u8; metadata_bytes(span(), Order::MAX) + 8];

    let nv = alloc_free_pair(&mut Nvirt::new(&mut metadata)?, sizes.pairs);
    let cached = alloc_free_pair(&mut Cached::new(&mut metadata)?, sizes.pairs);
    let peer = alloc_free_pair(&mut Peer::new(), sizes.pairs);
    let harness = alloc_free_pair(&mut Harness::new(), sizes.pairs);
    println!(
        "{}",
        line(
            "a_alloc_free_empty",
            nv,
            peer,
            &with_harness(nv, peer, harness, Some(cached))
        )
    );

    let mut best = [[f64::MAX; 2]; 4];
    let keep = |best: &mut [f64; 2], (b, c): (f64, f64)| {
        best[0] = best[0].min(b);
        best[1] = best[1].min(c);
    };
    for r in 0..sizes.runs {
        let seed = u64::from(r);
        keep(
            &mut best[0],
            fill_then_free(&mut Nvirt::new(&mut metadata)?, seed),
        );
        keep(
            &mut best[1],
            fill_then_free(&mut Cached::new(&mut metadata)?, seed),
        );
        keep(&mut best[2], fill_then_free(&mut Peer::new(), seed));
        keep(&mut best[3], fill_then_free(&mut Harness::new(), seed));
    }
    for (i, name) in ["b_alloc_all", "c_free_random"].into_iter().enumerate() {
        let [nv, cached, peer, harness] = best.map(|b| b[i]);
        let extra = with_harness(nv, peer, harness, Some(cached));
        println!("{}", line(name, nv, peer, &extra));
    }

    let mut best = [f64::MAX; 4];
    for part in 0..sizes.runs.max(3) {
        let seed = u64::from(part);
        let times = [
            churn_fragmented(&mut Nvirt::new(&mut metadata)?, seed),
            churn_fragmented(&mut Cached::new(&mut metadata)?, seed),
            churn_fragmented(&mut Peer::new(), seed),
            churn_fragmented(&mut Harness::new(), seed),
        ];
        for (b, t) in best.iter_mut().zip(times) {
            *b = b.min(t);
        }
    }
    let [nv, cached, peer, harness] = best;
    let nv_late = churn_long(&mut Nvirt::new(&mut metadata)?, sizes.churn);
    let peer_late = churn_long(&mut Peer::new(), sizes.churn);
    let extra = format!(
        "after_{}k_calls_nvirt={nv_late:.1} after_{}k_calls_peer={peer_late:.1} {}",
        sizes.churn / 1000,
        sizes.churn / 1000,
        with_harness(nv, peer, harness, Some(cached))
    );
    println!("{}", line("d_churn_fragmented", nv, peer, &extra));

    for (name, mix) in [("e_mixed_0_9", Mix::Uniform), ("e_vm_0_9_18", Mix::Vm)] {
        let mut heap = Nvirt::new(&mut metadata)?;
        let (nv, nv_large, nv_failed) = churn_mixed(&mut heap, mix, sizes.churn);
        let (peer, peer_large, peer_failed) = churn_mixed(&mut Peer::new(), mix, sizes.churn);
        let (harness, _, _) = churn_mixed(&mut Harness::new(), mix, sizes.churn);
        let extra = format!(
            "large_free_nvirt={:.1}% large_free_peer={:.1}% failed_nvirt={} failed_peer={} {}",
            nv_large * 100.0,
            peer_large * 100.0,
            nv_failed.describe(mix),
            peer_failed.describe(mix),
            with_harness(nv, peer, harness, None)
        );
        println!("{}", line(name, nv, peer, &extra));
    }

    for holes in [false, true] {
        let (nv, peer, harness) = add_tib(holes, if quick { 1 } else { 3 })?;
        let name = if holes {
            "f_add_1tib_holes"
        } else {
            "f_add_1tib"
        };
        let extra = format!(
            "nvirt_ms={:.2} peer_ms={:.2} {}",
            nv / 1e6,
            peer / 1e6,
            with_harness(nv, peer, harness, None)
        );
        println!("{}", line(name, nv, peer, &extra));
    }

    let t = threads(&mut metadata, sizes.thread_ops, sizes.runs)?;
    for (name, nv) in [
        ("g_2_threads_locked", t.locked),
        ("g_2_threads_cpu_caches", t.cached),
        ("g_2_threads_sharded", t.sharded),
        ("g_2_threads_per_cpu", t.per_cpu),
    ] {
        let extra = with_harness(nv, t.peer, t.harness, None);
        println!("{}", line(name, nv, t.peer, &extra));
    }

    println!("{}", metadata_line(&mut metadata, sizes)?);
    Ok(ExitCode::SUCCESS)
}

/// `harness=<ns> ratio_without_harness=<x>` (and `cached=<ns>`, nvirt
/// through a [`nvirt_buddy::FrameCache`], where the workload has it): the
/// workload's own cost, and the ratio of the allocators' shares of the time.
fn with_harness(nv: f64, peer: f64, harness: f64, cached: Option<f64>) -> String {
    let cached = cached.map_or(String::new(), |c| format!("cached={c:.1} "));
    format!(
        "{cached}harness={harness:.1} ratio_without_harness={:.2}",
        (peer - harness) / (nv - harness).max(0.1)
    )
}

/// Parts each timed loop is cut into; a workload reports its fastest part,
/// which keeps other processes on a shared machine out of the ratio.
const PARTS: u64 = 5;

/// (a): ns per alloc + free pair of one frame on an empty heap.
fn alloc_free_pair(heap: &mut impl Alloc, pairs: u64) -> f64 {
    let part = (pairs / PARTS).max(1);
    let mut best = f64::MAX;
    for _ in 0..PARTS {
        let start = Instant::now();
        for _ in 0..part {
            if let Some(p) = heap.alloc(0) {
                heap.free(black_box(p), 0);
            }
        }
        best = best.min(start.elapsed_ns() / part as f64);
    }
    best
}

/// (b) and (c): ns per alloc filling the heap, ns per free emptying it in
/// random order.
fn fill_then_free(heap: &mut impl Alloc, seed: u64) -> (f64, f64) {
    // Written before timing, so page faults stay out of the loop.
    let mut frames = vec![u64::MAX; FRAMES as usize];
    let start = Instant::now();
    for f in &mut frames {
        *f = heap.alloc(0).unwrap_or(u64::MAX);
    }
    let fill = start.elapsed_ns() / frames.len().max(1) as f64;
    assert!(
        frames.iter().all(|&f| f != u64::MAX),
        "every frame allocated"
    );
    Rng::new(0xc0ffee ^ seed).shuffle(&mut frames);
    let start = Instant::now();
    for &p in &frames {
        heap.free(p, 0);
    }
    let free = start.elapsed_ns() / frames.len().max(1) as f64;
    (fill, free)
}

/// Fills the heap with order-0 frames and frees a random half: the
/// fragmented starting point of (d). Returns the allocated frames.
pub(super) fn fragment(heap: &mut impl Alloc, rng: &mut Rng) -> Vec<u64> {
    let mut frames = Vec::with_capacity(FRAMES as usize);
    while let Some(p) = heap.alloc(0) {
        frames.push(p);
    }
    rng.shuffle(&mut frames);
    for p in frames.drain(FRAMES as usize / 2..) {
        heap.free(p, 0);
    }
    frames
}

/// Calls of (d) per timed part, after as many untimed ones that bring the
/// caches to their working state: in all 40 000 frees and as many
/// allocations, which move under 8 % of the 512 Ki allocated frames, so the
/// heap is still the fragmented heap the workload is about when the part
/// ends.
const CHURN_PART: u64 = 40_000;

/// (d): ns per call, freeing a random allocated frame and allocating one,
/// on a heap fragmented by freeing a random half of all frames (`seed`
/// picks the half): [`CHURN_PART`] calls after as many untimed ones, from a
/// freshly fragmented heap. [`run`] times several parts, each on a new
/// heap, and keeps the fastest.
pub(super) fn churn_fragmented(heap: &mut impl Alloc, seed: u64) -> f64 {
    let mut rng = Rng::new(0xd00d ^ seed);
    let mut frames = fragment(heap, &mut rng);
    churn_part(heap, &mut frames, &mut rng, CHURN_PART);
    churn_part(heap, &mut frames, &mut rng, CHURN_PART)
}

/// ns per call of the last [`CHURN_PART`] calls of a churn of `calls`
/// calls like (d)'s. A long churn changes the state the workload is
/// defined by: an allocator that always takes the lowest free frame (the
/// peer) moves every allocation to the bottom of the range within about a
/// million calls, after which it frees and allocates in a compact heap.
/// This used to be the only number (five parts of one 2 M-call churn, the
/// fastest counting), so the full run timed the peer on a heap it had
/// defragmented, and the quick run on a fragmented one; it is now printed
/// beside (d) for what it says about that steady state.
pub(super) fn churn_long(heap: &mut impl Alloc, calls: u64) -> f64 {
    let mut rng = Rng::new(0xd00d);
    let mut frames = fragment(heap, &mut rng);
    churn_part(
        heap,
        &mut frames,
        &mut rng,
        calls.saturating_sub(CHURN_PART),
    );
    churn_part(heap, &mut frames, &mut rng, CHURN_PART)
}

/// `calls` calls of (d)'s churn; ns per call.
fn churn_part(heap: &mut impl Alloc, frames: &mut [u64], rng: &mut Rng, calls: u64) -> f64 {
    let pairs = (calls / 2).max(1);
    let start = Instant::now();
    for _ in 0..pairs {
        let i = rng.below(frames.len());
        heap.free(frames[i], 0);
        if let Some(p) = heap.alloc(0) {
            frames[i] = p;
        }
    }
    start.elapsed_ns() / (2 * pairs) as f64
}

/// The order mixes of (e).
#[derive(Clone, Copy, Debug)]
pub(super) enum Mix {
    /// Orders 0 to 9, equally likely.
    Uniform,
    /// Order 0 90 %, 9 9 %, 18 1 %.
    Vm,
}

impl Mix {
    fn order(self, rng: &mut Rng) -> u8 {
        match self {
            Self::Uniform => rng.below(10) as u8,
            Self::Vm => match rng.below(100) {
                0 => 18,
                1..=9 => 9,
                _ => 0,
            },
        }
    }
}

/// Allocations tried and refused, per order, over an (e) churn.
#[derive(Clone, Debug, Default)]
pub(super) struct Failures {
    tried: [u64; 19],
    failed: [u64; 19],
}

impl Failures {
    fn count(&mut self, order: u8, ok: bool) {
        let o = usize::from(order).min(18);
        self.tried[o] += 1;
        self.failed[o] += u64::from(!ok);
    }

    /// `<order>:<failed>/<tried>` for each order the mix has, comma
    /// separated.
    fn describe(&self, mix: Mix) -> String {
        let orders: &[usize] = match mix {
            Mix::Uniform => &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            Mix::Vm => &[0, 9, 18],
        };
        orders
            .iter()
            .map(|&o| format!("{o}:{}/{}", self.failed[o], self.tried[o]))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// (e): ns per call of a churn that keeps about half the frames allocated,
/// the share of free frames in blocks of order ≥ 9 afterwards, and the
/// allocations refused.
pub(super) fn churn_mixed(heap: &mut impl Alloc, mix: Mix, steps: u64) -> (f64, f64, Failures) {
    let (calls, _, failed) = mixed_state(heap, mix, steps, true);
    let large = heap.large_free_share();
    (calls, large, failed)
}

/// Runs the (e) churn; returns ns per call (if `timed`), the blocks left
/// allocated, and the allocations refused per order (filling and churning).
pub(super) fn mixed_state(
    heap: &mut impl Alloc,
    mix: Mix,
    steps: u64,
    timed: bool,
) -> (f64, Vec<(u64, u8)>, Failures) {
    let mut rng = Rng::new(0xe0e0 ^ matches!(mix, Mix::Vm) as u64);
    let target = FRAMES / 2;
    let mut blocks: Vec<(u64, u8)> = Vec::new();
    let mut allocated = 0;
    let mut failures = Failures::default();
    while allocated < target {
        let o = mix.order(&mut rng);
        let got = heap.alloc(o);
        failures.count(o, got.is_some());
        if let Some(p) = got {
            blocks.push((p, o));
            allocated += 1 << o;
        }
    }
    let part = (steps / PARTS).max(1);
    let mut best = f64::MAX;
    for _ in 0..PARTS {
        let start = Instant::now();
        let mut calls = 0u64;
        for _ in 0..part {
            calls += 1;
            if allocated < target {
                let o = mix.order(&mut rng);
                let got = heap.alloc(o);
                failures.count(o, got.is_some());
                if let Some(p) = got {
                    blocks.push((p, o));
                    allocated += 1 << o;
                    continue;
                }
                calls += 1;
            }
            let i = rng.below(blocks.len());
            let (p, o) = blocks.swap_remove(i);
            heap.free(p, o);
            allocated -= 1 << o;
        }
        if timed {
            best = best.min(start.elapsed_ns() / calls as f64);
        }
    }
    (if timed { best } else { 0.0 }, blocks, failures)
}

/// (f): ns to create an allocator and add 1 TiB, as one range or as 2 MiB
/// ranges each missing its first frame, and the loop over the ranges alone;
/// best of `runs`.
fn add_tib(holes: bool, runs: u32) -> Result<(f64, f64, f64), String> {
    const TIB_BASE: u64 = 1 << 28;
    const TIB: u64 = 1 << 28;
    let span = MfnRange::from_numbers(TIB_BASE, TIB_BASE + TIB).ok_or("bad span")?;
    let mut metadata = vec![0xffu8; metadata_bytes(span, Order::MAX) + 8];
    let ranges: Vec<(u64, u64)> = if holes {
        (0..TIB / 512)
            .map(|i| (TIB_BASE + i * 512 + 1, TIB_BASE + (i + 1) * 512))
            .collect()
    } else {
        vec![(TIB_BASE, TIB_BASE + TIB)]
    };
    let (mut nv, mut peer, mut harness) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..runs {
        let start = Instant::now();
        for &(s, e) in &ranges {
            black_box(MfnRange::from_numbers(s, e).ok_or("bad range")?);
        }
        harness = harness.min(start.elapsed_ns());

        let start = Instant::now();
        let mut heap = Heap::new(MemKind::NonVolatile, span, Order::MAX, &mut metadata)
            .map_err(|e| e.to_string())?;
        for &(s, e) in &ranges {
            let range = MfnRange::from_numbers(s, e).ok_or("bad range")?;
            heap.add(range).map_err(|e| e.to_string())?;
        }
        nv = nv.min(start.elapsed_ns());
        black_box(heap.free_frames());

        let start = Instant::now();
        let mut frames = FrameAllocator::<19>::new();
        for &(s, e) in &ranges {
            frames.add_frame(s as usize, e as usize);
        }
        peer = peer.min(start.elapsed_ns());
        black_box(&frames);
    }
    Ok((nv, peer, harness))
}
