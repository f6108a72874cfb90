//! What the decoder needs besides guest memory: the calling vCPU's
//! registers and mode, who the caller is, and the hypervisor's limits.

use core::num::NonZeroU32;

use crate::numbers::{HYPERVISOR_MEMORY_OP, MAX_CONTINUABLE_EXTENTS, MemopCmd};
use crate::types::{DomId, ExtentOrder, GuestAddr, XenPfn};

/// The registers of the 64-bit HVM hypercall convention, as the guest left
/// them: number in RAX, arguments in RDI, RSI, RDX, R10, R8
/// (`hvm_hypercall()`, `xen/arch/x86/hvm/hypercall.c`). The result goes back
/// in RAX. `memory_op` uses two arguments: the command word (RDI) and the
/// argument's address (RSI).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Registers {
    /// Hypercall number; the result on return.
    pub rax: u64,
    /// Argument 1: the command word.
    pub rdi: u64,
    /// Argument 2: the argument structure's guest address.
    pub rsi: u64,
    /// Argument 3 (unused by `memory_op`).
    pub rdx: u64,
    /// Argument 4 (unused by `memory_op`).
    pub r10: u64,
    /// Argument 5 (unused by `memory_op`).
    pub r8: u64,
}

impl Registers {
    /// The registers of a 32-bit caller (Xen's 32-bit HVM convention:
    /// number in EAX, arguments in EBX, ECX, EDX, ESI, EDI), placed by
    /// argument position: EBX in `rdi`, ECX in `rsi`, EDX in `rdx`, ESI in
    /// `r10`, EDI in `r8`, each the low 32 bits. After
    /// [`Outcome::apply`](crate::host::Outcome::apply), `rax` goes back to
    /// EAX and `rdi` (a continuation's command word) to EBX.
    #[must_use]
    pub const fn compat(eax: u64, ebx: u64, ecx: u64, edx: u64, esi: u64, edi: u64) -> Self {
        Self {
            rax: eax & 0xffff_ffff,
            rdi: ebx & 0xffff_ffff,
            rsi: ecx & 0xffff_ffff,
            rdx: edx & 0xffff_ffff,
            r10: esi & 0xffff_ffff,
            r8: edi & 0xffff_ffff,
        }
    }

    /// The registers of `memory_op(cmd, arg)`.
    #[must_use]
    pub const fn memory_op(cmd: MemopCmd, arg: GuestAddr) -> Self {
        Self {
            rax: HYPERVISOR_MEMORY_OP,
            rdi: cmd.raw(),
            rsi: arg.raw(),
            rdx: 0,
            r10: 0,
            r8: 0,
        }
    }
}

/// The calling vCPU's operating mode, as Xen's `hvm_guest_x86_mode()`
/// classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VcpuMode {
    /// 64-bit long mode: the 64-bit convention and native layouts.
    Bits64,
    /// 32-bit protected or compatibility mode: the 32-bit convention and
    /// Xen's compat layouts (as for 16-bit and real mode).
    Bits32,
    /// 16-bit protected mode.
    Bits16,
    /// Real mode.
    Real,
    /// Virtual-8086 mode.
    Vm86,
}

/// What a hypercall from user mode (CPL > 0, or virtual-8086 mode) gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UserCalls {
    /// `-EPERM` in RAX: what Xen and KVM answer.
    #[default]
    Refuse,
    /// An invalid-opcode fault (#UD) injected into the guest, as Hyper-V
    /// does: the instruction is not a hypercall outside the kernel.
    Fault,
}

/// The calling domain and vCPU state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    domain: DomId,
    mode: VcpuMode,
    cpl: u8,
    privileged: bool,
}

impl Caller {
    /// A call from a 64-bit kernel (CPL 0) of ordinary domain `domain`, or
    /// `None` if `domain` is a reserved id.
    #[must_use]
    pub const fn kernel(domain: DomId) -> Option<Self> {
        Self::new(domain, VcpuMode::Bits64, 0)
    }

    /// A call from domain `domain` in `mode` at privilege level `cpl`, or
    /// `None` if `domain` is a reserved id.
    #[must_use]
    pub const fn new(domain: DomId, mode: VcpuMode, cpl: u8) -> Option<Self> {
        if domain.is_ordinary() {
            Some(Self {
                domain,
                mode,
                cpl,
                privileged: false,
            })
        } else {
            None
        }
    }

    /// Lets the caller use the privileged commands (machine_memory_map,
    /// set_memory_map), as Xen's `XSM_PRIV` lets a control domain.
    #[must_use]
    pub const fn privileged(self) -> Self {
        Self {
            privileged: true,
            ..self
        }
    }

    /// The calling domain.
    #[must_use]
    pub const fn domain(&self) -> DomId {
        self.domain
    }

    /// The vCPU's mode.
    #[must_use]
    pub const fn mode(&self) -> VcpuMode {
        self.mode
    }

    /// The vCPU's current privilege level.
    #[must_use]
    pub const fn cpl(&self) -> u8 {
        self.cpl
    }

    /// Whether the caller may use privileged commands.
    #[must_use]
    pub const fn is_privileged(&self) -> bool {
        self.privileged
    }

    /// Whether the caller uses Xen's 32-bit convention and compat layouts:
    /// every mode but 64-bit (Xen's `hvm_hypercall()` serves 16-bit and
    /// real-mode callers with the 32-bit one too).
    #[must_use]
    pub const fn is_compat(&self) -> bool {
        !matches!(self.mode, VcpuMode::Bits64)
    }

