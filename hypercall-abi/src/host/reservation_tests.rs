//! Unit tests of reservation decoding, per-extent access and answers.

use super::*;
use crate::flags::{NVIRT_MEMF_NVRAM, NodeRequest, XENMEMF_POPULATE_ON_DEMAND};
use crate::host::context::Registers;
use crate::host::decode::{Request, decode};
use crate::host::memory::FlatMemory;
use crate::numbers::{Command, MemopCmd};
use core::num::NonZeroU32;
use nvirt_addr::Gfn;
use zerocopy::IntoBytes;

const ME: DomId = DomId::new(9);
const ARG: u64 = 0x100;
const ARRAY: u64 = 0x200;

fn limits() -> Limits {
    Limits::new(XenPfn::new(0x10_0000))
        .batch(NonZeroU32::new(4).unwrap())
        .numa_nodes(2)
}

/// Guest memory 0..0x1000 with a reservation at ARG and `gpfns` at ARRAY;
/// 0xf00.. is read-only.
fn guest<'a>(backing: &'a mut [u8; 0x1000], r: MemoryReservation, gpfns: &[u64]) -> FlatMemory<'a> {
    let mut mem = FlatMemory::new(GuestAddr::new(0), backing).with_read_only(0xf00..0x1000);
    mem.write(GuestAddr::new(ARG), r.as_bytes()).unwrap();
    for (i, g) in (0u64..).zip(gpfns) {
        mem.write(GuestAddr::new(ARRAY + 8 * i), &g.to_le_bytes())
            .unwrap();
    }
    mem
}

fn resv(array: u64, nr: u64, order: u32, flags: u32, domid: DomId) -> MemoryReservation {
    MemoryReservation::new(GuestAddr::new(array), nr, order, flags, domid)
}

fn run_decode(mem: &FlatMemory<'_>, cmd: u64) -> Result<Reservation, Rejection> {
    let regs = Registers {
        rax: 12,
        rdi: cmd,
        rsi: ARG,
        ..Registers::default()
    };
    match decode(&regs, &Caller::kernel(ME).unwrap(), mem, &limits()) {
        Ok(Request::Reservation(r)) => Ok(r),
        Ok(other) => panic!("not a reservation: {other:?}"),
        Err(e) => Err(e),
    }
}

fn reason(mem: &FlatMemory<'_>, cmd: u64) -> Reason {
    *run_decode(mem, cmd).unwrap_err().reason()
}

#[test]
fn decodes_a_populate_call() {
    let mut b = [0u8; 0x1000];
    let r = resv(ARRAY, 6, 9, NVIRT_MEMF_NVRAM | (2 << 8), DomId::SELF);
    let mem = guest(&mut b, r, &[0x200, 0x400, 0x600, 0x800, 0xa00, 0xc00]);
    let req = run_decode(&mem, 6).unwrap();
    assert_eq!(req.op(), ReservationOp::Populate);
    assert_eq!(req.kind(), MemKind::NonVolatile);
    assert_eq!(req.flags().node(), NodeRequest::new(1));
    assert_eq!(req.order(), ExtentOrder::PAGE_2M);
    assert_eq!(req.domain(), ME);
    assert_eq!((req.nr_extents(), req.batch()), (6, 0..4));
    assert_eq!(req.read_extent(&mem, 3), Ok(gfn(0x800)));
    assert_eq!(
        req.read_extent(&mem, 4),
        Err(ExtentError::NotInBatch {
            index: 4,
            start: 0,
            end: 4
        })
    );
    let resumed = run_decode(&mem, 6 | 4 << 6).unwrap();
    assert_eq!(resumed.batch(), 4..6);
    assert_eq!(resumed.finish(), Outcome::Success(6));
    assert_eq!(
        req.finish(),
        Outcome::Continue(MemopCmd::resuming(Command::PopulatePhysmap, 4).unwrap())
    );
    assert_eq!(run_decode(&mem, 6 | 6 << 6).map(|r| r.batch()), Ok(6..6));
}

