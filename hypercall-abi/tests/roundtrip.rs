//! Guest-side calls encoded into a fake guest memory, decoded by the host
//! side, served by a small model hypervisor with a RAM pool and an NVRAM
//! pool, and answered back to the guest.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use nvirt_hypercall_abi::guest::{CallError, Extents, Loopback, LoopbackError, MemoryOps};
use nvirt_hypercall_abi::host::{
    self, Caller, Fault, FlatMemory, GuestMemory, Limits, Outcome, Registers, Request, UserCalls,
    VcpuMode,
};
use nvirt_hypercall_abi::layout::MemoryReservation;
use nvirt_hypercall_abi::{
    DomId, E820Entry, Errno, ExtentOrder, Gfn, GuestAddr, MemFlags, MemKind, NodeRequest,
    ReservationOp, XenPfn,
};
use zerocopy::FromBytes;

const SCRATCH: GuestAddr = GuestAddr::new(0x1000);
const ME: DomId = DomId::new(4);

/// A hypervisor in miniature: two pools of pages and the guest's populated
/// extents.
struct Hv {
    caller: Caller,
    limits: Limits,
    free: BTreeMap<bool, u64>,
    extents: BTreeMap<u64, (MemKind, ExtentOrder)>,
    next_frame: u64,
    map: Vec<E820Entry>,
    /// The raw argument bytes of the last reservation call, as the guest
    /// laid them out.
    last_arg: Option<[u8; 32]>,
}

impl Hv {
    fn new(ram_pages: u64, nvram_pages: u64) -> Self {
        Self {
            caller: Caller::kernel(ME).unwrap(),
            limits: Limits::new(XenPfn::new(1 << 24)).batch(NonZeroU32::new(8).unwrap()),
            free: BTreeMap::from([(false, ram_pages), (true, nvram_pages)]),
            extents: BTreeMap::new(),
            next_frame: 0x80_0000,
            map: vec![
                E820Entry::new(0, 0x9_f000, E820Entry::RAM),
                E820Entry::new(0x10_0000, 0x7ff0_0000, E820Entry::RAM),
                E820Entry::new(0x1_0000_0000, 0x4000_0000, E820Entry::PMEM),
            ],
            last_arg: None,
        }
    }

    fn pool(&mut self, kind: MemKind) -> &mut u64 {
        self.free.entry(kind == MemKind::NonVolatile).or_default()
    }

    fn take(&mut self, kind: MemKind, order: ExtentOrder) -> Result<(), Errno> {
        let pool = self.pool(kind);
        *pool = pool.checked_sub(order.pages()).ok_or(Errno::NoMem)?;
        Ok(())
    }

    fn pages(&self) -> u64 {
        self.extents.values().map(|(_, o)| o.pages()).sum()
    }

    fn handle(&mut self, mem: &mut FlatMemory<'_>, regs: &Registers) -> Outcome {
        let request = match host::decode(regs, &self.caller, mem, &self.limits) {
            Ok(r) => r,
            Err(refused) => return refused.outcome(),
        };
        match request {
            Request::Reservation(r) => {
                let mut arg = [0u8; 32];
                mem.read(GuestAddr::new(regs.rsi), &mut arg).unwrap();
                self.last_arg = Some(arg);
                let (kind, order) = (r.kind(), r.order());
                r.run(mem, |extent| match r.op() {
                    ReservationOp::Populate => {
                        let g = extent.gfn().unwrap().get();
                        if self.extents.contains_key(&g) {
                            return Err(Errno::Inval);
                        }
                        self.take(kind, order)?;
                        self.extents.insert(g, (kind, order));
                        Ok(Gfn::new(g))
                    }
                    ReservationOp::Decrease => {
                        let g = extent.gfn().unwrap().get();
                        match self.extents.get(&g) {
                            Some(&(k, o)) if k == kind && o == order => {
                                self.extents.remove(&g);
                                *self.pool(kind) += order.pages();
                                Ok(None)
                            }
                            _ => Err(Errno::Inval),
                        }
                    }
                    ReservationOp::Increase => {
                        self.take(kind, order)?;
                        let g = self.next_frame;
                        self.next_frame += order.pages();
                        self.extents.insert(g, (kind, order));
                        Gfn::new(g).map(Some).ok_or(Errno::NoMem)
                    }
                })
            }
            Request::MemoryMap(m) => m.respond(mem, &self.map),
            Request::CurrentReservation => Outcome::Success(self.pages()),
            Request::MaximumReservation => Outcome::Success(1 << 20),
            Request::MaximumGpfn => {
                Outcome::Success(self.extents.keys().next_back().copied().unwrap_or(0))
            }
            Request::MaximumRamPage => Outcome::Success(0x1_0000),
            Request::MachineMemoryMap(_) | Request::SetMemoryMap(_) => Outcome::Error(Errno::NoSys),
        }
    }
}

