//! Intel VMX backend (Intel SDM Vol. 3C, chapters 24–29): VMXON, one VMCS
//! per guest with EPT, a 64-bit guest entered directly in IA-32e mode,
//! every I/O port, MSR and exception causing a VM exit.
//!
//! VMCS field encodings are from SDM Vol. 3D Appendix B; the control bits
//! from Vol. 3C §25.6–25.8 and are adjusted to what the CPU allows through
//! its capability MSRs (the "true" ones when IA32_VMX_BASIC bit 55 says so).

use core::arch::{asm, global_asm};

use nvirt_hv::guest_abi::{GUEST_CODE_SELECTOR, GUEST_DATA_SELECTOR};
use nvirt_hv::heaps::FrameAlloc;
use nvirt_hypercall_abi::host::VcpuMode;

use super::boot::{CODE_SELECTOR, DATA_SELECTOR, TSS_SELECTOR};
use super::cpu::{gdtr, idtr, tss_base};
use super::io::{cpuid, cr0, cr3, cr4, msr, rdmsr, write_cr0, write_cr4, wrmsr};
use super::mem::zero_host;
use super::vcpu::{self, Exit, Gprs, GuestSpec, Reg, Vcpu, VmError, mode_of};

const CR4_VMXE: u64 = 1 << 13;

