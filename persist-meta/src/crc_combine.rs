//! CRC-32C of records with independent dependency chains, on x86-64 with
//! SSE 4.2 and PCLMULQDQ (checked at run time; [`checksum`](crate::checksum)
//! falls back to one chain elsewhere).
//!
//! One `crc32` instruction takes 3 cycles and the next one on the same
//! state waits for it, while the CPU could start one every cycle. So each
//! record's CRC starts from zero on its own chain — three long records of
//! one length side by side, one chain each; any other long record split
//! in three chains — and the chains are joined by linearity: the state after
//! `A‖B` is the state after `A` moved past `|B|` zero bytes, XOR the state
//! after `B` alone. Moving a state past `n` zero bytes is multiplying it
//! by `x^(8n)` modulo the polynomial: one carry-less multiplication by a
//! constant from [`SHIFTS`], then one `crc32` to reduce. The result is the
//! same function bit for bit (the tests compare it with the tables).

#![allow(unsafe_code, reason = "the SSE 4.2 crc32 and PCLMULQDQ instructions")]

use core::arch::x86_64::{
    _mm_clmulepi64_si128, _mm_crc32_u8, _mm_crc32_u32, _mm_crc32_u64, _mm_cvtsi64_si128,
    _mm_cvtsi128_si64,
};

use crate::record::MAX_PAYLOAD;

/// The CRC-32C polynomial, bit-reflected (x^32 implied).
const POLY: u32 = 0x82f6_3b78;
/// The shortest move [`SHIFTS`] holds: `x^(8n - 33)` needs `8n >= 33`.
const SHIFT_MIN: usize = 5;
/// The longest: a whole record (entry header and the largest payload).
const SHIFT_MAX: usize = MAX_PAYLOAD + 4;
/// Payloads at least this long are split in three chains: below it the
/// two extra joins cost more than the shorter chain saves.
const SPLIT: usize = 128;

/// `SHIFTS[n]` is `x^(8n - 33)` modulo the polynomial, bit-reflected, for
/// `n` from [`SHIFT_MIN`]: the constant that moves a state past `n` zero
/// bytes (the carry-less product is one power of `x` short, and the
/// `crc32` that reduces it adds 32).
static SHIFTS: [u32; SHIFT_MAX + 1] = shifts();

const fn shifts() -> [u32; SHIFT_MAX + 1] {
    let mut table = [0; SHIFT_MAX + 1];
    // x^7 (n = 5): bit i of a reflected value is the coefficient of x^(31 - i).
    let mut k = 1u32 << 24;
    let mut n = SHIFT_MIN;
    while n <= SHIFT_MAX {
        table[n] = k;
        let mut bit = 0;
        while bit < 8 {
            k = (k >> 1) ^ if k & 1 != 0 { POLY } else { 0 };
            bit += 1;
        }
        n += 1;
    }
    table
}

/// Whether this CPU runs the functions below.
#[inline]
fn available() -> bool {
    std::is_x86_feature_detected!("sse4.2") && std::is_x86_feature_detected!("pclmulqdq")
}

/// The CRC-32C `crc` continued over the records `records` yields (entry
/// header, then payload, each); the records back if the CPU lacks the
/// instructions.
#[inline]
pub(crate) fn records<'r, I: Iterator<Item = (u32, &'r [u8])> + Clone>(
    crc: u32,
    records: I,
) -> Result<u32, I> {
    if !available() {
        return Err(records);
    }
    // SAFETY: the CPU executes SSE 4.2 and PCLMULQDQ (checked above).
    Ok(!unsafe { records_hw(!crc, records) })
}

/// # Safety
///
/// The CPU must support SSE 4.2 and PCLMULQDQ.
#[target_feature(enable = "sse4.2,pclmulqdq")]
#[allow(
    unused_unsafe,
    reason = "Rust 1.85 (rust-version) still requires the blocks that later versions find redundant here"
)]
#[inline]
unsafe fn records_hw<'r>(
    state: u32,
    records: impl Iterator<Item = (u32, &'r [u8])> + Clone,
) -> u32 {
    // The sum so far is moved past each record and the record's own state
    // added: one constant for records of one length, which stays in the
    // cache. (Moving each record's state to the end instead, by constants
    // far apart in a 16 KiB table, made a group's commit wait longer.)
    let mut sum = state;
    let mut records = records;
    while let Some((entry, payload)) = records.next() {
        // Three long records of one length run side by side, one chain
        // each: fewer instructions than three chains and two joins for
        // each, and the commit's stores, which follow, start sooner.
        if payload.len() >= SPLIT {
            let len = payload.len();
            let mut same = records.clone().take(2).filter(|(_, p)| p.len() == len);
            if let (Some(b), Some(c)) = (same.next(), same.next()) {
                records.next();
                records.next();
                // SAFETY: as above.
                let [x, y, z] = unsafe { three((entry, payload), b, c) };
                for own in [x, y, z] {
                    // SAFETY: as above.
                    sum = unsafe { shift(sum, 4 + len) } ^ own;
                }
                continue;
            }
        }
        // SAFETY: as above.
        let own = unsafe { record(entry, payload) };
        // SAFETY: as above.
        sum = unsafe { shift(sum, 4 + payload.len()) } ^ own;
    }
    sum
}

