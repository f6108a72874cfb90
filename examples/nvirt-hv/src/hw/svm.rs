//! AMD SVM backend (AMD64 APM Vol. 2, chapter 15): a VMCB per guest,
//! nested paging, an ASID per vCPU, every I/O port but the guest's own timer and
//! interrupt controllers and every MSR but the pass-through ones
//! intercepted, CPUID, VMRUN, VMMCALL and shutdown
//! intercepted; exceptions and HLT as the guest's kind asks. Physical
//! interrupts are not intercepted and V_INTR_MASKING is clear, so they
//! reach the guest through its own IDT, masked by its RFLAGS.IF.
//!
//! VMCB offsets used (control area, then the state-save area at 0x400; APM
//! Vol. 2 Appendix B): 0x008 exception intercepts, 0x00C/0x010 instruction
//! intercepts, 0x040 IOPM base, 0x048 MSRPM base, 0x058 guest ASID, 0x05C
//! TLB control, 0x070–0x080 exit code and information, 0x090 nested-paging
//! enable, 0x0B0 nCR3, 0x0C0 clean bits, 0x0C8 next RIP; segments at 0x400
//! (ES, CS, SS, DS, FS, GS, GDTR, LDTR, IDTR, TR, 16 bytes each: selector,
//! attributes, limit, base), CPL 0x4CB, EFER 0x4D0, CR4 0x548, CR3 0x550,
//! CR0 0x558, DR7 0x560, DR6 0x568, RFLAGS 0x570, RIP 0x578, RSP 0x5D8,
//! RAX 0x5F8, G_PAT 0x668.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use nvirt_hypercall_abi::host::{Paging, VcpuMode};
use raw_cpuid::CpuId;

use crate::heaps::FrameAlloc;

use crate::devices::{DIRECT_PORTS, msrs};

use super::io::{msr, rdmsr, wrmsr};
use super::mem::zero_host;
use super::vcpu::{
    Exit, GUEST_CR0, GUEST_CR4, GUEST_EFER, GUEST_PAT, Gprs, GuestKind, GuestSegments, GuestSpec,
    Reg, Segment, Vcpu, VmError, load_gprs_from_rax, mode_of, store_gprs_to_rax,
};

const EFER_SVME: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;
/// EFER bits a guest may set: SCE, LME, NXE.
const EFER_GUEST_BITS: u64 = 1 | 1 << 8 | 1 << 11;

// Instruction intercepts, vector 3 (offset 0x00C) and vector 4 (0x010).
const INTERCEPT_INTR: u32 = 1 << 0;
const INTERCEPT_CPUID: u32 = 1 << 18;
const INTERCEPT_HLT: u32 = 1 << 24;
const INTERCEPT_IOIO: u32 = 1 << 27;
const INTERCEPT_MSR: u32 = 1 << 28;
const INTERCEPT_SHUTDOWN: u32 = 1 << 31;
const INTERCEPT_VMRUN: u32 = 1 << 0;
const INTERCEPT_VMMCALL: u32 = 1 << 1;

// Exit codes.
const EXIT_EXCEPTION_0: u64 = 0x40;
const EXIT_INTR: u64 = 0x60;
const EXIT_CPUID: u64 = 0x72;
const EXIT_HLT: u64 = 0x78;
const EXIT_IOIO: u64 = 0x7b;
const EXIT_MSR: u64 = 0x7c;
const EXIT_SHUTDOWN: u64 = 0x7f;
const EXIT_VMMCALL: u64 = 0x81;
const EXIT_NPF: u64 = 0x400;
const EXIT_INVALID: u64 = u64::MAX;

/// VMCB 0x060 bit 24, V_INTR_MASKING: the guest's RFLAGS.IF masks only
/// virtual interrupts; physical ones follow the host's IF at VMRUN.
const V_INTR_MASKING: u64 = 1 << 24;

/// The next guest's address-space id: one per vCPU, so no guest's
/// translations are ever used for another's (ASID 0 is the host's).
static NEXT_ASID: AtomicU32 = AtomicU32::new(1);

