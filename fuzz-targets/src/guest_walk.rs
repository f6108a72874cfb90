//! The guest page walk and guest-virtual copies under hostile guests:
//! arbitrary control registers (every paging mode), arbitrary page tables
//! (guest memory is whatever the fuzzer writes, tables included) and
//! arbitrary accesses. Checked for every access: the walk never panics; a
//! translation keeps the address's offset in its page and its run ends at
//! a page boundary no larger than 1 GiB; a guest-virtual check, read and
//! write agree with each other and with per-byte translation; a refused
//! write changes no byte; a successful write reads back.

use arbitrary::Arbitrary;
use nvirt_hypercall_abi::GuestAddr;
use nvirt_hypercall_abi::host::{
    Access, FlatMemory, GuestMemory, Linear, Paging, PagingMode, translate,
};

#[derive(Arbitrary, Debug)]
pub struct Input {
    cr0: u64,
    cr3: u16,
    cr4: u8,
    efer: u16,
    user: bool,
    /// Guest-physical memory from 0, page tables and data alike.
    memory: Vec<u8>,
    accesses: Vec<(u64, u16, u8, u8)>,
}

/// Runs one decoded input.
pub fn run(input: Input) {
    let mut bytes = input.memory;
    bytes.truncate(64 << 10);
    // The CR4 bits that matter: PSE (4), PAE (5), LA57 (12).
    let cr4 = u64::from(input.cr4) & 0x30 | (u64::from(input.cr4 & 1) << 12);
    let paging = Paging::from_registers(
        input.cr0,
        u64::from(input.cr3) << 4,
        cr4,
        u64::from(input.efer),
    );
    let paging = if input.user { paging.as_user() } else { paging };
    let mut lin = Linear::new(FlatMemory::new(GuestAddr::new(0), &mut bytes), paging);
    for (va, len, fill, how) in input.accesses.into_iter().take(16) {
        let va = match how % 4 {
            // Near the bottom, where a fuzzer's tables can point.
            0 => va & 0xf_ffff,
            1 => va & 0xffff_ffff,
            _ => va,
        };
        let access = [Access::Read, Access::Write, Access::ReadWrite][usize::from(how / 4 % 3)];
        let len = u64::from(len % 0x3000);
        check_one(&mut lin, va, len, access, fill);
    }
}

fn check_one(lin: &mut Linear<FlatMemory<'_>>, va: u64, len: u64, access: Access, fill: u8) {
    let paging = *lin.paging().unwrap();
    if let Ok(t) = translate(&paging, lin.physical(), va, access) {
        assert!(t.run >= 1 && t.run <= 1 << 30, "{t:?}");
        assert_eq!((t.gpa + t.run) & 0xfff, 0, "a run ends at a page boundary");
        assert_eq!(t.gpa & 0xfff, va & 0xfff, "the offset in the page is kept");
        if paging.mode() == PagingMode::Off {
            assert_eq!(t.gpa, va);
        }
    }
    let checked = lin.check(GuestAddr::new(va), len, access);
    // Page by page, the walk and the guest-physical check agree with the
    // range check.
    let mut all = Ok(());
    let mut at = 0;
    while at < len {
        let v = va.wrapping_add(at);
        match translate(&paging, lin.physical(), v, access) {
            Ok(t) => {
                // The piece of this page, which guest-physical memory may
                // end inside.
                let n = t.run.min(len - at);
                if lin
                    .physical()
                    .check(GuestAddr::new(t.gpa), n, access)
                    .is_err()
                {
                    all = Err(());
                    break;
                }
                at += n;
            }
            Err(_) => {
                all = Err(());
                break;
            }
        }
    }
    if va.checked_add(len).is_some() {
        assert_eq!(
            checked.is_ok(),
            all.is_ok(),
            "{va:#x}+{len:#x}: {checked:?}"
        );
    } else {
        assert!(checked.is_err());
    }
    let len = len as usize;
    if access.reads() {
        let mut buf = vec![0u8; len];
        let read = lin.read(GuestAddr::new(va), &mut buf);
        let readable = lin.check(GuestAddr::new(va), len as u64, Access::Read);
        assert_eq!(read.is_ok(), readable.is_ok());
    }
    if access.writes() {
        let before = lin.physical().bytes().to_vec();
        let pieces_before = pieces(lin, va, len as u64);
        let data: Vec<u8> = (0..len).map(|i| fill ^ i as u8).collect();
        match lin.write(GuestAddr::new(va), &data) {
            Err(_) => assert_eq!(lin.physical().bytes(), &before[..], "a refused write wrote"),
            Ok(()) => {
                // The write may land on the tables themselves, or two
                // virtual pages may share a frame: the bytes must read back
                // whenever neither happened.
                let pieces_after = pieces(lin, va, len as u64);
                let mut frames: Vec<u64> = pieces_after.iter().map(|(g, _)| g >> 12).collect();
                frames.sort_unstable();
                frames.dedup();
                if pieces_before == pieces_after && frames.len() == pieces_after.len() {
                    let mut back = vec![0u8; len];
                    lin.read(GuestAddr::new(va), &mut back).unwrap();
                    assert_eq!(back, data);
                }
            }
        }
    }
}

/// The guest-physical pieces of `[va, va + len)`, or none if any fails.
fn pieces(lin: &Linear<FlatMemory<'_>>, va: u64, len: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < len {
        let Ok(t) = translate(
            lin.paging().unwrap(),
            lin.physical(),
            va + at,
            Access::Write,
        ) else {
            return Vec::new();
        };
        let n = t.run.min(len - at);
        out.push((t.gpa, n));
        at += n;
    }
    out
}

/// The target's body.
pub fn fuzz(data: &[u8]) {
    if let Some(input) = crate::decode::<Input>(data) {
        run(input);
    }
}
