//! Guest memory as the decoder sees it: through a copying accessor, never
//! through references.
//!
//! Guest memory changes under the hypervisor — another vCPU writes it, a
//! balloon operation unmaps it — so a Rust reference into it would be a lie.
//! Everything the decoder reads is copied out first and validated after; what
//! it writes is copied in.

use core::fmt;
use core::ops::Range;

use zerocopy::{FromBytes, IntoBytes};

use crate::host::walk::WalkError;
use crate::types::GuestAddr;

/// How a range of guest memory is to be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Copied from.
    Read,
    /// Copied to.
    Write,
    /// Both.
    ReadWrite,
}

impl Access {
    /// Whether the access reads.
    #[must_use]
    pub const fn reads(self) -> bool {
        matches!(self, Self::Read | Self::ReadWrite)
    }

    /// Whether the access writes.
    #[must_use]
    pub const fn writes(self) -> bool {
        matches!(self, Self::Write | Self::ReadWrite)
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::ReadWrite => "read/write",
        })
    }
}

/// A guest-memory access that cannot be made. The guest gets `-EFAULT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessError {
    /// Part of the range is not the guest's memory.
    Unmapped {
        /// First byte of the range.
        addr: GuestAddr,
        /// Its length.
        len: u64,
    },
    /// The range is the guest's, but not for this kind of access (a
    /// read-only region, a ROM, a page the hypervisor shares read-only).
    Denied {
        /// First byte of the range.
        addr: GuestAddr,
        /// Its length.
        len: u64,
        /// The access refused.
        access: Access,
    },
    /// A guest-virtual address of the range does not translate: the page
    /// fault the guest would take (see [`Linear`](crate::host::Linear)).
    PageFault {
        /// First byte of the range.
        addr: GuestAddr,
        /// Its length.
        len: u64,
        /// The fault.
        fault: WalkError,
    },
    /// The range passes the end of the 64-bit address space.
    Wraps {
        /// First byte of the range.
        addr: GuestAddr,
        /// Its length.
        len: u64,
    },
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Unmapped { addr, len } => {
                write!(
                    f,
                    "{len:#x} bytes at guest address {addr} are not guest memory"
                )
            }
            Self::Denied { addr, len, access } => write!(
                f,
                "{len:#x} bytes at guest address {addr}: {access} access denied"
            ),
            Self::PageFault { addr, len, fault } => {
                write!(f, "{len:#x} bytes at guest address {addr}: {fault}")
            }
            Self::Wraps { addr, len } => {
                write!(f, "{len:#x} bytes at guest address {addr} wrap past 2^64")
            }
        }
    }
}

impl core::error::Error for AccessError {}

/// Copying access to one guest's memory, with bounds and permissions.
///
/// A hypervisor implements it over its second-level translation (EPT/NPT):
/// walk the guest-physical range, refuse what is unmapped or lacks the
/// permission, copy page by page. Implementations must check every access
/// themselves; [`GuestMemory::check`] lets the decoder refuse a whole array
/// before any work is done, as Xen's `guest_handle_subrange_okay()` does, but
/// guest memory may change between the check and the copy.
pub trait GuestMemory {
    /// Whether `len` bytes from `addr` can be accessed as `access`. Copies
    /// nothing.
    fn check(&self, addr: GuestAddr, len: u64, access: Access) -> Result<(), AccessError>;

    /// Copies `buf.len()` bytes from `addr`.
    fn read(&self, addr: GuestAddr, buf: &mut [u8]) -> Result<(), AccessError>;

    /// Copies `data` to `addr`.
    fn write(&mut self, addr: GuestAddr, data: &[u8]) -> Result<(), AccessError>;
}

impl<M: GuestMemory + ?Sized> GuestMemory for &mut M {
    fn check(&self, addr: GuestAddr, len: u64, access: Access) -> Result<(), AccessError> {
        (**self).check(addr, len, access)
    }

    fn read(&self, addr: GuestAddr, buf: &mut [u8]) -> Result<(), AccessError> {
        (**self).read(addr, buf)
    }

    fn write(&mut self, addr: GuestAddr, data: &[u8]) -> Result<(), AccessError> {
        (**self).write(addr, data)
    }
}

/// Copies a `T` out of guest memory.
pub(crate) fn read_value<T, M>(mem: &M, addr: GuestAddr) -> Result<T, AccessError>
where
    T: FromBytes + IntoBytes,
    M: GuestMemory + ?Sized,
{
    let mut value = T::new_zeroed();
    mem.read(addr, value.as_mut_bytes())?;
    Ok(value)
}

/// Guest memory that is one contiguous host buffer, with an optional
/// read-only window: a simple guest's RAM, a test double, a fuzzing harness.
#[derive(Debug)]
pub struct FlatMemory<'a> {
    base: GuestAddr,
    bytes: &'a mut [u8],
    read_only: Range<u64>,
}

