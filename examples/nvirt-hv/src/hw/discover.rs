//! What the machine offers, from the boot information: the host memory
//! map with every NVRAM source applied (firmware E820 kinds, the ACPI NFIT,
//! `memmap=`), the guest image, and the free RAM and NVRAM reported.

use core::fmt::Write as _;
use core::ops::Range;

use crate::acpi::Rsdp;
use crate::bootinfo::{BootInfo, FixedString, MAP_CAPACITY, MODULE_NAME_MAX};
use crate::config::Config;
use crate::host_memory::HostMemory;
use crate::linux::bzimage::BzImage;
use crate::phys::PhysRead;
use crate::ranges::HexRange;
use nvirt_e820::MemoryMap;
use nvirt_e820::nfit::Nfit;
use nvirt_hypercall_abi::protocol::{IMAGE_HEADER_LEN, ImageHeader, RawImageHeader};
use zerocopy::FromBytes;

use super::boot_failure::BootFailure;
use super::console::hvprintln;
use super::hypervisor::Size;
use super::mem::{IdentityMemory, host_bytes};

/// Largest NFIT read (QEMU's is a few hundred bytes per NVDIMM).
const NFIT_MAX: usize = 16 * 1024;
/// The module name that marks the guest image (else the first module).
const GUEST_MODULE: &str = "nvirt-guest";
/// The word in a Linux kernel module's string after which its command line
/// follows.
const LINUX_WORD: &str = "linux";
/// The word that marks a Linux guest's initrd module.
const INITRD_WORD: &str = "initrd";

/// The sanitized host map with every NVRAM source applied: E820 kinds
/// 7/12/90 as given, ACPI NFIT persistent-memory ranges, `memmap=`.
pub(crate) fn host_map(
    boot: &BootInfo,
    mem: &IdentityMemory,
) -> Result<MemoryMap<MAP_CAPACITY>, BootFailure> {
    let mut map = boot.map.clone();
    for e in map.nonvolatile() {
        hvprintln!("NVRAM from the firmware map: {e}");
    }
    match Rsdp::locate(mem, boot.rsdp.as_ref()) {
        Ok(rsdp) => {
            let root = rsdp
                .xsdt
                .map_or(("RSDT", u64::from(rsdp.rsdt)), |x| ("XSDT", x));
            hvprintln!(
                "ACPI: RSDP revision {}, {} at {:#x}",
                rsdp.revision,
                root.0,
                root.1
            );
            let mut buffer = [0u8; NFIT_MAX];
            match rsdp.find_table(mem, *b"NFIT", &mut buffer) {
                Ok(Some((at, bytes))) => match Nfit::parse(bytes) {
                    Ok(nfit) => {
                        for r in nfit.pmem_ranges() {
                            hvprintln!(
                                "NVRAM from the ACPI NFIT at {at:#x}: SPA range {} {}",
                                r.index,
                                HexRange(r.base..r.base.saturating_add(r.length))
                            );
                        }
                        nfit.add_pmem_to(&mut map)
                            .map_err(BootFailure::NfitRanges)?;
                    }
                    Err(e) => hvprintln!("ACPI NFIT at {at:#x} ignored: {e}"),
                },
                Ok(None) => hvprintln!("ACPI: no NFIT"),
                Err(e) => hvprintln!("ACPI tables unusable: {e}"),
            }
        }
        Err(e) => hvprintln!("ACPI: {e}"),
    }
    match map.apply_cmdline(boot.cmdline.as_str()) {
        Ok(0) => {}
        Ok(n) => hvprintln!("applied {n} memmap=/mem= item(s) from the command line"),
        Err(e) => return Err(BootFailure::Memmap(e)),
    }
    hvprintln!("host memory map (sanitized):");
    for e in map.entries() {
        hvprintln!("  {e}");
    }
    Ok(map)
}

/// A Linux guest's modules: the kernel is the module holding a bzImage;
/// its module string carries the word `linux` and the kernel's command
/// line after it; the initrd is the module whose string has the word
/// `initrd`.
pub(crate) struct LinuxModules {
    /// The initrd, if a module is one.
    pub(crate) initrd: Option<Range<u64>>,
    /// The kernel's command line.
    pub(crate) cmdline: FixedString<MODULE_NAME_MAX>,
}

/// The Linux kernel among the modules, if one is: its range and the rest
/// of what it needs.
pub(crate) fn find_linux(boot: &BootInfo) -> Option<(Range<u64>, LinuxModules)> {
    let kernel = boot.modules().find(|m| {
        // SAFETY: module ranges are only read before any allocator exists
        // (the firmware phase), and reserved from every heap afterwards.
        unsafe { host_bytes(&m.range) }.is_some_and(BzImage::is_linux)
    })?;
    let mut cmdline = FixedString::new();
    if let Some(after) = kernel.words_after(LINUX_WORD) {
        for (i, word) in after.enumerate() {
            // Module strings are at most MODULE_NAME_MAX bytes: this fits.
            let _ = write!(cmdline, "{}{word}", if i == 0 { "" } else { " " });
        }
    }
    let initrd = boot
        .modules()
        .find(|m| m.words_after(INITRD_WORD).is_some())
        .map(|m| m.range.clone());
    Some((kernel.range.clone(), LinuxModules { initrd, cmdline }))
}

/// The guest image: the module named `nvirt-guest` (or the only module), or
/// the raw image preloaded at `guest_addr=`.
pub(crate) fn find_guest_image(
    boot: &BootInfo,
    config: &Config,
    mem: &IdentityMemory,
) -> Result<Range<u64>, BootFailure> {
    let module = boot
        .modules()
        .find(|m| {
            m.name
                .as_str()
                .split_ascii_whitespace()
                .any(|w| w.ends_with(GUEST_MODULE))
        })
        .or_else(|| boot.modules().next());
    if let Some(m) = module {
        return Ok(m.range.clone());
    }
    let addr = config.guest_addr.ok_or(BootFailure::NoGuestImage)?;
    let mut header = [0u8; IMAGE_HEADER_LEN];
    mem.read(addr, &mut header)
        .map_err(|e| BootFailure::GuestImageUnreadable(addr, e))?;
    // Only the header is present so far: check it and take its file length.
    let file_len = RawImageHeader::read_from_bytes(&header).map_or(0, |h| h.file_len());
    let end = addr.checked_add(file_len).unwrap_or(addr);
    let Some(bytes) = (if file_len as usize >= IMAGE_HEADER_LEN {
        // SAFETY: the range is only read here, before any allocator exists.
        unsafe { host_bytes(&(addr..end)) }
    } else {
        None
    }) else {
        return Err(BootFailure::NoGuestImageHeader(addr));
    };
    ImageHeader::parse(bytes).map_err(|e| BootFailure::GuestImage(addr, e))?;
    Ok(addr..end)
}

pub(crate) fn report_host(host: &HostMemory) {
    hvprintln!(
        "free RAM: {} in {} ranges",
        Size(host.free.total()),
        host.free.ranges().len()
    );
    for r in host.free.iter() {
        hvprintln!("  free {}", HexRange(r));
    }
    if host.nvram.is_empty() {
        hvprintln!("NVRAM ranges: none");
    }
    for r in host.nvram.iter() {
        hvprintln!(
            "NVRAM range {} ({})",
            HexRange(r.clone()),
            Size(r.end - r.start)
        );
    }
}
