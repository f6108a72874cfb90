//! Multiboot2 and Multiboot 1 boot information.
//!
//! Multiboot2 (the Multiboot2 specification §3.6): `total_size: u32`,
//! `reserved: u32`, then 8-byte-aligned tags `type: u32`, `size: u32`. Tags
//! used: 1 command line, 3 module (`mod_start: u32`, `mod_end: u32`, name),
//! 6 memory map, 14 and 15 copies of the ACPI 1.0 and 2.0 RSDP.
//!
//! Multiboot 1 (§3.3): `flags: u32` at 0; bit 2 → `cmdline` at 16; bit 3 →
//! `mods_count` at 20, `mods_addr` at 24 (16-byte entries `mod_start`,
//! `mod_end`, `string`, reserved); bit 6 → `mmap_length` at 44, `mmap_addr`
//! at 48.

use nvirt_e820::{MemoryMap, multiboot1, multiboot2};

use super::{
    BootError, BootInfo, CMDLINE_MAX, MODULE_NAME_MAX, Module, Protocol, RsdpHint, read_c_string,
};
use crate::phys::PhysRead;

/// Largest Multiboot2 boot information accepted (GRUB's is a few KiB).
pub const MULTIBOOT2_MAX: usize = 16 * 1024;
/// Largest Multiboot 1 memory-map buffer accepted.
pub const MULTIBOOT1_MMAP_MAX: usize = 8 * 1024;
/// Bytes of `multiboot_info` reserved (through the framebuffer fields).
const MULTIBOOT1_INFO_LEN: u64 = 116;

const TAG_CMDLINE: u32 = 1;
const TAG_MODULE: u32 = 3;
const TAG_ACPI_OLD: u32 = 14;
const TAG_ACPI_NEW: u32 = 15;

/// Reads Multiboot2 boot information at `info`.
pub fn read_multiboot2(info: u64, mem: &impl PhysRead) -> Result<BootInfo, BootError> {
    let total = mem.read_u32(info)? as usize;
    if !(8..=MULTIBOOT2_MAX).contains(&total) {
        return Err(BootError::TooLarge {
            what: "Multiboot2 boot information",
            size: total as u64,
            max: MULTIBOOT2_MAX as u64,
        });
    }
    let mut buffer = [0u8; MULTIBOOT2_MAX];
    let mbi = &mut buffer[..total];
    mem.read(info, mbi)?;
    let mbi = &*mbi;

    let mut boot = BootInfo::new(Protocol::Multiboot2);
    boot.occupies(info, total as u64)?;
    let mut have_map = false;
    for (tag_type, tag) in multiboot2::tags(mbi) {
        let body = tag.get(8..).unwrap_or_default();
        match tag_type {
            TAG_CMDLINE => {
                let text = until_nul(body);
                boot.cmdline = super::FixedString::from_bytes(text).ok_or(BootError::TooLarge {
                    what: "command line",
                    size: text.len() as u64,
                    max: CMDLINE_MAX as u64,
                })?;
            }
            TAG_MODULE => {
                let field = |at: usize| {
                    body.get(at..at + 4)
                        .and_then(|b| b.try_into().ok())
                        .map(u32::from_le_bytes)
                };
                let (Some(start), Some(end)) = (field(0), field(4)) else {
                    return Err(BootError::TooLarge {
                        what: "truncated module tag",
                        size: tag.len() as u64,
                        max: 16,
                    });
                };
                let name = until_nul(body.get(8..).unwrap_or_default());
                let name = &name[..name.len().min(MODULE_NAME_MAX)];
                boot.push_module(module(u64::from(start), u64::from(end), name)?)?;
            }
            multiboot2::MEMORY_MAP_TAG => {
                boot.map.extend_firmware(multiboot2::read(tag)?)?;
                have_map = true;
            }
            // Prefer the ACPI 2.0 copy (it leads to the XSDT).
            TAG_ACPI_OLD | TAG_ACPI_NEW if tag_type == TAG_ACPI_NEW || boot.rsdp.is_none() => {
                let mut bytes = [0u8; 36];
                let len = body.len().min(36);
                bytes[..len].copy_from_slice(&body[..len]);
                boot.rsdp = Some(RsdpHint::Copy { bytes, len });
            }
            _ => {}
        }
    }
    if !have_map {
        return Err(BootError::NoMemoryMap);
    }
    Ok(boot)
}

/// Reads Multiboot 1 boot information at `info`.
pub fn read_multiboot1(info: u64, mem: &impl PhysRead) -> Result<BootInfo, BootError> {
    let mut boot = BootInfo::new(Protocol::Multiboot1);
    boot.occupies(info, MULTIBOOT1_INFO_LEN)?;
    let flags = mem.read_u32(info)?;
    let at = |offset: u64| info.saturating_add(offset);

    if flags & 1 << 2 != 0 {
        let addr = u64::from(mem.read_u32(at(16))?);
        let (cmdline, len) = read_c_string::<CMDLINE_MAX>(mem, addr, "command line")?;
        boot.cmdline = cmdline;
        boot.occupies(addr, len)?;
    }
    if flags & 1 << 3 != 0 {
        let count = mem.read_u32(at(20))?;
        let list = u64::from(mem.read_u32(at(24))?);
        if count as usize > super::MAX_MODULES {
            return Err(BootError::TooMany {
                what: "modules",
                max: super::MAX_MODULES,
            });
        }
        boot.occupies(list, u64::from(count) * 16)?;
        for i in 0..u64::from(count) {
            let entry = list + i * 16;
            let start = u64::from(mem.read_u32(entry)?);
            let end = u64::from(mem.read_u32(entry + 4)?);
            let string = u64::from(mem.read_u32(entry + 8)?);
            let name = if string == 0 {
                super::FixedString::new()
            } else {
                let (name, len) = read_c_string::<MODULE_NAME_MAX>(mem, string, "module name")?;
                boot.occupies(string, len)?;
                name
            };
            let mut m = module(start, end, b"")?;
            m.name = name;
            boot.push_module(m)?;
        }
    }
    if flags & 1 << 6 == 0 {
        return Err(BootError::NoMemoryMap);
    }
    let length = mem.read_u32(at(44))? as usize;
    let addr = u64::from(mem.read_u32(at(48))?);
    if length > MULTIBOOT1_MMAP_MAX {
        return Err(BootError::TooLarge {
            what: "Multiboot1 memory map",
            size: length as u64,
            max: MULTIBOOT1_MMAP_MAX as u64,
        });
    }
    let mut buffer = [0u8; MULTIBOOT1_MMAP_MAX];
    let raw = &mut buffer[..length];
    mem.read(addr, raw)?;
    boot.occupies(addr, length as u64)?;
    boot.map = MemoryMap::from_firmware(multiboot1::read(raw)?)?;
    Ok(boot)
}

fn module(start: u64, end: u64, name: &[u8]) -> Result<Module, BootError> {
    if end < start {
        return Err(BootError::BadModule { start, end });
    }
    Ok(Module {
        range: start..end,
        name: super::FixedString::from_bytes(name).unwrap_or_default(),
    })
}

fn until_nul(bytes: &[u8]) -> &[u8] {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..len]
}
