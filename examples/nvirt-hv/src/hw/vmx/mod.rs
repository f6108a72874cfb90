//! Intel VMX backend (Intel SDM Vol. 3C, chapters 24–29): VMXON, one VMCS
//! per guest with EPT, a 64-bit guest entered directly in IA-32e mode,
//! every I/O port but the guest's own timer and interrupt controllers,
//! every MSR but the pass-through ones, CPUID, control-register writes to
//! bits VMX fixes, and (as the guest's kind asks) exceptions and HLT
//! causing a VM exit.
//!
//! [`fields`] holds the VMCS encodings, [`caps`] what the CPU allows,
//! [`entry`] the instructions and the entry stub, [`vmcs`] what goes into
//! the VMCS; this file enters VMX operation and turns exits into the
//! backends' common [`Exit`].

mod caps;
mod cr;
pub(crate) mod entry;
pub(crate) mod fields;
mod vmcs;

use core::sync::atomic::{AtomicU64, Ordering};

use nvirt_hypercall_abi::host::{Paging, VcpuMode};

use crate::devices::{DIRECT_PORTS, msrs};
use crate::heaps::FrameAlloc;

use super::io::{cr0, cr4, msr, rdmsr, write_cr0, write_cr4, wrmsr};
use super::mem::zero_host;
use super::vcpu::{Exit, Gprs, GuestSpec, Reg, Vcpu, VmError, mode_of};
use entry::{invept, nvirt_vmx_run, vmread, vmwrite, vmx_pa_instruction};

pub(crate) use caps::{ept_pages_1g, supported};

const CR4_VMXE: u64 = 1 << 13;
/// Pin-based control bit 0: external-interrupt exiting.
const EXTERNAL_INTERRUPT_EXITING: u64 = 1 << 0;
/// Primary processor-based control bit 7: HLT exiting.
const HLT_EXITING: u64 = 1 << 7;
const EFER_LMA: u64 = 1 << 10;
/// EFER bits a guest may set: SCE, LME, NXE.
const EFER_GUEST_BITS: u64 = 1 | 1 << 8 | 1 << 11;

// Basic exit reasons (SDM Vol. 3D Appendix C).
const REASON_EXCEPTION: u64 = 0;
const REASON_EXTERNAL_INTERRUPT: u64 = 1;
const REASON_TRIPLE_FAULT: u64 = 2;
const REASON_CPUID: u64 = 10;
const REASON_CR_ACCESS: u64 = 28;
const REASON_HLT: u64 = 12;
const REASON_VMCALL: u64 = 18;
const REASON_IO: u64 = 30;
const REASON_RDMSR: u64 = 31;
const REASON_WRMSR: u64 = 32;
const REASON_EPT_VIOLATION: u64 = 48;
const REASON_PREEMPTION_TIMER: u64 = 52;
/// Pin-based control bit 6: activate the VMX-preemption timer.
const PREEMPTION_TIMER: u64 = 1 << 6;
/// The guest's VMX-preemption timer value (32 bits).
const PREEMPTION_TIMER_VALUE: u64 = 0x482e;

/// The VMXON region while this CPU is in VMX operation (VMXON runs once,
/// for the first vCPU), 0 before.
static VMXON_REGION: AtomicU64 = AtomicU64::new(0);
/// The VMCS that VMPTRLD made current last (0: none).
static CURRENT_VMCS: AtomicU64 = AtomicU64::new(0);

/// A guest CPU under VMX.
pub(crate) struct VmxVcpu {
    /// Its VMCS region's physical address; 0 once released.
    vmcs: u64,
    /// Its MSR bitmap and I/O bitmaps A and B.
    bitmaps: [u64; 3],
    gprs: Gprs,
    launched: bool,
    eptp: u64,
    invept_type: u64,
    cr_policy: cr::CrPolicy,
    /// The preemption timer's value for each entry, when it cuts slices.
    preemption: Option<u32>,
}

