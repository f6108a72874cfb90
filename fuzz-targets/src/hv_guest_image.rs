//! Guest image headers (`nvirt_hypercall_abi::protocol`, as the hypervisor
//! checks them): never a panic; an accepted header describes an image that
//! fits its bytes and enters inside its file part.

use nvirt_hypercall_abi::protocol::{IMAGE_GPA, ImageHeader};

/// Runs one input.
pub fn fuzz(data: &[u8]) {
    let Ok(h) = ImageHeader::parse(data) else {
        return;
    };
    let (load, entry, end) = (h.load().get(), h.entry().get(), h.end().get());
    assert!(h.file_len() as usize <= data.len());
    assert!(h.file_len() <= h.mem_len());
    assert!(load >= IMAGE_GPA.get() && load % 4096 == 0);
    assert!(entry >= load && entry < load + h.file_len());
    assert_eq!(end, load + h.mem_len());
}
