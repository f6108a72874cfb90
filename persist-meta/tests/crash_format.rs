//! Crash-state enumeration for format over an existing log: every crash
//! image is the old log (format had not taken effect), a region recovery
//! rejects (never a half-formatted log that replays something), or the new
//! empty log — and once format has returned, only the new empty log.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::ops::ControlFlow;

use common::{Op, State, base_image, payload, recover, report};
use nvirt_persist_meta::Log;
use nvirt_persist_meta::sim::{CrashConfig, SimPmem};

#[test]
fn format_over_an_old_log() {
    let setup: Vec<Op> = (1..=4).map(|id| Op::Append(payload(id, 100))).collect();
    // A small record area keeps the zeroing short.
    let (image, old) = base_image(512, &setup);
    assert_eq!(old.len(), 4);
    let sim = SimPmem::from_image(image);
    let log = Log::format(sim, common::CHECKPOINT_CAPACITY).unwrap();
    let sim = log.into_pmem();
    let returned = sim.point();
    let (mut kept, mut rejected, mut fresh) = (0, 0, 0);
    let stats = sim.crash_images(0..usize::MAX, &CrashConfig::default(), |crash| {
        match recover(crash.image) {
            Ok(state) if state == old && crash.point < returned => kept += 1,
            Ok(state) if state == State::new() => fresh += 1,
            Ok(state) => panic!(
                "crash at {}: recovered {} payloads",
                crash.point,
                state.len()
            ),
            Err(e) if crash.point < returned => {
                assert!(
                    e.contains("superblock") || e.contains("switch word"),
                    "crash at {}: {e}",
                    crash.point
                );
                rejected += 1;
            }
            Err(e) => panic!("after format returned: {e}"),
        }
        ControlFlow::Continue(())
    });
    report("format over an old log", &stats);
    println!(
        "format: {kept} images keep the old log, {rejected} are rejected, {fresh} are the new log"
    );
    assert!(kept > 0 && rejected > 0 && fresh > 0);
}
