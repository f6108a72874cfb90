//! The one small interface both virtualization backends implement, so the
//! hypervisor's exit loop does not care whether it runs on AMD SVM or Intel
//! VMX.

use core::fmt;

use core::mem::offset_of;

use nvirt_hypercall_abi::host::{Paging, VcpuMode};

use crate::guest_setup::GuestStart;
use crate::heaps::FrameAlloc;

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
    /// Which guest: what the backend intercepts from the start.
    pub(crate) kind: GuestKind,
}

/// The two kinds of guest this hypervisor runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GuestKind {
    /// nvirt's own test guest: every exception and HLT exits (it expects
    /// none, and ends by a shutdown hypercall).
    Test,
    /// A Linux kernel: it handles its own exceptions and idles in HLT, so
    /// neither exits until its final marker (then HLT exits, so that the
    /// `cli; hlt` it powers off with ends it).
    Linux,
}

/// General registers of a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reg {
    Rax,
    Rbx,
    Rcx,
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
    /// CPUID (intercepted by both backends: the guest sees the host's
    /// answer through one policy, `guest_cpuid`).
    Cpuid,
    /// HLT.
    Halt,
    /// Port I/O (every port is intercepted).
    Io {
        /// The port.
        port: u16,
        /// Bytes (1, 2 or 4).
        bytes: u8,
        /// IN (else OUT).
        input: bool,
        /// INS/OUTS (string I/O).
        string: bool,
    },
    /// An intercepted MSR access (ECX holds the MSR, EDX:EAX the value).
    Msr {
        /// WRMSR (else RDMSR).
        write: bool,
    },
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
    /// The scheduling timer fired: the guest's time slice is over.
    Timer,
    /// The backend served the exit itself (VMX control-register accesses).
    Handled,
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
    /// The vCPU was released: its guest ended for good.
    Released,
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
            Self::Released => f.write_str("the vCPU was released"),
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
    /// Whether HLT exits to the hypervisor.
    fn set_halt_exits(&mut self, on: bool);
    /// Ends the guest's time slices with [`Exit::Timer`]: on the scheduling
    /// timer's interrupt (left pending for the hypervisor to take), or, where
    /// the CPU has one, its own preemption timer after `tsc_ticks`.
    fn set_time_slice(&mut self, tsc_ticks: Option<u64>);
    /// Makes this vCPU the one the CPU's virtualization instructions act on
    /// (VMX's current VMCS); before running it after another.
    fn activate(&mut self) -> Result<(), VmError>;
    /// Whether the guest has interrupts enabled (RFLAGS.IF).
    fn interrupts_enabled(&self) -> bool;
    /// An MSR the backend keeps in its control structure (EFER, PAT), as
    /// the guest reads it; `None` for any other.
    fn msr_field(&self, msr: u32) -> Option<u64>;
    /// Writes such an MSR; false if `msr` is not one.
    fn set_msr_field(&mut self, msr: u32, value: u64) -> bool;
    /// The guest's paging state (CR0, CR3, CR4, EFER): how the addresses
    /// in its hypercalls translate.
    fn paging(&self) -> Paging;
    /// Ends the guest for good: the CPU drops what it caches of the guest
    /// (its control structure, its translations), and the control
    /// structures go back to `frames`; the frames given back. The vCPU
    /// never runs again: `run` and `activate` refuse.
    fn release(&mut self, frames: &mut impl FrameAlloc) -> u64;
    /// After the last guest was released: leaves virtualization and gives
    /// back what the backend kept for all guests (VMX's VMXON region,
    /// SVM's host save area); the frames given back.
    fn leave(frames: &mut impl FrameAlloc) -> u64
    where
        Self: Sized;
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

// The entry stubs address the registers by these offsets.
const _: () = {
    assert!(offset_of!(Gprs, rax) == 0 && offset_of!(Gprs, rbx) == 8);
    assert!(offset_of!(Gprs, rcx) == 16 && offset_of!(Gprs, rdx) == 24);
    assert!(offset_of!(Gprs, rsi) == 32 && offset_of!(Gprs, rdi) == 40);
    assert!(offset_of!(Gprs, rbp) == 48 && offset_of!(Gprs, r8) == 56);
    assert!(offset_of!(Gprs, r15) == 112 && size_of::<Gprs>() == 120);
};

