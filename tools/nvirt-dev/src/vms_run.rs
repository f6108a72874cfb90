//! `nvirt test`'s multi-VM step (`emulator/qemu-vms`, `emulator/bochs-vms`):
//! the three VMs of `examples/vms/isolation/` on one hypervisor, on a
//! freshly formatted NVDIMM that holds only the writer's NVRAM, so that
//! every claim of the isolation test happens and shows in the console:
//!
//! - all three run interleaved (each gets several time slices);
//! - `writer` fills its NVRAM with a secret, powers off and is destroyed;
//! - `reader`'s thin NVRAM needs more than the pool has spare, so it gets
//!   frames that held the writer's secret (waiting, paused, if it touches
//!   them before the writer is destroyed), and reads zeros from all of
//!   them;
//! - `prober` touches guest-physical memory outside its map and is stopped
//!   there, alone.

use std::fs;
use std::path::{Path, PathBuf};

use crate::emulator::page_out::{self, Domain};
use crate::emulator::{self, Emulator, Outcome, Scenario};

/// The NVDIMM: the writer's 8 MiB of NVRAM and the pool's metadata, so the
/// reader's thin NVRAM has to wait for the writer's.
const NVDIMM: u64 = 10 << 20;
/// The VMs, in start order.
const VMS: [&str; 3] = ["writer", "reader", "prober"];

/// The scenario: the example VMs on `emulator`, the NVDIMM formatted.
fn scenario(root: &Path, emulator: Emulator) -> Result<Scenario, String> {
    let files: Vec<PathBuf> = VMS
        .iter()
        .map(|vm| root.join(format!("examples/vms/isolation/{vm}.cfg")))
        .collect();
    let vms = emulator::vms::load(&files)?;
    let mut s = Scenario::new(emulator);
    s.set_vms(vms, Some(NVDIMM))?;
    s.extra = "nvpool=format".to_owned();
    s.name = format!("{emulator}-{}-vms-isolation", s.cpu);
    Ok(s)
}

/// Runs the scenario and checks every claim in its console.
pub(crate) fn check(root: &Path, emulator: Emulator) -> Result<(), String> {
    let s = scenario(root, emulator)?;
    let outcome = emulator::run_scenario(root, &s, false)?;
    let verdict = claims(&outcome.console);
    match (outcome.passed, verdict) {
        (true, Ok(summary)) => {
            for line in summary {
                eprintln!("    {line}");
            }
            Ok(())
        }
        (_, verdict) => Err(failed(&outcome, verdict.err())),
    }
}

/// Shows the end of a failed run's console; the reasons it failed (the
/// emulator's outcome and `claims`), with its log's path.
fn failed(outcome: &Outcome, claims: Option<String>) -> String {
    for line in outcome.console.iter().rev().take(40).rev() {
        eprintln!("    {line}");
    }
    let mut why = Vec::new();
    if !outcome.passed {
        why.push(outcome.reason.clone());
    }
    why.extend(claims);
    format!(
        "{} (emulator log: {})",
        why.join("; "),
        outcome.log.display()
    )
}

/// `emulator/qemu-vms-balloon`: `examples/vms/balloon/`'s lender (8 MiB of
/// NVRAM, following its target) and hungry (thin 4 MiB) on an NVDIMM with
/// room for the lender alone. Hungry waits; the hypervisor lowers the
/// lender's target, whose balloon gives frames back; hungry reads zeros
/// and is destroyed; the target goes back up and the lender takes its
/// frames back.
pub(crate) fn check_balloon(root: &Path) -> Result<(), String> {
    let files: Vec<PathBuf> = ["lender", "hungry"]
        .iter()
        .map(|vm| root.join(format!("examples/vms/balloon/{vm}.cfg")))
        .collect();
    let mut s = Scenario::new(Emulator::Qemu);
    s.set_vms(emulator::vms::load(&files)?, Some(NVDIMM))?;
    s.extra = "nvpool=format".to_owned();
    s.name = "qemu-amd-vms-balloon".to_owned();
    let outcome = emulator::run_scenario(root, &s, false)?;
    let c = &outcome.console;
    let checks = || -> Result<(), String> {
        expect_prefix(c, "nvirt-hv: vm hungry: paused: ")?;
        expect_prefix(
            c,
            "nvirt-hv: vm lender: NVRAM target lowered from 8 MiB to ",
        )?;
        expect_prefix(c, "guest hungry: ok: all 4096 KiB of NVRAM read as zeros")?;
        expect_prefix(c, "nvirt-hv: vm lender: NVRAM target raised from ")?;
        expect_prefix(c, "guest lender: ok: follow: the NVRAM target went from ")?;
        expect_prefix(c, "nvirt-hv: vm hungry: ")
            .and_then(|()| expect_prefix(c, "nvirt-hv: vm lender: passed, "))
            .and_then(|()| expect_prefix(c, RAM_BACK))
    };
    match (outcome.passed, checks()) {
        (true, Ok(())) => Ok(()),
        (_, checked) => Err(failed(&outcome, checked.err())),
    }
}

