//! Linux zero pages: the E820 count and table.

use crate::sanitize_and_check;
use nvirt_e820::boot_params;

/// Runs one input.
pub fn fuzz(data: &[u8]) {
    let Ok(entries) = boot_params::read(data) else {
        return;
    };
    let Some(map) = sanitize_and_check(entries) else {
        return;
    };
    let mut page = data.to_vec();
    if boot_params::write(map.entries(), &mut page).is_ok() {
        let again = sanitize_and_check(boot_params::read(&page).expect("own output parses"));
        assert_eq!(again.as_ref(), Some(&map));
    }
}
