//! Files for `nvirt pool`: the pool image as a `Pmem` (for the commands
//! that change it), and the export format.
//!
//! A [`FilePmem`] maps the persistence model onto a file: a store is a
//! `pwrite` into the page cache, and a fence is `fdatasync`, so what a fence
//! ordered is on the disk when it returns, as on an NVDIMM. The pool's
//! crash safety therefore carries over to the file as long as the file
//! system keeps `fdatasync`'s promise.
//!
//! The export format, little-endian:
//!
//! | bytes | what |
//! |---|---|
//! | 8 | magic `NVPEXPT1` |
//! | 4 | version (1) |
//! | 4 | name length |
//! | 16 | domain id |
//! | 8 | quota in frames |
//! | 8 | extent count |
//! | 8 | frame count |
//! | 8 | zero |
//! | 32 | name, zero-padded |
//! | 16 per extent | gpfn u64, order u64, by gpfn |
//! | 4096 per frame | the data, extent by extent |
//! | 8 | CRC-32C of everything before, as u64 |

use std::cell::RefCell;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;

use nvirt_nvpool::{DomainUuid, Extent, Gfn, MAX_NAME, Order};
use nvirt_persist_meta::{Pmem, PmemError};

/// A pool image in a file, from byte `offset` on.
#[derive(Debug)]
pub(crate) struct FilePmem {
    file: File,
    offset: u64,
    size: u64,
    /// The first I/O error (a read's or a write's), reported by
    /// [`FilePmem::check_io`] and [`FilePmem::finish`]. A cell because
    /// `Pmem::read` takes `&self`.
    error: RefCell<Option<String>>,
}

impl FilePmem {
    /// Opens `path` for reading and writing; the region is the file from
    /// `offset` on, or its first `limit` bytes from there.
    pub(crate) fn open(path: &str, offset: u64, limit: Option<u64>) -> Result<Self, String> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| format!("{path}: {e}"))?;
        let len = file.metadata().map_err(|e| format!("{path}: {e}"))?.len();
        let size = len.checked_sub(offset).ok_or_else(|| {
            format!("{path}: offset {offset:#x} is past the end ({len:#x} bytes)")
        })?;
        Ok(Self {
            file,
            offset,
            size: len_limit(size, limit),
            error: RefCell::new(None),
        })
    }

    fn check(&self, offset: u64, len: u64) -> Result<u64, PmemError> {
        let out = PmemError::OutOfBounds {
            offset,
            len,
            size: self.size,
        };
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(self.offset + offset),
            _ => Err(out),
        }
    }

    /// The first I/O error so far, if any: checked before anything
    /// irreversible is done on the strength of what was read or written.
    pub(crate) fn check_io(&self) -> Result<(), String> {
        self.error.borrow().clone().map_or(Ok(()), Err)
    }

    /// Syncs and reports the first I/O error, if any happened.
    pub(crate) fn finish(mut self) -> Result<(), String> {
        self.fence();
        self.check_io()
    }

    fn note(&self, e: std::io::Error) {
        let mut error = self.error.borrow_mut();
        if error.is_none() {
            *error = Some(e.to_string());
        }
    }
}

impl Pmem for FilePmem {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), PmemError> {
        let at = self.check(offset, buf.len() as u64)?;
        // A read error leaves zeros, which recovery refuses as damage, and
        // is noted so that no data read as zeros is exported as real.
        if let Err(e) = self.file.read_exact_at(buf, at) {
            buf.fill(0);
            self.note(e);
        }
        Ok(())
    }

    fn store_u64(&mut self, offset: u64, value: u64) -> Result<(), PmemError> {
        if offset % 8 != 0 {
            return Err(PmemError::Misaligned { offset });
        }
        self.store(offset, &value.to_le_bytes())
    }

    fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), PmemError> {
        let at = self.check(offset, data.len() as u64)?;
        if let Err(e) = self.file.write_all_at(data, at) {
            self.note(e);
        }
        Ok(())
    }

    fn write_back(&mut self, offset: u64, len: u64) -> Result<(), PmemError> {
        self.check(offset, len).map(|_| ())
    }

    fn fence(&mut self) {
        if let Err(e) = self.file.sync_data() {
            self.note(e);
        }
    }
}

