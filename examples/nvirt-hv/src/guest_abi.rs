//! What the hypervisor and the test guest (`examples/nvirt-guest`) agree
//! on: the guest image header, the guest-physical layout of its boot
//! structures, what its command line tells it, and the console and
//! shutdown hypercalls (the memory hypercalls are `memory_op`, from
//! `nvirt-hypercall-abi`).
//!
//! Guest-physical layout, in address order:
//!
//! | address | what |
//! |---|---|
//! | `0x1000` | `hvm_start_info` (PVH, version 1): the guest's boot information, in RBX at entry |
//! | `0x1100` | its memory map (`hvm_memmap_table_entry`, at most [`MEMMAP_MAX`]) |
//! | `0x1800` | its command line ([`GuestParams`]), NUL-terminated |
//! | `0x2000` | a GDT: null, 64-bit code (`0x08`), data (`0x10`) |
//! | `0x1_0000` | identity page tables: PML4, PDPT, one page directory per GiB (2 MiB pages) |
//! | `0x10_0000` | the guest image, loaded as its header says |
//!
//! The guest starts in 64-bit long mode (the hypervisor sets CR0, CR4, EFER,
//! CR3 and the segment registers directly), paging through the identity
//! tables above, RBX = [`START_INFO_GPA`], RIP = the header's entry.
//!
//! Hypercalls follow Xen's x86-64 register convention (number in RAX,
//! arguments in RDI, RSI, RDX, R10, R8; result in RAX) through VMMCALL on
//! AMD and VMCALL on Intel; the guest picks by the CPUID vendor.

use core::fmt;

/// Where `hvm_start_info` goes.
pub const START_INFO_GPA: u64 = 0x1000;
/// Where its memory map goes.
pub const MEMMAP_GPA: u64 = 0x1100;
/// Most entries of the guest's memory map.
pub const MEMMAP_MAX: usize = 64;
/// Where the guest's command line goes.
pub const CMDLINE_GPA: u64 = 0x1800;
/// Its room, the terminating NUL included.
pub const CMDLINE_MAX: usize = 0x800;
/// Where the guest's GDT goes.
pub const GDT_GPA: u64 = 0x2000;
/// Where the guest's page tables start.
pub const PAGE_TABLES_GPA: u64 = 0x1_0000;
/// Where the guest's page tables must end (below the EBDA).
pub const PAGE_TABLES_END: u64 = 0x9_0000;
/// Where the guest image is expected to load.
pub const IMAGE_GPA: u64 = 0x10_0000;
/// Guest code selector (64-bit).
pub const GUEST_CODE_SELECTOR: u16 = 0x08;
/// Guest data selector.
pub const GUEST_DATA_SELECTOR: u16 = 0x10;

/// Xen's `__HYPERVISOR_console_io` (`public/xen.h`): RDI = command, RSI =
/// byte count, RDX = buffer (guest-physical here: the test guest is
/// identity mapped).
pub const HYPERCALL_CONSOLE_IO: u64 = 18;
/// Xen's `CONSOLEIO_write`.
pub const CONSOLEIO_WRITE: u64 = 0;
/// Longest console write accepted in one call.
pub const CONSOLE_WRITE_MAX: u64 = 4096;
/// Xen's `__HYPERVISOR_sched_op` (`public/xen.h`).
pub const HYPERCALL_SCHED_OP: u64 = 29;
/// Xen's `SCHEDOP_shutdown` (`public/sched.h`): RSI = guest-physical address
/// of `struct sched_shutdown { u32 reason }`.
pub const SCHEDOP_SHUTDOWN: u64 = 2;
/// Xen's `SHUTDOWN_poweroff`: the guest finished normally.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// Xen's `SHUTDOWN_crash`: the guest failed.
pub const SHUTDOWN_CRASH: u32 = 3;
/// Xen's `ENOSYS` (`public/errno.h`), returned negated.
pub const ENOSYS: i64 = 38;
/// Xen's `EFAULT`, returned negated.
pub const EFAULT: i64 = 14;
/// Xen's `EINVAL`, returned negated.
pub const EINVAL: i64 = 22;

