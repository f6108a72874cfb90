//! A reference model and an independent walker for property tests and
//! fuzzers (feature `model`). Deliberately naive: sorted maps, linear
//! scans, raw bit arithmetic written from the manuals rather than shared
//! with the crate, so that it can judge the real implementation.

use std::collections::{BTreeMap, BTreeSet};
use std::format;
use std::string::String;
use std::vec::Vec;

use crate::addr::{HostPhys, PageSize};
use crate::attrs::{Attrs, MemType, Perms};
use crate::frames::PhysMem;

/// A mapped run: guest `[start, end)` to host `hpa..`, one attribute set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First guest byte after the run.
    pub end: u64,
    /// Host address of the run's first byte.
    pub hpa: u64,
    /// Attributes of every page.
    pub attrs: Attrs,
}

/// What every 4 KiB guest page maps to, as maximal runs keyed by start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    runs: BTreeMap<u64, Run>,
}

impl Model {
    /// Nothing mapped.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The runs, maximal: neighbours never continue each other.
    #[must_use]
    pub fn runs(&self) -> Vec<(u64, Run)> {
        self.runs.iter().map(|(&s, &r)| (s, r)).collect()
    }

    /// Host address and attributes of the page holding `gpa`.
    #[must_use]
    pub fn lookup(&self, gpa: u64) -> Option<(u64, Attrs)> {
        let (&start, run) = self.runs.range(..=gpa).next_back()?;
        (gpa < run.end).then(|| (run.hpa + (gpa - start), run.attrs))
    }

    /// The first mapped address in `[start, end)`.
    #[must_use]
    pub fn first_mapped(&self, start: u64, end: u64) -> Option<u64> {
        if let Some((_, run)) = self.runs.range(..=start).next_back() {
            if run.end > start {
                return Some(start);
            }
        }
        self.runs.range(start..end).next().map(|(&s, _)| s)
    }

    /// The first unmapped address in `[start, end)`.
    #[must_use]
    pub fn first_hole(&self, start: u64, end: u64) -> Option<u64> {
        let mut at = start;
        while at < end {
            let Some((_, run)) = self.runs.range(..=at).next_back() else {
                return Some(at);
            };
            if run.end <= at {
                return Some(at);
            }
            at = run.end;
        }
        None
    }

    fn cut(&mut self, at: u64) {
        let Some((&s, &run)) = self.runs.range(..at).next_back() else {
            return;
        };
        if run.end > at {
            self.runs.insert(s, Run { end: at, ..run });
            self.runs.insert(
                at,
                Run {
                    hpa: run.hpa + (at - s),
                    ..run
                },
            );
        }
    }

    fn normalize(&mut self) {
        let mut out: BTreeMap<u64, Run> = BTreeMap::new();
        for (&s, &run) in &self.runs {
            if let Some((&ps, prev)) = out.iter_mut().next_back() {
                if prev.end == s && prev.attrs == run.attrs && prev.hpa + (s - ps) == run.hpa {
                    prev.end = run.end;
                    continue;
                }
            }
            out.insert(s, run);
        }
        self.runs = out;
    }

    /// Removes every mapping in `[start, end)`.
    pub fn unmap(&mut self, start: u64, end: u64) {
        self.cut(start);
        self.cut(end);
        let inside: Vec<u64> = self.runs.range(start..end).map(|(&s, _)| s).collect();
        for s in inside {
            self.runs.remove(&s);
        }
        self.normalize();
    }

    /// Maps `[start, end)` to `hpa..`, replacing what was there.
    pub fn map(&mut self, start: u64, end: u64, hpa: u64, attrs: Attrs) {
        self.unmap(start, end);
        self.runs.insert(start, Run { end, hpa, attrs });
        self.normalize();
    }

    /// Changes attributes of the (fully mapped) range.
    pub fn update(&mut self, start: u64, end: u64, perms: Option<Perms>, mem: Option<MemType>) {
        self.cut(start);
        self.cut(end);
        for (_, run) in self.runs.range_mut(start..end) {
            run.attrs = Attrs::new(
                perms.unwrap_or(run.attrs.perms),
                mem.unwrap_or(run.attrs.mem),
            );
        }
        self.normalize();
    }

    /// Whether `[start, start + size)` is one uniform block that a leaf of
    /// `size` could map.
    #[must_use]
    pub fn uniform(&self, start: u64, size: PageSize) -> bool {
        let Some((&s, run)) = self.runs.range(..=start).next_back() else {
            return false;
        };
        run.end >= start + size.bytes() && (run.hpa + (start - s)) % size.bytes() == 0
    }

