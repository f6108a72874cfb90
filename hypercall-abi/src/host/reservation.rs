//! increase_reservation, decrease_reservation and populate_physmap: decoding,
//! per-extent access, and the answer (count, partial count, continuation).

use core::fmt;
use core::ops::Range;

use crate::errno::Errno;
use crate::flags::{MemFlags, MemKind};
use crate::host::context::{Caller, Limits};
use crate::host::decode::resolve_domain;
use crate::host::memory::{Access, AccessError, GuestMemory, read_value};
use crate::host::outcome::{Field, Outcome, Reason, Rejection};
use crate::layout::{MemoryReservation, XEN_PFN_SIZE};
use crate::numbers::{Command, MemopCmd};
use crate::types::{DomainId, ExtentOrder, Gpfn, GuestAddr};

/// The three reservation commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReservationOp {
    /// `XENMEM_increase_reservation`: allocate; the array, if not null,
    /// receives a frame per extent.
    Increase,
    /// `XENMEM_decrease_reservation`: release the extents the array names.
    Decrease,
    /// `XENMEM_populate_physmap`: back the frames the array names; the
    /// hypervisor may write a frame back per extent.
    Populate,
}

impl ReservationOp {
    /// The command number's command.
    #[must_use]
    pub const fn command(self) -> Command {
        match self {
            Self::Increase => Command::IncreaseReservation,
            Self::Decrease => Command::DecreaseReservation,
            Self::Populate => Command::PopulatePhysmap,
        }
    }

    /// The operation of a reservation command.
    #[must_use]
    pub const fn from_command(command: Command) -> Option<Self> {
        match command {
            Command::IncreaseReservation => Some(Self::Increase),
            Command::DecreaseReservation => Some(Self::Decrease),
            Command::PopulatePhysmap => Some(Self::Populate),
            _ => None,
        }
    }

    /// How the operation uses the extent array (Xen's IN/OUT comments in
    /// `memory.h`).
    #[must_use]
    pub const fn array_access(self) -> Access {
        match self {
            Self::Increase => Access::Write,
            Self::Decrease => Access::Read,
            Self::Populate => Access::ReadWrite,
        }
    }
}

/// A validated reservation call, as far as this hypervisor entry goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    op: ReservationOp,
    flags: MemFlags,
    order: ExtentOrder,
    domain: DomainId,
    array: GuestAddr,
    nr_extents: u64,
    start: u64,
    end: u64,
    gpfn_limit: Gpfn,
}

/// One extent handed to [`Reservation::run`]'s handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    index: u64,
    gpfn: Option<Gpfn>,
}

impl Extent {
    /// The extent's position in the guest's array.
    #[must_use]
    pub const fn index(&self) -> u64 {
        self.index
    }

    /// The guest's frame for it — validated: aligned to the order, inside
    /// the guest's frame range. `None` for increase_reservation, whose array
    /// is output only.
    #[must_use]
    pub const fn gpfn(&self) -> Option<Gpfn> {
        self.gpfn
    }
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
        let r: MemoryReservation = read_value(mem, arg).map_err(|error| {
            refuse(Reason::Memory {
                field: Field::Argument,
                error,
            })
        })?;
        let nr_extents = r.nr_extents();
        if nr_extents > limits.extent_limit() {
            return Err(refuse(Reason::TooManyExtents {
                nr_extents,
                max: limits.extent_limit(),
            }));
        }
        if start > nr_extents {
            return Err(Rejection::new(Reason::StartBeyondEnd {
                start_extent: start,
                nr_extents,
            }));
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
        let array = r.extent_start();
        let wants_array = !(op == ReservationOp::Increase && array.is_null());
        if wants_array {
            check_array(mem, array, start, nr_extents, op.array_access()).map_err(refuse)?;
        }
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
    pub const fn domain(&self) -> DomainId {
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
            .element(index, XEN_PFN_SIZE)
            .ok_or(ExtentError::Memory {
                index,
                error: AccessError::Wraps {
                    addr: self.array,
                    len: index.saturating_mul(XEN_PFN_SIZE),
                },
            })
    }

    /// Reads and validates the guest's frame for extent `index` of the
    /// batch: aligned to the order, the whole extent below the guest's frame
    /// limit.
    pub fn read_extent<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        index: u64,
    ) -> Result<Gpfn, ExtentError> {
        if !self.op.array_access().reads() {
            return Err(ExtentError::NotReadable { index });
        }
        let addr = self.slot(index)?;
        let raw: [u8; 8] =
            read_value(mem, addr).map_err(|error| ExtentError::Memory { index, error })?;
        let gpfn = Gpfn::new(u64::from_le_bytes(raw));
        if !gpfn.is_aligned(self.order) {
            return Err(ExtentError::Misaligned {
                index,
                gpfn,
                order: self.order,
            });
        }
        match gpfn.checked_add(self.order.pages()) {
            Some(end) if end <= self.gpfn_limit => Ok(gpfn),
            _ => Err(ExtentError::OutOfRange {
                index,
                gpfn,
                limit: self.gpfn_limit,
            }),
        }
    }

