//! What the boot loader tells the hypervisor, whichever protocol booted it:
//! the memory map (sanitized by `nvirt_e820`), the command line, the
//! modules, where to look for the ACPI RSDP, and the bytes the boot
//! information itself occupies (which no allocator may hand out).
//!
//! | protocol | EAX at entry | EBX | parser |
//! |---|---|---|---|
//! | Multiboot2 (GRUB) | `0x36d76289` | boot information (tags) | [`multiboot::read_multiboot2`] |
//! | Multiboot1 (QEMU `-kernel`) | `0x2badb002` | `multiboot_info` | [`multiboot::read_multiboot1`] |
//! | PVH | set to `0x336ec578` by the PVH entry | `hvm_start_info` | [`pvh::read_pvh`] |

pub mod multiboot;
pub mod pvh;
mod strings;

use core::fmt;
use core::ops::Range;

use nvirt_e820::{FormatError, MapError, MemoryMap};

use crate::phys::{PhysError, PhysRead};
use crate::ranges::{RangeSet, RangeSetFull};
pub use strings::FixedString;

/// EAX after a Multiboot2 loader.
pub const MULTIBOOT2_MAGIC: u32 = 0x36d7_6289;
/// EAX after a Multiboot1 loader.
pub const MULTIBOOT1_MAGIC: u32 = 0x2bad_b002;
/// EBX magic of a PVH entry, and the first field of `hvm_start_info`.
pub use nvirt_hypercall_abi::protocol::PVH_MAGIC;

/// Entries the host memory map can hold.
pub const MAP_CAPACITY: usize = 128;
/// Longest command line kept (longer ones are an error, not truncated).
pub const CMDLINE_MAX: usize = 1024;
/// Most modules kept.
pub const MAX_MODULES: usize = 8;
/// Longest module name kept (a Linux guest's command line travels in its
/// kernel module's name).
pub const MODULE_NAME_MAX: usize = 512;
/// Most separate pieces of boot information tracked for reservation.
pub const FOOTPRINT_CAPACITY: usize = 32;

/// The boot protocol that started the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Multiboot2.
    Multiboot2,
    /// Multiboot 1.
    Multiboot1,
    /// Xen's PVH direct boot.
    Pvh,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Multiboot2 => "Multiboot2",
            Self::Multiboot1 => "Multiboot1",
            Self::Pvh => "PVH",
        })
    }
}

/// A boot module: its bytes in physical memory and its name (command line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Physical range of its contents.
    pub range: Range<u64>,
    /// Its name or command line.
    pub name: FixedString<MODULE_NAME_MAX>,
}

impl Module {
    /// The words of the module's string after the first word equal to
    /// `word`, or `None` when no word is. The word may stand anywhere:
    /// QEMU's Multiboot1 modules put the file's path first, GRUB's
    /// `module2` does not.
    pub fn words_after<'m>(&'m self, word: &str) -> Option<impl Iterator<Item = &'m str> + 'm> {
        let mut words = self.name.as_str().split_ascii_whitespace();
        words.by_ref().find(|w| *w == word)?;
        Some(words)
    }
}

/// Where the boot loader says the ACPI RSDP is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsdpHint {
    /// A copy of the RSDP (Multiboot2 tags 14 and 15): its first `len` bytes.
    Copy {
        /// The copy, zero-padded.
        bytes: [u8; 36],
        /// Bytes the tag held.
        len: usize,
    },
    /// The RSDP's physical address (PVH `rsdp_paddr`).
    Address(u64),
}

/// Everything the hypervisor needs from its boot loader.
#[derive(Clone, Debug)]
pub struct BootInfo {
    /// How it was booted.
    pub protocol: Protocol,
    /// The firmware memory map, sanitized with Linux's rules.
    pub map: MemoryMap<MAP_CAPACITY>,
    /// The command line.
    pub cmdline: FixedString<CMDLINE_MAX>,
    modules: [Option<Module>; MAX_MODULES],
    /// Where to find the RSDP, if the loader said.
    pub rsdp: Option<RsdpHint>,
    /// Physical bytes the boot information occupies (structures, map,
    /// strings, module lists, not module contents).
    pub footprint: RangeSet<FOOTPRINT_CAPACITY>,
}

impl BootInfo {
    fn new(protocol: Protocol) -> Self {
        Self {
            protocol,
            map: MemoryMap::new(),
            cmdline: FixedString::new(),
            modules: [const { None }; MAX_MODULES],
            rsdp: None,
            footprint: RangeSet::new(),
        }
    }

