//! `nvirt vm check` as a user runs it: one line per VM on success (exit 0),
//! every error with its file and line on stderr and nothing on stdout
//! (exit 2), the files checked as a set, paths relative to each file.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{Output, run};
use std::ffi::OsStr;

use std::fs;
use std::path::{Path, PathBuf};

fn check(files: &[&Path]) -> Output {
    run(["vm", "check"]
        .map(OsStr::new)
        .into_iter()
        .chain(files.iter().map(|f| f.as_os_str())))
}

/// A fresh directory for one test.
fn dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("vm-cli-{test}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_example_vms_check_as_a_set() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("vms");
    let files: Vec<PathBuf> = ["a.cfg", "b.cfg", "c.cfg"]
        .iter()
        .map(|f| root.join(f))
        .collect();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = check(&refs);
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert_eq!(out.stderr, "");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3);
    let a = format!(
        "{}: name=a id=1a16013c-7fa1-88ac-8448-d28f9b02be1c memory=32M nvram=16M nvram_type=7 \
         nvram_target=16M nvram_populate=eager nvram_file={:?} kernel=- ramdisk=- cmdline=- \
         on_poweroff=preserve",
        files[0].display(),
        root.join("a-nvram.img").display().to_string()
    );
    assert_eq!(lines[0], a);
    assert!(lines[1].contains(" nvram_type=12 ") && lines[1].contains(" nvram_populate=touch "));
    assert!(lines[2].contains(" nvram_type=90 ") && lines[2].contains(" nvram_target=8M "));
}

#[test]
fn one_line_per_vm_in_a_stable_format() {
    let d = dir("format");
    let a = write(
        &d,
        "sub/l.cfg",
        "name = \"linux-1\"\nuuid = \"01234567-89AB-cdef-0011-223344556677\"\nmemory = 0x100\n\
         nvram = 64; nvram_type = 12; nvram_target = 32\nnvram_populate = \"touch\"\n\
         nvram_file = \"/var/lib/nvirt/l.img\"\nkernel = \"bzImage\"\nramdisk = 'initrd'\n\
         cmdline = 'console=ttyS0 \"quoted\"'\non_poweroff = \"destroy\"\n",
    );
    let out = check(&[&a]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let sub = d.join("sub");
    assert_eq!(
        out.stdout,
        format!(
            "{}: name=linux-1 id=01234567-89ab-cdef-0011-223344556677 memory=256M nvram=64M \
             nvram_type=12 nvram_target=32M nvram_populate=touch nvram_file=\"/var/lib/nvirt/l.img\" \
             kernel={:?} ramdisk={:?} cmdline=\"console=ttyS0 \\\"quoted\\\"\" on_poweroff=destroy\n",
            a.display(),
            sub.join("bzImage").display().to_string(),
            sub.join("initrd").display().to_string(),
        )
    );
}

#[test]
fn every_file_error_is_named_by_file_and_line() {
    let d = dir("errors");
    let a = write(&d, "a.cfg", "name = \"a\"\nmemory = 32\nvcpu = 2\n");
    let b = write(
        &d,
        "b.cfg",
        "name = \"b\"\nmemory = 32\n# again\nmemory = 64\n",
    );
    let c = write(&d, "c.cfg", "name = \"c\"\nmemory = 31\n");
    let e = write(
        &d,
        "e.cfg",
        "name = \"e\"\nmemory = 32\nnvram = 8\nnvram_target = 10\n",
    );
    let fine = write(&d, "fine.cfg", "name = \"fine\"\nmemory = 32\n");
    let out = check(&[&a, &fine, &b, &c, &e]);
    assert_eq!(out.status, 2);
    assert_eq!(out.stdout, "", "nothing on stdout when refused");
    assert_eq!(
        out.stderr,
        format!(
            "nvirt: {}:3: unknown key \"vcpu\"\n\
             nvirt: {}:4: duplicate key \"memory\" (first set on line 2)\n\
             nvirt: {}:2: memory of 31 MiB is not a multiple of 2 MiB\n\
             nvirt: {}:4: nvram_target of 10 MiB is above nvram of 8 MiB\n",
            a.display(),
            b.display(),
            c.display(),
            e.display()
        )
    );
}

#[test]
fn the_files_are_checked_as_a_set() {
    let d = dir("set");
    let a = write(
        &d,
        "a.cfg",
        "name = \"a\"\nmemory = 32\nnvram = 8\nnvram_file = \"a.img\"\n",
    );
    let a2 = write(&d, "x/a.cfg", "name = \"a\"\nmemory = 16\n");
    let out = check(&[&a, &a2]);
    assert_eq!((out.status, out.stdout.as_str()), (2, ""));
    assert_eq!(
        out.stderr,
        format!(
            "nvirt: {}: name \"a\" is also the name of {}\n",
            a2.display(),
            a.display()
        )
    );
    // The same nvram_file written two ways from two directories.
    let b = write(
        &d,
        "x/b.cfg",
        "name = \"b\"\nmemory = 16\nnvram = 4\nnvram_file = \"../a.img\"\n",
    );
    let out = check(&[&a, &b]);
    assert_eq!(out.status, 2);
    assert!(
        out.stderr.contains("is also the nvram_file of"),
        "{}",
        out.stderr
    );
    // A given uuid equal to another VM's name-derived id.
    let c = write(&d, "c.cfg", "name = \"c\"\nmemory = 16\n");
    let out = check(&[&c, &a2]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let c_id = out
        .stdout
        .split(" id=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    let d2 = write(
        &d,
        "d.cfg",
        &format!("name = \"d\"\nuuid = \"{c_id}\"\nmemory = 16\n"),
    );
    let out = check(&[&c, &d2]);
    assert_eq!(out.status, 2);
    assert!(
        out.stderr
            .contains(&format!("domain id {c_id} is also the id of")),
        "{}",
        out.stderr
    );
}

#[test]
fn unreadable_files_and_no_files() {
    let d = dir("missing");
    let out = check(&[&d.join("nope.cfg")]);
    assert_eq!((out.status, out.stdout.as_str()), (2, ""));
    assert!(
        out.stderr.starts_with("nvirt: ") && out.stderr.contains("nope.cfg"),
        "{}",
        out.stderr
    );
    let out = check(&[]);
    assert_eq!(out.status, 2, "clap refuses a check of nothing");
}
