//! Scrubbing freed frames, and the scrub word that says it is done.
//!
//! A free commits its group first (the frames go pending), then zeroes
//! every pending frame, writes the zeros back and fences: from then on no
//! crash can bring the old data back. Only then do the frames return to
//! the heap. The pool starts no commit group before that fence, so for
//! every free but those of the log's last group, a later group proves the
//! scrub durable.
//!
//! For the last group the *scrub word* tells: after the scrub's fence the
//! pool stores the log's next sequence number into it (8-byte
//! failure-atomic store, written back, no fence of its own: the next
//! fence of any kind makes it durable). Recovery scrubs the last group's
//! frees again unless the word is past that group. If the word never
//! reached the medium, recovery merely scrubs twice. It holds 40 bits of
//! sequence number and 24 check bits, so a damaged word is ignored (a
//! second scrub, never a skipped one).

use nvirt_addr::PAGE_SHIFT;
use nvirt_persist_meta::{Pmem, PmemError};

use crate::config::SCRUB_WORD;
use crate::error::CommitError;
use crate::pool::NvPool;

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Bits of sequence number in the scrub word.
const SEQ_BITS: u32 = 40;

fn check_bits(seq: u64) -> u64 {
    let crc = CRC.checksum(&(seq ^ 0x5343_5255_4221_0000).to_le_bytes());
    u64::from(crc) & ((1 << (64 - SEQ_BITS)) - 1)
}

/// The word stored for sequence number `seq`.
pub(crate) fn encode(seq: u64) -> u64 {
    let seq = seq & ((1 << SEQ_BITS) - 1);
    seq | check_bits(seq) << SEQ_BITS
}

/// The sequence number a stored word names, if its check bits hold.
pub(crate) fn decode(word: u64) -> Option<u64> {
    let seq = word & ((1 << SEQ_BITS) - 1);
    (word >> SEQ_BITS == check_bits(seq)).then_some(seq)
}

/// Whether the scrub word says the frees of the record with sequence
/// number `seq` are scrubbed: it holds a later sequence number (the word is
/// written right after a free's scrub, with the log's next sequence number,
/// so a later one is at most a few past; comparing modulo 2^40 survives
/// the wrap).
pub(crate) fn done<P: Pmem + ?Sized>(region: &P, seq: u64) -> Result<bool, PmemError> {
    let Some(word) = decode(region.read_u64(SCRUB_WORD)?) else {
        return Ok(false);
    };
    let mask = (1u64 << SEQ_BITS) - 1;
    let ahead = word.wrapping_sub(seq) & mask;
    Ok(ahead > 0 && ahead < 1 << (SEQ_BITS - 1))
}

/// Zeros for scrubbing, stored a chunk at a time.
static ZEROS: [u8; 16384] = [0; 16384];

/// Stores zeros over `len` bytes at `offset` and writes them back.
pub(crate) fn zero<P: Pmem>(region: &mut P, offset: u64, len: u64) -> Result<(), PmemError> {
    let end = offset.checked_add(len).ok_or(PmemError::OutOfBounds {
        offset,
        len,
        size: region.size(),
    })?;
    let mut at = offset;
    while at < end {
        let n = (end - at).min(ZEROS.len() as u64);
        region.store(at, &ZEROS[..n as usize])?;
        at += n;
    }
    region.write_back(offset, len)
}

impl<P: Pmem> NvPool<'_, P> {
    /// Zeroes every pending frame, makes the zeros durable with one fence,
    /// notes it in the scrub word, and returns the frames to the heap.
    pub(crate) fn scrub_pending(&mut self) -> Result<(), CommitError> {
        let base = self.state.geo.frame_base;
        let next_seq = self.log.next_seq();
        let region = self.log.pmem_mut().region_mut();
        let mut result = Ok(());
        let mut any = false;
        let bad = &self.state.bad;
        self.state.for_each_pending(|mfn, order| {
            let Some(block) = nvirt_addr::MfnRange::from_numbers(mfn, mfn + (1u64 << order)) else {
                return;
            };
            any = true;
            // Known-bad frames are never written: they are not handed out
            // again, so what they hold reaches no one.
            bad.good_parts(block, |good| {
                if result.is_ok() {
                    let offset = (good.start().get() - base) << PAGE_SHIFT;
                    result = zero(region, offset, good.len() << PAGE_SHIFT);
                }
            });
        });
        result?;
        if any {
            region.fence();
            region.store_u64(SCRUB_WORD, encode(next_seq))?;
            region.write_back(SCRUB_WORD, 8)?;
        }
        self.state.complete_pending();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_is_compared_modulo_its_width() {
        let mut region = nvirt_persist_meta::MemPmem::new(0x1000);
        assert!(!done(&region, 5).unwrap());
        region.store_u64(SCRUB_WORD, encode(6)).unwrap();
        assert!(done(&region, 5).unwrap());
        assert!(!done(&region, 6).unwrap());
        assert!(!done(&region, 9).unwrap());
        region.store_u64(SCRUB_WORD, encode(1 << 40)).unwrap();
        assert!(done(&region, (1 << 40) - 1).unwrap());
        region.store_u64(SCRUB_WORD, encode(6) ^ 1 << 60).unwrap();
        assert!(!done(&region, 5).unwrap());
    }

    #[test]
    fn words_are_checked() {
        for seq in [0, 1, 77, (1 << 40) - 1] {
            assert_eq!(decode(encode(seq)), Some(seq));
            assert_eq!(decode(encode(seq) ^ 1 << 45), None);
        }
        assert_eq!(decode(0), None);
    }
}
