//! Entries exactly as firmware tables state them: base, size, type code.

use crate::entry::Entry;
use crate::error::RangeError;
use crate::kind::Kind;

/// One entry as a firmware table gives it, before any check. Its end may
/// claim to pass 2^64; [`FirmwareEntry::to_entry`] refuses that.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FirmwareEntry {
    /// First byte address.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
    /// Type code.
    pub kind: Kind,
}

impl FirmwareEntry {
    /// The checked [`Entry`] for this range.
    pub const fn to_entry(self) -> Result<Entry, RangeError> {
        Entry::from_base_size(self.base, self.size, self.kind)
    }
}

impl From<Entry> for FirmwareEntry {
    fn from(entry: Entry) -> Self {
        Self {
            base: entry.start(),
            size: entry.size(),
            kind: entry.kind(),
        }
    }
}

impl TryFrom<FirmwareEntry> for Entry {
    type Error = RangeError;

    fn try_from(fw: FirmwareEntry) -> Result<Self, RangeError> {
        fw.to_entry()
    }
}
