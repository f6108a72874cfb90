//! What a guest sees of CPUID: the host's answer, with the "hypervisor
//! present" bit set and these hidden, the same under SVM and VMX:
//!
//! - the virtualization extension (VMX, SVM): the guest cannot use it —
//!   VMRUN and the VMX instructions exit to the hypervisor, which refuses
//!   them — and a guest that believes in it writes its MSRs (Linux's
//!   `cpu_svm_disable` on reboot writes `VM_HSAVE_PA` and clears
//!   `EFER.SVME`);
//! - the local APIC and x2APIC (and the TSC deadline timer): there is no
//!   virtual APIC, so the guest uses the 8259 PICs and the PIT, and never
//!   maps the APIC page;
//! - MTRRs, machine check (MCE, MCA): their MSRs read as zero here, which
//!   is only what an absent feature reads as;
//! - RDTSCP and RDPID, INVPCID and XSAVES: VMX faults them unless the
//!   hypervisor enables each with a secondary control, so no guest may
//!   depend on them;
//! - XSAVE (and with it OSXSAVE, so AVX and every extended state): VMX
//!   makes every XSETBV exit, and the hypervisor does not manage the
//!   guest's XCR0; the guest keeps FXSAVE and SSE.

/// CPUID leaf 1.
const LEAF_FEATURES: u32 = 1;
const ECX_VMX: u32 = 1 << 5;
const ECX_X2APIC: u32 = 1 << 21;
const ECX_XSAVE: u32 = 1 << 26;
const ECX_OSXSAVE: u32 = 1 << 27;
const ECX_TSC_DEADLINE: u32 = 1 << 24;
const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_MCE: u32 = 1 << 7;
const EDX_APIC: u32 = 1 << 9;
const EDX_MTRR: u32 = 1 << 12;
const EDX_MCA: u32 = 1 << 14;
/// CPUID leaf 7 (subleaf 0): EBX bit 10 INVPCID, ECX bit 22 RDPID.
const LEAF_EXTENDED_FEATURES: u32 = 7;
const EBX_INVPCID: u32 = 1 << 10;
const ECX_RDPID: u32 = 1 << 22;
/// CPUID leaf 0xD subleaf 1: EAX bit 3 XSAVES.
const LEAF_XSAVE: u32 = 0xd;
const EAX_XSAVES: u32 = 1 << 3;
/// CPUID leaf 8000_0001h: ECX bit 2 SVM; EDX mirrors leaf 1's APIC, MTRR,
/// MCE and MCA bits on AMD, and bit 27 is RDTSCP.
const LEAF_EXT_FEATURES: u32 = 0x8000_0001;
const ECX_SVM: u32 = 1 << 2;
const EDX_RDTSCP: u32 = 1 << 27;

/// Leaf 1 and 8000_0001h EDX bits hidden.
const EDX_HIDDEN: u32 = EDX_MCE | EDX_APIC | EDX_MTRR | EDX_MCA;

/// The guest's EAX, EBX, ECX, EDX for `leaf` and `subleaf`, given the
/// host's.
#[must_use]
pub const fn guest_view(leaf: u32, subleaf: u32, host: [u32; 4]) -> [u32; 4] {
    let [eax, ebx, ecx, edx] = host;
    match leaf {
        LEAF_FEATURES => [
            eax,
            ebx,
            (ecx & !(ECX_VMX | ECX_X2APIC | ECX_TSC_DEADLINE | ECX_XSAVE | ECX_OSXSAVE))
                | ECX_HYPERVISOR,
            edx & !EDX_HIDDEN,
        ],
        LEAF_EXTENDED_FEATURES if subleaf == 0 => [eax, ebx & !EBX_INVPCID, ecx & !ECX_RDPID, edx],
        LEAF_XSAVE if subleaf == 1 => [eax & !EAX_XSAVES, ebx, ecx, edx],
        LEAF_EXT_FEATURES => [eax, ebx, ecx & !ECX_SVM, edx & !(EDX_HIDDEN | EDX_RDTSCP)],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_what_is_not_virtualized_and_shows_the_hypervisor() {
        let all = [u32::MAX; 4];
        let leaf1 = guest_view(1, 0, all);
        assert_eq!(
            leaf1[2],
            !(ECX_VMX | ECX_X2APIC | ECX_TSC_DEADLINE | ECX_XSAVE | ECX_OSXSAVE)
        );
        assert_eq!(leaf1[3], !EDX_HIDDEN);
        assert_eq!(leaf1[3] & EDX_APIC, 0);
        assert_eq!(guest_view(1, 0, [0; 4])[2], ECX_HYPERVISOR);
        let ext = guest_view(0x8000_0001, 0, all);
        assert_eq!(ext[2], !ECX_SVM);
        assert_eq!(ext[3] & (EDX_RDTSCP | EDX_APIC), 0);
        assert_eq!(guest_view(7, 0, all)[1], !EBX_INVPCID);
        assert_eq!(guest_view(7, 0, all)[2], !ECX_RDPID);
        assert_eq!(guest_view(7, 1, all), all, "only subleaf 0 holds INVPCID");
        assert_eq!(guest_view(0xd, 1, all)[0], !EAX_XSAVES);
        assert_eq!(guest_view(0xd, 0, all), all);
        // The vendor string (leaf 0), which picks the hypercall instruction,
        // passes unchanged.
        let vendor = [0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65];
        assert_eq!(guest_view(0, 0, vendor), vendor);
    }
}
