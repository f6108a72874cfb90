//! Running a guest: the VM-exit loop. Both backends report exits as the
//! same [`Exit`]; one handler each serves hypercalls ([`hypercall`]: the
//! console, shutdown, and `memory_op` through `nvirt-hypercall-abi`),
//! CPUID, HLT, I/O, MSR accesses, nested faults, exceptions and triple
//! faults, whichever backend produced them.

mod devices;
mod hypercall;
mod xen;

use nvirt_buddy::MemKind;
use nvirt_e820::GuestMap;
use nvirt_hypercall_abi::discovery;
use nvirt_hypercall_abi::host::{Caller, Limits, Registers};
use nvirt_hypercall_abi::{DomId, E820Entry, ExtentOrder, XenPfn};

use crate::devices::DeviceModel;
use crate::devices::msrs::MsrLog;
use crate::guest_console::GuestConsole;
use crate::guest_cpuid;
use crate::guest_memory::{GuestMemory, MemoryError};
use crate::memory_op;
use crate::nv_frames::NvFrames;

use super::console::hvprintln;
use super::hypervisor::Size;
use super::io::rdtsc;
use super::mem::IdentityMemory;
use super::vcpu::{Exit, GuestKind, GuestSpec, Reg, Vcpu};
use devices::ExitCounts;

/// The guest's memory as this hypervisor builds it: RAM from the volatile
/// heap, NVRAM from its domain in the NV pool.
pub(crate) type Guest<'a, 'p> = GuestMemory<
    'a,
    'static,
    'static,
    NvFrames<'p, 'static, nvirt_persist_meta::X86Pmem<'static>>,
    IdentityMemory,
>;

/// How a guest's run ended.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ended {
    /// It passed: printed PASS, powered off, and its memory checked out.
    pub(crate) passed: bool,
    /// It shut down normally (`SHUTDOWN_poweroff`).
    pub(crate) powered_off: bool,
}

/// Most VM exits before the hypervisor gives up on a guest.
const EXIT_LIMIT: u64 = 10_000_000;
/// The guest's domain id (an ordinary one: 0 is the control domain's).
const DOMAIN: DomId = DomId::new(1);
/// Extents one hypervisor entry works through before the guest resumes
/// (and re-enters with a continuation).
const BATCH: u32 = 256;
/// Most E820 entries of the guest's map.
const MAP_MAX: usize = 32;

/// What the loop does after an exit.
enum Flow {
    /// Enter the guest again.
    Resume,
    /// Another guest's turn: the timer expired.
    Yield,
    /// The guest waits for frames: its first touch of NVRAM found the pool
    /// empty. It runs again (and touches again) when frames come back.
    Pause,
    /// The guest is done.
    End(Ended),
}

/// What one guest's run keeps between its time slices: everything the
/// handlers share but the guest's memory, which is borrowed anew for each
/// slice (several guests share the heaps behind it).
pub(crate) struct RunState {
    console: GuestConsole,
    /// The guest's map as `XENMEM_memory_map` returns it.
    e820: [E820Entry; MAP_MAX],
    e820_len: usize,
    limits: Limits,
    initial_pages: u64,
    max_ram_page: u64,
    /// `memory_op` entries served.
    calls: u64,
    /// The guest's ports: allow-list, PCI, serial tap.
    devices: DeviceModel,
    /// The MSRs the guest touched.
    msrs: MsrLog,
    /// Exits so far, by kind.
    exits: ExitCounts,
    /// Whether the guest is a Linux kernel.
    linux: bool,
    /// Exits handled, for the limit.
    handled: u64,
    /// Whether the guest's NVRAM is backed on first touch.
    thin: bool,
    /// First-touch faults served.
    pub(crate) touch: TouchStats,
    /// The NVRAM balloon target the guest reads (nvirt's CPUID leaf), in
    /// pages.
    nvram_target: Option<u64>,
}

/// What serving first touches cost.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TouchStats {
    /// Faults served.
    pub(crate) faults: u64,
    /// Frames they backed.
    pub(crate) frames: u64,
    /// TSC ticks from the fault's exit to the guest's resumption, hypervisor
    /// side (backing, committing, mapping, invalidating).
    pub(crate) ticks: u64,
}

/// One guest's run during one time slice: its state and its memory.
struct Run<'r, 'a, 'p> {
    guest: &'r mut Guest<'a, 'p>,
    st: &'r mut RunState,
}

