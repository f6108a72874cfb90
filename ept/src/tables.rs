//! The tables and their public operations. Every mutating operation runs in
//! two passes: a read-only plan that validates the whole change and counts
//! the table frames it needs, then — once those frames are in hand — an
//! apply pass that cannot fail. An error therefore leaves every entry
//! exactly as it was.

use crate::addr::guest_addr;
use core::sync::atomic::Ordering;

use crate::attrs::{Attrs, MemType, Perms};
use crate::config::{Config, Invalidate};
use crate::error::{FrameError, MapError, NewError, RangeError, UnmapError, UpdateError};
use crate::format::{Decoded, Format};
use crate::frames::{FrameSource, LINK_BITS, PhysMem, Pool, frame_ok, read_link};
use crate::ops::{Change, Op, Stop, Work};
use crate::{GUEST_BITS, GuestPhysAddr, HostPhysAddr, Level, PAGE_4K};

/// Second-level translation tables of format `F` whose frames are reached
/// through `M`.
///
/// The tables never allocate on their own: frames come from the
/// [`FrameSource`] passed to each call that may need one.
#[derive(Debug)]
pub struct Tables<F: Format, M: PhysMem> {
    pub(crate) format: F,
    pub(crate) mem: M,
    pub(crate) config: Config,
    pub(crate) root: HostPhysAddr,
    /// Tables reachable from the root, root included.
    live: u64,
    /// Head of the chain of retired subtrees and the level of its table.
    retired: Option<(HostPhysAddr, Level)>,
    /// Frames in retired subtrees.
    pending: u64,
}

impl<F: Format, M: PhysMem> Tables<F, M> {
    /// Empty tables: one root frame from `frames`, every entry not present.
    ///
    /// # Errors
    /// A physical-address width outside 32..=52, or no usable root frame.
    pub fn new(
        format: F,
        mem: M,
        config: Config,
        frames: &mut impl FrameSource,
    ) -> Result<Self, NewError> {
        let bits = config.physical_bits();
        if !(32..=52).contains(&bits) {
            return Err(NewError::PhysBits { bits });
        }
        let root = frames
            .alloc_table()
            .ok_or(NewError::Frames(FrameError::Exhausted {
                needed: 1,
                obtained: 0,
            }))?;
        if !frame_ok(root, bits) {
            frames.free_table(root);
            return Err(NewError::Frames(FrameError::Invalid { frame: root }));
        }
        let empty = format.empty();
        for entry in mem.table(root) {
            entry.store(empty, Ordering::Relaxed);
        }
        Ok(Self {
            format,
            mem,
            config,
            root,
            live: 1,
            retired: None,
            pending: 0,
        })
    }

    /// The entry format.
    pub fn format(&self) -> &F {
        &self.format
    }

    /// The configuration the tables were built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The caller's frame access.
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// The root table's frame.
    pub fn root(&self) -> HostPhysAddr {
        self.root
    }

    /// The EPTP or nCR3 value for these tables.
    pub fn root_pointer(&self) -> u64 {
        self.format.root_pointer(self.root)
    }

    /// Paging-structure pages reachable from the root, root included.
    pub fn table_count(&self) -> u64 {
        self.live
    }

    /// Frames unlinked by changes and waiting for [`reclaim`](Self::reclaim).
    pub fn pending_reclaim(&self) -> u64 {
        self.pending
    }

    /// Maps `[gpa, gpa + len)` to `[hpa, hpa + len)` with the largest pages
    /// both addresses' alignment and the length allow. Fails on any page
    /// already mapped.
    ///
    /// # Errors
    /// Unaligned or out-of-width addresses, unencodable attributes, an
    /// overlap, or too few frames; the tables are then unchanged.
    pub fn map(
        &mut self,
        frames: &mut impl FrameSource,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        len: u64,
        perms: Perms,
        mem: MemType,
    ) -> Result<Invalidate, MapError> {
        self.map_op(frames, gpa, hpa, len, Attrs::new(perms, mem), false)
    }

    /// Like [`map`](Self::map), but whatever is mapped in the range is
    /// replaced.
    ///
    /// # Errors
    /// As `map`, except overlaps.
    pub fn replace(
        &mut self,
        frames: &mut impl FrameSource,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        len: u64,
        perms: Perms,
        mem: MemType,
    ) -> Result<Invalidate, MapError> {
        self.map_op(frames, gpa, hpa, len, Attrs::new(perms, mem), true)
    }

