//! Power-off page-out of VMs with `nvram_file`: between emulator runs the
//! runner moves a shut-down VM's NVRAM from the NVDIMM's pool to its file
//! and frees the frames (`nvirt pool export`), and brings it back before
//! the next run (`nvirt pool import`: the same domain id and guest frames,
//! new machine frames), so the hypervisor re-attaches it where the guest
//! left it.
//!
//! The file is replaced only once a new export is whole: the export goes
//! to `FILE.partial` (synced by `nvirt pool export`), then is renamed over
//! `FILE`. An import leaves the file in place; it is stale once the VM ran
//! again, and the next page-out replaces it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::vms::VmBoot;

/// One domain line of `nvirt pool inspect`: its name and state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Domain {
    pub(crate) name: String,
    pub(crate) state: String,
    pub(crate) frames: u64,
}

/// Runs `nvirt pool ARGS` (this very binary forwards user commands);
/// its standard output, or why it failed.
fn pool(args: &[&str]) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find nvirt itself: {e}"))?;
    let out = Command::new(exe)
        .arg("pool")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run nvirt pool {}: {e}", args.join(" ")))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "`nvirt pool {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The domains `nvirt pool inspect` lists.
pub(crate) fn domains(inspect: &str) -> Vec<Domain> {
    inspect
        .lines()
        .filter_map(|l| l.strip_prefix("domain "))
        .map(|l| {
            let field = |key: &str| {
                l.split_ascii_whitespace()
                    .find_map(|w| w.strip_prefix(key))
                    .unwrap_or_default()
                    .to_owned()
            };
            Domain {
                name: field("name="),
                state: field("state="),
                frames: field("frames=").parse().unwrap_or(0),
            }
        })
        .collect()
}

fn image_arg(image: &Path) -> Result<&str, String> {
    image
        .to_str()
        .ok_or_else(|| format!("{}: not UTF-8", image.display()))
}

/// Before a run: imports every VM's `nvram_file` whose domain the pool on
/// `image` lacks. What was done, one line each.
pub(crate) fn page_in(image: &Path, vms: &[VmBoot]) -> Result<Vec<String>, String> {
    let wanted: Vec<(&VmBoot, &PathBuf)> = vms
        .iter()
        .filter_map(|vm| vm.nvram_file.as_ref().map(|f| (vm, f)))
        .filter(|(_, f)| f.exists())
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let img = image_arg(image)?;
    let inspect = pool(&["inspect", img]).map_err(|e| {
        format!("the NVRAM files of the VMs cannot be paged in: the NVDIMM holds no readable pool yet ({e})")
    })?;
    let present = domains(&inspect);
    let mut done = Vec::new();
    for (vm, file) in wanted {
        if present.iter().any(|d| d.name == vm.name) {
            done.push(format!(
                "{}: its domain is in the pool; {} is not read",
                vm.name,
                file.display()
            ));
            continue;
        }
        let f = image_arg(file)?;
        let out = pool(&["import", img, f])?;
        done.push(format!(
            "{}: paged in from {}: {}",
            vm.name,
            file.display(),
            out.trim()
        ));
    }
    Ok(done)
}

/// After a run: exports every VM with `nvram_file` whose domain is shut
/// down, freeing its frames. What was done, one line each.
pub(crate) fn page_out(image: &Path, vms: &[VmBoot]) -> Result<Vec<String>, String> {
    if !vms.iter().any(|vm| vm.nvram_file.is_some()) {
        return Ok(Vec::new());
    }
    let img = image_arg(image)?;
    let present = domains(&pool(&["inspect", img])?);
    let mut done = Vec::new();
    for vm in vms {
        let Some(file) = &vm.nvram_file else {
            continue;
        };
        match present.iter().find(|d| d.name == vm.name) {
            Some(d) if d.state == "shut-down" => {}
            Some(d) => {
                done.push(format!(
                    "{}: its domain is {}, not shut down: kept in the pool",
                    vm.name, d.state
                ));
                continue;
            }
            None => continue,
        }
        let mut partial = file.clone().into_os_string();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let _ = fs::remove_file(&partial);
        let out = pool(&["export", img, &vm.name, image_arg(&partial)?])?;
        fs::rename(&partial, file)
            .map_err(|e| format!("{} -> {}: {e}", partial.display(), file.display()))?;
        done.push(format!(
            "{}: paged out to {}: {}",
            vm.name,
            file.display(),
            out.trim()
        ));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_domain_lines_of_inspect() {
        let text = "pool: region=1\n\
            domain slot=1 id=4dcf name=reader state=shut-down quota=2048 frames=2048 extents=515\n\
            \x20 extent gpfn=0x100000 mfn=0x10002b order=0\n\
            domain slot=2 id=77 name=keeper state=crashed-while-running quota=8 frames=8 extents=1\n";
        assert_eq!(
            domains(text),
            [
                Domain {
                    name: "reader".into(),
                    state: "shut-down".into(),
                    frames: 2048
                },
                Domain {
                    name: "keeper".into(),
                    state: "crashed-while-running".into(),
                    frames: 8
                },
            ]
        );
    }
}
