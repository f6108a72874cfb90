//! Running a guest: the VM-exit loop and its hypercalls — the console,
//! shutdown, and `memory_op` through `nvirt-hypercall-abi` — with the
//! invalidation every change to the nested tables asks for performed before
//! the guest runs again.

use core::fmt::Write as _;

use nvirt_buddy::MemKind;
use nvirt_e820::GuestMap;
use nvirt_hv::guest_abi::{EFAULT, HYPERCALL_MEMORY_OP};
use nvirt_hv::guest_console::{GuestConsole, Hypercall, ShutdownReason, decode};
use nvirt_hv::guest_memory::GuestMemory;
use nvirt_hv::memory_op::{self, GuestInfo};
use nvirt_hv::nv_frames::NvFrames;
use nvirt_hypercall_abi::host::{Caller, Limits, Registers, Resume};
use nvirt_hypercall_abi::{DomId, E820Entry, ExtentOrder, XenPfn};

use super::console;
use super::hypervisor::Size;
use super::mem::IdentityMemory;
use super::vcpu::{Exit, GuestSpec, Reg, Vcpu};
use crate::hvprintln;

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
    hvprintln!(
        "starting the guest under {} ({} of guest-physical address space, entry {:#x})",
        vcpu.name(),
        Size(spec.memory_size),
        spec.start.rip
    );
    // The tables were just built: drop any translation cached for them.
    vcpu.invalidate_nested();
    let mut e820 = [E820Entry::default(); MAP_MAX];
    let n = memory_op::e820_of(&layout.map, &mut e820);
    let limits = Limits::new(XenPfn::new(layout.map.end().div_ceil(4096)))
        .max_order(ExtentOrder::PAGE_1G)
        .batch(BATCH.try_into().unwrap_or(core::num::NonZeroU32::MIN));
    let mut console = GuestConsole::new();
    let forward = |line: &str| {
        let _ = writeln!(console::Console, "guest: {line}");
    };
    let mut buffer = [0u8; 4096];
    let mut calls = 0u64;
    for _ in 0..EXIT_LIMIT {
        let exit = match vcpu.run() {
            Ok(exit) => exit,
            Err(e) => {
                hvprintln!("guest could not run: {e}");
                return Ended::default();
            }
        };
        match exit {
            Exit::Hypercall if vcpu.reg(Reg::Rax) == HYPERCALL_MEMORY_OP => {
                let (mode, cpl) = vcpu.caller_state();
                let Some(caller) = Caller::new(DOMAIN, mode, cpl) else {
                    hvprintln!("domain {DOMAIN} is not an ordinary domain");
                    return Ended::default();
                };
                let info = GuestInfo {
                    caller,
                    limits,
                    e820: &e820[..n],
                    max_pages: initial_pages,
                    max_ram_page,
                };
                let mut regs = Registers {
                    rax: vcpu.reg(Reg::Rax),
                    rdi: vcpu.reg(Reg::Rdi),
                    rsi: vcpu.reg(Reg::Rsi),
                    rdx: vcpu.reg(Reg::Rdx),
                    r10: vcpu.reg(Reg::R10),
                    r8: vcpu.reg(Reg::R8),
                };
                let served = match memory_op::serve(guest, &regs, &info) {
                    Ok(s) => s,
                    Err(fatal) => {
                        console.flush(forward);
                        hvprintln!("memory_op broke the hypervisor's state: {fatal}");
                        return Ended::default();
                    }
                };
                calls += 1;
                hvprintln!("memory_op: {served}");
                let resume = served.outcome.apply(&mut regs);
                vcpu.set_reg(Reg::Rax, regs.rax);
                vcpu.set_reg(Reg::Rdi, regs.rdi);
                // What the change asks for, before the guest runs again;
                // then the retired tables can go (one CPU: nothing walks
                // them in between).
                if guest.take_invalidation().is_needed() {
                    vcpu.invalidate_nested();
                    guest.reclaim_tables();
                }
                match resume {
                    Resume::Next => vcpu.skip_instruction(),
                    Resume::Again => {}
                    Resume::Inject(fault) => vcpu.inject_exception(fault.vector()),
                }
            }
            Exit::Hypercall => {
                let call = decode(
                    vcpu.reg(Reg::Rax),
                    vcpu.reg(Reg::Rdi),
                    vcpu.reg(Reg::Rsi),
                    vcpu.reg(Reg::Rdx),
                );
                let result = match call {
                    Ok(Hypercall::ConsoleWrite { gpa, len }) => {
                        let out = &mut buffer[..len as usize];
                        match guest.read(gpa, out) {
                            Ok(()) => {
                                console.push(out, forward);
                                0
                            }
                            Err(_) => -EFAULT,
                        }
                    }
                    Ok(Hypercall::Shutdown { arg_gpa }) => {
                        let mut reason = [0u8; 4];
                        match guest.read(arg_gpa, &mut reason) {
                            Ok(()) => {
                                console.flush(forward);
                                let reason = ShutdownReason::from(u32::from_le_bytes(reason));
                                hvprintln!("guest shut down: {reason}");
                                let powered_off = reason == ShutdownReason::Poweroff;
                                return Ended {
                                    passed: finish(guest, calls) && powered_off && console.passed(),
                                    powered_off,
                                };
                            }
                            Err(_) => -EFAULT,
                        }
                    }
                    Err(errno) => errno,
                };
                vcpu.set_reg(Reg::Rax, result as u64);
                vcpu.skip_instruction();
            }
            Exit::Halt => {
                console.flush(forward);
                hvprintln!(
                    "guest halted at {:#x} without shutting down",
                    vcpu.reg(Reg::Rip)
                );
                return Ended::default();
            }
            Exit::NestedFault { gpa, info } => {
                console.flush(forward);
                let backed = guest.check(gpa & !0xfff, 1).is_ok();
                hvprintln!(
                    "guest touched guest-physical {gpa:#x} ({}; qualification {info:#x}) at rip {:#x}",
                    if backed { "backed" } else { "not backed" },
                    vcpu.reg(Reg::Rip)
                );
                return Ended::default();
            }
            other => {
                console.flush(forward);
                hvprintln!("guest stopped: {other:x?} at rip {:#x}", vcpu.reg(Reg::Rip));
                return Ended::default();
            }
        }
    }
    hvprintln!("guest made more than {EXIT_LIMIT} exits; stopping it");
    Ended::default()
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
