//! The guest on the (virtual) machine: entry, console, the start info, and
//! the order of the checks ([`memory`], [`balloon`], [`errors`]).

mod balloon;
mod crashloop;
mod discovery;
mod errors;
mod memory;
mod paging;
mod vmtest;

use core::arch::{asm, global_asm};
use core::fmt::{self, Write};
use core::mem::size_of;
use core::ops::Range;

use nvirt_e820::{MemoryMap, pvh};
use nvirt_guest::vmtest::{Role, role_of};
use nvirt_guest::{PAGE, check_sizes, stride_for, test_ranges};
use nvirt_hypercall_abi::guest::{HypercallInsn, MemoryOps, Vmcall};
use nvirt_hypercall_abi::protocol::{
    self, CMDLINE_MAX, GuestParams, MEMMAP_MAX, MemmapEntry, ShutdownReason, StartInfo,
};
use nvirt_hypercall_abi::{E820Entry, HYPERVISOR_MEMORY_OP};
use zerocopy::FromBytes;

// The image header the hypervisor checks (layout in
// `nvirt_hypercall_abi::protocol::RawImageHeader`), then the entry: a stack
// of our own, the start info as the first argument.
global_asm!(
    r#"
    .section .nvirt_header, "a"
    .ascii "NVGUEST1"
    .long 48
    .long 1
    .quad __image_start
    .quad __file_len
    .quad __mem_len
    .quad nvirt_guest_entry

    .section .text.entry, "ax"
    .global nvirt_guest_entry
nvirt_guest_entry:
    lea rsp, [rip + nvirt_guest_stack_top]
    mov rdi, rbx
    call nvirt_guest_main
    ud2

    .section .bss.nvirt_guest_stack, "aw", @nobits
    .balign 16
    .skip 65536
nvirt_guest_stack_top:
    .text
"#
);

unsafe extern "C" {
    static __bss_end: u8;
}

/// Seeds the pattern; any value works, this one spells "nvirt".
pub(crate) const SEED: u64 = 0x006e_7669_7274_0001;

/// The typed `memory_op` calls of `nvirt-hypercall-abi`.
pub(crate) type Hv = MemoryOps<Vmcall>;

/// The hypercall transport: through the hypercall page once it is
/// installed ([`discovery`]), every address passed the guest-virtual
/// alias of the identity-mapped memory ([`paging`]).
pub(crate) fn transport(insn: HypercallInsn) -> Vmcall {
    match discovery::page() {
        // SAFETY: as below; the page holds the hypervisor's stubs, written
        // when `discovery::install` wrote the MSR, identity mapped and
        // executable (the guest's tables set no NX bit).
        Some(page) => unsafe { Vmcall::through_page(insn, page, paging::to_virtual) },
        // SAFETY: `to_virtual` maps each address to its alias, which the
        // guest's own tables map to the same guest-physical memory,
        // contiguous as far as the identity map is; nvirt-hv reads
        // hypercall addresses as guest-virtual (as Xen does) and follows
        // the memory_op ABI and the protocol.
        None => unsafe { Vmcall::new(insn, paging::to_virtual) },
    }
}

/// The guest-virtual address the hypervisor is given for memory at `p`.
pub(crate) fn virt<T>(p: *const T) -> u64 {
    paging::to_virtual(p.expose_provenance())
}

/// A hypercall with three raw arguments, Xen's register convention; RAX
/// back.
pub(crate) fn hypercall(insn: HypercallInsn, number: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    // SAFETY: the calls made this way are the malformed ones of `errors`:
    // what their arguments point at is either memory of this guest that it
    // lends for the call (argument structures and arrays on its stack,
    // balloon windows it does not use meanwhile) or no guest memory at all.
    unsafe { transport(insn).raw(number, a1, a2, a3) }
}

