//! The hypervisor's boot, phase by phase. Each phase takes what the ones
//! before it produced and returns its own typed result or a
//! [`BootFailure`] (`boot_failure.rs`) saying what stopped the boot:
//!
//! 1. [`firmware`]: boot information, command line, the host map with every
//!    NVRAM source, the guest image, the reserved ranges → [`Firmware`];
//! 2. [`heaps`]: the volatile buddy heap and the NV pool on the NVRAM →
//!    [`Heaps`];
//! 3. [`nested_config`]: which nested paging the CPU offers →
//!    `NestedConfig`;
//! 4. [`guest_layout`] and [`guest_memory`]: the guest's map, its domain in
//!    the NV pool, its RAM and NVRAM backed and mapped → `Guest`;
//! 5. [`load_guest`]: the image, tables, GDT and start info → [`Loaded`];
//! 6. [`run_guest`]: one vCPU under SVM or VMX until it shuts down →
//!    [`Ended`](super::exits::Ended).

use core::fmt::Write as _;
use core::ops::Range;

use nvirt_buddy::{Heap, MemKind};
use nvirt_e820::{GuestLayout, GuestMap};
use nvirt_hypercall_abi::protocol::{CMDLINE_MAX, GuestParams};
use nvirt_nvpool::Dom;
use raw_cpuid::CpuId;

use crate::bootinfo::{self, FixedString};
use crate::config::{Config, GUEST_NAME};
use crate::guest_memory::GuestMemory;
use crate::guest_setup;
use crate::heaps::{self, HeapSpec};
use crate::host_memory::{self, HostMemory};
use crate::nested::{Format, NestedConfig};
use crate::nv_frames::NvFrames;
use crate::ranges::{HexRange, RangeSet};
use crate::regions::Regions;

use super::boot_failure::BootFailure;
use super::console::hvprintln;
use super::discover::{LinuxModules, find_guest_image, find_linux, host_map, report_host};
use super::exits::{self, Ended, Guest, report_tables};
use super::hypervisor::Size;
use super::io::{msr, rdmsr};
use super::mem::{IDENTITY_LIMIT, IdentityMemory, host_bytes, host_bytes_mut, image_range};
use super::nvram::{self, Pool};
use super::svm::{self, SvmVcpu};
use super::vcpu::{GuestKind, GuestSpec, Vcpu};
use super::vms::{self, VmModules};
use super::vmx::{self, VmxVcpu};

/// Most entries of the guest's map.
pub(crate) const GUEST_MAP_CAPACITY: usize = 32;
/// Extents listed one by one at boot; more are summarized.
const EXTENTS_LISTED: usize = 24;

/// What the firmware, the boot loader and the command line settled: phase
/// 1's result.
pub(crate) struct Firmware {
    /// The hypervisor's command line.
    pub(crate) config: Config,
    /// Free RAM and NVRAM, within the identity map.
    pub(crate) host: HostMemory,
    /// Where the guest image lies (the test guest's, or a Linux kernel).
    pub(crate) guest_image: Range<u64>,
    /// A Linux guest's initrd and command line, if the guest is Linux.
    pub(crate) linux: Option<LinuxModules>,
    /// The VMs the configuration modules describe, if any: then
    /// `guest_image` is the test guest's module (empty if none is given).
    pub(crate) vms: Option<VmModules>,
}

