//! Sequences of map / replace / unmap / protect / memory-type / promote /
//! reclaim operations with injected frame exhaustion, on EPT or NPT tables
//! with either merge policy, checked after every step against the reference
//! model by an independent walker (`nvirt_ept::model::Checker`): exact
//! translations, valid entries, no shared tables, the expected (minimal
//! when eager) page decomposition and table count, failures that change
//! nothing, and no leaked frames.

use arbitrary::Arbitrary;
use nvirt_ept::host::HostFrames;
use nvirt_ept::model::{Checker, Kind, Step, Walker};
use nvirt_ept::{Config, Ept, Format, HostPhysAddr, MemType, Merge, Npt, Perms};

const PERMS: [Perms; 4] = [Perms::READ, Perms::RW, Perms::RX, Perms::RWX];
const PAT_LINUX: u64 = 0x0407_0506_0007_0106;
const HOST_BASE: u64 = 64 << 30;

/// A guest address in the first 4 GiB, on a 4 KiB, 2 MiB or 1 GiB grid.
#[derive(Arbitrary, Debug)]
struct Addr(u8, u32);

impl Addr {
    fn get(&self) -> u64 {
        let n = u64::from(self.1);
        match self.0 % 3 {
            0 => (n % (1 << 20)) << 12,
            1 => (n % 2048) << 21,
            _ => (n % 4) << 30,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Len(u8, u16);

impl Len {
    fn get(&self) -> u64 {
        let n = u64::from(self.1);
        match self.0 % 4 {
            0 => (1 + n % 64) << 12,
            1 => (1 + n % 8) << 21,
            2 => (1 + n % 2) << 30,
            _ => (1 + n % 4096) << 12,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Raw {
    Map {
        gpa: Addr,
        delta: (u8, u16),
        len: Len,
        perms: u8,
        mem: u8,
        replace: bool,
    },
    Unmap {
        gpa: Addr,
        len: Len,
    },
    Protect {
        gpa: Addr,
        len: Len,
        perms: u8,
    },
    SetMem {
        gpa: Addr,
        len: Len,
        mem: u8,
    },
    Promote {
        gpa: Addr,
        len: Len,
    },
    Reclaim,
    Starve(u8),
}

impl Raw {
    fn step(&self) -> Step {
        let mem = |m: &u8| MemType::ALL[usize::from(*m) % 5];
        let perms = |p: &u8| PERMS[usize::from(*p) % 4];
        match self {
            Raw::Map {
                gpa,
                delta,
                len,
                perms: p,
                mem: m,
                replace,
            } => {
                let n = u64::from(delta.1);
                let (delta, mut len) = match delta.0 % 4 {
                    0 => (0, len.get()),
                    1 => ((n % 4) << 30, len.get()),
                    2 => ((n % 512) << 21, len.get()),
                    _ => ((n % 512) << 12, len.get()),
                };
                // Long runs of 4 KiB pages only slow the checks down.
                if delta % (1 << 21) != 0 {
                    len = len.min(16 << 20);
                }
                Step::Map {
                    gpa: gpa.get(),
                    delta,
                    len,
                    perms: perms(p),
                    mem: mem(m),
                    replace: *replace,
                }
            }
            Raw::Unmap { gpa, len } => Step::Unmap {
                gpa: gpa.get(),
                len: len.get(),
            },
            Raw::Protect { gpa, len, perms: p } => Step::Protect {
                gpa: gpa.get(),
                len: len.get(),
                perms: perms(p),
            },
            Raw::SetMem { gpa, len, mem: m } => Step::SetMem {
                gpa: gpa.get(),
                len: len.get(),
                mem: mem(m),
            },
            Raw::Promote { gpa, len } => Step::Promote {
                gpa: gpa.get(),
                len: len.get(),
            },
            Raw::Reclaim => Step::Reclaim,
            Raw::Starve(n) => Step::Starve(usize::from(*n % 4)),
        }
    }
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    npt: bool,
    explicit: bool,
    no_1g: bool,
    steps: Vec<Raw>,
}

fn run_format<F: Format>(format: F, kind: Kind, config: Config, steps: &[Raw]) {
    let frames = HostFrames::new(HostPhysAddr::new(1 << 32).unwrap_or_default(), 1 << 16);
    let walker = Walker {
        kind,
        phys_bits: config.physical_bits(),
        pages_1g: config.uses_1g(),
    };
    let mut checker = Checker::new(format, walker, config, &frames, HOST_BASE);
    for raw in steps.iter().take(32) {
        checker.step(&raw.step());
    }
    checker.finish();
}

/// Runs one decoded input.
pub fn run(input: Input) {
    let merge = if input.explicit {
        Merge::Explicit
    } else {
        Merge::Eager
    };
    let config = Config::new().merge(merge).pages_1g(!input.no_1g);
    if input.npt {
        let kind = Kind::Npt {
            pat: PAT_LINUX,
            nx: true,
        };
        run_format(Npt::new().with_pat(PAT_LINUX), kind, config, &input.steps);
    } else {
        run_format(Ept::new(), Kind::Ept, config, &input.steps);
    }
}

/// Runs one input: decodes it as `cargo fuzz` does, then [`run`].
pub fn fuzz(data: &[u8]) {
    if let Some(input) = crate::decode::<Input>(data) {
        run(input);
    }
}
