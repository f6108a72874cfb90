//! Serving Xen's `memory_op` hypercall with `nvirt-hypercall-abi`'s host
//! side: the crate decodes and validates the call, this module does the
//! work on the guest's memory and builds the answer.
//!
//! | command | answer |
//! |---|---|
//! | `memory_map` | the guest's synthesized E820 map |
//! | `populate_physmap` | backs the named extents ([`crate::balloon`]) |
//! | `increase_reservation` | backs the lowest free aligned extents of the guest's regions and reports their frames |
//! | `decrease_reservation` | releases the named extents |
//! | `current_reservation` | pages backed now (RAM + NVRAM) |
//! | `maximum_reservation` | pages the guest was configured with |
//! | `maximum_gpfn` | the highest guest frame mapped now |
//! | `maximum_ram_page` | one past the host's last RAM frame |
//!
//! The NVRAM flag picks the pool. The address-width and NUMA-node flags are
//! accepted and have no effect: the guest never sees host addresses, and
//! the machine has one node. A refused call returns `-errno`; an extent
//! that fails stops the call with Xen's partial success. Only a broken
//! hypervisor state (never guest input) stops the guest.

use core::fmt;

use nvirt_buddy::{MemKind, Order};
use nvirt_hypercall_abi::host::{
    self, Access, AccessError, Caller, ExtentError, Limits, Linear, Outcome, Paging, Reason,
    Registers, Request, Reservation,
};
use nvirt_hypercall_abi::{
    Command, E820Entry, Errno, ExtentOrder, GuestAddr, MemopCmd, ReservationOp, XenPfn,
};

use crate::guest_memory::{GuestMemory, HostMem, MemoryError};
use crate::p2m::P2mError;
use crate::pool::FramePool;

/// How the addresses a guest passes are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// Guest-virtual, through the calling vCPU's page tables, as Xen reads
    /// an HVM guest's: what the hypervisor does for every call.
    Virtual(Paging),
    /// Guest-physical: the host tests of this module's logic, which hand
    /// it guest-physical buffers.
    #[cfg(any(test, feature = "std"))]
    Physical,
}

/// What a guest's `memory_op` is answered from besides its memory.
#[derive(Clone, Copy, Debug)]
pub struct GuestInfo<'e> {
    /// The calling domain and vCPU state.
    pub caller: Caller,
    /// How its pointers are read.
    pub addressing: Addressing,
    /// Its limits.
    pub limits: Limits,
    /// Its E820 map.
    pub e820: &'e [E820Entry],
    /// Pages it was configured with.
    pub max_pages: u64,
    /// One past the host's last RAM frame.
    pub max_ram_page: u64,
}

/// Why a call or an extent was refused, for the hypervisor's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// By the decoder.
    Decode(Reason),
    /// An extent's frame, by the decoder.
    Extent(ExtentError),
    /// By the guest's memory.
    Memory(MemoryError),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode(r) => r.fmt(f),
            Self::Extent(e) => e.fmt(f),
            Self::Memory(e) => e.fmt(f),
        }
    }
}

/// One hypervisor entry of a `memory_op` call, served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Served {
    /// The command, if known.
    pub command: Option<Command>,
    /// For reservations: kind, order and the extents this entry handled.
    pub reservation: Option<(MemKind, u8, u64, u64)>,
    /// The answer.
    pub outcome: Outcome,
    /// Why something was refused.
    pub refusal: Option<Refusal>,
}

impl fmt::Display for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.command {
            Some(c) => f.write_str(c.name())?,
            None => f.write_str("memory_op (unknown command)")?,
        }
        if let Some((kind, order, start, end)) = self.reservation {
            write!(f, " {kind} order {order} extents {start}..{end}")?;
        }
        match self.outcome {
            Outcome::Success(v) => write!(f, ": {v}")?,
            Outcome::Error(e) => write!(f, ": -{}", e.name())?,
            Outcome::Partial { done, cause } => write!(f, ": {done} (stopped: {})", cause.name())?,
            Outcome::Continue(cmd) => write!(f, ": continues at extent {}", cmd.start_extent())?,
            Outcome::Fault(fault) => write!(f, ": {fault}")?,
        }
        if let Some(r) = self.refusal {
            write!(f, " [{r}]")?;
        }
        Ok(())
    }
}

/// Writes `map` into `out` as Xen E820 entries; returns how many (at most
/// `out.len()`).
pub fn e820_of<const N: usize>(map: &nvirt_e820::MemoryMap<N>, out: &mut [E820Entry]) -> usize {
    let mut n = 0;
    for (slot, e) in out.iter_mut().zip(map.iter()) {
        *slot = E820Entry::new(e.start(), e.size(), e.kind().raw());
        n += 1;
    }
    n
}

/// The error number a refused change gives the guest: `-ENOMEM` when
/// memory (or room to record it) ran out, `-EINVAL` for frames the guest
/// may not use that way.
#[must_use]
pub const fn errno_of(e: &MemoryError) -> Errno {
    match e {
        MemoryError::Map(P2mError::Full { .. })
        | MemoryError::NoMemory { .. }
        | MemoryError::NoTableFrame => Errno::NoMem,
        _ => Errno::Inval,
    }
}

