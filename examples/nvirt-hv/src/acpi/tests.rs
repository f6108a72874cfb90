use super::*;
use crate::phys::SliceMemory;
use nvirt_e820::nfit::{Nfit, NfitBuilder, SpaFlags, SpaRange, SpaType};

const MEM_LEN: usize = 0x11_0000;
const ROOT: usize = 0x10_0000;
const NFIT_AT: usize = 0x10_8000;
const FACP_AT: usize = 0x10_4000;

fn fix_checksum(bytes: &mut [u8], at: usize) {
    bytes[at] = 0;
    let sum = bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b));
    bytes[at] = 0u8.wrapping_sub(sum);
}

fn table(signature: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; HEADER_LEN];
    t[..4].copy_from_slice(signature);
    t.extend_from_slice(body);
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    fix_checksum(&mut t, 9);
    t
}

fn rsdp(revision: u8, rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut r = vec![0u8; 36];
    r[..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(b"NVIRT ");
    r[15] = revision;
    r[16..20].copy_from_slice(&rsdt.to_le_bytes());
    r[20..24].copy_from_slice(&36u32.to_le_bytes());
    r[24..32].copy_from_slice(&xsdt.to_le_bytes());
    let (v1, _) = r.split_at_mut(20);
    fix_checksum(v1, 8);
    fix_checksum(&mut r, 32);
    r
}

fn nfit_bytes() -> Vec<u8> {
    let mut b = NfitBuilder::<2>::new();
    assert!(b.spa_range(SpaRange {
        index: 1,
        flags: SpaFlags::empty(),
        proximity_domain: None,
        range_type: SpaType::Persistent,
        base: 0x1_0000_0000,
        length: 64 << 20,
        mapping_attributes: 0x8008,
        location_cookie: None,
    }));
    let mut out = vec![0u8; b.len()];
    b.write(&mut out).unwrap();
    out
}

/// Low memory plus the tables, as SeaBIOS (RSDT) or OVMF (XSDT) lay them out.
fn machine(xsdt: bool, rsdp_at: usize) -> Vec<u8> {
    let mut mem = vec![0u8; MEM_LEN];
    let facp = table(b"FACP", &[0u8; 80]);
    mem[FACP_AT..FACP_AT + facp.len()].copy_from_slice(&facp);
    let nfit = nfit_bytes();
    mem[NFIT_AT..NFIT_AT + nfit.len()].copy_from_slice(&nfit);
    let root = if xsdt {
        let mut body = Vec::new();
        body.extend_from_slice(&(FACP_AT as u64).to_le_bytes());
        body.extend_from_slice(&(NFIT_AT as u64).to_le_bytes());
        table(b"XSDT", &body)
    } else {
        let mut body = Vec::new();
        body.extend_from_slice(&(FACP_AT as u32).to_le_bytes());
        body.extend_from_slice(&(NFIT_AT as u32).to_le_bytes());
        table(b"RSDT", &body)
    };
    mem[ROOT..ROOT + root.len()].copy_from_slice(&root);
    let r = if xsdt {
        rsdp(2, 0, ROOT as u64)
    } else {
        rsdp(0, ROOT as u32, 0)
    };
    mem[rsdp_at..rsdp_at + 36].copy_from_slice(&r);
    mem
}

#[test]
fn finds_the_nfit_through_an_rsdt_in_the_bios_area() {
    let mem = machine(false, 0xf_5a10);
    let phys = SliceMemory::new(0, &mem);
    let rsdp = Rsdp::locate(&phys, None).unwrap();
    assert_eq!(rsdp.revision, 0);
    assert_eq!(rsdp.xsdt, None);
    let mut buf = [0u8; 4096];
    let (at, bytes) = rsdp.find_table(&phys, *b"NFIT", &mut buf).unwrap().unwrap();
    assert_eq!(at, NFIT_AT as u64);
    let nfit = Nfit::parse(bytes).unwrap();
    let ranges: Vec<_> = nfit.pmem_ranges().map(|r| (r.base, r.length)).collect();
    assert_eq!(ranges, [(0x1_0000_0000, 64 << 20)]);
    let mut buf = [0u8; 4096];
    assert_eq!(rsdp.find_table(&phys, *b"SRAT", &mut buf), Ok(None));
}

#[test]
fn finds_the_nfit_through_an_xsdt_in_the_ebda() {
    let mut mem = machine(true, 0x9_fc40);
    mem[0x40e..0x410].copy_from_slice(&0x9fc0u16.to_le_bytes());
    let phys = SliceMemory::new(0, &mem);
    let rsdp = Rsdp::locate(&phys, None).unwrap();
    assert_eq!(rsdp.revision, 2);
    assert_eq!(rsdp.xsdt, Some(ROOT as u64));
    let mut buf = [0u8; 4096];
    let found = rsdp.find_table(&phys, *b"NFIT", &mut buf).unwrap();
    assert_eq!(found.map(|(at, _)| at), Some(NFIT_AT as u64));
}

#[test]
fn uses_the_boot_loaders_copy_or_address() {
    let mem = machine(true, 0x8_0000);
    let phys = SliceMemory::new(0, &mem);
    // Not on a searched address: only the hints find it.
    assert_eq!(Rsdp::locate(&phys, None), Err(AcpiError::NoRsdp));
    let by_address = Rsdp::locate(&phys, Some(&RsdpHint::Address(0x8_0000))).unwrap();
    let mut bytes = [0u8; 36];
    bytes.copy_from_slice(&mem[0x8_0000..0x8_0024]);
    let by_copy = Rsdp::locate(&phys, Some(&RsdpHint::Copy { bytes, len: 36 })).unwrap();
    assert_eq!(by_address, by_copy);
    assert_eq!(by_copy.xsdt, Some(ROOT as u64));
}

#[test]
fn rejects_bad_checksums_lengths_and_pointers() {
    // A corrupted NFIT.
    let mut mem = machine(false, 0xe_0000);
    mem[NFIT_AT + 50] ^= 0xff;
    let phys = SliceMemory::new(0, &mem);
    let rsdp = Rsdp::locate(&phys, None).unwrap();
    let mut buf = [0u8; 4096];
    assert!(matches!(
        rsdp.find_table(&phys, *b"NFIT", &mut buf),
        Err(AcpiError::Checksum { what: "NFIT", .. })
    ));
    // An NFIT longer than the caller's buffer.
    let mem = machine(false, 0xe_0000);
    let phys = SliceMemory::new(0, &mem);
    let mut small = [0u8; 40];
    assert!(matches!(
        rsdp.find_table(&phys, *b"NFIT", &mut small),
        Err(AcpiError::Length { what: "NFIT", .. })
    ));
    // A root pointer outside memory.
    let bad = Rsdp {
        revision: 2,
        rsdt: 0,
        xsdt: Some(u64::MAX - 3),
    };
    assert!(matches!(
        bad.find_table(&phys, *b"NFIT", &mut buf),
        Err(AcpiError::Phys(_))
    ));
    // An RSDP whose checksum is wrong is skipped by the search.
    let mut mem = machine(false, 0xe_0000);
    mem[0xe_0000 + 16] ^= 1;
    let phys = SliceMemory::new(0, &mem);
    assert_eq!(Rsdp::locate(&phys, None), Err(AcpiError::NoRsdp));
    assert!(Rsdp::parse(b"RSD PTR", 0).is_err());
}
