//! Finding the hypervisor as a Xen guest does: the CPUID leaves from
//! 0x4000_0000, the hypercall page installed through the MSR they name,
//! and nvirt's bit saying the NVRAM flag is honoured (on real Xen it reads
//! 0, and the guest must not ask for NVRAM: Xen would give it RAM).

use core::arch::global_asm;
use core::sync::atomic::{AtomicUsize, Ordering};

use nvirt_hypercall_abi::discovery::XenLeaves;
use nvirt_hypercall_abi::guest::{discover, install_hypercall_page};

// The page the hypervisor writes its stubs into: page aligned, in the
// image's memory, never touched by Rust code (an extern static).
global_asm!(
    r#"
    .section .bss.nvirt_hypercall_page, "aw", @nobits
    .balign 4096
    .global nvirt_hypercall_page
nvirt_hypercall_page:
    .skip 4096
    .text
"#
);

unsafe extern "C" {
    static nvirt_hypercall_page: u8;
}

/// The installed hypercall page's address, 0 until installed.
static PAGE: AtomicUsize = AtomicUsize::new(0);

/// The hypercall page, once installed.
pub(crate) fn page() -> Option<usize> {
    match PAGE.load(Ordering::Relaxed) {
        0 => None,
        p => Some(p),
    }
}

/// Reads the leaves and, if a Xen-compatible hypervisor answers, installs
/// its hypercall page; the leaves found.
pub(crate) fn install() -> Option<XenLeaves> {
    let leaves = discover()?;
    let at = (&raw const nvirt_hypercall_page).expose_provenance();
    // SAFETY: the leaves name the MSR; the page is this image's own,
    // identity mapped (its address is its guest-physical address), and no
    // Rust object lives in it.
    unsafe { install_hypercall_page(leaves.hypercall_msr, at as u64) };
    PAGE.store(at, Ordering::Relaxed);
    Some(leaves)
}
