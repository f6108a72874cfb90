//! From a vCPU's registers to a typed, validated request.
//!
//! The checks follow Xen's `hvm_hypercall()` and `do_memory_op()` in order:
//! privilege, hypercall number, command, resume point, then the command's
//! own argument. Where Xen answers a reservation error with the count of
//! extents done so far, so does this decoder (see [`Rejection::outcome`]);
//! where nothing has been done, it answers `-errno` so the guest learns why.

use crate::host::context::{Caller, Limits, Registers};
use crate::host::extent::ReservationOp;
use crate::host::map::{MapRequest, SetMapRequest};
use crate::host::memory::{GuestMemory, read_value};
use crate::host::outcome::{Field, Reason, Rejection};
use crate::host::reservation::Reservation;
use crate::layout::MemoryDomain;
use crate::numbers::{Command, HYPERVISOR_MEMORY_OP, MemopCmd};
use crate::types::{DomId, GuestAddr};

/// A validated `memory_op` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// increase_reservation, decrease_reservation or populate_physmap:
    /// the hypervisor works through [`Reservation::batch`] and answers with
    /// [`Reservation::run`] (or [`Reservation::finish`] / [`Reservation::stop`]).
    Reservation(Reservation),
    /// `XENMEM_maximum_ram_page`: answer `Outcome::Success(highest frame)`.
    MaximumRamPage,
    /// `XENMEM_current_reservation` for the caller: answer with its pages.
    CurrentReservation,
    /// `XENMEM_maximum_reservation` for the caller: answer with its limit.
    MaximumReservation,
    /// `XENMEM_maximum_gpfn` for the caller: answer with its highest frame.
    MaximumGpfn,
    /// `XENMEM_memory_map`: answer with [`MapRequest::respond`].
    MemoryMap(MapRequest),
    /// `XENMEM_machine_memory_map` (privileged callers only).
    MachineMemoryMap(MapRequest),
    /// `XENMEM_set_memory_map` for the caller (privileged callers only):
    /// read it with [`SetMapRequest::read_entries`].
    SetMemoryMap(SetMapRequest),
}

/// Decodes and validates the `memory_op` call in `regs` from `caller`,
/// reading its argument from `mem` and holding it to `limits`.
///
/// Nothing is written to guest memory. An `Err` says how the call ends
/// ([`Rejection::outcome`]) and why ([`Rejection::reason`]).
pub fn decode<M: GuestMemory + ?Sized>(
    regs: &Registers,
    caller: &Caller,
    mem: &M,
    limits: &Limits,
) -> Result<Request, Rejection> {
    // Xen refuses user-mode hypercalls before it looks at the number.
    if caller.is_user() {
        return Err(Rejection::user_mode(
            caller.cpl(),
            limits.user_call_policy(),
        ));
    }
    if regs.rax != HYPERVISOR_MEMORY_OP {
        return Err(Rejection::new(Reason::NotMemoryOp { number: regs.rax }));
    }
    let cmd = MemopCmd::from_raw(regs.rdi);
    let Some(command) = cmd.command() else {
        return Err(Rejection::new(Reason::UnknownCommand { op: cmd.op() }));
    };
    let arg = GuestAddr::new(regs.rsi);
    if let Some(op) = ReservationOp::from_command(command) {
        return Reservation::decode(op, cmd.start_extent(), arg, caller, mem, limits)
            .map(Request::Reservation);
    }
    if cmd.start_extent() != 0 {
        return Err(Rejection::new(Reason::NotContinuable {
            command,
            start_extent: cmd.start_extent(),
        }));
    }
    match command {
        Command::MaximumRamPage => Ok(Request::MaximumRamPage),
        Command::CurrentReservation | Command::MaximumReservation | Command::MaximumGpfn => {
            let d: MemoryDomain = read_value(mem, arg).map_err(|error| {
                Rejection::new(Reason::Memory {
                    field: Field::Argument,
                    error,
                })
            })?;
            resolve_domain(d.domid(), caller).map_err(Rejection::new)?;
            Ok(match command {
                Command::CurrentReservation => Request::CurrentReservation,
                Command::MaximumReservation => Request::MaximumReservation,
                _ => Request::MaximumGpfn,
            })
        }
        Command::MemoryMap => {
            MapRequest::decode(command, arg, caller, mem, limits).map(Request::MemoryMap)
        }
        Command::MachineMemoryMap => {
            MapRequest::decode(command, arg, caller, mem, limits).map(Request::MachineMemoryMap)
        }
        Command::SetMemoryMap => {
            SetMapRequest::decode(arg, caller, mem, limits).map(Request::SetMemoryMap)
        }
        // Reservations returned above.
        Command::IncreaseReservation | Command::DecreaseReservation | Command::PopulatePhysmap => {
            Err(Rejection::new(Reason::UnknownCommand { op: cmd.op() }))
        }
    }
}

