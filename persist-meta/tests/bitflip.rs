//! Every single-bit flip of a log written by several opens: recovery
//! returns the same state, the state before the final group of the final
//! open (the one commit that may be read as a torn tail), or an error,
//! never another state (issue 15's experiment, on the log alone).

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{Image, Op, State, payload, recover};
use nvirt_persist_meta::{DamagedPart, survey};

/// A record area that the history below fills to about two thirds after
/// its checkpoint, so that stale records of the first era lie beyond the
/// chain's end.
const RECORD_AREA: u64 = 1024;

/// Builds the history open by open; returns the image, the final state and
/// the state before the final group.
fn history() -> (Vec<u8>, State, State) {
    let opens: Vec<Vec<Op>> = vec![
        vec![
            Op::Append(payload(1, 40)),
            Op::Group(vec![payload(2, 20), payload(3, 70)]),
        ],
        vec![Op::Append(payload(4, 8)), Op::Append(payload(5, 100))],
        vec![
            Op::Group(vec![payload(6, 30), payload(7, 30), payload(8, 4)]),
            Op::Checkpoint,
            Op::Append(payload(9, 50)),
        ],
        vec![
            Op::Abandon(vec![payload(100, 60), payload(101, 60)]),
            Op::Append(payload(10, 12)),
        ],
        vec![],
        vec![
            Op::Append(payload(11, 33)),
            Op::Group(vec![payload(12, 16), payload(13, 90)]),
        ],
    ];
    common::multi_open(RECORD_AREA, &opens)
}

#[test]
fn every_bit_flip_of_a_multi_open_log_is_same_torn_final_group_or_refused() {
    let (image, last, before_last) = history();
    assert_ne!(last, before_last);
    let mut bad = image.clone();
    let (mut same, mut torn, mut refused) = (0, 0, 0);
    for at in 0..image.len() {
        for bit in 0..8 {
            bad[at] ^= 1 << bit;
            // The survey (`nvirt log check`) lists the flipped byte as
            // damaged whenever recovery refuses, and lists nothing but
            // repairable superblock damage when it does not.
            let mut ranges = Vec::new();
            let found = survey(&Image(&bad), |d| ranges.push(*d), |_, _| {});
            let covers = ranges
                .iter()
                .any(|d| (d.offset..d.offset + d.len).contains(&(at as u64)));
            let repairable = ranges.iter().all(|d| {
                matches!(
                    d.what,
                    DamagedPart::Superblock { .. } | DamagedPart::SwitchWord { .. }
                )
            });
            let outcome = recover(&bad);
            match &outcome {
                Ok(_) => assert!(repairable, "byte {at:#x} bit {bit}: {ranges:?}"),
                Err(e) => assert!(
                    covers || found.stopped.is_some(),
                    "byte {at:#x} bit {bit}: refused ({e}) but the survey found {ranges:?}"
                ),
            }
            match outcome {
                Ok(state) if state == last => same += 1,
                Ok(state) if state == before_last => torn += 1,
                Ok(state) => panic!(
                    "byte {at:#x} bit {bit}: silently recovered {} payloads instead of {}",
                    state.len(),
                    last.len()
                ),
                Err(e) => {
                    assert!(!e.is_empty());
                    refused += 1;
                }
            }
            bad[at] ^= 1 << bit;
        }
    }
    println!(
        "bit flips of a {}-byte log: same state {same}, state before the final group {torn}, \
         refused {refused}",
        image.len()
    );
    assert!(refused > 0 && torn > 0);
}
