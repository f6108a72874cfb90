//! The one small interface both virtualization backends implement, so the
//! hypervisor's exit loop does not care whether it runs on AMD SVM or Intel
//! VMX.

use core::fmt;

use nvirt_hv::guest_setup::GuestStart;
use nvirt_hypercall_abi::host::VcpuMode;

/// What a backend needs to create a virtual CPU.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GuestSpec {
    /// Initial CPU state (64-bit mode, paging on).
    pub(crate) start: GuestStart,
    /// The nested-table root pointer value: nCR3 (SVM) or the EPTP (VMX).
    /// The backend never looks inside the tables.
    pub(crate) nested_root: u64,
    /// Bytes of guest-physical address space in use (for reporting).
    pub(crate) memory_size: u64,
}

/// General registers of a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reg {
    Rax,
    Rdx,
    Rsi,
    Rdi,
    R8,
    R10,
    Rip,
}

/// Why the guest stopped running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// VMMCALL / VMCALL.
    Hypercall,
    /// HLT.
    Halt,
    /// Port I/O (every port is intercepted).
    Io {
        /// The port.
        port: u16,
    },
    /// An MSR access (every MSR is intercepted).
    Msr,
    /// A guest-physical access the nested tables do not allow.
    NestedFault {
        /// The faulting guest-physical address.
        gpa: u64,
        /// Vendor-specific qualification bits.
        info: u64,
    },
    /// A guest exception (every vector is intercepted).
    Exception {
        /// Vector.
        vector: u8,
        /// Error code, if the vector has one.
        error_code: u64,
    },
    /// The guest triple-faulted (SVM shutdown, VMX triple fault).
    TripleFault,
    /// Anything else, with the raw exit code and qualification.
    Other {
        /// Raw exit code / basic exit reason.
        code: u64,
        /// Raw qualification.
        info: u64,
    },
}

/// A backend failure (the guest could not be entered at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VmError {
    /// The CPU lacks a feature the backend needs.
    Unsupported(&'static str),
    /// No frame for a control structure.
    OutOfFrames,
    /// A VMX instruction failed (with the VM-instruction error, if valid).
    Instruction {
        /// Which instruction.
        what: &'static str,
        /// VM-instruction error number (VMfailValid), 0 for VMfailInvalid.
        error: u64,
    },
    /// VM entry failed on guest state checks.
    EntryFailed {
        /// Exit reason.
        reason: u64,
        /// Exit qualification.
        qualification: u64,
    },
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported(what) => write!(f, "CPU lacks {what}"),
            Self::OutOfFrames => f.write_str("no frame for a control structure"),
            Self::Instruction { what, error } => {
                write!(f, "{what} failed (VM-instruction error {error})")
            }
            Self::EntryFailed {
                reason,
                qualification,
            } => write!(
                f,
                "VM entry failed: reason {reason:#x}, qualification {qualification:#x}"
            ),
        }
    }
}

/// A virtual CPU running one guest.
pub(crate) trait Vcpu {
    /// The backend's name for messages.
    fn name(&self) -> &'static str;
    /// Runs the guest until it exits.
    fn run(&mut self) -> Result<Exit, VmError>;
    /// Reads a guest register.
    fn reg(&self, reg: Reg) -> u64;
    /// Writes a guest register.
    fn set_reg(&mut self, reg: Reg, value: u64);
    /// Moves RIP past the instruction that caused the last exit.
    fn skip_instruction(&mut self);
    /// Makes the next entry see the nested tables' current contents (the
    /// "invalidate" hook the nested-table code's changes call for).
    fn invalidate_nested(&mut self);
    /// The guest's operating mode and current privilege level, as Xen
    /// classifies a hypercall's caller.
    fn caller_state(&self) -> (VcpuMode, u8);
    /// Delivers exception `vector` (no error code) at the next entry.
    fn inject_exception(&mut self, vector: u8);
}

/// Xen's classification of a vCPU's mode (`hvm_guest_x86_mode()`) from
/// CR0.PE, RFLAGS.VM, EFER.LMA and the code segment's L and D bits.
pub(crate) const fn mode_of(
    cr0: u64,
    rflags: u64,
    efer: u64,
    cs_long: bool,
    cs_big: bool,
) -> VcpuMode {
    if cr0 & 1 == 0 {
        VcpuMode::Real
    } else if rflags & 1 << 17 != 0 {
        VcpuMode::Vm86
    } else if efer & 1 << 10 != 0 && cs_long {
        VcpuMode::Bits64
    } else if cs_big {
        VcpuMode::Bits32
    } else {
        VcpuMode::Bits16
    }
}

/// The guest's general registers other than RSP (which both vendors keep
/// in their control structure), in the order the entry stubs use:
/// RAX at 0, RBX 8, RCX 16, RDX 24, RSI 32, RDI 40, RBP 48, R8–R15 56–112.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Gprs {
    pub(crate) rax: u64,
    pub(crate) rbx: u64,
    pub(crate) rcx: u64,
    pub(crate) rdx: u64,
    pub(crate) rsi: u64,
    pub(crate) rdi: u64,
    pub(crate) rbp: u64,
    pub(crate) r8: u64,
    pub(crate) r9: u64,
    pub(crate) r10: u64,
    pub(crate) r11: u64,
    pub(crate) r12: u64,
    pub(crate) r13: u64,
    pub(crate) r14: u64,
    pub(crate) r15: u64,
}

impl Gprs {
    /// A register (RIP is the backend's business).
    pub(crate) fn get(&self, reg: Reg) -> u64 {
        match reg {
            Reg::Rax => self.rax,
            Reg::Rdx => self.rdx,
            Reg::Rsi => self.rsi,
            Reg::Rdi => self.rdi,
            Reg::R8 => self.r8,
            Reg::R10 => self.r10,
            Reg::Rip => 0,
        }
    }

    /// Sets a register (RIP is the backend's business).
    pub(crate) fn set(&mut self, reg: Reg, value: u64) {
        match reg {
            Reg::Rax => self.rax = value,
            Reg::Rdx => self.rdx = value,
            Reg::Rsi => self.rsi = value,
            Reg::Rdi => self.rdi = value,
            Reg::R8 => self.r8 = value,
            Reg::R10 => self.r10 = value,
            Reg::Rip => {}
        }
    }
}

/// The guest CPU state both backends program (Intel SDM Vol. 3A §2.5,
/// AMD APM Vol. 2 §3.1): CR0 = PG | WP | NE | ET | MP | PE, CR4 = PAE,
/// EFER = LMA | LME; PAT at its power-on value.
pub(crate) const GUEST_CR0: u64 = 0x8001_0033;
/// Guest CR4.
pub(crate) const GUEST_CR4: u64 = 0x20;
/// Guest EFER.
pub(crate) const GUEST_EFER: u64 = 0x500;
/// IA32_PAT's power-on value (WB, WT, UC-, UC, repeated).
pub(crate) const GUEST_PAT: u64 = 0x0007_0406_0007_0406;
