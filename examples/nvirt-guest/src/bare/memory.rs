//! Passes over guest memory: the address-dependent pattern written and
//! verified at a stride (every 4 KiB page touched), and pages checked to
//! be zero.

use core::ops::Range;

use nvirt_guest::{PAGE, pattern, subtract};

use super::{Checks, SEED};

fn word(addr: u64) -> *mut u64 {
    core::ptr::with_exposed_provenance_mut::<u64>(addr as usize)
}

/// Writes the pattern word at `addr`.
pub(crate) fn put(addr: u64) {
    // SAFETY: callers pass addresses inside the guest's backed RAM or
    // NVRAM above its image (identity mapped), which nothing else uses.
    unsafe { word(addr).write_volatile(pattern(addr, SEED)) };
}

/// Reads the word at `addr`.
pub(crate) fn get(addr: u64) -> u64 {
    // SAFETY: as in `put`.
    unsafe { word(addr).read_volatile() }
}

/// Writes the pattern every `stride` bytes over `ranges` minus `holes`
/// (sorted).
pub(crate) fn write_all(c: &mut Checks, ranges: &[Range<u64>], stride: u64, holes: &[Range<u64>]) {
    let mut words = 0u64;
    for r in ranges {
        for piece in subtract(r.clone(), holes) {
            let mut addr = piece.start;
            while addr < piece.end {
                put(addr);
                addr += stride;
                words += 1;
            }
        }
    }
    c.note(format_args!(
        "pattern written: {words} words, one every {stride} bytes"
    ));
}

/// The first word of `range` (stepping by `stride`) that does not hold the
/// pattern: (address, expected, found).
pub(crate) fn first_mismatch(range: &Range<u64>, stride: u64) -> Option<(u64, u64, u64)> {
    let mut addr = range.start;
    while addr < range.end {
        let (expected, found) = (pattern(addr, SEED), get(addr));
        if found != expected {
            return Some((addr, expected, found));
        }
        addr += stride;
    }
    None
}

/// Verifies the pattern over `ranges` minus `holes`, one check per range.
pub(crate) fn verify_all(
    c: &mut Checks,
    ranges: &[Range<u64>],
    stride: u64,
    holes: &[Range<u64>],
    when: &str,
) -> bool {
    let mut all = true;
    for r in ranges {
        let mut bad = None;
        let mut bytes = 0;
        for piece in subtract(r.clone(), holes) {
            bytes += piece.end - piece.start;
            if bad.is_none() {
                bad = first_mismatch(&piece, stride);
            }
        }
        all &= match bad {
            None => c.check(
                true,
                format_args!(
                    "pattern {when}: [mem {:#x}-{:#x}] {} KiB verified",
                    r.start,
                    r.end - 1,
                    bytes >> 10
                ),
            ),
            Some((addr, expected, found)) => c.check(
                false,
                format_args!(
                    "pattern {when}: [mem {:#x}-{:#x}] at {addr:#x} expected {expected:#x} found {found:#x}",
                    r.start,
                    r.end - 1
                ),
            ),
        };
    }
    all
}

/// The first non-zero word of the pages `range` (every word read).
pub(crate) fn first_nonzero(range: &Range<u64>) -> Option<(u64, u64)> {
    let mut addr = range.start;
    while addr < range.end {
        let w = get(addr);
        if w != 0 {
            return Some((addr, w));
        }
        addr += 8;
    }
    None
}

/// Writes the pattern into every word of `range` and verifies it.
pub(crate) fn fill_and_verify(range: &Range<u64>) -> Option<(u64, u64, u64)> {
    let mut addr = range.start;
    while addr < range.end {
        put(addr);
        addr += 8;
    }
    first_mismatch(range, 8)
}

/// The pages of `range`, one by one.
pub(crate) fn pages(range: Range<u64>) -> impl Iterator<Item = Range<u64>> {
    (range.start..range.end)
        .step_by(PAGE as usize)
        .map(|p| p..p + PAGE)
}
