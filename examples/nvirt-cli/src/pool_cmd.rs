//! `nvirt pool …`: NVRAM pool images (e.g. QEMU's NVDIMM backing file, the
//! pool possibly at an offset inside it) offline.
//!
//! `inspect` recovers a copy in memory and never writes the file. Its
//! output, one fact per line (a contract for scripts):
//!
//! ```text
//! image: <bytes> bytes, pool at offset <hex>
//! pool: region=<bytes> frame-base=<hex> data-frames=<n> free-frames=<n> owned-frames=<n> metadata=<bytes> (<pct>%) domains=<n>/<max> extents=<n>/<max>
//! log: checkpoint-generation=<n> records-replayed=<n> record-bytes-used=<n>/<n>
//! recovery: crashed-domains=<n> scrubbed-frames=<n> superblock-repairs=<n>
//! domain slot=<n> id=<uuid> name=<name> state=<shut-down|running|crashed-while-running|incomplete> quota=<frames> frames=<n> extents=<n>
//!   extent gpfn=<hex> mfn=<hex> order=<n>
//! bad-frames: kept-out=<n> owned=<n>               (only with --bad-range)
//! bad-range offset=<hex> len=<bytes> mfn=<hex> frames=<n>
//!   owned domain slot=<n> id=<uuid> gpfn=<hex> mfn=<hex> frames=<n> extent-gpfn=<hex> extent-mfn=<hex> order=<n>
//! check: ok
//! ```
//!
//! `--bad-range START-END` (every command, repeatable) names known-bad
//! bytes of the image file, `END` exclusive: the pool never hands out nor
//! writes their frames, and refuses to open if one lies on its metadata.
//! The pool does not store them, so every command needs them.
//!
//! A damaged image prints what it can, then the reason on stderr, and
//! exits with status 2.
//!
//! `check` is read-only too: every damaged range of the metadata and what
//! it affects, then the verdict of an in-memory recovery and consistency
//! check; exit 0 if all is well, 2 otherwise:
//!
//! ```text
//! image: <bytes> bytes, pool at offset <hex>
//! damaged offset=<hex> len=<n>: <what lies there and what is lost>
//!   affected record seq=<n> offset=<hex>: <create|destroy|flags|quota domain slot=<n> …|add to|remove from domain slot=<n> extents: gpfn=<hex> mfn=<hex> order=<n> …>
//! damaged offset=<hex> len=<n>: known-bad range on <metadata part>    (--bad-range)
//! bad-range offset=<hex> len=<bytes> mfn=<hex> frames=<n>             (--bad-range)
//!   owned domain slot=<n> id=<uuid> gpfn=<hex> mfn=<hex> frames=<n> … (each one damage)
//! recovery: ok                                 (or: recovery: refused: <why>)
//! check: ok                                    (or: check: <n> damaged ranges)
//! ``` The other commands change the image through a
//! file-backed `Pmem` whose fence is `fdatasync`, so they are as
//! crash-safe as the pool: `export` writes and syncs its file before the
//! pool frees the domain; `import` creates the domain marked incomplete,
//! populates it, copies the data, syncs, and only then marks it complete
//! (an import a crash interrupted is redone by running it again).

use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use nvirt_nvpool::{
    BadRange, BadRangeError, Config, Dom, DomainUuid, Gfn, Mfn, NvPool, RecoverError,
    RecoveryReport,
};
use nvirt_persist_meta::MemPmem;

