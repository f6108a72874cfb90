//! The VMX instructions: the entry stub that swaps the guest's general
//! registers around VMLAUNCH / VMRESUME and its VM-exit landing point,
//! VMREAD / VMWRITE, and the instructions that take a physical address.

use core::arch::{asm, global_asm};

use super::super::vcpu::VmError;
use super::super::vcpu::{Gprs, load_gprs_from_rax, store_gprs_to_rax};
use super::fields;

unsafe extern "sysv64" {
    /// Loads the guest's registers from `gprs` and enters the guest
    /// (VMRESUME if `launched`, else VMLAUNCH). Returns 0 after a VM exit
    /// (registers stored back), 1 on VMfailInvalid, 2 on VMfailValid.
    pub(super) fn nvirt_vmx_run(gprs: *mut Gprs, launched: u64) -> u64;
}

// HOST_RSP is written just before entry so that the exit path finds the
// pointer to `gprs` on top of the stack; HOST_RIP is `nvirt_vmx_exit`.
// RFLAGS.IF is set for the entry instruction alone (its STI shadow
// covers it; a VM exit loads IF clear, and a failed entry clears it at
// once, CLI leaving CF and ZF as the entry set them). The guest's
// external-interrupt exiting makes IF irrelevant on a real CPU, but Bochs
// re-evaluates which pending interrupts the guest's controls unmask only
// when IF changes across the entry: a guest entered with IF equal to the
// host's would never see its time slice end.
global_asm!(
    concat!(
        r#"
    .text
    .global nvirt_vmx_run
nvirt_vmx_run:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    push rdi
    mov rax, {host_rsp}
    vmwrite rax, rsp
    mov rax, rdi
    cmp rsi, 0
    "#,
        load_gprs_from_rax!(),
        r#"
    mov rax, [rax]
    je 2f
    sti
    vmresume
    jmp 3f
2:
    sti
    vmlaunch
3:
    cli
    mov eax, 1
    jc 4f
    mov eax, 2
4:
    add rsp, 8
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret

    .global nvirt_vmx_exit
nvirt_vmx_exit:
    push rax
    mov rax, [rsp + 8]
    "#,
        store_gprs_to_rax!(),
        r#"
    pop rbx
    mov [rax], rbx
    add rsp, 8
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    xor eax, eax
    ret
"#
    ),
    host_rsp = const fields::HOST_RSP,
);

unsafe extern "C" {
    /// Where a VM exit lands (HOST_RIP).
    pub(super) fn nvirt_vmx_exit();
}

/// VMWRITE; the field's encoding is the error of a failed write.
pub(super) fn vmwrite(field: u64, value: u64) -> Result<(), VmError> {
    let failed: u8;
    // SAFETY: a current VMCS is loaded (VMPTRLD) before any field is written;
    // VMWRITE touches only the VMCS.
    unsafe {
        asm!("vmwrite {f}, {v}", "setna {r}", f = in(reg) field, v = in(reg) value, r = out(reg_byte) failed, options(nostack));
    }
    if failed != 0 {
        return Err(VmError::Instruction {
            what: "VMWRITE",
            error: field,
        });
    }
    Ok(())
}

/// VMREAD; 0 if the read fails.
pub(super) fn vmread(field: u64) -> u64 {
    let value: u64;
    // SAFETY: as for `vmwrite`; a failed read leaves 0, which callers treat
    // as an unknown value.
    unsafe {
        asm!("xor {v:e}, {v:e}", "vmread {v}, {f}", f = in(reg) field, v = out(reg) value, options(nostack));
    }
    value
}

/// Executes a VMX instruction on a 64-bit physical-address operand.
macro_rules! vmx_pa_instruction {
    ($name:literal, $pa:expr) => {{
        let pa: u64 = $pa;
        let failed: u8;
        // SAFETY: the operand is the physical address of a frame this
        // backend owns, prepared as the instruction requires.
        unsafe {
            core::arch::asm!(concat!($name, " [{p}]"), "setna {r}", p = in(reg) &raw const pa, r = out(reg_byte) failed, options(nostack));
        }
        if failed != 0 {
            Err(VmError::Instruction {
                what: $name,
                error: $crate::hw::vmx::entry::vmread($crate::hw::vmx::fields::VM_INSTRUCTION_ERROR),
            })
        } else {
            Ok(())
        }
    }};
}
pub(super) use vmx_pa_instruction;

/// INVEPT of `invept_type` (1 single-context, 2 global) for `eptp`.
pub(super) fn invept(invept_type: u64, eptp: u64) {
    let descriptor: [u64; 2] = [eptp, 0];
    // SAFETY: INVEPT only drops cached translations; the descriptor is a
    // valid 16-byte operand.
    unsafe {
        asm!("invept {t}, [{d}]", t = in(reg) invept_type, d = in(reg) &raw const descriptor, options(nostack));
    }
}

/// VMXOFF: leaves VMX operation.
pub(super) fn vmxoff() -> Result<(), VmError> {
    let failed: u8;
    // SAFETY: VMXOFF only leaves VMX operation; the caller runs it after
    // the last guest was released, when no VMCS is in use.
    unsafe {
        asm!("vmxoff", "setna {r}", r = out(reg_byte) failed, options(nostack));
    }
    if failed != 0 {
        return Err(VmError::Instruction {
            what: "VMXOFF",
            error: vmread(fields::VM_INSTRUCTION_ERROR),
        });
    }
    Ok(())
}
