//! Finding an ACPI table: RSDP (from the boot loader, or searched for in the
//! EBDA and the BIOS area) → RSDT (ACPI 1.0, what SeaBIOS gives) or XSDT
//! (ACPI 2.0+, what OVMF gives) → the table with a given signature, with
//! every length and checksum checked (ACPI 6.5 §5.2.5–§5.2.8).
//!
//! RSDP layout: `"RSD PTR "` at 0, checksum of the first 20 bytes at 8,
//! OEM id at 9, revision at 15, RSDT address (`u32`) at 16; revision 2 adds
//! length (`u32`) at 20, XSDT address (`u64`) at 24 and an extended
//! checksum of all 36 bytes at 32. Every system table starts with the
//! 36-byte header: signature at 0, length (`u32`) at 4, checksum at 9.

use core::fmt;

use crate::bootinfo::RsdpHint;
use crate::phys::{PhysError, PhysRead};

/// Bytes of a system description table header.
pub const HEADER_LEN: usize = 36;
/// Largest RSDT/XSDT read (more than 500 tables).
pub const ROOT_MAX: usize = 4096;
/// Where the BIOS keeps the EBDA's segment.
const EBDA_POINTER: u64 = 0x40e;
/// The BIOS read-only area searched for the RSDP.
const BIOS_AREA: core::ops::Range<u64> = 0xe_0000..0x10_0000;

/// A validated RSDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rsdp {
    /// 0 for ACPI 1.0, 2 for 2.0 and later.
    pub revision: u8,
    /// The RSDT's physical address.
    pub rsdt: u32,
    /// The XSDT's physical address (revision 2 and later, if non-zero).
    pub xsdt: Option<u64>,
}

/// Why an ACPI table could not be found or trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// No RSDP in the EBDA or the BIOS area, and none from the boot loader.
    NoRsdp,
    /// Bytes that should be a given structure are not.
    Signature {
        /// What was expected.
        expected: &'static str,
        /// Where.
        at: u64,
    },
    /// A checksum does not add up to zero.
    Checksum {
        /// Which structure.
        what: &'static str,
        /// Where.
        at: u64,
    },
    /// A length field is out of bounds.
    Length {
        /// Which structure.
        what: &'static str,
        /// Where.
        at: u64,
        /// Its length.
        len: u32,
    },
    /// A structure points at unreadable memory.
    Phys(PhysError),
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRsdp => f.write_str("no ACPI RSDP found"),
            Self::Signature { expected, at } => write!(f, "no {expected} signature at {at:#x}"),
            Self::Checksum { what, at } => write!(f, "{what} at {at:#x} has a bad checksum"),
            Self::Length { what, at, len } => {
                write!(f, "{what} at {at:#x} has an invalid length {len}")
            }
            Self::Phys(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for AcpiError {}

impl From<PhysError> for AcpiError {
    fn from(e: PhysError) -> Self {
        Self::Phys(e)
    }
}

fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b)) == 0
}

impl Rsdp {
    /// Validates an RSDP from its bytes (20 for revision 0, 36 after);
    /// `at` only labels errors.
    pub fn parse(bytes: &[u8], at: u64) -> Result<Self, AcpiError> {
        let v1 = bytes.get(..20).ok_or(AcpiError::Length {
            what: "RSDP",
            at,
            len: bytes.len() as u32,
        })?;
        if &v1[..8] != b"RSD PTR " {
            return Err(AcpiError::Signature {
                expected: "RSD PTR",
                at,
            });
        }
        if !checksum_ok(v1) {
            return Err(AcpiError::Checksum { what: "RSDP", at });
        }
        let revision = v1[15];
        let rsdt = u32::from_le_bytes([v1[16], v1[17], v1[18], v1[19]]);
        let mut xsdt = None;
        if revision >= 2 {
            let v2 = bytes.get(..36).ok_or(AcpiError::Length {
                what: "RSDP 2.0",
                at,
                len: bytes.len() as u32,
            })?;
            if !checksum_ok(v2) {
                return Err(AcpiError::Checksum {
                    what: "RSDP 2.0",
                    at,
                });
            }
            let mut addr = [0u8; 8];
            addr.copy_from_slice(&v2[24..32]);
            xsdt = Some(u64::from_le_bytes(addr)).filter(|&a| a != 0);
        }
        Ok(Self {
            revision,
            rsdt,
            xsdt,
        })
    }

