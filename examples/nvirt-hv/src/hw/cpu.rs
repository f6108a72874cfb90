//! The hypervisor's own descriptor tables: the task-state segment (VMX needs
//! a non-null host TR) and an IDT whose every exception prints the vector,
//! error code and RIP and stops the emulator with failure.

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::ptr::addr_of;

use super::boot::{CODE_SELECTOR, TSS_SELECTOR};
use super::console;
use super::console::hvprintln;

/// Number of exception vectors handled (0–31).
const EXCEPTIONS: usize = 32;

/// A 64-bit task-state segment (Intel SDM Vol. 3A §8.7): only its size
/// matters here; no privilege change or IST is used.
#[repr(C, packed(4))]
struct Tss {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
}

/// One 64-bit interrupt gate.
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

/// A cell for boot-time tables that are written once on the boot CPU before
/// anything reads them (the hypervisor runs on one CPU with interrupts off).
struct BootCell<T>(UnsafeCell<T>);

// SAFETY: written only by `init`, on the only CPU, before the tables are
// loaded; afterwards only the CPU reads them.
unsafe impl<T> Sync for BootCell<T> {}

static TSS: BootCell<Tss> = BootCell(UnsafeCell::new(Tss {
    reserved0: 0,
    rsp: [0; 3],
    reserved1: 0,
    ist: [0; 7],
    reserved2: 0,
    reserved3: 0,
    iomap_base: size_of::<Tss>() as u16,
}));

static IDT: BootCell<[Gate; EXCEPTIONS]> = BootCell(UnsafeCell::new(
    [Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        attributes: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    }; EXCEPTIONS],
));

unsafe extern "C" {
    /// The GDT built by the boot code (five 8-byte slots; 3 and 4 are the TSS).
    static mut nvirt_gdt: [u64; 5];
    /// Entry stubs of the 32 exception vectors.
    static nvirt_isr_table: [u64; EXCEPTIONS];
}

/// The registers the exception stubs save, in stack order.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct ExceptionFrame {
    rax: u64,
    rbx: u64,
    rcx: u64,
    rdx: u64,
    rsi: u64,
    rdi: u64,
    rbp: u64,
    r8: u64,
    r9: u64,
    r10: u64,
    r11: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// Installs the TSS and the IDT. Called once, first thing in 64-bit mode.
pub(crate) fn init() {
    let tss = TSS.0.get() as u64;
    let limit = (size_of::<Tss>() - 1) as u64;
    // Available 64-bit TSS (type 9), present.
    let low = (limit & 0xffff)
        | (tss & 0xff_ffff) << 16
        | 0x89 << 40
        | (limit >> 16 & 0xf) << 48
        | (tss >> 24 & 0xff) << 56;
    let high = tss >> 32;
    let gdt = addr_of!(nvirt_gdt).cast_mut().cast::<u64>();
    // SAFETY: slots 3 and 4 of the boot GDT are reserved for this descriptor
    // and nothing has loaded TR yet.
    unsafe { gdt.wrapping_add(3).write_volatile(low) };
    // SAFETY: as above.
    unsafe { gdt.wrapping_add(4).write_volatile(high) };
    // SAFETY: the descriptor just written is a valid available TSS.
    unsafe { asm!("ltr {0:x}", in(reg) TSS_SELECTOR, options(nostack, preserves_flags)) };

    let idt = IDT.0.get();
    for vector in 0..EXCEPTIONS {
        // SAFETY: the table is defined in the assembly below with one entry
        // per vector.
        let stub = unsafe {
            addr_of!(nvirt_isr_table)
                .cast::<u64>()
                .wrapping_add(vector)
                .read()
        };
        let gate = Gate {
            offset_low: stub as u16,
            selector: CODE_SELECTOR,
            ist: 0,
            attributes: 0x8e,
            offset_mid: (stub >> 16) as u16,
            offset_high: (stub >> 32) as u32,
            reserved: 0,
        };
        // SAFETY: `vector < EXCEPTIONS`; the IDT is not loaded yet.
        unsafe { idt.cast::<Gate>().wrapping_add(vector).write(gate) };
    }
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let pointer = Pointer {
        limit: (size_of::<[Gate; EXCEPTIONS]>() - 1) as u16,
        base: idt as u64,
    };
    // SAFETY: the IDT is complete and lives for the whole run.
    unsafe {
        asm!("lidt [{}]", in(reg) &raw const pointer, options(readonly, nostack, preserves_flags))
    };
}

/// The GDT's base and limit, for the VMX host-state fields.
pub(crate) fn gdtr() -> (u64, u16) {
    let mut pointer = [0u8; 10];
    // SAFETY: `sgdt` stores 10 bytes into the buffer.
    unsafe { asm!("sgdt [{}]", in(reg) pointer.as_mut_ptr(), options(nostack, preserves_flags)) };
    let limit = u16::from_le_bytes([pointer[0], pointer[1]]);
    let mut base = [0u8; 8];
    base.copy_from_slice(&pointer[2..10]);
    (u64::from_le_bytes(base), limit)
}

/// The IDT's base and limit, for the VMX host-state fields.
pub(crate) fn idtr() -> (u64, u16) {
    let mut pointer = [0u8; 10];
    // SAFETY: `sidt` stores 10 bytes into the buffer.
    unsafe { asm!("sidt [{}]", in(reg) pointer.as_mut_ptr(), options(nostack, preserves_flags)) };
    let limit = u16::from_le_bytes([pointer[0], pointer[1]]);
    let mut base = [0u8; 8];
    base.copy_from_slice(&pointer[2..10]);
    (u64::from_le_bytes(base), limit)
}

/// The TSS's base address, for the VMX host-state fields.
pub(crate) fn tss_base() -> u64 {
    TSS.0.get() as u64
}

/// Called by the stubs: reports the exception and stops with failure.
#[unsafe(no_mangle)]
extern "C" fn nvirt_exception(frame: &ExceptionFrame) -> ! {
    hvprintln!(
        "EXCEPTION vector {} error {:#x} rip {:#x} rsp {:#x} cr2 {:#x}",
        frame.vector,
        frame.error,
        frame.rip,
        frame.rsp,
        super::io::cr2()
    );
    hvprintln!("{frame:x?}");
    console::exit(false)
}

// Stubs: vectors that push no error code push a zero so every frame has the
// same shape; then the general registers; then the handler gets a pointer.
global_asm!(
    r#"
    .macro NVIRT_ISR_NOERR n
    nvirt_isr_\n:
        push $0
        push $\n
        jmp nvirt_isr_common
    .endm
    .macro NVIRT_ISR_ERR n
    nvirt_isr_\n:
        push $\n
        jmp nvirt_isr_common
    .endm

    .text
    .irp n, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
    NVIRT_ISR_NOERR \n
    .endr
    .irp n, 8,10,11,12,13,14,17,21,29,30
    NVIRT_ISR_ERR \n
    .endr

nvirt_isr_common:
    push %r15
    push %r14
    push %r13
    push %r12
    push %r11
    push %r10
    push %r9
    push %r8
    push %rbp
    push %rdi
    push %rsi
    push %rdx
    push %rcx
    push %rbx
    push %rax
    mov %rsp, %rdi
    and $-16, %rsp
    call nvirt_exception
    ud2

    .section .rodata.nvirt_isr_table, "a"
    .balign 8
    .global nvirt_isr_table
nvirt_isr_table:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad nvirt_isr_\n
    .endr
    .text
"#,
    options(att_syntax)
);
