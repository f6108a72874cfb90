//! The console and shutdown hypercalls, Xen's numbers and argument
//! conventions, and their host-side decoding.
//!
//! - `console_io(CONSOLEIO_write, len, buffer)` (`xen/include/public/xen.h`,
//!   `__HYPERVISOR_console_io` 18): RDI = command, RSI = byte count, RDX =
//!   the buffer's guest address. Returns 0.
//! - `sched_op(SCHEDOP_shutdown, &sched_shutdown)` (`__HYPERVISOR_sched_op`
//!   29, `xen/include/public/sched.h`): RDI = command, RSI = the guest
//!   address of `struct sched_shutdown { unsigned int reason; }`. Does not
//!   return when it succeeds.

use core::fmt;
use core::mem::size_of;

use static_assertions::const_assert_eq;
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::errno::Errno;
use crate::host::{AccessError, GuestMemory, Registers};
use crate::numbers::{HYPERVISOR_CONSOLE_IO, HYPERVISOR_SCHED_OP};
use crate::types::GuestAddr;

/// Xen's `CONSOLEIO_write`.
pub const CONSOLEIO_WRITE: u64 = 0;
/// Longest console write accepted in one call.
pub const CONSOLE_WRITE_MAX: u64 = 4096;
/// Xen's `SCHEDOP_shutdown`.
pub const SCHEDOP_SHUTDOWN: u64 = 2;
/// Xen's `SHUTDOWN_poweroff`: the guest finished normally.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// Xen's `SHUTDOWN_crash`: the guest failed.
pub const SHUTDOWN_CRASH: u32 = 3;

/// `struct sched_shutdown`: 4 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct SchedShutdown {
    reason: U32,
}

const_assert_eq!(size_of::<SchedShutdown>(), 4);

impl SchedShutdown {
    /// The argument for `reason`.
    #[must_use]
    pub const fn new(reason: ShutdownReason) -> Self {
        Self {
            reason: U32::new(reason.code()),
        }
    }

    /// The reason it carries.
    #[must_use]
    pub const fn reason(&self) -> ShutdownReason {
        ShutdownReason::from_code(self.reason.get())
    }
}

/// How a guest said it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    /// `SHUTDOWN_poweroff`.
    Poweroff,
    /// `SHUTDOWN_crash`.
    Crash,
    /// Any other code.
    Other(u32),
}

impl ShutdownReason {
    /// The reason numbered `code`.
    #[must_use]
    pub const fn from_code(code: u32) -> Self {
        match code {
            SHUTDOWN_POWEROFF => Self::Poweroff,
            SHUTDOWN_CRASH => Self::Crash,
            other => Self::Other(other),
        }
    }

    /// Its number.
    #[must_use]
    pub const fn code(self) -> u32 {
        match self {
            Self::Poweroff => SHUTDOWN_POWEROFF,
            Self::Crash => SHUTDOWN_CRASH,
            Self::Other(code) => code,
        }
    }
}

impl From<u32> for ShutdownReason {
    fn from(code: u32) -> Self {
        Self::from_code(code)
    }
}

impl fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Poweroff => f.write_str("poweroff"),
            Self::Crash => f.write_str("crash"),
            Self::Other(code) => write!(f, "reason {code}"),
        }
    }
}

/// One of the two calls, decoded; its guest addresses still unchecked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `console_io(CONSOLEIO_write, len, buffer)`, `len` at most
    /// [`CONSOLE_WRITE_MAX`].
    ConsoleWrite {
        /// The bytes' guest address.
        buffer: GuestAddr,
        /// Their count.
        len: u64,
    },
    /// `sched_op(SCHEDOP_shutdown, arg)`.
    Shutdown {
        /// The guest address of [`SchedShutdown`].
        arg: GuestAddr,
    },
}

