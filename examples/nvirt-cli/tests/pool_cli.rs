//! The `nvirt pool …` commands as a user runs them: output lines, exit
//! statuses, inspect never writing the image, export and import moving a
//! domain's data out and back.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::path::PathBuf;
mod common;

use common::{pool as nvirt, pool_ok as ok};

use nvirt_nvpool::{Config, DomainState, DomainUuid, Gfn, Mfn, NvPool};
use nvirt_persist_meta::MemPmem;

fn path(name: &str) -> String {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("pool-cli-{name}"))
        .to_str()
        .unwrap()
        .to_owned()
}

fn g(n: u64) -> Gfn {
    Gfn::new(n).unwrap()
}

/// An image of `size` bytes with the pool at `offset`: domains "db"
/// (running, with data in its frames) and "web" (shut down).
fn sample(name: &str, offset: usize, size: u64) -> String {
    let config = Config::for_region(size).with_frame_base(Mfn::new(0x10_0000).unwrap());
    let mut work = vec![0; config.geometry(size).unwrap().work_area_bytes()];
    let mut pool = NvPool::format(MemPmem::new(size as usize), config, &mut work).unwrap();
    let db = pool.create(DomainUuid::new(0xdb), "db", 1024).unwrap();
    pool.populate(db, g(0x4_0000), 600).unwrap();
    pool.mark_running(db).unwrap();
    let web = pool.create(DomainUuid::new(0x3eb), "web", 64).unwrap();
    pool.populate(web, g(0x1001), 5).unwrap();
    for i in 0..5 {
        let text = format!("web frame {i}");
        pool.write_guest(web, g(0x1001 + i), 100, text.as_bytes())
            .unwrap();
    }
    pool.persist();
    let mut image = vec![0x55u8; offset];
    image.extend(pool.into_region().into_bytes());
    let file = path(name);
    std::fs::write(&file, image).unwrap();
    file
}

/// The pool in `file` at `offset`, recovered in memory.
fn open(file: &str, offset: usize) -> (MemPmem, Vec<u8>) {
    let bytes = std::fs::read(file).unwrap()[offset..].to_vec();
    let pmem = MemPmem::from_bytes(bytes);
    let work = vec![0; NvPool::probe(&pmem).unwrap().work_area_bytes()];
    (pmem, work)
}

