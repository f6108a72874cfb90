//! A transport that runs a host-side handler in the same process: the
//! guest's arguments are copied into a [`GuestMemory`] at a scratch address,
//! the handler sees exactly the registers and bytes a hypervisor would, and
//! the results are copied back. It exercises the whole ABI — encoding,
//! decoding, continuations, write-back — without a virtual machine.

use core::fmt;

use zerocopy::IntoBytes;

use crate::guest::{Arg, Extents, Transport};
use crate::host::{AccessError, Fault, GuestMemory, Outcome, Registers, Resume};
use crate::layout::MemoryMap;
use crate::numbers::{HYPERVISOR_CONSOLE_IO, HYPERVISOR_SCHED_OP, MemopCmd};
use crate::protocol::{CONSOLEIO_WRITE, ProtocolTransport, SCHEDOP_SHUTDOWN, SchedShutdown};
use crate::types::GuestAddr;

/// Where the array goes, after the argument structure (the largest is 32
/// bytes; 64 keeps the array 8-byte aligned with room to spare).
const ARRAY_OFFSET: u64 = 64;

/// A loopback transport into `handler`, with arguments placed in `mem` at
/// `scratch`.
#[derive(Debug)]
pub struct Loopback<'m, M: ?Sized, H> {
    mem: &'m mut M,
    scratch: GuestAddr,
    handler: H,
    entries: u64,
    entry_limit: u64,
}

impl<'m, M, H> Loopback<'m, M, H>
where
    M: GuestMemory + ?Sized,
    H: FnMut(&mut M, &Registers) -> Outcome,
{
    /// Calls go to `handler`, with arguments copied to `scratch` in `mem`
    /// (the area needs 64 bytes plus the largest array). One call may enter
    /// the handler at most 2^20 times (continuations included).
    pub fn new(mem: &'m mut M, scratch: GuestAddr, handler: H) -> Self {
        Self {
            mem,
            scratch,
            handler,
            entries: 0,
            entry_limit: 1 << 20,
        }
    }

    /// One call may enter the handler at most `n` times.
    #[must_use]
    pub fn entry_limit(self, n: u64) -> Self {
        Self {
            entry_limit: n,
            ..self
        }
    }

    /// Handler entries so far, continuations included.
    #[must_use]
    pub const fn entries(&self) -> u64 {
        self.entries
    }

    /// The guest memory.
    pub fn memory(&mut self) -> &mut M {
        self.mem
    }

    fn array_at(&self) -> Result<GuestAddr, LoopbackError> {
        self.scratch
            .checked_add(ARRAY_OFFSET)
            .ok_or(LoopbackError::Scratch(AccessError::Wraps {
                addr: self.scratch,
                len: ARRAY_OFFSET,
            }))
    }

    /// Enters the handler until the call completes.
    fn enter(&mut self, mut regs: Registers) -> Result<u64, LoopbackError> {
        let mut this_call = 0u64;
        loop {
            if this_call == self.entry_limit {
                return Err(LoopbackError::Runaway { entries: this_call });
            }
            this_call += 1;
            self.entries += 1;
            let outcome = (self.handler)(self.mem, &regs);
            match outcome.apply(&mut regs) {
                Resume::Next => return Ok(regs.rax),
                Resume::Again => {}
                Resume::Inject(f) => return Err(LoopbackError::Fault(f)),
            }
        }
    }
}

impl<M, H> Transport for Loopback<'_, M, H>
where
    M: GuestMemory + ?Sized,
    H: FnMut(&mut M, &Registers) -> Outcome,
{
    type Error = LoopbackError;

    fn memory_op(&mut self, cmd: MemopCmd, arg: Arg<'_>) -> Result<u64, LoopbackError> {
        let header_at = self.scratch;
        let array_at = self.array_at()?;
        let scratch = LoopbackError::Scratch;
        match arg {
            Arg::Null => self.enter(Registers::memory_op(cmd, GuestAddr::NULL)),
            Arg::Domain(domain) => {
                self.mem
                    .write(header_at, domain.as_bytes())
                    .map_err(scratch)?;
                self.enter(Registers::memory_op(cmd, header_at))
            }
            Arg::Reservation { header, extents } => {
                header.set_extent_start(array_at);
                self.mem
                    .write(header_at, header.as_bytes())
                    .map_err(scratch)?;
                match extents {
                    // The arrays are laid out as in guest memory (XenPfn is
                    // `xen_pfn_t`, E820Entry the 20-byte entry): one copy.
                    Extents::In(e) => {
                        self.mem.write(array_at, e.as_bytes()).map_err(scratch)?;
                        self.enter(Registers::memory_op(cmd, header_at))
                    }
                    Extents::InOut(e) => {
                        self.mem.write(array_at, e.as_bytes()).map_err(scratch)?;
                        let ret = self.enter(Registers::memory_op(cmd, header_at))?;
                        self.mem.read(array_at, e.as_mut_bytes()).map_err(scratch)?;
                        Ok(ret)
                    }
                }
            }
            Arg::MemoryMap { header, buffer } => {
                header.set_buffer(array_at);
                self.mem
                    .write(header_at, header.as_bytes())
                    .map_err(scratch)?;
                let ret = self.enter(Registers::memory_op(cmd, header_at))?;
                let mut back = MemoryMap::new(0, GuestAddr::NULL);
                self.mem
                    .read(header_at, back.as_mut_bytes())
                    .map_err(scratch)?;
                header.set_nr_entries(back.nr_entries());
                let n = (back.nr_entries() as usize).min(buffer.len());
                if let Some(written) = buffer.get_mut(..n) {
                    self.mem
                        .read(array_at, written.as_mut_bytes())
                        .map_err(scratch)?;
                }
                Ok(ret)
            }
        }
    }
}

impl<M, H> ProtocolTransport for Loopback<'_, M, H>
where
    M: GuestMemory + ?Sized,
    H: FnMut(&mut M, &Registers) -> Outcome,
{
    type Error = LoopbackError;

    fn console_write(&mut self, bytes: &[u8]) -> Result<u64, LoopbackError> {
        let at = self.scratch;
        self.mem.write(at, bytes).map_err(LoopbackError::Scratch)?;
        self.enter(Registers {
            rax: HYPERVISOR_CONSOLE_IO,
            rdi: CONSOLEIO_WRITE,
            rsi: bytes.len() as u64,
            rdx: at.raw(),
            r10: 0,
            r8: 0,
        })
    }

    fn sched_shutdown(&mut self, arg: &SchedShutdown) -> Result<u64, LoopbackError> {
        let at = self.scratch;
        self.mem
            .write(at, arg.as_bytes())
            .map_err(LoopbackError::Scratch)?;
        self.enter(Registers {
            rax: HYPERVISOR_SCHED_OP,
            rdi: SCHEDOP_SHUTDOWN,
            rsi: at.raw(),
            rdx: 0,
            r10: 0,
            r8: 0,
        })
    }
}

/// A loopback call that did not reach an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopbackError {
    /// The scratch area is not usable guest memory.
    Scratch(AccessError),
    /// The handler faulted the guest.
    Fault(Fault),
    /// The handler kept continuing the call.
    Runaway {
        /// Entries made.
        entries: u64,
    },
}

impl fmt::Display for LoopbackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scratch(e) => write!(f, "scratch area: {e}"),
            Self::Fault(fault) => write!(f, "the hypervisor injected {fault}"),
            Self::Runaway { entries } => {
                write!(f, "call still continuing after {entries} entries")
            }
        }
    }
}

impl core::error::Error for LoopbackError {}
