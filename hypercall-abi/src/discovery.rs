//! How a guest finds the hypervisor and its hypercall page, as Xen guests
//! do: CPUID leaves from 0x4000_0000 (`xen/include/public/arch-x86/cpuid.h`)
//! and the hypercall page written when the guest writes the MSR those
//! leaves name (`guest_wrmsr_xen()` in `xen/arch/x86/msr.c`,
//! `vmx_init_hypercall_page()` and `svm_init_hypercall_page()`) — plus one
//! bit by which a guest learns that the NVRAM flag is honoured.
//!
//! The host side answers with [`leaf`] and [`hypercall_page`]; the guest
//! side reads the leaves with [`XenLeaves::parse`] (on hardware:
//! [`guest::discover`](crate::guest::discover)).

use crate::guest::HypercallInsn;

/// The first hypervisor leaf (Xen's leaves start here unless Viridian
/// leaves take it, then at 0x4000_0100).
pub const XEN_CPUID_FIRST_LEAF: u32 = 0x4000_0000;
/// The signature in EBX, ECX, EDX of the first leaf: "XenVMMXenVMM".
pub const XEN_CPUID_SIGNATURE: [u32; 3] = [0x566e_6558, 0x6558_4d4d, 0x4d4d_566e];
/// Leaves after the first that Xen answers (`XEN_CPUID_MAX_NUM_LEAVES`):
/// the first leaf's EAX is the base plus this.
pub const XEN_CPUID_MAX_NUM_LEAVES: u32 = 5;
/// The MSR a guest writes the hypercall page's guest-physical address to
/// (the third leaf's EBX).
pub const HYPERCALL_PAGE_MSR: u32 = 0x4000_0000;
/// The Xen interface version nvirt answers in the version leaf: that of
/// the Xen tree whose headers this crate was checked against
/// (`XEN_VERSION` 4, `XEN_SUBVERSION` 23 at c447b73).
pub const XEN_VERSION: (u16, u16) = (4, 23);
/// Xen's HVM-leaf flags (fifth leaf, EAX) nvirt sets: the vCPU id is in
/// EBX, the domain id in ECX.
pub const XEN_HVM_CPUID_VCPU_ID_PRESENT: u32 = 1 << 3;
/// See [`XEN_HVM_CPUID_VCPU_ID_PRESENT`].
pub const XEN_HVM_CPUID_DOMID_PRESENT: u32 = 1 << 4;
/// nvirt's flag in the HVM leaf's EAX: the hypervisor honours
/// [`NVIRT_MEMF_NVRAM`](crate::NVIRT_MEMF_NVRAM). Xen allocates these flags
/// from bit 0 up (bit 6 is the highest in use at c447b73) and answers
/// unassigned bits as zero, so on real Xen a guest reads "not honoured" —
/// exactly what Xen does with the flag (ignores it and gives RAM).
pub const NVIRT_HVM_CPUID_NVRAM: u32 = 1 << 31;
/// Bytes of one stub in the hypercall page: stub `n` is at `32 * n`.
pub const HYPERCALL_STUB_SIZE: usize = 32;
/// `__HYPERVISOR_iret`, whose stub is `ud2` in every HVM hypercall page.
const HYPERVISOR_IRET: usize = 23;

/// What nvirt's hypervisor answers for hypervisor leaf `leaf` (subleaf
/// `subleaf`) to domain `domid`'s vCPU `vcpu`, or `None` outside
/// `0x4000_0000..=0x4000_0005`.
#[must_use]
pub const fn leaf(leaf: u32, subleaf: u32, domid: u16, vcpu: u32) -> Option<[u32; 4]> {
    let base = XEN_CPUID_FIRST_LEAF;
    if leaf < base || leaf > base + XEN_CPUID_MAX_NUM_LEAVES {
        return None;
    }
    let [b, c, d] = XEN_CPUID_SIGNATURE;
    Some(match leaf - base {
        0 => [base + XEN_CPUID_MAX_NUM_LEAVES, b, c, d],
        1 => [(XEN_VERSION.0 as u32) << 16 | XEN_VERSION.1 as u32, 0, 0, 0],
        // One hypercall page, its MSR; no features.
        2 => [1, HYPERCALL_PAGE_MSR, 0, 0],
        // The HVM leaf's sub-leaf 0.
        4 if subleaf == 0 => [
            XEN_HVM_CPUID_VCPU_ID_PRESENT | XEN_HVM_CPUID_DOMID_PRESENT | NVIRT_HVM_CPUID_NVRAM,
            vcpu,
            domid as u32,
            0,
        ],
        // Time leaf (no flags: the TSC is not emulated), the PV leaf, other
        // sub-leaves.
        _ => [0; 4],
    })
}