impl VmxVcpu {
    /// Enters VMX operation and builds the guest's VMCS.
    pub(crate) fn new(frames: &mut impl FrameAlloc, spec: &GuestSpec) -> Result<Self, VmError> {
        supported()?;
        let revision = (caps::cap(msr::VMX_BASIC) & 0x7fff_ffff) as u32;
        let invept_type = caps::ept_invept_type()?;

        let (fixed_cr0, fixed_cr4) = vmx_on(frames, revision)?;
        let vmcs = alloc_zeroed(frames)?;
        // SAFETY: a fresh frame; the revision identifier goes first.
        unsafe {
            core::ptr::with_exposed_provenance_mut::<u32>(vmcs as usize).write_volatile(revision)
        };
        vmx_pa_instruction!("vmclear", vmcs)?;
        vmx_pa_instruction!("vmptrld", vmcs)?;
        CURRENT_VMCS.store(vmcs, Ordering::Relaxed);

        let controls = caps::controls()?;
        // An unrestricted guest may clear CR0.PE and CR0.PG.
        let free_cr0 = if controls.unrestricted {
            1 | 1 << 31
        } else {
            0
        };
        let cr_policy = cr::CrPolicy {
            cr0: (fixed_cr0.0 & !free_cr0, fixed_cr0.1),
            cr4: fixed_cr4,
        };
        let bitmaps = vmcs::Bitmaps {
            msr: msr_bitmap(frames)?,
            io: io_bitmaps(frames)?,
        };
        let owned = [bitmaps.msr, bitmaps.io.0, bitmaps.io.1];
        vmcs::write_controls(&controls, spec, cr_policy.masks(), &bitmaps)?;
        vmcs::write_host_state()?;
        vmcs::write_guest_state(spec, fixed_cr0, fixed_cr4)?;
        Ok(Self {
            gprs: Gprs {
                rbx: spec.start.rbx,
                rsi: spec.start.rsi,
                ..Gprs::default()
            },
            vmcs,
            bitmaps: owned,
            launched: false,
            eptp: spec.nested_root,
            invept_type,
            cr_policy,
            preemption: None,
        })
    }
}

/// A control register's VMX fixed bits: (allowed-0, allowed-1) masks.
type Fixed = (u64, u64);

/// Enters VMX operation, the first time it is called; the CR0 and CR4
/// fixed bits (allowed-0, allowed-1 masks) either way.
fn vmx_on(frames: &mut impl FrameAlloc, revision: u32) -> Result<(Fixed, Fixed), VmError> {
    // SAFETY: IA32_FEATURE_CONTROL exists on every VMX CPU. Locking it
    // with "VMX outside SMX" is what firmware normally does; when
    // firmware locked it without that bit, VMX is off.
    let feature = unsafe { rdmsr(msr::FEATURE_CONTROL) };
    if feature & 1 == 0 {
        // SAFETY: as above.
        unsafe { wrmsr(msr::FEATURE_CONTROL, feature | 0x5) };
    } else if feature & 1 << 2 == 0 {
        return Err(VmError::Unsupported("VMX (disabled by firmware)"));
    }
    let fixed_cr0 = (
        caps::cap(msr::VMX_CR0_FIXED0),
        caps::cap(msr::VMX_CR0_FIXED1),
    );
    let fixed_cr4 = (
        caps::cap(msr::VMX_CR4_FIXED0),
        caps::cap(msr::VMX_CR4_FIXED1),
    );
    // SAFETY: forcing the VMX fixed bits keeps paging and protection
    // as they are (PE, PG and NE are already set by the boot code).
    unsafe { write_cr0((cr0() | fixed_cr0.0) & fixed_cr0.1) };
    // SAFETY: as above; CR4.VMXE only permits VMXON.
    unsafe { write_cr4((cr4() | fixed_cr4.0 | CR4_VMXE) & fixed_cr4.1) };

    if VMXON_REGION.load(Ordering::Relaxed) != 0 {
        return Ok((fixed_cr0, fixed_cr4));
    }
    let vmxon = alloc_zeroed(frames)?;
    // SAFETY: a fresh frame; the revision identifier goes first.
    unsafe {
        core::ptr::with_exposed_provenance_mut::<u32>(vmxon as usize).write_volatile(revision)
    };
    vmx_pa_instruction!("vmxon", vmxon)?;
    VMXON_REGION.store(vmxon, Ordering::Relaxed);
    Ok((fixed_cr0, fixed_cr4))
}

fn alloc_zeroed(frames: &mut impl FrameAlloc) -> Result<u64, VmError> {
    let frame = frames.alloc_bytes(4096).ok_or(VmError::OutOfFrames)?;
    // SAFETY: a fresh frame from the allocator, identity mapped.
    unsafe { zero_host(frame, 4096) };
    Ok(frame)
}

