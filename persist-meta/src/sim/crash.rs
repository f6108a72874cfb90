//! Enumerating crash images from a recorded trace.

use std::collections::BTreeMap;
use std::ops::{ControlFlow, Range};
use std::vec::Vec;

use super::Event;
use crate::pmem::{CACHE_LINE, WORD};

/// How many crash images to visit per crash point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrashConfig {
    /// Visit every image at a point that has at most this many.
    pub exhaustive_limit: u64,
    /// Otherwise visit this many random ones (the first two, when there
    /// are at least three, are "nothing pending survived" and "everything
    /// survived").
    pub samples: u64,
    /// Seed of the sampling; the same seed visits the same images.
    pub seed: u64,
}

impl Default for CrashConfig {
    fn default() -> Self {
        Self {
            exhaustive_limit: 4096,
            samples: 256,
            seed: 0x6e76_6972_7421,
        }
    }
}

/// One crash image.
#[derive(Clone, Copy, Debug)]
pub struct Crash<'a> {
    /// The crash point: the crash happened after this many events.
    pub point: usize,
    /// What the medium holds after the crash.
    pub image: &'a [u8],
    /// Whether this point's images are visited exhaustively.
    pub exhaustive: bool,
    /// Lines with pending stores at this point.
    pub pending_lines: usize,
}

/// What an enumeration visited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashStats {
    /// Crash points visited.
    pub points: u64,
    /// Images visited.
    pub images: u64,
    /// Points whose images were all visited.
    pub exhaustive_points: u64,
    /// Points whose images were sampled.
    pub sampled_points: u64,
    /// The most lines with pending stores at any point.
    pub max_pending_lines: u64,
}

impl CrashStats {
    /// Adds another enumeration's counts.
    pub fn add(&mut self, other: &Self) {
        self.points += other.points;
        self.images += other.images;
        self.exhaustive_points += other.exhaustive_points;
        self.sampled_points += other.sampled_points;
        self.max_pending_lines = self.max_pending_lines.max(other.max_pending_lines);
    }
}

/// A line's stores that are not yet durable, in program order, and how
/// many of them a write-back since the last fence covers.
#[derive(Clone, Debug, Default)]
struct Line {
    stores: Vec<(usize, u64)>,
    covered: usize,
}

/// SplitMix64: small, seedable, good enough to pick prefixes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

const LINE: usize = CACHE_LINE as usize;

pub(super) fn enumerate(
    initial: &[u8],
    events: &[Event],
    size: usize,
    points: Range<usize>,
    config: &CrashConfig,
    mut visit: impl FnMut(&Crash<'_>) -> ControlFlow<()>,
) -> CrashStats {
    let mut stats = CrashStats::default();
    let mut durable = initial.to_vec();
    let mut image = durable.clone();
    let mut pending: BTreeMap<u64, Line> = BTreeMap::new();
    let last = points.end.min(events.len() + 1);
    for point in 0..last {
        if point >= points.start
            && visit_point(
                point, &durable, &mut image, size, &pending, config, &mut stats, &mut visit,
            )
            .is_break()
        {
            break;
        }
        let Some(&event) = events.get(point) else {
            break;
        };
        match event {
            Event::Store { word, value } => {
                let line = word * WORD / CACHE_LINE;
                let slot = (word % (CACHE_LINE / WORD)) as usize;
                pending.entry(line).or_default().stores.push((slot, value));
            }
            Event::WriteBack { first, end } => {
                for (_, line) in pending.range_mut(first..end) {
                    line.covered = line.stores.len();
                }
            }
            Event::Fence => {
                pending.retain(|&number, line| {
                    let durable_line = line_mut(&mut durable, number);
                    for &(slot, value) in &line.stores[..line.covered] {
                        put(durable_line, slot, value);
                    }
                    line_mut(&mut image, number).copy_from_slice(durable_line);
                    line.stores.drain(..line.covered);
                    line.covered = 0;
                    !line.stores.is_empty()
                });
            }
        }
    }
    stats
}

fn line_mut(bytes: &mut [u8], number: u64) -> &mut [u8] {
    let at = number as usize * LINE;
    &mut bytes[at..at + LINE]
}

fn put(line: &mut [u8], slot: usize, value: u64) {
    line[slot * 8..slot * 8 + 8].copy_from_slice(&value.to_le_bytes());
}

#[allow(clippy::too_many_arguments, reason = "one private helper of one loop")]
fn visit_point(
    point: usize,
    durable: &[u8],
    image: &mut [u8],
    size: usize,
    pending: &BTreeMap<u64, Line>,
    config: &CrashConfig,
    stats: &mut CrashStats,
    visit: &mut impl FnMut(&Crash<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let lines: Vec<(u64, &Line)> = pending.iter().map(|(&n, l)| (n, l)).collect();
    let total = lines
        .iter()
        .try_fold(1u64, |acc, (_, l)| {
            acc.checked_mul(l.stores.len() as u64 + 1)
        })
        .unwrap_or(u64::MAX);
    let exhaustive = total <= config.exhaustive_limit;
    stats.points += 1;
    stats.max_pending_lines = stats.max_pending_lines.max(lines.len() as u64);
    if exhaustive {
        stats.exhaustive_points += 1;
    } else {
        stats.sampled_points += 1;
    }
    let mut choice = std::vec![0usize; lines.len()];
    let mut rng = Rng(config.seed ^ (point as u64).wrapping_mul(0xd134_2543_de82_ef95));
    let count = if exhaustive { total } else { config.samples };
    let mut flow = ControlFlow::Continue(());
    for n in 0..count {
        if exhaustive {
            if n > 0 {
                // Mixed-radix increment: line i has `stores + 1` choices.
                for (c, (_, line)) in choice.iter_mut().zip(&lines) {
                    *c += 1;
                    if *c <= line.stores.len() {
                        break;
                    }
                    *c = 0;
                }
            }
        } else {
            for (c, (_, line)) in choice.iter_mut().zip(&lines) {
                let len = line.stores.len() as u64;
                *c = match (count >= 3, n) {
                    (true, 0) => 0,
                    (true, 1) => len as usize,
                    _ => match rng.below(4) {
                        0 => 0,
                        1 => len as usize,
                        _ => rng.below(len + 1) as usize,
                    },
                };
            }
        }
        for (&k, &(number, line)) in choice.iter().zip(&lines) {
            let at = number as usize * LINE;
            let target = &mut image[at..at + LINE];
            target.copy_from_slice(&durable[at..at + LINE]);
            for &(slot, value) in &line.stores[..k] {
                put(target, slot, value);
            }
        }
        stats.images += 1;
        let crash = Crash {
            point,
            image: &image[..size],
            exhaustive,
            pending_lines: lines.len(),
        };
        if visit(&crash).is_break() {
            flow = ControlFlow::Break(());
            break;
        }
    }
    for &(number, _) in &lines {
        let at = number as usize * LINE;
        image[at..at + LINE].copy_from_slice(&durable[at..at + LINE]);
    }
    flow
}
