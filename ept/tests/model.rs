//! Property tests: random map / replace / unmap / protect / memory-type /
//! promote sequences against the reference model (`nvirt_ept::model`),
//! for both formats and both merge policies, with frame exhaustion
//! injected. After every step, through an independent walker written from
//! the manuals: every page translates as the model says, every entry is
//! valid and no table is referenced twice, the page decomposition is the
//! expected one (the minimal, greedy largest-aligned one under eager
//! merging) and the table count is the minimum for it.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use nvirt_ept::host::HostFrames;
use nvirt_ept::model::{Kind, Layout, Model, RawLeaf, Walker, layout_of, runs_of};
use nvirt_ept::{
    Config, Ept, Format, FrameError, GuestPhys, HostPhys, Invalidate, MapError, MemType, Merge,
    Npt, Perms, Tables, UnmapError, UpdateError,
};
use proptest::prelude::*;

const PAT_LINUX: u64 = 0x0407_0506_0007_0106;
const PERMS: [Perms; 4] = [Perms::READ, Perms::RW, Perms::RX, Perms::RWX];
const HOST_BASE: u64 = 64 << 30;

#[derive(Clone, Debug)]
enum Step {
    Map {
        gpa: u64,
        delta: u64,
        len: u64,
        perms: usize,
        mem: usize,
        replace: bool,
    },
    Unmap {
        gpa: u64,
        len: u64,
    },
    Protect {
        gpa: u64,
        len: u64,
        perms: usize,
    },
    SetMem {
        gpa: u64,
        len: u64,
        mem: usize,
    },
    Promote {
        gpa: u64,
        len: u64,
    },
    Reclaim,
    /// Allow only this many more frames for the next step.
    Starve(usize),
}

fn gpa() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0u64..4).prop_map(|g| g << 30),
        (0u64..2048).prop_map(|m| m << 21),
        (0u64..1 << 20).prop_map(|p| p << 12),
        (0u64..4, 0u64..1024).prop_map(|(g, p)| (g << 30) + (p << 12)),
    ]
}

fn len() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (1u64..=16).prop_map(|n| n << 12),
        3 => (1u64..=4).prop_map(|n| n << 21),
        1 => (1u64..=600).prop_map(|n| n << 12),
        1 => (1u64..=2).prop_map(|n| n << 30),
        1 => (1u64..=3, 0u64..8).prop_map(|(g, p)| (g << 30) + (p << 12)),
    ]
}

/// Host minus guest address, with a length: the alignment of the host
/// address relative to the guest decides the page sizes. Long runs of
/// 4 KiB pages are kept short so that checking every page stays cheap.
fn delta_len() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        (Just(0), len()),
        ((0u64..4).prop_map(|g| g << 30), len()),
        ((0u64..512).prop_map(|m| m << 21), len()),
        (
            (0u64..512).prop_map(|p| p << 12),
            (1u64..=4096).prop_map(|n| n << 12)
        ),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (gpa(), delta_len(), 0..4usize, 0..5usize, any::<bool>())
            .prop_map(|(gpa, (delta, len), perms, mem, replace)| Step::Map { gpa, delta, len, perms, mem, replace }),
        3 => (gpa(), len()).prop_map(|(gpa, len)| Step::Unmap { gpa, len }),
        4 => (gpa(), len(), 0..4usize).prop_map(|(gpa, len, perms)| Step::Protect { gpa, len, perms }),
        2 => (gpa(), len(), 0..5usize).prop_map(|(gpa, len, mem)| Step::SetMem { gpa, len, mem }),
        2 => (gpa(), len()).prop_map(|(gpa, len)| Step::Promote { gpa, len }),
        1 => Just(Step::Reclaim),
        1 => (0usize..4).prop_map(Step::Starve),
    ]
}

struct Harness<'a, F: Format> {
    tables: Tables<F, &'a HostFrames>,
    frames: &'a HostFrames,
    walker: Walker,
    model: Model,
    layout: Layout,
    eager: bool,
    pages_1g: bool,
}