    /// Whether the call comes from user mode in Xen's sense.
    pub(crate) const fn is_user(&self) -> bool {
        match self.mode {
            VcpuMode::Vm86 => true,
            VcpuMode::Real => false,
            _ => self.cpl != 0,
        }
    }
}

/// The hypervisor's limits on what one guest may ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    max_gpfn: XenPfn,
    max_extents: u64,
    max_order: ExtentOrder,
    batch: NonZeroU32,
    numa_nodes: u8,
    max_map_entries: u32,
    user_calls: UserCalls,
}

/// 512 extents per entry: 2 MiB of 4 KiB pages, so a vCPU is back in the
/// guest (where interrupts are delivered) after a bounded amount of work.
const DEFAULT_BATCH: NonZeroU32 = match NonZeroU32::new(512) {
    Some(n) => n,
    None => NonZeroU32::MIN,
};

impl Limits {
    /// The entries `XENMEM_set_memory_map` accepts by default: Xen's
    /// `E820MAX` (1024, `xen/arch/x86/include/asm/e820.h`).
    pub const DEFAULT_MAP_ENTRIES: u32 = 1024;

    /// Limits for a guest whose frame numbers lie below `max_gpfn`
    /// (exclusive; e.g. 2^(MAXPHYADDR − 12)). Defaults: up to
    /// [`MAX_CONTINUABLE_EXTENTS`] extents a call, orders up to 1 GiB
    /// ([`ExtentOrder::PAGE_1G`]), 512 extents per entry, one NUMA node,
    /// 1024 map entries, `-EPERM` for user-mode calls.
    #[must_use]
    pub const fn new(max_gpfn: XenPfn) -> Self {
        Self {
            max_gpfn,
            max_extents: MAX_CONTINUABLE_EXTENTS,
            max_order: ExtentOrder::PAGE_1G,
            batch: DEFAULT_BATCH,
            numa_nodes: 1,
            max_map_entries: Self::DEFAULT_MAP_ENTRIES,
            user_calls: UserCalls::Refuse,
        }
    }

    /// At most `n` extents a call (never more than
    /// [`MAX_CONTINUABLE_EXTENTS`], whose resume point Xen's command word
    /// can carry).
    #[must_use]
    pub const fn max_extents(self, n: u64) -> Self {
        let n = if n < MAX_CONTINUABLE_EXTENTS {
            n
        } else {
            MAX_CONTINUABLE_EXTENTS
        };
        Self {
            max_extents: n,
            ..self
        }
    }

    /// Extents no larger than `order`.
    #[must_use]
    pub const fn max_order(self, order: ExtentOrder) -> Self {
        Self {
            max_order: order,
            ..self
        }
    }

    /// At most `n` extents per hypervisor entry; longer requests continue.
    #[must_use]
    pub const fn batch(self, n: NonZeroU32) -> Self {
        Self { batch: n, ..self }
    }

    /// The guest has `n` NUMA nodes (physical or virtual) it may name.
    #[must_use]
    pub const fn numa_nodes(self, n: u8) -> Self {
        Self {
            numa_nodes: n,
            ..self
        }
    }

    /// At most `n` entries in memory maps read from or written to the guest.
    #[must_use]
    pub const fn max_map_entries(self, n: u32) -> Self {
        Self {
            max_map_entries: n,
            ..self
        }
    }

    /// What user-mode calls get.
    #[must_use]
    pub const fn user_calls(self, policy: UserCalls) -> Self {
        Self {
            user_calls: policy,
            ..self
        }
    }

    /// The exclusive bound on guest frame numbers.
    #[must_use]
    pub const fn gpfn_limit(&self) -> XenPfn {
        self.max_gpfn
    }

    /// The most extents a call may ask for.
    #[must_use]
    pub const fn extent_limit(&self) -> u64 {
        self.max_extents
    }

    /// The largest extent order.
    #[must_use]
    pub const fn order_limit(&self) -> ExtentOrder {
        self.max_order
    }

    /// Extents per hypervisor entry.
    #[must_use]
    pub const fn batch_size(&self) -> u64 {
        self.batch.get() as u64
    }

    /// NUMA nodes the guest may name.
    #[must_use]
    pub const fn node_count(&self) -> u8 {
        self.numa_nodes
    }

    /// The most map entries read or written.
    #[must_use]
    pub const fn map_entry_limit(&self) -> u32 {
        self.max_map_entries
    }

    /// The user-mode call policy.
    #[must_use]
    pub const fn user_call_policy(&self) -> UserCalls {
        self.user_calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_clamp_to_what_continuations_can_carry() {
        let l = Limits::new(XenPfn::new(1 << 20)).max_extents(u64::MAX);
        assert_eq!(l.extent_limit(), MAX_CONTINUABLE_EXTENTS);
        assert_eq!(l.max_extents(10).extent_limit(), 10);
        assert_eq!(l.batch_size(), 512);
    }

    #[test]
    fn user_mode_is_xens() {
        let d = DomId::new(1);
        let user = |mode, cpl| Caller::new(d, mode, cpl).unwrap().is_user();
        assert!(!user(VcpuMode::Bits64, 0));
        assert!(user(VcpuMode::Bits64, 3));
        assert!(user(VcpuMode::Bits32, 1));
        assert!(user(VcpuMode::Vm86, 0));
        assert!(!user(VcpuMode::Real, 3), "real mode has no CPL");
        assert!(Caller::kernel(DomId::SELF).is_none());
    }
}