    /// The fewest leaves for the mapping: the greedy largest-aligned
    /// decomposition of every run.
    #[must_use]
    pub fn minimal_leaves(&self, pages_1g: bool) -> Layout {
        let mut layout = Layout::default();
        for (&start, run) in &self.runs {
            layout.insert_greedy(start, run.end, run.hpa, pages_1g);
        }
        layout
    }
}

/// A page decomposition: leaf start → size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// The leaves.
    pub leaves: BTreeMap<u64, PageSize>,
}

fn smaller(size: PageSize) -> Option<PageSize> {
    match size {
        PageSize::Size4K => None,
        PageSize::Size2M => Some(PageSize::Size4K),
        PageSize::Size1G => Some(PageSize::Size2M),
    }
}

impl Layout {
    /// Adds the greedy decomposition of guest `[start, end)` mapped from
    /// host `hpa`.
    pub fn insert_greedy(&mut self, start: u64, end: u64, hpa: u64, pages_1g: bool) {
        let mut at = start;
        while at < end {
            let host = hpa + (at - start);
            let size = [PageSize::Size1G, PageSize::Size2M, PageSize::Size4K]
                .into_iter()
                .filter(|&s| pages_1g || s != PageSize::Size1G)
                .find(|s| at % s.bytes() == 0 && host % s.bytes() == 0 && at + s.bytes() <= end)
                .unwrap_or(PageSize::Size4K);
            self.leaves.insert(at, size);
            at += size.bytes();
        }
    }

    /// Splits every leaf that `at` falls strictly inside, as the tables
    /// split a large page a change cuts: into pages of the next size, again
    /// where `at` still cuts one.
    pub fn cut(&mut self, at: u64) {
        while let Some((&s, &size)) = self.leaves.range(..at).next_back() {
            if s + size.bytes() <= at {
                return;
            }
            let Some(child) = smaller(size) else { return };
            self.leaves.remove(&s);
            for i in 0..512 {
                self.leaves.insert(s + i * child.bytes(), child);
            }
        }
    }

    /// Removes the leaves of `[start, end)` after cutting at its ends.
    pub fn remove(&mut self, start: u64, end: u64) {
        self.cut(start);
        self.cut(end);
        let inside: Vec<u64> = self.leaves.range(start..end).map(|(&s, _)| s).collect();
        for s in inside {
            self.leaves.remove(&s);
        }
    }

    /// Merges, as `promote` does, every 2 MiB and then 1 GiB block touching
    /// `[start, end)` that `model` says is uniform and that is made of leaves
    /// of the next smaller size only (or, for 2 MiB, of 4 KiB leaves).
    pub fn promote(&mut self, model: &Model, start: u64, end: u64, pages_1g: bool) {
        for size in [PageSize::Size2M, PageSize::Size1G] {
            if size == PageSize::Size1G && !pages_1g {
                continue;
            }
            let child = smaller(size).unwrap_or(PageSize::Size4K);
            let mut block = start & !(size.bytes() - 1);
            while block < end {
                let inside: Vec<(u64, PageSize)> = self
                    .leaves
                    .range(block..block + size.bytes())
                    .map(|(&s, &z)| (s, z))
                    .collect();
                let all_children = inside.len() == 512 && inside.iter().all(|&(_, z)| z == child);
                if all_children && model.uniform(block, size) {
                    for (s, _) in inside {
                        self.leaves.remove(&s);
                    }
                    self.leaves.insert(block, size);
                }
                block += size.bytes();
            }
        }
    }

    /// Leaves per size: (1 GiB, 2 MiB, 4 KiB).
    #[must_use]
    pub fn counts(&self) -> (u64, u64, u64) {
        let count = |z| self.leaves.values().filter(|&&s| s == z).count() as u64;
        (
            count(PageSize::Size1G),
            count(PageSize::Size2M),
            count(PageSize::Size4K),
        )
    }

    /// The paging-structure pages these leaves need, root included: one
    /// PDPT per 512 GiB region with leaves, one PD per 1 GiB region with
    /// smaller leaves, one PT per 2 MiB region with 4 KiB leaves.
    #[must_use]
    pub fn tables(&self) -> u64 {
        let regions = |shift: u32, below: PageSize| -> u64 {
            let set: BTreeSet<u64> = self
                .leaves
                .iter()
                .filter(|&(_, &z)| z <= below)
                .map(|(&s, _)| s >> shift)
                .collect();
            set.len() as u64
        };
        1 + regions(39, PageSize::Size1G)
            + regions(30, PageSize::Size2M)
            + regions(21, PageSize::Size4K)
    }
}

/// Which hardware the independent walker imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Intel EPT.
    Ept,
    /// AMD NPT with this host PAT and EFER.NXE.
    Npt {
        /// The host PAT MSR.
        pat: u64,
        /// Host EFER.NXE.
        nx: bool,
    },
}

