//! The guest's side: typed `memory_op` calls over a [`Transport`].
//!
//! [`MemoryOps`] builds each argument structure in the guest's own memory
//! and hands it, with the arrays it points to, to a transport. The transport
//! decides where those live in guest-physical terms and enters the
//! hypervisor: [`Vmcall`] with the real instruction (x86_64 only), or
//! [`Loopback`] straight into a host-side handler, for tests.
//!
//! ```no_run
//! # #[cfg(target_arch = "x86_64")] {
//! use nvirt_hypercall_abi::guest::{HypercallInsn, MemoryOps, Vmcall};
//! use nvirt_hypercall_abi::{E820Entry, ExtentOrder, XenPfn, MemKind};
//!
//! // SAFETY: this guest is identity mapped and runs under nvirt's hypervisor.
//! let mut hv = MemoryOps::new(unsafe { Vmcall::identity_mapped(HypercallInsn::detect()) });
//! let mut map = [E820Entry::default(); 32];
//! let n = hv.memory_map(&mut map)?;
//! let nvram = map[..n].iter().find(|e| e.kind() == E820Entry::PMEM).expect("an NVRAM region");
//! // Back the first 2 MiB of the NVRAM region with one NVRAM extent.
//! let mut extents = [XenPfn::new(nvram.addr() >> 12)];
//! let done = hv.populate_physmap(MemKind::NonVolatile, ExtentOrder::PAGE_2M, &mut extents)?;
//! assert_eq!(done, 1);
//! # }
//! # Ok::<(), nvirt_hypercall_abi::guest::CallError<core::convert::Infallible>>(())
//! ```

mod insn;
mod loopback;
#[cfg(target_arch = "x86_64")]
#[allow(
    unsafe_code,
    reason = "the hypercall instruction and CPUID need inline assembly and intrinsics; this module is the crate's only unsafe code"
)]
mod vmcall;

use core::fmt;

use crate::MemKind;
use crate::errno::{Errno, error_code};
use crate::flags::MemFlags;
use crate::host::ReservationOp;
use crate::layout::{E820Entry, MemoryDomain, MemoryMap, MemoryReservation};
use crate::numbers::{Command, MAX_CONTINUABLE_EXTENTS, MemopCmd};
use crate::types::{DomId, ExtentOrder, GuestAddr, XenPfn};

pub use insn::{HypercallInsn, vendor_string};
pub use loopback::{Loopback, LoopbackError};
#[cfg(target_arch = "x86_64")]
pub use vmcall::{Vmcall, discover, install_hypercall_page};

/// A reservation's extent array, lent to the hypervisor for one call.
#[derive(Debug)]
pub enum Extents<'a> {
    /// Read by the hypervisor only (decrease_reservation).
    In(&'a [XenPfn]),
    /// Read and written (increase_reservation, populate_physmap).
    InOut(&'a mut [XenPfn]),
}

impl Extents<'_> {
    /// Number of extents.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Self::In(e) => e.len(),
            Self::InOut(e) => e.len(),
        }
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The array's first element (for its address).
    #[must_use]
    pub fn as_ptr(&self) -> *const XenPfn {
        match self {
            Self::In(e) => e.as_ptr(),
            Self::InOut(e) => e.as_ptr(),
        }
    }
}

/// A `memory_op` argument with the memory it points to. The transport sets
/// the guest handles inside the header once it knows the arrays'
/// addresses.
#[derive(Debug)]
pub enum Arg<'a> {
    /// No argument (`arg == NULL`).
    Null,
    /// A reservation and its extent array.
    Reservation {
        /// The structure.
        header: &'a mut MemoryReservation,
        /// The array `extent_start` must point to.
        extents: Extents<'a>,
    },
    /// A memory map and its entry buffer.
    MemoryMap {
        /// The structure; `nr_entries` comes back filled in.
        header: &'a mut MemoryMap,
        /// The buffer `buffer` must point to.
        buffer: &'a mut [E820Entry],
    },
    /// A domain query.
    Domain(&'a MemoryDomain),
}

/// Enters the hypervisor with `memory_op`.
pub trait Transport {
    /// What can go wrong besides the hypervisor's answer (nothing, for the
    /// real instruction).
    type Error;

