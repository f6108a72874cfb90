//! Opening the pool at boot: formatted when empty or asked, recovered
//! otherwise, never formatted over a damaged pool; guests found by id.

use nvirt_addr::GfnRange;
use nvirt_nvpool::{DomainState, DomainUuid, Gfn, Mfn, NvPool, RecoverError};
use nvirt_persist_meta::{MemPmem, Pmem};

use super::*;

const SIZE: u64 = 8 << 20;
const BASE: Mfn = match Mfn::new(0x10_0000) {
    Some(m) => m,
    None => panic!("a frame number"),
};
/// A frame 2 MiB above [`BASE`].
const OTHER_BASE: Mfn = match BASE.checked_add(0x200) {
    Some(m) => m,
    None => panic!("a frame number"),
};

fn work(region: &MemPmem) -> Vec<u8> {
    vec![0u8; work_area_bytes(region, BASE).unwrap()]
}

fn guest(frames: u64) -> GuestNvram<'static> {
    GuestNvram {
        id: DomainUuid::new(7),
        name: "g",
        gfns: GfnRange::from_len(Gfn::new(0x10_0000).unwrap(), frames).unwrap(),
    }
}

/// A region holding a pool with one guest of 512 frames.
fn pool_image() -> MemPmem {
    let region = MemPmem::new(SIZE as usize);
    let mut w = work(&region);
    let (mut pool, opened) = open(region, BASE, &mut w, PoolMode::Recover).unwrap();
    assert_eq!(opened, Opened::FormattedEmpty);
    let (dom, attached) = attach(&mut pool, &guest(512)).unwrap();
    assert_eq!(attached, Attached::Created { extents: 1 });
    pool.mark_running(dom).unwrap();
    pool.into_region()
}

#[test]
fn formats_an_empty_region_and_recovers_a_pool() {
    let image = pool_image();
    let mut w = work(&image);
    let (mut pool, opened) = open(image, BASE, &mut w, PoolMode::Recover).unwrap();
    let Opened::Recovered(report) = opened else {
        panic!("{opened:?}")
    };
    assert_eq!(report.crashed, 1);
    let (dom, attached) = attach(&mut pool, &guest(512)).unwrap();
    assert_eq!(
        attached,
        Attached::Found {
            state: DomainState::CrashedWhileRunning,
            frames: 512,
            extents: 1
        }
    );
    assert_eq!(pool.find(DomainUuid::new(7)), Some(dom));
    // A larger region for the same guest raises its quota.
    let (_, attached) = attach(&mut pool, &guest(1024)).unwrap();
    assert!(matches!(attached, Attached::Found { frames: 512, .. }));
    assert_eq!(pool.domain(dom).unwrap().quota, 1024);
    pool.check().unwrap();
}

/// A region of bytes `fill` everywhere.
fn filled(fill: u8) -> MemPmem {
    let mut region = MemPmem::new(SIZE as usize);
    region.as_bytes_mut().fill(fill);
    region
}

/// The region's last frame, a data frame of any pool it holds.
fn last_frame(region: &MemPmem) -> &[u8] {
    &region.as_bytes()[SIZE as usize - 4096..]
}

#[test]
fn a_fresh_region_is_formatted_without_zeroing_and_format_erases() {
    // A region said to be fresh keeps its data frames as they are ...
    let region = filled(0xaa);
    let mut w = work(&region);
    let (pool, opened) = open(region, BASE, &mut w, PoolMode::Fresh).unwrap();
    assert_eq!(opened, Opened::FormattedEmpty);
    let image = pool.into_region();
    assert!(last_frame(&image).iter().all(|&b| b == 0xaa));
    // ... any other is zeroed when a pool is made on it.
    let (pool, _) = open(filled(0xaa), BASE, &mut w, PoolMode::Recover).unwrap();
    assert!(last_frame(&pool.into_region()).iter().all(|&b| b == 0));
    let (pool, opened) = open(image, BASE, &mut w, PoolMode::Fresh).unwrap();
    assert!(matches!(opened, Opened::Recovered(_)), "a pool is kept");
    let image = pool.into_region();
    let image = {
        let (pool, opened) = open(pool_image(), BASE, &mut w, PoolMode::Format).unwrap();
        assert_eq!(opened, Opened::FormattedOnRequest);
        assert_eq!(pool.stats().domains, 0);
        drop(image);
        pool.into_region()
    };
    assert!(NvPool::probe(&image).is_ok());
}