/// A leaf found by the walker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawLeaf {
    /// Guest address.
    pub gpa: u64,
    /// Page size.
    pub size: PageSize,
    /// Host address.
    pub hpa: u64,
    /// Decoded attributes.
    pub attrs: Attrs,
}

/// What a scan of all tables found.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// Every leaf in guest order.
    pub leaves: Vec<RawLeaf>,
    /// Paging-structure pages reachable, root included.
    pub tables: u64,
    /// Every entry of every reachable table, by frame.
    pub snapshot: BTreeMap<u64, Vec<u64>>,
}

enum Entry {
    Empty,
    Table(u64),
    Leaf(u64, Attrs),
}

/// A second-level walker written from the manuals' entry tables. It
/// rejects any reserved bit the hardware would fault on.
#[derive(Clone, Copy, Debug)]
pub struct Walker {
    /// The format.
    pub kind: Kind,
    /// MAXPHYADDR.
    pub phys_bits: u8,
    /// Whether 1 GiB leaves are allowed.
    pub pages_1g: bool,
}

const ADDR: u64 = 0x000f_ffff_ffff_f000;
/// Bits 11 and 56:52: ignored by hardware, never left set in live tables.
const LINK: u64 = (1 << 11) | (0x1f << 52);

impl Walker {
    /// `level`: 4 = PML4 … 1 = PT.
    fn decode(&self, level: u32, raw: u64) -> Result<Entry, String> {
        let bad = |why: &str| Err(format!("level {level} entry {raw:#018x}: {why}"));
        let beyond = raw & ADDR & !((1u64 << self.phys_bits) - 1);
        let large_ok = level == 2 || (level == 3 && self.pages_1g);
        match self.kind {
            Kind::Ept => {
                if raw & 7 == 0 {
                    return Ok(Entry::Empty);
                }
                if raw & LINK != 0 {
                    return bad("stray bits in 11 or 56:52");
                }
                if beyond != 0 {
                    return bad("address beyond MAXPHYADDR");
                }
                if raw & 3 == 2 {
                    return bad("write without read (misconfiguration)");
                }
                let is_leaf = level == 1 || (raw & (1 << 7) != 0);
                if !is_leaf {
                    if raw & 0xf8 != 0 {
                        return bad("reserved bits 7:3 in a non-leaf entry");
                    }
                    return Ok(Entry::Table(raw & ADDR));
                }
                if level > 1 && !large_ok {
                    return bad("large page not allowed at this level");
                }
                let shift = 12 + 9 * (level - 1);
                if raw & ADDR & ((1 << shift) - 1) != 0 {
                    return bad("reserved address bits in a large page");
                }
                let Some(mem) = MemType::from_code(((raw >> 3) & 7) as u8) else {
                    return bad("reserved memory type (misconfiguration)");
                };
                let mut perms = Perms::empty();
                perms.set(Perms::READ, raw & 1 != 0);
                perms.set(Perms::WRITE, raw & 2 != 0);
                perms.set(Perms::EXECUTE, raw & 4 != 0);
                perms.set(Perms::USER_EXECUTE, raw & (1 << 10) != 0);
                Ok(Entry::Leaf(
                    raw & ADDR & !((1 << shift) - 1),
                    Attrs::new(perms, mem),
                ))
            }
            Kind::Npt { pat, nx } => {
                if raw & 1 == 0 {
                    return Ok(Entry::Empty);
                }
                if raw & LINK != 0 {
                    return bad("stray bits in 11 or 56:52");
                }
                if beyond != 0 {
                    return bad("address beyond MAXPHYADDR");
                }
                if raw & 4 == 0 {
                    return bad("U/S clear: nested walks are user accesses");
                }
                if !nx && raw >> 63 != 0 {
                    return bad("NX set without EFER.NXE");
                }
                if level == 4 && raw & 0x180 != 0 {
                    return bad("reserved bits 8:7 in a PML4E");
                }
                let is_leaf = level == 1 || (raw & (1 << 7) != 0);
                if !is_leaf {
                    return Ok(Entry::Table(raw & ADDR));
                }
                if level > 1 && !large_ok {
                    return bad("large page not allowed at this level");
                }
                let shift = 12 + 9 * (level - 1);
                if level > 1 && raw & ADDR & ((1 << shift) - 1) & !(1 << 12) != 0 {
                    return bad("reserved address bits in a large page");
                }
                let pat_bit = if level == 1 { 7 } else { 12 };
                let index =
                    ((raw >> 3) & 1) | (((raw >> 4) & 1) << 1) | (((raw >> pat_bit) & 1) << 2);
                let Some(mem) = MemType::from_code(((pat >> (8 * index)) & 0xff) as u8) else {
                    return bad("PAT entry is not one of the five memory types");
                };
                let mut perms = Perms::READ;
                perms.set(Perms::WRITE, raw & 2 != 0);
                perms.set(
                    Perms::EXECUTE | Perms::USER_EXECUTE,
                    !(nx && raw >> 63 != 0),
                );
                Ok(Entry::Leaf(
                    raw & ADDR & !((1 << shift) - 1),
                    Attrs::new(perms, mem),
                ))
            }
        }
    }

