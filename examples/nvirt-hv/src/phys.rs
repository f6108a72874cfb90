//! Reading physical memory through a narrow trait, so the boot-information
//! and ACPI parsers run unchanged over the identity map on bare metal and
//! over byte buffers in host tests.

use core::fmt;

/// A read of physical memory that is not allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysError {
    /// First address of the read.
    pub addr: u64,
    /// Its length.
    pub len: usize,
}

impl fmt::Display for PhysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot read {} bytes of physical memory at {:#x}",
            self.len, self.addr
        )
    }
}

impl core::error::Error for PhysError {}

/// Read access to physical memory. Addresses and lengths come from firmware
/// and boot loaders: implementations check them.
pub trait PhysRead {
    /// Copies `out.len()` bytes starting at physical `addr`.
    fn read(&self, addr: u64, out: &mut [u8]) -> Result<(), PhysError>;

    /// Reads a little-endian `u8`.
    fn read_u8(&self, addr: u64) -> Result<u8, PhysError> {
        let mut b = [0u8; 1];
        self.read(addr, &mut b)?;
        Ok(b[0])
    }

    /// Reads a little-endian `u16`.
    fn read_u16(&self, addr: u64) -> Result<u16, PhysError> {
        let mut b = [0u8; 2];
        self.read(addr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Reads a little-endian `u32`.
    fn read_u32(&self, addr: u64) -> Result<u32, PhysError> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads a little-endian `u64`.
    fn read_u64(&self, addr: u64) -> Result<u64, PhysError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// Physical memory that is one byte buffer placed at `base` (host tests,
/// fuzzing).
#[cfg(any(test, feature = "std"))]
#[derive(Clone, Copy, Debug)]
pub struct SliceMemory<'a> {
    base: u64,
    bytes: &'a [u8],
}

#[cfg(any(test, feature = "std"))]
impl<'a> SliceMemory<'a> {
    /// `bytes` appear at physical address `base`.
    #[must_use]
    pub const fn new(base: u64, bytes: &'a [u8]) -> Self {
        Self { base, bytes }
    }
}

#[cfg(any(test, feature = "std"))]
impl PhysRead for SliceMemory<'_> {
    fn read(&self, addr: u64, out: &mut [u8]) -> Result<(), PhysError> {
        let error = PhysError {
            addr,
            len: out.len(),
        };
        let offset = addr
            .checked_sub(self.base)
            .and_then(|o| usize::try_from(o).ok())
            .ok_or(error)?;
        let end = offset.checked_add(out.len()).ok_or(error)?;
        out.copy_from_slice(self.bytes.get(offset..end).ok_or(error)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_memory_checks_bounds() {
        let bytes = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let mem = SliceMemory::new(0x1000, &bytes);
        assert_eq!(mem.read_u32(0x1000), Ok(0x0403_0201));
        assert_eq!(mem.read_u64(0x1000), Ok(0x0807_0605_0403_0201));
        assert!(mem.read_u32(0x1005).is_err());
        assert!(mem.read_u8(0xfff).is_err());
        assert!(mem.read_u8(u64::MAX).is_err());
    }
}
