//! The hypervisor's side of `memory_op` under hostile guests: arbitrary
//! registers, vCPU state (64-bit callers with the native layouts, 32-bit,
//! 16-bit and real-mode ones with the compat layouts), limits and guest
//! memory. Every call is decoded,
//! served by a handler that fails now and then, and re-entered for as long
//! as it continues (re-decoding from guest memory each time, as a real
//! hypervisor does). Checked after every entry: a refusal carries one of
//! Xen's error numbers and answers consistently; a request keeps its
//! promises (batch within limits, frames aligned and in range, domain is
//! the caller); a continuation moves forward; and no byte of guest memory
//! outside the request's output ranges changes.

use std::num::NonZeroU32;

use arbitrary::Arbitrary;
use nvirt_hypercall_abi::host::{
    self, Caller, FlatMemory, GuestMemory, Limits, Outcome, Registers, Request, UserCalls, VcpuMode,
};
use nvirt_hypercall_abi::{
    CompatForeignMemoryMap, CompatMemoryMap, CompatMemoryReservation, DomId, E820Entry, Errno,
    ExtentOrder, ForeignMemoryMap, Gfn, GuestAddr, MemoryDomain, MemoryMap, MemoryReservation,
    NVIRT_MEMF_NVRAM, ReservationOp, XenPfn,
};
use zerocopy::IntoBytes;

/// A domain id as a guest would name one.
#[derive(Arbitrary, Debug)]
enum Domid {
    Myself,
    Own,
    Raw(u16),
}

/// An address inside guest memory (an offset) or anywhere.
#[derive(Arbitrary, Debug)]
enum Addr {
    Inside(u16),
    Raw(u64),
}

/// The argument structure written at RSI, so that the fuzzer spends its
/// time past the first checks; `Raw` leaves guest memory as it is.
#[derive(Arbitrary, Debug)]
enum Arg {
    Raw,
    Reservation {
        array: Addr,
        nr: Result<u8, u64>,
        order: Result<u8, u32>,
        flags: Flags,
        domid: Domid,
    },
    Map {
        nr: Result<u8, u32>,
        buffer: Addr,
    },
    Foreign {
        domid: Domid,
        nr: u8,
        buffer: Addr,
    },
    Domain(Domid),
}

/// `mem_flags`: the two words guests send most, or anything.
#[derive(Arbitrary, Debug)]
enum Flags {
    Ram,
    Nvram,
    Raw(u32),
}

/// The command word: a known command and a small resume point, or anything.
#[derive(Arbitrary, Debug)]
enum Cmd {
    Known { which: u8, start: Option<u8> },
    Raw(u64),
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    high_base: Option<u64>,
    memory: Vec<u8>,
    read_only: Option<(u16, u16)>,
    rax: Option<u64>,
    cmd: Cmd,
    /// RSI as an offset into guest memory, or a raw value.
    rsi: Addr,
    arg: Arg,
    mode: u8,
    cpl: u8,
    privileged: bool,
    domid: u16,
    gpfn_limit: Option<u64>,
    batch: u8,
    max_order: u8,
    nodes: u8,
    map_entries: u8,
    max_extents: Option<u64>,
    fault_user_calls: bool,
    /// Per-extent handler decisions, cycled.
    decisions: Vec<u8>,
    map_len: u8,
}

const MAX_ENTRIES: u32 = 64;

