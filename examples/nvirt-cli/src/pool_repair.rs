//! `nvirt pool repair IMAGE --salvage`: a pool whose log lost committed
//! records (`nvirt pool check` lists them) cut back to its last provably
//! consistent state, with every frame the lost records may own kept in the
//! quarantine domain `lost+found` (see `NvPool::salvage`).
//!
//! Without `--salvage` it only says what it would do (a salvage of an
//! in-memory copy) and exits with status 2. With it: a copy of the whole
//! metadata area goes to `IMAGE.meta-<n>` (the first `n` not taken; synced
//! with its directory) before anything is written, then the salvage runs
//! on the file (its fences are `fdatasync`), then the result is recovered
//! in memory and checked. Output, one fact per line:
//!
//! ```text
//! image: <bytes> bytes, pool at offset <hex>
//! damaged offset=<hex> len=<n>: <what lies there and what is lost>      (as `check`)
//!   affected record seq=<n> offset=<hex>: <operation dropped with it>
//! metadata copy: <path> (<bytes> bytes)                        (--salvage only)
//! lost: records seq=<first>.. (<n> kept before them, <n> intact after them dropped)
//! quarantine mfn=<hex> frames=<n>: <added by dropped record seq <n>|free but written|taken from domain <uuid> (extent …): …>
//! salvaged: checkpoint-generation=<n> quarantined-frames=<n> moved-extents=<n>    (or: would salvage: …)
//! lost+found: id=<uuid> frames=<n> extents=<n>: `nvirt pool destroy IMAGE lost+found` scrubs and frees them
//! check: ok
//! ```
//!
//! An image with no lost record prints `repair: nothing to salvage: …`,
//! writes nothing (no copy either: there is nothing to undo) and exits 0;
//! so re-running a salvage is harmless. An image nothing can be salvaged
//! from (no pool superblock, a damaged active checkpoint) exits 2 with
//! the reason, having written nothing.

use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use nvirt_nvpool::{LOST_FOUND_ID, NvPool, Quarantined, SalvageReport};
use nvirt_persist_meta::Pmem;

use crate::pool_cmd::{At, read_region};
use crate::pool_file::FilePmem;

/// Runs `nvirt pool repair`.
pub(crate) fn repair(image: &str, at: &At, salvage: bool) -> Result<ExitCode, String> {
    let offset = at.offset;
    let bad = at.bad();
    let (mut pmem, size) = read_region(image, offset)?;
    let mut out = format!("image: {size} bytes, pool at offset {offset:#x}\n");
    nvirt_nvpool::survey(&pmem, |d| {
        let _ = writeln!(out, "{d}");
    });
    let geo = NvPool::probe(&pmem).map_err(|e| format!("{image}: nothing to salvage: {e}"))?;
    let mut work = vec![0u8; geo.work_area_bytes()];
    // A dry run on the copy in memory: what a salvage would do, and
    // whether it would succeed, before the file is touched.
    let mut runs = Vec::new();
    let dry = NvPool::salvage(&mut pmem, &mut work, &bad, |q| runs.push(*q));
    let report = match dry {
        Err(e) => {
            emit(&out)?;
            return Err(format!("{image}: {e}"));
        }
        Ok((_, SalvageReport::Unchanged)) => {
            out.push_str(
                "repair: nothing to salvage: no committed record is lost (an open repairs the rest)\n",
            );
            emit(&out)?;
            return Ok(ExitCode::SUCCESS);
        }
        Ok((_, SalvageReport::Salvaged(r))) => r,
    };
    if !salvage {
        describe(&mut out, &report, &runs, "would salvage");
        emit(&out)?;
        return Err(format!(
            "{image}: committed records are lost; `nvirt pool repair {image} --salvage` \
             keeps a copy of the metadata, cuts the pool back to seq {} and quarantines {} frames",
            report.first_lost_seq.saturating_sub(1),
            report.quarantined_frames
        ));
    }
    let copy = keep_copy(image, offset, geo.metadata_bytes())?;
    let _ = writeln!(
        out,
        "metadata copy: {copy} ({} bytes)",
        geo.metadata_bytes()
    );
    emit(&out)?;
    out.clear();
    let file = FilePmem::open(image, offset, None)?;
    let mut runs = Vec::new();
    let (file, report) = NvPool::salvage(file, &mut work, &bad, |q| runs.push(*q))
        .map_err(|e| format!("{image}: {e} (nothing was written; the copy is {copy})"))?;
    file.finish().map_err(|e| format!("{image}: {e}"))?;
    let SalvageReport::Salvaged(report) = report else {
        return Err(format!(
            "{image}: changed while being salvaged (the copy is {copy})"
        ));
    };
    describe(&mut out, &report, &runs, "salvaged");
    let (pmem, _) = read_region(image, offset)?;
    let checked = (|| {
        let (pool, _) = NvPool::recover_with_bad_ranges(pmem, &mut work, &bad)
            .map_err(|e| format!("recovery after salvage: {e}"))?;
        pool.check()
            .map_err(|e| format!("consistency check after salvage: {e}"))?;
        if let Some(d) = pool.find(LOST_FOUND_ID).and_then(|d| pool.domain(d)) {
            let _ = writeln!(
                out,
                "lost+found: id={} frames={} extents={}: `nvirt pool destroy {image} lost+found` scrubs and frees them",
                d.id, d.frames, d.extents
            );
        }
        Ok::<(), String>(())
    })();
    match checked {
        Ok(()) => out.push_str("check: ok\n"),
        Err(e) => {
            emit(&out)?;
            return Err(format!("{image}: {e} (the copy is {copy})"));
        }
    }
    emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

fn describe(out: &mut String, r: &nvirt_nvpool::Salvaged, runs: &[Quarantined], verdict: &str) {
    let _ = writeln!(
        out,
        "lost: records seq={}.. ({} kept before them, {} intact after them dropped)",
        r.first_lost_seq, r.kept_records, r.dropped_records
    );
    for q in runs {
        let _ = writeln!(
            out,
            "quarantine mfn={:#x} frames={}: {}",
            q.frames.start().get(),
            q.frames.len(),
            q.why
        );
    }
    let _ = writeln!(
        out,
        "{verdict}: checkpoint-generation={} quarantined-frames={} moved-extents={}",
        r.generation, r.quarantined_frames, r.moved_extents
    );
}

/// Writes the metadata area (`len` bytes from `offset`) of `image` to the
/// first free `IMAGE.meta-<n>`, synced, directory too.
fn keep_copy(image: &str, offset: u64, len: u64) -> Result<String, String> {
    // Only the metadata: the image may be gigabytes.
    let pmem = FilePmem::open(image, offset, Some(len))?;
    let mut bytes = vec![0u8; usize::try_from(len).map_err(|_| "metadata too large")?];
    pmem.read(0, &mut bytes)
        .map_err(|e| format!("{image}: {e}"))?;
    pmem.check_io()?;
    for n in 0.. {
        let path = format!("{image}.meta-{n}");
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path);
        let mut file = match file {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            other => other.map_err(|e| format!("{path}: {e}"))?,
        };
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("{path}: {e}"))?;
        let dir = Path::new(&path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        return Ok(path);
    }
    Err(format!("{image}: no free name for the metadata copy"))
}

fn emit(out: &str) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("writing output: {e}"))
}
