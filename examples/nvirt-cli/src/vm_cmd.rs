//! `nvirt vm check FILE...`: VM configuration files (`nvirt-vmconfig`),
//! each checked alone and all together as VMs that run side by side.
//!
//! Paths inside a file are relative to the file's directory; they are
//! printed resolved, and `nvram_file`s are compared resolved.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use nvirt_vmconfig::{MIB, Uuid, VmConfig, check_set};

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Check VM configuration files (xl.cfg style) and print each VM's
    /// settings on one line; the files must also work together (distinct
    /// names, domain ids and nvram_files).
    Check {
        /// The configuration files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// A configuration file read into memory.
#[derive(Clone, Debug)]
pub struct VmFile {
    /// The path as given.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

impl VmFile {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            text,
        })
    }

    /// `value`, a path written in this file, relative to the file's
    /// directory unless absolute.
    #[must_use]
    pub fn resolve(&self, value: &str) -> PathBuf {
        resolve(&self.path, value)
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

/// `value` relative to the directory of the configuration file `config`,
/// unless it is absolute; `.` and `..` are folded lexically (the file need
/// not exist yet), so one file written two ways resolves to one path.
#[must_use]
pub fn resolve(config: &Path, value: &str) -> PathBuf {
    let value = Path::new(value);
    let joined = match config.parent() {
        Some(dir) if !value.is_absolute() => dir.join(value),
        _ => value.to_owned(),
    };
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            // The root's parent is the root.
            Component::ParentDir if out.components().next_back() == Some(Component::RootDir) => {}
            other => out.push(other),
        }
    }
    out
}

/// Parses every file and checks them as one set. `Err` holds every
/// message, each starting with its file name (`a.cfg:3: …`): all files'
/// parse errors, or else the first clash between two files.
pub fn check_files(files: &[VmFile]) -> Result<Vec<VmConfig<'_>>, Vec<String>> {
    let mut vms = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match VmConfig::parse(&file.text) {
            Ok(vm) => vms.push(vm),
            Err(e) => errors.push(e.in_file(&file.name()).to_string()),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Two files in different directories may name one nvram_file
    // differently: compare them resolved.
    let resolved: Vec<Option<String>> = files
        .iter()
        .zip(&vms)
        .map(|(file, vm)| vm.nvram_file.map(|f| file.resolve(f).display().to_string()))
        .collect();
    let with_resolved: Vec<VmConfig<'_>> = vms
        .iter()
        .zip(&resolved)
        .map(|(vm, file)| VmConfig {
            nvram_file: file.as_deref(),
            ..*vm
        })
        .collect();
    if let Err(e) = check_set(&with_resolved) {
        let (first, second) = e.indices();
        return Err(vec![
            e.in_files(&files[first].name(), &files[second].name())
                .to_string(),
        ]);
    }
    Ok(vms)
}

/// The one-line summary `nvirt vm check` prints for a VM: fixed keys in a
/// fixed order, sizes in MiB with an `M`, paths resolved, strings quoted
/// as Rust debug strings, `-` for what is not set.
#[must_use]
pub fn summary(file: &VmFile, vm: &VmConfig<'_>) -> String {
    let path = |p: Option<&str>| {
        p.map_or_else(
            || "-".to_owned(),
            |p| format!("{:?}", file.resolve(p).display().to_string()),
        )
    };
    let mut line = String::new();
    let _ = write!(
        line,
        "{}: name={} id={} memory={}M nvram={}M nvram_type={} nvram_target={}M nvram_populate={} nvram_file={} kernel={} ramdisk={} cmdline={} on_poweroff={}",
        file.name(),
        vm.name,
        Uuid(vm.domain_id()),
        vm.memory / MIB,
        vm.nvram / MIB,
        vm.nvram_kind.raw(),
        vm.nvram_target / MIB,
        vm.nvram_populate,
        path(vm.nvram_file),
        path(vm.kernel),
        path(vm.ramdisk),
        vm.cmdline
            .map_or_else(|| "-".to_owned(), |c| format!("{c:?}")),
        vm.on_poweroff.as_str(),
    );
    line
}

