//! `nvirt bench log`: persist-meta commits against an undo-log transaction
//! (the PMDK-style peer in [`undo_log`]) and against the floor, all
//! on the x86 `Pmem` (CLWB, CLFLUSHOPT or CLFLUSH, and SFENCE) over
//! ordinary memory, then the recovery throughput of a 64 MiB log.
//!
//! Workloads: records of 64 B, 256 B and 4 KiB, one per commit
//! (`commit-<size>`) and eight per commit (`group8-<size>`). The peer
//! updates as many objects of the same size in place per transaction,
//! cycling through a 1 MiB data area. The floor is what any durable append
//! must do at least: the same payloads copied side by side into a
//! 32 MiB area (the size of the log's record area, cycled through the same
//! way), their lines written back, one fence; no headers, checksums or
//! sequence numbers. Times are per commit, in the thread's CPU time (a
//! stall on SFENCE counts; waiting for a CPU does not), on the bare x86
//! `Pmem`; fences are counted by a `Counting` wrapper around each side's
//! `Pmem` in a short untimed run (its counters, stores of their own, would
//! weigh on the side that calls it most). Checkpoints the log
//! needs when it fills up run between timed batches. The sides alternate in
//! rounds over memory faulted in beforehand, and each reports its median
//! round; `nvirt/floor` is the median of the rounds' own ratios, each from
//! two rounds run back to back, so that a slow spell of the machine (on a
//! shared virtual machine, runs a minute apart differed by a fifth) weighs
//! on both sides of a ratio alike.
//!
//! The tool builds itself again with one codegen unit and runs that build
//! (see [`super::in_one_codegen_unit`]).
//!
//! Output: one line per workload, `<workload> nvirt=<ns/op> peer=<ns/op>
//! ratio=<peer/nvirt> fences/commit=<n> floor=<ns/op>
//! nvirt/floor=<nvirt/floor>` (nvirt's fences), then `recovery MiB/s=<x>`.
//! Details go to stderr.

use std::process::ExitCode;
use std::time::Instant;

use nvirt_persist_meta::{
    CacheLine, Counting, Log, Pmem, Raw, RecordKind, RecordView, Replay, X86Pmem, record_size,
    replay,
};

use super::cpu_time::CpuInstant;
use super::elapsed_ns;
use undo_log::UndoLog;

/// The peer lives beside the criterion bench of persist-meta, its other
/// user.
#[path = "../../../../persist-meta/benches/log/undo_log.rs"]
mod undo_log;

const KIND: RecordKind = match RecordKind::new(1) {
    Some(k) => k,
    None => unreachable!(),
};

/// Bytes of record area for the commit benchmarks (and of the floor's area).
const COMMIT_AREA: u64 = 32 << 20;
/// Bytes of record area for the recovery benchmark.
const RECOVERY_AREA: u64 = 64 << 20;
/// Bytes before the record area: superblocks and two 4 KiB slots.
const HEADER: u64 = 0x4000;
/// The peer's data area.
const PEER_DATA: u64 = 1 << 20;

/// Zeroed, cache-line aligned memory of `bytes`, every page already
/// faulted in, so that no side pays for first touches while timed.
fn lines(bytes: u64) -> Vec<CacheLine> {
    let mut memory = vec![CacheLine([0xa5; 64]); (bytes / 64) as usize];
    memory.fill(CacheLine::ZERO);
    memory
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A region whose fences a run can count: the `Counting` wrapper, or the
/// bare x86 region of the timed runs (whose counters would be stores inside
/// the timed loop, more of them for nvirt than for the floor).
trait Fences: Pmem {
    fn fences(&self) -> u64;
}

impl<P: Pmem> Fences for Counting<P> {
    fn fences(&self) -> u64 {
        self.stats().fences
    }
}

impl Fences for X86Pmem<'_> {
    fn fences(&self) -> u64 {
        0
    }
}

struct Measured {
    ns_per_commit: f64,
    fences_per_commit: f64,
}

/// `group` payloads of `size` bytes, each its own allocation as an owner's
/// records would be.
fn payloads(size: usize, group: usize) -> Vec<Vec<u8>> {
    (0..group).map(|i| vec![i as u8 + 1; size]).collect()
}