/// The host save area VM_HSAVE_PA names, one for every guest (0: none yet).
static HSAVE: AtomicU64 = AtomicU64::new(0);

/// TLB_CONTROL: flush the whole TLB on the next VMRUN (always supported).
const TLB_FLUSH_ALL: u8 = 1;

unsafe extern "sysv64" {
    /// Loads the guest's general registers from `gprs`, runs VMRUN on the
    /// VMCB at `vmcb`, stores them back.
    fn nvirt_svm_run(vmcb: u64, gprs: *mut Gprs);
}

// RAX, RSP and RIP travel through the VMCB; the other registers are the
// guest's between VMRUN and #VMEXIT, so they are swapped here. GIF is
// cleared around VMRUN as the APM recommends (§15.17). RFLAGS.IF is set
// only for VMRUN itself (GIF, clear, holds interrupts off around it): with
// V_INTR_MASKING the host's IF at VMRUN is what lets a physical interrupt
// end the guest's slice (the INTR intercept); the interrupt then stays
// pending, IF is cleared again before STGI, and nothing is delivered to the
// host.
global_asm!(concat!(
    r#"
    .text
    .global nvirt_svm_run
nvirt_svm_run:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    push rsi
    push rdi
    mov rax, rsi
    "#,
    load_gprs_from_rax!(),
    r#"
    pop rax
    clgi
    sti
    vmrun rax
    cli
    mov rax, [rsp]
    "#,
    store_gprs_to_rax!(),
    r#"
    stgi
    add rsp, 8
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret
"#
));

/// Whether this CPU has SVM with nested paging, enabled by firmware.
pub(crate) fn supported() -> Result<(), VmError> {
    // Present only with the SVM feature bit and leaf 8000_000Ah.
    let Some(svm) = CpuId::new().get_svm_info() else {
        return Err(VmError::Unsupported("SVM"));
    };
    if !svm.has_nested_paging() {
        return Err(VmError::Unsupported("SVM nested paging"));
    }
    // SAFETY: VM_CR exists on every CPU with SVM.
    if unsafe { rdmsr(msr::VM_CR) } & 1 << 4 != 0 {
        return Err(VmError::Unsupported(
            "SVM (disabled by firmware, VM_CR.SVMDIS)",
        ));
    }
    Ok(())
}

/// ASIDs the CPU has (CPUID 8000_000Ah EBX; ids below it are usable).
fn max_asids() -> u32 {
    CpuId::new()
        .get_svm_info()
        .map_or(1, |s| s.supported_asids())
}

/// Whether nested tables may use 1 GiB pages: the CPU has 1 GiB pages
/// (CPUID 8000_0001h EDX bit 26, "Page1GB"; AMD APM Vol. 3, appendix E).
/// Nested walks use the host's paging features (APM Vol. 2, 15.25.5).
pub(crate) fn pages_1g() -> bool {
    CpuId::new()
        .get_extended_processor_and_feature_identifiers()
        .is_some_and(|f| f.has_1gib_pages())
}

/// A guest CPU under SVM.
pub(crate) struct SvmVcpu {
    /// The VMCB's physical address; 0 once released.
    vmcb: u64,
    /// The I/O and MSR permission maps (12 and 8 KiB).
    iopm: u64,
    msrpm: u64,
    gprs: Gprs,
    next_rip_supported: bool,
    last_exit_len: u64,
    /// After an I/O exit: the next RIP (EXITINFO2).
    io_next_rip: Option<u64>,
}

