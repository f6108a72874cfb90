//! Discovery as Xen guests expect it: the hypervisor CPUID leaves from
//! 0x4000_0000 (signature, version, hypercall-page MSR, and the HVM leaf
//! with nvirt's NVRAM bit) and the hypercall page written when the guest
//! writes that MSR. The answers themselves are
//! `nvirt_hypercall_abi::discovery`'s.

use nvirt_hypercall_abi::discovery::{
    self, HYPERCALL_PAGE_MSR, hypercall_page, hypercall_page_address,
};
use nvirt_hypercall_abi::guest::HypercallInsn;

use super::super::console::hvprintln;
use super::super::vcpu::{Reg, Vcpu};
use super::{DOMAIN, Ended, Flow, Run};

/// The hypervisor leaves, or `None` for every other leaf.
pub(super) fn cpuid(leaf: u32, subleaf: u32) -> Option<[u32; 4]> {
    // One vCPU, id 0.
    discovery::leaf(leaf, subleaf, DOMAIN.raw(), 0)
}

/// Whether the MSR in ECX is the hypercall-page MSR.
pub(super) fn is_hypercall_page_msr(vcpu: &impl Vcpu) -> bool {
    vcpu.reg(Reg::Rcx) as u32 == HYPERCALL_PAGE_MSR
}

/// WRMSR to the hypercall-page MSR: Xen's page, with this CPU's
/// instruction, written at the guest-physical address in EDX:EAX.
pub(super) fn write_hypercall_page(vcpu: &mut impl Vcpu, run: &mut Run<'_, '_, '_>) -> Flow {
    let value = (vcpu.reg(Reg::Rdx) & 0xffff_ffff) << 32 | (vcpu.reg(Reg::Rax) & 0xffff_ffff);
    let insn = HypercallInsn::detect();
    let written = hypercall_page_address(value)
        .ok_or("its page index is not 0")
        .and_then(|gpa| {
            run.guest
                .write(gpa, &hypercall_page(insn))
                .map_err(|_| "the page is not the guest's memory")
        });
    match written {
        Ok(()) => {
            hvprintln!("hypercall page ({insn}) written at guest-physical {value:#x}");
            vcpu.skip_instruction();
            Flow::Resume
        }
        Err(why) => {
            // Xen injects #GP; this guest has no business with a bad page.
            run.flush();
            hvprintln!("guest wrote {value:#x} to the hypercall-page MSR: {why}");
            Flow::End(Ended::default())
        }
    }
}
