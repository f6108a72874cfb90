//! Checking a guest's nested tables against its physical-to-machine map:
//! they must translate exactly the same thing.

use core::fmt;

use nvirt_addr::{GuestPhysAddr, GuestPhysRange, HostPhysAddr};

use crate::guest_memory::{GuestMemory, HostMem};
use crate::pool::FramePool;

/// Where the map and the tables disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditError {
    /// The guest address.
    pub gpa: u64,
    /// The host address the map says, if any.
    pub map: Option<u64>,
    /// The host address the tables say, if any.
    pub tables: Option<u64>,
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "guest-physical {:#x}: map says {:x?}, tables say {:x?}",
            self.gpa, self.map, self.tables
        )
    }
}

impl core::error::Error for AuditError {}

impl<N: FramePool, M: HostMem + Copy> GuestMemory<'_, '_, '_, N, M> {
    /// Checks that the tables translate exactly what the map records: every
    /// leaf run agrees with the map, and they cover as many bytes.
    pub fn audit(&self) -> Result<(), AuditError> {
        let mut mapped = 0u64;
        let mut bad = None;
        self.tables.for_each_extent(|gpa, hpa, len| {
            mapped += len;
            let run = GuestPhysRange::from_len(gpa, len).unwrap_or_else(|| {
                GuestPhysRange::new(gpa, GuestPhysAddr::MAX).unwrap_or_default()
            });
            let mut at = gpa;
            while bad.is_none() && at < run.end() {
                let found = at.offset_from(gpa).and_then(|off| hpa.checked_add(off));
                let map = self.p2m.lookup(at.frame());
                let recorded = map.and_then(|e| e.mapping().offset().to_host_addr(at));
                match map {
                    Some(e) if recorded.is_some() && recorded == found => {
                        at = e.end().addr().min(run.end());
                    }
                    _ => {
                        bad = Some(AuditError {
                            gpa: at.get(),
                            map: recorded.map(HostPhysAddr::get),
                            tables: found.map(HostPhysAddr::get),
                        });
                    }
                }
            }
        });
        if let Some(e) = bad {
            return Err(e);
        }
        let recorded: u64 = self.extents().iter().map(|e| e.block().phys().len()).sum();
        if mapped != recorded {
            // Some recorded frame is missing from the tables: find it.
            for e in self.extents() {
                let (gpa, hpa) = (e.gfn().addr().get(), e.block().phys().start().get());
                if self.tables.translate(gpa) != Some(hpa) {
                    return Err(AuditError {
                        gpa,
                        map: Some(hpa),
                        tables: self.tables.translate(gpa),
                    });
                }
            }
            return Err(AuditError {
                gpa: 0,
                map: Some(recorded),
                tables: Some(mapped),
            });
        }
        Ok(())
    }
}
