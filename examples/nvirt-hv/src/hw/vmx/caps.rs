//! What the CPU allows of VMX (Intel SDM Vol. 3C §25.6–25.8, Vol. 3D
//! Appendix A): whether it has VMX and EPT with what the backend needs, and
//! the control bits adjusted to the capability MSRs (the "true" ones when
//! IA32_VMX_BASIC bit 55 says so).

use raw_cpuid::CpuId;

use super::super::io::{msr, rdmsr};
use super::super::vcpu::VmError;

// Primary processor-based controls.
pub(super) const PROC_HLT_EXITING: u32 = 1 << 7;
pub(super) const PROC_USE_IO_BITMAPS: u32 = 1 << 25;
pub(super) const PROC_USE_MSR_BITMAPS: u32 = 1 << 28;
pub(super) const PROC_ACTIVATE_SECONDARY: u32 = 1 << 31;
// Secondary.
pub(super) const PROC2_ENABLE_EPT: u32 = 1 << 1;
pub(super) const PROC2_UNRESTRICTED_GUEST: u32 = 1 << 7;
// Exit controls.
pub(super) const EXIT_HOST_64BIT: u32 = 1 << 9;
pub(super) const EXIT_SAVE_PAT: u32 = 1 << 18;
pub(super) const EXIT_LOAD_PAT: u32 = 1 << 19;
pub(super) const EXIT_SAVE_EFER: u32 = 1 << 20;
pub(super) const EXIT_LOAD_EFER: u32 = 1 << 21;
// Entry controls.
pub(super) const ENTRY_IA32E_GUEST: u32 = 1 << 9;
pub(super) const ENTRY_LOAD_PAT: u32 = 1 << 14;
pub(super) const ENTRY_LOAD_EFER: u32 = 1 << 15;

/// Whether this CPU has VMX.
pub(crate) fn supported() -> Result<(), VmError> {
    if !CpuId::new().get_feature_info().is_some_and(|f| f.has_vmx()) {
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
pub(super) fn cap(msr: u32) -> u64 {
    // SAFETY: only called with VMX capability MSRs after `supported()`.
    unsafe { rdmsr(msr) }
}

/// `desired` adjusted to a control capability MSR: bits that must be 1
/// (low half) set; the result must only use allowed-1 bits (high half).
pub(super) fn adjust(desired: u32, capability: u64, what: &'static str) -> Result<u32, VmError> {
    let (must, may) = (capability as u32, (capability >> 32) as u32);
    let value = desired | must;
    if value & !may != 0 {
        return Err(VmError::Unsupported(what));
    }
    Ok(value)
}

/// The EPT features the backend needs, and the INVEPT type to use:
/// single-context (1) when the CPU has it, else global (2).
pub(super) fn ept_invept_type() -> Result<u64, VmError> {
    let ept_caps = cap(msr::VMX_EPT_VPID_CAP);
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
    Ok(if ept_caps & 1 << 25 != 0 { 1 } else { 2 })
}

/// The adjusted controls: pin-based, primary and secondary
/// processor-based, exit, entry.
pub(super) struct Controls {
    pub(super) pin: u32,
    pub(super) primary: u32,
    pub(super) secondary: u32,
    pub(super) exit: u32,
    pub(super) entry: u32,
    /// Whether the guest is unrestricted (CR0.PE and CR0.PG may be clear).
    pub(super) unrestricted: bool,
}

/// HLT exits, I/O ports and MSRs as their bitmaps say; EPT on, and
/// unrestricted guest where the CPU has it (a guest may then run with
/// paging or protection off); a 64-bit host; PAT and EFER loaded and saved;
/// an IA-32e guest.
pub(super) fn controls() -> Result<Controls, VmError> {
    let true_controls = cap(msr::VMX_BASIC) & 1 << 55 != 0;
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
    let unrestricted =
        if (cap(msr::VMX_PROCBASED_CTLS2) >> 32) as u32 & PROC2_UNRESTRICTED_GUEST != 0 {
            PROC2_UNRESTRICTED_GUEST
        } else {
            0
        };
    Ok(Controls {
        pin: adjust(0, cap(pin_msr), "pin-based controls")?,
        primary: adjust(
            PROC_HLT_EXITING | PROC_USE_IO_BITMAPS | PROC_USE_MSR_BITMAPS | PROC_ACTIVATE_SECONDARY,
            cap(proc_msr),
            "HLT exiting, I/O and MSR bitmaps, secondary controls",
        )?,
        secondary: adjust(
            PROC2_ENABLE_EPT | unrestricted,
            cap(msr::VMX_PROCBASED_CTLS2),
            "EPT",
        )?,
        unrestricted: unrestricted != 0,
        exit: adjust(
            EXIT_HOST_64BIT | EXIT_SAVE_PAT | EXIT_LOAD_PAT | EXIT_SAVE_EFER | EXIT_LOAD_EFER,
            cap(exit_msr),
            "64-bit host, PAT/EFER exit controls",
        )?,
        entry: adjust(
            ENTRY_IA32E_GUEST | ENTRY_LOAD_PAT | ENTRY_LOAD_EFER,
            cap(entry_msr),
            "IA-32e guest, PAT/EFER entry controls",
        )?,
    })
}
