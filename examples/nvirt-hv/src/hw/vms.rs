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
use nvirt_vmconfig::{OnPoweroff, Populate, VmConfig};

use crate::bootinfo::{BootInfo, FixedString, MODULE_NAME_MAX, Module};
use crate::guest_memory::{GuestMemory, Suspended};
use crate::nested::{Format, NestedConfig};
use crate::nv_frames::NvFrames;
use crate::p2m::P2m;
use crate::pool::FramePool as _;
use crate::ranges::RangeSet;

use super::boot_failure::{BootFailure, MODULE_SHOWN};
use super::console::{hvprintln, set_context};
use super::exits::{Ended, Guest, RunState, Slice, run_slice};
use super::hypervisor::{Size, check_heaps, mark};
use super::io::rdtsc;
use super::mem::{IdentityMemory, host_bytes, p2m_storages};
use super::phases::{self, Heaps, NvramBacking};
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
    /// Whether its domain is destroyed when it powers off.
    pub(crate) destroy_on_poweroff: bool,
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
    boot.modules().any(|m| role(m, CONFIG_WORD).is_some())
}

/// Whether a module's string has the word `word`, and the word after it.
fn role<'m>(module: &'m Module, word: &str) -> Option<Option<&'m str>> {
    module.words_after(word).map(|mut after| after.next())
}

/// The test guest's module (string `nvirt-guest`), for the VMs that name
/// no kernel.
pub(crate) fn test_guest_module(boot: &BootInfo) -> Option<Range<u64>> {
    boot.modules()
        .find(|m| role(m, TEST_GUEST_WORD).is_some())
        .map(|m| m.range.clone())
}

/// The start of a module's string, for a failure to name it by.
fn shown(name: &FixedString<MODULE_NAME_MAX>) -> FixedString<MODULE_SHOWN> {
    let mut out = FixedString::new();
    for b in name.as_bytes() {
        if !out.push_byte(*b) {
            break;
        }
    }
    out
}

