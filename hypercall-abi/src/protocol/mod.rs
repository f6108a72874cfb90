//! The rest of what nvirt's reference hypervisor and a guest it boots agree
//! on, besides `memory_op`: where the boot structures lie in guest-physical
//! memory, the PVH start info and the command line's parameters, the flat
//! guest image's header, and the console and shutdown hypercalls.
//!
//! Guest-physical layout, in address order (that the pieces do not
//! overlap is checked at compile time):
//!
//! | address | what |
//! |---|---|
//! | [`START_INFO_GPA`] `0x1000` | [`StartInfo`] (`hvm_start_info`, PVH version 1), in RBX at entry |
//! | [`MEMMAP_GPA`] `0x1100` | its memory map ([`MemmapEntry`], at most [`MEMMAP_MAX`]) |
//! | [`CMDLINE_GPA`] `0x1800` | its command line ([`GuestParams`]), NUL-terminated |
//! | [`GDT_GPA`] `0x2000` | a GDT: null, 64-bit code ([`GUEST_CODE_SELECTOR`]), data ([`GUEST_DATA_SELECTOR`]) |
//! | [`PAGE_TABLES_GPA`] `0x1_0000` | identity page tables: PML4, PDPT, one page directory per GiB (2 MiB pages) |
//! | [`INITIAL_RSP`] `0x9_f000` | the initial stack pointer, below the EBDA |
//! | [`IMAGE_GPA`] `0x10_0000` | the guest image, loaded as its [`ImageHeader`] says |
//!
//! The guest starts in 64-bit long mode, paging through the identity
//! tables, RBX = [`START_INFO_GPA`], RIP = the header's entry.
//!
//! Hypercalls follow Xen's x86-64 convention (number in RAX; RDI, RSI, RDX,
//! R10, R8; result in RAX) through VMMCALL on AMD and VMCALL on Intel.
//! [`decode`] is the host side of the two calls here; [`Console`] and
//! [`shutdown`] the guest side, over any [`ProtocolTransport`]: the real
//! instruction ([`Vmcall`](crate::guest::Vmcall)) or the in-process
//! [`Loopback`](crate::guest::Loopback).
//!
//! ```
//! use core::fmt::Write;
//! use nvirt_hypercall_abi::guest::Loopback;
//! use nvirt_hypercall_abi::host::{FlatMemory, GuestMemory, Outcome};
//! use nvirt_hypercall_abi::protocol::{self, Call, Console, ShutdownReason};
//! use nvirt_hypercall_abi::GuestAddr;
//!
//! let mut ram = vec![0u8; 0x2000];
//! let mut mem = FlatMemory::new(GuestAddr::new(0), &mut ram);
//! let mut printed = Vec::new();
//! let mut ended = None;
//! let handler = |mem: &mut FlatMemory<'_>, regs: &_| match protocol::decode(regs) {
//!     Ok(Call::ConsoleWrite { buffer, len }) => {
//!         let mut bytes = vec![0; len as usize];
//!         mem.read(buffer, &mut bytes).unwrap();
//!         printed.extend_from_slice(&bytes);
//!         Outcome::Success(0)
//!     }
//!     Ok(Call::Shutdown { arg }) => {
//!         ended = protocol::read_shutdown(mem, arg).ok();
//!         Outcome::Success(0)
//!     }
//!     Err(errno) => Outcome::Error(errno),
//! };
//! let mut guest = Loopback::new(&mut mem, GuestAddr::new(0x1000), handler);
//! writeln!(Console::new(&mut guest), "PASS")?;
//! protocol::shutdown(&mut guest, ShutdownReason::Poweroff)?;
//! drop(guest);
//! assert_eq!(printed, b"PASS\n");
//! assert_eq!(ended, Some(ShutdownReason::Poweroff));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod console;
mod guest;
mod image;
mod layout;
mod params;
mod start_info;

pub use console::{
    CONSOLE_WRITE_MAX, CONSOLEIO_WRITE, Call, SCHEDOP_SHUTDOWN, SHUTDOWN_CRASH, SHUTDOWN_POWEROFF,
    SchedShutdown, ShutdownReason, decode, read_shutdown,
};
pub use guest::{Console, ProtocolTransport, shutdown};
pub use image::{
    IMAGE_HEADER_LEN, IMAGE_MAGIC, IMAGE_VERSION, ImageError, ImageHeader, RawImageHeader,
};
pub use layout::{
    CMDLINE_GPA, CMDLINE_MAX, GDT_GPA, GUEST_CODE_SELECTOR, GUEST_DATA_SELECTOR, IMAGE_GPA,
    INITIAL_RSP, MEMMAP_GPA, MEMMAP_MAX, PAGE_TABLES_END, PAGE_TABLES_GPA, START_INFO_GPA,
};
pub use params::GuestParams;
pub use start_info::{MemmapEntry, PVH_MAGIC, START_INFO_VERSION, StartInfo};

pub use crate::numbers::{HYPERVISOR_CONSOLE_IO, HYPERVISOR_MEMORY_OP, HYPERVISOR_SCHED_OP};
