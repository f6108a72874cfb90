//! Operations on whole domains: create, destroy, mark running or shut
//! down, change the quota; and the host's access to a domain's frames.

use nvirt_addr::{PAGE_SHIFT, PAGE_SIZE};
use nvirt_persist_meta::{Pmem, record_size};

use crate::error::{CommitError, CreateError, DomainError};
use crate::pool::{Dom, NvPool};
use crate::records::{CREATE_HEADER, Create, DESTROY, FLAGS, QUOTA, SLOT_RECORD, SlotValue};
use crate::state::flags;
use crate::types::DomainUuid;
use nvirt_addr::Gfn;

/// The longest domain name, in bytes.
pub const MAX_NAME: usize = 32;

impl<P: Pmem> NvPool<'_, P> {
    /// Creates a domain with stable id `id`, a name (up to 32 bytes) and a
    /// quota of `quota` frames. One fence.
    pub fn create(&mut self, id: DomainUuid, name: &str, quota: u64) -> Result<Dom, CreateError> {
        self.create_with_flags(id, name, quota, 0)
    }

    /// Creates a domain marked *incomplete* (see
    /// [`DomainState::Incomplete`](crate::DomainState::Incomplete)): for
    /// importing its data before [`mark_complete`](Self::mark_complete).
    pub fn create_incomplete(
        &mut self,
        id: DomainUuid,
        name: &str,
        quota: u64,
    ) -> Result<Dom, CreateError> {
        self.create_with_flags(id, name, quota, flags::INCOMPLETE)
    }

    fn create_with_flags(
        &mut self,
        id: DomainUuid,
        name: &str,
        quota: u64,
        flag_bits: u8,
    ) -> Result<Dom, CreateError> {
        if name.len() > MAX_NAME {
            return Err(CreateError::NameTooLong { len: name.len() });
        }
        if self.state.id_taken(id) {
            return Err(CreateError::DuplicateId { id });
        }
        let slot = self.state.free_slot().ok_or(CreateError::DomainsFull {
            max: self.state.geo.max_domains,
        })?;
        let record = Create {
            slot,
            flags: flag_bits,
            id,
            quota,
            name: name.as_bytes(),
        };
        let bytes = record_size(CREATE_HEADER + name.len());
        self.commit_adding(
            bytes,
            |g, _| g.push(&record),
            |state| {
                state.create(slot, id, name.as_bytes(), quota, flag_bits);
                Ok(())
            },
        )
        .map_err(CreateError::Commit)?;
        self.find(id)
            .ok_or(CreateError::Commit(CommitError::Poisoned))
    }

    /// Destroys domain `dom`: its frames are scrubbed and return to the
    /// pool. Two fences, however many frames.
    pub fn destroy(&mut self, dom: Dom) -> Result<(), DomainError> {
        let s = self.live(dom).ok_or(DomainError::UnknownDomain)?;
        let record = SlotValue {
            kind: DESTROY,
            slot: s,
            value: 0,
        };
        self.commit_freeing(
            record_size(SLOT_RECORD),
            |g, _| g.push(&record),
            |state| {
                state.begin_destroy(s);
                Ok(())
            },
        )
        .map_err(DomainError::Commit)
    }

    /// Marks domain `dom` running: if the pool stops before
    /// [`mark_shut_down`](Self::mark_shut_down), recovery reports it as
    /// crashed while running. One fence (none if it already is).
    pub fn mark_running(&mut self, dom: Dom) -> Result<(), DomainError> {
        let s = self.set_flags(dom, flags::RUNNING, true)?;
        self.state.domains[usize::from(s)].session_running = 1;
        Ok(())
    }

    /// Marks domain `dom` shut down cleanly. One fence (none if it
    /// already is).
    pub fn mark_shut_down(&mut self, dom: Dom) -> Result<(), DomainError> {
        let s = self.set_flags(dom, flags::RUNNING, false)?;
        self.state.domains[usize::from(s)].session_running = 0;
        Ok(())
    }

    /// Clears the *incomplete* mark of an imported domain. One fence.
    pub fn mark_complete(&mut self, dom: Dom) -> Result<(), DomainError> {
        self.set_flags(dom, flags::INCOMPLETE, false).map(|_| ())
    }

    fn set_flags(&mut self, dom: Dom, bit: u8, on: bool) -> Result<u16, DomainError> {
        let s = self.live(dom).ok_or(DomainError::UnknownDomain)?;
        let old = self.state.domains[usize::from(s)].flags;
        let new = if on { old | bit } else { old & !bit };
        if new != old {
            let record = SlotValue {
                kind: FLAGS,
                slot: s,
                value: new.into(),
            };
            self.commit_adding(
                record_size(SLOT_RECORD),
                |g, _| g.push(&record),
                |state| {
                    state.domains[usize::from(s)].flags = new;
                    Ok(())
                },
            )
            .map_err(DomainError::Commit)?;
        }
        Ok(s)
    }

    /// Sets domain `dom`'s quota to `quota` frames (not below what it
    /// owns). One fence.
    pub fn set_quota(&mut self, dom: Dom, quota: u64) -> Result<(), DomainError> {
        let s = self.live(dom).ok_or(DomainError::UnknownDomain)?;
        let frames = self.state.domains[usize::from(s)].frames;
        if quota < frames {
            return Err(DomainError::QuotaBelowUsage { frames, quota });
        }
        let record = SlotValue {
            kind: QUOTA,
            slot: s,
            value: quota,
        };
        self.commit_adding(
            record_size(SLOT_RECORD),
            |g, _| g.push(&record),
            |state| {
                state.domains[usize::from(s)].quota = quota;
                Ok(())
            },
        )
        .map_err(DomainError::Commit)
    }

    /// The region offset of byte `offset` of guest frame `gpfn` of `dom`,
    /// for an access of `len` bytes that must stay inside the frame.
    fn guest_offset(
        &self,
        dom: Dom,
        gpfn: Gfn,
        offset: usize,
        len: usize,
    ) -> Result<u64, DomainError> {
        if offset
            .checked_add(len)
            .is_none_or(|end| end as u64 > PAGE_SIZE)
        {
            return Err(DomainError::FrameBounds { offset, len });
        }
        self.live(dom).ok_or(DomainError::UnknownDomain)?;
        let mfn = self
            .lookup(dom, gpfn)
            .ok_or(DomainError::NotPopulated { gpfn })?;
        Ok(((mfn.get() - self.state.geo.frame_base) << PAGE_SHIFT) + offset as u64)
    }

    /// Reads `buf.len()` bytes from byte `offset` of guest frame `gpfn` of
    /// domain `dom` (for host tools: a hypervisor maps the frames into the
    /// guest instead). The access must stay inside the frame.
    pub fn read_guest(
        &self,
        dom: Dom,
        gpfn: Gfn,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<(), DomainError> {
        let at = self.guest_offset(dom, gpfn, offset, buf.len())?;
        self.region()
            .read(at, buf)
            .map_err(|e| DomainError::Commit(e.into()))
    }

    /// Stores `data` at byte `offset` of guest frame `gpfn` of domain `dom`
    /// and starts writing it back; [`persist`](Self::persist) makes every
    /// store so far durable. The access must stay inside the frame.
    pub fn write_guest(
        &mut self,
        dom: Dom,
        gpfn: Gfn,
        offset: usize,
        data: &[u8],
    ) -> Result<(), DomainError> {
        let at = self.guest_offset(dom, gpfn, offset, data.len())?;
        let region = self.log.pmem_mut().region_mut();
        region
            .store(at, data)
            .and_then(|()| region.write_back(at, data.len() as u64))
            .map_err(|e| DomainError::Commit(e.into()))
    }

    /// One fence: everything stored with
    /// [`write_guest`](Self::write_guest) is durable when it returns.
    pub fn persist(&mut self) {
        self.log.pmem_mut().region_mut().fence();
    }
}
