//! `memory_op` end to end on the host: the guest side of
//! `nvirt-hypercall-abi` calls through its loopback transport into
//! [`serve`], over a guest's memory in a buffer; malformed calls are built
//! by hand and must get their errno.

use nvirt_hypercall_abi::guest::{CallError, Loopback, MemoryOps};
use nvirt_hypercall_abi::host::{Caller, Limits, Outcome, Paging, Registers};
use nvirt_hypercall_abi::layout::{MemoryMap, MemoryReservation};
use nvirt_hypercall_abi::{
    Command, DomId, E820Entry, Errno, ExtentOrder, GuestAddr, MemKind, MemopCmd, NVIRT_MEMF_NVRAM,
    XenPfn,
};
use zerocopy::IntoBytes;

use super::{Addressing, GuestInfo, e820_of, serve};
use crate::balloon::tests::{Guest, layout, with_guest};
use crate::guest_memory::PAGE;
use crate::nested::Format;

/// Where the loopback copies arguments, and where hand-built ones go.
const SCRATCH: u64 = 0x20_0000;
const NV: u64 = (1 << 32) / PAGE;
const ME: DomId = DomId::new(1);

fn info(e820: &[E820Entry]) -> GuestInfo<'_> {
    let l = layout();
    GuestInfo {
        caller: Caller::kernel(ME).unwrap(),
        addressing: Addressing::Physical,
        limits: Limits::new(XenPfn::new(l.map.end() / PAGE)).batch(4.try_into().unwrap()),
        e820,
        max_pages: 3 * 1024,
        max_ram_page: 0x1c00,
    }
}

/// Runs `$body` with `$hv`, typed guest calls into `serve` over `$g`;
/// gives the body's value and the handler entries.
macro_rules! with_calls {
    ($g:expr, |$hv:ident| $body:block) => {{
        let mut entries = [E820Entry::default(); 16];
        let n = e820_of(&layout().map, &mut entries);
        let info = info(&entries[..n]);
        let lo = Loopback::new(
            $g,
            GuestAddr::new(SCRATCH),
            |g: &mut Guest<'_, '_, '_>, regs: &Registers| {
                let served = serve(g, regs, &info).unwrap();
                // Every change is invalidated before the guest would run
                // again.
                let _ = g.take_invalidation();
                g.reclaim_tables();
                served.outcome
            },
        );
        let mut $hv = MemoryOps::new(lo);
        let r = $body;
        (r, $hv.transport().entries())
    }};
}

fn consistent(g: &Guest<'_, '_, '_>) {
    g.audit().unwrap();
    assert_eq!(g.footprint(), g.minimum());
}

#[test]
fn serves_the_map_and_the_balloon_with_continuations() {
    with_guest(Format::Npt, |g| {
        let ((), entries) = with_calls!(g, |hv| {
            let mut map = [E820Entry::default(); 8];
            let n = hv.memory_map(&mut map).unwrap();
            let mut expected = [E820Entry::default(); 16];
            let m = e820_of(&layout().map, &mut expected);
            assert_eq!(map[..n], expected[..m]);
            let mut two = [E820Entry::default(); 2];
            assert_eq!(hv.memory_map(&mut two).unwrap(), 2, "cut to the room given");

            // Ten single NVRAM pages out and back in: three entries each
            // (batches of four).
            let pages: Vec<XenPfn> = (0..10).map(|i| XenPfn::new(NV + 3 * i)).collect();
            let out = hv
                .decrease_reservation(MemKind::NonVolatile, ExtentOrder::PAGE_4K, &pages)
                .unwrap();
            assert_eq!(out, 10);
            assert_eq!(hv.current_reservation().unwrap(), 3 * 1024 - 10);
            let mut back = pages.clone();
            let done = hv
                .populate_physmap(MemKind::NonVolatile, ExtentOrder::PAGE_4K, &mut back)
                .unwrap();
            assert_eq!(done, 10);
            // RAM: a 2 MiB extent out, then increase_reservation finds it.
            hv.decrease_reservation(
                MemKind::Volatile,
                ExtentOrder::PAGE_2M,
                &[XenPfn::new(0x600)],
            )
            .unwrap();
            let mut got = [XenPfn::new(0)];
            hv.increase_reservation(MemKind::Volatile, ExtentOrder::PAGE_2M, &mut got)
                .unwrap();
            assert_eq!(got, [XenPfn::new(0x600)]);
            assert_eq!(hv.maximum_reservation().unwrap(), 3 * 1024);
            assert_eq!(hv.current_reservation().unwrap(), 3 * 1024);
            assert_eq!(hv.maximum_gpfn().unwrap(), XenPfn::new(NV + 1023));
            // Nothing is free any more: Xen's -ENOMEM.
            let mut none = [XenPfn::new(0)];
            assert_eq!(
                hv.increase_reservation(MemKind::Volatile, ExtentOrder::PAGE_4K, &mut none),
                Err(CallError::Errno(Errno::NoMem))
            );
        });
        assert!(
            entries > 10,
            "continuations entered the handler {entries} times"
        );
        consistent(g);
    });
}

