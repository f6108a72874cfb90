//! A guest's memory: its physical-to-machine map, its nested tables and
//! the heaps behind them, kept in agreement.
//!
//! Guest RAM comes from the volatile buddy heap, guest NVRAM from the
//! NVRAM pool ([`FramePool`]); both are allocated largest block first,
//! each block no larger than the guest address's alignment and the
//! remaining size allow, and mapped by `nvirt-ept` with the largest pages
//! that allows. The tables' own frames come from the volatile heap.
//! [`balloon`](crate::balloon) adds populating and releasing frames at the
//! guest's request, [`audit`](crate::audit) checks the tables against the
//! map, and [`Regions`] says where the balloon may act; this module holds
//! the state and the hypervisor's own
//! access to guest memory (loading the guest, hypercall arguments), every
//! guest address checked against the map before a host address is formed.

use core::fmt;

use nvirt_addr::{GuestPhysAddr, GuestPhysRange, HostPhysAddr};
use nvirt_buddy::{Heap, MemKind};
use nvirt_ept::{Invalidate, MapError, NewError, PhysMem, UnmapError};

use crate::footprint::{self, Footprint};
use crate::heaps::TableFrames;
use crate::nested::{Nested, NestedConfig};
use crate::p2m::{BlockMapping, P2m, P2mError};
use crate::pool::{FramePool, PoolError};
use crate::regions::Regions;

/// Bytes per guest frame.
#[cfg(any(test, feature = "std"))]
pub const PAGE: u64 = nvirt_addr::PAGE_SIZE;

/// Byte access to host memory, for the frames guests get: a bare-metal
/// hypervisor goes through its direct map. Only frames from the heaps are
/// passed, so accesses cannot fail.
pub trait HostMem: PhysMem {
    /// Copies `out.len()` bytes from host-physical `hpa`.
    fn read(&self, hpa: HostPhysAddr, out: &mut [u8]);
    /// Copies `data` to host-physical `hpa`.
    fn write(&self, hpa: HostPhysAddr, data: &[u8]);
    /// Zeroes `len` bytes at host-physical `hpa`.
    fn zero(&self, hpa: HostPhysAddr, len: u64);
}

impl<T: HostMem + ?Sized> HostMem for &T {
    fn read(&self, hpa: HostPhysAddr, out: &mut [u8]) {
        (**self).read(hpa, out);
    }
    fn write(&self, hpa: HostPhysAddr, data: &[u8]) {
        (**self).write(hpa, data);
    }
    fn zero(&self, hpa: HostPhysAddr, len: u64) {
        (**self).zero(hpa, len);
    }
}

/// A guest access outside its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestAccessError {
    /// Guest-physical address.
    pub gpa: u64,
    /// Length.
    pub len: u64,
}

impl fmt::Display for GuestAccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes at guest-physical {:#x} are not guest memory",
            self.len, self.gpa
        )
    }
}

impl core::error::Error for GuestAccessError {}

/// Why a change to a guest's memory was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// The frames are not inside one of the guest's regions of the kind.
    OutsideRegion {
        /// First guest frame.
        gpfn: u64,
        /// Frames.
        frames: u64,
        /// The kind asked for.
        kind: MemKind,
    },
    /// A frame to populate is backed already.
    Backed {
        /// First guest frame of the request.
        gpfn: u64,
    },
    /// The map refused: a frame not backed, backed by the other kind, or
    /// no room for more extents.
    Map(P2mError),
    /// The pool of the kind is exhausted.
    NoMemory {
        /// The kind.
        kind: MemKind,
    },
    /// No frame for a nested table.
    NoTableFrame,
    /// The guest has no pool of this kind (no NVRAM).
    NoPool {
        /// The kind.
        kind: MemKind,
    },
    /// The tables refused a mapping the map allowed: the two disagree.
    TablesMap(MapError),
    /// The tables refused an unmapping.
    TablesUnmap(UnmapError),
    /// A pool refused to take back a block the map recorded as its own:
    /// the hypervisor's bookkeeping is broken.
    Inconsistent(PoolError),
    /// A change failed part-way and could not be undone.
    UndoFailed {
        /// First guest frame of the change.
        gpfn: u64,
    },
}

impl MemoryError {
    /// Whether the hypervisor's own state is broken (the guest must stop),
    /// rather than the request refused.
    #[must_use]
    pub const fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::Inconsistent(_)
                | Self::TablesMap(_)
                | Self::TablesUnmap(_)
                | Self::UndoFailed { .. }
        )
    }
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutsideRegion { gpfn, frames, kind } => write!(
                f,
                "guest frames {gpfn:#x}+{frames:#x} are not inside a {kind} region of the guest's map"
            ),
            Self::Backed { gpfn } => write!(f, "guest frames from {gpfn:#x} are backed already"),
            Self::Map(e) => e.fmt(f),
            Self::NoMemory { kind } => write!(f, "no {kind} memory left"),
            Self::NoTableFrame => f.write_str("no frame left for a nested table"),
            Self::NoPool { kind } => write!(f, "the guest has no {kind} memory"),
            Self::TablesMap(e) => write!(f, "nested tables: {e}"),
            Self::TablesUnmap(e) => write!(f, "nested tables: {e}"),
            Self::Inconsistent(e) => write!(f, "pool refused a recorded block: {e}"),
            Self::UndoFailed { gpfn } => {
                write!(
                    f,
                    "a failed change from guest frame {gpfn:#x} could not be undone"
                )
            }
        }
    }
}

