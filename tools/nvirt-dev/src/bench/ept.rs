//! `nvirt bench ept`: building second-level tables with `nvirt-ept` (NPT
//! format) against the `x86_64` crate's `OffsetPageTable::map_to` (NPT
//! tables are ordinary long-mode tables, so it builds the same thing), fed
//! the same page decomposition, both into host memory in this binary.
//!
//! Workloads, one line each:
//! `<workload> nvirt=<ns/op> peer=<ns/op> ratio=<peer/nvirt> tables=<n> min=<n>`
//! - `identity-1t`: 1 TiB identity map (op = building the whole table set);
//! - `offset2m-64g`: 64 GiB whose host addresses are only 2 MiB-aligned
//!   relative to the guest's (op = whole build);
//! - `pages4k-1g`: 1 GiB of 4 KiB pages (op = whole build);
//! - `protect4k`: 10 000 random 4 KiB permission changes inside a region
//!   mapped by a 1 GiB page (op = one protect; the peer splits large pages
//!   by unmapping and re-mapping them, as its users must).
//!
//! `tables` is the paging-structure count nvirt built, `min` the minimum
//! for the layout, computed here independently of the crate. Each side is
//! timed in alternating batches (rounds for `protect4k`) and the median
//! batch is reported.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use nvirt_ept::host::HostFrames;
use nvirt_ept::{Config, GuestPhysAddr, HostPhysAddr, MemType, Npt, Perms, Tables};
use x86_64::structures::paging::mapper::{MapToError, Mapper, TranslateResult};
use x86_64::structures::paging::{
    FrameAllocator, OffsetPageTable, Page, PageSize, PageTable, PageTableFlags as Flags, PhysFrame,
    Size1GiB, Size2MiB, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

use super::{elapsed_ns, line};

const KIB4: u64 = 1 << 12;
const MIB2: u64 = 1 << 21;
const GIB1: u64 = 1 << 30;

/// Frames each side may use.
const FRAMES: usize = 4096;

/// One mapping to build.
#[derive(Clone, Copy, Debug)]
struct Build {
    name: &'static str,
    gpa: u64,
    hpa: u64,
    len: u64,
    /// Builds per measurement: (quick, full).
    iterations: (u64, u64),
}

const BUILDS: [Build; 3] = [
    Build {
        name: "identity-1t",
        gpa: 0,
        hpa: 0,
        len: 1 << 40,
        iterations: (20_000, 200_000),
    },
    Build {
        name: "offset2m-64g",
        gpa: 0,
        hpa: GIB1 + MIB2,
        len: 64 * GIB1,
        iterations: (400, 4000),
    },
    Build {
        name: "pages4k-1g",
        gpa: GIB1,
        hpa: 4 * GIB1 + KIB4,
        len: GIB1,
        iterations: (40, 400),
    },
];

const PROTECTS: usize = 10_000;

/// Timed batches per workload.
const BATCHES: u64 = 10;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

pub(crate) fn run(quick: bool) -> Result<ExitCode, String> {
    let mut stdout = std::io::stdout().lock();
    for build in BUILDS {
        let text = bench_build(&build, quick)?;
        writeln!(stdout, "{text}").map_err(|e| e.to_string())?;
        stdout.flush().map_err(|e| e.to_string())?;
    }
    let text = bench_protect(quick)?;
    writeln!(stdout, "{text}").map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// The greedy largest-aligned decomposition: what both sides are fed, and
/// what the minimum is computed from.
fn decompose(gpa: u64, hpa: u64, len: u64) -> Vec<(u64, u64, u64)> {
    let mut pages = Vec::new();
    let mut off = 0;
    while off < len {
        let (g, h) = (gpa + off, hpa + off);
        let size = [GIB1, MIB2, KIB4]
            .into_iter()
            .find(|&s| g % s == 0 && h % s == 0 && off + s <= len)
            .unwrap_or(KIB4);
        pages.push((g, h, size));
        off += size;
    }
    pages
}

/// Fewest paging-structure pages for these leaves: the root, one PDPT per
/// 512 GiB region, one PD per 1 GiB region with smaller pages, one PT per
/// 2 MiB region with 4 KiB pages.
fn min_tables(pages: &[(u64, u64)]) -> u64 {
    let regions = |shift: u32, max_size: u64| -> u64 {
        let set: BTreeSet<u64> = pages
            .iter()
            .filter(|&&(_, s)| s <= max_size)
            .map(|&(g, _)| g >> shift)
            .collect();
        set.len() as u64
    };
    1 + regions(39, GIB1) + regions(30, MIB2) + regions(21, KIB4)
}

fn nvirt_build(frames: &mut HostFrames, b: &Build) -> Result<u64, String> {
    frames.reset();
    let f: &HostFrames = frames;
    let mut tables = Tables::new(Npt::new(), f, Config::new().pages_1g(true), &mut &*f)
        .map_err(|e| e.to_string())?;
    let flush = tables
        .map(
            &mut &*f,
            GuestPhysAddr::try_from(b.gpa).map_err(|e| e.to_string())?,
            HostPhysAddr::try_from(b.hpa).map_err(|e| e.to_string())?,
            b.len,
            Perms::RWX,
            MemType::Wb,
        )
        .map_err(|e| format!("{}: {e}", b.name))?;
    black_box(flush.is_needed());
    Ok(tables.table_count())
}

fn bench_build(b: &Build, quick: bool) -> Result<String, String> {
    let iterations = if quick {
        b.iterations.0
    } else {
        b.iterations.1
    };
    let pages = decompose(b.gpa, b.hpa, b.len);
    let min = min_tables(&pages.iter().map(|&(g, _, s)| (g, s)).collect::<Vec<_>>());

    let mut frames = HostFrames::new(
        HostPhysAddr::try_from(1 << 44).map_err(|e| e.to_string())?,
        FRAMES,
    );
    let tables = nvirt_build(&mut frames, b)?;
    let mut peer = PeerArena::new(FRAMES);
    let peer_tables = peer.build(&pages)?;
    // Batches alternate between the two sides; the median batch is
    // reported, so that a burst of load on a shared machine skews neither.
    let per_batch = iterations.div_ceil(BATCHES);
    let (mut nvirt_batches, mut peer_batches) = (Vec::new(), Vec::new());
    for _ in 0..BATCHES {
        let start = Instant::now();
        for _ in 0..per_batch {
            black_box(nvirt_build(&mut frames, b)?);
        }
        nvirt_batches.push(elapsed_ns(start.elapsed()) / per_batch as f64);
        let start = Instant::now();
        for _ in 0..per_batch {
            black_box(peer.build(&pages)?);
        }
        peer_batches.push(elapsed_ns(start.elapsed()) / per_batch as f64);
    }
    let (nvirt_ns, peer_ns) = (median(&mut nvirt_batches), median(&mut peer_batches));
    if peer_tables != tables {
        eprintln!(
            "nvirt bench ept: {}: the peer built {peer_tables} tables",
            b.name
        );
    }
    Ok(line(
        b.name,
        nvirt_ns,
        peer_ns,
        &format!("tables={tables} min={min}"),
    ))
}

/// xorshift64: the same pseudo-random protects for both sides.
fn protects() -> Vec<(u64, usize)> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..PROTECTS)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 20) % (GIB1 / KIB4), (state & 3) as usize)
        })
        .collect()
}

