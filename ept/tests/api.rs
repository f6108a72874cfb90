//! Targeted behaviour: errors leave the tables untouched, invalidation
//! verdicts, root pointers, extents, and accessed/dirty bits set by a
//! concurrent "processor" while a large page is split.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nvirt_ept::host::HostFrames;
use nvirt_ept::model::{Kind, Walker};
use nvirt_ept::{
    AttrError, Config, Ept, FrameError, FrameSource, GuestPhysAddr, HostPhysAddr, Invalidate,
    MapError, MemType, NewError, Npt, PageRun, PageSize, Perms, PhysMem, RangeError, Tables,
    UnmapError, UpdateError,
};

const G: u64 = 1 << 30;
const M2: u64 = 1 << 21;
const K4: u64 = 1 << 12;

fn gpa(a: u64) -> GuestPhysAddr {
    GuestPhysAddr::new(a).expect("a guest-physical address")
}

fn hpa(a: u64) -> HostPhysAddr {
    HostPhysAddr::new(a).expect("a host-physical address")
}

fn snapshot(
    frames: &HostFrames,
    root: HostPhysAddr,
    kind: Kind,
) -> std::collections::BTreeMap<u64, Vec<u64>> {
    Walker {
        kind,
        phys_bits: 52,
        pages_1g: true,
    }
    .scan(&frames, root)
    .unwrap()
    .snapshot
}

#[test]
fn invalid_input_is_rejected_and_changes_nothing() {
    let frames = HostFrames::new(hpa(1 << 32), 256);
    let f = &mut &frames;
    let config = Config::new().phys_bits(36).pages_1g(true);
    let mut t = Tables::new(Ept::new(), &frames, config, f).unwrap();
    let _ = t
        .map(f, gpa(0), hpa(G), 2 * G, Perms::RWX, MemType::Wb)
        .unwrap();
    let before = snapshot(&frames, t.root(), Kind::Ept);

    let e = t.map(f, gpa(0x800), hpa(0), K4, Perms::RW, MemType::Wb);
    assert_eq!(
        e,
        Err(MapError::Range(RangeError::UnalignedGuest(gpa(0x800))))
    );
    let e = t.map(f, gpa(4 * G), hpa(0x10), K4, Perms::RW, MemType::Wb);
    assert_eq!(
        e,
        Err(MapError::Range(RangeError::UnalignedHost(hpa(0x10))))
    );
    let e = t.map(f, gpa(4 * G), hpa(0), 100, Perms::RW, MemType::Wb);
    assert_eq!(e, Err(MapError::Range(RangeError::UnalignedLength(100))));
    let e = t.map(
        f,
        gpa((1 << 48) - K4),
        hpa(0),
        2 * K4,
        Perms::RW,
        MemType::Wb,
    );
    assert!(matches!(
        e,
        Err(MapError::Range(RangeError::GuestBeyondWidth { .. }))
    ));
    let e = t.map(
        f,
        gpa(4 * G),
        hpa((1 << 36) - K4),
        2 * K4,
        Perms::RW,
        MemType::Wb,
    );
    assert!(matches!(
        e,
        Err(MapError::Range(RangeError::HostBeyondWidth {
            bits: 36,
            ..
        }))
    ));
    let e = t.map(f, gpa(4 * G), hpa(0), K4, Perms::WRITE, MemType::Wb);
    assert!(matches!(
        e,
        Err(MapError::Attrs(AttrError::WriteWithoutRead { .. }))
    ));
    let e = t.map(f, gpa(G + 5 * K4), hpa(0), K4, Perms::RW, MemType::Wb);
    assert_eq!(
        e,
        Err(MapError::Overlap {
            gpa: gpa(G + 5 * K4)
        })
    );
    let e = t.protect(f, gpa(2 * G - K4), 2 * K4, Perms::READ);
    assert_eq!(e, Err(UpdateError::NotMapped { gpa: gpa(2 * G) }));
    let e = t.protect(f, gpa(0), K4, Perms::empty());
    assert_eq!(e, Err(UpdateError::Attrs(AttrError::NoAccess)));

    // Splitting 1 GiB -> 2 MiB -> 4 KiB needs two frames: with one, nothing.
    frames.set_limit(Some(frames.live() + 1));
    let e = t.protect(f, gpa(G + K4), K4, Perms::READ);
    assert_eq!(
        e,
        Err(UpdateError::Frames(FrameError::Exhausted {
            needed: 2,
            obtained: 1
        }))
    );
    let e = t.unmap(f, gpa(K4), K4);
    assert_eq!(
        e,
        Err(UnmapError::Frames(FrameError::Exhausted {
            needed: 2,
            obtained: 1
        }))
    );
    frames.set_limit(None);

    assert_eq!(snapshot(&frames, t.root(), Kind::Ept), before);
    assert_eq!(frames.live() as u64, t.table_count());
    assert_eq!(t.page_counts().size_1g, 2);
}