impl core::error::Error for MemoryError {}

impl From<P2mError> for MemoryError {
    fn from(e: P2mError) -> Self {
        Self::Map(e)
    }
}

/// A guest's memory while another guest runs: its tables and map, with
/// no borrow of the allocators behind them (see [`GuestMemory::suspend`]).
#[derive(Debug)]
pub struct Suspended<'s, M: HostMem + Copy> {
    mem: M,
    tables: Nested<M>,
    p2m: P2m<'s>,
    regions: Regions,
    pending: Invalidate,
    pages_1g: bool,
}

impl<M: HostMem + Copy> Suspended<'_, M> {
    /// The extents, in guest-frame order.
    #[must_use]
    pub fn extents(&self) -> &[BlockMapping] {
        self.p2m.extents()
    }
}

/// What [`GuestMemory::release_ram`] gave back, and the map that is left.
#[derive(Debug)]
pub struct ReleasedRam<'s> {
    /// The guest's map, its NVRAM extents only.
    pub p2m: P2m<'s>,
    /// Frames of guest RAM given back to the heap (or refused by it).
    pub ram_frames: u64,
    /// Frames of nested tables given back.
    pub table_frames: u64,
    /// Frames of guest RAM the heap refused as not allocated: a bug in the
    /// bookkeeping, never expected.
    pub refused: u64,
}

/// One guest's memory.
#[derive(Debug)]
pub struct GuestMemory<'a, 'm, 's, N: FramePool, M: HostMem + Copy> {
    pub(crate) ram: &'a mut Heap<'m>,
    pub(crate) nvram: Option<&'a mut N>,
    pub(crate) mem: M,
    pub(crate) tables: Nested<M>,
    pub(crate) p2m: P2m<'s>,
    pub(crate) regions: Regions,
    pub(crate) pending: Invalidate,
    pub(crate) pages_1g: bool,
}

impl<'a, 'm, 's, N: FramePool, M: HostMem + Copy> GuestMemory<'a, 'm, 's, N, M> {
    /// A guest with no memory yet: empty tables (their root from `ram`),
    /// extents kept in `storage`.
    pub fn new(
        config: &NestedConfig,
        ram: &'a mut Heap<'m>,
        nvram: Option<&'a mut N>,
        mem: M,
        storage: &'s mut [BlockMapping],
        regions: Regions,
    ) -> Result<Self, NewError> {
        let tables = Nested::new(config, mem, &mut TableFrames(ram))?;
        Ok(Self {
            ram,
            nvram,
            mem,
            tables,
            p2m: P2m::new(storage),
            regions,
            pending: Invalidate::Nothing,
            pages_1g: config.pages_1g,
        })
    }