/// Runs `guest` against `hv` over a loopback into 64 KiB of guest memory.
fn with_guest<R>(
    hv: &mut Hv,
    guest: impl FnOnce(
        &mut MemoryOps<
            Loopback<
                '_,
                FlatMemory<'_>,
                &mut dyn FnMut(&mut FlatMemory<'_>, &Registers) -> Outcome,
            >,
        >,
    ) -> R,
) -> (R, u64) {
    let mut ram = vec![0u8; 1 << 16];
    let mut mem = FlatMemory::new(GuestAddr::new(0), &mut ram);
    let mut handler = |m: &mut FlatMemory<'_>, regs: &Registers| hv.handle(m, regs);
    let handler: &mut dyn FnMut(&mut FlatMemory<'_>, &Registers) -> Outcome = &mut handler;
    let mut ops = MemoryOps::new(Loopback::new(&mut mem, SCRATCH, handler));
    let r = guest(&mut ops);
    let entries = ops.transport().entries();
    (r, entries)
}

fn frames(start: u64, n: u64, order: ExtentOrder) -> Vec<XenPfn> {
    (0..n)
        .map(|i| XenPfn::new(start + i * order.pages()))
        .collect()
}

#[test]
fn populate_and_release_both_kinds() {
    let mut hv = Hv::new(1 << 12, 1 << 12);
    let ((), entries) = with_guest(&mut hv, |g| {
        let mut ram = frames(0x100, 20, ExtentOrder::PAGE_4K);
        assert_eq!(
            g.populate_physmap(MemKind::Volatile, ExtentOrder::PAGE_4K, &mut ram)
                .unwrap(),
            20
        );
        let mut nv = frames(0x10_0000, 3, ExtentOrder::PAGE_2M);
        assert_eq!(
            g.populate_physmap(MemKind::NonVolatile, ExtentOrder::PAGE_2M, &mut nv)
                .unwrap(),
            3
        );
        assert_eq!(g.current_reservation().unwrap(), 20 + 3 * 512);
        assert_eq!(g.maximum_gpfn().unwrap(), XenPfn::new(0x10_0400));
        // Releasing NVRAM extents as RAM is refused at the first one.
        assert_eq!(
            g.decrease_reservation(MemKind::Volatile, ExtentOrder::PAGE_2M, &nv),
            Err(CallError::Errno(Errno::Inval))
        );
        assert_eq!(
            g.decrease_reservation(MemKind::NonVolatile, ExtentOrder::PAGE_2M, &nv[..2])
                .unwrap(),
            2
        );
        assert_eq!(
            g.decrease_reservation(MemKind::Volatile, ExtentOrder::PAGE_4K, &ram)
                .unwrap(),
            20
        );
    });
    // 20 extents in batches of 8: 3 entries; then 1 + 1 + 1 + 1 + 1 + 3.
    assert_eq!(entries, 3 + 1 + 1 + 1 + 1 + 1 + 3);
    assert_eq!(hv.extents.len(), 1);
    assert_eq!(hv.free[&true], (1 << 12) - 512);
    assert_eq!(hv.free[&false], 1 << 12);
}

#[test]
fn running_out_is_partial_success_then_enomem() {
    let mut hv = Hv::new(0, 5);
    let ((), _) = with_guest(&mut hv, |g| {
        let mut nv = frames(0x2000, 12, ExtentOrder::PAGE_4K);
        assert_eq!(
            g.populate_physmap(MemKind::NonVolatile, ExtentOrder::PAGE_4K, &mut nv)
                .unwrap(),
            5
        );
        let mut more = frames(0x3000, 2, ExtentOrder::PAGE_4K);
        assert_eq!(
            g.populate_physmap(MemKind::NonVolatile, ExtentOrder::PAGE_4K, &mut more),
            Err(CallError::Errno(Errno::NoMem))
        );
        assert_eq!(
            g.increase_reservation(MemKind::Volatile, ExtentOrder::PAGE_4K, &mut more),
            Err(CallError::Errno(Errno::NoMem))
        );
    });
    assert_eq!(
        hv.extents.keys().copied().collect::<Vec<_>>(),
        (0x2000..0x2005).collect::<Vec<_>>()
    );
}

#[test]
fn partial_success_in_a_later_batch_counts_earlier_batches() {
    // 11 pages: the first batch of 8 completes, the second stops after 3.
    let mut hv = Hv::new(11, 0);
    let (done, entries) = with_guest(&mut hv, |g| {
        let mut ram = frames(0x100, 20, ExtentOrder::PAGE_4K);
        g.populate_physmap(MemKind::Volatile, ExtentOrder::PAGE_4K, &mut ram)
            .unwrap()
    });
    assert_eq!((done, entries), (11, 2));
}

#[test]
fn increase_writes_frames_back() {
    let mut hv = Hv::new(1 << 10, 1000);
    let (got, _) = with_guest(&mut hv, |g| {
        let mut out = [XenPfn::new(0); 3];
        assert_eq!(
            g.increase_reservation(MemKind::NonVolatile, ExtentOrder::PAGE_2M, &mut out)
                .unwrap(),
            1
        );
        out
    });
    // One 2 MiB NVRAM extent fits in 1000 pages; the second does not.
    assert_eq!(
        got,
        [XenPfn::new(0x80_0000), XenPfn::new(0), XenPfn::new(0)]
    );
    assert_eq!(
        hv.extents[&0x80_0000],
        (MemKind::NonVolatile, ExtentOrder::PAGE_2M)
    );
}

#[test]
fn the_guest_lays_out_xens_structure() {
    let mut hv = Hv::new(1 << 10, 1 << 10);
    let flags = MemFlags::new(MemKind::NonVolatile)
        .with_address_bits(40)
        .unwrap()
        .with_node(NodeRequest::new(0).unwrap().exact());
    with_guest(&mut hv, |g| {
        let mut e = [XenPfn::new(0x400)];
        let n = g.reserve(
            ReservationOp::Populate,
            flags,
            ExtentOrder::PAGE_2M,
            Extents::InOut(&mut e),
        );
        assert_eq!(n, Ok(1));
    });
    let arg = hv.last_arg.unwrap();
    let mut c = [0u8; 32];
    c[0..8].copy_from_slice(&(SCRATCH.raw() + 64).to_le_bytes()); // extent_start
    c[8..16].copy_from_slice(&1u64.to_le_bytes()); // nr_extents
    c[16..20].copy_from_slice(&9u32.to_le_bytes()); // extent_order
    // mem_flags: address bits 40, XENMEMF_exact_node(0), NVRAM bit 31.
    c[20..24].copy_from_slice(&(40u32 | (1 << 8) | (1 << 17) | (1 << 31)).to_le_bytes());
    c[24..26].copy_from_slice(&0x7ff0u16.to_le_bytes()); // DOMID_SELF
    assert_eq!(arg, c);
    assert_eq!(
        MemoryReservation::read_from_bytes(&arg).unwrap().domid(),
        DomId::SELF
    );
}

#[test]
fn memory_map_and_queries() {
    let mut hv = Hv::new(0, 0);
    with_guest(&mut hv, |g| {
        let mut map = [E820Entry::default(); 8];
        let n = g.memory_map(&mut map).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            map[2],
            E820Entry::new(0x1_0000_0000, 0x4000_0000, E820Entry::PMEM)
        );
        let mut small = [E820Entry::default(); 2];
        assert_eq!(
            g.memory_map(&mut small).unwrap(),
            2,
            "truncated, as Xen does"
        );
        assert_eq!(g.memory_map(&mut []).unwrap(), 0);
        assert_eq!(
            g.machine_memory_map(&mut map),
            Err(CallError::Errno(Errno::Perm))
        );
        assert_eq!(g.maximum_ram_page().unwrap(), 0x1_0000);
        assert_eq!(g.maximum_reservation().unwrap(), 1 << 20);
        assert_eq!(g.current_reservation().unwrap(), 0);
    });
}

#[test]
fn the_guest_sees_xens_error_numbers() {
    let mut hv = Hv::new(1 << 10, 1 << 10);
    hv.limits = hv.limits.max_order(ExtentOrder::PAGE_2M).max_extents(16);
    with_guest(&mut hv, |g| {
        let mut big = [XenPfn::new(0)];
        assert_eq!(
            g.populate_physmap(MemKind::Volatile, ExtentOrder::PAGE_1G, &mut big),
            Err(CallError::Errno(Errno::Inval)),
            "order above the limit"
        );
        let mut many = frames(0, 17, ExtentOrder::PAGE_4K);
        assert_eq!(
            g.populate_physmap(MemKind::Volatile, ExtentOrder::PAGE_4K, &mut many),
            Err(CallError::Errno(Errno::Inval)),
            "more extents than allowed"
        );
        let mut beyond = [XenPfn::new(1 << 24)];
        assert_eq!(
            g.populate_physmap(MemKind::Volatile, ExtentOrder::PAGE_4K, &mut beyond),
            Err(CallError::Errno(Errno::Inval)),
            "a frame outside the guest"
        );
        let mut numa = [XenPfn::new(0x10)];
        let node1 = MemFlags::new(MemKind::Volatile).with_node(NodeRequest::new(1).unwrap());
        assert_eq!(
            g.reserve(
                ReservationOp::Populate,
                node1,
                ExtentOrder::PAGE_4K,
                Extents::InOut(&mut numa)
            ),
            Err(CallError::Errno(Errno::Inval)),
            "a NUMA node the guest does not have"
        );
    });
}

#[test]
fn user_mode_calls_are_refused_or_faulted() {
    let mut hv = Hv::new(1 << 10, 1 << 10);
    hv.caller = Caller::new(ME, VcpuMode::Bits64, 3).unwrap();
    with_guest(&mut hv, |g| {
        assert_eq!(g.current_reservation(), Err(CallError::Errno(Errno::Perm)));
    });
    hv.limits = hv.limits.user_calls(UserCalls::Fault);
    with_guest(&mut hv, |g| {
        assert_eq!(
            g.current_reservation(),
            Err(CallError::Transport(LoopbackError::Fault(
                Fault::InvalidOpcode
            )))
        );
    });
    // A 32-bit kernel is served (its domain argument has the one layout
    // both conventions share).
    hv.caller = Caller::new(ME, VcpuMode::Bits32, 0).unwrap();
    hv.limits = hv.limits.user_calls(UserCalls::Refuse);
    with_guest(&mut hv, |g| {
        assert_eq!(g.current_reservation(), Ok(0));
    });
}

#[test]
fn a_handler_that_never_finishes_is_caught() {
    let mut ram = vec![0u8; 1 << 16];
    let mut mem = FlatMemory::new(GuestAddr::new(0), &mut ram);
    let spin = |_: &mut FlatMemory<'_>, regs: &Registers| {
        Outcome::Continue(nvirt_hypercall_abi::MemopCmd::from_raw(regs.rdi))
    };
    let mut ops = MemoryOps::new(Loopback::new(&mut mem, SCRATCH, spin).entry_limit(100));
    assert_eq!(
        ops.current_reservation(),
        Err(CallError::Transport(LoopbackError::Runaway {
            entries: 100
        }))
    );
}

#[test]
fn scratch_outside_guest_memory_is_an_error_not_a_panic() {
    let mut ram = vec![0u8; 0x100];
    let mut mem = FlatMemory::new(GuestAddr::new(0), &mut ram);
    let never = |_: &mut FlatMemory<'_>, _: &Registers| -> Outcome {
        unreachable!("no call can be placed")
    };
    let mut ops = MemoryOps::new(Loopback::new(&mut mem, GuestAddr::new(0x1000), never));
    assert!(matches!(
        ops.current_reservation(),
        Err(CallError::Transport(LoopbackError::Scratch(_)))
    ));
    let mut e = [XenPfn::new(1)];
    assert!(
        ops.populate_physmap(MemKind::Volatile, ExtentOrder::PAGE_4K, &mut e)
            .is_err()
    );
}