/// The MSR bitmaps (SDM Vol. 3C, 25.6.9): one 4 KiB page of four 1 KiB
/// maps — reads of MSRs 0–1FFFh, reads of C000_0000h–C000_1FFFh, then the
/// same for writes — every bit set (exit) but those of
/// [`msrs::PASS_THROUGH`].
fn msr_bitmap(frames: &mut impl FrameAlloc) -> Result<u64, VmError> {
    let page = alloc_zeroed(frames)?;
    let byte = |offset: u64| core::ptr::with_exposed_provenance_mut::<u8>((page + offset) as usize);
    // SAFETY: a fresh 4 KiB frame this vCPU owns.
    unsafe { core::ptr::write_bytes(byte(0), 0xff, 4096) };
    for m in msrs::PASS_THROUGH {
        let (index, high) = match m {
            0..=0x1fff => (u64::from(m), 0),
            0xc000_0000..=0xc000_1fff => (u64::from(m - 0xc000_0000), 0x400),
            _ => continue,
        };
        for base in [high, high + 0x800] {
            let at = byte(base + index / 8);
            // SAFETY: inside the page (offsets below 0x1000).
            let old = unsafe { at.read() };
            // SAFETY: as above.
            unsafe { at.write(old & !(1 << (index % 8))) };
        }
    }
    Ok(page)
}

// The direct ports all fall in bitmap A.
const _: () = {
    let mut i = 0;
    while i < DIRECT_PORTS.len() {
        assert!(DIRECT_PORTS[i] < 0x8000);
        i += 1;
    }
};

/// I/O bitmaps A and B (SDM Vol. 3C, 25.6.4): a set bit makes its port
/// exit; all set but [`DIRECT_PORTS`].
fn io_bitmaps(frames: &mut impl FrameAlloc) -> Result<(u64, u64), VmError> {
    let (a, b) = (alloc_zeroed(frames)?, alloc_zeroed(frames)?);
    for page in [a, b] {
        // SAFETY: a fresh 4 KiB frame this vCPU owns.
        unsafe {
            core::ptr::write_bytes(
                core::ptr::with_exposed_provenance_mut::<u8>(page as usize),
                0xff,
                4096,
            )
        };
    }
    for port in DIRECT_PORTS {
        // Every direct port is below 8000h: bitmap A.
        let at = core::ptr::with_exposed_provenance_mut::<u8>((a + u64::from(port / 8)) as usize);
        // SAFETY: inside bitmap A (offsets below 0x1000).
        let old = unsafe { at.read() };
        // SAFETY: as above.
        unsafe { at.write(old & !(1 << (port % 8))) };
    }
    Ok((a, b))
}

/// The common exit for a basic exit reason.
fn decode_exit(reason: u64, qualification: u64) -> Exit {
    match reason {
        REASON_VMCALL => Exit::Hypercall,
        REASON_HLT => Exit::Halt,
        REASON_CPUID => Exit::Cpuid,
        // Exit qualification (SDM Vol. 3C, table 28-5): bits 0–2 size − 1,
        // bit 3 IN, bit 4 string, bits 16–31 the port.
        REASON_IO => Exit::Io {
            port: (qualification >> 16) as u16,
            bytes: (qualification & 7) as u8 + 1,
            input: qualification & 1 << 3 != 0,
            string: qualification & 1 << 4 != 0,
        },
        REASON_RDMSR => Exit::Msr { write: false },
        REASON_WRMSR => Exit::Msr { write: true },
        REASON_EPT_VIOLATION => Exit::NestedFault {
            gpa: vmread(fields::GUEST_PHYSICAL_ADDRESS),
            info: qualification,
        },
        REASON_TRIPLE_FAULT => Exit::TripleFault,
        REASON_EXTERNAL_INTERRUPT | REASON_PREEMPTION_TIMER => Exit::Timer,
        REASON_EXCEPTION => {
            let info = vmread(fields::EXIT_INTERRUPTION_INFO);
            Exit::Exception {
                vector: info as u8,
                error_code: vmread(fields::EXIT_INTERRUPTION_ERROR),
            }
        }
        code => Exit::Other {
            code,
            info: qualification,
        },
    }
}

impl VmxVcpu {
    /// Delivers #GP(0) at the next entry.
    fn inject_gp(&mut self) {
        // Vector 13, type 3 (hardware exception), error code delivered,
        // valid; a failed write leaves the guest as it was.
        let _ = vmwrite(fields::ENTRY_EXCEPTION_ERROR_CODE, 0);
        let _ = vmwrite(
            fields::ENTRY_INTERRUPTION_INFO,
            13 | 3 << 8 | 1 << 11 | 1 << 31,
        );
    }
}