    /// Translates `gpa` the way the processor would.
    ///
    /// # Errors
    /// A reserved bit on the path.
    pub fn translate(
        &self,
        mem: &impl PhysMem,
        root: HostPhys,
        gpa: u64,
    ) -> Result<Option<(u64, Attrs, PageSize)>, String> {
        let mut table = root.as_u64();
        for level in (1..=4u32).rev() {
            let index = ((gpa >> (12 + 9 * (level - 1))) & 511) as usize;
            let raw =
                mem.table(HostPhys::new(table))[index].load(core::sync::atomic::Ordering::Relaxed);
            match self.decode(level, raw)? {
                Entry::Empty => return Ok(None),
                Entry::Table(t) => table = t,
                Entry::Leaf(hpa, attrs) => {
                    let size = match level {
                        1 => PageSize::Size4K,
                        2 => PageSize::Size2M,
                        _ => PageSize::Size1G,
                    };
                    return Ok(Some((hpa + (gpa & (size.bytes() - 1)), attrs, size)));
                }
            }
        }
        Err(format!("walk of {gpa:#x} did not end in a leaf"))
    }

    /// Visits every reachable table: collects leaves and checks that every
    /// entry is valid, that no table is referenced twice (entries would
    /// disagree about who owns it) and that no table but the root is empty.
    ///
    /// # Errors
    /// The first violation.
    pub fn scan(&self, mem: &impl PhysMem, root: HostPhys) -> Result<Scan, String> {
        let mut scan = Scan::default();
        let mut seen = BTreeSet::new();
        seen.insert(root.as_u64());
        self.scan_table(mem, root.as_u64(), 4, 0, &mut seen, &mut scan)?;
        scan.tables = seen.len() as u64;
        Ok(scan)
    }

    fn scan_table(
        &self,
        mem: &impl PhysMem,
        table: u64,
        level: u32,
        base: u64,
        seen: &mut BTreeSet<u64>,
        scan: &mut Scan,
    ) -> Result<(), String> {
        let raws: Vec<u64> = mem
            .table(HostPhys::new(table))
            .iter()
            .map(|e| e.load(core::sync::atomic::Ordering::Relaxed))
            .collect();
        scan.snapshot.insert(table, raws.clone());
        let mut present = 0;
        for (i, &raw) in raws.iter().enumerate() {
            let gpa = base + ((i as u64) << (12 + 9 * (level - 1)));
            match self.decode(level, raw)? {
                Entry::Empty => {}
                Entry::Table(t) => {
                    present += 1;
                    if !seen.insert(t) {
                        return Err(format!(
                            "table {t:#x} referenced twice (again at GPA {gpa:#x})"
                        ));
                    }
                    self.scan_table(mem, t, level - 1, gpa, seen, scan)?;
                }
                Entry::Leaf(hpa, attrs) => {
                    present += 1;
                    let size = match level {
                        1 => PageSize::Size4K,
                        2 => PageSize::Size2M,
                        _ => PageSize::Size1G,
                    };
                    scan.leaves.push(RawLeaf {
                        gpa,
                        size,
                        hpa,
                        attrs,
                    });
                }
            }
        }
        if present == 0 && level != 4 {
            return Err(format!(
                "empty level-{level} table {table:#x} left linked at GPA {base:#x}"
            ));
        }
        Ok(())
    }
}

/// The runs a set of leaves maps, merged maximally like [`Model::runs`].
#[must_use]
pub fn runs_of(leaves: &[RawLeaf]) -> Vec<(u64, Run)> {
    let mut model = Model::new();
    for leaf in leaves {
        model.runs.insert(
            leaf.gpa,
            Run {
                end: leaf.gpa + leaf.size.bytes(),
                hpa: leaf.hpa,
                attrs: leaf.attrs,
            },
        );
    }
    model.normalize();
    model.runs()
}

/// The layout a set of leaves forms.
#[must_use]
pub fn layout_of(leaves: &[RawLeaf]) -> Layout {
    Layout {
        leaves: leaves.iter().map(|l| (l.gpa, l.size)).collect(),
    }
}