impl<F: Format> Harness<'_, F> {
    fn scan_leaves(&self) -> (Vec<RawLeaf>, nvirt_ept::model::Scan) {
        let scan = self.walker.scan(&self.frames, self.tables.root()).unwrap();
        (scan.leaves.clone(), scan)
    }

    fn run(&mut self, steps: &[Step]) {
        let mut starve = None;
        for step in steps {
            if let Step::Starve(n) = step {
                starve = Some(*n);
                continue;
            }
            let before = self.walker.scan(&self.frames, self.tables.root()).unwrap();
            self.frames
                .set_limit(starve.take().map(|n| self.frames.live() + n));
            let outcome = self.apply(step);
            self.frames.set_limit(None);
            match outcome {
                Ok(verdict) => self.check_verdict(verdict, &before.leaves),
                Err(()) => {
                    let after = self.walker.scan(&self.frames, self.tables.root()).unwrap();
                    assert_eq!(
                        after.snapshot, before.snapshot,
                        "a failed {step:?} changed the tables"
                    );
                }
            }
            self.check(step);
        }
    }

    /// Applies `step` to the tables and, if it succeeds, to the models.
    /// `Err` for an expected failure; unexpected outcomes panic.
    fn apply(&mut self, step: &Step) -> Result<Invalidate, ()> {
        let frames = &mut &*self.frames;
        let pages_1g = self.pages_1g;
        match *step {
            Step::Map {
                gpa,
                delta,
                len,
                perms,
                mem,
                replace,
            } => {
                let (end, hpa) = (gpa + len, HOST_BASE + gpa + delta);
                let (p, m) = (PERMS[perms], MemType::ALL[mem]);
                let (g, h) = (GuestPhys::new(gpa), HostPhys::new(hpa));
                let result = if replace {
                    self.tables.replace(frames, g, h, len, p, m)
                } else {
                    self.tables.map(frames, g, h, len, p, m)
                };
                let overlap = if replace {
                    None
                } else {
                    self.model.first_mapped(gpa, end)
                };
                match (result, overlap) {
                    (Ok(v), None) => {
                        self.model.map(gpa, end, hpa, nvirt_ept::Attrs::new(p, m));
                        self.layout.remove(gpa, end);
                        self.layout.insert_greedy(gpa, end, hpa, pages_1g);
                        if self.eager {
                            self.layout.promote(&self.model, gpa, end, pages_1g);
                        }
                        Ok(v)
                    }
                    (Err(MapError::Overlap { gpa: at }), Some(first)) => {
                        assert_eq!(at.as_u64(), first);
                        Err(())
                    }
                    (Err(MapError::Frames(FrameError::Exhausted { .. })), None) => Err(()),
                    (r, o) => panic!("{step:?}: got {r:?}, model expected overlap {o:?}"),
                }
            }
            Step::Unmap { gpa, len } => match self.tables.unmap(frames, GuestPhys::new(gpa), len) {
                Ok(v) => {
                    self.model.unmap(gpa, gpa + len);
                    self.layout.remove(gpa, gpa + len);
                    Ok(v)
                }
                Err(UnmapError::Frames(FrameError::Exhausted { .. })) => Err(()),
                Err(e) => panic!("{step:?}: {e}"),
            },
            Step::Protect { gpa, len, perms } => {
                self.update(step, gpa, len, Some(PERMS[perms]), None)
            }
            Step::SetMem { gpa, len, mem } => {
                self.update(step, gpa, len, None, Some(MemType::ALL[mem]))
            }
            Step::Promote { gpa, len } => {
                let v = self.tables.promote(GuestPhys::new(gpa), len).unwrap();
                self.layout.promote(&self.model, gpa, gpa + len, pages_1g);
                Ok(v)
            }
            Step::Reclaim => {
                let pending = self.tables.pending_reclaim();
                let live = self.frames.live();
                let freed = self.tables.reclaim(&mut &*self.frames);
                assert_eq!(freed, pending);
                assert_eq!(self.frames.live(), live - freed as usize);
                Ok(Invalidate::Nothing)
            }
            Step::Starve(_) => Ok(Invalidate::Nothing),
        }
    }

    fn update(
        &mut self,
        step: &Step,
        gpa: u64,
        len: u64,
        perms: Option<Perms>,
        mem: Option<MemType>,
    ) -> Result<Invalidate, ()> {
        let end = gpa + len;
        let frames = &mut &*self.frames;
        let g = GuestPhys::new(gpa);
        let result = match (perms, mem) {
            (Some(p), _) => self.tables.protect(frames, g, len, p),
            (None, Some(m)) => self.tables.set_mem_type(frames, g, len, m),
            (None, None) => unreachable!(),
        };
        match (result, self.model.first_hole(gpa, end)) {
            (Ok(v), None) => {
                // A leaf the range cuts is split only if its attributes change.
                for at in [gpa, end] {
                    if let Some((_, old)) = self.model.lookup(at) {
                        let new = nvirt_ept::Attrs::new(
                            perms.unwrap_or(old.perms),
                            mem.unwrap_or(old.mem),
                        );
                        if new != old {
                            self.layout.cut(at);
                        }
                    }
                }
                self.model.update(gpa, end, perms, mem);
                if self.eager {
                    self.layout.promote(&self.model, gpa, end, self.pages_1g);
                }
                Ok(v)
            }
            (Err(UpdateError::NotMapped { gpa: at }), Some(hole)) => {
                assert_eq!(at.as_u64(), hole);
                Err(())
            }
            (Err(UpdateError::Frames(FrameError::Exhausted { .. })), None) => Err(()),
            (r, h) => panic!("{step:?}: got {r:?}, model expected hole {h:?}"),
        }
    }

    /// "Nothing to invalidate" must mean no present entry changed: every
    /// old leaf is still there, unchanged.
    fn check_verdict(&self, verdict: Invalidate, before: &[RawLeaf]) {
        if verdict != Invalidate::Nothing {
            return;
        }
        let (after, _) = self.scan_leaves();
        let after: std::collections::BTreeSet<_> = after
            .iter()
            .map(|l| {
                (
                    l.gpa,
                    l.size,
                    l.hpa,
                    l.attrs.perms.bits(),
                    l.attrs.mem.code(),
                )
            })
            .collect();
        for l in before {
            assert!(
                after.contains(&(
                    l.gpa,
                    l.size,
                    l.hpa,
                    l.attrs.perms.bits(),
                    l.attrs.mem.code()
                )),
                "verdict Nothing but leaf {l:?} changed"
            );
        }
    }

    fn check(&self, step: &Step) {
        let (leaves, scan) = self.scan_leaves();
        // Every page translates as the model says (the scan decodes every
        // entry of every table independently).
        assert_eq!(runs_of(&leaves), self.model.runs(), "after {step:?}");
        // The decomposition is the expected one, and minimal when eager.
        let layout = layout_of(&leaves);
        assert_eq!(layout, self.layout, "after {step:?}");
        if self.eager {
            assert_eq!(
                layout,
                self.model.minimal_leaves(self.pages_1g),
                "not minimal after {step:?}"
            );
        }
        assert_eq!(scan.tables, layout.tables(), "table count after {step:?}");
        assert_eq!(self.tables.table_count(), scan.tables);
        assert_eq!(
            self.frames.live() as u64,
            self.tables.table_count() + self.tables.pending_reclaim(),
            "frames leaked after {step:?}"
        );
        let counts = self.tables.page_counts();
        assert_eq!(
            (counts.size_1g, counts.size_2m, counts.size_4k),
            layout.counts()
        );
        // The crate's own extents agree with the walker's leaves.
        let mut from_extents = Vec::new();
        for e in self.tables.extents() {
            let mut at = 0;
            while at < e.len {
                from_extents.push(RawLeaf {
                    gpa: e.gpa.as_u64() + at,
                    size: e.page,
                    hpa: e.hpa.as_u64() + at,
                    attrs: e.attrs,
                });
                at += e.page.bytes();
            }
        }
        assert_eq!(from_extents, leaves);
        // Pages the step touched: walker and `translate` against the model.
        let (gpa, len) = match *step {
            Step::Map { gpa, len, .. }
            | Step::Unmap { gpa, len }
            | Step::Protect { gpa, len, .. }
            | Step::SetMem { gpa, len, .. }
            | Step::Promote { gpa, len } => (gpa, len),
            Step::Reclaim | Step::Starve(_) => return,
        };
        let pages = len >> 12;
        for k in (0..pages).filter(|&k| pages <= 4096 || k < 64 || pages - k <= 64 || k % 509 == 0)
        {
            let page = gpa + (k << 12);
            let expected = self.model.lookup(page);
            let walked = self
                .walker
                .translate(&self.frames, self.tables.root(), page)
                .unwrap();
            assert_eq!(
                walked.map(|(h, a, _)| (h, a)),
                expected,
                "walk of {page:#x} after {step:?}"
            );
            let translated = self.tables.translate(GuestPhys::new(page));
            assert_eq!(translated.map(|t| (t.hpa.as_u64(), t.attrs)), expected);
        }
    }
}

