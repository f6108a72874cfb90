//! The shared vocabulary of the nvirt crates: typed guest-physical and
//! host-physical addresses, guest and machine frame numbers, page sizes
//! and block orders, ranges over each, and the typed offset that crosses
//! from guest to host.
//!
//! Every nvirt crate speaks these types at its API, so a value taken from
//! one crate goes into another without a conversion, and a guest address
//! can never be passed where a host address is expected.
//!
//! | type | what | built from |
//! |---|---|---|
//! | [`GuestPhysAddr`], [`HostPhysAddr`] | byte addresses below `2^52` | `new(u64) -> Option`, `TryFrom<u64>` |
//! | [`Gfn`], [`Mfn`] | 4 KiB frame numbers below `2^40` | `new`, `containing(addr)`, `from_addr(addr)` |
//! | [`PageSize`], [`Order`] | one x86 page, `2^order` frames (order ≤ 18) | `Order::new`, `PageSize::order` |
//! | [`GuestPhysRange`], [`HostPhysRange`], [`GfnRange`], [`MfnRange`] | half-open ranges | `new(start, end)`, `from_len` |
//! | [`FrameOffset`], [`FrameMapping`] | guest ↔ host for a linear run | `between(gfn, mfn)`, `FrameMapping::new` |
//! | [`MemKind`] | volatile or non-volatile | — |
//!
//! Constructors check their values and arithmetic is checked: every
//! operation that could leave the 52-bit physical space returns `None`
//! instead of wrapping. Wire and on-media formats keep their own
//! `repr(C)` integers and convert into these types with `TryFrom`, which
//! reports an [`OutOfRange`] error.
//!
//! ```
//! use nvirt_addr::{FrameMapping, Gfn, GuestPhysAddr, Mfn, Order, PageSize};
//!
//! // A guest's 2 MiB page at guest frame 0x200, backed at machine frame 0x8_0000.
//! let run = FrameMapping::new(Gfn::try_from(0x200)?, Mfn::try_from(0x8_0000)?, 512)
//!     .ok_or("run leaves the frame space")?;
//! assert!(run.gfn().is_aligned(Order::SIZE_2M) && run.mfn().is_aligned(PageSize::Size2M.order()));
//!
//! // A guest-physical address inside it, translated with its page offset.
//! let gpa = GuestPhysAddr::try_from(0x20_0abc)?;
//! let hpa = run.offset().to_host_addr(gpa).ok_or("outside the host space")?;
//! assert_eq!(u64::from(hpa), 0x8000_0abc);
//!
//! // Arithmetic never wraps.
//! assert_eq!(GuestPhysAddr::MAX.checked_add(1), None);
//! assert!(GuestPhysAddr::try_from(u64::MAX).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod frame;
mod kind;
mod offset;
mod page;
mod phys;
mod range;

pub use error::OutOfRange;
pub use frame::{Gfn, Mfn};
pub use kind::MemKind;
pub use offset::{FrameMapping, FrameOffset};
pub use page::{Order, PAGE_SHIFT, PAGE_SIZE, PHYS_ADDR_BITS, PageSize};
pub use phys::{GuestPhysAddr, HostPhysAddr};
pub use range::{GfnRange, GuestPhysRange, HostPhysRange, MfnRange};
