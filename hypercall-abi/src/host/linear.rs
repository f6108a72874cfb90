//! Guest memory addressed as the calling vCPU sees it: guest-virtual
//! addresses, translated by the guest's own page tables, over an accessor
//! of guest-physical memory — what Xen's copy-to/from-guest does for HVM
//! guests.

use crate::host::memory::{Access, AccessError, GuestMemory};
use crate::host::walk::{Paging, translate};
use crate::types::GuestAddr;

/// [`GuestMemory`] over guest-virtual addresses: each access is cut at
/// page boundaries, each page translated with [`translate`] under the
/// vCPU's [`Paging`] and passed to the guest-physical accessor `M`.
///
/// A write is checked page by page before any byte is written, so a
/// write that would fault part-way writes nothing. Guest memory (and the
/// guest's tables) can change between accesses; each access walks anew.
#[derive(Debug)]
pub struct Linear<M> {
    phys: M,
    paging: Option<Paging>,
}

impl<M: GuestMemory> Linear<M> {
    /// Guest-virtual access under `paging` to the guest-physical memory
    /// `phys`.
    #[must_use]
    pub const fn new(phys: M, paging: Paging) -> Self {
        Self {
            phys,
            paging: Some(paging),
        }
    }

    /// Under `Some(paging)` as [`Linear::new`]; under `None` every address
    /// is passed to `phys` as it is (a caller whose pointers are
    /// guest-physical, such as a host test of the hypervisor's logic).
    #[must_use]
    pub const fn maybe(phys: M, paging: Option<Paging>) -> Self {
        Self { phys, paging }
    }

    /// The paging state used, if addresses are translated.
    #[must_use]
    pub const fn paging(&self) -> Option<&Paging> {
        self.paging.as_ref()
    }

    /// The guest-physical accessor.
    #[must_use]
    pub const fn physical(&self) -> &M {
        &self.phys
    }

    /// Gives the guest-physical accessor back.
    #[must_use]
    pub fn into_physical(self) -> M {
        self.phys
    }

    /// Calls `each(gpa, offset, bytes)` for the pieces of `[addr, addr +
    /// len)`, one per page, after translating each for `access`; stops at
    /// the first error.
    fn pieces(
        &self,
        addr: GuestAddr,
        len: u64,
        access: Access,
        mut each: impl FnMut(GuestAddr, usize, usize) -> Result<(), AccessError>,
    ) -> Result<(), AccessError> {
        if addr.raw().checked_add(len).is_none() {
            return Err(AccessError::Wraps { addr, len });
        }
        let Some(paging) = &self.paging else {
            let size = usize::try_from(len).unwrap_or(usize::MAX);
            return each(addr, 0, size);
        };
        let mut done = 0u64;
        while done < len {
            let va = addr.raw() + done;
            let t = translate(paging, &self.phys, va, access)
                .map_err(|fault| AccessError::PageFault { addr, len, fault })?;
            let n = t.run.min(len - done);
            // Pieces of a slice are smaller than the slice; `check` lengths
            // may be larger than memory, so the conversion is saturated and
            // only used by slice callers.
            let (off, size) = (
                usize::try_from(done).unwrap_or(usize::MAX),
                usize::try_from(n).unwrap_or(usize::MAX),
            );
            each(GuestAddr::new(t.gpa), off, size).map_err(|e| match e {
                // Name the caller's range, not the piece.
                AccessError::Unmapped { .. } => AccessError::Unmapped { addr, len },
                AccessError::Denied { access, .. } => AccessError::Denied { addr, len, access },
                AccessError::Wraps { .. } => AccessError::Wraps { addr, len },
                fault @ AccessError::PageFault { .. } => fault,
            })?;
            done += n;
        }
        Ok(())
    }
}

impl<M: GuestMemory> GuestMemory for Linear<M> {
    fn check(&self, addr: GuestAddr, len: u64, access: Access) -> Result<(), AccessError> {
        if self.paging.is_none() {
            return self.phys.check(addr, len, access);
        }
        self.pieces(addr, len, access, |gpa, _, n| {
            self.phys.check(gpa, n as u64, access)
        })
    }

    fn read(&self, addr: GuestAddr, buf: &mut [u8]) -> Result<(), AccessError> {
        let len = buf.len() as u64;
        self.pieces(addr, len, Access::Read, |gpa, off, n| {
            let piece = buf
                .get_mut(off..off + n)
                .ok_or(AccessError::Unmapped { addr, len })?;
            self.phys.read(gpa, piece)
        })
    }

    fn write(&mut self, addr: GuestAddr, data: &[u8]) -> Result<(), AccessError> {
        let len = data.len() as u64;
        let Some(paging) = self.paging else {
            return self.phys.write(addr, data);
        };
        self.check(addr, len, Access::Write)?;
        let mut done = 0usize;
        while done < data.len() {
            let va = addr.raw() + done as u64;
            let t = translate(&paging, &self.phys, va, Access::Write)
                .map_err(|fault| AccessError::PageFault { addr, len, fault })?;
            let n = usize::try_from(t.run).map_or(data.len() - done, |r| r.min(data.len() - done));
            let piece = data
                .get(done..done + n)
                .ok_or(AccessError::Unmapped { addr, len })?;
            self.phys.write(GuestAddr::new(t.gpa), piece)?;
            done += n;
        }
        Ok(())
    }
}
