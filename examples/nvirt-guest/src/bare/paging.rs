//! The guest's own view of its memory: besides the hypervisor's identity
//! tables, a second mapping of the same memory at Linux's direct-map base,
//! through which every address the guest passes in a hypercall is named.
//! A guest-virtual address there is never a guest-physical address of
//! this guest (it is above 2^47), so a hypervisor that reads hypercall
//! pointers as guest-physical fails every call, and one that walks the
//! guest's tables, as Xen does for HVM guests, succeeds.

use core::arch::asm;

/// Where the alias starts: PML4 slot 273, Linux's `__PAGE_OFFSET` on
/// x86_64 with 4-level paging.
pub(crate) const ALIAS_BASE: u64 = 0xffff_8880_0000_0000;
const ALIAS_SLOT: usize = 273;
/// The alias covers what PML4 slot 0 covers: the first 512 GiB.
const ALIAS_SPAN: u64 = 1 << 39;

/// The guest-virtual alias of identity-mapped address `addr`.
pub(crate) fn to_virtual(addr: usize) -> u64 {
    let addr = addr as u64;
    // Above the span the alias does not exist: pass the address as it is
    // (it names no memory the guest lends).
    if addr < ALIAS_SPAN {
        addr + ALIAS_BASE
    } else {
        addr
    }
}

/// The guest-physical address of the current PML4.
fn pml4() -> u64 {
    let cr3: u64;
    // SAFETY: reading CR3 at CPL 0 has no side effect.
    unsafe { asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack, preserves_flags)) };
    cr3 & 0x000f_ffff_ffff_f000
}

/// Installs the alias (PML4 slot 273 = slot 0) and returns whether a word
/// read through it equals the same word read directly.
pub(crate) fn install_alias() -> bool {
    let table = core::ptr::with_exposed_provenance_mut::<u64>(pml4() as usize);
    // SAFETY: CR3 names the hypervisor's identity tables, which are guest
    // memory of this guest, identity mapped and used by nothing else.
    let low = unsafe { table.read_volatile() };
    let slot = table.wrapping_add(ALIAS_SLOT);
    // SAFETY: as above, slot 273 of the same 512-entry table; it was not
    // present, so no translation of it is cached and no flush is needed.
    unsafe { slot.write_volatile(low) };
    static PROBE: u64 = 0x6e76_6972_745f_7661;
    let direct = core::ptr::from_ref(&PROBE);
    let alias =
        core::ptr::with_exposed_provenance::<u64>(to_virtual(direct.expose_provenance()) as usize);
    // SAFETY: the alias maps the same frame as `direct`, a static.
    let through_alias = unsafe { alias.read_volatile() };
    through_alias == PROBE && alias as u64 != direct as u64
}
