//! Hostile Linux kernel images given to the hypervisor's boot-protocol
//! loader: never a panic, never a write outside the guest's low RAM, and
//! an accepted kernel lies in RAM above 1 MiB with its initrd above its
//! `init_size` and below `initrd_addr_max`.

use nvirt_e820::{GuestLayout, Kind};
use nvirt_hv::fuzzing::linux::{BzImage, GuestAccessError, GuestWrite, load};

/// A guest memory that keeps nothing and checks every write against RAM.
struct Checked {
    ram: core::ops::Range<u64>,
}

impl GuestWrite for Checked {
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), GuestAccessError> {
        self.zero(gpa, bytes.len() as u64)
    }
    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), GuestAccessError> {
        let end = gpa.checked_add(len).expect("a write past 2^64");
        assert!(
            self.ram.start <= gpa && end <= self.ram.end,
            "write {gpa:#x}+{len:#x} outside guest RAM {:?}",
            self.ram
        );
        Ok(())
    }
}

/// Runs one input: the bytes are the kernel image; its last quarter is
/// also given as the initrd.
pub fn fuzz(data: &[u8]) {
    let layout = GuestLayout::new(256 << 20)
        .nvram(64 << 20, Kind::Pram)
        .build::<16>()
        .unwrap();
    let ram = layout.ram[0].clone().unwrap();
    let mut mem = Checked { ram: ram.clone() };
    let initrd = &data[data.len() - data.len() / 4..];
    let Ok((start, placed)) = load(&mut mem, data, initrd, "console=ttyS0", &layout) else {
        return;
    };
    let kernel = BzImage::parse(data).unwrap();
    assert!(placed.kernel.start >= 1 << 20 && placed.kernel.end <= ram.end);
    assert_eq!(placed.kernel.start, kernel.load_address);
    assert_eq!(start.rip, kernel.entry_64());
    assert!(placed.initrd.end <= ram.end);
    assert!(placed.initrd.end <= kernel.initrd_addr_max.saturating_add(1));
    assert!(initrd.is_empty() || placed.initrd.start >= placed.kernel.end);
}