/// `memory_op(cmd, arg)` with raw values, for the calls the typed API
/// cannot express (malformed ones).
pub(crate) fn memory_op_raw(insn: HypercallInsn, cmd: u64, arg: u64) -> u64 {
    hypercall(insn, HYPERVISOR_MEMORY_OP, cmd, arg, 0)
}

/// The console: `console_io` calls through the protocol's writer.
pub(crate) type Console = protocol::Console<Vmcall>;

/// Counts checks and prints one line for each.
pub(crate) struct Checks {
    pub(crate) out: Console,
    passed: u32,
    failed: u32,
}

impl Checks {
    /// Reports one check.
    pub(crate) fn check(&mut self, ok: bool, what: fmt::Arguments<'_>) -> bool {
        let _ = writeln!(self.out, "{} {}", if ok { "ok:" } else { "FAILED:" }, what);
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
        ok
    }

    /// A line that is not a check.
    pub(crate) fn note(&mut self, what: fmt::Arguments<'_>) {
        let _ = writeln!(self.out, "{what}");
    }
}

fn shutdown(insn: HypercallInsn, reason: ShutdownReason) -> ! {
    loop {
        // Returns only if the hypervisor refused: halt then.
        let _ = protocol::shutdown(&mut transport(insn), reason);
        // SAFETY: nothing is left to do; HLT exits to the hypervisor.
        unsafe { asm!("hlt", options(nomem, nostack)) };
    }
}

/// Reads guest-physical memory (identity mapped) as bytes.
fn read_phys(addr: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        // SAFETY: the hypervisor's identity tables map every address of the
        // guest map; the start info, map and command line lie in low RAM
        // it wrote.
        *b = unsafe {
            core::ptr::with_exposed_provenance::<u8>((addr + i as u64) as usize).read_volatile()
        };
    }
}

/// What the start info says: the map and the command line's parameters.
struct Boot {
    map: MemoryMap<MEMMAP_MAX>,
    params: Option<GuestParams>,
    /// Operations of the crash-loop workload, if it runs instead of the
    /// checks.
    crash_loop: Option<u64>,
    /// Its part in a multi-VM test, if it has one.
    role: Option<Result<Role, FixedWord>>,
}

/// An unknown role's name, kept for the report (truncated).
#[derive(Clone, Copy, Debug)]
struct FixedWord([u8; 32], usize);

impl FixedWord {
    fn new(text: &str) -> Self {
        let mut bytes = [0u8; 32];
        let n = text.len().min(32);
        bytes[..n].copy_from_slice(&text.as_bytes()[..n]);
        Self(bytes, n)
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.0[..self.1]).unwrap_or("?")
    }
}

fn read_start_info(c: &mut Checks, start_info: u64) -> Option<Boot> {
    let mut head = [0u8; size_of::<StartInfo>()];
    read_phys(start_info, &mut head);
    let info = StartInfo::read_from_bytes(&head).ok()?;
    if !c.check(
        info.check(),
        format_args!(
            "start info at {start_info:#x}: magic {:#x}, version {}",
            info.magic(),
            info.version()
        ),
    ) {
        // Its addresses mean nothing: following them could fault.
        return None;
    }
    let stated = info.memmap_entries() as usize;
    if !c.check(
        stated <= MEMMAP_MAX,
        format_args!("start info map of {stated} entries fits the guest's {MEMMAP_MAX}"),
    ) {
        return None;
    }
    let entries = stated;
    let len = entries * size_of::<MemmapEntry>();
    let mut raw = [0u8; MEMMAP_MAX * size_of::<MemmapEntry>()];
    read_phys(info.memmap_paddr(), &mut raw[..len]);
    let map = pvh::read(&raw[..len], entries)
        .ok()
        .and_then(|e| MemoryMap::<MEMMAP_MAX>::from_firmware(e).ok());
    if !c.check(
        map.is_some(),
        format_args!("memory map in the start info: {entries} entries"),
    ) {
        return None;
    }
    let mut text = [0u8; CMDLINE_MAX];
    let at = info.cmdline_paddr();
    if at != 0 {
        read_phys(at, &mut text);
    }
    let len = text.iter().position(|&b| b == 0).unwrap_or(0);
    let cmdline = core::str::from_utf8(&text[..len]).unwrap_or("");
    let params = GuestParams::parse(cmdline);
    let crash_loop = nvirt_guest::crashloop::ops_of(cmdline);
    let role = role_of(cmdline).map(|r| r.map_err(FixedWord::new));
    c.check(
        params.is_some(),
        format_args!("command line {cmdline:?} names the configured memory"),
    );
    map.map(|map| Boot {
        map,
        params,
        crash_loop,
        role,
    })
}

