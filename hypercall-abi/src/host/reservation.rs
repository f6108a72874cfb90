//! increase_reservation, decrease_reservation and populate_physmap: decoding,
//! per-extent access, and the answer (count, partial count, continuation).

use core::ops::Range;

use crate::MemKind;
use crate::errno::Errno;
use crate::flags::MemFlags;
use crate::host::context::{Caller, Limits};
use crate::host::decode::resolve_domain;
use crate::host::extent::{ExtentError, ExtentRequest, ReservationOp};
use crate::host::memory::{AccessError, GuestMemory, read_value};
use crate::host::outcome::{Field, Outcome, Reason, Rejection};
use crate::layout::{COMPAT_PFN_SIZE, CompatMemoryReservation, MemoryReservation, XEN_PFN_SIZE};
use crate::numbers::MemopCmd;
use crate::types::{DomId, ExtentOrder, GuestAddr, XenPfn};
use nvirt_addr::Gfn;

/// A validated reservation call, as far as this hypervisor entry goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    op: ReservationOp,
    flags: MemFlags,
    order: ExtentOrder,
    domain: DomId,
    array: GuestAddr,
    nr_extents: u64,
    start: u64,
    end: u64,
    gpfn_limit: XenPfn,
    pfn_size: u64,
}

impl Reservation {
    pub(crate) fn decode<M: GuestMemory + ?Sized>(
        op: ReservationOp,
        start: u64,
        arg: GuestAddr,
        caller: &Caller,
        mem: &M,
        limits: &Limits,
    ) -> Result<Self, Rejection> {
        // On a continued call, any refusal still reports the extents that
        // earlier entries did, as Xen returns `start_extent`.
        let refuse = |reason| Rejection::new(reason).after(start);
        let argument = |error| {
            refuse(Reason::Memory {
                field: Field::Argument,
                error,
            })
        };
        let (r, pfn_size) = if caller.is_compat() {
            let r: CompatMemoryReservation = read_value(mem, arg).map_err(argument)?;
            (r.widen(), COMPAT_PFN_SIZE)
        } else {
            let r: MemoryReservation = read_value(mem, arg).map_err(argument)?;
            (r, XEN_PFN_SIZE)
        };
        let nr_extents = r.nr_extents();
        if nr_extents > limits.extent_limit() {
            return Err(refuse(Reason::TooManyExtents {
                nr_extents,
                max: limits.extent_limit(),
            }));
        }
        // Nothing left to do (no extents, or a resume point at or past the
        // end): Xen answers the resume point before any other check. The
        // fields are kept as written where they fit their types; nothing
        // else about them is checked.
        if start >= nr_extents {
            return Ok(Self {
                op,
                flags: MemFlags::parse(r.mem_flags()).unwrap_or_default(),
                order: ExtentOrder::from_raw(r.extent_order()).unwrap_or(ExtentOrder::PAGE_4K),
                domain: caller.domain(),
                array: r.extent_start(),
                nr_extents,
                start,
                end: start,
                gpfn_limit: limits.gpfn_limit(),
                pfn_size,
            });
        }
        let domain = resolve_domain(r.domid(), caller).map_err(refuse)?;
        let order = ExtentOrder::from_raw(r.extent_order())
            .filter(|o| *o <= limits.order_limit())
            .ok_or_else(|| {
                refuse(Reason::OrderTooLarge {
                    order: r.extent_order(),
                    max: limits.order_limit(),
                })
            })?;
        let flags = MemFlags::parse(r.mem_flags()).map_err(|e| refuse(Reason::Flags(e)))?;
        let not_allowed = Reason::FlagsNotAllowed {
            command: op.command(),
            mem_flags: r.mem_flags(),
        };
        let allowed = match op {
            // Xen: "This field is not used by XENMEM_decrease_reservation";
            // nvirt lets the kind through so the hypervisor can check it.
            ReservationOp::Decrease => flags.is_kind_only(),
            ReservationOp::Increase => !flags.populate_on_demand(),
            // Xen: "Disallow populating PoD pages on oneself" — and a guest
            // can only name itself here.
            ReservationOp::Populate => !flags.populate_on_demand(),
        };
        if !allowed {
            return Err(refuse(not_allowed));
        }
        if let Some(node) = flags.node() {
            if node.node() >= limits.node_count() {
                return Err(refuse(Reason::NodeOutOfRange {
                    node: node.node(),
                    nodes: limits.node_count(),
                }));
            }
        }
        // The array is not checked as a whole: as Xen does for HVM guests
        // (`guest_handle_okay()` is true for them), each slot is accessed
        // when its extent is reached, and a bad slot ends the call there
        // with the count done.
        let array = r.extent_start();
        let end = start + (nr_extents - start).min(limits.batch_size());
        Ok(Self {
            op,
            flags,
            order,
            domain,
            array,
            nr_extents,
            start,
            end,
            gpfn_limit: limits.gpfn_limit(),
            pfn_size,
        })
    }

