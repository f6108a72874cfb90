//! CRC-32C (Castagnoli), the checksum of every on-media structure.
//!
//! Without `std` the `crc` crate computes it from slice-by-16 tables (no
//! allocation, no CPU features); with `std` the SSE 4.2 `crc32` instruction
//! does when CPUID reports it: inline for the short inputs of the append
//! path (a group header, a small payload, where a call into the `crc32c`
//! crate costs more than the arithmetic), through that crate's three-way
//! interleaved loop for long ones; records, with PCLMULQDQ too, on
//! independent chains joined by carry-less multiplication
//! (`crc_combine`). All compute the same function (the tests below check
//! it), so images move freely between them.
//!
//! Every checksum is the plain CRC-32C of the bytes it covers, in the
//! order they are stored, never a checksum of checksums: a CRC of the
//! pieces' CRCs loses the position of a piece's bytes, so that one error
//! pattern placed in two pieces at offsets that line up cancels out (two
//! equal byte flips 4 bytes further from the end in the later piece went
//! undetected that way). A plain CRC-32C detects every such pair, and
//! every error of up to 3 bits, in anything shorter than 256 MiB.

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
    #[inline]
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(feature = "std")]
            value: 0,
            #[cfg(not(feature = "std"))]
            digest: CASTAGNOLI.digest(),
        }
    }

    /// Continues over `bytes`.
    #[inline]
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if bytes.len() < sse42::SHORT {
            if let Some(value) = sse42::update(self.value, bytes) {
                self.value = value;
                return;
            }
        }
        #[cfg(feature = "std")]
        {
            self.value = crc32c::crc32c_append(self.value, bytes);
        }
        #[cfg(not(feature = "std"))]
        self.digest.update(bytes);
    }

    /// Continues over the 4 little-endian bytes of `word`.
    #[inline]
    pub(crate) fn update_u32(&mut self, word: u32) {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if let Some(value) = sse42::update_u32(self.value, word) {
            self.value = value;
            return;
        }
        self.update(&word.to_le_bytes());
    }

    /// Continues over the 8 little-endian bytes of `word`.
    #[inline]
    pub(crate) fn update_u64(&mut self, word: u64) {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if let Some(value) = sse42::update_u64(self.value, word) {
            self.value = value;
            return;
        }
        self.update(&word.to_le_bytes());
    }

    /// Continues over a record as stored: its 4-byte entry header
    /// `entry` (little-endian), then its payload.
    #[inline]
    pub(crate) fn update_record(&mut self, entry: u32, payload: &[u8]) {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if let Ok(value) = crate::crc_combine::records(self.value, [(entry, payload)].into_iter()) {
            self.value = value;
            return;
        }
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if let Some(value) = sse42::update_record(self.value, entry, payload) {
            self.value = value;
            return;
        }
        self.update_u32(entry);
        self.update(payload);
    }

    /// [`update_record`](Self::update_record) for each record `records`
    /// yields (entry header, payload), in one call into the hardware path:
    /// for short payloads the loop then makes no calls, so it stores
    /// nothing on the stack and runs on while a fence holds earlier stores
    /// back.
    #[inline]
    pub(crate) fn update_records<'r>(
        &mut self,
        records: impl Iterator<Item = (u32, &'r [u8])> + Clone,
    ) {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        let records = match crate::crc_combine::records(self.value, records) {
            Ok(value) => {
                self.value = value;
                return;
            }
            Err(records) => records,
        };
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        let records = match sse42::update_records(self.value, records) {
            Ok(value) => {
                self.value = value;
                return;
            }
            Err(records) => records,
        };
        for (entry, payload) in records {
            self.update_record(entry, payload);
        }
    }

    /// Continues over three words and the low half of a fourth (a
    /// 28-byte header), in one call into the hardware path.
    #[inline]
    pub(crate) fn update_header(&mut self, words: [u64; 3], last: u32) {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if let Some(value) = sse42::header(self.value, words, last) {
            self.value = value;
            return;
        }
        for word in words {
            self.update_u64(word);
        }
        self.update_u32(last);
    }

    /// The CRC of everything so far.
    #[inline]
    pub(crate) fn value(&self) -> u32 {
        #[cfg(feature = "std")]
        {
            self.value
        }
        #[cfg(not(feature = "std"))]
        self.digest.clone().finalize()
    }
}