impl core::ops::Deref for Run<'_, '_, '_> {
    type Target = RunState;
    fn deref(&self) -> &RunState {
        self.st
    }
}

impl core::ops::DerefMut for Run<'_, '_, '_> {
    fn deref_mut(&mut self) -> &mut RunState {
        self.st
    }
}

impl Run<'_, '_, '_> {
    /// Forwards what is left of the guest's console.
    fn flush(&mut self) {
        self.st.console.flush(hypercall::forward);
    }
}

/// Prints the tables' page-size histogram and paging-structure pages next
/// to the minimum for the guest's translation; whether they are equal.
pub(crate) fn report_tables(guest: &Guest<'_, '_>, when: &str) -> bool {
    let (have, min) = (guest.footprint(), guest.minimum());
    let tables = guest.tables();
    hvprintln!(
        "guest tables ({when}, {}, 1 GiB pages {}): {have}",
        tables.name(),
        if tables.uses_1g() { "on" } else { "off" }
    );
    hvprintln!(
        "minimum for this translation: {min}: {}",
        if have == min {
            "minimal"
        } else {
            "NOT MINIMAL"
        }
    );
    have == min
}

/// Runs the guest to its end; returns whether it passed.
pub(crate) fn run_guest<const N: usize>(
    vcpu: &mut impl Vcpu,
    spec: &GuestSpec,
    guest: &mut Guest<'_, '_>,
    layout: &GuestMap<N>,
    initial_pages: u64,
    max_ram_page: u64,
) -> Ended {
    let mut state = RunState::new(spec, layout, initial_pages, max_ram_page);
    state.start(vcpu, spec);
    loop {
        if let Slice::Ended(ended) = run_slice(vcpu, guest, &mut state) {
            return ended;
        }
    }
}

/// How a time slice ended.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Slice {
    /// The timer took the CPU back; the guest runs again later.
    Preempted,
    /// The guest's first touch of its NVRAM found the pool empty: it waits
    /// for frames to come back.
    Paused,
    /// The guest is done.
    Ended(Ended),
}

impl RunState {
    /// The state of a guest about to start.
    pub(crate) fn new<const N: usize>(
        spec: &GuestSpec,
        layout: &GuestMap<N>,
        initial_pages: u64,
        max_ram_page: u64,
    ) -> Self {
        let mut e820 = [E820Entry::default(); MAP_MAX];
        let e820_len = memory_op::e820_of(&layout.map, &mut e820);
        let limits = Limits::new(XenPfn::new(layout.map.end().div_ceil(4096)))
            .max_order(ExtentOrder::PAGE_1G)
            .batch(BATCH.try_into().unwrap_or(core::num::NonZeroU32::MIN));
        Self {
            console: GuestConsole::new(),
            e820,
            e820_len,
            limits,
            initial_pages,
            max_ram_page,
            calls: 0,
            devices: DeviceModel::new(),
            msrs: MsrLog::default(),
            exits: ExitCounts::default(),
            linux: spec.kind == GuestKind::Linux,
            handled: 0,
            thin: false,
            touch: TouchStats::default(),
            nvram_target: None,
        }
    }

    /// Sets the NVRAM balloon target the guest reads, in pages.
    pub(crate) fn set_nvram_target(&mut self, pages: Option<u64>) {
        self.nvram_target = pages;
    }

    /// The NVRAM balloon target the guest reads, in pages.
    pub(crate) const fn nvram_target(&self) -> Option<u64> {
        self.nvram_target
    }

    /// Backs the guest's NVRAM where it first touches it.
    pub(crate) fn set_thin(&mut self, thin: bool) {
        self.thin = thin;
    }

    /// Says the guest starts and drops any translation cached for its
    /// freshly built tables.
    pub(crate) fn start(&mut self, vcpu: &mut impl Vcpu, spec: &GuestSpec) {
        hvprintln!(
            "starting the guest under {} ({} of guest-physical address space, entry {:#x})",
            vcpu.name(),
            Size(spec.memory_size),
            spec.start.rip
        );
        vcpu.invalidate_nested();
    }

    /// VM exits so far.
    pub(crate) const fn exits(&self) -> u64 {
        self.handled
    }
}

