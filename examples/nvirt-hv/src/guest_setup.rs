//! Putting a guest in place: its image, identity page tables, GDT and PVH
//! start info (with the synthesized memory map and its command line), in
//! guest memory, laid out as `nvirt_hypercall_abi::protocol` says. The CPU state to enter with comes back as a
//! [`GuestStart`], which either backend turns into VMCB or VMCS fields.

use core::fmt;

use nvirt_e820::{GuestMap, WriteError, pvh};

use nvirt_hypercall_abi::protocol::{
    CMDLINE_GPA, CMDLINE_MAX, GDT_GPA, GUEST_CODE_SELECTOR, GUEST_DATA_SELECTOR, IMAGE_GPA,
    INITIAL_RSP, ImageError, ImageHeader, MEMMAP_GPA, MEMMAP_MAX, PAGE_TABLES_END, PAGE_TABLES_GPA,
    START_INFO_GPA, StartInfo,
};
use zerocopy::IntoBytes;

use crate::guest_memory::GuestAccessError;
/// 1 GiB: the span of one guest page directory.
const GIB: u64 = 1 << 30;

/// Writes into guest memory by guest-physical address.
pub trait GuestWrite {
    /// Copies `bytes` to `gpa`.
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), GuestAccessError>;
    /// Zeroes `len` bytes at `gpa`.
    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), GuestAccessError>;
}

/// The CPU state a guest starts with (64-bit mode, paging on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestStart {
    /// Entry point.
    pub rip: u64,
    /// Initial stack pointer.
    pub rsp: u64,
    /// The start info's address (PVH convention).
    pub rbx: u64,
    /// The zero page's address (Linux's 64-bit boot protocol).
    pub rsi: u64,
    /// The identity page tables' PML4.
    pub cr3: u64,
    /// GDT base.
    pub gdt_base: u64,
    /// GDT limit.
    pub gdt_limit: u16,
    /// The code selector CS holds (its descriptor is in the GDT).
    pub code_selector: u16,
    /// The data selector SS, DS, ES, FS and GS hold.
    pub data_selector: u16,
}

/// Why a guest cannot be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// The image is malformed.
    Image(ImageError),
    /// The image does not fit in the guest's low RAM.
    ImageOutsideRam {
        /// One past its last byte.
        end: u64,
    },
    /// The guest map has too many entries for its start info.
    MapTooLarge {
        /// Its entries.
        entries: usize,
    },
    /// The guest address space needs more page directories than fit.
    TablesTooLarge {
        /// Bytes the identity map would cover.
        top: u64,
    },
    /// A write fell outside guest memory.
    Access(GuestAccessError),
    /// The memory map could not be written.
    Write(WriteError),
    /// The command line does not fit its room.
    CmdlineTooLong {
        /// Its bytes.
        len: usize,
    },
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Image(e) => e.fmt(f),
            Self::ImageOutsideRam { end } => {
                write!(
                    f,
                    "guest image (ending at {end:#x}) does not fit in guest RAM"
                )
            }
            Self::MapTooLarge { entries } => {
                write!(
                    f,
                    "guest memory map of {entries} entries exceeds {MEMMAP_MAX}"
                )
            }
            Self::TablesTooLarge { top } => {
                write!(
                    f,
                    "guest address space up to {top:#x} is too large to identity map"
                )
            }
            Self::Access(e) => e.fmt(f),
            Self::Write(e) => write!(f, "guest memory map: {e}"),
            Self::CmdlineTooLong { len } => write!(
                f,
                "guest command line of {len} bytes exceeds {}",
                CMDLINE_MAX - 1
            ),
        }
    }
}

impl core::error::Error for SetupError {}

impl From<GuestAccessError> for SetupError {
    fn from(e: GuestAccessError) -> Self {
        Self::Access(e)
    }
}

