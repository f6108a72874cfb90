//! Raw BIOS E820 buffers, 20- and 24-byte layouts; what parses must sanitize
//! into a valid map that survives a write/read round trip.

use crate::sanitize_and_check;
use nvirt_e820::bios::{self, EntryLayout};

/// Runs one input.
pub fn fuzz(data: &[u8]) {
    for layout in [EntryLayout::Legacy, EntryLayout::Acpi3] {
        let Ok(entries) = bios::read(data, layout) else {
            continue;
        };
        let Some(map) = sanitize_and_check(entries) else {
            continue;
        };
        let mut buf = vec![0u8; map.len() * layout.size()];
        let n = bios::write(map.entries(), layout, &mut buf).expect("buffer sized for the map");
        let again = sanitize_and_check(bios::read(&buf[..n], layout).expect("own output parses"));
        assert_eq!(again.as_ref(), Some(&map));
    }
}
