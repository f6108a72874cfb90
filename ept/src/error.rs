//! Error types, one small enum per operation, each carrying the offending
//! values. Every failing call leaves the tables exactly as they were.

use core::fmt;

use crate::attrs::{MemType, Perms};
use crate::{GuestPhysAddr, HostPhysAddr};

/// Attributes the format, or the processor it is configured for, cannot
/// encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrError {
    /// No access at all: that is an unmapped page, use `unmap`.
    NoAccess,
    /// EPT: write without read is an EPT misconfiguration.
    WriteWithoutRead {
        /// The permissions asked for.
        perms: Perms,
    },
    /// EPT: a page without read access needs execute-only support.
    ExecuteOnlyUnsupported {
        /// The permissions asked for.
        perms: Perms,
    },
    /// NPT: a present page is always readable.
    ReadRequired {
        /// The permissions asked for.
        perms: Perms,
    },
    /// NPT: execute permission cannot differ between user and supervisor
    /// mode.
    SplitExecute {
        /// The permissions asked for.
        perms: Perms,
    },
    /// NPT without EFER.NXE: every page is executable.
    NoExecuteUnsupported {
        /// The permissions asked for.
        perms: Perms,
    },
    /// NPT: no entry of the host PAT holds this memory type.
    MemTypeUnavailable {
        /// The type asked for.
        mem: MemType,
    },
}

impl fmt::Display for AttrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoAccess => f.write_str("no access permitted: unmap the range instead"),
            Self::WriteWithoutRead { perms } => {
                write!(
                    f,
                    "permissions {perms}: EPT cannot express write without read"
                )
            }
            Self::ExecuteOnlyUnsupported { perms } => write!(
                f,
                "permissions {perms}: pages without read access need EPT execute-only support"
            ),
            Self::ReadRequired { perms } => {
                write!(f, "permissions {perms}: NPT pages are always readable")
            }
            Self::SplitExecute { perms } => write!(
                f,
                "permissions {perms}: NPT cannot separate user and supervisor execute"
            ),
            Self::NoExecuteUnsupported { perms } => write!(
                f,
                "permissions {perms}: without EFER.NXE every NPT page is executable"
            ),
            Self::MemTypeUnavailable { mem } => {
                write!(f, "memory type {mem} is in no entry of the host PAT")
            }
        }
    }
}

/// An address range that cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeError {
    /// A guest-physical address that is not 4 KiB aligned.
    UnalignedGuest(GuestPhysAddr),
    /// A host-physical address that is not 4 KiB aligned.
    UnalignedHost(HostPhysAddr),
    /// A length that is not a multiple of 4 KiB.
    UnalignedLength(u64),
    /// The range ends beyond the 48-bit guest-physical space of 4-level
    /// tables (or beyond 2^64).
    GuestBeyondWidth {
        /// First byte.
        start: GuestPhysAddr,
        /// Length in bytes.
        len: u64,
    },
    /// The host range ends beyond the configured physical-address width.
    HostBeyondWidth {
        /// First byte.
        start: HostPhysAddr,
        /// Length in bytes.
        len: u64,
        /// The configured width (MAXPHYADDR).
        bits: u8,
    },
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnalignedGuest(a) => write!(f, "{a} is not 4 KiB aligned"),
            Self::UnalignedHost(a) => write!(f, "{a} is not 4 KiB aligned"),
            Self::UnalignedLength(len) => write!(f, "length {len:#x} is not a multiple of 4 KiB"),
            Self::GuestBeyondWidth { start, len } => write!(
                f,
                "range at {start} of length {len:#x} ends beyond the 48-bit guest-physical space"
            ),
            Self::HostBeyondWidth { start, len, bits } => write!(
                f,
                "range at {start} of length {len:#x} ends beyond the {bits}-bit physical-address width"
            ),
        }
    }
}

/// The frame source could not supply the table frames a call needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// It ran out.
    Exhausted {
        /// Frames the call needs.
        needed: u64,
        /// Frames it got before the source failed (all given back).
        obtained: u64,
    },
    /// It returned a frame that is not 4 KiB aligned or lies beyond the
    /// physical-address width (given back as well).
    Invalid {
        /// The frame.
        frame: HostPhysAddr,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Exhausted { needed, obtained } => write!(
                f,
                "frame source exhausted: {needed} table frames needed, {obtained} obtained"
            ),
            Self::Invalid { frame } => write!(
                f,
                "frame source returned {frame}, unaligned or beyond the physical-address width"
            ),
        }
    }
}

/// Creating tables failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewError {
    /// The physical-address width is outside 32..=52.
    PhysBits {
        /// The width given.
        bits: u8,
    },
    /// No frame for the root.
    Frames(FrameError),
}

impl fmt::Display for NewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PhysBits { bits } => {
                write!(f, "physical-address width {bits} is outside 32..=52")
            }
            Self::Frames(e) => e.fmt(f),
        }
    }
}

/// `map` or `replace` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Unusable addresses or length.
    Range(RangeError),
    /// Unencodable attributes.
    Attrs(AttrError),
    /// `map` found a page already mapped (`replace` would overwrite it).
    Overlap {
        /// The first mapped guest address in the range.
        gpa: GuestPhysAddr,
    },
    /// Not enough table frames.
    Frames(FrameError),
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Range(e) => e.fmt(f),
            Self::Attrs(e) => e.fmt(f),
            Self::Overlap { gpa } => write!(f, "{gpa} is already mapped"),
            Self::Frames(e) => e.fmt(f),
        }
    }
}

/// `unmap` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnmapError {
    /// Unusable addresses or length.
    Range(RangeError),
    /// Not enough table frames to split a large page the range cuts.
    Frames(FrameError),
}

impl fmt::Display for UnmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Range(e) => e.fmt(f),
            Self::Frames(e) => e.fmt(f),
        }
    }
}

/// `protect` or `set_mem_type` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateError {
    /// Unusable addresses or length.
    Range(RangeError),
    /// Unencodable attributes.
    Attrs(AttrError),
    /// A page of the range is not mapped.
    NotMapped {
        /// The first unmapped guest address in the range.
        gpa: GuestPhysAddr,
    },
    /// Not enough table frames to split a large page the range cuts.
    Frames(FrameError),
}

impl fmt::Display for UpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Range(e) => e.fmt(f),
            Self::Attrs(e) => e.fmt(f),
            Self::NotMapped { gpa } => write!(f, "{gpa} is not mapped"),
            Self::Frames(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for AttrError {}
impl core::error::Error for RangeError {}
impl core::error::Error for FrameError {}
impl core::error::Error for NewError {}
impl core::error::Error for MapError {}
impl core::error::Error for UnmapError {}
impl core::error::Error for UpdateError {}