const PERMS: [Perms; 4] = [Perms::READ, Perms::RW, Perms::RX, Perms::RWX];

fn bench_protect(quick: bool) -> Result<String, String> {
    let (gpa, hpa) = (GIB1, 4 * GIB1);
    let ops = protects();
    let rounds = if quick { 10 } else { 100 };

    // Minimum after the protects: the region stays one PD; a PT for each
    // 2 MiB block whose pages ended with different permissions.
    let mut perms = vec![3usize; (GIB1 / KIB4) as usize];
    for &(page, p) in &ops {
        perms[page as usize] = p;
    }
    let mixed = perms
        .chunks(512)
        .filter(|c| c.iter().any(|&p| p != c[0]))
        .count() as u64;
    let uniform = mixed == 0 && perms.chunks(512).all(|c| c[0] == perms[0]);
    let min = if uniform { 2 } else { 3 + mixed };

    let mut frames = HostFrames::new(
        HostPhysAddr::try_from(1 << 44).map_err(|e| e.to_string())?,
        FRAMES * 4,
    );
    let mut peer = PeerArena::new(FRAMES * 4);
    let (mut nvirt_rounds, mut peer_rounds) = (Vec::new(), Vec::new());
    let mut tables = 0;
    for _ in 0..rounds {
        frames.reset();
        let f: &HostFrames = &frames;
        let mut t = Tables::new(Npt::new(), f, Config::new().pages_1g(true), &mut &*f)
            .map_err(|e| e.to_string())?;
        let _ = t
            .map(
                &mut &*f,
                GuestPhysAddr::try_from(gpa).map_err(|e| e.to_string())?,
                HostPhysAddr::try_from(hpa).map_err(|e| e.to_string())?,
                GIB1,
                Perms::RWX,
                MemType::Wb,
            )
            .map_err(|e| e.to_string())?;
        let start = Instant::now();
        for &(page, p) in &ops {
            let flush = t
                .protect(
                    &mut &*f,
                    GuestPhysAddr::try_from(gpa + page * KIB4).map_err(|e| e.to_string())?,
                    KIB4,
                    PERMS[p],
                )
                .map_err(|e| e.to_string())?;
            black_box(flush.is_needed());
        }
        nvirt_rounds.push(elapsed_ns(start.elapsed()) / PROTECTS as f64);
        tables = t.table_count();

        peer.build(&[(gpa, hpa, GIB1)])?;
        let start = Instant::now();
        peer.protect_all(&ops, gpa)?;
        peer_rounds.push(elapsed_ns(start.elapsed()) / PROTECTS as f64);
    }
    let (nvirt_ns, peer_ns) = (median(&mut nvirt_rounds), median(&mut peer_rounds));
    Ok(line(
        "protect4k",
        nvirt_ns,
        peer_ns,
        &format!("tables={tables} min={min}"),
    ))
}

