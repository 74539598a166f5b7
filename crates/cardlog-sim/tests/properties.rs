//! The harness's properties, each a test, on random schedules of 3–5 replicas with crashes,
//! clock skew and every sync mode, drawn by [`explore`]: `CARDLOG_SIM_CASES` sets the number
//! of schedules and `CARDLOG_SIM_BASE` where their seeds start (a long run:
//! `CARDLOG_SIM_CASES=5000 CARDLOG_SIM_BASE=$RANDOM cargo test --release -p cardlog-sim`); a
//! failure prints what the devices did, the shrunk schedule and the command that replays it.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

use cardlog_sim::strategy::schedule;
use cardlog_sim::{explore, Schedule, Sim, Storage, Violation};

/// On real stores: convergence (identical state bytes and summaries after a final full
/// sync), equality with the reference model at every replica before and after it, no lost
/// save, a completed session delivers, order independence, incremental = rebuilt, crash
/// recovery, idempotent import (the `Duplicated` sync mode).
#[test]
fn disk_schedules_keep_every_property() {
    explore(schedule(3..=5, 12..48, Storage::Disk), 256, |s| {
        Sim::run(s).map(|_| ())
    })
    .unwrap();
}

/// The same on in-memory devices: faster, so longer schedules.
#[test]
fn memory_schedules_keep_every_property() {
    explore(schedule(3..=5, 20..80, Storage::Memory), 256, |s| {
        Sim::run(s).map(|_| ())
    })
    .unwrap();
}

/// A played schedule, fully synced, and `check` run on it; a violation tells the run.
fn synced(
    s: &Schedule,
    check: impl FnOnce(&mut Sim) -> Result<(), Violation>,
) -> Result<(), Violation> {
    let mut sim = Sim::new(s)?;
    let result = sim
        .play(s)
        .and_then(|()| sim.sync_all())
        .and_then(|()| check(&mut sim));
    result.map_err(|v| sim.told(v))
}

// Each property on its own, so a failure names it in the test list too.

#[test]
fn convergence() {
    explore(schedule(3..=5, 12..48, Storage::Disk), 64, |s| {
        synced(s, Sim::check_convergence)
    })
    .unwrap();
}

#[test]
fn equality_with_the_reference_model() {
    explore(schedule(3..=5, 20..80, Storage::Memory), 64, |s| {
        let mut sim = Sim::new(s)?;
        let result = sim
            .play(s)
            .and_then(|()| sim.check_model_everywhere())
            .and_then(|()| sim.sync_all())
            .and_then(|()| sim.check_model_everywhere());
        result.map_err(|v| sim.told(v))
    })
    .unwrap();
}

#[test]
fn no_lost_save() {
    explore(schedule(3..=5, 12..48, Storage::Disk), 64, |s| {
        synced(s, Sim::check_no_lost_save)
    })
    .unwrap();
}

#[test]
fn incremental_equals_rebuilt() {
    explore(schedule(3..=5, 12..48, Storage::Disk), 64, |s| {
        synced(s, Sim::check_rebuild)
    })
    .unwrap();
}

#[test]
fn import_is_idempotent() {
    explore(schedule(3..=5, 12..48, Storage::Disk), 64, |s| {
        synced(s, Sim::check_import_idempotent)
    })
    .unwrap();
}

#[test]
fn state_is_independent_of_sync_order() {
    explore(schedule(3..=5, 20..80, Storage::Memory), 64, |s| {
        synced(s, |sim| sim.check_order_independence())
    })
    .unwrap();
}
