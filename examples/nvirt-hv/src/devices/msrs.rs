//! What a guest's RDMSR and WRMSR reach.
//!
//! - Pass-through (never intercepted): the segment bases and the system-call
//!   MSRs — `FS_BASE`, `GS_BASE`, `KERNEL_GS_BASE`, `STAR`, `LSTAR`, `CSTAR`,
//!   `SFMASK`, `TSC_AUX`, `SYSENTER_CS/ESP/EIP`. VMX switches the
//!   `SYSENTER` MSRs and the FS/GS bases through the VMCS on every entry and
//!   exit; the rest, and all of them under SVM (where they belong to
//!   VMLOAD/VMSAVE, which this hypervisor does not use), stay in the CPU
//!   across exits, and the hypervisor itself never uses them.
//! - Kept in the control structure ([`MsrAction::Field`]): `EFER` (the
//!   extension's enable bit hidden from the guest) and `PAT`.
//! - `TSC`: reads the time-stamp counter; writes are dropped (the guest's
//!   TSC is the host's).
//! - Everything else reads as zero and drops writes. The guest's CPUID
//!   hides the features whose MSRs it would otherwise expect (local APIC,
//!   MTRRs, machine check), so a zero is what an absent feature reads as.
//!   Each distinct MSR is recorded for the report.

/// IA32_TIME_STAMP_COUNTER.
pub const TSC: u32 = 0x10;
/// IA32_PAT.
pub const PAT: u32 = 0x277;
/// IA32_EFER.
pub const EFER: u32 = 0xc000_0080;

/// MSRs the guest reads and writes without exits.
pub const PASS_THROUGH: [u32; 11] = [
    0x174,       // SYSENTER_CS
    0x175,       // SYSENTER_ESP
    0x176,       // SYSENTER_EIP
    0xc000_0081, // STAR
    0xc000_0082, // LSTAR
    0xc000_0083, // CSTAR
    0xc000_0084, // SFMASK
    0xc000_0100, // FS_BASE
    0xc000_0101, // GS_BASE
    0xc000_0102, // KERNEL_GS_BASE
    0xc000_0103, // TSC_AUX
];

/// What an intercepted MSR access does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrAction {
    /// The backend's control-structure field.
    Field,
    /// The time-stamp counter (reads only).
    Tsc,
    /// Reads as zero, writes dropped.
    Zero,
}

/// The action for `msr`.
#[must_use]
pub const fn action(msr: u32) -> MsrAction {
    match msr {
        EFER | PAT => MsrAction::Field,
        TSC => MsrAction::Tsc,
        _ => MsrAction::Zero,
    }
}

/// Most distinct MSRs recorded.
pub const LOG_MAX: usize = 48;

/// The distinct MSRs a guest touched, with read and write counts.
#[derive(Clone, Debug)]
pub struct MsrLog {
    entries: [(u32, u32, u32); LOG_MAX],
    len: usize,
    /// Accesses to MSRs beyond the first `LOG_MAX` distinct ones.
    pub unrecorded: u64,
}

impl Default for MsrLog {
    fn default() -> Self {
        Self {
            entries: [(0, 0, 0); LOG_MAX],
            len: 0,
            unrecorded: 0,
        }
    }
}

impl MsrLog {
    /// Records one access.
    pub fn record(&mut self, msr: u32, write: bool) {
        let slot = match self.entries[..self.len].iter().position(|e| e.0 == msr) {
            Some(i) => i,
            None if self.len < LOG_MAX => {
                self.entries[self.len] = (msr, 0, 0);
                self.len += 1;
                self.len - 1
            }
            None => {
                self.unrecorded += 1;
                return;
            }
        };
        let e = &mut self.entries[slot];
        if write {
            e.2 = e.2.saturating_add(1);
        } else {
            e.1 = e.1.saturating_add(1);
        }
    }

    /// Each distinct MSR: number, reads, writes; in first-seen order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        self.entries[..self.len].iter().copied()
    }
}