#[test]
fn partial_success_stops_at_the_bad_extent() {
    with_guest(Format::Ept, |g| {
        with_calls!(g, |hv| {
            hv.decrease_reservation(
                MemKind::Volatile,
                ExtentOrder::PAGE_4K,
                &[XenPfn::new(0x500)],
            )
            .unwrap();
            // The first is a hole, the second is backed: one done.
            let mut two = [XenPfn::new(0x500), XenPfn::new(0x501)];
            assert_eq!(
                hv.populate_physmap(MemKind::Volatile, ExtentOrder::PAGE_4K, &mut two),
                Ok(1)
            );
            // NVRAM asked for in RAM: refused before anything is done.
            assert_eq!(
                hv.decrease_reservation(
                    MemKind::NonVolatile,
                    ExtentOrder::PAGE_4K,
                    &[XenPfn::new(0x501)]
                ),
                Err(CallError::Errno(Errno::Inval))
            );
            // A misaligned 2 MiB extent.
            assert_eq!(
                hv.decrease_reservation(
                    MemKind::Volatile,
                    ExtentOrder::PAGE_2M,
                    &[XenPfn::new(0x201)]
                ),
                Err(CallError::Errno(Errno::Inval))
            );
        });
        consistent(g);
    });
}

/// A hand-built reservation call: the structure at `SCRATCH`, the array
/// where `array` says, the command word `cmd`.
fn raw(g: &mut Guest<'_, '_, '_>, cmd: u64, r: &MemoryReservation, rax: u64) -> Outcome {
    g.write(SCRATCH, r.as_bytes()).unwrap();
    let mut entries = [E820Entry::default(); 16];
    let n = e820_of(&layout().map, &mut entries);
    let regs = Registers {
        rax,
        rdi: cmd,
        rsi: SCRATCH,
        ..Registers::default()
    };
    serve(g, &regs, &info(&entries[..n])).unwrap().outcome
}

#[test]
fn malformed_calls_get_their_errno_and_change_nothing() {
    with_guest(Format::Npt, |g| {
        let array = SCRATCH + 0x100;
        g.write(array, &0x500u64.to_le_bytes()).unwrap();
        let res = |order: u32, flags: u32, domid: u16, at: u64| {
            MemoryReservation::new(GuestAddr::new(at), 1, order, flags, DomId::new(domid))
        };
        let populate = 6;
        let before = g.extents().to_vec();
        let cases = [
            ("unknown command", 5, res(0, 0, 0x7ff0, array), Errno::NoSys),
            (
                "unknown flag bit",
                populate,
                res(0, 1 << 20, 0x7ff0, array),
                Errno::Inval,
            ),
            (
                "order above 1 GiB",
                populate,
                res(19, 0, 0x7ff0, array),
                Errno::Inval,
            ),
            (
                "array in the PCI hole",
                populate,
                res(0, 0, 0x7ff0, 0xe000_0000),
                Errno::Fault,
            ),
            ("another domain", populate, res(0, 0, 5, array), Errno::Perm),
            (
                "a reserved domain id",
                populate,
                res(0, 0, 0x7ff1, array),
                Errno::Srch,
            ),
            (
                "backed frame",
                populate,
                res(0, 0, 0x7ff0, array),
                Errno::Inval,
            ),
            (
                "NVRAM into RAM",
                populate,
                res(0, NVIRT_MEMF_NVRAM, 0x7ff0, array),
                Errno::Inval,
            ),
        ];
        for (what, cmd, r, errno) in cases {
            assert_eq!(raw(g, cmd, &r, 12), Outcome::Error(errno), "{what}");
        }
        // A hypercall number other than memory_op.
        assert_eq!(
            raw(g, populate, &res(0, 0, 0x7ff0, array), 13),
            Outcome::Error(Errno::NoSys)
        );
        // The argument itself outside guest memory.
        let mut entries = [E820Entry::default(); 16];
        let n = e820_of(&layout().map, &mut entries);
        let regs = Registers {
            rax: 12,
            rdi: populate,
            rsi: 0x7fff_0000_0000,
            ..Registers::default()
        };
        assert_eq!(
            serve(g, &regs, &info(&entries[..n])).unwrap().outcome,
            Outcome::Error(Errno::Fault)
        );
        assert_eq!(before, g.extents());
        consistent(g);
    });
}