/// Runs the guest until the timer preempts it or it ends.
pub(crate) fn run_slice(
    vcpu: &mut impl Vcpu,
    guest: &mut Guest<'_, '_>,
    state: &mut RunState,
) -> Slice {
    let mut run = Run { guest, st: state };
    while run.handled < EXIT_LIMIT {
        run.handled += 1;
        let exit = match vcpu.run() {
            Ok(exit) => exit,
            Err(e) => {
                hvprintln!("guest could not run: {e}");
                return Slice::Ended(Ended::default());
            }
        };
        let flow = match exit {
            Exit::Hypercall => {
                run.exits.hypercall += 1;
                hypercall::serve(vcpu, &mut run)
            }
            Exit::Cpuid => {
                run.exits.cpuid += 1;
                cpuid_exit(vcpu, run.linux, run.nvram_target)
            }
            // Xen's hypercall-page MSR, for the guests that see Xen's
            // leaves; every other MSR goes to the device model.
            Exit::Msr { write: true } if !run.linux && xen::is_hypercall_page_msr(vcpu) => {
                run.exits.msr += 1;
                xen::write_hypercall_page(vcpu, &mut run)
            }
            Exit::Halt => {
                run.exits.hlt += 1;
                devices::halt(vcpu, &mut run)
            }
            Exit::Io {
                port,
                bytes,
                input,
                string,
            } => {
                run.exits.io += 1;
                devices::io(vcpu, &mut run, port, bytes, input, string)
            }
            Exit::Msr { write } => {
                run.exits.msr += 1;
                devices::msr(vcpu, &mut run, write)
            }
            Exit::Timer => {
                run.exits.other += 1;
                Flow::Yield
            }
            Exit::Handled => {
                run.exits.other += 1;
                Flow::Resume
            }
            Exit::TripleFault if run.linux => {
                devices::linux_end(vcpu, &mut run, format_args!("a triple fault"))
            }
            Exit::NestedFault { gpa, info } => {
                run.exits.other += 1;
                nested_fault(vcpu, &mut run, gpa, info)
            }
            // Exceptions and triple faults of the test guest (it expects
            // none), and anything else.
            other @ (Exit::Exception { .. } | Exit::TripleFault | Exit::Other { .. }) => {
                run.exits.other += 1;
                run.flush();
                hvprintln!("guest stopped: {other:x?} at rip {:#x}", vcpu.reg(Reg::Rip));
                Flow::End(Ended::default())
            }
        };
        match flow {
            Flow::Resume => {}
            Flow::Yield => return Slice::Preempted,
            Flow::Pause => return Slice::Paused,
            Flow::End(ended) => return Slice::Ended(ended),
        }
    }
    hvprintln!("guest made more than {EXIT_LIMIT} exits; stopping it");
    Slice::Ended(Ended::default())
}

/// A guest-physical access the tables do not allow: a first touch of thin
/// NVRAM is backed and the guest resumes (or waits for frames); anything
/// else stops the guest, which is expected only where it announced the
/// probe.
fn nested_fault(vcpu: &mut impl Vcpu, run: &mut Run<'_, '_, '_>, gpa: u64, info: u64) -> Flow {
    if run.thin {
        let start = rdtsc();
        match run.guest.back_on_touch(gpa, MemKind::NonVolatile) {
            Ok(frames) => {
                if run.guest.take_invalidation().is_needed() {
                    vcpu.invalidate_nested();
                    run.guest.reclaim_tables();
                }
                run.touch.faults += 1;
                run.touch.frames += frames;
                run.touch.ticks += rdtsc().wrapping_sub(start);
                return Flow::Resume;
            }
            Err(MemoryError::NoMemory { .. }) => return Flow::Pause,
            // Not thin NVRAM: the probe or a stray access, below.
            Err(MemoryError::OutsideRegion { .. }) => {}
            Err(e) => {
                run.flush();
                hvprintln!("first touch at guest-physical {gpa:#x}: {e}");
                return Flow::End(Ended::default());
            }
        }
    }
    run.flush();
    let page = gpa & !0xfff;
    let backed = run.guest.check(page, 1).is_ok();
    hvprintln!(
        "guest touched guest-physical {gpa:#x} ({}; qualification {info:#x}) at rip {:#x}",
        if backed { "backed" } else { "not backed" },
        vcpu.reg(Reg::Rip)
    );
    if run.console.probe() == Some(page) && !backed {
        hvprintln!(
            "stopped at its announced probe: guest-physical {page:#x} is outside its map and reaches no other memory"
        );
        return Flow::End(Ended {
            passed: !run.console.failed(),
            powered_off: false,
        });
    }
    Flow::End(Ended::default())
}