/// nvirt's own leaves, past Xen's range (guests that do not look for them
/// never see them): `0x4000_0100` says "nvirtNVRAM\0\0" and the last leaf,
/// `0x4000_0101` the caller's NVRAM balloon target in 4 KiB pages (EAX low
/// and EBX high half; all zero for a guest with no target). The target
/// changes while the guest runs: a guest's balloon reads it again and
/// follows it, as a Xen guest's follows `memory/target` in xenstore.
pub const NVIRT_CPUID_FIRST_LEAF: u32 = 0x4000_0100;
/// The signature of [`NVIRT_CPUID_FIRST_LEAF`] in EBX, ECX, EDX.
pub const NVIRT_CPUID_SIGNATURE: [u32; 3] = [0x7269_766e, 0x5256_4e74, 0x0000_4d41];

/// nvirt's answer for its leaf `leaf` to a guest whose NVRAM target is
/// `target_pages` (`None`: no target), or `None` outside its leaves.
#[must_use]
pub const fn nvirt_leaf(leaf: u32, target_pages: Option<u64>) -> Option<[u32; 4]> {
    let [b, c, d] = NVIRT_CPUID_SIGNATURE;
    match leaf.wrapping_sub(NVIRT_CPUID_FIRST_LEAF) {
        0 => Some([NVIRT_CPUID_FIRST_LEAF + 1, b, c, d]),
        1 => {
            let t = match target_pages {
                Some(t) => t,
                None => 0,
            };
            Some([t as u32, (t >> 32) as u32, 0, 0])
        }
        _ => None,
    }
}

/// The NVRAM target a guest reads from nvirt's leaves through `cpuid`, in
/// pages; `None` when the leaves are not there (not nvirt, or too old).
pub fn nvram_target(mut cpuid: impl FnMut(u32) -> [u32; 4]) -> Option<u64> {
    let [max, b, c, d] = cpuid(NVIRT_CPUID_FIRST_LEAF);
    if [b, c, d] != NVIRT_CPUID_SIGNATURE || max < NVIRT_CPUID_FIRST_LEAF + 1 {
        return None;
    }
    let [lo, hi, _, _] = cpuid(NVIRT_CPUID_FIRST_LEAF + 1);
    Some(u64::from(hi) << 32 | u64::from(lo))
}

/// The hypercall page Xen writes for an HVM guest: `int3` everywhere,
/// then for each hypercall `n` below 128 at byte `32 * n` the stub
/// `mov eax, n; vmcall (or vmmcall); ret`, except `ud2` for `iret`. A guest
/// calls stub `n` with the arguments in its registers.
#[must_use]
pub fn hypercall_page(insn: HypercallInsn) -> [u8; 4096] {
    let mut page = [0xcc; 4096];
    for (n, stub) in page.chunks_exact_mut(HYPERCALL_STUB_SIZE).enumerate() {
        if n == HYPERVISOR_IRET {
            stub[..2].copy_from_slice(&[0x0f, 0x0b]);
            continue;
        }
        stub[0] = 0xb8;
        stub[1..5].copy_from_slice(&(n as u32).to_le_bytes());
        stub[5..8].copy_from_slice(&insn.encoding());
        stub[8] = 0xc3;
    }
    page
}

/// Where a hypercall page may go: the MSR value's page index (its low 12
/// bits) must be 0, as Xen has one page. Returns the page's guest-physical
/// address, or `None` (Xen injects #GP).
#[must_use]
pub const fn hypercall_page_address(msr_value: u64) -> Option<u64> {
    if msr_value & 0xfff != 0 {
        None
    } else {
        Some(msr_value)
    }
}

/// A Xen-compatible hypervisor's leaves, as a guest reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenLeaves {
    /// The first leaf (0x4000_0000, or a multiple of 0x100 above it).
    pub base: u32,
    /// The largest leaf.
    pub max_leaf: u32,
    /// Major and minor version.
    pub version: (u16, u16),
    /// The MSR to write the hypercall page's address to.
    pub hypercall_msr: u32,
    /// Hypercall pages (1).
    pub hypercall_pages: u32,
    /// Whether the hypervisor honours the NVRAM flag.
    pub nvram: bool,
}

impl XenLeaves {
    /// Looks for Xen's signature at 0x4000_0000 and every 0x100 above up
    /// to 0x4001_0000, as Linux's `xen_cpuid_base()` does, reading leaves
    /// with `cpuid(leaf, subleaf)`. `None` if no Xen-compatible hypervisor
    /// is there.
    pub fn parse(mut cpuid: impl FnMut(u32, u32) -> [u32; 4]) -> Option<Self> {
        let mut base = XEN_CPUID_FIRST_LEAF;
        while base < 0x4001_0000 {
            let [max, b, c, d] = cpuid(base, 0);
            // The hypercall leaf must exist (Linux: max - base >= 2).
            if [b, c, d] == XEN_CPUID_SIGNATURE && max >= base + 2 {
                let version = cpuid(base + 1, 0)[0];
                let [pages, msr, _, _] = cpuid(base + 2, 0);
                let hvm = if max >= base + 4 {
                    cpuid(base + 4, 0)[0]
                } else {
                    0
                };
                return Some(Self {
                    base,
                    max_leaf: max,
                    version: ((version >> 16) as u16, version as u16),
                    hypercall_msr: msr,
                    hypercall_pages: pages,
                    nvram: hvm & NVIRT_HVM_CPUID_NVRAM != 0,
                });
            }
            base += 0x100;
        }
        None
    }
}

