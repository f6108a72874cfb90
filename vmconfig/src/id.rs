//! Domain ids: the canonical UUID text form and the id derived from a name.

use core::fmt;

/// A 128-bit domain id printed and parsed in the canonical UUID form
/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`: the number's 32 hex digits, most
/// significant first (the form `nvirt pool inspect` prints ids in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid(pub u128);

impl Uuid {
    /// Parses the canonical form, hex digits in either case; `None` for
    /// anything else (no braces, no `urn:uuid:`, no missing hyphens).
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != 36 {
            return None;
        }
        let mut value: u128 = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if b != b'-' {
                    return None;
                }
                continue;
            }
            let digit = char::from(b).to_digit(16)?;
            value = (value << 4) | u128::from(digit);
        }
        Some(Self(value))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            v >> 96,
            (v >> 80) & 0xffff,
            (v >> 64) & 0xffff,
            (v >> 48) & 0xffff,
            v & 0xffff_ffff_ffff
        )
    }
}

/// The domain id of a VM whose configuration gives no `uuid`: the 128-bit
/// FNV-1a hash of the bytes `nvirt-vm:` followed by the name, mixed by
/// `h ^= h >> 65; h *= K1; h ^= h >> 63; h *= K2; h ^= h >> 64` (wrapping,
/// `K1 = 0x9e3779b97f4a7c15_f39cc0605cedc835`,
/// `K2 = 0xd6e8feb86659fd93_2545f4914f6cdd1d`; a bijection, so names that
/// differ in one character get ids that differ everywhere), with the UUID
/// version nibble set to 8 (RFC 9562's custom version) and the variant
/// bits to `10`: a well-formed UUID that stays the same for the same name
/// on every host and every boot.
///
/// ```
/// use nvirt_vmconfig::{id_from_name, Uuid};
/// let id = id_from_name("a");
/// assert_eq!(id, id_from_name("a"));
/// assert_ne!(id, id_from_name("b"));
/// assert_eq!(Uuid(id).to_string().as_bytes()[14], b'8', "version 8");
/// ```
#[must_use]
pub fn id_from_name(name: &str) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut hash = OFFSET;
    for &b in b"nvirt-vm:".iter().chain(name.as_bytes()) {
        hash ^= u128::from(b);
        hash = hash.wrapping_mul(PRIME);
    }
    const K1: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835;
    const K2: u128 = 0xd6e8_feb8_6659_fd93_2545_f491_4f6c_dd1d;
    hash ^= hash >> 65;
    hash = hash.wrapping_mul(K1);
    hash ^= hash >> 63;
    hash = hash.wrapping_mul(K2);
    hash ^= hash >> 64;
    const VERSION_MASK: u128 = 0xf << 76;
    const VARIANT_MASK: u128 = 0b11 << 62;
    (hash & !VERSION_MASK & !VARIANT_MASK) | (0x8 << 76) | (0b10 << 62)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    use super::*;

    #[test]
    fn canonical_form_both_ways() {
        let id = Uuid(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(id.to_string(), "01234567-89ab-cdef-0011-223344556677");
        assert_eq!(
            Uuid::parse("01234567-89AB-cdef-0011-223344556677"),
            Some(id)
        );
        assert_eq!(
            Uuid::parse(&Uuid(u128::MAX).to_string()),
            Some(Uuid(u128::MAX))
        );
        assert_eq!(Uuid::parse(&Uuid(0).to_string()), Some(Uuid(0)));
        for bad in [
            "",
            "0123456789abcdef0011223344556677",
            "{01234567-89ab-cdef-0011-223344556677}",
            "01234567-89ab-cdef-0011-22334455667g",
            "0123456-789ab-cdef-0011-223344556677",
            "01234567-89ab-cdef-0011+223344556677",
            "01234567-89ab-cdef-0011-2233445566é",
        ] {
            assert_eq!(Uuid::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn name_ids_are_stable_and_well_formed() {
        // Pinned: a change here changes every name-derived domain id and
        // orphans the VMs' NVRAM in existing pools.
        // The value was computed independently of this code (FNV-1a 128
        // over b"nvirt-vm:a", the mixing, then the version and variant bits).
        assert_eq!(
            Uuid(id_from_name("a")).to_string(),
            "1a16013c-7fa1-88ac-8448-d28f9b02be1c"
        );
        let text = Uuid(id_from_name("guest-0")).to_string();
        assert_eq!(&text[14..15], "8");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"));
    }
}