/// The region's size: what the file holds from the offset, at most `limit`.
fn len_limit(available: u64, limit: Option<u64>) -> u64 {
    limit.map_or(available, |l| l.min(available))
}

/// First bytes of an export file.
pub(crate) const EXPORT_MAGIC: [u8; 8] = *b"NVPEXPT1";
const HEADER: usize = 96;

/// What an export file says about its domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Exported {
    pub(crate) id: DomainUuid,
    pub(crate) name: String,
    pub(crate) quota: u64,
    /// (gpfn, order) by gpfn.
    pub(crate) extents: Vec<(Gfn, u8)>,
}

impl Exported {
    /// Frames of all extents.
    pub(crate) fn frames(&self) -> u64 {
        self.extents.iter().map(|&(_, o)| 1u64 << o).sum()
    }
}

/// Writes the header and extent table of `domain`; the caller streams the
/// data after it, then [`finish_export`].
pub(crate) fn start_export(
    out: &mut impl Write,
    domain: &Exported,
    crc: &mut u32,
) -> Result<(), String> {
    let mut h = Vec::with_capacity(HEADER + 16 * domain.extents.len());
    h.extend_from_slice(&EXPORT_MAGIC);
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&(domain.name.len() as u32).to_le_bytes());
    h.extend_from_slice(&domain.id.to_bytes());
    h.extend_from_slice(&domain.quota.to_le_bytes());
    h.extend_from_slice(&(domain.extents.len() as u64).to_le_bytes());
    h.extend_from_slice(&domain.frames().to_le_bytes());
    h.extend_from_slice(&[0; 8]);
    let mut name = [0u8; 32];
    name[..domain.name.len()].copy_from_slice(domain.name.as_bytes());
    h.extend_from_slice(&name);
    for &(gpfn, order) in &domain.extents {
        h.extend_from_slice(&gpfn.get().to_le_bytes());
        h.extend_from_slice(&u64::from(order).to_le_bytes());
    }
    put(out, &h, crc)
}

/// Writes `bytes` and folds them into the running CRC.
pub(crate) fn put(out: &mut impl Write, bytes: &[u8], crc: &mut u32) -> Result<(), String> {
    *crc = crc32c::crc32c_append(*crc, bytes);
    out.write_all(bytes).map_err(|e| e.to_string())
}