/// Phase 1: boot information → configuration → host map (every NVRAM
/// source applied) → guest image → free RAM and NVRAM.
pub(crate) fn firmware(magic: u32, info: u32) -> Result<Firmware, BootFailure> {
    let mem = IdentityMemory;
    let boot = bootinfo::read(magic, u64::from(info), &mem).map_err(BootFailure::BootInfo)?;
    hvprintln!("booted by {} (information at {info:#x})", boot.protocol);
    hvprintln!("command line: {}", boot.cmdline);
    for m in boot.modules() {
        hvprintln!("module {} {:?}", HexRange(m.range.clone()), m.name);
    }
    let config = Config::parse(boot.cmdline.as_str()).map_err(BootFailure::Config)?;

    let map = host_map(&boot, &mem)?;
    let vms = if vms::present(&boot) {
        Some(vms::find(&boot)?)
    } else {
        None
    };
    let (guest_image, linux) = match (&vms, find_linux(&boot)) {
        (Some(_), _) => (vms::test_guest_module(&boot).unwrap_or(0..0), None),
        (None, Some((kernel, modules))) => (kernel, Some(modules)),
        (None, None) => (find_guest_image(&boot, &config, &mem)?, None),
    };

    let mut reserved = RangeSet::<48>::new();
    let image = image_range();
    let reservations = [image.clone(), guest_image.clone()];
    for r in reservations
        .iter()
        .cloned()
        .chain(boot.footprint.iter())
        .chain(boot.modules().map(|m| m.range.clone()))
    {
        reserved.insert(r).map_err(BootFailure::Reserved)?;
    }
    hvprintln!("hypervisor image {}", HexRange(image));
    hvprintln!("reserved (image, boot information, modules): {reserved:?}");
    let mut host = host_memory::plan(&map, &reserved).map_err(BootFailure::HostMemory)?;
    clip_to_identity_map(&mut host)?;
    report_host(&host);
    Ok(Firmware {
        config,
        host,
        guest_image,
        linux,
        vms,
    })
}

/// Drops RAM and NVRAM beyond the identity map: the heaps hand out only
/// memory the hypervisor can reach.
fn clip_to_identity_map(host: &mut HostMemory) -> Result<(), BootFailure> {
    let beyond = IDENTITY_LIMIT..u64::MAX;
    if host.free.overlaps(&beyond) || host.nvram.overlaps(&beyond) {
        hvprintln!(
            "memory above {} is not identity mapped and left unused",
            Size(IDENTITY_LIMIT)
        );
    }
    if host.free.remove(beyond.clone()).is_err() || host.nvram.remove(beyond).is_err() {
        return Err(BootFailure::Clip);
    }
    Ok(())
}

/// Where every frame comes from: phase 2's result.
pub(crate) struct Heaps {
    /// Free RAM above the heap's and the pool's metadata.
    pub(crate) ram: Heap<'static>,
    /// One past the host's last RAM frame (`XENMEM_maximum_ram_page`).
    pub(crate) max_ram_page: u64,
    /// The NV pool, if the machine has NVRAM.
    pub(crate) pool: Option<Pool>,
}

impl Heaps {
    /// Free frames of the NV pool (0 without one).
    pub(crate) fn nv_free_frames(&self) -> u64 {
        self.pool.as_ref().map_or(0, |p| p.stats().free_frames)
    }
}

/// Phase 2: the volatile heap's metadata carved from free RAM, then the NV
/// pool's work area, then the rest of free RAM to the heap. NVRAM goes to
/// the NV pool alone.
pub(crate) fn heaps(fw: &Firmware) -> Result<Heaps, BootFailure> {
    let ram_only = HostMemory {
        free: fw.host.free.clone(),
        nvram: RangeSet::new(),
    };
    let mut plan = heaps::plan(&ram_only).map_err(BootFailure::HeapPlan)?;
    let pool = nvram::open_pool(&fw.host, &mut plan.free, &fw.config)?;
    let ram = build_heap(MemKind::Volatile, &plan.ram, plan.free.iter())?;
    report_heap(&ram, &plan.ram, plan.free.ranges().len());
    if pool.is_none() {
        hvprintln!("NV pool: none (no NVRAM)");
    }
    Ok(Heaps {
        ram,
        max_ram_page: plan.ram.span.end().get(),
        pool,
    })
}

fn build_heap(
    kind: MemKind,
    spec: &HeapSpec,
    ranges: impl IntoIterator<Item = Range<u64>>,
) -> Result<Heap<'static>, BootFailure> {
    // SAFETY: `heaps::plan` took this range out of the free RAM every heap
    // is built from, and each heap's range is used for this heap only.
    let Some(metadata) = (unsafe { host_bytes_mut(&spec.metadata) }) else {
        return Err(BootFailure::HeapMetadata(kind, spec.metadata.clone()));
    };
    heaps::build(kind, spec, metadata, ranges).map_err(|e| BootFailure::Heap(kind, e))
}

