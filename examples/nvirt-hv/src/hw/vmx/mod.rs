//! Intel VMX backend (Intel SDM Vol. 3C, chapters 24–29): VMXON, one VMCS
//! per guest with EPT, a 64-bit guest entered directly in IA-32e mode,
//! every I/O port, MSR, exception, HLT and CPUID causing a VM exit.
//!
//! [`fields`] holds the VMCS encodings, [`caps`] what the CPU allows,
//! [`entry`] the instructions and the entry stub; this file builds the VMCS
//! and turns exits into the backends' common [`Exit`].

mod caps;
pub(crate) mod entry;
pub(crate) mod fields;

use crate::heaps::FrameAlloc;
use nvirt_hypercall_abi::host::VcpuMode;

use super::boot::{CODE_SELECTOR, DATA_SELECTOR, TSS_SELECTOR};
use super::cpu::{gdtr, idtr, tss_base};
use super::io::{cr0, cr3, cr4, msr, rdmsr, write_cr0, write_cr4, wrmsr};
use super::mem::zero_host;
use super::vcpu::{self, Exit, Gprs, GuestSegments, GuestSpec, Reg, Vcpu, VmError, mode_of};
use entry::{invept, nvirt_vmx_exit, nvirt_vmx_run, vmread, vmwrite, vmx_pa_instruction};

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
        write_controls(&controls, spec)?;
        write_host_state()?;
        write_guest_state(spec, fixed_cr0, fixed_cr4)?;
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

fn write_all(writes: &[(u64, u64)]) -> Result<(), VmError> {
    for &(f, v) in writes {
        vmwrite(f, v)?;
    }
    Ok(())
}

/// The execution, exit and entry controls, the CR0/CR4 ownership and the
/// EPT pointer.
fn write_controls(c: &caps::Controls, spec: &GuestSpec) -> Result<(), VmError> {
    use fields::*;
    write_all(&[
        (PIN_BASED_CONTROLS, u64::from(c.pin)),
        (PRIMARY_PROC_CONTROLS, u64::from(c.primary)),
        (SECONDARY_PROC_CONTROLS, u64::from(c.secondary)),
        (EXIT_CONTROLS, u64::from(c.exit)),
        (ENTRY_CONTROLS, u64::from(c.entry)),
        (EXCEPTION_BITMAP, u64::from(u32::MAX)),
        (CR3_TARGET_COUNT, 0),
        (EXIT_MSR_STORE_COUNT, 0),
        (EXIT_MSR_LOAD_COUNT, 0),
        (ENTRY_MSR_LOAD_COUNT, 0),
        (ENTRY_INTERRUPTION_INFO, 0),
        // The guest owns no CR0/CR4 bit: any change exits; it reads
        // back what it was given (CR4.VMXE hidden).
        (CR0_GUEST_HOST_MASK, u64::MAX),
        (CR4_GUEST_HOST_MASK, u64::MAX),
        (CR0_READ_SHADOW, vcpu::GUEST_CR0),
        (CR4_READ_SHADOW, vcpu::GUEST_CR4),
        (EPT_POINTER, spec.nested_root),
    ])
}

/// The host state a VM exit loads: this CPU as it is now, landing at
/// `nvirt_vmx_exit`.
fn write_host_state() -> Result<(), VmError> {
    use fields::*;
    let (gdt_base, _) = gdtr();
    let (idt_base, _) = idtr();
    let host_exit: unsafe extern "C" fn() = nvirt_vmx_exit;
    // SAFETY: EFER exists on every VMX CPU.
    let host_efer = unsafe { rdmsr(msr::EFER) };
    // SAFETY: so does IA32_PAT.
    let host_pat = unsafe { rdmsr(msr::PAT) };
    write_all(&[
        (HOST_CR0, cr0()),
        (HOST_CR3, cr3()),
        (HOST_CR4, cr4()),
        (HOST_CS_SELECTOR, u64::from(CODE_SELECTOR)),
        (HOST_SS_SELECTOR, u64::from(DATA_SELECTOR)),
        (HOST_DS_SELECTOR, u64::from(DATA_SELECTOR)),
        (HOST_ES_SELECTOR, u64::from(DATA_SELECTOR)),
        (HOST_FS_SELECTOR, u64::from(DATA_SELECTOR)),
        (HOST_GS_SELECTOR, u64::from(DATA_SELECTOR)),
        (HOST_TR_SELECTOR, u64::from(TSS_SELECTOR)),
        (HOST_FS_BASE, 0),
        (HOST_GS_BASE, 0),
        (HOST_TR_BASE, tss_base()),
        (HOST_GDTR_BASE, gdt_base),
        (HOST_IDTR_BASE, idt_base),
        (HOST_SYSENTER_CS, 0),
        (HOST_SYSENTER_ESP, 0),
        (HOST_SYSENTER_EIP, 0),
        (HOST_IA32_EFER, host_efer),
        (HOST_IA32_PAT, host_pat),
        (HOST_RIP, host_exit as usize as u64),
    ])
}