#[test]
fn refuses_bad_arguments() {
    let mut b = [0u8; 0x1000];
    let case = |b: &mut [u8; 0x1000], r, cmd| reason(&guest(b, r, &[]), cmd);
    assert_eq!(
        case(&mut b, resv(ARRAY, MAX_PLUS, 0, 0, DomId::SELF), 6),
        Reason::TooManyExtents {
            nr_extents: MAX_PLUS,
            max: crate::numbers::MAX_CONTINUABLE_EXTENTS
        }
    );
    assert_eq!(
        case(&mut b, resv(ARRAY, 2, 0, 0, DomId::new(1)), 1),
        Reason::ForeignDomain {
            domid: DomId::new(1)
        }
    );
    assert_eq!(
        case(&mut b, resv(ARRAY, 2, 0, 0, DomId::new(0x7ff2)), 1),
        Reason::NoSuchDomain {
            domid: DomId::new(0x7ff2)
        }
    );
    assert!(
        run_decode(&guest(&mut b, resv(ARRAY, 2, 0, 0, ME), &[]), 1).is_ok(),
        "own id"
    );
    assert_eq!(
        case(&mut b, resv(ARRAY, 2, 19, 0, DomId::SELF), 0),
        Reason::OrderTooLarge {
            order: 19,
            max: ExtentOrder::PAGE_1G
        }
    );
    assert_eq!(
        case(&mut b, resv(ARRAY, 2, 1 << 31, 0, DomId::SELF), 0),
        Reason::OrderTooLarge {
            order: 1 << 31,
            max: ExtentOrder::PAGE_1G
        }
    );
    assert_eq!(
        case(&mut b, resv(ARRAY, 2, 0, 1 << 25, DomId::SELF), 0),
        Reason::Flags(crate::flags::FlagError::UnknownBits { bits: 1 << 25 })
    );
    assert_eq!(
        case(&mut b, resv(ARRAY, 2, 0, 32, DomId::SELF), 1),
        Reason::FlagsNotAllowed {
            command: Command::DecreaseReservation,
            mem_flags: 32
        }
    );
    assert!(
        run_decode(
            &guest(&mut b, resv(ARRAY, 2, 0, NVIRT_MEMF_NVRAM, ME), &[]),
            1
        )
        .is_ok()
    );
    for cmd in [0, 6] {
        assert_eq!(
            case(
                &mut b,
                resv(ARRAY, 2, 0, XENMEMF_POPULATE_ON_DEMAND, DomId::SELF),
                cmd
            ),
            Reason::FlagsNotAllowed {
                command: Command::from_raw(cmd).unwrap(),
                mem_flags: XENMEMF_POPULATE_ON_DEMAND
            }
        );
    }
    assert_eq!(
        case(&mut b, resv(ARRAY, 2, 0, 3 << 8, DomId::SELF), 0),
        Reason::NodeOutOfRange { node: 2, nodes: 2 }
    );
}

const MAX_PLUS: u64 = crate::numbers::MAX_CONTINUABLE_EXTENTS + 1;

#[test]
fn extent_arrays_are_accessed_slot_by_slot() {
    // As Xen for HVM guests: no up-front check of the whole array; each
    // slot is read or written when its extent is reached, and the first bad
    // slot ends the call with the count done (or -EFAULT if none was).
    let mut b = [0u8; 0x1000];
    // 0x1000 - ARRAY = 0xe00 bytes = 448 slots; 0xf00.. (the last 32) is
    // read-only. Resume at 444: four extents per entry.
    let frames: Vec<u64> = (0..416).collect();
    let mut mem = guest(&mut b, resv(ARRAY, 449, 0, 0, DomId::SELF), &frames);
    let req = run_decode(&mem, 1 | 444 << 6).unwrap();
    assert_eq!(
        req.run(&mut mem, |_| Ok(None)),
        Outcome::Continue(MemopCmd::resuming(Command::DecreaseReservation, 448).unwrap())
    );
    let req = run_decode(&mem, 1 | 448 << 6).unwrap();
    assert_eq!(
        req.run(&mut mem, |_| Ok(None)),
        Outcome::Partial {
            done: 448,
            cause: Errno::Fault
        },
        "slot 448 is past guest memory"
    );
    // populate writes back: the read-only slots stop it, having done 1.
    let mut mem = guest(&mut b, resv(ARRAY, 448, 0, 0, DomId::SELF), &frames);
    let req = run_decode(&mem, 6 | 415 << 6).unwrap();
    let out = req.run(&mut mem, |e| Ok(e.gfn()));
    assert_eq!(
        out,
        Outcome::Partial {
            done: 416,
            cause: Errno::Fault
        }
    );
    // An array whose slot address wraps past 2^64.
    let mut mem = guest(&mut b, resv(u64::MAX - 7, 2, 0, 0, DomId::SELF), &[]);
    let req = run_decode(&mem, 1).unwrap();
    assert_eq!(
        req.run(&mut mem, |_| Ok(None)),
        Outcome::Error(Errno::Fault)
    );
    // A null handle on increase asks for no output.
    let mut mem = guest(&mut b, resv(0, 2, 0, 0, DomId::SELF), &[]);
    let req = run_decode(&mem, 0).unwrap();
    assert_eq!(req.run(&mut mem, |_| Ok(Some(gfn(5)))), Outcome::Success(2));
    let mut small = [0u8; 0x1000];
    let mem = FlatMemory::new(GuestAddr::new(0), &mut small[..0x110]);
    let err = run_decode(&mem, 6).unwrap_err();
    assert_eq!(err.errno(), Errno::Fault, "argument cut off: {err}");
}

