//! The crate held to numbers and bytes generated from Xen's real public
//! headers (see [`xen_c447b73`]): every size, alignment and field offset
//! of the argument structures for 64-bit and 32-bit callers, the
//! hypercall, command, flag, domain, error and CPUID numbers, and
//! C-initialised byte images.

mod xen_c447b73;

use core::mem::{align_of, offset_of, size_of};

use zerocopy::{FromBytes, IntoBytes};

use self::xen_c447b73::*;
use crate::discovery::{XEN_CPUID_FIRST_LEAF, XEN_CPUID_SIGNATURE};
use crate::errno::Errno;
use crate::flags::{
    XENMEMF_EXACT_NODE_REQUEST, XENMEMF_NODE_SHIFT, XENMEMF_POPULATE_ON_DEMAND, XENMEMF_VNODE,
};
use crate::layout::{
    CompatForeignMemoryMap, CompatMemoryMap, CompatMemoryReservation, E820Entry, ForeignMemoryMap,
    MemoryDomain, MemoryMap, MemoryReservation,
};
use crate::numbers::{Command, HYPERVISOR_CONSOLE_IO, HYPERVISOR_MEMORY_OP, HYPERVISOR_SCHED_OP};
use crate::protocol::{CONSOLEIO_WRITE, SCHEDOP_SHUTDOWN};
use crate::types::{DomId, GuestAddr};

fn golden(what: &str) -> (u64, u64) {
    let Some(&(_, native, compat)) = NUMBERS.iter().find(|(name, _, _)| *name == what) else {
        panic!("{what} is not among the golden numbers of Xen {XEN_COMMIT}");
    };
    (native, compat)
}

fn same(what: &str, native: usize, compat: usize) {
    assert_eq!(
        golden(what),
        (native as u64, compat as u64),
        "{what} (64-bit, 32-bit) against Xen {XEN_COMMIT}"
    );
}

fn both(what: &str, value: u64) {
    assert_eq!(
        golden(what),
        (value, value),
        "{what} against Xen {XEN_COMMIT}"
    );
}

#[test]
fn layouts_are_xens() {
    type R = MemoryReservation;
    type CR = CompatMemoryReservation;
    same("pointer size", 8, 4);
    same("reservation size", size_of::<R>(), size_of::<CR>());
    same("reservation align", align_of::<R>(), align_of::<CR>());
    same(
        "reservation.extent_start",
        offset_of!(R, extent_start),
        offset_of!(CR, extent_start),
    );
    same(
        "reservation.nr_extents",
        offset_of!(R, nr_extents),
        offset_of!(CR, nr_extents),
    );
    same(
        "reservation.extent_order",
        offset_of!(R, extent_order),
        offset_of!(CR, extent_order),
    );
    same(
        "reservation.mem_flags",
        offset_of!(R, mem_flags),
        offset_of!(CR, mem_flags),
    );
    same(
        "reservation.domid",
        offset_of!(R, domid),
        offset_of!(CR, domid),
    );
    same(
        "xen_pfn_t size",
        crate::layout::XEN_PFN_SIZE as usize,
        crate::layout::COMPAT_PFN_SIZE as usize,
    );
    type M = MemoryMap;
    type CM = CompatMemoryMap;
    same("memory_map size", size_of::<M>(), size_of::<CM>());
    same("memory_map align", align_of::<M>(), align_of::<CM>());
    same(
        "memory_map.nr_entries",
        offset_of!(M, nr_entries),
        offset_of!(CM, nr_entries),
    );
    same(
        "memory_map.buffer",
        offset_of!(M, buffer),
        offset_of!(CM, buffer),
    );
    type F = ForeignMemoryMap;
    type CF = CompatForeignMemoryMap;
    same("foreign_memory_map size", size_of::<F>(), size_of::<CF>());
    same(
        "foreign_memory_map align",
        align_of::<F>(),
        align_of::<CF>(),
    );
    same(
        "foreign_memory_map.domid",
        offset_of!(F, domid),
        offset_of!(CF, domid),
    );
    same(
        "foreign_memory_map.map",
        offset_of!(F, map),
        offset_of!(CF, map),
    );
    // One layout for both.
    same(
        "memory_domain size",
        size_of::<MemoryDomain>(),
        size_of::<MemoryDomain>(),
    );
    same(
        "memory_domain align",
        align_of::<MemoryDomain>(),
        align_of::<MemoryDomain>(),
    );
    same(
        "e820entry size",
        size_of::<E820Entry>(),
        size_of::<E820Entry>(),
    );
    same(
        "e820entry.size",
        offset_of!(E820Entry, size),
        offset_of!(E820Entry, size),
    );
    same(
        "e820entry.type",
        offset_of!(E820Entry, kind),
        offset_of!(E820Entry, kind),
    );
}

