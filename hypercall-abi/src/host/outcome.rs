//! How a call ends: a value or an error returned to the guest, a
//! continuation, or a fault injected into the guest — and why a call was
//! refused.
//!
//! Returning an error and faulting the guest are different things. An error
//! (`-errno` in RAX) answers a well-formed call: the guest asked, the answer
//! is no, and the guest carries on. A fault (an exception injected into the
//! vCPU) says the instruction was not a hypercall the caller may make at all;
//! the guest's exception handler deals with it and RAX is untouched. The
//! decoder only faults where the hypervisor's [`UserCalls`] policy says so.

use core::fmt;

use crate::errno::Errno;
use crate::flags::FlagError;
use crate::host::context::{Registers, UserCalls};
use crate::host::memory::AccessError;
use crate::numbers::{Command, MemopCmd};
use crate::types::{DomId, ExtentOrder, GuestAddr};

/// An exception the hypervisor injects into the calling vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// #UD, invalid opcode.
    InvalidOpcode,
}

impl Fault {
    /// The exception vector (#UD is 6).
    #[must_use]
    pub const fn vector(self) -> u8 {
        match self {
            Self::InvalidOpcode => 6,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidOpcode => f.write_str("#UD (invalid opcode)"),
        }
    }
}

/// How a `memory_op` call ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Complete: RAX = the value (extents done, pages, 0). Values in the
    /// last 4095 of the word read as errors to the guest; no answer of this
    /// ABI comes near them.
    Success(u64),
    /// Nothing done: RAX = `-errno`.
    Error(Errno),
    /// Some extents done, then a stop: RAX = `done`, Xen's partial success.
    /// `cause` is for the hypervisor's log; the guest sees only the count.
    Partial {
        /// Extents done, counting from the first extent of the request.
        done: u64,
        /// Why work stopped.
        cause: Errno,
    },
    /// A batch is done and more remain: RDI = the command word, RIP stays
    /// on the hypercall instruction, and the guest re-enters with the resume
    /// point in the command's upper bits — what Xen's
    /// `hypercall_create_continuation()` does for HVM guests. Pending
    /// interrupts are delivered in between.
    Continue(MemopCmd),
    /// Inject the exception; registers and RIP untouched.
    Fault(Fault),
}

/// What the hypervisor does with the vCPU after [`Outcome::apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resume {
    /// Advance RIP past the 3-byte VMCALL/VMMCALL and resume.
    Next,
    /// Resume at the same instruction: the guest re-executes the hypercall.
    Again,
    /// Inject the fault (RIP stays on the instruction, as for any fault).
    Inject(Fault),
}

impl Outcome {
    /// Error `cause` after `done` extents: partial success if any were done.
    #[must_use]
    pub const fn stopped(done: u64, cause: Errno) -> Self {
        if done == 0 {
            Self::Error(cause)
        } else {
            Self::Partial { done, cause }
        }
    }

    /// The value for RAX, or `None` for a continuation or a fault.
    #[must_use]
    pub const fn rax(&self) -> Option<u64> {
        match *self {
            Self::Success(v) => Some(v),
            Self::Error(e) => Some(e.to_return()),
            Self::Partial { done, .. } => Some(done),
            Self::Continue(_) | Self::Fault(_) => None,
        }
    }

    /// Writes the outcome into the guest's registers and says how to resume.
    pub const fn apply(&self, regs: &mut Registers) -> Resume {
        match *self {
            Self::Continue(cmd) => {
                regs.rdi = cmd.raw();
                Resume::Again
            }
            Self::Fault(f) => Resume::Inject(f),
            Self::Success(v) | Self::Partial { done: v, .. } => {
                regs.rax = v;
                Resume::Next
            }
            Self::Error(e) => {
                regs.rax = e.to_return();
                Resume::Next
            }
        }
    }
}

/// Which part of a call a guest address belonged to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// The argument structure RSI points at.
    Argument,
    /// A reservation's extent array.
    ExtentArray,
    /// A memory map's entry buffer.
    MapBuffer,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Argument => "argument",
            Self::ExtentArray => "extent array",
            Self::MapBuffer => "map buffer",
        })
    }
}

