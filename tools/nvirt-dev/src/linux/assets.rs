//! The Debian kernel and busybox the Linux guest runs, fetched with the
//! system's own apt (`apt-get download` needs no root once the package
//! lists exist) and cached under `target/nvirt-linux/`: the bzImage, the
//! four modules that make legacy persistent memory a `/dev/pmem0` and the
//! static busybox.
//!
//! The cache is complete once `assets.ready` names the kernel version; a
//! later run then asks apt nothing. Delete `target/nvirt-linux/` to move
//! to a newer Debian kernel.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::process::{describe, run_quiet};

/// The metapackage that depends on the current kernel image.
const META: &str = "linux-image-amd64";
const BUSYBOX_PACKAGE: &str = "busybox-static";
/// The modules, in the order `insmod` must load them (the .deb ships no
/// modules.dep): the NVDIMM core, BTT (which nd_pmem needs), the pmem
/// block driver, then the driver of legacy (E820 type 12) regions.
pub(crate) const MODULES: [&str; 4] = ["libnvdimm", "nd_btt", "nd_pmem", "nd_e820"];
const STAMP: &str = "assets.ready";

/// Why the assets could not be had.
#[derive(Debug)]
pub(crate) enum AssetError {
    /// apt knows no candidate: its package lists are missing or stale.
    AptLists {
        command: String,
    },
    /// A tool failed.
    Tool {
        command: String,
        detail: String,
    },
    /// The package lacked a file it should have.
    Missing {
        what: String,
        under: PathBuf,
    },
    /// The bzImage is not what this code understands.
    BadKernel {
        path: PathBuf,
        why: String,
    },
    Io {
        path: PathBuf,
        err: io::Error,
    },
}

impl fmt::Display for AssetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AptLists { command } => write!(
                f,
                "apt has no package lists for {META}/{BUSYBOX_PACKAGE}; run: {command}"
            ),
            Self::Tool { command, detail } => write!(f, "`{command}` failed: {detail}"),
            Self::Missing { what, under } => {
                write!(f, "no {what} in the package (under {})", under.display())
            }
            Self::BadKernel { path, why } => write!(f, "{}: {why}", path.display()),
            Self::Io { path, err } => write!(f, "{}: {err}", path.display()),
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> AssetError + '_ {
    move |err| AssetError::Io {
        path: path.to_owned(),
        err,
    }
}

/// The cached files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Assets {
    /// e.g. `6.1.0-48-amd64`.
    pub(crate) version: String,
    pub(crate) bzimage: PathBuf,
    /// [`MODULES`]' files, in that order, uncompressed.
    pub(crate) modules: Vec<PathBuf>,
    pub(crate) busybox: PathBuf,
}

impl Assets {
    fn at(cache: &Path, version: &str) -> Self {
        let kernel = cache.join(format!("kernel-{version}"));
        Self {
            version: version.to_owned(),
            bzimage: kernel.join(format!("boot/vmlinuz-{version}")),
            modules: MODULES
                .iter()
                .map(|m| cache.join("modules").join(format!("{m}.ko")))
                .collect(),
            busybox: cache.join("busybox/bin/busybox"),
        }
    }

    fn all_present(&self) -> bool {
        let mut files = vec![&self.bzimage, &self.busybox];
        files.extend(&self.modules);
        files.iter().all(|f| f.is_file())
    }
}

/// The kernel image package `apt-cache depends linux-image-amd64` names.
pub(crate) fn image_package(depends: &str) -> Option<String> {
    depends.lines().find_map(|l| {
        let l = l.trim().trim_start_matches('|');
        let pkg = l.strip_prefix("Depends:")?.trim();
        let good = pkg.starts_with("linux-image-")
            && pkg.ends_with("-amd64")
            && pkg[12..].starts_with(|c: char| c.is_ascii_digit());
        good.then(|| pkg.to_owned())
    })
}

/// The cached assets under `cache` (`target/nvirt-linux`), fetching and
/// unpacking them first if needed.
pub(crate) fn ensure(cache: &Path) -> Result<Assets, AssetError> {
    if let Some(assets) = cached(cache) {
        return Ok(assets);
    }
    fs::create_dir_all(cache).map_err(io_at(cache))?;
    let package = resolve()?;
    let version = package["linux-image-".len()..].to_owned();
    let debs = cache.join("debs");
    let image_deb = download(&debs, &package)?;
    let busybox_deb = download(&debs, BUSYBOX_PACKAGE)?;
    let assets = Assets::at(cache, &version);

    let kernel = cache.join(format!("kernel-{version}"));
    let mut patterns = vec![format!("./boot/vmlinuz-{version}")];
    patterns.extend(MODULES.iter().map(|m| format!("*/{m}.ko*")));
    unpack(&image_deb, &kernel, &patterns)?;
    unpack(
        &busybox_deb,
        &cache.join("busybox"),
        &["./bin/busybox".into()],
    )?;

    let modules = cache.join("modules");
    fs::create_dir_all(&modules).map_err(io_at(&modules))?;
    for (name, dest) in MODULES.iter().zip(&assets.modules) {
        let found = find_module(&kernel, name)?;
        copy_uncompressed(&found, dest)?;
    }
    if !assets.all_present() {
        return Err(AssetError::Missing {
            what: "bzImage, busybox or module after unpacking".into(),
            under: cache.to_owned(),
        });
    }
    let stamp = cache.join(STAMP);
    fs::write(&stamp, format!("version={version}\n")).map_err(io_at(&stamp))?;
    Ok(assets)
}