#[test]
fn numbers_are_xens() {
    both("__HYPERVISOR_memory_op", HYPERVISOR_MEMORY_OP);
    both("__HYPERVISOR_console_io", HYPERVISOR_CONSOLE_IO);
    both("__HYPERVISOR_sched_op", HYPERVISOR_SCHED_OP);
    for (what, command) in [
        ("XENMEM_increase_reservation", Command::IncreaseReservation),
        ("XENMEM_decrease_reservation", Command::DecreaseReservation),
        ("XENMEM_maximum_ram_page", Command::MaximumRamPage),
        ("XENMEM_current_reservation", Command::CurrentReservation),
        ("XENMEM_maximum_reservation", Command::MaximumReservation),
        ("XENMEM_populate_physmap", Command::PopulatePhysmap),
        ("XENMEM_memory_map", Command::MemoryMap),
        ("XENMEM_machine_memory_map", Command::MachineMemoryMap),
        ("XENMEM_set_memory_map", Command::SetMemoryMap),
        ("XENMEM_maximum_gpfn", Command::MaximumGpfn),
    ] {
        both(what, command.raw());
    }
    both("XENMEMF_node(0)", 1 << XENMEMF_NODE_SHIFT);
    both(
        "XENMEMF_populate_on_demand",
        XENMEMF_POPULATE_ON_DEMAND.into(),
    );
    both(
        "XENMEMF_exact_node_request",
        XENMEMF_EXACT_NODE_REQUEST.into(),
    );
    both("XENMEMF_vnode", XENMEMF_VNODE.into());
    both("DOMID_SELF", DomId::SELF.raw().into());
    both("DOMID_FIRST_RESERVED", DomId::FIRST_RESERVED.raw().into());
    for (what, e) in [
        ("XEN_EPERM", Errno::Perm),
        ("XEN_ESRCH", Errno::Srch),
        ("XEN_ENOMEM", Errno::NoMem),
        ("XEN_EFAULT", Errno::Fault),
        ("XEN_EINVAL", Errno::Inval),
        ("XEN_ENOSYS", Errno::NoSys),
    ] {
        both(what, e.code().into());
    }
    both("CONSOLEIO_write", CONSOLEIO_WRITE);
    both("SCHEDOP_shutdown", SCHEDOP_SHUTDOWN);
    both("XEN_CPUID_FIRST_LEAF", XEN_CPUID_FIRST_LEAF.into());
    both("XEN_CPUID_SIGNATURE_EBX", XEN_CPUID_SIGNATURE[0].into());
    both("XEN_CPUID_SIGNATURE_ECX", XEN_CPUID_SIGNATURE[1].into());
    both("XEN_CPUID_SIGNATURE_EDX", XEN_CPUID_SIGNATURE[2].into());
    // The highest HVM-leaf flag Xen assigns stays below nvirt's NVRAM bit.
    let (upcall, _) = golden("XEN_HVM_CPUID_UPCALL_VECTOR");
    assert!(upcall < u64::from(crate::discovery::NVIRT_HVM_CPUID_NVRAM));
}

#[test]
fn byte_images_are_xens() {
    let r = MemoryReservation::new(
        GuestAddr::new(0x1122_3344_5566_7788),
        3,
        9,
        0x8000_0000,
        DomId::SELF,
    );
    assert_eq!(r.as_bytes(), &RESERVATION_64);
    let cr = CompatMemoryReservation::new(0x1122_3344, 3, 9, 0x8000_0000, DomId::SELF);
    assert_eq!(cr.as_bytes(), &RESERVATION_32);
    let m = MemoryMap::new(128, GuestAddr::new(0xdead_b000));
    assert_eq!(m.as_bytes(), &MEMORY_MAP_64);
    let cm = CompatMemoryMap::new(128, 0xdead_b000);
    assert_eq!(cm.as_bytes(), &MEMORY_MAP_32);
    assert_eq!(
        ForeignMemoryMap::new(DomId::new(5), m).as_bytes(),
        &FOREIGN_MEMORY_MAP_64
    );
    assert_eq!(
        CompatForeignMemoryMap::new(DomId::new(5), cm).as_bytes(),
        &FOREIGN_MEMORY_MAP_32
    );
    let e = E820Entry::new(0x10_0000, 0x7ff0_0000, 1);
    assert_eq!(e.as_bytes(), &E820_ENTRY_64);
    assert_eq!(e.as_bytes(), &E820_ENTRY_32);
    // And back: what a C guest writes reads as the same values.
    let back = CompatMemoryReservation::read_from_bytes(&RESERVATION_32).map(|c| c.widen());
    assert_eq!(
        back.map(|w| (w.nr_extents(), w.domid())),
        Ok((3, DomId::SELF))
    );
}
