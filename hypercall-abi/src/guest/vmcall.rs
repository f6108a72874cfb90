//! The crate's only unsafe code: the hypercall instruction and CPUID.
//!
//! The convention is Xen's 64-bit HVM one (`hvm_hypercall()`,
//! `xen/arch/x86/hvm/hypercall.c`): number in RAX, arguments in RDI, RSI,
//! RDX, R10, R8, result in RAX. A hypervisor may change every argument
//! register — Xen rewrites RDI when it continues a call and, in debug
//! builds, scrambles the argument registers on return — so all five are
//! clobbers here, as Linux's hypercall macros declare them.

use core::arch::asm;
use core::convert::Infallible;

use crate::discovery::XenLeaves;
use crate::guest::insn::{HypercallInsn, vendor_string};
use crate::guest::{Arg, Extents, Transport};
use crate::layout::{MemoryDomain, MemoryMap, MemoryReservation};
use crate::numbers::{HYPERVISOR_CONSOLE_IO, HYPERVISOR_MEMORY_OP, HYPERVISOR_SCHED_OP, MemopCmd};
use crate::protocol::{CONSOLEIO_WRITE, ProtocolTransport, SCHEDOP_SHUTDOWN, SchedShutdown};
use crate::types::GuestAddr;

/// The real transport: VMCALL or VMMCALL from inside a guest, issued
/// directly or through the hypervisor's hypercall page.
#[derive(Clone, Copy, Debug)]
pub struct Vmcall {
    insn: HypercallInsn,
    translate: fn(usize) -> u64,
    /// The hypercall page, if calls go through it.
    page: Option<usize>,
}

fn identity(addr: usize) -> u64 {
    addr as u64
}

impl Vmcall {
    /// Calls with `insn` from an identity-mapped guest: a pointer's value is
    /// the guest-physical address the hypervisor reads.
    ///
    /// # Safety
    ///
    /// Every address this transport passes must be, numerically, the guest
    /// address of the same memory as the hypervisor resolves it (true for an
    /// identity-mapped guest under nvirt's hypervisor, which reads guest
    /// handles as guest-physical addresses), and the hypervisor must follow
    /// the `memory_op` ABI: read and write only the argument structure and
    /// the arrays it points to, within their lengths (and only read the
    /// buffer of a console write and the argument of a shutdown, as
    /// [`protocol`](crate::protocol) says). Otherwise the hypervisor writes
    /// memory Rust believes it owns elsewhere.
    #[must_use]
    pub const unsafe fn identity_mapped(insn: HypercallInsn) -> Self {
        Self {
            insn,
            translate: identity,
            page: None,
        }
    }

    /// Calls with `insn`, passing each argument's address through
    /// `translate` (virtual to guest-physical, for a guest with paging).
    ///
    /// # Safety
    ///
    /// `translate` must map the start of every argument structure and array
    /// to the address under which the hypervisor finds the same bytes, and
    /// each of them must be contiguous in that address space (for instance,
    /// no structure or array crosses a page boundary unless the pages are
    /// physically adjacent). The hypervisor must follow the ABI as for
    /// [`Vmcall::identity_mapped`].
    #[must_use]
    pub const unsafe fn new(insn: HypercallInsn, translate: fn(usize) -> u64) -> Self {
        Self {
            insn,
            translate,
            page: None,
        }
    }

    /// Calls through the hypercall page at `page` (the address this code
    /// executes it at), as Xen guests do: hypercall `n` is a `call` to the
    /// stub at `page + 32 * n`, which holds the instruction the hypervisor
    /// chose. Addresses are passed through `translate` as for
    /// [`Vmcall::new`]. `insn` is reported by [`Vmcall::insn`] only.
    ///
    /// # Safety
    ///
    /// As for [`Vmcall::new`]; and `page` must hold the hypervisor's
    /// hypercall page (installed with [`install_hypercall_page`]), mapped
    /// executable, for as long as the transport is used.
    #[must_use]
    pub const unsafe fn through_page(
        insn: HypercallInsn,
        page: usize,
        translate: fn(usize) -> u64,
    ) -> Self {
        Self {
            insn,
            translate,
            page: Some(page),
        }
    }

    /// The instruction used.
    #[must_use]
    pub const fn insn(&self) -> HypercallInsn {
        self.insn
    }

    /// Whether calls go through a hypercall page.
    #[must_use]
    pub const fn uses_page(&self) -> bool {
        self.page.is_some()
    }

    /// Issues hypercall `nr`, directly or through the page.
    ///
    /// # Safety
    ///
    /// As for [`hypercall3`].
    unsafe fn call(&self, nr: u64, a0: u64, a1: u64, a2: u64) -> u64 {
        match self.page {
            // SAFETY: the caller's contract; the page holds the stubs
            // (`through_page`'s contract).
            Some(page) => unsafe { page_call(page + 32 * (nr as usize & 127), nr, a0, a1, a2) },
            // SAFETY: the caller's contract.
            None => unsafe { hypercall3(self.insn, nr, a0, a1, a2) },
        }
    }