/// The VM configurations among the boot modules, parsed and checked as a
/// set, each with its kernel module.
pub(crate) fn find(boot: &BootInfo) -> Result<VmModules, BootFailure> {
    let mut vms: [Option<VmModule>; MAX_VMS] = Default::default();
    let mut configs = [EMPTY; MAX_VMS];
    let mut count = 0;
    for m in boot.modules().filter(|m| role(m, CONFIG_WORD).is_some()) {
        // SAFETY: module ranges are reserved from every heap and never
        // written, so their bytes stay as they are for the whole run.
        let text = unsafe { host_bytes(&m.range) }
            .ok_or(BootFailure::ImageUnreachable(m.range.clone()))?;
        let text = core::str::from_utf8(text).map_err(|e| BootFailure::VmConfigText {
            module: shown(&m.name),
            at: e.valid_up_to(),
        })?;
        let config = VmConfig::parse(text).map_err(|error| BootFailure::VmConfig {
            module: shown(&m.name),
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
            .find(|m| role(m, KERNEL_WORD) == Some(Some(config.name)))
            .map(|m| m.range.clone());
        if config.kernel.is_some() && kernel.is_none() {
            return Err(BootFailure::VmKernelMissing(config.name));
        }
        *slot = Some(VmModule {
            config: *config,
            kernel,
            destroy_on_poweroff: config.on_poweroff == OnPoweroff::Destroy,
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
    on_poweroff: OnPoweroff::Preserve,
};

/// Where a guest is in its life.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// It gets time slices.
    Runnable,
    /// Its first touch of NVRAM found the pool empty; it gets slices again
    /// when the pool has more free frames than `free`.
    Paused {
        /// Free frames of the pool when it paused.
        free: u64,
    },
    /// It is done.
    Ended(Ended),
}

/// One guest of the run.
struct Vm<V> {
    name: &'static str,
    vcpu: V,
    state: RunState,
    dom: Option<Dom>,
    /// Its memory between slices (`None` while it runs and once it ended).
    memory: Option<Suspended<'static, IdentityMemory>>,
    /// Once it ended: its map, its NVRAM extents only (its RAM and tables
    /// went back to the heap).
    ended_map: Option<P2m<'static>>,
    phase: Phase,
    /// Destroy its domain (scrubbing its NVRAM) when it powers off.
    destroy: bool,
    /// Its configured NVRAM balloon target (`nvram_target`), in pages; the
    /// target it reads may be lower while another VM waits for frames.
    target: Option<u64>,
    /// Whether it ever waited for frames (then lenders get theirs back only
    /// once it ended).
    waited: bool,
    slices: u64,
    /// TSC ticks spent in its slices.
    ticks: u64,
    /// TSC ticks of its NVRAM commits (each first touch commits once).
    commit_ticks: u64,
}

/// The host NVRAM of destroyed domains, for the report of who got it next.
type Freed = RangeSet<64>;

/// TSC ticks per microsecond, when the slice was measured.
#[derive(Clone, Copy, Debug)]
struct TscRate(Option<u64>);

impl TscRate {
    fn micros(self, ticks: u64) -> Option<u64> {
        self.0.filter(|&r| r > 0).map(|r| ticks / r)
    }
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
    let rate = TscRate(slice.tsc.map(|t| t / slice.us.max(1)));
    // What the guests take of the volatile heap must all come back.
    let ram_free = heaps.ram.free_frames();
    let mut vms: [Option<Vm<V>>; MAX_VMS] = Default::default();
    for (slot, module) in vms.iter_mut().zip(modules.iter()) {
        let storage = storages.next().ok_or(BootFailure::P2mStorage)?;
        set_context(Some(module.config.name));
        let start = rdtsc();
        let vm = build(
            module, test_image, heaps, nested, storage, slice.tsc, new_vcpu,
        );
        if vm.is_ok() {
            let took = rdtsc().wrapping_sub(start);
            match rate.micros(took) {
                Some(us) => hvprintln!("started in {us} µs ({took} TSC ticks)"),
                None => hvprintln!("started in {took} TSC ticks"),
            }
        }
        set_context(None);
        *slot = Some(vm?);
    }
    let mut freed = Freed::new();
    loop {
        let free = heaps.nv_free_frames();
        let mut ran = false;
        let mut pressure = 0u64;
        let mut waiting = false;
        for vm in vms.iter_mut().flatten() {
            match vm.phase {
                Phase::Ended(_) => continue,
                Phase::Paused { free: then } if free <= then => {
                    waiting = true;
                    continue;
                }
                Phase::Paused { .. } => {
                    set_context(Some(vm.name));
                    hvprintln!("resumed: the pool has {} free again", Size(free * 4096));
                    set_context(None);
                    vm.phase = Phase::Runnable;
                }
                Phase::Runnable => {}
            }
            ran = true;
            run_one_slice(vm, heaps, &mut freed)?;
            if let Phase::Ended(_) = vm.phase {
                release(vm, heaps);
            }
            if let Phase::Paused { .. } = vm.phase {
                pressure += 1;
            }
        }
        // Frames lent to VMs that wait go back to the lenders once every
        // VM that waited has ended.
        let borrowers = vms
            .iter()
            .flatten()
            .any(|v| v.waited && !matches!(v.phase, Phase::Ended(_)));
        if pressure > 0 {
            lower_targets(&mut vms, pressure);
        } else if !borrowers {
            let free = heaps.nv_free_frames();
            restore_targets(&mut vms, free);
        }
        if !ran {
            if waiting {
                // Every guest left waits for frames only another could free.
                for vm in vms.iter_mut().flatten() {
                    if let Phase::Paused { .. } = vm.phase {
                        set_context(Some(vm.name));
                        hvprintln!(
                            "still paused, and no running VM is left to free frames: stopped"
                        );
                        set_context(None);
                        vm.phase = Phase::Ended(Ended::default());
                        release(vm, heaps);
                    }
                }
            }
            break;
        }
    }
    timer::stop();
    let ram_back = check_ram_back::<V>(heaps, ram_free);
    Ok(report(&vms, heaps, &freed, rate) && ram_back)
}

/// A VM that ended gives back all it held of the volatile heap: its vCPU's
/// control structures (once the CPU dropped what it caches of the guest),
/// then its RAM and its nested tables. Its NVRAM stays with its domain.
fn release<V: Vcpu>(vm: &mut Vm<V>, heaps: &mut Heaps) {
    let Some(parts) = vm.memory.take() else {
        return;
    };
    set_context(Some(vm.name));
    let control = vm.vcpu.release(&mut heaps.ram);
    let guest: Guest<'_, '_> = GuestMemory::resume(parts, &mut heaps.ram, None);
    let released = guest.release_ram();
    hvprintln!(
        "gave back to the heap: {} of RAM, {} of nested tables, {} of control structures",
        Size(released.ram_frames * 4096),
        Size(released.table_frames * 4096),
        Size(control * 4096)
    );
    if released.refused > 0 {
        hvprintln!(
            "the heap refused {} of its RAM as not allocated",
            Size(released.refused * 4096)
        );
    }
    vm.ended_map = Some(released.p2m);
    set_context(None);
}

/// After every VM ended and the backend left virtualization: whether the
/// volatile heap has every frame back that it had before the first VM.
fn check_ram_back<V: Vcpu>(heaps: &mut Heaps, before: u64) -> bool {
    let _ = V::leave(&mut heaps.ram);
    let now = heaps.ram.free_frames();
    if now == before {
        hvprintln!(
            "RAM: every frame the VMs took is back in the heap ({} free, as before the first VM)",
            Size(now * 4096)
        );
        true
    } else {
        hvprintln!(
            "RAM: FAILED: the heap has {} free after the VMs, {} before the first",
            Size(now * 4096),
            Size(before * 4096)
        );
        false
    }
}

/// The extents of `vm`'s map: all while it lives, its NVRAM once it ended.
fn extents<V>(vm: &Vm<V>) -> &[crate::p2m::BlockMapping] {
    match (&vm.memory, &vm.ended_map) {
        (Some(m), _) => m.extents(),
        (None, Some(map)) => map.extents(),
        (None, None) => &[],
    }
}

/// Frames a VM's NVRAM target drops by for each VM that paused for frames
/// in a round: one 2 MiB block.
const RECLAIM_PAGES: u64 = 512;

/// VMs wait for frames: the running VM with the highest NVRAM target
/// that has followed it (holds no more than it) is asked, through its
/// target, to give `waiting` blocks more back.
fn lower_targets<V>(vms: &mut [Option<Vm<V>>], waiting: u64) {
    let donor = vms
        .iter_mut()
        .flatten()
        .filter(|v| matches!(v.phase, Phase::Runnable))
        .filter_map(|v| {
            let target = v.state.nvram_target().filter(|&t| t > 0)?;
            (nvram_held(v) <= target).then_some((target, v))
        })
        .max_by_key(|(t, _)| *t);
    let Some((now, vm)) = donor else {
        return;
    };
    let lowered = now.saturating_sub(RECLAIM_PAGES * waiting);
    vm.state.set_nvram_target(Some(lowered));
    set_context(Some(vm.name));
    hvprintln!(
        "NVRAM target lowered from {} to {}: {waiting} VM(s) wait for frames",
        Size(now * 4096),
        Size(lowered * 4096)
    );
    set_context(None);
}

/// No VM waits: every lowered target goes back up to its configured value
/// as far as the pool's `free` frames allow.
fn restore_targets<V>(vms: &mut [Option<Vm<V>>], mut free: u64) {
    for vm in vms.iter_mut().flatten() {
        if !matches!(vm.phase, Phase::Runnable) {
            continue;
        }
        let (Some(now), Some(configured)) = (vm.state.nvram_target(), vm.target) else {
            continue;
        };
        if now >= configured || free == 0 {
            continue;
        }
        let raised = configured.min(now + free);
        free -= raised - now;
        vm.state.set_nvram_target(Some(raised));
        set_context(Some(vm.name));
        hvprintln!(
            "NVRAM target raised from {} to {}: frames came back",
            Size(now * 4096),
            Size(raised * 4096)
        );
        set_context(None);
    }
}

/// Creates one VM: its map, its domain, its memory backed (its NVRAM now
/// or on first touch) and its image loaded, its vCPU.
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
    let thin = c.nvram_populate == Populate::Touch;
    let dom = match heaps.pool.as_mut() {
        Some(pool) => super::nvram::attach_guest(pool, c.domain_id(), c.name, &layout, thin)?,
        None => None,
    };
    if c.nvram > 0 && dom.is_none() {
        return Err(BootFailure::NoNvram);
    }
    let mut frames = match (heaps.pool.as_mut(), dom) {
        (Some(pool), Some(d)) => Some(NvFrames::new(pool, d)),
        _ => None,
    };
    let backing = if thin {
        NvramBacking::OnTouch
    } else {
        NvramBacking::Eager
    };
    let mut guest = phases::guest_memory(
        nested,
        &mut heaps.ram,
        frames.as_mut(),
        storage,
        &layout,
        backing,
    )?;
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
    // What the guest may balloon up to: its whole map, thin NVRAM included.
    let initial_pages = (c.memory + c.nvram) / 4096;
    let mut vcpu = new_vcpu(guest.heap(), &spec).map_err(BootFailure::Vcpu)?;
    vcpu.set_halt_exits(spec.kind == GuestKind::Test);
    vcpu.set_time_slice(slice_tsc);
    let mut state = RunState::new(&spec, &layout, initial_pages, heaps.max_ram_page);
    state.set_thin(thin);
    let target = (c.nvram > 0).then_some(c.nvram_target / 4096);
    state.set_nvram_target(target);
    state.start(&mut vcpu, &spec);
    Ok(Vm {
        name: c.name,
        vcpu,
        state,
        dom,
        memory: Some(guest.suspend()),
        ended_map: None,
        phase: Phase::Runnable,
        destroy: module.destroy_on_poweroff,
        target,
        waited: false,
        slices: 0,
        ticks: 0,
        commit_ticks: 0,
    })
}

/// Runs one VM's time slice and deals with how it ended.
fn run_one_slice<V: Vcpu>(
    vm: &mut Vm<V>,
    heaps: &mut Heaps,
    freed: &mut Freed,
) -> Result<(), BootFailure> {
    let Some(parts) = vm.memory.take() else {
        return Err(BootFailure::P2mStorage);
    };
    set_context(Some(vm.name));
    let mut frames = match (heaps.pool.as_mut(), vm.dom) {
        (Some(pool), Some(d)) => Some(NvFrames::new(pool, d).timed(rdtsc)),
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
    vm.commit_ticks += guest.nvram_pool_ref().map_or(0, NvFrames::commit_ticks);
    match outcome {
        Slice::Preempted => {
            let _ = timer::acknowledge();
        }
        Slice::Paused => {
            let free = guest.nvram_pool_ref().map_or(0, |f| f.free_frames());
            hvprintln!(
                "paused: its first touch of NVRAM found the pool with {} free; the other VMs run on",
                Size(free * 4096)
            );
            vm.phase = Phase::Paused { free };
            vm.waited = true;
        }
        Slice::Ended(ended) => {
            if ended.powered_off {
                mark(&mut guest, vm.name, false);
                if vm.destroy {
                    destroy(&mut guest, vm.name, freed);
                }
            }
            hvprintln!(
                "ended ({}); the other VMs run on",
                if ended.passed { "passed" } else { "FAILED" }
            );
            vm.phase = Phase::Ended(ended);
        }
    }
    vm.memory = Some(guest.suspend());
    set_context(None);
    Ok(())
}

/// `on_poweroff = "destroy"`: the domain and its NVRAM are gone, every
/// frame scrubbed before the pool may hand it out again.
fn destroy(guest: &mut Guest<'_, '_>, name: &str, freed: &mut Freed) {
    let (mut held, mut untracked) = (0u64, 0u64);
    for e in guest
        .extents()
        .iter()
        .filter(|e| e.kind() == MemKind::NonVolatile)
    {
        let host = e.block().phys();
        held += e.block().frames();
        if freed.insert(host.start().get()..host.end().get()).is_err() {
            untracked += e.block().frames();
        }
    }
    if untracked > 0 {
        hvprintln!(
            "{} of the destroyed NVRAM lies beyond the ranges the report keeps: who gets it next is under-counted",
            Size(untracked * 4096)
        );
    }
    let Some(frames) = guest.nvram_pool() else {
        return;
    };
    let dom = frames.dom();
    match frames.pool().destroy(dom) {
        Ok(()) => hvprintln!(
            "nvpool: domain {name:?} destroyed (on_poweroff = \"destroy\"): {} of NVRAM scrubbed and free",
            Size(held * 4096)
        ),
        Err(e) => hvprintln!("nvpool: destroying domain {name:?}: {e}"),
    }
}

/// Each VM's outcome, share of the CPU and first-touch costs; whether all
/// passed and the pool is consistent.
fn report<V>(vms: &[Option<Vm<V>>], heaps: &Heaps, freed: &Freed, rate: TscRate) -> bool {
    let total: u64 = vms.iter().flatten().map(|v| v.ticks).sum::<u64>().max(1);
    let mut all = true;
    for vm in vms.iter().flatten() {
        let passed = matches!(vm.phase, Phase::Ended(e) if e.passed);
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
        let t = vm.state.touch;
        if let Some(per) = t.ticks.checked_div(t.faults) {
            let commit = vm.commit_ticks * 100 / t.ticks.max(1);
            match rate.micros(per) {
                Some(us) => hvprintln!(
                    "vm {}: {} first-touch faults backed {}, {us} µs each to resume ({per} TSC ticks), {commit}% of it in the pool's commit",
                    vm.name,
                    t.faults,
                    Size(t.frames * 4096)
                ),
                None => hvprintln!(
                    "vm {}: {} first-touch faults backed {}, {per} TSC ticks each to resume, {commit}% of it in the pool's commit",
                    vm.name,
                    t.faults,
                    Size(t.frames * 4096)
                ),
            }
        }
        if !freed.is_empty() {
            let reused = nvram_reused(vm, freed);
            if reused > 0 {
                hvprintln!(
                    "vm {}: {} of its NVRAM was a destroyed domain's, scrubbed before it came here",
                    vm.name,
                    Size(reused * 4096)
                );
            }
        }
    }
    check_heaps(heaps, "the guests") && all
}

/// Frames of NVRAM `vm` holds.
fn nvram_held<V>(vm: &Vm<V>) -> u64 {
    extents(vm)
        .iter()
        .filter(|e| e.kind() == MemKind::NonVolatile)
        .map(|e| e.block().frames())
        .sum()
}

/// Frames of `vm`'s NVRAM now backed by host frames a destroyed domain held.
fn nvram_reused<V>(vm: &Vm<V>, freed: &Freed) -> u64 {
    if matches!(vm.phase, Phase::Ended(e) if e.powered_off) && vm.destroy {
        return 0;
    }
    extents(vm)
        .iter()
        .filter(|e| e.kind() == MemKind::NonVolatile)
        .map(|e| {
            let host = e.block().phys();
            freed.overlap(&(host.start().get()..host.end().get())) / 4096
        })
        .sum()
}
