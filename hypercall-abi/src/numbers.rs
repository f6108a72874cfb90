//! Hypercall and command numbers, and the command word's continuation
//! encoding.
//!
//! Every number was checked against Xen's headers (xen-project/xen, master):
//! `__HYPERVISOR_memory_op` in `xen/include/public/xen.h`; the `XENMEM_*`
//! commands in `xen/include/public/memory.h`; `MEMOP_EXTENT_SHIFT` and
//! `MEMOP_CMD_MASK` in `xen/include/xen/hypercall.h` and their use in
//! `do_memory_op()` (`xen/common/memory.c`). Linux's copy,
//! `include/xen/interface/memory.h`, gives the same numbers for the
//! commands it carries.

use core::fmt;

/// `__HYPERVISOR_memory_op` (`xen/include/public/xen.h`): the hypercall
/// number, passed in RAX.
pub const HYPERVISOR_MEMORY_OP: u64 = 12;

/// `__HYPERVISOR_console_io` (`xen/include/public/xen.h`): the console
/// hypercall of [`protocol`](crate::protocol).
pub const HYPERVISOR_CONSOLE_IO: u64 = 18;

/// `__HYPERVISOR_sched_op` (`xen/include/public/xen.h`): the shutdown
/// hypercall of [`protocol`](crate::protocol).
pub const HYPERVISOR_SCHED_OP: u64 = 29;

/// `MEMOP_EXTENT_SHIFT` (`xen/include/xen/hypercall.h`): bits of the command
/// word below this hold the command; bits from here up hold the extent a
/// continued reservation call resumes at.
pub const MEMOP_EXTENT_SHIFT: u32 = 6;

/// `MEMOP_CMD_MASK` (`xen/include/xen/hypercall.h`): the command's bits.
pub const MEMOP_CMD_MASK: u64 = (1 << MEMOP_EXTENT_SHIFT) - 1;

/// The largest `nr_extents` a reservation may ask for. Xen refuses more in
/// `do_memory_op()` ("Is size too large for us to encode a continuation?":
/// `nr_extents > (UINT_MAX >> MEMOP_EXTENT_SHIFT)`), so that the resume
/// point fits a 32-bit compat guest's command word.
pub const MAX_CONTINUABLE_EXTENTS: u64 = (u32::MAX >> MEMOP_EXTENT_SHIFT) as u64;

/// The `memory_op` commands nvirt decodes (`XENMEM_*`,
/// `xen/include/public/memory.h`).
///
/// Every other command — `machphys_mfn_list` (5), `add_to_physmap` (7),
/// the removed `translate_gpfn_list` (8), `exchange` (11, PV only),
/// `machphys_mapping` (12), `remove_from_physmap` (15) and those from 16 up
/// (PoD targets, sharing, paging, access, `add_to_physmap_batch`, vNUMA
/// information, resources) — is answered `-ENOSYS`, as Xen answers commands
/// it does not implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Command {
    /// `XENMEM_increase_reservation` (0): allocate extents to the domain.
    IncreaseReservation = 0,
    /// `XENMEM_decrease_reservation` (1): give extents back.
    DecreaseReservation = 1,
    /// `XENMEM_maximum_ram_page` (2): the highest machine frame of RAM.
    MaximumRamPage = 2,
    /// `XENMEM_current_reservation` (3): the domain's pages now.
    CurrentReservation = 3,
    /// `XENMEM_maximum_reservation` (4): the domain's page limit.
    MaximumReservation = 4,
    /// `XENMEM_populate_physmap` (6): back the given guest frames with memory.
    PopulatePhysmap = 6,
    /// `XENMEM_memory_map` (9): the domain's (pseudo-physical) E820 map.
    MemoryMap = 9,
    /// `XENMEM_machine_memory_map` (10): the machine's E820 map (privileged).
    MachineMemoryMap = 10,
    /// `XENMEM_set_memory_map` (13): set a domain's E820 map (privileged).
    SetMemoryMap = 13,
    /// `XENMEM_maximum_gpfn` (14): the highest guest frame in use.
    MaximumGpfn = 14,
}

impl Command {
    /// Every command, in numeric order.
    pub const ALL: [Self; 10] = [
        Self::IncreaseReservation,
        Self::DecreaseReservation,
        Self::MaximumRamPage,
        Self::CurrentReservation,
        Self::MaximumReservation,
        Self::PopulatePhysmap,
        Self::MemoryMap,
        Self::MachineMemoryMap,
        Self::SetMemoryMap,
        Self::MaximumGpfn,
    ];

    /// The command numbered `raw`, if nvirt decodes it.
    #[must_use]
    pub const fn from_raw(raw: u64) -> Option<Self> {
        Some(match raw {
            0 => Self::IncreaseReservation,
            1 => Self::DecreaseReservation,
            2 => Self::MaximumRamPage,
            3 => Self::CurrentReservation,
            4 => Self::MaximumReservation,
            6 => Self::PopulatePhysmap,
            9 => Self::MemoryMap,
            10 => Self::MachineMemoryMap,
            13 => Self::SetMemoryMap,
            14 => Self::MaximumGpfn,
            _ => return None,
        })
    }