/// CPUID: the host's answer as the guest may see it, and Xen's leaves for
/// the test guest.
fn cpuid_exit(vcpu: &mut impl Vcpu, linux: bool, nvram_target: Option<u64>) -> Flow {
    let (leaf, subleaf) = (vcpu.reg(Reg::Rax) as u32, vcpu.reg(Reg::Rcx) as u32);
    // Xen's leaves promise a whole Xen (shared info, event channels, grant
    // tables): Linux would take this hypervisor for one and fail when it
    // maps its shared-info page. Only the test guest, which uses nothing
    // but memory_op, sees them.
    let xen = if linux {
        None
    } else {
        xen::cpuid(leaf, subleaf).or_else(|| discovery::nvirt_leaf(leaf, nvram_target))
    };
    let r = xen.unwrap_or_else(|| {
        let host = raw_cpuid::native_cpuid::cpuid_count(leaf, subleaf);
        guest_cpuid::guest_view(leaf, subleaf, [host.eax, host.ebx, host.ecx, host.edx])
    });
    for (reg, value) in [Reg::Rax, Reg::Rbx, Reg::Rcx, Reg::Rdx].into_iter().zip(r) {
        vcpu.set_reg(reg, u64::from(value));
    }
    vcpu.skip_instruction();
    Flow::Resume
}

/// The guest's hypercall registers: RDI, RSI, RDX, R10, R8 from a 64-bit
/// caller; EBX, ECX, EDX, ESI, EDI from any other (Xen's 32-bit
/// convention).
fn registers(vcpu: &impl Vcpu) -> Registers {
    let r = |reg| vcpu.reg(reg);
    if compat(vcpu) {
        return Registers::compat(
            r(Reg::Rax),
            r(Reg::Rbx),
            r(Reg::Rcx),
            r(Reg::Rdx),
            r(Reg::Rsi),
            r(Reg::Rdi),
        );
    }
    Registers {
        rax: r(Reg::Rax),
        rdi: r(Reg::Rdi),
        rsi: r(Reg::Rsi),
        rdx: r(Reg::Rdx),
        r10: r(Reg::R10),
        r8: r(Reg::R8),
    }
}

/// Whether the caller uses the 32-bit convention.
fn compat(vcpu: &impl Vcpu) -> bool {
    vcpu.caller_state().0 != nvirt_hypercall_abi::host::VcpuMode::Bits64
}

/// The register of the first argument (a continuation's command word).
fn first_argument(vcpu: &impl Vcpu) -> Reg {
    if compat(vcpu) { Reg::Rbx } else { Reg::Rdi }
}

/// After the guest: its memory as the balloon left it, checked.
fn finish(guest: &Guest<'_, '_>, calls: u64) -> bool {
    hvprintln!(
        "guest memory at the end: {} RAM, {} NVRAM in {} extents, after {calls} memory_op entries",
        Size(guest.frames(MemKind::Volatile) * 4096),
        Size(guest.frames(MemKind::NonVolatile) * 4096),
        guest.extents().len()
    );
    let audit = match guest.audit() {
        Ok(()) => {
            hvprintln!("guest tables agree with the guest's memory map");
            true
        }
        Err(e) => {
            hvprintln!("guest tables disagree with the guest's memory map: {e}");
            false
        }
    };
    let pool = match guest.nvram_pool_ref().map(|f| f.agrees(guest.extents())) {
        None => true,
        Some(Ok(())) => {
            hvprintln!("guest NVRAM map agrees with its domain in the NV pool, extent for extent");
            true
        }
        Some(Err(gpfn)) => {
            hvprintln!(
                "guest NVRAM map and its domain in the NV pool differ at guest frame {gpfn:#x}"
            );
            false
        }
    };
    report_tables(guest, "at the end") && audit && pool
}

/// The caller of a hypercall, as `memory_op` classifies it.
fn caller(vcpu: &impl Vcpu) -> Option<Caller> {
    let (mode, cpl) = vcpu.caller_state();
    Caller::new(DOMAIN, mode, cpl)
}
