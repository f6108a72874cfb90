use nvirt_e820::{GuestLayout, Kind, boot_params};

use super::bzimage::BzImage;
use super::bzimage::LinuxImageError;
use super::load::{BOOT_CS, BOOT_DS, CMDLINE_GPA, ZERO_PAGE_GPA};
use super::load::{LinuxLoadError, load};
use crate::guest_memory::GuestAccessError;
use crate::guest_setup::GuestWrite;

const MIB: u64 = 1 << 20;
/// Bytes kept at the top of low RAM.
const HIGH: u64 = 16 * MIB;

/// Guest RAM as a sparse buffer: the low 1 MiB and the top `HIGH` bytes
/// of low RAM, where the loader writes.
struct Sparse {
    low: Vec<u8>,
    high: Vec<u8>,
    high_base: u64,
}

impl Sparse {
    fn new(ram: u64) -> Self {
        Self {
            low: vec![0xee; MIB as usize],
            high: vec![0xee; HIGH as usize],
            high_base: ram - HIGH,
        }
    }
    fn slot(&mut self, gpa: u64, len: usize) -> Option<&mut [u8]> {
        let end = gpa.checked_add(len as u64)?;
        if end <= MIB {
            self.low.get_mut(gpa as usize..end as usize)
        } else if gpa >= self.high_base {
            let at = (gpa - self.high_base) as usize;
            self.high.get_mut(at..at + len)
        } else {
            // The kernel's own range: accepted but not kept.
            Some(&mut [])
        }
    }
    fn read(&self, gpa: u64, len: usize) -> &[u8] {
        if gpa < MIB {
            &self.low[gpa as usize..gpa as usize + len]
        } else {
            let at = (gpa - self.high_base) as usize;
            &self.high[at..at + len]
        }
    }
}

impl GuestWrite for Sparse {
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), GuestAccessError> {
        let err = GuestAccessError {
            gpa,
            len: bytes.len() as u64,
        };
        match self.slot(gpa, bytes.len()) {
            Some([]) => Ok(()),
            Some(s) => {
                s.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(err),
        }
    }
    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), GuestAccessError> {
        self.write(gpa, &vec![0; len as usize])
    }
}

