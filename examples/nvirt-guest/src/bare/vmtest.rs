//! The multi-VM roles on the machine (`nvirt.vmtest=ROLE`; see
//! `nvirt_guest::vmtest`): a secret written over NVRAM, NVRAM required to
//! read as zeros, and a probe outside the guest's map.

use core::arch::asm;
use core::fmt::Write as _;
use core::ops::Range;

use nvirt_guest::vmtest::{PERSIST_MARK, kept, probe_target, secret};
use nvirt_guest::{PAGE, pattern};

use super::{Checks, SEED};

fn word(addr: u64) -> *mut u64 {
    core::ptr::with_exposed_provenance_mut::<u64>(addr as usize)
}

/// Writes the secret into every word of `nv`, then checks it is there.
pub(crate) fn secret_write(c: &mut Checks, nv: &Range<u64>) {
    let mut addr = nv.start;
    while addr < nv.end {
        // SAFETY: `nv` is this guest's NVRAM, identity mapped and used by
        // nothing else.
        unsafe { word(addr).write_volatile(secret(addr)) };
        addr += 8;
    }
    let mut wrong = 0u64;
    let mut addr = nv.start;
    while addr < nv.end {
        // SAFETY: as above.
        if unsafe { word(addr).read_volatile() } != secret(addr) {
            wrong += 1;
        }
        addr += 8;
    }
    c.check(
        wrong == 0,
        format_args!(
            "secret written over all {} KiB of NVRAM [{:#x}, {:#x}) and read back ({wrong} words wrong)",
            (nv.end - nv.start) >> 10,
            nv.start,
            nv.end
        ),
    );
}

/// Reads every word of `nv`, requiring zeros (and no word of another VM's
/// secret); then writes its own pattern and reads it back.
pub(crate) fn secret_check(c: &mut Checks, nv: &Range<u64>) {
    let (mut nonzero, mut secrets) = (0u64, 0u64);
    let mut addr = nv.start;
    while addr < nv.end {
        // SAFETY: `nv` is this guest's NVRAM; a first touch of an unbacked
        // page is backed by the hypervisor before the access completes.
        let v = unsafe { word(addr).read_volatile() };
        if v != 0 {
            nonzero += 1;
            secrets += u64::from(v == secret(addr));
        }
        addr += 8;
    }
    c.check(
        nonzero == 0,
        format_args!(
            "all {} KiB of NVRAM read as zeros before the first write ({nonzero} words not zero, {secrets} of them another VM's secret)",
            (nv.end - nv.start) >> 10
        ),
    );
    let mut addr = nv.start;
    while addr < nv.end {
        // SAFETY: as above.
        unsafe { word(addr).write_volatile(pattern(addr, SEED)) };
        addr += PAGE / 8;
    }
    let mut wrong = 0u64;
    let mut addr = nv.start;
    while addr < nv.end {
        // SAFETY: as above.
        if unsafe { word(addr).read_volatile() } != pattern(addr, SEED) {
            wrong += 1;
        }
        addr += PAGE / 8;
    }
    c.check(
        wrong == 0,
        format_args!("its own pattern written over its NVRAM and read back ({wrong} words wrong)"),
    );
}

/// Keeps data in NVRAM across boots: writes it the first time (no mark),
/// requires it intact every later time. Every page holds the kept word in
/// its first and last word; the mark is the region's first word.
pub(crate) fn persist(c: &mut Checks, nv: &Range<u64>) {
    let pages = (nv.end - nv.start) / PAGE;
    // SAFETY: `nv` is this guest's NVRAM, identity mapped, used by nothing
    // else; a thin region's page is backed at its first touch.
    let mark = unsafe { word(nv.start).read_volatile() };
    let words = |page: u64| {
        let at = nv.start + page * PAGE;
        // The region's first word is the mark's: its first page keeps only
        // its last word.
        [(page > 0).then_some(at), Some(at + PAGE - 8)]
    };
    if mark == PERSIST_MARK {
        let mut wrong = 0u64;
        for page in 0..pages {
            for addr in words(page).into_iter().flatten() {
                // SAFETY: as above.
                if unsafe { word(addr).read_volatile() } != kept(addr) {
                    wrong += 1;
                }
            }
        }
        c.check(
            wrong == 0,
            format_args!(
                "persist: the data of an earlier boot is in all {pages} pages of NVRAM at the same guest addresses ({wrong} words wrong)"
            ),
        );
        let _ = writeln!(c.out, "persist: boot=later pages={pages} wrong={wrong}");
        return;
    }
    c.check(
        mark == 0,
        format_args!("persist: a new NVRAM region reads as zeros at its mark ({mark:#x})"),
    );
    for page in 0..pages {
        for addr in words(page).into_iter().flatten() {
            // SAFETY: as above.
            unsafe { word(addr).write_volatile(kept(addr)) };
        }
    }
    // The mark last: a boot that finds it finds the data written.
    // SAFETY: as above.
    unsafe { word(nv.start).write_volatile(PERSIST_MARK) };
    c.check(
        true,
        format_args!("persist: wrote the mark and the kept words over all {pages} pages of NVRAM"),
    );
    let _ = writeln!(c.out, "persist: boot=first pages={pages}");
}

/// Where the probe's tables live: a PDPT and a page directory of the
/// guest's own, hung from PML4 slot [`PROBE_SLOT`].
#[repr(C, align(4096))]
struct Table([u64; 512]);

static mut PROBE_PDPT: Table = Table([0; 512]);
static mut PROBE_PD: Table = Table([0; 512]);
const PROBE_SLOT: u64 = 272;

/// Announces, then reads, the page past the end of the guest's map
/// (`map_end`) through a 2 MiB mapping of its own. The hypervisor stops the
/// guest at the read; if it returns, isolation failed.
pub(crate) fn probe(c: &mut Checks, map_end: u64) {
    let target = probe_target(map_end);
    let pdpt = (&raw mut PROBE_PDPT).cast::<u64>();
    let pd = (&raw mut PROBE_PD).cast::<u64>();
    let cr3: u64;
    // SAFETY: reading CR3 at CPL 0 has no side effect.
    unsafe { asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack, preserves_flags)) };
    let pml4 =
        core::ptr::with_exposed_provenance_mut::<u64>((cr3 & 0x000f_ffff_ffff_f000) as usize);
    let entries = [
        (pd, (target >> 21) & 511, (target & !0x1f_ffff) | 0x83),
        (pdpt, (target >> 30) & 511, pd as u64 | 0x3),
        (pml4, PROBE_SLOT, pdpt as u64 | 0x3),
    ];
    for (table, index, entry) in entries {
        // SAFETY: the PD and PDPT are this guest's statics (identity
        // mapped, so their addresses are guest-physical), the PML4 is its
        // current one; the index is below 512, and slot 272 of the PML4
        // was not present, so no translation through it is cached.
        unsafe { table.wrapping_add(index as usize).write_volatile(entry) };
    }
    let va = 0xffff_0000_0000_0000 | PROBE_SLOT << 39 | (target & ((1 << 39) - 1));
    let _ = writeln!(
        c.out,
        "probe: touching {target:#x} outside my map (ends at {map_end:#x}) at guest-virtual {va:#x}"
    );
    // SAFETY: mapped just above; the hypervisor is expected to stop the
    // guest here, since no memory backs the page.
    let found = unsafe { word(va).read_volatile() };
    c.check(
        false,
        format_args!("probe: read {found:#x} at guest-physical {target:#x}, outside my map"),
    );
}