use crate::bad_range::{self, ImageRange, parse_bad_range};
use crate::pool_file::{self, FilePmem};
use crate::pool_move;
use crate::size::parse_size;

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Recover an image in memory (never writing the file) and print the
    /// pool, every domain and extent, and the consistency check. Exit
    /// status 2 if it is not a pool or is damaged.
    Inspect {
        /// The image file.
        image: String,
        #[command(flatten)]
        at: At,
    },
    /// List every damaged range of the pool's metadata and the domains,
    /// extents and records it affects, without writing the file. Exit
    /// status 2 if anything is damaged.
    Check {
        /// The image file.
        image: String,
        #[command(flatten)]
        at: At,
    },
    /// Salvage a pool whose log lost committed records: with --salvage,
    /// keep a copy of the metadata beside the image, cut the pool back to
    /// its last provably consistent state and keep every frame the lost
    /// records may own in the domain lost+found. Without --salvage, say
    /// what it would do and exit with status 2.
    Repair {
        /// The image file.
        image: String,
        /// Consent to rewrite the pool's metadata.
        #[arg(long)]
        salvage: bool,
        #[command(flatten)]
        at: At,
    },
    /// Make an image (or the part from --offset) an empty pool.
    Format(FormatArgs),
    /// Create a domain.
    Create {
        /// The image file.
        image: String,
        /// Its name (up to 32 bytes).
        #[arg(long)]
        name: String,
        /// Its NVRAM quota, e.g. 64M.
        #[arg(long, value_parser = parse_size)]
        quota: u64,
        /// Its stable id (a UUID or a hexadecimal number); by default
        /// derived from the name.
        #[arg(long, value_parser = parse_id)]
        id: Option<DomainUuid>,
        #[command(flatten)]
        at: At,
    },
    /// Give a domain guest frames.
    Populate {
        /// The image file.
        image: String,
        /// The domain: its id or name.
        domain: String,
        /// First guest frame number (e.g. 0x40000 for 1 GiB).
        #[arg(long, value_parser = parse_size)]
        gpfn: u64,
        /// Frames.
        #[arg(long, value_parser = parse_size)]
        pages: u64,
        #[command(flatten)]
        at: At,
    },
    /// Destroy a domain: its frames are scrubbed and return to the pool.
    Destroy {
        /// The image file.
        image: String,
        /// The domain: its id or name.
        domain: String,
        #[command(flatten)]
        at: At,
    },
    /// Page a shut-down domain's NVRAM out to a file, then free it in the
    /// pool.
    Export {
        /// The image file.
        image: String,
        /// The domain: its id or name.
        domain: String,
        /// The export file to write.
        file: String,
        /// Export a domain that crashed while running, too.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        at: At,
    },
    /// Bring an exported domain back: same id and guest frames, new
    /// machine frames.
    Import {
        /// The image file.
        image: String,
        /// The export file.
        file: String,
        #[command(flatten)]
        at: At,
    },
}

/// Where the pool starts in the image file, and which of its bytes are
/// known bad.
#[derive(Debug, Args)]
pub struct At {
    /// Byte offset of the pool inside the image file.
    #[arg(long, default_value = "0", value_parser = parse_size)]
    pub(crate) offset: u64,
    /// Known-bad bytes START-END of the image file (END exclusive; e.g.
    /// 0x7000-0x8000), as the platform reports media errors; repeatable.
    /// Their frames are never handed out nor written; on the metadata they
    /// are damage. Not stored: give them to every command.
    #[arg(long = "bad-range", value_name = "START-END", value_parser = parse_bad_range)]
    bad_range: Vec<ImageRange>,
}

impl At {
    /// The known-bad ranges as the pool sees them.
    pub(crate) fn bad(&self) -> Vec<BadRange> {
        bad_range::for_pool(&self.bad_range, self.offset, None)
    }
}

#[derive(Debug, Args)]
pub struct FormatArgs {
    /// The image file (created or extended with --size).
    image: String,
    #[command(flatten)]
    at: At,
    /// Make the pool this large (the file grows to offset + size).
    #[arg(long, value_parser = parse_size)]
    size: Option<u64>,
    /// Machine frame of the pool's first byte (its host-physical address
    /// divided by 4096), so that the pool's alignment is the host's.
    #[arg(long, default_value = "0", value_parser = parse_size)]
    frame_base: u64,
    /// At most this many domains.
    #[arg(long)]
    max_domains: Option<u32>,
    /// At most this many extents.
    #[arg(long)]
    max_extents: Option<u32>,
    /// Do not zero the data frames (they are known to be zero).
    #[arg(long)]
    assume_zeroed: bool,
}

