//! What a range of physical address space is: the E820 type code.

use core::cmp::Ordering;
use core::fmt;
use core::hash::{Hash, Hasher};

/// The kind of a memory-map entry, i.e. its E820 type code.
///
/// Kinds compare, hash and order by their raw code, so `Kind::Other(1)` and
/// [`Kind::Ram`] are the same kind; [`Kind::from_raw`] always returns the named
/// variant. Ordering by code matters: where firmware entries overlap, the
/// larger code wins (Linux's rule, applied by [`crate::MemoryMap::from_firmware`]).
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// 1: usable RAM.
    Ram,
    /// 2: reserved, not to be used by the OS.
    Reserved,
    /// 3: ACPI tables, reclaimable after they have been read.
    Acpi,
    /// 4: ACPI non-volatile storage (firmware state kept across sleep).
    Nvs,
    /// 5: memory the firmware found faulty.
    Unusable,
    /// 6: disabled memory (ACPI 6).
    Disabled,
    /// 7: persistent memory (ACPI 6 `AddressRangePersistentMemory`).
    Pmem,
    /// 12: legacy persistent memory ("PRAM"), as older NVDIMM firmware and
    /// Linux's `memmap=nn!ss` report it.
    Pram,
    /// 90: the vendor code some NVRAM boards use for their non-volatile RAM.
    VendorNvram,
    /// 0xefff_ffff: "soft reserved" (EFI specific-purpose memory).
    SoftReserved,
    /// Any other code, kept as given.
    Other(u32),
}

impl Kind {
    /// Raw code of [`Kind::Ram`].
    pub const RAM_CODE: u32 = 1;
    /// Raw code of [`Kind::Pmem`].
    pub const PMEM_CODE: u32 = 7;
    /// Raw code of [`Kind::Pram`].
    pub const PRAM_CODE: u32 = 12;
    /// Raw code of [`Kind::VendorNvram`].
    pub const VENDOR_NVRAM_CODE: u32 = 90;
    /// Raw code of [`Kind::SoftReserved`].
    pub const SOFT_RESERVED_CODE: u32 = 0xefff_ffff;

    /// The kind for a raw E820 type code, using the named variant when there is one.
    #[must_use]
    pub const fn from_raw(code: u32) -> Self {
        match code {
            1 => Self::Ram,
            2 => Self::Reserved,
            3 => Self::Acpi,
            4 => Self::Nvs,
            5 => Self::Unusable,
            6 => Self::Disabled,
            Self::PMEM_CODE => Self::Pmem,
            Self::PRAM_CODE => Self::Pram,
            Self::VENDOR_NVRAM_CODE => Self::VendorNvram,
            Self::SOFT_RESERVED_CODE => Self::SoftReserved,
            other => Self::Other(other),
        }
    }

    /// The raw E820 type code.
    #[must_use]
    pub const fn raw(self) -> u32 {
        match self {
            Self::Ram => 1,
            Self::Reserved => 2,
            Self::Acpi => 3,
            Self::Nvs => 4,
            Self::Unusable => 5,
            Self::Disabled => 6,
            Self::Pmem => Self::PMEM_CODE,
            Self::Pram => Self::PRAM_CODE,
            Self::VendorNvram => Self::VENDOR_NVRAM_CODE,
            Self::SoftReserved => Self::SOFT_RESERVED_CODE,
            Self::Other(code) => code,
        }
    }

    /// Whether memory of this kind keeps its contents without power: E820
    /// types 7 (PMEM), 12 (PRAM) and the vendor code 90.
    #[must_use]
    pub const fn is_nonvolatile(self) -> bool {
        matches!(
            self.raw(),
            Self::PMEM_CODE | Self::PRAM_CODE | Self::VENDOR_NVRAM_CODE
        )
    }

    /// Whether this is ordinary usable RAM.
    #[must_use]
    pub const fn is_ram(self) -> bool {
        self.raw() == Self::RAM_CODE
    }

    /// Whether Linux keeps adjacent entries of this kind apart when it
    /// sanitizes a map (`e820_nomerge()`): type 12 and soft reserved ranges may
    /// mark distinct platform ranges (NUMA node, protection or performance
    /// domain), so their boundaries are kept.
    #[must_use]
    pub const fn never_merges(self) -> bool {
        matches!(self.raw(), Self::PRAM_CODE | Self::SOFT_RESERVED_CODE)
    }

    /// Code 0 means "no entry" to Linux's sanitizer; such entries vanish.
    #[must_use]
    pub(crate) const fn is_void(self) -> bool {
        self.raw() == 0
    }

