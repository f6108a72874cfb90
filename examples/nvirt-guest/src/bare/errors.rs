//! Malformed and refused hypercalls: each must come back with its error
//! number (or Xen's partial count) and leave the guest's memory as it was.

use core::ops::Range;

use nvirt_e820::MemoryMap;
use nvirt_guest::{PAGE, balloon_window};
use nvirt_hypercall_abi::guest::{CallError, HypercallInsn};
use nvirt_hypercall_abi::layout::MemoryMap as XenMemoryMap;
use nvirt_hypercall_abi::protocol::MEMMAP_MAX;
use nvirt_hypercall_abi::{
    Command, DomId, E820Entry, Errno, ExtentOrder, GuestAddr, MemKind, MemoryReservation,
    NVIRT_MEMF_NVRAM, XenPfn, error_code,
};

use super::memory::{fill_and_verify, first_nonzero};
use super::{Checks, Hv, hypercall, memory_op_raw, virt};

/// Guest-physical 3.5 GiB: inside the PCI hole of every layout (RAM stops
/// at 3 GiB below 4 GiB), so never guest memory.
const PCI_HOLE: u64 = 0xe000_0000;
/// Far beyond any guest's memory.
const NOWHERE: u64 = 0x7fff_0000_0000;

/// The PCI hole under the guest-virtual alias: mapped by the guest's
/// tables, backed by nothing.
fn hole_va() -> u64 {
    virt(core::ptr::without_provenance::<u8>(PCI_HOLE as usize))
}

/// A reservation call with raw fields; RAX back.
fn reserve_raw(
    insn: HypercallInsn,
    command: Command,
    array: u64,
    nr: u64,
    order: u32,
    flags: u32,
    domid: u16,
) -> u64 {
    let r = MemoryReservation::new(GuestAddr::new(array), nr, order, flags, DomId::new(domid));
    memory_op_raw(insn, command.raw(), virt(&raw const r))
}

/// The answer as text: a count or `-ENAME`.
struct Answer(u64);

impl core::fmt::Display for Answer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match error_code(self.0).map(|c| (c, Errno::from_code(c))) {
            Some((_, Some(e))) => write!(f, "-{}", e.name()),
            Some((c, None)) => write!(f, "-{c}"),
            None => write!(f, "{}", self.0),
        }
    }
}

fn expect(c: &mut Checks, what: &str, got: u64, errno: Errno) {
    c.check(
        got == errno.to_return(),
        format_args!(
            "errno: {what}: {} (-{} expected)",
            Answer(got),
            errno.name()
        ),
    );
}

fn typed(r: Result<usize, CallError<core::convert::Infallible>>) -> u64 {
    match r {
        Ok(n) => n as u64,
        Err(CallError::Errno(e)) => e.to_return(),
        Err(_) => u64::MAX,
    }
}