#[test]
fn refusals_on_continued_calls_report_progress() {
    let mut b = [0u8; 0x1000];
    let mem = guest(&mut b, resv(ARRAY, 8, 0, 1 << 24, DomId::SELF), &[]);
    let refused = run_decode(&mem, 1 | 4 << 6).unwrap_err();
    assert_eq!(
        refused.outcome(),
        Outcome::Partial {
            done: 4,
            cause: Errno::Inval
        }
    );
    // A resume point past the end is answered with itself, as Xen does.
    let beyond = run_decode(
        &guest(&mut b, resv(ARRAY, 2, 0, 0, DomId::SELF), &[]),
        1 | 3 << 6,
    );
    assert_eq!(beyond.map(|r| r.finish()), Ok(Outcome::Success(3)));
}

#[test]
fn run_counts_writes_back_and_stops() {
    let mut b = [0u8; 0x1000];
    let gpfns = [0x10, 0x11, 0x12, 0x13];
    let mut mem = guest(&mut b, resv(ARRAY, 4, 0, 0, DomId::SELF), &gpfns);
    let req = run_decode(&mem, 6).unwrap();
    let mut seen = [0u64; 4];
    let out = req.run(&mut mem, |e| {
        let g = e.gfn().unwrap();
        seen[e.index() as usize] = g.get();
        Ok(g.checked_add(0x100))
    });
    assert_eq!(out, Outcome::Success(4));
    assert_eq!(seen, gpfns);
    assert_eq!(req.read_extent(&mem, 2), Ok(gfn(0x112)), "written back");

    let out = req.run(&mut mem, |e| {
        if e.index() == 2 {
            Err(Errno::NoMem)
        } else {
            Ok(None)
        }
    });
    assert_eq!(
        out,
        Outcome::Partial {
            done: 2,
            cause: Errno::NoMem
        }
    );
    assert_eq!(
        req.run(&mut mem, |_| Err(Errno::NoMem)),
        Outcome::Error(Errno::NoMem)
    );

    // A decrease handler must not write into the input-only array.
    let dec = run_decode(&mem, 1).unwrap();
    assert_eq!(
        dec.run(&mut mem, |_| Ok(Some(gfn(1)))),
        Outcome::Error(Errno::Inval)
    );
    assert_eq!(
        dec.write_extent(&mut mem, 0, XenPfn::new(1)),
        Err(ExtentError::NotWritable { index: 0 })
    );
}

#[test]
fn frames_are_validated() {
    let mut b = [0u8; 0x1000];
    let gpfns = [0x200, 0x201, 0x10_0000, 0xf_fe00];
    let mut mem = guest(&mut b, resv(ARRAY, 4, 9, 0, DomId::SELF), &gpfns);
    let req = run_decode(&mem, 1).unwrap();
    assert_eq!(
        req.read_extent(&mem, 1),
        Err(ExtentError::Misaligned {
            index: 1,
            gpfn: XenPfn::new(0x201),
            order: ExtentOrder::PAGE_2M
        })
    );
    assert_eq!(
        req.read_extent(&mem, 2),
        Err(ExtentError::OutOfRange {
            index: 2,
            gpfn: XenPfn::new(0x10_0000),
            limit: XenPfn::new(0x10_0000)
        })
    );
    assert_eq!(
        req.read_extent(&mem, 3),
        Ok(gfn(0xf_fe00)),
        "ends exactly at the limit"
    );
    assert_eq!(
        req.run(&mut mem, |_| Ok(None)),
        Outcome::Partial {
            done: 1,
            cause: Errno::Inval
        }
    );
}

