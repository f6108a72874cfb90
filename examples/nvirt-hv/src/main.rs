//! The nvirt reference hypervisor (bare metal, `x86_64-unknown-none`): the
//! boot code (in the library's machine layer) calls [`nvirt_main`].
//!
//! On any other target this is an empty program, so `cargo build
//! --workspace` on the host stays whole; the runner (`cargo nvirt run`)
//! builds it with `--target x86_64-unknown-none`.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "nvirt-hv runs on bare metal: build it with --target x86_64-unknown-none, \
         or boot it with `cargo nvirt run`"
    );
}

/// Entry from the boot code: `magic` is EAX at entry (the protocol), `info`
/// the boot-information address.
#[cfg(target_os = "none")]
#[unsafe(no_mangle)]
extern "C" fn nvirt_main(magic: u32, info: u32) -> ! {
    nvirt_hv::start(magic, info)
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    nvirt_hv::on_panic(info)
}
