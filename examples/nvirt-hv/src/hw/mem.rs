//! Physical memory as the boot identity map shows it (virtual = physical
//! for the first [`IDENTITY_MAP_GIB`] GiB), and the accessors the pure
//! logic's traits need: reading firmware structures, the nested tables'
//! frames, guest frames, the heaps' metadata and the guest map's storage.
//!
//! Every address that reaches a raw pointer here is either bounds-checked
//! against the identity map or a frame from one of the heaps, which hold
//! only identity-mapped memory (`hypervisor.rs` clips RAM and NVRAM to
//! [`IDENTITY_LIMIT`] before building them).

use core::ops::Range;
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::guest_memory::HostMem;
use crate::p2m::BlockMapping;
use crate::phys::{PhysError, PhysRead};
use nvirt_ept::{HostPhysAddr, PhysMem, TableView};
use nvirt_persist_meta::X86Pmem;

use super::boot::IDENTITY_MAP_GIB;

/// One past the highest identity-mapped address.
pub(crate) const IDENTITY_LIMIT: u64 = IDENTITY_MAP_GIB << 30;

/// Most extents of the guest's physical-to-machine map: ample for a guest
/// mapped with large blocks and a few hundred single pages ballooned
/// (128 KiB of `.bss`).
pub(crate) const P2M_CAPACITY: usize = 4096;

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// The physical range the hypervisor image occupies (code, data, `.bss`,
/// boot page tables and stack).
pub(crate) fn image_range() -> Range<u64> {
    (&raw const __image_start) as u64..(&raw const __image_end) as u64
}

/// Whether `[addr, addr + len)` is identity mapped and does not start at
/// address 0 (a null Rust pointer is never valid; firmware does put data
/// right above it, e.g. QEMU's PVH memory map at 0x5a8).
fn mapped(addr: u64, len: u64) -> bool {
    addr != 0
        && addr
            .checked_add(len)
            .is_some_and(|end| end <= IDENTITY_LIMIT)
}

/// A host-physical address as a pointer (identity map).
fn host_ptr(addr: u64) -> *mut u8 {
    ptr::with_exposed_provenance_mut(addr as usize)
}

/// Physical memory through the identity map.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IdentityMemory;

impl PhysRead for IdentityMemory {
    fn read(&self, addr: u64, out: &mut [u8]) -> Result<(), PhysError> {
        if !mapped(addr, out.len() as u64) {
            return Err(PhysError {
                addr,
                len: out.len(),
            });
        }
        for (i, byte) in out.iter_mut().enumerate() {
            // SAFETY: `mapped` checked the range lies in the identity map
            // above the null page; volatile because firmware and devices own
            // this memory, not the Rust abstract machine.
            *byte = unsafe { host_ptr(addr + i as u64).read_volatile() };
        }
        Ok(())
    }
}

impl PhysMem for IdentityMemory {
    fn table(&self, frame: HostPhysAddr) -> &TableView {
        // SAFETY: the tables ask only for frames the volatile heap gave
        // them (identity mapped, 4 KiB aligned, owned by the tables until
        // freed); `[AtomicU64; 512]` has the size and alignment of the
        // frame, and the hardware walker is the only other party, which
        // atomics allow for.
        unsafe { &*ptr::with_exposed_provenance::<TableView>(frame.get() as usize) }
    }
}

impl HostMem for IdentityMemory {
    fn read(&self, hpa: HostPhysAddr, out: &mut [u8]) {
        // SAFETY: guest frames from the heaps are identity mapped; the
        // guest is not running while the hypervisor copies (one CPU), and
        // `out` is the hypervisor's own buffer, disjoint from guest frames.
        unsafe { ptr::copy_nonoverlapping(host_ptr(hpa.get()), out.as_mut_ptr(), out.len()) };
    }

    fn write(&self, hpa: HostPhysAddr, data: &[u8]) {
        // SAFETY: as in `read`.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), host_ptr(hpa.get()), data.len()) };
    }

