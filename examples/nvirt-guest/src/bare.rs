//! The guest on the (virtual) machine.

use core::arch::{asm, global_asm};
use core::fmt::{self, Write};

use nvirt_e820::{Kind, MemoryMap, pvh};
use nvirt_guest::{TestKind, pattern, test_ranges};
use nvirt_hv::bootinfo::PVH_MAGIC;
use nvirt_hv::guest_abi::{
    CONSOLEIO_WRITE, HYPERCALL_CONSOLE_IO, HYPERCALL_SCHED_OP, MEMMAP_MAX, SCHEDOP_SHUTDOWN,
    SHUTDOWN_CRASH, SHUTDOWN_POWEROFF,
};

// The image header the hypervisor checks (layout in
// `nvirt_hv::guest_abi::ImageHeader`), then the entry: a stack of our own,
// the start info as the first argument.
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
const SEED: u64 = 0x006e_7669_7274_0001;

/// Whether the CPU is AMD (VMMCALL) rather than Intel (VMCALL).
fn is_amd() -> bool {
    // CPUID leaf 0, EBX = "Auth" for "AuthenticAMD".
    core::arch::x86_64::__cpuid(0).ebx == 0x6874_7541
}

/// A hypercall with three arguments, Xen's register convention.
fn hypercall(amd: bool, number: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let ret: u64;
    if amd {
        // SAFETY: VMMCALL traps to the hypervisor, which reads the
        // arguments (and the memory they point at) and sets RAX only.
        unsafe {
            asm!("vmmcall", inout("rax") number => ret, in("rdi") a1, in("rsi") a2, in("rdx") a3, options(nostack))
        };
    } else {
        // SAFETY: as above, with VMCALL.
        unsafe {
            asm!("vmcall", inout("rax") number => ret, in("rdi") a1, in("rsi") a2, in("rdx") a3, options(nostack))
        };
    }
    ret as i64
}

/// The console: every `write_str` is one `console_io` call.
struct Console {
    amd: bool,
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for chunk in s.as_bytes().chunks(4096) {
            let r = hypercall(
                self.amd,
                HYPERCALL_CONSOLE_IO,
                CONSOLEIO_WRITE,
                chunk.len() as u64,
                chunk.as_ptr() as u64,
            );
            if r < 0 {
                return Err(fmt::Error);
            }
        }
        Ok(())
    }
}

fn shutdown(amd: bool, reason: u32) -> ! {
    let arg = reason;
    loop {
        hypercall(
            amd,
            HYPERCALL_SCHED_OP,
            SCHEDOP_SHUTDOWN,
            &raw const arg as u64,
            0,
        );
        // SAFETY: nothing is left to do; HLT exits to the hypervisor.
        unsafe { asm!("hlt", options(nomem, nostack)) };
    }
}

/// Reads guest-physical memory (identity mapped) as bytes.
fn read_phys(addr: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        // SAFETY: the hypervisor's identity tables map every address of the
        // guest map; the start info and map lie in low RAM it wrote.
        *b = unsafe {
            core::ptr::with_exposed_provenance::<u8>((addr + i as u64) as usize).read_volatile()
        };
    }
}

/// Writes the pattern over `range`, then checks it; returns the first
/// mismatch (address, expected, found).
fn test_range(range: &core::ops::Range<u64>) -> Option<(u64, u64, u64)> {
    let mut addr = range.start;
    while addr < range.end {
        let p = core::ptr::with_exposed_provenance_mut::<u64>(addr as usize);
        // SAFETY: `range` is RAM or NVRAM of the guest map above the image,
        // identity mapped, used by nothing else.
        unsafe { p.write_volatile(pattern(addr, SEED)) };
        addr += 8;
    }
    let mut addr = range.start;
    while addr < range.end {
        let p = core::ptr::with_exposed_provenance::<u64>(addr as usize);
        // SAFETY: as above.
        let found = unsafe { p.read_volatile() };
        let expected = pattern(addr, SEED);
        if found != expected {
            return Some((addr, expected, found));
        }
        addr += 8;
    }
    None
}