#[test]
fn increase_without_array_writes_nothing() {
    let mut b = [0u8; 0x1000];
    let mut mem = guest(&mut b, resv(0, 3, 0, NVIRT_MEMF_NVRAM, DomId::SELF), &[]);
    let before = mem.bytes().to_vec();
    let req = run_decode(&mem, 0).unwrap();
    assert!(!req.has_output());
    assert_eq!(
        req.read_extent(&mem, 0),
        Err(ExtentError::NotReadable { index: 0 })
    );
    let out = req.run(&mut mem, |e| {
        assert_eq!(e.gfn(), None);
        Ok(Some(gfn(0x4242)))
    });
    assert_eq!(out, Outcome::Success(3));
    assert_eq!(mem.bytes(), &before[..]);
}

#[test]
fn guest_memory_changing_under_the_handler_is_a_fault_not_a_panic() {
    let mut b = [0u8; 0x1000];
    let mut mem = guest(&mut b, resv(0xef0, 4, 0, 0, DomId::SELF), &[]);
    let req = run_decode(&mem, 1).unwrap();
    // Pretend another vCPU made the array read-only: writes fail now.
    let mut other = [0u8; 0x1000];
    let mut ro = FlatMemory::new(GuestAddr::new(0), &mut other).with_read_only(0..0x1000);
    let inc = Reservation {
        op: ReservationOp::Increase,
        array: GuestAddr::new(0xef0),
        ..req
    };
    assert_eq!(
        inc.run(&mut ro, |_| Ok(Some(gfn(1)))),
        Outcome::Error(Errno::Fault)
    );
    assert_eq!(req.run(&mut mem, |_| Ok(None)), Outcome::Success(4));
    assert_eq!(
        ExtentError::Misaligned {
            index: 1,
            gpfn: XenPfn::new(3),
            order: ExtentOrder::PAGE_2M
        }
        .to_string(),
        "extent 1: gpfn 0x3 is not aligned to order 9"
    );
}

#[test]
fn an_empty_request_never_looks_at_its_array() {
    // As Xen: nothing to read or write, so an unmapped handle is no fault.
    for cmd in [0u64, 1, 6] {
        let mut b = [0u8; 0x1000];
        let r = resv(0xdead_0000, 0, 0, 0, DomId::SELF);
        let mem = guest(&mut b, r, &[]);
        let req = run_decode(&mem, cmd).unwrap();
        assert_eq!(req.finish(), Outcome::Success(0), "command {cmd}");
    }
    // Nothing to do is answered before any other check, as Xen does: a
    // foreign domain, a bad order and bad flags are not looked at, and a
    // resume point past the end is the answer.
    let mut b = [0u8; 0x1000];
    let mem = guest(
        &mut b,
        resv(0xdead_0000, 0, 77, 1 << 25, DomId::new(5)),
        &[],
    );
    assert_eq!(run_decode(&mem, 6).unwrap().finish(), Outcome::Success(0));
    let mem = guest(&mut b, resv(ARRAY, 2, 0, 0, DomId::SELF), &[]);
    assert_eq!(
        run_decode(&mem, 1 | 3 << 6).unwrap().finish(),
        Outcome::Success(3)
    );
    // One extent: the same handle is a fault when its slot is reached
    // (the whole call: nothing was done).
    let mut b = [0u8; 0x1000];
    let mut mem = guest(&mut b, resv(0xdead_0000, 1, 0, 0, DomId::SELF), &[]);
    let req = run_decode(&mem, 1).unwrap();
    assert_eq!(
        req.run(&mut mem, |_| Ok(None)),
        Outcome::Error(Errno::Fault)
    );
}

fn gfn(n: u64) -> Gfn {
    Gfn::new(n).unwrap()
}

mod compat {
    use super::super::*;
    use crate::host::context::{Registers, VcpuMode};
    use crate::host::decode::{Request, decode};
    use crate::host::memory::FlatMemory;
    use crate::layout::CompatMemoryReservation;
    use zerocopy::IntoBytes;