pub(crate) fn run(cmd: PoolCommand) -> Result<ExitCode, String> {
    match cmd {
        PoolCommand::Inspect { image, at } => return inspect(&image, &at),
        PoolCommand::Check { image, at } => return check(&image, &at),
        PoolCommand::Repair { image, at, salvage } => {
            return crate::pool_repair::repair(&image, &at, salvage);
        }
        PoolCommand::Format(args) => format(&args),
        PoolCommand::Create {
            image,
            name,
            quota,
            id,
            at,
        } => with_pool(&image, &at, |pool, _| {
            let id = id.unwrap_or_else(|| id_of_name(&name));
            let dom = pool
                .create(id, &name, quota.div_ceil(4096))
                .map_err(|e| e.to_string())?;
            println!("created domain slot={} id={id} name={name}", dom.slot());
            Ok(())
        }),
        PoolCommand::Populate {
            image,
            domain,
            gpfn,
            pages,
            at,
        } => with_pool(&image, &at, |pool, _| {
            let dom = resolve(pool, &domain)?;
            let gpfn = Gfn::new(gpfn).ok_or("guest frame out of range")?;
            let got = pool.populate(dom, gpfn, pages).map_err(|e| e.to_string())?;
            println!(
                "populated frames={} extents={} largest-order={}",
                got.frames,
                got.extents,
                got.largest.get()
            );
            Ok(())
        }),
        PoolCommand::Destroy { image, domain, at } => with_pool(&image, &at, |pool, _| {
            let dom = resolve(pool, &domain)?;
            let frames = pool.domain(dom).map_or(0, |d| d.frames);
            pool.destroy(dom).map_err(|e| e.to_string())?;
            println!("destroyed {domain}: {frames} frames scrubbed and freed");
            Ok(())
        }),
        PoolCommand::Export {
            image,
            domain,
            file,
            force,
            at,
        } => with_pool(&image, &at, |pool, _| {
            pool_move::export(pool, &domain, &file, force)
        }),
        PoolCommand::Import { image, file, at } => {
            let (domain, data) = pool_file::read_export(&file)?;
            with_pool(&image, &at, |pool, _| {
                pool_move::import(pool, &domain, &data)
            })
        }
    }
    .map(|()| ExitCode::SUCCESS)
}

/// A domain id: a UUID (dashes optional) or a `0x` number.
fn parse_id(text: &str) -> Result<DomainUuid, String> {
    let hex: String = text
        .trim_start_matches("0x")
        .chars()
        .filter(|&c| c != '-')
        .collect();
    if hex.is_empty() || hex.len() > 32 {
        return Err(format!("invalid domain id {text:?}"));
    }
    u128::from_str_radix(&hex, 16)
        .map(DomainUuid::new)
        .map_err(|_| format!("invalid domain id {text:?}"))
}

/// The id `create` gives a domain named `name` when none is given: FNV-1a
/// (128-bit) of the name, so the same name gets the same id.
fn id_of_name(name: &str) -> DomainUuid {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for &b in name.as_bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    DomainUuid::new(h)
}

/// The domain `text` names: an id or a name. Text that is the id of one
/// domain and the name of another (a name of hex digits) is refused rather
/// than guessed, since `destroy` and `export` act on the answer.
pub(crate) fn resolve<P: nvirt_persist_meta::Pmem>(
    pool: &NvPool<'_, P>,
    text: &str,
) -> Result<Dom, String> {
    let by_id = parse_id(text).ok().and_then(|id| pool.find(id));
    let by_name = pool.find_name(text);
    match (by_id, by_name) {
        (Some(a), Some(b)) if a != b => Err(format!(
            "{text:?} is the id of one domain and the name of another: give the full id"
        )),
        (Some(d), _) | (None, Some(d)) => Ok(d),
        (None, None) => Err(format!("no domain {text:?} in the pool")),
    }
}