/// Loads RBX through R15 from the [`Gprs`] at RAX (both entry stubs, before
/// VMRUN / VMLAUNCH).
macro_rules! load_gprs_from_rax {
    () => {
        "mov rbx, [rax + 8]
    mov rcx, [rax + 16]
    mov rdx, [rax + 24]
    mov rsi, [rax + 32]
    mov rdi, [rax + 40]
    mov rbp, [rax + 48]
    mov r8, [rax + 56]
    mov r9, [rax + 64]
    mov r10, [rax + 72]
    mov r11, [rax + 80]
    mov r12, [rax + 88]
    mov r13, [rax + 96]
    mov r14, [rax + 104]
    mov r15, [rax + 112]
"
    };
}
pub(crate) use load_gprs_from_rax;

/// Stores RBX through R15 into the [`Gprs`] at RAX (both exit paths).
macro_rules! store_gprs_to_rax {
    () => {
        "mov [rax + 8], rbx
    mov [rax + 16], rcx
    mov [rax + 24], rdx
    mov [rax + 32], rsi
    mov [rax + 40], rdi
    mov [rax + 48], rbp
    mov [rax + 56], r8
    mov [rax + 64], r9
    mov [rax + 72], r10
    mov [rax + 80], r11
    mov [rax + 88], r12
    mov [rax + 96], r13
    mov [rax + 104], r14
    mov [rax + 112], r15
"
    };
}
pub(crate) use store_gprs_to_rax;

impl Gprs {
    /// A register (RIP is the backend's business).
    pub(crate) fn get(&self, reg: Reg) -> u64 {
        match reg {
            Reg::Rax => self.rax,
            Reg::Rbx => self.rbx,
            Reg::Rcx => self.rcx,
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
            Reg::Rbx => self.rbx = value,
            Reg::Rcx => self.rcx = value,
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

/// A segment register's contents, access rights in the VMCS layout (type,
/// S, DPL, P in bits 0–7; AVL, L, D/B, G in bits 12–15; bit 16
/// "unusable"). SVM packs the same rights into 12 bits
/// ([`Segment::svm_attributes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) selector: u16,
    pub(crate) base: u64,
    pub(crate) limit: u32,
    pub(crate) access: u32,
}

impl Segment {
    /// The VMCB attribute form: bits 0–7 as they are, bits 12–15 moved to
    /// 8–11 (AMD APM Vol. 2, 15.5.1).
    pub(crate) const fn svm_attributes(self) -> u16 {
        ((self.access & 0xff) | ((self.access >> 4) & 0xf00)) as u16
    }
}

/// The guest's segments as both backends load them: flat 64-bit code and
/// data, a busy 64-bit TSS, the GDT the guest setup wrote, no IDT.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GuestSegments {
    /// CS: 64-bit code (L), present, DPL 0, granular.
    pub(crate) code: Segment,
    /// SS, DS, ES, FS, GS: writable data, 32-bit default size, granular.
    pub(crate) data: Segment,
    /// TR: a busy 64-bit TSS of 104 bytes.
    pub(crate) tr: Segment,
    /// GDTR base and limit.
    pub(crate) gdtr: (u64, u32),
    /// IDTR base and limit.
    pub(crate) idtr: (u64, u32),
}

// The VMCB forms of the rights above (APM Vol. 2, 15.5.1): 64-bit code
// 0xa9b, data 0xc93, busy TSS 0x8b.
const _: () = {
    let probe = GuestStart {
        rip: 0,
        rsp: 0,
        rbx: 0,
        rsi: 0,
        cr3: 0,
        gdt_base: 0,
        gdt_limit: 0,
        code_selector: 0x08,
        data_selector: 0x10,
    };
    let s = GuestSegments::for_start(&probe);
    assert!(s.code.svm_attributes() == 0x0a9b);
    assert!(s.data.svm_attributes() == 0x0c93);
    assert!(s.tr.svm_attributes() == 0x008b);
};

impl GuestSegments {
    /// The segments for a guest starting as `start` says.
    pub(crate) const fn for_start(start: &GuestStart) -> Self {
        Self {
            code: Segment {
                selector: start.code_selector,
                base: 0,
                limit: u32::MAX,
                access: 0xa09b,
            },
            data: Segment {
                selector: start.data_selector,
                base: 0,
                limit: u32::MAX,
                access: 0xc093,
            },
            tr: Segment {
                selector: 0,
                base: 0,
                limit: 0x67,
                access: 0x8b,
            },
            gdtr: (start.gdt_base, start.gdt_limit as u32),
            idtr: (0, 0),
        }
    }
}
