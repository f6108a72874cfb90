//! Making changes durable with a constant number of fences.
//!
//! *Adding* changes (create, populate, increase, flags, quota) are one
//! commit group: one fence, however many extents. When the group does not
//! fit in what is left of the record area, the change is applied and a
//! checkpoint of the whole pool commits it instead: two fences, and the
//! record area starts over. So checkpoints are taken automatically, and
//! recovery reads at most one snapshot and one record area.
//!
//! *Freeing* changes (decrease, destroy) are a commit group (the frames go
//! to the pending list), then the scrub: every pending frame is zeroed,
//! written back, and one fence makes the zeros durable, before the frames
//! return to the heap. Two fences, however many frames. A crash between
//! leaves the group in the log with its frames pending; recovery scrubs
//! them again before anything else can have them. When the group does not
//! fit, a checkpoint first empties the record area (four fences then).

use nvirt_persist_meta::{AppendError, Group, Pmem, RECORD_HEADER};

use crate::damage::Damage;
use crate::error::CommitError;
use crate::pool::NvPool;
use crate::snapshot;
use crate::state::State;
use crate::window::Window;

impl<P: Pmem> NvPool<'_, P> {
    pub(crate) fn usable(&self) -> Result<(), CommitError> {
        if self.poisoned {
            Err(CommitError::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Whether a group of `bytes` fits at the log's tail (with room for an
    /// epoch record the log may have to write first).
    fn fits(&self, bytes: u64) -> bool {
        bytes.saturating_add(RECORD_HEADER) <= self.log.space().free
    }

    /// Pushes a group and commits it; on error nothing of it is durable.
    fn group(
        &mut self,
        push: impl FnOnce(&mut Group<'_, Window<P>>, &State<'_>) -> Result<(), AppendError>,
    ) -> Result<(), CommitError> {
        let mut group = self.log.group();
        push(&mut group, &self.state)?;
        group.commit()?;
        Ok(())
    }

    /// Commits an adding change of `bytes` of records: as a group, then
    /// `apply`; or, if the group does not fit, `apply` and a checkpoint.
    /// On error the state is as before, unless the pool is now poisoned
    /// (`apply` failed, or the checkpoint after it).
    pub(crate) fn commit_adding(
        &mut self,
        bytes: u64,
        push: impl FnOnce(&mut Group<'_, Window<P>>, &State<'_>) -> Result<(), AppendError>,
        apply: impl FnOnce(&mut State<'_>) -> Result<(), Damage>,
    ) -> Result<(), CommitError> {
        self.usable()?;
        if self.fits(bytes) {
            self.group(push)?;
            return self.applied(apply);
        }
        self.applied(apply)?;
        self.checkpoint().inspect_err(|_| self.poisoned = true)
    }

    /// Applies a committed (or about to be checkpointed) change; a failure
    /// there means the state and the log disagree, so the pool is
    /// poisoned.
    fn applied(
        &mut self,
        apply: impl FnOnce(&mut State<'_>) -> Result<(), Damage>,
    ) -> Result<(), CommitError> {
        apply(&mut self.state).map_err(|_| {
            self.poisoned = true;
            CommitError::Poisoned
        })
    }

    /// Commits a freeing change of `bytes` of records: the group, then
    /// `apply` (which moves frames to the pending list or marks a domain
    /// destroying), then the scrub and its fence, then the frames return
    /// to the heap.
    pub(crate) fn commit_freeing(
        &mut self,
        bytes: u64,
        push: impl FnOnce(&mut Group<'_, Window<P>>, &State<'_>) -> Result<(), AppendError>,
        apply: impl FnOnce(&mut State<'_>) -> Result<(), Damage>,
    ) -> Result<(), CommitError> {
        self.usable()?;
        if !self.fits(bytes) {
            let capacity = self.log.space().capacity;
            if bytes.saturating_add(2 * RECORD_HEADER) > capacity {
                return Err(CommitError::LogTooSmall {
                    needed: bytes,
                    capacity,
                });
            }
            self.checkpoint()?;
        }
        self.group(push)?;
        self.applied(apply)?;
        self.scrub_pending().inspect_err(|_| self.poisoned = true)
    }

    /// Writes a checkpoint of the whole pool (two fences); the record area
    /// starts over. A poisoned pool refuses: its volatile state may be
    /// half-applied, and recovery from the log is what repairs it.
    pub fn checkpoint(&mut self) -> Result<(), CommitError> {
        self.usable()?;
        let state = &self.state;
        self.log
            .checkpoint(|w| snapshot::write(state, w))
            .map(|_| ())
            .map_err(CommitError::from)
    }
}
