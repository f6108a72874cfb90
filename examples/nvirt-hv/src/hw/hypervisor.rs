//! The hypervisor's run, start to finish: boot information → memory map
//! and NVRAM → free and NVRAM ranges → guest memory, nested tables, guest
//! boot structures → one virtual CPU run until the guest shuts down.

use core::ops::Range;

use nvirt_e820::nfit::Nfit;
use nvirt_e820::{GuestLayout, GuestMap, MemoryMap};
use nvirt_hv::acpi::Rsdp;
use nvirt_hv::bootinfo::{self, BootInfo, MAP_CAPACITY};
use nvirt_hv::config::Config;
use nvirt_hv::frames::{FrameAlloc, RegionFrames};
use nvirt_hv::guest_abi::{IMAGE_HEADER_LEN, ImageHeader};
use nvirt_hv::guest_console::{GuestConsole, Hypercall, ShutdownReason, decode};
use nvirt_hv::guest_memory::{Backing, GuestMemoryMap, Region};
use nvirt_hv::guest_setup;
use nvirt_hv::host_memory::{self, FREE_CAPACITY, HostMemory, NVRAM_CAPACITY};
use nvirt_hv::phys::PhysRead;
use nvirt_hv::ranges::{HexRange, RangeSet};
use nvirt_hv::scaffold_nested::{Format, PAGE_2M, ScaffoldNested};

use super::console;
use super::mem::{GuestMem, IdentityMemory, TableFrames, host_bytes, image_range, zero_host};
use super::svm::{self, SvmVcpu};
use super::vcpu::{Exit, GuestSpec, Reg, Vcpu};
use super::vmx::{self, VmxVcpu};
use crate::hvprintln;

/// Largest NFIT read (QEMU's is a few hundred bytes per NVDIMM).
const NFIT_MAX: usize = 16 * 1024;
/// Most VM exits before the hypervisor gives up on a guest.
const EXIT_LIMIT: u64 = 10_000_000;
/// The module name that marks the guest image (else the first module).
const GUEST_MODULE: &str = "nvirt-guest";

/// A fatal error: print and stop the emulator with failure.
macro_rules! fail {
    ($($arg:tt)*) => {{
        hvprintln!("FAILED: {}", format_args!($($arg)*));
        console::exit(false)
    }};
}

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
    let host = match host_memory::plan(&map, &reserved) {
        Ok(h) => h,
        Err(e) => fail!("{e}"),
    };
    report_host(&host);

    let mut ram_frames = RegionFrames::<FREE_CAPACITY>::new(host.free.clone());
    let mut nv_frames = RegionFrames::<NVRAM_CAPACITY>::new(host.nvram.clone());

    // The nested-table format follows the CPU vendor's extension.
    let format = match (svm::supported(), vmx::supported()) {
        (Ok(()), _) => Format::Npt,
        (_, Ok(())) => Format::Ept,
        (Err(a), Err(i)) => fail!("no hardware virtualization: {a}; {i}"),
    };

    let layout = match GuestLayout::new(config.guest_ram)
        .nvram(config.guest_nvram, config.nv_kind)
        .build::<32>()
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

    let (guest_map, nested) = build_guest_memory(&layout, format, &mut ram_frames, &mut nv_frames);

    // SAFETY: the image range is reserved from both allocators and nothing
    // writes it.
    let Some(image_bytes) = (unsafe { host_bytes(&guest_image) }) else {
        fail!("guest image {} is not addressable", HexRange(guest_image))
    };
    let mut guest_mem = GuestMem::new(&guest_map);
    let (start, header) = match guest_setup::prepare(&mut guest_mem, image_bytes, &layout) {
        Ok(s) => s,
        Err(e) => fail!("guest setup: {e}"),
    };
    hvprintln!(
        "guest image: {} bytes at guest-physical {:#x}, entry {:#x}",
        header.mem_len,
        header.load_gpa,
        header.entry_gpa
    );

    let spec = GuestSpec {
        start,
        nested_root: nested.root_pointer(),
        memory_size: layout.map.end(),
    };
    let passed = match format {
        Format::Npt => match SvmVcpu::new(&mut ram_frames, &spec) {
            Ok(mut v) => run_guest(&mut v, &spec, &guest_map),
            Err(e) => fail!("SVM: {e}"),
        },
        Format::Ept => match VmxVcpu::new(&mut ram_frames, &spec) {
            Ok(mut v) => run_guest(&mut v, &spec, &guest_map),
            Err(e) => fail!("VMX: {e}"),
        },
    };
    if passed {
        hvprintln!("verdict: PASS");
    } else {
        hvprintln!("verdict: FAIL");
    }
    console::exit(passed)
}

