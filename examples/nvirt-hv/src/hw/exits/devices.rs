//! Port I/O and MSR exits through the device model (`crate::devices`), and
//! how a Linux guest's run ends: after its final marker (`nvirt-linux:
//! PASS` on its serial console), a reset request, a triple fault or HLT
//! with interrupts off is a normal end; before it, each is a failure.

use nvirt_hypercall_abi::host::VcpuMode;

use crate::devices::msrs::{self, MsrAction};
use crate::devices::{PortAccess, PortOutcome, Width};

use super::super::console::hvprintln;
use super::super::io::{forward_port, rdtsc};
use super::super::vcpu::{Reg, Vcpu};
use super::{Ended, Flow, Run, finish};

/// Counts of each kind of exit, for the report.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ExitCounts {
    pub(crate) io: u64,
    pub(crate) msr: u64,
    pub(crate) cpuid: u64,
    pub(crate) hlt: u64,
    pub(crate) hypercall: u64,
    pub(crate) other: u64,
}

impl ExitCounts {
    pub(crate) const fn total(&self) -> u64 {
        self.io + self.msr + self.cpuid + self.hlt + self.hypercall + self.other
    }
}

impl core::fmt::Display for ExitCounts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} exits (I/O {}, MSR {}, CPUID {}, HLT {}, hypercall {}, other {})",
            self.total(),
            self.io,
            self.msr,
            self.cpuid,
            self.hlt,
            self.hypercall,
            self.other
        )
    }
}

/// A port access: forwarded, emulated, or the end of the guest.
pub(super) fn io(
    vcpu: &mut impl Vcpu,
    run: &mut Run<'_, '_, '_>,
    port: u16,
    bytes: u8,
    input: bool,
    string: bool,
) -> Flow {
    let width = Width::from_bytes(bytes).filter(|_| !string);
    let Some(width) = width else {
        run.flush();
        hvprintln!(
            "guest used string or {bytes}-byte port I/O on {port:#x} at rip {:#x}: not supported",
            vcpu.reg(Reg::Rip)
        );
        return Flow::End(Ended::default());
    };
    let rax = vcpu.reg(Reg::Rax);
    let out = (!input).then_some(rax as u32 & width.mask());
    let value = match run.devices.port(PortAccess { port, width, out }) {
        // SAFETY: the device model forwards only the ports the guest owns.
        PortOutcome::Forward => unsafe { forward_port(port, width.bytes(), out) },
        PortOutcome::Emulated(v) => v,
        PortOutcome::Reset(source) => {
            return linux_end(vcpu, run, format_args!("reset request ({source:?})"));
        }
    };
    if let Some(marker) = run.st.devices.serial().take_marker() {
        hvprintln!("guest marker {marker:?} after {}", run.st.exits);
        if run.devices.serial().passed() {
            // From now on HLT with interrupts off is the guest's end.
            vcpu.set_halt_exits(true);
        }
    }
    if input {
        // IN writes AL, AX or EAX; a 32-bit write clears RAX's upper half.
        let merged = match width {
            Width::Dword => u64::from(value),
            w => rax & !u64::from(w.mask()) | u64::from(value & w.mask()),
        };
        vcpu.set_reg(Reg::Rax, merged);
    }
    vcpu.skip_instruction();
    Flow::Resume
}

/// RDMSR or WRMSR of an intercepted MSR.
pub(super) fn msr(vcpu: &mut impl Vcpu, run: &mut Run<'_, '_, '_>, write: bool) -> Flow {
    let number = vcpu.reg(Reg::Rcx) as u32;
    let value = vcpu.reg(Reg::Rdx) << 32 | vcpu.reg(Reg::Rax) & 0xffff_ffff;
    run.msrs.record(number, write);
    let read = match (msrs::action(number), write) {
        (MsrAction::Field, true) => {
            vcpu.set_msr_field(number, value);
            None
        }
        (MsrAction::Field, false) => Some(vcpu.msr_field(number).unwrap_or(0)),
        (MsrAction::Tsc, false) => Some(rdtsc()),
        (MsrAction::Tsc | MsrAction::Zero, true) => None,
        (MsrAction::Zero, false) => Some(0),
    };
    if let Some(v) = read {
        vcpu.set_reg(Reg::Rax, v & 0xffff_ffff);
        vcpu.set_reg(Reg::Rdx, v >> 32);
    }
    vcpu.skip_instruction();
    Flow::Resume
}

/// HLT exited: with interrupts on, the guest waits for one (resume it past
/// the HLT: the interrupt is delivered as it re-enters); with them off it
/// has stopped for good.
pub(super) fn halt(vcpu: &mut impl Vcpu, run: &mut Run<'_, '_, '_>) -> Flow {
    if run.linux && vcpu.interrupts_enabled() {
        vcpu.skip_instruction();
        return Flow::Resume;
    }
    if run.linux {
        return linux_end(vcpu, run, format_args!("HLT with interrupts off"));
    }
    run.flush();
    hvprintln!(
        "guest halted at {:#x} without shutting down",
        vcpu.reg(Reg::Rip)
    );
    Flow::End(Ended::default())
}

/// A Linux guest stopped: normal after its final marker, else a failure.
pub(super) fn linux_end(
    vcpu: &impl Vcpu,
    run: &mut Run<'_, '_, '_>,
    how: core::fmt::Arguments<'_>,
) -> Flow {
    let rip = vcpu.reg(Reg::Rip);
    let (mode, cpl) = vcpu.caller_state();
    let mode = match mode {
        VcpuMode::Bits64 => "64-bit",
        VcpuMode::Bits32 => "32-bit",
        _ => "real/16-bit",
    };
    hvprintln!("guest ended by {how} at rip {rip:#x} ({mode}, CPL {cpl})");
    hvprintln!("guest {}", run.exits);
    hvprintln!(
        "guest port I/O: {} forwarded, {} emulated, {} absent; {} serial lines",
        run.devices.counts().forwarded,
        run.devices.counts().emulated,
        run.devices.counts().absent,
        run.devices.serial().lines()
    );
    report_msrs(run);
    if !run.devices.serial().passed() {
        hvprintln!("guest ended before its final marker: a failure");
        return Flow::End(Ended::default());
    }
    Flow::End(Ended {
        passed: finish(run.guest, run.calls),
        powered_off: true,
    })
}

fn report_msrs(run: &Run<'_, '_, '_>) {
    hvprintln!(
        "guest MSRs intercepted: {} distinct{}",
        run.msrs.iter().count(),
        if run.msrs.unrecorded > 0 {
            " (more not recorded)"
        } else {
            ""
        }
    );
    let mut line = crate::bootinfo::FixedString::<1024>::new();
    for (number, reads, writes) in run.msrs.iter() {
        let _ =
            core::fmt::Write::write_fmt(&mut line, format_args!(" {number:#x}:{reads}r/{writes}w"));
    }
    hvprintln!(" {}", line.as_str());
}
