//! The `nvirt e820 …` commands as a user runs them: exact output formats,
//! exit statuses, nothing on stdout when the input is refused.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn nvirt(args: &[&str], stdin: impl AsRef<[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nvirt"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_ref())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> &str {
    std::str::from_utf8(&out.stdout).unwrap()
}

#[test]
fn sanitize_prints_exactly_linux_lines() {
    let input = "\
[    0.000000] BIOS-e820: [mem 0x0000000000100000-0x000000007fffffff] usable
0 9fbff 1
0x9fc00 0xfffff 2
reserve setup_data: [mem 0x0000000050000000-0x000000005fffffff] ACPI data
user: [mem 0x0000000100000000-0x000000013fffffff] persistent (type 12)
140000000 17fffffff 12
180000000 1bfffffff 7
1c0000000 1ffffffff 90
200000000 2000fffff 4
200100000 2001fffff 5
200200000 2002fffff 6
efff0000 efffffff 4026531839
[mem 0x0000000300000000-0x00000002ffffffff] usable

# a comment
";
    let out = nvirt(&["e820", "sanitize"], input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout(&out),
        "\
[mem 0x0000000000000000-0x000000000009fbff] usable
[mem 0x000000000009fc00-0x00000000000fffff] reserved
[mem 0x0000000000100000-0x000000004fffffff] usable
[mem 0x0000000050000000-0x000000005fffffff] ACPI data
[mem 0x0000000060000000-0x000000007fffffff] usable
[mem 0x00000000efff0000-0x00000000efffffff] soft reserved
[mem 0x0000000100000000-0x000000013fffffff] persistent (type 12)
[mem 0x0000000140000000-0x000000017fffffff] persistent (type 12)
[mem 0x0000000180000000-0x00000001bfffffff] persistent (type 7)
[mem 0x00000001c0000000-0x00000001ffffffff] type 90
[mem 0x0000000200000000-0x00000002000fffff] ACPI NVS
[mem 0x0000000200100000-0x00000002001fffff] unusable
[mem 0x0000000200200000-0x00000002002fffff] type 6
"
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn sanitize_reads_files_and_dash() {
    let dir = std::env::temp_dir().join(format!("nvirt-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("map.txt");
    std::fs::write(&file, "0 fff 1\n1000 1fff 1\n").unwrap();
    let out = nvirt(&["e820", "sanitize", file.to_str().unwrap()], "");
    assert_eq!(
        stdout(&out),
        "[mem 0x0000000000000000-0x0000000000001fff] usable\n"
    );
    let out = nvirt(&["e820", "sanitize", "-"], "0 fff 1\n");
    assert_eq!(
        stdout(&out),
        "[mem 0x0000000000000000-0x0000000000000fff] usable\n"
    );
    let out = nvirt(
        &["e820", "sanitize", dir.join("missing").to_str().unwrap()],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_prints_nothing_on_stdout_and_exits_2() {
    for (input, why) in [
        (&b"0 fff 1\nnonsense\n"[..], "<stdin>:2:"),
        (b"[mem 0x1000-0x0ffe] usable\n", "before its start"),
        (b"0 ffffffffffffffff 1\n", "2^64"),
        (b"[mem 0x0-0xfff] bogus\n", "unknown memory kind"),
        (b"0 fff 1 extra\n", "after the entry"),
        (b"0 fff 1\n\xff\n", "UTF-8"),
    ] {
        let out = nvirt(&["e820", "sanitize"], input);
        assert_eq!(out.status.code(), Some(2), "{input:?}");
        assert!(out.stdout.is_empty(), "{input:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{input:?}: {err}");
    }
}

#[test]
fn holds_3200_entries_and_refuses_3201() {
    let map = |n: u64| {
        (0..n)
            .map(|i| format!("{:x} {:x} {}\n", i * 0x2000, i * 0x2000 + 0xfff, 1 + i % 2))
            .collect::<String>()
    };
    let out = nvirt(&["e820", "sanitize"], map(3200));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out).lines().count(), 3200);
    let out = nvirt(&["e820", "sanitize"], map(3201));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("3200"));
    // Overlapping entries that sanitize into more than 3200 are refused too.
    let mut nested = String::from("0 fffffff 1\n");
    for i in 0..1700u64 {
        nested.push_str(&format!(
            "{:x} {:x} 2\n",
            0x1000 + i * 0x2000,
            0x1fff + i * 0x2000
        ));
    }
    let out = nvirt(&["e820", "sanitize"], &nested);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn synth_prints_a_guest_map() {
    let out = nvirt(&["e820", "synth", "--ram", "512M", "--nvram", "256M"], "");
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        "\
[mem 0x0000000000000000-0x000000000009fbff] usable
[mem 0x000000000009fc00-0x00000000000fffff] reserved
[mem 0x0000000000100000-0x000000001fffffff] usable
[mem 0x0000000100000000-0x000000010fffffff] persistent (type 7)
"
    );
    let out = nvirt(
        &[
            "e820",
            "synth",
            "--ram",
            "6G",
            "--nvram",
            "2G",
            "--nv-type",
            "12",
            "--pci-hole",
            "0xc0000000",
        ],
        "",
    );
    assert_eq!(
        stdout(&out),
        "\
[mem 0x0000000000000000-0x000000000009fbff] usable
[mem 0x000000000009fc00-0x00000000000fffff] reserved
[mem 0x0000000000100000-0x00000000bfffffff] usable
[mem 0x0000000100000000-0x00000001bfffffff] usable
[mem 0x00000001c0000000-0x000000023fffffff] persistent (type 12)
"
    );
    // The synthesized map is a fixed point of sanitize.
    let again = nvirt(&["e820", "sanitize"], stdout(&out));
    assert_eq!(stdout(&again), stdout(&out));
    for bad in [
        &["e820", "synth", "--ram", "512K", "--nvram", "0"][..],
        &[
            "e820",
            "synth",
            "--ram",
            "1G",
            "--nvram",
            "1G",
            "--nv-type",
            "8",
        ],
        &["e820", "synth", "--ram", "1G+", "--nvram", "0"],
        &[
            "e820",
            "synth",
            "--ram",
            "1G",
            "--nvram",
            "0",
            "--pci-hole",
            "5G",
        ],
    ] {
        let out = nvirt(bad, "");
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn nfit_prints_persistent_memory_ranges() {
    let dump = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../e820/tests/data/nfit/qemu-nvdimm-one-region-iasl.txt"
    ))
    .unwrap();
    let bytes: Vec<u8> = dump
        .lines()
        .skip_while(|l| !l.starts_with("Raw Table Data"))
        .filter_map(|l| l.trim().split_once(": "))
        .filter(|(offset, _)| u32::from_str_radix(offset, 16).is_ok())
        .map(|(_, rest)| rest.split("//").next().unwrap().to_owned())
        .flat_map(|hex| {
            hex.split_whitespace()
                .map(|b| u8::from_str_radix(b, 16).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    let path = std::env::temp_dir().join(format!("nvirt-nfit-{}.bin", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let out = nvirt(&["e820", "nfit", path.to_str().unwrap()], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout(&out),
        "[mem 0x00000001c0000000-0x0000000437ffffff] persistent (type 7)\n"
    );
    let out = nvirt(&["e820", "nfit", "--all", path.to_str().unwrap()], "");
    assert_eq!(
        stdout(&out),
        "[mem 0x00000001c0000000-0x0000000437ffffff] Persistent index=2 flags=0x3 proximity=0 attributes=0x8008\n"
    );
    let mut bad = bytes.clone();
    bad[100] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    let out = nvirt(&["e820", "nfit", path.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum"));
    std::fs::remove_file(&path).unwrap();
}
