//! PVH `hvm_memmap_table_entry` arrays with a claimed count.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvirt_e820::pvh;
use nvirt_fuzz::sanitize_and_check;

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else { return };
    // Claimed counts beyond the buffer, including absurd ones, must fail cleanly.
    let count = if count == 0xff { usize::MAX } else { usize::from(count) };
    if let Ok(entries) = pvh::read(rest, count) {
        sanitize_and_check(entries);
    }
});