#[test]
fn construction_errors() {
    let frames = HostFrames::new(hpa(1 << 40), 4);
    let e = Tables::new(
        Ept::new(),
        &frames,
        Config::new().phys_bits(53),
        &mut &frames,
    );
    assert_eq!(e.err(), Some(NewError::PhysBits { bits: 53 }));
    // Frames at 1 TiB are beyond a 39-bit width.
    let e = Tables::new(
        Ept::new(),
        &frames,
        Config::new().phys_bits(39),
        &mut &frames,
    );
    assert_eq!(
        e.err(),
        Some(NewError::Frames(FrameError::Invalid {
            frame: hpa(1 << 40)
        }))
    );
    assert_eq!(frames.live(), 0);
}

/// A frame source that hands out one good frame, then a misaligned one.
struct Misaligned<'a> {
    frames: &'a HostFrames,
    handed: u32,
}

impl FrameSource for Misaligned<'_> {
    fn alloc_table(&mut self) -> Option<HostPhysAddr> {
        self.handed += 1;
        if self.handed == 2 {
            Some(hpa(0x1234))
        } else {
            (&mut &*self.frames).alloc_table()
        }
    }

    fn free_table(&mut self, frame: HostPhysAddr) {
        (&mut &*self.frames).free_table(frame);
    }
}

#[test]
fn bad_frames_from_the_source_are_refused() {
    let frames = HostFrames::new(hpa(1 << 32), 16);
    let mut t = Tables::new(Npt::new(), &frames, Config::new(), &mut &frames).unwrap();
    let mut source = Misaligned {
        frames: &frames,
        handed: 0,
    };
    let e = t.map(&mut source, gpa(K4), hpa(0), K4, Perms::RW, MemType::Wb);
    assert_eq!(
        e,
        Err(MapError::Frames(FrameError::Invalid { frame: hpa(0x1234) }))
    );
    assert_eq!(frames.live(), 1);
    assert_eq!(t.translate(gpa(K4)), None);
}

#[test]
fn verdicts() {
    let frames = HostFrames::new(hpa(1 << 32), 64);
    let f = &mut &frames;
    let mut t = Tables::new(Npt::new(), &frames, Config::new(), f).unwrap();
    let v = t
        .map(f, gpa(0), hpa(0), 4 * M2, Perms::RWX, MemType::Wb)
        .unwrap();
    assert_eq!(v, Invalidate::Nothing);
    // Replacing a page by itself keeps it, and its accessed/dirty bits.
    let v = t
        .replace(f, gpa(0), hpa(0), M2, Perms::RWX, MemType::Wb)
        .unwrap();
    assert_eq!(v, Invalidate::Nothing);
    let v = t.protect(f, gpa(0), M2, Perms::RWX).unwrap();
    assert_eq!(v, Invalidate::Nothing);
    let v = t.protect(f, gpa(0), M2, Perms::READ).unwrap();
    assert_eq!(v, Invalidate::ThisContext);
    let v = t.unmap(f, gpa(64 * G), G).unwrap();
    assert_eq!(v, Invalidate::Nothing);
    let v = t.unmap(f, gpa(0), K4).unwrap();
    assert_eq!(v, Invalidate::ThisContext);
    assert_eq!(v.and(Invalidate::AllContexts), Invalidate::AllContexts);

    let mut shared = Tables::new(Ept::new(), &frames, Config::new().shared(true), f).unwrap();
    let _ = shared
        .map(f, gpa(0), hpa(0), M2, Perms::RWX, MemType::Wb)
        .unwrap();
    let v = shared.set_mem_type(f, gpa(0), K4, MemType::Uc).unwrap();
    assert_eq!(v, Invalidate::AllContexts);
}