fn report_heap(heap: &Heap<'_>, spec: &HeapSpec, ranges: usize) {
    hvprintln!(
        "{} heap: {} in {ranges} ranges, span {}, metadata {} at {}",
        heap.kind(),
        Size(heap.free_frames() * 4096),
        HexRange(spec.span.start().addr().get()..spec.span.end().addr().get()),
        Size(spec.metadata_len as u64),
        HexRange(spec.metadata.clone())
    );
}

/// Phase 3: what the CPU's virtualization extension walks, and with which
/// pages.
pub(crate) fn nested_config() -> Result<NestedConfig, BootFailure> {
    let phys_bits = CpuId::new()
        .get_processor_capacity_feature_info()
        .map_or(36, |c| c.physical_address_bits());
    // SAFETY: EFER exists on every x86-64 CPU.
    let efer = unsafe { rdmsr(msr::EFER) };
    // SAFETY: so does IA32_PAT.
    let pat = unsafe { rdmsr(msr::PAT) };
    let (format, pages_1g) = match (svm::supported(), vmx::supported()) {
        (Ok(()), _) => (Format::Npt, svm::pages_1g()),
        (_, Ok(())) => (Format::Ept, vmx::ept_pages_1g()),
        (Err(a), Err(i)) => return Err(BootFailure::NoVirtualization(a, i)),
    };
    let config = NestedConfig {
        format,
        pages_1g,
        phys_bits: phys_bits.clamp(32, 52),
        host_nxe: efer & 1 << 11 != 0,
        host_pat: pat,
    };
    hvprintln!(
        "nested paging: {format:?}, 1 GiB pages {}, MAXPHYADDR {}",
        if pages_1g { "yes" } else { "no" },
        config.phys_bits
    );
    Ok(config)
}

/// Phase 4a: the guest's memory map, from its configured sizes.
pub(crate) fn guest_layout(config: &Config) -> Result<GuestMap<GUEST_MAP_CAPACITY>, BootFailure> {
    layout_of(config.guest_ram, config.guest_nvram, config.nv_kind)
}

/// The map of a guest with `ram` and `nvram` bytes, its NVRAM region of
/// `kind`.
pub(crate) fn layout_of(
    ram: u64,
    nvram: u64,
    kind: nvirt_e820::Kind,
) -> Result<GuestMap<GUEST_MAP_CAPACITY>, BootFailure> {
    let layout = GuestLayout::new(ram)
        .nvram(nvram, kind)
        .build::<GUEST_MAP_CAPACITY>()
        .map_err(BootFailure::Layout)?;
    hvprintln!(
        "guest memory map ({} RAM, {} NVRAM of type {}):",
        Size(ram),
        Size(nvram),
        kind.raw()
    );
    for e in layout.map.entries() {
        hvprintln!("  guest {e}");
    }
    Ok(layout)
}

/// Phase 4b: the guest's domain in the NV pool, found by id or created;
/// `None` if the guest has no NVRAM.
pub(crate) fn guest_domain(
    pool: Option<&mut Pool>,
    config: &Config,
    layout: &GuestMap<GUEST_MAP_CAPACITY>,
) -> Result<Option<Dom>, BootFailure> {
    let dom = match pool {
        Some(p) => nvram::attach_guest(p, config.guest_id, GUEST_NAME, layout, false)?,
        None => None,
    };
    if config.guest_nvram > 0 && dom.is_none() {
        return Err(BootFailure::NoNvram);
    }
    Ok(dom)
}

/// Phase 4c: the guest's memory — empty tables, then its RAM (zeroed) and
/// NVRAM (kept as it is: its contents are the point), largest blocks
/// first — checked minimal.
pub(crate) fn guest_memory<'a, 'p>(
    nested: &NestedConfig,
    ram: &'a mut Heap<'static>,
    frames: Option<&'a mut NvFrames<'p, 'static, nvirt_persist_meta::X86Pmem<'static>>>,
    storage: &'static mut [crate::p2m::BlockMapping],
    layout: &GuestMap<GUEST_MAP_CAPACITY>,
    nvram: NvramBacking,
) -> Result<Guest<'a, 'p>, BootFailure> {
    let mut guest = GuestMemory::new(
        nested,
        ram,
        frames,
        IdentityMemory,
        storage,
        Regions::from_map(&layout.map),
    )
    .map_err(BootFailure::Tables)?;
    back_guest(&mut guest, layout, nvram)?;
    Ok(guest)
}

