//! Guest image headers: never a panic; an accepted header describes an
//! image that fits its bytes and enters inside its file part.

use nvirt_hv::guest_abi::{IMAGE_GPA, ImageHeader};

/// Runs one input.
pub fn fuzz(data: &[u8]) {
    let Ok(h) = ImageHeader::parse(data) else {
        return;
    };
    assert!(h.file_len as usize <= data.len());
    assert!(h.file_len <= h.mem_len);
    assert!(h.load_gpa >= IMAGE_GPA && h.load_gpa % 4096 == 0);
    assert!(h.entry_gpa >= h.load_gpa && h.entry_gpa < h.load_gpa + h.file_len);
    assert!(h.end_gpa() >= h.load_gpa);
}
