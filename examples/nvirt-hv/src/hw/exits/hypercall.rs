//! Hypercall exits, the same for VMMCALL and VMCALL: `memory_op` through
//! `nvirt-hypercall-abi`'s host side, the console and shutdown calls
//! through its `protocol`; every change to the nested tables invalidated
//! before the guest runs again.

use core::fmt::Write as _;

use nvirt_hypercall_abi::Errno;
use nvirt_hypercall_abi::host::{GuestMemory as _, Linear, Resume};
use nvirt_hypercall_abi::protocol::{self, Call, HYPERVISOR_MEMORY_OP, ShutdownReason};

use crate::memory_op::{self, Addressing, GuestInfo};

use super::super::console::{self, hvprintln};
use super::super::vcpu::{Reg, Vcpu};
use super::{DOMAIN, Ended, Flow, Run, caller, finish, first_argument, registers};

/// Longest console write one call may make (`protocol::CONSOLE_WRITE_MAX`).
const CONSOLE_BUFFER: usize = protocol::CONSOLE_WRITE_MAX as usize;

/// Prints one line of the guest's console.
pub(super) fn forward(line: &str) {
    let _ = match console::context() {
        Some(vm) => writeln!(console::Console, "guest {vm}: {line}"),
        None => writeln!(console::Console, "guest: {line}"),
    };
}

/// Serves the hypercall the guest's registers hold.
pub(super) fn serve(vcpu: &mut impl Vcpu, run: &mut Run<'_, '_, '_>) -> Flow {
    if vcpu.reg(Reg::Rax) == HYPERVISOR_MEMORY_OP {
        return memory_op(vcpu, run);
    }
    // Guest-virtual addresses, as Xen reads an HVM guest's.
    let paging = vcpu.paging();
    let result = match protocol::decode(&registers(vcpu)) {
        Ok(Call::ConsoleWrite { buffer, len }) => {
            let mut bytes = [0u8; CONSOLE_BUFFER];
            // `decode` bounds `len` by CONSOLE_WRITE_MAX.
            let out = &mut bytes[..len as usize];
            match Linear::new(&mut *run.guest, paging).read(buffer, out) {
                Ok(()) => {
                    run.console.push(out, forward);
                    0
                }
                Err(_) => Errno::Fault.to_return(),
            }
        }
        Ok(Call::Shutdown { arg }) => {
            match protocol::read_shutdown(&Linear::new(&mut *run.guest, paging), arg) {
                Ok(reason) => return shutdown(run, reason),
                Err(_) => Errno::Fault.to_return(),
            }
        }
        Err(errno) => errno.to_return(),
    };
    vcpu.set_reg(Reg::Rax, result);
    vcpu.skip_instruction();
    Flow::Resume
}

/// The guest ended itself: the verdict on its run.
fn shutdown(run: &mut Run<'_, '_, '_>, reason: ShutdownReason) -> Flow {
    run.flush();
    hvprintln!("guest shut down: {reason}");
    let powered_off = reason == ShutdownReason::Poweroff;
    Flow::End(Ended {
        passed: finish(run.guest, run.calls) && powered_off && run.console.passed(),
        powered_off,
    })
}

/// `memory_op`: decoded, validated and served; the tables' invalidation
/// issued before the guest runs again, and only then retired tables freed
/// (one CPU: nothing walks them in between).
fn memory_op(vcpu: &mut impl Vcpu, run: &mut Run<'_, '_, '_>) -> Flow {
    let Some(caller) = caller(vcpu) else {
        hvprintln!("domain {DOMAIN} is not an ordinary domain");
        return Flow::End(Ended::default());
    };
    let info = GuestInfo {
        caller,
        addressing: Addressing::Virtual(vcpu.paging()),
        limits: run.st.limits,
        e820: &run.st.e820[..run.st.e820_len],
        max_pages: run.st.initial_pages,
        max_ram_page: run.st.max_ram_page,
    };
    let mut regs = registers(vcpu);
    let served = match memory_op::serve(run.guest, &regs, &info) {
        Ok(s) => s,
        Err(fatal) => {
            run.flush();
            hvprintln!("memory_op broke the hypervisor's state: {fatal}");
            return Flow::End(Ended::default());
        }
    };
    run.calls += 1;
    hvprintln!("memory_op: {served}");
    let resume = served.outcome.apply(&mut regs);
    vcpu.set_reg(Reg::Rax, regs.rax);
    vcpu.set_reg(first_argument(vcpu), regs.rdi);
    if run.guest.take_invalidation().is_needed() {
        vcpu.invalidate_nested();
        run.guest.reclaim_tables();
    }
    match resume {
        Resume::Next => vcpu.skip_instruction(),
        Resume::Again => {}
        Resume::Inject(fault) => vcpu.inject_exception(fault.vector()),
    }
    Flow::Resume
}
