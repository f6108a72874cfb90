//! Crash-state enumeration of `/init`'s records on `/dev/pmem0`, on the
//! host: the record part of the script (everything after its `# ---- records:`
//! line) runs under the host's `sh` over a small file standing in for the
//! device, with `dd` wrapped to snapshot the file after every write. Every
//! state a kill could leave — after each write, and each write torn at
//! byte offsets inside its block — must then boot: verify exactly the
//! records announced committed before it, and PASS.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::initramfs::INIT;
use super::markers::{self, Marker};

const BLOCK: usize = 4096;
/// 16 blocks: two header slots and room for 14 records.
const DEVICE: usize = 16 * BLOCK;
/// Where a torn write stops inside its 4 KiB block: early and late in its
/// line (header and record lines are 60–80 bytes), mid-block (the line
/// whole, a record's body not).
const TORN_AT: [usize; 3] = [1, 40, 2048];

/// The host stand-ins for what the record part takes from the top of
/// `/init`, and the `dd` wrapper that snapshots the device after a write.
const HARNESS: &str = r#"
dev=$1 tmp=$2 log=$3 sectors=$4 mode=boot
touch "$log"
say() { echo "nvirt-linux: $*"; echo "S $*" >> "$log"; }
fail() { say "FAIL $*"; exit 1; }
halt_now() { exit 0; }
dd() {
	case " $* " in
	*" of=$dev "*)
		command dd "$@" || return
		nvirt_w=$(grep -c "^W" "$log")
		cp "$dev" "$tmp/snap.$nvirt_w"
		echo "W $nvirt_w" >> "$log"
		;;
	*) command dd "$@" ;;
	esac
}
"#;

struct Harness {
    dir: PathBuf,
    script: PathBuf,
}

impl Harness {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("nvirt-init-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("tmp")).unwrap();
        let at = INIT
            .find("# ---- records:")
            .expect("the records marker in /init");
        let script = dir.join("records.sh");
        fs::write(&script, format!("{HARNESS}\n{}", &INIT[at..])).unwrap();
        Self { dir, script }
    }

    /// One boot-mode run over `image`; its output and whether it exited 0.
    fn boot(&self, image: &[u8], log: &str) -> (String, bool, Vec<u8>) {
        let dev = self.dir.join("dev");
        fs::write(&dev, image).unwrap();
        let out = Command::new("sh")
            .arg(&self.script)
            .arg(&dev)
            .arg(self.dir.join("tmp"))
            .arg(self.dir.join(log))
            .arg((DEVICE / 512).to_string())
            .output()
            .expect("sh");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.status.success(),
            fs::read(&dev).unwrap(),
        )
    }

    fn snapshot(&self, n: usize) -> Vec<u8> {
        fs::read(self.dir.join("tmp").join(format!("snap.{n}"))).unwrap()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The records verified and the boot counter of a boot's output.
fn verified(out: &str) -> Option<(u64, u64)> {
    out.lines().find_map(|l| match markers::parse(l) {
        Some(Marker::Verified { boot, records }) => Some((boot, records)),
        _ => None,
    })
}

fn passed(out: &str) -> bool {
    out.lines().any(|l| markers::parse(l) == Some(Marker::Pass))
        && !out.lines().any(markers::is_failure)
}

/// Each write's image after it, and the records announced committed
/// while that image was the device's (before the next write began).
fn writes_of(h: &Harness, log: &Path) -> (Vec<Vec<u8>>, Vec<u64>) {
    let text = fs::read_to_string(log).unwrap();
    let mut images = vec![vec![0u8; DEVICE]];
    let mut announced = vec![0u64];
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("W ") {
            images.push(h.snapshot(n.parse().unwrap()));
            announced.push(*announced.last().unwrap());
        } else if let Some(Marker::Committed(n)) = line
            .strip_prefix("S ")
            .and_then(|s| markers::parse(&format!("nvirt-linux: {s}")))
        {
            *announced.last_mut().unwrap() = n;
        }
    }
    (images, announced)
}

#[test]
fn every_state_a_kill_can_leave_boots_with_every_announced_record() {
    let h = Harness::new("crash");
    let log = h.dir.join("log");
    let mut image = vec![0u8; DEVICE];
    for boot in 1..=3u64 {
        let (out, ok, after) = h.boot(&image, "log");
        assert!(ok && passed(&out), "boot {boot}:\n{out}");
        assert_eq!(verified(&out), Some((boot, boot - 1)), "{out}");
        image = after;
    }
    let (images, announced) = writes_of(&h, &log);
    // Per boot: the boot counter's header, the record, the header counting it.
    assert_eq!(images.len(), 1 + 3 * 3);
    let mut states = 0;
    for w in 0..images.len() {
        let now = announced[w];
        let mut cases = vec![(images[w].clone(), now..=now, format!("after write {w}"))];
        if w > 0 {
            let (old, new) = (&images[w - 1], &images[w]);
            let first = (0..DEVICE)
                .find(|&i| old[i] != new[i])
                .expect("a write changes its block");
            let block = first / BLOCK * BLOCK;
            assert!(
                new[block + BLOCK..] == old[block + BLOCK..],
                "one block per write"
            );
            for m in TORN_AT {
                let mut torn = old.clone();
                torn[block..block + m].copy_from_slice(&new[block..block + m]);
                // Torn past its line, a header is whole: it counts what
                // was announced right after it.
                let range = announced[w - 1]..=now;
                cases.push((torn, range, format!("write {w} torn at byte {m}")));
            }
        }
        for (state, committed, what) in cases {
            let (out, ok, _) = h.boot(&state, "check-log");
            let (_, records) =
                verified(&out).unwrap_or_else(|| panic!("{what}: no boot line\n{out}"));
            assert!(ok && passed(&out), "{what}:\n{out}");
            // Announced means durable; nothing past the count is taken.
            assert!(
                committed.contains(&records),
                "{what}: {records} records, want {committed:?}\n{out}"
            );
            states += 1;
        }
    }
    assert_eq!(states, 10 + 9 * TORN_AT.len());
}

#[test]
fn a_damaged_record_or_both_headers_fail_the_boot() {
    let h = Harness::new("damage");
    let mut image = vec![0u8; DEVICE];
    for _ in 0..2 {
        let (out, ok, after) = h.boot(&image, "log");
        assert!(ok && passed(&out), "{out}");
        image = after;
    }
    // Record 1's body (block 2, past its line), record 2's line.
    for at in [2 * BLOCK + 1000, 3 * BLOCK + 7] {
        let mut bad = image.clone();
        bad[at] ^= 0x20;
        let (out, ok, _) = h.boot(&bad, "bad-log");
        assert!(
            !ok && out.contains("nvirt-linux: FAIL record"),
            "byte {at}:\n{out}"
        );
    }
    let mut bad = image.clone();
    bad[5] ^= 1;
    bad[BLOCK + 5] ^= 1;
    let (out, ok, _) = h.boot(&bad, "bad-log");
    assert!(
        !ok && out.contains("FAIL both header slots damaged"),
        "{out}"
    );
    // Two boots wrote headers 1 to 4; 4 (slot 0) counts both records.
    // Without it, header 3 (slot 1) counts one: record 2 is past the count.
    assert!(String::from_utf8_lossy(&image[..64]).starts_with("nvxhdr seq=4 boot=2 count=2"));
    let mut one = image.clone();
    one[20] ^= 1;
    let (out, ok, _) = h.boot(&one, "one-log");
    assert!(ok && passed(&out), "{out}");
    assert_eq!(verified(&out), Some((3, 1)), "{out}");
}
