//! A writer of "newc" cpio archives (magic `070701`), the format Linux
//! unpacks as an initramfs: directories, regular files, symbolic links and
//! character devices, built in memory without root (a device node is just a
//! header here) and byte-for-byte reproducible (every time stamp is 0,
//! owner root, inodes numbered in order). Uncompressed: Linux takes an
//! uncompressed newc archive as readily as a compressed one, and it
//! unpacks faster.

use std::fmt;

const MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// Why an entry was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CpioError {
    /// Empty, absolute, with a NUL, or with an empty, `.` or `..` component.
    BadName(String),
    /// Permission bits beyond 0o7777.
    BadMode { name: String, mode: u32 },
    /// Larger than the format's 32-bit size field.
    TooLarge { name: String, bytes: usize },
    /// The same name twice.
    Duplicate(String),
}

impl fmt::Display for CpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadName(n) => write!(
                f,
                "cpio: bad entry name {n:?} (relative, no NUL, no empty, . or .. parts)"
            ),
            Self::BadMode { name, mode } => {
                write!(f, "cpio: {name}: mode {mode:#o} has bits beyond 0o7777")
            }
            Self::TooLarge { name, bytes } => {
                write!(
                    f,
                    "cpio: {name}: {bytes} bytes do not fit newc's 32-bit size"
                )
            }
            Self::Duplicate(n) => write!(f, "cpio: {n} added twice"),
        }
    }
}