pub(crate) fn run(cmd: VmCommand) -> Result<ExitCode, String> {
    let VmCommand::Check { files } = cmd;
    let files = files
        .iter()
        .map(|p| VmFile::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let vms = match check_files(&files) {
        Ok(vms) => vms,
        Err(errors) => {
            for e in errors {
                eprintln!("nvirt: {e}");
            }
            return Ok(ExitCode::from(crate::EXIT_BAD_INPUT));
        }
    };
    let mut out = String::new();
    for (file, vm) in files.iter().zip(&vms) {
        out.push_str(&summary(file, vm));
        out.push('\n');
    }
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("writing output: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, text: &str) -> VmFile {
        VmFile {
            path: PathBuf::from(path),
            text: text.to_owned(),
        }
    }

    #[test]
    fn paths_are_relative_to_the_config() {
        assert_eq!(
            resolve(Path::new("vms/a.cfg"), "a.img"),
            PathBuf::from("vms/a.img")
        );
        assert_eq!(resolve(Path::new("a.cfg"), "a.img"), PathBuf::from("a.img"));
        assert_eq!(
            resolve(Path::new("vms/a.cfg"), "/x/a.img"),
            PathBuf::from("/x/a.img")
        );
        assert_eq!(
            resolve(Path::new("/etc/vms/a.cfg"), "../k"),
            PathBuf::from("/etc/k")
        );
        assert_eq!(
            resolve(Path::new("../a.cfg"), "../k"),
            PathBuf::from("../../k")
        );
        assert_eq!(resolve(Path::new("x/a.cfg"), "./k"), PathBuf::from("x/k"));
        assert_eq!(resolve(Path::new("/a.cfg"), "../../k"), PathBuf::from("/k"));
    }

    #[test]
    fn summaries_and_errors() {
        let files = [
            file(
                "d/a.cfg",
                "name='a'\nmemory=32\nnvram=16\nnvram_file='a.img'\n",
            ),
            file(
                "b.cfg",
                "name='b'\nuuid='01234567-89ab-cdef-0011-223344556677'\nmemory=16\n\
                 kernel='/k'\ncmdline='console=ttyS0 quiet'\n",
            ),
        ];
        let vms = check_files(&files).unwrap();
        assert_eq!(
            summary(&files[1], &vms[1]),
            "b.cfg: name=b id=01234567-89ab-cdef-0011-223344556677 memory=16M nvram=0M nvram_type=7 \
             nvram_target=0M nvram_populate=eager nvram_file=- kernel=\"/k\" ramdisk=- \
             cmdline=\"console=ttyS0 quiet\" on_poweroff=preserve"
        );
        assert!(summary(&files[0], &vms[0]).contains(" nvram_file=\"d/a.img\" kernel=- "));

        let bad = [
            file("a.cfg", "name='a'\nmemory=32\nvcpu=2\n"),
            file("b.cfg", "memory=32\n"),
        ];
        assert_eq!(
            check_files(&bad).unwrap_err(),
            [
                "a.cfg:3: unknown key \"vcpu\"",
                "b.cfg: missing required key \"name\""
            ]
        );
        // One file seen through two directories.
        let clash = [
            file(
                "d/a.cfg",
                "name='a'\nmemory=8\nnvram=4\nnvram_file='x.img'\n",
            ),
            file(
                "b.cfg",
                "name='b'\nmemory=8\nnvram=4\nnvram_file='d/x.img'\n",
            ),
        ];
        assert_eq!(
            check_files(&clash).unwrap_err(),
            ["b.cfg: nvram_file \"d/x.img\" is also the nvram_file of d/a.cfg"]
        );
        let apart = [
            file(
                "d/a.cfg",
                "name='a'\nmemory=8\nnvram=4\nnvram_file='x.img'\n",
            ),
            file(
                "e/b.cfg",
                "name='b'\nmemory=8\nnvram=4\nnvram_file='x.img'\n",
            ),
        ];
        assert!(
            check_files(&apart).is_ok(),
            "same name, different directories"
        );
    }
}
