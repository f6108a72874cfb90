//! An NFIT that QEMU generated for `-device nvdimm`, as `iasl -d` dumped it
//! (`tests/data/nfit/qemu-nvdimm-one-region-iasl.txt`, source on its first
//! line): the raw bytes are rebuilt from the dump's hex listing.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use nvirt_e820::nfit::{Nfit, SpaFlags, SpaType};
use nvirt_e820::{Entry, Kind, MemoryMap};

/// The bytes of the "Raw Table Data" hex listing of an `iasl -d` dump.
pub fn raw_table_from_iasl_dump(dump: &str) -> Vec<u8> {
    dump.lines()
        .skip_while(|l| !l.starts_with("Raw Table Data"))
        .filter_map(|l| {
            let (offset, rest) = l.trim().split_once(": ")?;
            u32::from_str_radix(offset, 16).ok()?;
            let hex = rest.split("//").next()?;
            Some(
                hex.split_whitespace()
                    .map(|b| u8::from_str_radix(b, 16).unwrap())
                    .collect::<Vec<_>>(),
            )
        })
        .flatten()
        .collect()
}

#[test]
fn qemu_nvdimm_table_yields_its_persistent_memory_range() {
    let dump = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/nfit/qemu-nvdimm-one-region-iasl.txt"
    ))
    .unwrap();
    let table = raw_table_from_iasl_dump(&dump);
    assert_eq!(table.len(), 224);
    let nfit = Nfit::parse(&table).unwrap();
    let types: Vec<u16> = nfit.structures().map(|s| s.structure_type).collect();
    assert_eq!(
        types,
        [0, 1, 4],
        "SPA range, memory device to SPA, control region"
    );
    let ranges: Vec<_> = nfit.spa_ranges().collect();
    assert_eq!(ranges.len(), 1);
    let r = ranges[0];
    assert_eq!(r.range_type, SpaType::Persistent);
    assert_eq!((r.base, r.length), (0x1_C000_0000, 0x2_7800_0000));
    assert_eq!(r.index, 2);
    assert_eq!(r.flags, SpaFlags::HOT_ADD_ONLY | SpaFlags::PROXIMITY_VALID);
    assert_eq!(r.proximity_domain, Some(0));
    assert_eq!(r.mapping_attributes, 0x8008);

    // A guest's E820 map does not list the NVDIMM; the NFIT adds it.
    let mut map = MemoryMap::<16>::from_entries([
        Entry::new(0, 0x9fc00, Kind::Ram).unwrap(),
        Entry::new(0x10_0000, 0xbffe_0000, Kind::Ram).unwrap(),
        Entry::new(0x1_0000_0000, 0x1_c000_0000, Kind::Ram).unwrap(),
    ])
    .unwrap();
    assert_eq!(nfit.add_pmem_to(&mut map).unwrap(), 1);
    assert_eq!(
        map.nonvolatile()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["[mem 0x00000001c0000000-0x0000000437ffffff] persistent (type 7)"]
    );

    // Every single-byte corruption is caught by the checksum or the bounds.
    for i in 0..table.len() {
        let mut bad = table.clone();
        bad[i] ^= 0x40;
        assert!(
            Nfit::parse(&bad).is_err(),
            "corruption at byte {i} accepted"
        );
    }
}
