//! A zone/order buddy page-frame allocator for hypervisors and kernels that
//! manage RAM and NVRAM side by side.
//!
//! Every [`Heap`] has a [`MemKind`] (volatile or non-volatile) and hands out
//! aligned blocks of 2^[`Order`] frames, optionally limited to low memory by
//! [`Constraints`] (zones are frame-number bit widths, as in Xen). Its
//! metadata is a caller-provided buffer of about 3.03 bits per frame (see
//! [`metadata_bytes`]); the heap never reads or writes the frames it
//! manages, so NVRAM frames need not even be mapped, and free NVRAM is never
//! worn by bookkeeping. The per-frame part of the metadata of a block of the
//! largest order is written when something first changes inside the block,
//! so creating a heap and adding a large range takes time in proportion to
//! its blocks of the largest order, not its frames. Frees name the order, as in Xen's
//! `free_heap_pages`, and a wrong one is an error, never corruption.
//!
//! ```
//! use nvirt_buddy::{Constraints, Heap, MemKind, Order, MfnRange, metadata_bytes};
//!
//! // 8 GiB of RAM from 0 to 8 GiB, with a hole at 3..4 GiB.
//! let span = MfnRange::from_numbers(0, 0x20_0000).unwrap();
//! let mut metadata = vec![0u8; metadata_bytes(span, Order::MAX) + 7];
//! let mut heap = Heap::new(MemKind::Volatile, span, Order::MAX, &mut metadata)?;
//! heap.add(MfnRange::from_numbers(0x100, 0xc_0000).unwrap())?;
//! heap.add(MfnRange::from_numbers(0x10_0000, 0x20_0000).unwrap())?;
//!
//! // A 2 MiB page below 4 GiB, for a 32-bit device.
//! let dma = heap.alloc(Order::SIZE_2M, Constraints::max_address_bits(32))?;
//! assert!(dma.start().addr().get() + dma.order().bytes() <= 1 << 32);
//!
//! // The largest block up to 1 GiB: a whole 1 GiB page here.
//! let big = heap.alloc_at_most(Order::SIZE_1G, Constraints::ANY)?;
//! assert_eq!(big.order(), Order::SIZE_1G);
//!
//! // A wrong free is refused and changes nothing.
//! assert!(heap.free(big.start(), Order::SIZE_2M).is_err());
//! heap.free_block(big)?;
//! heap.free_block(dma)?;
//! assert_eq!(heap.free_frames(), heap.managed_frames());
//! heap.check_invariants()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Heaps`] pairs a volatile and a non-volatile heap and answers
//! [`Heaps::kind_of`] for any frame; [`LockedHeap`] shares a heap between
//! CPUs behind a `spin` lock, and a [`FrameCache`] per CPU keeps most
//! single-frame allocations off that lock; a [`ShardedHeap`] splits one
//! span into heaps with a lock each, so CPUs allocating from their own
//! shards do not meet at all; a [`PerCpuHeap`] gives each CPU a
//! reservation of up to 2 MiB from one heap, from which it allocates single
//! frames without the heap's lock. Recovery after a power failure rebuilds a
//! non-volatile heap with [`Heap::claim`], one O(largest order) step per
//! block its log records.
//!
//! No allocator is needed: the metadata can be a `static` or frames the
//! caller sets aside. The feature `model` adds the per-frame reference model
//! the property tests and fuzzers check the heap against.

#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod add;
mod alloc;
mod bits;
mod cache;
mod check;
mod claim;
mod dual;
mod error;
mod free;
mod handback;
mod heap;
mod iter;
mod layout;
mod lazy;
mod locked;
#[cfg(feature = "model")]
pub mod model;
mod moves;
mod percpu;
mod range;
mod search;
mod sharded;
mod types;
mod view;

pub use cache::FrameCache;
pub use check::InvariantError;
pub use dual::{HeapRef, Heaps};
pub use error::{
    AddError, AllocError, BlockError, ClaimError, FreeError, FreeRangeError, HeapsAddError,
    NewError, ReserveError, UnknownFrame,
};
pub use heap::{FrameState, Heap};
pub use iter::{FreeBlocks, Stats};
pub use layout::metadata_bytes;
pub use locked::{Locked, LockedHeap, LockedHeaps};
pub use percpu::{PerCpuHeap, RESERVATION_ORDER};
pub use range::{AlignedBlocks, Constraints};
pub use sharded::ShardedHeap;
pub use types::{Block, Zone};

/// The shared vocabulary this crate speaks: a user of the buddy heaps gets
/// it without depending on `nvirt-addr` directly.
pub use nvirt_addr;
pub use nvirt_addr::{HostPhysAddr, HostPhysRange, MemKind, Mfn, MfnRange, Order};

/// The README's example, compiled as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
