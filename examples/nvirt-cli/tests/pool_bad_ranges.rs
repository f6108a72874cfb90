//! `--bad-range` on `nvirt pool format / populate / inspect / check`: bad
//! frames never handed out, owners listed, metadata in one refused, bad
//! arguments refused, inspect and check never writing.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::path::PathBuf;
mod common;

use common::{pool as nvirt, pool_ok as ok};

fn path(name: &str) -> String {
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("pool-bad-{name}"))
        .to_str()
        .unwrap()
        .to_owned();
    let _ = std::fs::remove_file(&file);
    file
}

/// Every `(mfn, frames)` the extents of `inspect`'s output cover.
fn extents(inspect: &str) -> Vec<(u64, u64)> {
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    inspect
        .lines()
        .filter_map(|l| l.strip_prefix("  extent "))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let mfn = hex(f[1].strip_prefix("mfn=").unwrap());
            let order: u32 = f[2].strip_prefix("order=").unwrap().parse().unwrap();
            (mfn, 1u64 << order)
        })
        .collect()
}

/// The pool of a 4 MiB region starts its data frames here.
fn data_start() -> u64 {
    nvirt_nvpool::metadata_bytes(4 << 20)
}

#[test]
fn a_pool_never_hands_out_bad_frames_given_at_format_and_every_open() {
    let file = path("format.img");
    let d = data_start();
    let range = format!("{:#x}-{:#x}", d + 0x3000, d + 0x5000);
    let single = format!("{}-{}", d + 0x10_0000, d + 0x10_0001);
    let out = ok(&[
        "format",
        &file,
        "--size",
        "4M",
        "--bad-range",
        &range,
        "--bad-range",
        &single,
    ]);
    assert!(out.ends_with("\nbad-frames: kept-out=3\n"), "{out}");
    let bad = [&range, &single];
    let with_bad = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        for r in bad {
            all.extend(["--bad-range", r.as_str()]);
        }
        ok(&all)
    };
    with_bad(&["create", &file, "--name", "vm", "--quota", "8M"]);
    let inspect = with_bad(&["inspect", &file]);
    let free: u64 = inspect
        .split("free-frames=")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    let data: u64 = (4 << 20) / 4096 - d / 4096;
    assert_eq!(free, data - 3, "{inspect}");
    let pages = free.to_string();
    with_bad(&["populate", &file, "vm", "--gpfn", "0", "--pages", &pages]);
    let inspect = with_bad(&["inspect", &file]);
    let bad_mfns = [d / 4096 + 3, d / 4096 + 4, d / 4096 + 0x100];
    for (mfn, frames) in extents(&inspect) {
        assert!(
            bad_mfns.iter().all(|b| !(mfn..mfn + frames).contains(b)),
            "{inspect}"
        );
    }
    assert!(
        inspect.contains(&format!(
            "\nbad-frames: kept-out=3 owned=0\nbad-range offset={:#x} len=8192 mfn={:#x} frames=2\nbad-range offset={:#x} len=4096 mfn={:#x} frames=1\ncheck: ok\n",
            d + 0x3000,
            bad_mfns[0],
            d + 0x10_0000,
            bad_mfns[2]
        )),
        "{inspect}"
    );
    let check = nvirt(&[
        "check",
        &file,
        "--bad-range",
        &range,
        "--bad-range",
        &single,
    ]);
    assert_eq!(check.status, 0, "{}{}", check.stdout, check.stderr);
    assert!(
        check.stdout.ends_with("recovery: ok\ncheck: ok\n"),
        "{}",
        check.stdout
    );
}