/// How much of a guest's NVRAM region is backed before it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NvramBacking {
    /// All of it: what its domain holds, and fresh frames for the rest.
    Eager,
    /// What its domain holds; the rest on the guest's first touch.
    OnTouch,
}

fn back_guest(
    guest: &mut Guest<'_, '_>,
    layout: &GuestMap<GUEST_MAP_CAPACITY>,
    nvram: NvramBacking,
) -> Result<(), BootFailure> {
    for gpa in layout.ram.iter().flatten() {
        guest
            .back(gpa, MemKind::Volatile, true)
            .map_err(|e| BootFailure::GuestRam(gpa.clone(), e))?;
    }
    // NVRAM: what the domain holds in the NV pool, at the same guest
    // frames and with its contents; then fresh, zeroed frames where the
    // guest had given frames back, so its map's NVRAM entry is true.
    if let Some(gpa) = layout.nvram.as_ref() {
        let attached = guest
            .attach_owned(gpa, MemKind::NonVolatile)
            .map_err(|e| BootFailure::Reattach(gpa.clone(), e))?;
        if nvram == NvramBacking::Eager {
            let refilled = guest
                .back_holes(gpa, MemKind::NonVolatile, true)
                .map_err(|e| BootFailure::GuestNvram(gpa.clone(), e))?;
            hvprintln!(
                "nvpool: guest NVRAM {}: {attached} extents mapped, {} backed afresh",
                HexRange(gpa.clone()),
                Size(refilled * 4096)
            );
        } else {
            hvprintln!(
                "nvpool: guest NVRAM {}: {attached} extents mapped, {} of it backed; the rest on first touch",
                HexRange(gpa.clone()),
                Size(guest.frames(MemKind::NonVolatile) * 4096)
            );
        }
    }
    let extents = guest.extents();
    for e in extents.iter().take(EXTENTS_LISTED) {
        let (guest, host) = (e.gfns().addrs(), e.block().phys());
        let bytes = host.len();
        hvprintln!(
            "guest {} {} -> host {} ({} block)",
            e.kind(),
            HexRange(guest.start().get()..guest.end().get()),
            HexRange(host.start().get()..host.end().get()),
            Size(bytes)
        );
    }
    if extents.len() > EXTENTS_LISTED {
        hvprintln!("  … {} extents in all", extents.len());
    }
    let _ = guest.take_invalidation();
    if !report_tables(guest, "built") {
        return Err(BootFailure::NotMinimal);
    }
    Ok(())
}

/// The guest in place: phase 5's result.
pub(crate) struct Loaded {
    /// What a backend needs to create its vCPU.
    pub(crate) spec: GuestSpec,
}

/// Phase 5: the guest image, identity tables, GDT and start info with the
/// command line written into guest memory.
pub(crate) fn load_guest(
    guest: &mut Guest<'_, '_>,
    fw: &Firmware,
    layout: &GuestMap<GUEST_MAP_CAPACITY>,
) -> Result<Loaded, BootFailure> {
    // SAFETY: the image range is reserved from both heaps and nothing
    // writes it.
    let Some(image_bytes) = (unsafe { host_bytes(&fw.guest_image) }) else {
        return Err(BootFailure::ImageUnreachable(fw.guest_image.clone()));
    };
    if let Some(linux) = &fw.linux {
        return load_linux(guest, image_bytes, linux, layout);
    }
    let config = &fw.config;
    let params = GuestParams {
        ram: config.guest_ram,
        nvram: config.guest_nvram,
        nv_type: config.nv_kind.raw(),
    };
    let mut extra = FixedString::<CMDLINE_MAX>::new();
    if let Some(ops) = config.crash_loop {
        write!(extra, "nvirt.crashloop={ops}").map_err(|_| BootFailure::CmdlineTooLong)?;
    }
    load_test_guest(guest, image_bytes, params, extra.as_str(), layout)
}