/// Serves one hypervisor entry of a `memory_op` call (RAX = 12) in `regs`.
/// `Err` only for a broken hypervisor state.
pub fn serve<N: FramePool, M: HostMem + Copy>(
    guest: &mut GuestMemory<'_, '_, '_, N, M>,
    regs: &Registers,
    info: &GuestInfo<'_>,
) -> Result<Served, MemoryError> {
    let command = MemopCmd::from_raw(regs.rdi).command();
    let mut served = Served {
        command,
        reservation: None,
        outcome: Outcome::Error(Errno::NoSys),
        refusal: None,
    };
    let request = match host::decode(regs, &info.caller, &view(guest, info), &info.limits) {
        Ok(r) => r,
        Err(refused) => {
            served.outcome = refused.outcome();
            served.refusal = Some(Refusal::Decode(*refused.reason()));
            return Ok(served);
        }
    };
    served.outcome = match request {
        Request::Reservation(r) => {
            let batch = r.batch();
            served.reservation = Some((r.kind(), r.order().get(), batch.start, batch.end));
            let (outcome, refusal) = reserve(guest, info, &r)?;
            served.refusal = refusal;
            outcome
        }
        Request::MemoryMap(m) => m.respond(&mut view(guest, info), info.e820),
        Request::CurrentReservation => {
            Outcome::Success(guest.frames(MemKind::Volatile) + guest.frames(MemKind::NonVolatile))
        }
        Request::MaximumReservation => Outcome::Success(info.max_pages),
        // The highest frame mapped now (Xen: the highest ever mapped).
        Request::MaximumGpfn => Outcome::Success(
            guest
                .extents()
                .last()
                .map_or(0, |e| e.end().get().saturating_sub(1)),
        ),
        Request::MaximumRamPage => Outcome::Success(info.max_ram_page),
        // machine_memory_map only reaches here for privileged callers, and
        // a guest of this hypervisor never is one. set_memory_map (a
        // domain may set its own map in Xen) is refused: the guest's map
        // places its NVRAM, which the hypervisor keeps across reboots.
        Request::MachineMemoryMap(_) | Request::SetMemoryMap(_) => Outcome::Error(Errno::Perm),
    };
    Ok(served)
}

/// The guest's memory as its pointers address it.
pub fn view<'g, 'a, 'm, 's, N: FramePool, M: HostMem + Copy>(
    guest: &'g mut GuestMemory<'a, 'm, 's, N, M>,
    info: &GuestInfo<'_>,
) -> Linear<&'g mut GuestMemory<'a, 'm, 's, N, M>> {
    let paging = match info.addressing {
        Addressing::Virtual(p) => Some(p),
        #[cfg(any(test, feature = "std"))]
        Addressing::Physical => None,
    };
    Linear::maybe(guest, paging)
}

/// Works through one batch of a reservation.
fn reserve<N: FramePool, M: HostMem + Copy>(
    guest: &mut GuestMemory<'_, '_, '_, N, M>,
    info: &GuestInfo<'_>,
    r: &Reservation,
) -> Result<(Outcome, Option<Refusal>), MemoryError> {
    let kind = r.kind();
    // Nothing to do (Xen answers the resume point before any check).
    if r.batch().is_empty() {
        return Ok((r.finish(), None));
    }
    // The decoder held the order to the hypervisor's limit; a limit set
    // above 1 GiB must not make a larger order be served as a smaller one.
    let Ok(order) = Order::try_from(r.order()) else {
        let refusal = Refusal::Decode(Reason::OrderTooLarge {
            order: u32::from(r.order().get()),
            max: ExtentOrder::from(Order::MAX),
        });
        return Ok((r.stop(r.batch().start, Errno::Inval), Some(refusal)));
    };
    for index in r.batch() {
        let gpfn = match r.op() {
            ReservationOp::Increase => None,
            ReservationOp::Decrease | ReservationOp::Populate => {
                match r.read_extent(&view(guest, info), index) {
                    Ok(g) => Some(g),
                    Err(e) => return Ok((r.stop(index, e.errno()), Some(Refusal::Extent(e)))),
                }
            }
        };
        let done = match (r.op(), gpfn) {
            (ReservationOp::Populate, Some(g)) => guest.populate(g, order, kind).map(|()| None),
            (ReservationOp::Decrease, Some(g)) => guest.decrease(g, order, kind).map(|()| None),
            (_, _) => guest.increase(order, kind).map(Some),
        };
        match done {
            Ok(None) => {}
            Ok(Some(g)) => {
                if let Err(e) = r.write_extent(&mut view(guest, info), index, XenPfn::from(g)) {
                    // The guest cannot learn where the extent went: take it
                    // back rather than leave it unaccounted for.
                    guest.decrease(g, order, kind)?;
                    return Ok((r.stop(index, e.errno()), Some(Refusal::Extent(e))));
                }
            }
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => return Ok((r.stop(index, errno_of(&e)), Some(Refusal::Memory(e)))),
        }
    }
    Ok((r.finish(), None))
}

impl<N: FramePool, M: HostMem + Copy> host::GuestMemory for GuestMemory<'_, '_, '_, N, M> {
    fn check(&self, addr: GuestAddr, len: u64, _access: Access) -> Result<(), AccessError> {
        // RAM and NVRAM are both read/write for the guest and for the
        // hypervisor acting for it.
        if addr.raw().checked_add(len).is_none() {
            return Err(AccessError::Wraps { addr, len });
        }
        GuestMemory::check(self, addr.raw(), len).map_err(|_| AccessError::Unmapped { addr, len })
    }

    fn read(&self, addr: GuestAddr, buf: &mut [u8]) -> Result<(), AccessError> {
        let len = buf.len() as u64;
        GuestMemory::read(self, addr.raw(), buf).map_err(|_| AccessError::Unmapped { addr, len })
    }

    fn write(&mut self, addr: GuestAddr, data: &[u8]) -> Result<(), AccessError> {
        let len = data.len() as u64;
        GuestMemory::write(self, addr.raw(), data).map_err(|_| AccessError::Unmapped { addr, len })
    }
}

#[cfg(test)]
#[path = "memory_op_tests.rs"]
mod tests;