#[cfg(test)]
mod nvirt_leaf_tests {
    use super::*;

    #[test]
    fn the_target_goes_through_the_leaves_and_only_there() {
        let host = |target| move |leaf| nvirt_leaf(leaf, target).unwrap_or([0; 4]);
        assert_eq!(nvram_target(host(Some(0x1_2345_6789))), Some(0x1_2345_6789));
        assert_eq!(nvram_target(host(None)), Some(0));
        assert_eq!(nvram_target(|_| [0; 4]), None, "no signature, no target");
        assert_eq!(nvirt_leaf(NVIRT_CPUID_FIRST_LEAF + 2, Some(1)), None);
        assert_eq!(nvirt_leaf(XEN_CPUID_FIRST_LEAF, Some(1)), None);
        let sig: [u8; 12] = {
            let mut b = [0u8; 12];
            for (i, w) in NVIRT_CPUID_SIGNATURE.iter().enumerate() {
                b[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
            }
            b
        };
        assert_eq!(&sig, b"nvirtNVRAM\0\0");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_spells_xen() {
        let bytes: Vec<u8> = XEN_CPUID_SIGNATURE
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        assert_eq!(&bytes, b"XenVMMXenVMM");
    }

    #[test]
    fn nvirts_leaves_parse_back() {
        let found = XenLeaves::parse(|l, s| leaf(l, s, 1, 0).unwrap_or([0; 4])).unwrap();
        assert_eq!(
            found,
            XenLeaves {
                base: 0x4000_0000,
                max_leaf: 0x4000_0005,
                version: (4, 23),
                hypercall_msr: 0x4000_0000,
                hypercall_pages: 1,
                nvram: true
            }
        );
        assert_eq!(leaf(0x4000_0004, 0, 7, 2), Some([0x8000_0018, 2, 7, 0]));
        assert_eq!(leaf(0x4000_0004, 1, 7, 2), Some([0; 4]));
        assert_eq!(leaf(0x4000_0006, 0, 7, 2), None);
        assert_eq!(leaf(0x3fff_ffff, 0, 7, 2), None);
    }

    #[test]
    fn real_xen_does_not_claim_nvram_and_viridian_moves_the_base() {
        // Xen's answer at c447b73 for an HVM guest with Viridian: the
        // signature at 0x4000_0100, HVM flags without bit 31.
        let xen = |l: u32, _s: u32| match l {
            0x4000_0000 => [0x4000_0006, 0x7263_694d, 0x666f_736f, 0x7648_2074],
            0x4000_0100 => [0x4000_0105, 0x566e_6558, 0x6558_4d4d, 0x4d4d_566e],
            0x4000_0101 => [0x0004_0017, 0, 0, 0],
            0x4000_0102 => [1, 0x4000_0200, 0, 0],
            0x4000_0104 => [0x1c, 0, 3, 0],
            _ => [0; 4],
        };
        let found = XenLeaves::parse(xen).unwrap();
        assert_eq!(
            (found.base, found.hypercall_msr, found.nvram),
            (0x4000_0100, 0x4000_0200, false)
        );
        assert_eq!(XenLeaves::parse(|_, _| [0; 4]), None);
    }

    #[test]
    fn the_hypercall_page_is_xens() {
        let page = hypercall_page(HypercallInsn::Vmcall);
        // Stub 12 (memory_op): mov eax, 12; vmcall; ret; then int3.
        assert_eq!(
            page[12 * 32..12 * 32 + 10],
            [0xb8, 12, 0, 0, 0, 0x0f, 0x01, 0xc1, 0xc3, 0xcc]
        );
        assert_eq!(page[23 * 32..23 * 32 + 3], [0x0f, 0x0b, 0xcc]);
        let amd = hypercall_page(HypercallInsn::Vmmcall);
        assert_eq!(
            amd[127 * 32..127 * 32 + 9],
            [0xb8, 127, 0, 0, 0, 0x0f, 0x01, 0xd9, 0xc3]
        );
        assert_eq!(hypercall_page_address(0x1234_5000), Some(0x1234_5000));
        assert_eq!(hypercall_page_address(0x1234_5001), None);
    }
}
