//! Reading the firmware map of a running Linux system from
//! `/sys/firmware/memmap` (feature `std`): one directory per entry, each
//! with `start`, `end` (inclusive) and `type` files.

use std::fmt;
use std::path::{Path, PathBuf};
use std::vec::Vec;
use std::{fs, io};

use crate::entry::Entry;
use crate::error::RangeError;
use crate::kind::Kind;

/// Where Linux publishes the firmware map.
pub const DEFAULT_DIR: &str = "/sys/firmware/memmap";

/// Why the sysfs map cannot be read.
#[derive(Debug)]
pub enum SysfsError {
    /// A file could not be read.
    Io(PathBuf, io::Error),
    /// A `start` or `end` file is not a `0x…` number.
    BadAddress(PathBuf),
    /// A `type` file names a type this crate cannot map back to a code
    /// (Linux prints `Unknown E820 type` for codes it has no name for).
    UnknownType(PathBuf, String),
    /// The addresses do not form a range.
    Range(PathBuf, RangeError),
}

impl fmt::Display for SysfsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(path, e) => write!(f, "{}: {e}", path.display()),
            Self::BadAddress(path) => write!(f, "{}: not a hexadecimal address", path.display()),
            Self::UnknownType(path, name) => {
                write!(f, "{}: unknown memory type {name:?}", path.display())
            }
            Self::Range(path, e) => write!(f, "{}: {e}", path.display()),
        }
    }
}

impl std::error::Error for SysfsError {}

/// The kind for a sysfs `type` string (Linux's `e820_type_to_string()`).
#[must_use]
pub fn kind_from_sysfs_name(name: &str) -> Option<Kind> {
    Some(match name {
        "System RAM" => Kind::Ram,
        "Reserved" | "reserved" => Kind::Reserved,
        "ACPI Tables" => Kind::Acpi,
        "ACPI Non-volatile Storage" => Kind::Nvs,
        "Unusable memory" => Kind::Unusable,
        "Persistent Memory (legacy)" => Kind::Pram,
        "Persistent Memory" => Kind::Pmem,
        "Soft Reserved" => Kind::SoftReserved,
        _ => return None,
    })
}

/// Reads every entry under `dir` (normally [`DEFAULT_DIR`]), in directory
/// index order; sanitize them with [`crate::MemoryMap::from_entries`].
pub fn read_dir(dir: &Path) -> Result<Vec<Entry>, SysfsError> {
    let io_err = |path: &Path, e| SysfsError::Io(path.to_path_buf(), e);
    let mut dirs: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .filter_map(Result::ok)
        .filter_map(|d| Some((d.file_name().to_str()?.parse().ok()?, d.path())))
        .collect();
    dirs.sort();
    dirs.iter()
        .map(|(_, path)| {
            let read = |name: &str| {
                let file = path.join(name);
                fs::read_to_string(&file)
                    .map(|s| s.trim().to_owned())
                    .map_err(|e| io_err(&file, e))
            };
            let addr = |name: &str| -> Result<u64, SysfsError> {
                let text = read(name)?;
                text.strip_prefix("0x")
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                    .ok_or_else(|| SysfsError::BadAddress(path.join(name)))
            };
            let (start, last) = (addr("start")?, addr("end")?);
            let name = read("type")?;
            let kind = kind_from_sysfs_name(&name)
                .ok_or_else(|| SysfsError::UnknownType(path.join("type"), name))?;
            Entry::from_inclusive(start, last, kind).map_err(|e| SysfsError::Range(path.clone(), e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_sysfs_tree() {
        let dir = std::env::temp_dir().join(format!("nvirt-e820-sysfs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for (i, (start, end, kind)) in [
            ("0x100000", "0x7fffffff", "System RAM"),
            ("0x0", "0x9fbff", "System RAM"),
            ("0x100000000", "0x13fffffff", "Persistent Memory (legacy)"),
        ]
        .iter()
        .enumerate()
        {
            let d = dir.join(i.to_string());
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("start"), format!("{start}\n")).unwrap();
            fs::write(d.join("end"), format!("{end}\n")).unwrap();
            fs::write(d.join("type"), format!("{kind}\n")).unwrap();
        }
        let entries = read_dir(&dir).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2].kind(), Kind::Pram);
        assert_eq!(entries[1].size(), 0x9fc00);
        fs::write(dir.join("2").join("type"), "Unknown E820 type\n").unwrap();
        assert!(matches!(read_dir(&dir), Err(SysfsError::UnknownType(..))));
        fs::write(dir.join("2").join("start"), "12\n").unwrap();
        assert!(matches!(read_dir(&dir), Err(SysfsError::BadAddress(..))));
        fs::remove_dir_all(&dir).unwrap();
    }
}
