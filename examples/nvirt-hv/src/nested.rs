//! A guest's nested translation tables, built by `nvirt-ept` in the format
//! the CPU's virtualization extension walks: EPT under Intel VMX, NPT under
//! AMD SVM. Every guest page is mapped read/write/execute, write-back.

use nvirt_ept::{
    Config, Ept, FrameSource, GuestPhysAddr, HostPhysAddr, Invalidate, MapError, MemType, NewError,
    Npt, PageCounts, Perms, PhysMem, Tables, UnmapError,
};

use crate::footprint::Footprint;

/// Which hardware walks the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// AMD nested page tables.
    Npt,
    /// Intel extended page tables.
    Ept,
}

/// What the CPU offers the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NestedConfig {
    /// The entry format.
    pub format: Format,
    /// Whether 1 GiB leaves may be used (SVM: CPUID 8000_0001h EDX bit 26;
    /// VMX: IA32_VMX_EPT_VPID_CAP bit 17).
    pub pages_1g: bool,
    /// MAXPHYADDR (CPUID 8000_0008h EAX bits 7:0).
    pub phys_bits: u8,
    /// NPT only: the host's EFER.NXE (without it bit 63 is reserved).
    pub host_nxe: bool,
    /// NPT only: the host's PAT MSR, which leaf memory types index.
    pub host_pat: u64,
}

/// Nested tables of either format over physical memory `M`.
#[derive(Debug)]
pub enum Nested<M: PhysMem> {
    /// EPT.
    Ept(Tables<Ept, M>),
    /// NPT.
    Npt(Tables<Npt, M>),
}

/// Runs `$body` on the tables whatever their format.
macro_rules! each {
    ($self:expr, $t:ident => $body:expr) => {
        match $self {
            Nested::Ept($t) => $body,
            Nested::Npt($t) => $body,
        }
    };
}

impl<M: PhysMem> Nested<M> {
    /// Empty tables (one root frame from `frames`).
    pub fn new(
        config: &NestedConfig,
        mem: M,
        frames: &mut impl FrameSource,
    ) -> Result<Self, NewError> {
        let c = Config::new()
            .phys_bits(config.phys_bits)
            .pages_1g(config.pages_1g);
        Ok(match config.format {
            Format::Ept => Self::Ept(Tables::new(Ept::new(), mem, c, frames)?),
            Format::Npt => Self::Npt(Tables::new(
                Npt::new()
                    .with_no_execute(config.host_nxe)
                    .with_pat(config.host_pat),
                mem,
                c,
                frames,
            )?),
        })
    }

    /// `"EPT"` or `"NPT"`.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Ept(_) => "EPT",
            Self::Npt(_) => "NPT",
        }
    }

    /// Maps `len` bytes of guest memory at `gpa` to host `hpa`, with the
    /// largest pages alignment allows.
    pub fn map(
        &mut self,
        frames: &mut impl FrameSource,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        len: u64,
    ) -> Result<Invalidate, MapError> {
        each!(self, t => t.map(frames, gpa, hpa, len, Perms::RWX, MemType::Wb))
    }

    /// Unmaps `len` bytes of guest memory at `gpa`.
    pub fn unmap(
        &mut self,
        frames: &mut impl FrameSource,
        gpa: GuestPhysAddr,
        len: u64,
    ) -> Result<Invalidate, UnmapError> {
        each!(self, t => t.unmap(frames, gpa, len))
    }

    /// The host address `gpa` translates to, walking the tables (none for
    /// a number beyond the physical address space).
    #[must_use]
    pub fn translate(&self, gpa: u64) -> Option<u64> {
        let gpa = GuestPhysAddr::new(gpa)?;
        each!(self, t => t.translate(gpa).map(|x| x.hpa.get()))
    }

    /// The value the hardware takes: the EPTP or nCR3.
    #[must_use]
    pub fn root_pointer(&self) -> u64 {
        each!(self, t => t.root_pointer())
    }

    /// Frees the tables earlier changes retired; call only after the
    /// invalidation they asked for.
    pub fn reclaim(&mut self, frames: &mut impl FrameSource) -> u64 {
        each!(self, t => t.reclaim(frames))
    }

    /// Frees every table, live or retired; for a guest that will never run
    /// again, after the CPU's cached translations of it were invalidated.
    pub fn destroy(self, frames: &mut impl FrameSource) {
        each!(self, t => t.destroy(frames));
    }

    /// Leaves of each size and paging-structure pages now.
    #[must_use]
    pub fn footprint(&self) -> Footprint {
        let (counts, tables): (PageCounts, u64) =
            each!(self, t => (t.page_counts(), t.table_count()));
        Footprint {
            pages_1g: counts.size_1g,
            pages_2m: counts.size_2m,
            pages_4k: counts.size_4k,
            tables,
        }
    }

    /// Calls `f(gpa, hpa, bytes)` for every maximal run of equal-sized
    /// leaves with consecutive addresses, in guest-address order.
    pub fn for_each_extent(&self, mut f: impl FnMut(GuestPhysAddr, HostPhysAddr, u64)) {
        each!(self, t => {
            for e in t.page_runs() {
                f(e.gpa, e.hpa, e.len);
            }
        });
    }

    /// Whether 1 GiB leaves are in use.
    #[must_use]
    pub fn uses_1g(&self) -> bool {
        each!(self, t => t.config().uses_1g())
    }
}