#[test]
fn an_order_beyond_1g_is_refused_even_under_a_larger_limit() {
    with_guest(Format::Npt, |g| {
        let array = SCRATCH + 0x100;
        g.write(array, &0x500u64.to_le_bytes()).unwrap();
        let r = MemoryReservation::new(GuestAddr::new(array), 1, 19, 0, DomId::new(0x7ff0));
        g.write(SCRATCH, r.as_bytes()).unwrap();
        let mut entries = [E820Entry::default(); 16];
        let n = e820_of(&layout().map, &mut entries);
        let mut info = info(&entries[..n]);
        // A limit above what the tables and pools can serve as one block.
        info.limits = info.limits.max_order(ExtentOrder::new(20).unwrap());
        let regs = Registers {
            rax: 12,
            // increase_reservation: served at a smaller order, it would
            // look for a free 1 GiB block instead of refusing.
            rdi: 0,
            rsi: SCRATCH,
            ..Registers::default()
        };
        let before = g.extents().to_vec();
        let served = serve(g, &regs, &info).unwrap();
        assert_eq!(served.outcome, Outcome::Error(Errno::Inval));
        assert_eq!(g.extents(), &before[..], "nothing served at another size");
    });
}

/// Guest page tables at guest-physical 0x30_0000 mapping two virtual pages
/// at 0xffff_8000_0000_0000 onto 0x20_1000 and 0x20_0000 (reversed, so a
/// copy across them is not contiguous in guest-physical memory).
fn alias_tables(g: &mut Guest<'_, '_, '_>) -> (Paging, u64) {
    let (pml4, pdpt, pd, pt) = (0x30_0000u64, 0x30_1000u64, 0x30_2000u64, 0x30_3000u64);
    g.zero(pml4, 0x4000).unwrap();
    g.write(pml4 + 256 * 8, &(pdpt | 3).to_le_bytes()).unwrap();
    g.write(pdpt, &(pd | 3).to_le_bytes()).unwrap();
    g.write(pd, &(pt | 3).to_le_bytes()).unwrap();
    g.write(pt, &(0x20_1000u64 | 3).to_le_bytes()).unwrap();
    g.write(pt + 8, &(0x20_0000u64 | 3).to_le_bytes()).unwrap();
    // CR0 PG|WP|PE, CR4 PAE, EFER LMA|LME: 4-level paging.
    (
        Paging::from_registers(0x8001_0001, pml4, 0x20, 0x500),
        0xffff_8000_0000_0000,
    )
}

#[test]
fn pointers_are_guest_virtual_and_copies_cross_pages() {
    with_guest(Format::Npt, |g| {
        let (paging, va) = alias_tables(g);
        let mut entries = [E820Entry::default(); 16];
        let n = e820_of(&layout().map, &mut entries);
        assert!(n >= 2);
        // The argument on the first virtual page; a 2-entry buffer from 8
        // bytes before its end, running onto the second.
        let header = MemoryMap::new(2, GuestAddr::new(va + 0xff8));
        g.write(0x20_1000 + 0x10, header.as_bytes()).unwrap();
        let regs =
            Registers::memory_op(MemopCmd::new(Command::MemoryMap), GuestAddr::new(va + 0x10));
        let mut virt = info(&entries[..n]);
        virt.addressing = Addressing::Virtual(paging);
        let served = serve(g, &regs, &virt).unwrap();
        assert_eq!(served.outcome, Outcome::Success(0), "{served}");
        let mut got = [0u8; 40];
        g.read(0x20_1ff8, &mut got[..8]).unwrap();
        g.read(0x20_0000, &mut got[8..]).unwrap();
        assert_eq!(&got[..20], entries[0].as_bytes());
        assert_eq!(&got[20..], entries[1].as_bytes());
        // The same address read as guest-physical is no guest memory.
        let phys = info(&entries[..n]);
        let served = serve(g, &regs, &phys).unwrap();
        assert_eq!(served.outcome, Outcome::Error(Errno::Fault));
        // A virtual page the tables do not map is a fault, not a panic.
        let regs = Registers::memory_op(
            MemopCmd::new(Command::MemoryMap),
            GuestAddr::new(va + 0x2000),
        );
        assert_eq!(
            serve(g, &regs, &virt).unwrap().outcome,
            Outcome::Error(Errno::Fault)
        );
    });
}
