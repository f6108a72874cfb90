//! The RSDP search and RSDT/XSDT walk over arbitrary low memory: never a
//! panic; a table found has the signature asked for, a length within the
//! buffer and a zero checksum.

use nvirt_hv::fuzzing::firmware::{Rsdp, SliceMemory};

/// Runs one input.
pub fn fuzz(data: &[u8]) {
    // The input is memory from address 0xe0000 (the BIOS area the search
    // covers), so short inputs reach the interesting part.
    let mem = SliceMemory::new(0xe_0000, data);
    let Ok(rsdp) = Rsdp::locate(&mem, None) else {
        return;
    };
    let mut buffer = [0u8; 4096];
    if let Ok(Some((_, table))) = rsdp.find_table(&mem, *b"NFIT", &mut buffer) {
        assert_eq!(&table[..4], b"NFIT");
        assert_eq!(table.iter().fold(0u8, |a, &b| a.wrapping_add(b)), 0);
        let _ = nvirt_e820::nfit::Nfit::parse(table);
    }
}