/// Recovers the pool in `image` (from `offset`) through the file, runs
/// `f`, and syncs.
fn with_pool(
    image: &str,
    at: &At,
    f: impl FnOnce(&mut NvPool<'_, FilePmem>, &RecoveryReport) -> Result<(), String>,
) -> Result<(), String> {
    let pmem = FilePmem::open(image, at.offset, None)?;
    let geo = NvPool::probe(&pmem).map_err(|e| format!("{image}: {e}"))?;
    let mut work = vec![0u8; geo.work_area_bytes()];
    let (mut pool, report) = NvPool::recover_with_bad_ranges(pmem, &mut work, &at.bad())
        .map_err(|e| format!("{image}: {e}"))?;
    let result = f(&mut pool, &report);
    let synced = pool.into_region().finish();
    result.and(synced.map_err(|e| format!("{image}: {e}")))
}

fn format(args: &FormatArgs) -> Result<(), String> {
    let image = &args.image;
    let mut fresh = false;
    if let Some(size) = args.size {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(image)
            .map_err(|e| format!("{image}: {e}"))?;
        let len = file.metadata().map_err(|e| format!("{image}: {e}"))?.len();
        let want = args.at.offset.checked_add(size).ok_or("size too large")?;
        if len < want {
            // New bytes of a file read as zeros.
            fresh = len <= args.at.offset;
            file.set_len(want).map_err(|e| format!("{image}: {e}"))?;
        }
    }
    // --size bounds the pool even in a larger file (an NVDIMM image with
    // other data after it).
    let pmem = FilePmem::open(image, args.at.offset, args.size)?;
    let size = nvirt_persist_meta::Pmem::size(&pmem);
    // Ranges after a pool that stops short of the file's end are the
    // business of whatever follows it; past the file, they are mistakes.
    let file_len = fs::metadata(image)
        .map_err(|e| format!("{image}: {e}"))?
        .len();
    bad_range::check_within(&args.at.bad_range, file_len)?;
    let bad = bad_range::for_pool(
        &args.at.bad_range,
        args.at.offset,
        Some(args.at.offset + size),
    );
    let frame_base = Mfn::try_from(args.frame_base).map_err(|e| format!("--frame-base: {e}"))?;
    let mut config = Config::for_region(size).with_frame_base(frame_base);
    if let Some(n) = args.max_domains {
        config = config.with_max_domains(n);
    }
    if let Some(n) = args.max_extents {
        config = config.with_max_extents(n);
    }
    if args.assume_zeroed || fresh {
        config = config.assume_zeroed();
    }
    let geo = config.geometry(size).map_err(|e| format!("{image}: {e}"))?;
    let mut work = vec![0u8; geo.work_area_bytes()];
    let pool = NvPool::format_with_bad_ranges(pmem, config, &mut work, &bad)
        .map_err(|e| format!("{image}: {e}"))?;
    println!(
        "formatted: region={} data-frames={} metadata={} max-domains={} max-extents={} work-area={}",
        geo.region_len(),
        geo.data_frames(),
        geo.metadata_bytes(),
        geo.max_domains(),
        geo.max_extents(),
        geo.work_area_bytes()
    );
    if !args.at.bad_range.is_empty() {
        println!("bad-frames: kept-out={}", pool.bad_frames_kept_out());
    }
    pool.into_region()
        .finish()
        .map_err(|e| format!("{image}: {e}"))
}

/// The pool's part of an image file, in memory (never written back).
pub(crate) fn read_region(image: &str, offset: u64) -> Result<(MemPmem, usize), String> {
    let mut region = fs::read(image).map_err(|e| format!("{image}: {e}"))?;
    let size = region.len();
    let start = usize::try_from(offset)
        .ok()
        .filter(|&o| o <= size)
        .ok_or_else(|| format!("{image}: offset {offset:#x} is past the end ({size:#x} bytes)"))?;
    // In place: an NVDIMM image can be gigabytes.
    region.drain(..start);
    Ok((MemPmem::from_bytes(region), size))
}

fn check(image: &str, at: &At) -> Result<ExitCode, String> {
    let offset = at.offset;
    let (pmem, size) = read_region(image, offset)?;
    let mut out = format!("image: {size} bytes, pool at offset {offset:#x}\n");
    let found = nvirt_nvpool::survey(&pmem, |d| {
        let _ = writeln!(out, "{d}");
    });
    let stopped = found.log.and_then(|l| l.stopped);
    // Known-bad ranges on the metadata, or owned by domains, are damage.
    let mut bad_damage = 0;
    let recovered = (|| {
        let geo = NvPool::probe(&pmem).map_err(|e| e.to_string())?;
        let mut work = vec![0u8; geo.work_area_bytes()];
        let (pool, _) =
            NvPool::recover_with_bad_ranges(pmem, &mut work, &at.bad()).map_err(|e| {
                if let RecoverError::BadRange(BadRangeError::Metadata { range, part }) = e {
                    bad_damage += 1;
                    let _ = writeln!(
                        out,
                        "damaged offset={:#x} len={}: known-bad range on {part}",
                        offset + range.start(),
                        range.end() - range.start()
                    );
                }
                e.to_string()
            })?;
        bad_damage += bad_range::describe(&pool, offset, &mut out);
        pool.check()
            .map_err(|e| format!("consistency check failed: {e}"))
    })();
    match &recovered {
        Ok(()) => out.push_str("recovery: ok\n"),
        Err(e) => {
            let _ = writeln!(out, "recovery: refused: {e}");
        }
    }
    let result = match (found.damaged + bad_damage, stopped, recovered) {
        (0, None, Ok(())) => {
            out.push_str("check: ok\n");
            Ok(ExitCode::SUCCESS)
        }
        (n, stopped, recovered) => {
            let _ = writeln!(out, "check: {n} damaged ranges");
            let why = stopped
                .map(|e| format!("cannot read further: {e}"))
                .or(recovered.err())
                .unwrap_or_else(|| {
                    if bad_damage > 0 {
                        "domains own known-bad frames (their data there is likely lost)".into()
                    } else {
                        "repairable damage: an open rewrites it".into()
                    }
                });
            Err(format!("{image}: {n} damaged ranges; {why}"))
        }
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("writing output: {e}"))?;
    result
}

fn inspect(image: &str, at: &At) -> Result<ExitCode, String> {
    let offset = at.offset;
    let (pmem, size) = read_region(image, offset)?;
    let mut out = format!("image: {size} bytes, pool at offset {offset:#x}\n");
    let result = (|| {
        let geo = NvPool::probe(&pmem).map_err(|e| e.to_string())?;
        let mut work = vec![0u8; geo.work_area_bytes()];
        let (pool, report) = NvPool::recover_with_bad_ranges(pmem, &mut work, &at.bad())
            .map_err(|e| e.to_string())?;
        describe(&pool, &report, &mut out);
        if !at.bad_range.is_empty() {
            let _ = writeln!(
                out,
                "bad-frames: kept-out={} owned={}",
                pool.bad_frames_kept_out(),
                pool.bad_frames_owned()
            );
            bad_range::describe(&pool, offset, &mut out);
        }
        pool.check()
            .map_err(|e| format!("consistency check failed: {e}"))?;
        out.push_str("check: ok\n");
        Ok::<(), String>(())
    })();
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("writing output: {e}"))?;
    result
        .map(|()| ExitCode::SUCCESS)
        .map_err(|e| format!("{image}: {e}"))
}