fn nvirt<P: Fences>(pmem: P, size: usize, group: usize, commits: u64) -> Result<Measured, String> {
    let mut log = Log::format(pmem, 0x1000 - 64).map_err(|e| e.to_string())?;
    let payloads = payloads(size, group);
    let records: Vec<Raw<'_>> = payloads
        .iter()
        .map(|p| Raw {
            kind: KIND,
            payload: p,
        })
        .collect();
    let per_commit = record_size(size) * group as u64;
    let (mut timed, mut fences, mut done) = (0.0, 0, 0);
    while done < commits {
        let fit = log.space().free / per_commit;
        if fit == 0 {
            log.checkpoint_bytes(&[]).map_err(|e| e.to_string())?;
            continue;
        }
        let batch = fit.min(commits - done);
        let before = log.pmem().fences();
        let start = CpuInstant::now();
        for _ in 0..batch {
            let commit = if group == 1 {
                log.append(&records[0])
            } else {
                log.append_group(&records)
            };
            commit.map_err(|e| e.to_string())?;
        }
        timed += start.elapsed_ns();
        fences += log.pmem().fences() - before;
        done += batch;
    }
    Ok(Measured {
        ns_per_commit: timed / commits as f64,
        fences_per_commit: fences as f64 / commits as f64,
    })
}

/// The floor: each commit copies the payloads side by side to the next
/// free bytes of the area, writes their lines back and fences once.
fn floor<P: Fences>(
    mut pmem: P,
    size: usize,
    group: usize,
    commits: u64,
) -> Result<Measured, String> {
    let payloads = payloads(size, group);
    let bytes = (size * group) as u64;
    let mut pos = 0;
    let start = CpuInstant::now();
    for _ in 0..commits {
        if pos + bytes > COMMIT_AREA {
            pos = 0;
        }
        let mut at = HEADER + pos;
        for p in &payloads {
            pmem.store(at, p).map_err(|e| e.to_string())?;
            at += p.len() as u64;
        }
        pmem.write_back(HEADER + pos, bytes)
            .map_err(|e| e.to_string())?;
        pmem.fence();
        pos += bytes;
    }
    let timed = start.elapsed_ns();
    Ok(Measured {
        ns_per_commit: timed / commits as f64,
        fences_per_commit: pmem.fences() as f64 / commits as f64,
    })
}

fn peer<P: Fences>(pmem: P, size: usize, group: usize, commits: u64) -> Result<Measured, String> {
    let log_len = peer_log_len(size, group);
    let mut undo = UndoLog::new(pmem, PEER_DATA, log_len);
    let slots = PEER_DATA / size as u64;
    let payloads = payloads(size, group);
    let mut next = 0;
    let mut updates: Vec<(u64, &[u8])> = Vec::with_capacity(group);
    let start = CpuInstant::now();
    for _ in 0..commits {
        updates.clear();
        for p in &payloads {
            updates.push((next * size as u64, p));
            next = (next + 1) % slots;
        }
        undo.commit(&updates)?;
    }
    let timed = start.elapsed_ns();
    Ok(Measured {
        ns_per_commit: timed / commits as f64,
        fences_per_commit: undo.pmem().fences() as f64 / commits as f64,
    })
}

/// Bytes of the peer's undo log for `group` objects of `size` bytes.
fn peer_log_len(size: usize, group: usize) -> u64 {
    ((16 + size as u64) * group as u64 + 64).next_multiple_of(64)
}

/// One workload's medians: nvirt, the floor, the peer.
struct Workload {
    nvirt: Measured,
    floor: f64,
    /// The median of the rounds' nvirt/floor ratios.
    to_floor: f64,
    peer: Measured,
}

/// `memory` as the x86 `Pmem` with counters, for the untimed runs.
fn counted(memory: &mut [CacheLine]) -> Counting<X86Pmem<'_>> {
    Counting::new(X86Pmem::new(memory))
}