/// Runs one decoded input.
pub fn run(input: Input) {
    let base = input.high_base.unwrap_or(0x1000);
    let mut bytes = input.memory;
    bytes.truncate(8192);
    // Keep guest memory inside the address space, as FlatMemory would.
    bytes.truncate(usize::try_from(u64::MAX - base).unwrap_or(usize::MAX));
    let len = bytes.len() as u64;
    let (a, b) = input
        .read_only
        .map_or((0, 0), |(a, b)| (u64::from(a), u64::from(b)));
    let (ro_lo, ro_hi) = (a.min(b), a.max(b));

    let mode = match input.mode % 8 {
        0 => VcpuMode::Bits32,
        1 => VcpuMode::Bits16,
        2 => VcpuMode::Real,
        3 => VcpuMode::Vm86,
        _ => VcpuMode::Bits64,
    };
    let cpl = if input.cpl < 200 { 0 } else { input.cpl % 4 };
    let Some(caller) = Caller::new(DomId::new(input.domid % 0x7ff0), mode, cpl) else {
        return;
    };
    let caller = if input.privileged {
        caller.privileged()
    } else {
        caller
    };
    let limits = Limits::new(XenPfn::new(input.gpfn_limit.unwrap_or(1 << 20)))
        .batch(NonZeroU32::new(u32::from(input.batch % 32) + 1).unwrap())
        .max_order(ExtentOrder::new(input.max_order % 53).unwrap())
        .numa_nodes(input.nodes % 5)
        .max_map_entries(u32::from(input.map_entries))
        .max_extents(input.max_extents.unwrap_or(u64::MAX))
        .user_calls(if input.fault_user_calls {
            UserCalls::Fault
        } else {
            UserCalls::Refuse
        });
    let addr = |a: &Addr| match *a {
        Addr::Inside(off) => base.wrapping_add(u64::from(off) % len.max(1)),
        Addr::Raw(raw) => raw,
    };
    let domid = |d: &Domid| match *d {
        Domid::Myself => DomId::SELF,
        Domid::Own => caller.domain(),
        Domid::Raw(raw) => DomId::new(raw),
    };
    let compat = caller.is_compat();
    let rsi = addr(&input.rsi);
    let rsi = if compat { rsi & 0xffff_ffff } else { rsi };
    let arg: Vec<u8> = match &input.arg {
        Arg::Raw => Vec::new(),
        Arg::Reservation {
            array,
            nr,
            order,
            flags,
            domid: d,
        } => {
            let flags = match flags {
                Flags::Ram => 0,
                Flags::Nvram => NVIRT_MEMF_NVRAM,
                Flags::Raw(raw) => *raw,
            };
            let (nr, order) = (
                nr.map_or_else(|raw| raw, u64::from),
                order.map_or_else(|raw| raw, u32::from),
            );
            if compat {
                CompatMemoryReservation::new(addr(array) as u32, nr as u32, order, flags, domid(d))
                    .as_bytes()
                    .to_vec()
            } else {
                MemoryReservation::new(GuestAddr::new(addr(array)), nr, order, flags, domid(d))
                    .as_bytes()
                    .to_vec()
            }
        }
        Arg::Map { nr, buffer } => {
            let nr = nr.map_or_else(|raw| raw, u32::from);
            if compat {
                CompatMemoryMap::new(nr, addr(buffer) as u32)
                    .as_bytes()
                    .to_vec()
            } else {
                MemoryMap::new(nr, GuestAddr::new(addr(buffer)))
                    .as_bytes()
                    .to_vec()
            }
        }
        Arg::Foreign {
            domid: d,
            nr,
            buffer,
        } => {
            if compat {
                let map = CompatMemoryMap::new(u32::from(*nr), addr(buffer) as u32);
                CompatForeignMemoryMap::new(domid(d), map)
                    .as_bytes()
                    .to_vec()
            } else {
                let map = MemoryMap::new(u32::from(*nr), GuestAddr::new(addr(buffer)));
                ForeignMemoryMap::new(domid(d), map).as_bytes().to_vec()
            }
        }
        Arg::Domain(d) => MemoryDomain::new(domid(d)).as_bytes().to_vec(),
    };
    if let Some(off) = rsi.checked_sub(base).and_then(|o| usize::try_from(o).ok()) {
        if let Some(room) = bytes.get_mut(off..) {
            let n = room.len().min(arg.len());
            room[..n].copy_from_slice(&arg[..n]);
        }
    }
    let pristine = bytes.clone();
    let mut mem = FlatMemory::new(GuestAddr::new(base), &mut bytes)
        .with_read_only(base.saturating_add(ro_lo)..base.saturating_add(ro_hi));
    const COMMANDS: [u64; 10] = [0, 1, 6, 0, 1, 6, 2, 3, 9, 13];
    let rdi = match input.cmd {
        Cmd::Known { which, start } => {
            COMMANDS[usize::from(which) % COMMANDS.len()] | u64::from(start.unwrap_or(0) % 8) << 6
        }
        Cmd::Raw(raw) => raw,
    };
    let rax = input.rax.unwrap_or(12);
    let mut regs = if compat {
        // EBX and ECX: the 32-bit convention.
        Registers::compat(rax, rdi, rsi, 0, 0, 0)
    } else {
        Registers {
            rax,
            rdi,
            rsi,
            ..Registers::default()
        }
    };
    let decisions = if input.decisions.is_empty() {
        vec![0]
    } else {
        input.decisions
    };
    let map: Vec<E820Entry> = (0..u64::from(input.map_len % 80))
        .map(|i| E820Entry::new(i << 21, 1 << 21, 1))
        .collect();

    // Output ranges any entry of this call may write.
    let mut allowed: Vec<(u64, u64)> = Vec::new();
    let mut last_start: Option<u64> = None;
    for entry in 0..MAX_ENTRIES {
        let decoded = host::decode(&regs, &caller, &mem, &limits);
        let outcome = match decoded {
            Err(refused) => {
                let out = refused.outcome();
                assert!(Errno::ALL.contains(&refused.errno()));
                match out {
                    Outcome::Error(e) => assert_eq!(e, refused.errno()),
                    Outcome::Partial { done, cause } => {
                        assert_eq!((done, cause), (regs.rdi >> 6, refused.errno()));
                    }
                    Outcome::Fault(_) => {
                        let user = match mode {
                            VcpuMode::Vm86 => true,
                            VcpuMode::Real => false,
                            _ => cpl != 0,
                        };
                        assert!(input.fault_user_calls && user);
                    }
                    other => panic!("a refusal answered {other:?}"),
                }
                let _ = refused.to_string();
                out
            }
            Ok(Request::Reservation(r)) if r.batch().is_empty() => {
                // Nothing to do: Xen answers the resume point before any
                // check.
                let start = r.batch().start;
                assert!(start >= r.nr_extents());
                let out = r.run(&mut mem, |_| panic!("no extent to serve"));
                assert_eq!(out, Outcome::Success(start));
                out
            }
            Ok(Request::Reservation(r)) => {
                let batch = r.batch();
                assert!(batch.start < batch.end && batch.end <= r.nr_extents());
                assert!(batch.end - batch.start <= limits.batch_size());
                assert!(r.nr_extents() <= limits.extent_limit());
                assert!(r.order() <= limits.order_limit());
                assert_eq!(r.domain(), caller.domain());
                if let Some(prev) = last_start {
                    assert!(batch.start > prev, "a continuation must move forward");
                }
                last_start = Some(batch.start);
                if r.has_output() {
                    // The handle is the argument's first field in both
                    // layouts: 8 bytes, or 4 for a 32-bit caller.
                    let (width, slot) = if compat { (4, 4) } else { (8, 8) };
                    let mut handle = [0u8; 8];
                    mem.read(GuestAddr::new(regs.rsi), &mut handle[..width])
                        .unwrap();
                    let array = u64::from_le_bytes(handle);
                    allowed.push((
                        array.saturating_add(slot * batch.start),
                        array.saturating_add(slot * batch.end),
                    ));
                }
                let writes = r.op() != ReservationOp::Decrease;
                let out = r.run(&mut mem, |extent| {
                    assert!(batch.contains(&extent.index()));
                    if let Some(g) = extent.gfn() {
                        assert_eq!(g.get() & (r.order().pages() - 1), 0, "extents are aligned");
                        assert!(g.get() + r.order().pages() <= limits.gpfn_limit().raw());
                    }
                    let d = decisions[(extent.index() % decisions.len() as u64) as usize];
                    match d % 5 {
                        0 => Err(Errno::NoMem),
                        1 | 2 if writes => Ok(Gfn::new(u64::from(d) << 9)),
                        _ => Ok(None),
                    }
                });
                match out {
                    Outcome::Success(v) => assert!(v == r.nr_extents() && batch.end == v),
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
                out
            }
            Ok(Request::MemoryMap(m) | Request::MachineMemoryMap(m)) => {
                assert!(m.capacity() <= limits.map_entry_limit());
                let buffer = if compat {
                    let mut raw = [0u8; 8];
                    mem.read(GuestAddr::new(regs.rsi), &mut raw).unwrap();
                    u64::from(u32::from_le_bytes(raw[4..].try_into().unwrap()))
                } else {
                    let mut raw = [0u8; 16];
                    mem.read(GuestAddr::new(regs.rsi), &mut raw).unwrap();
                    u64::from_le_bytes(raw[8..].try_into().unwrap())
                };
                // The buffer is not checked up front (as in Xen), so it may
                // run to the top of the address space.
                allowed.push((regs.rsi, regs.rsi.saturating_add(4)));
                allowed.push((buffer, buffer.saturating_add(20 * u64::from(m.capacity()))));
                let out = m.respond(&mut mem, &map);
                assert!(matches!(
                    out,
                    Outcome::Success(0) | Outcome::Error(Errno::Inval | Errno::Fault)
                ));
                out
            }
            Ok(Request::SetMemoryMap(set)) => {
                let mut out = vec![E820Entry::default(); limits.map_entry_limit() as usize];
                assert_eq!(
                    set.read_entries(&mem, &mut out).unwrap(),
                    set.count() as usize
                );
                Outcome::Success(0)
            }
            Ok(
                Request::MaximumRamPage
                | Request::CurrentReservation
                | Request::MaximumReservation
                | Request::MaximumGpfn,
            ) => {
                assert_eq!(regs.rdi >> 6, 0);
                Outcome::Success(entry.into())
            }
        };
        // Nothing outside the output ranges changed.
        for (i, (now, before)) in mem.bytes().iter().zip(&pristine).enumerate() {
            if now != before {
                let a = base + i as u64;
                assert!(
                    allowed.iter().any(|&(lo, hi)| lo <= a && a < hi),
                    "guest byte {a:#x} changed"
                );
            }
        }
        match outcome.apply(&mut regs) {
            host::Resume::Again => continue,
            _ => return,
        }
    }
}

/// Runs one input: decodes it as `cargo fuzz` does, then [`run`].
pub fn fuzz(data: &[u8]) {
    if let Some(input) = crate::decode::<Input>(data) {
        run(input);
    }
}
