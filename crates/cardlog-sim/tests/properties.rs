//! The harness's properties, each a test, on random schedules of 3–5 replicas with crashes,
//! clock skew and every sync mode. `CARDLOG_SIM_CASES` sets the number of schedules (a long
//! run: `CARDLOG_SIM_CASES=5000 cargo test --release -p cardlog-sim`); failures print the
//! seed and proptest's minimal schedule, and are kept in `proptest-regressions/`.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

use cardlog_sim::strategy::schedule;
use cardlog_sim::{Sim, Storage};
use proptest::prelude::*;

fn cases(default: u32) -> u32 {
    std::env::var("CARDLOG_SIM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    /// On real stores: convergence (identical state bytes and summaries after a final full
    /// sync), equality with the reference model at every replica before and after it, no
    /// lost save, order independence, incremental = rebuilt, crash recovery, idempotent
    /// import (the `Duplicated` sync mode).
    #[test]
    fn disk_schedules_keep_every_property(s in schedule(3..=5, 12..48, Storage::Disk)) {
        if let Err(v) = Sim::run(&s) {
            prop_assert!(false, "{v}");
        }
    }

    /// The same on in-memory devices: faster, so longer schedules.
    #[test]
    fn memory_schedules_keep_every_property(s in schedule(3..=5, 20..80, Storage::Memory)) {
        if let Err(v) = Sim::run(&s) {
            prop_assert!(false, "{v}");
        }
    }
}

/// A played schedule, fully synced.
fn synced(s: &cardlog_sim::Schedule) -> Sim {
    let mut sim = Sim::new(s).unwrap();
    sim.play(s).unwrap();
    sim.sync_all().unwrap();
    sim
}

// Each property on its own, so a failure names it in the test list too.
proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256) / 4, ..ProptestConfig::default() })]

    #[test]
    fn convergence(s in schedule(3..=5, 12..48, Storage::Disk)) {
        let mut sim = synced(&s);
        prop_assert_eq!(sim.check_convergence(), Ok(()));
    }

    #[test]
    fn equality_with_the_reference_model(s in schedule(3..=5, 20..80, Storage::Memory)) {
        let mut sim = Sim::new(&s).unwrap();
        sim.play(&s).unwrap();
        prop_assert_eq!(sim.check_model_everywhere(), Ok(()));
        sim.sync_all().unwrap();
        prop_assert_eq!(sim.check_model_everywhere(), Ok(()));
    }

    #[test]
    fn no_lost_save(s in schedule(3..=5, 12..48, Storage::Disk)) {
        let mut sim = synced(&s);
        prop_assert_eq!(sim.check_no_lost_save(), Ok(()));
    }

    #[test]
    fn incremental_equals_rebuilt(s in schedule(3..=5, 12..48, Storage::Disk)) {
        let mut sim = synced(&s);
        prop_assert_eq!(sim.check_rebuild(), Ok(()));
    }

    #[test]
    fn import_is_idempotent(s in schedule(3..=5, 12..48, Storage::Disk)) {
        let mut sim = synced(&s);
        prop_assert_eq!(sim.check_import_idempotent(), Ok(()));
    }

    #[test]
    fn state_is_independent_of_sync_order(s in schedule(3..=5, 20..80, Storage::Memory)) {
        let sim = synced(&s);
        prop_assert_eq!(sim.check_order_independence(), Ok(()));
    }
}