/// Xen's `__HYPERVISOR_memory_op` (`public/xen.h`), served through
/// `nvirt-hypercall-abi`.
pub const HYPERCALL_MEMORY_OP: u64 = 12;

/// What the guest's command line tells it: the memory it was configured
/// with, so it can check its map against it. Written as
/// `nvirt.ram=BYTES nvirt.nvram=BYTES nvirt.nv_type=N` (decimal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestParams {
    /// RAM bytes.
    pub ram: u64,
    /// NVRAM bytes.
    pub nvram: u64,
    /// E820 type of the NVRAM region.
    pub nv_type: u32,
}

impl fmt::Display for GuestParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nvirt.ram={} nvirt.nvram={} nvirt.nv_type={}",
            self.ram, self.nvram, self.nv_type
        )
    }
}

impl GuestParams {
    /// Reads the three keys from `cmdline` (other words are ignored);
    /// `None` if one is missing or not a decimal number.
    #[must_use]
    pub fn parse(cmdline: &str) -> Option<Self> {
        let (mut ram, mut nvram, mut nv_type) = (None, None, None);
        for word in cmdline.split_ascii_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            match key {
                "nvirt.ram" => ram = Some(value.parse().ok()?),
                "nvirt.nvram" => nvram = Some(value.parse().ok()?),
                "nvirt.nv_type" => nv_type = Some(value.parse().ok()?),
                _ => {}
            }
        }
        Some(Self {
            ram: ram?,
            nvram: nvram?,
            nv_type: nv_type?,
        })
    }
}

/// The first bytes of a guest image.
pub const IMAGE_MAGIC: [u8; 8] = *b"NVGUEST1";
/// Bytes of [`ImageHeader`] on media.
pub const IMAGE_HEADER_LEN: usize = 48;
/// The header version this hypervisor understands.
pub const IMAGE_VERSION: u32 = 1;

/// The header at the start of a flat guest image:
///
/// | offset | field |
/// |---|---|
/// | 0 | magic `NVGUEST1` |
/// | 8 | header length `u32` (48) |
/// | 12 | version `u32` (1) |
/// | 16 | load address (guest-physical) `u64` |
/// | 24 | bytes in the file `u64` |
/// | 32 | bytes in memory (file plus zeroed `.bss`) `u64` |
/// | 40 | entry point (guest-physical) `u64` |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Guest-physical load address.
    pub load_gpa: u64,
    /// Bytes of the image file.
    pub file_len: u64,
    /// Bytes the image occupies in memory.
    pub mem_len: u64,
    /// Guest-physical entry point.
    pub entry_gpa: u64,
}

/// Why a guest image is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Fewer bytes than the header.
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// Wrong magic.
    Magic,
    /// A version or header length this hypervisor does not know.
    Version {
        /// The image's version.
        version: u32,
        /// The image's header length.
        header_len: u32,
    },
    /// The header's sizes, load address or entry point are inconsistent.
    Layout,
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { len } => write!(f, "guest image of {len} bytes has no header"),
            Self::Magic => f.write_str("guest image does not start with NVGUEST1"),
            Self::Version {
                version,
                header_len,
            } => write!(
                f,
                "guest image header version {version} (length {header_len}) is not supported"
            ),
            Self::Layout => f.write_str("guest image header has an inconsistent layout"),
        }
    }
}

impl core::error::Error for ImageError {}

