//! Linux's x86 boot protocol (the kernel's `Documentation/arch/x86/boot.rst`),
//! 64-bit entry: a bzImage's setup header is checked ([`bzimage`]), its
//! protected-mode kernel is copied to its preferred address, the initrd
//! and the command line are placed in guest RAM, and a zero page
//! (`struct boot_params`, [`zero_page`]) carries the guest's synthesized
//! E820 map and where everything is ([`load`]). The guest starts in long
//! mode at the kernel's 64-bit entry with RSI pointing at the zero page,
//! `__BOOT_CS` (0x10) and `__BOOT_DS` (0x18) loaded, interrupts off, and
//! identity page tables over its whole address space.
//!
//! Everything here is pure logic over a [`GuestWrite`](crate::guest_setup::GuestWrite):
//! a hostile kernel image or initrd gives a [`bzimage::LinuxImageError`] or
//! [`load::LinuxLoadError`], never a panic or a write outside guest RAM.

pub mod bzimage;
pub mod load;
pub mod zero_page;

#[cfg(test)]
mod tests;
