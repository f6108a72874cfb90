//! The header at the start of a flat guest image: what the hypervisor
//! checks before it copies a single byte into guest memory.

use core::fmt;
use core::mem::{offset_of, size_of};

use nvirt_addr::GuestPhysAddr;
use static_assertions::const_assert_eq;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::layout::IMAGE_GPA;

/// The first bytes of a guest image.
pub const IMAGE_MAGIC: [u8; 8] = *b"NVGUEST1";
/// Bytes of [`RawImageHeader`].
pub const IMAGE_HEADER_LEN: usize = 48;
/// The header version this crate understands.
pub const IMAGE_VERSION: u32 = 1;

/// The header as it lies at the start of the image file:
///
/// | offset | field |
/// |---|---|
/// | 0 | magic `NVGUEST1` |
/// | 8 | header length `u32` (48) |
/// | 12 | version `u32` (1) |
/// | 16 | load address (guest-physical) `u64` |
/// | 24 | bytes in the file `u64` |
/// | 32 | bytes in memory (file plus zeroed `.bss`) `u64` |
/// | 40 | entry point (guest-physical) `u64` |
///
/// Every field is whatever the file says; [`ImageHeader::parse`] checks
/// them.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct RawImageHeader {
    magic: [u8; 8],
    header_len: U32,
    version: U32,
    load: U64,
    file_len: U64,
    mem_len: U64,
    entry: U64,
}

const_assert_eq!(size_of::<RawImageHeader>(), IMAGE_HEADER_LEN);
const_assert_eq!(offset_of!(RawImageHeader, magic), 0);
const_assert_eq!(offset_of!(RawImageHeader, header_len), 8);
const_assert_eq!(offset_of!(RawImageHeader, version), 12);
const_assert_eq!(offset_of!(RawImageHeader, load), 16);
const_assert_eq!(offset_of!(RawImageHeader, file_len), 24);
const_assert_eq!(offset_of!(RawImageHeader, mem_len), 32);
const_assert_eq!(offset_of!(RawImageHeader, entry), 40);

impl RawImageHeader {
    /// A current-version header with these raw values (image builders and
    /// tests).
    #[must_use]
    pub const fn new(load: u64, file_len: u64, mem_len: u64, entry: u64) -> Self {
        Self {
            magic: IMAGE_MAGIC,
            header_len: U32::new(IMAGE_HEADER_LEN as u32),
            version: U32::new(IMAGE_VERSION),
            load: U64::new(load),
            file_len: U64::new(file_len),
            mem_len: U64::new(mem_len),
            entry: U64::new(entry),
        }
    }

    /// The bytes in the file, as the header states them (unchecked).
    #[must_use]
    pub const fn file_len(&self) -> u64 {
        self.file_len.get()
    }
}

/// A checked header: the file part lies within the bytes given, the image
/// loads page-aligned at [`IMAGE_GPA`] or above, and the entry lies in the
/// file part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    load: GuestPhysAddr,
    file_len: u64,
    mem_len: u64,
    entry: GuestPhysAddr,
}

/// Why a guest image is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Fewer bytes than the header.
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// Wrong magic.
    Magic,
    /// A version or header length this crate does not know.
    Version {
        /// The image's version.
        version: u32,
        /// The image's header length.
        header_len: u32,
    },
    /// The header's sizes, load address or entry point are inconsistent.
    Layout,
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { len } => write!(f, "guest image of {len} bytes has no header"),
            Self::Magic => f.write_str("guest image does not start with NVGUEST1"),
            Self::Version {
                version,
                header_len,
            } => write!(
                f,
                "guest image header version {version} (length {header_len}) is not supported"
            ),
            Self::Layout => f.write_str("guest image header has an inconsistent layout"),
        }
    }
}

impl core::error::Error for ImageError {}

