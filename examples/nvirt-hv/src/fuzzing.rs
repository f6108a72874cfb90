//! What the fuzz targets in `fuzz/` drive (feature `std`), re-exported from
//! the hypervisor's private modules: they feed its parsers of hostile
//! input arbitrary bytes and its guest-memory code arbitrary balloon
//! sequences, so they need those pieces and nothing more. Not an API for
//! anyone else: names may change with the hypervisor.

/// Boot information and the ACPI walk over arbitrary physical memory
/// (`hv_bootinfo`, `hv_acpi`).
pub mod firmware {
    pub use crate::acpi::{AcpiError, Rsdp};
    pub use crate::bootinfo::{
        BootError, BootInfo, CMDLINE_MAX, MULTIBOOT1_MAGIC, MULTIBOOT2_MAGIC, PVH_MAGIC, read,
    };
    pub use crate::phys::{PhysError, PhysRead, SliceMemory};
}

/// A guest's memory over heaps in a buffer and an NV pool in memory, booted
/// as the hypervisor boots it (`hv_nvpool_guest`; `hv_balloon` goes
/// through [`testing::balloon`](crate::testing::balloon)).
pub mod guest {
    pub use crate::config::PoolMode;
    pub use crate::guest_memory::{GuestMemory, PAGE};
    pub use crate::nested::{Format, NestedConfig};
    pub use crate::nv_boot::{GuestNvram, attach, open, work_area_bytes};
    pub use crate::nv_frames::NvFrames;
    pub use crate::p2m::BlockMapping;
    pub use crate::pool::FramePool;
    pub use crate::regions::Regions;
}

/// The Linux boot-protocol loader over a guest memory that only checks
/// where it is written (`hv_linux_image`).
pub mod linux {
    pub use crate::guest_memory::GuestAccessError;
    pub use crate::guest_setup::GuestWrite;
    pub use crate::linux::bzimage::{BzImage, LinuxImageError};
    pub use crate::linux::load::{LinuxLoadError, LinuxPlacement, load};
}
