//! Multiboot2 boot information (tag walk and memory-map tag) and Multiboot 1
//! memory-map buffers.

use crate::sanitize_and_check;
use nvirt_e820::{multiboot1, multiboot2};

/// Runs one input.
pub fn fuzz(data: &[u8]) {
    for (tag_type, tag) in multiboot2::tags(data) {
        assert!(tag.len() >= 8 && tag_type != multiboot2::END_TAG);
    }
    if let Ok(entries) = multiboot2::read_from_boot_info(data) {
        sanitize_and_check(entries);
    }
    if let Ok(entries) = multiboot2::read(data) {
        if let Some(map) = sanitize_and_check(entries) {
            let mut buf = vec![0u8; multiboot2::tag_len(map.len())];
            let n = multiboot2::write(map.entries(), &mut buf).expect("buffer sized for the map");
            let again = sanitize_and_check(multiboot2::read(&buf[..n]).expect("own output parses"));
            assert_eq!(again.as_ref(), Some(&map));
        }
    }
    if let Ok(entries) = multiboot1::read(data) {
        sanitize_and_check(entries);
    }
}