    /// The command.
    #[must_use]
    pub const fn op(&self) -> ReservationOp {
        self.op
    }

    /// RAM or NVRAM.
    #[must_use]
    pub const fn kind(&self) -> MemKind {
        self.flags.kind()
    }

    /// All the flags (address limit, NUMA node, kind).
    #[must_use]
    pub const fn flags(&self) -> MemFlags {
        self.flags
    }

    /// The extent order.
    #[must_use]
    pub const fn order(&self) -> ExtentOrder {
        self.order
    }

    /// The domain whose reservation changes: always the caller.
    #[must_use]
    pub const fn domain(&self) -> DomId {
        self.domain
    }

    /// The extents of the whole request.
    #[must_use]
    pub const fn nr_extents(&self) -> u64 {
        self.nr_extents
    }

    /// The extents this entry handles: from the resume point, at most the
    /// configured batch.
    #[must_use]
    pub const fn batch(&self) -> Range<u64> {
        self.start..self.end
    }

    /// Whether an increase_reservation has an array to write frames into
    /// (a null handle asks for none).
    #[must_use]
    pub const fn has_output(&self) -> bool {
        match self.op {
            ReservationOp::Increase => !self.array.is_null(),
            ReservationOp::Decrease => false,
            ReservationOp::Populate => true,
        }
    }

    fn slot(&self, index: u64) -> Result<GuestAddr, ExtentError> {
        if !(self.start..self.end).contains(&index) {
            return Err(ExtentError::NotInBatch {
                index,
                start: self.start,
                end: self.end,
            });
        }
        // Decode checked the array up to `nr_extents`, so this cannot
        // overflow; check anyway rather than trust a distant invariant.
        self.array
            .element(index, self.pfn_size)
            .ok_or(ExtentError::Memory {
                index,
                error: AccessError::Wraps {
                    addr: self.array,
                    len: index.saturating_mul(self.pfn_size),
                },
            })
    }