impl<'a> FlatMemory<'a> {
    /// Guest memory `[base, base + bytes.len())` backed by `bytes`, all of it
    /// writable. If the range would pass 2^64 the memory is cut at 2^64.
    #[must_use]
    pub fn new(base: GuestAddr, bytes: &'a mut [u8]) -> Self {
        let room = u64::MAX - base.raw();
        let len = usize::try_from(room).map_or(bytes.len(), |r| bytes.len().min(r));
        let (bytes, _) = bytes.split_at_mut(len);
        Self {
            base,
            bytes,
            read_only: 0..0,
        }
    }

    /// Makes guest addresses `range` read-only.
    #[must_use]
    pub fn with_read_only(self, range: Range<u64>) -> Self {
        Self {
            read_only: range,
            ..self
        }
    }

    /// The first guest address.
    #[must_use]
    pub const fn base(&self) -> GuestAddr {
        self.base
    }

    /// The backing bytes.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        self.bytes
    }

    /// The host offsets of `len` bytes at `addr`, if all are guest memory
    /// allowed for `access`.
    fn locate(
        &self,
        addr: GuestAddr,
        len: u64,
        access: Access,
    ) -> Result<Range<usize>, AccessError> {
        let end = addr
            .raw()
            .checked_add(len)
            .ok_or(AccessError::Wraps { addr, len })?;
        let unmapped = AccessError::Unmapped { addr, len };
        let start = addr.raw().checked_sub(self.base.raw()).ok_or(unmapped)?;
        let stop = end.checked_sub(self.base.raw()).ok_or(unmapped)?;
        let (Ok(start), Ok(stop)) = (usize::try_from(start), usize::try_from(stop)) else {
            return Err(unmapped);
        };
        if stop > self.bytes.len() {
            return Err(unmapped);
        }
        let overlaps_read_only =
            len != 0 && addr.raw() < self.read_only.end && self.read_only.start < end;
        if access.writes() && overlaps_read_only {
            return Err(AccessError::Denied { addr, len, access });
        }
        Ok(start..stop)
    }
}

impl GuestMemory for FlatMemory<'_> {
    fn check(&self, addr: GuestAddr, len: u64, access: Access) -> Result<(), AccessError> {
        self.locate(addr, len, access).map(|_| ())
    }

    fn read(&self, addr: GuestAddr, buf: &mut [u8]) -> Result<(), AccessError> {
        let range = self.locate(addr, buf.len() as u64, Access::Read)?;
        let src = self.bytes.get(range).ok_or(AccessError::Unmapped {
            addr,
            len: buf.len() as u64,
        })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write(&mut self, addr: GuestAddr, data: &[u8]) -> Result<(), AccessError> {
        let range = self.locate(addr, data.len() as u64, Access::Write)?;
        let dst = self.bytes.get_mut(range).ok_or(AccessError::Unmapped {
            addr,
            len: data.len() as u64,
        })?;
        dst.copy_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_memory_bounds_and_permissions() {
        let mut backing = [0u8; 64];
        let mut mem =
            FlatMemory::new(GuestAddr::new(0x1000), &mut backing).with_read_only(0x1020..0x1030);
        mem.write(GuestAddr::new(0x1000), &[1, 2, 3]).unwrap();
        let mut buf = [0u8; 3];
        mem.read(GuestAddr::new(0x1000), &mut buf).unwrap();
        assert_eq!(buf, [1, 2, 3]);
        assert!(mem.check(GuestAddr::new(0x1000), 64, Access::Read).is_ok());
        assert_eq!(
            mem.check(GuestAddr::new(0x1000), 65, Access::Read),
            Err(AccessError::Unmapped {
                addr: GuestAddr::new(0x1000),
                len: 65
            })
        );
        assert!(mem.check(GuestAddr::new(0xfff), 1, Access::Read).is_err());
        assert_eq!(
            mem.write(GuestAddr::new(0x101f), &[0, 0]),
            Err(AccessError::Denied {
                addr: GuestAddr::new(0x101f),
                len: 2,
                access: Access::Write
            })
        );
        assert!(
            mem.read(GuestAddr::new(0x1020), &mut buf).is_ok(),
            "read-only is readable"
        );
        assert!(mem.write(GuestAddr::new(0x1030), &[9]).is_ok());
        assert_eq!(
            mem.check(GuestAddr::new(u64::MAX), 2, Access::Read),
            Err(AccessError::Wraps {
                addr: GuestAddr::new(u64::MAX),
                len: 2
            })
        );
        assert!(
            mem.check(GuestAddr::new(0x1040), 0, Access::Write).is_ok(),
            "empty range at the end"
        );
    }

    #[test]
    fn flat_memory_at_the_top_of_the_address_space() {
        let mut backing = [0u8; 32];
        let mem = FlatMemory::new(GuestAddr::new(u64::MAX - 15), &mut backing);
        assert_eq!(mem.bytes().len(), 15, "cut at 2^64");
        assert!(
            mem.check(GuestAddr::new(u64::MAX - 15), 15, Access::Read)
                .is_ok()
        );
        assert!(
            mem.check(GuestAddr::new(u64::MAX - 15), 16, Access::Read)
                .is_err()
        );
    }
}