    /// The modules, in the loader's order.
    pub fn modules(&self) -> impl Iterator<Item = &Module> + '_ {
        self.modules.iter().flatten()
    }

    fn push_module(&mut self, module: Module) -> Result<(), BootError> {
        let slot = self
            .modules
            .iter_mut()
            .find(|m| m.is_none())
            .ok_or(BootError::TooMany {
                what: "modules",
                max: MAX_MODULES,
            })?;
        *slot = Some(module);
        Ok(())
    }

    /// Records that `len` bytes at `addr` belong to the boot information.
    fn occupies(&mut self, addr: u64, len: u64) -> Result<(), BootError> {
        let end = addr.checked_add(len).ok_or(BootError::Phys(PhysError {
            addr,
            len: usize::try_from(len).unwrap_or(usize::MAX),
        }))?;
        self.footprint.insert(addr..end)?;
        Ok(())
    }
}

/// Why the boot information cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    /// EAX at entry matched no supported protocol.
    UnknownMagic(u32),
    /// `hvm_start_info.magic` is wrong.
    BadPvhMagic(u32),
    /// A structure points outside readable memory.
    Phys(PhysError),
    /// A structure is larger than the hypervisor accepts.
    TooLarge {
        /// Which structure.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// More items than the hypervisor keeps.
    TooMany {
        /// Which items.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// No memory map was passed.
    NoMemoryMap,
    /// A module's end lies before its start.
    BadModule {
        /// Start address.
        start: u64,
        /// End address.
        end: u64,
    },
    /// The memory map is malformed.
    Format(FormatError),
    /// The memory map does not fit or has an invalid entry.
    Map(MapError),
    /// Too many pieces of boot information to track.
    Footprint(RangeSetFull),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownMagic(m) => write!(f, "unknown boot protocol (EAX {m:#x})"),
            Self::BadPvhMagic(m) => write!(f, "hvm_start_info magic {m:#x} is not {PVH_MAGIC:#x}"),
            Self::Phys(e) => e.fmt(f),
            Self::TooLarge { what, size, max } => {
                write!(f, "{what} of {size} bytes exceeds the limit of {max}")
            }
            Self::TooMany { what, max } => write!(f, "more than {max} {what}"),
            Self::NoMemoryMap => f.write_str("the boot loader passed no memory map"),
            Self::BadModule { start, end } => {
                write!(f, "module ends ({end:#x}) before it starts ({start:#x})")
            }
            Self::Format(e) => write!(f, "memory map: {e}"),
            Self::Map(e) => write!(f, "memory map: {e}"),
            Self::Footprint(e) => write!(f, "boot information: {e}"),
        }
    }
}

impl core::error::Error for BootError {}

impl From<PhysError> for BootError {
    fn from(e: PhysError) -> Self {
        Self::Phys(e)
    }
}

impl From<FormatError> for BootError {
    fn from(e: FormatError) -> Self {
        Self::Format(e)
    }
}

impl From<MapError> for BootError {
    fn from(e: MapError) -> Self {
        Self::Map(e)
    }
}

impl From<RangeSetFull> for BootError {
    fn from(e: RangeSetFull) -> Self {
        Self::Footprint(e)
    }
}

/// Reads the boot information of whichever protocol `magic` (EAX at entry)
/// names, at physical address `info`.
pub fn read(magic: u32, info: u64, mem: &impl PhysRead) -> Result<BootInfo, BootError> {
    match magic {
        MULTIBOOT2_MAGIC => multiboot::read_multiboot2(info, mem),
        MULTIBOOT1_MAGIC => multiboot::read_multiboot1(info, mem),
        PVH_MAGIC => pvh::read_pvh(info, mem),
        other => Err(BootError::UnknownMagic(other)),
    }
}

/// Reads a NUL-terminated string of at most `N` bytes at `addr`; returns it
/// and the bytes it occupies (terminator included).
fn read_c_string<const N: usize>(
    mem: &impl PhysRead,
    addr: u64,
    what: &'static str,
) -> Result<(FixedString<N>, u64), BootError> {
    let mut s = FixedString::new();
    for i in 0..=N as u64 {
        let at = addr.checked_add(i).ok_or(PhysError { addr, len: N })?;
        let byte = mem.read_u8(at)?;
        if byte == 0 {
            return Ok((s, i + 1));
        }
        if !s.push_byte(byte) {
            break;
        }
    }
    Err(BootError::TooLarge {
        what,
        size: N as u64 + 1,
        max: N as u64,
    })
}

#[cfg(test)]
mod tests;