/// Why a call was refused, with the offending values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// RAX is not `__HYPERVISOR_memory_op`.
    NotMemoryOp {
        /// The hypercall number.
        number: u64,
    },
    /// The call came from user mode.
    UserMode {
        /// The caller's privilege level.
        cpl: u8,
    },
    /// A command number nvirt does not implement.
    UnknownCommand {
        /// The command bits of RDI.
        op: u64,
    },
    /// A resume point on a command that cannot be continued.
    NotContinuable {
        /// The command.
        command: Command,
        /// The resume point found.
        start_extent: u64,
    },
    /// More extents than the hypervisor allows in one call.
    TooManyExtents {
        /// Extents asked for.
        nr_extents: u64,
        /// The limit.
        max: u64,
    },
    /// Another domain's id: not permitted.
    ForeignDomain {
        /// The id named.
        domid: DomId,
    },
    /// A reserved id other than `DOMID_SELF`.
    NoSuchDomain {
        /// The id named.
        domid: DomId,
    },
    /// An extent order above the hypervisor's limit.
    OrderTooLarge {
        /// The order asked for.
        order: u32,
        /// The limit.
        max: ExtentOrder,
    },
    /// `mem_flags` does not parse.
    Flags(FlagError),
    /// Valid flags this command does not take.
    FlagsNotAllowed {
        /// The command.
        command: Command,
        /// The flag word.
        mem_flags: u32,
    },
    /// A NUMA node the guest does not have.
    NodeOutOfRange {
        /// The node named.
        node: u8,
        /// Nodes the guest has.
        nodes: u8,
    },
    /// A privileged command from an unprivileged caller.
    NotPrivileged {
        /// The command.
        command: Command,
    },
    /// More memory-map entries than the hypervisor accepts.
    TooManyMapEntries {
        /// Entries given.
        nr_entries: u32,
        /// The limit.
        max: u32,
    },
    /// An array whose byte size does not fit 64 bits, or whose end passes
    /// 2^64.
    ArrayOverflow {
        /// Which array.
        field: Field,
        /// Its alleged start.
        addr: GuestAddr,
        /// Its element count.
        count: u64,
    },
    /// Guest memory that cannot be accessed.
    Memory {
        /// What was being accessed.
        field: Field,
        /// Why it failed.
        error: AccessError,
    },
}

impl Reason {
    /// The error number the guest gets for it.
    #[must_use]
    pub const fn errno(&self) -> Errno {
        match self {
            Self::NotMemoryOp { .. } | Self::UnknownCommand { .. } => Errno::NoSys,
            // Xen passes the whole command word to `arch_memory_op()`,
            // whose commands then match nothing: -ENOSYS; the commands
            // `do_memory_op()` serves itself answer -EINVAL.
            Self::NotContinuable { command, .. } => match command {
                Command::MemoryMap | Command::MachineMemoryMap | Command::SetMemoryMap => {
                    Errno::NoSys
                }
                _ => Errno::Inval,
            },
            Self::UserMode { .. } | Self::ForeignDomain { .. } | Self::NotPrivileged { .. } => {
                Errno::Perm
            }
            Self::NoSuchDomain { .. } => Errno::Srch,
            Self::ArrayOverflow { .. } | Self::Memory { .. } => Errno::Fault,
            Self::TooManyExtents { .. }
            | Self::OrderTooLarge { .. }
            | Self::Flags(_)
            | Self::FlagsNotAllowed { .. }
            | Self::NodeOutOfRange { .. }
            | Self::TooManyMapEntries { .. } => Errno::Inval,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotMemoryOp { number } => write!(f, "hypercall {number} is not memory_op"),
            Self::UserMode { cpl } => write!(f, "hypercall from user mode (CPL {cpl})"),
            Self::UnknownCommand { op } => write!(f, "memory_op command {op} is not implemented"),
            Self::NotContinuable {
                command,
                start_extent,
            } => write!(f, "{command} cannot resume at extent {start_extent}"),
            Self::TooManyExtents { nr_extents, max } => {
                write!(f, "{nr_extents} extents asked for, at most {max} allowed")
            }
            Self::ForeignDomain { domid } => {
                write!(f, "domain {domid} is not the caller's")
            }
            Self::NoSuchDomain { domid } => write!(f, "no domain {domid}"),
            Self::OrderTooLarge { order, max } => {
                write!(f, "extent order {order} above the limit, {max}")
            }
            Self::Flags(e) => e.fmt(f),
            Self::FlagsNotAllowed { command, mem_flags } => {
                write!(f, "{command} does not take mem_flags {mem_flags:#010x}")
            }
            Self::NodeOutOfRange { node, nodes } => {
                write!(f, "NUMA node {node} asked for, the guest has {nodes}")
            }
            Self::NotPrivileged { command } => write!(f, "{command} needs a privileged caller"),
            Self::TooManyMapEntries { nr_entries, max } => {
                write!(f, "{nr_entries} map entries, at most {max} accepted")
            }
            Self::ArrayOverflow { field, addr, count } => {
                write!(f, "{field} of {count} elements at {addr} passes 2^64")
            }
            Self::Memory { field, error } => write!(f, "{field}: {error}"),
        }
    }
}