    /// The command's number.
    #[must_use]
    pub const fn raw(self) -> u64 {
        self as u64
    }

    /// Xen's name for the command.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::IncreaseReservation => "XENMEM_increase_reservation",
            Self::DecreaseReservation => "XENMEM_decrease_reservation",
            Self::MaximumRamPage => "XENMEM_maximum_ram_page",
            Self::CurrentReservation => "XENMEM_current_reservation",
            Self::MaximumReservation => "XENMEM_maximum_reservation",
            Self::PopulatePhysmap => "XENMEM_populate_physmap",
            Self::MemoryMap => "XENMEM_memory_map",
            Self::MachineMemoryMap => "XENMEM_machine_memory_map",
            Self::SetMemoryMap => "XENMEM_set_memory_map",
            Self::MaximumGpfn => "XENMEM_maximum_gpfn",
        }
    }

    /// Whether the command takes a `xen_memory_reservation` and may be
    /// continued.
    #[must_use]
    pub const fn is_reservation(self) -> bool {
        matches!(
            self,
            Self::IncreaseReservation | Self::DecreaseReservation | Self::PopulatePhysmap
        )
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The command word of a `memory_op` call (RDI): a command number in the low
/// [`MEMOP_EXTENT_SHIFT`] bits and, for a continued reservation, the extent
/// to resume at above them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemopCmd {
    op: u64,
    start_extent: u64,
}

impl MemopCmd {
    /// A first call of `command` (start extent 0).
    #[must_use]
    pub const fn new(command: Command) -> Self {
        Self {
            op: command.raw(),
            start_extent: 0,
        }
    }

    /// A call of `command` that resumes at `start_extent`, or `None` if the
    /// extent does not fit the word's upper 58 bits.
    #[must_use]
    pub const fn resuming(command: Command, start_extent: u64) -> Option<Self> {
        if start_extent > (u64::MAX >> MEMOP_EXTENT_SHIFT) {
            None
        } else {
            Some(Self {
                op: command.raw(),
                start_extent,
            })
        }
    }

    /// Splits a command word as the guest passed it. Every word splits;
    /// whether the command exists is [`MemopCmd::command`]'s question.
    #[must_use]
    pub const fn from_raw(raw: u64) -> Self {
        Self {
            op: raw & MEMOP_CMD_MASK,
            start_extent: raw >> MEMOP_EXTENT_SHIFT,
        }
    }

    /// The word to put in RDI.
    #[must_use]
    pub const fn raw(self) -> u64 {
        self.op | (self.start_extent << MEMOP_EXTENT_SHIFT)
    }

    /// The command number, 0 to 63.
    #[must_use]
    pub const fn op(self) -> u64 {
        self.op
    }

    /// The command, if nvirt decodes it.
    #[must_use]
    pub const fn command(self) -> Option<Command> {
        Command::from_raw(self.op)
    }

    /// The extent a continued call resumes at (0 on a first call).
    #[must_use]
    pub const fn start_extent(self) -> u64 {
        self.start_extent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_xens() {
        let expected = [0, 1, 2, 3, 4, 6, 9, 10, 13, 14];
        assert_eq!(Command::ALL.map(Command::raw), expected);
        for c in Command::ALL {
            assert_eq!(Command::from_raw(c.raw()), Some(c));
        }
        for unknown in [5, 7, 8, 11, 12, 15, 16, 63, 64] {
            assert_eq!(Command::from_raw(unknown), None, "{unknown}");
        }
        assert_eq!(HYPERVISOR_MEMORY_OP, 12);
        assert_eq!(MEMOP_CMD_MASK, 0x3f);
        assert_eq!(MAX_CONTINUABLE_EXTENTS, 0x3ff_ffff);
    }

    #[test]
    fn continuation_encoding() {
        let cmd = MemopCmd::resuming(Command::PopulatePhysmap, 512).unwrap();
        assert_eq!(cmd.raw(), 6 | (512 << 6));
        assert_eq!(MemopCmd::from_raw(cmd.raw()), cmd);
        assert_eq!(cmd.command(), Some(Command::PopulatePhysmap));
        let top = MemopCmd::resuming(Command::DecreaseReservation, u64::MAX >> 6).unwrap();
        assert_eq!(top.raw(), u64::MAX - 62);
        assert_eq!(MemopCmd::from_raw(top.raw()), top);
        assert_eq!(
            MemopCmd::resuming(Command::DecreaseReservation, 1 << 58),
            None
        );
        let odd = MemopCmd::from_raw(u64::MAX);
        assert_eq!((odd.op(), odd.start_extent()), (63, u64::MAX >> 6));
        assert_eq!(odd.command(), None);
        assert_eq!(MemopCmd::new(Command::MemoryMap).raw(), 9);
    }
}