/// Loads `image` and writes the guest's boot structures for `layout`, with
/// `cmdline` as its command line.
pub fn prepare<const N: usize>(
    mem: &mut impl GuestWrite,
    image: &[u8],
    layout: &GuestMap<N>,
    cmdline: &str,
) -> Result<(GuestStart, ImageHeader), SetupError> {
    let header = ImageHeader::parse(image).map_err(SetupError::Image)?;
    let low_ram = layout.ram[0].clone().unwrap_or(0..0);
    let (load, end) = (header.load().get(), header.end().get());
    if !(low_ram.start <= IMAGE_GPA.get() && end <= low_ram.end) {
        return Err(SetupError::ImageOutsideRam { end });
    }
    // `parse` checked `file_len <= image.len()` and `file_len <= mem_len`.
    let file = image.get(..header.file_len() as usize).unwrap_or(image);
    mem.write(load, file)?;
    mem.zero(
        load + header.file_len(),
        header.mem_len() - header.file_len(),
    )?;

    let cr3 = identity_tables(mem, layout.map.end())?;
    let gdt_limit = write_gdt(mem)?;
    write_start_info(mem, layout, cmdline)?;
    Ok((
        GuestStart {
            rip: header.entry().get(),
            rsp: INITIAL_RSP.get(),
            rbx: START_INFO_GPA.get(),
            rsi: 0,
            cr3,
            gdt_base: GDT_GPA.get(),
            gdt_limit,
            code_selector: GUEST_CODE_SELECTOR,
            data_selector: GUEST_DATA_SELECTOR,
        },
        header,
    ))
}

/// Identity tables covering `[0, top)` rounded up to whole GiB, with 2 MiB
/// pages (present, writable, write-back); returns the PML4's address.
pub(crate) fn identity_tables(mem: &mut impl GuestWrite, top: u64) -> Result<u64, SetupError> {
    let gib = top.div_ceil(GIB).max(1);
    let pml4 = PAGE_TABLES_GPA.get();
    let pdpt = pml4 + 0x1000;
    let pds = pdpt + 0x1000;
    let too_large = SetupError::TablesTooLarge { top };
    let pds_end = gib
        .checked_mul(0x1000)
        .and_then(|len| pds.checked_add(len))
        .filter(|&end| end <= PAGE_TABLES_END.get() && gib <= 512)
        .ok_or(too_large)?;
    mem.zero(pml4, pds_end - pml4)?;
    mem.write(pml4, &(pdpt | 0x3).to_le_bytes())?;
    for g in 0..gib {
        let pd = pds + g * 0x1000;
        mem.write(pdpt + g * 8, &(pd | 0x3).to_le_bytes())?;
        let mut entries = [0u8; 4096];
        for (i, slot) in entries.chunks_exact_mut(8).enumerate() {
            let addr = g * GIB + i as u64 * (2 << 20);
            slot.copy_from_slice(&(addr | 0x83).to_le_bytes());
        }
        mem.write(pd, &entries)?;
    }
    Ok(pml4)
}

/// The guest GDT: null, 64-bit code, data. Returns its limit.
fn write_gdt(mem: &mut impl GuestWrite) -> Result<u16, SetupError> {
    let gdt: [u64; 3] = [0, 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff];
    let mut bytes = [0u8; 24];
    for (slot, d) in bytes.chunks_exact_mut(8).zip(gdt) {
        slot.copy_from_slice(&d.to_le_bytes());
    }
    mem.write(GDT_GPA.get(), &bytes)?;
    Ok(bytes.len() as u16 - 1)
}

