//! Every binary format round-trips any sanitized map it can hold.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use nvirt_e820::bios::EntryLayout;
use nvirt_e820::{Entry, Kind, MemoryMap, bios, boot_params, multiboot1, multiboot2, pvh};
use proptest::prelude::*;

fn entries() -> impl Strategy<Value = Vec<Entry>> {
    prop::collection::vec(
        (
            0u64..1 << 40,
            1u64..1 << 36,
            prop_oneof![
                Just(1u32),
                Just(2),
                Just(3),
                Just(4),
                Just(7),
                Just(12),
                Just(90),
                0u32..200
            ],
        ),
        0..100,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .map(|(s, n, k)| Entry::from_base_size(s, n, Kind::from_raw(k)).unwrap())
            .collect()
    })
}

fn sanitized(raw: Vec<Entry>) -> MemoryMap<256> {
    MemoryMap::from_entries(raw).unwrap()
}

fn back(entries: impl Iterator<Item = nvirt_e820::FirmwareEntry>) -> MemoryMap<256> {
    MemoryMap::from_firmware(entries).unwrap()
}

proptest! {
    #[test]
    fn bios_both_layouts(raw in entries()) {
        let map = sanitized(raw);
        for layout in [EntryLayout::Legacy, EntryLayout::Acpi3] {
            let mut buf = vec![0u8; map.len() * layout.size()];
            let n = bios::write(map.entries(), layout, &mut buf).unwrap();
            prop_assert_eq!(back(bios::read(&buf[..n], layout).unwrap()), map.clone());
        }
    }

    #[test]
    fn boot_params(raw in entries()) {
        let map = sanitized(raw);
        let mut page = vec![0u8; 4096];
        let result = boot_params::write(map.entries(), &mut page);
        if map.len() > boot_params::MAX_ENTRIES {
            prop_assert!(result.is_err());
        } else {
            result.unwrap();
            prop_assert_eq!(back(boot_params::read(&page).unwrap()), map);
        }
    }

    #[test]
    fn multiboot1_multiboot2_and_pvh(raw in entries()) {
        let map = sanitized(raw);
        let mut buf = vec![0u8; multiboot2::tag_len(map.len())];
        let n = multiboot2::write(map.entries(), &mut buf).unwrap();
        prop_assert_eq!(back(multiboot2::read(&buf[..n]).unwrap()), map.clone());
        let n = multiboot1::write(map.entries(), &mut buf).unwrap();
        prop_assert_eq!(back(multiboot1::read(&buf[..n]).unwrap()), map.clone());
        let n = pvh::write(map.entries(), &mut buf).unwrap();
        prop_assert_eq!(back(pvh::read(&buf[..n], map.len()).unwrap()), map);
    }

    #[test]
    fn linux_text(raw in entries()) {
        let map = sanitized(raw);
        let text = map.to_string();
        let parsed: Vec<Entry> = text.lines().map(|l| nvirt_e820::text::parse_line(l).unwrap().unwrap()).collect();
        prop_assert_eq!(sanitized(parsed), map);
    }
}