    /// Issues hypercall `nr` with raw arguments in RDI, RSI and RDX and
    /// returns RAX: for calls the typed API cannot express (a test guest's
    /// malformed ones).
    ///
    /// # Safety
    ///
    /// Every byte the hypervisor may write through an address among the
    /// arguments must be memory the caller lends it for the call (or
    /// memory the hypervisor refuses to touch, such as an address outside
    /// the guest).
    pub unsafe fn raw(&mut self, nr: u64, a0: u64, a1: u64, a2: u64) -> u64 {
        // SAFETY: per this function's contract.
        unsafe { self.call(nr, a0, a1, a2) }
    }
}

impl ProtocolTransport for Vmcall {
    type Error = Infallible;

    fn console_write(&mut self, bytes: &[u8]) -> Result<u64, Infallible> {
        let buffer = (self.translate)(bytes.as_ptr().expose_provenance());
        let len = bytes.len() as u64;
        // SAFETY: the constructor's contract binds the hypervisor to only
        // read the `len` bytes at `buffer`, which are borrowed for the call.
        Ok(unsafe { self.call(HYPERVISOR_CONSOLE_IO, CONSOLEIO_WRITE, len, buffer) })
    }

    fn sched_shutdown(&mut self, arg: &SchedShutdown) -> Result<u64, Infallible> {
        let at = (self.translate)(core::ptr::from_ref(arg).expose_provenance());
        // SAFETY: as for `console_write`: the argument is only read.
        Ok(unsafe { self.call(HYPERVISOR_SCHED_OP, SCHEDOP_SHUTDOWN, at, 0) })
    }
}

impl Transport for Vmcall {
    type Error = Infallible;

    fn memory_op(&mut self, cmd: MemopCmd, mut arg: Arg<'_>) -> Result<u64, Infallible> {
        let arg_addr = point_handles(&mut arg, self.translate);
        // SAFETY: the constructor's contract makes `arg_addr` and the handles
        // inside it name exactly the memory borrowed in `arg`, which outlives
        // the call (it is borrowed until this function returns, so it stays
        // put and is ours alone), and binds the hypervisor to touch nothing
        // else.
        Ok(unsafe { self.call(HYPERVISOR_MEMORY_OP, cmd.raw(), arg_addr, 0) })
    }
}

/// Points the guest handles inside `arg` at its arrays and returns the
/// argument's own address, all through `to_guest`. The pointers' provenance
/// is exposed: the hypervisor reads and writes through these addresses.
fn point_handles(arg: &mut Arg<'_>, to_guest: fn(usize) -> u64) -> u64 {
    match arg {
        Arg::Null => 0,
        Arg::Reservation { header, extents } => {
            // The hypervisor writes through an in/out array: expose it
            // through a mutable pointer.
            let array = match extents {
                Extents::In(e) => e.as_ptr().expose_provenance(),
                Extents::InOut(e) => e.as_mut_ptr().expose_provenance(),
            };
            header.set_extent_start(GuestAddr::new(to_guest(array)));
            to_guest(core::ptr::from_mut::<MemoryReservation>(header).expose_provenance())
        }
        Arg::MemoryMap { header, buffer } => {
            header.set_buffer(GuestAddr::new(to_guest(
                buffer.as_mut_ptr().expose_provenance(),
            )));
            to_guest(core::ptr::from_mut::<MemoryMap>(header).expose_provenance())
        }
        Arg::Domain(domain) => {
            to_guest(core::ptr::from_ref::<MemoryDomain>(domain).expose_provenance())
        }
    }
}

/// Issues hypercall `nr` with three arguments and returns RAX.
///
/// # Safety
///
/// The caller must run in a guest whose hypervisor implements hypercall
/// `nr` with the instruction `insn`, and every byte the hypervisor may
/// access through `a0`, `a1`, `a2` must be memory the caller lends it for
/// the call.
unsafe fn hypercall3(insn: HypercallInsn, nr: u64, a0: u64, a1: u64, a2: u64) -> u64 {
    let ret: u64;
    match insn {
        HypercallInsn::Vmcall => {
            // SAFETY: per this function's contract. No stack use; memory may
            // be read and written (the default), flags are clobbered.
            unsafe {
                asm!(
                    "vmcall",
                    inlateout("rax") nr => ret,
                    inlateout("rdi") a0 => _,
                    inlateout("rsi") a1 => _,
                    inlateout("rdx") a2 => _,
                    lateout("r10") _,
                    lateout("r8") _,
                    options(nostack),
                );
            }
        }
        HypercallInsn::Vmmcall => {
            // SAFETY: as for VMCALL above.
            unsafe {
                asm!(
                    "vmmcall",
                    inlateout("rax") nr => ret,
                    inlateout("rdi") a0 => _,
                    inlateout("rsi") a1 => _,
                    inlateout("rdx") a2 => _,
                    lateout("r10") _,
                    lateout("r8") _,
                    options(nostack),
                );
            }
        }
    }
    ret
}

