//! Turning an arbitrary list of firmware entries into a sorted,
//! non-overlapping map with Linux's semantics (`e820__update_table()` in
//! `arch/x86/kernel/e820.c`):
//!
//! - every non-empty entry contributes two change points, its start and its end;
//! - between two consecutive change points the kind is the largest type code
//!   among the entries covering that stretch (none covering: a hole; code 0
//!   counts as a hole too);
//! - consecutive stretches of the same kind merge, except kinds that
//!   [never merge](Kind::never_merges), which are cut at every change point —
//!   including the boundaries of entries hidden beneath them;
//! - empty entries contribute nothing.
//!
//! Linux rescans an overlap list at each change point, which is O(n²) for
//! nested maps. Here the entries are sorted by start, their ends sorted
//! separately, and the covering entries kept in a max-heap keyed by type code
//! whose expired members are dropped lazily when they surface: O(n log n)
//! time, no allocation.

use crate::entry::Entry;
use crate::error::CapacityError;
use crate::kind::Kind;

/// One entry still covering the sweep position, as the heap keeps it.
#[derive(Clone, Copy, Debug)]
struct Covering {
    code: u32,
    end: u64,
}

/// Working storage for sanitizing up to `N` entries without an allocator
/// (about 48 bytes per entry).
#[derive(Debug)]
pub(crate) struct Scratch<const N: usize> {
    by_start: [Entry; N],
    ends: [u64; N],
    heap: [Covering; N],
}

impl<const N: usize> Scratch<N> {
    pub(crate) const fn new() -> Self {
        Self {
            by_start: [Entry::VOID; N],
            ends: [0; N],
            heap: [Covering { code: 0, end: 0 }; N],
        }
    }
}

/// Sanitizes `entries[..len]` in place and returns the new length.
///
/// If the result would not fit in `entries`, returns an error and leaves
/// `entries` untouched.
pub(crate) fn sanitize_in_place<const N: usize>(
    entries: &mut [Entry; N],
    len: usize,
    scratch: &mut Scratch<N>,
) -> Result<usize, CapacityError> {
    let len = len.min(N);
    let mut n = 0;
    for entry in entries.iter().take(len).filter(|e| !e.is_empty()) {
        // `n` never passes `len`, which is at most `N`.
        if let (Some(slot), Some(end)) = (scratch.by_start.get_mut(n), scratch.ends.get_mut(n)) {
            *slot = *entry;
            *end = entry.end();
            n += 1;
        }
    }
    let (by_start, ends) = (&mut scratch.by_start[..n], &mut scratch.ends[..n]);
    by_start.sort_unstable_by_key(Entry::start);
    ends.sort_unstable();

    let mut needed = 0;
    sweep(by_start, ends, &mut scratch.heap, |_| needed += 1);
    if needed > N {
        return Err(CapacityError {
            capacity: N,
            needed,
        });
    }
    let mut written = 0;
    sweep(by_start, ends, &mut scratch.heap, |entry| {
        if let Some(slot) = entries.get_mut(written) {
            *slot = entry;
            written += 1;
        }
    });
    Ok(written)
}

/// Walks the change points in address order and calls `emit` with each
/// entry of the sanitized map, in order.
fn sweep(by_start: &[Entry], ends: &[u64], heap: &mut [Covering], mut emit: impl FnMut(Entry)) {
    let mut heap = MaxHeap {
        items: heap,
        len: 0,
    };
    let (mut next_start, mut next_end) = (0, 0);
    // The entry being built: its start and kind.
    let mut open: Option<(u64, Kind)> = None;
    let mut last_code = 0;
    loop {
        let at = match (by_start.get(next_start), ends.get(next_end)) {
            (Some(s), Some(&e)) => s.start().min(e),
            (Some(s), None) => s.start(),
            (None, Some(&e)) => e,
            (None, None) => break,
        };
        while let Some(entry) = by_start.get(next_start).filter(|e| e.start() == at) {
            heap.push(Covering {
                code: entry.kind().raw(),
                end: entry.end(),
            });
            next_start += 1;
        }
        while ends.get(next_end) == Some(&at) {
            next_end += 1;
        }
        while heap.peek().is_some_and(|top| top.end <= at) {
            heap.pop();
        }
        let code = heap.peek().map_or(0, |top| top.code);
        let kind = Kind::from_raw(code);
        if code != last_code || kind.never_merges() {
            if let Some((start, open_kind)) = open.take() {
                // Change points are visited at strictly increasing addresses,
                // so `start < at` and the entry is non-empty.
                if let Ok(entry) = Entry::new(start, at, open_kind) {
                    emit(entry);
                }
            }
            if code != 0 {
                open = Some((at, kind));
            }
            last_code = code;
        }
    }
}