/// The page-out scenario's NVDIMM: room for two VMs' 8 MiB of NVRAM.
const PAGE_OUT_NVDIMM: u64 = 18 << 20;

/// `keeper` keeps data in NVRAM and pages it out to a file at power-off;
/// `borrower` keeps its data in the pool (thin); `visitor` borrows what
/// keeper's page-out freed, must find it zeroed, and is destroyed.
const PAGE_OUT_VMS: [(&str, &str); 3] = [
    (
        "keeper",
        "memory = 16\nnvram = 8\nnvram_file = \"keeper-nvram.img\"\ncmdline = \"nvirt.vmtest=persist\"\n",
    ),
    (
        "borrower",
        "memory = 16\nnvram = 8\nnvram_type = 12\nnvram_populate = \"touch\"\ncmdline = \"nvirt.vmtest=persist\"\n",
    ),
    (
        "visitor",
        "memory = 16\nnvram = 8\nnvram_populate = \"touch\"\non_poweroff = \"destroy\"\ncmdline = \"nvirt.vmtest=secret-check\"\n",
    ),
];

/// `emulator/qemu-vms-page-out`: three boots on one NVDIMM with the page-out
/// and page-in of `nvirt run` between them (QEMU: its NVDIMM is a file).
///
/// 1. keeper and borrower write their data; keeper is paged out to its file
///    and its frames freed (the pool no longer lists it);
/// 2. visitor's thin NVRAM takes the frames keeper left and reads zeros;
/// 3. keeper is paged in and, with borrower, finds its data at the same
///    guest addresses.
pub(crate) fn check_page_out(root: &Path) -> Result<(), String> {
    let name = "qemu-amd-vms-page-out";
    let probe = Scenario::new(Emulator::Qemu);
    let dir = probe.run_dir(root).with_file_name(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for (vm, body) in PAGE_OUT_VMS {
        let path = dir.join(format!("{vm}.cfg"));
        fs::write(&path, format!("name = \"{vm}\"\n{body}"))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        files.push(path);
    }
    let image = dir.join("pmem.img");
    let kept = dir.join("keeper-nvram.img");
    let boot = |which: &[usize], format: bool| -> Result<Vec<String>, String> {
        let chosen: Vec<PathBuf> = which.iter().map(|&i| files[i].clone()).collect();
        let vms = emulator::vms::load(&chosen)?;
        let mut s = Scenario::new(Emulator::Qemu);
        s.set_vms(vms, Some(PAGE_OUT_NVDIMM))?;
        s.name = name.to_owned();
        if format {
            s.extra = "nvpool=format".to_owned();
        } else {
            for line in page_out::page_in(&image, &s.vms)? {
                eprintln!("    page-in: {line}");
            }
        }
        let outcome = emulator::run_scenario(root, &s, false)?;
        if !outcome.passed {
            let vms: Vec<&str> = which.iter().map(|&i| PAGE_OUT_VMS[i].0).collect();
            return Err(format!("boot of {vms:?}: {}", failed(&outcome, None)));
        }
        for line in page_out::page_out(&image, &s.vms)? {
            eprintln!("    page-out: {line}");
        }
        Ok(outcome.console)
    };
    let pool = |when: &str| -> Result<Vec<Domain>, String> {
        let text = crate::crash_loop::pool_inspect(&image)?;
        let d = page_out::domains(&text);
        eprintln!(
            "    pool {when}: {}",
            d.iter()
                .map(|d| format!("{} {} ({} frames)", d.name, d.state, d.frames))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(d)
    };

    let first = boot(&[0, 1], true)?;
    expect(&first, "guest keeper: persist: boot=first pages=2048")?;
    expect(&first, "guest borrower: persist: boot=first pages=2048")?;
    if !kept.exists() {
        return Err(format!("keeper was not paged out to {}", kept.display()));
    }
    let after = pool("after keeper's page-out")?;
    if after.iter().any(|d| d.name == "keeper") || !after.iter().any(|d| d.name == "borrower") {
        return Err("after the page-out the pool should hold borrower and not keeper".into());
    }

    let second = boot(&[2], false)?;
    expect_prefix(
        &second,
        "guest visitor: ok: all 8192 KiB of NVRAM read as zeros",
    )?;
    expect_prefix(
        &second,
        "nvirt-hv: vm visitor: nvpool: domain \"visitor\" destroyed",
    )?;
    pool("after visitor")?;

    let third = boot(&[0, 1], false)?;
    expect_prefix(
        &third,
        "nvirt-hv: vm keeper: nvpool: domain \"keeper\" (id ",
    )?;
    expect(
        &third,
        "guest keeper: persist: boot=later pages=2048 wrong=0",
    )?;
    expect(
        &third,
        "guest borrower: persist: boot=later pages=2048 wrong=0",
    )?;
    pool("after the last boot")?;
    eprintln!(
        "    keeper's NVRAM went to {} at power-off, its frames to visitor (zeros), and came back at the same guest addresses",
        kept.display()
    );
    Ok(())
}

fn expect(console: &[String], line: &str) -> Result<(), String> {
    if console.iter().any(|l| l == line) {
        eprintln!("    {line}");
        Ok(())
    } else {
        Err(format!("not shown: {line:?}"))
    }
}

fn expect_prefix(console: &[String], prefix: &str) -> Result<(), String> {
    match console.iter().find(|l| l.starts_with(prefix)) {
        Some(l) => {
            eprintln!("    {l}");
            Ok(())
        }
        None => Err(format!("not shown: a line starting {prefix:?}")),
    }
}

/// Checks the console against the scenario's claims; the lines that show
/// them, or every claim that failed.
fn claims(console: &[String]) -> Result<Vec<String>, String> {
    let mut shown = Vec::new();
    let mut failed = Vec::new();
    let mut need = |what: &str, found: Option<&String>| match found {
        Some(line) => shown.push(line.clone()),
        None => failed.push(what.to_owned()),
    };
    let find = |pred: &dyn Fn(&str) -> bool| console.iter().find(|l| pred(l));
    for vm in VMS {
        let prefix = format!("nvirt-hv: vm {vm}: passed, ");
        let line = find(&|l| l.starts_with(&prefix));
        let slices = line.and_then(|l| slices_of(l));
        need(
            &format!("{vm} passed with several time slices"),
            line.filter(|_| slices.is_some_and(|n| n >= 2)),
        );
        let prefix = format!("nvirt-hv: vm {vm}: gave back to the heap: ");
        need(
            &format!("{vm}'s RAM given back when it ended"),
            find(&|l| l.starts_with(&prefix)),
        );
    }
    need(
        "every frame the VMs took back in the volatile heap",
        find(&|l| l.starts_with(RAM_BACK)),
    );
    need(
        "writer wrote its secret",
        find(&|l| l.starts_with("guest writer: ok: secret written over all")),
    );
    need(
        "writer's domain destroyed",
        find(&|l| l.starts_with("nvirt-hv: vm writer: nvpool: domain \"writer\" destroyed")),
    );
    need(
        "reader read zeros from all its NVRAM",
        find(&|l| {
            l.starts_with("guest reader: ok: all ")
                && l.contains("read as zeros")
                && l.contains("(0 words not zero")
        }),
    );
    need(
        "reader's first touches served",
        find(&|l| l.starts_with("nvirt-hv: vm reader: ") && l.contains(" first-touch faults ")),
    );
    need(
        "reader got frames the destroyed writer held",
        find(&|l| l.starts_with("nvirt-hv: vm reader: ") && l.contains("was a destroyed domain's")),
    );
    need(
        "prober stopped at its probe",
        find(&|l| l.starts_with("nvirt-hv: vm prober: stopped at its announced probe")),
    );
    // Whether the reader has to wait for the writer's frames depends on
    // how far each got in its slices (the balloon step's pause is
    // certain); shown when it happened.
    shown.extend(
        console
            .iter()
            .filter(|l| {
                l.starts_with("nvirt-hv: vm reader: paused: ")
                    || l.starts_with("nvirt-hv: vm reader: resumed: ")
            })
            .take(2)
            .cloned(),
    );
    if failed.is_empty() {
        Ok(shown)
    } else {
        Err(format!("not shown: {}", failed.join(", ")))
    }
}

/// The hypervisor's line saying the volatile heap got back every frame the
/// VMs took (their RAM, nested tables and control structures).
const RAM_BACK: &str = "nvirt-hv: RAM: every frame the VMs took is back in the heap";

/// The slice count of a `vm NAME: passed, N slices, …` line.
fn slices_of(line: &str) -> Option<u64> {
    let (_, rest) = line.split_once(": passed, ")?;
    rest.split_once(" slices")?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| (*l).to_owned()).collect()
    }

    const GOOD: &[&str] = &[
        "guest writer: ok: secret written over all 8192 KiB of NVRAM [0x100000000, 0x100800000) and read back (0 words wrong)",
        "nvirt-hv: vm reader: paused: its first touch of NVRAM found the pool with 0 bytes free; the other VMs run on",
        "nvirt-hv: vm writer: nvpool: domain \"writer\" destroyed (on_poweroff = \"destroy\"): 8 MiB of NVRAM scrubbed and free",
        "nvirt-hv: vm reader: resumed: the pool has 8 MiB free again",
        "guest reader: ok: all 8192 KiB of NVRAM read as zeros before the first write (0 words not zero, 0 of them another VM's secret)",
        "nvirt-hv: vm prober: stopped at its announced probe: guest-physical 0x140000000 is outside its map and reaches no other memory",
        "nvirt-hv: vm writer: passed, 32 slices, 262 exits, 36.4% of the guests' CPU time",
        "nvirt-hv: vm reader: passed, 27 slices, 774 exits, 25.8% of the guests' CPU time",
        "nvirt-hv: vm reader: 515 first-touch faults backed 8 MiB, 120 µs each to resume (288902 TSC ticks), 29% of it in the pool's commit",
        "nvirt-hv: vm reader: 6312 KiB of its NVRAM was a destroyed domain's, scrubbed before it came here",
        "nvirt-hv: vm prober: passed, 54 slices, 727 exits, 37.7% of the guests' CPU time",
        "nvirt-hv: vm writer: gave back to the heap: 16 MiB of RAM, 28 KiB of nested tables, 20 KiB of control structures",
        "nvirt-hv: vm reader: gave back to the heap: 16 MiB of RAM, 40 KiB of nested tables, 20 KiB of control structures",
        "nvirt-hv: vm prober: gave back to the heap: 16 MiB of RAM, 28 KiB of nested tables, 20 KiB of control structures",
        "nvirt-hv: RAM: every frame the VMs took is back in the heap (60 MiB free, as before the first VM)",
    ];

    #[test]
    fn every_claim_shown_passes() {
        let shown = claims(&console(GOOD)).unwrap();
        assert_eq!(shown.len(), 15);
    }

    /// The lines whose absence fails the check (all but the pause and the
    /// resumption, which timing decides).
    const REQUIRED: [usize; 13] = [0, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];

    #[test]
    fn each_missing_or_wrong_claim_fails_by_name() {
        for skip in 0..GOOD.len() {
            let mut lines = console(GOOD);
            lines.remove(skip);
            assert_eq!(
                claims(&lines).is_err(),
                REQUIRED.contains(&skip),
                "without line {skip}"
            );
        }
        let mut lines = console(GOOD);
        lines[4] = lines[4].replace("(0 words not zero", "(3 words not zero");
        assert!(claims(&lines).unwrap_err().contains("zeros"));
        let mut lines = console(GOOD);
        lines[6] = lines[6].replace("32 slices", "1 slices");
        assert!(claims(&lines).unwrap_err().contains("writer passed"));
        let mut lines = console(GOOD);
        lines[14] = "nvirt-hv: RAM: FAILED: the heap has 59 MiB free after the VMs, 60 MiB before the first".into();
        assert!(
            claims(&lines)
                .unwrap_err()
                .contains("back in the volatile heap")
        );
    }

    #[test]
    fn reads_slice_counts() {
        assert_eq!(
            slices_of("nvirt-hv: vm a: passed, 12 slices, 3 exits"),
            Some(12)
        );
        assert_eq!(slices_of("nvirt-hv: vm a: FAILED, 12 slices"), None);
    }
}