/// The assets of a complete earlier run, if there are.
fn cached(cache: &Path) -> Option<Assets> {
    let stamp = fs::read_to_string(cache.join(STAMP)).ok()?;
    let version = stamp.trim().strip_prefix("version=")?;
    let assets = Assets::at(cache, version);
    assets.all_present().then_some(assets)
}

fn is_root() -> bool {
    run_quiet(Command::new("id").arg("-u")).is_some_and(|(ok, out)| ok && out.trim() == "0")
}

/// Runs `apt-get update` when root (lists missing or stale), else says
/// to.
fn update_lists() -> Result<(), AssetError> {
    if !is_root() {
        return Err(AssetError::AptLists {
            command: "sudo apt-get update".into(),
        });
    }
    let mut cmd = Command::new("apt-get");
    cmd.arg("update");
    run(&mut cmd).map(drop)
}

fn resolve() -> Result<String, AssetError> {
    let ask = || {
        run_quiet(Command::new("apt-cache").args(["depends", META]))
            .and_then(|(ok, out)| ok.then(|| image_package(&out)).flatten())
    };
    if let Some(p) = ask() {
        return Ok(p);
    }
    update_lists()?;
    ask().ok_or_else(|| AssetError::Tool {
        command: format!("apt-cache depends {META}"),
        detail: "names no linux-image-…-amd64 package even after apt-get update".into(),
    })
}

