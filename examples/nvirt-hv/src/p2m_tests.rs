//! The guest map: sorted inserts, removals that leave the pool's blocks,
//! holes, and runs.

use super::*;
use nvirt_addr::FrameMapping;

fn block(mfn: u64, order: u8) -> Block {
    Block::new(Mfn::new(mfn).unwrap(), Order::new(order).unwrap()).unwrap()
}

fn g(n: u64) -> Gfn {
    Gfn::new(n).unwrap()
}

fn r(start: u64, end: u64) -> GfnRange {
    GfnRange::from_numbers(start, end).unwrap()
}

fn ext(gpfn: u64, mfn: u64, order: u8, kind: MemKind) -> BlockMapping {
    BlockMapping::new(g(gpfn), block(mfn, order), kind).unwrap()
}

/// A run as `(gfn, mfn, frames)`.
fn triple(m: FrameMapping) -> (u64, u64, u64) {
    (m.gfn().get(), m.mfn().get(), m.frames())
}

#[test]
fn inserts_sorted_and_refuses_overlaps() {
    let mut storage = [BlockMapping::EMPTY; 4];
    let mut p = P2m::new(&mut storage);
    p.insert(ext(0x200, 0x1000, 9, MemKind::Volatile)).unwrap();
    p.insert(ext(0, 0x2000, 9, MemKind::Volatile)).unwrap();
    p.insert(ext(0x10_0000, 0x40_0000, 9, MemKind::NonVolatile))
        .unwrap();
    assert_eq!(
        p.extents()
            .iter()
            .map(|e| e.gfn().get())
            .collect::<Vec<_>>(),
        [0, 0x200, 0x10_0000]
    );
    assert_eq!(
        p.insert(ext(0x3ff, 0x9000, 0, MemKind::Volatile)),
        Err(P2mError::Overlap { gpfn: g(0x3ff) })
    );
    p.insert(ext(0x400, 0x9000, 0, MemKind::Volatile)).unwrap();
    assert_eq!(
        p.insert(ext(0x401, 0x9001, 0, MemKind::Volatile)),
        Err(P2mError::Full { capacity: 4 })
    );
    assert_eq!(
        p.lookup(g(0x3ff)).and_then(|e| e.mfn(g(0x3ff))),
        Mfn::new(0x11ff)
    );
    assert!(p.lookup(g(0x401)).is_none());
    assert!(p.any_backed(&r(0x3ff, 0x500)));
    assert!(!p.any_backed(&r(0x401, 0x10_0000)));
    assert_eq!(p.frames(MemKind::Volatile), 0x401);
    assert_eq!(p.frames(MemKind::NonVolatile), 0x200);
}

#[test]
fn removes_the_middle_of_an_extent_leaving_aligned_blocks() {
    let mut storage = [BlockMapping::EMPTY; 64];
    let mut p = P2m::new(&mut storage);
    p.insert(ext(0x4_0000, 0x8_0000, 18, MemKind::NonVolatile))
        .unwrap();
    let cut = r(0x4_0005, 0x4_0006);
    assert_eq!(
        p.covering(&cut, MemKind::Volatile),
        Err(P2mError::WrongKind {
            gpfn: g(0x4_0005),
            backed_by: MemKind::NonVolatile
        })
    );
    let cover = p.covering(&cut, MemKind::NonVolatile).unwrap();
    p.remove(&cut, cover).unwrap();
    assert!(p.lookup(g(0x4_0005)).is_none());
    // 0..5 is blocks of 4 and 1; 6..2^18 blocks of 2, then 8, 16, …,
    // 2^17 frames.
    assert_eq!(p.extents().len(), 2 + 16);
    assert_eq!(p.frames(MemKind::NonVolatile), (1 << 18) - 1);
    for e in p.extents() {
        let mfn = e.mfn(e.gfn()).unwrap();
        assert_eq!(
            mfn.get() - 0x8_0000,
            e.gfn().get() - 0x4_0000,
            "offsets kept"
        );
        assert!(e.gfn().is_aligned(e.block().order()), "guest side aligned");
    }
    for w in p.extents().windows(2) {
        assert!(w[0].end() <= w[1].gfn());
    }
    assert_eq!(
        p.first_hole(&r(0x4_0000, 0x8_0000), Order::SIZE_4K),
        Some(g(0x4_0005))
    );
    assert_eq!(
        p.first_hole(&r(0x4_0000, 0x8_0000), Order::new(1).unwrap()),
        None
    );
    assert_eq!(
        p.covering(&r(0x4_0004, 0x4_0007), MemKind::NonVolatile),
        Err(P2mError::NotBacked { gpfn: g(0x4_0005) })
    );
    // The runs are one translation with a hole.
    let runs: Vec<_> = p.runs().map(triple).collect();
    assert_eq!(
        runs,
        [(0x4_0000, 0x8_0000, 5), (0x4_0006, 0x8_0006, (1 << 18) - 6)]
    );
}

#[test]
fn removes_across_several_extents() {
    let mut storage = [BlockMapping::EMPTY; 16];
    let mut p = P2m::new(&mut storage);
    for i in 0..4 {
        p.insert(ext(i * 0x200, 0x1000 + i * 0x400, 9, MemKind::Volatile))
            .unwrap();
    }
    p.insert(ext(0x1000, 0x5000, 0, MemKind::Volatile)).unwrap();
    let cut = r(0x100, 0x700);
    let cover = p.covering(&cut, MemKind::Volatile).unwrap();
    assert_eq!(cover, 0..4);
    p.remove(&cut, cover).unwrap();
    let left: Vec<_> = p
        .extents()
        .iter()
        .map(|e| (e.gfn().get(), e.block().frames()))
        .collect();
    assert_eq!(left, [(0, 0x100), (0x700, 0x100), (0x1000, 1)]);
    assert_eq!(p.first_hole(&r(0, 0x2000), Order::SIZE_2M), Some(g(0x200)));
    assert_eq!(p.first_hole(&r(0x1000, 0x1001), Order::SIZE_4K), None);
    assert_eq!(
        p.first_hole(&r(0x1000, 0x1002), Order::SIZE_4K),
        Some(g(0x1001))
    );
    assert_eq!(p.covering(&r(5, 5), MemKind::Volatile), Ok(0..0));
}

#[test]
fn runs_merge_contiguous_extents() {
    let mut storage = [BlockMapping::EMPTY; 8];
    let mut p = P2m::new(&mut storage);
    p.insert(ext(0, 0x1000, 9, MemKind::Volatile)).unwrap();
    p.insert(ext(0x200, 0x1200, 9, MemKind::Volatile)).unwrap();
    p.insert(ext(0x400, 0x3000, 9, MemKind::Volatile)).unwrap();
    let runs: Vec<_> = p.runs().map(triple).collect();
    assert_eq!(runs, [(0, 0x1000, 0x400), (0x400, 0x3000, 0x200)]);
}
