//! Putting a Linux kernel, its initrd and its command line into guest
//! RAM, and the CPU state its 64-bit entry expects.
//!
//! Low guest memory (below the 1 MiB the kernel never loads under):
//!
//! | guest-physical | what |
//! |---|---|
//! | `GDT_GPA` (0x2000) | GDT: null, null, `__BOOT_CS` 0x10 (64-bit code), `__BOOT_DS` 0x18 (data) |
//! | [`ZERO_PAGE_GPA`] | the zero page |
//! | [`CMDLINE_GPA`] | the command line, NUL-terminated |
//! | `PAGE_TABLES_GPA` | identity tables over the guest's address space (2 MiB pages) |
//!
//! The kernel goes to its load address (`pref_address` for a relocatable
//! kernel) and must have `init_size` bytes of RAM from there; the initrd
//! goes as high in low RAM as `initrd_addr_max` allows, above the kernel's
//! `init_size` (the decompressor uses all of it).

use core::fmt;
use core::ops::Range;

use nvirt_e820::synth::LEGACY_HOLE_END;
use nvirt_e820::{GuestMap, WriteError};
use nvirt_hypercall_abi::protocol::{GDT_GPA, INITIAL_RSP, PAGE_TABLES_GPA};

use super::bzimage::{BzImage, LinuxImageError};
use super::zero_page::{self, BootPointers, ZERO_PAGE_LEN};
use crate::guest_memory::GuestAccessError;
use crate::guest_setup::{self, GuestStart, GuestWrite, SetupError};

/// Where the zero page goes.
pub const ZERO_PAGE_GPA: u64 = 0x3000;
/// Where the command line goes.
pub const CMDLINE_GPA: u64 = 0x4000;
/// The command line's room, its NUL included.
pub const CMDLINE_ROOM: usize = 0x1000;
/// `__BOOT_CS`: the 64-bit code selector the boot protocol asks for.
pub const BOOT_CS: u16 = 0x10;
/// `__BOOT_DS`: the data selector.
pub const BOOT_DS: u16 = 0x18;
const PAGE: u64 = 4096;
/// The GDT: two null descriptors, then flat 64-bit code and flat data.
const GDT: [u64; 4] = [0, 0, 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff];

// The low structures never overlap each other or the page tables.
const _: () = {
    assert!(GDT_GPA.get() + (GDT.len() * 8) as u64 <= ZERO_PAGE_GPA);
    assert!(ZERO_PAGE_GPA + ZERO_PAGE_LEN as u64 <= CMDLINE_GPA);
    assert!(CMDLINE_GPA + CMDLINE_ROOM as u64 <= PAGE_TABLES_GPA.get());
    assert!(BOOT_CS as usize == 2 * 8 && BOOT_DS as usize == 3 * 8);
};

/// Why a Linux guest cannot be put in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinuxLoadError {
    /// The kernel image is not one this loader starts.
    Image(LinuxImageError),
    /// The guest has no RAM below its PCI hole.
    NoLowRam,
    /// The kernel's `[load, load + init_size)` is not inside low RAM above 1 MiB.
    KernelOutsideRam {
        /// The range the kernel needs.
        needs: (u64, u64),
        /// Low RAM.
        ram: (u64, u64),
    },
    /// The command line is longer than the kernel or this loader takes.
    CmdlineTooLong {
        /// Its bytes.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// The command line contains a NUL byte.
    CmdlineNul,
    /// No room for the initrd between the kernel's `init_size` and the
    /// top of low RAM (or `initrd_addr_max`).
    InitrdDoesNotFit {
        /// Its bytes.
        len: u64,
        /// The room there is.
        room: (u64, u64),
    },
    /// The E820 map does not fit the zero page.
    Map(WriteError),
    /// The page tables or a write failed.
    Setup(SetupError),
}

impl fmt::Display for LinuxLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Image(e) => e.fmt(f),
            Self::NoLowRam => f.write_str("the guest has no RAM below 4 GiB for a Linux kernel"),
            Self::KernelOutsideRam { needs, ram } => write!(
                f,
                "the Linux kernel needs guest RAM {:#x}-{:#x} (load address + init_size); low RAM is {:#x}-{:#x}",
                needs.0, needs.1, ram.0, ram.1
            ),
            Self::CmdlineTooLong { len, max } => {
                write!(f, "Linux command line of {len} bytes exceeds {max}")
            }
            Self::CmdlineNul => f.write_str("Linux command line contains a NUL byte"),
            Self::InitrdDoesNotFit { len, room } => write!(
                f,
                "initrd of {len} bytes does not fit guest RAM {:#x}-{:#x} above the kernel",
                room.0, room.1
            ),
            Self::Map(e) => write!(f, "guest memory map in the zero page: {e}"),
            Self::Setup(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for LinuxLoadError {}

impl From<GuestAccessError> for LinuxLoadError {
    fn from(e: GuestAccessError) -> Self {
        Self::Setup(SetupError::Access(e))
    }
}

/// Where a Linux guest's pieces went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxPlacement {
    /// The protected-mode kernel, `init_size` long.
    pub kernel: Range<u64>,
    /// The initrd (empty if none).
    pub initrd: Range<u64>,
    /// The boot-protocol version.
    pub version: u16,
}

