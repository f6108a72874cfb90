//! Property tests: the decoder never panics on any registers and guest
//! memory, and yields either a request whose promises hold or one of Xen's
//! error numbers; serving a request writes nowhere but where it may; what
//! the guest side encodes, the host side decodes back exactly.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::num::NonZeroU32;

use nvirt_hypercall_abi::guest::{Extents, Loopback, MemoryOps};
use nvirt_hypercall_abi::host::{
    self, Caller, FlatMemory, Limits, Outcome, Registers, Request, Reservation, UserCalls, VcpuMode,
};
use nvirt_hypercall_abi::layout::{COMPAT_PFN_SIZE, XEN_PFN_SIZE};
use nvirt_hypercall_abi::{
    Command, DomId, E820Entry, Errno, ExtentOrder, ForeignMemoryMap, Gfn, GuestAddr, MemFlags,
    MemKind, MemopCmd, MemoryDomain, MemoryMap, MemoryReservation, NVIRT_MEMF_NVRAM, NodeRequest,
    ReservationOp, XenPfn,
};
use proptest::prelude::*;
use zerocopy::IntoBytes;

/// Everything a decode sees, generated with a bias toward well-formed calls
/// so that the deep checks are reached.
#[derive(Debug, Clone)]
struct Scenario {
    base: u64,
    bytes: Vec<u8>,
    read_only: (u64, u64),
    regs: Registers,
    mode: VcpuMode,
    cpl: u8,
    privileged: bool,
    me: u16,
    limits: Limits,
    seed: u64,
}

fn mode() -> impl Strategy<Value = VcpuMode> {
    prop_oneof![
        24 => Just(VcpuMode::Bits64),
        1 => Just(VcpuMode::Bits32),
        1 => Just(VcpuMode::Bits16),
        1 => Just(VcpuMode::Real),
        1 => Just(VcpuMode::Vm86),
    ]
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        prop_oneof![2 => Just(1u64 << 20), 1 => 0u64..1 << 12, 2 => Just(u64::MAX), 1 => any::<u64>()],
        1u32..24,
        0u8..=52,
        0u8..4,
        0u32..40,
        prop_oneof![3 => Just(u64::MAX), 1 => 0u64..64],
        any::<bool>(),
    )
        .prop_map(|(gpfns, batch, order, nodes, map, extents, fault)| {
            Limits::new(XenPfn::new(gpfns))
                .batch(NonZeroU32::new(batch).unwrap())
                .max_order(ExtentOrder::new(order).unwrap())
                .numa_nodes(nodes)
                .max_map_entries(map)
                .max_extents(extents)
                .user_calls(if fault { UserCalls::Fault } else { UserCalls::Refuse })
        })
}

/// The command word's low bits: mostly reservations, whose checks are the
/// deepest, then the other commands, then anything.
fn op() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => prop_oneof![Just(0u64), Just(1), Just(6)],
        3 => prop_oneof![Just(2u64), Just(3), Just(4), Just(9), Just(10), Just(13), Just(14)],
        1 => 0u64..64,
    ]
}

