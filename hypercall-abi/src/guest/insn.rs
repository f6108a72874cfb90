//! Which instruction enters the hypervisor: VMCALL under Intel VT-x,
//! VMMCALL under AMD-V. Each raises #UD under the other, so the guest must
//! pick the right one.

use core::fmt;

/// The hypercall instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HypercallInsn {
    /// `VMCALL` (0F 01 C1), Intel VT-x.
    Vmcall,
    /// `VMMCALL` (0F 01 D9), AMD-V.
    Vmmcall,
}

impl HypercallInsn {
    /// Length of either instruction: the hypervisor advances RIP by this
    /// much after a completed call.
    pub const LEN: u64 = 3;

    /// The instruction's bytes, as Xen writes them into the hypercall page
    /// (`vmx_init_hypercall_page()` in `xen/arch/x86/hvm/vmx/vmx.c`,
    /// `svm_init_hypercall_page()` in `xen/arch/x86/hvm/svm/svm.c`).
    #[must_use]
    pub const fn encoding(self) -> [u8; 3] {
        match self {
            Self::Vmcall => [0x0f, 0x01, 0xc1],
            Self::Vmmcall => [0x0f, 0x01, 0xd9],
        }
    }

    /// The instruction for a CPU whose CPUID leaf 0 vendor string is
    /// `vendor`: VMMCALL for AMD and Hygon, whose CPUs virtualize with SVM;
    /// VMCALL for everything else (Intel, and the VMX-based Centaur and
    /// Zhaoxin parts). An emulator shows the guest the vendor of the CPU
    /// model it emulates: QEMU's AMD models with `svm` and Bochs's Intel
    /// models with VMX both choose right.
    #[must_use]
    pub const fn for_vendor(vendor: &[u8; 12]) -> Self {
        match vendor {
            b"AuthenticAMD" | b"HygonGenuine" => Self::Vmmcall,
            _ => Self::Vmcall,
        }
    }

    /// The instruction for the CPU this code runs on (CPUID leaf 0).
    #[cfg(target_arch = "x86_64")]
    #[must_use]
    pub fn detect() -> Self {
        Self::for_vendor(&super::vmcall::cpu_vendor())
    }
}

/// The 12-byte vendor string of CPUID leaf 0, which comes in EBX, EDX, ECX
/// order ("Genu" "ineI" "ntel").
#[must_use]
pub const fn vendor_string(ebx: u32, edx: u32, ecx: u32) -> [u8; 12] {
    let (b, d, c) = (ebx.to_le_bytes(), edx.to_le_bytes(), ecx.to_le_bytes());
    [
        b[0], b[1], b[2], b[3], d[0], d[1], d[2], d[3], c[0], c[1], c[2], c[3],
    ]
}

impl fmt::Display for HypercallInsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Vmcall => "vmcall",
            Self::Vmmcall => "vmmcall",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendors_choose_the_instruction() {
        // Register values from Xen's x86-vendors.h.
        let intel = vendor_string(0x756e_6547, 0x4965_6e69, 0x6c65_746e);
        assert_eq!(&intel, b"GenuineIntel");
        assert_eq!(HypercallInsn::for_vendor(&intel), HypercallInsn::Vmcall);
        let amd = vendor_string(0x6874_7541, 0x6974_6e65, 0x444d_4163);
        assert_eq!(&amd, b"AuthenticAMD");
        assert_eq!(HypercallInsn::for_vendor(&amd), HypercallInsn::Vmmcall);
        assert_eq!(
            HypercallInsn::for_vendor(b"HygonGenuine"),
            HypercallInsn::Vmmcall
        );
        assert_eq!(
            HypercallInsn::for_vendor(b"CentaurHauls"),
            HypercallInsn::Vmcall
        );
        assert_eq!(HypercallInsn::Vmcall.encoding(), [0x0f, 0x01, 0xc1]);
        assert_eq!(HypercallInsn::Vmmcall.encoding(), [0x0f, 0x01, 0xd9]);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn detects_the_host_cpu() {
        // CPUID works in user mode on any x86_64 host; the answer must be
        // one of the two, matching the vendor string.
        let vendor = super::super::vmcall::cpu_vendor();
        assert_eq!(HypercallInsn::detect(), HypercallInsn::for_vendor(&vendor));
        assert!(vendor.iter().all(u8::is_ascii_graphic), "{vendor:?}");
    }
}