/// A call the decoder refused, and how it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    reason: Reason,
    done: u64,
    fault: bool,
}

impl Rejection {
    pub(crate) const fn new(reason: Reason) -> Self {
        Self {
            reason,
            done: 0,
            fault: false,
        }
    }

    /// The same refusal on a continued call that had done `done` extents:
    /// the guest gets the count, as Xen returns `start_extent`.
    pub(crate) const fn after(self, done: u64) -> Self {
        Self { done, ..self }
    }

    pub(crate) const fn user_mode(cpl: u8, policy: UserCalls) -> Self {
        Self {
            reason: Reason::UserMode { cpl },
            done: 0,
            fault: matches!(policy, UserCalls::Fault),
        }
    }

    /// What was wrong.
    #[must_use]
    pub const fn reason(&self) -> &Reason {
        &self.reason
    }

    /// The error number the refusal carries.
    #[must_use]
    pub const fn errno(&self) -> Errno {
        self.reason.errno()
    }

    /// How the call ends: a fault, a partial success if earlier entries
    /// had done extents, else `-errno`.
    #[must_use]
    pub const fn outcome(&self) -> Outcome {
        if self.fault {
            Outcome::Fault(Fault::InvalidOpcode)
        } else {
            Outcome::stopped(self.done, self.reason.errno())
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.errno().name())
    }
}

impl core::error::Error for Rejection {}

impl From<Rejection> for Outcome {
    fn from(r: Rejection) -> Self {
        r.outcome()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_set_registers() {
        let mut regs = Registers::default();
        assert_eq!(Outcome::Success(7).apply(&mut regs), Resume::Next);
        assert_eq!(regs.rax, 7);
        assert_eq!(Outcome::Error(Errno::Fault).apply(&mut regs), Resume::Next);
        assert_eq!(regs.rax as i64, -14);
        assert_eq!(
            Outcome::stopped(0, Errno::NoMem),
            Outcome::Error(Errno::NoMem)
        );
        assert_eq!(Outcome::stopped(3, Errno::NoMem).rax(), Some(3));
        let cont = MemopCmd::resuming(Command::PopulatePhysmap, 512).unwrap();
        regs.rax = 12;
        assert_eq!(Outcome::Continue(cont).apply(&mut regs), Resume::Again);
        assert_eq!(
            (regs.rax, regs.rdi),
            (12, cont.raw()),
            "RAX keeps the number"
        );
        assert_eq!(
            Outcome::Fault(Fault::InvalidOpcode).apply(&mut regs),
            Resume::Inject(Fault::InvalidOpcode)
        );
        assert_eq!(Fault::InvalidOpcode.vector(), 6);
    }

    #[test]
    fn refusals_keep_earlier_progress() {
        let r = Rejection::new(Reason::UnknownCommand { op: 5 });
        assert_eq!(r.outcome(), Outcome::Error(Errno::NoSys));
        assert_eq!(
            r.after(64).outcome(),
            Outcome::Partial {
                done: 64,
                cause: Errno::NoSys
            }
        );
        assert_eq!(
            Rejection::user_mode(3, UserCalls::Fault).outcome(),
            Outcome::Fault(Fault::InvalidOpcode)
        );
        assert_eq!(
            Rejection::user_mode(3, UserCalls::Refuse).outcome(),
            Outcome::Error(Errno::Perm)
        );
        assert_eq!(
            r.to_string(),
            "memory_op command 5 is not implemented (ENOSYS)"
        );
    }
}