/// Runs `cmd` to its end; its stderr goes into the error.
fn run(cmd: &mut Command) -> Result<Vec<u8>, AssetError> {
    // `output` gives the child no stdin unless one was set (tar's is
    // dpkg-deb's stdout).
    let out = cmd.output().map_err(|e| AssetError::Tool {
        command: describe(cmd),
        detail: e.to_string(),
    })?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(AssetError::Tool {
            command: describe(cmd),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// The .deb of `package` in `debs`, downloaded if not there yet.
fn download(debs: &Path, package: &str) -> Result<PathBuf, AssetError> {
    let find = || -> Result<Option<PathBuf>, AssetError> {
        let Ok(dir) = fs::read_dir(debs) else {
            return Ok(None);
        };
        for entry in dir {
            let path = entry.map_err(io_at(debs))?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with(&format!("{package}_")) && name.ends_with(".deb") {
                return Ok(Some(path));
            }
        }
        Ok(None)
    };
    if let Some(deb) = find()? {
        return Ok(deb);
    }
    fs::create_dir_all(debs).map_err(io_at(debs))?;
    eprintln!("nvirt linux: apt-get download {package}");
    let mut cmd = Command::new("apt-get");
    cmd.args(["download", package]).current_dir(debs);
    if run(&mut cmd).is_err() {
        // Stale lists name a version the mirror no longer has.
        update_lists()?;
        run(&mut cmd)?;
    }
    find()?.ok_or_else(|| AssetError::Missing {
        what: format!("{package}_*.deb after apt-get download"),
        under: debs.to_owned(),
    })
}

/// Unpacks the members of `deb` matching `patterns` (tar wildcards) into
/// `dest`, through a temporary directory so an interrupted run leaves no
/// half-filled `dest`.
fn unpack(deb: &Path, dest: &Path, patterns: &[String]) -> Result<(), AssetError> {
    let tmp = partial(dest);
    for d in [&tmp, dest] {
        if d.exists() {
            fs::remove_dir_all(d).map_err(io_at(d))?;
        }
    }
    fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
    let mut dpkg = Command::new("dpkg-deb");
    dpkg.arg("--fsys-tarfile").arg(deb).stdout(Stdio::piped());
    let mut feed = dpkg.spawn().map_err(|e| AssetError::Tool {
        command: describe(&dpkg),
        detail: e.to_string(),
    })?;
    let mut tar = Command::new("tar");
    tar.arg("-x")
        .arg("-C")
        .arg(&tmp)
        .arg("--wildcards")
        .args(patterns)
        .stdin(feed.stdout.take().map_or_else(Stdio::null, Stdio::from));
    let tar_result = run(&mut tar);
    let fed = feed.wait().map_err(|e| AssetError::Tool {
        command: describe(&dpkg),
        detail: e.to_string(),
    })?;
    tar_result?;
    if !fed.success() {
        return Err(AssetError::Tool {
            command: describe(&dpkg),
            detail: fed.to_string(),
        });
    }
    fs::rename(&tmp, dest).map_err(io_at(dest))
}

/// `path` with `.partial` appended (versions are full of dots: no
/// `with_extension`).
fn partial(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// `name.ko`, `.ko.xz` or `.ko.zst` anywhere under `dir`.
fn find_module(dir: &Path, name: &str) -> Result<PathBuf, AssetError> {
    let wanted = [".ko", ".ko.xz", ".ko.zst"].map(|ext| format!("{name}{ext}"));
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).map_err(io_at(&d))? {
            let path = entry.map_err(io_at(&d))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .file_name()
                .is_some_and(|n| wanted.iter().any(|w| n == w.as_str()))
            {
                return Ok(path);
            }
        }
    }
    Err(AssetError::Missing {
        what: format!("module {name}"),
        under: dir.to_owned(),
    })
}

/// Copies a module to `dest`, decompressing it on the host: busybox's
/// `insmod` loads the bytes it is given, and not every kernel takes
/// compressed modules.
fn copy_uncompressed(src: &Path, dest: &Path) -> Result<(), AssetError> {
    let name = src.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        Some("xz")
    } else if name.ends_with(".zst") {
        Some("zstd")
    } else {
        None
    };
    let bytes = match tool {
        None => fs::read(src).map_err(io_at(src))?,
        Some(tool) => run(Command::new(tool).arg("-dc").arg(src))?,
    };
    if !bytes.starts_with(b"\x7fELF") {
        return Err(AssetError::BadKernel {
            path: src.to_owned(),
            why: "module is not an ELF file".into(),
        });
    }
    fs::write(dest, bytes).map_err(io_at(dest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_image_package_in_apt_cache_output() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.1.0-48-amd64\n";
        assert_eq!(
            image_package(out).as_deref(),
            Some("linux-image-6.1.0-48-amd64")
        );
        let alt = "linux-image-amd64\n |Depends: linux-image-6.12.9-amd64\n  Depends: x\n";
        assert_eq!(
            image_package(alt).as_deref(),
            Some("linux-image-6.12.9-amd64")
        );
        for none in [
            "",
            "linux-image-amd64\n",
            "  Depends: linux-image-amd64-signed-template\n",
            "  Depends: linux-image-6.1.0-48-cloud-arm64\n",
            "  Recommends: linux-image-6.1.0-48-amd64\n",
        ] {
            assert_eq!(image_package(none), None, "{none:?}");
        }
    }

    #[test]
    fn the_cache_is_used_only_when_complete() {
        let dir = std::env::temp_dir().join(format!("nvirt-assets-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(cached(&dir), None, "no stamp");
        fs::write(dir.join(STAMP), "version=6.1.0-9-amd64\n").unwrap();
        assert_eq!(cached(&dir), None, "stamp but no files");
        let want = Assets::at(&dir, "6.1.0-9-amd64");
        let mut files = vec![&want.bzimage, &want.busybox];
        files.extend(&want.modules);
        for f in &files {
            fs::create_dir_all(f.parent().unwrap()).unwrap();
            fs::write(f, b"x").unwrap();
        }
        let got = cached(&dir).unwrap();
        assert_eq!((&got.bzimage, &got.modules), (&want.bzimage, &want.modules));
        assert!(got.modules[0].ends_with("modules/libnvdimm.ko"));
        assert_eq!(cached(&dir), Some(want.clone()));
        fs::remove_file(&want.modules[3]).unwrap();
        assert_eq!(cached(&dir), None, "a module missing");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn finds_and_decompresses_modules() {
        let dir = std::env::temp_dir().join(format!("nvirt-modules-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let deep = dir.join("lib/modules/v/kernel/drivers/nvdimm");
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("nd_pmem.ko"), b"\x7fELF plain").unwrap();
        fs::write(deep.join("nd_btt.ko.orig"), b"no").unwrap();
        assert_eq!(
            find_module(&dir, "nd_pmem").unwrap(),
            deep.join("nd_pmem.ko")
        );
        assert!(matches!(
            find_module(&dir, "nd_btt"),
            Err(AssetError::Missing { .. })
        ));
        let out = dir.join("out.ko");
        copy_uncompressed(&deep.join("nd_pmem.ko"), &out).unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"\x7fELF plain");
        fs::write(deep.join("bad.ko"), b"text").unwrap();
        assert!(copy_uncompressed(&deep.join("bad.ko"), &out).is_err());
        // Compressed modules go through the host's xz (xz-utils, in every
        // Debian base system).
        let xz = Command::new("xz")
            .args(["-zc"])
            .stdin(fs::File::open(deep.join("nd_pmem.ko")).unwrap())
            .output()
            .expect("the xz tool (package xz-utils)");
        assert!(xz.status.success());
        fs::write(deep.join("nd_e820.ko.xz"), xz.stdout).unwrap();
        let found = find_module(&dir, "nd_e820").unwrap();
        copy_uncompressed(&found, &out).unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"\x7fELF plain");
        let _ = fs::remove_dir_all(&dir);
    }
}