    const ARG: u64 = 0x40;
    const ARRAY: u64 = 0x100;

    fn caller() -> Caller {
        Caller::new(DomId::new(2), VcpuMode::Bits32, 0).unwrap()
    }

    fn decode_at(mem: &FlatMemory<'_>, op: u64) -> Result<Request, Rejection> {
        let regs = Registers::compat(12, op, ARG, 0, 0, 0);
        decode(
            &regs,
            &caller(),
            mem,
            &Limits::new(XenPfn::new(1 << 20)).batch(2.try_into().unwrap()),
        )
    }

    #[test]
    fn a_32_bit_caller_uses_4_byte_frames() {
        let mut b = [0u8; 0x200];
        let mut mem = FlatMemory::new(GuestAddr::new(0), &mut b);
        let r = CompatMemoryReservation::new(ARRAY as u32, 3, 9, 0, DomId::SELF);
        mem.write(GuestAddr::new(ARG), r.as_bytes()).unwrap();
        // Three 4-byte frames; the word after them is a trap for an 8-byte
        // reader.
        for (i, f) in [0x200u32, 0x400, 0x600, 0xdead].iter().enumerate() {
            mem.write(GuestAddr::new(ARRAY + 4 * i as u64), &f.to_le_bytes())
                .unwrap();
        }
        let Ok(Request::Reservation(res)) = decode_at(&mem, 6) else {
            panic!("a compat populate decodes")
        };
        assert_eq!(
            (res.nr_extents(), res.order(), res.batch()),
            (3, ExtentOrder::PAGE_2M, 0..2)
        );
        let gfns: Vec<u64> = res
            .batch()
            .map(|i| res.read_extent(&mem, i).unwrap().get())
            .collect();
        assert_eq!(gfns, [0x200, 0x400]);
        // Writing back stays inside the 4-byte slot.
        res.write_extent(&mut mem, 1, XenPfn::new(0x1234)).unwrap();
        assert_eq!(
            mem.bytes()[ARRAY as usize + 4..ARRAY as usize + 12],
            [0x34, 0x12, 0, 0, 0, 0x06, 0, 0]
        );
        assert_eq!(
            res.write_extent(&mut mem, 1, XenPfn::new(1 << 32)),
            Err(ExtentError::FrameTooWide {
                index: 1,
                gpfn: XenPfn::new(1 << 32)
            })
        );
        res.write_extent(&mut mem, 1, XenPfn::new(0x400)).unwrap();
        // The continuation goes back through the same command word.
        let outcome = res.run(&mut mem, |_| Ok(None));
        let Outcome::Continue(cmd) = outcome else {
            panic!("{outcome:?}")
        };
        let mut regs = Registers::compat(12, 6, ARG, 0, 0, 0);
        outcome.apply(&mut regs);
        assert_eq!(regs.rdi, cmd.raw());
        assert_eq!(cmd.start_extent(), 2);
    }

    #[test]
    fn a_32_bit_callers_map_argument_is_8_bytes() {
        use crate::host::map::MapRequest;
        use crate::layout::{CompatMemoryMap, E820Entry};
        let mut b = [0u8; 0x200];
        let mut mem = FlatMemory::new(GuestAddr::new(0), &mut b);
        mem.write(
            GuestAddr::new(ARG),
            CompatMemoryMap::new(2, ARRAY as u32).as_bytes(),
        )
        .unwrap();
        let Ok(Request::MemoryMap(m)) = decode_at(&mem, 9) else {
            panic!()
        };
        let _: MapRequest = m;
        let e = [
            E820Entry::new(0, 0x9_f000, 1),
            E820Entry::new(0x10_0000, 0x100_0000, 1),
        ];
        assert_eq!(m.respond(&mut mem, &e[..1]), Outcome::Success(0));
        let mut expected = [1, 0, 0, 0, 0, 0, 0, 0];
        expected[4..].copy_from_slice(&(ARRAY as u32).to_le_bytes());
        assert_eq!(mem.bytes()[ARG as usize..ARG as usize + 8], expected);
        assert_eq!(
            mem.bytes()[ARRAY as usize..ARRAY as usize + 20],
            *e[0].as_bytes()
        );
    }
}