/// The states after three records of one length from a zero state, one
/// chain each.
///
/// # Safety
///
/// As for [`record`].
#[inline(always)]
unsafe fn three(a: (u32, &[u8]), b: (u32, &[u8]), c: (u32, &[u8])) -> [u32; 3] {
    // SAFETY: the caller runs only where SSE 4.2 does.
    let mut x = u64::from(unsafe { _mm_crc32_u32(0, a.0) });
    // SAFETY: as above.
    let mut y = u64::from(unsafe { _mm_crc32_u32(0, b.0) });
    // SAFETY: as above.
    let mut z = u64::from(unsafe { _mm_crc32_u32(0, c.0) });
    let (a, b, c) = (
        a.1.chunks_exact(8),
        b.1.chunks_exact(8),
        c.1.chunks_exact(8),
    );
    let rest = [a.remainder(), b.remainder(), c.remainder()];
    for ((a, b), c) in a.zip(b).zip(c) {
        // SAFETY: as above (three independent chains, interleaved).
        x = unsafe { _mm_crc32_u64(x, word(a)) };
        // SAFETY: as above.
        y = unsafe { _mm_crc32_u64(y, word(b)) };
        // SAFETY: as above.
        z = unsafe { _mm_crc32_u64(z, word(c)) };
    }
    // SAFETY: as above.
    let x = unsafe { bytes(x as u32, rest[0]) };
    // SAFETY: as above.
    let y = unsafe { bytes(y as u32, rest[1]) };
    // SAFETY: as above.
    let z = unsafe { bytes(z as u32, rest[2]) };
    [x, y, z]
}

/// The state after `entry` and `payload` from a zero state.
///
/// # Safety
///
/// The CPU must support SSE 4.2 and PCLMULQDQ, and the caller must be
/// compiled for both (`records_hw`): inlined there, the instructions are
/// too, and the loop makes no calls.
#[inline(always)]
unsafe fn record(entry: u32, payload: &[u8]) -> u32 {
    // SAFETY: the caller runs only where both instruction sets do.
    let head = unsafe { _mm_crc32_u32(0, entry) };
    if payload.len() < SPLIT {
        // SAFETY: as above.
        return unsafe { bytes(head, payload) };
    }
    // Three chains over whole words: the entry header and the first third,
    // the second third, the rest.
    let third = payload.len() / 3 / 8 * 8;
    let (a, rest) = payload.split_at(third);
    let (b, c) = rest.split_at(third);
    let (c, c_rest) = c.split_at(third);
    let (mut x, mut y, mut z) = (u64::from(head), 0u64, 0u64);
    for ((a, b), c) in a
        .chunks_exact(8)
        .zip(b.chunks_exact(8))
        .zip(c.chunks_exact(8))
    {
        // SAFETY: as above (three independent chains, interleaved).
        x = unsafe { _mm_crc32_u64(x, word(a)) };
        // SAFETY: as above.
        y = unsafe { _mm_crc32_u64(y, word(b)) };
        // SAFETY: as above.
        z = unsafe { _mm_crc32_u64(z, word(c)) };
    }
    // SAFETY: as above.
    let z = unsafe { bytes(z as u32, c_rest) };
    // SAFETY: as above.
    let xy = unsafe { shift(x as u32, third) } ^ y as u32;
    // SAFETY: as above.
    (unsafe { shift(xy, third + c_rest.len()) }) ^ z
}

/// `state` moved past `n` zero bytes.
///
/// # Safety
///
/// The CPU must support SSE 4.2 and PCLMULQDQ, and the caller must be
/// compiled for both (`records_hw`): inlined there, the instructions are
/// too, and the loop makes no calls.
#[inline(always)]
unsafe fn shift(mut state: u32, mut n: usize) -> u32 {
    while n > SHIFT_MAX {
        // SAFETY: the caller runs only where both instruction sets do.
        state = unsafe { times(state, SHIFTS[SHIFT_MAX]) };
        n -= SHIFT_MAX;
    }
    if n < SHIFT_MIN {
        for _ in 0..n {
            // SAFETY: as above.
            state = unsafe { _mm_crc32_u8(state, 0) };
        }
        return state;
    }
    // SAFETY: as above.
    unsafe { times(state, SHIFTS[n]) }
}

/// `state` times `constant` (one of [`SHIFTS`]), reduced.
///
/// # Safety
///
/// As for [`shift`].
#[inline(always)]
unsafe fn times(state: u32, constant: u32) -> u32 {
    // SAFETY: the caller runs only where both instruction sets do.
    let state = unsafe { _mm_cvtsi64_si128(i64::from(state)) };
    // SAFETY: as above.
    let constant = unsafe { _mm_cvtsi64_si128(i64::from(constant)) };
    // SAFETY: as above.
    let product = unsafe { _mm_clmulepi64_si128(state, constant, 0) };
    // SAFETY: as above.
    let product = unsafe { _mm_cvtsi128_si64(product) } as u64;
    // SAFETY: as above.
    (unsafe { _mm_crc32_u64(0, product) }) as u32
}

