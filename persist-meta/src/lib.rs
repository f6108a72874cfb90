//! A crash-consistent metadata log on NVRAM, for hypervisors and kernels.
//!
//! Persistent memory keeps its contents through a power failure, but the
//! bookkeeping that says which pages belong to whom usually lives in
//! volatile memory. This crate keeps that bookkeeping on the NVRAM itself,
//! as a log of checksummed records in one region: each commit (one record
//! or a group, stored as one header and one checksum with its records
//! packed behind it) costs one cache-line write-back per line and **one
//! fence**;
//! checkpoints bound recovery time; recovery validates every byte it uses
//! and returns the state after a prefix of the commits that includes every
//! commit that had returned.
//!
//! ```
//! use nvirt_persist_meta::{Log, MemPmem, Raw, RecordKind, Replayed, replay_fn};
//!
//! const EXTENT: RecordKind = match RecordKind::new(1) { Some(k) => k, None => unreachable!() };
//!
//! // A fresh region: two superblocks, two 4 KiB checkpoint slots, records.
//! let mut log = Log::format(MemPmem::new(64 * 1024), 4000)?;
//! log.append(&Raw { kind: EXTENT, payload: b"dom 1: gpfn 0x100 -> mfn 0x8000, order 9" })?;
//! let mut group = log.group();
//! group.push(&Raw { kind: EXTENT, payload: b"dom 2: gpfn 0 -> mfn 0x9000, order 0" })?;
//! group.push(&Raw { kind: EXTENT, payload: b"dom 2: gpfn 1 -> mfn 0x9001, order 0" })?;
//! group.commit()?; // both records or neither survive a crash
//!
//! // Power fails; the region survives. Recovery replays what committed.
//! let image = log.into_pmem();
//! let mut records = Vec::new();
//! let (log, recovery, _) = Log::open(image, &mut replay_fn(|event| {
//!     if let Replayed::Record(r) = event {
//!         records.push(r.payload().to_vec());
//!     }
//!     Ok::<(), core::convert::Infallible>(())
//! }))?;
//! assert_eq!(records.len(), 3);
//! assert_eq!(recovery.records, 3);
//! assert!(log.space().free > 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The pieces: [`Pmem`] abstracts the region (8-byte failure-atomic
//! stores, cache-line write-back, fence) with an x86 implementation
//! ([`X86Pmem`]: CLWB, CLFLUSHOPT or CLFLUSH, and SFENCE — the crate's only
//! unsafe code), plain memory (`MemPmem`, feature `alloc`) and a crash
//! simulator (`sim::SimPmem`, feature `std`) that enumerates every crash
//! image the x86 persistence model allows. [`Log`] writes (its docs state
//! the protocol); [`replay`] and [`Log::open`] recover; [`inspect()`] reports
//! on an image for tools.
//!
//! Owners define their records with [`Encode`] / [`Decode`] (or use
//! [`Raw`]) and their snapshot format through [`CheckpointWriter`] and
//! [`CheckpointReader`], which stream, so nothing needs an allocator.
//!
//! Features: `alloc` (`MemPmem`); `std` (the simulator, and hardware
//! CRC-32C through the `crc32c` crate).

#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod checkpoint;
mod checksum;
mod committed;
#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod crc_combine;
mod error;
mod group;
mod image;
pub mod inspect;
pub mod layout;
mod log;
mod open;
pub mod pmem;
mod record;
mod recover;
mod scan;
#[cfg(feature = "std")]
pub mod sim;
pub mod superblock;
mod survey;

pub use checkpoint::{
    CHECKPOINT_MAGIC, CheckpointFault, CheckpointInfo, CheckpointReader, CheckpointWriter,
    SnapshotError, SnapshotReadError,
};
pub use error::{AppendError, CheckpointError, FormatError};
pub use group::Group;
pub use image::{ImageError, Superblocks};
pub use inspect::inspect;
pub use layout::{Layout, LayoutError, SuperblockError};
pub use log::{Commit, FIRST_SEQ, Log, Space};
pub use open::Repairs;
#[cfg(feature = "alloc")]
pub use pmem::MemPmem;
pub use pmem::{CACHE_LINE, CacheLine, Counting, Pmem, PmemError, PmemStats};
#[cfg(target_arch = "x86_64")]
pub use pmem::{FlushInstruction, X86Pmem, X86PmemError};
pub use record::{Decode, Encode, MAX_PAYLOAD, RECORD_ALIGN, RECORD_HEADER, Raw, RecordKind};
pub use recover::{End, RecoverError, Recovery, Replay, ReplayFn, Replayed, replay, replay_fn};
pub use scan::{RecordView, StopReason};
pub use survey::{Damaged, DamagedPart, Survey, survey};

/// Bytes a record with a `payload_len`-byte payload occupies in the record
/// area as a commit of its own (group header and padding included), for
/// owners sizing their logs: an upper bound on what it adds to any group,
/// so the sum over a group's records bounds the group.
pub fn record_size(payload_len: usize) -> u64 {
    record::record_size(payload_len as u64).unwrap_or(u64::MAX)
}

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
