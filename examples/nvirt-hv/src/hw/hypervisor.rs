//! The hypervisor's run, start to finish: boot information → memory map
//! and NVRAM → free and NVRAM ranges → the volatile buddy heap and the NV
//! pool (recovered or formatted, the guest's domain found by id:
//! [`super::nvram`]) → guest memory (largest blocks first; NVRAM the domain
//! holds mapped again where it was) with `nvirt-ept` tables →
//! guest boot structures → one virtual CPU run until the guest shuts down
//! ([`super::exits`]).

use core::fmt::Write as _;
use core::ops::Range;

use nvirt_buddy::{Heap, MemKind};
use nvirt_e820::{GuestLayout, GuestMap};
use nvirt_hv::bootinfo::{self, FixedString};
use nvirt_hv::config::{Config, GUEST_NAME};
use nvirt_hv::guest_abi::{CMDLINE_MAX, GuestParams};
use nvirt_hv::guest_memory::GuestMemory;
use nvirt_hv::guest_setup;
use nvirt_hv::heaps::{self, HeapSpec};
use nvirt_hv::host_memory::{self, HostMemory};
use nvirt_hv::nested::{Format, NestedConfig};
use nvirt_hv::nv_frames::NvFrames;
use nvirt_hv::ranges::{HexRange, RangeSet};
use nvirt_hv::regions::Regions;

use super::console;
use super::discover::{find_guest_image, host_map, report_host};
use super::exits::{self, Guest, report_tables};
use super::io::{cpuid, msr, rdmsr};
use super::mem::{
    IDENTITY_LIMIT, IdentityMemory, host_bytes, host_bytes_mut, image_range, p2m_storage,
};
use super::nvram;
use super::svm::{self, SvmVcpu};
use super::vcpu::GuestSpec;
use super::vmx::{self, VmxVcpu};
use crate::hvprintln;

/// Most entries of the guest's map.
const GUEST_MAP_CAPACITY: usize = 32;
/// Extents listed one by one at boot; more are summarized.
const EXTENTS_LISTED: usize = 24;

/// A fatal error: print and stop the emulator with failure.
macro_rules! fail {
    ($($arg:tt)*) => {{
        $crate::hvprintln!("FAILED: {}", format_args!($($arg)*));
        $crate::hw::console::exit(false)
    }};
}
pub(crate) use fail;