impl ImageHeader {
    /// Parses and checks the header at the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        let (raw, _) = RawImageHeader::ref_from_prefix(bytes)
            .map_err(|_| ImageError::Truncated { len: bytes.len() })?;
        if raw.magic != IMAGE_MAGIC {
            return Err(ImageError::Magic);
        }
        let (header_len, version) = (raw.header_len.get(), raw.version.get());
        if version != IMAGE_VERSION || header_len as usize != IMAGE_HEADER_LEN {
            return Err(ImageError::Version {
                version,
                header_len,
            });
        }
        let (file_len, mem_len) = (raw.file_len.get(), raw.mem_len.get());
        let load = GuestPhysAddr::new(raw.load.get()).ok_or(ImageError::Layout)?;
        let entry = GuestPhysAddr::new(raw.entry.get()).ok_or(ImageError::Layout)?;
        let file_end = load.checked_add(file_len);
        let fits = file_len >= IMAGE_HEADER_LEN as u64
            && file_len <= bytes.len() as u64
            && file_len <= mem_len
            && load >= IMAGE_GPA
            && load.page_offset() == 0
            && load.checked_add(mem_len).is_some()
            && file_end.is_some_and(|end| load <= entry && entry < end);
        if !fits {
            return Err(ImageError::Layout);
        }
        Ok(Self {
            load,
            file_len,
            mem_len,
            entry,
        })
    }

    /// Guest-physical load address.
    #[must_use]
    pub const fn load(&self) -> GuestPhysAddr {
        self.load
    }

    /// Bytes of the image file.
    #[must_use]
    pub const fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Bytes the image occupies in memory (file plus `.bss`).
    #[must_use]
    pub const fn mem_len(&self) -> u64 {
        self.mem_len
    }

    /// Guest-physical entry point.
    #[must_use]
    pub const fn entry(&self) -> GuestPhysAddr {
        self.entry
    }

    /// One past the last guest-physical byte of the loaded image.
    #[must_use]
    pub const fn end(&self) -> GuestPhysAddr {
        match self.load.checked_add(self.mem_len) {
            Some(end) => end,
            // `parse` checked the sum; no other constructor exists.
            None => self.load,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: u64 = 0x10_0000;

    fn header(load: u64, file: u64, mem: u64, entry: u64) -> Vec<u8> {
        let mut h = RawImageHeader::new(load, file, mem, entry)
            .as_bytes()
            .to_vec();
        h.resize(file.min(4096) as usize, 0x90);
        h
    }

    #[test]
    fn parses_a_good_header() {
        let bytes = header(AT, 0x800, 0x3000, AT + 0x40);
        assert_eq!(bytes[..8], *b"NVGUEST1");
        assert_eq!(bytes[8..12], 48u32.to_le_bytes());
        let h = ImageHeader::parse(&bytes).unwrap();
        assert_eq!(h.mem_len(), 0x3000);
        assert_eq!(h.file_len(), 0x800);
        assert_eq!(h.load().get(), AT);
        assert_eq!(h.entry().get(), AT + 0x40);
        assert_eq!(h.end().get(), AT + 0x3000);
    }

    #[test]
    fn refuses_inconsistent_headers() {
        assert_eq!(
            ImageHeader::parse(&[0; 10]),
            Err(ImageError::Truncated { len: 10 })
        );
        let mut bad_magic = header(AT, 0x800, 0x800, AT);
        bad_magic[0] = b'X';
        assert_eq!(ImageHeader::parse(&bad_magic), Err(ImageError::Magic));
        let mut bad_version = header(AT, 0x800, 0x800, AT);
        bad_version[12] = 2;
        assert!(matches!(
            ImageHeader::parse(&bad_version),
            Err(ImageError::Version { .. })
        ));
        for (load, file, mem, entry) in [
            (AT, 0x800, 0x400, AT),                                  // mem < file
            (AT, 0x800, 0x800, AT + 0x800),                          // entry past file
            (0x1000, 0x800, 0x800, 0x1000),                          // below 1 MiB
            (AT + 1, 0x800, 0x800, AT + 1),                          // unaligned
            (!0xfff, 0x800, 0x2000, !0xfff),                         // beyond MAXPHYADDR
            ((1 << 52) - 0x1000, 0x800, 0x2000, (1 << 52) - 0x1000), // ends beyond it
        ] {
            let bytes = header(load, file, mem, entry);
            assert_eq!(
                ImageHeader::parse(&bytes),
                Err(ImageError::Layout),
                "{load:#x}"
            );
        }
        // A header claiming more file bytes than there are.
        let mut short = header(AT, 0x800, 0x800, AT);
        short.truncate(0x100);
        assert_eq!(ImageHeader::parse(&short), Err(ImageError::Layout));
        assert_eq!(
            ImageError::Magic.to_string(),
            "guest image does not start with NVGUEST1"
        );
    }
}