/// The caller's own id if `alleged` names it (`DOMID_SELF` or the id
/// itself). Another ordinary domain is not permitted (`-EPERM`, as Xen's
/// XSM check answers an unprivileged caller); a reserved id names no domain
/// (`-ESRCH`). Whether another domain exists is not revealed.
pub(crate) const fn resolve_domain(alleged: DomId, caller: &Caller) -> Result<DomId, Reason> {
    if alleged.raw() == DomId::SELF.raw() || alleged.raw() == caller.domain().raw() {
        Ok(caller.domain())
    } else if alleged.is_ordinary() {
        Err(Reason::ForeignDomain { domid: alleged })
    } else {
        Err(Reason::NoSuchDomain { domid: alleged })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno::Errno;
    use crate::host::context::{UserCalls, VcpuMode};
    use crate::host::memory::FlatMemory;
    use crate::host::outcome::{Fault, Outcome};
    use crate::types::XenPfn;
    use zerocopy::IntoBytes;

    const ME: DomId = DomId::new(3);

    fn limits() -> Limits {
        Limits::new(XenPfn::new(1 << 20))
    }

    fn call(cmd: u64, arg: u64) -> Registers {
        Registers {
            rax: 12,
            rdi: cmd,
            rsi: arg,
            ..Registers::default()
        }
    }

    #[test]
    fn privilege_mode_number_command() {
        let mut bytes = [0u8; 64];
        let mem = FlatMemory::new(GuestAddr::new(0), &mut bytes);
        let kernel = Caller::kernel(ME).unwrap();
        let user = Caller::new(ME, VcpuMode::Bits64, 3).unwrap();
        let errno = |regs: Registers, caller: &Caller, limits: &Limits| {
            decode(&regs, caller, &mem, limits)
                .map(|_| ())
                .map_err(|r| r.outcome())
        };
        assert_eq!(
            errno(call(2, 0), &user, &limits()),
            Err(Outcome::Error(Errno::Perm))
        );
        assert_eq!(
            errno(call(2, 0), &user, &limits().user_calls(UserCalls::Fault)),
            Err(Outcome::Fault(Fault::InvalidOpcode))
        );
        // 32-bit, 16-bit and real-mode callers are served (compat layouts).
        for mode in [VcpuMode::Bits32, VcpuMode::Bits16, VcpuMode::Real] {
            let compat = Caller::new(ME, mode, 0).unwrap();
            assert_eq!(errno(call(2, 0), &compat, &limits()), Ok(()));
        }
        let mut other = call(2, 0);
        other.rax = 13;
        assert_eq!(
            errno(other, &kernel, &limits()),
            Err(Outcome::Error(Errno::NoSys))
        );
        other.rax = 12 | 1 << 32;
        assert_eq!(
            errno(other, &kernel, &limits()),
            Err(Outcome::Error(Errno::NoSys))
        );
        for unknown in [5, 7, 8, 11, 12, 15, 63] {
            assert_eq!(
                errno(call(unknown, 0), &kernel, &limits()),
                Err(Outcome::Error(Errno::NoSys))
            );
        }
        assert_eq!(
            decode(&call(2, 0), &kernel, &mem, &limits()),
            Ok(Request::MaximumRamPage)
        );
        assert_eq!(
            errno(call(2 | 1 << 6, 0), &kernel, &limits()),
            Err(Outcome::Error(Errno::Inval)),
            "only reservations resume"
        );
    }

    #[test]
    fn domain_queries_check_the_domain() {
        let mut bytes = [0u8; 64];
        let mut mem = FlatMemory::new(GuestAddr::new(0x1000), &mut bytes);
        let kernel = Caller::kernel(ME).unwrap();
        let query = |mem: &FlatMemory<'_>, cmd| decode(&call(cmd, 0x1010), &kernel, mem, &limits());
        for (domid, expected) in [
            (DomId::SELF, Ok(Request::CurrentReservation)),
            (ME, Ok(Request::CurrentReservation)),
            (DomId::new(4), Err(Errno::Perm)),
            (DomId::new(0), Err(Errno::Perm)),
            (DomId::new(0x7ff1), Err(Errno::Srch)),
            (DomId::new(0xffff), Err(Errno::Srch)),
        ] {
            mem.write(GuestAddr::new(0x1010), MemoryDomain::new(domid).as_bytes())
                .unwrap();
            assert_eq!(query(&mem, 3).map_err(|r| r.errno()), expected, "{domid}");
        }
        mem.write(
            GuestAddr::new(0x1010),
            MemoryDomain::new(DomId::SELF).as_bytes(),
        )
        .unwrap();
        assert_eq!(query(&mem, 4), Ok(Request::MaximumReservation));
        assert_eq!(query(&mem, 14), Ok(Request::MaximumGpfn));
        let outside = decode(&call(3, 0x103f), &kernel, &mem, &limits());
        assert_eq!(outside.map_err(|r| r.errno()), Err(Errno::Fault));
    }
}