/// `hvm_start_info` version 1 with the guest's memory map and command line.
fn write_start_info<const N: usize>(
    mem: &mut impl GuestWrite,
    layout: &GuestMap<N>,
    cmdline: &str,
) -> Result<(), SetupError> {
    let text = cmdline.as_bytes();
    if text.len() >= CMDLINE_MAX || text.contains(&0) {
        return Err(SetupError::CmdlineTooLong { len: text.len() });
    }
    mem.write(CMDLINE_GPA.get(), text)?;
    mem.write(CMDLINE_GPA.get() + text.len() as u64, &[0])?;

    let entries = layout.map.entries();
    if entries.len() > MEMMAP_MAX {
        return Err(SetupError::MapTooLarge {
            entries: entries.len(),
        });
    }
    let mut map = [0u8; MEMMAP_MAX * 24];
    let len = pvh::write(entries, &mut map).map_err(SetupError::Write)?;
    mem.write(MEMMAP_GPA.get(), &map[..len])?;

    // At most MEMMAP_MAX entries, checked above.
    let info = StartInfo::new(CMDLINE_GPA, MEMMAP_GPA, entries.len() as u32);
    mem.write(START_INFO_GPA.get(), info.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootinfo::{self, PVH_MAGIC};
    use crate::phys::{PhysRead, SliceMemory};
    use nvirt_e820::{GuestLayout, Kind};
    use nvirt_hypercall_abi::protocol::{IMAGE_MAGIC, RawImageHeader};

    /// The first 8 MiB of guest memory as a buffer.
    struct Buffer(Vec<u8>);

    impl GuestWrite for Buffer {
        fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), GuestAccessError> {
            let err = GuestAccessError {
                gpa,
                len: bytes.len() as u64,
            };
            let at = usize::try_from(gpa).map_err(|_| err)?;
            self.0
                .get_mut(at..at + bytes.len())
                .ok_or(err)?
                .copy_from_slice(bytes);
            Ok(())
        }
        fn zero(&mut self, gpa: u64, len: u64) -> Result<(), GuestAccessError> {
            self.write(gpa, &vec![0; len as usize])
        }
    }

    const IMAGE: u64 = IMAGE_GPA.get();

    fn image(bss: u64) -> Vec<u8> {
        let header = RawImageHeader::new(IMAGE, 0x200, 0x200 + bss, IMAGE + 0x40);
        let mut h = header.as_bytes().to_vec();
        h.resize(0x200, 0xcc);
        h
    }

    #[test]
    fn lays_out_image_tables_and_start_info() {
        let layout = GuestLayout::new(64 << 20)
            .nvram(32 << 20, Kind::Pram)
            .build::<16>()
            .unwrap();
        let mut mem = Buffer(vec![0xaa; 8 << 20]);
        let (start, header) =
            prepare(&mut mem, &image(0x1000), &layout, "nvirt.ram=67108864").unwrap();
        assert_eq!(start.rip, IMAGE + 0x40);
        assert_eq!(start.rbx, START_INFO_GPA.get());
        assert_eq!(header.end().get(), IMAGE + 0x1200);
        let m = &mem.0;
        let at = IMAGE as usize;
        assert_eq!(m[at..at + 8], IMAGE_MAGIC);
        assert!(
            m[at + 0x200..at + 0x1200].iter().all(|&b| b == 0),
            "bss zeroed"
        );
        assert_eq!(m[at + 0x1200], 0xaa, "nothing past the image");

        // The start info reads back as PVH boot information with the map.
        let phys = SliceMemory::new(0, m);
        let boot = bootinfo::read(PVH_MAGIC, start.rbx, &phys).unwrap();
        assert_eq!(boot.map.entries(), layout.map.entries());
        assert_eq!(boot.map.total(Kind::Pram), 32 << 20);
        assert_eq!(boot.cmdline.as_str(), "nvirt.ram=67108864");

        // Walk the identity tables for the NVRAM at 4 GiB + 16 MiB.
        let gpa: u64 = 0x1_0100_0000;
        let pml4e = phys.read_u64(start.cr3).unwrap();
        let pdpte = phys
            .read_u64((pml4e & !0xfff) + 8 * (gpa >> 30 & 511))
            .unwrap();
        let pde = phys
            .read_u64((pdpte & !0xfff) + 8 * (gpa >> 21 & 511))
            .unwrap();
        assert_eq!(pde, gpa | 0x83);
        // Five page directories: 0–5 GiB covers the NVRAM region.
        assert_eq!(
            phys.read_u64(PAGE_TABLES_GPA.get() + 0x1000 + 4 * 8)
                .unwrap()
                & 1,
            1
        );
        assert_eq!(
            phys.read_u64(PAGE_TABLES_GPA.get() + 0x1000 + 5 * 8)
                .unwrap(),
            0
        );
    }

    #[test]
    fn refuses_images_that_do_not_fit() {
        let layout = GuestLayout::new(2 << 20).build::<16>().unwrap();
        let mut mem = Buffer(vec![0; 4 << 20]);
        assert!(matches!(
            prepare(&mut mem, &image(4 << 20), &layout, ""),
            Err(SetupError::ImageOutsideRam { .. })
        ));
        assert!(matches!(
            prepare(&mut mem, b"not an image", &layout, ""),
            Err(SetupError::Image(_))
        ));
        // An address space too large for the page-table area.
        let huge = GuestLayout::new(1 << 30)
            .nvram(200 << 30, Kind::Pmem)
            .build::<16>()
            .unwrap();
        let mut mem = Buffer(vec![0; 4 << 20]);
        assert!(matches!(
            prepare(&mut mem, &image(0), &huge, ""),
            Err(SetupError::TablesTooLarge { .. })
        ));
        let long = "x".repeat(CMDLINE_MAX);
        let mut mem = Buffer(vec![0; 8 << 20]);
        assert!(matches!(
            prepare(&mut mem, &image(0), &layout, &long),
            Err(SetupError::CmdlineTooLong { .. })
        ));
    }
}