/// Flags of a leaf with `perms`, as NPT needs them (user always set).
fn peer_flags(perms: Perms) -> Flags {
    let mut flags = Flags::PRESENT | Flags::USER_ACCESSIBLE;
    flags.set(Flags::WRITABLE, perms.contains(Perms::WRITE));
    flags.set(Flags::NO_EXECUTE, !perms.contains(Perms::EXECUTE));
    flags
}

const PARENT: Flags = Flags::PRESENT
    .union(Flags::WRITABLE)
    .union(Flags::USER_ACCESSIBLE);

#[repr(C, align(4096))]
struct PeerFrame([u64; 512]);

/// The peer's host memory: frame `i` has physical address `i * 4096` and
/// lives at `base + i * 4096`; frame 0 is the root.
struct PeerArena {
    frames: Vec<PeerFrame>,
    next: usize,
}

/// Hands out the arena's frames in order.
struct PeerAlloc<'a> {
    next: &'a mut usize,
    len: usize,
}

// SAFETY: every frame handed out is a distinct, 4 KiB-aligned frame of the
// arena, unused until `PeerArena::build` starts over (which resets the
// mapper that used them).
unsafe impl FrameAllocator<Size4KiB> for PeerAlloc<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        if *self.next >= self.len {
            return None;
        }
        let frame = PhysFrame::from_start_address(PhysAddr::new(*self.next as u64 * KIB4)).ok();
        *self.next += 1;
        frame
    }
}

impl PeerArena {
    fn new(frames: usize) -> Self {
        Self {
            frames: (0..frames).map(|_| PeerFrame([0; 512])).collect(),
            next: 1,
        }
    }

    /// A mapper over the arena, and its frame allocator.
    fn mapper(&mut self) -> (OffsetPageTable<'_>, PeerAlloc<'_>) {
        let len = self.frames.len();
        let base = self.frames.as_mut_ptr();
        // SAFETY: `base` points to `len` frames owned by the arena, borrowed
        // mutably for the mapper's lifetime; physical address `p` of a frame
        // is at `base + p` (the offset), frame 0 is a valid PageTable (an
        // array of 512 u64 with the same layout and alignment), and the
        // mapper only reaches frames through that offset.
        let root = unsafe { &mut *base.cast::<PageTable>() };
        // SAFETY: as above: every frame the tables reference is in the
        // arena at `base` plus its physical address.
        let mapper = unsafe { OffsetPageTable::new(root, VirtAddr::from_ptr(base)) };
        (
            mapper,
            PeerAlloc {
                next: &mut self.next,
                len,
            },
        )
    }

    /// Builds `pages` from an empty root; returns the frames used.
    fn build(&mut self, pages: &[(u64, u64, u64)]) -> Result<u64, String> {
        self.frames[0].0 = [0; 512];
        self.next = 1;
        let (mut mapper, mut alloc) = self.mapper();
        let flags = peer_flags(Perms::RWX);
        for &(g, h, size) in pages {
            map_one(&mut mapper, &mut alloc, g, h, size, flags)?;
        }
        Ok(*alloc.next as u64)
    }