/// Calls the hypercall-page stub at `stub` with hypercall `nr` and three
/// arguments; returns RAX. The stub sets EAX itself; RAX is loaded too so a
/// stub of another number is caught by the hypervisor's answer.
///
/// # Safety
///
/// `stub` must be the stub for `nr` in the hypervisor's hypercall page, and
/// the arguments must satisfy [`hypercall3`]'s contract.
unsafe fn page_call(stub: usize, nr: u64, a0: u64, a1: u64, a2: u64) -> u64 {
    let ret: u64;
    // SAFETY: per this function's contract: the stub is `mov eax, nr;
    // vmcall/vmmcall; ret`, which uses the stack only for the return
    // address (the target has no red zone), and clobbers what a hypercall
    // does.
    unsafe {
        asm!(
            "call {stub}",
            stub = in(reg) stub,
            inlateout("rax") nr => ret,
            inlateout("rdi") a0 => _,
            inlateout("rsi") a1 => _,
            inlateout("rdx") a2 => _,
            lateout("r10") _,
            lateout("r8") _,
        );
    }
    ret
}

/// Looks for a Xen-compatible hypervisor in the CPUID leaves from
/// 0x4000_0000 ([`XenLeaves::parse`]).
#[allow(
    unused_unsafe,
    reason = "`__cpuid_count` is a safe function in newer Rust but unsafe in the workspace's minimum, 1.85"
)]
#[must_use]
pub fn discover() -> Option<XenLeaves> {
    XenLeaves::parse(|leaf, subleaf| {
        // SAFETY: every x86_64 processor has CPUID; leaves a CPU does not
        // have answer some other leaf's values, which `parse` checks.
        let r = unsafe { core::arch::x86_64::__cpuid_count(leaf, subleaf) };
        [r.eax, r.ebx, r.ecx, r.edx]
    })
}

/// Asks the hypervisor to write its hypercall page at guest-physical
/// `gpa` (page aligned) by writing `gpa` to `msr` (`XenLeaves::hypercall_msr`).
///
/// # Safety
///
/// The guest must run at CPL 0 under a hypervisor that announced `msr`
/// as its hypercall-page MSR, and the 4 KiB at `gpa` must be memory the
/// guest hands over to the hypervisor (no Rust object lives there).
pub unsafe fn install_hypercall_page(msr: u32, gpa: u64) {
    // SAFETY: per this function's contract.
    unsafe {
        asm!(
            "wrmsr",
            in("ecx") msr,
            in("eax") gpa as u32,
            in("edx") (gpa >> 32) as u32,
            options(nostack),
        );
    }
}

/// The CPU's vendor string (CPUID leaf 0).
#[allow(
    unused_unsafe,
    reason = "`__cpuid` is a safe function in newer Rust but unsafe in the workspace's minimum, 1.85"
)]
pub(crate) fn cpu_vendor() -> [u8; 12] {
    // SAFETY: every x86_64 processor has CPUID, and leaf 0 always exists.
    let r = unsafe { core::arch::x86_64::__cpuid(0) };
    vendor_string(r.ebx, r.edx, r.ecx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::E820Entry;
    use crate::types::{DomId, XenPfn};

    fn offset(addr: usize) -> u64 {
        addr as u64 + 0x1000
    }

    #[test]
    fn handles_point_at_the_arrays() {
        let mut header = MemoryReservation::new(GuestAddr::NULL, 2, 0, 0, DomId::SELF);
        let mut extents = [XenPfn::new(1), XenPfn::new(2)];
        let array = extents.as_ptr() as u64;
        let at = core::ptr::from_ref(&header) as u64;
        let mut arg = Arg::Reservation {
            header: &mut header,
            extents: Extents::InOut(&mut extents),
        };
        assert_eq!(point_handles(&mut arg, identity), at);
        assert_eq!(point_handles(&mut arg, offset), at + 0x1000);
        assert_eq!(header.extent_start(), GuestAddr::new(array + 0x1000));

        let mut map = MemoryMap::new(4, GuestAddr::NULL);
        let mut buffer = [E820Entry::default(); 4];
        let buf_at = buffer.as_ptr() as u64;
        let map_at = core::ptr::from_ref(&map) as u64;
        let mut arg = Arg::MemoryMap {
            header: &mut map,
            buffer: &mut buffer,
        };
        assert_eq!(point_handles(&mut arg, identity), map_at);
        assert_eq!(map.buffer(), GuestAddr::new(buf_at));

        let domain = MemoryDomain::new(DomId::SELF);
        let mut arg = Arg::Domain(&domain);
        assert_eq!(
            point_handles(&mut arg, identity),
            core::ptr::from_ref(&domain) as u64
        );
        assert_eq!(point_handles(&mut Arg::Null, identity), 0);
    }
}