    /// Reads and validates the guest's frame for extent `index` of the
    /// batch: aligned to the order, the whole extent below the guest's frame
    /// limit and inside the guest-physical space. The frame comes back typed.
    pub fn read_extent<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        index: u64,
    ) -> Result<Gfn, ExtentError> {
        if !self.op.array_access().reads() {
            return Err(ExtentError::NotReadable { index });
        }
        let addr = self.slot(index)?;
        let mut raw = [0u8; 8];
        // A compat_pfn_t is the low half of the little-endian word.
        let width = if self.pfn_size == COMPAT_PFN_SIZE {
            4
        } else {
            8
        };
        mem.read(addr, &mut raw[..width])
            .map_err(|error| ExtentError::Memory { index, error })?;
        let gpfn = XenPfn::new(u64::from_le_bytes(raw));
        // Checked as the guest wrote it (a wire value, possibly no frame at
        // all), so that the errno follows Xen's order of checks.
        if gpfn.raw() & (self.order.pages() - 1) != 0 {
            return Err(ExtentError::Misaligned {
                index,
                gpfn,
                order: self.order,
            });
        }
        let out_of_range = |limit| ExtentError::OutOfRange { index, gpfn, limit };
        match gpfn.raw().checked_add(self.order.pages()) {
            Some(end) if end <= self.gpfn_limit.raw() => {
                // A limit beyond the guest-physical space is cut to it.
                Gfn::try_from(gpfn).map_err(|_| out_of_range(XenPfn::new(Gfn::LIMIT)))
            }
            _ => Err(out_of_range(self.gpfn_limit)),
        }
    }

    /// Writes `value` into slot `index` of the batch. An increase_reservation
    /// with a null array asks for no output: nothing is written.
    pub fn write_extent<M: GuestMemory + ?Sized>(
        &self,
        mem: &mut M,
        index: u64,
        value: XenPfn,
    ) -> Result<(), ExtentError> {
        if !self.op.array_access().writes() {
            return Err(ExtentError::NotWritable { index });
        }
        let addr = self.slot(index)?;
        if !self.has_output() {
            return Ok(());
        }
        let bytes = value.raw().to_le_bytes();
        let bytes = if self.pfn_size == COMPAT_PFN_SIZE {
            // A 32-bit caller's slot cannot hold a wider frame.
            if value.raw() > u64::from(u32::MAX) {
                return Err(ExtentError::FrameTooWide { index, gpfn: value });
            }
            &bytes[..4]
        } else {
            &bytes[..]
        };
        mem.write(addr, bytes)
            .map_err(|error| ExtentError::Memory { index, error })
    }

    /// The answer once the whole batch is done: the count if the request is
    /// complete (for a call with nothing left to do, its resume point, as
    /// Xen answers), else a continuation at the batch's end.
    #[must_use]
    pub const fn finish(&self) -> Outcome {
        if self.end >= self.nr_extents {
            return Outcome::Success(self.end);
        }
        match MemopCmd::resuming(self.op.command(), self.end) {
            Some(cmd) => Outcome::Continue(cmd),
            // `end` is below MAX_CONTINUABLE_EXTENTS, so this cannot happen.
            None => Outcome::stopped(self.end, Errno::Inval),
        }
    }

    /// The answer when work stops at extent `index` (not done) because of
    /// `cause`: Xen's partial success, or `-cause` if nothing was done.
    #[must_use]
    pub const fn stop(&self, index: u64, cause: Errno) -> Outcome {
        Outcome::stopped(index, cause)
    }

    /// Works through the batch: reads each extent's frame (for decrease and
    /// populate), calls `handle`, writes back the frame it returns (if any),
    /// and answers. The handler's `Err` stops the call there with partial
    /// success. Returning `Some` for a decrease, whose array is input only,
    /// is a handler bug and stops the call with `-EINVAL`.
    pub fn run<M, F>(&self, mem: &mut M, mut handle: F) -> Outcome
    where
        M: GuestMemory + ?Sized,
        F: FnMut(ExtentRequest) -> Result<Option<Gfn>, Errno>,
    {
        for index in self.start..self.end {
            let gpfn = if self.op.array_access().reads() {
                match self.read_extent(mem, index) {
                    Ok(g) => Some(g),
                    Err(e) => return self.stop(index, e.errno()),
                }
            } else {
                None
            };
            let out = match handle(ExtentRequest { index, gpfn }) {
                Ok(out) => out,
                Err(e) => return self.stop(index, e),
            };
            if let Some(value) = out {
                if let Err(e) = self.write_extent(mem, index, XenPfn::from(value)) {
                    return self.stop(index, e.errno());
                }
            }
        }
        self.finish()
    }
}

#[cfg(test)]
#[path = "reservation_tests.rs"]
mod tests;
