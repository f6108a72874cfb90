//! Writing NFIT tables.

use super::spa::SpaRange;
use super::{SPA_RANGE_MIN_LEN, SPA_RANGE_TYPE, STRUCTURES_OFFSET};

/// Builds NFIT tables, for tests, fuzzing seeds and hypervisors that show a
/// guest an NVDIMM. Holds at most `N` SPA ranges.
#[derive(Clone, Debug)]
pub struct NfitBuilder<const N: usize> {
    ranges: [Option<SpaRange>; N],
}

impl<const N: usize> Default for NfitBuilder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> NfitBuilder<N> {
    /// No ranges yet.
    #[must_use]
    pub const fn new() -> Self {
        Self { ranges: [None; N] }
    }

    /// Adds an SPA range; `false` when the builder is full.
    pub fn spa_range(&mut self, range: SpaRange) -> bool {
        match self.ranges.iter_mut().find(|r| r.is_none()) {
            Some(slot) => {
                *slot = Some(range);
                true
            }
            None => false,
        }
    }

    /// Bytes the table will take.
    #[must_use]
    pub fn len(&self) -> usize {
        STRUCTURES_OFFSET + self.ranges.iter().flatten().map(spa_len).sum::<usize>()
    }

    /// Whether no range was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ranges.iter().all(Option::is_none)
    }

    /// Writes the table (header with OEM fields `NVIRT`, checksum set) and
    /// returns its length, or `None` if `out` is too small.
    pub fn write(&self, out: &mut [u8]) -> Option<usize> {
        let len = self.len();
        let table = out.get_mut(..len)?;
        table.fill(0);
        table[..4].copy_from_slice(b"NFIT");
        table[4..8].copy_from_slice(&u32::try_from(len).ok()?.to_le_bytes());
        table[8] = 1;
        table[10..16].copy_from_slice(b"NVIRT ");
        table[16..24].copy_from_slice(b"NVIRTNFT");
        table[24..28].copy_from_slice(&1u32.to_le_bytes());
        table[28..32].copy_from_slice(b"NVRT");
        table[32..36].copy_from_slice(&1u32.to_le_bytes());
        let mut offset = STRUCTURES_OFFSET;
        for range in self.ranges.iter().flatten() {
            let n = spa_len(range);
            let s = &mut table[offset..offset + n];
            s[0..2].copy_from_slice(&SPA_RANGE_TYPE.to_le_bytes());
            s[2..4].copy_from_slice(&u16::try_from(n).ok()?.to_le_bytes());
            s[4..6].copy_from_slice(&range.index.to_le_bytes());
            s[6..8].copy_from_slice(&range.flags.bits().to_le_bytes());
            s[12..16].copy_from_slice(&range.proximity_domain.unwrap_or(0).to_le_bytes());
            s[16..32].copy_from_slice(&range.range_type.guid().0);
            s[32..40].copy_from_slice(&range.base.to_le_bytes());
            s[40..48].copy_from_slice(&range.length.to_le_bytes());
            s[48..56].copy_from_slice(&range.mapping_attributes.to_le_bytes());
            if let Some(cookie) = range.location_cookie {
                s[56..64].copy_from_slice(&cookie.to_le_bytes());
            }
            offset += n;
        }
        let sum = table.iter().fold(0u8, |acc, &b| acc.wrapping_add(b));
        table[9] = 0u8.wrapping_sub(sum);
        Some(len)
    }
}

fn spa_len(range: &SpaRange) -> usize {
    if range.location_cookie.is_some() {
        SPA_RANGE_MIN_LEN + 8
    } else {
        SPA_RANGE_MIN_LEN
    }
}