/// VMCS field encodings.
mod field {
    pub(super) const GUEST_ES_SELECTOR: u64 = 0x0800;
    pub(super) const GUEST_CS_SELECTOR: u64 = 0x0802;
    pub(super) const GUEST_SS_SELECTOR: u64 = 0x0804;
    pub(super) const GUEST_DS_SELECTOR: u64 = 0x0806;
    pub(super) const GUEST_FS_SELECTOR: u64 = 0x0808;
    pub(super) const GUEST_GS_SELECTOR: u64 = 0x080a;
    pub(super) const GUEST_LDTR_SELECTOR: u64 = 0x080c;
    pub(super) const GUEST_TR_SELECTOR: u64 = 0x080e;
    pub(super) const HOST_ES_SELECTOR: u64 = 0x0c00;
    pub(super) const HOST_CS_SELECTOR: u64 = 0x0c02;
    pub(super) const HOST_SS_SELECTOR: u64 = 0x0c04;
    pub(super) const HOST_DS_SELECTOR: u64 = 0x0c06;
    pub(super) const HOST_FS_SELECTOR: u64 = 0x0c08;
    pub(super) const HOST_GS_SELECTOR: u64 = 0x0c0a;
    pub(super) const HOST_TR_SELECTOR: u64 = 0x0c0c;
    pub(super) const EPT_POINTER: u64 = 0x201a;
    pub(super) const GUEST_PHYSICAL_ADDRESS: u64 = 0x2400;
    pub(super) const VMCS_LINK_POINTER: u64 = 0x2800;
    pub(super) const GUEST_IA32_DEBUGCTL: u64 = 0x2802;
    pub(super) const GUEST_IA32_PAT: u64 = 0x2804;
    pub(super) const GUEST_IA32_EFER: u64 = 0x2806;
    pub(super) const HOST_IA32_PAT: u64 = 0x2c00;
    pub(super) const HOST_IA32_EFER: u64 = 0x2c02;
    pub(super) const PIN_BASED_CONTROLS: u64 = 0x4000;
    pub(super) const PRIMARY_PROC_CONTROLS: u64 = 0x4002;
    pub(super) const EXCEPTION_BITMAP: u64 = 0x4004;
    pub(super) const CR3_TARGET_COUNT: u64 = 0x400a;
    pub(super) const EXIT_CONTROLS: u64 = 0x400c;
    pub(super) const EXIT_MSR_STORE_COUNT: u64 = 0x400e;
    pub(super) const EXIT_MSR_LOAD_COUNT: u64 = 0x4010;
    pub(super) const ENTRY_CONTROLS: u64 = 0x4012;
    pub(super) const ENTRY_MSR_LOAD_COUNT: u64 = 0x4014;
    pub(super) const ENTRY_INTERRUPTION_INFO: u64 = 0x4016;
    pub(super) const SECONDARY_PROC_CONTROLS: u64 = 0x401e;
    pub(super) const VM_INSTRUCTION_ERROR: u64 = 0x4400;
    pub(super) const EXIT_REASON: u64 = 0x4402;
    pub(super) const EXIT_INTERRUPTION_INFO: u64 = 0x4404;
    pub(super) const EXIT_INTERRUPTION_ERROR: u64 = 0x4406;
    pub(super) const EXIT_INSTRUCTION_LENGTH: u64 = 0x440c;
    pub(super) const GUEST_ES_LIMIT: u64 = 0x4800;
    pub(super) const GUEST_CS_LIMIT: u64 = 0x4802;
    pub(super) const GUEST_SS_LIMIT: u64 = 0x4804;
    pub(super) const GUEST_DS_LIMIT: u64 = 0x4806;
    pub(super) const GUEST_FS_LIMIT: u64 = 0x4808;
    pub(super) const GUEST_GS_LIMIT: u64 = 0x480a;
    pub(super) const GUEST_LDTR_LIMIT: u64 = 0x480c;
    pub(super) const GUEST_TR_LIMIT: u64 = 0x480e;
    pub(super) const GUEST_GDTR_LIMIT: u64 = 0x4810;
    pub(super) const GUEST_IDTR_LIMIT: u64 = 0x4812;
    pub(super) const GUEST_ES_ACCESS: u64 = 0x4814;
    pub(super) const GUEST_CS_ACCESS: u64 = 0x4816;
    pub(super) const GUEST_SS_ACCESS: u64 = 0x4818;
    pub(super) const GUEST_DS_ACCESS: u64 = 0x481a;
    pub(super) const GUEST_FS_ACCESS: u64 = 0x481c;
    pub(super) const GUEST_GS_ACCESS: u64 = 0x481e;
    pub(super) const GUEST_LDTR_ACCESS: u64 = 0x4820;
    pub(super) const GUEST_TR_ACCESS: u64 = 0x4822;
    pub(super) const GUEST_INTERRUPTIBILITY: u64 = 0x4824;
    pub(super) const GUEST_ACTIVITY_STATE: u64 = 0x4826;
    pub(super) const GUEST_SYSENTER_CS: u64 = 0x482a;
    pub(super) const HOST_SYSENTER_CS: u64 = 0x4c00;
    pub(super) const CR0_GUEST_HOST_MASK: u64 = 0x6000;
    pub(super) const CR4_GUEST_HOST_MASK: u64 = 0x6002;
    pub(super) const CR0_READ_SHADOW: u64 = 0x6004;
    pub(super) const CR4_READ_SHADOW: u64 = 0x6006;
    pub(super) const EXIT_QUALIFICATION: u64 = 0x6400;
    pub(super) const GUEST_CR0: u64 = 0x6800;
    pub(super) const GUEST_CR3: u64 = 0x6802;
    pub(super) const GUEST_CR4: u64 = 0x6804;
    pub(super) const GUEST_ES_BASE: u64 = 0x6806;
    pub(super) const GUEST_CS_BASE: u64 = 0x6808;
    pub(super) const GUEST_SS_BASE: u64 = 0x680a;
    pub(super) const GUEST_DS_BASE: u64 = 0x680c;
    pub(super) const GUEST_FS_BASE: u64 = 0x680e;
    pub(super) const GUEST_GS_BASE: u64 = 0x6810;
    pub(super) const GUEST_LDTR_BASE: u64 = 0x6812;
    pub(super) const GUEST_TR_BASE: u64 = 0x6814;
    pub(super) const GUEST_GDTR_BASE: u64 = 0x6816;
    pub(super) const GUEST_IDTR_BASE: u64 = 0x6818;
    pub(super) const GUEST_DR7: u64 = 0x681a;
    pub(super) const GUEST_RSP: u64 = 0x681c;
    pub(super) const GUEST_RIP: u64 = 0x681e;
    pub(super) const GUEST_RFLAGS: u64 = 0x6820;
    pub(super) const GUEST_PENDING_DEBUG: u64 = 0x6822;
    pub(super) const GUEST_SYSENTER_ESP: u64 = 0x6824;
    pub(super) const GUEST_SYSENTER_EIP: u64 = 0x6826;
    pub(super) const HOST_CR0: u64 = 0x6c00;
    pub(super) const HOST_CR3: u64 = 0x6c02;
    pub(super) const HOST_CR4: u64 = 0x6c04;
    pub(super) const HOST_FS_BASE: u64 = 0x6c06;
    pub(super) const HOST_GS_BASE: u64 = 0x6c08;
    pub(super) const HOST_TR_BASE: u64 = 0x6c0a;
    pub(super) const HOST_GDTR_BASE: u64 = 0x6c0c;
    pub(super) const HOST_IDTR_BASE: u64 = 0x6c0e;
    pub(super) const HOST_SYSENTER_ESP: u64 = 0x6c10;
    pub(super) const HOST_SYSENTER_EIP: u64 = 0x6c12;
    pub(super) const HOST_RIP: u64 = 0x6c16;
}

