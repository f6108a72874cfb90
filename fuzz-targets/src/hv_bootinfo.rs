//! Boot information of all three protocols over arbitrary memory: never a
//! panic; what parses is consistent (modules well formed, the boot
//! information's own footprint covers the structure it was read from).

use nvirt_hv::fuzzing::firmware::{
    self as bootinfo, MULTIBOOT1_MAGIC, MULTIBOOT2_MAGIC, PVH_MAGIC, SliceMemory,
};

/// The fuzz input is physical memory starting here.
const BASE: u64 = 0x1000;

/// Runs one input.
pub fn fuzz(data: &[u8]) {
    let Some((&selector, memory)) = data.split_first() else {
        return;
    };
    let magic = [MULTIBOOT2_MAGIC, MULTIBOOT1_MAGIC, PVH_MAGIC][usize::from(selector % 3)];
    // The structure sits at an offset the input chooses (8-byte aligned).
    let info = BASE + u64::from(selector / 3) * 8;
    let mem = SliceMemory::new(BASE, memory);
    let Ok(boot) = bootinfo::read(magic, info, &mem) else {
        return;
    };
    assert!(
        boot.footprint.contains(info),
        "the structure itself is reserved"
    );
    for m in boot.modules() {
        assert!(m.range.start <= m.range.end);
    }
    let entries = boot.map.entries();
    for pair in entries.windows(2) {
        assert!(pair[0].end() <= pair[1].start(), "sanitized map");
    }
    assert!(boot.cmdline.as_bytes().len() <= bootinfo::CMDLINE_MAX);
}
