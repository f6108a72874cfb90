//! The crash-loop workload on the machine (`nvirt.crashloop=OPS`; records
//! and protocol in `nvirt_guest::crashloop`): at every boot, check that
//! every page the committed record calls valid still holds its pattern at
//! its guest frame and that the whole NVRAM region is backed again, commit
//! the boot, print the machine-readable `crashloop: boot=…` line; then give
//! pages of the window back, take them again and rewrite their patterns,
//! in a random order, until killed or OPS operations are done.
//!
//! One line before each step (`cl: …`) tells the runner where a kill
//! landed: a hypercall, a pattern write, or a commit.

use core::arch::asm;
use core::arch::x86_64::_rdtsc;
use core::ops::Range;
use core::sync::atomic::{Ordering, compiler_fence};

use nvirt_guest::PAGE;
use nvirt_guest::crashloop::{
    self, BootReport, PAGES, RECORD_WORDS, SLOTS, State, WINDOW_OFFSET, page_word,
};
use nvirt_hypercall_abi::{ExtentOrder, MemKind, XenPfn};

use super::{Checks, Hv};

const WORDS_PER_PAGE: u64 = PAGE / 8;
const LINE: u64 = 64;

fn word(addr: u64) -> *mut u64 {
    core::ptr::with_exposed_provenance_mut::<u64>(addr as usize)
}

fn get(addr: u64) -> u64 {
    // SAFETY: callers pass addresses inside the guest's NVRAM region, which
    // the hypervisor backs whole at boot and which only this workload uses;
    // pages it gave back are never read.
    unsafe { word(addr).read_volatile() }
}

fn put(addr: u64, value: u64) {
    // SAFETY: as in `get`.
    unsafe { word(addr).write_volatile(value) };
}

/// Writes `[addr, addr + len)` back to the NVRAM and waits for it (what
/// real persistent memory needs; QEMU's NVDIMM file mapping has every
/// store at once).
fn persist(addr: u64, len: u64) {
    compiler_fence(Ordering::SeqCst);
    let mut line = addr & !(LINE - 1);
    while line < addr + len {
        // SAFETY: CLFLUSH of a mapped guest address only writes the line
        // back; it changes no memory.
        unsafe { asm!("clflush [{0}]", in(reg) line, options(nostack, preserves_flags)) };
        line += LINE;
    }
    // SAFETY: SFENCE orders the write-backs; no memory or register changes.
    unsafe { asm!("sfence", options(nostack, preserves_flags)) };
}

/// A small xorshift generator: the order of operations only needs to
/// differ between boots, not to be reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The workload over the guest's NVRAM region `nv`.
struct Workload<'a> {
    c: &'a mut Checks,
    hv: &'a mut Hv,
    base: u64,
    state: State,
    stamp: u64,
}

impl Workload<'_> {
    fn gpa(&self, i: usize) -> u64 {
        self.base + WINDOW_OFFSET + i as u64 * PAGE
    }

    fn commit(&mut self) {
        let (offset, words) = self.state.next_record();
        let at = self.base + offset;
        for (k, w) in words.iter().enumerate() {
            put(at + k as u64 * 8, *w);
        }
        persist(at, RECORD_WORDS as u64 * 8);
    }

    /// The first word of page `i` that does not hold its pattern.
    fn check_page(&self, i: usize) -> Option<(u64, u64, u64)> {
        let gpa = self.gpa(i);
        let stamp = self.state.stamps[i];
        (0..WORDS_PER_PAGE).find_map(|w| {
            let (want, got) = (page_word(gpa, w, stamp), get(gpa + w * 8));
            (want != got).then_some((gpa + w * 8, want, got))
        })
    }

    /// Checks every valid page: (intact, damaged).
    fn verify(&mut self) -> (u32, u32) {
        let (mut ok, mut bad) = (0, 0);
        for i in 0..PAGES {
            if !self.state.is_valid(i) {
                continue;
            }
            match self.check_page(i) {
                None => ok += 1,
                Some((addr, want, got)) => {
                    bad += 1;
                    self.c.note(format_args!(
                        "crashloop: page {i} at {addr:#x}: expected {want:#x} found {got:#x}"
                    ));
                }
            }
        }
        (ok, bad)
    }

    fn fail(&mut self, what: core::fmt::Arguments<'_>) -> bool {
        self.c.check(false, what);
        false
    }

    /// Gives page `i` back: committed first, then the hypercall.
    fn give(&mut self, i: usize) -> bool {
        let bit = 1u64 << i;
        self.state.held &= !bit;
        self.state.valid &= !bit;
        self.c.note(format_args!("cl: commit give {i}"));
        self.commit();
        self.c.note(format_args!("cl: hypercall give {i}"));
        let gpfn = [XenPfn::new(self.gpa(i) / PAGE)];
        match self
            .hv
            .decrease_reservation(MemKind::NonVolatile, ExtentOrder::PAGE_4K, &gpfn)
        {
            Ok(1) => true,
            other => self.fail(format_args!(
                "crashloop: decrease_reservation of page {i}: {other:?}"
            )),
        }
    }

    /// Takes a page back (page `i` by populate_physmap, or the lowest page
    /// not held by increase_reservation), then commits it held, then gives
    /// it a pattern.
    fn take(&mut self, i: usize, increase: bool) -> bool {
        let order = ExtentOrder::PAGE_4K;
        let nv = MemKind::NonVolatile;
        let mut gpfn = [XenPfn::new(self.gpa(i) / PAGE)];
        let page = if increase {
            let lowest = (0..PAGES).find(|&j| !self.state.is_held(j));
            self.c.note(format_args!("cl: hypercall take (increase)"));
            let r = self.hv.increase_reservation(nv, order, &mut gpfn);
            let got = (gpfn[0].raw() * PAGE).wrapping_sub(self.base + WINDOW_OFFSET) / PAGE;
            if r != Ok(1) || Some(got as usize) != lowest {
                return self.fail(format_args!(
                    "crashloop: increase_reservation: {r:?} at frame {:#x}, the lowest page not held ({lowest:?}) expected",
                    gpfn[0].raw()
                ));
            }
            got as usize
        } else {
            self.c.note(format_args!("cl: hypercall take {i}"));
            match self.hv.populate_physmap(nv, order, &mut gpfn) {
                Ok(1) => i,
                other => {
                    return self.fail(format_args!(
                        "crashloop: populate_physmap of page {i}: {other:?}"
                    ));
                }
            }
        };
        let gpa = self.gpa(page);
        if let Some(w) = (0..WORDS_PER_PAGE).find(|&w| get(gpa + w * 8) != 0) {
            return self.fail(format_args!(
                "crashloop: page {page} came back holding {:#x} at {:#x}, not zeroed",
                get(gpa + w * 8),
                gpa + w * 8
            ));
        }
        self.state.held |= 1 << page;
        self.c.note(format_args!("cl: commit take {page}"));
        self.commit();
        self.rewrite(page)
    }

    /// Writes a new pattern into page `i`: committed not valid, written,
    /// committed valid with its stamp.
    fn rewrite(&mut self, i: usize) -> bool {
        let bit = 1u64 << i;
        if self.state.valid & bit != 0 {
            self.state.valid &= !bit;
            self.c.note(format_args!("cl: commit invalidate {i}"));
            self.commit();
        }
        self.stamp += 1;
        let (gpa, stamp) = (self.gpa(i), self.stamp);
        self.c
            .note(format_args!("cl: write page {i} stamp {stamp:#x}"));
        for w in 0..WORDS_PER_PAGE {
            put(gpa + w * 8, page_word(gpa, w, stamp));
        }
        persist(gpa, PAGE);
        self.state.stamps[i] = stamp;
        self.state.valid |= bit;
        self.c.note(format_args!("cl: commit page {i}"));
        self.commit();
        true
    }
}