#[test]
fn root_pointers() {
    let frames = HostFrames::new(hpa(0x10_0000), 8);
    let t = Tables::new(
        Ept::new().with_accessed_dirty(true),
        &frames,
        Config::new(),
        &mut &frames,
    )
    .unwrap();
    assert_eq!(t.root_pointer(), 0x10_0000 | 6 | (3 << 3) | (1 << 6));
    let n = Tables::new(Npt::new(), &frames, Config::new(), &mut &frames).unwrap();
    assert_eq!(n.root_pointer(), 0x10_1000);
}

#[test]
fn extents_are_maximal_runs_per_page_size() {
    let frames = HostFrames::new(hpa(1 << 32), 64);
    let f = &mut &frames;
    let mut t = Tables::new(Ept::new(), &frames, Config::new().pages_1g(false), f).unwrap();
    // 4 KiB head, 2 MiB body, 4 KiB tail.
    let _ = t
        .map(
            f,
            gpa(M2 - 2 * K4),
            hpa(8 * M2 - 2 * K4),
            2 * M2 + 3 * K4,
            Perms::RX,
            MemType::Wt,
        )
        .unwrap();
    let got: Vec<PageRun> = t.page_runs().collect();
    let attrs = nvirt_ept::Attrs::new(Perms::RX, MemType::Wt);
    let e = |g, h, len, page| PageRun {
        gpa: gpa(g),
        hpa: hpa(h),
        len,
        page,
        attrs,
    };
    assert_eq!(
        got,
        [
            e(M2 - 2 * K4, 8 * M2 - 2 * K4, 2 * K4, PageSize::Size4K),
            e(M2, 8 * M2, 2 * M2, PageSize::Size2M),
            e(3 * M2, 10 * M2, K4, PageSize::Size4K),
        ]
    );
    let tr = t.translate(gpa(M2 + 0x1234)).unwrap();
    assert_eq!((tr.hpa, tr.page), (hpa(8 * M2 + 0x1234), PageSize::Size2M));
}

/// The processor sets accessed/dirty bits with locked read-modify-writes
/// while the hypervisor edits the tables. A split must hand bits set in the
/// large page before the swap to every small page.
#[test]
fn dirty_bits_survive_a_concurrent_split() {
    const DIRTY: u64 = 1 << 6; // NPT D bit
    for round in 0..200 {
        let frames = HostFrames::new(hpa(1 << 32), 64);
        let f = &mut &frames;
        let mut t = Tables::new(Npt::new(), &frames, Config::new().pages_1g(false), f).unwrap();
        let _ = t
            .map(f, gpa(0), hpa(0), M2, Perms::RWX, MemType::Wb)
            .unwrap();
        let pml4 = frames.table(t.root());
        let pdpt = frames.table(hpa(pml4[0].load(Ordering::Relaxed) & 0x000f_ffff_ffff_f000));
        let pd = frames.table(hpa(pdpt[0].load(Ordering::Relaxed) & 0x000f_ffff_ffff_f000));
        let slot: &AtomicU64 = &pd[0];
        let dirtied = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                // Spin a little, then dirty the 2 MiB page if it is still one.
                for _ in 0..(round * 7) % 300 {
                    std::hint::spin_loop();
                }
                let now = slot.load(Ordering::Relaxed);
                if now & (1 << 7) != 0
                    && slot
                        .compare_exchange(now, now | DIRTY, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    dirtied.store(true, Ordering::Release);
                }
            });
            let _ = t.protect(f, gpa(K4), K4, Perms::RX).unwrap();
        });
        let pt = frames.table(hpa(slot.load(Ordering::Relaxed) & 0x000f_ffff_ffff_f000));
        let dirty_children = pt
            .iter()
            .filter(|e| e.load(Ordering::Relaxed) & DIRTY != 0)
            .count();
        if dirtied.load(Ordering::Acquire) {
            assert_eq!(
                dirty_children, 512,
                "round {round}: dirty bit lost in the split"
            );
        } else {
            assert_eq!(dirty_children, 0);
        }
    }
}

