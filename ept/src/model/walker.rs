//! An independent second-level walker written from the manuals' entry
//! tables (SDM Vol. 3C 29.3.2; AMD APM Vol. 2 5.3.3 and 15.25.5). It shares
//! no decoding code with the crate and rejects every reserved bit the
//! hardware would fault on.

use crate::addr::host_addr;
use std::collections::{BTreeMap, BTreeSet};
use std::format;
use std::string::String;
use std::vec::Vec;

use crate::attrs::{Attrs, MemType, Perms};
use crate::frames::PhysMem;
use crate::{HostPhysAddr, PageSize};

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
        root: HostPhysAddr,
        gpa: u64,
    ) -> Result<Option<(u64, Attrs, PageSize)>, String> {
        let mut table = root.get();
        for level in (1..=4u32).rev() {
            let index = ((gpa >> (12 + 9 * (level - 1))) & 511) as usize;
            let raw =
                mem.table(host_addr(table))[index].load(core::sync::atomic::Ordering::Relaxed);
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
    pub fn scan(&self, mem: &impl PhysMem, root: HostPhysAddr) -> Result<Scan, String> {
        let mut scan = Scan::default();
        let mut seen = BTreeSet::new();
        seen.insert(root.get());
        self.scan_table(mem, root.get(), 4, 0, &mut seen, &mut scan)?;
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
            .table(host_addr(table))
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