impl Vcpu for VmxVcpu {
    fn name(&self) -> &'static str {
        "Intel VMX with EPT"
    }

    fn run(&mut self) -> Result<Exit, VmError> {
        if self.vmcs == 0 {
            return Err(VmError::Released);
        }
        if let Some(value) = self.preemption {
            // A whole slice from every entry: the exits in between are the
            // hypervisor's time, not the guest's.
            vmwrite(PREEMPTION_TIMER_VALUE, u64::from(value))?;
        }
        // SAFETY: the current VMCS is complete, the EPT maps only memory
        // reserved for this guest, and every event that could reach the
        // host causes a VM exit.
        let status = unsafe { nvirt_vmx_run(&raw mut self.gprs, u64::from(self.launched)) };
        if status != 0 {
            return Err(VmError::Instruction {
                what: if self.launched {
                    "VMRESUME"
                } else {
                    "VMLAUNCH"
                },
                error: if status == 2 {
                    vmread(fields::VM_INSTRUCTION_ERROR)
                } else {
                    0
                },
            });
        }
        self.launched = true;
        let reason = vmread(fields::EXIT_REASON);
        let qualification = vmread(fields::EXIT_QUALIFICATION);
        if reason & 1 << 31 != 0 {
            return Err(VmError::EntryFailed {
                reason: reason & 0xffff,
                qualification,
            });
        }
        if reason & 0xffff == REASON_CR_ACCESS {
            // Control registers are the backend's business: emulated here,
            // reported to the exit loop as nothing happening.
            match cr::emulate(&mut self.gprs, qualification, &self.cr_policy) {
                cr::CrOutcome::Done => self.skip_instruction(),
                cr::CrOutcome::Fault => self.inject_gp(),
            }
            return Ok(Exit::Handled);
        }
        Ok(decode_exit(reason & 0xffff, qualification))
    }

    fn reg(&self, reg: Reg) -> u64 {
        match reg {
            Reg::Rip => vmread(fields::GUEST_RIP),
            other => self.gprs.get(other),
        }
    }

    fn set_reg(&mut self, reg: Reg, value: u64) {
        match reg {
            // A failed write leaves RIP where it was; the next exit shows it.
            Reg::Rip => {
                let _ = vmwrite(fields::GUEST_RIP, value);
            }
            other => self.gprs.set(other, value),
        }
    }

    fn skip_instruction(&mut self) {
        let len = vmread(fields::EXIT_INSTRUCTION_LENGTH);
        let rip = vmread(fields::GUEST_RIP);
        self.set_reg(Reg::Rip, rip.wrapping_add(len));
    }

    fn caller_state(&self) -> (VcpuMode, u8) {
        let cs = vmread(fields::GUEST_CS_ACCESS);
        let mode = mode_of(
            vmread(fields::GUEST_CR0),
            vmread(fields::GUEST_RFLAGS),
            vmread(fields::GUEST_IA32_EFER),
            cs & 1 << 13 != 0,
            cs & 1 << 14 != 0,
        );
        // CPL is SS.DPL (SDM Vol. 3C, 28.3.1.5).
        (mode, ((vmread(fields::GUEST_SS_ACCESS) >> 5) & 3) as u8)
    }

    fn inject_exception(&mut self, vector: u8) {
        // VM-entry interruption information (SDM Vol. 3C, 25.8.3): vector,
        // type 3 (hardware exception), valid. A failed write leaves the
        // guest as it was; its next exit shows it.
        let _ = vmwrite(
            fields::ENTRY_INTERRUPTION_INFO,
            u64::from(vector) | 3 << 8 | 1 << 31,
        );
    }

    fn invalidate_nested(&mut self) {
        invept(self.invept_type, self.eptp);
    }

    fn set_time_slice(&mut self, tsc_ticks: Option<u64>) {
        let controls = vmread(fields::PIN_BASED_CONTROLS);
        // The preemption timer counts down once every 2^rate TSC ticks
        // (IA32_VMX_MISC bits 4:0; SDM Vol. 3C, 26.5.1).
        let misc = caps::cap(msr::VMX_MISC);
        let allowed = caps::cap(msr::VMX_PINBASED_CTLS) >> 32;
        let (controls, value) = match tsc_ticks {
            Some(ticks) if allowed & PREEMPTION_TIMER != 0 => {
                let value = (ticks >> (misc & 0x1f)).clamp(1, u64::from(u32::MAX));
                (controls | PREEMPTION_TIMER, Some(value as u32))
            }
            // External-interrupt exiting is flexible on every VMX CPU (SDM
            // Vol. 3D, A.3.1). "Acknowledge interrupt on exit" stays clear,
            // so the interrupt is left pending at the controller.
            _ => (controls | EXTERNAL_INTERRUPT_EXITING, None),
        };
        self.preemption = value;
        let _ = vmwrite(fields::PIN_BASED_CONTROLS, controls);
    }

    fn activate(&mut self) -> Result<(), VmError> {
        if self.vmcs == 0 {
            return Err(VmError::Released);
        }
        if CURRENT_VMCS.load(Ordering::Relaxed) != self.vmcs {
            vmx_pa_instruction!("vmptrld", self.vmcs)?;
            CURRENT_VMCS.store(self.vmcs, Ordering::Relaxed);
        }
        Ok(())
    }

    fn release(&mut self, frames: &mut impl FrameAlloc) -> u64 {
        if self.vmcs == 0 {
            return 0;
        }
        // VMCLEAR writes back what the CPU caches of the VMCS and makes it
        // neither current nor active, so its frame may be reused (SDM Vol.
        // 3C, 25.11.3). A failure leaves the frames with the guest rather
        // than risk the CPU writing into a reused frame.
        if vmx_pa_instruction!("vmclear", self.vmcs).is_err() {
            return 0;
        }
        let _ = CURRENT_VMCS.compare_exchange(self.vmcs, 0, Ordering::Relaxed, Ordering::Relaxed);
        // Translations cached for this EPTP must go before its tables are
        // freed: a later guest's tables could reuse the root frame and so
        // the same EPTP.
        invept(self.invept_type, self.eptp);
        let owned = [self.vmcs, self.bitmaps[0], self.bitmaps[1], self.bitmaps[2]];
        (self.vmcs, self.bitmaps) = (0, [0; 3]);
        owned
            .into_iter()
            .filter(|&frame| frames.free_bytes(frame, 4096))
            .count() as u64
    }

    fn leave(frames: &mut impl FrameAlloc) -> u64 {
        let region = VMXON_REGION.load(Ordering::Relaxed);
        if region == 0 || entry::vmxoff().is_err() {
            return 0;
        }
        VMXON_REGION.store(0, Ordering::Relaxed);
        u64::from(frames.free_bytes(region, 4096))
    }

    fn set_halt_exits(&mut self, on: bool) {
        let controls = vmread(fields::PRIMARY_PROC_CONTROLS);
        let controls = if on {
            controls | HLT_EXITING
        } else {
            controls & !HLT_EXITING
        };
        // HLT exiting is flexible on every VMX CPU (SDM Vol. 3D, A.3.2); a
        // failed write leaves the control as it was.
        let _ = vmwrite(fields::PRIMARY_PROC_CONTROLS, controls);
    }

    fn interrupts_enabled(&self) -> bool {
        vmread(fields::GUEST_RFLAGS) & 1 << 9 != 0
    }

    fn msr_field(&self, msr: u32) -> Option<u64> {
        match msr {
            msrs::EFER => Some(vmread(fields::GUEST_IA32_EFER)),
            msrs::PAT => Some(vmread(fields::GUEST_IA32_PAT)),
            _ => None,
        }
    }

    fn set_msr_field(&mut self, msr: u32, value: u64) -> bool {
        let (field, value) = match msr {
            // The guest's SCE, LME and NXE; LMA follows the IA-32e mode
            // entry control, which the guest cannot change.
            msrs::EFER => (
                fields::GUEST_IA32_EFER,
                vmread(fields::GUEST_IA32_EFER) & EFER_LMA | value & EFER_GUEST_BITS,
            ),
            msrs::PAT => (fields::GUEST_IA32_PAT, value),
            _ => return false,
        };
        // A failed write leaves the field as it was.
        let _ = vmwrite(field, value);
        true
    }

    fn paging(&self) -> Paging {
        Paging::from_registers(
            vmread(fields::GUEST_CR0),
            vmread(fields::GUEST_CR3),
            vmread(fields::GUEST_CR4),
            vmread(fields::GUEST_IA32_EFER),
        )
    }
}
