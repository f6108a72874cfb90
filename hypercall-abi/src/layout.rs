//! The argument structures of `memory_op`, byte for byte as Xen lays them out
//! on x86_64.
//!
//! Checked against xen-project/xen master, `xen/include/public/memory.h`,
//! with the x86 type definitions of `xen/include/public/arch-x86/xen.h`:
//! a guest handle (`XEN_GUEST_HANDLE(x)`) is `struct { x *p; }`, 8 bytes;
//! `xen_pfn_t` and `xen_ulong_t` are `unsigned long`, 8 bytes; `domid_t` is
//! `uint16_t` (`xen/include/public/xen.h`); `unsigned int` is 4 bytes. The
//! E820 entry is Xen's `struct __packed e820entry`
//! (`xen/arch/x86/include/asm/e820.h`, and `tools/include/xenctrl.h`): the
//! 20-byte entry of BIOS INT 15h, AX=E820h that `XENMEM_memory_map`'s comment
//! names.
//!
//! Fields are little-endian and the structures carry C's padding as explicit
//! bytes, so they can be copied to and from guest memory as plain bytes
//! (`zerocopy`) on any host. The padding is written as zero and ignored on
//! reading: a C guest leaves whatever its stack held there.

use core::mem::{align_of, offset_of, size_of};

use static_assertions::const_assert_eq;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::types::{DomId, GuestAddr};

/// `struct xen_memory_reservation`: the argument of increase_reservation,
/// decrease_reservation and populate_physmap. 32 bytes, 8-byte aligned.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | `extent_start` (guest handle of `xen_pfn_t`) |
/// | 8 | 8 | `nr_extents` (`xen_ulong_t`) |
/// | 16 | 4 | `extent_order` |
/// | 20 | 4 | `mem_flags` |
/// | 24 | 2 | `domid` |
/// | 26 | 6 | padding |
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct MemoryReservation {
    extent_start: U64,
    nr_extents: U64,
    extent_order: U32,
    mem_flags: U32,
    domid: U16,
    _pad: [u8; 6],
}

const_assert_eq!(size_of::<MemoryReservation>(), 32);
const_assert_eq!(align_of::<MemoryReservation>(), 8);
const_assert_eq!(offset_of!(MemoryReservation, extent_start), 0);
const_assert_eq!(offset_of!(MemoryReservation, nr_extents), 8);
const_assert_eq!(offset_of!(MemoryReservation, extent_order), 16);
const_assert_eq!(offset_of!(MemoryReservation, mem_flags), 20);
const_assert_eq!(offset_of!(MemoryReservation, domid), 24);
const_assert_eq!(offset_of!(MemoryReservation, _pad), 26);

impl MemoryReservation {
    /// A reservation of the raw field values, as a guest would fill it.
    #[must_use]
    pub const fn new(
        extent_start: GuestAddr,
        nr_extents: u64,
        extent_order: u32,
        mem_flags: u32,
        domid: DomId,
    ) -> Self {
        Self {
            extent_start: U64::new(extent_start.raw()),
            nr_extents: U64::new(nr_extents),
            extent_order: U32::new(extent_order),
            mem_flags: U32::new(mem_flags),
            domid: U16::new(domid.raw()),
            _pad: [0; 6],
        }
    }

    /// The alleged address of the `xen_pfn_t` array.
    #[must_use]
    pub const fn extent_start(&self) -> GuestAddr {
        GuestAddr::new(self.extent_start.get())
    }

    /// Points the handle at the array (the guest's transport does this once
    /// it knows where the array lives).
    pub const fn set_extent_start(&mut self, addr: GuestAddr) {
        self.extent_start = U64::new(addr.raw());
    }

    /// The number of extents, as alleged.
    #[must_use]
    pub const fn nr_extents(&self) -> u64 {
        self.nr_extents.get()
    }

    /// The extent order, as alleged (not yet bounded).
    #[must_use]
    pub const fn extent_order(&self) -> u32 {
        self.extent_order.get()
    }

    /// The `mem_flags` word, as alleged (see [`MemFlags`](crate::MemFlags)).
    #[must_use]
    pub const fn mem_flags(&self) -> u32 {
        self.mem_flags.get()
    }

