//! Criterion: commits of 64 B, 256 B and 4 KiB records, one and eight per
//! commit, on the x86 `Pmem` over ordinary memory, side by side with the
//! PMDK-style undo-log transaction ([`undo_log`], which `nvirt bench log`
//! compiles too) and the floor (the same payloads stored, written back and
//! fenced once, with no log structure); then recovery of a 16 MiB log.
//! `nvirt bench log` prints the ratios; this gives criterion's statistics
//! for the same workloads.

#![allow(clippy::unwrap_used, reason = "a benchmark fails by panicking")]

#[allow(dead_code, reason = "shared with the nvirt tool, which uses all of it")]
mod undo_log;

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use nvirt_persist_meta::{CacheLine, Log, Pmem, Raw, RecordKind, X86Pmem, replay, replay_fn};
use undo_log::UndoLog;

const KIND: RecordKind = match RecordKind::new(1) {
    Some(k) => k,
    None => unreachable!(),
};

fn commits(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit");
    for size in [64usize, 256, 4096] {
        for per_commit in [1usize, 8] {
            let label = format!("{size}B x{per_commit}");
            let payloads: Vec<Vec<u8>> = (0..per_commit).map(|i| vec![i as u8; size]).collect();
            let records: Vec<Raw<'_>> = payloads
                .iter()
                .map(|p| Raw {
                    kind: KIND,
                    payload: p,
                })
                .collect();
            group.throughput(Throughput::Elements(1));

            let mut memory = vec![CacheLine::ZERO; (0x4000 + (16 << 20)) / 64];
            let mut log = Log::format(X86Pmem::new(&mut memory), 4000).unwrap();
            group.bench_function(BenchmarkId::new("nvirt", &label), |b| {
                b.iter(|| {
                    if log.append_group(&records).is_err() {
                        log.checkpoint_bytes(&[]).unwrap();
                        log.append_group(&records).unwrap();
                    }
                });
            });

            let area = 16u64 << 20;
            let mut memory = vec![CacheLine::ZERO; (area / 64) as usize];
            let mut floor = X86Pmem::new(&mut memory);
            let bytes = (size * per_commit) as u64;
            let mut pos = 0;
            group.bench_function(BenchmarkId::new("floor", &label), |b| {
                b.iter(|| {
                    if pos + bytes > area {
                        pos = 0;
                    }
                    let mut at = pos;
                    for p in &payloads {
                        floor.store(at, p).unwrap();
                        at += size as u64;
                    }
                    floor.write_back(pos, bytes).unwrap();
                    floor.fence();
                    pos += bytes;
                });
            });

            let data = 1u64 << 20;
            let log_len = ((16 + size as u64) * per_commit as u64 + 64).next_multiple_of(64);
            let mut memory = vec![CacheLine::ZERO; ((data + log_len) / 64) as usize];
            let mut undo = UndoLog::new(X86Pmem::new(&mut memory), data, log_len);
            let slots = data / size as u64;
            let mut next = 0;
            group.bench_function(BenchmarkId::new("undo-log", &label), |b| {
                b.iter(|| {
                    let updates: Vec<(u64, &[u8])> = payloads
                        .iter()
                        .map(|p| {
                            next = (next + 1) % slots;
                            (next * size as u64, p.as_slice())
                        })
                        .collect();
                    undo.commit(&updates).unwrap();
                });
            });
        }
    }
    group.finish();
}

fn recovery(c: &mut Criterion) {
    let area = 16u64 << 20;
    let mut memory = vec![CacheLine::ZERO; ((0x4000 + area) / 64) as usize];
    let mut log = Log::format(X86Pmem::new(&mut memory), 4000).unwrap();
    let record = Raw {
        kind: KIND,
        payload: &[7; 64],
    };
    while log.append(&record).is_ok() {}
    let used = log.space().used;
    let pmem = log.into_pmem();
    let mut group = c.benchmark_group("recovery");
    group.throughput(Throughput::Bytes(used));
    group.sample_size(20);
    group.bench_function("16MiB of 64B records", |b| {
        b.iter(|| {
            let mut records = 0u64;
            replay(
                &pmem,
                &mut replay_fn(|_| {
                    records += 1;
                    Ok::<(), ()>(())
                }),
            )
            .unwrap();
            black_box(records)
        });
    });
    group.finish();
}

criterion_group!(benches, commits, recovery);
criterion_main!(benches);
