//! PVH boot information: `struct hvm_start_info` (Xen
//! `public/arch-x86/hvm/start_info.h`).
//!
//! | offset | field |
//! |---|---|
//! | 0 | `magic: u32` = `0x336ec578` |
//! | 4 | `version: u32` (1 adds the memory map) |
//! | 8 | `flags: u32` |
//! | 12 | `nr_modules: u32` |
//! | 16 | `modlist_paddr: u64` (32-byte `hvm_modlist_entry`: `paddr`, `size`, `cmdline_paddr`, reserved) |
//! | 24 | `cmdline_paddr: u64` |
//! | 32 | `rsdp_paddr: u64` |
//! | 40 | `memmap_paddr: u64` |
//! | 48 | `memmap_entries: u32` |
//! | 52 | reserved `u32` |

use nvirt_e820::{MemoryMap, pvh};

use super::{
    BootError, BootInfo, CMDLINE_MAX, MAX_MODULES, MODULE_NAME_MAX, Module, PVH_MAGIC, Protocol,
    RsdpHint, read_c_string,
};
use crate::phys::PhysRead;

/// Bytes of `hvm_start_info` (version 1).
pub const START_INFO_LEN: u64 = 56;
/// Bytes of one `hvm_modlist_entry`.
pub const MODLIST_ENTRY_LEN: u64 = 32;
/// Bytes of one `hvm_memmap_table_entry`.
pub const MEMMAP_ENTRY_LEN: usize = 24;
/// Most memory-map entries read.
pub const MEMMAP_MAX: usize = super::MAP_CAPACITY;

/// Reads `hvm_start_info` at `info`.
pub fn read_pvh(info: u64, mem: &impl PhysRead) -> Result<BootInfo, BootError> {
    let magic = mem.read_u32(info)?;
    if magic != PVH_MAGIC {
        return Err(BootError::BadPvhMagic(magic));
    }
    let mut boot = BootInfo::new(Protocol::Pvh);
    boot.occupies(info, START_INFO_LEN)?;
    let field32 = |offset: u64| mem.read_u32(info.saturating_add(offset));
    let field64 = |offset: u64| mem.read_u64(info.saturating_add(offset));
    let version = field32(4)?;

    let cmdline = field64(24)?;
    if cmdline != 0 {
        let (text, len) = read_c_string::<CMDLINE_MAX>(mem, cmdline, "command line")?;
        boot.cmdline = text;
        boot.occupies(cmdline, len)?;
    }
    let rsdp = field64(32)?;
    if rsdp != 0 {
        boot.rsdp = Some(RsdpHint::Address(rsdp));
    }

    let count = u64::from(field32(12)?);
    let list = field64(16)?;
    if count > MAX_MODULES as u64 {
        return Err(BootError::TooMany {
            what: "modules",
            max: MAX_MODULES,
        });
    }
    if count > 0 {
        boot.occupies(list, count * MODLIST_ENTRY_LEN)?;
    }
    for i in 0..count {
        let entry = list
            .checked_add(i * MODLIST_ENTRY_LEN)
            .ok_or(BootError::BadModule {
                start: list,
                end: 0,
            })?;
        let start = mem.read_u64(entry)?;
        let size = mem.read_u64(entry.saturating_add(8))?;
        let name_addr = mem.read_u64(entry.saturating_add(16))?;
        let end = start
            .checked_add(size)
            .ok_or(BootError::BadModule { start, end: size })?;
        let name = if name_addr == 0 {
            super::FixedString::new()
        } else {
            let (name, len) = read_c_string::<MODULE_NAME_MAX>(mem, name_addr, "module name")?;
            boot.occupies(name_addr, len)?;
            name
        };
        boot.push_module(Module {
            range: start..end,
            name,
        })?;
    }

    let entries = if version >= 1 {
        field32(48)? as usize
    } else {
        0
    };
    if entries == 0 {
        return Err(BootError::NoMemoryMap);
    }
    if entries > MEMMAP_MAX {
        return Err(BootError::TooMany {
            what: "memory-map entries",
            max: MEMMAP_MAX,
        });
    }
    let addr = field64(40)?;
    let mut buffer = [0u8; MEMMAP_MAX * MEMMAP_ENTRY_LEN];
    let raw = &mut buffer[..entries * MEMMAP_ENTRY_LEN];
    mem.read(addr, raw)?;
    boot.occupies(addr, raw.len() as u64)?;
    boot.map = MemoryMap::from_firmware(pvh::read(raw, entries)?)?;
    Ok(boot)
}