    fn map_op(
        &mut self,
        frames: &mut impl FrameSource,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        len: u64,
        attrs: Attrs,
        replace: bool,
    ) -> Result<Invalidate, MapError> {
        check_guest(gpa, len).map_err(MapError::Range)?;
        self.check_host(hpa, len).map_err(MapError::Range)?;
        self.format.check(attrs).map_err(MapError::Attrs)?;
        let change = Change::Map {
            gpa: gpa.get(),
            hpa: hpa.get(),
            attrs,
            replace,
        };
        self.run(frames, Op::new(change, gpa, len))
            .map_err(|e| match e {
                Failure::Stop(Stop::Overlap(a)) => MapError::Overlap { gpa: guest_addr(a) },
                Failure::Stop(Stop::Attrs(e)) => MapError::Attrs(e),
                Failure::Stop(Stop::NotMapped(a)) => MapError::Overlap { gpa: guest_addr(a) },
                Failure::Frames(e) => MapError::Frames(e),
            })
    }

    /// Removes every mapping in `[gpa, gpa + len)`; holes are fine. Large
    /// pages the range cuts are split; tables left empty are retired.
    ///
    /// # Errors
    /// Unaligned or out-of-width range, or too few frames for a split; the
    /// tables are then unchanged.
    pub fn unmap(
        &mut self,
        frames: &mut impl FrameSource,
        gpa: GuestPhysAddr,
        len: u64,
    ) -> Result<Invalidate, UnmapError> {
        check_guest(gpa, len).map_err(UnmapError::Range)?;
        self.run(frames, Op::new(Change::Unmap, gpa, len))
            .map_err(|e| match e {
                Failure::Frames(e) => UnmapError::Frames(e),
                // The planner refuses nothing in an unmap (holes are fine);
                // should it ever, the tables are unchanged and the closest
                // report is that the change could not be prepared.
                Failure::Stop(_) => UnmapError::Frames(FrameError::Exhausted {
                    needed: 0,
                    obtained: 0,
                }),
            })
    }

    /// Sets the permissions of every page in `[gpa, gpa + len)`, which must
    /// be mapped throughout. Large pages are split only where the range
    /// cuts them and only if their permissions change.
    ///
    /// # Errors
    /// Unaligned or out-of-width range, a hole, unencodable permissions, or
    /// too few frames; the tables are then unchanged.
    pub fn protect(
        &mut self,
        frames: &mut impl FrameSource,
        gpa: GuestPhysAddr,
        len: u64,
        perms: Perms,
    ) -> Result<Invalidate, UpdateError> {
        self.update(
            frames,
            gpa,
            len,
            Change::Update {
                perms: Some(perms),
                mem: None,
            },
        )
    }

    /// Sets the memory type of every page in `[gpa, gpa + len)`, which
    /// must be mapped throughout; splits like [`protect`](Self::protect).
    ///
    /// # Errors
    /// As `protect`.
    pub fn set_mem_type(
        &mut self,
        frames: &mut impl FrameSource,
        gpa: GuestPhysAddr,
        len: u64,
        mem: MemType,
    ) -> Result<Invalidate, UpdateError> {
        self.update(
            frames,
            gpa,
            len,
            Change::Update {
                perms: None,
                mem: Some(mem),
            },
        )
    }

    fn update(
        &mut self,
        frames: &mut impl FrameSource,
        gpa: GuestPhysAddr,
        len: u64,
        change: Change,
    ) -> Result<Invalidate, UpdateError> {
        check_guest(gpa, len).map_err(UpdateError::Range)?;
        self.run(frames, Op::new(change, gpa, len))
            .map_err(|e| match e {
                Failure::Stop(Stop::NotMapped(a) | Stop::Overlap(a)) => {
                    UpdateError::NotMapped { gpa: guest_addr(a) }
                }
                Failure::Stop(Stop::Attrs(e)) => UpdateError::Attrs(e),
                Failure::Frames(e) => UpdateError::Frames(e),
            })
    }