    /// The word Linux prints for this kind in its `BIOS-e820:` lines, or
    /// `None` for codes it prints as `type N`.
    #[must_use]
    pub const fn linux_name(self) -> Option<&'static str> {
        match self {
            Self::Ram => Some("usable"),
            Self::Reserved => Some("reserved"),
            Self::Acpi => Some("ACPI data"),
            Self::Nvs => Some("ACPI NVS"),
            Self::Unusable => Some("unusable"),
            Self::Pmem => Some("persistent (type 7)"),
            Self::Pram => Some("persistent (type 12)"),
            Self::SoftReserved => Some("soft reserved"),
            Self::Disabled | Self::VendorNvram => None,
            Self::Other(code) => Self::from_raw(code).linux_name_of_named(),
        }
    }

    /// `linux_name` for a kind already normalised by `from_raw`, so that
    /// `Other(1)` prints like `Ram` without recursing forever on `Other(99)`.
    const fn linux_name_of_named(self) -> Option<&'static str> {
        match self {
            Self::Other(_) => None,
            named => named.linux_name(),
        }
    }

    /// Parses the kind part of a Linux `[mem …] kind` line: the words Linux
    /// prints (see [`Kind::linux_name`]) or `type N` with a decimal code.
    /// The wording of kernels from 6.16 on (`System RAM`, `device reserved`,
    /// `persistent RAM (type N)`) is accepted too.
    #[must_use]
    pub fn from_linux_name(text: &str) -> Option<Self> {
        let kind = match text {
            "usable" | "System RAM" | "kernel usable RAM" => Self::Ram,
            "reserved" | "device reserved" => Self::Reserved,
            "ACPI data" => Self::Acpi,
            "ACPI NVS" => Self::Nvs,
            "unusable" => Self::Unusable,
            "soft reserved" => Self::SoftReserved,
            _ => {
                let persistent = text
                    .strip_prefix("persistent (type ")
                    .or_else(|| text.strip_prefix("persistent RAM (type "));
                let code = if let Some(rest) = persistent {
                    rest.strip_suffix(')')?
                } else {
                    text.strip_prefix("type ")?
                };
                return parse_decimal_u32(code).map(Self::from_raw);
            }
        };
        Some(kind)
    }
}

/// Parses a plain decimal `u32` (digits only, no sign, no spaces).
pub(crate) fn parse_decimal_u32(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl PartialEq for Kind {
    fn eq(&self, other: &Self) -> bool {
        self.raw() == other.raw()
    }
}

impl Eq for Kind {}

impl Hash for Kind {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.raw().hash(state);
    }
}

impl PartialOrd for Kind {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Kind {
    fn cmp(&self, other: &Self) -> Ordering {
        self.raw().cmp(&other.raw())
    }
}

impl From<u32> for Kind {
    fn from(code: u32) -> Self {
        Self::from_raw(code)
    }
}

impl From<Kind> for u32 {
    fn from(kind: Kind) -> Self {
        kind.raw()
    }
}

/// Formats the kind exactly as Linux prints it in `BIOS-e820:` lines.
impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.linux_name() {
            Some(name) => f.write_str(name),
            None => write!(f, "type {}", self.raw()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_codes_round_trip_through_named_variants() {
        for code in [1, 2, 3, 4, 5, 6, 7, 12, 90, 0xefff_ffff] {
            let kind = Kind::from_raw(code);
            assert!(!matches!(kind, Kind::Other(_)), "{code} has a name");
            assert_eq!(kind.raw(), code);
        }
        for code in [0, 8, 13, 20, 128, u32::MAX] {
            assert!(matches!(Kind::from_raw(code), Kind::Other(c) if c == code));
        }
        assert_eq!(Kind::Other(7), Kind::Pmem);
        assert!(Kind::Pram > Kind::Pmem);
        assert!(Kind::SoftReserved > Kind::VendorNvram);
    }

    #[test]
    fn nonvolatile_kinds_are_7_12_and_90() {
        let nv: Vec<u32> = (0..200)
            .filter(|&c| Kind::from_raw(c).is_nonvolatile())
            .collect();
        assert_eq!(nv, [7, 12, 90]);
        assert!(Kind::Other(90).is_nonvolatile());
        assert!(!Kind::SoftReserved.is_nonvolatile());
    }

    #[test]
    fn linux_names_match_the_kernel_and_parse_back() {
        let cases = [
            (1, "usable"),
            (2, "reserved"),
            (3, "ACPI data"),
            (4, "ACPI NVS"),
            (5, "unusable"),
            (6, "type 6"),
            (7, "persistent (type 7)"),
            (12, "persistent (type 12)"),
            (20, "type 20"),
            (90, "type 90"),
            (0xefff_ffff, "soft reserved"),
        ];
        for (code, name) in cases {
            let kind = Kind::from_raw(code);
            assert_eq!(kind.to_string(), name);
            assert_eq!(Kind::Other(code).to_string(), name);
            assert_eq!(Kind::from_linux_name(name), Some(kind));
        }
        assert_eq!(Kind::from_linux_name("type 1"), Some(Kind::Ram));
        assert_eq!(Kind::from_linux_name("System RAM"), Some(Kind::Ram));
        assert_eq!(
            Kind::from_linux_name("device reserved"),
            Some(Kind::Reserved)
        );
        assert_eq!(
            Kind::from_linux_name("persistent RAM (type 12)"),
            Some(Kind::Pram)
        );
        for bad in [
            "",
            "usable ",
            "type",
            "type -1",
            "type 4294967296",
            "persistent (type 7",
            "type 0x5",
        ] {
            assert_eq!(Kind::from_linux_name(bad), None, "{bad:?}");
        }
    }
}
