//! Guest-virtual to guest-physical: the x86 page walk a hypervisor does
//! for a hypercall's pointers.
//!
//! Xen reads the addresses inside a `memory_op` argument of an HVM guest
//! as guest-linear addresses: its copy-to/from-guest walks the guest's own
//! page tables (`guest_walk_tables()`, `xen/arch/x86/mm/guest_walk.c`).
//! [`translate`] is that walk for the paging modes a caller can be in:
//! none (CR0.PG clear), 2-level 32-bit (with 4 MiB pages under CR4.PSE),
//! PAE and 4-level long mode (2 MiB and 1 GiB pages), with the checks the
//! processor makes: present at every level, reserved bits clear, write
//! permission (R/W at every level, when CR0.WP is set or the access is a
//! user one), user permission (U/S at every level), canonical addresses in
//! long mode, 32-bit addresses otherwise. Table entries are read through a
//! [`GuestMemory`] over guest-physical addresses; nothing is written (the
//! accessed and dirty bits are left to the processor, see the README).

use core::fmt;

use crate::host::memory::{Access, GuestMemory};
use crate::types::GuestAddr;

/// The paging structures a linear address goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PagingMode {
    /// Paging off: linear is physical (32 bits wide).
    Off,
    /// 2-level 32-bit paging (CR0.PG, no CR4.PAE).
    TwoLevel,
    /// PAE paging (CR4.PAE, not long mode): 32-bit addresses, 3 levels.
    Pae,
    /// 4-level IA-32e paging (EFER.LMA): 48-bit canonical addresses.
    FourLevel,
    /// 5-level paging (CR4.LA57): not walked; every address faults with
    /// [`WalkError::FiveLevel`].
    FiveLevel,
}

/// The vCPU's paging state as the walk needs it, taken from CR0, CR3, CR4
/// and EFER.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Paging {
    mode: PagingMode,
    cr3: u64,
    write_protect: bool,
    pse: bool,
    nxe: bool,
    user: bool,
}

const CR0_PG: u64 = 1 << 31;
const CR0_WP: u64 = 1 << 16;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;

impl Paging {
    /// The paging state of a vCPU with these control registers, accessing
    /// memory as its kernel (CPL 0–2).
    #[must_use]
    pub const fn from_registers(cr0: u64, cr3: u64, cr4: u64, efer: u64) -> Self {
        let mode = if cr0 & CR0_PG == 0 {
            PagingMode::Off
        } else if efer & EFER_LMA != 0 {
            if cr4 & CR4_LA57 != 0 {
                PagingMode::FiveLevel
            } else {
                PagingMode::FourLevel
            }
        } else if cr4 & CR4_PAE != 0 {
            PagingMode::Pae
        } else {
            PagingMode::TwoLevel
        };
        Self {
            mode,
            cr3,
            write_protect: cr0 & CR0_WP != 0,
            // Long mode and PAE always have large pages; CR4.PSE only
            // matters to 2-level paging.
            pse: cr4 & CR4_PSE != 0,
            nxe: efer & EFER_NXE != 0,
            user: false,
        }
    }

    /// No paging: guest-virtual is guest-physical.
    #[must_use]
    pub const fn off() -> Self {
        Self {
            mode: PagingMode::Off,
            cr3: 0,
            write_protect: false,
            pse: false,
            nxe: false,
            user: false,
        }
    }

    /// The same state, with accesses checked as user-mode (CPL 3) ones.
    #[must_use]
    pub const fn as_user(self) -> Self {
        Self { user: true, ..self }
    }

    /// The mode.
    #[must_use]
    pub const fn mode(&self) -> PagingMode {
        self.mode
    }

    /// CR3 as given.
    #[must_use]
    pub const fn cr3(&self) -> u64 {
        self.cr3
    }
}

/// Where a guest-virtual address leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Translation {
    /// The guest-physical address.
    pub gpa: u64,
    /// Bytes from the address to the end of its page (at least 1): the
    /// walk's answer holds for all of them.
    pub run: u64,
}