#[test]
fn inspect_prints_the_pool_read_only() {
    let file = sample("inspect.img", 0x20_0000, 8 << 20);
    let before = std::fs::read(&file).unwrap();
    let out = ok(&["inspect", &file, "--offset", "2M"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!("image: {} bytes, pool at offset 0x200000", before.len())
    );
    assert!(
        lines[1].starts_with("pool: region=8388608 frame-base=0x100000 data-frames="),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains("owned-frames=605") && lines[1].ends_with("domains=2/16 extents=7/128"),
        "{}",
        lines[1]
    );
    assert!(lines[2].starts_with("log: checkpoint-generation=0 records-replayed=5 "));
    assert_eq!(
        lines[3],
        "recovery: crashed-domains=1 scrubbed-frames=0 superblock-repairs=0"
    );
    assert_eq!(
        lines[4],
        "domain slot=0 id=00000000-0000-0000-0000-0000000000db name=db state=crashed-while-running quota=1024 frames=600 extents=4"
    );
    assert!(lines[5].starts_with("  extent gpfn=0x40000 mfn=0x") && lines[5].ends_with(" order=9"));
    assert!(lines[6].ends_with(" order=6") && lines[8].ends_with(" order=3"));
    assert!(lines[9].starts_with(
        "domain slot=1 id=00000000-0000-0000-0000-0000000003eb name=web state=shut-down"
    ));
    assert_eq!(*lines.last().unwrap(), "check: ok");
    // A damaged superblock copy: inspect shows the repair recovery would
    // make, and the file is not written.
    let mut damaged = before.clone();
    damaged[0x20_0000 + 0x1010] ^= 1;
    std::fs::write(&file, &damaged).unwrap();
    let out = ok(&["inspect", &file, "--offset", "0x200000"]);
    assert!(out.contains("superblock-repairs=1"));
    assert_eq!(std::fs::read(&file).unwrap(), damaged);
}

#[test]
fn damaged_and_foreign_images_exit_2_with_the_reason() {
    let file = sample("damaged.img", 0, 4 << 20);
    let mut bytes = std::fs::read(&file).unwrap();
    // Not a pool at this offset.
    let out = nvirt(&["inspect", &file, "--offset", "0x3000"]);
    assert_eq!(out.status, 2);
    assert!(
        out.stderr.contains("never formatted as a pool"),
        "{}",
        out.stderr
    );
    // Both superblock copies damaged.
    bytes[0x10] ^= 1;
    bytes[0x1010] ^= 1;
    let broken = path("broken.img");
    std::fs::write(&broken, &bytes).unwrap();
    let out = nvirt(&["inspect", &broken]);
    assert_eq!(out.status, 2);
    assert!(
        out.stderr.contains("both pool superblocks are damaged"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.starts_with("image: "));
    // Truncated.
    let short = path("short.img");
    std::fs::write(&short, &std::fs::read(&file).unwrap()[..(3 << 20)]).unwrap();
    let out = nvirt(&["inspect", &short]);
    assert_eq!(out.status, 2);
    assert!(out.stderr.contains("truncated"), "{}", out.stderr);
    // Missing file.
    assert_eq!(nvirt(&["inspect", &path("missing.img")]).status, 2);
}

#[test]
fn format_create_populate_destroy() {
    let file = path("new.img");
    let _ = std::fs::remove_file(&file);
    let out = ok(&[
        "format",
        &file,
        "--size",
        "4M",
        "--offset",
        "1M",
        "--max-domains",
        "3",
    ]);
    assert!(
        out.starts_with("formatted: region=4194304 data-frames="),
        "{out}"
    );
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 5 << 20);
    let out = ok(&[
        "create", &file, "--offset", "1M", "--name", "vm", "--quota", "2M", "--id", "0xabc",
    ]);
    assert_eq!(
        out,
        "created domain slot=0 id=00000000-0000-0000-0000-000000000abc name=vm\n"
    );
    let out = ok(&[
        "populate", &file, "--offset", "1M", "vm", "--gpfn", "0x200", "--pages", "256",
    ]);
    assert_eq!(out, "populated frames=256 extents=1 largest-order=8\n");
    // By id, then over the quota: refused, exit 2.
    let out = nvirt(&[
        "populate", &file, "--offset", "1M", "0xabc", "--gpfn", "0", "--pages", "1",
    ]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let out = nvirt(&[
        "populate", &file, "--offset", "1M", "vm", "--gpfn", "0x1000", "--pages", "0x100",
    ]);
    assert_eq!(out.status, 2);
    assert!(out.stderr.contains("quota"), "{}", out.stderr);
    let out = nvirt(&[
        "create", &file, "--offset", "1M", "--name", "vm", "--quota", "1M", "--id", "0xabc",
    ]);
    assert_eq!(out.status, 2);
    let out = ok(&["inspect", &file, "--offset", "1M"]);
    assert!(
        out.contains("name=vm state=shut-down quota=512 frames=257 extents=2"),
        "{out}"
    );
    let out = ok(&["destroy", &file, "--offset", "1M", "vm"]);
    assert_eq!(out, "destroyed vm: 257 frames scrubbed and freed\n");
    let out = ok(&["inspect", &file, "--offset", "1M"]);
    assert!(!out.contains("domain slot"), "{out}");
    assert_eq!(nvirt(&["destroy", &file, "--offset", "1M", "vm"]).status, 2);
}

#[test]
fn export_then_import_moves_a_domain_out_and_back() {
    let file = sample("move.img", 0, 4 << 20);
    let export = path("web.nvx");
    let _ = std::fs::remove_file(&export);
    // A running (crashed) domain is refused without --force.
    let out = nvirt(&["export", &file, "db", &path("db.nvx")]);
    assert_eq!(out.status, 2);
    assert!(
        out.stderr.contains("crashed-while-running"),
        "{}",
        out.stderr
    );
    let out = ok(&["export", &file, "web", &export]);
    assert!(
        out.starts_with(
            "exported domain id=00000000-0000-0000-0000-0000000003eb name=web frames=5 extents=3"
        ),
        "{out}"
    );
    let listing = ok(&["inspect", &file]);
    assert!(!listing.contains("name=web"));
    assert!(listing.contains("check: ok"));
    // The frames the domain had are scrubbed: no "web frame" text left in
    // the image outside the export.
    let image = std::fs::read(&file).unwrap();
    assert!(!image.windows(9).any(|w| w == b"web frame"));
    let out = ok(&["import", &file, &export]);
    assert!(
        out.starts_with(
            "imported domain id=00000000-0000-0000-0000-0000000003eb name=web frames=5"
        ),
        "{out}"
    );
    // Importing again: the domain exists.
    let out = nvirt(&["import", &file, &export]);
    assert_eq!(out.status, 2);
    assert!(out.stderr.contains("already in the pool"), "{}", out.stderr);
    // Same guest frames, same data.
    let (pmem, mut work) = open(&file, 0);
    let (pool, _) = NvPool::recover(pmem, &mut work).unwrap();
    let web = pool.find(DomainUuid::new(0x3eb)).unwrap();
    let info = pool.domain(web).unwrap();
    assert_eq!(
        (info.name, info.quota, info.frames, info.state),
        ("web", 64, 5, DomainState::ShutDown)
    );
    for i in 0..5 {
        let mut buf = [0u8; 11];
        pool.read_guest(web, g(0x1001 + i), 100, &mut buf).unwrap();
        assert_eq!(&buf, format!("web frame {i}").as_bytes());
    }
    pool.check().unwrap();
}

#[test]
fn an_interrupted_import_is_redone_and_bad_exports_are_refused() {
    let file = sample("redo.img", 0, 4 << 20);
    let export = path("redo.nvx");
    let _ = std::fs::remove_file(&export);
    ok(&["export", &file, "web", &export]);
    // A crash in the middle of an import leaves the domain incomplete.
    let (pmem, mut work) = open(&file, 0);
    let (mut pool, _) = NvPool::recover(pmem, &mut work).unwrap();
    let half = pool
        .create_incomplete(DomainUuid::new(0x3eb), "web", 64)
        .unwrap();
    pool.populate(half, g(0x1001), 2).unwrap();
    std::fs::write(&file, pool.into_region().into_bytes()).unwrap();
    assert!(ok(&["inspect", &file]).contains("name=web state=incomplete"));
    ok(&["import", &file, &export]);
    let listing = ok(&["inspect", &file]);
    assert!(
        listing.contains("name=web state=shut-down quota=64 frames=5"),
        "{listing}"
    );
    // A damaged export is refused before the pool is touched.
    let mut bytes = std::fs::read(&export).unwrap();
    bytes[200] ^= 1;
    let bad = path("bad.nvx");
    std::fs::write(&bad, &bytes).unwrap();
    let before = std::fs::read(&file).unwrap();
    let out = nvirt(&["import", &file, &bad]);
    assert_eq!(out.status, 2);
    assert!(out.stderr.contains("checksum mismatch"), "{}", out.stderr);
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[test]
fn format_with_a_size_inside_a_larger_file_keeps_what_follows() {
    let file = path("larger.img");
    std::fs::write(&file, vec![0xa5u8; 8 << 20]).unwrap();
    let out = ok(&["format", &file, "--size", "4M", "--offset", "1M"]);
    assert!(
        out.starts_with("formatted: region=4194304 data-frames="),
        "{out}"
    );
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(bytes.len(), 8 << 20);
    assert!(
        bytes[..1 << 20].iter().all(|&b| b == 0xa5),
        "before the pool"
    );
    assert!(
        bytes[5 << 20..].iter().all(|&b| b == 0xa5),
        "after the pool"
    );
    let out = ok(&["inspect", &file, "--offset", "1M"]);
    assert!(out.contains("region=4194304 "), "{out}");
}

#[test]
fn export_never_overwrites_a_file() {
    let file = sample("export-exists.img", 0, 4 << 20);
    let to = path("export-exists.nvexport");
    std::fs::write(&to, b"an earlier export").unwrap();
    let out = nvirt(&["export", &file, "web", &to]);
    assert_eq!(out.status, 2, "{}", out.stdout);
    assert!(out.stderr.contains("exists"), "{}", out.stderr);
    assert_eq!(std::fs::read(&to).unwrap(), b"an earlier export");
    // The domain is still in the pool.
    assert!(ok(&["inspect", &file]).contains("name=web"));
}

#[test]
fn check_lists_damage_and_what_it_affects_read_only() {
    let file = path("check");
    let _ = std::fs::remove_file(&file);
    ok(&["format", &file, "--size", "4M"]);
    ok(&["create", &file, "--name", "vm1", "--quota", "1M"]);
    ok(&["populate", &file, "vm1", "--gpfn", "0", "--pages", "16"]);
    ok(&["create", &file, "--name", "vm2", "--quota", "1M"]);
    let clean = nvirt(&["check", &file]);
    assert_eq!(clean.status, 0, "{}", clean.stderr);
    assert!(
        clean.stdout.ends_with("recovery: ok\ncheck: ok\n"),
        "{}",
        clean.stdout
    );
    // Damage the first owner record's payload (vm1's create, in the group
    // after the first open's 64-byte epoch record) and pool superblock
    // copy 1.
    let mut bytes = std::fs::read(&file).unwrap();
    let (pmem, mut work) = open(&file, 0);
    let (_, report) = NvPool::recover(pmem, &mut work).unwrap();
    let area = 0x2000 + report.log.layout.record_area().start as usize;
    bytes[area + 64 + 40] ^= 1;
    bytes[0x1010] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let out = nvirt(&["check", &file]);
    assert_eq!(out.status, 2, "{}", out.stdout);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[1].starts_with("damaged offset=0x1000 len=64: pool superblock copy 1"),
        "{}",
        out.stdout
    );
    assert!(
        lines[2].starts_with(&format!("damaged offset={:#x} ", area + 64)),
        "{}",
        out.stdout
    );
    assert!(lines[2].contains("lost records: seq 2"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("add to domain slot=0 extents: gpfn=0x0"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("create domain slot=1"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("recovery: refused: "), "{}", out.stdout);
    assert!(
        out.stdout.ends_with("check: 2 damaged ranges\n"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("2 damaged ranges"), "{}", out.stderr);
    // Read-only.
    assert!(std::fs::read(&file).unwrap() == bytes);
}