#[test]
fn owners_of_bad_frames_are_listed_and_check_fails() {
    let file = path("owned.img");
    ok(&["format", &file, "--size", "4M"]);
    ok(&[
        "create", &file, "--name", "vm1", "--quota", "1M", "--id", "0x1",
    ]);
    ok(&["populate", &file, "vm1", "--gpfn", "0x100", "--pages", "16"]);
    let inspect = ok(&["inspect", &file]);
    let (mfn, frames) = extents(&inspect)[0];
    assert_eq!(frames, 16, "{inspect}");
    // Two bytes of the extent's sixth frame, in decimal.
    let at = (mfn + 5) * 4096 + 100;
    let range = format!("{at}-{}", at + 2);
    let before = std::fs::read(&file).unwrap();
    let owned = format!(
        "  owned domain slot=0 id=00000000-0000-0000-0000-000000000001 gpfn=0x105 mfn={:#x} frames=1 extent-gpfn=0x100 extent-mfn={mfn:#x} order=4\n",
        mfn + 5
    );
    let out = ok(&["inspect", &file, "--bad-range", &range]);
    assert!(out.contains("bad-frames: kept-out=0 owned=1\n"), "{out}");
    assert!(out.contains(&owned), "{out}");
    assert!(out.ends_with("check: ok\n"), "{out}");
    let out = nvirt(&["check", &file, "--bad-range", &range]);
    assert_eq!(out.status, 2, "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!(
            "bad-range offset={:#x} len=4096 mfn={:#x} frames=1\n{owned}recovery: ok\ncheck: 1 damaged ranges\n",
            (mfn + 5) * 4096,
            mfn + 5
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("domains own known-bad frames"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(&file).unwrap(), before, "inspect/check wrote");
    // The owner frees it: it never comes back.
    ok(&["destroy", &file, "vm1", "--bad-range", &range]);
    let out = ok(&["inspect", &file, "--bad-range", &range]);
    assert!(out.contains("bad-frames: kept-out=1 owned=0\n"), "{out}");
}

#[test]
fn bad_ranges_on_metadata_or_past_the_image_are_refused() {
    let file = path("meta.img");
    ok(&["format", &file, "--size", "4M", "--offset", "64K"]);
    let before = std::fs::read(&file).unwrap();
    // The log starts 0x2000 into the pool.
    let out = nvirt(&[
        "check",
        &file,
        "--offset",
        "64K",
        "--bad-range",
        "0x12000-0x12001",
    ]);
    assert_eq!(out.status, 2, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("damaged offset=0x12000 len=1: known-bad range on the log at 0x2000\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("recovery: refused: bad range 0x2000-0x2001 lies on the log"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.ends_with("check: 1 damaged ranges\n"),
        "{}",
        out.stdout
    );
    let out = nvirt(&[
        "inspect",
        &file,
        "--offset",
        "64K",
        "--bad-range",
        "0x10010-0x10020",
    ]);
    assert_eq!(out.status, 2);
    assert!(
        out.stderr.contains("lies on pool superblock copy 0 at 0x0"),
        "{}",
        out.stderr
    );
    // Before the pool: none of its business.
    ok(&[
        "inspect",
        &file,
        "--offset",
        "64K",
        "--bad-range",
        "0-0x10000",
    ]);
    let out = nvirt(&[
        "inspect",
        &file,
        "--offset",
        "64K",
        "--bad-range",
        "0x500000-0x500001",
    ]);
    assert_eq!(out.status, 2);
    assert!(
        out.stderr.contains("ends past the region"),
        "{}",
        out.stderr
    );
    for bad in ["5-5", "9-8", "0x10", "x-y"] {
        let out = nvirt(&["inspect", &file, "--offset", "64K", "--bad-range", bad]);
        assert_eq!(out.status, 2, "{bad}");
        assert!(out.stdout.is_empty(), "{bad}: {}", out.stdout);
        assert!(out.stderr.contains("bad range"), "{bad}: {}", out.stderr);
    }
    let out = nvirt(&[
        "populate",
        &file,
        "--offset",
        "64K",
        "x",
        "--gpfn",
        "0",
        "--pages",
        "1",
        "--bad-range",
        "0x10000-0x10001",
    ]);
    assert_eq!(out.status, 2);
    assert!(out.stderr.contains("superblock copy 0"), "{}", out.stderr);
    assert_eq!(std::fs::read(&file).unwrap(), before);
    // Format refuses before writing anything.
    let out = nvirt(&[
        "format",
        &file,
        "--offset",
        "64K",
        "--bad-range",
        "0x11000-0x11001",
    ]);
    assert_eq!(out.status, 2);
    assert!(out.stderr.contains("superblock copy 1"), "{}", out.stderr);
    assert_eq!(std::fs::read(&file).unwrap(), before);
    let out = nvirt(&[
        "format",
        &file,
        "--offset",
        "64K",
        "--bad-range",
        "0x410000-0x410001",
    ]);
    assert_eq!(out.status, 2);
    assert!(out.stderr.contains("ends past the image"), "{}", out.stderr);
    assert_eq!(std::fs::read(&file).unwrap(), before);
    // A pool that stops short of the file's end: what follows is not its
    // business.
    let out = ok(&[
        "format",
        &file,
        "--offset",
        "64K",
        "--size",
        "2M",
        "--bad-range",
        "0x300000-0x400000",
    ]);
    assert!(out.ends_with("bad-frames: kept-out=0\n"), "{out}");
}
