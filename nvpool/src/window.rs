//! The log's view of the region: a window of it, so that the log (which
//! uses its whole `Pmem` up to the end) covers only the metadata area,
//! while the pool reaches the rest through [`Window::region_mut`].

use nvirt_persist_meta::{Pmem, PmemError};

/// Bytes `start .. start + len` of a region, as a region of their own.
#[derive(Debug)]
pub struct Window<P> {
    region: P,
    start: u64,
    len: u64,
}

impl<P: Pmem> Window<P> {
    /// The window `start .. start + len` of `region`; `None` unless it lies
    /// inside the region and starts on a cache line.
    pub fn new(region: P, start: u64, len: u64) -> Result<Self, P> {
        let fits = start % 64 == 0
            && start
                .checked_add(len)
                .is_some_and(|end| end <= region.size());
        if fits {
            Ok(Self { region, start, len })
        } else {
            Err(region)
        }
    }

    /// The whole region.
    pub fn region(&self) -> &P {
        &self.region
    }

    /// The whole region, mutably (for stores outside the window).
    pub fn region_mut(&mut self) -> &mut P {
        &mut self.region
    }

    /// Gives the whole region back.
    pub fn into_region(self) -> P {
        self.region
    }

    fn at(&self, offset: u64, len: u64) -> Result<u64, PmemError> {
        let out = PmemError::OutOfBounds {
            offset,
            len,
            size: self.len,
        };
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(self.start + offset),
            _ => Err(out),
        }
    }
}

impl<P: Pmem> Pmem for Window<P> {
    fn size(&self) -> u64 {
        self.len
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), PmemError> {
        let at = self.at(offset, buf.len() as u64)?;
        self.region.read(at, buf)
    }

    fn store_u64(&mut self, offset: u64, value: u64) -> Result<(), PmemError> {
        if offset % 8 != 0 {
            return Err(PmemError::Misaligned { offset });
        }
        let at = self.at(offset, 8)?;
        self.region.store_u64(at, value)
    }

    fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), PmemError> {
        let at = self.at(offset, data.len() as u64)?;
        self.region.store(at, data)
    }

    fn write_back(&mut self, offset: u64, len: u64) -> Result<(), PmemError> {
        let at = self.at(offset, len)?;
        self.region.write_back(at, len)
    }

    fn fence(&mut self) {
        self.region.fence();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvirt_persist_meta::MemPmem;

    #[test]
    fn offsets_are_shifted_and_bounded() {
        let mut w = Window::new(MemPmem::new(0x3000), 0x1000, 0x1000).unwrap();
        assert_eq!(w.size(), 0x1000);
        w.store_u64(8, 0x55).unwrap();
        assert_eq!(w.region().read_u64(0x1008).unwrap(), 0x55);
        assert!(w.store(0xff8, &[0; 9]).is_err());
        assert!(w.store_u64(4, 0).is_err());
        assert!(w.read(0x1000, &mut [0; 1]).is_err());
        assert!(w.write_back(u64::MAX, 2).is_err());
        assert!(Window::new(MemPmem::new(0x3000), 0x2000, 0x1001).is_err());
        assert!(Window::new(MemPmem::new(0x3000), 0x20, 0x10).is_err());
        assert_eq!(w.into_region().size(), 0x3000);
    }
}
