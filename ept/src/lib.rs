//! Second-level address translation tables for hypervisors: Intel EPT and
//! AMD NPT, built with the fewest entries — 1 GiB pages where both
//! addresses and the length allow, then 2 MiB, then 4 KiB.
//!
//! Every 4 KiB mapping where a larger page would do costs TLB reach and
//! walk time, doubly so under nested paging. These tables pick the largest
//! page for every map, split large pages only where a change cuts them,
//! merge uniform ranges back, and never let a large page cover mixed
//! permissions or memory types. The two formats differ only in their entry
//! encoding ([`Ept`], [`Npt`]); one builder serves both.
//!
//! ```
//! use nvirt_ept::{Config, Ept, GuestPhysAddr, HostPhysAddr, Invalidate, MemType, Perms, Tables};
//! use nvirt_ept::host::HostFrames;
//!
//! // Frames from host memory here; a hypervisor passes its buddy heap.
//! let frames = HostFrames::new(HostPhysAddr::try_from(0x1_0000_0000)?, 64);
//! let config = Config::new().pages_1g(true); // the processor has 1 GiB pages
//! let mut ept = Tables::new(Ept::new(), &frames, config, &mut &frames)?;
//!
//! // 3 GiB of RAM at guest 0 from host 4 GiB: three 1 GiB pages.
//! let ram = HostPhysAddr::try_from(4 << 30)?;
//! let flush = ept.map(&mut &frames, GuestPhysAddr::ZERO, ram, 3 << 30, Perms::RWX, MemType::Wb)?;
//! assert_eq!(flush, Invalidate::Nothing); // only empty entries were filled
//! assert_eq!(ept.page_counts().size_1g, 3);
//!
//! // Write-protect one 4 KiB page: 1 GiB -> 2 MiB pages -> 4 KiB pages, only there.
//! let page = GuestPhysAddr::try_from(0x4000_1000)?;
//! let flush = ept.protect(&mut &frames, page, 0x1000, Perms::RX)?;
//! assert_eq!(flush, Invalidate::ThisContext);
//! let counts = ept.page_counts();
//! assert_eq!((counts.size_1g, counts.size_2m, counts.size_4k), (2, 511, 512));
//!
//! // Restore it: the tables merge back to 1 GiB pages on their own.
//! let _ = ept.protect(&mut &frames, page, 0x1000, Perms::RWX)?;
//! assert_eq!(ept.page_counts().size_1g, 3);
//! // After INVEPT (single-context, with `ept.root_pointer()`), free the old tables.
//! assert_eq!(ept.reclaim(&mut &frames), 2);
//! assert_eq!(ept.table_count(), 2); // PML4 + one PDPT
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Changes are all-or-nothing: each is planned and validated against the
//! current tables, the table frames it needs are taken from the caller's
//! [`FrameSource`], and only then is it applied, in an order that keeps
//! every intermediate state valid for a concurrent hardware walker. Each
//! returns an [`Invalidate`] verdict; tables unlinked by a change are
//! retired and freed by [`Tables::reclaim`] after the caller's
//! invalidation. No allocator is needed; the feature `alloc` adds
//! `host::HostFrames`, `model` a reference model and independent walker
//! for tests.

#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod addr;
mod apply;
mod attrs;
mod config;
mod error;
pub mod format;
mod frames;
#[cfg(feature = "alloc")]
pub mod host;
#[cfg(feature = "model")]
pub mod model;
mod ops;
mod tables;
mod walk;

pub use addr::{GUEST_BITS, Level, PAGE_4K};

pub use attrs::{Attrs, MemType, Perms};
pub use config::{Config, Invalidate, Merge};
pub use error::{AttrError, FrameError, MapError, NewError, RangeError, UnmapError, UpdateError};
pub use format::ept::Ept;
pub use format::npt::Npt;
pub use format::{Decoded, Format};
pub use frames::{FrameSource, PhysMem, TableView};
/// The shared vocabulary this crate speaks: a user of the tables gets it
/// without depending on `nvirt-addr` directly.
pub use nvirt_addr;
pub use nvirt_addr::{GuestPhysAddr, HostPhysAddr, PageSize};
pub use tables::Tables;
pub use walk::{PageCounts, PageRun, PageRuns, Translation};

/// The README's example, compiled as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
