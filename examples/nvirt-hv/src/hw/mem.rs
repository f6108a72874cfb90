//! Physical memory as the boot identity map shows it (virtual = physical
//! for the first [`IDENTITY_MAP_GIB`] GiB), and the accessors the pure
//! logic's traits need: reading firmware structures, writing nested tables,
//! writing and reading guest memory.
//!
//! Every address that reaches a raw pointer here has been bounds-checked
//! against the identity map (and, for guest memory, against the guest's
//! regions by [`GuestMemoryMap::translate`]).

use core::ops::Range;
use core::ptr;

use nvirt_hv::frames::FrameAlloc;
use nvirt_hv::guest_memory::{GuestAccessError, GuestMemoryMap};
use nvirt_hv::guest_setup::GuestWrite;
use nvirt_hv::phys::{PhysError, PhysRead};
use nvirt_hv::scaffold_nested::TableMemory;

use super::boot::IDENTITY_MAP_GIB;

/// One past the highest identity-mapped address.
pub(crate) const IDENTITY_LIMIT: u64 = IDENTITY_MAP_GIB << 30;

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

/// Reads through the identity map.
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

/// Bytes of host physical memory the hypervisor holds (a module, an
/// allocated block), as a slice.
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

/// Nested-table frames from a frame allocator, reached through the identity
/// map.
pub(crate) struct TableFrames<'a, F: FrameAlloc> {
    frames: &'a mut F,
}

impl<'a, F: FrameAlloc> TableFrames<'a, F> {
    pub(crate) fn new(frames: &'a mut F) -> Self {
        Self { frames }
    }
}

impl<F: FrameAlloc> TableMemory for TableFrames<'_, F> {
    fn alloc_table(&mut self) -> Option<u64> {
        let frame = self.frames.alloc_frame()?;
        if !mapped(frame, 4096) {
            return None;
        }
        // SAFETY: a fresh frame from the allocator, identity mapped.
        unsafe { zero_host(frame, 4096) };
        Some(frame)
    }

    fn read_entry(&self, table: u64, index: usize) -> u64 {
        let addr = table + (index as u64 & 511) * 8;
        // SAFETY: `table` came from `alloc_table` (mapped, owned by the
        // tables); the index is masked into the page.
        unsafe { host_ptr(addr).cast::<u64>().read_volatile() }
    }

    fn write_entry(&mut self, table: u64, index: usize, value: u64) {
        let addr = table + (index as u64 & 511) * 8;
        // SAFETY: as in `read_entry`; volatile because the hardware walker
        // reads these entries.
        unsafe { host_ptr(addr).cast::<u64>().write_volatile(value) };
    }
}

/// A guest's memory, reached through its region map.
pub(crate) struct GuestMem<'a> {
    map: &'a GuestMemoryMap,
}

impl<'a> GuestMem<'a> {
    pub(crate) fn new(map: &'a GuestMemoryMap) -> Self {
        Self { map }
    }

    fn host(&self, gpa: u64, len: u64) -> Result<u64, GuestAccessError> {
        let hpa = self.map.translate(gpa, len)?;
        if mapped(hpa, len) {
            Ok(hpa)
        } else {
            Err(GuestAccessError { gpa, len })
        }
    }

    /// Copies guest memory out (volatile: the guest owns it).
    pub(crate) fn read(&self, gpa: u64, out: &mut [u8]) -> Result<(), GuestAccessError> {
        let hpa = self.host(gpa, out.len() as u64)?;
        for (i, byte) in out.iter_mut().enumerate() {
            // SAFETY: translated and bounds-checked above.
            *byte = unsafe { host_ptr(hpa + i as u64).read_volatile() };
        }
        Ok(())
    }
}

impl GuestWrite for GuestMem<'_> {
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), GuestAccessError> {
        let hpa = self.host(gpa, bytes.len() as u64)?;
        // SAFETY: translated and bounds-checked above; the guest's memory is
        // host memory reserved for it, disjoint from `bytes` (the image
        // module is reserved from every allocator).
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), host_ptr(hpa), bytes.len()) };
        Ok(())
    }

    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), GuestAccessError> {
        let hpa = self.host(gpa, len)?;
        // SAFETY: translated and bounds-checked above.
        unsafe { ptr::write_bytes(host_ptr(hpa), 0, len as usize) };
        Ok(())
    }
}