/// The sanitized host map with every NVRAM source applied: E820 kinds
/// 7/12/90 as given, ACPI NFIT persistent-memory ranges, `memmap=`.
fn host_map(boot: &BootInfo, mem: &IdentityMemory) -> MemoryMap<MAP_CAPACITY> {
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
                        if let Err(e) = nfit.add_pmem_to(&mut map) {
                            fail!("NFIT ranges: {e}");
                        }
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
        Err(e) => fail!("memmap=: {e}"),
    }
    hvprintln!("host memory map (sanitized):");
    for e in map.entries() {
        hvprintln!("  {e}");
    }
    map
}

/// The guest image: the module named `nvirt-guest` (or the only module), or
/// the raw image preloaded at `guest_addr=`.
fn find_guest_image(boot: &BootInfo, config: &Config, mem: &IdentityMemory) -> Range<u64> {
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
        return m.range.clone();
    }
    let Some(addr) = config.guest_addr else {
        fail!("no guest image: pass it as a module or preload it and give guest_addr=")
    };
    let mut header = [0u8; IMAGE_HEADER_LEN];
    if let Err(e) = mem.read(addr, &mut header) {
        fail!("guest image at {addr:#x}: {e}");
    }
    // Only the header is present so far: check it and take its file length.
    let file_len = u64::from_le_bytes(header[24..32].try_into().unwrap_or([0; 8]));
    let end = addr.checked_add(file_len).unwrap_or(addr);
    let Some(bytes) = (if file_len as usize >= IMAGE_HEADER_LEN {
        // SAFETY: the range is only read here, before any allocator exists.
        unsafe { host_bytes(&(addr..end)) }
    } else {
        None
    }) else {
        fail!("no guest image header at guest_addr={addr:#x}")
    };
    if let Err(e) = ImageHeader::parse(bytes) {
        fail!("guest image at {addr:#x}: {e}");
    }
    addr..end
}