    /// Writes `value` into slot `index` of the batch. An increase_reservation
    /// with a null array asks for no output: nothing is written.
    pub fn write_extent<M: GuestMemory + ?Sized>(
        &self,
        mem: &mut M,
        index: u64,
        value: Gpfn,
    ) -> Result<(), ExtentError> {
        if !self.op.array_access().writes() {
            return Err(ExtentError::NotWritable { index });
        }
        let addr = self.slot(index)?;
        if !self.has_output() {
            return Ok(());
        }
        mem.write(addr, &value.raw().to_le_bytes())
            .map_err(|error| ExtentError::Memory { index, error })
    }

    /// The answer once the whole batch is done: the count if the request is
    /// complete, else a continuation at the batch's end.
    #[must_use]
    pub const fn finish(&self) -> Outcome {
        if self.end == self.nr_extents {
            return Outcome::Success(self.nr_extents);
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
        F: FnMut(Extent) -> Result<Option<Gpfn>, Errno>,
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
            let out = match handle(Extent { index, gpfn }) {
                Ok(out) => out,
                Err(e) => return self.stop(index, e),
            };
            if let Some(value) = out {
                if let Err(e) = self.write_extent(mem, index, value) {
                    return self.stop(index, e.errno());
                }
            }
        }
        self.finish()
    }
}

/// Checks that extents `[start, nr)` of the array at `base` lie in guest
/// memory with `access`, as Xen's `guest_handle_subrange_okay()` does.
fn check_array<M: GuestMemory + ?Sized>(
    mem: &M,
    base: GuestAddr,
    start: u64,
    nr: u64,
    access: Access,
) -> Result<(), Reason> {
    let overflow = Reason::ArrayOverflow {
        field: Field::ExtentArray,
        addr: base,
        count: nr,
    };
    let first = base.element(start, XEN_PFN_SIZE).ok_or(overflow)?;
    let end = base.element(nr, XEN_PFN_SIZE).ok_or(overflow)?;
    let len = end.raw() - first.raw();
    mem.check(first, len, access)
        .map_err(|error| Reason::Memory {
            field: Field::ExtentArray,
            error,
        })
}

/// A per-extent access that cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtentError {
    /// The index lies outside this entry's batch (a handler bug).
    NotInBatch {
        /// The index asked for.
        index: u64,
        /// The batch's first extent.
        start: u64,
        /// One past the batch's last extent.
        end: u64,
    },
    /// increase_reservation's array is output only (a handler bug).
    NotReadable {
        /// The index asked for.
        index: u64,
    },
    /// decrease_reservation's array is input only (a handler bug).
    NotWritable {
        /// The index asked for.
        index: u64,
    },
    /// The slot cannot be accessed (guest memory changed since decoding).
    Memory {
        /// The index.
        index: u64,
        /// Why.
        error: AccessError,
    },
    /// The frame is not aligned to the extent order.
    Misaligned {
        /// The index.
        index: u64,
        /// The frame found.
        gpfn: Gpfn,
        /// The order.
        order: ExtentOrder,
    },
    /// The extent reaches past the guest's frame limit.
    OutOfRange {
        /// The index.
        index: u64,
        /// The frame found.
        gpfn: Gpfn,
        /// The exclusive limit.
        limit: Gpfn,
    },
}

