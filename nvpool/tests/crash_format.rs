//! Crash-state enumeration for format, on a blank region and over an old
//! pool whose domains hold data: every crash image is the old pool (format
//! had not taken effect), no pool at all (recovery refuses it; never a
//! half-formatted pool), or the new empty pool with every data frame zero
//! — and once format has returned, only the new empty pool.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::ops::ControlFlow;

use common::{Op, base_image, config, no_pool, recover_image, region_len, report, view};
use nvirt_nvpool::NvPool;
use nvirt_persist_meta::sim::{CrashConfig, SimPmem};

fn format_over(image: Vec<u8>, test: &str) -> (u64, u64, u64) {
    let (old, _) = recover_image(&image).unwrap();
    let sim = SimPmem::from_image(image);
    let config = config();
    let mut work = vec![
        0u8;
        config
            .geometry(sim.image().len() as u64)
            .unwrap()
            .work_area_bytes()
    ];
    let pool = NvPool::format(sim, config, &mut work).unwrap();
    let fresh = view(&pool);
    let sim = pool.into_region();
    let returned = sim.point();
    let (mut kept, mut none, mut new) = (0, 0, 0);
    // Zeroing the data stores a word at a time: sample each point lightly.
    let crash = common::scaled(CrashConfig {
        exhaustive_limit: 16,
        samples: 3,
        seed: 0xf0,
    });
    let stats = sim.crash_images(0..usize::MAX, &crash, |c| {
        let (v, _) = recover_image(c.image).unwrap_or_else(|e| panic!("crash at {}: {e}", c.point));
        if v == fresh {
            new += 1;
        } else if c.point >= returned {
            panic!("crash at {} after format returned: {v:?}", c.point);
        } else if v == old {
            kept += 1;
        } else if v == no_pool() {
            none += 1;
        } else {
            panic!("crash at {}: {v:?}", c.point);
        }
        ControlFlow::Continue(())
    });
    report(test, &stats);
    println!("{test}: {kept} images keep the old pool, {none} are no pool, {new} the new pool");
    (kept, none, new)
}

#[test]
fn format_a_blank_region() {
    let blank = vec![0u8; region_len(config()) as usize];
    let (kept, none, new) = format_over(blank, "format of a blank region");
    // "Kept" is "no pool" here: the old state is no pool.
    assert!(kept + none > 0 && new > 0);
}

#[test]
fn format_over_an_old_pool() {
    let setup = vec![
        Op::Create(1, "old", 64),
        Op::Populate(1, 0, 20),
        Op::Write(1, 0x3),
        Op::Write(1, 0x13),
        Op::Running(1),
    ];
    let (kept, none, new) = format_over(base_image(&setup), "format over an old pool");
    assert!(kept > 0 && none > 0 && new > 0);
}