    fn zero(&self, hpa: HostPhysAddr, len: u64) {
        // SAFETY: as in `read`; the frames belong to the guest being set
        // up or to a block just allocated for it.
        unsafe { ptr::write_bytes(host_ptr(hpa.get()), 0, len as usize) };
    }
}

/// Bytes of host physical memory the hypervisor holds (a module), as a
/// slice.
///
/// # Safety
/// The range must be identity mapped, reserved from every allocator and
/// not written by anyone while the slice lives.
pub(crate) unsafe fn host_bytes<'a>(range: &Range<u64>) -> Option<&'a [u8]> {
    let len = range.end.checked_sub(range.start)?;
    if !mapped(range.start, len) {
        return None;
    }
    // SAFETY: mapped (checked) and unaliased by writers (the caller's
    // promise).
    Some(unsafe { core::slice::from_raw_parts(host_ptr(range.start), len as usize) })
}

/// Zeroes host memory the hypervisor owns.
///
/// # Safety
/// The range must be identity mapped and owned by the caller (freshly
/// allocated, not referenced elsewhere).
pub(crate) unsafe fn zero_host(addr: u64, len: u64) {
    debug_assert!(mapped(addr, len));
    // SAFETY: the caller owns the range.
    unsafe { ptr::write_bytes(host_ptr(addr), 0, len as usize) };
}

/// RAM the hypervisor set aside for its own use (heap metadata), as a
/// mutable slice for the rest of the run.
///
/// # Safety
/// The range must be free RAM that no allocator hands out and nothing
/// else refers to, and this must be called once per range.
pub(crate) unsafe fn host_bytes_mut(range: &Range<u64>) -> Option<&'static mut [u8]> {
    let len = range.end.checked_sub(range.start)?;
    if !mapped(range.start, len) {
        return None;
    }
    // SAFETY: mapped (checked), owned by the caller alone (its promise).
    Some(unsafe { core::slice::from_raw_parts_mut(host_ptr(range.start), len as usize) })
}

/// The NVRAM range `range` as persistent memory for the NV pool: stores
/// through the identity map, written back with CLWB (or CLFLUSHOPT, or
/// CLFLUSH) and ordered with SFENCE.
///
/// # Safety
/// The range must be NVRAM inside the identity map, handed to no allocator
/// and to nothing else, and this must be called once per range. The pool
/// then owns it: it writes its metadata and scrubs data frames only while
/// no guest maps them; a guest reaches only the data frames the pool gave
/// it, through its nested tables (the hypervisor zeroes such frames, and
/// copies hypercall arguments, through the same identity map).
pub(crate) unsafe fn nvram_region(range: &Range<u64>) -> Option<X86Pmem<'static>> {
    let len = range.end.checked_sub(range.start)?;
    if !mapped(range.start, len) {
        return None;
    }
    let base = ptr::NonNull::new(host_ptr(range.start))?;
    // SAFETY: mapped (checked) for the rest of the run, valid for reads
    // and writes (identity-mapped NVRAM), not handed out elsewhere (the
    // caller's promise); the identity map is below 64 GiB, far below
    // `isize::MAX`.
    unsafe { X86Pmem::from_raw(base, usize::try_from(len).ok()?) }.ok()
}

static P2M_TAKEN: AtomicBool = AtomicBool::new(false);
static mut P2M_STORAGE: [BlockMapping; P2M_CAPACITY] = [BlockMapping::EMPTY; P2M_CAPACITY];

/// The guest map's storage, the first time it is asked for.
pub(crate) fn p2m_storage() -> Option<&'static mut [BlockMapping]> {
    if P2M_TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    let storage = &raw mut P2M_STORAGE;
    // SAFETY: the flag hands the array out once, so this is the only
    // reference to it ever made.
    Some(unsafe { &mut *storage })
}

/// The guest maps' storage split evenly among `guests` guests, the first
/// time any storage is asked for.
pub(crate) fn p2m_storages(
    guests: usize,
) -> Option<impl Iterator<Item = &'static mut [BlockMapping]>> {
    let each = P2M_CAPACITY.checked_div(guests)?;
    Some(p2m_storage()?.chunks_mut(each.max(1)).take(guests))
}