/// The map through `XENMEM_memory_map`, checked against the start info's.
fn map_by_hypercall(c: &mut Checks, hv: &mut Hv, boot: &MemoryMap<MEMMAP_MAX>) {
    // One entry of room more than the start info may hold, so a map the
    // hypervisor cut short to fit cannot pass for the same map.
    let mut buffer = [E820Entry::default(); MEMMAP_MAX + 1];
    match hv.memory_map(&mut buffer) {
        Ok(n) => {
            let same = n == boot.len()
                && buffer[..n].iter().zip(boot.iter()).all(|(h, b)| {
                    h.addr() == b.start() && h.size() == b.size() && h.kind() == b.kind().raw()
                });
            c.check(
                same,
                format_args!(
                    "XENMEM_memory_map: {n} entries, the same as the start info's {}",
                    boot.len()
                ),
            );
        }
        Err(e) => {
            c.check(false, format_args!("XENMEM_memory_map: {e}"));
        }
    }
}

#[unsafe(no_mangle)]
extern "C" fn nvirt_guest_main(start_info: u64) -> ! {
    let insn = HypercallInsn::detect();
    // Before the first hypercall: every call names memory by its alias and
    // goes through the hypercall page.
    let alias = paging::install_alias();
    let xen = discovery::install();
    let mut c = Checks {
        out: Console::new(transport(insn)),
        passed: 0,
        failed: 0,
    };
    c.note(format_args!(
        "nvirt-guest: running in 64-bit mode, hypercalls by {}",
        match insn {
            HypercallInsn::Vmmcall => "VMMCALL",
            HypercallInsn::Vmcall => "VMCALL",
        }
    ));
    match xen {
        Some(x) => {
            c.check(
                x.hypercall_pages == 1 && transport(insn).uses_page(),
                format_args!(
                    "CPUID {:#x}: \"XenVMMXenVMM\", Xen {}.{}, hypercall page through MSR {:#x}; every call from here on goes through it",
                    x.base, x.version.0, x.version.1, x.hypercall_msr
                ),
            );
        }
        None => {
            c.check(
                false,
                format_args!("no Xen signature in the CPUID leaves from 0x40000000"),
            );
        }
    }
    c.check(
        alias,
        format_args!(
            "memory aliased at {:#x}: hypercall addresses are guest-virtual, never guest-physical",
            paging::ALIAS_BASE
        ),
    );
    let mut hv = MemoryOps::new(transport(insn));

    if let Some(boot) = read_start_info(&mut c, start_info) {
        c.note(format_args!("memory map ({} entries):", boot.map.len()));
        for e in boot.map.iter() {
            c.note(format_args!("  {e}"));
        }
        map_by_hypercall(&mut c, &mut hv, &boot.map);
        let nvram = match &boot.params {
            Some(p) => match check_sizes(&boot.map, p) {
                Ok(nv) => {
                    c.check(
                        true,
                        format_args!(
                            "map holds {} MiB of RAM and {} MiB of NVRAM of type {}, as configured",
                            p.ram >> 20,
                            p.nvram >> 20,
                            p.nv_type
                        ),
                    );
                    nv
                }
                Err(e) => {
                    c.check(false, format_args!("map against the configuration: {e}"));
                    None
                }
            },
            None => None,
        };
        // Ask for NVRAM only where the hypervisor says the flag is
        // honoured (real Xen would silently give RAM).
        let honoured = xen.is_some_and(|x| x.nvram);
        if nvram.is_some() {
            c.check(
                honoured,
                format_args!("the hypervisor honours the NVRAM flag (CPUID 0x40000004 EAX bit 31)"),
            );
        }
        let nvram = nvram.filter(|_| honoured);
        match (boot.crash_loop, boot.role, nvram) {
            (Some(ops), _, Some(nv)) => crashloop::run(&mut c, &mut hv, &nv, ops),
            (Some(_), _, None) => {
                c.check(false, format_args!("crashloop: the guest has no NVRAM"));
            }
            (None, Some(Ok(Role::SecretWrite)), Some(nv)) => vmtest::secret_write(&mut c, &nv),
            (None, Some(Ok(Role::SecretCheck)), Some(nv)) => vmtest::secret_check(&mut c, &nv),
            (None, Some(Ok(Role::Persist)), Some(nv)) => vmtest::persist(&mut c, &nv),
            (None, Some(Ok(Role::Follow)), Some(nv)) => vmtest::follow(&mut c, &mut hv, &nv),
            (
                None,
                Some(Ok(Role::SecretWrite | Role::SecretCheck | Role::Persist | Role::Follow)),
                None,
            ) => {
                c.check(false, format_args!("vmtest: the guest has no NVRAM"));
            }
            (None, Some(Ok(Role::Probe)), nvram) => {
                run_memory_checks(&mut c, &mut hv, insn, &boot.map, nvram);
                vmtest::probe(&mut c, boot.map.end());
            }
            (None, Some(Err(role)), _) => {
                c.check(
                    false,
                    format_args!("vmtest: unknown role {:?}", role.as_str()),
                );
            }
            (None, None, nvram) => run_memory_checks(&mut c, &mut hv, insn, &boot.map, nvram),
        }
    }
    let _ = writeln!(c.out, "checks: {} passed, {} failed", c.passed, c.failed);
    if c.failed == 0 && c.passed > 0 {
        let _ = writeln!(c.out, "PASS");
        shutdown(insn, ShutdownReason::Poweroff)
    } else {
        let _ = writeln!(c.out, "FAIL");
        shutdown(insn, ShutdownReason::Crash)
    }
}