    /// The domain, as alleged.
    #[must_use]
    pub const fn domid(&self) -> DomId {
        DomId::new(self.domid.get())
    }
}

/// `struct xen_memory_map`: the argument of memory_map and
/// machine_memory_map. 16 bytes, 8-byte aligned.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | `nr_entries` (in: capacity; out: entries written) |
/// | 4 | 4 | padding |
/// | 8 | 8 | `buffer` (guest handle of E820 entries) |
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct MemoryMap {
    nr_entries: U32,
    _pad: [u8; 4],
    buffer: U64,
}

const_assert_eq!(size_of::<MemoryMap>(), 16);
const_assert_eq!(align_of::<MemoryMap>(), 8);
const_assert_eq!(offset_of!(MemoryMap, nr_entries), 0);
const_assert_eq!(offset_of!(MemoryMap, _pad), 4);
const_assert_eq!(offset_of!(MemoryMap, buffer), 8);

impl MemoryMap {
    /// Offset of `nr_entries`, which the hypervisor writes back.
    pub const NR_ENTRIES_OFFSET: u64 = offset_of!(Self, nr_entries) as u64;

    /// A map argument with room for `nr_entries` entries at `buffer`.
    #[must_use]
    pub const fn new(nr_entries: u32, buffer: GuestAddr) -> Self {
        Self {
            nr_entries: U32::new(nr_entries),
            _pad: [0; 4],
            buffer: U64::new(buffer.raw()),
        }
    }

    /// Entries: the buffer's capacity on the way in, entries written on the
    /// way out.
    #[must_use]
    pub const fn nr_entries(&self) -> u32 {
        self.nr_entries.get()
    }

    /// Sets `nr_entries`.
    pub const fn set_nr_entries(&mut self, n: u32) {
        self.nr_entries = U32::new(n);
    }

    /// The alleged address of the entry buffer.
    #[must_use]
    pub const fn buffer(&self) -> GuestAddr {
        GuestAddr::new(self.buffer.get())
    }

    /// Points the handle at the buffer.
    pub const fn set_buffer(&mut self, addr: GuestAddr) {
        self.buffer = U64::new(addr.raw());
    }
}

/// `struct xen_foreign_memory_map`: the argument of set_memory_map. 24
/// bytes, 8-byte aligned: the domain id, 6 bytes of padding (the embedded
/// `xen_memory_map` is 8-aligned), the map.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct ForeignMemoryMap {
    domid: U16,
    _pad: [u8; 6],
    map: MemoryMap,
}

const_assert_eq!(size_of::<ForeignMemoryMap>(), 24);
const_assert_eq!(align_of::<ForeignMemoryMap>(), 8);
const_assert_eq!(offset_of!(ForeignMemoryMap, domid), 0);
const_assert_eq!(offset_of!(ForeignMemoryMap, _pad), 2);
const_assert_eq!(offset_of!(ForeignMemoryMap, map), 8);

impl ForeignMemoryMap {
    /// The map of domain `domid`.
    #[must_use]
    pub const fn new(domid: DomId, map: MemoryMap) -> Self {
        Self {
            domid: U16::new(domid.raw()),
            _pad: [0; 6],
            map,
        }
    }

    /// The domain, as alleged.
    #[must_use]
    pub const fn domid(&self) -> DomId {
        DomId::new(self.domid.get())
    }

    /// The map argument.
    #[must_use]
    pub const fn map(&self) -> MemoryMap {
        self.map
    }
}

/// `struct xen_memory_domain` (`xen/include/public/memory.h`): the argument
/// of current_reservation, maximum_reservation and maximum_gpfn ("arg ==
/// addr of domid_t" in older headers). 2 bytes.
#[repr(C, align(2))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct MemoryDomain {
    domid: U16,
}

const_assert_eq!(size_of::<MemoryDomain>(), 2);
const_assert_eq!(align_of::<MemoryDomain>(), 2);
const_assert_eq!(offset_of!(MemoryDomain, domid), 0);

impl MemoryDomain {
    /// The query argument for `domid`.
    #[must_use]
    pub const fn new(domid: DomId) -> Self {
        Self {
            domid: U16::new(domid.raw()),
        }
    }