// Primary processor-based controls.
const PROC_HLT_EXITING: u32 = 1 << 7;
const PROC_UNCONDITIONAL_IO_EXITING: u32 = 1 << 24;
const PROC_ACTIVATE_SECONDARY: u32 = 1 << 31;
// Secondary.
const PROC2_ENABLE_EPT: u32 = 1 << 1;
// Exit controls.
const EXIT_HOST_64BIT: u32 = 1 << 9;
const EXIT_SAVE_PAT: u32 = 1 << 18;
const EXIT_LOAD_PAT: u32 = 1 << 19;
const EXIT_SAVE_EFER: u32 = 1 << 20;
const EXIT_LOAD_EFER: u32 = 1 << 21;
// Entry controls.
const ENTRY_IA32E_GUEST: u32 = 1 << 9;
const ENTRY_LOAD_PAT: u32 = 1 << 14;
const ENTRY_LOAD_EFER: u32 = 1 << 15;

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

unsafe extern "sysv64" {
    /// Loads the guest's registers from `gprs` and enters the guest
    /// (VMRESUME if `launched`, else VMLAUNCH). Returns 0 after a VM exit
    /// (registers stored back), 1 on VMfailInvalid, 2 on VMfailValid.
    fn nvirt_vmx_run(gprs: *mut Gprs, launched: u64) -> u64;
}

// HOST_RSP is written just before entry so that the exit path finds the
// pointer to `gprs` on top of the stack; HOST_RIP is `nvirt_vmx_exit`.
global_asm!(
    r#"
    .text
    .global nvirt_vmx_run
nvirt_vmx_run:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    push rdi
    mov rax, 0x6c14
    vmwrite rax, rsp
    mov rax, rdi
    cmp rsi, 0
    mov rbx, [rax + 8]
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
    mov rax, [rax]
    je 2f
    vmresume
    jmp 3f
2:
    vmlaunch
3:
    mov eax, 1
    jc 4f
    mov eax, 2
4:
    add rsp, 8
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret

    .global nvirt_vmx_exit
nvirt_vmx_exit:
    push rax
    mov rax, [rsp + 8]
    mov [rax + 8], rbx
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
    pop rbx
    mov [rax], rbx
    add rsp, 8
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    xor eax, eax
    ret
"#
);

unsafe extern "C" {
    fn nvirt_vmx_exit();
}

/// Whether this CPU has VMX.
pub(crate) fn supported() -> Result<(), VmError> {
    if cpuid(1, 0)[2] & 1 << 5 == 0 {
        return Err(VmError::Unsupported("VMX"));
    }
    Ok(())
}

/// Whether EPT may use 1 GiB pages (IA32_VMX_EPT_VPID_CAP bit 17; Intel
/// SDM Vol. 3D, appendix A.10). Call after [`supported`].
pub(crate) fn ept_pages_1g() -> bool {
    cap(msr::VMX_EPT_VPID_CAP) & 1 << 17 != 0
}

/// Reads a VMX capability MSR.
fn cap(msr: u32) -> u64 {
    // SAFETY: only called with VMX capability MSRs after `supported()`.
    unsafe { rdmsr(msr) }
}

/// `desired` adjusted to a control capability MSR: bits that must be 1
/// (low half) set; the result must only use allowed-1 bits (high half).
fn adjust(desired: u32, capability: u64, what: &'static str) -> Result<u32, VmError> {
    let (must, may) = (capability as u32, (capability >> 32) as u32);
    let value = desired | must;
    if value & !may != 0 {
        return Err(VmError::Unsupported(what));
    }
    Ok(value)
}