/// Phase 5 for the test guest: its image, with `params` and `extra` words
/// on its command line.
pub(crate) fn load_test_guest(
    guest: &mut Guest<'_, '_>,
    image_bytes: &[u8],
    params: GuestParams,
    extra: &str,
    layout: &GuestMap<GUEST_MAP_CAPACITY>,
) -> Result<Loaded, BootFailure> {
    let mut cmdline = FixedString::<CMDLINE_MAX>::new();
    write!(cmdline, "{params}").map_err(|_| BootFailure::CmdlineTooLong)?;
    if !extra.is_empty() {
        write!(cmdline, " {extra}").map_err(|_| BootFailure::CmdlineTooLong)?;
    }
    let (start, header) = guest_setup::prepare(guest, image_bytes, layout, cmdline.as_str())
        .map_err(BootFailure::Setup)?;
    hvprintln!(
        "guest image: {} bytes at guest-physical {:#x}, entry {:#x}; command line: {cmdline}",
        header.mem_len(),
        header.load().get(),
        header.entry().get()
    );
    Ok(Loaded {
        spec: GuestSpec {
            start,
            nested_root: guest.tables().root_pointer(),
            memory_size: layout.map.end(),
            kind: GuestKind::Test,
        },
    })
}

/// Phase 5 for a Linux guest: kernel, initrd, command line and zero page.
fn load_linux(
    guest: &mut Guest<'_, '_>,
    kernel: &[u8],
    linux: &LinuxModules,
    layout: &GuestMap<GUEST_MAP_CAPACITY>,
) -> Result<Loaded, BootFailure> {
    let initrd = match &linux.initrd {
        // SAFETY: module ranges are reserved from both heaps and nothing
        // writes them.
        Some(r) => unsafe { host_bytes(r) }.ok_or(BootFailure::ImageUnreachable(r.clone()))?,
        None => &[],
    };
    let cmdline = linux.cmdline.as_str();
    let (start, placed) = crate::linux::load::load(guest, kernel, initrd, cmdline, layout)
        .map_err(BootFailure::Linux)?;
    hvprintln!(
        "Linux guest: boot protocol {}.{}, kernel {} (init_size), initrd {} ({}), entry {:#x}, zero page {:#x}",
        placed.version >> 8,
        placed.version & 0xff,
        HexRange(placed.kernel.clone()),
        HexRange(placed.initrd.clone()),
        Size(placed.initrd.end - placed.initrd.start),
        start.rip,
        start.rsi
    );
    hvprintln!("Linux command line: {cmdline}");
    Ok(Loaded {
        spec: GuestSpec {
            start,
            nested_root: guest.tables().root_pointer(),
            memory_size: layout.map.end(),
            kind: GuestKind::Linux,
        },
    })
}

/// Phase 6: one vCPU of the backend the nested format calls for, run until
/// the guest ends.
pub(crate) fn run_guest(
    format: Format,
    guest: &mut Guest<'_, '_>,
    loaded: &Loaded,
    layout: &GuestMap<GUEST_MAP_CAPACITY>,
    max_ram_page: u64,
) -> Result<Ended, BootFailure> {
    let spec = &loaded.spec;
    let initial_pages = guest.frames(MemKind::Volatile) + guest.frames(MemKind::NonVolatile);
    Ok(match format {
        Format::Npt => {
            let mut v = SvmVcpu::new(guest.heap(), spec).map_err(BootFailure::Svm)?;
            v.set_halt_exits(spec.kind == GuestKind::Test);
            exits::run_guest(&mut v, spec, guest, layout, initial_pages, max_ram_page)
        }
        Format::Ept => {
            let mut v = VmxVcpu::new(guest.heap(), spec).map_err(BootFailure::Vmx)?;
            v.set_halt_exits(spec.kind == GuestKind::Test);
            exits::run_guest(&mut v, spec, guest, layout, initial_pages, max_ram_page)
        }
    })
}
