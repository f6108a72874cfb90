//! Several guests at once, each from a VM configuration file given as a
//! boot module (`vmcfg NAME`; its image `vmkernel NAME`, or the test guest
//! `nvirt-guest`): each with its own vCPU, nested tables, map and domain in
//! the shared NV pool, run round robin on the one physical CPU in time
//! slices the PIT cuts ([`super::timer`]).
//!
//! A guest's end — shutdown, a crash, a triple fault, a touch outside its
//! map — ends that guest alone: its domain is marked as the end leaves it,
//! its verdict printed, and the others run on. The hypervisor's verdict is
//! PASS when every guest passed.

use core::ops::Range;

use nvirt_buddy::MemKind;
use nvirt_hypercall_abi::protocol::GuestParams;
use nvirt_nvpool::Dom;
use nvirt_vmconfig::{Populate, VmConfig};

use crate::bootinfo::{BootInfo, FixedString, MODULE_NAME_MAX};
use crate::guest_memory::{GuestMemory, Suspended};
use crate::nested::{Format, NestedConfig};
use crate::nv_frames::NvFrames;

use super::boot_failure::BootFailure;
use super::console::{hvprintln, set_context};
use super::exits::{Ended, RunState, Slice, run_slice};
use super::hypervisor::{Size, check_pool, mark};
use super::io::rdtsc;
use super::mem::{IdentityMemory, host_bytes, p2m_storages};
use super::phases::{self, Heaps};
use super::svm::SvmVcpu;
use super::timer;
use super::vcpu::{GuestKind, GuestSpec, Vcpu, VmError};
use super::vmx::VmxVcpu;

/// Most guests one boot runs.
pub(crate) const MAX_VMS: usize = 8;
/// The time slice asked of the PIT, in microseconds.
const SLICE_US: u64 = 2_000;
/// The module-string word of a VM configuration.
const CONFIG_WORD: &str = "vmcfg";
/// The module-string word of a VM's own kernel.
const KERNEL_WORD: &str = "vmkernel";
/// The module-string word of the test guest's image.
const TEST_GUEST_WORD: &str = "nvirt-guest";

/// One VM as the boot modules give it.
pub(crate) struct VmModule {
    /// Its parsed configuration (the text lives in the module, reserved
    /// from every heap for the whole run).
    pub(crate) config: VmConfig<'static>,
    /// Its kernel module, if its configuration names one.
    pub(crate) kernel: Option<Range<u64>>,
}

/// The VMs of a boot, in module order.
pub(crate) struct VmModules {
    vms: [Option<VmModule>; MAX_VMS],
}

impl VmModules {
    /// The VMs.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &VmModule> {
        self.vms.iter().flatten()
    }

    /// How many.
    pub(crate) fn len(&self) -> usize {
        self.iter().count()
    }
}

/// Whether the boot modules describe VMs (any `vmcfg` module).
pub(crate) fn present(boot: &BootInfo) -> bool {
    boot.modules().any(|m| role(&m.name, CONFIG_WORD).is_some())
}

/// Whether a module string has the word `word` (QEMU's Multiboot1 modules
/// put the file's path first, GRUB's `module2` does not), and the word
/// after it.
fn role<'n>(name: &'n FixedString<MODULE_NAME_MAX>, word: &str) -> Option<Option<&'n str>> {
    let mut words = name.as_str().split_ascii_whitespace();
    words.by_ref().find(|w| *w == word)?;
    Some(words.next())
}

/// The test guest's module (string `nvirt-guest`), for the VMs that name
/// no kernel.
pub(crate) fn test_guest_module(boot: &BootInfo) -> Option<Range<u64>> {
    boot.modules()
        .find(|m| role(&m.name, TEST_GUEST_WORD).is_some())
        .map(|m| m.range.clone())
}

