use super::*;
use crate::host::Linear;
use crate::host::memory::{AccessError, FlatMemory};

/// Guest-physical memory of 1 MiB with tables built by hand.
struct Phys(Vec<u8>);

impl Phys {
    fn new() -> Self {
        Self(vec![0; 1 << 20])
    }
    fn put64(&mut self, gpa: u64, v: u64) {
        let at = gpa as usize;
        self.0[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    fn put32(&mut self, gpa: u64, v: u32) {
        let at = gpa as usize;
        self.0[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn mem(&mut self) -> FlatMemory<'_> {
        FlatMemory::new(GuestAddr::new(0), &mut self.0)
    }
}

const CR0: u64 = CR0_PG | CR0_WP | 1;
const LONG: u64 = EFER_LMA | 1 << 8;

fn long(cr3: u64) -> Paging {
    Paging::from_registers(CR0, cr3, CR4_PAE, LONG)
}

/// PML4 at 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000, for the address
/// 0xffff_8000_0020_3000 (PML4 256, PDPT 0, PD 1, PT 3) and the entries'
/// flags given.
fn four_level(p: &mut Phys, flags: [u64; 4]) -> u64 {
    p.put64(0x1000 + 256 * 8, 0x2000 | flags[0]);
    p.put64(0x2000, 0x3000 | flags[1]);
    p.put64(0x3000 + 8, 0x4000 | flags[2]);
    p.put64(0x4000 + 3 * 8, 0x8_0000 | flags[3]);
    0xffff_8000_0020_3000
}

#[test]
fn four_level_4k_page_and_its_checks() {
    let mut p = Phys::new();
    let va = four_level(&mut p, [7; 4]);
    let mem = p.mem();
    let t = translate(&long(0x1000), &mem, va + 0x123, Access::ReadWrite).unwrap();
    assert_eq!(
        t,
        Translation {
            gpa: 0x8_0123,
            run: 0x1000 - 0x123
        }
    );
    // Bit 47 set but 48–63 clear: not canonical.
    assert_eq!(
        translate(&long(0x1000), &mem, 0x0000_8000_0020_3000, Access::Read),
        Err(WalkError::NonCanonical {
            va: 0x0000_8000_0020_3000
        })
    );
    assert_eq!(
        translate(&long(0x1000), &mem, va + 0x1000, Access::Read),
        Err(WalkError::NotPresent {
            va: va + 0x1000,
            level: 1
        })
    );
    assert_eq!(
        translate(&long(0x1000), &mem, 0x1000, Access::Read),
        Err(WalkError::NotPresent {
            va: 0x1000,
            level: 4
        })
    );
    // CR3 outside guest memory.
    assert!(matches!(
        translate(&long(0x10_0000), &mem, va, Access::Read),
        Err(WalkError::Table {
            level: 4,
            entry_gpa: 0x10_0800,
            ..
        })
    ));
}

#[test]
fn rights_are_the_and_of_every_level() {
    for level in 0..4 {
        let mut flags = [7; 4];
        flags[level] = 0x5; // present, user, read-only
        let mut p = Phys::new();
        let va = four_level(&mut p, flags);
        let mem = p.mem();
        let denied = Err(WalkError::Denied {
            va,
            access: Access::Write,
        });
        assert_eq!(translate(&long(0x1000), &mem, va, Access::Write), denied);
        assert!(translate(&long(0x1000), &mem, va, Access::Read).is_ok());
        // Without CR0.WP the kernel may write read-only pages.
        let no_wp = Paging::from_registers(CR0_PG | 1, 0x1000, CR4_PAE, LONG);
        assert!(translate(&no_wp, &mem, va, Access::Write).is_ok());
        assert_eq!(translate(&no_wp.as_user(), &mem, va, Access::Write), denied);

        flags[level] = 0x3; // present, writable, supervisor
        let mut p = Phys::new();
        four_level(&mut p, flags);
        let mem = p.mem();
        assert!(translate(&long(0x1000), &mem, va, Access::Write).is_ok());
        assert_eq!(
            translate(&long(0x1000).as_user(), &mem, va, Access::Read),
            Err(WalkError::Denied {
                va,
                access: Access::Read
            })
        );
    }
}

#[test]
fn large_pages_and_reserved_bits() {
    let mut p = Phys::new();
    // A 1 GiB page at PML4 0, PDPT 1 → 0x4000_0000; a 2 MiB page at PDPT 2,
    // PD 5 → 0x60_0000.
    p.put64(0x1000, 0x2000 | 7);
    p.put64(0x2000 + 8, 0x4000_0000 | PS | 3);
    p.put64(0x2000 + 16, 0x3000 | 3);
    p.put64(0x3000 + 5 * 8, 0x60_0000 | PS | 3);
    let mem = p.mem();
    let t = translate(&long(0x1000), &mem, 0x4123_4567, Access::Write).unwrap();
    assert_eq!(
        t,
        Translation {
            gpa: 0x4123_4567,
            run: 0x8000_0000 - 0x4123_4567
        }
    );
    let va = (2 << 30) + (5 << 21) + 0x1_2345;
    let t = translate(&long(0x1000), &mem, va, Access::Read).unwrap();
    assert_eq!(
        t,
        Translation {
            gpa: 0x61_2345,
            run: 0x20_0000 - 0x1_2345
        }
    );
    // A 2 MiB page with a reserved bit (13), a PML4E with PS, NX without
    // EFER.NXE.
    p.put64(0x3000 + 5 * 8, 0x60_0000 | PS | 3 | 1 << 13);
    p.put64(0x3000 + 6 * 8, 0x80_0000 | PS | 3 | NX);
    p.put64(0x1000 + 8, 0x2000 | PS | 3);
    let mem = p.mem();
    assert!(matches!(
        translate(&long(0x1000), &mem, va, Access::Read),
        Err(WalkError::Reserved { level: 2, .. })
    ));
    let nx_va = (2 << 30) + (6 << 21);
    assert!(matches!(
        translate(&long(0x1000), &mem, nx_va, Access::Read),
        Err(WalkError::Reserved { level: 2, .. })
    ));
    let nxe = Paging::from_registers(CR0, 0x1000, CR4_PAE, LONG | EFER_NXE);
    assert!(translate(&nxe, &mem, nx_va, Access::Read).is_ok());
    assert!(matches!(
        translate(&long(0x1000), &mem, 1 << 39, Access::Read),
        Err(WalkError::Reserved { level: 4, .. })
    ));
    let five = Paging::from_registers(CR0, 0x1000, CR4_PAE | CR4_LA57, LONG);
    assert_eq!(five.mode(), PagingMode::FiveLevel);
    assert_eq!(
        translate(&five, &mem, 0x1000, Access::Read),
        Err(WalkError::FiveLevel { va: 0x1000 })
    );
}

#[test]
fn pae() {
    let mut p = Phys::new();
    let paging = Paging::from_registers(CR0, 0x1020, CR4_PAE, 0);
    assert_eq!(paging.mode(), PagingMode::Pae);
    // PDPT at 0x1020 (32-byte aligned); entry 3 → PD 0x3000; PD 0 a 2 MiB
    // page at 0x20_0000; PD 1 → PT 0x4000, PT 7 → 0x9_0000.
    p.put64(0x1020 + 3 * 8, 0x3000 | 1);
    p.put64(0x3000, 0x20_0000 | PS | 3);
    p.put64(0x3000 + 8, 0x4000 | 7);
    p.put64(0x4000 + 7 * 8, 0x9_0000 | 5);
    p.put64(0x1020 + 2 * 8, 0x5000 | 3); // R/W is reserved in a PDPTE
    let mem = p.mem();
    let base = 3u64 << 30;
    assert_eq!(
        translate(&paging, &mem, base + 0x10, Access::Write),
        Ok(Translation {
            gpa: 0x20_0010,
            run: 0x20_0000 - 0x10
        })
    );
    let va = base + (1 << 21) + 7 * 0x1000 + 8;
    assert_eq!(
        translate(&paging, &mem, va, Access::Read).unwrap().gpa,
        0x9_0008
    );
    assert!(matches!(
        translate(&paging, &mem, va, Access::Write),
        Err(WalkError::Denied { .. })
    ));
    assert!(matches!(
        translate(&paging, &mem, 2 << 30, Access::Read),
        Err(WalkError::Reserved { level: 3, .. })
    ));
    assert_eq!(
        translate(&paging, &mem, 1 << 32, Access::Read),
        Err(WalkError::Beyond32Bits { va: 1 << 32 })
    );
}

#[test]
fn two_level_with_and_without_pse() {
    let mut p = Phys::new();
    // PD at 0x2000: entry 1 a 4 MiB page at 0x1_0040_0000 (PSE-36 bit 32
    // in entry bit 13); entry 2 → PT 0x3000, PT 5 → 0x7000.
    p.put32(0x2000 + 4, 0x0040_0000 | 1 << 13 | PS as u32 | 3);
    p.put32(0x2000 + 8, 0x3000 | 7);
    p.put32(0x3000 + 5 * 4, 0x7000 | 7);
    let mem = p.mem();
    let pse = Paging::from_registers(CR0, 0x2000, CR4_PSE, 0);
    assert_eq!(pse.mode(), PagingMode::TwoLevel);
    assert_eq!(
        translate(&pse, &mem, 0x0040_1234, Access::Write),
        Ok(Translation {
            gpa: 0x1_0040_1234,
            run: 0x40_0000 - 0x1234
        })
    );
    assert_eq!(
        translate(&pse, &mem, 0x0080_5010, Access::Write)
            .unwrap()
            .gpa,
        0x7010
    );
    // Without CR4.PSE the PS bit is ignored: entry 1 names a table at
    // 0x40_0000, which is not guest memory.
    let no_pse = Paging::from_registers(CR0, 0x2000, 0, 0);
    assert!(matches!(
        translate(&no_pse, &mem, 0x0040_1234, Access::Read),
        Err(WalkError::Table { level: 1, .. })
    ));
    assert_eq!(
        translate(&no_pse, &mem, 0x1_0000_0000, Access::Read),
        Err(WalkError::Beyond32Bits { va: 0x1_0000_0000 })
    );
    let off = Paging::from_registers(0, 0, 0, 0);
    assert_eq!(
        translate(&off, &mem, 0x1234, Access::Write).unwrap().gpa,
        0x1234
    );
    assert_eq!(off, Paging::off());
}

#[test]
fn linear_copies_cross_pages_that_are_not_adjacent() {
    let mut p = Phys::new();
    // Virtual 0x40_0000 → physical 0x9_0000, 0x40_1000 → 0x7_0000,
    // 0x40_2000 read-only → 0x5_0000.
    p.put64(0x1000, 0x2000 | 3);
    p.put64(0x2000, 0x3000 | 3);
    p.put64(0x3000 + 2 * 8, 0x4000 | 3);
    p.put64(0x4000, 0x9_0000 | 3);
    p.put64(0x4000 + 8, 0x7_0000 | 3);
    p.put64(0x4000 + 16, 0x5_0000 | 1);
    let mut lin = Linear::new(p.mem(), long(0x1000));
    let data: Vec<u8> = (0..32).collect();
    lin.write(GuestAddr::new(0x40_0ff0), &data).unwrap();
    let mut back = [0u8; 32];
    lin.read(GuestAddr::new(0x40_0ff0), &mut back).unwrap();
    assert_eq!(&back[..], &data[..]);
    let phys = lin.into_physical();
    assert_eq!(phys.bytes()[0x9_0ff0..0x9_1000], data[..16]);
    assert_eq!(phys.bytes()[0x7_0000..0x7_0010], data[16..]);
    let mut lin = Linear::new(phys, long(0x1000));
    // A write running into the read-only page writes nothing at all.
    let err = lin
        .write(GuestAddr::new(0x40_1ff8), &[0xee; 16])
        .unwrap_err();
    assert!(
        matches!(
            err,
            AccessError::PageFault {
                fault: WalkError::Denied { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(lin.physical().bytes()[0x7_0ff8..0x7_1000], [0; 8]);
    assert!(
        lin.check(GuestAddr::new(0x40_1ff8), 16, Access::Read)
            .is_ok()
    );
    assert!(
        lin.check(GuestAddr::new(0x40_2ff8), 16, Access::Read)
            .is_err()
    );
    assert!(
        lin.check(GuestAddr::new(0x40_2ff8), 0, Access::Write)
            .is_ok(),
        "nothing to touch"
    );
    assert_eq!(
        lin.check(GuestAddr::new(u64::MAX), 2, Access::Read),
        Err(AccessError::Wraps {
            addr: GuestAddr::new(u64::MAX),
            len: 2
        })
    );
}