impl SvmVcpu {
    /// Enables SVM on this CPU and builds the guest's VMCB.
    pub(crate) fn new(frames: &mut impl FrameAlloc, spec: &GuestSpec) -> Result<Self, VmError> {
        supported()?;
        let vmcb = alloc_zeroed(frames, 4096)?;
        // Every I/O port (12 KiB bitmap) and every MSR (8 KiB) intercepted.
        let iopm = alloc_zeroed(frames, 3 * 4096)?;
        let msrpm = alloc_zeroed(frames, 2 * 4096)?;
        // SAFETY: both blocks were just allocated for these bitmaps.
        unsafe {
            core::ptr::write_bytes(ptr(iopm), 0xff, 3 * 4096);
        }
        // SAFETY: as above.
        unsafe {
            core::ptr::write_bytes(ptr(msrpm), 0xff, 2 * 4096);
        }
        for m in msrs::PASS_THROUGH {
            pass_through(msrpm, m);
        }
        for port in DIRECT_PORTS {
            let byte = ptr(iopm + u64::from(port / 8));
            // SAFETY: inside the 12 KiB map this vCPU owns.
            let old = unsafe { byte.read_volatile() };
            // SAFETY: as above.
            unsafe { byte.write_volatile(old & !(1 << (port % 8))) };
        }
        enable(frames)?;

        let v = Vmcb(vmcb);
        let (exceptions, hlt) = match spec.kind {
            GuestKind::Test => (u32::MAX, INTERCEPT_HLT),
            GuestKind::Linux => (0, 0),
        };
        v.w32(0x008, exceptions);
        v.w32(
            0x00c,
            INTERCEPT_CPUID | hlt | INTERCEPT_IOIO | INTERCEPT_MSR | INTERCEPT_SHUTDOWN,
        );
        v.w32(0x010, INTERCEPT_VMRUN | INTERCEPT_VMMCALL);
        v.w64(0x040, iopm);
        v.w64(0x048, msrpm);
        let asid = NEXT_ASID.fetch_add(1, Ordering::Relaxed);
        if asid >= max_asids() {
            return Err(VmError::Unsupported(
                "an address-space id for one more guest",
            ));
        }
        v.w32(0x058, asid);
        v.w8(0x05c, TLB_FLUSH_ALL);
        v.w64(0x090, 1);
        v.w64(0x0b0, spec.nested_root);
        v.w32(0x0c0, 0);

        let s = spec.start;
        let seg = GuestSegments::for_start(&s);
        let packed = |x: Segment| (x.selector, x.svm_attributes(), x.limit, x.base);
        // ES, SS, DS, FS, GS; CS; GDTR; LDTR (an empty LDT); IDTR; TR.
        for offset in [0x400, 0x420, 0x430, 0x440, 0x450] {
            v.segment(offset, packed(seg.data));
        }
        v.segment(0x410, packed(seg.code));
        v.segment(0x460, (0, 0, seg.gdtr.1, seg.gdtr.0));
        v.segment(0x470, (0, 0x0082, 0, 0));
        v.segment(0x480, (0, 0, seg.idtr.1, seg.idtr.0));
        v.segment(0x490, packed(seg.tr));
        v.w8(0x4cb, 0);
        v.w64(0x4d0, GUEST_EFER | EFER_SVME);
        v.w64(0x548, GUEST_CR4);
        v.w64(0x550, s.cr3);
        v.w64(0x558, GUEST_CR0);
        v.w64(0x560, 0x400);
        v.w64(0x568, 0xffff_0ff0);
        v.w64(0x570, 0x2);
        v.w64(0x578, s.rip);
        v.w64(0x5d8, s.rsp);
        v.w64(0x5f8, 0);
        v.w64(0x668, GUEST_PAT);

        let gprs = Gprs {
            rbx: s.rbx,
            rsi: s.rsi,
            ..Gprs::default()
        };
        Ok(Self {
            vmcb,
            iopm,
            msrpm,
            gprs,
            next_rip_supported: CpuId::new().get_svm_info().is_some_and(|f| f.has_nrip()),
            last_exit_len: 0,
            io_next_rip: None,
        })
    }
}

/// Sets EFER.SVME and gives VM_HSAVE_PA its host save area, the first time.
fn enable(frames: &mut impl FrameAlloc) -> Result<(), VmError> {
    if HSAVE.load(Ordering::Relaxed) != 0 {
        return Ok(());
    }
    let hsave = alloc_zeroed(frames, 4096)?;
    // SAFETY: EFER and VM_HSAVE_PA exist (SVM is present); setting SVME
    // only allows the SVM instructions; the save area is a fresh frame.
    let efer = unsafe { rdmsr(msr::EFER) };
    // SAFETY: as above.
    unsafe { wrmsr(msr::EFER, efer | EFER_SVME) };
    // SAFETY: as above.
    unsafe { wrmsr(msr::VM_HSAVE_PA, hsave) };
    HSAVE.store(hsave, Ordering::Relaxed);
    Ok(())
}

