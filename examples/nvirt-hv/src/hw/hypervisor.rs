//! The hypervisor's run, start to finish: the boot phases of
//! [`super::phases`] in order, the guest's domain marked running and shut
//! down around its run, the NV pool checked after it, and the verdict.

use nvirt_nvpool::NvPool;

use crate::config::GUEST_NAME;
use crate::nv_frames::NvFrames;

use super::boot_failure::BootFailure;
use super::console::{self, hvprintln};
use super::exits::Guest;
use super::mem::p2m_storage;
use super::phases;

/// A fatal error: print and stop the emulator with failure.
macro_rules! fail {
    ($($arg:tt)*) => {{
        $crate::hw::console::hvprintln!("FAILED: {}", format_args!($($arg)*));
        $crate::hw::console::exit(false)
    }};
}

/// Runs the hypervisor; never returns.
pub(crate) fn run(magic: u32, info: u32) -> ! {
    match boot_and_run(magic, info) {
        Ok(passed) => {
            if passed {
                hvprintln!("verdict: PASS");
            } else {
                hvprintln!("verdict: FAIL");
            }
            console::exit(passed)
        }
        Err(e) => fail!("{e}"),
    }
}

/// Every phase, then the checks after the guest; whether all passed.
fn boot_and_run(magic: u32, info: u32) -> Result<bool, BootFailure> {
    let fw = phases::firmware(magic, info)?;
    let mut heaps = phases::heaps(&fw)?;
    let nested = phases::nested_config()?;
    if let Some(vms) = &fw.vms {
        let image = Some(&fw.guest_image).filter(|r| !r.is_empty());
        return super::vms::run(vms, image, &mut heaps, &nested);
    }
    let layout = phases::guest_layout(&fw.config)?;
    let dom = phases::guest_domain(heaps.pool.as_mut(), &fw.config, &layout)?;
    let mut frames = match (heaps.pool.as_mut(), dom) {
        (Some(p), Some(d)) => Some(NvFrames::new(p, d)),
        _ => None,
    };
    let passed = {
        let storage = p2m_storage().ok_or(BootFailure::P2mStorage)?;
        let mut guest = phases::guest_memory(
            &nested,
            &mut heaps.ram,
            frames.as_mut(),
            storage,
            &layout,
            phases::NvramBacking::Eager,
        )?;
        let loaded = phases::load_guest(&mut guest, &fw, &layout)?;
        mark(&mut guest, GUEST_NAME, true);
        let ended = phases::run_guest(
            nested.format,
            &mut guest,
            &loaded,
            &layout,
            heaps.max_ram_page,
        )?;
        if ended.powered_off {
            mark(&mut guest, GUEST_NAME, false);
        }
        ended.passed
    };
    Ok(passed && check_heaps(&heaps, "the guest"))
}

/// The NV pool's consistency check and what both heaps have left, after
/// `whom` ran; whether the pool is consistent.
pub(crate) fn check_heaps(heaps: &phases::Heaps, whom: &str) -> bool {
    let pool_ok = heaps.pool.as_ref().is_none_or(check_pool);
    hvprintln!(
        "heaps after {whom}: volatile {} free, NV pool {} free",
        Size(heaps.ram.free_frames() * 4096),
        Size(heaps.nv_free_frames() * 4096)
    );
    pool_ok
}

/// The NV pool's consistency check after the guest.
fn check_pool<P: nvirt_persist_meta::Pmem>(pool: &NvPool<'_, P>) -> bool {
    match pool.check() {
        Ok(()) => {
            hvprintln!("nvpool: consistency check after the guest: clean");
            true
        }
        Err(e) => {
            hvprintln!("nvpool: consistency check after the guest: {e}");
            false
        }
    }
}

/// Marks the guest's domain in the NV pool running (as it starts) or shut
/// down (after it powered off).
pub(crate) fn mark(guest: &mut Guest<'_, '_>, name: &str, running: bool) {
    let Some(frames) = guest.nvram_pool() else {
        return;
    };
    let dom = frames.dom();
    let (done, what) = if running {
        (frames.pool().mark_running(dom), "running")
    } else {
        (frames.pool().mark_shut_down(dom), "shut down")
    };
    match done {
        Ok(()) => hvprintln!("nvpool: domain {name:?} marked {what}"),
        Err(e) => fail!("nvpool: marking domain {name:?} {what}: {e}"),
    }
}

/// A byte count printed with a binary unit.
pub(crate) struct Size(pub(crate) u64);

impl core::fmt::Display for Size {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let b = self.0;
        if b >= 1 << 30 && b % (1 << 30) == 0 {
            write!(f, "{} GiB", b >> 30)
        } else if b >= 1 << 20 && b % (1 << 20) == 0 {
            write!(f, "{} MiB", b >> 20)
        } else if b >= 1 << 10 && b % (1 << 10) == 0 {
            write!(f, "{} KiB", b >> 10)
        } else {
            write!(f, "{b} bytes")
        }
    }
}
