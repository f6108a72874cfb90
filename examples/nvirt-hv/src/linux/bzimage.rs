//! A bzImage's real-mode setup header: the fields a 64-bit boot loader
//! reads, each checked before it is used.
//!
//! | offset | field | use here |
//! |---|---|---|
//! | `0x1f1` | `setup_sects` | where the protected-mode kernel starts in the file (0 means 4) |
//! | `0x1fe` | `boot_flag` | 0xAA55 |
//! | `0x202` | `header` | "HdrS" |
//! | `0x206` | `version` | at least 2.12 (`xloadflags`, `pref_address`, `init_size`) |
//! | `0x211` | `loadflags` | bit 0 `LOADED_HIGH`: a bzImage |
//! | `0x214` | `code32_start` | the load address of a kernel that cannot move |
//! | `0x22c` | `initrd_addr_max` | the highest byte an initrd may use |
//! | `0x230` | `kernel_alignment` | a relocatable kernel's alignment |
//! | `0x234` | `relocatable_kernel` | whether it may load at `pref_address` |
//! | `0x236` | `xloadflags` | bit 0 `XLF_KERNEL_64`: has the 64-bit entry at load + 0x200 |
//! | `0x238` | `cmdline_size` | the longest command line, without its NUL |
//! | `0x258` | `pref_address` | where a relocatable kernel prefers to load |
//! | `0x260` | `init_size` | bytes from the load address the kernel needs to boot |
//!
//! The header ends at 0x202 plus the byte at 0x201 (the jump's offset).

use core::fmt;

/// Where the setup header starts.
pub const HEADER_START: usize = 0x1f1;
/// The least boot-protocol version this loader accepts: 2.12.
pub const MIN_VERSION: u16 = 0x020c;
/// The 64-bit entry's offset from the load address.
pub const ENTRY_64_OFFSET: u64 = 0x200;
/// `loadflags` bit 0: the kernel loads at 1 MiB or above (a bzImage).
const LOADED_HIGH: u8 = 1;
/// `xloadflags` bit 0: the kernel has the 64-bit entry.
const XLF_KERNEL_64: u16 = 1;
/// Bytes of the real-mode sectors.
const SECTOR: usize = 512;

/// Why a file is not a bzImage this loader can start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinuxImageError {
    /// Shorter than the setup header, or than its own setup sectors.
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// No "HdrS" at 0x202 or no 0xAA55 at 0x1fe: not a Linux kernel.
    NotLinux,
    /// A boot protocol older than 2.12.
    TooOld {
        /// The header's version.
        version: u16,
    },
    /// Not a bzImage (`LOADED_HIGH` clear): a zImage loads below 1 MiB.
    NotBzImage,
    /// No 64-bit entry point (`XLF_KERNEL_64` clear).
    No64BitEntry,
    /// The setup header claims to end beyond the real-mode sectors.
    HeaderTooLong {
        /// Where it claims to end.
        end: usize,
    },
    /// A relocatable kernel's alignment is not a power of two, or its
    /// preferred address is not aligned to it.
    BadAlignment {
        /// `kernel_alignment`.
        alignment: u32,
        /// `pref_address`.
        pref_address: u64,
    },
    /// `init_size` is smaller than the protected-mode kernel itself.
    InitSizeTooSmall {
        /// `init_size`.
        init_size: u32,
        /// Bytes of the protected-mode kernel.
        kernel: usize,
    },
}

impl fmt::Display for LinuxImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { need, have } => write!(
                f,
                "Linux kernel image truncated: {have} bytes, its header needs {need}"
            ),
            Self::NotLinux => f.write_str("not a Linux kernel (no \"HdrS\" setup header at 0x202)"),
            Self::TooOld { version } => write!(
                f,
                "Linux boot protocol {}.{} is older than 2.12 (no 64-bit entry)",
                version >> 8,
                version & 0xff
            ),
            Self::NotBzImage => f.write_str("a zImage (LOADED_HIGH clear): only bzImages load"),
            Self::No64BitEntry => {
                f.write_str("the kernel has no 64-bit entry (XLF_KERNEL_64 clear)")
            }
            Self::HeaderTooLong { end } => write!(
                f,
                "the setup header claims to end at {end:#x}, beyond the setup sectors"
            ),
            Self::BadAlignment {
                alignment,
                pref_address,
            } => write!(
                f,
                "kernel_alignment {alignment:#x} is not a power of two dividing pref_address {pref_address:#x}"
            ),
            Self::InitSizeTooSmall { init_size, kernel } => write!(
                f,
                "init_size {init_size:#x} is smaller than the {kernel:#x}-byte kernel"
            ),
        }
    }
}

