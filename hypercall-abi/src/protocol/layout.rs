//! Where the hypervisor puts a guest's boot structures. Every boundary is
//! checked at compile time: the structures never overlap, the stack lies
//! below the EBDA, the image above 1 MiB.

use core::mem::size_of;

use nvirt_addr::GuestPhysAddr;

use super::start_info::{MemmapEntry, StartInfo};

/// A layout constant; the asserts below keep every one far below 2^52.
const fn gpa(raw: u64) -> GuestPhysAddr {
    match GuestPhysAddr::new(raw) {
        Some(a) => a,
        None => panic!("a guest-physical layout address beyond MAXPHYADDR"),
    }
}

/// Where [`StartInfo`] goes.
pub const START_INFO_GPA: GuestPhysAddr = gpa(0x1000);
/// Where its memory map goes.
pub const MEMMAP_GPA: GuestPhysAddr = gpa(0x1100);
/// Most entries of the guest's memory map.
pub const MEMMAP_MAX: usize = 64;
/// Where the guest's command line goes.
pub const CMDLINE_GPA: GuestPhysAddr = gpa(0x1800);
/// Its room, the terminating NUL included.
pub const CMDLINE_MAX: usize = 0x800;
/// Where the guest's GDT goes (three 8-byte descriptors).
pub const GDT_GPA: GuestPhysAddr = gpa(0x2000);
/// Where the guest's page tables start.
pub const PAGE_TABLES_GPA: GuestPhysAddr = gpa(0x1_0000);
/// Where the guest's page tables must end.
pub const PAGE_TABLES_END: GuestPhysAddr = gpa(0x9_0000);
/// The guest's initial stack pointer: above the page tables, below the
/// EBDA.
pub const INITIAL_RSP: GuestPhysAddr = gpa(0x9_f000);
/// Where the guest image is expected to load (1 MiB).
pub const IMAGE_GPA: GuestPhysAddr = gpa(0x10_0000);
/// Guest code selector (64-bit).
pub const GUEST_CODE_SELECTOR: u16 = 0x08;
/// Guest data selector.
pub const GUEST_DATA_SELECTOR: u16 = 0x10;

// The layout's pieces never overlap. The two sizes live inside the block:
// only these checks use them (older compilers call them dead outside it).
const _: () = {
    // Where the EBDA may begin: the legacy area the guest's map shows
    // reserved.
    const EBDA: u64 = 0x9_fc00;
    // Bytes of the GDT.
    const GDT_LEN: u64 = 3 * 8;
    assert!(START_INFO_GPA.get() + size_of::<StartInfo>() as u64 <= MEMMAP_GPA.get());
    assert!(MEMMAP_GPA.get() + (MEMMAP_MAX * size_of::<MemmapEntry>()) as u64 <= CMDLINE_GPA.get());
    assert!(CMDLINE_GPA.get() + CMDLINE_MAX as u64 <= GDT_GPA.get());
    assert!(GDT_GPA.get() + GDT_LEN <= PAGE_TABLES_GPA.get());
    assert!(PAGE_TABLES_GPA.get() % 4096 == 0 && PAGE_TABLES_END.get() % 4096 == 0);
    assert!(PAGE_TABLES_END.get() < INITIAL_RSP.get());
    assert!(INITIAL_RSP.get() % 16 == 0 && INITIAL_RSP.get() <= EBDA);
    assert!(IMAGE_GPA.get() >= 0x10_0000 && IMAGE_GPA.get() % 4096 == 0);
    assert!(GUEST_CODE_SELECTOR == 8 && GUEST_DATA_SELECTOR == 16);
};