/// A plausible or arbitrary argument structure for command `op`, as bytes.
fn argument(op: u64, base: u64, len: u64, me: u16) -> impl Strategy<Value = Vec<u8>> {
    let inside = move |off: u64| base.wrapping_add(off % len.max(1));
    let addr = prop_oneof![
        4 => (0..len.max(1) / 2 + 1).prop_map(inside),
        1 => Just(0u64),
        1 => any::<u64>(),
    ];
    let domid = prop_oneof![
        3 => Just(DomId::SELF),
        2 => Just(DomId::new(me)),
        1 => any::<u16>().prop_map(DomId::new),
    ];
    let flags = prop_oneof![
        6 => Just(0u32),
        6 => Just(NVIRT_MEMF_NVRAM),
        2 => (0u8..=255, 0u8..=255, any::<[bool; 4]>()).prop_map(|(bits, node, [n, e, v, nv])| {
            let mut f = (u32::from(bits)) | if n { u32::from(node) << 8 } else { 0 };
            f |= if e { 1 << 17 } else { 0 } | if v { 1 << 18 } else { 0 } | if nv { 1 << 31 } else { 0 };
            f
        }),
        1 => any::<u32>(),
    ];
    let order =
        prop_oneof![3 => Just(0u32), 1 => Just(9), 1 => Just(18), 1 => 0u32..64, 1 => any::<u32>()];
    let nr = prop_oneof![6 => 0u64..16, 2 => 0u64..48, 1 => any::<u64>()];
    let reservation =
        (addr.clone(), nr, order, flags, domid.clone()).prop_map(|(a, n, o, f, d)| {
            MemoryReservation::new(GuestAddr::new(a), n, o, f, d)
                .as_bytes()
                .to_vec()
        });
    let map = (prop_oneof![0u32..48, any::<u32>()], addr.clone())
        .prop_map(|(n, a)| MemoryMap::new(n, GuestAddr::new(a)).as_bytes().to_vec());
    let foreign = (domid.clone(), 0u32..48, addr).prop_map(|(d, n, a)| {
        ForeignMemoryMap::new(d, MemoryMap::new(n, GuestAddr::new(a)))
            .as_bytes()
            .to_vec()
    });
    let domain = domid.prop_map(|d| MemoryDomain::new(d).as_bytes().to_vec());
    let (wr, wm, wf, wd) = match op {
        0 | 1 | 6 => (12, 1, 1, 1),
        9 | 10 => (1, 12, 1, 1),
        13 => (1, 1, 12, 1),
        _ => (1, 1, 1, 12),
    };
    prop_oneof![
        wr => reservation,
        wm => map,
        wf => foreign,
        wd => domain,
        1 => prop::collection::vec(any::<u8>(), 0..40),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop_oneof![Just(0u64), Just(0x10_0000), any::<u64>()],
        // Guest memory is mostly zeros, so frame numbers read from it are
        // often small and valid.
        (prop::collection::vec(any::<u8>(), 0..2048), any::<u64>()).prop_map(|(mut v, mix)| {
            for (i, b) in (0u64..).zip(v.iter_mut()) {
                if (i ^ mix).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 62 != 0 {
                    *b = 0;
                }
            }
            v
        }),
        any::<u16>(),
        op(),
    )
        .prop_flat_map(|(base, mut bytes, me, op)| {
            // Keep the memory inside the address space, as FlatMemory would.
            let room = usize::try_from(u64::MAX - base).unwrap_or(usize::MAX);
            bytes.truncate(room);
            let len = bytes.len() as u64;
            let me = me % 0x7ff0;
            (
                Just((base, bytes, me, op)),
                argument(op, base, len, me),
                0..len.max(1),
                prop_oneof![2 => Just((0, 0)), 1 => (0..len.max(1), 0..len.max(1))],
                (
                    prop_oneof![12 => Just(12u64), 1 => any::<u64>()],
                    prop_oneof![12 => Just(0u64), 2 => 0u64..64, 1 => any::<u64>()],
                    prop_oneof![8 => Just(true), 1 => Just(false)],
                    any::<u64>(),
                ),
                (
                    mode(),
                    prop_oneof![12 => Just(0u8), 1 => 0u8..4],
                    any::<bool>(),
                    limits(),
                    any::<u64>(),
                ),
            )
        })
        .prop_map(
            |(
                (base, mut bytes, me, op),
                arg,
                arg_off,
                (ro_a, ro_b),
                (rax, start, rsi_inside, rsi_any),
                (mode, cpl, privileged, limits, seed),
            )| {
                let off = arg_off as usize;
                let n = arg.len().min(bytes.len().saturating_sub(off));
                bytes[off..off + n].copy_from_slice(&arg[..n]);
                let rdi = op | start.wrapping_shl(6);
                let rsi = if rsi_inside { base + arg_off } else { rsi_any };
                Scenario {
                    base,
                    bytes,
                    read_only: (base + ro_a.min(ro_b), base + ro_a.max(ro_b)),
                    regs: Registers {
                        rax,
                        rdi,
                        rsi,
                        rdx: rsi_any,
                        r10: seed,
                        r8: !seed,
                    },
                    mode,
                    cpl,
                    privileged,
                    me,
                    limits,
                    seed,
                }
            },
        )
}

