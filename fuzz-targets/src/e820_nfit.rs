//! ACPI NFIT tables. Inputs get a correct checksum half of the time so the
//! fuzzer reaches the sub-structure walk.

use nvirt_e820::nfit::Nfit;
use nvirt_e820::{Entry, Kind, MemoryMap};

/// Runs one input.
pub fn fuzz(data: &[u8]) {
    let mut table = data.to_vec();
    if table.len() >= 40 && table[0] & 1 == 0 {
        table[..4].copy_from_slice(b"NFIT");
        let len = u32::try_from(table.len()).unwrap_or(u32::MAX);
        table[4..8].copy_from_slice(&len.to_le_bytes());
        table[9] = 0;
        let sum = table.iter().fold(0u8, |a, &b| a.wrapping_add(b));
        table[9] = 0u8.wrapping_sub(sum);
    }
    let Ok(nfit) = Nfit::parse(&table) else {
        return;
    };
    let total: usize = nfit.structures().map(|s| s.bytes.len()).sum();
    assert!(total <= nfit.bytes().len());
    for range in nfit.spa_ranges() {
        let _ = range.to_entry(Kind::Pmem);
    }
    let mut map =
        MemoryMap::<64>::from_entries([Entry::new(0, 0x8000_0000, Kind::Ram).unwrap()]).unwrap();
    let before = map.clone();
    match nfit.add_pmem_to(&mut map) {
        Ok(_) => crate::check(&map),
        Err(_) => assert_eq!(map, before, "a failed merge changed the map"),
    }
}