/// Clears EFER.SVME and VM_HSAVE_PA; the host save area's frame, if any.
fn disable() -> Option<u64> {
    let hsave = HSAVE.swap(0, Ordering::Relaxed);
    if hsave == 0 {
        return None;
    }
    // SAFETY: SVM was enabled by `enable`; no guest runs any more, so
    // leaving SVM and dropping the save area changes nothing in use.
    let efer = unsafe { rdmsr(msr::EFER) };
    // SAFETY: as above.
    unsafe { wrmsr(msr::VM_HSAVE_PA, 0) };
    // SAFETY: as above.
    unsafe { wrmsr(msr::EFER, efer & !EFER_SVME) };
    Some(hsave)
}

fn alloc_zeroed(frames: &mut impl FrameAlloc, size: u64) -> Result<u64, VmError> {
    let block = frames.alloc_bytes(size).ok_or(VmError::OutOfFrames)?;
    // SAFETY: a fresh block from the allocator, identity mapped.
    unsafe { zero_host(block, size) };
    Ok(block)
}

/// Clears `msr`'s read and write intercept bits in the MSR permission map
/// at `msrpm` (APM Vol. 2, 15.11: two bits per MSR; MSRs 0–1FFFh at byte
/// 0, C000_0000h–C000_1FFFh at 800h, C001_0000h–C001_1FFFh at 1000h).
fn pass_through(msrpm: u64, msr: u32) {
    let (base, offset) = match msr {
        0..=0x1fff => (0, 0),
        0xc000_0000..=0xc000_1fff => (0xc000_0000, 0x800),
        0xc001_0000..=0xc001_1fff => (0xc001_0000, 0x1000),
        _ => return,
    };
    let bit = u64::from(msr - base) * 2;
    let byte = ptr(msrpm + offset + bit / 8);
    // SAFETY: the byte lies in the 8 KiB map this vCPU owns (offsets below
    // 0x1800).
    let old = unsafe { byte.read_volatile() };
    // SAFETY: as above.
    unsafe { byte.write_volatile(old & !(0b11 << (bit % 8))) };
}

fn ptr(addr: u64) -> *mut u8 {
    core::ptr::with_exposed_provenance_mut(addr as usize)
}

/// Field access to a VMCB page (volatile: the processor reads and writes it).
#[derive(Clone, Copy)]
struct Vmcb(u64);

impl Vmcb {
    fn w8(self, offset: u64, value: u8) {
        // SAFETY: the VMCB is a 4 KiB page this vCPU owns; offsets are below
        // 0x1000.
        unsafe { ptr(self.0 + offset).write_volatile(value) };
    }
    fn w16(self, offset: u64, value: u16) {
        // SAFETY: as in `w8`; offsets are naturally aligned.
        unsafe { ptr(self.0 + offset).cast::<u16>().write_volatile(value) };
    }
    fn w32(self, offset: u64, value: u32) {
        // SAFETY: as in `w16`.
        unsafe { ptr(self.0 + offset).cast::<u32>().write_volatile(value) };
    }
    fn w64(self, offset: u64, value: u64) {
        // SAFETY: as in `w16`.
        unsafe { ptr(self.0 + offset).cast::<u64>().write_volatile(value) };
    }
    fn r8(self, offset: u64) -> u8 {
        // SAFETY: as in `w8`.
        unsafe { ptr(self.0 + offset).read_volatile() }
    }
    fn r16(self, offset: u64) -> u16 {
        // SAFETY: as in `w16`.
        unsafe { ptr(self.0 + offset).cast::<u16>().read_volatile() }
    }
    fn r32(self, offset: u64) -> u32 {
        // SAFETY: as in `w16`.
        unsafe { ptr(self.0 + offset).cast::<u32>().read_volatile() }
    }
    fn r64(self, offset: u64) -> u64 {
        // SAFETY: as in `w16`.
        unsafe { ptr(self.0 + offset).cast::<u64>().read_volatile() }
    }
    /// A segment: selector, attributes (type, S, DPL, P, AVL, L, D/B, G),
    /// limit, base.
    fn segment(self, offset: u64, (selector, attributes, limit, base): (u16, u16, u32, u64)) {
        self.w16(offset, selector);
        self.w16(offset + 2, attributes);
        self.w32(offset + 4, limit);
        self.w64(offset + 8, base);
    }
}