/// The PD slot of a 2 MiB mapping at guest address 0 of NPT tables.
fn pd_slot_of_gpa0(frames: &HostFrames, root: HostPhysAddr) -> &AtomicU64 {
    let next = |e: &AtomicU64| hpa(e.load(Ordering::Relaxed) & 0x000f_ffff_ffff_f000);
    let pml4 = frames.table(root);
    let pdpt = frames.table(next(&pml4[0]));
    &frames.table(next(&pdpt[0]))[0]
}

/// Accessed and dirty bits the processor set in a large page are handed to
/// every small page of a split, and the bits of small pages are kept by
/// the large page a merge makes of them.
#[test]
fn accessed_and_dirty_bits_survive_split_and_merge() {
    const ACCESSED: u64 = 1 << 5; // NPT A bit
    const DIRTY: u64 = 1 << 6; // NPT D bit
    let frames = HostFrames::new(hpa(1 << 32), 64);
    let f = &mut &frames;
    let mut t = Tables::new(Npt::new(), &frames, Config::new().pages_1g(false), f).unwrap();
    let _ = t
        .map(f, gpa(0), hpa(0), M2, Perms::RWX, MemType::Wb)
        .unwrap();
    let slot = pd_slot_of_gpa0(&frames, t.root());
    slot.fetch_or(ACCESSED | DIRTY, Ordering::Relaxed);
    // Split: every 4 KiB page inherits both bits.
    let _ = t.protect(f, gpa(K4), K4, Perms::RX).unwrap();
    let pt = frames.table(hpa(slot.load(Ordering::Relaxed) & 0x000f_ffff_ffff_f000));
    assert!(
        pt.iter()
            .all(|e| e.load(Ordering::Relaxed) & (ACCESSED | DIRTY) == ACCESSED | DIRTY),
        "a split lost accessed/dirty bits"
    );
    // Clear them all, dirty one small page, merge back: the large page is
    // dirty.
    for e in pt.iter() {
        e.fetch_and(!(ACCESSED | DIRTY), Ordering::Relaxed);
    }
    pt[300].fetch_or(ACCESSED | DIRTY, Ordering::Relaxed);
    let _ = t.protect(f, gpa(K4), K4, Perms::RWX).unwrap();
    let merged = slot.load(Ordering::Relaxed);
    assert_ne!(merged & (1 << 7), 0, "merged back into a 2 MiB page");
    assert_eq!(
        merged & (ACCESSED | DIRTY),
        ACCESSED | DIRTY,
        "a merge lost a small page's dirty bit"
    );
}

#[test]
fn retired_tables_keep_translating_until_reclaimed() {
    let frames = HostFrames::new(hpa(1 << 32), 64);
    let f = &mut &frames;
    let mut t = Tables::new(Ept::new(), &frames, Config::new(), f).unwrap();
    let _ = t
        .map(f, gpa(0), hpa(0), 2 * M2, Perms::RWX, MemType::Wb)
        .unwrap();
    let _ = t.protect(f, gpa(K4), K4, Perms::READ).unwrap();
    let pd = frames.table(hpa(frames.table(hpa(frames.table(t.root())[0]
        .load(Ordering::Relaxed)
        & 0x000f_ffff_ffff_f000))[0]
        .load(Ordering::Relaxed)
        & 0x000f_ffff_ffff_f000));
    let old_pt = hpa(pd[0].load(Ordering::Relaxed) & 0x000f_ffff_ffff_f000);
    // Restoring the page merges the table away; it is retired, not freed.
    let v = t.protect(f, gpa(K4), K4, Perms::RWX).unwrap();
    assert_eq!(v, Invalidate::ThisContext);
    assert_eq!(t.pending_reclaim(), 1);
    // A stale walk through the retired table still finds the old pages:
    // only ignored bits of its entries changed.
    let stale = frames.table(old_pt);
    for (i, e) in stale.iter().enumerate() {
        let raw = e.load(Ordering::Relaxed) & !((1 << 11) | (0x1f << 52));
        assert_eq!(raw & 0x000f_ffff_ffff_f000, i as u64 * K4);
        assert_ne!(raw & 7, 0);
    }
    assert_eq!(t.reclaim(f), 1);
    assert_eq!(frames.live() as u64, t.table_count());
}