    /// Merges every 2 MiB and 1 GiB block that `[gpa, gpa + len)` touches
    /// and whose pages are uniform (contiguous host addresses aligned to the
    /// block, same permissions and memory type) into one large page,
    /// retiring the tables that held the small pages. Needs no frames.
    ///
    /// # Errors
    /// Unaligned or out-of-width range.
    pub fn promote(&mut self, gpa: GuestPhysAddr, len: u64) -> Result<Invalidate, RangeError> {
        check_guest(gpa, len)?;
        let mut none = NoFrames;
        // A promote plans no frames and the planner refuses nothing in it,
        // so `run` cannot fail once the range is valid; should it, the
        // tables are unchanged and the range is what is reported.
        self.run(&mut none, Op::new(Change::Promote, gpa, len))
            .map_err(|_| RangeError::GuestBeyondWidth { start: gpa, len })
    }

    /// Frees, to `frames`, every table retired by earlier changes.
    ///
    /// Call it only after performing the invalidation those changes asked
    /// for: until then a processor may still walk a retired table through a
    /// cached paging-structure entry. Returns the frames freed.
    pub fn reclaim(&mut self, frames: &mut impl FrameSource) -> u64 {
        let mut freed = 0;
        while let Some((table, level)) = self.retired.take() {
            self.retired = read_link(self.mem.table(table));
            freed += self.free_subtree(table, level, frames);
        }
        self.pending = 0;
        freed
    }

    /// Frees every table, retired or live, to `frames`. Call it only when
    /// no context uses the tables any more and after invalidating them.
    pub fn destroy(mut self, frames: &mut impl FrameSource) {
        self.reclaim(frames);
        self.free_subtree(self.root, Level::Pml4, frames);
    }

    fn free_subtree(
        &self,
        table: HostPhysAddr,
        level: Level,
        frames: &mut impl FrameSource,
    ) -> u64 {
        let mut freed = 1;
        if let Some(below) = level.below() {
            for entry in self.mem.table(table) {
                let raw = entry.load(Ordering::Relaxed) & !LINK_BITS;
                if let Decoded::Table(child) = self.format.decode(level, raw) {
                    freed += self.free_subtree(child, below, frames);
                }
            }
        }
        frames.free_table(table);
        freed
    }

    fn check_host(&self, hpa: HostPhysAddr, len: u64) -> Result<(), RangeError> {
        if hpa.get() % PAGE_4K != 0 {
            return Err(RangeError::UnalignedHost(hpa));
        }
        let bits = self.config.physical_bits();
        match hpa.get().checked_add(len) {
            Some(end) if end <= 1 << bits => Ok(()),
            _ => Err(RangeError::HostBeyondWidth {
                start: hpa,
                len,
                bits,
            }),
        }
    }

    /// Plans, obtains frames, applies.
    fn run(&mut self, frames: &mut impl FrameSource, op: Op) -> Result<Invalidate, Failure> {
        if op.start == op.end {
            return Ok(Invalidate::Nothing);
        }
        let needed = self.plan(&op).map_err(Failure::Stop)?;
        let pool = Pool::fill(needed, &self.mem, frames, self.config.physical_bits())
            .map_err(Failure::Frames)?;
        let mut work = Work::new(pool, self.retired);
        self.apply_root(&op, &mut work);
        self.retired = work.retired;
        self.pending += work.retired_frames;
        self.live = self
            .live
            .saturating_add_signed(work.pool.net_taken)
            .saturating_sub(work.retired_frames);
        let scope = work.scope;
        work.pool.release(&self.mem, frames);
        Ok(scope)
    }
}

enum Failure {
    Stop(Stop),
    Frames(FrameError),
}

/// The frame source of operations that never need one.
struct NoFrames;

impl FrameSource for NoFrames {
    fn alloc_table(&mut self) -> Option<HostPhysAddr> {
        None
    }

    fn free_table(&mut self, _frame: HostPhysAddr) {}
}

fn check_guest(gpa: GuestPhysAddr, len: u64) -> Result<(), RangeError> {
    if gpa.get() % PAGE_4K != 0 {
        return Err(RangeError::UnalignedGuest(gpa));
    }
    if len % PAGE_4K != 0 {
        return Err(RangeError::UnalignedLength(len));
    }
    match gpa.get().checked_add(len) {
        Some(end) if end <= 1 << GUEST_BITS => Ok(()),
        _ => Err(RangeError::GuestBeyondWidth { start: gpa, len }),
    }
}