    /// The domain, as alleged.
    #[must_use]
    pub const fn domid(&self) -> DomId {
        DomId::new(self.domid.get())
    }
}

/// A 20-byte E820 entry (`struct __packed e820entry`): base address, length,
/// type — no alignment, no padding, as BIOS INT 15h, AX=E820h returns it.
#[repr(C)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
pub struct E820Entry {
    addr: U64,
    size: U64,
    kind: U32,
}

const_assert_eq!(size_of::<E820Entry>(), 20);
const_assert_eq!(align_of::<E820Entry>(), 1);
const_assert_eq!(offset_of!(E820Entry, addr), 0);
const_assert_eq!(offset_of!(E820Entry, size), 8);
const_assert_eq!(offset_of!(E820Entry, kind), 16);

impl E820Entry {
    /// `E820_RAM` (1).
    pub const RAM: u32 = 1;
    /// `E820_RESERVED` (2).
    pub const RESERVED: u32 = 2;
    /// Persistent memory (ACPI 6 type 7, `E820_TYPE_PMEM` in Linux).
    pub const PMEM: u32 = 7;
    /// Legacy persistent memory (type 12, `E820_TYPE_PRAM` in Linux).
    pub const PRAM: u32 = 12;

    /// The entry for `size` bytes from `addr`, of type `kind`.
    #[must_use]
    pub const fn new(addr: u64, size: u64, kind: u32) -> Self {
        Self {
            addr: U64::new(addr),
            size: U64::new(size),
            kind: U32::new(kind),
        }
    }

    /// First byte.
    #[must_use]
    pub const fn addr(&self) -> u64 {
        self.addr.get()
    }

    /// Length in bytes.
    #[must_use]
    pub const fn size(&self) -> u64 {
        self.size.get()
    }

    /// E820 type code.
    #[must_use]
    pub const fn kind(&self) -> u32 {
        self.kind.get()
    }
}

/// `struct compat_memory_reservation`: [`MemoryReservation`] as a 32-bit
/// caller lays it out (Xen's compat layer: handles, `xen_pfn_t` and
/// `xen_ulong_t` are 4 bytes). 20 bytes, 4-byte aligned.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | `extent_start` (handle of 4-byte `compat_pfn_t`) |
/// | 4 | 4 | `nr_extents` |
/// | 8 | 4 | `extent_order` |
/// | 12 | 4 | `mem_flags` |
/// | 16 | 2 | `domid` |
/// | 18 | 2 | padding |
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct CompatMemoryReservation {
    extent_start: U32,
    nr_extents: U32,
    extent_order: U32,
    mem_flags: U32,
    domid: U16,
    _pad: [u8; 2],
}

const_assert_eq!(size_of::<CompatMemoryReservation>(), 20);
const_assert_eq!(align_of::<CompatMemoryReservation>(), 4);
const_assert_eq!(offset_of!(CompatMemoryReservation, extent_start), 0);
const_assert_eq!(offset_of!(CompatMemoryReservation, nr_extents), 4);
const_assert_eq!(offset_of!(CompatMemoryReservation, extent_order), 8);
const_assert_eq!(offset_of!(CompatMemoryReservation, mem_flags), 12);
const_assert_eq!(offset_of!(CompatMemoryReservation, domid), 16);
const_assert_eq!(offset_of!(CompatMemoryReservation, _pad), 18);

impl CompatMemoryReservation {
    /// A reservation of the raw field values, as a 32-bit guest fills it.
    #[must_use]
    pub const fn new(
        extent_start: u32,
        nr_extents: u32,
        extent_order: u32,
        mem_flags: u32,
        domid: DomId,
    ) -> Self {
        Self {
            extent_start: U32::new(extent_start),
            nr_extents: U32::new(nr_extents),
            extent_order: U32::new(extent_order),
            mem_flags: U32::new(mem_flags),
            domid: U16::new(domid.raw()),
            _pad: [0; 2],
        }
    }

    /// The same values in the native layout (addresses and counts
    /// zero-extended, as Xen's compat layer translates them).
    #[must_use]
    pub const fn widen(&self) -> MemoryReservation {
        MemoryReservation::new(
            GuestAddr::new(self.extent_start.get() as u64),
            self.nr_extents.get() as u64,
            self.extent_order.get(),
            self.mem_flags.get(),
            DomId::new(self.domid.get()),
        )
    }
}