/// A bzImage with the header fields of Debian's 6.1 kernel (protocol
/// 2.15, 39 setup sectors, relocatable, pref_address 16 MiB, init_size
/// 63.6 MiB) and `kernel_len` bytes of protected-mode kernel.
fn image(kernel_len: usize) -> Vec<u8> {
    let mut b = vec![0u8; 40 * 512 + kernel_len];
    b[0x1f1] = 39;
    b[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    b[0x201] = 0x6a; // header ends at 0x26c
    b[0x202..0x206].copy_from_slice(b"HdrS");
    b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    b[0x211] = 1;
    b[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes());
    b[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    b[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes());
    b[0x234] = 1;
    b[0x236..0x238].copy_from_slice(&0x7fu16.to_le_bytes());
    b[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
    b[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
    b[0x260..0x264].copy_from_slice(&0x3f9_8000u32.to_le_bytes());
    for (i, byte) in b[40 * 512..].iter_mut().enumerate() {
        *byte = i as u8;
    }
    b
}

fn layout(ram: u64) -> nvirt_e820::GuestMap<16> {
    GuestLayout::new(ram)
        .nvram(64 * MIB, Kind::Pram)
        .build::<16>()
        .unwrap()
}

#[test]
fn parses_the_setup_header() {
    let img = image(4096);
    let k = BzImage::parse(&img).unwrap();
    assert_eq!(k.version, 0x020f);
    assert_eq!(k.load_address, 16 * MIB);
    assert_eq!(k.entry_64(), 16 * MIB + 0x200);
    assert_eq!(k.init_size, 0x3f9_8000);
    assert_eq!(k.cmdline_size, 2047);
    assert_eq!(k.kernel.len(), 4096);
    assert_eq!(k.header.len(), 0x26c - 0x1f1);
    assert!(BzImage::is_linux(&img));
}

#[test]
fn refuses_what_is_not_a_64_bit_bzimage() {
    let good = image(4096);
    type Damage = fn(&mut Vec<u8>);
    let cases: [(Damage, LinuxImageError); 7] = [
        (
            |b| b.truncate(0x100),
            LinuxImageError::Truncated {
                need: 0x264,
                have: 0x100,
            },
        ),
        (|b| b[0x202] = b'X', LinuxImageError::NotLinux),
        (
            |b| b[0x206] = 0x0b,
            LinuxImageError::TooOld { version: 0x020b },
        ),
        (|b| b[0x211] = 0, LinuxImageError::NotBzImage),
        (|b| b[0x236] = 0x7e, LinuxImageError::No64BitEntry),
        (
            |b| b[0x230..0x234].copy_from_slice(&0x30_0000u32.to_le_bytes()),
            LinuxImageError::BadAlignment {
                alignment: 0x30_0000,
                pref_address: 0x100_0000,
            },
        ),
        (
            |b| b[0x260..0x264].copy_from_slice(&16u32.to_le_bytes()),
            LinuxImageError::InitSizeTooSmall {
                init_size: 16,
                kernel: 4096,
            },
        ),
    ];
    for (damage, want) in cases {
        let mut b = good.clone();
        damage(&mut b);
        assert_eq!(BzImage::parse(&b), Err(want));
    }
    // Setup sectors beyond the file.
    let mut b = good.clone();
    b.truncate(20 * 512);
    assert!(matches!(
        BzImage::parse(&b),
        Err(LinuxImageError::Truncated { need: 20480, .. })
    ));
    // A header too short to hold the fields read.
    let mut b = good;
    b[0x201] = 0x10;
    assert!(matches!(
        BzImage::parse(&b),
        Err(LinuxImageError::HeaderTooLong { .. })
    ));
}

#[test]
fn lays_out_kernel_initrd_command_line_and_zero_page() {
    let ram = 256 * MIB;
    let map = layout(ram);
    let mut mem = Sparse::new(ram);
    let img = image(4096);
    let initrd = vec![0x5a; 3 * MIB as usize + 100];
    let cmdline = "console=ttyS0 nokaslr";
    let (start, placed) = load(&mut mem, &img, &initrd, cmdline, &map).unwrap();

    assert_eq!(start.rip, 16 * MIB + 0x200);
    assert_eq!(start.rsi, ZERO_PAGE_GPA);
    assert_eq!(
        (start.code_selector, start.data_selector),
        (BOOT_CS, BOOT_DS)
    );
    assert_eq!(placed.kernel, 16 * MIB..16 * MIB + 0x3f9_8000);
    // The initrd sits at the top of low RAM, page aligned, above init_size.
    let low_end = map.ram[0].clone().unwrap().end;
    assert!(placed.initrd.end <= low_end && low_end - placed.initrd.end < 4096);
    assert_eq!(placed.initrd.start % 4096, 0);
    assert!(placed.initrd.start >= placed.kernel.end);
    assert_eq!(mem.read(placed.initrd.start, initrd.len()), &initrd[..]);

    let zp = mem.read(ZERO_PAGE_GPA, 4096).to_vec();
    assert_eq!(&zp[0x202..0x206], b"HdrS");
    assert_eq!(zp[0x210], 0xff, "type_of_loader");
    let u32_at = |at: usize| u32::from_le_bytes(zp[at..at + 4].try_into().unwrap());
    assert_eq!(u64::from(u32_at(0x218)), placed.initrd.start);
    assert_eq!(u32_at(0x21c) as usize, initrd.len());
    assert_eq!((u32_at(0x0c0), u32_at(0x0c4)), (0, 0));
    assert_eq!(u64::from(u32_at(0x228)), CMDLINE_GPA);
    assert_eq!(
        mem.read(CMDLINE_GPA, cmdline.len() + 1),
        b"console=ttyS0 nokaslr\0"
    );
    // The E820 table reads back as the guest's map, type 12 included.
    let entries: Vec<_> = boot_params::read(&zp).unwrap().collect();
    assert_eq!(entries.len(), map.map.entries().len());
    for (got, want) in entries.iter().zip(map.map.entries()) {
        assert_eq!(
            (got.base, got.base + got.size, got.kind),
            (want.start(), want.end(), want.kind())
        );
    }
    assert!(
        entries
            .iter()
            .any(|e| e.kind.raw() == 12 && e.base >= 4 << 30)
    );
    // GDT: __BOOT_CS is 64-bit code, __BOOT_DS flat data.
    let gdt = mem.read(0x2000, 32);
    assert_eq!(gdt[16..24], 0x00af_9a00_0000_ffffu64.to_le_bytes());
    assert_eq!(gdt[24..32], 0x00cf_9200_0000_ffffu64.to_le_bytes());
}

#[test]
fn refuses_guests_too_small_and_arguments_too_large() {
    let img = image(4096);
    // 64 MiB of RAM cannot hold 16 MiB + 63.6 MiB.
    let small = layout(64 * MIB);
    let mut mem = Sparse::new(64 * MIB);
    assert!(matches!(
        load(&mut mem, &img, &[], "", &small),
        Err(LinuxLoadError::KernelOutsideRam { .. })
    ));
    let ram = 128 * MIB;
    let map = layout(ram);
    let mut mem = Sparse::new(ram);
    // 80 MiB used by the kernel leaves ~48 MiB: a 60 MiB initrd does not fit.
    assert!(matches!(
        load(&mut mem, &img, &vec![0; 60 << 20], "", &map),
        Err(LinuxLoadError::InitrdDoesNotFit { .. })
    ));
    assert_eq!(
        load(&mut mem, &img, &[], &"x".repeat(2048), &map).err(),
        Some(LinuxLoadError::CmdlineTooLong {
            len: 2048,
            max: 2047
        })
    );
    assert_eq!(
        load(&mut mem, &img, &[], "a\0b", &map).err(),
        Some(LinuxLoadError::CmdlineNul)
    );
    // A kernel that wants to load below 1 MiB.
    let mut low = image(4096);
    low[0x258..0x260].copy_from_slice(&0x20_0000u64.to_le_bytes());
    low[0x230..0x234].copy_from_slice(&0x10_0000u32.to_le_bytes());
    low[0x258..0x260].copy_from_slice(&0x0u64.to_le_bytes());
    assert!(matches!(
        load(&mut mem, &low, &[], "", &map),
        Err(LinuxLoadError::KernelOutsideRam { .. })
    ));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Any bytes, and any damage to a good header, give a result, never a
    /// panic; a loaded kernel always lies inside low RAM above 1 MiB.
    #[test]
    fn hostile_images_never_escape_ram(
        edits in proptest::collection::vec((0x1f0usize..0x270, proptest::num::u8::ANY), 0..12),
        initrd_len in 0usize..(4 << 20),
    ) {
        let mut img = image(4096);
        for (at, v) in edits {
            img[at] = v;
        }
        let ram = 192 * MIB;
        let map = layout(ram);
        let mut mem = Sparse::new(ram);
        if let Ok((start, placed)) = load(&mut mem, &img, &vec![1; initrd_len], "x", &map) {
            let low = map.ram[0].clone().unwrap();
            proptest::prop_assert!(placed.kernel.start >= MIB && placed.kernel.end <= low.end);
            proptest::prop_assert!(placed.initrd.end <= low.end);
            proptest::prop_assert_eq!(start.rip, placed.kernel.start + 0x200);
        }
    }
}
