//! Damage that single bit flips do not cover: the same byte pattern
//! flipped at two places of one commit group (the pair a checksum of
//! per-piece checksums let through, found by the `persist_meta_recover`
//! fuzz target), and group headers or whole lines copied to other places
//! of the record area. Recovery returns the same state, the state before
//! the final group, or an error, never an earlier or another state.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{Image, Op, State, payload, recover};
use nvirt_persist_meta::{RECORD_ALIGN, inspect};

/// Bytes of a group header.
const HEADER: usize = 32;

struct History {
    image: Vec<u8>,
    last: State,
    before_last: State,
    /// Region offsets of the chain's groups: header start, end (aligned).
    groups: Vec<(usize, usize)>,
}

/// A log written by several opens, with a checkpoint, groups, single
/// records and an abandoned group; the final commit is a group of records
/// of 107 and 20 bytes, as in the fuzzer's image.
fn history() -> History {
    let opens: Vec<Vec<Op>> = vec![
        vec![
            Op::Append(payload(1, 40)),
            Op::Group(vec![payload(2, 20), payload(3, 70)]),
            Op::Checkpoint,
        ],
        vec![Op::Append(payload(4, 8)), Op::Append(payload(5, 100))],
        vec![
            Op::Abandon(vec![payload(100, 60), payload(101, 60)]),
            Op::Group(vec![payload(6, 30), payload(7, 30), payload(8, 4)]),
        ],
        vec![Op::Group(vec![payload(9, 107), payload(10, 20)])],
    ];
    let (image, state, before_last) = common::multi_open(1024, &opens);
    let mut groups = Vec::new();
    let mut start = None;
    let _ = inspect(&Image(&image), |r| {
        let first = start.get_or_insert(r.offset() as usize - HEADER);
        if r.ends_group() {
            let end = (r.offset() + r.size()).div_ceil(RECORD_ALIGN) * RECORD_ALIGN;
            groups.push((*first, end as usize));
            start = None;
        }
    });
    assert!(groups.len() >= 5, "{groups:?}");
    History {
        image,
        last: state,
        before_last,
        groups,
    }
}

/// Which of the allowed outcomes `image` recovers to; panics on any other.
fn outcome(h: &History, image: &[u8], what: &str) -> &'static str {
    match recover(image) {
        Ok(state) if state == h.last => "same",
        Ok(state) if state == h.before_last => "torn",
        Ok(state) => panic!(
            "{what}: silently recovered {} payloads instead of {}",
            state.len(),
            h.last.len()
        ),
        Err(_) => "refused",
    }
}

#[test]
fn the_fuzzers_pair_of_equal_flips_drops_the_final_group() {
    let h = history();
    // The fuzzer's find: 0x94 at the 15th byte from the end of a 107-byte
    // record and at the 19th from the end of the 20-byte one after it.
    let mut records = Vec::new();
    let _ = inspect(&Image(&h.image), |r| {
        records.push((r.offset() as usize + 4, r.payload().len()));
    });
    let [.., (a, a_len), (b, b_len)] = records[..] else {
        panic!("{records:?}");
    };
    assert_eq!((a_len, b_len), (107, 20));
    let mut bad = h.image.clone();
    bad[a + a_len - 15] ^= 0x94;
    bad[b + b_len - 19] ^= 0x94;
    assert_eq!(recover(&bad).unwrap(), h.before_last);
}

#[test]
fn every_pair_of_equal_flips_in_a_group_is_same_torn_or_refused() {
    let h = history();
    let mut bad = h.image.clone();
    let (mut torn, mut refused) = (0, 0);
    for &(start, end) in &h.groups {
        for pattern in [0x94u8, 0x01] {
            for i in start..end {
                bad[i] ^= pattern;
                for j in i + 1..end {
                    bad[j] ^= pattern;
                    let what = format!("{pattern:#x} at {i:#x} and {j:#x}");
                    match outcome(&h, &bad, &what) {
                        "torn" => torn += 1,
                        "refused" => refused += 1,
                        _ => {}
                    }
                    bad[j] ^= pattern;
                }
                bad[i] ^= pattern;
            }
        }
    }
    println!("pairs of equal flips: torn {torn}, refused {refused}");
    assert!(torn > 0 && refused > 0);
}

#[test]
fn a_group_header_copied_anywhere_in_the_area_is_same_torn_or_refused() {
    let h = history();
    let area = h.groups[0].0..h.image.len();
    for &(from, _) in &h.groups {
        let header: [u8; HEADER] = h.image[from..from + HEADER].try_into().unwrap();
        for to in area.clone().step_by(RECORD_ALIGN as usize) {
            if to == from {
                continue;
            }
            let mut bad = h.image.clone();
            bad[to..to + HEADER].copy_from_slice(&header);
            outcome(&h, &bad, &format!("header of {from:#x} copied to {to:#x}"));
        }
    }
}

#[test]
fn a_whole_line_copied_anywhere_in_the_area_is_same_torn_or_refused() {
    // A line holds a whole group when its records are short (an epoch
    // record always): such a copy is an intact group in the wrong place.
    // Where it replaces a committed group, the groups after it prove the
    // damage, whatever check the copy fails.
    let h = history();
    let area = h.groups[0].0..h.image.len();
    let line = RECORD_ALIGN as usize;
    let mut refused = 0;
    for from in area.clone().step_by(line) {
        for to in area.clone().step_by(line) {
            // A blank line ends the chain where it lands, as in format 2
            // (salvage reads damage as blank to replay what came before).
            let blank = h.image[from..from + HEADER].iter().all(|&b| b == 0);
            if blank || h.image[from..from + line] == h.image[to..to + line] {
                continue;
            }
            let mut bad = h.image.clone();
            bad.copy_within(from..from + line, to);
            let what = format!("line {from:#x} copied to {to:#x}");
            if outcome(&h, &bad, &what) == "refused" {
                refused += 1;
            }
        }
    }
    assert!(refused > 0);
}
