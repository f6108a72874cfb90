//! The crash-loop workload's records: what the guest keeps in its NVRAM so
//! that, after QEMU is killed at any moment and started again, it can tell
//! what it had committed and check that all of it survived.
//!
//! QEMU can be killed between any two of the guest's stores (each store
//! reaches the NVDIMM's file mapping at once, in program order), so the
//! guest's state is a record kept in two slots: a commit writes the whole
//! record, with the next sequence number and a checksum, over the slot
//! that does not hold the current one. A torn write leaves a slot whose
//! checksum fails, and the other slot still holds the state before it.
//!
//! The state: a boot counter; which pages of a window of [`PAGES`] NVRAM
//! pages the guest holds (it gives them back and takes them again with
//! `decrease_reservation`, `populate_physmap` and `increase_reservation`);
//! and which of those hold a known pattern, with the stamp it was written
//! with. The protocol:
//! - giving a page back: commit it not held (and not valid), then the
//!   hypercall;
//! - taking a page: the hypercall, then commit it held (only once the
//!   hypercall returned), then write the pattern, then commit it valid
//!   with its stamp;
//! - rewriting a page: commit it not valid, write the new pattern, commit
//!   it valid with the new stamp.
//!
//! So every page the record calls valid holds its pattern whenever the
//! guest could have been killed, and the guest holds it in the pool.
//!
//! Region layout (offsets from the start of the guest's NVRAM entry):
//! slot 0 at 0, slot 1 at 4 KiB, the window's pages from [`WINDOW_OFFSET`].

use core::fmt;

use crate::{PAGE, pattern};

/// Pages in the balloon window (one bit each in a 64-bit word).
pub const PAGES: usize = 64;
/// Offset of the first window page in the NVRAM region.
pub const WINDOW_OFFSET: u64 = 16 * PAGE;
/// Offsets of the two record slots.
pub const SLOTS: [u64; 2] = [0, PAGE];
/// Words of an encoded record.
pub const RECORD_WORDS: usize = 6 + PAGES;
/// "NVCLREC1", little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"NVCLREC1");

/// The guest's committed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    /// Commit sequence number (the slot is `seq % 2`).
    pub seq: u64,
    /// Boots that committed their count.
    pub boots: u64,
    /// Bit `i`: the guest holds window page `i`.
    pub held: u64,
    /// Bit `i`: window page `i` holds the pattern of `stamps[i]`.
    pub valid: u64,
    /// The stamp each valid page's pattern was written with.
    pub stamps: [u64; PAGES],
}

impl State {
    /// The state before the first boot: nothing committed, every page
    /// held (the hypervisor backs the whole NVRAM region at boot).
    #[must_use]
    pub const fn initial() -> Self {
        Self {
            seq: 0,
            boots: 0,
            held: u64::MAX,
            valid: 0,
            stamps: [0; PAGES],
        }
    }

    /// Whether page `i` is held.
    #[must_use]
    pub const fn is_held(&self, i: usize) -> bool {
        i < PAGES && self.held & (1 << i) != 0
    }

    /// Whether page `i` holds its pattern.
    #[must_use]
    pub const fn is_valid(&self, i: usize) -> bool {
        i < PAGES && self.valid & (1 << i) != 0
    }

    /// Valid pages.
    #[must_use]
    pub const fn valid_pages(&self) -> u32 {
        self.valid.count_ones()
    }

    /// Held pages.
    #[must_use]
    pub const fn held_pages(&self) -> u32 {
        self.held.count_ones()
    }

    /// The record to commit next: `self` with the next sequence number,
    /// encoded, and the slot offset it goes to.
    #[must_use]
    pub fn next_record(&mut self) -> (u64, [u64; RECORD_WORDS]) {
        self.seq += 1;
        (SLOTS[(self.seq % 2) as usize], encode(self))
    }
}

/// A 64-bit checksum of `words` (a multiply-rotate hash: any torn record,
/// a prefix of new words over old ones, fails it).
#[must_use]
pub fn checksum(words: &[u64]) -> u64 {
    let mut h: u64 = 0x243f_6a88_85a3_08d3;
    for &w in words {
        h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }
    h ^ (words.len() as u64)
}

/// `state` as the words of a slot.
#[must_use]
pub fn encode(state: &State) -> [u64; RECORD_WORDS] {
    let mut w = [0u64; RECORD_WORDS];
    w[0] = MAGIC;
    w[1] = state.seq;
    w[2] = state.boots;
    w[3] = state.held;
    w[4] = state.valid;
    w[5..5 + PAGES].copy_from_slice(&state.stamps);
    w[RECORD_WORDS - 1] = checksum(&w[..RECORD_WORDS - 1]);
    w
}

/// The state in a slot's words, if it is a whole record.
#[must_use]
pub fn decode(w: &[u64; RECORD_WORDS]) -> Option<State> {
    if w[0] != MAGIC || w[RECORD_WORDS - 1] != checksum(&w[..RECORD_WORDS - 1]) {
        return None;
    }
    let mut stamps = [0u64; PAGES];
    stamps.copy_from_slice(&w[5..5 + PAGES]);
    Some(State {
        seq: w[1],
        boots: w[2],
        held: w[3],
        valid: w[4],
        stamps,
    })
}

