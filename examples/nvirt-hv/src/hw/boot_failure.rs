//! Why the boot stopped, in the words the console has always used: each
//! phase's error, wrapping the typed error of the crate that refused.

use core::fmt;
use core::ops::Range;

use nvirt_buddy::MemKind;
use nvirt_e820::{MapError, MemmapError, SynthError};
use nvirt_ept::NewError;
use nvirt_hypercall_abi::protocol::ImageError;
use nvirt_nvpool::InvariantError;

use nvirt_vmconfig::{ParseError, SetError};

use crate::bootinfo::{BootError, FixedString};
use crate::config::{ConfigError, GUEST_NAME};
use crate::guest_memory::MemoryError;
use crate::guest_setup::SetupError;
use crate::heaps::HeapError;
use crate::host_memory::PlanError;
use crate::linux::load::LinuxLoadError;
use crate::nv_boot::{AttachError, OpenError};
use crate::phys::PhysError;
use crate::ranges::{HexRange, RangeSetFull};

use super::vcpu::VmError;

/// Bytes of a module's string a failure keeps (the rest is cut).
pub(crate) const MODULE_SHOWN: usize = 40;

/// Why the boot stopped.
#[derive(Debug)]
pub(crate) enum BootFailure {
    /// The boot information could not be read.
    BootInfo(BootError),
    /// The command line is wrong.
    Config(ConfigError),
    /// The NFIT's persistent-memory ranges do not fit the host map.
    NfitRanges(MapError),
    /// A `memmap=` or `mem=` item cannot be applied.
    Memmap(MemmapError),
    /// Neither a module nor `guest_addr=` gives a guest image.
    NoGuestImage,
    /// The image at `guest_addr=` cannot be read.
    GuestImageUnreadable(u64, PhysError),
    /// No header at `guest_addr=`.
    NoGuestImageHeader(u64),
    /// The image at `guest_addr=` is refused.
    GuestImage(u64, ImageError),
    /// Too many reserved ranges.
    Reserved(RangeSetFull),
    /// Free RAM and NVRAM could not be worked out.
    HostMemory(PlanError),
    /// Memory above the identity map could not be dropped.
    Clip,
    /// The heaps could not be laid out.
    HeapPlan(HeapError),
    /// A heap's metadata is not addressable.
    HeapMetadata(MemKind, Range<u64>),
    /// A heap could not be built.
    Heap(MemKind, HeapError),
    /// The NVRAM range is not addressable as persistent memory.
    NvramUnaddressable(Range<u64>),
    /// An NVRAM range starts beyond the 52-bit physical address space.
    NvramBeyondPhysical(Range<u64>),
    /// The NV pool's geometry for the NVRAM range cannot be worked out.
    PoolGeometry(Range<u64>, OpenError),
    /// No RAM for the NV pool's work area.
    PoolWorkArea(HeapError),
    /// The work area is not addressable.
    PoolWorkAreaUnreachable(Range<u64>),
    /// The NV pool on the NVRAM can be neither recovered nor formatted.
    PoolOpen(Range<u64>, OpenError),
    /// The NV pool fails its consistency check.
    PoolCheck(InvariantError),
    /// The guest's domain cannot be found or created.
    Attach(AttachError),
    /// The CPU has neither SVM nor VMX.
    NoVirtualization(VmError, VmError),
    /// The guest's map could not be synthesized.
    Layout(SynthError),
    /// The guest was configured with NVRAM the machine lacks.
    NoNvram,
    /// The guest map's static storage was taken twice.
    P2mStorage,
    /// The nested tables could not be created.
    Tables(NewError),
    /// Backing the guest's RAM failed.
    GuestRam(Range<u64>, MemoryError),
    /// Mapping the NVRAM its domain holds again failed.
    Reattach(Range<u64>, MemoryError),
    /// Backing the rest of the guest's NVRAM failed.
    GuestNvram(Range<u64>, MemoryError),
    /// The tables built are not minimal.
    NotMinimal,
    /// The guest image is not addressable.
    ImageUnreachable(Range<u64>),
    /// The guest's command line does not fit its room.
    CmdlineTooLong,
    /// The guest could not be laid out in its memory.
    Setup(SetupError),
    /// The Linux guest could not be put in place.
    Linux(LinuxLoadError),
    /// The SVM backend refused.
    Svm(VmError),
    /// The VMX backend refused.
    Vmx(VmError),
    /// A VM's vCPU could not be created.
    Vcpu(VmError),
    /// A VM configuration module is not UTF-8 text.
    VmConfigText {
        /// The module's string.
        module: FixedString<MODULE_SHOWN>,
        /// Bytes of valid text before the first invalid one.
        at: usize,
    },
    /// A VM configuration module does not parse.
    VmConfig {
        /// The module's string.
        module: FixedString<MODULE_SHOWN>,
        /// Why, and on which line.
        error: ParseError<'static>,
    },
    /// The VM configurations cannot run together.
    VmSet(SetError<'static>),
    /// More VM configurations than the hypervisor runs at once.
    TooManyVms(usize),
    /// A VM's configuration names a kernel no module carries.
    VmKernelMissing(&'static str),
    /// A VM's kernel is a Linux guest, which runs only alone.
    VmLinux(&'static str),
}

impl fmt::Display for BootFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BootInfo(e) => write!(f, "boot information: {e}"),
            Self::Config(e) => write!(f, "{e}"),
            Self::NfitRanges(e) => write!(f, "NFIT ranges: {e}"),
            Self::Memmap(e) => write!(f, "memmap=: {e}"),
            Self::NoGuestImage => f.write_str(
                "no guest image: pass it as a module or preload it and give guest_addr=",
            ),
            Self::GuestImageUnreadable(addr, e) => write!(f, "guest image at {addr:#x}: {e}"),
            Self::NoGuestImageHeader(addr) => {
                write!(f, "no guest image header at guest_addr={addr:#x}")
            }
            Self::GuestImage(addr, e) => write!(f, "guest image at {addr:#x}: {e}"),
            Self::NvramUnaddressable(r) => write!(
                f,
                "NVRAM {} is not addressable as persistent memory",
                HexRange(r.clone())
            ),
            Self::NvramBeyondPhysical(r) => write!(
                f,
                "NVRAM {} lies beyond the physical address space",
                HexRange(r.clone())
            ),
            Self::PoolGeometry(r, e) => write!(f, "NV pool on NVRAM {}: {e}", HexRange(r.clone())),
            Self::PoolWorkArea(e) => write!(f, "NV pool work area: {e}"),
            Self::PoolWorkAreaUnreachable(r) => {
                write!(f, "NV pool work area {} unreachable", HexRange(r.clone()))
            }
            Self::PoolOpen(r, e) => write!(f, "nvpool: NVRAM {}: {e}", HexRange(r.clone())),
            Self::PoolCheck(e) => write!(f, "nvpool: consistency check: {e}"),
            Self::Attach(e) => write!(f, "nvpool: guest {GUEST_NAME:?}: {e}"),
            Self::Reserved(e) => write!(f, "reserved ranges: {e}"),
            Self::HostMemory(e) => write!(f, "{e}"),
            Self::Clip => f.write_str("clipping memory to the identity map"),
            Self::HeapPlan(e) => write!(f, "heaps: {e}"),
            Self::HeapMetadata(kind, r) => {
                write!(
                    f,
                    "{kind} heap metadata {} unreachable",
                    HexRange(r.clone())
                )
            }
            Self::Heap(kind, e) => write!(f, "{kind} heap: {e}"),
            Self::NoVirtualization(a, i) => write!(f, "no hardware virtualization: {a}; {i}"),
            Self::Layout(e) => write!(f, "guest layout: {e}"),
            Self::NoNvram => f.write_str("the guest has NVRAM but the machine has none"),
            Self::P2mStorage => f.write_str("the guest map's storage is taken"),
            Self::Tables(e) => write!(f, "nested tables: {e}"),
            Self::GuestRam(r, e) => write!(f, "guest RAM {}: {e}", HexRange(r.clone())),
            Self::Reattach(r, e) => {
                write!(f, "guest NVRAM {}: re-attaching: {e}", HexRange(r.clone()))
            }
            Self::GuestNvram(r, e) => write!(f, "guest NVRAM {}: {e}", HexRange(r.clone())),
            Self::NotMinimal => f.write_str("the guest's tables are not minimal"),
            Self::ImageUnreachable(r) => {
                write!(f, "guest image {} is not addressable", HexRange(r.clone()))
            }
            Self::CmdlineTooLong => f.write_str("guest command line too long"),
            Self::Setup(e) => write!(f, "guest setup: {e}"),
            Self::Linux(e) => write!(f, "Linux guest: {e}"),
            Self::Svm(e) => write!(f, "SVM: {e}"),
            Self::Vmx(e) => write!(f, "VMX: {e}"),
            Self::Vcpu(e) => write!(f, "vCPU: {e}"),
            Self::VmConfigText { module, at } => write!(
                f,
                "VM configuration module {:?}: not UTF-8 text after byte {at}",
                module.as_str()
            ),
            Self::VmConfig { module, error } => {
                write!(f, "{}", error.in_file(module.as_str()))
            }
            Self::VmSet(e) => write!(f, "VM configurations: {e}"),
            Self::TooManyVms(max) => write!(f, "more than {max} VM configurations"),
            Self::VmKernelMissing(name) => write!(
                f,
                "VM {name:?} names a kernel, but no module's string is \"vmkernel {name}\""
            ),
            Self::VmLinux(name) => write!(
                f,
                "VM {name:?}: a Linux kernel runs only as the one guest (`cargo nvirt run linux`), not beside other VMs"
            ),
        }
    }
}