/// `struct compat_memory_map`: [`MemoryMap`] of a 32-bit caller. 8 bytes,
/// 4-byte aligned: `nr_entries` at 0, `buffer` (4-byte handle) at 4.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct CompatMemoryMap {
    nr_entries: U32,
    buffer: U32,
}

const_assert_eq!(size_of::<CompatMemoryMap>(), 8);
const_assert_eq!(align_of::<CompatMemoryMap>(), 4);
const_assert_eq!(offset_of!(CompatMemoryMap, nr_entries), 0);
const_assert_eq!(offset_of!(CompatMemoryMap, buffer), 4);
// The count written back sits where the native layout has it.
const_assert_eq!(
    offset_of!(CompatMemoryMap, nr_entries),
    offset_of!(MemoryMap, nr_entries)
);

impl CompatMemoryMap {
    /// A map argument with room for `nr_entries` entries at `buffer`.
    #[must_use]
    pub const fn new(nr_entries: u32, buffer: u32) -> Self {
        Self {
            nr_entries: U32::new(nr_entries),
            buffer: U32::new(buffer),
        }
    }

    /// The same values in the native layout.
    #[must_use]
    pub const fn widen(&self) -> MemoryMap {
        MemoryMap::new(
            self.nr_entries.get(),
            GuestAddr::new(self.buffer.get() as u64),
        )
    }
}

/// `struct compat_foreign_memory_map`: [`ForeignMemoryMap`] of a 32-bit
/// caller. 12 bytes, 4-byte aligned: `domid` at 0, 2 bytes of padding, the
/// map at 4.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct CompatForeignMemoryMap {
    domid: U16,
    _pad: [u8; 2],
    map: CompatMemoryMap,
}

const_assert_eq!(size_of::<CompatForeignMemoryMap>(), 12);
const_assert_eq!(align_of::<CompatForeignMemoryMap>(), 4);
const_assert_eq!(offset_of!(CompatForeignMemoryMap, domid), 0);
const_assert_eq!(offset_of!(CompatForeignMemoryMap, _pad), 2);
const_assert_eq!(offset_of!(CompatForeignMemoryMap, map), 4);

impl CompatForeignMemoryMap {
    /// The map of domain `domid`.
    #[must_use]
    pub const fn new(domid: DomId, map: CompatMemoryMap) -> Self {
        Self {
            domid: U16::new(domid.raw()),
            _pad: [0; 2],
            map,
        }
    }

    /// The same values in the native layout.
    #[must_use]
    pub const fn widen(&self) -> ForeignMemoryMap {
        ForeignMemoryMap::new(DomId::new(self.domid.get()), self.map.widen())
    }
}

/// Size of a [`MemoryReservation`] in guest memory.
pub const RESERVATION_SIZE: u64 = size_of::<MemoryReservation>() as u64;
/// Size of a [`MemoryMap`] in guest memory.
pub const MEMORY_MAP_SIZE: u64 = size_of::<MemoryMap>() as u64;
/// Size of a [`ForeignMemoryMap`] in guest memory.
pub const FOREIGN_MEMORY_MAP_SIZE: u64 = size_of::<ForeignMemoryMap>() as u64;
/// Size of a [`MemoryDomain`] in guest memory.
pub const MEMORY_DOMAIN_SIZE: u64 = size_of::<MemoryDomain>() as u64;
/// Size of an [`E820Entry`] in guest memory.
pub const E820_ENTRY_SIZE: u64 = size_of::<E820Entry>() as u64;
/// Size of one `xen_pfn_t` in an extent array.
pub const XEN_PFN_SIZE: u64 = 8;
/// Size of one `compat_pfn_t` in a 32-bit caller's extent array.
pub const COMPAT_PFN_SIZE: u64 = 4;