impl Vcpu for SvmVcpu {
    fn name(&self) -> &'static str {
        "AMD SVM with nested paging"
    }

    fn run(&mut self) -> Result<Exit, VmError> {
        if self.vmcb == 0 {
            return Err(VmError::Released);
        }
        let v = Vmcb(self.vmcb);
        v.w64(0x5f8, self.gprs.rax);
        // SAFETY: the VMCB is fully set up, SVM is enabled with a host save
        // area, the nested tables map only memory reserved for this guest,
        // and every instruction and event that could reach the host is
        // intercepted.
        unsafe { nvirt_svm_run(self.vmcb, &raw mut self.gprs) };
        self.gprs.rax = v.r64(0x5f8);
        // The TLB flush request and an injected event apply to one VMRUN.
        v.w8(0x05c, 0);
        v.w64(0x0a8, 0);
        let code = v.r64(0x070);
        let info1 = v.r64(0x078);
        let info2 = v.r64(0x080);
        self.last_exit_len = 0;
        self.io_next_rip = None;
        Ok(match code {
            EXIT_VMMCALL => {
                self.last_exit_len = 3;
                Exit::Hypercall
            }
            EXIT_HLT => {
                self.last_exit_len = 1;
                Exit::Halt
            }
            EXIT_CPUID => {
                self.last_exit_len = 2;
                Exit::Cpuid
            }
            // EXITINFO1 (APM Vol. 2, 15.10.2): bit 0 IN, bit 2 string,
            // bits 4–6 one-hot size, bits 16–31 the port; EXITINFO2 the
            // next RIP.
            EXIT_IOIO => {
                self.io_next_rip = Some(info2);
                Exit::Io {
                    port: (info1 >> 16) as u16,
                    bytes: match (info1 >> 4) & 7 {
                        1 => 1,
                        2 => 2,
                        _ => 4,
                    },
                    input: info1 & 1 != 0,
                    string: info1 & 1 << 2 != 0,
                }
            }
            EXIT_MSR => {
                self.last_exit_len = 2;
                Exit::Msr {
                    write: info1 & 1 != 0,
                }
            }
            EXIT_NPF => Exit::NestedFault {
                gpa: info2,
                info: info1,
            },
            EXIT_SHUTDOWN => Exit::TripleFault,
            EXIT_INTR => Exit::Timer,
            c if (EXIT_EXCEPTION_0..EXIT_EXCEPTION_0 + 32).contains(&c) => Exit::Exception {
                vector: (c - EXIT_EXCEPTION_0) as u8,
                error_code: info1,
            },
            EXIT_INVALID => {
                return Err(VmError::EntryFailed {
                    reason: code,
                    qualification: info1,
                });
            }
            _ => Exit::Other { code, info: info1 },
        })
    }

    fn reg(&self, reg: Reg) -> u64 {
        match reg {
            Reg::Rip => Vmcb(self.vmcb).r64(0x578),
            other => self.gprs.get(other),
        }
    }

    fn set_reg(&mut self, reg: Reg, value: u64) {
        match reg {
            Reg::Rip => Vmcb(self.vmcb).w64(0x578, value),
            other => self.gprs.set(other, value),
        }
    }

    fn skip_instruction(&mut self) {
        let v = Vmcb(self.vmcb);
        let next = v.r64(0x0c8);
        let rip = v.r64(0x578);
        let target = if let Some(next) = self.io_next_rip {
            next
        } else if self.next_rip_supported && next > rip {
            next
        } else {
            rip.wrapping_add(self.last_exit_len)
        };
        v.w64(0x578, target);
    }

    fn invalidate_nested(&mut self) {
        Vmcb(self.vmcb).w8(0x05c, TLB_FLUSH_ALL);
    }

    fn caller_state(&self) -> (VcpuMode, u8) {
        let v = Vmcb(self.vmcb);
        // CS attributes (VMCB packed form): bit 9 L, bit 10 D/B.
        let cs = v.r16(0x412);
        let mode = mode_of(
            v.r64(0x558),
            v.r64(0x570),
            v.r64(0x4d0),
            cs & 1 << 9 != 0,
            cs & 1 << 10 != 0,
        );
        (mode, v.r8(0x4cb))
    }

    fn paging(&self) -> Paging {
        let v = Vmcb(self.vmcb);
        // Save area: CR4 0x548, CR3 0x550, CR0 0x558, EFER 0x4D0.
        Paging::from_registers(v.r64(0x558), v.r64(0x550), v.r64(0x548), v.r64(0x4d0))
    }

    fn inject_exception(&mut self, vector: u8) {
        // EVENTINJ (APM Vol. 2, 15.20): vector, type 3 (exception), valid.
        Vmcb(self.vmcb).w64(0x0a8, u64::from(vector) | 3 << 8 | 1 << 31);
    }

    fn set_time_slice(&mut self, _tsc_ticks: Option<u64>) {
        // SVM has no preemption timer: the PIT's interrupt ends the slice.
        let v = Vmcb(self.vmcb);
        v.w32(0x00c, v.r32(0x00c) | INTERCEPT_INTR);
        v.w64(0x060, v.r64(0x060) | V_INTR_MASKING);
    }

    fn activate(&mut self) -> Result<(), VmError> {
        // Every VMRUN names its VMCB: nothing to switch.
        if self.vmcb == 0 {
            return Err(VmError::Released);
        }
        Ok(())
    }

    fn release(&mut self, frames: &mut impl FrameAlloc) -> u64 {
        // The guest's ASID is never given to another guest, so what the TLB
        // holds of it is never used again: no flush is needed. The CPU
        // keeps no VMCB state between VMRUNs.
        let blocks = [
            (self.vmcb, 4096),
            (self.iopm, 3 * 4096),
            (self.msrpm, 2 * 4096),
        ];
        (self.vmcb, self.iopm, self.msrpm) = (0, 0, 0);
        blocks
            .into_iter()
            .filter(|&(at, size)| at != 0 && frames.free_bytes(at, size))
            .map(|(_, size)| size.next_power_of_two() / 4096)
            .sum()
    }

    fn leave(frames: &mut impl FrameAlloc) -> u64 {
        disable().map_or(0, |hsave| u64::from(frames.free_bytes(hsave, 4096)))
    }

    fn set_halt_exits(&mut self, on: bool) {
        let v = Vmcb(self.vmcb);
        let intercepts = v.r32(0x00c);
        v.w32(
            0x00c,
            if on {
                intercepts | INTERCEPT_HLT
            } else {
                intercepts & !INTERCEPT_HLT
            },
        );
    }

    fn interrupts_enabled(&self) -> bool {
        Vmcb(self.vmcb).r64(0x570) & 1 << 9 != 0
    }

    fn msr_field(&self, msr: u32) -> Option<u64> {
        let v = Vmcb(self.vmcb);
        match msr {
            msrs::EFER => Some(v.r64(0x4d0) & !EFER_SVME),
            msrs::PAT => Some(v.r64(0x668)),
            _ => None,
        }
    }

    fn set_msr_field(&mut self, msr: u32, value: u64) -> bool {
        let v = Vmcb(self.vmcb);
        match msr {
            msrs::EFER => {
                // The guest's SCE, LME and NXE; LMA is the processor's,
                // SVME the hypervisor's.
                let kept = v.r64(0x4d0) & (EFER_LMA | EFER_SVME);
                v.w64(0x4d0, kept | value & EFER_GUEST_BITS);
                true
            }
            msrs::PAT => {
                v.w64(0x668, value);
                true
            }
            _ => false,
        }
    }
}