fn read_slot(at: u64) -> [u64; RECORD_WORDS] {
    let mut w = [0u64; RECORD_WORDS];
    for (k, slot) in w.iter_mut().enumerate() {
        *slot = get(at + k as u64 * 8);
    }
    w
}

/// Runs the workload over the NVRAM region `nv`: `ops` operations, or
/// until killed when 0.
/// Reads one word of every page of `nv`.
fn touch_every_page(nv: &Range<u64>) {
    let mut at = nv.start;
    while at < nv.end {
        // SAFETY: `nv` is this guest's NVRAM, identity mapped; a page not
        // backed yet is backed by the hypervisor at this first touch.
        let _ = unsafe { core::ptr::with_exposed_provenance::<u64>(at as usize).read_volatile() };
        at += PAGE;
    }
}

pub(crate) fn run(c: &mut Checks, hv: &mut Hv, nv: &Range<u64>, ops: u64) {
    let base = nv.start;
    if nv.end < base + WINDOW_OFFSET + PAGES as u64 * PAGE {
        c.check(
            false,
            format_args!("crashloop: the NVRAM region is too small for the window"),
        );
        return;
    }
    let slots = SLOTS.map(|s| read_slot(base + s));
    let state = crashloop::current([&slots[0], &slots[1]]);
    let found = state.seq;
    let mut w = Workload {
        c,
        hv,
        base,
        state,
        stamp: (state.boots + 1) << 32,
    };
    let (verified, damaged) = w.verify();
    // A thin NVRAM region is backed where it is touched: touching every
    // page makes it whole, as an eager one is at boot (a no-op there).
    touch_every_page(nv);
    let whole = matches!(
        (w.hv.current_reservation(), w.hv.maximum_reservation()),
        (Ok(a), Ok(b)) if a == b
    );
    w.state.boots += 1;
    // The hypervisor backs the whole region at boot.
    w.state.held = u64::MAX;
    w.commit();
    let report = BootReport {
        boot: w.state.boots,
        seq: found,
        verified,
        damaged,
        whole,
    };
    if !w.c.check(report.ok(), format_args!("{report}")) {
        return;
    }
    // SAFETY: RDTSC only reads the time-stamp counter.
    let tsc = unsafe { _rdtsc() };
    let mut rng = Rng(tsc ^ w.state.boots.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut done = 0u64;
    while ops == 0 || done < ops {
        let i = (rng.next() % PAGES as u64) as usize;
        let roll = rng.next() % 3;
        let ok = if !w.state.is_held(i) {
            w.take(i, roll == 0)
        } else if roll == 0 {
            w.give(i)
        } else {
            w.rewrite(i)
        };
        if !ok {
            return;
        }
        done += 1;
    }
    let (verified, damaged) = w.verify();
    w.c.check(
        damaged == 0,
        format_args!(
            "crashloop: done: ops={done} verified={verified} damaged={damaged} held={} valid={}",
            w.state.held_pages(),
            w.state.valid_pages()
        ),
    );
}
