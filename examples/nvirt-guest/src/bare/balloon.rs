//! Ballooning one kind of memory out and back in, inside a 4 MiB window:
//! eight single pages, a run of 300 pages (one call, more extents than the
//! hypervisor takes per entry, so it continues) and a 2 MiB extent go out;
//! the pattern must survive everywhere else; the pages come back by
//! populate_physmap and the 2 MiB extent by increase_reservation, which
//! must put it back in the only hole; all of them must come back zeroed;
//! the reservation must drop and recover by exactly the pages moved.

use core::ops::Range;

use nvirt_e820::MemoryMap;
use nvirt_guest::{PAGE, balloon_window};
use nvirt_hypercall_abi::guest::CallError;
use nvirt_hypercall_abi::protocol::MEMMAP_MAX;
use nvirt_hypercall_abi::{Errno, ExtentOrder, MemKind, XenPfn};

use super::memory::{fill_and_verify, first_nonzero, pages, verify_all};
use super::{Checks, Hv};

/// What the balloon checks need to know.
pub(crate) struct Context<'a> {
    pub(crate) map: &'a MemoryMap<MEMMAP_MAX>,
    pub(crate) ranges: &'a [Range<u64>],
    pub(crate) stride: u64,
    pub(crate) image_end: u64,
}

/// Offsets (in pages) of the single pages inside the window.
const SINGLES: [u64; 8] = [1, 8, 15, 22, 29, 36, 43, 50];
/// The run of pages: more than one hypervisor entry's batch (256).
const RUN: Range<u64> = 100..400;
/// The 2 MiB extent: the window's second half.
const BIG: u64 = 512;

fn show<E: core::fmt::Display>(r: &Result<usize, E>) -> impl core::fmt::Display + '_ {
    struct Shown<'r, E>(&'r Result<usize, E>);
    impl<E: core::fmt::Display> core::fmt::Display for Shown<'_, E> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self.0 {
                Ok(n) => write!(f, "{n}"),
                Err(e) => write!(f, "{e}"),
            }
        }
    }
    Shown(r)
}

/// Balloons RAM (`nvram` false) or NVRAM out and in.
pub(crate) fn run(c: &mut Checks, hv: &mut Hv, ctx: &Context<'_>, nvram: bool) {
    let (kind, name) = if nvram {
        (MemKind::NonVolatile, "NVRAM")
    } else {
        (MemKind::Volatile, "RAM")
    };
    let Some(window) = balloon_window(ctx.map, nvram, ctx.image_end) else {
        c.check(
            false,
            format_args!("{name} balloon: a 4 MiB window above the image"),
        );
        return;
    };
    let first = window.start / PAGE;
    c.note(format_args!(
        "{name} balloon window [mem {:#x}-{:#x}]",
        window.start,
        window.end - 1
    ));
    let before = hv.current_reservation().unwrap_or(0);
    let singles = SINGLES.map(|p| XenPfn::new(first + p));
    let mut run = [XenPfn::new(0); 300];
    for (slot, p) in run.iter_mut().zip(RUN) {
        *slot = XenPfn::new(first + p);
    }
    let big = XenPfn::new(first + BIG);

    let r = hv.decrease_reservation(kind, ExtentOrder::PAGE_4K, &singles);
    c.check(
        r == Ok(8),
        format_args!(
            "{name} balloon: decrease_reservation of 8 single pages: {}",
            show(&r)
        ),
    );
    let r = hv.decrease_reservation(kind, ExtentOrder::PAGE_2M, &[big]);
    c.check(
        r == Ok(1),
        format_args!(
            "{name} balloon: decrease_reservation of a 2 MiB extent: {}",
            show(&r)
        ),
    );
    let r = hv.decrease_reservation(kind, ExtentOrder::PAGE_4K, &run);
    c.check(
        r == Ok(300),
        format_args!(
            "{name} balloon: decrease_reservation of 300 pages in one call (continued): {}",
            show(&r)
        ),
    );
    let now = hv.current_reservation().unwrap_or(0);
    c.check(
        now + 8 + 512 + 300 == before,
        format_args!("{name} balloon: current_reservation {before} -> {now} pages"),
    );
    let again = hv.decrease_reservation(kind, ExtentOrder::PAGE_4K, &singles[..1]);
    c.check(
        again == Err(CallError::Errno(Errno::Inval)),
        format_args!(
            "{name} balloon: decrease_reservation of a page given back already: {} (EINVAL expected)",
            show(&again)
        ),
    );

    // The pattern survives everywhere but the holes.
    let mut holes = [const { 0..0 }; SINGLES.len() + 2];
    for (h, p) in holes.iter_mut().zip(SINGLES) {
        *h = window.start + p * PAGE..window.start + (p + 1) * PAGE;
    }
    holes[SINGLES.len()] = window.start + RUN.start * PAGE..window.start + RUN.end * PAGE;
    holes[SINGLES.len() + 1] = window.start + BIG * PAGE..window.end;
    verify_all(c, ctx.ranges, ctx.stride, &holes, "around the holes");

    let mut back = singles;
    let r = hv.populate_physmap(kind, ExtentOrder::PAGE_4K, &mut back);
    c.check(
        r == Ok(8),
        format_args!(
            "{name} balloon: populate_physmap of the 8 pages: {}",
            show(&r)
        ),
    );
    let mut run_back = run;
    let r = hv.populate_physmap(kind, ExtentOrder::PAGE_4K, &mut run_back);
    c.check(
        r == Ok(300),
        format_args!(
            "{name} balloon: populate_physmap of the 300 pages in one call (continued): {}",
            show(&r)
        ),
    );
    fresh(c, name, "the repopulated pages", &holes[..=SINGLES.len()]);

    let mut got = [XenPfn::new(0)];
    let r = hv.increase_reservation(kind, ExtentOrder::PAGE_2M, &mut got);
    c.check(
        r == Ok(1) && got[0] == big,
        format_args!(
            "{name} balloon: increase_reservation of 2 MiB: {} at frame {:#x} (the hole {:#x} expected)",
            show(&r),
            got[0].raw(),
            big.raw()
        ),
    );
    fresh(c, name, "the 2 MiB extent", &holes[SINGLES.len() + 1..]);
    let now = hv.current_reservation().unwrap_or(0);
    c.check(
        now == before,
        format_args!("{name} balloon: current_reservation back to {now} pages"),
    );
}

/// Checks every page of `ranges` came back zeroed, then writes the pattern
/// into all of it.
fn fresh(c: &mut Checks, name: &str, what: &str, ranges: &[Range<u64>]) {
    let mut dirty = None;
    let mut bad = None;
    let mut bytes = 0;
    for r in ranges {
        bytes += r.end - r.start;
        for page in pages(r.clone()) {
            if dirty.is_none() {
                dirty = first_nonzero(&page);
            }
            if bad.is_none() {
                bad = fill_and_verify(&page);
            }
        }
    }
    match dirty {
        None => c.check(
            true,
            format_args!(
                "{name} balloon: {what} ({} KiB) came back zeroed",
                bytes >> 10
            ),
        ),
        Some((addr, w)) => c.check(
            false,
            format_args!("{name} balloon: {what}: word {w:#x} at {addr:#x} in a fresh page"),
        ),
    };
    match bad {
        None => c.check(
            true,
            format_args!("{name} balloon: {what}: pattern written and verified"),
        ),
        Some((addr, expected, found)) => c.check(
            false,
            format_args!(
                "{name} balloon: {what}: at {addr:#x} expected {expected:#x} found {found:#x}"
            ),
        ),
    };
}