/// `state` continued over `bytes`, a word at a time.
///
/// # Safety
///
/// The CPU must support SSE 4.2 and PCLMULQDQ, and the caller must be
/// compiled for both (`records_hw`): inlined there, the instructions are
/// too, and the loop makes no calls.
#[inline(always)]
unsafe fn bytes(state: u32, bytes: &[u8]) -> u32 {
    let mut state = u64::from(state);
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        // SAFETY: the caller runs only where SSE 4.2 does.
        state = unsafe { _mm_crc32_u64(state, word(chunk)) };
    }
    let mut state = state as u32;
    for &byte in words.remainder() {
        // SAFETY: as above.
        state = unsafe { _mm_crc32_u8(state, byte) };
    }
    state
}

/// The little-endian word in the first 8 bytes of `bytes`.
#[inline]
fn word(bytes: &[u8]) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A group of records with payloads of `lens` bytes, taken one after
    /// the other from `data`: its bytes as stored, and its records.
    fn group<'d>(data: &'d [u8], lens: &[usize], tag: u32) -> (Vec<u8>, Vec<(u32, &'d [u8])>) {
        let mut bytes = Vec::new();
        let mut parts = Vec::new();
        let mut at = 0;
        for (i, &len) in lens.iter().enumerate() {
            let entry = tag | i as u32;
            bytes.extend_from_slice(&entry.to_le_bytes());
            bytes.extend_from_slice(&data[at..at + len]);
            parts.push((entry, &data[at..at + len]));
            at += len;
        }
        (bytes, parts)
    }

    #[test]
    fn moves_and_splits_equal_the_bytes() {
        if !available() {
            return;
        }
        let table = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);
        let data: Vec<u8> = (0..9000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8)
            .collect();
        for len in (0..300).chain([511, 512, 767, 768, 1000, 4095, 4096]) {
            let entry = 0x0102_0304u32.wrapping_mul(len as u32 + 1);
            let mut bytes = b"abc".to_vec();
            bytes.extend_from_slice(&entry.to_le_bytes());
            bytes.extend_from_slice(&data[..len]);
            let start = table.checksum(b"abc");
            let got = records(start, [(entry, &data[..len])].into_iter());
            assert_eq!(got.ok(), Some(table.checksum(&bytes)), "length {len}");
        }
        // Several records, one of them empty, one of the largest.
        let lens = [5usize, 0, 300, 64, 4096, 130, 7];
        let (bytes, parts) = group(&data, &lens, 0x0500_0000);
        let got = records(0, parts.iter().copied());
        assert_eq!(got.ok(), Some(table.checksum(&bytes)), "{lens:?}");
        // Moves longer than the table and shorter than its first entry.
        for n in [0, 1, 4, 5, 6, SHIFT_MAX, SHIFT_MAX + 1, 3 * SHIFT_MAX + 7] {
            let mut by_bytes = 0x1234_5678u32;
            for _ in 0..n {
                // SAFETY: `available` checked SSE 4.2.
                by_bytes = unsafe { _mm_crc32_u8(by_bytes, 0) };
            }
            // SAFETY: `available` checked both.
            assert_eq!(unsafe { shift(0x1234_5678, n) }, by_bytes, "move {n}");
        }
    }

    #[test]
    fn groups_of_every_size_are_their_bytes() {
        if !available() {
            return;
        }
        let table = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);
        let data: Vec<u8> = (0..40_000u32)
            .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
            .collect();
        // Lengths around a word, a line and the three-chain split, in
        // groups of every size from one to ten records.
        let lens = [
            0usize, 1, 7, 63, 64, 65, 127, 128, 129, 191, 192, 200, 255, 256, 257, 300, 1000, 4096,
        ];
        for count in 1..=10 {
            for first in 0..lens.len() {
                let chosen: Vec<usize> = (0..count)
                    .map(|i| lens[(first + i * 5) % lens.len()])
                    .collect();
                let (bytes, parts) = group(&data, &chosen, 0x0300_0000 | (count as u32) << 8);
                // SAFETY: `available` checked both instruction sets.
                let got = unsafe { records_hw(!0, parts.iter().copied()) };
                assert_eq!(got, !table.checksum(&bytes), "{chosen:?}");
            }
        }
        // Runs of one length, which go three at a time side by side, with
        // other lengths between and after them.
        let runs: [&[usize]; 6] = [
            &[256; 8],
            &[128, 128, 128, 129],
            &[300, 300, 64, 300, 300, 300, 300],
            &[4096, 4096, 4096],
            &[1000, 1000, 1000, 1000, 7, 1000, 1000],
            &[127, 127, 127, 255, 255],
        ];
        for lens in runs {
            let (bytes, parts) = group(&data, lens, 0x0400_0000);
            // SAFETY: as above.
            let got = unsafe { records_hw(!0, parts.iter().copied()) };
            assert_eq!(got, !table.checksum(&bytes), "{lens:?}");
        }
    }
}