/// The current state from the two slots: the whole record with the
/// higher sequence number, or the initial state if neither is whole.
#[must_use]
pub fn current(slots: [&[u64; RECORD_WORDS]; 2]) -> State {
    match (decode(slots[0]), decode(slots[1])) {
        (Some(a), Some(b)) => {
            if a.seq >= b.seq {
                a
            } else {
                b
            }
        }
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => State::initial(),
    }
}

/// The word at offset `word` (0 to 511) of a page at guest-physical `gpa`
/// written with `stamp`.
#[must_use]
pub const fn page_word(gpa: u64, word: u64, stamp: u64) -> u64 {
    pattern(gpa + word * 8, stamp ^ 0x636c_6f6f_7000_0000)
}

/// The crash-loop parameter of the guest's command line
/// (`nvirt.crashloop=OPS`): how many operations to run before a clean
/// shutdown (0: until killed).
#[must_use]
pub fn ops_of(cmdline: &str) -> Option<u64> {
    cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("nvirt.crashloop="))
        .and_then(|v| v.parse().ok())
}

/// What one boot found, as the machine-readable line the runner checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootReport {
    /// The boot counter after this boot's commit.
    pub boot: u64,
    /// The committed sequence number found.
    pub seq: u64,
    /// Valid pages checked and found intact.
    pub verified: u32,
    /// Valid pages found damaged.
    pub damaged: u32,
    /// Whether the guest got its whole NVRAM back (current reservation is
    /// its maximum).
    pub whole: bool,
}

impl BootReport {
    /// Whether everything checked out.
    #[must_use]
    pub const fn ok(&self) -> bool {
        self.damaged == 0 && self.whole
    }
}

impl fmt::Display for BootReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "crashloop: boot={} seq={} verified={} damaged={} whole={} result={}",
            self.boot,
            self.seq,
            self.verified,
            self.damaged,
            u8::from(self.whole),
            if self.ok() { "ok" } else { "FAIL" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        let mut s = State::initial();
        s.boots = 3;
        s.held = 0xffff_0000_ffff_fff0;
        s.valid = 0x0000_0000_0f0f_0f00;
        s.stamps[8] = 77;
        s.seq = 41;
        s
    }

    #[test]
    fn records_round_trip_and_alternate_slots() {
        let mut s = sample();
        let (slot, words) = s.next_record();
        assert_eq!(s.seq, 42);
        assert_eq!(slot, SLOTS[0]);
        assert_eq!(decode(&words), Some(s));
        let (slot, _) = s.next_record();
        assert_eq!(slot, SLOTS[1]);
    }

    #[test]
    fn every_torn_write_keeps_the_previous_state() {
        let mut old = sample();
        let (_, committed) = old.next_record();
        let before = old;
        // The other slot held an older record; the new one is written
        // over it word by word and may stop after any word.
        let mut new = before;
        new.valid |= 1 << 40;
        new.stamps[40] = 9;
        let (_, next) = new.next_record();
        let mut stale = sample();
        stale.seq = 40;
        let stale = encode(&stale);
        for cut in 0..=RECORD_WORDS {
            let mut torn = stale;
            torn[..cut].copy_from_slice(&next[..cut]);
            let got = current([&committed, &torn]);
            if cut == RECORD_WORDS {
                assert_eq!(got, new);
            } else {
                assert_eq!(got, before, "cut after {cut} words");
            }
        }
    }

    #[test]
    fn nothing_whole_is_the_initial_state() {
        let zero = [0u64; RECORD_WORDS];
        assert_eq!(current([&zero, &zero]), State::initial());
        let mut bad = encode(&sample());
        bad[3] ^= 1;
        assert_eq!(decode(&bad), None);
        assert_eq!(current([&bad, &encode(&sample())]), sample());
    }

    #[test]
    fn page_patterns_depend_on_address_word_and_stamp() {
        assert_ne!(page_word(0x1000, 0, 1), page_word(0x1000, 0, 2));
        assert_ne!(page_word(0x1000, 0, 1), page_word(0x1000, 1, 1));
        assert_ne!(page_word(0x1000, 0, 1), page_word(0x2000, 0, 1));
        assert_ne!(page_word(0x1000, 0, 0), 0);
    }

    #[test]
    fn reads_the_command_line_and_prints_the_report() {
        assert_eq!(ops_of("nvirt.ram=1 nvirt.crashloop=64"), Some(64));
        assert_eq!(ops_of("nvirt.crashloop=0"), Some(0));
        assert_eq!(ops_of("nvirt.ram=1"), None);
        assert_eq!(ops_of("nvirt.crashloop=x"), None);
        let r = BootReport {
            boot: 4,
            seq: 99,
            verified: 12,
            damaged: 0,
            whole: true,
        };
        assert_eq!(
            r.to_string(),
            "crashloop: boot=4 seq=99 verified=12 damaged=0 whole=1 result=ok"
        );
        assert!(!BootReport { whole: false, ..r }.ok());
    }
}
