//! The fewest leaves and paging-structure pages that can hold a
//! translation, computed from the translation alone — independently of the
//! table code — so the hypervisor can check that its nested tables are
//! minimal.
//!
//! For one run of guest pages whose host pages are contiguous, the fewest
//! leaves come from taking, at each step, the largest page that both
//! addresses' alignment and the remaining length allow (a larger page
//! needs both addresses aligned to it, and a greedy choice never blocks a
//! later larger page because alignments nest). Runs that are not
//! contiguous in both address spaces can share no leaf. The tables follow
//! from the leaves: one PML4, one PDPT per 512 GiB holding a leaf, one page
//! directory per 1 GiB holding a 2 MiB or 4 KiB leaf, one page table per
//! 2 MiB holding a 4 KiB leaf.

use core::fmt;

const SIZE_4K: u64 = 1 << 12;
const SIZE_2M: u64 = 1 << 21;
const SIZE_1G: u64 = 1 << 30;
const SIZE_512G: u64 = 1 << 39;

/// Leaves of each size and paging-structure pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// 1 GiB leaves.
    pub pages_1g: u64,
    /// 2 MiB leaves.
    pub pages_2m: u64,
    /// 4 KiB leaves.
    pub pages_4k: u64,
    /// Paging-structure pages, the root included.
    pub tables: u64,
}

impl fmt::Display for Footprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "1G {} 2M {} 4K {}, {} paging-structure pages",
            self.pages_1g, self.pages_2m, self.pages_4k, self.tables
        )
    }
}

/// Counts distinct regions of one size among leaves visited in increasing
/// address order.
#[derive(Clone, Copy, Debug, Default)]
struct Distinct {
    last: Option<u64>,
    count: u64,
}

impl Distinct {
    fn see(&mut self, index: u64) {
        if self.last != Some(index) {
            self.last = Some(index);
            self.count += 1;
        }
    }
}

/// The minimal footprint of `runs` — `(guest address, host address,
/// bytes)`, 4 KiB aligned, sorted by guest address, disjoint, each a
/// maximal run contiguous in both address spaces — with 1 GiB pages if
/// `pages_1g`.
#[must_use]
pub fn minimum(runs: impl IntoIterator<Item = (u64, u64, u64)>, pages_1g: bool) -> Footprint {
    let mut fp = Footprint::default();
    let (mut pdpts, mut pds, mut pts) = (
        Distinct::default(),
        Distinct::default(),
        Distinct::default(),
    );
    for (gpa, hpa, len) in runs {
        let (mut g, mut h) = (gpa, hpa);
        let end = gpa.saturating_add(len);
        while g < end {
            let left = end - g;
            let fits = |size: u64| (g | h) % size == 0 && left >= size;
            pdpts.see(g / SIZE_512G);
            let size = if pages_1g && fits(SIZE_1G) {
                fp.pages_1g += 1;
                SIZE_1G
            } else if fits(SIZE_2M) {
                fp.pages_2m += 1;
                pds.see(g / SIZE_1G);
                SIZE_2M
            } else {
                // Runs of 4 KiB leaves up to the next 2 MiB boundary of
                // either address or the end, counted at once.
                let to_2m = |a: u64| SIZE_2M - a % SIZE_2M;
                let n = (to_2m(g).min(to_2m(h)).min(left) / SIZE_4K).max(1);
                fp.pages_4k += n;
                pds.see(g / SIZE_1G);
                pts.see(g / SIZE_2M);
                // A run of 4 KiB leaves crosses no 2 MiB boundary of `g`.
                n * SIZE_4K
            };
            g += size;
            h += size;
        }
    }
    fp.tables = 1 + pdpts.count + pds.count + pts.count;
    fp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_guests_use_the_largest_pages() {
        // 3 GiB of RAM from host 4 GiB, 1 GiB of NVRAM at guest 4 GiB.
        let runs = [
            (0, 4 * SIZE_1G, 3 * SIZE_1G),
            (4 * SIZE_1G, 64 * SIZE_1G, SIZE_1G),
        ];
        assert_eq!(
            minimum(runs, true),
            Footprint {
                pages_1g: 4,
                pages_2m: 0,
                pages_4k: 0,
                tables: 2
            }
        );
        // Without 1 GiB pages: 2048 2 MiB pages in 4 page directories.
        assert_eq!(
            minimum(runs, false),
            Footprint {
                pages_1g: 0,
                pages_2m: 2048,
                pages_4k: 0,
                tables: 6
            }
        );
    }

    #[test]
    fn misaligned_hosts_and_odd_lengths_fall_back_to_smaller_pages() {
        // Host only 4 KiB aligned relative to the guest: all 4 KiB pages.
        assert_eq!(
            minimum([(0, 0x1000, 4 << 20)], true),
            Footprint {
                pages_1g: 0,
                pages_2m: 0,
                pages_4k: 1024,
                tables: 1 + 1 + 1 + 2
            }
        );
        // 2 MiB + 12 KiB from 2 MiB: one 2 MiB page, three 4 KiB pages in
        // the next 2 MiB.
        assert_eq!(
            minimum([(SIZE_2M, 0x80_0000, SIZE_2M + 0x3000)], true),
            Footprint {
                pages_1g: 0,
                pages_2m: 1,
                pages_4k: 3,
                tables: 4
            }
        );
        // The 4K counting matches one-leaf-at-a-time counting.
        let runs = [
            (0x5000, 0x7_3000, 0x61_0000),
            (0x80_0000, 0x9_0000, 0x20_0000),
        ];
        let fp = minimum(runs, true);
        let mut leaves = 0;
        for (g, h, len) in runs {
            let mut at = 0;
            while at < len {
                let size =
                    if (g + at) % SIZE_2M == 0 && (h + at) % SIZE_2M == 0 && len - at >= SIZE_2M {
                        SIZE_2M
                    } else {
                        SIZE_4K
                    };
                leaves += 1;
                at += size;
            }
        }
        assert_eq!(fp.pages_2m + fp.pages_4k, leaves);
    }

    #[test]
    fn tables_far_apart_are_counted_apart() {
        let runs = [(0, 0, SIZE_2M), (SIZE_512G, SIZE_2M, 0x1000)];
        assert_eq!(
            minimum(runs, true),
            Footprint {
                pages_1g: 0,
                pages_2m: 1,
                pages_4k: 1,
                tables: 1 + 2 + 2 + 1
            }
        );
        assert_eq!(minimum([], true).tables, 1);
    }
}
