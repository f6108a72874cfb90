//! The guest↔hypervisor memory ABI of nvirt: Xen's `memory_op` hypercall,
//! byte for byte, plus one flag that asks for non-volatile memory.
//!
//! Balloon drivers and guest kernels already speak Xen's
//! `XENMEM_increase_reservation`, `decrease_reservation`, `populate_physmap`
//! and `memory_map`. nvirt keeps that ABI exactly — hypercall number,
//! command numbers, structure layouts, error numbers, partial success and
//! continuations — and adds [`NVIRT_MEMF_NVRAM`] to `mem_flags`, so a guest
//! needs one bit to ask for NVRAM instead of RAM.
//!
//! The crate has two halves. [`guest`] makes typed calls through
//! `vmcall`/`vmmcall`. [`host`] is the hypervisor's attack surface: it
//! decodes a call from the guest's registers and copies its arguments out of
//! guest memory through a [`GuestMemory`](host::GuestMemory) accessor,
//! validates everything, and hands back a typed [`Request`](host::Request)
//! or the exact answer the guest gets.
//!
//! Both halves meet in this example: the guest's call goes through a
//! loopback transport into a host-side handler, which sees exactly the
//! registers and guest memory a hypervisor would.
//!
//! ```
//! use nvirt_hypercall_abi::guest::{Loopback, MemoryOps};
//! use nvirt_hypercall_abi::host::{self, Caller, FlatMemory, Limits, Outcome, Request};
//! use nvirt_hypercall_abi::{DomId, Errno, ExtentOrder, GuestAddr, MemKind, XenPfn};
//!
//! let caller = Caller::kernel(DomId::new(1)).unwrap();
//! // The guest has 2^18 frames (1 GiB); one entry handles at most 2 extents.
//! let limits = Limits::new(XenPfn::new(1 << 18)).batch(2.try_into()?);
//! let mut ram = vec![0u8; 1 << 16];
//! let mut mem = FlatMemory::new(GuestAddr::new(0), &mut ram);
//! let mut nvram_frames = Vec::new();
//!
//! let handler = |mem: &mut FlatMemory<'_>, regs: &_| match host::decode(regs, &caller, mem, &limits) {
//!     Err(refused) => refused.outcome(),
//!     Ok(Request::Reservation(r)) if r.kind() == MemKind::NonVolatile => r.run(mem, |extent| {
//!         nvram_frames.push(extent.gfn().ok_or(Errno::Inval)?);
//!         Ok(None)
//!     }),
//!     Ok(_) => Outcome::Error(Errno::NoSys),
//! };
//! let mut guest = MemoryOps::new(Loopback::new(&mut mem, GuestAddr::new(0x1000), handler));
//!
//! // Five 2 MiB NVRAM extents: three hypervisor entries, one answer.
//! let mut extents = [0x400, 0x600, 0x800, 0xa00, 0xc00].map(XenPfn::new);
//! let done = guest.populate_physmap(MemKind::NonVolatile, ExtentOrder::PAGE_2M, &mut extents)?;
//! assert_eq!(done, 5);
//! assert_eq!(guest.transport().entries(), 3);
//!
//! // A misaligned extent stops the call there: Xen's partial success.
//! let mut extents = [0xe00, 0xe01].map(XenPfn::new);
//! assert_eq!(guest.populate_physmap(MemKind::NonVolatile, ExtentOrder::PAGE_2M, &mut extents)?, 1);
//! assert_eq!(nvram_frames.len(), 6);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Modules: [`layout`] holds the argument structures with their
//! compile-time size and offset checks; [`protocol`] the rest of what
//! nvirt's hypervisor and its guests agree on (boot layout, start info,
//! guest parameters, image header, console and shutdown calls); the
//! numbers, flags, error numbers and typed values are re-exported here.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod discovery;
mod errno;
mod flags;
pub mod guest;
pub mod host;
pub mod layout;
mod numbers;
pub mod protocol;
mod types;

pub use errno::{Errno, MAX_ERRNO, error_code};
pub use flags::{
    FlagError, KNOWN_MEMF_BITS, MemFlags, NVIRT_MEMF_NVRAM, NodeRequest, XENMEMF_ADDRESS_BITS_MASK,
    XENMEMF_EXACT_NODE_REQUEST, XENMEMF_FORCE_HEAP_ALLOC, XENMEMF_NODE_MASK, XENMEMF_NODE_SHIFT,
    XENMEMF_POPULATE_ON_DEMAND, XENMEMF_VNODE,
};
pub use host::ReservationOp;
pub use layout::{
    CompatForeignMemoryMap, CompatMemoryMap, CompatMemoryReservation, E820Entry, ForeignMemoryMap,
    MemoryDomain, MemoryMap, MemoryReservation,
};
pub use numbers::{
    Command, HYPERVISOR_CONSOLE_IO, HYPERVISOR_MEMORY_OP, HYPERVISOR_SCHED_OP,
    MAX_CONTINUABLE_EXTENTS, MEMOP_CMD_MASK, MEMOP_EXTENT_SHIFT, MemopCmd,
};
pub use types::{DomId, ExtentOrder, GuestAddr, PAGE_SHIFT, PAGE_SIZE, XenPfn};

/// The shared vocabulary the host side converts guest values into: a user
/// of the ABI gets it without depending on `nvirt-addr` directly.
pub use nvirt_addr;
pub use nvirt_addr::{Gfn, MemKind, Order};

/// The README's examples, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
