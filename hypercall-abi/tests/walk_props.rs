//! Property test of the guest page walk against a simple model: a list of
//! mappings (4 KiB, 2 MiB and 1 GiB pages with their rights), built into
//! real 4-level tables in a guest-physical buffer; every translation and
//! every guest-virtual copy must agree with the list.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use nvirt_hypercall_abi::GuestAddr;
use nvirt_hypercall_abi::host::{
    Access, FlatMemory, GuestMemory, Linear, Paging, Translation, WalkError, translate,
};
use proptest::prelude::*;

const PHYS: usize = 1 << 20;
/// Tables are allocated from here up; data pages below.
const TABLES: u64 = 0x8_0000;
const SIZES: [u64; 3] = [1 << 12, 1 << 21, 1 << 30];

#[derive(Clone, Copy, Debug)]
struct Mapping {
    va: u64,
    size: u64,
    pa: u64,
    writable: bool,
    user: bool,
}

struct Builder {
    phys: Vec<u8>,
    next: u64,
    root: u64,
}

impl Builder {
    fn new() -> Self {
        let mut b = Self {
            phys: vec![0; PHYS],
            next: TABLES,
            root: 0,
        };
        b.root = b.table();
        b
    }
    fn table(&mut self) -> u64 {
        let t = self.next;
        self.next += 0x1000;
        t
    }
    fn get(&self, at: u64) -> u64 {
        let at = at as usize;
        u64::from_le_bytes(self.phys[at..at + 8].try_into().unwrap())
    }
    fn set(&mut self, at: u64, v: u64) {
        let at = at as usize;
        self.phys[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    /// Installs `m`, or returns false if it collides with what is there.
    fn map(&mut self, m: &Mapping) -> bool {
        let leaf_level = match m.size {
            0x1000 => 1,
            0x20_0000 => 2,
            _ => 3,
        };
        let mut table = self.root;
        for level in (1..=4u32).rev() {
            let slot = table + 8 * ((m.va >> (12 + 9 * (level - 1))) & 511);
            let e = self.get(slot);
            if level == leaf_level {
                if e & 1 != 0 {
                    return false;
                }
                let ps = if level > 1 { 1 << 7 } else { 0 };
                let rights = u64::from(m.writable) << 1 | u64::from(m.user) << 2;
                self.set(slot, m.pa | ps | rights | 1);
                return true;
            }
            if e & 1 == 0 {
                if self.next + 0x1000 > PHYS as u64 {
                    return false;
                }
                let t = self.table();
                self.set(slot, t | 7);
                table = t;
            } else if e & 1 << 7 != 0 {
                return false;
            } else {
                table = e & 0x000f_ffff_ffff_f000;
            }
        }
        false
    }
}

fn sign_extend(va: u64) -> u64 {
    if va & 1 << 47 != 0 {
        va | 0xffff_0000_0000_0000
    } else {
        va
    }
}

/// Addresses in a small corner of each half, so that mappings collide.
fn va() -> impl Strategy<Value = u64> {
    (
        prop_oneof![Just(0u64), Just(1), Just(256), Just(511)],
        0u64..3,
        0u64..3,
        0u64..6,
    )
        .prop_map(|(l4, l3, l2, l1)| sign_extend(l4 << 39 | l3 << 30 | l2 << 21 | l1 << 12))
}

fn mapping() -> impl Strategy<Value = Mapping> {
    (va(), 0usize..3, 0u64..0x80, any::<bool>(), any::<bool>()).prop_map(
        |(va, s, frame, writable, user)| {
            let size = SIZES[s];
            // Small pages land in the data area so copies can be checked;
            // large ones anywhere aligned.
            let pa = if size == 0x1000 {
                frame << 12
            } else {
                frame * size
            };
            Mapping {
                va: va & !(size - 1),
                size,
                pa,
                writable,
                user,
            }
        },
    )
}

fn model(
    maps: &[Mapping],
    paging_user: bool,
    va: u64,
    access: Access,
) -> Option<Result<Translation, ()>> {
    let m = maps.iter().find(|m| m.va <= va && va - m.va < m.size)?;
    if access.writes() && !m.writable || paging_user && !m.user {
        return Some(Err(()));
    }
    Some(Ok(Translation {
        gpa: m.pa + (va - m.va),
        run: m.size - (va - m.va),
    }))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn walk_agrees_with_the_model(
        candidates in prop::collection::vec(mapping(), 1..24),
        probes in prop::collection::vec((va(), 0u64..0x1000, 0u8..3, any::<bool>()), 1..48),
        noncanonical in 1u64..0xffff,
    ) {
        let mut b = Builder::new();
        let maps: Vec<Mapping> = candidates.into_iter().filter(|m| b.map(m)).collect();
        let root = b.root;
        let mem = FlatMemory::new(GuestAddr::new(0), &mut b.phys);
        let paging = Paging::from_registers(0x8001_0001, root, 0x20, 0x500);
        for (page, off, a, user) in probes {
            let va = page + off;
            let access = [Access::Read, Access::Write, Access::ReadWrite][a as usize];
            let p = if user { paging.as_user() } else { paging };
            let got = translate(&p, &mem, va, access);
            match model(&maps, user, va, access) {
                None => prop_assert!(matches!(got, Err(WalkError::NotPresent { .. })), "{va:#x}: {got:?}"),
                Some(Err(())) => prop_assert_eq!(got, Err(WalkError::Denied { va, access })),
                Some(Ok(t)) => prop_assert_eq!(got, Ok(t)),
            }
        }
        let bad = (noncanonical << 48) | 1 << 40;
        prop_assert_eq!(
            translate(&paging, &mem, bad, Access::Read),
            Err(WalkError::NonCanonical { va: bad })
        );
    }

    #[test]
    fn copies_agree_with_the_model(
        frames in prop::collection::vec(0u64..0x80, 6),
        start in 0u64..0x5000,
        len in 0usize..0x2000,
        fill in any::<u8>(),
    ) {
        // Six consecutive virtual pages from 0x40_0000 on arbitrary
        // (possibly shared) physical frames.
        let mut b = Builder::new();
        let base = 0x40_0000;
        let maps: Vec<Mapping> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| Mapping { va: base + 0x1000 * i as u64, size: 0x1000, pa: f << 12, writable: true, user: false })
            .filter(|m| b.map(m))
            .collect();
        prop_assert_eq!(maps.len(), 6);
        let root = b.root;
        let paging = Paging::from_registers(0x8001_0001, root, 0x20, 0x500);
        let mut lin = Linear::new(FlatMemory::new(GuestAddr::new(0), &mut b.phys), paging);
        let va = base + start;
        let data: Vec<u8> = (0..len).map(|i| fill.wrapping_add(i as u8)).collect();
        let fits = start + len as u64 <= 0x6000;
        let wrote = lin.write(GuestAddr::new(va), &data);
        prop_assert_eq!(wrote.is_ok(), fits);
        if !fits {
            return Ok(());
        }
        // Each byte is where the model says, unless a later byte shared
        // its physical frame and overwrote it.
        let phys = lin.physical().bytes().to_vec();
        let mut last_writer = std::collections::HashMap::new();
        for (i, _) in data.iter().enumerate() {
            let v = va + i as u64;
            let Some(Ok(t)) = model(&maps, false, v, Access::Write) else { unreachable!() };
            last_writer.insert(t.gpa, i);
        }
        for (gpa, i) in &last_writer {
            prop_assert_eq!(phys[*gpa as usize], data[*i]);
        }
        let mut back = vec![0u8; len];
        lin.read(GuestAddr::new(va), &mut back).unwrap();
        for (i, byte) in back.iter().enumerate() {
            let Some(Ok(t)) = model(&maps, false, va + i as u64, Access::Read) else { unreachable!() };
            prop_assert_eq!(*byte, phys[t.gpa as usize]);
        }
    }
}
