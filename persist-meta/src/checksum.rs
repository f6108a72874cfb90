//! CRC-32C (Castagnoli), the checksum of every on-media structure.
//!
//! Without `std` the `crc` crate computes it from slice-by-16 tables (no
//! allocation, no CPU features); with `std` the `crc32c` crate uses the
//! SSE 4.2 `crc32` instruction when CPUID reports it. Both compute the same
//! function (the tests below check it), so images move freely between them.

/// A running CRC-32C over a sequence of byte slices.
#[derive(Clone)]
pub(crate) struct Crc32c {
    #[cfg(feature = "std")]
    value: u32,
    #[cfg(not(feature = "std"))]
    digest: crc::Digest<'static, u32, crc::Table<16>>,
}

impl core::fmt::Debug for Crc32c {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Crc32c({:#010x})", self.value())
    }
}

#[cfg(not(feature = "std"))]
static CASTAGNOLI: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

impl Crc32c {
    /// The CRC of nothing.
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(feature = "std")]
            value: 0,
            #[cfg(not(feature = "std"))]
            digest: CASTAGNOLI.digest(),
        }
    }

    /// Continues over `bytes`.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        #[cfg(feature = "std")]
        {
            self.value = crc32c::crc32c_append(self.value, bytes);
        }
        #[cfg(not(feature = "std"))]
        self.digest.update(bytes);
    }

    /// The CRC of everything so far.
    pub(crate) fn value(&self) -> u32 {
        #[cfg(feature = "std")]
        {
            self.value
        }
        #[cfg(not(feature = "std"))]
        self.digest.clone().finalize()
    }
}

/// The CRC-32C of `bytes`.
pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = Crc32c::new();
    crc.update(bytes);
    crc.value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer() {
        // The check value of CRC-32C (RFC 3720 and the CRC catalogue).
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn streaming_equals_one_shot() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let mut crc = Crc32c::new();
        for chunk in data.chunks(37) {
            crc.update(chunk);
        }
        assert_eq!(crc.value(), crc32c(&data));
    }

    #[test]
    fn table_and_hardware_backends_agree() {
        let table = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);
        let mut data = Vec::new();
        for len in 0..300u32 {
            data.push((len.wrapping_mul(2_654_435_761) >> 13) as u8);
            assert_eq!(crc32c(&data), table.checksum(&data), "length {len}");
        }
    }
}