/// Runs the hypervisor; never returns.
pub(crate) fn run(magic: u32, info: u32) -> ! {
    let mem = IdentityMemory;
    let boot = match bootinfo::read(magic, u64::from(info), &mem) {
        Ok(boot) => boot,
        Err(e) => fail!("boot information: {e}"),
    };
    hvprintln!("booted by {} (information at {info:#x})", boot.protocol);
    hvprintln!("command line: {}", boot.cmdline);
    for m in boot.modules() {
        hvprintln!("module {} {:?}", HexRange(m.range.clone()), m.name);
    }
    let config = match Config::parse(boot.cmdline.as_str()) {
        Ok(c) => c,
        Err(e) => fail!("{e}"),
    };

    let map = host_map(&boot, &mem);
    let guest_image = find_guest_image(&boot, &config, &mem);

    let mut reserved = RangeSet::<48>::new();
    let image = image_range();
    let reservations = [image.clone(), guest_image.clone()];
    for r in reservations
        .iter()
        .cloned()
        .chain(boot.footprint.iter())
        .chain(boot.modules().map(|m| m.range.clone()))
    {
        if let Err(e) = reserved.insert(r) {
            fail!("reserved ranges: {e}");
        }
    }
    hvprintln!("hypervisor image {}", HexRange(image));
    hvprintln!("reserved (image, boot information, modules): {reserved:?}");
    let mut host = match host_memory::plan(&map, &reserved) {
        Ok(h) => h,
        Err(e) => fail!("{e}"),
    };
    clip_to_identity_map(&mut host);
    report_host(&host);

    // The volatile heap: its metadata carved from free RAM, then the NV
    // pool's work area, then the rest of free RAM to the heap. NVRAM goes
    // to the NV pool alone.
    let ram_only = HostMemory {
        free: host.free.clone(),
        nvram: RangeSet::new(),
    };
    let mut plan = match heaps::plan(&ram_only) {
        Ok(p) => p,
        Err(e) => fail!("heaps: {e}"),
    };
    let mut pool = nvram::open_pool(&host, &mut plan.free, &config);
    let mut ram = build_heap(MemKind::Volatile, &plan.ram, plan.free.iter());
    report_heap(&ram, &plan.ram, plan.free.ranges().len());
    if pool.is_none() {
        hvprintln!("NV pool: none (no NVRAM)");
    }

    let nested = nested_config();
    let layout = guest_layout(&config);
    let dom = pool
        .as_mut()
        .and_then(|p| nvram::attach_guest(p, &config, &layout));
    if config.guest_nvram > 0 && dom.is_none() {
        fail!("the guest has NVRAM but the machine has none");
    }
    let mut frames = match (pool.as_mut(), dom) {
        (Some(p), Some(d)) => Some(NvFrames::new(p, d)),
        _ => None,
    };
    let passed = {
        let Some(storage) = p2m_storage() else {
            fail!("the guest map's storage is taken")
        };
        let mut guest = match GuestMemory::new(
            &nested,
            &mut ram,
            frames.as_mut(),
            IdentityMemory,
            storage,
            Regions::from_map(&layout.map),
        ) {
            Ok(g) => g,
            Err(e) => fail!("nested tables: {e}"),
        };
        back_guest(&mut guest, &layout);

        // SAFETY: the image range is reserved from both heaps and nothing
        // writes it.
        let Some(image_bytes) = (unsafe { host_bytes(&guest_image) }) else {
            fail!("guest image {} is not addressable", HexRange(guest_image))
        };
        let params = GuestParams {
            ram: config.guest_ram,
            nvram: config.guest_nvram,
            nv_type: config.nv_kind.raw(),
        };
        let mut cmdline = FixedString::<CMDLINE_MAX>::new();
        if write!(cmdline, "{params}").is_err() {
            fail!("guest command line too long");
        }
        if let Some(ops) = config.crash_loop {
            if write!(cmdline, " nvirt.crashloop={ops}").is_err() {
                fail!("guest command line too long");
            }
        }
        let (start, header) =
            match guest_setup::prepare(&mut guest, image_bytes, &layout, cmdline.as_str()) {
                Ok(s) => s,
                Err(e) => fail!("guest setup: {e}"),
            };
        hvprintln!(
            "guest image: {} bytes at guest-physical {:#x}, entry {:#x}; command line: {cmdline}",
            header.mem_len,
            header.load_gpa,
            header.entry_gpa
        );

        let spec = GuestSpec {
            start,
            nested_root: guest.tables().root_pointer(),
            memory_size: layout.map.end(),
        };
        let initial_pages = guest.frames(MemKind::Volatile) + guest.frames(MemKind::NonVolatile);
        let max_ram_page = plan.ram.span.end().get();
        mark(&mut guest, true);
        let ended = match nested.format {
            Format::Npt => match SvmVcpu::new(guest.heap(), &spec) {
                Ok(mut v) => exits::run_guest(
                    &mut v,
                    &spec,
                    &mut guest,
                    &layout,
                    initial_pages,
                    max_ram_page,
                ),
                Err(e) => fail!("SVM: {e}"),
            },
            Format::Ept => match VmxVcpu::new(guest.heap(), &spec) {
                Ok(mut v) => exits::run_guest(
                    &mut v,
                    &spec,
                    &mut guest,
                    &layout,
                    initial_pages,
                    max_ram_page,
                ),
                Err(e) => fail!("VMX: {e}"),
            },
        };
        if ended.powered_off {
            mark(&mut guest, false);
        }
        ended.passed
    };
    let pool_ok = match pool.as_ref() {
        Some(p) => match p.check() {
            Ok(()) => {
                hvprintln!("nvpool: consistency check after the guest: clean");
                true
            }
            Err(e) => {
                hvprintln!("nvpool: consistency check after the guest: {e}");
                false
            }
        },
        None => true,
    };
    hvprintln!(
        "heaps after the guest: volatile {} free, NV pool {} free",
        Size(ram.free_frames() * 4096),
        Size(pool.as_ref().map_or(0, |p| p.stats().free_frames * 4096))
    );
    let passed = passed && pool_ok;
    if passed {
        hvprintln!("verdict: PASS");
    } else {
        hvprintln!("verdict: FAIL");
    }
    console::exit(passed)
}

/// Marks the guest's domain in the NV pool running (as it starts) or shut
/// down (after it powered off).
fn mark(guest: &mut Guest<'_, '_>, running: bool) {
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
        Ok(()) => hvprintln!("nvpool: domain {GUEST_NAME:?} marked {what}"),
        Err(e) => fail!("nvpool: marking domain {GUEST_NAME:?} {what}: {e}"),
    }
}

