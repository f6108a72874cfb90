//! Control-register exits (basic reason 28; SDM Vol. 3C, table 28-3): a
//! MOV to CR0 or CR4 that changes a bit the hypervisor owns, MOV to or
//! from CR3 and CR8 on CPUs that cannot turn those exits off, CLTS, LMSW.
//! The guest sees the value it wrote (the read shadow); the CPU runs with
//! that value plus the bits VMX fixes. A value the CPU cannot take at all
//! (a bit it does not support) is the guest's fault: #GP, as on hardware.

use super::super::vcpu::Gprs;
use super::entry::{vmread, vmwrite};
use super::fields;

/// The bits VMX fixes, and which the hypervisor owns.
#[derive(Clone, Copy, Debug)]
pub(super) struct CrPolicy {
    /// CR0 bits that must be 1 (PE and PG excluded for an unrestricted
    /// guest) and that may be 1.
    pub(super) cr0: (u64, u64),
    /// CR4 bits that must be 1 and that may be 1.
    pub(super) cr4: (u64, u64),
}

impl CrPolicy {
    /// The guest/host masks: every bit fixed either way.
    pub(super) const fn masks(&self) -> (u64, u64) {
        (self.cr0.0 | !self.cr0.1, self.cr4.0 | !self.cr4.1)
    }
}

/// What became of a control-register exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CrOutcome {
    /// Emulated; the guest continues after the instruction.
    Done,
    /// The value is one no CPU of this kind takes: #GP(0).
    Fault,
}

/// Emulates the access `qualification` describes.
pub(super) fn emulate(gprs: &mut Gprs, qualification: u64, policy: &CrPolicy) -> CrOutcome {
    let cr = qualification & 0xf;
    let access = (qualification >> 4) & 3;
    let gpr = ((qualification >> 8) & 0xf) as usize;
    match (access, cr) {
        (0, 0) => set_cr0(read_gpr(gprs, gpr), policy),
        (0, 3) => {
            // Bit 63 (with CR4.PCIDE) only asks not to flush: not part of CR3.
            write(fields::GUEST_CR3, read_gpr(gprs, gpr) & !(1 << 63));
            CrOutcome::Done
        }
        (0, 4) => {
            let value = read_gpr(gprs, gpr);
            if value & !policy.cr4.1 & !CR4_VMXE != 0 {
                return CrOutcome::Fault;
            }
            write(fields::GUEST_CR4, value | policy.cr4.0);
            write(fields::CR4_READ_SHADOW, value);
            CrOutcome::Done
        }
        // No local APIC: the task-priority register reads as zero and
        // writes are dropped.
        (0, 8) => CrOutcome::Done,
        (1, 3) => {
            write_gpr(gprs, gpr, vmread(fields::GUEST_CR3));
            CrOutcome::Done
        }
        (1, 8) => {
            write_gpr(gprs, gpr, 0);
            CrOutcome::Done
        }
        // CLTS clears CR0.TS.
        (2, _) => set_cr0(vmread(fields::CR0_READ_SHADOW) & !CR0_TS, policy),
        // LMSW loads CR0 bits 0–3 but cannot clear PE.
        (3, _) => {
            let data = (qualification >> 16) & 0xf;
            let old = vmread(fields::CR0_READ_SHADOW);
            set_cr0((old & !0xe) | data | (old & 1), policy)
        }
        _ => CrOutcome::Fault,
    }
}

const CR0_TS: u64 = 1 << 3;
const CR4_VMXE: u64 = 1 << 13;

fn set_cr0(value: u64, policy: &CrPolicy) -> CrOutcome {
    // Bits 32–63 are reserved, and bits the CPU cannot hold fault.
    if value >> 32 != 0 || value & !policy.cr0.1 != 0 {
        return CrOutcome::Fault;
    }
    write(fields::GUEST_CR0, value | policy.cr0.0);
    write(fields::CR0_READ_SHADOW, value);
    CrOutcome::Done
}

fn write(field: u64, value: u64) {
    // A failed write leaves the field as it was; the guest's next exit
    // shows what it runs with.
    let _ = vmwrite(field, value);
}

/// A general register by its number in the exit qualification (RAX 0, RCX
/// 1, RDX 2, RBX 3, RSP 4, RBP 5, RSI 6, RDI 7, R8–R15 8–15).
fn read_gpr(g: &Gprs, n: usize) -> u64 {
    match n {
        0 => g.rax,
        1 => g.rcx,
        2 => g.rdx,
        3 => g.rbx,
        4 => vmread(fields::GUEST_RSP),
        5 => g.rbp,
        6 => g.rsi,
        7 => g.rdi,
        8 => g.r8,
        9 => g.r9,
        10 => g.r10,
        11 => g.r11,
        12 => g.r12,
        13 => g.r13,
        14 => g.r14,
        _ => g.r15,
    }
}

fn write_gpr(g: &mut Gprs, n: usize, value: u64) {
    let slot = match n {
        0 => &mut g.rax,
        1 => &mut g.rcx,
        2 => &mut g.rdx,
        3 => &mut g.rbx,
        4 => {
            write(fields::GUEST_RSP, value);
            return;
        }
        5 => &mut g.rbp,
        6 => &mut g.rsi,
        7 => &mut g.rdi,
        8 => &mut g.r8,
        9 => &mut g.r9,
        10 => &mut g.r10,
        11 => &mut g.r11,
        12 => &mut g.r12,
        13 => &mut g.r13,
        14 => &mut g.r14,
        _ => &mut g.r15,
    };
    *slot = value;
}