fn vmwrite(field: u64, value: u64) -> Result<(), VmError> {
    let failed: u8;
    // SAFETY: a current VMCS is loaded (VMPTRLD) before any field is written;
    // VMWRITE touches only the VMCS.
    unsafe {
        asm!("vmwrite {f}, {v}", "setna {r}", f = in(reg) field, v = in(reg) value, r = out(reg_byte) failed, options(nostack));
    }
    if failed != 0 {
        return Err(VmError::Instruction {
            what: "VMWRITE",
            error: field,
        });
    }
    Ok(())
}

fn vmread(field: u64) -> u64 {
    let value: u64;
    // SAFETY: as for `vmwrite`; a failed read leaves 0, which callers treat
    // as an unknown value.
    unsafe {
        asm!("xor {v:e}, {v:e}", "vmread {v}, {f}", f = in(reg) field, v = out(reg) value, options(nostack));
    }
    value
}

/// Executes a VMX instruction on a 64-bit physical-address operand.
macro_rules! vmx_pa_instruction {
    ($name:literal, $pa:expr) => {{
        let pa: u64 = $pa;
        let failed: u8;
        // SAFETY: the operand is the physical address of a frame this
        // backend owns, prepared as the instruction requires.
        unsafe {
            asm!(concat!($name, " [{p}]"), "setna {r}", p = in(reg) &raw const pa, r = out(reg_byte) failed, options(nostack));
        }
        if failed != 0 {
            Err(VmError::Instruction {
                what: $name,
                error: vmread(field::VM_INSTRUCTION_ERROR),
            })
        } else {
            Ok(())
        }
    }};
}

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
        let basic = cap(msr::VMX_BASIC);
        let revision = (basic & 0x7fff_ffff) as u32;
        let true_controls = basic & 1 << 55 != 0;
        let ept_caps = cap(msr::VMX_EPT_VPID_CAP);
        // 4-level walks, write-back tables, 2 MiB pages, INVEPT.
        for (bit, what) in [
            (6, "EPT 4-level walks"),
            (14, "EPT write-back memory type"),
            (16, "EPT 2 MiB pages"),
            (20, "INVEPT"),
        ] {
            if ept_caps & 1 << bit == 0 {
                return Err(VmError::Unsupported(what));
            }
        }
        let invept_type = if ept_caps & 1 << 25 != 0 { 1 } else { 2 };

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
        let fixed_cr0 = (cap(msr::VMX_CR0_FIXED0), cap(msr::VMX_CR0_FIXED1));
        let fixed_cr4 = (cap(msr::VMX_CR4_FIXED0), cap(msr::VMX_CR4_FIXED1));
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

        let (pin_msr, proc_msr, exit_msr, entry_msr) = if true_controls {
            (
                msr::VMX_TRUE_PINBASED_CTLS,
                msr::VMX_TRUE_PROCBASED_CTLS,
                msr::VMX_TRUE_EXIT_CTLS,
                msr::VMX_TRUE_ENTRY_CTLS,
            )
        } else {
            (
                msr::VMX_PINBASED_CTLS,
                msr::VMX_PROCBASED_CTLS,
                msr::VMX_EXIT_CTLS,
                msr::VMX_ENTRY_CTLS,
            )
        };
        let pin = adjust(0, cap(pin_msr), "pin-based controls")?;
        // No MSR bitmaps: every RDMSR/WRMSR exits.
        let primary = adjust(
            PROC_HLT_EXITING | PROC_UNCONDITIONAL_IO_EXITING | PROC_ACTIVATE_SECONDARY,
            cap(proc_msr),
            "HLT/I-O exiting, secondary controls",
        )?;
        let secondary = adjust(PROC2_ENABLE_EPT, cap(msr::VMX_PROCBASED_CTLS2), "EPT")?;
        let exit = adjust(
            EXIT_HOST_64BIT | EXIT_SAVE_PAT | EXIT_LOAD_PAT | EXIT_SAVE_EFER | EXIT_LOAD_EFER,
            cap(exit_msr),
            "64-bit host, PAT/EFER exit controls",
        )?;
        let entry = adjust(
            ENTRY_IA32E_GUEST | ENTRY_LOAD_PAT | ENTRY_LOAD_EFER,
            cap(entry_msr),
            "IA-32e guest, PAT/EFER entry controls",
        )?;
        use field::*;
        let s = spec.start;
        let guest_cr0 = (vcpu::GUEST_CR0 | fixed_cr0.0) & fixed_cr0.1;
        let guest_cr4 = (vcpu::GUEST_CR4 | fixed_cr4.0) & fixed_cr4.1;
        let (gdt_base, _) = gdtr();
        let (idt_base, _) = idtr();
        let host_exit: unsafe extern "C" fn() = nvirt_vmx_exit;
        let data = (u64::from(GUEST_DATA_SELECTOR), 0xc093);
        // SAFETY: EFER exists on every VMX CPU.
        let host_efer = unsafe { rdmsr(msr::EFER) };
        // SAFETY: so does IA32_PAT.
        let host_pat = unsafe { rdmsr(msr::PAT) };
        let writes: &[(u64, u64)] = &[
            (PIN_BASED_CONTROLS, u64::from(pin)),
            (PRIMARY_PROC_CONTROLS, u64::from(primary)),
            (SECONDARY_PROC_CONTROLS, u64::from(secondary)),
            (EXIT_CONTROLS, u64::from(exit)),
            (ENTRY_CONTROLS, u64::from(entry)),
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
            // Host state.
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
            // Guest state.
            (GUEST_CR0, guest_cr0),
            (GUEST_CR3, s.cr3),
            (GUEST_CR4, guest_cr4),
            (GUEST_DR7, 0x400),
            (GUEST_RSP, s.rsp),
            (GUEST_RIP, s.rip),
            (GUEST_RFLAGS, 0x2),
            (GUEST_CS_SELECTOR, u64::from(GUEST_CODE_SELECTOR)),
            (GUEST_CS_BASE, 0),
            (GUEST_CS_LIMIT, 0xffff_ffff),
            (GUEST_CS_ACCESS, 0xa09b),
            (GUEST_SS_SELECTOR, data.0),
            (GUEST_SS_BASE, 0),
            (GUEST_SS_LIMIT, 0xffff_ffff),
            (GUEST_SS_ACCESS, data.1),
            (GUEST_DS_SELECTOR, data.0),
            (GUEST_DS_BASE, 0),
            (GUEST_DS_LIMIT, 0xffff_ffff),
            (GUEST_DS_ACCESS, data.1),
            (GUEST_ES_SELECTOR, data.0),
            (GUEST_ES_BASE, 0),
            (GUEST_ES_LIMIT, 0xffff_ffff),
            (GUEST_ES_ACCESS, data.1),
            (GUEST_FS_SELECTOR, data.0),
            (GUEST_FS_BASE, 0),
            (GUEST_FS_LIMIT, 0xffff_ffff),
            (GUEST_FS_ACCESS, data.1),
            (GUEST_GS_SELECTOR, data.0),
            (GUEST_GS_BASE, 0),
            (GUEST_GS_LIMIT, 0xffff_ffff),
            (GUEST_GS_ACCESS, data.1),
            (GUEST_LDTR_SELECTOR, 0),
            (GUEST_LDTR_BASE, 0),
            (GUEST_LDTR_LIMIT, 0),
            (GUEST_LDTR_ACCESS, 0x1_0000),
            (GUEST_TR_SELECTOR, 0),
            (GUEST_TR_BASE, 0),
            (GUEST_TR_LIMIT, 0x67),
            (GUEST_TR_ACCESS, 0x8b),
            (GUEST_GDTR_BASE, s.gdt_base),
            (GUEST_GDTR_LIMIT, u64::from(s.gdt_limit)),
            (GUEST_IDTR_BASE, 0),
            (GUEST_IDTR_LIMIT, 0),
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
        ];
        for &(f, v) in writes {
            vmwrite(f, v)?;
        }
        Ok(Self {
            gprs: Gprs {
                rbx: s.rbx,
                ..Gprs::default()
            },
            launched: false,
            eptp: spec.nested_root,
            invept_type,
        })
    }

    /// Answers CPUID from the host's, hiding VMX and the hypervisor bit's
    /// absence (bit 31 of ECX, leaf 1, is set: "running under a hypervisor").
    fn emulate_cpuid(&mut self) {
        let (leaf, sub) = (self.gprs.rax as u32, self.gprs.rcx as u32);
        let mut r = cpuid(leaf, sub);
        if leaf == 1 {
            r[2] = (r[2] & !(1 << 5)) | 1 << 31;
        }
        self.gprs.rax = u64::from(r[0]);
        self.gprs.rbx = u64::from(r[1]);
        self.gprs.rcx = u64::from(r[2]);
        self.gprs.rdx = u64::from(r[3]);
    }
}

