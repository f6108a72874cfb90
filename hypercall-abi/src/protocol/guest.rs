//! The guest's side of the console and shutdown calls, over any transport
//! that can issue them.

use core::fmt;

use crate::errno::error_code;

use super::console::{CONSOLE_WRITE_MAX, SchedShutdown, ShutdownReason};

/// Issues the protocol's two calls.
///
/// Implemented by [`Vmcall`](crate::guest::Vmcall) (the instruction) and
/// [`Loopback`](crate::guest::Loopback) (a host-side handler in the same
/// process).
pub trait ProtocolTransport {
    /// What can go wrong besides the hypervisor's answer.
    type Error;

    /// `console_io(CONSOLEIO_write, bytes.len(), bytes)`; RAX back. At most
    /// [`CONSOLE_WRITE_MAX`] bytes.
    fn console_write(&mut self, bytes: &[u8]) -> Result<u64, Self::Error>;

    /// `sched_op(SCHEDOP_shutdown, arg)`; RAX back if the hypervisor
    /// returns at all.
    fn sched_shutdown(&mut self, arg: &SchedShutdown) -> Result<u64, Self::Error>;
}

impl<T: ProtocolTransport + ?Sized> ProtocolTransport for &mut T {
    type Error = T::Error;

    fn console_write(&mut self, bytes: &[u8]) -> Result<u64, Self::Error> {
        (**self).console_write(bytes)
    }

    fn sched_shutdown(&mut self, arg: &SchedShutdown) -> Result<u64, Self::Error> {
        (**self).sched_shutdown(arg)
    }
}

/// The hypervisor's console as a [`fmt::Write`] sink: each piece of at most
/// [`CONSOLE_WRITE_MAX`] bytes is one `console_io` call; a transport failure
/// or an error return is a [`fmt::Error`].
#[derive(Debug)]
pub struct Console<T> {
    transport: T,
}

impl<T: ProtocolTransport> Console<T> {
    /// A console over `transport`.
    pub const fn new(transport: T) -> Self {
        Self { transport }
    }

    /// The transport.
    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }
}

impl<T: ProtocolTransport> fmt::Write for Console<T> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for chunk in s.as_bytes().chunks(CONSOLE_WRITE_MAX as usize) {
            match self.transport.console_write(chunk) {
                Ok(ret) if error_code(ret).is_none() => {}
                _ => return Err(fmt::Error),
            }
        }
        Ok(())
    }
}

/// Asks the hypervisor to end the guest with `reason`. Returns only if the
/// hypervisor refused (its RAX) or the transport failed.
pub fn shutdown<T: ProtocolTransport + ?Sized>(
    transport: &mut T,
    reason: ShutdownReason,
) -> Result<u64, T::Error> {
    transport.sched_shutdown(&SchedShutdown::new(reason))
}

#[cfg(test)]
mod tests {
    use core::fmt::Write;

    use super::*;
    use crate::errno::Errno;

    /// Records calls; refuses writes once `refuse` is set.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<usize>,
        shutdowns: Vec<ShutdownReason>,
        refuse: bool,
    }

    impl ProtocolTransport for Recorder {
        type Error = ();
        fn console_write(&mut self, bytes: &[u8]) -> Result<u64, ()> {
            self.writes.push(bytes.len());
            Ok(if self.refuse {
                Errno::Inval.to_return()
            } else {
                0
            })
        }
        fn sched_shutdown(&mut self, arg: &SchedShutdown) -> Result<u64, ()> {
            self.shutdowns.push(arg.reason());
            Ok(Errno::Fault.to_return())
        }
    }

    #[test]
    fn long_writes_are_split_and_errors_reported() {
        let mut r = Recorder::default();
        let long = "x".repeat(CONSOLE_WRITE_MAX as usize + 10);
        assert!(Console::new(&mut r).write_str(&long).is_ok());
        assert_eq!(r.writes, [CONSOLE_WRITE_MAX as usize, 10]);
        r.refuse = true;
        assert!(Console::new(&mut r).write_str("x").is_err());
        assert_eq!(
            shutdown(&mut r, ShutdownReason::Crash),
            Ok(Errno::Fault.to_return())
        );
        assert_eq!(r.shutdowns, [ShutdownReason::Crash]);
    }
}