impl core::error::Error for LinuxImageError {}

/// A checked bzImage: its setup header's values and its two parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BzImage<'a> {
    /// The setup header's bytes, `HEADER_START` to its end.
    pub header: &'a [u8],
    /// The protected-mode kernel: everything after the setup sectors.
    pub kernel: &'a [u8],
    /// The boot-protocol version.
    pub version: u16,
    /// Where the kernel loads: `pref_address` if it is relocatable,
    /// `code32_start` if not.
    pub load_address: u64,
    /// Bytes from the load address the kernel needs while it boots.
    pub init_size: u64,
    /// The highest guest-physical byte an initrd may occupy.
    pub initrd_addr_max: u64,
    /// The longest command line, its NUL excluded.
    pub cmdline_size: u32,
    /// `xloadflags`.
    pub xloadflags: u16,
}

impl<'a> BzImage<'a> {
    /// Checks `image` and reads its setup header.
    pub fn parse(image: &'a [u8]) -> Result<Self, LinuxImageError> {
        const MIN_LEN: usize = 0x264;
        if image.len() < MIN_LEN {
            return Err(LinuxImageError::Truncated {
                need: MIN_LEN,
                have: image.len(),
            });
        }
        if image[0x202..0x206] != *b"HdrS" || u16_at(image, 0x1fe) != 0xaa55 {
            return Err(LinuxImageError::NotLinux);
        }
        let version = u16_at(image, 0x206);
        if version < MIN_VERSION {
            return Err(LinuxImageError::TooOld { version });
        }
        let setup_sects = match image[0x1f1] {
            0 => 4,
            n => usize::from(n),
        };
        let kernel_start = (setup_sects + 1) * SECTOR;
        if image.len() < kernel_start {
            return Err(LinuxImageError::Truncated {
                need: kernel_start,
                have: image.len(),
            });
        }
        let header_end = 0x202 + usize::from(image[0x201]);
        if header_end > kernel_start || header_end < MIN_LEN {
            return Err(LinuxImageError::HeaderTooLong { end: header_end });
        }
        if image[0x211] & LOADED_HIGH == 0 {
            return Err(LinuxImageError::NotBzImage);
        }
        let xloadflags = u16_at(image, 0x236);
        if xloadflags & XLF_KERNEL_64 == 0 {
            return Err(LinuxImageError::No64BitEntry);
        }
        let alignment = u32_at(image, 0x230);
        let pref_address = u64_at(image, 0x258);
        let load_address = if image[0x234] != 0 {
            if !alignment.is_power_of_two() || pref_address % u64::from(alignment) != 0 {
                return Err(LinuxImageError::BadAlignment {
                    alignment,
                    pref_address,
                });
            }
            pref_address
        } else {
            u64::from(u32_at(image, 0x214))
        };
        let kernel = &image[kernel_start..];
        let init_size = u32_at(image, 0x260);
        if (init_size as usize) < kernel.len() {
            return Err(LinuxImageError::InitSizeTooSmall {
                init_size,
                kernel: kernel.len(),
            });
        }
        Ok(Self {
            header: &image[HEADER_START..header_end],
            kernel,
            version,
            load_address,
            init_size: u64::from(init_size),
            initrd_addr_max: u64::from(u32_at(image, 0x22c)),
            cmdline_size: u32_at(image, 0x238),
            xloadflags,
        })
    }

    /// Whether `image` claims to be a Linux kernel ("HdrS" at 0x202), good
    /// or not: how the hypervisor tells a Linux guest from its own.
    #[must_use]
    pub fn is_linux(image: &[u8]) -> bool {
        image.get(0x202..0x206) == Some(b"HdrS")
    }

    /// The 64-bit entry point.
    #[must_use]
    pub const fn entry_64(&self) -> u64 {
        self.load_address + ENTRY_64_OFFSET
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | u64::from(u32_at(b, at + 4)) << 32
}