/// Why a guest-virtual address cannot be used: the page fault the guest
/// would take, or a table the walk cannot read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// A long-mode address whose bits 63–47 differ.
    NonCanonical {
        /// The address.
        va: u64,
    },
    /// The caller uses 5-level paging, which this walk does not implement.
    FiveLevel {
        /// The address.
        va: u64,
    },
    /// An address above 4 GiB for a caller without long mode.
    Beyond32Bits {
        /// The address.
        va: u64,
    },
    /// An entry on the way is not present.
    NotPresent {
        /// The address.
        va: u64,
        /// The level of the entry (1 = page table, 4 = PML4).
        level: u8,
    },
    /// An entry on the way has a reserved bit set.
    Reserved {
        /// The address.
        va: u64,
        /// The level of the entry.
        level: u8,
        /// The entry.
        entry: u64,
    },
    /// The access is not allowed: a write to a read-only page (with CR0.WP
    /// or from user mode), or a user access to a supervisor page.
    Denied {
        /// The address.
        va: u64,
        /// The access.
        access: Access,
    },
    /// A paging structure is not readable guest memory.
    Table {
        /// The address.
        va: u64,
        /// The level of the entry.
        level: u8,
        /// The guest-physical address of the entry.
        entry_gpa: u64,
    },
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NonCanonical { va } => write!(f, "guest-virtual {va:#x} is not canonical"),
            Self::FiveLevel { va } => {
                write!(f, "guest-virtual {va:#x}: 5-level paging is not walked")
            }
            Self::Beyond32Bits { va } => {
                write!(
                    f,
                    "guest-virtual {va:#x} is beyond 4 GiB for a 32-bit caller"
                )
            }
            Self::NotPresent { va, level } => {
                write!(f, "guest-virtual {va:#x}: level-{level} entry not present")
            }
            Self::Reserved { va, level, entry } => write!(
                f,
                "guest-virtual {va:#x}: level-{level} entry {entry:#x} has reserved bits set"
            ),
            Self::Denied { va, access } => {
                write!(f, "guest-virtual {va:#x}: {access} access not allowed")
            }
            Self::Table {
                va,
                level,
                entry_gpa,
            } => write!(
                f,
                "guest-virtual {va:#x}: level-{level} entry at guest-physical {entry_gpa:#x} is not guest memory"
            ),
        }
    }
}

impl core::error::Error for WalkError {}

const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;
/// Address bits of a 64-bit entry: 51–12 (the architectural maximum
/// physical-address width, 52 bits).
const ADDR_52: u64 = 0x000f_ffff_ffff_f000;

/// What the levels above allow, gathered on the way down.
#[derive(Clone, Copy)]
struct Rights {
    write: bool,
    user: bool,
}

impl Rights {
    const ALL: Self = Self {
        write: true,
        user: true,
    };

    const fn and(self, entry: u64) -> Self {
        Self {
            write: self.write && entry & RW != 0,
            user: self.user && entry & US != 0,
        }
    }
}

/// Translates `va` for `access` under `paging`, reading the guest's tables
/// from `tables` (guest-physical addresses).
pub fn translate<M: GuestMemory + ?Sized>(
    paging: &Paging,
    tables: &M,
    va: u64,
    access: Access,
) -> Result<Translation, WalkError> {
    let walk = Walk {
        paging,
        tables,
        va,
        access,
    };
    match paging.mode {
        PagingMode::Off => {
            walk.narrow()?;
            Ok(Translation {
                gpa: va,
                run: 0x1000 - (va & 0xfff),
            })
        }
        PagingMode::TwoLevel => walk.two_level(),
        PagingMode::Pae => walk.pae(),
        PagingMode::FourLevel => walk.four_level(),
        PagingMode::FiveLevel => Err(WalkError::FiveLevel { va }),
    }
}

struct Walk<'a, M: ?Sized> {
    paging: &'a Paging,
    tables: &'a M,
    va: u64,
    access: Access,
}