/// Serves a reservation with a handler that fails now and then, checks the
/// outcome's promises, and returns the guest-address ranges it may have
/// written.
fn serve_reservation(r: &Reservation, mem: &mut FlatMemory<'_>, s: &Scenario) -> Vec<(u64, u64)> {
    let batch = r.batch();
    if batch.is_empty() {
        // Nothing to do: Xen answers the resume point before any check.
        assert!(batch.start >= r.nr_extents());
        let out = r.run(mem, |_| panic!("no extent to serve"));
        assert_eq!(out, Outcome::Success(batch.start));
        return Vec::new();
    }
    assert!(batch.start < batch.end && batch.end <= r.nr_extents());
    assert!(batch.end - batch.start <= s.limits.batch_size());
    assert!(r.nr_extents() <= s.limits.extent_limit());
    assert!(r.order() <= s.limits.order_limit());
    assert_eq!(r.domain(), DomId::new(s.me));
    let writes = r.op() != ReservationOp::Decrease;
    let outcome = r.run(mem, |extent| {
        assert!(batch.contains(&extent.index()));
        if let Some(g) = extent.gfn() {
            assert_eq!(g.get() & (r.order().pages() - 1), 0, "extents are aligned");
            assert!(g.get() + r.order().pages() <= s.limits.gpfn_limit().raw());
        } else {
            assert_eq!(r.op(), ReservationOp::Increase);
        }
        let roll = s.seed.rotate_left(extent.index() as u32 % 64) % 7;
        match roll {
            0 => Err(Errno::NoMem),
            1 | 2 if writes => Ok(Gfn::new((s.seed ^ extent.index()) % Gfn::LIMIT)),
            _ => Ok(None),
        }
    });
    match outcome {
        Outcome::Success(v) => assert!(v == r.nr_extents() && batch.end == r.nr_extents()),
        Outcome::Continue(cmd) => {
            assert_eq!(cmd.command(), Some(r.op().command()));
            assert!(cmd.start_extent() == batch.end && batch.end < r.nr_extents());
        }
        Outcome::Partial { done, .. } => {
            assert!(done > 0 && batch.start <= done && done < batch.end)
        }
        Outcome::Error(_) => assert_eq!(batch.start, 0),
        Outcome::Fault(_) => panic!("serving never faults"),
    }
    if !r.has_output() {
        return Vec::new();
    }
    // The array handle, from the argument as it was before the call (the
    // array may overlap the argument and have overwritten it).
    // A 32-bit caller's handle is 4 bytes and its frames are 4 bytes.
    let compat = s.mode != VcpuMode::Bits64;
    let (width, slot) = if compat {
        (4, COMPAT_PFN_SIZE)
    } else {
        (8, XEN_PFN_SIZE)
    };
    let at = usize::try_from(s.regs.rsi - s.base).unwrap();
    let mut handle = [0u8; 8];
    handle[..width].copy_from_slice(&s.bytes[at..at + width]);
    let array = u64::from_le_bytes(handle);
    vec![(
        array.saturating_add(slot * batch.start),
        array.saturating_add(slot * batch.end),
    )]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn decoding_anything_is_safe(s in scenario()) {
        let mut bytes = s.bytes.clone();
        let mut mem = FlatMemory::new(GuestAddr::new(s.base), &mut bytes)
            .with_read_only(s.read_only.0..s.read_only.1);
        let Some(caller) = Caller::new(DomId::new(s.me), s.mode, s.cpl) else { unreachable!() };
        let caller = if s.privileged { caller.privileged() } else { caller };
        let allowed = match host::decode(&s.regs, &caller, &mem, &s.limits) {
            Err(refused) => {
                prop_assert!(Errno::ALL.contains(&refused.errno()));
                let start = s.regs.rdi >> 6;
                match refused.outcome() {
                    Outcome::Error(e) => prop_assert_eq!(e, refused.errno()),
                    Outcome::Partial { done, cause } => prop_assert!(done == start && cause == refused.errno()),
                    Outcome::Fault(_) => prop_assert!(s.limits.user_call_policy() == UserCalls::Fault),
                    other => prop_assert!(false, "refusal answered {:?}", other),
                }
                let _ = refused.to_string();
                Vec::new()
            }
            Ok(Request::Reservation(r)) => serve_reservation(&r, &mut mem, &s),
            Ok(Request::MemoryMap(m) | Request::MachineMemoryMap(m)) => {
                prop_assert!(m.capacity() <= s.limits.map_entry_limit());
                let entries: Vec<_> = (0..45u64).map(|i| E820Entry::new(i << 12, 1 << 12, 1)).collect();
                let n = (s.seed % 46) as usize;
                let out = m.respond(&mut mem, &entries[..n]);
                prop_assert!(matches!(out, Outcome::Success(0) | Outcome::Error(Errno::Inval | Errno::Fault)));
                // Read the argument from the pre-call image: it may have been
                // rewritten. The buffer handle is at 8 (8 bytes), or at 4 (4
                // bytes) for a 32-bit caller.
                let arg = s.regs.rsi;
                let at = usize::try_from(arg - s.base).unwrap();
                let (off, width) = if s.mode == VcpuMode::Bits64 { (8, 8) } else { (4, 4) };
                let mut buf = [0u8; 8];
                buf[..width].copy_from_slice(&s.bytes[at + off..at + off + width]);
                let buffer = u64::from_le_bytes(buf);
                // The buffer is not checked up front (as in Xen): it may run
                // to the top of the address space.
                vec![(arg, arg.saturating_add(4)), (buffer, buffer.saturating_add(20 * u64::from(m.capacity())))]
            }
            Ok(Request::SetMemoryMap(set)) => {
                let mut out = vec![E820Entry::default(); s.limits.map_entry_limit() as usize];
                prop_assert_eq!(set.read_entries(&mem, &mut out).unwrap(), set.count() as usize);
                Vec::new()
            }
            Ok(_) => Vec::new(),
        };
        // Nothing outside the allowed ranges changed.
        for (i, (now, before)) in mem.bytes().iter().zip(&s.bytes).enumerate() {
            if now != before {
                let a = s.base + i as u64;
                prop_assert!(allowed.iter().any(|&(lo, hi)| lo <= a && a < hi), "byte at {:#x} changed", a);
            }
        }
    }

    #[test]
    fn what_the_guest_encodes_the_host_decodes(
        op in prop_oneof![Just(ReservationOp::Increase), Just(ReservationOp::Decrease), Just(ReservationOp::Populate)],
        nv in any::<bool>(),
        bits in prop_oneof![Just(0u8), 13u8..=255],
        node in prop::option::of((0u8..2, any::<bool>(), any::<bool>())),
        order in 0u8..=18,
        raw in prop::collection::vec(0u64..1 << 16, 0..60),
        batch in 1u32..16,
    ) {
        let kind = if nv { MemKind::NonVolatile } else { MemKind::Volatile };
        let mut flags = MemFlags::new(kind);
        if op != ReservationOp::Decrease {
            flags = flags.with_address_bits(bits).unwrap();
            if let Some((n, exact, virt)) = node {
                let mut req = NodeRequest::new(n).unwrap();
                if exact { req = req.exact(); }
                if virt { req = req.virtual_node(); }
                flags = flags.with_node(req);
            }
        }
        let order = ExtentOrder::new(order).unwrap();
        let mut gpfns: Vec<XenPfn> = raw.iter().map(|g| XenPfn::new(g << order.get())).collect();
        let sent = gpfns.clone();
        let limits = Limits::new(XenPfn::new(1 << 40)).batch(NonZeroU32::new(batch).unwrap()).numa_nodes(2);
        let caller = Caller::kernel(DomId::new(7)).unwrap();
        let mut seen = Vec::new();
        let mut ram = vec![0u8; 0x1000];
        let mut mem = FlatMemory::new(GuestAddr::new(0), &mut ram);
        let handler = |mem: &mut FlatMemory<'_>, regs: &Registers| match host::decode(regs, &caller, mem, &limits) {
            Ok(Request::Reservation(r)) => {
                assert_eq!((r.op(), r.flags(), r.order(), r.nr_extents()), (op, flags, order, sent.len() as u64));
                r.run(mem, |e| {
                    seen.push((e.index(), e.gfn().map(XenPfn::from)));
                    Ok((op != ReservationOp::Decrease).then(|| Gfn::new(e.index() * 3).unwrap()))
                })
            }
            other => panic!("{other:?}"),
        };
        let mut guest = MemoryOps::new(Loopback::new(&mut mem, GuestAddr::new(0x100), handler));
        let extents = match op {
            ReservationOp::Decrease => Extents::In(&gpfns),
            _ => Extents::InOut(&mut gpfns),
        };
        let done = guest.reserve(op, flags, order, extents).unwrap();
        let entries = guest.transport().entries();
        prop_assert_eq!(done, sent.len());
        prop_assert_eq!(entries, (sent.len() as u64).div_ceil(u64::from(batch)).max(1));
        let expected: Vec<_> = (0u64..).zip(&sent).map(|(i, g)| {
            (i, (op != ReservationOp::Increase).then_some(*g))
        }).collect();
        prop_assert_eq!(seen, expected);
        if op != ReservationOp::Decrease {
            let back: Vec<_> = (0..sent.len() as u64).map(|i| XenPfn::new(i * 3)).collect();
            prop_assert_eq!(gpfns, back);
        }
    }

    #[test]
    fn memory_maps_reach_the_guest(
        map in prop::collection::vec((any::<u64>(), any::<u64>(), any::<u32>()), 0..40),
        room in 0usize..40,
        limit in 0u32..40,
    ) {
        let map: Vec<_> = map.into_iter().map(|(a, s, k)| E820Entry::new(a, s, k)).collect();
        let limits = Limits::new(XenPfn::new(1 << 20)).max_map_entries(limit);
        let caller = Caller::kernel(DomId::new(1)).unwrap();
        let mut ram = vec![0u8; 0x1000];
        let mut mem = FlatMemory::new(GuestAddr::new(0), &mut ram);
        let handler = |mem: &mut FlatMemory<'_>, regs: &Registers| match host::decode(regs, &caller, mem, &limits) {
            Ok(Request::MemoryMap(m)) => m.respond(mem, &map),
            other => panic!("{other:?}"),
        };
        let mut guest = MemoryOps::new(Loopback::new(&mut mem, GuestAddr::new(0x100), handler));
        let mut buffer = vec![E820Entry::default(); room];
        let n = guest.memory_map(&mut buffer).unwrap();
        prop_assert_eq!(n, map.len().min(room).min(limit as usize));
        prop_assert_eq!(&buffer[..n], &map[..n]);
        prop_assert!(buffer[n..].iter().all(|e| *e == E820Entry::default()));
    }

    #[test]
    fn flag_words_round_trip(raw in any::<u32>()) {
        if let Ok(f) = MemFlags::parse(raw) {
            prop_assert_eq!(f.to_raw(), raw);
        }
    }

    #[test]
    fn command_words_round_trip(raw in any::<u64>(), start in 0u64..1 << 58) {
        prop_assert_eq!(MemopCmd::from_raw(raw).raw(), raw);
        for c in Command::ALL {
            let cmd = MemopCmd::resuming(c, start).unwrap();
            prop_assert_eq!(MemopCmd::from_raw(cmd.raw()), cmd);
        }
    }
}
