//! The hypervisor's console: a 16550 UART at COM1 (what the runner reads)
//! mirrored to port 0xE9 (Bochs's `port_e9_hack` and QEMU's `-debugcon`),
//! and the emulator exits.
//!
//! The hypervisor runs on one CPU with interrupts off, so the console needs
//! no lock: every write is a complete sequence of port writes.

use core::fmt;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use super::io::{inb, outb};

/// COM1's base port.
const COM1: u16 = 0x3f8;
/// The debug-console port of Bochs and QEMU.
const PORT_E9: u16 = 0xe9;
/// QEMU's `isa-debug-exit` device as the runner configures it
/// (`iobase=0xf4,iosize=0x04`): writing V exits with status `V << 1 | 1`.
const QEMU_EXIT_PORT: u16 = 0xf4;
/// Value written on success: QEMU exits with status 33.
pub(crate) const QEMU_EXIT_SUCCESS: u8 = 0x10;
/// Value written on failure: QEMU exits with status 35.
pub(crate) const QEMU_EXIT_FAILURE: u8 = 0x11;
/// Bochs's power-management port: the string "Shutdown" written to it stops
/// the emulator with status 1.
const BOCHS_SHUTDOWN_PORT: u16 = 0x8900;

/// Programs COM1 for 115200 baud, 8N1, FIFOs on, interrupts off.
pub(crate) fn init() {
    // SAFETY: COM1's registers, programmed in the documented order; no
    // other code drives the UART.
    unsafe {
        outb(COM1 + 1, 0x00); // interrupts off
    }
    let setup = [
        (3, 0x80),
        (0, 0x01),
        (1, 0x00),
        (3, 0x03),
        (2, 0xc7),
        (4, 0x03),
    ];
    for (offset, value) in setup {
        // SAFETY: as above: DLAB on, divisor 1, DLAB off with 8N1, FIFO
        // enable/clear, DTR|RTS.
        unsafe { outb(COM1 + offset, value) };
    }
}

/// Writes one byte to COM1 and port 0xE9.
pub(crate) fn write_byte(byte: u8) {
    // Bounded wait for the transmitter: a missing UART must not hang us.
    for _ in 0..100_000 {
        // SAFETY: reading COM1's line-status register has no side effect
        // on transmission.
        if unsafe { inb(COM1 + 5) } & 0x20 != 0 {
            break;
        }
    }
    // SAFETY: the transmit holding register and the debug console port.
    unsafe { outb(COM1, byte) };
    // SAFETY: port 0xE9 is either the emulator's debug console or unused.
    unsafe { outb(PORT_E9, byte) };
}

/// Writes bytes, turning `\n` into `\r\n`.
pub(crate) fn write_bytes(bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            write_byte(b'\r');
        }
        write_byte(b);
    }
}

/// A `fmt::Write` sink onto the console.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

/// The name of the guest whose time slice it is, when several run: its
/// address and length (a `&'static str` split for atomics; one CPU, so
/// plain loads and stores suffice).
static CONTEXT_PTR: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());
static CONTEXT_LEN: AtomicUsize = AtomicUsize::new(0);

/// Names the guest the following lines are about (`None`: the hypervisor
/// itself, or its only guest).
pub(crate) fn set_context(name: Option<&'static str>) {
    let (ptr, len) = name.map_or((core::ptr::null_mut(), 0), |n| {
        (n.as_ptr().cast_mut(), n.len())
    });
    CONTEXT_LEN.store(len, Ordering::Relaxed);
    CONTEXT_PTR.store(ptr, Ordering::Relaxed);
}

/// The guest named by [`set_context`].
pub(crate) fn context() -> Option<&'static str> {
    let ptr = CONTEXT_PTR.load(Ordering::Relaxed);
    if ptr.is_null() {
        return None;
    }
    let len = CONTEXT_LEN.load(Ordering::Relaxed);
    // SAFETY: `set_context` stored the address and length of a `&'static
    // str`, and both change together on this one CPU.
    let bytes = unsafe { core::slice::from_raw_parts(ptr, len) };
    core::str::from_utf8(bytes).ok()
}

/// Prints a line prefixed `nvirt-hv: ` (and `vm NAME: ` during a guest's
/// time slice when several guests run).
macro_rules! hvprintln {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let mut out = $crate::hw::console::Console;
        let _ = match $crate::hw::console::context() {
            Some(vm) => writeln!(out, "nvirt-hv: vm {vm}: {}", format_args!($($arg)*)),
            None => writeln!(out, "nvirt-hv: {}", format_args!($($arg)*)),
        };
    }};
}
pub(crate) use hvprintln;

/// Stops the emulator: QEMU through `isa-debug-exit`; Bochs through its magic
/// breakpoint (`xchg bx, bx`, which the runner's debugger script answers with
/// `q`, status 0) on success, or its shutdown port (status 1) on failure.
/// Real hardware halts.
pub(crate) fn exit(success: bool) -> ! {
    drain();
    let qemu_value = if success {
        QEMU_EXIT_SUCCESS
    } else {
        QEMU_EXIT_FAILURE
    };
    // SAFETY: the exit port ends QEMU; elsewhere nothing listens there.
    unsafe { outb(QEMU_EXIT_PORT, qemu_value) };
    if success {
        // SAFETY: `xchg bx, bx` swaps a register with itself: an ordinary
        // no-op except for Bochs's magic breakpoint.
        unsafe { core::arch::asm!("xchg bx, bx", options(nomem, nostack, preserves_flags)) };
    } else {
        for &b in b"Shutdown" {
            // SAFETY: Bochs's shutdown port; unused elsewhere.
            unsafe { outb(BOCHS_SHUTDOWN_PORT, b) };
        }
    }
    halt_forever()
}

/// Waits (bounded) until the UART has sent everything: an emulator that
/// stops at once would otherwise drop the bytes still in its FIFO.
fn drain() {
    for _ in 0..1_000_000 {
        // SAFETY: reading COM1's line-status register has no side effect
        // on transmission.
        if unsafe { inb(COM1 + 5) } & 0x40 != 0 {
            break;
        }
    }
}

/// Halts with interrupts off.
pub(crate) fn halt_forever() -> ! {
    loop {
        // SAFETY: `cli; hlt` stops this CPU; nothing follows.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}