/// The VM configurations among the boot modules, parsed and checked as a
/// set, each with its kernel module.
pub(crate) fn find(boot: &BootInfo) -> Result<VmModules, BootFailure> {
    let mut vms: [Option<VmModule>; MAX_VMS] = Default::default();
    let mut configs = [EMPTY; MAX_VMS];
    let mut count = 0;
    for m in boot
        .modules()
        .filter(|m| role(&m.name, CONFIG_WORD).is_some())
    {
        // SAFETY: module ranges are reserved from every heap and never
        // written, so their bytes stay as they are for the whole run.
        let text = unsafe { host_bytes(&m.range) }
            .ok_or(BootFailure::ImageUnreachable(m.range.clone()))?;
        let text = core::str::from_utf8(text).map_err(|e| BootFailure::VmConfigText {
            module: m.name.clone(),
            at: e.valid_up_to(),
        })?;
        let config = VmConfig::parse(text).map_err(|error| BootFailure::VmConfig {
            module: m.name.clone(),
            error,
        })?;
        let slot = configs
            .get_mut(count)
            .ok_or(BootFailure::TooManyVms(MAX_VMS))?;
        *slot = config;
        count += 1;
    }
    let configs = &configs[..count];
    nvirt_vmconfig::check_set(configs).map_err(BootFailure::VmSet)?;
    for (slot, config) in vms.iter_mut().zip(configs) {
        let kernel = boot
            .modules()
            .find(|m| role(&m.name, KERNEL_WORD) == Some(Some(config.name)))
            .map(|m| m.range.clone());
        if config.kernel.is_some() && kernel.is_none() {
            return Err(BootFailure::VmKernelMissing(config.name));
        }
        *slot = Some(VmModule {
            config: *config,
            kernel,
        });
    }
    Ok(VmModules { vms })
}

/// What the configuration array holds before the modules fill it.
const EMPTY: VmConfig<'static> = VmConfig {
    name: "",
    uuid: None,
    memory: 0,
    nvram: 0,
    nvram_kind: nvirt_e820::Kind::Pmem,
    nvram_file: None,
    nvram_target: 0,
    nvram_populate: Populate::Eager,
    kernel: None,
    ramdisk: None,
    cmdline: None,
};

/// One guest of the run.
struct Vm<V> {
    name: &'static str,
    vcpu: V,
    state: RunState,
    dom: Option<Dom>,
    /// Its memory between slices (`None` only while it runs).
    memory: Option<Suspended<'static, IdentityMemory>>,
    ended: Option<Ended>,
    slices: u64,
    /// TSC ticks spent in its slices.
    ticks: u64,
}

/// Builds every VM, then runs them round robin until all have ended;
/// whether all passed and the pool checks out.
pub(crate) fn run(
    vms: &VmModules,
    test_image: Option<&Range<u64>>,
    heaps: &mut Heaps,
    nested: &NestedConfig,
) -> Result<bool, BootFailure> {
    match nested.format {
        Format::Npt => run_with(vms, test_image, heaps, nested, SvmVcpu::new),
        Format::Ept => run_with(vms, test_image, heaps, nested, VmxVcpu::new),
    }
}

