//! Entry formats: how a mapping, a table reference and "nothing" are encoded
//! in a 64-bit paging-structure entry. Intel EPT and AMD NPT build the same
//! 4-level radix tree and differ only here.

pub mod ept;
pub mod npt;

use core::fmt;

use crate::attrs::Attrs;
use crate::error::AttrError;
use crate::{HostPhysAddr, Level, PageSize};

/// Bits 51:12 of an entry: the physical-address field of every entry form of
/// both formats (SDM Vol. 3C, Figure 29-1; AMD APM Vol. 2, Figures 5-18 to
/// 5-25). Bits from MAXPHYADDR up to 51 are reserved; the tables check
/// addresses against the configured width before encoding.
pub const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The host address bits 51:12 of an entry hold. Always an address: the
/// mask keeps it below `2^52`.
#[must_use]
pub(crate) const fn entry_addr(raw: u64, size: PageSize) -> HostPhysAddr {
    match HostPhysAddr::new(raw & ADDRESS_MASK & !(size.bytes() - 1)) {
        Some(addr) => addr,
        // Bits 51:12 are below 2^52: never taken.
        None => HostPhysAddr::ZERO,
    }
}

/// What an entry says, as far as building tables is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Not present: the walker stops (EPT violation / nested page fault).
    Empty,
    /// References the table of the next level at this address.
    Table(HostPhysAddr),
    /// Maps a page.
    Leaf {
        /// Host-physical address of the page.
        hpa: HostPhysAddr,
        /// Permissions and memory type.
        attrs: Attrs,
        /// The processor-maintained bits (accessed, dirty) as found.
        hardware: u64,
    },
}

/// An entry format. Implemented by [`Ept`](ept::Ept) and
/// [`Npt`](npt::Npt); a value of the format carries the processor features
/// and policy choices the encoding depends on.
///
/// The tables call [`leaf`](Format::leaf) only with attributes that passed
/// [`check`](Format::check), with `hpa` aligned to `size` and inside the
/// configured physical-address width; implementations must set no reserved
/// bit under those conditions and must keep bits 11 and 56:52 clear in every
/// entry they produce: the tables use those (ignored by both formats) to
/// chain retired tables.
pub trait Format: Copy + fmt::Debug {
    /// "EPT" or "NPT".
    const NAME: &'static str;

    /// Whether leaves with these attributes can be encoded.
    ///
    /// # Errors
    /// The reason the format or the configured processor cannot express
    /// them.
    fn check(&self, attrs: Attrs) -> Result<(), AttrError>;

    /// A leaf entry mapping the page of `size` at `hpa` with `attrs`.
    fn leaf(&self, size: PageSize, hpa: HostPhysAddr, attrs: Attrs) -> u64;

    /// A non-leaf entry referencing the table at `table`. Grants every
    /// access: permissions are decided by the leaves alone.
    fn table(&self, table: HostPhysAddr) -> u64;

    /// A not-present entry.
    fn empty(&self) -> u64;

    /// Reads an entry of a table of `level`.
    fn decode(&self, level: Level, raw: u64) -> Decoded;

    /// The bits of a leaf that the processor sets on its own (accessed,
    /// dirty); changes to a live leaf preserve them.
    fn hardware_bits(&self) -> u64;

    /// The value to load into the VMCS (EPTP) or VMCB (nCR3) for tables
    /// whose root is `root`.
    fn root_pointer(&self, root: HostPhysAddr) -> u64;
}