/// The guest's starting state: control registers with the VMX fixed bits,
/// the segments both backends load, RIP, RSP, flags, PAT and EFER.
fn write_guest_state(
    spec: &GuestSpec,
    fixed_cr0: (u64, u64),
    fixed_cr4: (u64, u64),
) -> Result<(), VmError> {
    use fields::*;
    let s = spec.start;
    let seg = GuestSegments::for_start(&s);
    write_all(&[
        (GUEST_CR0, (vcpu::GUEST_CR0 | fixed_cr0.0) & fixed_cr0.1),
        (GUEST_CR3, s.cr3),
        (GUEST_CR4, (vcpu::GUEST_CR4 | fixed_cr4.0) & fixed_cr4.1),
        (GUEST_DR7, 0x400),
        (GUEST_RSP, s.rsp),
        (GUEST_RIP, s.rip),
        (GUEST_RFLAGS, 0x2),
    ])?;
    // Selector, base, limit and access rights of each segment register.
    let data = seg.data;
    let no_ldt = vcpu::Segment {
        selector: 0,
        base: 0,
        limit: 0,
        access: 0x1_0000, // unusable
    };
    for (fields, segment) in [
        (
            [
                GUEST_CS_SELECTOR,
                GUEST_CS_BASE,
                GUEST_CS_LIMIT,
                GUEST_CS_ACCESS,
            ],
            seg.code,
        ),
        (
            [
                GUEST_SS_SELECTOR,
                GUEST_SS_BASE,
                GUEST_SS_LIMIT,
                GUEST_SS_ACCESS,
            ],
            data,
        ),
        (
            [
                GUEST_DS_SELECTOR,
                GUEST_DS_BASE,
                GUEST_DS_LIMIT,
                GUEST_DS_ACCESS,
            ],
            data,
        ),
        (
            [
                GUEST_ES_SELECTOR,
                GUEST_ES_BASE,
                GUEST_ES_LIMIT,
                GUEST_ES_ACCESS,
            ],
            data,
        ),
        (
            [
                GUEST_FS_SELECTOR,
                GUEST_FS_BASE,
                GUEST_FS_LIMIT,
                GUEST_FS_ACCESS,
            ],
            data,
        ),
        (
            [
                GUEST_GS_SELECTOR,
                GUEST_GS_BASE,
                GUEST_GS_LIMIT,
                GUEST_GS_ACCESS,
            ],
            data,
        ),
        (
            [
                GUEST_LDTR_SELECTOR,
                GUEST_LDTR_BASE,
                GUEST_LDTR_LIMIT,
                GUEST_LDTR_ACCESS,
            ],
            no_ldt,
        ),
        (
            [
                GUEST_TR_SELECTOR,
                GUEST_TR_BASE,
                GUEST_TR_LIMIT,
                GUEST_TR_ACCESS,
            ],
            seg.tr,
        ),
    ] {
        let [sel, base, limit, access] = fields;
        write_all(&[
            (sel, u64::from(segment.selector)),
            (base, segment.base),
            (limit, u64::from(segment.limit)),
            (access, u64::from(segment.access)),
        ])?;
    }
    write_all(&[
        (GUEST_GDTR_BASE, seg.gdtr.0),
        (GUEST_GDTR_LIMIT, u64::from(seg.gdtr.1)),
        (GUEST_IDTR_BASE, seg.idtr.0),
        (GUEST_IDTR_LIMIT, u64::from(seg.idtr.1)),
        (GUEST_IA32_DEBUGCTL, 0),
        (GUEST_IA32_PAT, vcpu::GUEST_PAT),
        (GUEST_IA32_EFER, vcpu::GUEST_EFER),
        (GUEST_SYSENTER_CS, 0),
        (GUEST_SYSENTER_ESP, 0),
        (GUEST_SYSENTER_EIP, 0),
        (GUEST_ACTIVITY_STATE, 0),
        (GUEST_INTERRUPTIBILITY, 0),
        (GUEST_PENDING_DEBUG, 0),
        (VMCS_LINK_POINTER, u64::MAX),
    ])
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
        REASON_RDMSR | REASON_WRMSR => Exit::Msr,
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
}
