//! What a guest sees of CPUID: the host's answer, with the virtualization
//! extension hidden (the guest cannot use it: VMRUN and the VMX
//! instructions exit to the hypervisor, which refuses them) and the
//! "hypervisor present" bit set, the same under SVM and VMX.

/// CPUID leaf 1: ECX bit 5 is VMX, bit 31 "running under a hypervisor".
const LEAF_FEATURES: u32 = 1;
const ECX_VMX: u32 = 1 << 5;
const ECX_HYPERVISOR: u32 = 1 << 31;
/// CPUID leaf 8000_0001h: ECX bit 2 is SVM.
const LEAF_EXT_FEATURES: u32 = 0x8000_0001;
const ECX_SVM: u32 = 1 << 2;

/// The guest's EAX, EBX, ECX, EDX for `leaf`, given the host's.
#[must_use]
pub const fn guest_view(leaf: u32, host: [u32; 4]) -> [u32; 4] {
    let [eax, ebx, ecx, edx] = host;
    let ecx = match leaf {
        LEAF_FEATURES => (ecx & !ECX_VMX) | ECX_HYPERVISOR,
        LEAF_EXT_FEATURES => ecx & !ECX_SVM,
        _ => ecx,
    };
    [eax, ebx, ecx, edx]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_the_extension_and_shows_the_hypervisor() {
        let all = [u32::MAX; 4];
        assert_eq!(guest_view(1, all), [u32::MAX, u32::MAX, !ECX_VMX, u32::MAX]);
        assert_eq!(guest_view(1, [0; 4])[2], ECX_HYPERVISOR);
        assert_eq!(
            guest_view(0x8000_0001, all),
            [u32::MAX, u32::MAX, !ECX_SVM, u32::MAX]
        );
        // The vendor string (leaf 0), which picks the hypercall instruction,
        // passes unchanged.
        let vendor = [0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65];
        assert_eq!(guest_view(0, vendor), vendor);
    }
}
