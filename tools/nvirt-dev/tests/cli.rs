//! `cargo nvirt …` as a developer runs it: the user's subcommands forwarded
//! unchanged, and the test runner's step list and selection.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn nvirt_dev(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nvirt-dev"))
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
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

#[test]
fn user_subcommands_are_forwarded_unchanged() {
    let out = nvirt_dev(&["e820", "sanitize"], "0 9fbff 1\n0x9fc00 0xfffff 2\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "[mem 0x0000000000000000-0x000000000009fbff] usable\n\
         [mem 0x000000000009fc00-0x00000000000fffff] reserved\n"
    );
    // Bad input: the user tool's message, exit status 2, nothing on stdout.
    let out = nvirt_dev(&["e820", "sanitize"], "0 10 1 junk\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).starts_with("nvirt: "),
        "{}",
        text(&out.stderr)
    );
    let out = nvirt_dev(&["ept", "plan", "--help"], "");
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("Usage: nvirt ept plan"));
}

#[test]
fn the_step_list_is_what_the_patterns_select() {
    let out = nvirt_dev(&["test", "--list"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let names: Vec<&str> = text(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    for want in [
        "fmt",
        "clippy",
        "doc",
        "tests",
        "doctests",
        "emulator/crash-loop",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    for prefix in ["no-std/", "emulator/", "loom/", "miri/", "fuzz/"] {
        assert!(names.iter().any(|n| n.starts_with(prefix)), "{prefix}");
    }
    for line in text(&out.stdout).lines() {
        let kind = line.split_whitespace().nth(1).unwrap();
        assert!(kind == "check" || kind == "tests", "{line}");
    }

    let out = nvirt_dev(
        &[
            "test",
            "--list",
            "--only",
            "emulator",
            "--skip",
            "emulator/bochs-*",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert!(
        listed
            .lines()
            .all(|l| l.starts_with("emulator/") && !l.contains("bochs"))
    );
    assert!(listed.contains("emulator/crash-loop"));

    let out = nvirt_dev(&["test", "--list", "--no-fuzz", "--no-emulators"], "");
    assert!(out.status.success());
    assert!(
        !text(&out.stdout)
            .lines()
            .any(|l| l.starts_with("fuzz/") || l.starts_with("emulator/"))
    );
}

#[test]
fn a_pattern_selecting_no_step_is_refused() {
    for args in [
        &["test", "--only", "no-such-step"][..],
        &["test", "--skip", "fuzz/no_such_target"][..],
        &["test", "--list", "--only", "fmt", "--skip", "fmt"][..],
    ] {
        let out = nvirt_dev(args, "");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(text(&out.stderr).starts_with("nvirt: "), "{args:?}");
    }
}

#[test]
fn run_with_a_bad_vm_file_names_file_and_line_and_launches_nothing() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("run-vm-errors");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.cfg");
    std::fs::write(&good, "name = \"good\"\nmemory = 16\n").unwrap();
    let bad = dir.join("bad.cfg");
    std::fs::write(&bad, "name = \"bad\"\nmemory = 16\nnvram = 5\n").unwrap();
    let (good, bad) = (good.to_str().unwrap(), bad.to_str().unwrap());
    let out = nvirt_dev(&["run", "--no-lint", "--vm", good, "--vm", bad], "");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        format!("nvirt: {bad}:3: nvram of 5 MiB is not a multiple of 2 MiB\n"),
        "refused before any build (nothing else printed)"
    );
    // The same name twice: refused as a set.
    let out = nvirt_dev(&["run", "--vm", good, "--vm", good], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is also the name of"),
        "{}",
        text(&out.stderr)
    );
    // Sizes come from the files.
    let out = nvirt_dev(&["run", "--vm", good, "--ram", "64M"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--vm takes"),
        "{}",
        text(&out.stderr)
    );
}