#[test]
fn a_damaged_pool_is_named_and_left_alone() {
    let mut image = pool_image();
    // Both superblock copies damaged after their magic.
    for at in [0x10u64, 0x1010] {
        let mut b = [0u8; 8];
        image.read(at, &mut b).unwrap();
        b[0] ^= 0xff;
        image.store(at, &b).unwrap();
    }
    let before = image.as_bytes().to_vec();
    let mut w = work(&pool_image());
    let err = open(&mut image, BASE, &mut w, PoolMode::Recover).unwrap_err();
    assert!(
        image.as_bytes() == &before[..],
        "a damaged pool was written"
    );
    assert!(matches!(
        err,
        OpenError::Damaged(RecoverError::Superblocks { .. })
    ));
    let text = err.to_string();
    assert!(
        text.contains("damaged") && text.contains("nvpool=format"),
        "{text}"
    );
    // Fresh does not format over it either.
    assert!(matches!(
        open(&mut image, BASE, &mut w, PoolMode::Fresh),
        Err(OpenError::Damaged(_))
    ));
    assert!(
        image.as_bytes() == &before[..],
        "a damaged pool was written"
    );
}

#[test]
fn a_pool_made_elsewhere_is_refused() {
    let image = pool_image();
    let mut w = work(&image);
    let err = open(image, OTHER_BASE, &mut w, PoolMode::Recover).unwrap_err();
    assert_eq!(
        err,
        OpenError::FrameBase {
            pool: BASE,
            region: OTHER_BASE
        }
    );
    let too_small = MemPmem::new(4096);
    assert!(matches!(
        work_area_bytes(&too_small, BASE),
        Err(OpenError::Config(_))
    ));
}

#[test]
fn a_domain_outside_its_region_is_refused() {
    let image = pool_image();
    let mut w = work(&image);
    let (mut pool, _) = open(image, BASE, &mut w, PoolMode::Recover).unwrap();
    let moved = GuestNvram {
        gfns: GfnRange::from_numbers(0x20_0000, 0x20_0200).unwrap(),
        ..guest(512)
    };
    let err = attach(&mut pool, &moved).unwrap_err();
    assert_eq!(
        err,
        AttachError::Outside {
            gpfn: Gfn::new(0x10_0000).unwrap(),
            region: GfnRange::from_numbers(0x20_0000, 0x20_0200).unwrap()
        }
    );
    assert!(err.to_string().contains("nvpool=format"));
    // A region too small for what the domain owns.
    let small = GuestNvram {
        gfns: GfnRange::from_numbers(0x10_0000, 0x10_0100).unwrap(),
        ..guest(256)
    };
    assert!(matches!(
        attach(&mut pool, &small),
        Err(AttachError::Outside { gpfn, .. }) if gpfn.get() == 0x10_0100
    ));
    // A guest the pool cannot hold leaves no domain behind.
    let huge = GuestNvram {
        id: DomainUuid::new(8),
        name: "huge",
        gfns: GfnRange::from_len(Gfn::new(0x40_0000).unwrap(), (SIZE / 4096) * 2).unwrap(),
    };
    assert!(matches!(
        attach(&mut pool, &huge),
        Err(AttachError::Populate(_))
    ));
    assert_eq!(pool.find(DomainUuid::new(8)), None);
    assert!(
        pool.lookup(
            pool.find(DomainUuid::new(7)).unwrap(),
            Gfn::new(0x10_0000).unwrap()
        )
        .is_some()
    );
    pool.check().unwrap();
}

#[test]
fn a_thin_domain_starts_empty_and_is_found_empty_after_a_reboot() {
    let region = MemPmem::new(SIZE as usize);
    let mut w = work(&region);
    let (mut pool, _) = open(region, BASE, &mut w, PoolMode::Recover).unwrap();
    let (dom, attached) = attach_thin(&mut pool, &guest(512)).unwrap();
    assert_eq!(attached, Attached::Created { extents: 0 });
    assert_eq!(pool.extents(dom).count(), 0);
    assert_eq!(pool.domain(dom).unwrap().quota, 512);
    let image = pool.into_region();
    let mut w = work(&image);
    let (mut pool, _) = open(image, BASE, &mut w, PoolMode::Recover).unwrap();
    let (again, attached) = attach_thin(&mut pool, &guest(512)).unwrap();
    assert_eq!(again, dom);
    assert!(matches!(
        attached,
        Attached::Found {
            frames: 0,
            extents: 0,
            ..
        }
    ));
}