fn run_with<V: Vcpu>(
    modules: &VmModules,
    test_image: Option<&Range<u64>>,
    heaps: &mut Heaps,
    nested: &NestedConfig,
    new_vcpu: fn(&mut nvirt_buddy::Heap<'static>, &GuestSpec) -> Result<V, VmError>,
) -> Result<bool, BootFailure> {
    let count = modules.len();
    hvprintln!("{count} VMs from configuration modules");
    let mut storages = p2m_storages(count).ok_or(BootFailure::P2mStorage)?;
    let slice = timer::start(SLICE_US);
    match slice.tsc {
        Some(tsc) => hvprintln!(
            "scheduler: {count} VMs round robin, time slice {} µs ({tsc} TSC ticks)",
            slice.us
        ),
        None => hvprintln!(
            "scheduler: {count} VMs round robin, time slice {} µs (TSC rate unknown: the PIT did not count)",
            slice.us
        ),
    }
    let mut vms: [Option<Vm<V>>; MAX_VMS] = Default::default();
    for (slot, module) in vms.iter_mut().zip(modules.iter()) {
        let storage = storages.next().ok_or(BootFailure::P2mStorage)?;
        set_context(Some(module.config.name));
        let vm = build(
            module, test_image, heaps, nested, storage, slice.tsc, new_vcpu,
        );
        set_context(None);
        *slot = Some(vm?);
    }
    let mut live = count;
    while live > 0 {
        for vm in vms.iter_mut().flatten().filter(|v| v.ended.is_none()) {
            if run_one_slice(vm, heaps)? {
                live -= 1;
            }
        }
    }
    timer::stop();
    Ok(report(&vms, heaps))
}

/// Creates one VM: its map, its domain, its memory backed and its image
/// loaded, its vCPU.
fn build<V: Vcpu>(
    module: &VmModule,
    test_image: Option<&Range<u64>>,
    heaps: &mut Heaps,
    nested: &NestedConfig,
    storage: &'static mut [crate::p2m::BlockMapping],
    slice_tsc: Option<u64>,
    new_vcpu: fn(&mut nvirt_buddy::Heap<'static>, &GuestSpec) -> Result<V, VmError>,
) -> Result<Vm<V>, BootFailure> {
    let c = &module.config;
    if module.kernel.is_some() {
        return Err(BootFailure::VmLinux(c.name));
    }
    let image = test_image.ok_or(BootFailure::NoGuestImage)?;
    // SAFETY: the image module is reserved from both heaps and nothing
    // writes it.
    let image_bytes =
        unsafe { host_bytes(image) }.ok_or(BootFailure::ImageUnreachable(image.clone()))?;
    let layout = phases::layout_of(c.memory, c.nvram, c.nvram_kind)?;
    let dom = match heaps.pool.as_mut() {
        Some(pool) => super::nvram::attach_guest(pool, c.domain_id(), c.name, &layout)?,
        None => None,
    };
    if c.nvram > 0 && dom.is_none() {
        return Err(BootFailure::NoNvram);
    }
    let mut frames = match (heaps.pool.as_mut(), dom) {
        (Some(pool), Some(d)) => Some(NvFrames::new(pool, d)),
        _ => None,
    };
    let mut guest =
        phases::guest_memory(nested, &mut heaps.ram, frames.as_mut(), storage, &layout)?;
    let params = GuestParams {
        ram: c.memory,
        nvram: c.nvram,
        nv_type: c.nvram_kind.raw(),
    };
    let loaded = phases::load_test_guest(
        &mut guest,
        image_bytes,
        params,
        c.cmdline.unwrap_or(""),
        &layout,
    )?;
    mark(&mut guest, c.name, true);
    let spec = loaded.spec;
    let initial_pages = guest.frames(MemKind::Volatile) + guest.frames(MemKind::NonVolatile);
    let mut vcpu = new_vcpu(guest.heap(), &spec).map_err(BootFailure::Vcpu)?;
    vcpu.set_halt_exits(spec.kind == GuestKind::Test);
    vcpu.set_time_slice(slice_tsc);
    let mut state = RunState::new(&spec, &layout, initial_pages, heaps.max_ram_page);
    state.start(&mut vcpu, &spec);
    Ok(Vm {
        name: c.name,
        vcpu,
        state,
        dom,
        memory: Some(guest.suspend()),
        ended: None,
        slices: 0,
        ticks: 0,
    })
}

/// Runs one VM's time slice; whether it ended in it.
fn run_one_slice<V: Vcpu>(vm: &mut Vm<V>, heaps: &mut Heaps) -> Result<bool, BootFailure> {
    let Some(parts) = vm.memory.take() else {
        return Err(BootFailure::P2mStorage);
    };
    set_context(Some(vm.name));
    let mut frames = match (heaps.pool.as_mut(), vm.dom) {
        (Some(pool), Some(d)) => Some(NvFrames::new(pool, d)),
        _ => None,
    };
    let mut guest = GuestMemory::resume(parts, &mut heaps.ram, frames.as_mut());
    let start = rdtsc();
    let outcome = match vm.vcpu.activate() {
        Ok(()) => run_slice(&mut vm.vcpu, &mut guest, &mut vm.state),
        Err(e) => {
            hvprintln!("guest could not be made current: {e}");
            Slice::Ended(Ended::default())
        }
    };
    vm.ticks += rdtsc().wrapping_sub(start);
    vm.slices += 1;
    let ended = match outcome {
        Slice::Preempted => {
            let _ = timer::acknowledge();
            false
        }
        Slice::Ended(ended) => {
            if ended.powered_off {
                mark(&mut guest, vm.name, false);
            }
            hvprintln!(
                "ended ({}); the other VMs run on",
                if ended.passed { "passed" } else { "FAILED" }
            );
            vm.ended = Some(ended);
            true
        }
    };
    vm.memory = Some(guest.suspend());
    set_context(None);
    Ok(ended)
}

/// Each VM's outcome and share of the CPU; whether all passed and the pool
/// is consistent.
fn report<V>(vms: &[Option<Vm<V>>], heaps: &Heaps) -> bool {
    let total: u64 = vms.iter().flatten().map(|v| v.ticks).sum::<u64>().max(1);
    let mut all = true;
    for vm in vms.iter().flatten() {
        let passed = vm.ended.is_some_and(|e| e.passed);
        all &= passed;
        hvprintln!(
            "vm {}: {}, {} slices, {} exits, {}.{}% of the guests' CPU time",
            vm.name,
            if passed { "passed" } else { "FAILED" },
            vm.slices,
            vm.state.exits(),
            vm.ticks * 100 / total,
            vm.ticks * 1000 / total % 10
        );
    }
    let pool_ok = heaps.pool.as_ref().is_none_or(check_pool);
    hvprintln!(
        "heaps after the guests: volatile {} free, NV pool {} free",
        Size(heaps.ram.free_frames() * 4096),
        Size(
            heaps
                .pool
                .as_ref()
                .map_or(0, |p| p.stats().free_frames * 4096)
        )
    );
    all && pool_ok
}