fn workload(size: usize, group: usize, commits: u64, rounds: u64) -> Result<Workload, String> {
    let mut log_memory = lines(HEADER + COMMIT_AREA);
    let mut floor_memory = lines(HEADER + COMMIT_AREA);
    let mut peer_memory = lines(PEER_DATA + peer_log_len(size, group));
    // Fences are counted in a short untimed run of each side.
    let fences = nvirt(counted(&mut log_memory), size, group, 64)?.fences_per_commit;
    let floor_fences = floor(counted(&mut floor_memory), size, group, 64)?.fences_per_commit;
    if floor_fences != 1.0 {
        return Err(format!("the floor fenced {floor_fences} times per commit"));
    }
    let peer_fences = peer(counted(&mut peer_memory), size, group, 64)?.fences_per_commit;
    let per_round = commits / rounds + 1;
    // Warm all three up (caches, branch predictors), then alternate.
    nvirt(
        X86Pmem::new(&mut log_memory),
        size,
        group,
        per_round / 4 + 1,
    )?;
    floor(
        X86Pmem::new(&mut floor_memory),
        size,
        group,
        per_round / 4 + 1,
    )?;
    peer(
        X86Pmem::new(&mut peer_memory),
        size,
        group,
        per_round / 4 + 1,
    )?;
    let (mut ours, mut floors, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        ours.push(nvirt(X86Pmem::new(&mut log_memory), size, group, per_round)?.ns_per_commit);
        floors.push(floor(X86Pmem::new(&mut floor_memory), size, group, per_round)?.ns_per_commit);
        theirs.push(peer(X86Pmem::new(&mut peer_memory), size, group, per_round)?.ns_per_commit);
    }
    let mut ratios: Vec<f64> = ours.iter().zip(&floors).map(|(n, f)| n / f).collect();
    Ok(Workload {
        to_floor: median(&mut ratios),
        nvirt: Measured {
            ns_per_commit: median(&mut ours),
            fences_per_commit: fences,
        },
        floor: median(&mut floors),
        peer: Measured {
            ns_per_commit: median(&mut theirs),
            fences_per_commit: peer_fences,
        },
    })
}

/// Counts what recovery hands over, so that none of it is optimized away.
struct Tally {
    records: u64,
    bytes: u64,
}

impl Replay for Tally {
    type Error = String;
    fn checkpoint(
        &mut self,
        snapshot: &mut nvirt_persist_meta::CheckpointReader<'_>,
    ) -> Result<(), String> {
        self.bytes += snapshot.len();
        Ok(())
    }
    fn record(&mut self, record: &RecordView<'_>) -> Result<(), String> {
        self.records += 1;
        self.bytes += record.payload().len() as u64;
        Ok(())
    }
}

/// Fills a 64 MiB record area with 64-byte records (the size of a pool's
/// extent records) and times read-only recovery of it.
fn recovery(runs: usize) -> Result<f64, String> {
    let mut memory = lines(HEADER + RECOVERY_AREA);
    let mut log = Log::format(X86Pmem::new(&mut memory), 0x1000 - 64).map_err(|e| e.to_string())?;
    let payload = [0x5a; 64];
    let record = Raw {
        kind: KIND,
        payload: &payload,
    };
    let group = [record; 8];
    let mut appended = 0u64;
    loop {
        // Groups of eight to fill quickly, singles to fill the rest.
        let outcome = if log.space().free >= 8 * record_size(64) {
            log.append_group(&group).map(|_| 8)
        } else {
            log.append(&record).map(|_| 1)
        };
        match outcome {
            Ok(n) => appended += n,
            Err(_) => break,
        }
    }
    let used = log.space().used;
    let pmem = log.into_pmem();
    let mut best = f64::INFINITY;
    for _ in 0..runs {
        let mut tally = Tally {
            records: 0,
            bytes: 0,
        };
        let start = Instant::now();
        let recovered = replay(&pmem, &mut tally).map_err(|e| e.to_string())?;
        let ns = elapsed_ns(start.elapsed());
        if tally.records != appended || recovered.records != appended {
            return Err(format!(
                "recovery replayed {} of {appended} records",
                tally.records
            ));
        }
        best = best.min(ns);
    }
    eprintln!(
        "nvirt bench log: recovery of {appended} records of 64 B ({used} bytes of a {} MiB record area), best of {runs} runs: {:.1} ms",
        RECOVERY_AREA >> 20,
        best / 1e6
    );
    Ok(used as f64 / (1 << 20) as f64 / (best / 1e9))
}

