//! The nvirt test guest (bare metal, `x86_64-unknown-none`, flat image).
//!
//! Entered in 64-bit mode with RBX = the PVH start info (see
//! `nvirt_hypercall_abi::protocol`), it prints its memory map, writes and verifies a
//! pattern over its RAM and NVRAM, prints one line per check, then `PASS` or
//! `FAIL`, and shuts down through Xen's `sched_op(SCHEDOP_shutdown)`.
//! Output goes through Xen's `console_io(CONSOLEIO_write)`; hypercalls use
//! VMMCALL on AMD and VMCALL on Intel, chosen by the CPUID vendor.
//!
//! On any target but `x86_64-unknown-none` this is an empty program.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod bare;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("nvirt-guest runs under nvirt-hv: boot it with `cargo nvirt run`");
}