/// A binary max-heap on type code over caller storage.
struct MaxHeap<'a> {
    items: &'a mut [Covering],
    len: usize,
}

impl MaxHeap<'_> {
    fn peek(&self) -> Option<Covering> {
        self.items.first().copied().filter(|_| self.len > 0)
    }

    fn push(&mut self, item: Covering) {
        let Some(slot) = self.items.get_mut(self.len) else {
            // Each entry is pushed at most once and the storage holds one slot
            // per entry, so there is always room.
            return;
        };
        *slot = item;
        let mut child = self.len;
        self.len += 1;
        while child > 0 {
            let parent = (child - 1) / 2;
            if self.items[parent].code >= self.items[child].code {
                break;
            }
            self.items.swap(parent, child);
            child = parent;
        }
    }

    fn pop(&mut self) {
        if self.len == 0 {
            return;
        }
        self.len -= 1;
        self.items.swap(0, self.len);
        let mut parent = 0;
        loop {
            let left = 2 * parent + 1;
            let right = left + 1;
            let mut largest = parent;
            if left < self.len && self.items[left].code > self.items[largest].code {
                largest = left;
            }
            if right < self.len && self.items[right].code > self.items[largest].code {
                largest = right;
            }
            if largest == parent {
                break;
            }
            self.items.swap(parent, largest);
            parent = largest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(start: u64, end: u64, code: u32) -> Entry {
        Entry::new(start, end, Kind::from_raw(code)).unwrap()
    }

    fn run(input: &[Entry]) -> Vec<(u64, u64, u32)> {
        let mut entries = [Entry::VOID; 16];
        entries[..input.len()].copy_from_slice(input);
        let mut scratch = Scratch::<16>::new();
        let len = sanitize_in_place(&mut entries, input.len(), &mut scratch).unwrap();
        entries[..len]
            .iter()
            .map(|x| (x.start(), x.end(), x.kind().raw()))
            .collect()
    }

    #[test]
    fn larger_code_wins_and_equal_neighbours_merge() {
        let out = run(&[
            e(0, 100, 1),
            e(50, 150, 2),
            e(150, 200, 2),
            e(200, 300, 1),
            e(300, 400, 1),
        ]);
        assert_eq!(out, [(0, 50, 1), (50, 200, 2), (200, 400, 1)]);
    }

    #[test]
    fn pram_is_cut_at_every_change_point_inside_it() {
        // A RAM entry hidden under PRAM still cuts it, as in Linux.
        let out = run(&[e(0, 100, 12), e(40, 60, 1), e(100, 200, 12)]);
        assert_eq!(
            out,
            [(0, 40, 12), (40, 60, 12), (60, 100, 12), (100, 200, 12)]
        );
        // Identical duplicates do not cut.
        assert_eq!(run(&[e(0, 100, 12), e(0, 100, 12)]), [(0, 100, 12)]);
    }

    #[test]
    fn holes_empty_and_void_entries() {
        let out = run(&[e(0, 10, 1), e(10, 10, 2), e(20, 30, 1), e(25, 40, 0)]);
        assert_eq!(out, [(0, 10, 1), (20, 30, 1)]);
        // A void (code 0) entry still cuts a never-merging kind, like Linux.
        assert_eq!(
            run(&[e(0, 30, 12), e(10, 20, 0)]),
            [(0, 10, 12), (10, 20, 12), (20, 30, 12)]
        );
    }

    #[test]
    fn too_many_results_leave_the_input_untouched() {
        let mut entries = [e(0, 100, 1), e(10, 20, 2), e(30, 40, 2)];
        let before = entries;
        let mut scratch = Scratch::<3>::new();
        let err = sanitize_in_place(&mut entries, 3, &mut scratch).unwrap_err();
        assert_eq!(
            err,
            CapacityError {
                capacity: 3,
                needed: 5
            }
        );
        assert_eq!(entries, before);
    }

    #[test]
    fn nested_worst_case_is_handled() {
        // Nested entries of increasing type make the heap work hardest.
        let input: Vec<Entry> = (0..8u32)
            .map(|i| e(u64::from(i), 100 - u64::from(i), i + 1))
            .collect();
        let out = run(&input);
        assert_eq!(out.len(), 15);
        assert_eq!(out[7], (7, 93, 8));
    }
}
