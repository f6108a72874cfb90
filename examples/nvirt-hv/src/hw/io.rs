//! Port I/O, model-specific and control registers: the few privileged
//! instructions the hypervisor needs outside the virtualization backends
//! (CPUID comes from `raw-cpuid`).

use core::arch::asm;

/// Writes a byte to an I/O port.
///
/// # Safety
/// The port must be one whose device tolerates the write (serial, debug
/// console, emulator exit ports): port I/O can reconfigure any device.
pub(crate) unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller vouches for the port; `out` touches no memory.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// As for [`outb`]: reads can have side effects (clearing status bits).
pub(crate) unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: the caller vouches for the port; `in` touches no memory.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    };
    value
}

/// Performs a guest's port access on the machine, as the device model
/// allowed: OUT of `value` when it is `Some`, else IN (the value read, in
/// the access's low bits).
///
/// # Safety
/// The device model must have chosen to forward this access: only ports
/// whose devices the guest owns (interrupt controllers, timer, CMOS reads,
/// COM1) may be reached this way.
pub(crate) unsafe fn forward_port(port: u16, bytes: u32, value: Option<u32>) -> u32 {
    match (bytes, value) {
        (1, Some(v)) => {
            // SAFETY: the caller vouches for the port.
            unsafe { outb(port, v as u8) };
            0
        }
        (2, Some(v)) => {
            // SAFETY: the caller vouches for the port; `out` touches no memory.
            unsafe {
                asm!("out dx, ax", in("dx") port, in("ax") v as u16, options(nomem, nostack, preserves_flags))
            };
            0
        }
        (_, Some(v)) => {
            // SAFETY: as above.
            unsafe {
                asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags))
            };
            0
        }
        // SAFETY: the caller vouches for the port.
        (1, None) => u32::from(unsafe { inb(port) }),
        (2, None) => {
            let v: u16;
            // SAFETY: the caller vouches for the port; `in` touches no memory.
            unsafe {
                asm!("in ax, dx", in("dx") port, out("ax") v, options(nomem, nostack, preserves_flags))
            };
            u32::from(v)
        }
        (_, None) => {
            let v: u32;
            // SAFETY: as above.
            unsafe {
                asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack, preserves_flags))
            };
            v
        }
    }
}

/// Reads the time-stamp counter.
pub(crate) fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC reads a counter; CR4.TSD is clear at CPL 0.
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    u64::from(hi) << 32 | u64::from(lo)
}

/// Reads a model-specific register.
///
/// # Safety
/// The MSR must exist on this CPU (or `#GP` follows).
pub(crate) unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller vouches that the MSR exists; `rdmsr` touches no memory.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    u64::from(hi) << 32 | u64::from(lo)
}

/// Writes a model-specific register.
///
/// # Safety
/// The MSR must exist and the value must be valid and keep the machine in a
/// state the rest of the hypervisor expects.
pub(crate) unsafe fn wrmsr(msr: u32, value: u64) {
    let (lo, hi) = (value as u32, (value >> 32) as u32);
    // SAFETY: the caller vouches for the MSR and the value.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") lo, in("edx") hi, options(nostack, preserves_flags))
    };
}

