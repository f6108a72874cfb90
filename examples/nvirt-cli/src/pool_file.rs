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

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;

use nvirt_nvpool::{DomainId, Extent, Gpfn};
use nvirt_persist_meta::{Pmem, PmemError};

/// A pool image in a file, from byte `offset` to the end.
#[derive(Debug)]
pub(crate) struct FilePmem {
    file: File,
    offset: u64,
    size: u64,
    /// The first I/O error, reported by [`FilePmem::finish`].
    error: Option<String>,
}

impl FilePmem {
    /// Opens `path` for reading and writing; the region is the file from
    /// `offset` on.
    pub(crate) fn open(path: &str, offset: u64) -> Result<Self, String> {
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
            size,
            error: None,
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

    /// Syncs and reports the first I/O error, if any happened.
    pub(crate) fn finish(mut self) -> Result<(), String> {
        self.fence();
        self.error.map_or(Ok(()), Err)
    }

    fn note(&mut self, e: std::io::Error) {
        if self.error.is_none() {
            self.error = Some(e.to_string());
        }
    }
}

impl Pmem for FilePmem {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), PmemError> {
        let at = self.check(offset, buf.len() as u64)?;
        // A read error leaves zeros, which recovery refuses as damage.
        if self.file.read_exact_at(buf, at).is_err() {
            buf.fill(0);
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

/// First bytes of an export file.
pub(crate) const EXPORT_MAGIC: [u8; 8] = *b"NVPEXPT1";
const HEADER: usize = 96;

/// What an export file says about its domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Exported {
    pub(crate) id: DomainId,
    pub(crate) name: String,
    pub(crate) quota: u64,
    /// (gpfn, order) by gpfn.
    pub(crate) extents: Vec<(Gpfn, u8)>,
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
    let id = DomainId::from_bytes(bytes[16..32].try_into().map_err(|_| bad("id"))?);
    let quota = u64_at(&bytes, 32);
    let count = u64_at(&bytes, 40);
    let frames = u64_at(&bytes, 48);
    let name = bytes
        .get(64..64 + name_len.min(32) as usize)
        .and_then(|n| std::str::from_utf8(n).ok())
        .filter(|_| name_len <= 32)
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
        let gpfn = Gpfn::new(gpfn).ok_or_else(|| bad("guest frame out of range"))?;
        let order = u8::try_from(order)
            .ok()
            .filter(|&o| o <= 18 && gpfn.get() % (1 << o) == 0)
            .ok_or_else(|| bad("bad extent order"))?;
        extents.push((gpfn, order));
    }
    let domain = Exported {
        id,
        name,
        quota,
        extents,
    };
    if domain.frames() != frames || (body - table_end) as u64 != frames * 4096 {
        return Err(bad("frame count disagrees with the extents and the data"));
    }
    Ok((domain, bytes[table_end..body].to_vec()))
}

/// The extents of a domain as the export lists them.
pub(crate) fn listed(extents: impl Iterator<Item = Extent>) -> Vec<(Gpfn, u8)> {
    extents.map(|e| (e.gpfn(), e.order().get())).collect()
}
