//! Intel VMX backend (Intel SDM Vol. 3C, chapters 24–29): VMXON, one VMCS
//! per guest with EPT, a 64-bit guest entered directly in IA-32e mode,
//! every I/O port, MSR, exception, HLT and CPUID causing a VM exit.
//!
//! [`fields`] holds the VMCS encodings, [`caps`] what the CPU allows,
//! [`entry`] the instructions and the entry stub, [`vmcs`] what goes into
//! the VMCS; this file enters VMX operation and turns exits into the
//! backends' common [`Exit`].

mod caps;
pub(crate) mod entry;
pub(crate) mod fields;
mod vmcs;

use nvirt_hypercall_abi::host::{Paging, VcpuMode};

use crate::heaps::FrameAlloc;

use super::io::{cr0, cr4, msr, rdmsr, write_cr0, write_cr4, wrmsr};
use super::mem::zero_host;
use super::vcpu::{Exit, Gprs, GuestSpec, Reg, Vcpu, VmError, mode_of};
use entry::{invept, nvirt_vmx_run, vmread, vmwrite, vmx_pa_instruction};

pub(crate) use caps::{ept_pages_1g, supported};

const CR4_VMXE: u64 = 1 << 13;

// Basic exit reasons (SDM Vol. 3D Appendix C).
const REASON_EXCEPTION: u64 = 0;
const REASON_TRIPLE_FAULT: u64 = 2;
const REASON_CPUID: u64 = 10;
const REASON_HLT: u64 = 12;
const REASON_VMCALL: u64 = 18;
const REASON_IO: u64 = 30;
const REASON_RDMSR: u64 = 31;
const REASON_WRMSR: u64 = 32;
const REASON_EPT_VIOLATION: u64 = 48;

/// A guest CPU under VMX.
pub(crate) struct VmxVcpu {
    gprs: Gprs,
    launched: bool,
    eptp: u64,
    invept_type: u64,
}

impl VmxVcpu {
    /// Enters VMX operation and builds the guest's VMCS.
    pub(crate) fn new(frames: &mut impl FrameAlloc, spec: &GuestSpec) -> Result<Self, VmError> {
        supported()?;
        let revision = (caps::cap(msr::VMX_BASIC) & 0x7fff_ffff) as u32;
        let invept_type = caps::ept_invept_type()?;

        // SAFETY: IA32_FEATURE_CONTROL exists on every VMX CPU. Locking it
        // with "VMX outside SMX" is what firmware normally does; when
        // firmware locked it without that bit, VMX is off.
        let feature = unsafe { rdmsr(msr::FEATURE_CONTROL) };
        if feature & 1 == 0 {
            // SAFETY: as above.
            unsafe { wrmsr(msr::FEATURE_CONTROL, feature | 0x5) };
        } else if feature & 1 << 2 == 0 {
            return Err(VmError::Unsupported("VMX (disabled by firmware)"));
        }
        let fixed_cr0 = (
            caps::cap(msr::VMX_CR0_FIXED0),
            caps::cap(msr::VMX_CR0_FIXED1),
        );
        let fixed_cr4 = (
            caps::cap(msr::VMX_CR4_FIXED0),
            caps::cap(msr::VMX_CR4_FIXED1),
        );
        // SAFETY: forcing the VMX fixed bits keeps paging and protection
        // as they are (PE, PG and NE are already set by the boot code).
        unsafe { write_cr0((cr0() | fixed_cr0.0) & fixed_cr0.1) };
        // SAFETY: as above; CR4.VMXE only permits VMXON.
        unsafe { write_cr4((cr4() | fixed_cr4.0 | CR4_VMXE) & fixed_cr4.1) };

        let vmxon = alloc_zeroed(frames)?;
        let vmcs = alloc_zeroed(frames)?;
        for region in [vmxon, vmcs] {
            // SAFETY: fresh frames; the revision identifier goes first.
            unsafe {
                core::ptr::with_exposed_provenance_mut::<u32>(region as usize)
                    .write_volatile(revision)
            };
        }
        vmx_pa_instruction!("vmxon", vmxon)?;
        vmx_pa_instruction!("vmclear", vmcs)?;
        vmx_pa_instruction!("vmptrld", vmcs)?;

        let controls = caps::controls()?;
        vmcs::write_controls(&controls, spec)?;
        vmcs::write_host_state()?;
        vmcs::write_guest_state(spec, fixed_cr0, fixed_cr4)?;
        Ok(Self {
            gprs: Gprs {
                rbx: spec.start.rbx,
                ..Gprs::default()
            },
            launched: false,
            eptp: spec.nested_root,
            invept_type,
        })
    }
}

