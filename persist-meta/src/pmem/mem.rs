//! Plain memory as a [`Pmem`]: every store is immediately "durable". For
//! host tools, tests, and producing or reading region images as files.

use alloc::vec::Vec;

use super::{Pmem, PmemError, checked_range, checked_word};

/// A region in ordinary heap memory. Write-back and fence do nothing; the
/// bytes are the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemPmem {
    bytes: Vec<u8>,
}

impl MemPmem {
    /// A zeroed region of `size` bytes.
    pub fn new(size: usize) -> Self {
        Self {
            bytes: alloc::vec![0; size],
        }
    }

    /// A region holding `bytes`, e.g. an image read from a file.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self { bytes }
    }

    /// The region's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The region's bytes, mutably: for tests that corrupt an image.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    /// The image.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl Pmem for MemPmem {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), PmemError> {
        let range = checked_range(offset, buf.len() as u64, self.size())?;
        if let Some(src) = self.bytes.get(range) {
            buf.copy_from_slice(src);
        }
        Ok(())
    }

    fn store_u64(&mut self, offset: u64, value: u64) -> Result<(), PmemError> {
        let range = checked_word(offset, self.size())?;
        if let Some(dst) = self.bytes.get_mut(range) {
            dst.copy_from_slice(&value.to_le_bytes());
        }
        Ok(())
    }

    fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), PmemError> {
        let range = checked_range(offset, data.len() as u64, self.size())?;
        if let Some(dst) = self.bytes.get_mut(range) {
            dst.copy_from_slice(data);
        }
        Ok(())
    }

    fn write_back(&mut self, offset: u64, len: u64) -> Result<(), PmemError> {
        checked_range(offset, len, self.size()).map(|_| ())
    }

    fn fence(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_reads() {
        let mut pmem = MemPmem::new(64);
        pmem.store_u64(8, 0x0102_0304_0506_0708).unwrap();
        pmem.store(20, b"abc").unwrap();
        assert_eq!(pmem.read_u64(8).unwrap(), 0x0102_0304_0506_0708);
        let mut buf = [0; 3];
        pmem.read(20, &mut buf).unwrap();
        assert_eq!(&buf, b"abc");
        assert!(pmem.store(62, b"abc").is_err());
        assert!(pmem.store_u64(12, 0).is_err());
        assert!(pmem.read(60, &mut [0; 8]).is_err());
        assert!(pmem.write_back(0, 65).is_err());
        assert_eq!(pmem.as_bytes()[20..23], *b"abc");
    }
}
