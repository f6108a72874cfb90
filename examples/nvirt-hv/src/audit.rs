//! Checking a guest's nested tables against its physical-to-machine map:
//! they must translate exactly the same thing.

use core::fmt;

use crate::guest_memory::{GuestMemory, HostMem, PAGE};
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
            let mut at = gpa;
            let end = gpa.saturating_add(len);
            while bad.is_none() && at < end {
                let found = hpa + (at - gpa);
                match self.p2m.lookup(at / PAGE) {
                    Some(e) if e.mfn(at / PAGE) * PAGE + at % PAGE == found => {
                        at = (e.end() * PAGE).min(end);
                    }
                    other => {
                        bad = Some(AuditError {
                            gpa: at,
                            map: other.map(|e| e.mfn(at / PAGE) * PAGE),
                            tables: Some(found),
                        });
                    }
                }
            }
        });
        if let Some(e) = bad {
            return Err(e);
        }
        let recorded: u64 = self.extents().iter().map(|e| e.block.frames() * PAGE).sum();
        if mapped != recorded {
            // Some recorded frame is missing from the tables: find it.
            for e in self.extents() {
                let gpa = e.gpfn * PAGE;
                if self.tables.translate(gpa) != Some(e.block.start().addr().get()) {
                    return Err(AuditError {
                        gpa,
                        map: Some(e.block.start().addr().get()),
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
