//! Thin provisioning: a guest's NVRAM backed where it first touches it,
//! the largest aligned unbacked block first, and refused where it must be.

use nvirt_buddy::MemKind;

use crate::guest_memory::{GuestMemory, MemoryError, PAGE};
use crate::nested::Format;
use crate::p2m::BlockMapping;
use crate::testing::{Arena, heap, metadata_for};

use super::tests::{Guest, NV_HOST, RAM_HOST, back_ram, empty_guest};

const NV_BASE: u64 = 1 << 32;

/// Runs `f` on a guest with 8 MiB of RAM backed and 4 MiB of NVRAM all
/// unbacked, its NVRAM heap holding `nv_frames` frames.
fn with_thin_guest<R>(nv_frames: u64, f: impl FnOnce(&mut Guest<'_, '_, '_>) -> R) -> R {
    let arena = Arena::new(RAM_HOST.start..NV_HOST.end);
    let nv_host = NV_HOST.start..NV_HOST.start + nv_frames * PAGE;
    let (mut rm, mut nm) = (metadata_for(&RAM_HOST), metadata_for(&nv_host));
    let mut ram = heap(MemKind::Volatile, &RAM_HOST, &mut rm).unwrap();
    let mut nv = heap(MemKind::NonVolatile, &nv_host, &mut nm).unwrap();
    let mut storage = vec![BlockMapping::EMPTY; 256];
    let mut g = empty_guest(Format::Ept, &mut ram, &mut nv, &arena, &mut storage);
    back_ram(&mut g);
    f(&mut g)
}

#[test]
fn a_touch_backs_the_largest_aligned_unbacked_block_around_it() {
    with_thin_guest(2048, |g| {
        assert_eq!(g.frames(MemKind::NonVolatile), 0);
        assert!(
            g.check(NV_BASE + 0x21_2345, 1).is_err(),
            "unbacked at first"
        );
        // 4 MiB region: no 1 GiB block fits, the 2 MiB block around the
        // touch does.
        assert_eq!(
            g.back_on_touch(NV_BASE + 0x21_2345, MemKind::NonVolatile),
            Ok(512)
        );
        g.check(NV_BASE + 0x20_0000, 0x20_0000).unwrap();
        assert!(
            g.check(NV_BASE, 1).is_err(),
            "the other 2 MiB stays unbacked"
        );
        assert!(g.tables().translate(NV_BASE + 0x21_2345).is_some());
        g.audit().unwrap();
        assert_eq!(g.footprint(), g.minimum(), "a 2 MiB page, tables minimal");
        assert_eq!(g.footprint().pages_2m, 4 + 1);
        // The same block again: nothing left to back there.
        assert!(matches!(
            g.back_on_touch(NV_BASE + 0x30_0000, MemKind::NonVolatile),
            Err(MemoryError::OutsideRegion { .. })
        ));
    });
}

#[test]
fn a_touch_outside_the_region_of_its_kind_is_refused_and_changes_nothing() {
    with_thin_guest(2048, |g| {
        let before = g.extents().to_vec();
        for gpa in [
            0x10_0000,
            NV_BASE + (4 << 20),
            NV_BASE - PAGE,
            u64::MAX - 10,
        ] {
            assert!(
                matches!(
                    g.back_on_touch(gpa, MemKind::NonVolatile),
                    Err(MemoryError::OutsideRegion { .. })
                ),
                "{gpa:#x}"
            );
        }
        assert_eq!(g.extents(), &before[..]);
    });
}

#[test]
fn a_pool_short_of_blocks_gives_smaller_ones_then_none() {
    // Three NVRAM frames: no 2 MiB block, so single frames.
    with_thin_guest(3, |g| {
        for page in [7, 100, 600] {
            assert_eq!(
                g.back_on_touch(NV_BASE + page * PAGE + 8, MemKind::NonVolatile),
                Ok(1),
                "page {page}"
            );
        }
        let before = g.extents().to_vec();
        assert_eq!(
            g.back_on_touch(NV_BASE + 900 * PAGE, MemKind::NonVolatile),
            Err(MemoryError::NoMemory {
                kind: MemKind::NonVolatile
            })
        );
        assert_eq!(g.extents(), &before[..], "a refused touch changes nothing");
        g.audit().unwrap();
        assert_eq!(g.footprint(), g.minimum());
    });
}

#[test]
fn a_suspended_guest_resumes_with_its_map_and_tables() {
    let arena = Arena::new(RAM_HOST.start..NV_HOST.end);
    let (mut rm, mut nm) = (metadata_for(&RAM_HOST), metadata_for(&NV_HOST));
    let mut ram = heap(MemKind::Volatile, &RAM_HOST, &mut rm).unwrap();
    let mut nv = heap(MemKind::NonVolatile, &NV_HOST, &mut nm).unwrap();
    let mut storage = vec![BlockMapping::EMPTY; 256];
    let mut g = empty_guest(Format::Npt, &mut ram, &mut nv, &arena, &mut storage);
    g.back_on_touch(NV_BASE, MemKind::NonVolatile).unwrap();
    g.write(NV_BASE + 8, b"kept").unwrap();
    let (extents, hpa) = (g.extents().to_vec(), g.tables().translate(NV_BASE + 8));
    let parts = g.suspend();
    assert_eq!(parts.extents(), &extents[..]);
    // While it is suspended the heaps are free for another guest.
    let order = nvirt_buddy::Order::new(0).unwrap();
    let other = ram
        .alloc(order, nvirt_buddy::Constraints::default())
        .unwrap();
    ram.free(other.start(), order).unwrap();
    let mut g = GuestMemory::resume(parts, &mut ram, Some(&mut nv));
    assert_eq!(g.extents(), &extents[..]);
    assert_eq!(g.tables().translate(NV_BASE + 8), hpa);
    let mut b = [0u8; 4];
    g.read(NV_BASE + 8, &mut b).unwrap();
    assert_eq!(&b, b"kept");
    g.back_on_touch(NV_BASE + (2 << 20), MemKind::NonVolatile)
        .unwrap();
    g.audit().unwrap();
    assert_eq!(g.footprint(), g.minimum());
}