fn alloc_zeroed(frames: &mut impl FrameAlloc) -> Result<u64, VmError> {
    let frame = frames.alloc_bytes(4096).ok_or(VmError::OutOfFrames)?;
    // SAFETY: a fresh frame from the allocator, identity mapped.
    unsafe { zero_host(frame, 4096) };
    Ok(frame)
}

/// The common exit for a basic exit reason.
fn decode_exit(reason: u64, qualification: u64) -> Exit {
    match reason {
        REASON_VMCALL => Exit::Hypercall,
        REASON_HLT => Exit::Halt,
        REASON_CPUID => Exit::Cpuid,
        REASON_IO => Exit::Io {
            port: (qualification >> 16) as u16,
        },
        REASON_RDMSR | REASON_WRMSR => Exit::Msr {
            write: reason == REASON_WRMSR,
        },
        REASON_EPT_VIOLATION => Exit::NestedFault {
            gpa: vmread(fields::GUEST_PHYSICAL_ADDRESS),
            info: qualification,
        },
        REASON_TRIPLE_FAULT => Exit::TripleFault,
        REASON_EXCEPTION => {
            let info = vmread(fields::EXIT_INTERRUPTION_INFO);
            Exit::Exception {
                vector: info as u8,
                error_code: vmread(fields::EXIT_INTERRUPTION_ERROR),
            }
        }
        code => Exit::Other {
            code,
            info: qualification,
        },
    }
}

impl Vcpu for VmxVcpu {
    fn name(&self) -> &'static str {
        "Intel VMX with EPT"
    }

    fn run(&mut self) -> Result<Exit, VmError> {
        // SAFETY: the current VMCS is complete, the EPT maps only memory
        // reserved for this guest, and every event that could reach the
        // host causes a VM exit.
        let status = unsafe { nvirt_vmx_run(&raw mut self.gprs, u64::from(self.launched)) };
        if status != 0 {
            return Err(VmError::Instruction {
                what: if self.launched {
                    "VMRESUME"
                } else {
                    "VMLAUNCH"
                },
                error: if status == 2 {
                    vmread(fields::VM_INSTRUCTION_ERROR)
                } else {
                    0
                },
            });
        }
        self.launched = true;
        let reason = vmread(fields::EXIT_REASON);
        let qualification = vmread(fields::EXIT_QUALIFICATION);
        if reason & 1 << 31 != 0 {
            return Err(VmError::EntryFailed {
                reason: reason & 0xffff,
                qualification,
            });
        }
        Ok(decode_exit(reason & 0xffff, qualification))
    }

    fn reg(&self, reg: Reg) -> u64 {
        match reg {
            Reg::Rip => vmread(fields::GUEST_RIP),
            other => self.gprs.get(other),
        }
    }

    fn set_reg(&mut self, reg: Reg, value: u64) {
        match reg {
            // A failed write leaves RIP where it was; the next exit shows it.
            Reg::Rip => {
                let _ = vmwrite(fields::GUEST_RIP, value);
            }
            other => self.gprs.set(other, value),
        }
    }

    fn skip_instruction(&mut self) {
        let len = vmread(fields::EXIT_INSTRUCTION_LENGTH);
        let rip = vmread(fields::GUEST_RIP);
        self.set_reg(Reg::Rip, rip.wrapping_add(len));
    }

    fn caller_state(&self) -> (VcpuMode, u8) {
        let cs = vmread(fields::GUEST_CS_ACCESS);
        let mode = mode_of(
            vmread(fields::GUEST_CR0),
            vmread(fields::GUEST_RFLAGS),
            vmread(fields::GUEST_IA32_EFER),
            cs & 1 << 13 != 0,
            cs & 1 << 14 != 0,
        );
        // CPL is SS.DPL (SDM Vol. 3C, 28.3.1.5).
        (mode, ((vmread(fields::GUEST_SS_ACCESS) >> 5) & 3) as u8)
    }

    fn inject_exception(&mut self, vector: u8) {
        // VM-entry interruption information (SDM Vol. 3C, 25.8.3): vector,
        // type 3 (hardware exception), valid. A failed write leaves the
        // guest as it was; its next exit shows it.
        let _ = vmwrite(
            fields::ENTRY_INTERRUPTION_INFO,
            u64::from(vector) | 3 << 8 | 1 << 31,
        );
    }

    fn invalidate_nested(&mut self) {
        invept(self.invept_type, self.eptp);
    }

    fn paging(&self) -> Paging {
        Paging::from_registers(
            vmread(fields::GUEST_CR0),
            vmread(fields::GUEST_CR3),
            vmread(fields::GUEST_CR4),
            vmread(fields::GUEST_IA32_EFER),
        )
    }
}