fn report_host(host: &HostMemory) {
    hvprintln!(
        "free RAM for the hypervisor's allocators: {} in {} ranges",
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

/// Guest RAM from the RAM frames and guest NVRAM from the NVRAM frames,
/// mapped with 2 MiB pages by the temporary nested tables.
fn build_guest_memory<const N: usize>(
    layout: &GuestMap<N>,
    format: Format,
    ram_frames: &mut RegionFrames<FREE_CAPACITY>,
    nv_frames: &mut RegionFrames<NVRAM_CAPACITY>,
) -> (GuestMemoryMap, ScaffoldNested) {
    let mut regions = GuestMemoryMap::new();
    let ram = layout
        .ram
        .iter()
        .flatten()
        .map(|r| (r.clone(), Backing::Ram));
    let nvram = layout.nvram.iter().map(|r| (r.clone(), Backing::Nvram));
    for (gpa, backing) in ram.chain(nvram) {
        let len = gpa.end - gpa.start;
        if len % PAGE_2M != 0 || gpa.start % PAGE_2M != 0 {
            fail!("guest {} is not made of whole 2 MiB pages", HexRange(gpa));
        }
        let hpa = match backing {
            Backing::Ram => ram_frames.alloc(len, PAGE_2M),
            Backing::Nvram => nv_frames.alloc(len, PAGE_2M),
        };
        let Some(hpa) = hpa else {
            fail!(
                "no {} host {backing:?} block of {} for guest {}",
                "2 MiB-aligned",
                Size(len),
                HexRange(gpa)
            )
        };
        if backing == Backing::Ram {
            // SAFETY: a fresh block from the RAM allocator. NVRAM keeps its
            // contents: that is its point.
            unsafe { zero_host(hpa, len) };
        }
        hvprintln!(
            "guest {backing:?} {} -> host {}",
            HexRange(gpa.clone()),
            HexRange(hpa..hpa + len)
        );
        if let Err(e) = regions.add(Region { gpa, hpa, backing }) {
            fail!("guest regions: {e}");
        }
    }
    let mut tables = TableFrames::new(ram_frames);
    let mut nested = match ScaffoldNested::new(&mut tables, format) {
        Ok(n) => n,
        Err(e) => fail!("nested tables: {e}"),
    };
    for r in regions.regions() {
        if let Err(e) = nested.map(&mut tables, r.gpa.start, r.hpa, r.gpa.end - r.gpa.start) {
            fail!("nested tables: {e}");
        }
    }
    hvprintln!(
        "nested tables ({format:?}, scaffold, 2 MiB pages): {} paging-structure pages, root {:#x}",
        nested.table_pages(),
        nested.root_pointer()
    );
    (regions, nested)
}

/// Runs the guest to its end; returns whether it passed.
fn run_guest(vcpu: &mut impl Vcpu, spec: &GuestSpec, memory: &GuestMemoryMap) -> bool {
    hvprintln!(
        "starting the guest under {} ({} of guest-physical address space, entry {:#x})",
        vcpu.name(),
        Size(spec.memory_size),
        spec.start.rip
    );
    // The tables were just built: drop any translation cached for this
    // root. The nested-table integration calls this after every change.
    vcpu.invalidate_nested();
    let mem = GuestMem::new(memory);
    let mut console = GuestConsole::new();
    let forward = |line: &str| {
        use core::fmt::Write as _;
        let _ = writeln!(console::Console, "guest: {line}");
    };
    let mut buffer = [0u8; 4096];
    for _ in 0..EXIT_LIMIT {
        let exit = match vcpu.run() {
            Ok(exit) => exit,
            Err(e) => {
                hvprintln!("guest could not run: {e}");
                return false;
            }
        };
        match exit {
            Exit::Hypercall => {
                let call = decode(
                    vcpu.reg(Reg::Rax),
                    vcpu.reg(Reg::Rdi),
                    vcpu.reg(Reg::Rsi),
                    vcpu.reg(Reg::Rdx),
                );
                let result = match call {
                    Ok(Hypercall::ConsoleWrite { gpa, len }) => {
                        let out = &mut buffer[..len as usize];
                        match mem.read(gpa, out) {
                            Ok(()) => {
                                console.push(out, forward);
                                0
                            }
                            Err(_) => -nvirt_hv::guest_abi::EFAULT,
                        }
                    }
                    Ok(Hypercall::Shutdown { arg_gpa }) => {
                        let mut reason = [0u8; 4];
                        match mem.read(arg_gpa, &mut reason) {
                            Ok(()) => {
                                console.flush(forward);
                                let reason = ShutdownReason::from(u32::from_le_bytes(reason));
                                hvprintln!("guest shut down: {reason}");
                                return reason == ShutdownReason::Poweroff && console.passed();
                            }
                            Err(_) => -nvirt_hv::guest_abi::EFAULT,
                        }
                    }
                    Err(errno) => errno,
                };
                vcpu.set_reg(Reg::Rax, result as u64);
                vcpu.skip_instruction();
            }
            Exit::Halt => {
                console.flush(forward);
                hvprintln!(
                    "guest halted at {:#x} without shutting down",
                    vcpu.reg(Reg::Rip)
                );
                return false;
            }
            other => {
                console.flush(forward);
                hvprintln!("guest stopped: {other:x?} at rip {:#x}", vcpu.reg(Reg::Rip));
                return false;
            }
        }
    }
    hvprintln!("guest made more than {EXIT_LIMIT} exits; stopping it");
    false
}

/// A byte count printed with a binary unit.
struct Size(u64);

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