fn alloc_zeroed(frames: &mut impl FrameAlloc) -> Result<u64, VmError> {
    let frame = frames.alloc_bytes(4096).ok_or(VmError::OutOfFrames)?;
    // SAFETY: a fresh frame from the allocator, identity mapped.
    unsafe { zero_host(frame, 4096) };
    Ok(frame)
}

impl Vcpu for VmxVcpu {
    fn name(&self) -> &'static str {
        "Intel VMX with EPT"
    }

    fn run(&mut self) -> Result<Exit, VmError> {
        loop {
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
                        vmread(field::VM_INSTRUCTION_ERROR)
                    } else {
                        0
                    },
                });
            }
            self.launched = true;
            let reason = vmread(field::EXIT_REASON);
            let qualification = vmread(field::EXIT_QUALIFICATION);
            if reason & 1 << 31 != 0 {
                return Err(VmError::EntryFailed {
                    reason: reason & 0xffff,
                    qualification,
                });
            }
            return Ok(match reason & 0xffff {
                REASON_VMCALL => Exit::Hypercall,
                REASON_HLT => Exit::Halt,
                REASON_CPUID => {
                    // Handled here: the vendor check of the guest needs it
                    // and it is not the exit loop's business.
                    self.emulate_cpuid();
                    self.skip_instruction();
                    continue;
                }
                REASON_IO => Exit::Io {
                    port: (qualification >> 16) as u16,
                },
                REASON_RDMSR | REASON_WRMSR => Exit::Msr,
                REASON_EPT_VIOLATION => Exit::NestedFault {
                    gpa: vmread(field::GUEST_PHYSICAL_ADDRESS),
                    info: qualification,
                },
                REASON_TRIPLE_FAULT => Exit::TripleFault,
                REASON_EXCEPTION => {
                    let info = vmread(field::EXIT_INTERRUPTION_INFO);
                    Exit::Exception {
                        vector: info as u8,
                        error_code: vmread(field::EXIT_INTERRUPTION_ERROR),
                    }
                }
                code => Exit::Other {
                    code,
                    info: qualification,
                },
            });
        }
    }

    fn reg(&self, reg: Reg) -> u64 {
        match reg {
            Reg::Rip => vmread(field::GUEST_RIP),
            other => self.gprs.get(other),
        }
    }

    fn set_reg(&mut self, reg: Reg, value: u64) {
        match reg {
            // A failed write leaves RIP where it was; the next exit shows it.
            Reg::Rip => {
                let _ = vmwrite(field::GUEST_RIP, value);
            }
            other => self.gprs.set(other, value),
        }
    }

    fn skip_instruction(&mut self) {
        let len = vmread(field::EXIT_INSTRUCTION_LENGTH);
        let rip = vmread(field::GUEST_RIP);
        self.set_reg(Reg::Rip, rip.wrapping_add(len));
    }

    fn caller_state(&self) -> (VcpuMode, u8) {
        let cs = vmread(field::GUEST_CS_ACCESS);
        let mode = mode_of(
            vmread(field::GUEST_CR0),
            vmread(field::GUEST_RFLAGS),
            vmread(field::GUEST_IA32_EFER),
            cs & 1 << 13 != 0,
            cs & 1 << 14 != 0,
        );
        // CPL is SS.DPL (SDM Vol. 3C, 28.3.1.5).
        (mode, ((vmread(field::GUEST_SS_ACCESS) >> 5) & 3) as u8)
    }

    fn inject_exception(&mut self, vector: u8) {
        // VM-entry interruption information (SDM Vol. 3C, 25.8.3): vector,
        // type 3 (hardware exception), valid. A failed write leaves the
        // guest as it was; its next exit shows it.
        let _ = vmwrite(
            field::ENTRY_INTERRUPTION_INFO,
            u64::from(vector) | 3 << 8 | 1 << 31,
        );
    }

    fn invalidate_nested(&mut self) {
        let descriptor: [u64; 2] = [self.eptp, 0];
        // SAFETY: INVEPT only drops cached translations; the descriptor is
        // a valid 16-byte operand.
        unsafe {
            asm!("invept {t}, [{d}]", t = in(reg) self.invept_type, d = in(reg) &raw const descriptor, options(nostack));
        }
    }
}