    /// Issues `memory_op(cmd, arg)` and returns RAX.
    fn memory_op(&mut self, cmd: MemopCmd, arg: Arg<'_>) -> Result<u64, Self::Error>;
}

/// A call that did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError<E> {
    /// The hypervisor answered `-errno`.
    Errno(Errno),
    /// The hypervisor answered an error number this crate does not name.
    UnknownErrno(u64),
    /// The hypervisor answered a count larger than the request.
    BadCount {
        /// The count returned.
        returned: u64,
        /// The most that was possible.
        max: u64,
    },
    /// The array has more extents than one call can carry
    /// ([`MAX_CONTINUABLE_EXTENTS`]).
    TooLarge {
        /// Extents given.
        len: usize,
    },
    /// The transport failed.
    Transport(E),
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Errno(e) => write!(f, "hypervisor refused: {e}"),
            Self::UnknownErrno(code) => write!(f, "hypervisor refused with error {code}"),
            Self::BadCount { returned, max } => {
                write!(
                    f,
                    "hypervisor returned count {returned}, at most {max} possible"
                )
            }
            Self::TooLarge { len } => write!(
                f,
                "{len} extents, one call carries at most {MAX_CONTINUABLE_EXTENTS}"
            ),
            Self::Transport(e) => write!(f, "transport: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for CallError<E> {}

/// Splits a return value into a count (at most `max`) or an error.
fn count<E>(ret: u64, max: u64) -> Result<u64, CallError<E>> {
    match error_code(ret) {
        Some(code) => {
            Err(Errno::from_code(code).map_or(CallError::UnknownErrno(code), CallError::Errno))
        }
        None if ret <= max => Ok(ret),
        None => Err(CallError::BadCount { returned: ret, max }),
    }
}

/// Typed `memory_op` calls for the calling domain (`DOMID_SELF`).
#[derive(Debug)]
pub struct MemoryOps<T> {
    transport: T,
}

impl<T: Transport> MemoryOps<T> {
    /// Calls over `transport`.
    pub const fn new(transport: T) -> Self {
        Self { transport }
    }

    /// The transport.
    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Gives the transport back.
    pub fn into_transport(self) -> T {
        self.transport
    }

    /// `XENMEM_increase_reservation`: allocates `extents.len()` extents of
    /// `order` from the pool of `kind`; the hypervisor may write a frame per
    /// extent into `extents`. Returns the extents allocated: fewer than
    /// asked is Xen's partial success.
    pub fn increase_reservation(
        &mut self,
        kind: MemKind,
        order: ExtentOrder,
        extents: &mut [XenPfn],
    ) -> Result<usize, CallError<T::Error>> {
        self.reserve(
            ReservationOp::Increase,
            kind.into(),
            order,
            Extents::InOut(extents),
        )
    }

    /// `XENMEM_decrease_reservation`: gives back the extents of `order`
    /// starting at the frames in `extents`. Returns how many were released.
    pub fn decrease_reservation(
        &mut self,
        kind: MemKind,
        order: ExtentOrder,
        extents: &[XenPfn],
    ) -> Result<usize, CallError<T::Error>> {
        self.reserve(
            ReservationOp::Decrease,
            kind.into(),
            order,
            Extents::In(extents),
        )
    }

    /// `XENMEM_populate_physmap`: backs the extents of `order` starting at
    /// the frames in `extents` with memory of `kind`. Returns how many were
    /// populated.
    pub fn populate_physmap(
        &mut self,
        kind: MemKind,
        order: ExtentOrder,
        extents: &mut [XenPfn],
    ) -> Result<usize, CallError<T::Error>> {
        self.reserve(
            ReservationOp::Populate,
            kind.into(),
            order,
            Extents::InOut(extents),
        )
    }

    /// Any reservation command with any flags (address limit, NUMA node).
    pub fn reserve(
        &mut self,
        op: ReservationOp,
        flags: MemFlags,
        order: ExtentOrder,
        extents: Extents<'_>,
    ) -> Result<usize, CallError<T::Error>> {
        let len = extents.len();
        let nr = u64::try_from(len)
            .ok()
            .filter(|n| *n <= MAX_CONTINUABLE_EXTENTS)
            .ok_or(CallError::TooLarge { len })?;
        let mut header = MemoryReservation::new(
            GuestAddr::NULL,
            nr,
            u32::from(order.get()),
            flags.to_raw(),
            DomId::SELF,
        );
        let arg = Arg::Reservation {
            header: &mut header,
            extents,
        };
        let ret = self
            .transport
            .memory_op(MemopCmd::new(op.command()), arg)
            .map_err(CallError::Transport)?;
        // `ret <= nr`, and `nr` came from a `usize`.
        count(ret, nr).map(|n| usize::try_from(n).unwrap_or(len))
    }

    /// `XENMEM_memory_map`: the domain's E820 map, into `buffer`. Returns the
    /// entries written; a map larger than the buffer is cut short.
    pub fn memory_map(&mut self, buffer: &mut [E820Entry]) -> Result<usize, CallError<T::Error>> {
        self.map(Command::MemoryMap, buffer)
    }

    /// `XENMEM_machine_memory_map`: the machine's E820 map (privileged
    /// domains only).
    pub fn machine_memory_map(
        &mut self,
        buffer: &mut [E820Entry],
    ) -> Result<usize, CallError<T::Error>> {
        self.map(Command::MachineMemoryMap, buffer)
    }

    fn map(
        &mut self,
        command: Command,
        buffer: &mut [E820Entry],
    ) -> Result<usize, CallError<T::Error>> {
        // A capacity beyond u32 is still honest when capped: the hypervisor
        // writes at most what `nr_entries` says.
        let capacity = u32::try_from(buffer.len()).unwrap_or(u32::MAX);
        let mut header = MemoryMap::new(capacity, GuestAddr::NULL);
        let arg = Arg::MemoryMap {
            header: &mut header,
            buffer,
        };
        let ret = self
            .transport
            .memory_op(MemopCmd::new(command), arg)
            .map_err(CallError::Transport)?;
        count::<T::Error>(ret, 0)?;
        let n = header.nr_entries();
        if n > capacity {
            return Err(CallError::BadCount {
                returned: u64::from(n),
                max: u64::from(capacity),
            });
        }
        Ok(n as usize)
    }

    /// `XENMEM_maximum_ram_page`: the highest machine frame of RAM.
    pub fn maximum_ram_page(&mut self) -> Result<u64, CallError<T::Error>> {
        let ret = self
            .transport
            .memory_op(MemopCmd::new(Command::MaximumRamPage), Arg::Null)
            .map_err(CallError::Transport)?;
        count(ret, u64::MAX)
    }

    /// `XENMEM_current_reservation`: the domain's pages now.
    pub fn current_reservation(&mut self) -> Result<u64, CallError<T::Error>> {
        self.query(Command::CurrentReservation)
    }

    /// `XENMEM_maximum_reservation`: the domain's page limit.
    pub fn maximum_reservation(&mut self) -> Result<u64, CallError<T::Error>> {
        self.query(Command::MaximumReservation)
    }

    /// `XENMEM_maximum_gpfn`: the highest guest frame in use.
    pub fn maximum_gpfn(&mut self) -> Result<XenPfn, CallError<T::Error>> {
        self.query(Command::MaximumGpfn).map(XenPfn::new)
    }

    fn query(&mut self, command: Command) -> Result<u64, CallError<T::Error>> {
        let domain = MemoryDomain::new(DomId::SELF);
        let ret = self
            .transport
            .memory_op(MemopCmd::new(command), Arg::Domain(&domain))
            .map_err(CallError::Transport)?;
        count(ret, u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_values() {
        type E = core::convert::Infallible;
        assert_eq!(count::<E>(3, 3), Ok(3));
        assert_eq!(
            count::<E>(4, 3),
            Err(CallError::BadCount {
                returned: 4,
                max: 3
            })
        );
        assert_eq!(
            count::<E>(Errno::NoMem.to_return(), 3),
            Err(CallError::Errno(Errno::NoMem))
        );
        assert_eq!(
            count::<E>(2u64.wrapping_neg(), 3),
            Err(CallError::UnknownErrno(2))
        );
        assert_eq!(count::<E>(u64::MAX - 4095, u64::MAX), Ok(u64::MAX - 4095));
    }
}
