//! The image's boot headers and its path from 32-bit protected mode to
//! 64-bit long mode.
//!
//! Three boot protocols, one entry path:
//! - Multiboot2 (GRUB's `multiboot2`): EAX = `0x36d76289`, EBX = boot
//!   information; the ELF entry point is used.
//! - Multiboot1 (QEMU `-kernel`): EAX = `0x2badb002`, EBX = boot information.
//!   The header carries address fields (flag bit 16) because QEMU refuses to
//!   load an ELF64 through Multiboot1 without them.
//! - PVH (Xen ELF note `XEN_ELFNOTE_PHYS32_ENTRY`, type 18): EBX =
//!   `hvm_start_info`; EAX is unspecified, so the PVH entry sets it to the
//!   start-info magic `0x336ec578` before joining the common path.
//!
//! All three enter in 32-bit protected mode with paging off. The common path
//! zeroes `.bss`, builds identity page tables for the first 64 GiB with
//! 2 MiB pages (the NVDIMM that QEMU places at 4 GiB must be reachable),
//! enables PAE, EFER.LME and paging, loads a 64-bit GDT and calls
//! [`nvirt_main`](crate::nvirt_main) with the magic and the boot-information
//! address.
//!
//! Memory it uses, all in `.bss` (so never inside what an allocator hands
//! out): one PML4, one PDPT and 64 page directories (264 KiB), and a
//! 256 KiB stack.

use core::arch::global_asm;

/// Bytes of the hypervisor's stack.
const STACK_SIZE: usize = 256 * 1024;

/// GiB covered by the boot identity map.
pub(crate) const IDENTITY_MAP_GIB: u64 = 64;

// Selectors of the GDT below.
/// 64-bit code segment.
pub(crate) const CODE_SELECTOR: u16 = 0x08;
/// Data segment (DS, ES, SS, FS, GS).
pub(crate) const DATA_SELECTOR: u16 = 0x10;
/// The task-state segment descriptor (16 bytes), filled in by [`crate::hw::cpu`].
pub(crate) const TSS_SELECTOR: u16 = 0x18;

// Multiboot1: magic 0x1BADB002, flags = page-align modules (bit 0) | memory
// map (bit 1) | address fields valid (bit 16).
// Multiboot2: magic 0xE85250D6, architecture 0 (i386 protected mode); tags:
// information request (1, 3, 6, 14, 15), module alignment, end.
// PVH: Xen ELF note type 18 with the 32-bit physical entry address.
global_asm!(
    r#"
    .section .multiboot2, "a"
    .balign 8
nvirt_mb2_header:
    .long 0xE85250D6
    .long 0
    .long nvirt_mb2_header_end - nvirt_mb2_header
    .long 0x100000000 - (0xE85250D6 + 0 + (nvirt_mb2_header_end - nvirt_mb2_header))
    .balign 8
    /* information request: command line, modules, memory map, ACPI RSDPs */
    .short 1
    .short 0
    .long 4 * 2 + 4 * 5
    .long 1, 3, 6, 14, 15
    .balign 8
    /* modules page aligned */
    .short 6
    .short 0
    .long 8
    .balign 8
    /* end */
    .short 0
    .short 0
    .long 8
nvirt_mb2_header_end:

    .section .multiboot1, "a"
    .balign 4
nvirt_mb1_header:
    .long 0x1BADB002
    .long 0x00010003
    .long 0x100000000 - (0x1BADB002 + 0x00010003)
    .long nvirt_mb1_header
    .long __image_start
    .long __load_end
    .long __bss_end
    .long nvirt_entry32

    .section .note.Xen, "a"
    .balign 4
    .long 4
    .long 4
    .long 18
    .asciz "Xen"
    .balign 4
    .long nvirt_pvh_entry32
    .balign 4

    .section .boot.text, "ax"
    .code32
    .global nvirt_pvh_entry32
nvirt_pvh_entry32:
    mov $0x336ec578, %eax
    jmp 1f

    .global nvirt_entry32
nvirt_entry32:
1:
    cli
    cld
    mov %eax, %ebp
    mov $nvirt_stack_top, %esp

    /* Zero .bss: Multiboot1 loaders must, PVH and GRUB's ELF loader do,
       but nothing below depends on it. */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    shr $2, %ecx
    xor %eax, %eax
    rep stosl

    /* PML4[0] -> PDPT */
    mov $nvirt_boot_pdpt, %eax
    or $3, %eax
    mov %eax, nvirt_boot_pml4

    /* PDPT[i] -> PD i, for each GiB */
    mov $nvirt_boot_pds, %eax
    or $3, %eax
    xor %ecx, %ecx
2:
    mov %eax, nvirt_boot_pdpt(,%ecx,8)
    add $4096, %eax
    inc %ecx
    cmp ${gib}, %ecx
    jb 2b

    /* PD entries: 2 MiB pages, present | writable | large */
    xor %ecx, %ecx
3:
    mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, nvirt_boot_pds(,%ecx,8)
    mov %ecx, %edx
    shr $11, %edx
    mov %edx, nvirt_boot_pds + 4(,%ecx,8)
    inc %ecx
    cmp ${gib} * 512, %ecx
    jb 3b

    /* CR4.PAE */
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $nvirt_boot_pml4, %eax
    mov %eax, %cr3
    /* EFER.LME */
    mov $0xC0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    /* CR0: PG | WP | NE | PE, caches on */
    mov %cr0, %eax
    and $0x9FFFFFFF, %eax
    or $0x80010021, %eax
    mov %eax, %cr0

    lgdt nvirt_gdt_pointer
    ljmp ${code}, $4f

    .code64
4:
    mov ${data}, %eax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    mov $nvirt_stack_top, %rsp
    mov %ebp, %edi
    mov %ebx, %esi
    call nvirt_main
5:
    cli
    hlt
    jmp 5b

    .section .data.nvirt_gdt, "aw"
    .balign 16
    .global nvirt_gdt
nvirt_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF
    .quad 0x00CF92000000FFFF
    .quad 0
    .quad 0
nvirt_gdt_end:
    .balign 8
    .global nvirt_gdt_pointer
nvirt_gdt_pointer:
    .short nvirt_gdt_end - nvirt_gdt - 1
    .quad nvirt_gdt

    .section .bss.nvirt_boot, "aw", @nobits
    .balign 4096
nvirt_boot_pml4:
    .skip 4096
nvirt_boot_pdpt:
    .skip 4096
nvirt_boot_pds:
    .skip 4096 * {gib}
    .balign 16
nvirt_stack_bottom:
    .skip {stack}
    .global nvirt_stack_top
nvirt_stack_top:
    .text
"#,
    gib = const IDENTITY_MAP_GIB,
    stack = const STACK_SIZE,
    code = const CODE_SELECTOR,
    data = const DATA_SELECTOR,
    options(att_syntax)
);