fn describe(pool: &NvPool<'_, MemPmem>, report: &RecoveryReport, out: &mut String) {
    let s = pool.stats();
    let geo = pool.geometry();
    let _ = writeln!(
        out,
        "pool: region={} frame-base={:#x} data-frames={} free-frames={} owned-frames={} metadata={} ({:.3}%) domains={}/{} extents={}/{}",
        geo.region_len(),
        geo.frame_base(),
        s.data_frames,
        s.free_frames,
        s.owned_frames,
        s.metadata_bytes,
        s.metadata_bytes as f64 * 100.0 / geo.region_len() as f64,
        s.domains,
        geo.max_domains(),
        s.extents,
        geo.max_extents()
    );
    let _ = writeln!(
        out,
        "log: checkpoint-generation={} records-replayed={} record-bytes-used={}/{}",
        report.log.checkpoint.generation, report.records, s.log.used, s.log.capacity
    );
    let _ = writeln!(
        out,
        "recovery: crashed-domains={} scrubbed-frames={} superblock-repairs={}",
        report.crashed,
        report.scrubbed_frames,
        report.superblock_repairs.iter().filter(|&&r| r).count()
    );
    for d in pool.domains() {
        let _ = writeln!(
            out,
            "domain slot={} id={} name={} state={} quota={} frames={} extents={}",
            d.dom.slot(),
            d.id,
            d.name,
            d.state,
            d.quota,
            d.frames,
            d.extents
        );
        for e in pool.extents(d.dom) {
            let _ = writeln!(
                out,
                "  extent gpfn={:#x} mfn={:#x} order={}",
                e.gfn().get(),
                e.mfn().get(),
                e.order().get()
            );
        }
    }
}
