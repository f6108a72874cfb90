//! Everything that touches the machine: boot code, console, CPU tables,
//! physical memory and the two virtualization backends. Only built for
//! `x86_64-unknown-none`.

pub(crate) mod boot;
pub(crate) mod boot_failure;
pub(crate) mod console;
pub(crate) mod cpu;
pub(crate) mod discover;
pub(crate) mod exits;
pub(crate) mod hypervisor;
pub(crate) mod io;
pub(crate) mod mem;
pub(crate) mod nvram;
pub(crate) mod phases;
pub(crate) mod svm;
pub(crate) mod timer;
pub(crate) mod vcpu;
pub(crate) mod vms;
pub(crate) mod vmx;
