//! Sanitize throughput on shuffled, overlapping maps of 128 and 4096 entries.
//! Criterion prints entries per second (`thrpt`).

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use nvirt_e820::{Entry, Kind, MemoryMap};

/// A deterministic xorshift generator, so every run sanitizes the same maps.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `n` entries: a firmware-like base map cut into pieces, with a quarter of
/// them overlapping their neighbours and a mix of kinds (including ones that
/// never merge), shuffled.
fn messy_map(n: usize) -> Vec<Entry> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ n as u64);
    let kinds = [
        Kind::Ram,
        Kind::Ram,
        Kind::Ram,
        Kind::Reserved,
        Kind::Acpi,
        Kind::Nvs,
        Kind::Pmem,
        Kind::Pram,
    ];
    let mut entries: Vec<Entry> = (0..n as u64)
        .map(|i| {
            let start = i << 24;
            let len = if rng.next() % 4 == 0 {
                3 << 24
            } else {
                1 << 24
            };
            let kind = kinds[(rng.next() % kinds.len() as u64) as usize];
            Entry::from_base_size(start, len, kind).unwrap()
        })
        .collect();
    for i in (1..entries.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        entries.swap(i, j);
    }
    entries
}

/// Sanitizes `input` into a map of capacity `N` (twice the input: nested
/// overlaps can split entries).
fn run<const N: usize>(input: &[Entry]) -> usize {
    let map = MemoryMap::<N>::from_entries(black_box(input.iter().copied())).unwrap();
    black_box(map.len())
}

fn sanitize(c: &mut Criterion) {
    let mut group = c.benchmark_group("sanitize");
    for n in [128usize, 4096] {
        let input = messy_map(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| {
            if n == 128 {
                b.iter(|| run::<256>(input));
            } else {
                b.iter(|| run::<8192>(input));
            }
        });
    }
    group.finish();
}

criterion_group!(benches, sanitize);
criterion_main!(benches);