/// An archive being written.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    out: Vec<u8>,
    names: Vec<String>,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A directory with permission bits `perm`.
    pub(crate) fn dir(&mut self, name: &str, perm: u32) -> Result<(), CpioError> {
        self.entry(name, S_IFDIR, perm, 2, (0, 0), &[])
    }

    /// A regular file.
    pub(crate) fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> Result<(), CpioError> {
        self.entry(name, S_IFREG, perm, 1, (0, 0), data)
    }

    /// A symbolic link to `target` (its data is the target's path).
    pub(crate) fn symlink(&mut self, name: &str, target: &str) -> Result<(), CpioError> {
        if target.is_empty() || target.contains('\0') {
            return Err(CpioError::BadName(target.to_owned()));
        }
        self.entry(name, S_IFLNK, 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node `major:minor` (e.g. 5:1 for /dev/console).
    pub(crate) fn char_dev(
        &mut self,
        name: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.entry(name, S_IFCHR, perm, 1, (major, minor), &[])
    }

    /// The archive, with its trailer.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.header(0, 0, 1, 0, (0, 0), TRAILER);
        self.out
    }

    fn entry(
        &mut self,
        name: &str,
        kind: u32,
        perm: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<(), CpioError> {
        check_name(name)?;
        if perm & !0o7777 != 0 {
            return Err(CpioError::BadMode {
                name: name.to_owned(),
                mode: perm,
            });
        }
        let size = u32::try_from(data.len()).map_err(|_| CpioError::TooLarge {
            name: name.to_owned(),
            bytes: data.len(),
        })?;
        if self.names.iter().any(|n| n == name) {
            return Err(CpioError::Duplicate(name.to_owned()));
        }
        self.names.push(name.to_owned());
        // Inode 0 is the trailer's; names.len() is the 1-based index.
        let ino = self.names.len() as u32;
        self.header(ino, kind | perm, nlink, size, rdev, name);
        self.out.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    fn header(&mut self, ino: u32, mode: u32, nlink: u32, size: u32, rdev: (u32, u32), name: &str) {
        self.out.extend_from_slice(MAGIC);
        let name_size = name.len() as u32 + 1;
        // ino mode uid gid nlink mtime filesize devmajor devminor
        // rdevmajor rdevminor namesize check
        for field in [
            ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, name_size, 0,
        ] {
            self.out
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
    }

    /// Header plus name, and data, each end on a 4-byte boundary.
    fn pad(&mut self) {
        while self.out.len() % 4 != 0 {
            self.out.push(0);
        }
    }
}

fn check_name(name: &str) -> Result<(), CpioError> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.contains('\0')
        || name == TRAILER
        || name
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..");
    if bad {
        Err(CpioError::BadName(name.to_owned()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One entry read back.
    #[derive(Debug, PartialEq, Eq)]
    pub(crate) struct Entry {
        pub(crate) ino: u32,
        pub(crate) mode: u32,
        pub(crate) nlink: u32,
        pub(crate) rdev: (u32, u32),
        pub(crate) name: String,
        pub(crate) data: Vec<u8>,
    }

    fn hex(b: &[u8]) -> Result<u32, String> {
        let s = std::str::from_utf8(b).map_err(|e| e.to_string())?;
        u32::from_str_radix(s, 16).map_err(|e| format!("{s:?}: {e}"))
    }

    fn aligned(at: usize) -> usize {
        at.div_ceil(4) * 4
    }

    /// An independent reader of newc, as the kernel's unpacker reads it:
    /// every entry up to the trailer, which must end the archive.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<Entry>, String> {
        let mut at = 0;
        let mut entries = Vec::new();
        loop {
            let head = bytes.get(at..at + 110).ok_or("truncated header")?;
            if &head[..6] != MAGIC {
                return Err(format!("bad magic at {at}"));
            }
            let f = |i: usize| hex(&head[6 + 8 * i..14 + 8 * i]);
            let (ino, mode, uid, gid, nlink, mtime) = (f(0)?, f(1)?, f(2)?, f(3)?, f(4)?, f(5)?);
            let (size, rdev, name_size, check) = (f(6)?, (f(9)?, f(10)?), f(11)?, f(12)?);
            if (uid, gid, mtime, check) != (0, 0, 0, 0) {
                return Err(format!("entry at {at}: not root-owned, time 0, check 0"));
            }
            let name_end = at + 110 + name_size as usize;
            let name = bytes.get(at + 110..name_end).ok_or("truncated name")?;
            let name = name.strip_suffix(b"\0").ok_or("name without NUL")?;
            let name = String::from_utf8(name.to_vec()).map_err(|e| e.to_string())?;
            let data_at = aligned(name_end);
            let data = bytes
                .get(data_at..data_at + size as usize)
                .ok_or("truncated data")?
                .to_vec();
            at = aligned(data_at + size as usize);
            if name == TRAILER {
                if at != bytes.len() {
                    return Err("bytes after the trailer".into());
                }
                return Ok(entries);
            }
            entries.push(Entry {
                ino,
                mode,
                nlink,
                rdev,
                name,
                data,
            });
        }
    }

    #[test]
    fn reads_back_every_kind_of_entry() {
        let mut w = Writer::new();
        w.dir("dev", 0o755).unwrap();
        w.char_dev("dev/console", 0o600, 5, 1).unwrap();
        w.dir("bin", 0o755).unwrap();
        w.file("bin/busybox", 0o755, b"\x7fELF...").unwrap();
        w.symlink("bin/sh", "busybox").unwrap();
        w.file("empty", 0o644, b"").unwrap();
        w.file("init", 0o755, b"#!/bin/sh\n").unwrap();
        let bytes = w.finish();
        assert_eq!(bytes.len() % 4, 0);
        let got = parse(&bytes).unwrap();
        type Row<'a> = (u32, u32, &'a str, &'a [u8], (u32, u32));
        let summary: Vec<Row<'_>> = got
            .iter()
            .map(|e| (e.ino, e.mode, e.name.as_str(), &e.data[..], e.rdev))
            .collect();
        assert_eq!(
            summary,
            [
                (1, 0o040_755, "dev", &b""[..], (0, 0)),
                (2, 0o020_600, "dev/console", b"", (5, 1)),
                (3, 0o040_755, "bin", b"", (0, 0)),
                (4, 0o100_755, "bin/busybox", b"\x7fELF...", (0, 0)),
                (5, 0o120_777, "bin/sh", b"busybox", (0, 0)),
                (6, 0o100_644, "empty", b"", (0, 0)),
                (7, 0o100_755, "init", b"#!/bin/sh\n", (0, 0)),
            ]
        );
        assert!(
            got.iter()
                .all(|e| e.nlink == if e.mode & S_IFDIR != 0 { 2 } else { 1 })
        );
    }

    #[test]
    fn every_name_and_data_length_pads_to_four() {
        // Name lengths 1..=8 with NUL cover every remainder of 110 + n, and
        // data lengths 0..=8 every remainder of the data.
        let mut w = Writer::new();
        let mut want = Vec::new();
        for n in 1..=8usize {
            let name = "abcdefgh"[..n].to_owned();
            let data: Vec<u8> = (0..n as u8 + 1).map(|b| b ^ 0xa5).collect();
            w.file(&name, 0o600, &data).unwrap();
            want.push((name, data));
        }
        let got = parse(&w.finish()).unwrap();
        let got: Vec<(String, Vec<u8>)> = got.into_iter().map(|e| (e.name, e.data)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn an_empty_archive_is_just_the_trailer() {
        let bytes = Writer::new().finish();
        // ino, mode, uid, gid 0; nlink 1.
        let head = format!("070701{}00000001", "0".repeat(32));
        assert!(bytes.starts_with(head.as_bytes()));
        assert_eq!(parse(&bytes).unwrap(), []);
        // The trailer header (110) + "TRAILER!!!\0" (11) = 121, padded to 124.
        assert_eq!(bytes.len(), 124);
    }

    #[test]
    fn refuses_what_the_kernel_would_misplace() {
        let mut w = Writer::new();
        for bad in [
            "", "/init", "a//b", "a/", "./x", "a/../b", "..", "a\0b", TRAILER,
        ] {
            assert_eq!(
                w.file(bad, 0o644, b""),
                Err(CpioError::BadName(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert!(matches!(
            w.dir("d", 0o10_000),
            Err(CpioError::BadMode { .. })
        ));
        assert!(matches!(w.symlink("l", ""), Err(CpioError::BadName(_))));
        w.dir("d", 0o755).unwrap();
        assert_eq!(
            w.file("d", 0o644, b""),
            Err(CpioError::Duplicate("d".into()))
        );
        let e = CpioError::TooLarge {
            name: "big".into(),
            bytes: 1 << 33,
        };
        assert!(e.to_string().contains("32-bit"));
        // Refused entries left nothing behind.
        assert_eq!(parse(&w.finish()).unwrap().len(), 1);
    }
}
