//! Reading both superblock copies and deciding what they say.
//!
//! The static lines are [`crate::superblock`]'s dual copies: they must
//! agree wherever both are intact; one intact copy is enough (recovery
//! rewrites the other). An intact copy of an unknown version stops
//! everything: it may be a newer format, and this crate never formats over
//! what it does not understand. The switch words are read
//! independently; the higher valid generation wins, because a checkpoint
//! stores both and a crash may keep either.

use core::fmt;

use crate::checkpoint::CheckpointFault;
use crate::layout::{
    FORMAT_VERSION, FORMAT_VERSION_1, FORMAT_VERSION_2, Layout, SUPERBLOCK_OFFSETS, SUPERBLOCKS,
    SWITCH_WORD, SuperblockError, decode_switch,
};
use crate::pmem::{Pmem, PmemError, WORD};
use crate::scan::StopReason;
use crate::superblock::{ChooseError, Copies};

/// Both superblock copies as found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblocks {
    /// Each copy's static line: its layout, or why it was rejected.
    pub copies: [Result<Layout, SuperblockError>; 2],
    /// Each copy's raw switch word (0 if the region ends before it).
    pub switch_words: [u64; 2],
}

/// What the superblocks decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chosen {
    pub(crate) layout: Layout,
    pub(crate) generation: u64,
    /// Static lines to rewrite from the other copy.
    pub(crate) repair: [bool; 2],
}

/// Why a region is not a readable log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Neither superblock copy is intact.
    NoSuperblock {
        /// Why copy 0 was rejected.
        first: SuperblockError,
        /// Why copy 1 was rejected.
        second: SuperblockError,
    },
    /// An intact superblock of a format version this crate does not know.
    UnsupportedVersion {
        /// Which copy.
        copy: usize,
        /// Its version.
        found: u32,
    },
    /// Both copies are intact but describe different geometries.
    SuperblocksDisagree,
    /// Neither switch word is valid, so no checkpoint is named.
    NoGeneration {
        /// The two raw words.
        words: [u64; 2],
    },
    /// The checkpoint the superblocks name is not valid.
    Checkpoint {
        /// Its generation.
        generation: u64,
        /// Offset of its slot.
        offset: u64,
        /// What is wrong.
        fault: CheckpointFault,
    },
    /// Bytes validated earlier read differently during replay: something
    /// else is writing the region.
    Changed {
        /// Where.
        offset: u64,
    },
    /// A record that fails its checks although a later group of the same
    /// chain proves it was committed: damage, not a torn tail. Recovery
    /// stops rather than drop it and every commit after it.
    Corrupt {
        /// Offset of the damaged record.
        offset: u64,
        /// Offset of the later record that proves the commit.
        evidence: u64,
        /// What is wrong with the damaged record.
        reason: StopReason,
    },
    /// The region refused a read inside the validated layout.
    Pmem(PmemError),
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoSuperblock { first, second } => {
                write!(f, "no valid superblock: copy 0: {first}; copy 1: {second}")
            }
            Self::UnsupportedVersion { copy, found } if found == FORMAT_VERSION_1 => write!(
                f,
                "superblock copy {copy} has format version 1, written by an older nvirt before \
                 records carried their group index; this build reads version {FORMAT_VERSION} \
                 only (read it with the older nvirt, or format anew)"
            ),
            Self::UnsupportedVersion { copy, found } if found == FORMAT_VERSION_2 => write!(
                f,
                "superblock copy {copy} has format version 2, written by an older nvirt with a \
                 header and a checksum per record; this build reads version {FORMAT_VERSION} \
                 only, with one per commit group (read it with the older nvirt, or format anew)"
            ),
            Self::UnsupportedVersion { copy, found } => write!(
                f,
                "superblock copy {copy} has unsupported format version {found} (this build \
                 reads version {FORMAT_VERSION})"
            ),
            Self::SuperblocksDisagree => {
                write!(
                    f,
                    "both superblocks are intact but describe different layouts"
                )
            }
            Self::NoGeneration { words } => write!(
                f,
                "no valid switch word ({:#018x}, {:#018x}): no checkpoint is named",
                words[0], words[1]
            ),
            Self::Checkpoint {
                generation,
                offset,
                fault,
            } => write!(
                f,
                "checkpoint generation {generation} at {offset:#x} is invalid: {fault}"
            ),
            Self::Changed { offset } => write!(
                f,
                "bytes at {offset:#x} changed during recovery: the region is not exclusively ours"
            ),
            Self::Corrupt {
                offset,
                evidence,
                reason,
            } => write!(
                f,
                "committed record at {offset:#x} is damaged ({reason}); the group at \
                 {evidence:#x} proves it had been committed"
            ),
            Self::Pmem(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for ImageError {}

impl From<PmemError> for ImageError {
    fn from(e: PmemError) -> Self {
        Self::Pmem(e)
    }
}

impl Superblocks {
    /// Reads both copies. Never reads outside the region.
    pub fn read<P: Pmem + ?Sized>(pmem: &P) -> Result<Self, PmemError> {
        let size = pmem.size();
        let found = SUPERBLOCKS.read::<Layout, _>(pmem)?;
        let mut switch_words = [0; 2];
        for (word, &at) in switch_words.iter_mut().zip(SUPERBLOCK_OFFSETS.iter()) {
            if at + SWITCH_WORD + WORD <= size {
                *word = pmem.read_u64(at + SWITCH_WORD)?;
            }
        }
        Ok(Self {
            copies: found.copies,
            switch_words,
        })
    }

    /// The generation copy `i`'s switch word names, if valid.
    pub fn generation(&self, i: usize) -> Option<u64> {
        self.switch_words.get(i).copied().and_then(decode_switch)
    }

    /// The layout and active generation, or why there are none.
    pub(crate) fn choose(&self) -> Result<Chosen, ImageError> {
        let copies = Copies {
            copies: self.copies,
        };
        let chosen = copies.choose().map_err(|e| match e {
            ChooseError::NoValidCopy { first, second } => {
                ImageError::NoSuperblock { first, second }
            }
            ChooseError::UnsupportedVersion { copy, found } => {
                ImageError::UnsupportedVersion { copy, found }
            }
            ChooseError::Disagree => ImageError::SuperblocksDisagree,
        })?;
        let generation = match (self.generation(0), self.generation(1)) {
            (Some(a), Some(b)) => a.max(b),
            (Some(g), None) | (None, Some(g)) => g,
            (None, None) => {
                return Err(ImageError::NoGeneration {
                    words: self.switch_words,
                });
            }
        };
        Ok(Chosen {
            layout: chosen.body,
            generation,
            repair: chosen.repair,
        })
    }
}