impl ExtentError {
    /// The error number the guest's count stops with.
    #[must_use]
    pub const fn errno(&self) -> Errno {
        match self {
            Self::Memory { .. } => Errno::Fault,
            _ => Errno::Inval,
        }
    }
}

impl fmt::Display for ExtentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInBatch { index, start, end } => {
                write!(
                    f,
                    "extent {index} outside this entry's batch {start}..{end}"
                )
            }
            Self::NotReadable { index } => write!(f, "extent {index}: the array is output only"),
            Self::NotWritable { index } => write!(f, "extent {index}: the array is input only"),
            Self::Memory { index, error } => write!(f, "extent {index}: {error}"),
            Self::Misaligned { index, gpfn, order } => {
                write!(f, "extent {index}: {gpfn} is not aligned to {order}")
            }
            Self::OutOfRange { index, gpfn, limit } => write!(
                f,
                "extent {index}: {gpfn} reaches beyond the guest's frames (limit {limit})"
            ),
        }
    }
}

impl core::error::Error for ExtentError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::{NVIRT_MEMF_NVRAM, NodeRequest, XENMEMF_POPULATE_ON_DEMAND};
    use crate::host::context::Registers;
    use crate::host::decode::{Request, decode};
    use crate::host::memory::FlatMemory;
    use core::num::NonZeroU32;
    use zerocopy::IntoBytes;

    const ME: DomainId = DomainId::new(9);
    const ARG: u64 = 0x100;
    const ARRAY: u64 = 0x200;

    fn limits() -> Limits {
        Limits::new(Gpfn::new(0x10_0000))
            .batch(NonZeroU32::new(4).unwrap())
            .numa_nodes(2)
    }

    /// Guest memory 0..0x1000 with a reservation at ARG and `gpfns` at ARRAY;
    /// 0xf00.. is read-only.
    fn guest<'a>(
        backing: &'a mut [u8; 0x1000],
        r: MemoryReservation,
        gpfns: &[u64],
    ) -> FlatMemory<'a> {
        let mut mem = FlatMemory::new(GuestAddr::new(0), backing).with_read_only(0xf00..0x1000);
        mem.write(GuestAddr::new(ARG), r.as_bytes()).unwrap();
        for (i, g) in (0u64..).zip(gpfns) {
            mem.write(GuestAddr::new(ARRAY + 8 * i), &g.to_le_bytes())
                .unwrap();
        }
        mem
    }

    fn resv(array: u64, nr: u64, order: u32, flags: u32, domid: DomainId) -> MemoryReservation {
        MemoryReservation::new(GuestAddr::new(array), nr, order, flags, domid)
    }

    fn run_decode(mem: &FlatMemory<'_>, cmd: u64) -> Result<Reservation, Rejection> {
        let regs = Registers {
            rax: 12,
            rdi: cmd,
            rsi: ARG,
            ..Registers::default()
        };
        match decode(&regs, &Caller::kernel(ME).unwrap(), mem, &limits()) {
            Ok(Request::Reservation(r)) => Ok(r),
            Ok(other) => panic!("not a reservation: {other:?}"),
            Err(e) => Err(e),
        }
    }

    fn reason(mem: &FlatMemory<'_>, cmd: u64) -> Reason {
        *run_decode(mem, cmd).unwrap_err().reason()
    }

    #[test]
    fn decodes_a_populate_call() {
        let mut b = [0u8; 0x1000];
        let r = resv(ARRAY, 6, 9, NVIRT_MEMF_NVRAM | (2 << 8), DomainId::SELF);
        let mem = guest(&mut b, r, &[0x200, 0x400, 0x600, 0x800, 0xa00, 0xc00]);
        let req = run_decode(&mem, 6).unwrap();
        assert_eq!(req.op(), ReservationOp::Populate);
        assert_eq!(req.kind(), MemKind::NonVolatile);
        assert_eq!(req.flags().node(), NodeRequest::new(1));
        assert_eq!(req.order(), ExtentOrder::PAGE_2M);
        assert_eq!(req.domain(), ME);
        assert_eq!((req.nr_extents(), req.batch()), (6, 0..4));
        assert_eq!(req.read_extent(&mem, 3), Ok(Gpfn::new(0x800)));
        assert_eq!(
            req.read_extent(&mem, 4),
            Err(ExtentError::NotInBatch {
                index: 4,
                start: 0,
                end: 4
            })
        );
        let resumed = run_decode(&mem, 6 | 4 << 6).unwrap();
        assert_eq!(resumed.batch(), 4..6);
        assert_eq!(resumed.finish(), Outcome::Success(6));
        assert_eq!(
            req.finish(),
            Outcome::Continue(MemopCmd::resuming(Command::PopulatePhysmap, 4).unwrap())
        );
        assert_eq!(run_decode(&mem, 6 | 6 << 6).map(|r| r.batch()), Ok(6..6));
    }

    #[test]
    fn refuses_bad_arguments() {
        let mut b = [0u8; 0x1000];
        let case = |b: &mut [u8; 0x1000], r, cmd| reason(&guest(b, r, &[]), cmd);
        assert_eq!(
            case(&mut b, resv(ARRAY, MAX_PLUS, 0, 0, DomainId::SELF), 6),
            Reason::TooManyExtents {
                nr_extents: MAX_PLUS,
                max: crate::numbers::MAX_CONTINUABLE_EXTENTS
            }
        );
        assert_eq!(
            case(&mut b, resv(ARRAY, 2, 0, 0, DomainId::SELF), 6 | 3 << 6),
            Reason::StartBeyondEnd {
                start_extent: 3,
                nr_extents: 2
            }
        );
        assert_eq!(
            case(&mut b, resv(ARRAY, 2, 0, 0, DomainId::new(1)), 1),
            Reason::ForeignDomain {
                domid: DomainId::new(1)
            }
        );
        assert_eq!(
            case(&mut b, resv(ARRAY, 2, 0, 0, DomainId::new(0x7ff2)), 1),
            Reason::NoSuchDomain {
                domid: DomainId::new(0x7ff2)
            }
        );
        assert!(
            run_decode(&guest(&mut b, resv(ARRAY, 2, 0, 0, ME), &[]), 1).is_ok(),
            "own id"
        );
        assert_eq!(
            case(&mut b, resv(ARRAY, 2, 19, 0, DomainId::SELF), 0),
            Reason::OrderTooLarge {
                order: 19,
                max: ExtentOrder::PAGE_1G
            }
        );
        assert_eq!(
            case(&mut b, resv(ARRAY, 2, 1 << 31, 0, DomainId::SELF), 0),
            Reason::OrderTooLarge {
                order: 1 << 31,
                max: ExtentOrder::PAGE_1G
            }
        );
        assert_eq!(
            case(&mut b, resv(ARRAY, 2, 0, 1 << 25, DomainId::SELF), 0),
            Reason::Flags(crate::flags::FlagError::UnknownBits { bits: 1 << 25 })
        );
        assert_eq!(
            case(&mut b, resv(ARRAY, 2, 0, 32, DomainId::SELF), 1),
            Reason::FlagsNotAllowed {
                command: Command::DecreaseReservation,
                mem_flags: 32
            }
        );
        assert!(
            run_decode(
                &guest(&mut b, resv(ARRAY, 2, 0, NVIRT_MEMF_NVRAM, ME), &[]),
                1
            )
            .is_ok()
        );
        for cmd in [0, 6] {
            assert_eq!(
                case(
                    &mut b,
                    resv(ARRAY, 2, 0, XENMEMF_POPULATE_ON_DEMAND, DomainId::SELF),
                    cmd
                ),
                Reason::FlagsNotAllowed {
                    command: Command::from_raw(cmd).unwrap(),
                    mem_flags: XENMEMF_POPULATE_ON_DEMAND
                }
            );
        }
        assert_eq!(
            case(&mut b, resv(ARRAY, 2, 0, 3 << 8, DomainId::SELF), 0),
            Reason::NodeOutOfRange { node: 2, nodes: 2 }
        );
    }

    const MAX_PLUS: u64 = crate::numbers::MAX_CONTINUABLE_EXTENTS + 1;

    #[test]
    fn extent_arrays_must_be_guest_memory() {
        let mut b = [0u8; 0x1000];
        // 0x1000 - ARRAY = 0xe00 bytes = 448 slots; the last 32 are read-only.
        let fits = |b: &mut [u8; 0x1000], array, nr, cmd| {
            run_decode(&guest(b, resv(array, nr, 0, 0, DomainId::SELF), &[]), cmd)
                .map_err(|e| e.errno())
        };
        assert!(fits(&mut b, ARRAY, 448, 1).is_ok(), "decrease only reads");
        assert_eq!(fits(&mut b, ARRAY, 449, 1).map(|_| ()), Err(Errno::Fault));
        assert_eq!(
            fits(&mut b, ARRAY, 448, 6).map(|_| ()),
            Err(Errno::Fault),
            "populate writes"
        );
        assert!(fits(&mut b, ARRAY, 416, 6).is_ok());
        assert!(
            fits(&mut b, 0, 1 << 20, 0).is_ok(),
            "null handle: no output"
        );
        assert_eq!(
            fits(&mut b, 0, 1 << 20, 6).map(|_| ()),
            Err(Errno::Fault),
            "null is an address"
        );
        assert_eq!(
            reason(
                &guest(&mut b, resv(u64::MAX - 7, 2, 0, 0, DomainId::SELF), &[]),
                1
            ),
            Reason::ArrayOverflow {
                field: Field::ExtentArray,
                addr: GuestAddr::new(u64::MAX - 7),
                count: 2
            }
        );
        // Only the part from the resume point on is checked, as in Xen.
        assert!(fits(&mut b, ARRAY - 8, 449, 1 | 1 << 6).is_ok());
        let mut small = [0u8; 0x1000];
        let mem = FlatMemory::new(GuestAddr::new(0), &mut small[..0x110]);
        let err = run_decode(&mem, 6).unwrap_err();
        assert_eq!(err.errno(), Errno::Fault, "argument cut off: {err}");
    }

    #[test]
    fn refusals_on_continued_calls_report_progress() {
        let mut b = [0u8; 0x1000];
        let mem = guest(&mut b, resv(ARRAY, 8, 0, 1 << 24, DomainId::SELF), &[]);
        let refused = run_decode(&mem, 1 | 4 << 6).unwrap_err();
        assert_eq!(
            refused.outcome(),
            Outcome::Partial {
                done: 4,
                cause: Errno::Inval
            }
        );
        let beyond = run_decode(
            &guest(&mut b, resv(ARRAY, 2, 0, 0, DomainId::SELF), &[]),
            1 | 3 << 6,
        );
        assert_eq!(beyond.unwrap_err().outcome(), Outcome::Error(Errno::Inval));
    }

    #[test]
    fn run_counts_writes_back_and_stops() {
        let mut b = [0u8; 0x1000];
        let gpfns = [0x10, 0x11, 0x12, 0x13];
        let mut mem = guest(&mut b, resv(ARRAY, 4, 0, 0, DomainId::SELF), &gpfns);
        let req = run_decode(&mem, 6).unwrap();
        let mut seen = [0u64; 4];
        let out = req.run(&mut mem, |e| {
            let g = e.gpfn().unwrap();
            seen[e.index() as usize] = g.raw();
            Ok(Some(Gpfn::new(g.raw() + 0x100)))
        });
        assert_eq!(out, Outcome::Success(4));
        assert_eq!(seen, gpfns);
        assert_eq!(
            req.read_extent(&mem, 2),
            Ok(Gpfn::new(0x112)),
            "written back"
        );

        let out = req.run(&mut mem, |e| {
            if e.index() == 2 {
                Err(Errno::NoMem)
            } else {
                Ok(None)
            }
        });
        assert_eq!(
            out,
            Outcome::Partial {
                done: 2,
                cause: Errno::NoMem
            }
        );
        assert_eq!(
            req.run(&mut mem, |_| Err(Errno::NoMem)),
            Outcome::Error(Errno::NoMem)
        );

        // A decrease handler must not write into the input-only array.
        let dec = run_decode(&mem, 1).unwrap();
        assert_eq!(
            dec.run(&mut mem, |_| Ok(Some(Gpfn::new(1)))),
            Outcome::Error(Errno::Inval)
        );
        assert_eq!(
            dec.write_extent(&mut mem, 0, Gpfn::new(1)),
            Err(ExtentError::NotWritable { index: 0 })
        );
    }

    #[test]
    fn frames_are_validated() {
        let mut b = [0u8; 0x1000];
        let gpfns = [0x200, 0x201, 0x10_0000, 0xf_fe00];
        let mut mem = guest(&mut b, resv(ARRAY, 4, 9, 0, DomainId::SELF), &gpfns);
        let req = run_decode(&mem, 1).unwrap();
        assert_eq!(
            req.read_extent(&mem, 1),
            Err(ExtentError::Misaligned {
                index: 1,
                gpfn: Gpfn::new(0x201),
                order: ExtentOrder::PAGE_2M
            })
        );
        assert_eq!(
            req.read_extent(&mem, 2),
            Err(ExtentError::OutOfRange {
                index: 2,
                gpfn: Gpfn::new(0x10_0000),
                limit: Gpfn::new(0x10_0000)
            })
        );
        assert_eq!(
            req.read_extent(&mem, 3),
            Ok(Gpfn::new(0xf_fe00)),
            "ends exactly at the limit"
        );
        assert_eq!(
            req.run(&mut mem, |_| Ok(None)),
            Outcome::Partial {
                done: 1,
                cause: Errno::Inval
            }
        );
    }

    #[test]
    fn increase_without_array_writes_nothing() {
        let mut b = [0u8; 0x1000];
        let mut mem = guest(&mut b, resv(0, 3, 0, NVIRT_MEMF_NVRAM, DomainId::SELF), &[]);
        let before = mem.bytes().to_vec();
        let req = run_decode(&mem, 0).unwrap();
        assert!(!req.has_output());
        assert_eq!(
            req.read_extent(&mem, 0),
            Err(ExtentError::NotReadable { index: 0 })
        );
        let out = req.run(&mut mem, |e| {
            assert_eq!(e.gpfn(), None);
            Ok(Some(Gpfn::new(0x4242)))
        });
        assert_eq!(out, Outcome::Success(3));
        assert_eq!(mem.bytes(), &before[..]);
    }

    #[test]
    fn guest_memory_changing_under_the_handler_is_a_fault_not_a_panic() {
        let mut b = [0u8; 0x1000];
        let mut mem = guest(&mut b, resv(0xef0, 4, 0, 0, DomainId::SELF), &[]);
        let req = run_decode(&mem, 1).unwrap();
        // Pretend another vCPU made the array read-only: writes fail now.
        let mut other = [0u8; 0x1000];
        let mut ro = FlatMemory::new(GuestAddr::new(0), &mut other).with_read_only(0..0x1000);
        let inc = Reservation {
            op: ReservationOp::Increase,
            array: GuestAddr::new(0xef0),
            ..req
        };
        assert_eq!(
            inc.run(&mut ro, |_| Ok(Some(Gpfn::new(1)))),
            Outcome::Error(Errno::Fault)
        );
        assert_eq!(req.run(&mut mem, |_| Ok(None)), Outcome::Success(4));
        assert_eq!(
            ExtentError::Misaligned {
                index: 1,
                gpfn: Gpfn::new(3),
                order: ExtentOrder::PAGE_2M
            }
            .to_string(),
            "extent 1: gpfn 0x3 is not aligned to order 9"
        );
    }
}