/// Loads the bzImage `image` with `initrd` and `cmdline` into guest memory
/// for `layout`; returns the entry state and where everything went.
pub fn load<const N: usize>(
    mem: &mut impl GuestWrite,
    image: &[u8],
    initrd: &[u8],
    cmdline: &str,
    layout: &GuestMap<N>,
) -> Result<(GuestStart, LinuxPlacement), LinuxLoadError> {
    let kernel = BzImage::parse(image).map_err(LinuxLoadError::Image)?;
    let ram = layout.ram[0].clone().ok_or(LinuxLoadError::NoLowRam)?;
    let load = kernel.load_address;
    let kernel_end = load
        .checked_add(kernel.init_size)
        .and_then(|end| end.checked_next_multiple_of(PAGE));
    let kernel_range = match kernel_end {
        Some(end) if load >= LEGACY_HOLE_END.max(ram.start) && end <= ram.end => load..end,
        _ => {
            return Err(LinuxLoadError::KernelOutsideRam {
                needs: (load, load.saturating_add(kernel.init_size)),
                ram: (ram.start, ram.end),
            });
        }
    };
    let text = cmdline.as_bytes();
    let max = (kernel.cmdline_size as usize).min(CMDLINE_ROOM - 1);
    if text.len() > max {
        return Err(LinuxLoadError::CmdlineTooLong {
            len: text.len(),
            max,
        });
    }
    if text.contains(&0) {
        return Err(LinuxLoadError::CmdlineNul);
    }
    let initrd_range = place_initrd(initrd.len() as u64, &kernel, kernel_range.end, &ram)?;

    mem.write(load, kernel.kernel)?;
    if !initrd.is_empty() {
        mem.write(initrd_range.start, initrd)?;
    }
    mem.write(CMDLINE_GPA, text)?;
    mem.write(CMDLINE_GPA + text.len() as u64, &[0])?;
    let pointers = BootPointers {
        cmdline: CMDLINE_GPA,
        initrd: (initrd_range.start, initrd.len() as u64),
    };
    let page =
        zero_page::build(&kernel, layout.map.entries(), pointers).map_err(LinuxLoadError::Map)?;
    mem.write(ZERO_PAGE_GPA, &page)?;
    let mut gdt = [0u8; GDT.len() * 8];
    for (slot, d) in gdt.chunks_exact_mut(8).zip(GDT) {
        slot.copy_from_slice(&d.to_le_bytes());
    }
    mem.write(GDT_GPA.get(), &gdt)?;
    let cr3 = guest_setup::identity_tables(mem, layout.map.end()).map_err(LinuxLoadError::Setup)?;
    Ok((
        GuestStart {
            rip: kernel.entry_64(),
            rsp: INITIAL_RSP.get(),
            rbx: 0,
            rsi: ZERO_PAGE_GPA,
            cr3,
            gdt_base: GDT_GPA.get(),
            gdt_limit: gdt.len() as u16 - 1,
            code_selector: BOOT_CS,
            data_selector: BOOT_DS,
        },
        LinuxPlacement {
            kernel: kernel_range,
            initrd: initrd_range,
            version: kernel.version,
        },
    ))
}

/// The highest page-aligned spot for `len` bytes of initrd in low RAM,
/// below `initrd_addr_max` and above the kernel's `init_size`.
fn place_initrd(
    len: u64,
    kernel: &BzImage<'_>,
    kernel_end: u64,
    ram: &Range<u64>,
) -> Result<Range<u64>, LinuxLoadError> {
    if len == 0 {
        return Ok(0..0);
    }
    let top = ram.end.min(kernel.initrd_addr_max.saturating_add(1));
    let fits = top
        .checked_sub(len)
        .map(|start| start & !(PAGE - 1))
        .filter(|&start| start >= kernel_end);
    match fits {
        Some(start) => Ok(start..start + len),
        None => Err(LinuxLoadError::InitrdDoesNotFit {
            len,
            room: (kernel_end, top.max(kernel_end)),
        }),
    }
}