pub(crate) fn run(quick: bool) -> Result<ExitCode, String> {
    if let Some(done) = super::in_one_codegen_unit("log", quick) {
        return done;
    }
    let scale = if quick { 3 } else { 100 };
    let rounds = if quick { 3 } else { 25 };
    {
        let mut probe = lines(64);
        let instruction = X86Pmem::new(&mut probe).flush_instruction();
        eprintln!(
            "nvirt bench log: write-back instruction {} + sfence, over DRAM; {} run",
            instruction.name(),
            if quick { "quick" } else { "full" }
        );
    }
    for size in [64usize, 256, 4096] {
        for group in [1usize, 8] {
            let base: u64 = match size {
                64 => 20_000,
                256 => 10_000,
                _ => 2_000,
            };
            let commits = base * scale / group as u64;
            let w = workload(size, group, commits, rounds)?;
            let name = match (group, size) {
                (1, 4096) => "commit-4KiB".to_owned(),
                (1, s) => format!("commit-{s}B"),
                (g, 4096) => format!("group{g}-4KiB"),
                (g, s) => format!("group{g}-{s}B"),
            };
            let ours = w.nvirt.ns_per_commit;
            println!(
                "{}",
                super::line(
                    &name,
                    ours,
                    w.peer.ns_per_commit,
                    &format!(
                        "fences/commit={} floor={:.1} nvirt/floor={:.2}",
                        w.nvirt.fences_per_commit, w.floor, w.to_floor
                    )
                )
            );
            eprintln!(
                "nvirt bench log: {name}: {commits} commits in {rounds} rounds; peer fences/commit={}",
                w.peer.fences_per_commit
            );
        }
    }
    let mib_per_s = recovery(if quick { 2 } else { 5 })?;
    println!("recovery MiB/s={mib_per_s:.0}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use nvirt_persist_meta::{MemPmem, Pmem};

    use super::*;

    #[test]
    fn updates_in_place_with_three_fences() {
        let mut undo = UndoLog::new(Counting::new(MemPmem::new(8192)), 4096, 4096);
        undo.commit(&[(0, &[1; 64]), (64, &[2; 10])]).unwrap();
        let mut buf = [0; 74];
        undo.pmem().read(0, &mut buf).unwrap();
        assert_eq!(buf[..64], [1; 64]);
        assert_eq!(buf[64..], [2; 10]);
        assert_eq!(undo.pmem().stats().fences, 3);
        assert_eq!(undo.pmem().read_u64(4096).unwrap(), 0);
        // The old values were logged: entry 0 names offset 0, 64 bytes.
        assert_eq!(undo.pmem().read_u64(4096 + 64).unwrap(), 0);
        assert_eq!(undo.pmem().read_u64(4096 + 72).unwrap(), 64);
        assert!(undo.commit(&[(0, &[0; 5000])]).is_err());
    }

    #[test]
    fn one_fence_per_nvirt_commit_and_floor_three_per_peer_transaction() {
        let mut memory = lines(HEADER + COMMIT_AREA);
        let mut peer_memory = lines(PEER_DATA + peer_log_len(64, 8));
        for group in [1, 8] {
            let ours = nvirt(counted(&mut memory), 64, group, 200).unwrap();
            assert_eq!(ours.fences_per_commit, 1.0);
            let floor = floor(counted(&mut memory), 64, group, 200).unwrap();
            assert_eq!(floor.fences_per_commit, 1.0);
            let theirs = peer(counted(&mut peer_memory), 64, group, 200).unwrap();
            assert_eq!(theirs.fences_per_commit, 3.0);
        }
    }

    #[test]
    fn the_floor_stores_the_payloads_side_by_side_and_wraps() {
        let mut memory = lines(HEADER + COMMIT_AREA);
        // Enough commits of 8 x 4 KiB to wrap the 32 MiB area once.
        let commits = COMMIT_AREA / (8 * 4096) + 3;
        floor(X86Pmem::new(&mut memory), 4096, 8, commits).unwrap();
        let payload = |at: u64| memory[(at / 64) as usize].0[0];
        assert_eq!(payload(HEADER), 1);
        assert_eq!(payload(HEADER + 4096), 2);
        assert_eq!(payload(HEADER + 7 * 4096), 8);
        assert_eq!(payload(HEADER + COMMIT_AREA - 4096), 8);
    }

    #[test]
    fn workloads_report_all_three_sides() {
        let w = workload(256, 8, 40, 2).unwrap();
        assert_eq!(w.nvirt.fences_per_commit, 1.0);
        assert_eq!(w.peer.fences_per_commit, 3.0);
        assert!(w.floor > 0.0 && w.nvirt.ns_per_commit > 0.0 && w.peer.ns_per_commit > 0.0);
    }

    #[test]
    fn recovery_replays_everything_it_filled() {
        assert!(recovery(1).unwrap() > 0.0);
    }

    #[test]
    fn pmem_probe_reads_back() {
        let mut memory = lines(128);
        let mut pmem = X86Pmem::new(&mut memory);
        pmem.store_u64(64, 9).unwrap();
        assert_eq!(pmem.read_u64(64).unwrap(), 9);
    }
}