    /// Sets the guest's memory aside while another guest runs: the state
    /// without the borrows of the heap and the NVRAM pool, which the next
    /// guest needs. [`resume`](Self::resume) puts it back together.
    pub fn suspend(self) -> Suspended<'s, M> {
        Suspended {
            mem: self.mem,
            tables: self.tables,
            p2m: self.p2m,
            regions: self.regions,
            pending: self.pending,
            pages_1g: self.pages_1g,
        }
    }

    /// Gives back what the guest holds of the volatile heap, for a guest
    /// that ended for good: every RAM extent and every nested-table frame.
    /// Its NVRAM stays with its pool and on the returned map. Call it only
    /// after the CPU's cached translations of the guest were invalidated.
    pub fn release_ram(mut self) -> ReleasedRam<'s> {
        let before = self.ram.free_frames();
        let mut refused = 0;
        for e in self.p2m.extents() {
            if e.kind() == MemKind::Volatile && self.ram.free_block(e.block()).is_err() {
                refused += e.block().frames();
            }
        }
        let ram_frames = self.p2m.drop_kind(MemKind::Volatile);
        self.tables.destroy(&mut TableFrames(self.ram));
        let freed = self.ram.free_frames().saturating_sub(before);
        ReleasedRam {
            p2m: self.p2m,
            ram_frames,
            table_frames: freed.saturating_sub(ram_frames - refused),
            refused,
        }
    }

    /// A suspended guest's memory with the heap and its NVRAM frames again.
    pub fn resume(
        parts: Suspended<'s, M>,
        ram: &'a mut Heap<'m>,
        nvram: Option<&'a mut N>,
    ) -> Self {
        Self {
            ram,
            nvram,
            mem: parts.mem,
            tables: parts.tables,
            p2m: parts.p2m,
            regions: parts.regions,
            pending: parts.pending,
            pages_1g: parts.pages_1g,
        }
    }

    /// The volatile heap (for the vCPU's control structures).
    pub fn heap(&mut self) -> &mut Heap<'m> {
        self.ram
    }

    /// The NVRAM pool (`None` if the guest has no NVRAM).
    pub fn nvram_pool(&mut self) -> Option<&mut N> {
        self.nvram.as_deref_mut()
    }

    /// The NVRAM pool, read only.
    #[must_use]
    pub fn nvram_pool_ref(&self) -> Option<&N> {
        self.nvram.as_deref()
    }

    /// The nested tables.
    #[must_use]
    pub const fn tables(&self) -> &Nested<M> {
        &self.tables
    }

    /// The extents, in guest-frame order.
    #[must_use]
    pub fn extents(&self) -> &[BlockMapping] {
        self.p2m.extents()
    }

    /// Guest frames backed by `kind`.
    #[must_use]
    pub fn frames(&self, kind: MemKind) -> u64 {
        self.p2m.frames(kind)
    }

    #[cfg(any(test, feature = "std"))]
    /// The guest's regions.
    #[must_use]
    pub const fn regions(&self) -> &Regions {
        &self.regions
    }

    /// What the tables hold now.
    #[must_use]
    pub fn footprint(&self) -> Footprint {
        self.tables.footprint()
    }

    /// The fewest leaves and tables the current translation needs,
    /// computed from the map alone.
    #[must_use]
    pub fn minimum(&self) -> Footprint {
        let runs = self.p2m.runs().map(|run| {
            let (guest, host) = (run.guest().addrs(), run.host().addrs());
            (guest.start().get(), host.start().get(), guest.len())
        });
        footprint::minimum(runs, self.pages_1g)
    }

    /// The invalidation changes since the last call ask for; the caller
    /// performs it, then calls [`reclaim_tables`](Self::reclaim_tables).
    pub fn take_invalidation(&mut self) -> Invalidate {
        core::mem::take(&mut self.pending)
    }

    /// Frees the tables retired by changes whose invalidation is done.
    pub fn reclaim_tables(&mut self) -> u64 {
        self.tables.reclaim(&mut TableFrames(self.ram))
    }

    /// The host address of every byte of `[gpa, gpa + len)` in chunks
    /// `(hpa, offset into the range, bytes)`, after checking all of it is
    /// backed.
    fn chunks(
        &self,
        gpa: u64,
        len: u64,
    ) -> Result<impl Iterator<Item = (HostPhysAddr, u64, u64)> + '_, GuestAccessError> {
        let error = GuestAccessError { gpa, len };
        let range = GuestPhysAddr::new(gpa)
            .and_then(|start| GuestPhysRange::from_len(start, len))
            .ok_or(error)?;
        let mut at = range.start();
        while at < range.end() {
            let e = self.p2m.lookup(at.frame()).ok_or(error)?;
            at = e.end().addr();
        }
        let mut at = range.start();
        Ok(core::iter::from_fn(move || {
            if at >= range.end() {
                return None;
            }
            let e = self.p2m.lookup(at.frame())?;
            let hpa = e.mapping().offset().to_host_addr(at)?;
            let next = e.end().addr().min(range.end());
            let chunk = (hpa, at.offset_from(range.start())?, next.offset_from(at)?);
            at = next;
            Some(chunk)
        }))
    }

    /// Whether all of `[gpa, gpa + len)` is backed.
    pub fn check(&self, gpa: u64, len: u64) -> Result<(), GuestAccessError> {
        self.chunks(gpa, len).map(|_| ())
    }

    /// Copies guest memory out.
    pub fn read(&self, gpa: u64, out: &mut [u8]) -> Result<(), GuestAccessError> {
        for (hpa, off, n) in self.chunks(gpa, out.len() as u64)? {
            let (off, n) = (off as usize, n as usize);
            self.mem.read(hpa, &mut out[off..off + n]);
        }
        Ok(())
    }

    /// Copies `data` into guest memory.
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<(), GuestAccessError> {
        for (hpa, off, n) in self.chunks(gpa, data.len() as u64)? {
            let (off, n) = (off as usize, n as usize);
            self.mem.write(hpa, &data[off..off + n]);
        }
        Ok(())
    }

    /// Zeroes guest memory.
    pub fn zero(&self, gpa: u64, len: u64) -> Result<(), GuestAccessError> {
        for (hpa, _, n) in self.chunks(gpa, len)? {
            self.mem.zero(hpa, n);
        }
        Ok(())
    }
}

impl<N: FramePool, M: HostMem + Copy> crate::guest_setup::GuestWrite
    for GuestMemory<'_, '_, '_, N, M>
{
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), GuestAccessError> {
        GuestMemory::write(self, gpa, bytes)
    }

    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), GuestAccessError> {
        GuestMemory::zero(self, gpa, len)
    }
}
