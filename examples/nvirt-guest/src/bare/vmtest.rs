//! The multi-VM roles on the machine (`nvirt.vmtest=ROLE`; see
//! `nvirt_guest::vmtest`): a secret written over NVRAM, NVRAM required to
//! read as zeros, and a probe outside the guest's map.

use core::arch::asm;
use core::fmt::Write as _;
use core::ops::Range;

use nvirt_guest::vmtest::{PERSIST_MARK, kept, probe_target, secret};
use nvirt_guest::{PAGE, pattern};
use nvirt_hypercall_abi::{ExtentOrder, MemKind, XenPfn};

use super::{Checks, Hv, SEED};

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

/// Rounds of [`follow`] before it gives up waiting for its target to go
/// down and come back.
const FOLLOW_ROUNDS: u32 = 20_000;
/// Spins between two reads of the target.
const FOLLOW_SPIN: u32 = 20_000;

/// The NVRAM target from nvirt's CPUID leaves, in pages.
fn read_target() -> Option<u64> {
    nvirt_hypercall_abi::discovery::nvram_target(|leaf| {
        // SAFETY: every x86_64 processor has CPUID; the hypervisor answers
        // its leaves. (Safe to call from Rust 1.87 on; the declared
        // rust-version is older.)
        #[allow(unused_unsafe)]
        let r = unsafe { core::arch::x86_64::__cpuid(leaf) };
        [r.eax, r.ebx, r.ecx, r.edx]
    })
}

/// Keeps the NVRAM balloon at the target: gives back the highest pages it
/// holds while the target is below them, takes them back while it is
/// above. Pages it keeps hold the kept word throughout; pages it takes back
/// come zeroed. Passes once the target went down and came back.
pub(crate) fn follow(c: &mut Checks, hv: &mut Hv, nv: &Range<u64>) {
    let pages = (nv.end - nv.start) / PAGE;
    let first = nv.start / PAGE;
    for page in 0..pages {
        let at = nv.start + page * PAGE;
        // SAFETY: `nv` is this guest's NVRAM, identity mapped and backed.
        unsafe { word(at).write_volatile(kept(at)) };
    }
    let Some(start) = read_target() else {
        c.check(false, format_args!("follow: no nvirt NVRAM-target leaf"));
        return;
    };
    let (mut held, mut lowest, mut gave, mut took, mut zeroed) = (pages, start, 0u64, 0u64, true);
    let mut back = false;
    for _ in 0..FOLLOW_ROUNDS {
        let target = read_target().unwrap_or(held).min(pages);
        lowest = lowest.min(target);
        while held > target {
            let gpfn = [XenPfn::new(first + held - 1)];
            if hv.decrease_reservation(MemKind::NonVolatile, ExtentOrder::PAGE_4K, &gpfn) != Ok(1) {
                c.check(false, format_args!("follow: giving back page {}", held - 1));
                return;
            }
            held -= 1;
            gave += 1;
        }
        while held < target {
            let mut gpfn = [XenPfn::new(first + held)];
            if hv.populate_physmap(MemKind::NonVolatile, ExtentOrder::PAGE_4K, &mut gpfn) != Ok(1) {
                // The pool may be short for now: try again next round.
                break;
            }
            let at = nv.start + held * PAGE;
            // SAFETY: just populated; this guest's NVRAM.
            zeroed &= unsafe { word(at).read_volatile() } == 0;
            // SAFETY: as above.
            unsafe { word(at).write_volatile(kept(at)) };
            held += 1;
            took += 1;
        }
        if lowest < start && target >= start && held == target {
            back = true;
            break;
        }
        for _ in 0..FOLLOW_SPIN {
            core::hint::spin_loop();
        }
    }
    let mut wrong = 0u64;
    for page in 0..held {
        let at = nv.start + page * PAGE;
        // SAFETY: held pages are backed.
        if unsafe { word(at).read_volatile() } != kept(at) {
            wrong += 1;
        }
    }
    c.check(
        back && zeroed && wrong == 0,
        format_args!(
            "follow: the NVRAM target went from {} KiB down to {} KiB and back: gave {gave} pages, took {took} back (zeroed: {zeroed}), {wrong} kept pages wrong",
            start * 4,
            lowest * 4
        ),
    );
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