    /// The protects, splitting large pages by unmapping and re-mapping them
    /// in pages of the next size (the x86_64 crate has no split).
    fn protect_all(&mut self, ops: &[(u64, usize)], gpa: u64) -> Result<(), String> {
        let (mut mapper, mut alloc) = self.mapper();
        for &(page, p) in ops {
            let addr = gpa + page * KIB4;
            loop {
                let (size, flags, frame) = match mapper.translate(VirtAddr::new(addr)) {
                    TranslateResult::Mapped { frame, flags, .. } => {
                        (frame.size(), flags, frame.start_address().as_u64())
                    }
                    _ => return Err(format!("peer: {addr:#x} not mapped")),
                };
                if size == KIB4 {
                    break;
                }
                let block = addr & !(size - 1);
                let child = if size == GIB1 { MIB2 } else { KIB4 };
                if size == GIB1 {
                    let page = Page::<Size1GiB>::containing_address(VirtAddr::new(block));
                    mapper
                        .unmap(page)
                        .map_err(|e| format!("peer unmap: {e:?}"))?
                        .1
                        .ignore();
                } else {
                    let page = Page::<Size2MiB>::containing_address(VirtAddr::new(block));
                    mapper
                        .unmap(page)
                        .map_err(|e| format!("peer unmap: {e:?}"))?
                        .1
                        .ignore();
                }
                let leaf = flags & !Flags::HUGE_PAGE;
                for i in 0..512 {
                    map_one(
                        &mut mapper,
                        &mut alloc,
                        block + i * child,
                        frame + i * child,
                        child,
                        leaf,
                    )?;
                }
            }
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(addr));
            // SAFETY: the page belongs to the arena's tables, which no
            // processor uses; only the flags change.
            unsafe { mapper.update_flags(page, peer_flags(PERMS[p])) }
                .map_err(|e| format!("peer update_flags: {e:?}"))?
                .ignore();
        }
        Ok(())
    }
}

fn map_one(
    mapper: &mut OffsetPageTable<'_>,
    alloc: &mut PeerAlloc<'_>,
    g: u64,
    h: u64,
    size: u64,
    flags: Flags,
) -> Result<(), String> {
    match size {
        GIB1 => map_sized::<Size1GiB, _>(mapper, alloc, g, h, flags),
        MIB2 => map_sized::<Size2MiB, _>(mapper, alloc, g, h, flags),
        _ => map_sized::<Size4KiB, _>(mapper, alloc, g, h, flags),
    }
}

fn map_sized<S: PageSize + std::fmt::Debug, M: Mapper<S>>(
    mapper: &mut M,
    alloc: &mut PeerAlloc<'_>,
    g: u64,
    h: u64,
    flags: Flags,
) -> Result<(), String> {
    let page = Page::<S>::containing_address(VirtAddr::new(g));
    let frame = PhysFrame::<S>::containing_address(PhysAddr::new(h));
    // SAFETY: the tables live in the arena and are used by no processor;
    // mapping arbitrary frames into them affects no memory.
    let result = unsafe { mapper.map_to_with_table_flags(page, frame, flags, PARENT, alloc) };
    result
        .map(|f| f.ignore())
        .map_err(|e: MapToError<S>| format!("peer map_to: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The peer's tables live in the arena and are reached through raw
    /// pointers (`OffsetPageTable` over it): small enough to run under Miri.
    #[test]
    fn peer_builds_translates_and_splits_in_its_arena() {
        let mut peer = PeerArena::new(16);
        let pages = [
            (0, 4 * GIB1, GIB1),
            (GIB1, 8 * GIB1, MIB2),
            (GIB1 + MIB2, 9 * GIB1 + KIB4, KIB4),
        ];
        // Root, then a PDPT; a PD and a PT for the small pages.
        assert_eq!(peer.build(&pages), Ok(4));
        let translate = |peer: &mut PeerArena, addr: u64| {
            let (mapper, _) = peer.mapper();
            match mapper.translate(VirtAddr::new(addr)) {
                TranslateResult::Mapped { frame, offset, .. } => {
                    Some((frame.start_address().as_u64() + offset, frame.size()))
                }
                _ => None,
            }
        };
        assert_eq!(
            translate(&mut peer, 5 * KIB4),
            Some((4 * GIB1 + 5 * KIB4, GIB1))
        );
        assert_eq!(translate(&mut peer, GIB1 + 7), Some((8 * GIB1 + 7, MIB2)));
        assert_eq!(
            translate(&mut peer, GIB1 + MIB2),
            Some((9 * GIB1 + KIB4, KIB4))
        );
        assert_eq!(translate(&mut peer, GIB1 + MIB2 + KIB4), None);
        // One 4 KiB page inside the 1 GiB page made read-only: split to
        // 2 MiB pages, then the 2 MiB page holding it to 4 KiB pages.
        assert_eq!(peer.protect_all(&[(3, 0)], 0), Ok(()));
        assert_eq!(
            translate(&mut peer, 3 * KIB4 + 1),
            Some((4 * GIB1 + 3 * KIB4 + 1, KIB4))
        );
        assert_eq!(translate(&mut peer, MIB2), Some((4 * GIB1 + MIB2, MIB2)));
        let (mapper, _) = peer.mapper();
        let TranslateResult::Mapped { flags, .. } = mapper.translate(VirtAddr::new(3 * KIB4))
        else {
            panic!("unmapped after protect");
        };
        assert!(!flags.contains(Flags::WRITABLE));
    }
}
