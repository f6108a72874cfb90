//! Per-VM NVRAM that survives power loss.
//!
//! NVRAM keeps a VM's data through a power failure, but which frames belong
//! to which VM, at which guest-physical address, usually lives in the
//! hypervisor's volatile memory and is lost with it. An [`NvPool`] keeps
//! that bookkeeping on the NVRAM itself: a buddy heap
//! ([`nvirt_buddy`], non-volatile kind) hands out frames, and every change
//! to who owns what is committed to a crash-consistent log
//! ([`nvirt_persist_meta`]) at the start of the region before the call
//! returns. After a crash, [`NvPool::recover`] rebuilds the heap and every
//! domain's extents (guest frame → machine frame, order) and says which
//! domains were running.
//!
//! ```
//! use nvirt_nvpool::{Config, DomainUuid, DomainState, Gfn, NvPool};
//! use nvirt_persist_meta::MemPmem;
//!
//! // A 16 MiB region (an NVDIMM, or here plain memory) and a work area for
//! // the volatile tables: the pool itself needs no allocator.
//! let size = 16 << 20;
//! let config = Config::for_region(size);
//! let geometry = config.geometry(size)?;
//! let mut work = vec![0u8; geometry.work_area_bytes()];
//! let mut pool = NvPool::format(MemPmem::new(size as usize), config, &mut work)?;
//!
//! // A VM with a stable id and a quota of 4 MiB of NVRAM, mapped at 1 GiB.
//! let id = DomainUuid::new(0x5eed);
//! let vm = pool.create(id, "db-vm", 1024)?;
//! let at = Gfn::new(0x4_0000).unwrap();
//! let got = pool.populate(vm, at, 1024)?; // one fence
//! assert_eq!(got.frames, 1024);
//! pool.mark_running(vm)?;
//!
//! // Power fails. The region survives; the work area does not matter.
//! let image = pool.into_region();
//! let (pool, report) = NvPool::recover(image, &mut work)?;
//! assert_eq!(report.crashed, 1);
//! let vm = pool.find(id).unwrap();
//! assert_eq!(pool.domain(vm).unwrap().state, DomainState::CrashedWhileRunning);
//! let extents: Vec<_> = pool.extents(vm).collect();
//! assert_eq!(extents.iter().map(|e| e.frames()).sum::<u64>(), 1024);
//! assert!(pool.lookup(vm, at).is_some());
//! pool.check()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Operations: [`NvPool::create`], [`NvPool::populate`] (largest blocks
//! first, each aligned to its guest address, so guests map with 1 GiB and
//! 2 MiB pages), Xen's [`NvPool::increase_reservation`] and
//! [`NvPool::decrease_reservation`], [`NvPool::destroy`],
//! [`NvPool::mark_running`] / [`NvPool::mark_shut_down`],
//! [`NvPool::claim`] (named free frames), queries
//! ([`NvPool::domains`], [`NvPool::extents`], [`NvPool::lookup`],
//! [`NvPool::owner_of`]). Each mutation costs a constant number of fences
//! however many extents it touches; freed frames are scrubbed (zeroed and
//! made durable) before any other domain can get them, and recovery
//! finishes a scrub a crash interrupted.
//!
//! A damaged image is never opened as a smaller pool: [`survey`] lists
//! every damaged range, and when committed records are lost,
//! [`NvPool::salvage`] cuts the pool back to the state before them, keeping
//! every frame the lost records may own in the quarantine domain
//! [`LOST_FOUND_NAME`] until the operator destroys it.
//!
//! The layout of the region is in [`config`]'s docs; the records in the
//! log, the snapshot in a checkpoint and the superblock each have their
//! format documented in their module. The feature `model` adds the
//! reference model the property tests and fuzzers check the pool against.

#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod avl;
mod bad;
mod bad_pool;
mod check;
mod claim;
mod commit;
pub mod config;
mod damage;
mod decrease;
mod domain;
mod error;
mod format;
mod index;
#[cfg(feature = "model")]
pub mod model;
mod pool;
mod populate;
mod records;
mod recover;
mod release;
mod replay;
mod salvage;
mod scrub;
mod snapshot;
mod state;
mod superblock;
mod survey;
mod types;
mod window;
mod work;

pub use bad::{BadRange, BadRangeError, BadRangeReport, MAX_BAD_RANGES, MetadataPart};
pub use check::InvariantError;
pub use claim::{ClaimError, LOST_FOUND_ID, LOST_FOUND_NAME};
pub use config::{Config, ConfigError, Geometry, metadata_bytes, work_area_bytes};
pub use damage::{Damage, DamageError, Location};
pub use decrease::MAX_DECREASE_BATCH;
pub use domain::MAX_NAME;
pub use error::{CommitError, CreateError, DecreaseError, DomainError, PopulateError};
pub use format::FormatError;
pub use pool::{Dom, DomainInfo, DomainState, Extents, NvPool, Owner, PoolStats};
pub use populate::Populated;
pub use recover::{RecoverError, RecoveryReport};
pub use salvage::{QuarantineReason, Quarantined, SalvageError, SalvageReport, Salvaged};
pub use superblock::{POOL_MAGIC, POOL_VERSION, PoolGeometryError, RawGeometry, SuperblockFault};
pub use survey::{PoolDamage, PoolRecord, PoolSurvey, survey};
pub use types::{DomainUuid, Extent};

/// The shared vocabulary this crate speaks: a user of the pool gets it
/// without depending on `nvirt-addr` directly.
pub use nvirt_addr;
pub use nvirt_addr::{Gfn, HostPhysAddr, Mfn, MfnRange, Order};
pub use window::Window;
pub use work::WorkAreaError;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