fn run_case<F: Format>(format: F, kind: Kind, config: Config, steps: &[Step]) {
    let frames = HostFrames::new(HostPhys::new(1 << 32), 1 << 16);
    let tables = Tables::new(format, &frames, config, &mut &frames).unwrap();
    let mut harness = Harness {
        tables,
        frames: &frames,
        walker: Walker {
            kind,
            phys_bits: config.physical_bits(),
            pages_1g: config.uses_1g(),
        },
        model: Model::new(),
        layout: Layout::default(),
        eager: config.merge_policy() == Merge::Eager,
        pages_1g: config.uses_1g(),
    };
    harness.run(steps);
    // Tear down: every frame comes back.
    let Harness { tables, .. } = harness;
    tables.destroy(&mut &frames);
    assert_eq!(frames.live(), 0);
}

fn npt() -> (Npt, Kind) {
    (
        Npt::new().with_pat(PAT_LINUX),
        Kind::Npt {
            pat: PAT_LINUX,
            nx: true,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn ept_eager(steps in prop::collection::vec(step(), 1..24)) {
        run_case(Ept::new(), Kind::Ept, Config::new(), &steps);
    }

    #[test]
    fn npt_eager(steps in prop::collection::vec(step(), 1..24)) {
        let (f, k) = npt();
        run_case(f, k, Config::new(), &steps);
    }

    #[test]
    fn ept_explicit(steps in prop::collection::vec(step(), 1..24)) {
        run_case(Ept::new(), Kind::Ept, Config::new().merge(Merge::Explicit), &steps);
    }

    #[test]
    fn npt_explicit_without_1g(steps in prop::collection::vec(step(), 1..24)) {
        let (f, k) = npt();
        run_case(f, k, Config::new().merge(Merge::Explicit).pages_1g(false), &steps);
    }

    #[test]
    fn npt_eager_without_1g_narrow(steps in prop::collection::vec(step(), 1..24)) {
        let (f, k) = npt();
        run_case(f, k, Config::new().pages_1g(false).phys_bits(40), &steps);
    }
}