/// Checked against values generated from Xen's own headers.
#[cfg(test)]
#[path = "golden/mod.rs"]
mod golden;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservation_bytes_match_a_c_image() {
        // The image a C compiler lays out for
        // { .extent_start = 0x1122334455667788, .nr_extents = 3,
        //   .extent_order = 9, .mem_flags = 0x80000000, .domid = 0x7ff0 }.
        let mut c = [0u8; 32];
        c[0..8].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        c[8..16].copy_from_slice(&3u64.to_le_bytes());
        c[16..20].copy_from_slice(&9u32.to_le_bytes());
        c[20..24].copy_from_slice(&0x8000_0000u32.to_le_bytes());
        c[24..26].copy_from_slice(&0x7ff0u16.to_le_bytes());
        let r = MemoryReservation::new(
            GuestAddr::new(0x1122_3344_5566_7788),
            3,
            9,
            0x8000_0000,
            DomId::SELF,
        );
        assert_eq!(r.as_bytes(), &c);
        // Padding garbage from a C stack does not change what is read.
        c[26..32].fill(0xa5);
        let back = MemoryReservation::read_from_bytes(&c).unwrap();
        assert_eq!(
            (
                back.extent_start(),
                back.nr_extents(),
                back.extent_order(),
                back.mem_flags(),
                back.domid()
            ),
            (r.extent_start(), 3, 9, 0x8000_0000, DomId::SELF)
        );
    }

    #[test]
    fn compat_structures_match_c_images() {
        let r = CompatMemoryReservation::new(0x1122_3344, 3, 9, 0x8000_0000, DomId::SELF);
        let mut c = [0u8; 20];
        c[0..4].copy_from_slice(&0x1122_3344u32.to_le_bytes());
        c[4..8].copy_from_slice(&3u32.to_le_bytes());
        c[8..12].copy_from_slice(&9u32.to_le_bytes());
        c[12..16].copy_from_slice(&0x8000_0000u32.to_le_bytes());
        c[16..18].copy_from_slice(&0x7ff0u16.to_le_bytes());
        assert_eq!(r.as_bytes(), &c);
        let w = r.widen();
        assert_eq!(
            (
                w.extent_start(),
                w.nr_extents(),
                w.extent_order(),
                w.mem_flags(),
                w.domid()
            ),
            (GuestAddr::new(0x1122_3344), 3, 9, 0x8000_0000, DomId::SELF)
        );
        let m = CompatMemoryMap::new(128, 0xdead_b000);
        assert_eq!(m.as_bytes(), &[128, 0, 0, 0, 0x00, 0xb0, 0xad, 0xde]);
        assert_eq!(m.widen(), MemoryMap::new(128, GuestAddr::new(0xdead_b000)));
        let f = CompatForeignMemoryMap::new(DomId::new(5), m);
        assert_eq!(
            f.as_bytes(),
            &[5, 0, 0, 0, 128, 0, 0, 0, 0x00, 0xb0, 0xad, 0xde]
        );
        assert_eq!(f.widen(), ForeignMemoryMap::new(DomId::new(5), m.widen()));
    }

    #[test]
    fn map_structures_match_c_images() {
        let m = MemoryMap::new(128, GuestAddr::new(0xdead_b000));
        let mut c = [0u8; 16];
        c[0..4].copy_from_slice(&128u32.to_le_bytes());
        c[8..16].copy_from_slice(&0xdead_b000u64.to_le_bytes());
        assert_eq!(m.as_bytes(), &c);

        let f = ForeignMemoryMap::new(DomId::new(5), m);
        let mut fc = [0u8; 24];
        fc[0..2].copy_from_slice(&5u16.to_le_bytes());
        fc[8..24].copy_from_slice(&c);
        assert_eq!(f.as_bytes(), &fc);
        assert_eq!(f.map(), m);
        assert_eq!(f.domid(), DomId::new(5));

        let e = E820Entry::new(0x10_0000, 0x7ff0_0000, E820Entry::RAM);
        let mut ec = [0u8; 20];
        ec[0..8].copy_from_slice(&0x10_0000u64.to_le_bytes());
        ec[8..16].copy_from_slice(&0x7ff0_0000u64.to_le_bytes());
        ec[16..20].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(e.as_bytes(), &ec);
        assert_eq!(MemoryDomain::new(DomId::SELF).as_bytes(), &[0xf0, 0x7f]);
    }
}