/// Reads CR0.
pub(crate) fn cr0() -> u64 {
    let value: u64;
    // SAFETY: reading a control register has no side effect at CPL 0, where
    // the hypervisor always runs.
    unsafe { asm!("mov {}, cr0", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Reads CR3.
pub(crate) fn cr3() -> u64 {
    let value: u64;
    // SAFETY: as for `cr0`.
    unsafe { asm!("mov {}, cr3", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Reads CR4.
pub(crate) fn cr4() -> u64 {
    let value: u64;
    // SAFETY: as for `cr0`.
    unsafe { asm!("mov {}, cr4", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Writes CR0.
///
/// # Safety
/// The new value must keep paging, protection and caching as the hypervisor
/// expects (only fixed bits required by VMX are meant to change).
pub(crate) unsafe fn write_cr0(value: u64) {
    // SAFETY: the caller vouches for the value.
    unsafe { asm!("mov cr0, {}", in(reg) value, options(nostack, preserves_flags)) };
}

/// Writes CR4.
///
/// # Safety
/// As for [`write_cr0`].
pub(crate) unsafe fn write_cr4(value: u64) {
    // SAFETY: the caller vouches for the value.
    unsafe { asm!("mov cr4, {}", in(reg) value, options(nostack, preserves_flags)) };
}

/// Reads CR2 (the faulting address of the last page fault).
pub(crate) fn cr2() -> u64 {
    let value: u64;
    // SAFETY: as for `cr0`.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// The model-specific registers used here.
pub(crate) mod msr {
    /// IA32_FEATURE_CONTROL (Intel): lock bit 0, VMX outside SMX bit 2.
    pub(crate) const FEATURE_CONTROL: u32 = 0x3a;
    /// IA32_PAT.
    pub(crate) const PAT: u32 = 0x277;
    /// IA32_VMX_BASIC: VMCS revision, size, true-controls support.
    pub(crate) const VMX_BASIC: u32 = 0x480;
    /// IA32_VMX_MISC: the preemption timer's rate (bits 4:0).
    pub(crate) const VMX_MISC: u32 = 0x485;
    /// IA32_VMX_PINBASED_CTLS.
    pub(crate) const VMX_PINBASED_CTLS: u32 = 0x481;
    /// IA32_VMX_PROCBASED_CTLS.
    pub(crate) const VMX_PROCBASED_CTLS: u32 = 0x482;
    /// IA32_VMX_EXIT_CTLS.
    pub(crate) const VMX_EXIT_CTLS: u32 = 0x483;
    /// IA32_VMX_ENTRY_CTLS.
    pub(crate) const VMX_ENTRY_CTLS: u32 = 0x484;
    /// IA32_VMX_CR0_FIXED0.
    pub(crate) const VMX_CR0_FIXED0: u32 = 0x486;
    /// IA32_VMX_CR0_FIXED1.
    pub(crate) const VMX_CR0_FIXED1: u32 = 0x487;
    /// IA32_VMX_CR4_FIXED0.
    pub(crate) const VMX_CR4_FIXED0: u32 = 0x488;
    /// IA32_VMX_CR4_FIXED1.
    pub(crate) const VMX_CR4_FIXED1: u32 = 0x489;
    /// IA32_VMX_PROCBASED_CTLS2.
    pub(crate) const VMX_PROCBASED_CTLS2: u32 = 0x48b;
    /// IA32_VMX_EPT_VPID_CAP.
    pub(crate) const VMX_EPT_VPID_CAP: u32 = 0x48c;
    /// IA32_VMX_TRUE_PINBASED_CTLS.
    pub(crate) const VMX_TRUE_PINBASED_CTLS: u32 = 0x48d;
    /// IA32_VMX_TRUE_PROCBASED_CTLS.
    pub(crate) const VMX_TRUE_PROCBASED_CTLS: u32 = 0x48e;
    /// IA32_VMX_TRUE_EXIT_CTLS.
    pub(crate) const VMX_TRUE_EXIT_CTLS: u32 = 0x48f;
    /// IA32_VMX_TRUE_ENTRY_CTLS.
    pub(crate) const VMX_TRUE_ENTRY_CTLS: u32 = 0x490;
    /// IA32_EFER.
    pub(crate) const EFER: u32 = 0xc000_0080;
    /// VM_CR (AMD): bit 4 SVMDIS.
    pub(crate) const VM_CR: u32 = 0xc001_0114;
    /// VM_HSAVE_PA (AMD): the host state-save area of VMRUN.
    pub(crate) const VM_HSAVE_PA: u32 = 0xc001_0117;
}