/// Drops RAM and NVRAM beyond the identity map: the heaps hand out only
/// memory the hypervisor can reach.
fn clip_to_identity_map(host: &mut HostMemory) {
    let beyond = IDENTITY_LIMIT..u64::MAX;
    if host.free.overlaps(&beyond) || host.nvram.overlaps(&beyond) {
        hvprintln!(
            "memory above {} is not identity mapped and left unused",
            Size(IDENTITY_LIMIT)
        );
    }
    if host.free.remove(beyond.clone()).is_err() || host.nvram.remove(beyond).is_err() {
        fail!("clipping memory to the identity map");
    }
}

fn build_heap(
    kind: MemKind,
    spec: &HeapSpec,
    ranges: impl IntoIterator<Item = Range<u64>>,
) -> Heap<'static> {
    // SAFETY: `heaps::plan` took this range out of the free RAM every heap
    // is built from, and each heap's range is used for this heap only.
    let Some(metadata) = (unsafe { host_bytes_mut(&spec.metadata) }) else {
        fail!(
            "{kind} heap metadata {} unreachable",
            HexRange(spec.metadata.clone())
        )
    };
    match heaps::build(kind, spec, metadata, ranges) {
        Ok(h) => h,
        Err(e) => fail!("{kind} heap: {e}"),
    }
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

/// What the CPU's virtualization extension walks, and with which pages.
fn nested_config() -> NestedConfig {
    let max_leaf = cpuid(0x8000_0000, 0)[0];
    let phys_bits = if max_leaf >= 0x8000_0008 {
        (cpuid(0x8000_0008, 0)[0] & 0xff) as u8
    } else {
        36
    };
    // SAFETY: EFER exists on every x86-64 CPU.
    let efer = unsafe { rdmsr(msr::EFER) };
    // SAFETY: so does IA32_PAT.
    let pat = unsafe { rdmsr(msr::PAT) };
    let (format, pages_1g) = match (svm::supported(), vmx::supported()) {
        (Ok(()), _) => (Format::Npt, svm::pages_1g()),
        (_, Ok(())) => (Format::Ept, vmx::ept_pages_1g()),
        (Err(a), Err(i)) => fail!("no hardware virtualization: {a}; {i}"),
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
    config
}

fn guest_layout(config: &Config) -> GuestMap<GUEST_MAP_CAPACITY> {
    let layout = match GuestLayout::new(config.guest_ram)
        .nvram(config.guest_nvram, config.nv_kind)
        .build::<GUEST_MAP_CAPACITY>()
    {
        Ok(l) => l,
        Err(e) => fail!("guest layout: {e}"),
    };
    hvprintln!(
        "guest memory map ({} RAM, {} NVRAM of type {}):",
        Size(config.guest_ram),
        Size(config.guest_nvram),
        config.nv_kind.raw()
    );
    for e in layout.map.entries() {
        hvprintln!("  guest {e}");
    }
    layout
}

/// The guest's RAM (zeroed) and NVRAM (kept as it is: its contents are the
/// point), largest blocks first; then the tables' footprint.
fn back_guest(guest: &mut Guest<'_, '_>, layout: &GuestMap<GUEST_MAP_CAPACITY>) {
    for gpa in layout.ram.iter().flatten() {
        if let Err(e) = guest.back(gpa, MemKind::Volatile, true) {
            fail!("guest RAM {}: {e}", HexRange(gpa.clone()));
        }
    }
    // NVRAM: what the domain holds in the NV pool, at the same guest
    // frames and with its contents; then fresh, zeroed frames where the
    // guest had given frames back, so its map's NVRAM entry is true.
    if let Some(gpa) = layout.nvram.as_ref() {
        let attached = match guest.attach_owned(gpa, MemKind::NonVolatile) {
            Ok(n) => n,
            Err(e) => fail!("guest NVRAM {}: re-attaching: {e}", HexRange(gpa.clone())),
        };
        let refilled = match guest.back_holes(gpa, MemKind::NonVolatile, true) {
            Ok(n) => n,
            Err(e) => fail!("guest NVRAM {}: {e}", HexRange(gpa.clone())),
        };
        hvprintln!(
            "nvpool: guest NVRAM {}: {attached} extents mapped, {} backed afresh",
            HexRange(gpa.clone()),
            Size(refilled * 4096)
        );
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
        fail!("the guest's tables are not minimal");
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
