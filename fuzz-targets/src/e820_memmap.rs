//! Kernel command lines with `memmap=` and `mem=` options, applied to a map:
//! either a valid map or a clean error that leaves the map untouched.

use nvirt_e820::{Entry, Kind, MemoryMap};

/// Runs one input.
pub fn fuzz(data: &[u8]) {
    let Ok(cmdline) = std::str::from_utf8(data) else {
        return;
    };
    let mut map = MemoryMap::<32>::from_entries([
        Entry::new(0, 0x9fc00, Kind::Ram).unwrap(),
        Entry::new(0x10_0000, 0xc000_0000, Kind::Ram).unwrap(),
        Entry::new(0x1_0000_0000, 0x4_0000_0000, Kind::Ram).unwrap(),
    ])
    .unwrap();
    let before = map.clone();
    match map.apply_cmdline(cmdline) {
        Ok(_) => crate::check(&map),
        Err(_) => assert_eq!(map, before, "a failed memmap= changed the map"),
    }
}
