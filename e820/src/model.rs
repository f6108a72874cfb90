//! A reference model of Linux's E820 semantics for property tests and
//! fuzzers (feature `model`): one kind per page plus the set of boundaries
//! where a never-merging kind is cut. Deliberately naive — arrays, linear
//! scans, a literal port of Linux's raw-table edits — so it is obviously
//! right and can judge the real implementation.

use std::collections::BTreeSet;
use std::string::String;
use std::vec;
use std::vec::Vec;

use crate::entry::Entry;
use crate::kind::Kind;
use crate::map::MemoryMap;

/// An entry in page units: `[start, end)` and a raw type code.
pub type Span = (u64, u64, u32);

/// A sanitized map over `pages` pages, as the model predicts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageModel {
    pages: u64,
    entries: Vec<Span>,
}

fn never_merges(code: u32) -> bool {
    Kind::from_raw(code).never_merges()
}

impl PageModel {
    /// Linux's sanitize, page by page: each page takes the largest code
    /// covering it; an entry ends where the kind changes, or at any boundary
    /// of any input entry when the kind never merges. Spans are clipped to
    /// `pages`.
    #[must_use]
    pub fn sanitize(pages: u64, raw: &[Span]) -> Self {
        let mut kinds = vec![0u32; pages as usize];
        let mut cuts = BTreeSet::new();
        for &(s, e, k) in raw {
            let (s, e) = (s.min(pages), e.min(pages));
            if s >= e {
                continue;
            }
            cuts.insert(s);
            cuts.insert(e);
            for page in s..e {
                kinds[page as usize] = kinds[page as usize].max(k);
            }
        }
        Self::walk(pages, &kinds, &cuts)
    }

    fn walk(pages: u64, kinds: &[u32], cuts: &BTreeSet<u64>) -> Self {
        let mut entries: Vec<Span> = Vec::new();
        for (page, &k) in kinds.iter().enumerate() {
            let page = page as u64;
            if k == 0 {
                continue;
            }
            match entries.last_mut() {
                Some(last)
                    if last.1 == page
                        && last.2 == k
                        && !(never_merges(k) && cuts.contains(&page)) =>
                {
                    last.1 = page + 1;
                }
                _ => entries.push((page, page + 1, k)),
            }
        }
        Self { pages, entries }
    }

    /// The predicted entries.
    #[must_use]
    pub fn entries(&self) -> &[Span] {
        &self.entries
    }

    /// The kind code of every page (0 for a hole).
    #[must_use]
    pub fn kinds(&self) -> Vec<u32> {
        let mut kinds = vec![0u32; self.pages as usize];
        for &(s, e, k) in &self.entries {
            for page in s..e {
                kinds[page as usize] = k;
            }
        }
        kinds
    }

    fn boundaries(&self) -> BTreeSet<u64> {
        self.entries.iter().flat_map(|&(s, e, _)| [s, e]).collect()
    }

    /// [`MemoryMap::add`]: the new span overlaid, larger code winning.
    #[must_use]
    pub fn add(&self, new: Span) -> Self {
        let mut raw = self.entries.clone();
        raw.push(new);
        Self::sanitize(self.pages, &raw)
    }

    /// [`MemoryMap::update`] (`to = Some`) and [`MemoryMap::remove`]
    /// (`to = None`): pages of kind `only` (any if `None`) in `[s, e)` are
    /// retyped or dropped; entries of that kind are cut at `s` and `e`.
    #[must_use]
    pub fn rewrite(&self, (s, e): (u64, u64), only: Option<u32>, to: Option<u32>) -> Self {
        if s >= e {
            return self.clone();
        }
        let mut kinds = self.kinds();
        let mut cuts = self.boundaries();
        let matches = |k: u32| k != 0 && only.is_none_or(|o| o == k);
        for point in [s, e] {
            if point < self.pages && matches(kinds[point as usize]) {
                cuts.insert(point);
            }
        }
        for page in s..e.min(self.pages) {
            if matches(kinds[page as usize]) {
                kinds[page as usize] = to.unwrap_or(0);
            }
        }
        Self::walk(self.pages, &kinds, &cuts)
    }
}

/// Linux's `__e820__range_update()` (`to = Some`) and `e820__range_remove()`
/// (`to = None`) on a raw table, ported case by case.
pub fn linux_range_update(
    table: &mut Vec<Span>,
    (start, end): (u64, u64),
    only: Option<u32>,
    to: Option<u32>,
) {
    let size = end.saturating_sub(start);
    let mut i = 0;
    while i < table.len() {
        let (addr, entry_end, kind) = table[i];
        i += 1;
        if only.is_some_and(|o| o != kind) {
            continue;
        }
        if addr >= start && entry_end <= end {
            match to {
                Some(t) => table[i - 1].2 = t,
                None => table[i - 1] = (0, 0, 0),
            }
            continue;
        }
        if addr < start && entry_end > end {
            if let Some(t) = to {
                table.push((start, start + size, t));
            }
            table.push((end, entry_end, kind));
            table[i - 1].1 = start;
            continue;
        }
        let final_start = start.max(addr);
        let final_end = end.min(entry_end);
        if final_start >= final_end {
            continue;
        }
        if let Some(t) = to {
            table.push((final_start, final_end, t));
        }
        if addr < final_start {
            table[i - 1].1 = final_start;
        } else {
            table[i - 1].0 = final_end;
        }
    }
}

/// The entries of `map` in units of `unit` bytes from `base`, or an error if
/// one does not sit on that grid.
pub fn spans_of<const N: usize>(
    map: &MemoryMap<N>,
    base: u64,
    unit: u64,
) -> Result<Vec<Span>, String> {
    map.iter()
        .map(|e| {
            let (s, t) = (e.start().wrapping_sub(base), e.end().wrapping_sub(base));
            if e.start() < base || s % unit != 0 || t % unit != 0 {
                return Err(std::format!("{e} is off the {unit:#x} grid at {base:#x}"));
            }
            Ok((s / unit, t / unit, e.kind().raw()))
        })
        .collect()
}

/// The entry for a span on a grid of `unit` bytes from `base`.
#[must_use]
pub fn entry_of((s, e, k): Span, base: u64, unit: u64) -> Option<Entry> {
    let start = base.checked_add(s.checked_mul(unit)?)?;
    let end = base.checked_add(e.checked_mul(unit)?)?;
    Entry::new(start, end, Kind::from_raw(k)).ok()
}

/// The invariants of every map: entries non-empty, not void, sorted,
/// non-overlapping, neighbours of one mergeable kind merged.
pub fn check_invariants<const N: usize>(map: &MemoryMap<N>) -> Result<(), String> {
    let entries = map.entries();
    for e in entries {
        if e.is_empty() || e.kind().raw() == 0 {
            return Err(std::format!("empty or void entry {e}"));
        }
    }
    for pair in entries.windows(2) {
        if pair[0].end() > pair[1].start() {
            return Err(std::format!(
                "unsorted or overlapping: {} / {}",
                pair[0],
                pair[1]
            ));
        }
        if pair[0].end() == pair[1].start()
            && pair[0].kind() == pair[1].kind()
            && !pair[0].kind().never_merges()
        {
            return Err(std::format!(
                "unmerged neighbours {} / {}",
                pair[0],
                pair[1]
            ));
        }
    }
    Ok(())
}