#[unsafe(no_mangle)]
extern "C" fn nvirt_guest_main(start_info: u64) -> ! {
    let amd = is_amd();
    let mut out = Console { amd };
    let _ = writeln!(
        out,
        "nvirt-guest: running in 64-bit mode, hypercalls by {}",
        if amd { "VMMCALL" } else { "VMCALL" }
    );
    let (mut passed, mut failed) = (0u32, 0u32);
    let mut check = |out: &mut Console, ok: bool, what: fmt::Arguments<'_>| {
        let _ = writeln!(out, "{} {}", if ok { "ok:" } else { "FAILED:" }, what);
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
    };

    let mut head = [0u8; 56];
    read_phys(start_info, &mut head);
    let u32_at =
        |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let magic = u32_at(0);
    let entries = (u32_at(48) as usize).min(MEMMAP_MAX);
    let memmap = u64::from_le_bytes(head[40..48].try_into().unwrap_or([0; 8]));
    check(
        &mut out,
        magic == PVH_MAGIC && u32_at(4) >= 1,
        format_args!(
            "start info at {start_info:#x}: magic {magic:#x}, version {}",
            u32_at(4)
        ),
    );
    let mut raw = [0u8; MEMMAP_MAX * 24];
    read_phys(memmap, &mut raw[..entries * 24]);
    let map = pvh::read(&raw[..entries * 24], entries)
        .map_err(|_| ())
        .and_then(|e| MemoryMap::<MEMMAP_MAX>::from_firmware(e).map_err(|_| ()));
    let map = match map {
        Ok(map) => map,
        Err(()) => {
            check(
                &mut out,
                false,
                format_args!("memory map of {entries} entries readable"),
            );
            let _ = writeln!(out, "FAIL");
            shutdown(amd, SHUTDOWN_CRASH)
        }
    };
    let _ = writeln!(out, "memory map ({entries} entries):");
    for e in map.iter() {
        let _ = writeln!(out, "  {e}");
    }
    let ram = map.total(Kind::Ram);
    let nvram = map.total_nonvolatile();
    check(
        &mut out,
        ram >= 2 << 20,
        format_args!("RAM in the map: {} MiB", ram >> 20),
    );
    let _ = writeln!(out, "NVRAM in the map: {} MiB", nvram >> 20);

    let image_end = (&raw const __bss_end) as u64;
    let mut tested = 0u64;
    for (kind, range) in test_ranges(&map, image_end) {
        let what = match kind {
            TestKind::Ram => "RAM",
            TestKind::Nvram(_) => "NVRAM",
        };
        let result = test_range(&range);
        tested += range.end - range.start;
        match result {
            None => check(
                &mut out,
                true,
                format_args!(
                    "{what} [mem {:#x}-{:#x}]: {} KiB written and verified",
                    range.start,
                    range.end - 1,
                    (range.end - range.start) >> 10
                ),
            ),
            Some((addr, expected, found)) => check(
                &mut out,
                false,
                format_args!(
                    "{what} [mem {:#x}-{:#x}]: at {addr:#x} expected {expected:#x} found {found:#x}",
                    range.start,
                    range.end - 1
                ),
            ),
        }
    }
    check(
        &mut out,
        tested > 0,
        format_args!("{} KiB of memory tested in all", tested >> 10),
    );
    let _ = writeln!(out, "checks: {passed} passed, {failed} failed");
    if failed == 0 {
        let _ = writeln!(out, "PASS");
        shutdown(amd, SHUTDOWN_POWEROFF)
    } else {
        let _ = writeln!(out, "FAIL");
        shutdown(amd, SHUTDOWN_CRASH)
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let amd = is_amd();
    let _ = writeln!(Console { amd }, "guest panic: {info}\nFAIL");
    shutdown(amd, SHUTDOWN_CRASH)
}
