//! What recovery can find wrong in an image, and where.
//!
//! A damaged image is never turned into a smaller pool: recovery stops at
//! the first thing it cannot account for and names it.

use core::fmt;

use crate::types::DomainUuid;

/// Where in the image a problem was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// In a pool superblock copy, at this region offset.
    Superblock {
        /// Region offset of the copy.
        offset: u64,
    },
    /// In the active checkpoint's snapshot, this many bytes in.
    Snapshot {
        /// Byte position in the snapshot.
        pos: u64,
    },
    /// In a log record.
    Record {
        /// Its sequence number.
        seq: u64,
        /// Its region offset.
        offset: u64,
    },
    /// In the rebuilt state, found by the final consistency check.
    State,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Superblock { offset } => write!(f, "pool superblock at {offset:#x}"),
            Self::Snapshot { pos } => write!(f, "checkpoint snapshot, byte {pos:#x}"),
            Self::Record { seq, offset } => write!(f, "log record {seq} at {offset:#x}"),
            Self::State => f.write_str("rebuilt state"),
        }
    }
}

/// What is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The snapshot does not start with the pool's snapshot magic.
    SnapshotMagic {
        /// The first 8 bytes, little-endian.
        found: u64,
    },
    /// The snapshot ends inside an entry.
    Truncated,
    /// A reserved field holds a non-zero value.
    Reserved {
        /// Its value.
        value: u64,
    },
    /// A count or sum stored in the image disagrees with what it covers.
    Count {
        /// Which count.
        what: &'static str,
        /// The stored value.
        stored: u64,
        /// The value found.
        found: u64,
    },
    /// A domain slot number at or above the pool's limit.
    Slot {
        /// The slot.
        slot: u32,
        /// The limit.
        max: u32,
    },
    /// A domain is created in a slot that is in use.
    SlotInUse {
        /// The slot.
        slot: u32,
    },
    /// A record names a slot that holds no domain.
    SlotFree {
        /// The slot.
        slot: u32,
    },
    /// Two domains have the same id.
    DuplicateId {
        /// The id.
        id: DomainUuid,
    },
    /// A domain name longer than 32 bytes or not UTF-8.
    Name {
        /// The slot.
        slot: u32,
    },
    /// Domain flags this version does not know.
    Flags {
        /// The slot.
        slot: u32,
        /// The flags.
        flags: u64,
    },
    /// An extent that cannot be: its order, alignment or frame range.
    Extent {
        /// The slot.
        slot: u32,
        /// Its first guest frame.
        gpfn: u64,
        /// Its first machine frame.
        mfn: u64,
        /// Its order.
        order: u8,
    },
    /// An extent whose machine frames lie outside the pool's data frames.
    OutsidePool {
        /// Its first machine frame.
        mfn: u64,
        /// Its order.
        order: u8,
    },
    /// An extent whose machine frames another extent (or an unfinished
    /// free) already holds: frames owned twice.
    FrameOwnedTwice {
        /// Its first machine frame.
        mfn: u64,
        /// Its order.
        order: u8,
        /// The other owner, if a domain.
        other: Option<DomainUuid>,
    },
    /// An extent overlapping another extent of the same domain in guest
    /// frames (or out of order in a snapshot).
    GuestOverlap {
        /// The slot.
        slot: u32,
        /// The extent's first guest frame.
        gpfn: u64,
    },
    /// A domain owns more frames than its quota.
    Quota {
        /// The slot.
        slot: u32,
        /// Frames owned.
        frames: u64,
        /// Its quota.
        quota: u64,
    },
    /// A freed block that the domain did not wholly own.
    NotPopulated {
        /// The slot.
        slot: u32,
        /// The first guest frame not owned.
        gpfn: u64,
    },
    /// A freed block whose recorded machine frame is not the one the
    /// domain maps there.
    MfnMismatch {
        /// The slot.
        slot: u32,
        /// The guest frame.
        gpfn: u64,
        /// The recorded machine frame.
        recorded: u64,
        /// The machine frame found.
        found: u64,
    },
    /// The history needs more domains or extents than the pool's limits.
    Capacity {
        /// Which limit.
        what: &'static str,
    },
    /// A record of a kind this version does not know.
    UnknownKind {
        /// Its kind.
        kind: u16,
    },
    /// A record whose payload length does not fit its kind.
    Payload {
        /// Its kind.
        kind: u16,
        /// Its length.
        len: usize,
    },
    /// The rebuilt state breaks an invariant (see
    /// [`InvariantError`](crate::InvariantError)).
    Invariant(crate::check::InvariantError),
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::SnapshotMagic { found } => write!(f, "bad snapshot magic {found:#018x}"),
            Self::Truncated => f.write_str("ends inside an entry"),
            Self::Reserved { value } => write!(f, "reserved field is {value:#x}, not zero"),
            Self::Count {
                what,
                stored,
                found,
            } => write!(f, "{what}: {stored} stored, {found} found"),
            Self::Slot { slot, max } => {
                write!(f, "domain slot {slot} is beyond the limit of {max} domains")
            }
            Self::SlotInUse { slot } => write!(f, "domain slot {slot} is already in use"),
            Self::SlotFree { slot } => write!(f, "domain slot {slot} holds no domain"),
            Self::DuplicateId { id } => write!(f, "two domains have the id {id}"),
            Self::Name { slot } => {
                write!(f, "domain slot {slot}: name too long or not UTF-8")
            }
            Self::Flags { slot, flags } => {
                write!(f, "domain slot {slot}: unknown flags {flags:#x}")
            }
            Self::Extent {
                slot,
                gpfn,
                mfn,
                order,
            } => write!(
                f,
                "domain slot {slot}: impossible extent gpfn {gpfn:#x} -> mfn {mfn:#x} order {order}"
            ),
            Self::OutsidePool { mfn, order } => write!(
                f,
                "extent at mfn {mfn:#x} order {order} lies outside the pool's data frames"
            ),
            Self::FrameOwnedTwice { mfn, order, other } => {
                write!(f, "frames of mfn {mfn:#x} order {order} are owned twice")?;
                match other {
                    Some(id) => write!(f, " (also by domain {id})"),
                    None => f.write_str(" (also by an unfinished free)"),
                }
            }
            Self::GuestOverlap { slot, gpfn } => write!(
                f,
                "domain slot {slot}: extent at gpfn {gpfn:#x} overlaps another or is out of order"
            ),
            Self::Quota {
                slot,
                frames,
                quota,
            } => write!(
                f,
                "domain slot {slot} owns {frames} frames, above its quota of {quota}"
            ),
            Self::NotPopulated { slot, gpfn } => write!(
                f,
                "domain slot {slot}: freed gpfn {gpfn:#x}, which it does not own"
            ),
            Self::MfnMismatch {
                slot,
                gpfn,
                recorded,
                found,
            } => write!(
                f,
                "domain slot {slot}: gpfn {gpfn:#x} freed as mfn {recorded:#x}, but it maps mfn {found:#x}"
            ),
            Self::Capacity { what } => {
                write!(f, "the history needs more {what} than the pool's limit")
            }
            Self::UnknownKind { kind } => write!(f, "unknown record kind {kind:#06x}"),
            Self::Payload { kind, len } => {
                write!(f, "record kind {kind:#06x} with a payload of {len} bytes")
            }
            Self::Invariant(e) => write!(f, "{e}"),
        }
    }
}

/// A damaged image: what, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DamageError {
    /// Where it was found.
    pub at: Location,
    /// What is wrong.
    pub what: Damage,
}

impl fmt::Display for DamageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.what)
    }
}

impl core::error::Error for DamageError {}