/// The `crc32` instruction of SSE 4.2, which computes CRC-32C (without its
/// initial and final inversion) over 1 or 8 bytes at a time.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[allow(unsafe_code, reason = "the SSE 4.2 crc32 instruction")]
mod sse42 {
    use core::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u32, _mm_crc32_u64};

    /// Inputs this short are done here; longer ones go to the `crc32c`
    /// crate, whose interleaved loop starts paying off at this length.
    pub(super) const SHORT: usize = 768;

    /// `crc` continued over `bytes`; `None` if the CPU lacks SSE 4.2.
    #[inline]
    pub(super) fn update(crc: u32, bytes: &[u8]) -> Option<u32> {
        if !std::is_x86_feature_detected!("sse4.2") {
            return None;
        }
        // SAFETY: the CPU executes SSE 4.2 instructions (checked above).
        Some(unsafe { update_bytes(crc, bytes) })
    }

    /// `crc` continued over `word`'s little-endian bytes; `None` if the
    /// CPU lacks SSE 4.2.
    #[inline]
    pub(super) fn update_u64(crc: u32, word: u64) -> Option<u32> {
        if !std::is_x86_feature_detected!("sse4.2") {
            return None;
        }
        // SAFETY: the CPU executes SSE 4.2 instructions (checked above).
        Some(unsafe { update_word(crc, word) })
    }

    /// `crc` continued over `word`'s little-endian bytes; `None` if the
    /// CPU lacks SSE 4.2.
    #[inline]
    pub(super) fn update_u32(crc: u32, word: u32) -> Option<u32> {
        if !std::is_x86_feature_detected!("sse4.2") {
            return None;
        }
        // SAFETY: the CPU executes SSE 4.2 instructions (checked above).
        Some(unsafe { update_half(crc, word) })
    }

    /// `crc` continued over a record (`entry`, then `payload`); `None` if
    /// the CPU lacks SSE 4.2.
    #[inline]
    pub(super) fn update_record(crc: u32, entry: u32, payload: &[u8]) -> Option<u32> {
        if !std::is_x86_feature_detected!("sse4.2") {
            return None;
        }
        // SAFETY: the CPU executes SSE 4.2 instructions (checked above).
        Some(unsafe { record_hw(crc, entry, payload) })
    }

    /// `crc` continued over `words` and `last`; `None` if the CPU lacks
    /// SSE 4.2.
    #[inline]
    pub(super) fn header(crc: u32, words: [u64; 3], last: u32) -> Option<u32> {
        if !std::is_x86_feature_detected!("sse4.2") {
            return None;
        }
        // SAFETY: the CPU executes SSE 4.2 instructions (checked above).
        Some(unsafe { header_hw(crc, words, last) })
    }

    /// # Safety
    ///
    /// The CPU must support SSE 4.2.
    #[target_feature(enable = "sse4.2")]
    #[allow(
        unused_unsafe,
        reason = "Rust 1.85 (rust-version) still requires the blocks that later versions find redundant here"
    )]
    #[inline]
    unsafe fn record_hw(crc: u32, entry: u32, payload: &[u8]) -> u32 {
        // SAFETY: this function runs only where SSE 4.2 does.
        let state = unsafe { _mm_crc32_u32(!crc, entry) };
        if payload.len() < SHORT {
            // SAFETY: as above.
            unsafe { update_bytes(!state, payload) }
        } else {
            crc32c::crc32c_append(!state, payload)
        }
    }

    /// `crc` continued over `records`; the records back if the CPU lacks
    /// SSE 4.2.
    #[inline]
    pub(super) fn update_records<'r, I: Iterator<Item = (u32, &'r [u8])>>(
        crc: u32,
        records: I,
    ) -> Result<u32, I> {
        if !std::is_x86_feature_detected!("sse4.2") {
            return Err(records);
        }
        // SAFETY: the CPU executes SSE 4.2 instructions (checked above).
        Ok(unsafe { records_hw(crc, records) })
    }

    /// # Safety
    ///
    /// The CPU must support SSE 4.2.
    #[target_feature(enable = "sse4.2")]
    #[allow(
        unused_unsafe,
        reason = "Rust 1.85 (rust-version) still requires the blocks that later versions find redundant here"
    )]
    unsafe fn records_hw<'r>(crc: u32, records: impl Iterator<Item = (u32, &'r [u8])>) -> u32 {
        let mut group = crc;
        for (entry, payload) in records {
            // SAFETY: this function runs only where SSE 4.2 does.
            group = unsafe { record_hw(group, entry, payload) };
        }
        group
    }

    /// # Safety
    ///
    /// The CPU must support SSE 4.2.
    #[target_feature(enable = "sse4.2")]
    #[allow(
        unused_unsafe,
        reason = "Rust 1.85 (rust-version) still requires the blocks that later versions find redundant here"
    )]
    unsafe fn header_hw(crc: u32, words: [u64; 3], last: u32) -> u32 {
        let mut state = u64::from(!crc);
        for word in words {
            // SAFETY: this function runs only where SSE 4.2 does.
            state = unsafe { _mm_crc32_u64(state, word) };
        }
        // SAFETY: as above.
        !(unsafe { _mm_crc32_u32(state as u32, last) })
    }

    /// # Safety
    ///
    /// The CPU must support SSE 4.2.
    #[inline]
    #[target_feature(enable = "sse4.2")]
    #[allow(
        unused_unsafe,
        reason = "Rust 1.85 (rust-version) still requires the block that later versions find redundant here"
    )]
    unsafe fn update_half(crc: u32, word: u32) -> u32 {
        // SAFETY: this function runs only where SSE 4.2 does.
        !(unsafe { _mm_crc32_u32(!crc, word) })
    }

    /// # Safety
    ///
    /// The CPU must support SSE 4.2.
    #[inline]
    #[target_feature(enable = "sse4.2")]
    #[allow(
        unused_unsafe,
        reason = "Rust 1.85 (rust-version) still requires the block that later versions find redundant here"
    )]
    unsafe fn update_word(crc: u32, word: u64) -> u32 {
        // SAFETY: this function runs only where SSE 4.2 does.
        !(unsafe { _mm_crc32_u64(u64::from(!crc), word) } as u32)
    }

    /// # Safety
    ///
    /// The CPU must support SSE 4.2.
    #[inline]
    #[target_feature(enable = "sse4.2")]
    #[allow(
        unused_unsafe,
        reason = "Rust 1.85 (rust-version) still requires the blocks that later versions find redundant here"
    )]
    unsafe fn update_bytes(crc: u32, bytes: &[u8]) -> u32 {
        let mut state = u64::from(!crc);
        let mut words = bytes.chunks_exact(8);
        for chunk in &mut words {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            // SAFETY: this function runs only where SSE 4.2 does.
            state = unsafe { _mm_crc32_u64(state, u64::from_le_bytes(word)) };
        }
        let mut state = state as u32;
        for &byte in words.remainder() {
            // SAFETY: as above.
            state = unsafe { _mm_crc32_u8(state, byte) };
        }
        !state
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
    fn words_continue_like_their_bytes() {
        let mut by_bytes = Crc32c::new();
        let mut by_words = Crc32c::new();
        for i in 0..40u64 {
            let word = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            by_bytes.update(&word.to_le_bytes());
            by_words.update_u64(word);
            by_bytes.update(&(word as u32).to_le_bytes());
            by_words.update_u32(word as u32);
            assert_eq!(by_words.value(), by_bytes.value(), "word {i}");
        }
    }

    #[test]
    fn table_and_hardware_backends_agree_short_and_long() {
        let table = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);
        let data: Vec<u8> = (0..3000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect();
        for len in [0, 1, 7, 8, 9, 28, 64, 255, 767, 768, 769, 2048, 3000] {
            assert_eq!(
                crc32c(&data[..len]),
                table.checksum(&data[..len]),
                "length {len}"
            );
            // Split at an odd point: the running value carries across.
            let mut crc = Crc32c::new();
            crc.update(&data[..len / 3]);
            crc.update(&data[len / 3..len]);
            assert_eq!(
                crc.value(),
                table.checksum(&data[..len]),
                "length {len} split"
            );
        }
    }

    #[test]
    fn records_and_headers_are_checksummed_as_their_bytes() {
        let table = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 13 + i / 7) as u8).collect();
        for len in [0, 1, 7, 8, 64, 252, 253, 255, 767, 768, 1000, 4096] {
            let mut record = Crc32c::new();
            record.update(b"ab");
            record.update_record(0x0102_0304, &data[..len]);
            let mut bytes = b"ab".to_vec();
            bytes.extend_from_slice(&0x0102_0304u32.to_le_bytes());
            bytes.extend_from_slice(&data[..len]);
            assert_eq!(record.value(), table.checksum(&bytes), "length {len}");
        }
        let records = [(7u32, &data[..5]), (8, &data[..0]), (9, &data[..300])];
        let mut one_by_one = Crc32c::new();
        for (entry, payload) in records {
            one_by_one.update_record(entry, payload);
        }
        let mut all = Crc32c::new();
        all.update_records(records.into_iter());
        assert_eq!(all.value(), one_by_one.value());
        let mut header = Crc32c::new();
        header.update_header([1, 2, 3], 4);
        let mut bytes = Vec::new();
        for w in [1u64, 2, 3] {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        bytes.extend_from_slice(&4u32.to_le_bytes());
        assert_eq!(header.value(), crc32c(&bytes));
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