/// Decodes RAX (number) and RDI, RSI, RDX (arguments), or gives the error
/// to return: `EINVAL` for a command of the two calls this protocol does
/// not have or a write longer than [`CONSOLE_WRITE_MAX`], `ENOSYS` for any
/// other hypercall number (a hypervisor dispatches `memory_op` first).
pub const fn decode(regs: &Registers) -> Result<Call, Errno> {
    match (regs.rax, regs.rdi) {
        (HYPERVISOR_CONSOLE_IO, CONSOLEIO_WRITE) if regs.rsi <= CONSOLE_WRITE_MAX => {
            Ok(Call::ConsoleWrite {
                buffer: GuestAddr::new(regs.rdx),
                len: regs.rsi,
            })
        }
        (HYPERVISOR_SCHED_OP, SCHEDOP_SHUTDOWN) => Ok(Call::Shutdown {
            arg: GuestAddr::new(regs.rsi),
        }),
        (HYPERVISOR_CONSOLE_IO | HYPERVISOR_SCHED_OP, _) => Err(Errno::Inval),
        _ => Err(Errno::NoSys),
    }
}

/// Reads the shutdown argument a [`Call::Shutdown`] points at.
pub fn read_shutdown<M: GuestMemory + ?Sized>(
    mem: &M,
    arg: GuestAddr,
) -> Result<ShutdownReason, AccessError> {
    let mut raw = SchedShutdown::new(ShutdownReason::Poweroff);
    mem.read(arg, raw.as_mut_bytes())?;
    Ok(raw.reason())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FlatMemory;

    fn regs(rax: u64, rdi: u64, rsi: u64, rdx: u64) -> Registers {
        Registers {
            rax,
            rdi,
            rsi,
            rdx,
            r10: 0,
            r8: 0,
        }
    }

    #[test]
    fn decodes_the_two_calls_and_refuses_the_rest() {
        assert_eq!(HYPERVISOR_CONSOLE_IO, 18);
        assert_eq!(HYPERVISOR_SCHED_OP, 29);
        assert_eq!(
            decode(&regs(18, 0, 5, 0x2000)),
            Ok(Call::ConsoleWrite {
                buffer: GuestAddr::new(0x2000),
                len: 5
            })
        );
        assert_eq!(
            decode(&regs(18, 0, CONSOLE_WRITE_MAX + 1, 0)),
            Err(Errno::Inval)
        );
        assert_eq!(decode(&regs(18, 1, 5, 0)), Err(Errno::Inval));
        assert_eq!(
            decode(&regs(29, 2, 0x3000, 0)),
            Ok(Call::Shutdown {
                arg: GuestAddr::new(0x3000)
            })
        );
        assert_eq!(decode(&regs(29, 0, 0, 0)), Err(Errno::Inval));
        assert_eq!(decode(&regs(12, 0, 0, 0)), Err(Errno::NoSys));
        assert_eq!(decode(&regs(u64::MAX, 0, 0, 0)), Err(Errno::NoSys));
    }

    #[test]
    fn shutdown_reasons_round_trip() {
        for r in [
            ShutdownReason::Poweroff,
            ShutdownReason::Crash,
            ShutdownReason::Other(7),
        ] {
            assert_eq!(ShutdownReason::from_code(r.code()), r);
            assert_eq!(SchedShutdown::new(r).reason(), r);
        }
        assert_eq!(ShutdownReason::from(SHUTDOWN_CRASH), ShutdownReason::Crash);
        assert_eq!(ShutdownReason::Other(9).to_string(), "reason 9");
        let mut ram = [0u8; 16];
        ram[8..12].copy_from_slice(&3u32.to_le_bytes());
        let mem = FlatMemory::new(GuestAddr::new(0x1000), &mut ram);
        assert_eq!(
            read_shutdown(&mem, GuestAddr::new(0x1008)),
            Ok(ShutdownReason::Crash)
        );
        assert!(read_shutdown(&mem, GuestAddr::new(0x100e)).is_err());
    }
}