impl<M: GuestMemory + ?Sized> Walk<'_, M> {
    fn narrow(&self) -> Result<(), WalkError> {
        if self.va > u64::from(u32::MAX) {
            return Err(WalkError::Beyond32Bits { va: self.va });
        }
        Ok(())
    }

    fn entry64(&self, table: u64, index: u64, level: u8) -> Result<u64, WalkError> {
        let mut raw = [0u8; 8];
        let at = table + index * 8;
        self.tables
            .read(GuestAddr::new(at), &mut raw)
            .map_err(|_| WalkError::Table {
                va: self.va,
                level,
                entry_gpa: at,
            })?;
        let entry = u64::from_le_bytes(raw);
        if entry & P == 0 {
            return Err(WalkError::NotPresent { va: self.va, level });
        }
        Ok(entry)
    }

    fn entry32(&self, table: u64, index: u64, level: u8) -> Result<u64, WalkError> {
        let mut raw = [0u8; 4];
        let at = table + index * 4;
        self.tables
            .read(GuestAddr::new(at), &mut raw)
            .map_err(|_| WalkError::Table {
                va: self.va,
                level,
                entry_gpa: at,
            })?;
        let entry = u64::from(u32::from_le_bytes(raw));
        if entry & P == 0 {
            return Err(WalkError::NotPresent { va: self.va, level });
        }
        Ok(entry)
    }

    fn reserved(&self, entry: u64, level: u8, mask: u64) -> Result<(), WalkError> {
        // NX is reserved unless EFER.NXE enables it.
        let mask = if self.paging.nxe { mask } else { mask | NX };
        if entry & mask != 0 {
            return Err(WalkError::Reserved {
                va: self.va,
                level,
                entry,
            });
        }
        Ok(())
    }

    /// The final permission check and the answer for a page of
    /// `page_bytes` at `base`.
    fn leaf(&self, rights: Rights, base: u64, page_bytes: u64) -> Result<Translation, WalkError> {
        let user_denied = self.paging.user && !rights.user;
        let write_denied = self.access.writes()
            && !rights.write
            && (self.paging.write_protect || self.paging.user);
        if user_denied || write_denied {
            return Err(WalkError::Denied {
                va: self.va,
                access: self.access,
            });
        }
        let offset = self.va & (page_bytes - 1);
        Ok(Translation {
            gpa: base + offset,
            run: page_bytes - offset,
        })
    }

    fn four_level(&self) -> Result<Translation, WalkError> {
        let va = self.va;
        // Bits 63–47 must all equal bit 47.
        let top = va >> 47;
        if top != 0 && top != 0x1_ffff {
            return Err(WalkError::NonCanonical { va });
        }
        let index = |level: u32| (va >> (12 + 9 * (level - 1))) & 511;
        let pml4e = self.entry64(self.paging.cr3 & ADDR_52, index(4), 4)?;
        self.reserved(pml4e, 4, PS)?;
        let rights = Rights::ALL.and(pml4e);
        let pdpte = self.entry64(pml4e & ADDR_52, index(3), 3)?;
        let rights = rights.and(pdpte);
        if pdpte & PS != 0 {
            // 1 GiB page: bits 29–13 reserved (bit 12 is PAT).
            self.reserved(pdpte, 3, 0x3fff_e000)?;
            return self.leaf(rights, pdpte & ADDR_52 & !0x3fff_ffff, 1 << 30);
        }
        self.reserved(pdpte, 3, 0)?;
        let pde = self.entry64(pdpte & ADDR_52, index(2), 2)?;
        let rights = rights.and(pde);
        if pde & PS != 0 {
            // 2 MiB page: bits 20–13 reserved.
            self.reserved(pde, 2, 0x1f_e000)?;
            return self.leaf(rights, pde & ADDR_52 & !0x1f_ffff, 1 << 21);
        }
        self.reserved(pde, 2, 0)?;
        let pte = self.entry64(pde & ADDR_52, index(1), 1)?;
        self.reserved(pte, 1, 0)?;
        self.leaf(rights.and(pte), pte & ADDR_52, 1 << 12)
    }

    fn pae(&self) -> Result<Translation, WalkError> {
        self.narrow()?;
        let va = self.va;
        // The 4-entry PDPT is 32-byte aligned, below 4 GiB.
        let pdpt = self.paging.cr3 & 0xffff_ffe0;
        let pdpte = self.entry64(pdpt, va >> 30 & 3, 3)?;
        // PAE PDPTEs carry no rights: R/W, U/S (bits 2–1), bits 8–5 and NX
        // are reserved.
        self.reserved(pdpte, 3, 0x1e6 | NX)?;
        let pde = self.entry64(pdpte & ADDR_52, va >> 21 & 511, 2)?;
        let rights = Rights::ALL.and(pde);
        if pde & PS != 0 {
            self.reserved(pde, 2, 0x1f_e000)?;
            return self.leaf(rights, pde & ADDR_52 & !0x1f_ffff, 1 << 21);
        }
        self.reserved(pde, 2, 0)?;
        let pte = self.entry64(pde & ADDR_52, va >> 12 & 511, 1)?;
        self.reserved(pte, 1, 0)?;
        self.leaf(rights.and(pte), pte & ADDR_52, 1 << 12)
    }

    fn two_level(&self) -> Result<Translation, WalkError> {
        self.narrow()?;
        let va = self.va;
        let pd = self.paging.cr3 & 0xffff_f000;
        let pde = self.entry32(pd, va >> 22, 2)?;
        let rights = Rights::ALL.and(pde);
        if pde & PS != 0 && self.paging.pse {
            // 4 MiB page: bits 31–22 are address bits 31–22, bits 20–13
            // (PSE-36) address bits 39–32; bit 21 is reserved.
            if pde & 1 << 21 != 0 {
                return Err(WalkError::Reserved {
                    va,
                    level: 2,
                    entry: pde,
                });
            }
            let base = (pde & 0xffc0_0000) | ((pde >> 13 & 0xff) << 32);
            return self.leaf(rights, base, 1 << 22);
        }
        let pte = self.entry32(pde & 0xffff_f000, va >> 12 & 1023, 1)?;
        self.leaf(rights.and(pte), pte & 0xffff_f000, 1 << 12)
    }
}

#[cfg(test)]
#[path = "walk_tests.rs"]
mod tests;
