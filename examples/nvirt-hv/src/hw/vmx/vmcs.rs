//! Filling the VMCS: the controls, the host state a VM exit loads, and the
//! guest's starting state.

use super::super::boot::{CODE_SELECTOR, DATA_SELECTOR, TSS_SELECTOR};
use super::super::cpu::{gdtr, idtr, tss_base};
use super::super::io::{cr0, cr3, cr4, msr, rdmsr};
use super::super::vcpu::{self, GuestSegments, GuestSpec, VmError};
use super::caps;
use super::entry::{nvirt_vmx_exit, vmwrite};
use super::fields;

fn write_all(writes: &[(u64, u64)]) -> Result<(), VmError> {
    for &(f, v) in writes {
        vmwrite(f, v)?;
    }
    Ok(())
}

/// Where the exit bitmaps are.
pub(super) struct Bitmaps {
    /// The MSR bitmaps (one page).
    pub(super) msr: u64,
    /// I/O bitmaps A and B.
    pub(super) io: (u64, u64),
}

/// The execution, exit and entry controls, the CR0/CR4 ownership, the MSR
/// bitmaps and the EPT pointer.
///
/// The hypervisor owns (masks) only the CR0 and CR4 bits VMX fixes: those
/// the guest could not change anyway (CR4.VMXE, CR0.NE, and CR0.PE/PG
/// unless the guest is unrestricted), and those the CPU forbids. Every
/// other bit the guest changes without an exit; a write to an owned bit
/// exits and is checked ([`super::cr`]).
pub(super) fn write_controls(
    c: &caps::Controls,
    spec: &GuestSpec,
    masks: (u64, u64),
    bitmaps: &Bitmaps,
) -> Result<(), VmError> {
    use fields::*;
    write_all(&[
        (MSR_BITMAP, bitmaps.msr),
        (IO_BITMAP_A, bitmaps.io.0),
        (IO_BITMAP_B, bitmaps.io.1),
        (PIN_BASED_CONTROLS, u64::from(c.pin)),
        (PRIMARY_PROC_CONTROLS, u64::from(c.primary)),
        (SECONDARY_PROC_CONTROLS, u64::from(c.secondary)),
        (EXIT_CONTROLS, u64::from(c.exit)),
        (ENTRY_CONTROLS, u64::from(c.entry)),
        (
            EXCEPTION_BITMAP,
            match spec.kind {
                vcpu::GuestKind::Test => u64::from(u32::MAX),
                vcpu::GuestKind::Linux => 0,
            },
        ),
        (CR3_TARGET_COUNT, 0),
        (EXIT_MSR_STORE_COUNT, 0),
        (EXIT_MSR_LOAD_COUNT, 0),
        (ENTRY_MSR_LOAD_COUNT, 0),
        (ENTRY_INTERRUPTION_INFO, 0),
        // The guest reads back what it was given (CR4.VMXE hidden).
        (CR0_GUEST_HOST_MASK, masks.0),
        (CR4_GUEST_HOST_MASK, masks.1),
        (CR0_READ_SHADOW, vcpu::GUEST_CR0),
        (CR4_READ_SHADOW, vcpu::GUEST_CR4),
        (EPT_POINTER, spec.nested_root),
    ])
}

/// The host state a VM exit loads: this CPU as it is now, landing at
/// `nvirt_vmx_exit`.
pub(super) fn write_host_state() -> Result<(), VmError> {
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
pub(super) fn write_guest_state(
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