impl ImageHeader {
    /// Parses and checks the header at the start of `bytes`: the file part
    /// is within `bytes`, the image loads at [`IMAGE_GPA`] or above on a
    /// page boundary, and the entry lies in the file part.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        let header = bytes
            .get(..IMAGE_HEADER_LEN)
            .ok_or(ImageError::Truncated { len: bytes.len() })?;
        if header[..8] != IMAGE_MAGIC {
            return Err(ImageError::Magic);
        }
        let u32_at = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let (header_len, version) = (u32_at(8), u32_at(12));
        if version != IMAGE_VERSION || header_len as usize != IMAGE_HEADER_LEN {
            return Err(ImageError::Version {
                version,
                header_len,
            });
        }
        let h = Self {
            load_gpa: u64_at(16),
            file_len: u64_at(24),
            mem_len: u64_at(32),
            entry_gpa: u64_at(40),
        };
        let file_end = h.load_gpa.checked_add(h.file_len);
        let fits = h.file_len >= IMAGE_HEADER_LEN as u64
            && h.file_len <= bytes.len() as u64
            && h.file_len <= h.mem_len
            && h.load_gpa >= IMAGE_GPA
            && h.load_gpa % 4096 == 0
            && h.load_gpa.checked_add(h.mem_len).is_some()
            && file_end.is_some_and(|end| (h.load_gpa..end).contains(&h.entry_gpa));
        if !fits {
            return Err(ImageError::Layout);
        }
        Ok(h)
    }

    /// One past the last guest-physical byte of the loaded image.
    #[must_use]
    pub const fn end_gpa(&self) -> u64 {
        // Checked in `parse`.
        self.load_gpa.saturating_add(self.mem_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(load: u64, file: u64, mem: u64, entry: u64) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&IMAGE_MAGIC);
        h.extend_from_slice(&48u32.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes());
        for v in [load, file, mem, entry] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h.resize(file.min(4096) as usize, 0x90);
        h
    }

    #[test]
    fn guest_params_round_trip() {
        let p = GuestParams {
            ram: 64 << 20,
            nvram: 1 << 30,
            nv_type: 12,
        };
        let text = p.to_string();
        assert!(text.len() < CMDLINE_MAX);
        assert_eq!(GuestParams::parse(&text), Some(p));
        assert_eq!(GuestParams::parse(&format!("quiet {text} x=y")), Some(p));
        assert_eq!(GuestParams::parse("nvirt.ram=1 nvirt.nvram=2"), None);
        assert_eq!(
            GuestParams::parse("nvirt.ram=1 nvirt.nvram=x nvirt.nv_type=7"),
            None
        );
    }

    #[test]
    fn parses_a_good_header() {
        let bytes = header(IMAGE_GPA, 0x800, 0x3000, IMAGE_GPA + 0x40);
        let h = ImageHeader::parse(&bytes).unwrap();
        assert_eq!(h.mem_len, 0x3000);
        assert_eq!(h.end_gpa(), IMAGE_GPA + 0x3000);
    }

    #[test]
    fn refuses_inconsistent_headers() {
        assert_eq!(
            ImageHeader::parse(&[0; 10]),
            Err(ImageError::Truncated { len: 10 })
        );
        let mut bad_magic = header(IMAGE_GPA, 0x800, 0x800, IMAGE_GPA);
        bad_magic[0] = b'X';
        assert_eq!(ImageHeader::parse(&bad_magic), Err(ImageError::Magic));
        let mut bad_version = header(IMAGE_GPA, 0x800, 0x800, IMAGE_GPA);
        bad_version[12] = 2;
        assert!(matches!(
            ImageHeader::parse(&bad_version),
            Err(ImageError::Version { .. })
        ));
        for (load, file, mem, entry) in [
            (IMAGE_GPA, 0x800, 0x400, IMAGE_GPA),         // mem < file
            (IMAGE_GPA, 0x800, 0x800, IMAGE_GPA + 0x800), // entry past file
            (0x1000, 0x800, 0x800, 0x1000),               // below 1 MiB
            (IMAGE_GPA + 1, 0x800, 0x800, IMAGE_GPA + 1), // unaligned
            (!0xfff, 0x800, 0x2000, !0xfff),              // wraps
        ] {
            let bytes = header(load, file, mem, entry);
            assert_eq!(
                ImageHeader::parse(&bytes),
                Err(ImageError::Layout),
                "{load:#x}"
            );
        }
        // A header claiming more file bytes than there are.
        let mut short = header(IMAGE_GPA, 0x800, 0x800, IMAGE_GPA);
        short.truncate(0x100);
        assert_eq!(ImageHeader::parse(&short), Err(ImageError::Layout));
    }
}
