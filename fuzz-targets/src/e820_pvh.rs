//! PVH `hvm_memmap_table_entry` arrays with a claimed count.

use crate::sanitize_and_check;
use nvirt_e820::pvh;

/// Runs one input.
pub fn fuzz(data: &[u8]) {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    // Claimed counts beyond the buffer, including absurd ones, must fail cleanly.
    let count = if count == 0xff {
        usize::MAX
    } else {
        usize::from(count)
    };
    if let Ok(entries) = pvh::read(rest, count) {
        sanitize_and_check(entries);
    }
}