/// The pattern over all memory, the balloon for both kinds, the malformed
/// calls, and the pattern again.
fn run_memory_checks(
    c: &mut Checks,
    hv: &mut Hv,
    insn: HypercallInsn,
    map: &MemoryMap<MEMMAP_MAX>,
    nvram: Option<Range<u64>>,
) {
    let image_end = ((&raw const __bss_end) as u64).div_ceil(PAGE) * PAGE;
    let mut ranges = [const { 0..0 }; MEMMAP_MAX];
    let mut n = 0;
    for (_, r) in test_ranges(map, image_end) {
        if let Some(slot) = ranges.get_mut(n) {
            *slot = r;
            n += 1;
        }
    }
    let ranges = &ranges[..n];
    let total: u64 = ranges.iter().map(|r| r.end - r.start).sum();
    let stride = stride_for(total);
    memory::write_all(c, ranges, stride, &[]);
    memory::verify_all(c, ranges, stride, &[], "written");

    let ctx = balloon::Context {
        map,
        ranges,
        stride,
        image_end,
    };
    balloon::run(c, hv, &ctx, false);
    if nvram.is_some() {
        balloon::run(c, hv, &ctx, true);
    }
    errors::run(c, hv, insn, map, nvram.as_ref());
    memory::verify_all(
        c,
        ranges,
        stride,
        &[],
        "after the balloon and the malformed calls",
    );
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let insn = HypercallInsn::detect();
    let _ = writeln!(Console::new(transport(insn)), "guest panic: {info}\nFAIL");
    shutdown(insn, ShutdownReason::Crash)
}