/// Runs the malformed calls.
pub(crate) fn run(
    c: &mut Checks,
    hv: &mut Hv,
    insn: HypercallInsn,
    map: &MemoryMap<MEMMAP_MAX>,
    nvram: Option<&Range<u64>>,
) {
    use Command::{DecreaseReservation as Decrease, PopulatePhysmap as Populate};
    const SELF: u16 = DomId::SELF.raw();
    let page = XenPfn::new(0x200);
    let array = [page];
    let at = virt(array.as_ptr());

    expect(
        c,
        "hypercall number 99",
        hypercall(insn, 99, 0, 0, 0),
        Errno::NoSys,
    );
    expect(
        c,
        "memory_op command 5",
        memory_op_raw(insn, 5, at),
        Errno::NoSys,
    );
    expect(
        c,
        "memory_op command 15",
        memory_op_raw(insn, 15, at),
        Errno::NoSys,
    );
    // As Xen: a call with nothing to do answers its resume point before
    // any other check (here a foreign domain, order 77, bit 25, no array),
    // and a resume point on memory_map is an unknown command.
    let empty = reserve_raw(insn, Populate, NOWHERE, 0, 77, 1 << 25, 5);
    c.check(
        empty == 0,
        format_args!("no extents: {} (0 before any check, as Xen)", Answer(empty)),
    );
    expect(
        c,
        "memory_map with a resume point",
        memory_op_raw(insn, Command::MemoryMap.raw() | 1 << 6, at),
        Errno::NoSys,
    );
    let bad_flag = reserve_raw(insn, Populate, at, 1, 0, 1 << 20, SELF);
    expect(c, "mem_flags bit 20", bad_flag, Errno::Inval);
    let address_bits = reserve_raw(insn, Decrease, at, 1, 0, 32, SELF);
    expect(
        c,
        "address bits on decrease_reservation",
        address_bits,
        Errno::Inval,
    );
    let order = reserve_raw(insn, Populate, at, 1, 19, 0, SELF);
    expect(c, "extent order 19 (above 1 GiB)", order, Errno::Inval);
    let many = reserve_raw(insn, Populate, at, 1 << 27, 0, 0, SELF);
    expect(c, "2^27 extents", many, Errno::Inval);
    let outside = reserve_raw(insn, Populate, NOWHERE, 1, 0, 0, SELF);
    expect(
        c,
        "extent array outside guest memory",
        outside,
        Errno::Fault,
    );
    let hole = reserve_raw(insn, Populate, hole_va(), 1, 0, 0, SELF);
    expect(c, "extent array in the PCI hole", hole, Errno::Fault);
    expect(
        c,
        "argument in the PCI hole",
        memory_op_raw(insn, Populate.raw(), hole_va()),
        Errno::Fault,
    );
    let other = reserve_raw(insn, Populate, at, 1, 0, 0, 5);
    expect(c, "another domain (5)", other, Errno::Perm);
    let reserved = reserve_raw(insn, Populate, at, 1, 0, 0, 0x7ff1);
    expect(c, "a reserved domain id (0x7ff1)", reserved, Errno::Srch);

    let ram = MemKind::Volatile;
    let r = hv.populate_physmap(ram, ExtentOrder::PAGE_4K, &mut [page]);
    expect(c, "populate a backed page", typed(r), Errno::Inval);
    let r = hv.populate_physmap(
        ram,
        ExtentOrder::PAGE_4K,
        &mut [XenPfn::new(PCI_HOLE / PAGE)],
    );
    expect(c, "populate a page in the PCI hole", typed(r), Errno::Inval);
    let r = hv.decrease_reservation(ram, ExtentOrder::PAGE_2M, &[XenPfn::new(0x201)]);
    expect(c, "a misaligned 2 MiB extent", typed(r), Errno::Inval);
    let r = hv.decrease_reservation(ram, ExtentOrder::PAGE_4K, &[XenPfn::new(1 << 36)]);
    expect(
        c,
        "a frame beyond the guest's limit",
        typed(r),
        Errno::Inval,
    );
    let r = hv.decrease_reservation(MemKind::NonVolatile, ExtentOrder::PAGE_4K, &[page]);
    expect(c, "NVRAM flag on a RAM page", typed(r), Errno::Inval);
    let flags = reserve_raw(insn, Decrease, at, 1, 0, NVIRT_MEMF_NVRAM, SELF);
    expect(c, "NVRAM flag on a RAM page (raw)", flags, Errno::Inval);
    if let Some(nv) = nvram {
        let nv_page = XenPfn::new(nv.start / PAGE);
        let r = hv.decrease_reservation(ram, ExtentOrder::PAGE_4K, &[nv_page]);
        expect(c, "RAM flag on an NVRAM page", typed(r), Errno::Inval);
        let r = hv.populate_physmap(
            ram,
            ExtentOrder::PAGE_4K,
            &mut [XenPfn::new(nv_page.raw() + 1)],
        );
        expect(
            c,
            "RAM populated into the NVRAM region",
            typed(r),
            Errno::Inval,
        );
    }

    partial_success(c, hv, map);

    let mut none = [XenPfn::new(0)];
    let r = hv.increase_reservation(ram, ExtentOrder::PAGE_4K, &mut none);
    expect(
        c,
        "increase_reservation with no free frame in the map",
        typed(r),
        Errno::NoMem,
    );

    let mut two = [E820Entry::default(); 2];
    let r = hv.memory_map(&mut two);
    c.check(
        r == Ok(2) && two[0].addr() == 0,
        format_args!(
            "memory_map into room for 2 entries: {} (2, cut short, expected)",
            typed(r)
        ),
    );
    let header = XenMemoryMap::new(8, GuestAddr::new(NOWHERE));
    let r = memory_op_raw(insn, Command::MemoryMap.raw(), virt(&raw const header));
    expect(c, "memory_map buffer outside guest memory", r, Errno::Fault);

    let (max, now) = (hv.maximum_reservation(), hv.current_reservation());
    c.check(
        max.is_ok() && max == now,
        format_args!("maximum_reservation {max:?} = current_reservation {now:?}"),
    );
    let last = hv.maximum_gpfn().map(|g| g.raw());
    c.check(
        last == Ok(map.end() / PAGE - 1),
        format_args!("maximum_gpfn {last:x?}: the map's last frame"),
    );
}

/// A populate of [hole, backed page] does the hole and stops: Xen's
/// partial success, count 1.
fn partial_success(c: &mut Checks, hv: &mut Hv, map: &MemoryMap<MEMMAP_MAX>) {
    let Some(window) = balloon_window(map, false, 0) else {
        c.check(false, format_args!("partial success: a RAM window"));
        return;
    };
    let p = window.start / PAGE + 2;
    let out = hv.decrease_reservation(MemKind::Volatile, ExtentOrder::PAGE_4K, &[XenPfn::new(p)]);
    let mut pair = [XenPfn::new(p), XenPfn::new(p + 1)];
    let r = hv.populate_physmap(MemKind::Volatile, ExtentOrder::PAGE_4K, &mut pair);
    c.check(
        out == Ok(1) && r == Ok(1),
        format_args!(
            "partial success: populate [hole {p:#x}, backed {:#x}]: {} (1 expected)",
            p + 1,
            typed(r)
        ),
    );
    let page = p * PAGE..(p + 1) * PAGE;
    let zero = first_nonzero(&page);
    let pattern = fill_and_verify(&page);
    c.check(
        zero.is_none() && pattern.is_none(),
        format_args!("partial success: the populated page came back zeroed and holds the pattern"),
    );
}