/// Writes the trailer.
pub(crate) fn finish_export(out: &mut impl Write, crc: u32) -> Result<(), String> {
    out.write_all(&u64::from(crc).to_le_bytes())
        .map_err(|e| e.to_string())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Reads and checks a whole export file: the domain and its data (frames
/// in extent order).
pub(crate) fn read_export(path: &str) -> Result<(Exported, Vec<u8>), String> {
    let bad = |why: &str| format!("{path}: not a valid export: {why}");
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| format!("{path}: {e}"))?;
    if bytes.len() < HEADER + 8 || bytes[..8] != EXPORT_MAGIC {
        return Err(bad("no export magic"));
    }
    let body = bytes.len() - 8;
    let stored = u64_at(&bytes, body);
    if stored != u64::from(crc32c::crc32c(&bytes[..body])) {
        return Err(bad("checksum mismatch (truncated or damaged)"));
    }
    if bytes[8..12] != 1u32.to_le_bytes() {
        return Err(bad("unknown version"));
    }
    let name_len = u64_at(&bytes, 8) >> 32;
    let id = DomainUuid::from_bytes(bytes[16..32].try_into().map_err(|_| bad("id"))?);
    let quota = u64_at(&bytes, 32);
    let count = u64_at(&bytes, 40);
    let frames = u64_at(&bytes, 48);
    let name = bytes
        .get(64..64 + name_len.min(MAX_NAME as u64) as usize)
        .and_then(|n| std::str::from_utf8(n).ok())
        .filter(|_| name_len <= MAX_NAME as u64)
        .ok_or_else(|| bad("bad name"))?
        .to_owned();
    let table_end = count
        .checked_mul(16)
        .and_then(|t| t.checked_add(HEADER as u64))
        .filter(|&e| e <= body as u64)
        .ok_or_else(|| bad("extent table past the end"))? as usize;
    let mut extents = Vec::new();
    for e in bytes[HEADER..table_end].chunks_exact(16) {
        let (gpfn, order) = (u64_at(e, 0), u64_at(e, 8));
        let gpfn = Gfn::new(gpfn).ok_or_else(|| bad("guest frame out of range"))?;
        let order = u8::try_from(order)
            .ok()
            .filter(|&o| o <= Order::MAX.get() && gpfn.get() % (1 << o) == 0)
            .ok_or_else(|| bad("bad extent order"))?;
        extents.push((gpfn, order));
    }
    let domain = Exported {
        id,
        name,
        quota,
        extents,
    };
    if domain.frames() != frames || frames.checked_mul(4096) != Some((body - table_end) as u64) {
        return Err(bad("frame count disagrees with the extents and the data"));
    }
    // The data in place: an export holds a domain's whole NVRAM.
    bytes.truncate(body);
    bytes.drain(..table_end);
    Ok((domain, bytes))
}

/// The extents of a domain as the export lists them.
pub(crate) fn listed(extents: impl Iterator<Item = Extent>) -> Vec<(Gfn, u8)> {
    extents.map(|e| (e.gfn(), e.order().get())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid export of two extents (4 KiB at gpfn 1, 8 KiB at gpfn 2)
    /// with frames filled by their index.
    fn valid() -> Vec<u8> {
        let domain = Exported {
            id: DomainUuid::new(7),
            name: "vm".to_owned(),
            quota: 16,
            extents: vec![(Gfn::new(1).unwrap(), 0), (Gfn::new(2).unwrap(), 1)],
        };
        let mut out = Vec::new();
        let mut crc = 0;
        start_export(&mut out, &domain, &mut crc).unwrap();
        for i in 0..3u8 {
            put(&mut out, &[i; 4096], &mut crc).unwrap();
        }
        finish_export(&mut out, crc).unwrap();
        out
    }

    /// `bytes` with `patch` applied at `at` and the checksum made right
    /// again, so only the field checks can refuse it.
    fn forged(at: usize, patch: &[u8]) -> Vec<u8> {
        let mut bytes = valid();
        bytes[at..at + patch.len()].copy_from_slice(patch);
        let body = bytes.len() - 8;
        let crc = u64::from(crc32c::crc32c(&bytes[..body]));
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    fn read(bytes: &[u8]) -> Result<(Exported, Vec<u8>), String> {
        let dir = std::env::temp_dir().join(format!("nvirt-export-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{:x}.nvexport", crc32c::crc32c(bytes)));
        std::fs::write(&path, bytes).unwrap();
        let out = read_export(path.to_str().unwrap());
        let _ = std::fs::remove_file(&path);
        out
    }

    #[test]
    fn a_valid_export_reads_back() {
        let (domain, data) = read(&valid()).unwrap();
        assert_eq!(domain.name, "vm");
        assert_eq!(domain.frames(), 3);
        assert_eq!(data.len(), 3 * 4096);
        assert_eq!((data[0], data[4096], data[8191 + 4096]), (0, 1, 2));
    }

    #[test]
    fn forged_fields_are_refused_despite_a_good_checksum() {
        let cases: [(usize, &[u8], &str); 6] = [
            (8, &2u32.to_le_bytes(), "unknown version"),
            (12, &33u32.to_le_bytes(), "bad name"),
            (40, &u64::MAX.to_le_bytes(), "extent table past the end"),
            (HEADER + 8, &19u64.to_le_bytes(), "bad extent order"),
            // Order 1 at an odd guest frame.
            (HEADER + 16, &3u64.to_le_bytes(), "bad extent order"),
            // A frame count that overflows when multiplied by 4096.
            (48, &(u64::MAX / 2).to_le_bytes(), "frame count disagrees"),
        ];
        for (at, patch, why) in cases {
            let err = read(&forged(at, patch)).unwrap_err();
            assert!(err.contains(why), "patch at {at}: {err}");
        }
        let err = read(&valid()[..150]).unwrap_err();
        assert!(err.contains("checksum mismatch"), "{err}");
    }
}