    /// Reads and validates the RSDP at `addr`.
    pub fn read(mem: &impl PhysRead, addr: u64) -> Result<Self, AcpiError> {
        let mut bytes = [0u8; 36];
        mem.read(addr, &mut bytes[..20])?;
        if bytes[15] >= 2 {
            mem.read(addr, &mut bytes)?;
        }
        Self::parse(&bytes, addr)
    }

    /// The RSDP the boot loader pointed at or copied, else the one found by
    /// searching the first KiB of the EBDA and then 0xE0000–0xFFFFF on
    /// 16-byte boundaries.
    pub fn locate(mem: &impl PhysRead, hint: Option<&RsdpHint>) -> Result<Self, AcpiError> {
        match hint {
            Some(RsdpHint::Copy { bytes, len }) => {
                return Self::parse(&bytes[..(*len).min(36)], 0);
            }
            Some(RsdpHint::Address(addr)) => return Self::read(mem, *addr),
            None => {}
        }
        let ebda = mem.read_u16(EBDA_POINTER).map(|seg| u64::from(seg) << 4);
        let mut areas = [None, Some(BIOS_AREA)];
        if let Some(base) = ebda.ok().filter(|&b| (0x8_0000..0xa_0000).contains(&b)) {
            areas[0] = Some(base..base + 1024);
        }
        for area in areas.into_iter().flatten() {
            let mut addr = area.start;
            while addr + 20 <= area.end {
                let mut signature = [0u8; 8];
                if mem.read(addr, &mut signature).is_ok() && &signature == b"RSD PTR " {
                    if let Ok(rsdp) = Self::read(mem, addr) {
                        return Ok(rsdp);
                    }
                }
                addr += 16;
            }
        }
        Err(AcpiError::NoRsdp)
    }

    /// Finds the table with `signature` through the XSDT (if any, else the
    /// RSDT), copies it into `buffer` and returns its address and bytes
    /// (checksum verified), or `None` if no root entry has that signature.
    pub fn find_table<'b>(
        &self,
        mem: &impl PhysRead,
        signature: [u8; 4],
        buffer: &'b mut [u8],
    ) -> Result<Option<(u64, &'b [u8])>, AcpiError> {
        let (root_addr, root_sig, entry_len) = match self.xsdt {
            Some(x) => (x, b"XSDT", 8),
            None => (u64::from(self.rsdt), b"RSDT", 4),
        };
        let mut root = [0u8; ROOT_MAX];
        let root = read_table(mem, root_addr, root_sig, &mut root)?;
        for entry in root[HEADER_LEN..].chunks_exact(entry_len) {
            let mut addr = [0u8; 8];
            addr[..entry_len].copy_from_slice(entry);
            let addr = u64::from_le_bytes(addr);
            let mut sig = [0u8; 4];
            if mem.read(addr, &mut sig).is_err() || sig != signature {
                continue;
            }
            let table = read_table(mem, addr, &signature, buffer)?;
            return Ok(Some((addr, table)));
        }
        Ok(None)
    }
}

/// Reads a whole system table at `addr` into `buffer`, checking its
/// signature, length and checksum.
fn read_table<'b>(
    mem: &impl PhysRead,
    addr: u64,
    signature: &[u8; 4],
    buffer: &'b mut [u8],
) -> Result<&'b [u8], AcpiError> {
    let name = match signature {
        b"RSDT" => "RSDT",
        b"XSDT" => "XSDT",
        b"NFIT" => "NFIT",
        _ => "ACPI table",
    };
    let mut header = [0u8; HEADER_LEN];
    mem.read(addr, &mut header)?;
    if &header[..4] != signature {
        return Err(AcpiError::Signature {
            expected: name,
            at: addr,
        });
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let bad_length = AcpiError::Length {
        what: name,
        at: addr,
        len,
    };
    if (len as usize) < HEADER_LEN {
        return Err(bad_length);
    }
    let table = buffer.get_mut(..len as usize).ok_or(bad_length)?;
    mem.read(addr, table)?;
    if !checksum_ok(table) {
        return Err(AcpiError::Checksum {
            what: name,
            at: addr,
        });
    }
    Ok(table)
}

#[cfg(test)]
mod tests;
